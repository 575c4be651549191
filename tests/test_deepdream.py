"""DeepDream: octaves, the normalised step, the guided objective, and that dreaming works."""
import pytest
import torch
from torch import nn

from utils import deepdream as dd
from utils.hooks import count_hooks
from utils.models import ModelSpec


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    model.spec = ModelSpec("tiny", "test", {"dream": "1"})
    return model.eval()


def test_octave_sizes_follow_the_recipe():
    sizes = dd.octave_sizes(224, 320, octaves=4, scale=1.4)
    assert len(sizes) == 4 and sizes[-1] == (224, 320)
    assert sizes[0] == (round(224 / 1.4 ** 3), round(320 / 1.4 ** 3))  # 82 × 117
    for (h0, w0), (h1, w1) in zip(sizes, sizes[1:]):
        assert abs(h1 / h0 - 1.4) < 0.03 and abs(w1 / w0 - 1.4) < 0.03
    with pytest.raises(ValueError):
        dd.octave_sizes(100, 100, octaves=3, scale=1.0)


def test_step_moves_pixels_by_step_size_on_average():
    model = tiny_model()
    rgb = 0.4 + 0.2 * torch.rand(2, 3, 16, 16)          # far from 0 and 1: nothing clipped
    rgb[1] *= 0.5                                         # a second image, other gradients
    new = dd.dream_octave(model, rgb, "dream", steps=1, step_size=0.01, jitter=0, progress=False).image
    moved = (new - rgb).abs().flatten(1).mean(1)
    assert torch.allclose(moved, torch.full((2,), 0.01), atol=1e-6)   # x += η·g/mean|g|, per image
    # and the step goes uphill: the objective grew
    loss = dd.jittered_loss(model, "dream", jitter=0)
    assert (loss(new) < loss(rgb)).all()


def test_jitter_rolls_the_gradient_back():
    # with circular padding a roll is an exact symmetry of the network, so the gradient of
    # the jittered loss must equal the plain one if, and only if, it is rolled back correctly
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), nn.ReLU(),
                          nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular")).eval()
    model.spec = ModelSpec("tiny", "test", {"dream": "1"})
    rgb = torch.rand(1, 3, 16, 16, requires_grad=True)
    plain, = torch.autograd.grad(dd.jittered_loss(model, "dream", jitter=0)(rgb).sum(), rgb)
    shifted = dd.jittered_loss(model, "dream", jitter=6, generator=torch.Generator().manual_seed(3))
    jittered, = torch.autograd.grad(shifted(rgb).sum(), rgb)
    assert torch.allclose(plain, jittered, atol=1e-6)
    assert not torch.allclose(plain, torch.roll(plain, (1, 0), dims=(2, 3)))   # not trivially equal


def test_guided_objective_gradient_is_the_best_matching_guide_feature():
    guide = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).view(1, 2, 1, 2)   # two guide vectors
    a = torch.tensor([[3.0, 0.5], [1.0, 2.0]]).T.reshape(1, 2, 1, 2).clone().requires_grad_(True)
    # position 0 is (3, 1): closest to guide (1, 0); position 1 is (0.5, 2): to guide (0, 1)
    dd.guided_objective(guide)(a).sum().backward()
    assert torch.equal(a.grad.flatten(2)[0], torch.tensor([[1.0, 0.0], [0.0, 1.0]]))


def test_dream_raises_the_layer_norm_and_keeps_the_model(lite):
    x = lite.spec.preprocess("cat", size=96)
    before = dd.activation_norm(lite, x, "dream")
    flags = [p.requires_grad for p in lite.parameters()]
    out, octaves = dd.deepdream(lite, x, "dream", steps=3, progress=False, return_octaves=True)
    after = dd.activation_norm(lite, out, "dream")
    assert after.item() > 1.1 * before.item()
    assert [tuple(o.shape[-2:]) for o in octaves] == dd.octave_sizes(96, 96)
    rgb = lite.spec.denormalize(out)
    assert (rgb - lite.spec.denormalize(x)).abs().mean() > 0.01       # the image changed (3 steps of 1.5/255 per octave)
    assert rgb.min() >= -1e-5 and rgb.max() <= 1 + 1e-5                # stayed displayable
    assert count_hooks(lite) == 0 and [p.requires_grad for p in lite.parameters()] == flags
    assert not lite.training


def test_batch_equals_one_by_one():
    model = tiny_model()
    x = torch.rand(2, 3, 20, 20)
    both = dd.deepdream(model, x, "dream", steps=2, octaves=2, jitter=0, progress=False)
    one = torch.cat([dd.deepdream(model, x[i:i + 1], "dream", steps=2, octaves=2, jitter=0,
                                  progress=False) for i in range(2)])
    assert torch.allclose(both, one, atol=1e-5)


def test_unknown_layer_says_what_to_do(lite):
    with pytest.raises(KeyError, match="Roles"):
        dd.deepdream(lite, torch.zeros(1, 3, 32, 32), "blocks.99", progress=False)


def test_dream_time_grows_with_the_pixels_of_every_octave():
    sizes = dd.octave_sizes(320, 320, 4, 1.4)
    expected = 10 * 0.5 * sum(h * w for h, w in sizes) / 224 ** 2
    assert abs(dd.dream_seconds(0.5, 320, steps=10, octaves=4, octave_scale=1.4) - expected) < 1e-9
    assert dd.dream_seconds(0.5, 224, steps=10, octaves=1) == 5.0     # one octave at the measured size
    assert dd.dream_seconds(0.5, 448, steps=10, octaves=1) == 20.0    # twice the side: four times the time


def test_step_seconds_leaves_the_model_as_found(lite):
    flags = [p.requires_grad for p in lite.parameters()]
    assert 0 < dd.step_seconds(lite, "dream", size=64) < 60
    assert count_hooks(lite) == 0 and [p.requires_grad for p in lite.parameters()] == flags
    assert all(p.grad is None for p in lite.parameters())


def test_typical_wavelength_follows_the_period_not_the_amplitude():
    x = torch.arange(64.0).expand(64, 64)                 # column index, on every row

    def wave(period):
        return torch.sin(2 * torch.pi * x / period).expand(1, 3, 64, 64)
    fine, mid, coarse = (float(dd.typical_wavelength(wave(p))) for p in (4, 8, 32))
    assert abs(fine - 4) < 0.5 and abs(mid - 8) < 1 and fine < mid < coarse
    assert torch.allclose(dd.typical_wavelength(3 * wave(8) + 0.3), dd.typical_wavelength(wave(8)))
    noise = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    assert 2.3 < float(dd.typical_wavelength(noise)) < 2.9                      # white noise: about 2.6 px
