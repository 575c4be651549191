"""CAM, Grad-CAM and relatives: identities, planted objects, batches, hygiene."""
import pytest
import torch
import torchvision
from torch import nn

from utils import cam as C
from utils.attribution import guided_backprop
from utils.hooks import count_hooks
from utils.models import REGISTRY, load_model
from utils.targets import TargetError


@pytest.fixture(scope="module")
def images(lite):
    return torch.cat([lite.spec.preprocess(name, size=128) for name in ("cat", "coffee", "flower")])


def snapshot(model):
    """Everything a method must leave as found. A tensor's ``_version`` counts its in-place
    changes, so equal versions and storage prove the weights were not touched (cheaply)."""
    return ([(k, v.data_ptr(), v._version) for k, v in model.state_dict().items()],
            [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [getattr(m, "inplace", None) for m in model.modules()])


def assert_unchanged(model, before):
    assert snapshot(model) == before
    assert count_hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())


# --------------------------------------------------------------------------- identities
def test_cam_equals_grad_cam_up_to_positive_scale_on_the_bundled_gap_network(lite, images):
    # y^c = Σ_k w_k^c (1/Z) Σ_ij A^k_ij + b  =>  α_k^c = w_k^c / Z  =>  Σ α A = CAM / Z.
    classes = [967, 285, 985]          # the cat image asked for "espresso": a mixed-sign map
    cam_maps = C.cam(lite, images, classes)
    _, _, acts, grads = C.class_gradients(lite, images, "last_conv", classes)
    linear = C.grad_cam_map(acts["last_conv"], grads["last_conv"][:, 0], relu=False)
    z = cam_maps.shape[-1] * cam_maps.shape[-2]
    assert torch.allclose(cam_maps, z * linear, rtol=1e-4, atol=1e-4)
    # and with Grad-CAM's ReLU: the positive part of CAM, divided by Z
    relu_maps = C.grad_cam(lite, images, classes)
    assert torch.allclose(relu_maps * z, cam_maps.clamp(min=0), rtol=1e-4, atol=1e-4)
    assert (cam_maps < 0).any()          # the ReLU really removed something


def test_cam_refuses_networks_without_gap_head():
    model = torchvision.models.get_model("alexnet", weights=None).eval()
    model.spec = REGISTRY["alexnet"]
    with pytest.raises(ValueError, match="grad_cam"):
        C.cam(model, torch.randn(1, 3, 96, 96))
    assert count_hooks(model) == 0


# --------------------------------------------------------------------------- planted objects
PATTERNS = {0: torch.tensor([[1., -1, 1], [-1, 1, -1], [1, -1, 1]]),   # checkerboard
            1: torch.tensor([[-1., 1, -1], [1, 1, 1], [-1, 1, -1]])}    # plus sign


class Planted(nn.Module):
    """Channel c of ``features`` is a matched filter for pattern c; class c reads channel c
    (plus small random weights on distractor channels)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.mul_(0.05)
            for c, p in PATTERNS.items():
                self.features[0].weight[c] = p / 3          # same filter on all colours
        self.pool = nn.Sequential(nn.Conv2d(6, 6, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(6, 2)
        with torch.no_grad():
            self.pool[0].weight.copy_(torch.eye(6)[:, :, None, None])
            self.pool[0].bias.zero_()
            self.fc.weight.copy_(0.05 * torch.randn(2, 6))
            self.fc.weight[0, 0] = self.fc.weight[1, 1] = 300.0   # decisive: softmax near 0 or 1

    def forward(self, x):
        return self.fc(self.pool(self.features(x)))


def planted_image(where):
    x = 0.1 * torch.randn(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    for c, (y, x0) in where.items():
        x[0, :, y:y + 3, x0:x0 + 3] = PATTERNS[c]
    return x


def test_grad_cam_peaks_on_the_planted_pattern_of_each_class():
    model = Planted().eval()
    x = planted_image({0: (3, 4), 1: (16, 17)})              # centres (4, 5) and (17, 18)
    for c, centre in [(0, (4, 5)), (1, (17, 18))]:
        heatmap = C.grad_cam(model, x, c, layer="features")[0]
        assert divmod(int(heatmap.argmax()), heatmap.shape[1]) == centre
        # class-discriminative: the other pattern's place gets (almost) nothing
        other = (17, 18) if c == 0 else (4, 5)
        assert heatmap[other] < 0.1 * heatmap.max()


def test_every_variant_finds_the_planted_pattern():
    model = Planted().eval()
    x = planted_image({0: (3, 4), 1: (16, 17)})
    for c, centre in [(0, (4, 5)), (1, (17, 18))]:
        maps = {method: C.grad_cam(model, x, c, "features", method)[0]
                for method in ("Grad-CAM++", "LayerCAM")}
        maps["Score-CAM"] = C.score_cam(model, x, c, "features", progress=False)[0]
        for method, heatmap in maps.items():
            assert divmod(int(heatmap.argmax()), heatmap.shape[1]) == centre, method
    assert count_hooks(model) == 0


def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_map(lite, images):
    classes = [285, 967, 985]
    product, guided, heatmap = C.guided_grad_cam(lite, images, classes)
    assert torch.allclose(guided, guided_backprop(lite, images, classes))
    expected = C.upsample(C.grad_cam(lite, images, classes), images.shape[-2:])
    assert torch.allclose(heatmap, expected, atol=1e-6)
    assert torch.allclose(product, guided * expected[:, None], atol=1e-9)


# --------------------------------------------------------------------------- batches, hygiene
def test_gradients_equal_those_of_a_fully_recorded_pass(lite, images):
    # class_gradients records the graph only from the earliest layer; a plain forward with
    # every layer recorded must give the same activations and gradients at every stage
    layers = lite.spec.layer("stages")
    classes = [285, 967, 985]
    _, _, acts, grads = C.class_gradients(lite, images, layers, classes)
    with torch.enable_grad(), C.capture_activations(lite, layers, detach=False) as full:
        logits = lite(images.clone().requires_grad_(True))
        score = logits.gather(1, torch.tensor(classes)[:, None]).sum()
        expected = torch.autograd.grad(score, [full[name] for name in layers])
    for name, grad in zip(layers, expected):
        assert torch.allclose(acts[name], full[name].detach(), atol=1e-5)
        assert torch.allclose(grads[name][:, 0], grad, atol=1e-6 * float(grad.abs().max()) + 1e-9)


def test_a_batch_gives_the_same_maps_as_single_calls(lite, images):
    classes = [281, 504, 985]
    # every gradient method is a per-image function of (A, ∂y/∂A): compare those, then one map
    _, _, acts, grads = C.class_gradients(lite, images, "blocks.10", classes)
    for i in range(3):
        _, _, one_act, one_grad = C.class_gradients(lite, images[i:i + 1], "blocks.10", classes[i])
        scale = float(one_grad["blocks.10"].abs().max())
        assert torch.allclose(grads["blocks.10"][i], one_grad["blocks.10"][0], atol=1e-4 * scale)
        assert torch.allclose(acts["blocks.10"][i], one_act["blocks.10"][0], atol=1e-4)
    batch = C.grad_cam(lite, images, classes, layer="blocks.10")
    single = torch.cat([C.grad_cam(lite, images[i:i + 1], classes[i], "blocks.10") for i in range(3)])
    assert torch.allclose(batch, single, atol=1e-4 * float(single.max()))
    batch = C.cam(lite, images, classes)
    assert torch.allclose(batch, torch.cat([C.cam(lite, images[i:i + 1], classes[i])
                                            for i in range(3)]), atol=1e-4)
    product, _, _ = C.guided_grad_cam(lite, images[:2], classes[:2])
    single = C.guided_grad_cam(lite, images[1:2], classes[1])[0]
    assert torch.allclose(product[1:2], single, atol=1e-6)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registry_model_works_and_is_left_unchanged(name):
    torch.manual_seed(0)
    if name == "efficientnet_lite0":
        model = load_model(name, device="cpu", verbose=False)
    else:
        kwargs = {"init_weights": True} if name == "googlenet" else {}
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        model.spec = REGISTRY[name]
    model.train()                                          # a method must not leave it in eval
    before = snapshot(model)
    x = torch.randn(2, 3, 64, 64)
    classes = [1, 7]
    layers = model.spec.layer("stages") + ["last_conv"]      # every depth, one pass
    _, _, acts, grads = C.class_gradients(model, x, layers, classes)
    maps = {name: C.grad_cam_map(acts[name], grads[name][:, 0]) for name in layers}
    assert all(torch.isfinite(m).all() and (m >= 0).all() for m in maps.values())
    assert grads["last_conv"].abs().sum() > 0              # the hooked tensor feeds the score
    single = C.grad_cam(model, x[1:], classes[1])
    assert torch.allclose(maps["last_conv"][1:], single, atol=1e-5 * float(single.max()) + 1e-12)
    product, _, _ = C.guided_grad_cam(model, x, classes)
    assert product.shape == x.shape and torch.isfinite(product).all()
    if name in ("resnet50", "googlenet", "efficientnet_lite0"):    # GAP networks
        z = maps["last_conv"].shape[-1] * maps["last_conv"].shape[-2]
        assert torch.allclose(C.cam(model, x, classes).clamp(min=0), z * maps["last_conv"],
                              atol=1e-4, rtol=1e-3)
    assert_unchanged(model, before)


def test_no_hook_remains_after_errors(lite, images):
    with pytest.raises(KeyError, match="Did you mean"):
        C.grad_cam(lite, images, layer="blocks.99")
    with pytest.raises(ValueError, match="no feature maps"):
        C.grad_cam(lite, images, layer="classifier")
    with pytest.raises(TargetError, match="out of range"):
        C.grad_cam(lite, images, target=1000)
    with pytest.raises(TargetError, match="one per image"):
        C.grad_cam(lite, images, target=[1, 2])
    with pytest.raises(ValueError, match="N×3×H×W"):
        C.cam(lite, images[0])
    with pytest.raises(RuntimeError):                    # fails inside the forward pass
        C.grad_cam(lite, torch.randn(1, 3, 2, 2))
    assert count_hooks(lite) == 0


def test_maps_are_computed_under_no_grad_in_train_mode_and_with_frozen_weights(lite, images):
    reference = C.grad_cam(lite, images[:1], 285)
    with torch.no_grad():
        assert torch.allclose(C.grad_cam(lite, images[:1], 285), reference)
    lite.requires_grad_(False)
    try:
        assert torch.allclose(C.grad_cam(lite, images[:1], 285), reference)
    finally:
        lite.requires_grad_(True)
    lite.train()
    try:
        assert torch.allclose(C.grad_cam(lite, images[:1], 285), reference)
        assert lite.training
    finally:
        lite.eval()


# --------------------------------------------------------------------------- boxes
def test_box_is_the_largest_component_above_the_fraction_of_the_raw_max():
    heatmap = torch.zeros(20, 30)
    heatmap[2:5, 3:6] = 10.0          # the maximum, but small (9 px)
    heatmap[10:18, 12:27] = 3.0       # weaker but large (120 px)
    heatmap -= 1.0                    # a negative background, as a raw CAM has
    assert C.bounding_box(heatmap, 0.2) == (12, 10, 27, 18)     # 3 - 1 >= 0.2 * 9
    assert C.bounding_box(heatmap, 0.5) == (3, 2, 6, 5)         # only the peak is left
    assert C.bounding_box(-torch.ones(4, 4), 0.2) is None
    # upsampled to the image: a 2×2 map on a 4×4 grid, top-left cell hot
    box = C.bounding_box(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 0.5, size=(40, 40))
    assert box[0] == 0 and box[1] == 0 and 10 <= box[2] <= 30 and 10 <= box[3] <= 30


# --------------------------------------------------------------------------- explorer / widget
def test_explorer_switches_class_without_a_forward_pass(lite, images):
    x = images[:1]
    explorer = C.CamExplorer(lite, x, layers=["blocks.10"], top=3)
    assert explorer.layers == ["blocks.10", "head"]          # CAM's layer is always cached
    calls = []
    handle = lite.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        cached = {(label, method): explorer.heatmap(label, "blocks.10", method)
                  for label in explorer.labels for method in C.GRADIENT_METHODS}
        cached.update({(label, "CAM"): explorer.heatmap(label, "blocks.10", "CAM")
                       for label in explorer.labels})
    finally:
        handle.remove()
    assert calls == []
    for label, c in zip(explorer.labels, explorer.classes[0].tolist()):
        _, _, acts, grads = C.class_gradients(lite, x, "blocks.10", c)      # a fresh pass
        for method, rule in C.GRADIENT_METHODS.items():
            fresh = rule(acts["blocks.10"], grads["blocks.10"][:, 0])[0]
            assert torch.allclose(cached[label, method], fresh, atol=1e-6)
        assert torch.allclose(cached[label, "CAM"], C.cam(lite, x, c)[0], atol=1e-4)
    probs = [p for _, p in explorer.predictions()]
    assert probs == sorted(probs, reverse=True) and explorer.labels[0] == "Egyptian cat"


def test_widget_controls_redraw_from_the_cache(lite, images, monkeypatch):
    explorer = C.CamExplorer(lite, images[:1], layers=["blocks.10"], top=3)
    seen = []
    monkeypatch.setattr(C, "update_explorer", lambda fig, e, label, layer, method: seen.append(
        (label, layer, method, e.heatmap(label, layer, method))))
    calls = []
    handle = lite.register_forward_pre_hook(lambda m, i: calls.append(1))
    try:
        ui = C.cam_widget(explorer)
        ui.controls["label"].value = explorer.labels[2]
        ui.controls["method"].value = "CAM"
        ui.controls["layer"].value = "blocks.10"
    finally:
        handle.remove()
    assert calls == []                                    # no forward pass for any of it
    assert [s[:3] for s in seen] == [
        (explorer.labels[0], "head", "Grad-CAM"), (explorer.labels[2], "head", "Grad-CAM"),
        (explorer.labels[2], "head", "CAM"), (explorer.labels[2], "blocks.10", "CAM")]
    assert torch.allclose(seen[2][3], C.cam(lite, images[:1], explorer.labels[2])[0], atol=1e-4)
    assert torch.equal(seen[3][3], seen[2][3])            # CAM always uses the GAP layer
