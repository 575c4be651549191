"""Environment switches: fast mode and offline follow the variables and CI."""
import threading
import time

import numpy as np
import pytest
import torch

from utils import env


def test_switches_follow_variables(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("VCNN_FAST", raising=False)
    monkeypatch.delenv("VCNN_OFFLINE", raising=False)
    assert not env.fast_mode() and not env.offline() and not env.in_ci()
    monkeypatch.setenv("CI", "true")
    assert env.fast_mode() and env.offline()
    monkeypatch.setenv("VCNN_FAST", "0")
    assert not env.fast_mode() and env.offline()
    monkeypatch.delenv("CI")
    monkeypatch.setenv("VCNN_OFFLINE", "1")
    assert env.offline() and not env.fast_mode()


def test_offline_never_touches_the_network(monkeypatch):
    monkeypatch.setenv("VCNN_OFFLINE", "1")
    start = time.perf_counter()
    assert env.can_reach("download.pytorch.org") is False
    assert time.perf_counter() - start < 0.1


def test_seed_everything_repeats():
    env.seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    env.seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_pick_device_and_describe():
    assert env.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        try:
            env.pick_device("cuda")
        except RuntimeError as err:
            assert "GPU" in str(err)
        else:
            raise AssertionError("asking for a missing GPU must fail clearly")
    line = env.describe("alexnet", "cpu")
    assert "alexnet" in line and "cpu" in line and "mode" in line


def test_a_missing_gpu_says_what_to_pass_instead(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"device='cuda:0'.*Pass device=None"):
        env.pick_device("cuda:0")


@pytest.fixture
def release():
    """An event that ends a simulated hang when the test ends, whatever its outcome."""
    event = threading.Event()
    yield event
    event.set()


def test_within_returns_raises_or_stops_waiting(release):
    assert env.within(1, max, 2, 3) == 3
    with pytest.raises(ZeroDivisionError):
        env.within(1, divmod, 1, 0)
    start = time.perf_counter()
    with pytest.raises(TimeoutError, match="no answer within 0.2 s"):
        env.within(0.2, release.wait)
    assert time.perf_counter() - start < 1


def test_a_hanging_name_lookup_gives_up_in_seconds(monkeypatch, release):
    monkeypatch.setenv("VCNN_OFFLINE", "0")

    def hanging_lookup(*args, **kwargs):
        release.wait()
        raise OSError("name lookup released by the test")

    monkeypatch.setattr(env.socket, "create_connection", hanging_lookup)
    start = time.perf_counter()
    assert env.can_reach("example.org", timeout=0.5) is False
    assert time.perf_counter() - start < 3


def test_share_cpu_leaves_busy_cores_to_other_processes(monkeypatch):
    """2 cores; between two samples the machine was busy for `busy` of 200 ticks, this
    process for `own` of them: torch gets the cores the others left idle."""
    import torch

    from utils import env
    threads = torch.get_num_threads()
    monkeypatch.setattr(env.os, "cpu_count", lambda: 2)
    monkeypatch.delenv("VCNN_THREADS", raising=False)
    try:
        for busy, own, expected in [(20, 10, 2), (190, 90, 1), (100, 100, 2), (200, 0, 1)]:
            samples = iter([(1000, 500, 100), (1200, 500 + busy, 100 + own)])
            monkeypatch.setattr(env, "_cpu_times", lambda: next(samples))
            env._last_sample[:] = [None, 0.0]
            assert env.share_cpu() == expected, (busy, own)
        monkeypatch.setenv("VCNN_THREADS", "1")
        assert env.share_cpu() == 1
        monkeypatch.setattr(env, "_cpu_times", lambda: None)      # no /proc: nothing changes
        monkeypatch.delenv("VCNN_THREADS")
        env._last_sample[:] = [None, 0.0]
        torch.set_num_threads(2)
        assert env.share_cpu() == 2
    finally:
        torch.set_num_threads(threads)


def test_fixed_threads_holds_through_long_loops_and_restores(monkeypatch):
    """A long loop's progress bar re-measures the CPU; inside fixed_threads it must not, so
    a seeded run on one thread repeats to the bit. Afterwards all is as before."""
    import torch

    from utils import env
    monkeypatch.delenv("VCNN_THREADS", raising=False)
    monkeypatch.setattr(env.os, "cpu_count", lambda: 2)
    samples = iter([(1000, 500, 100), (1200, 520, 110)] * 4)     # an idle machine: 2 threads
    monkeypatch.setattr(env, "_cpu_times", lambda: next(samples))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with env.fixed_threads(1):
            env._last_sample[:] = [None, 0.0]
            list(env.progress_bar(range(2), progress=False))
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2 and "VCNN_THREADS" not in env.os.environ
        env._last_sample[:] = [None, 0.0]
        list(env.progress_bar(range(2), progress=False))    # outside: the measurement counts
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_seconds_per_step_measures_the_step_and_steps_within_fits_the_budget(capsys):
    calls = []

    def step():
        calls.append(1)
        time.sleep(0.02)

    seconds = env.seconds_per_step(step, warmup=1, repeats=2)
    assert len(calls) == 3 and 0.015 < seconds < 0.5
    assert env.steps_within(1.0, 0.1, most=500) == 10
    assert env.steps_within(100.0, 0.1, most=50) == 50          # never more than asked
    assert env.steps_within(0.01, 5.0, most=50, least=3) == 3   # never fewer than the least
    assert env.announce("texture", 10, 0.5) == 5.0
    assert "10 steps" in capsys.readouterr().out
