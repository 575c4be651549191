"""The same call gives the same result, whatever ran before it.

Every stochastic method draws from its own seeded generator (noise, jitter, random starts),
never from the global one, so consuming the global generators between two calls changes
nothing that a generator would: a global draw would move the result by its whole scale.
What can still differ is float rounding. On a CPU with more than one thread, PyTorch's
oneDNN backward convolution sums in an order that can change from run to run (1e-6 of the
image after a few class-model steps; with one thread, or oneDNN off, the runs are equal to
the bit), and across thread counts (which ``utils.env.share_cpu`` follows from the machine's
load, unless ``VCNN_THREADS`` fixes it) a convolution sums in another order. So results are
compared to ``ROUNDING`` of their scale: far below anything a figure or a verdict shows.
"""
import random

import numpy as np
import pytest
import torch

from utils import attribution, class_model, deepdream, fooling, inversion, style

CALLS = {
    "smoothgrad": lambda m, x: attribution.smoothgrad(m, x, 285, samples=4, progress=False),
    "class_model": lambda m, x: class_model.class_model(m, 1, size=32, steps=6, progress=False),
    "deepdream": lambda m, x: deepdream.deepdream(m, x, "blocks.4", steps=3, octaves=2,
                                                  progress=False),
    "synthesise_texture": lambda m, x: style.synthesise_texture(m, x, ["stem"], steps=4,
                                                                progress=False).image,
    "invert": lambda m, x: inversion.invert(m, x, "blocks.4", steps=4, progress=False).images,
    "fool": lambda m, x: fooling.fool(m, x, "pizza", max_steps=4, progress=False)[0],
}


ROUNDING = 1e-4      # of the result's largest value; measured differences are 1e-6 to 1e-4


def same_up_to_rounding(a, b):
    return float((a - b).abs().max()) <= ROUNDING * float(a.abs().max())


@pytest.fixture(scope="module")
def x(lite):
    return lite.spec.preprocess("cat", size=64)


def stir_global_generators():
    torch.rand(1000)
    np.random.rand(1000)
    random.random()


@pytest.mark.parametrize("name", list(CALLS))
def test_a_call_repeats_whatever_ran_before(lite, x, name, monkeypatch):
    monkeypatch.setenv("VCNN_THREADS", str(torch.get_num_threads()))
    first = CALLS[name](lite, x)
    stir_global_generators()
    torch.manual_seed(12345)
    assert same_up_to_rounding(CALLS[name](lite, x), first)


def test_a_class_given_by_name_or_index_is_the_same_call(lite, x, monkeypatch):
    monkeypatch.setenv("VCNN_THREADS", str(torch.get_num_threads()))
    by_name = fooling.fool(lite, x, "pizza", max_steps=4, progress=False)[0]
    by_index = fooling.fool(lite, x, 963, max_steps=4, progress=False)[0]
    assert same_up_to_rounding(by_name, by_index)


@pytest.mark.parametrize("name", ["class_model", "deepdream", "smoothgrad"])
def test_another_thread_count_changes_only_the_rounding(lite, x, name, monkeypatch):
    results = []
    for threads in (1, 2):
        monkeypatch.setenv("VCNN_THREADS", str(threads))
        torch.set_num_threads(threads)
        results.append(CALLS[name](lite, x))
    assert same_up_to_rounding(*results)
