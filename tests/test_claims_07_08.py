"""The checked claims of notebooks 07 (texture synthesis) and 08 (style transfer): every
verdict function is run where its claim is false (and must say False) and where it is true.
Tiny tensors and tiny networks only."""
import types

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


def test_keeps_layout_uses_the_painting_as_the_bar():
    photo = _ramp()
    stylised = _ramp(noise=0.2, seed=1)                    # the photo's layout under strokes
    g = torch.Generator().manual_seed(2)
    painting = photo.reshape(-1, 3)[torch.randperm(64 * 64, generator=g)].reshape(64, 64, 3)
    assert style.keeps_layout(stylised, photo, painting)
    assert not style.keeps_layout(painting, photo, painting)          # the painting itself
    flipped = photo.flip(1)                                            # the layout mirrored
    assert not style.keeps_layout(flipped, photo, painting)


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


@pytest.mark.parametrize("wrong", [
    lambda f, p: 0.5 * ((f - p) ** 2).mean(),              # mean instead of sum
    lambda f, p: 0.5 * (f - p).abs().sum(),                 # L1
    lambda f, p: 0.5 * ((f - p).sum()) ** 2,                # square of the sum
])
def test_content_loss_check_refuses_plausible_mistakes(wrong, capsys):
    assert not X.check_content_loss(wrong)
