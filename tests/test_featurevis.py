"""Feature visualisation: the objectives, the 1/f Fourier and colour parametrisation against
their formulas, the three methods, and that the model is left as found."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from utils import featurevis as fv
from utils.hooks import ChannelError, count_hooks
from utils.models import ModelSpec
from utils.targets import TargetError

LABELS = ["zero", "one", "two", "three", "four"]


def tiny_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))
    model.spec = ModelSpec("tiny", "test", {"conv": "2"}, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           labels=LABELS)
    return model.eval()


def activations(model, rgb):
    x = model.spec.normalize(rgb)
    conv = model[2](model[1](model[0](x)))
    return conv, model[5](model[4](model[3](conv)))


def test_each_objective_reads_its_target():
    model = tiny_model()
    rgb = torch.rand(2, 3, 9, 11)
    conv, logits = activations(model, rgb)
    assert torch.allclose(fv.activation(model, fv.channel("conv", 1), rgb), conv[:, 1].mean((1, 2)), atol=1e-6)
    assert torch.allclose(fv.activation(model, fv.unit("conv", 2), rgb), conv[:, 2, 4, 5], atol=1e-6)
    assert torch.allclose(fv.activation(model, fv.unit("conv", 2, 1, 3), rgb), conv[:, 2, 1, 3], atol=1e-6)
    assert torch.allclose(fv.activation(model, fv.negative("conv", 1), rgb), -conv[:, 1].mean((1, 2)), atol=1e-6)
    assert torch.allclose(fv.activation(model, fv.channel_sum("conv", 0, 2), rgb),
                          conv[:, 0].mean((1, 2)) + conv[:, 2].mean((1, 2)), atol=1e-6)
    assert torch.allclose(fv.activation(model, fv.layer_objective("conv"), rgb),
                          0.5 * conv.pow(2).flatten(1).sum(1), atol=1e-5)
    assert torch.allclose(fv.activation(model, fv.class_logit("three"), rgb), logits[:, 3], atol=1e-6)
    # one channel per image: image 0 is scored on channel 2, image 1 on channel 0
    per_image = fv.activation(model, fv.channel("conv", [2, 0]), rgb)
    assert torch.allclose(per_image, torch.stack([conv[0, 2].mean(), conv[1, 0].mean()]), atol=1e-6)


@pytest.mark.parametrize("method", fv.METHODS)
def test_every_method_raises_its_objective_and_the_negative_lowers_it(method):
    model = tiny_model()
    channel = fv.channel("conv", 1)
    start = fv.visualize(model, channel, size=24, steps=1, method=method, transforms=False,
                         progress=False, seed=3)     # one step: about the start image
    up = fv.visualize(model, channel, size=24, steps=30, method=method, transforms=False,
                      progress=False, seed=3)
    down = fv.visualize(model, fv.negative("conv", 1), size=24, steps=30, method=method,
                        transforms=False, progress=False, seed=3)
    assert up.objective.item() > start.objective.item()
    assert fv.activation(model, channel, down.rgb).item() < fv.activation(model, channel, start.rgb).item()
    assert up.rgb.shape == (1, 3, 24, 24) and 0 <= up.rgb.min() and up.rgb.max() <= 1


def test_network_size_resizes_what_the_network_sees_not_the_image():
    model = tiny_model()
    seen = []
    handle = model[0].register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape[-1]))
    try:
        run = fv.visualize(model, fv.channel("conv", 1), size=24, steps=2, transforms=False,
                           network_size=40, progress=False)
        plain = len(seen)
        fv.visualize(model, fv.channel("conv", 1), size=24, steps=2, transforms=False, progress=False)
    finally:
        handle.remove()
    assert run.rgb.shape[-1] == 24
    assert 40 in seen[:plain] and 40 not in seen[plain:]        # counterfactual: without it, 24


def test_the_model_is_left_as_found_and_no_hook_stays():
    model = tiny_model().train()
    model[0].weight.requires_grad_(True)
    model[2].weight.requires_grad_(False)
    weights = [p.detach().clone() for p in model.parameters()]
    fv.visualize(model, fv.channel("conv", 0) + fv.channel("conv", 2), size=20, steps=3, n=2,
                 diversity_weight=1.0, progress=False)
    assert model.training and all(m.training for m in model.modules())
    assert model[0].weight.requires_grad and not model[2].weight.requires_grad
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    assert count_hooks(model) == 0
    with pytest.raises(ChannelError):
        fv.visualize(model, fv.channel("conv", 3), size=20, steps=3, progress=False)
    assert count_hooks(model) == 0 and model.training


def test_bad_layers_channels_and_classes_get_clear_errors_before_any_work():
    model = tiny_model()
    with pytest.raises(KeyError, match="No layer 'conv9'"):
        fv.visualize(model, fv.channel("conv9", 0), size=20, steps=1, progress=False)
    with pytest.raises(ChannelError, match=r"numbered 0\.\.2"):
        fv.visualize(model, fv.channel("conv", 3), size=20, steps=1, progress=False)
    with pytest.raises(ChannelError, match="outside"):
        fv.visualize(model, fv.unit("conv", 0, 40, 0), size=20, steps=1, progress=False)
    with pytest.raises(ChannelError):
        fv.visualize(model, fv.channel("conv", [0, 7]), size=20, steps=1, n=2, progress=False)
    with pytest.raises(ValueError, match="one per image"):
        fv.visualize(model, fv.channel("conv", [0, 1, 2]), size=20, steps=1, n=2, progress=False)
    with pytest.raises(TargetError):
        fv.visualize(model, fv.class_logit(9), size=20, steps=1, progress=False)
    with pytest.raises(TargetError):
        fv.visualize(model, fv.class_logit("seven"), size=20, steps=1, progress=False)
    with pytest.raises(ValueError, match="method"):
        fv.visualize(model, fv.channel("conv", 0), method="lucid", progress=False)
    with pytest.raises(TypeError, match="Objective"):
        fv.visualize(model, "conv", progress=False)
    assert count_hooks(model) == 0


def band_power(images, low, high):
    """Mean |X(f)|² of the images' orthonormal 2-D spectra over low <= |f| < high."""
    power = torch.fft.rfft2(images, norm="ortho").abs().pow(2)
    radius = fv.frequencies(*images.shape[-2:])
    band = (radius >= low) & (radius < high)
    return float(power[..., band].mean())


def test_white_noise_coefficients_give_a_one_over_f_spectrum():
    torch.manual_seed(0)
    noise = torch.randn(64, 3, 64, 33, 2)
    flat = fv.spectrum_to_image(noise, 64, 64, decay_power=0.0)   # no scaling: white noise
    scaled = fv.spectrum_to_image(noise, 64, 64, decay_power=1.0)
    # white noise has the same power in a low and a high band; scaled by 1/f, the power
    # falls as 1/f²: |f|·|X| is the same in both bands (a 4× higher band: 16× less power)
    assert band_power(flat, 0.05, 0.1) / band_power(flat, 0.3, 0.4) == pytest.approx(1, rel=0.1)
    low, high = band_power(scaled, 0.1, 0.11), band_power(scaled, 0.4, 0.41)
    assert low / high == pytest.approx((0.405 / 0.105) ** 2, rel=0.1)
    # and exactly: the image's spectrum is s(f)·z where z is Hermitian-consistent
    inner = fv.image_to_spectrum(scaled)[..., 1:32, :]
    assert torch.allclose(inner, noise[..., 1:32, :], atol=1e-4)


def test_spectrum_scale_is_one_over_frequency_with_the_constant_term_bounded():
    scale = fv.spectrum_scale(32, 48)
    radius = fv.frequencies(32, 48)
    assert scale.shape == (32, 25)
    assert torch.allclose(scale[radius > 1 / 48], 1 / radius[radius > 1 / 48])
    assert scale[0, 0] == pytest.approx(48)            # 1 / (1 / max(H, W))


def test_fourier_and_colour_round_trips_are_the_identity():
    torch.manual_seed(1)
    image = torch.randn(2, 3, 20, 27)                   # odd width too
    assert torch.allclose(fv.spectrum_to_image(fv.image_to_spectrum(image), 20, 27), image, atol=1e-5)
    assert torch.allclose(fv.rgb_to_decorrelated(fv.decorrelated_to_rgb(image)), image, atol=1e-5)
    rgb = fv.fourier_rgb(fv.image_to_spectrum(fv.rgb_to_decorrelated(image)), 20, 27)
    assert torch.allclose(rgb, torch.sigmoid(image), atol=1e-5)


def test_decorrelated_white_noise_gets_the_colour_covariance():
    torch.manual_seed(2)
    z = torch.randn(1, 3, 300, 300)
    rgb = fv.decorrelated_to_rgb(z)[0].flatten(1)
    C = fv.COLOR_CORRELATION
    assert torch.allclose(torch.cov(rgb), C @ C.T, atol=0.01)
    assert C.norm(dim=0).max() == pytest.approx(1)
    # the columns are principal axes: orthogonal, the first (brightness) the longest
    gram = C.T @ C
    assert (gram - torch.diag(gram.diagonal())).abs().max() < 0.02
    assert int(gram.diagonal().argmax()) == 0 and (C[:, 0] > 0).all()


def test_random_transform_sizes_and_its_identity_setting():
    rgb = torch.rand(2, 3, 40, 40)
    same = fv.random_transform(rgb, pad=0, jitter=(0, 0), scales=(1.0,), angles=(0,))
    assert torch.equal(same, rgb)
    moved = fv.random_transform(rgb, torch.Generator().manual_seed(0))
    assert moved.shape == (2, 3, 40 + 2 * fv.PAD - sum(fv.JITTER), 40 + 2 * fv.PAD - sum(fv.JITTER))


def test_high_frequency_share_of_noise_and_of_a_smooth_wave():
    torch.manual_seed(3)
    noise = torch.rand(4, 3, 128, 128)
    assert fv.high_frequency_share(noise).mean() == pytest.approx(1 - math.pi * 0.125 ** 2, abs=0.02)
    t = torch.arange(128.0)
    wave = 0.5 + 0.4 * torch.sin(2 * math.pi * t / 32).view(1, 1, 1, -1).expand(1, 3, 128, 128)
    assert fv.high_frequency_share(wave) < 1e-3


def test_yosinski_prior_decays_blurs_and_clears_the_smallest_pixels():
    mean = torch.full((1, 3, 1, 1), 0.5)
    x = 0.5 + 0.4 * (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) - 0.5)
    decayed = fv.yosinski_prior(x, mean, 0.1, 0, 0)
    assert torch.allclose(decayed - 0.5, 0.9 * (x - 0.5), atol=1e-6)
    cleared = fv.yosinski_prior(x, mean, 0.0, 0, 25)
    at_mean = (cleared == 0.5).all(dim=1)
    assert at_mean.float().mean() == pytest.approx(0.25, abs=1 / 256)
    norms = (x - 0.5).norm(dim=1)
    assert norms[at_mean].max() <= norms[~at_mean].min()
    blurred = fv.yosinski_prior(x, mean, 0.0, 1.0, 0)
    assert fv.high_frequency_share(blurred) < fv.high_frequency_share(x)


def test_diversity_is_one_for_copies_and_lower_for_different_images():
    model = tiny_model()
    same = torch.rand(1, 3, 16, 16).expand(3, 3, 16, 16)
    assert fv.gram_similarity(model, "conv", same) == pytest.approx(1, abs=1e-5)
    assert fv.gram_similarity(model, "conv", torch.rand(3, 3, 16, 16)) < 1
    diverse = fv.visualize(model, fv.channel("conv", 1), size=20, steps=40, n=3, method="naive",
                           diversity_weight=100.0, progress=False)
    plain = fv.visualize(model, fv.channel("conv", 1), size=20, steps=40, n=3, method="naive",
                         progress=False)
    assert fv.gram_similarity(model, "conv", diverse.rgb) < fv.gram_similarity(model, "conv", plain.rgb)


def test_survival_is_one_without_transformations_and_measures_loss_under_them():
    model = tiny_model()
    rgb = torch.rand(2, 3, 32, 32)
    kept = fv.survival(model, fv.layer_objective("conv"), rgb, draws=4)
    assert kept.shape == (2,) and (kept > 0).all()
    stripes = torch.zeros(1, 3, 32, 32)
    stripes[..., ::2, :] = 1.0                           # one-pixel stripes: a shift flips them
    unit = fv.unit("conv", 0)
    base = fv.activation(model, unit, stripes)
    shifted = fv.activation(model, unit, stripes.roll(1, dims=2))
    assert not torch.allclose(base, shifted)             # the unit depends on exact positions


def test_the_exercise_check_takes_the_reference_and_refuses_common_slips():
    from utils import exercises as X
    assert X.check_fourier_image(fv.spectrum_to_image)

    def times_f(z, h, w):                       # |f| instead of 1/|f|
        scale = fv.frequencies(h, w).clamp_min(1 / max(h, w))
        return torch.fft.irfft2(scale * torch.view_as_complex(z.contiguous()), s=(h, w), norm="ortho")

    def not_orthonormal(z, h, w):
        return torch.fft.irfft2(fv.spectrum_scale(h, w) * torch.view_as_complex(z.contiguous()), s=(h, w))

    def unbounded(z, h, w):                     # 1/|f| with the constant term left at 1/1e-6
        scale = 1 / fv.frequencies(h, w).clamp_min(1e-6)
        return torch.fft.irfft2(scale * torch.view_as_complex(z.contiguous()), s=(h, w), norm="ortho")
    assert not X.check_fourier_image(times_f)
    assert not X.check_fourier_image(not_orthonormal)
    assert not X.check_fourier_image(unbounded)


def test_channel_means_are_the_channel_objective_on_each_warped_region():
    from torchvision.transforms import functional as TF
    from utils import patches as P
    model = tiny_model()
    photos = [("a", P.load_image(np.uint8(np.random.default_rng(0).integers(0, 255, (40, 50, 3))))),
              ("b", P.load_image(np.uint8(np.random.default_rng(1).integers(0, 255, (60, 45, 3)))))]
    regions = P.propose_regions(photos, per_photo=3, seed=0)
    means = fv.channel_means(model, regions, ["conv"], 24, batch_size=4, progress=False)["conv"]
    assert means.shape == (6, 3)
    for r in (0, 4):
        rgb = TF.to_tensor(regions.warp(r, 24)).unsqueeze(0)
        assert np.allclose(means[r], [float(fv.activation(model, fv.channel("conv", c), rgb)) for c in range(3)],
                           atol=1e-5)
    assert count_hooks(model) == 0
