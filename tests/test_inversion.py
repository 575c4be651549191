"""Feature inversion by optimisation (Mahendran & Vedaldi): regularisers, schedule, and results."""
import pytest
import torch
import torchvision

from utils import inversion as inv
from utils.hooks import count_hooks
from utils.models import IMAGENET_MEAN, REGISTRY

# From a first run (64 px cat, 200 iterations, seeds 0-3): stem 19.1 dB, logits 15.4-15.8 dB. With margin.
STEM_PSNR_MIN = 18.0


def test_regularisers_by_hand():
    u = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])          # 1×1×2×2
    assert inv.alpha_norm(u, 6).item() == 1 + 64 + 0 + 1
    # forward differences, last row/column repeated: dx = [[1, 0], [-1, 0]], dy = [[-1, -3], [0, 0]]
    assert inv.tv_beta(u, 2).item() == (1 + 1) + (0 + 9) + (1 + 0) + 0
    assert torch.isclose(inv.tv_beta(u, 1), torch.tensor([2 ** 0.5 + 3 + 1]), atol=1e-3).all()


def test_schedule_is_the_papers_for_400_iterations():
    lrs = inv.step_schedule(400, lr=0.004)
    assert lrs[:100] == [0.004] * 100
    assert all(abs(v - 0.0004) < 1e-12 for v in lrs[100:300])
    assert all(abs(v - 0.00004) < 1e-12 for v in lrs[300:])


def test_caffe_units_round_trip(lite):
    rgb = torch.rand(1, 3, 8, 8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    u = 255 * (rgb - mean)                                     # Caffe units: 0–255, mean removed
    assert torch.allclose(inv.to_model_input(u, lite.spec), lite.spec.normalize(rgb), atol=1e-5)


def test_tv_weight_grows_with_depth(lite):
    assert inv.default_tv_lambda(lite, "first_conv") == 1.0
    assert inv.default_tv_lambda(lite, "blocks.7") == 10.0
    assert inv.default_tv_lambda(lite, "logits") == 100.0
    with pytest.raises(KeyError):
        inv.default_tv_lambda(lite, "blocks.99")


def test_tv_weight_keeps_the_papers_balance_at_other_sizes(lite):
    # the paper's constants at 227 px; a quarter of the pixels, a quarter of the weight
    assert inv.default_tv_lambda(lite, "logits", (3, 227, 227)) == pytest.approx(100.0)
    assert inv.default_tv_lambda(lite, "logits", (1, 3, 227, 227 // 4)) == pytest.approx(100.0 * 56 / 227)
    # why: the TV of a smooth picture does not change when it is resized, σ_x² follows the pixels
    def smooth_picture(side):
        t = torch.linspace(0, 1, side)
        wave = torch.sin(2 * torch.pi * t).view(-1, 1) * torch.cos(2 * torch.pi * t).view(1, -1)
        return 100 * wave.expand(1, 3, side, side)
    assert float(inv.tv_beta(smooth_picture(80))) == pytest.approx(float(inv.tv_beta(smooth_picture(160))), rel=0.05)
    assert inv.typical_norm((3, 160, 160)) ** 2 == pytest.approx(4 * inv.typical_norm((3, 80, 80)) ** 2)


def test_objective_falls_and_shallow_code_reconstructs_better(lite):
    x = lite.spec.preprocess("cat", size=64)
    flags = [p.requires_grad for p in lite.parameters()]
    result = inv.invert(lite, x.repeat(2, 1, 1, 1), ["stem", "logits"], steps=200, progress=False)
    assert result.losses[-1] < 0.05 * result.losses[0]
    assert all(d_end < d_start for d_start, d_end in zip(result.data_terms[0], result.data_terms[-1]))
    assert result.data_terms[-1][0] < 0.1            # the first block's code is matched closely
    stem, logits = inv.psnr(result.images, x.repeat(2, 1, 1, 1), lite.spec).tolist()
    assert stem > STEM_PSNR_MIN
    assert stem > logits + 2
    assert count_hooks(lite) == 0 and [p.requires_grad for p in lite.parameters()] == flags


def test_layer_count_must_match(lite):
    with pytest.raises(ValueError, match="one per image"):
        inv.invert(lite, torch.zeros(3, 3, 32, 32), ["stem", "logits"], steps=1, progress=False)


def test_a_step_too_large_falls_back_instead_of_giving_nan(lite):
    x = lite.spec.preprocess("cat", size=32)
    result = inv.invert(lite, x, "logits", steps=20, lr=0.2, progress=False)
    assert torch.isfinite(result.images).all()
    assert result.losses[-1] <= result.losses[0]


def test_tv_weights_of_several_layers_in_one_pass(lite):
    layers = ["first_conv", "blocks.7", "logits"]
    assert inv.default_tv_lambdas(lite, layers) == [inv.default_tv_lambda(lite, layer) for layer in layers]
    with pytest.raises(KeyError):
        inv.default_tv_lambdas(lite, ["stem", "blocks.99"])


def test_alexnet_inverts_at_64_px():
    # its pool5 has nothing left to pool below 64 px: the layer order must not be probed at 32 px
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet(weights=None).eval()
    alexnet.spec = REGISTRY["alexnet"]
    assert inv.default_tv_lambdas(alexnet, ["features.1", "features.9", "logits"]) == [1.0, 10.0, 100.0]
    x = alexnet.spec.preprocess("cat", size=64)
    result = inv.invert(alexnet, x.repeat(2, 1, 1, 1), ["features.11", "logits"], steps=3, progress=False)
    assert torch.isfinite(result.images).all() and result.images.shape == (2, 3, 64, 64)


def test_layout_correlation_compares_where_the_edges_are(lite):
    spec = lite.spec
    rgb = torch.zeros(1, 3, 64, 64)
    rgb[..., 8:28, 8:24] = torch.tensor([0.9, 0.6, 0.3]).view(1, 3, 1, 1)    # an orange box on black
    x = spec.normalize(rgb)
    false_colours = spec.normalize(torch.where(rgb > 0, torch.tensor([0.2, 0.8, 0.9]).view(1, 3, 1, 1),
                                               torch.tensor([0.7, 0.1, 0.6]).view(1, 3, 1, 1)))
    noise = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    noisy = spec.normalize((rgb + 0.1 * noise).clamp(0, 1))
    moved = spec.normalize(rgb.roll((30, 30), dims=(-2, -1)))
    flat = spec.normalize(0.5 + 0.01 * noise.abs())
    batch = torch.cat([x, false_colours, noisy, moved, flat])
    r = inv.layout_correlation(batch, x.expand(5, -1, -1, -1), spec)
    assert torch.allclose(r[:2], torch.ones(2), atol=1e-5)   # the same edges, whatever the colours
    assert r[2] > 0.9                                          # pixel noise averages out at 32×32
    assert r[3] < 0.3 and abs(r[4]) < 0.3                      # edges elsewhere, or none: about 0
    assert inv.edge_map(torch.rand(2, 3, 64, 48)).shape == (2, 31, 31)


def test_seconds_per_iteration_leaves_the_model_as_found(lite):
    flags = [p.requires_grad for p in lite.parameters()]
    x = lite.spec.preprocess("cat", size=32)
    seconds = inv.seconds_per_iteration(lite, x, ["stem", "logits"])
    assert 0 < seconds < 60
    assert count_hooks(lite) == 0 and [p.requires_grad for p in lite.parameters()] == flags
    assert all(p.grad is None for p in lite.parameters())
