"""Where are we running, and how fast must we be?

Two environment variables steer every notebook:

* ``VCNN_FAST=1``    fast mode: smaller images and fewer iterations, same code path.
                      On by default when ``CI`` is set; ``VCNN_FAST=0`` switches it off.
* ``VCNN_OFFLINE=1`` never try the network: use cached weights or the bundled model.
                      On by default when ``CI`` is set; ``VCNN_OFFLINE=0`` switches it off.

On a CPU, torch's threads share the cores with whatever else runs (a browser, another
student's kernel). Two threads on two cores beside one busy process wait for each other and
run 3-15x slower, one thread does not; on an idle machine two are faster. So ``share_cpu``
gives torch the cores that other processes left idle, measured from ``/proc/stat`` (Linux)
when the device is chosen and again at the start of every long loop.
"""
import contextlib
import math
import os
import random
import socket
import sys
import threading
import time

import numpy as np
import torch


def _flag(name, default=False):
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


def in_colab():
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def in_ci():
    """True on a continuous-integration runner (the ``CI`` variable is set)."""
    return _flag("CI")


def fast_mode():
    """True when notebooks should shrink sizes and iteration counts (``VCNN_FAST``)."""
    return _flag("VCNN_FAST", default=in_ci())


def offline():
    """True when nothing may be downloaded (``VCNN_OFFLINE``, or CI)."""
    return _flag("VCNN_OFFLINE", default=in_ci())


def within(seconds, function, *args):
    """``function(*args)``, or ``TimeoutError`` if it has not returned after ``seconds``.

    For calls with no timeout of their own, above all the name lookup (``getaddrinfo``),
    which a broken network can stall for 10-30 s whatever timeout the socket has: the call
    runs in a daemon thread, and we stop waiting for it.
    """
    result = {}

    def call():
        try:
            result["value"] = function(*args)
        except Exception as err:            # raised in the caller below
            result["error"] = err

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if "error" in result:
        raise result["error"]
    if "value" not in result:
        raise TimeoutError(f"no answer within {seconds:g} s")
    return result["value"]


def can_reach(host, port=443, timeout=3.0):
    """True if a TCP connection to ``host`` opens within ``timeout`` seconds.

    Used before any download so that a classroom without internet gets an answer
    in seconds instead of a hanging cell.
    """
    if offline():
        return False
    try:
        within(timeout + 1, socket.create_connection, (host, port), timeout).close()
    except OSError:                         # TimeoutError is an OSError too
        return False
    return True


def pick_device(prefer=None):
    """The best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` ("cpu", "cuda", "mps") forces a choice, with a clear error if it is absent.
    """
    available = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if prefer is not None:
        prefer = str(prefer)
        instead = f"Pass device=None to use what this machine has ({available})."
        if prefer.startswith("cuda") and available != "cuda":
            raise RuntimeError(f"device={prefer!r} was asked for but no CUDA GPU is visible. "
                               f"{instead} In Colab: Runtime > Change runtime type > GPU.")
        if prefer == "mps" and not _mps_available():
            raise RuntimeError(f"device='mps' was asked for but this machine has no Apple "
                               f"GPU. {instead}")
        device = torch.device(prefer)
        count = torch.cuda.device_count() if device.type == "cuda" else 0
        if device.type == "cuda" and device.index is not None and device.index >= count:
            raise RuntimeError(f"device={prefer!r} was asked for but this machine has {count} "
                               f"CUDA GPU(s), numbered from 0. {instead}")
        return device
    if available == "cpu":
        share_cpu(wait=0.25)
    return torch.device(available)


def _cpu_times():
    """(total, busy) ticks of the whole machine and the ticks this process used, or None."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        with open("/proc/self/stat") as own:
            fields = own.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None                                  # not Linux: nothing to measure
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)           # idle + iowait
    return sum(ticks), sum(ticks) - idle, int(fields[11]) + int(fields[12])   # utime + stime


_last_sample = [None, 0.0]        # (cpu times, when) of the previous measurement


def share_cpu(wait=0.0):
    """Give torch as many threads as there are cores that other processes leave idle.

    Measured since the previous call (or over ``wait`` seconds): the cores busy with other
    processes = (machine's busy ticks − this process's ticks) / ticks per core. Returns the
    thread count. ``VCNN_THREADS=n`` fixes it instead; without /proc nothing changes.
    """
    if os.environ.get("VCNN_THREADS", "").strip():
        torch.set_num_threads(max(1, int(os.environ["VCNN_THREADS"])))
        return torch.get_num_threads()
    if wait or _last_sample[0] is None:
        _last_sample[:] = [_cpu_times(), time.monotonic()]
        time.sleep(wait)
    before, now = _last_sample[0], _cpu_times()
    if before is None or now is None or now[0] <= before[0]:
        return torch.get_num_threads()
    cores = os.cpu_count() or 1
    busy_elsewhere = ((now[1] - before[1]) - (now[2] - before[2])) / ((now[0] - before[0]) / cores)
    _last_sample[:] = [now, time.monotonic()]
    torch.set_num_threads(max(1, min(cores, round(cores - busy_elsewhere))))
    return torch.get_num_threads()


@contextlib.contextmanager
def fixed_threads(n):
    """Run the block on exactly ``n`` torch threads, as ``VCNN_THREADS=n`` would: no long loop
    inside re-measures the CPU. On one thread a CPU convolution always sums in the same order,
    so a seeded run repeats to the bit. The thread count and the variable are restored after."""
    before_variable, before_threads = os.environ.get("VCNN_THREADS"), torch.get_num_threads()
    os.environ["VCNN_THREADS"] = str(int(n))
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        if before_variable is None:
            os.environ.pop("VCNN_THREADS", None)
        else:
            os.environ["VCNN_THREADS"] = before_variable
        torch.set_num_threads(before_threads)


def _mps_available():
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def seed_everything(seed=0):
    """Seed Python, NumPy and PyTorch (CPU and GPU) so that figures repeat."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed


def describe(model_name, device):
    """The one line every notebook prints after its setup."""
    where = "Colab" if in_colab() else ("CI" if in_ci() else "local")
    mode = "fast" if fast_mode() else "default"
    net = "offline" if offline() else "online"
    n = torch.get_num_threads()
    threads = f" ({n} thread{'' if n == 1 else 's'})" if str(device) == "cpu" else ""
    return f"model: {model_name} | device: {device}{threads} | mode: {mode} | {net} | {where}"


def progress_bar(iterable, progress=True, description=None, **options):
    """The one progress bar of every long loop: ``progress`` is True (show it) or False.

    The bar disappears when the loop ends (``leave=False``), so saved notebooks keep no trace.
    """
    from tqdm.auto import tqdm
    if time.monotonic() - _last_sample[1] > 1.0:      # a long loop starts: share the CPU again
        share_cpu()
    return tqdm(iterable, desc=description, disable=not progress, leave=False, **options)


def seconds_per_step(step, warmup=1, repeats=2):
    """Wall time of one call of ``step()`` (the fastest of ``repeats``, after ``warmup``
    calls): what a long loop of such steps will cost on this machine and network."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def steps_within(budget_seconds, step_seconds, most, least=1):
    """How many steps of ``step_seconds`` fit in ``budget_seconds`` (between ``least`` and
    ``most``): a slow network on a CPU does fewer steps instead of keeping a lecture waiting."""
    fits = math.floor(budget_seconds / max(step_seconds, 1e-9) + 1e-6)
    return int(max(least, min(most, fits)))


def announce(what, steps, step_seconds):
    """The line printed before a long cell: what runs, and for about how long."""
    total = steps * step_seconds
    print(f"{what}: {steps} steps × {step_seconds:.2f} s ≈ {total:.0f} s on this machine")
    return total
