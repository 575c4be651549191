"""The claims notebook 12 (feature visualisation) checks: each verdict function says True
where its claim holds and False on a counterfactual where it does not."""
import numpy as np
import torch
from torch import nn

from utils import featurevis as fv
from utils.models import ModelSpec


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
    model.spec = ModelSpec("tiny", "test", {"conv": "2"}, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    return model.eval()


def test_sign_test_needs_more_than_chance():
    assert fv.sign_test(6, 6) and fv.sign_test(7, 8)
    assert not fv.sign_test(5, 6) and not fv.sign_test(3, 6) and not fv.sign_test(0, 0)


def test_beats_dataset_only_above_every_patch():
    patches = np.array([1.0, 3.5, 2.0])
    assert fv.beats_dataset(3.6, patches)
    assert not fv.beats_dataset(3.5, patches)          # the best patch itself: a tie
    assert not fv.beats_dataset(2.5, patches)          # above most, not all


def test_keeps_more_and_less_high_frequency_fail_when_reversed_or_mixed():
    more = np.array([0.9, 0.8, 0.95, 0.7, 0.85, 0.9])
    less = more - 0.2
    assert fv.keeps_more(more, less)
    assert not fv.keeps_more(less, more)
    mixed = less.copy()
    mixed[0] = 1.0                                     # 5 of 6: not beyond chance
    assert not fv.keeps_more(more, mixed)
    assert not fv.keeps_more(more, more)               # equal is not more
    assert fv.less_high_frequency(less, more)
    assert not fv.less_high_frequency(more, less)


def test_survival_ranks_a_shift_invariant_image_above_a_pixel_exact_one():
    model = tiny_model()
    unit = fv.unit("conv", 0)
    flat = torch.full((1, 3, 32, 32), 0.7)
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2, :] = 1.0
    # a uniform image looks the same after any shift: its unit keeps nearly all of its value
    kept_flat = fv.survival(model, unit, flat, draws=8)
    assert (kept_flat - 1).abs().max() < 0.3
    # claim checked on measured values: the real verdict, both ways
    assert fv.keeps_more(np.repeat(kept_flat.numpy(), 6), np.zeros(6))
    assert not fv.keeps_more(np.zeros(6), np.repeat(kept_flat.numpy(), 6))


def test_less_alike_fails_for_copies():
    model = tiny_model()
    different = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    copies = different[:1].expand(3, 3, 16, 16)
    a, b = fv.gram_similarity(model, "conv", different), fv.gram_similarity(model, "conv", copies)
    assert fv.less_alike(a, b)
    assert not fv.less_alike(b, a)
    assert not fv.less_alike(b, b)


def test_exceeds_needs_every_channel_and_fails_reversed():
    high = np.array([5.6, 4.0, 7.0, 3.3, 6.1, 5.0])
    low = high / 2
    assert fv.exceeds(high, low)
    assert not fv.exceeds(low, high)
    assert not fv.exceeds(high, high)                  # equal is not larger
    mixed = low.copy()
    mixed[2] = 9.0                                     # 5 of 6: not beyond chance
    assert not fv.exceeds(high, mixed)
    # one reference value for every channel (the photos' median share)
    assert fv.exceeds(high, 1.0) and not fv.exceeds(high, 6.0)


def test_raises_each_fails_if_one_objective_is_not_above_gray():
    model = tiny_model()
    gray = torch.full((1, 3, 16, 16), 0.5)
    objective = fv.unit("conv", 0)
    pictures = {"unit": fv.visualize(model, objective, size=16, steps=8, method="naive", progress=False).rgb}
    on_pictures = {"unit": float(fv.activation(model, objective, pictures["unit"]))}
    on_gray = {"unit": float(fv.activation(model, objective, gray))}
    assert fv.raises_each(on_pictures, on_gray)
    assert not fv.raises_each(on_gray, on_gray)        # gray itself: no rise
    assert not fv.raises_each({**on_pictures, "other": -1.0}, {**on_gray, "other": 0.0})
