"""Where are we running, and how fast must we be?

Two environment variables steer every notebook:

* ``VCNN_FAST=1``    fast mode: smaller images and fewer iterations, same code path.
                      On by default when ``CI`` is set; ``VCNN_FAST=0`` switches it off.
* ``VCNN_OFFLINE=1`` never try the network: use cached weights or the bundled model.
                      On by default when ``CI`` is set; ``VCNN_OFFLINE=0`` switches it off.
"""
import os
import random
import socket
import sys
import threading

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
    if prefer is not None:
        prefer = str(prefer)
        instead = f"Pass device=None to use what this machine has ({pick_device().type})."
        if prefer.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device={prefer!r} was asked for but no CUDA GPU is visible. "
                               f"{instead} In Colab: Runtime > Change runtime type > GPU.")
        if prefer == "mps" and not _mps_available():
            raise RuntimeError(f"device='mps' was asked for but this machine has no Apple "
                               f"GPU. {instead}")
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


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
    return f"model: {model_name} | device: {device} | mode: {mode} | {net} | {where}"


def progress_bar(iterable, progress=True, description=None, **options):
    """The one progress bar of every long loop: ``progress`` is True (show it) or False.

    The bar disappears when the loop ends (``leave=False``), so saved notebooks keep no trace.
    """
    from tqdm.auto import tqdm
    return tqdm(iterable, desc=description, disable=not progress, leave=False, **options)
