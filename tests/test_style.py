"""Texture synthesis and style transfer (utils/style.py) and the image optimiser (utils/optimize.py)."""
import math
import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from utils import style
from utils.hooks import capture_activations, count_hooks
from utils.images import ImageError
from utils.models import REGISTRY, load_model
from utils.optimize import optimize_image, white_noise_like

FAST_STEPS = 30          # what notebook 07 runs in fast mode


@pytest.fixture(scope="module")
def brick(lite):
    return lite.spec.preprocess("brick", size=64)


def test_gram_matrix_by_hand():
    # two channels over four positions: a = (1, 2, 0, -1), b = (3, 0, 1, 1)
    f = torch.tensor([[[[1., 2.], [0., -1.]], [[3., 0.], [1., 1.]]]])
    aa, ab, bb = 1 + 4 + 0 + 1, 3 + 0 + 0 - 1, 9 + 0 + 1 + 1
    expected = torch.tensor([[aa, ab], [ab, bb]]) / 4
    assert torch.allclose(style.gram_matrix(f)[0], expected)


def test_gram_of_a_batch_equals_each_image():
    f = torch.randn(3, 5, 4, 6)
    batch = style.gram_matrix(f)
    for i in range(3):
        assert torch.allclose(batch[i], style.gram_matrix(f[i:i + 1])[0], atol=1e-6)


def test_gram_loss_by_hand():
    g, t = torch.zeros(1, 2, 2), torch.tensor([[[1., 2.], [0., 3.]]])
    # ||G - T||^2 = 1 + 4 + 0 + 9 = 14; / (4 N^2) with N = 2 -> 14 / 16; weight 0.5
    assert style.gram_loss({"a": g}, {"a": t}, {"a": 0.5}).item() == pytest.approx(0.5 * 14 / 16)


def test_total_variation_by_hand():
    x = torch.tensor([[[[0., 1.], [2., 4.]]]])
    # right differences 1, 2 -> squares 1, 4, mean 2.5; down differences 2, 3 -> 4, 9, mean 6.5
    assert style.total_variation(x).item() == pytest.approx(9.0)
    assert style.total_variation(torch.ones(1, 3, 8, 8)).item() == 0


def test_style_loss_of_an_image_with_itself_is_zero(lite, brick):
    layers = style.style_layers(lite)
    targets = style.source_grams(lite, brick, layers)
    grams = {k: style.gram_matrix(f) for k, f in style.layer_outputs(lite, brick, layers).items()}
    assert style.gram_loss(grams, targets).item() == 0
    other = lite.spec.preprocess("gravel", size=64)
    grams = {k: style.gram_matrix(f) for k, f in style.layer_outputs(lite, other, layers).items()}
    assert style.gram_loss(grams, targets).item() > 0


def test_gram_is_blind_to_position_content_is_not(lite, brick):
    # a circular shift moves every feature but keeps (almost) all co-occurrences
    layers = style.texture_layers(lite)[:2]
    shifted = torch.roll(brick, shifts=(16, 16), dims=(2, 3))
    targets = style.source_grams(lite, brick, layers)
    grams = {k: style.gram_matrix(f) for k, f in style.layer_outputs(lite, shifted, layers).items()}
    relative_gram = style.gram_loss(grams, targets) / sum((t ** 2).sum() / (4 * t.shape[-1] ** 2)
                                                          for t in targets.values())
    layer = style.content_layer(lite)
    f0 = style.layer_outputs(lite, brick, [layer])[layer]
    f1 = style.layer_outputs(lite, shifted, [layer])[layer]
    relative_content = ((f1 - f0) ** 2).sum() / (f0 ** 2).sum()
    assert relative_gram < 0.05 < relative_content


def test_early_stop_gives_the_same_features(lite, brick):
    layers = ["stem", "blocks.3.expand"]
    with torch.no_grad():
        fast = style.layer_outputs(lite, brick, layers)
        with capture_activations(lite, layers) as full:
            lite(brick)
    for name in layers:
        assert torch.equal(fast[name], full[name])
    assert count_hooks(lite) == 0


def test_texture_loss_falls_tenfold_and_model_is_untouched(lite, brick):
    before = {k: v.clone() for k, v in lite.state_dict().items()}
    flags = {n: p.requires_grad for n, p in lite.named_parameters()}
    lite.train()                                      # the method must restore this too
    result = style.synthesise_texture(lite, brick, steps=FAST_STEPS, noise=0.1, progress=False)
    assert result.losses[0] / min(result.losses) >= 10
    assert all(torch.equal(before[k], v) for k, v in lite.state_dict().items())
    assert all(p.grad is None for p in lite.parameters())
    assert {n: p.requires_grad for n, p in lite.named_parameters()} == flags
    assert lite.training                              # mode restored as found
    assert count_hooks(lite) == 0
    lite.eval()
    low, high = lite.spec.valid_range()
    assert (result.image >= low - 1e-6).all() and (result.image <= high + 1e-6).all()


def test_style_transfer_loss_falls_and_reruns_identically(lite):
    content = lite.spec.preprocess("cat", size=64)
    painting = lite.spec.preprocess("flower", size=80)        # resized to the content size
    runs = [style.transfer_style(lite, content, painting, ratio=1e-5, steps=10, init="content",
                                 tv_weight=1.0, progress=False) for _ in range(2)]
    # the same image up to rounding: on one CPU thread the backend's first passes round
    # differently in the last bits (1e-5), which ten L-BFGS steps grow to ~3e-3; a run that
    # kept state from the previous one (optimiser, start image) would differ by far more
    assert (runs[0].image - runs[1].image).abs().max() < 0.02
    assert runs[0].losses[-1] < runs[0].losses[0]
    assert set(runs[0].parts) == {"content", "style", "tv"}
    with pytest.raises(ValueError, match="init must be"):
        style.transfer_style(lite, content, painting, steps=1, init="zeros", progress=False)


def test_optimizer_minimises_a_quadratic_and_clamps():
    target = torch.tensor([[0.3, -2.0, 5.0]])
    low, high = torch.tensor(-1.0), torch.tensor(1.0)
    result = optimize_image(lambda x: ((x - target) ** 2).sum(), torch.zeros(1, 3), steps=20,
                            low=low, high=high, progress=False)
    assert torch.allclose(result.image, torch.tensor([[0.3, -1.0, 1.0]]), atol=1e-4)
    for name in ("adam", "sgd"):
        r = optimize_image(lambda x: ((x - 0.5) ** 2).sum(), torch.zeros(1, 3), 200,
                           optimizer=name, lr=0.1, progress=False)
        assert torch.allclose(r.image, torch.full((1, 3), 0.5), atol=1e-2)


def test_lbfgs_line_search_shortens_a_step_that_overshoots():
    # Rosenbrock's valley: from (-1.2, 1) the first quasi-Newton steps overshoot. With no
    # line-search evaluation left (torch's default max_eval for max_iter=1), a rejected step
    # is rejected again at every iteration and x never leaves the start.
    def rosenbrock(x):
        a, b = x[0, 0], x[0, 1]
        return (1 - a) ** 2 + 100 * (b - a * a) ** 2

    run = optimize_image(rosenbrock, torch.tensor([[-1.2, 1.0]]), 100, progress=False)
    assert torch.allclose(run.image, torch.ones(1, 2), atol=1e-3)
    assert run.evaluations < 2 * 100          # a step's start is not evaluated twice


def test_lbfgs_does_not_depend_on_the_loss_scale():
    # a loss of order 1e-8 (a network with random weights gives such Gram losses) must be
    # minimised as well as the same loss at order 1
    target = torch.tensor([[0.3, -2.0, 5.0]])
    runs = [optimize_image(lambda x, s=scale: s * ((x - target) ** 2).sum(), torch.zeros(1, 3), 20,
                           progress=False) for scale in (1.0, 1e-8)]
    for run in runs:
        assert torch.allclose(run.image, target, atol=1e-4)
    assert runs[1].losses[0] == pytest.approx(1e-8 * float((target ** 2).sum()))   # own units


def test_optimizer_stops_cleanly_and_keeps_x0():
    x0 = torch.zeros(1, 3)
    stop = threading.Event()
    calls = []

    def loss(x):
        calls.append(1)
        if len(calls) == 3:
            stop.set()                                   # "Stop" pressed during the run
        return ((x - 1) ** 2).sum()

    result = optimize_image(loss, x0, steps=100, stop=stop, progress=False)
    assert result.stopped and len(result.losses) < 10
    assert torch.equal(x0, torch.zeros(1, 3))            # the start image is never modified

    def interrupted(x):
        if x.requires_grad and len(calls) > 2:
            raise KeyboardInterrupt                      # the kernel's ■ button
        calls.append(1)
        return ((x - 1) ** 2).sum()

    calls.clear()
    result = optimize_image(interrupted, x0, steps=100, progress=False)
    assert result.stopped and result.losses[-1] < result.losses[0]
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimize_image(loss, x0, 1, optimizer="newton")


def test_sgd_with_momentum_and_schedule_is_the_papers_update():
    # Mahendran & Vedaldi: v <- μv − lr·g, x <- x + v, v reset to 0 when lr changes
    target = torch.tensor([[1.0, -2.0, 0.5]])
    loss = lambda x: ((x - target) ** 2).sum()               # noqa: E731
    rates = [0.1] * 4 + [0.01] * 4
    run = optimize_image(loss, torch.zeros(1, 3), 8, optimizer="sgd", momentum=0.9, lr=rates,
                         keep="last", progress=False)
    x, v = torch.zeros(1, 3), torch.zeros(1, 3)
    for t, rate in enumerate(rates):
        if t and rate != rates[t - 1]:
            v = torch.zeros(1, 3)
        v = 0.9 * v - rate * 2 * (x - target)
        x = x + v
    assert torch.allclose(run.image, x, atol=1e-6)
    with pytest.raises(ValueError, match="schedule"):
        optimize_image(loss, torch.zeros(1, 3), 8, optimizer="sgd", lr=[0.1] * 3, progress=False)


def test_each_image_keeps_its_best_point_and_a_blow_up_restarts():
    # image 0: a gentle quadratic; image 1: so steep that plain steps of this size diverge
    curvature = torch.tensor([1.0, 30.0])
    loss = lambda x: curvature * ((x - 1) ** 2).flatten(1).sum(1)     # noqa: E731  one loss per image
    x0 = torch.zeros(2, 4)
    run = optimize_image(loss, x0, 12, optimizer="sgd", lr=0.2, progress=False)
    assert torch.allclose(run.image[0], torch.ones(4), atol=1e-2)     # converged
    assert torch.equal(run.image[1], x0[1])                           # diverged: its best is the start
    assert run.losses[-1] == pytest.approx(float(loss(run.image).sum()))
    rescued = optimize_image(loss, x0, 60, optimizer="sgd", lr=0.2, blowup=10, progress=False)
    assert rescued.restarts >= 1
    assert torch.allclose(rescued.image, torch.ones(2, 4), atol=1e-3)  # the halved step converges


def test_optimizer_reports_nan():
    with pytest.raises(FloatingPointError, match="NaN"):
        optimize_image(lambda x: (x * float("nan")).sum(), torch.zeros(1, 3), 2, progress=False)


def test_white_noise_fills_the_range():
    low, high = torch.tensor(-1.0), torch.tensor(1.0)
    g = torch.Generator().manual_seed(0)
    full = white_noise_like(torch.zeros(1, 3, 32, 32), low, high, generator=g)
    faint = white_noise_like(torch.zeros(1, 3, 32, 32), low, high, amplitude=0.1, generator=g)
    assert full.min() < -0.9 and full.max() > 0.9
    assert faint.abs().max() <= 0.1 + 1e-6


def test_average_pooling_swaps_on_a_copy():
    alexnet = torchvision.models.alexnet(weights=None)
    copy, swapped = style.average_pooling(alexnet)
    assert swapped == 3
    assert isinstance(alexnet.features[2], nn.MaxPool2d)        # the original is untouched
    assert isinstance(copy.features[2], nn.AvgPool2d)
    assert all(p.requires_grad for p in alexnet.parameters())
    assert torch.equal(copy.features[0].weight, alexnet.features[0].weight)
    x = torch.rand(1, 3, 8, 8)
    assert torch.allclose(copy.features[2](x), nn.functional.avg_pool2d(x, 3, 2))


def test_average_pooling_on_the_bundled_model(lite):
    _, swapped = style.average_pooling(lite)
    assert swapped == 0                                  # EfficientNet-Lite0 has no max-pool


@pytest.mark.parametrize("name", list(REGISTRY))
def test_layer_roles_exist_on_every_model(name):
    if name == "efficientnet_lite0":
        model = load_model(name, device="cpu", verbose=False)
    else:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None, init_weights=False) \
                if name in ("googlenet",) else torchvision.models.get_model(name, weights=None)
        model.spec = REGISTRY[name]
    for layer in style.texture_layers(model) + style.style_layers(model) + [style.content_layer(model)]:
        model.get_submodule(layer)
    assert len(style.style_layers(model)) == 5


def test_vgg19_texture_layers_are_the_papers():
    vgg = torchvision.models.vgg19
    with torch.device("meta"):
        model = vgg(weights=None)
    model.spec = REGISTRY["vgg19"]
    kinds = [type(model.get_submodule(p)).__name__ for p in style.texture_layers(model)]
    assert kinds == ["ReLU", "MaxPool2d", "MaxPool2d", "MaxPool2d", "MaxPool2d"]
    assert style.texture_layers(model)[0] == "features.1"          # relu1_1
    assert style.content_layer(model) == "features.22"             # relu4_2


def test_style_image_falls_back_offline_and_uses_the_painting_online(tmp_path, monkeypatch,
                                                                       capsys):
    image = style.style_image("starry_night", tmp_path)          # tests run offline
    assert "bundled copy 'starry_night.jpg'" in capsys.readouterr().out
    assert image.size == (480, 377)                   # the painting, 752×600 shrunk, frame cropped
    assert list(tmp_path.iterdir()) == []                        # nothing half-downloaded
    # online, with the "download" served from a local file: the painting comes back
    from PIL import Image
    painting = tmp_path / "painting.png"
    Image.new("RGB", (64, 48), (10, 20, 200)).save(painting)
    monkeypatch.setitem(style.PAINTINGS, "test_painting",
                        dict(style.PAINTINGS["starry_night"], url=painting.as_uri()))
    image = style.style_image("test_painting", tmp_path / "cache")
    assert image.size == (64, 48) and image.getpixel((0, 0)) == (10, 20, 200)


def test_a_batch_is_refused_instead_of_changing_one_image(lite, brick):
    """A batch of two used to give one result per image, silently coupled by L-BFGS (or
    blended styles): each method now makes one image per call and says so."""
    two = brick.repeat(2, 1, 1, 1)
    calls = []
    handle = lite.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(ImageError, match=r"source is a batch of 2 images; pass one image"):
            style.synthesise_texture(lite, two, steps=1, progress=False)
        with pytest.raises(ImageError, match=r"init is a batch of 2 images"):
            style.synthesise_texture(lite, brick, steps=1, init=two, progress=False)
        with pytest.raises(ImageError, match=r"content is a batch of 2 images"):
            style.transfer_style(lite, two, brick, steps=1, progress=False)
        with pytest.raises(ImageError, match=r"style is a batch of 2 images"):
            style.transfer_style(lite, brick, two, steps=1, progress=False)
        with pytest.raises(ImageError, match=r"must be the content's"):
            style.transfer_style(lite, brick, brick, steps=1, init=brick[..., :32], progress=False)
    finally:
        handle.remove()
    assert calls == []                                  # refused before any forward pass


# --- the random-weight VGG-19 and the texture judge -------------------------------------------

def test_random_vgg19_is_seeded_named_and_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))                  # an empty weights cache
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = load_model("vgg19", "cpu", weights="random")
    assert torch.equal(torch.rand(1), expected_next)                 # the caller's stream untouched
    again = load_model("vgg19", "cpu", weights="random")
    other = load_model("vgg19", "cpu", weights="random", seed=1)
    assert first.spec.name == "vgg19 (random weights)" != REGISTRY["vgg19"].name
    assert first.spec.layers == REGISTRY["vgg19"].layers
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.features[0].weight, other.features[0].weight)
    assert list(tmp_path.iterdir()) == []                            # nothing downloaded or cached
    with pytest.raises(ValueError, match="pretrained"):
        load_model("vgg19", "cpu", weights="imagenet")


def test_random_lite0_is_seeded_named_and_untrained(lite):
    first = load_model("efficientnet_lite0", "cpu", weights="random")
    again = load_model("efficientnet_lite0", "cpu", weights="random")
    assert first.spec.name == "efficientnet_lite0 (random weights)"
    assert first.spec.layers == lite.spec.layers
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.stem[0].weight, lite.stem[0].weight)
    assert torch.equal(first.stem[1].running_var, torch.ones_like(first.stem[1].running_var))


def _brick_crop(box, size=128):
    from PIL import Image
    from utils.images import load_image
    crop = load_image("brick").crop(box).resize((size, size), Image.BICUBIC)
    return torch.tensor(np.asarray(crop), dtype=torch.float64) / 255


def _shuffle_tiles(image, tile, generator):
    h, w, c = image.shape
    tiles = image.reshape(h // tile, tile, w // tile, tile, c).transpose(1, 2).reshape(-1, tile, tile, c)
    tiles = tiles[torch.randperm(len(tiles), generator=generator)]
    return tiles.reshape(h // tile, w // tile, tile, tile, c).transpose(1, 2).reshape(h, w, c)


def test_spectrum_distance_prefers_real_brick_over_noise_and_shuffled_brick():
    g = torch.Generator().manual_seed(0)
    source = _brick_crop((0, 0, 256, 256))                            # a quarter of the photo
    real = _brick_crop((256, 256, 512, 512))                          # another quarter: other bricks
    fake = {"white noise": torch.rand(source.shape, generator=g, dtype=torch.float64),
            "shuffled pixels": _shuffle_tiles(source, 1, g),
            "shuffled 8-px tiles": _shuffle_tiles(source, 8, g),
            "flat gray": torch.full(source.shape, float(source.mean()), dtype=torch.float64)}
    to_real = style.spectrum_distance(real, source)
    assert style.spectrum_distance(source, source) == 0
    for name, image in fake.items():
        assert to_real < style.spectrum_distance(image, source) - 2, name   # at least 2 dB worse


def test_band_energies_by_hand():
    # vertical stripes with a period of 64/6 ≈ 10.7 px: their energy is in ring 2 (periods
    # 8-16 px), wedge 0 (horizontal frequency: vertical edges)
    x = torch.arange(64, dtype=torch.float64)
    stripes = (0.5 + 0.4 * torch.cos(2 * math.pi * x * 6 / 64)).expand(64, 64)
    energies = style.band_energies(stripes.unsqueeze(-1).expand(64, 64, 3).numpy())
    assert energies.argmax() == 2 * energies.shape[1] + 0
    assert energies[2, 0] / energies.sum() > 0.95
    assert torch.allclose(style.band_energies(stripes.T.unsqueeze(-1).expand(64, 64, 3).numpy())[2, 2],
                          energies[2, 0])                             # turned 90°: wedge 2
    with pytest.raises(ImageError, match="too small"):
        style.band_energies(np.zeros((32, 32, 3)))
    with pytest.raises(ImageError, match="one size"):
        style.spectrum_distance(np.zeros((64, 64, 3)), np.zeros((96, 64, 3)))


def test_colour_distance_by_hand():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(64, 48, 3, generator=g, dtype=torch.float64) * 0.8
    shuffled = image.reshape(-1, 3)[torch.randperm(64 * 48, generator=g)].reshape(64, 48, 3)
    assert style.colour_distance(shuffled, image) == pytest.approx(0, abs=1e-9)   # same palette
    assert style.colour_distance(image + 10 / 255, image) == pytest.approx(10, abs=1e-6)
    uint8 = (image.numpy() * 255).round().astype(np.uint8)
    assert style.colour_distance(uint8, image) < 0.5                  # a PIL-like image: 0-255
    with pytest.raises(ImageError, match="H×W×3"):
        style.colour_distance(np.zeros((8, 8)), image)
