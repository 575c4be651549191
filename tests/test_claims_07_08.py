"""The checked claims of notebooks 07 (texture synthesis) and 08 (style transfer): every
verdict function is run where its claim is false (and must say False) and where it is true.
Tiny tensors and tiny networks only."""
import types

import numpy as np
import pytest
import torch
from torch import nn

from utils import exercises as X
from utils import style
from utils.hooks import count_hooks


# --- Gatys' normalisation -----------------------------------------------------------------

def _tiny_net(scale_last=1.0):
    """conv-ReLU-avgpool-conv-ReLU with a spec that names its layers like a registry model."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                        nn.Conv2d(4, 5, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        net[0].bias.fill_(0.1)
        net[3].bias.fill_(0.1)
        net[3].weight.mul_(scale_last)
        net[3].bias.mul_(scale_last)
    roles = {"texture": ["1", "4"], "style": ["1", "4"], "content": "4"}
    net.spec = types.SimpleNamespace(layers=roles, layer=roles.__getitem__,
                                     preprocess=lambda image, size=None, device=None: image)
    return net.eval()


IMAGES = [torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(3)]


def test_normalise_equals_rescaling_the_weights_as_the_paper_does():
    """Gatys et al. rescale each filter by 1/m and undo it in the next layer's weights; in a
    ReLU + average-pooling network that divides every feature map by its filter's mean,
    which is what ``features`` of a normalised network returns."""
    net = _tiny_net()
    normalised = style.normalise(net, IMAGES)
    m1, m2 = normalised.channel_means["1"], normalised.channel_means["4"]
    for layer, m in (("1", m1), ("4", m2)):
        pooled = torch.stack([style.features(normalised, x, [layer])[layer].mean((0, 2, 3)) for x in IMAGES])
        assert torch.allclose(pooled.mean(0), torch.ones_like(m), atol=1e-5)   # mean activation 1
    rescaled = _tiny_net()
    with torch.no_grad():
        rescaled[0].weight.div_(m1.view(-1, 1, 1, 1))
        rescaled[0].bias.div_(m1)
        rescaled[3].weight.mul_(m1.view(1, -1, 1, 1)).div_(m2.view(-1, 1, 1, 1))
        rescaled[3].bias.div_(m2)
    x = torch.rand(1, 3, 8, 8)
    ours = style.features(normalised, x, ["1", "4"])
    theirs = style.layer_outputs(rescaled, x, ["1", "4"])
    for layer in ours:
        assert torch.allclose(ours[layer], theirs[layer], atol=1e-5)
    assert not hasattr(net, "channel_means") and count_hooks(net) == 0   # the original unchanged


def test_neglected_layers_names_a_layer_only_when_it_barely_counts():
    # a network whose deeper layer works at a thousandth of the scale: its Gram entries are
    # a million times smaller, so it carries almost none of the loss until normalised
    net = _tiny_net(scale_last=1e-3)
    source, start = IMAGES[0], IMAGES[1]
    raw = style.layer_shares(net, start, style.source_grams(net, source, ["1", "4"]))
    assert style.neglected_layers(raw) == ["4"]
    normalised = style.normalise(net, IMAGES)
    shares = style.layer_shares(normalised, start, style.source_grams(normalised, source, ["1", "4"]))
    assert style.neglected_layers(shares) == []
    assert style.neglected_layers({"a": 0.5, "b": 0.45, "c": 0.05}) == []      # 0.05 > 0.1 / 3
    assert style.neglected_layers({"a": 0.5, "b": 0.47, "c": 0.03}) == ["c"]


def test_a_silent_filter_is_not_blown_up():
    net = _tiny_net()
    with torch.no_grad():
        net[0].bias[0] = -100.0                            # filter 0 never fires
    normalised = style.normalise(net, IMAGES)
    means = normalised.channel_means["1"]
    assert means[0] == pytest.approx(0.1 * float(means.median()))    # a tenth of the median, not ~0
    assert normalised.silent_share["1"] == pytest.approx(0.25)


def test_clearly_closer_needs_more_than_the_noise_starts_spread():
    assert style.clearly_closer(3.0, 4.0, spread=0.5)
    assert not style.clearly_closer(3.8, 4.0, spread=0.5)          # within chance
    assert not style.clearly_closer(4.6, 3.9, spread=0.3)          # farther: notebook 07's deep layers


def _bricks(seed=0, shift=0, size=64):
    """A 64 px brick wall, 8 px courses offset by half a 16 px brick, with faint noise (8-bit RGB)."""
    y, x = np.mgrid[0:size, 0:size]
    y = y + shift
    mortar = (y % 8 == 0) | ((x + 8 * ((y // 8) % 2)) % 16 == 0)
    gray = np.where(mortar, 0.9, 0.3) + 0.05 * np.random.default_rng(seed).standard_normal((size, size))
    return (np.clip(gray, 0, 1)[..., None].repeat(3, -1) * 255).astype(np.uint8)


def test_the_spectrum_is_blind_to_phase_and_the_edge_structure_is_not():
    wall, other_wall = _bricks(), _bricks(seed=1, shift=3)
    no_bricks = style.scrambled_phases(wall)                     # the wall's spectrum, no bricks
    # the power spectrum prefers the brickless picture to another wall (notebook 07's point)
    assert style.spectrum_distance(no_bricks, wall) < style.spectrum_distance(other_wall, wall)
    # the edge layout does not: another wall is near 0, the scrambled one far
    assert style.structure_distance(other_wall, wall) < 0.1 < 0.3 < style.structure_distance(no_bricks, wall)
    noise = (np.random.default_rng(0).uniform(0, 1, (64, 64, 3)) * 255).astype(np.uint8)
    assert style.structure_distance(noise, wall) > style.structure_distance(no_bricks, wall)
    # the verdict of notebook 07: a layer set clearly closer in edge layout than another
    spread = abs(style.structure_distance(other_wall, wall) - style.structure_distance(_bricks(seed=2), wall))
    assert style.clearly_closer(style.structure_distance(other_wall, wall),
                                style.structure_distance(no_bricks, wall), spread)
    assert not style.clearly_closer(style.structure_distance(no_bricks, wall),
                                    style.structure_distance(other_wall, wall), spread)


def test_scrambled_phases_keep_the_spectrum_and_the_mean():
    wall = _bricks()
    no_bricks = style.scrambled_phases(wall, seed=1)
    assert no_bricks.shape == wall.shape and no_bricks.dtype == np.uint8
    assert abs(float(no_bricks.mean()) - float(wall.mean())) < 3
    # its spectrum up to clipping: nearer the wall's than white noise's is
    assert style.spectrum_distance(no_bricks, wall) < style.spectrum_distance(_noise_image(), wall)


def _noise_image():
    return (np.random.default_rng(0).uniform(0, 1, (64, 64, 3)) * 255).astype(np.uint8)


# --- notebook 08's claims ----------------------------------------------------------------

def _ramp(noise=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, 64, dtype=torch.float64).expand(64, 64).unsqueeze(-1).expand(64, 64, 3)
    return (ramp + noise * torch.randn(64, 64, 1, generator=g, dtype=torch.float64)).clamp(0, 1)


def test_increasing_fails_on_any_inversion():
    assert style.increasing([6.9, 10.0, 34.9, 55.7])
    assert not style.increasing([6.9, 34.9, 10.0, 55.7])
    assert not style.increasing([5.0, 5.0])
    assert style.increasing(iter([1, 2]))                 # a generator, as the notebook passes


def test_tv_weight_rule_picks_the_closest_by_factor_and_the_photo_is_the_bar():
    details = {0: 3.15, 0.1: 1.45, 0.2: 1.1, 0.3: 0.81, 1: 0.35}     # × the painting's
    assert style.closest_detail(details) == 0.2
    assert style.closest_detail({0: 3.0, 1: 0.5}) == 1               # half is closer than 3×
    photo = 0.82
    assert style.detail_like_painting(1.1, photo)                     # off by 1.10 < 1.22
    assert style.detail_like_painting(0.85, photo)
    assert not style.detail_like_painting(1.45, photo)                # speckle: off by 1.45
    assert not style.detail_like_painting(0.6, photo)                 # smoother than the photo
    assert not style.detail_like_painting(3.15, photo)                # no TV at all


def test_palette_closer_to_the_painting_only_when_it_is():
    photo = _ramp() * 0.5                                  # dark
    painting = 0.5 + _ramp() * 0.5                         # bright
    assert style.palette_closer_to(painting * 0.95, painting, photo)
    assert not style.palette_closer_to(photo, painting, photo)


def test_balanced_ratio_makes_photo_and_painting_score_alike(lite):
    content = lite.spec.preprocess("palace", size=64)
    painting = lite.spec.preprocess("flower", size=80)      # resized to the content's size
    ratio = style.balanced_ratio(lite, content, painting)
    painting = nn.functional.interpolate(painting, size=(64, 64), mode="bilinear",
                                         align_corners=False, antialias=True)
    at, layers = style.content_layer(lite), style.style_layers(lite)
    grams = style.source_grams(lite, painting, layers)
    with torch.no_grad():
        photo_features = style.features(lite, content, [at])[at]
        photo_loss = style.style_transfer_loss(lite, content, photo_features, at, grams, ratio)[0]
        painting_loss = style.style_transfer_loss(lite, painting, photo_features, at, grams, ratio)[0]
    assert float(photo_loss) == pytest.approx(float(painting_loss), rel=1e-4)
    # at the paper's 1e-3 the two would not be balanced at all on this network
    assert not 0.1 < 1e-3 / ratio < 10


# --- the exercises' checks catch the plausible mistakes ----------------------------------

@pytest.mark.parametrize("wrong", [
    lambda f: f.flatten(2) @ f.flatten(2).transpose(1, 2) / f[0].numel(),        # ÷ C·H·W
    lambda f: f.flatten(2).transpose(1, 2) @ f.flatten(2) / f.shape[-1] ** 2,    # Fᵀ F
    lambda f: (f.flatten(2) @ f.flatten(2).transpose(1, 2))[0] / f[0, 0].numel(),  # first image only
])
def test_gram_check_refuses_plausible_mistakes(wrong, capsys):
    assert not X.check_gram_matrix(wrong)


def test_gram_by_hand_names_the_missing_one_over_m(capsys):
    assert X.check_gram_by_hand([[1.5, 1.25], [1.25, 2.75]])
    assert not X.check_gram_by_hand([[6, 5], [5, 11]])                 # the paper's F Fᵀ
    assert "divides it by M = 4" in capsys.readouterr().out


@pytest.mark.parametrize("wrong", [
    lambda f, p: 0.5 * ((f - p) ** 2).mean(),              # mean instead of sum
    lambda f, p: 0.5 * (f - p).abs().sum(),                 # L1
    lambda f, p: 0.5 * ((f - p).sum()) ** 2,                # square of the sum
])
def test_content_loss_check_refuses_plausible_mistakes(wrong, capsys):
    assert not X.check_content_loss(wrong)
