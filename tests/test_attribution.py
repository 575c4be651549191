"""Gradient attribution: hand-computed values on tiny nets, identities, and hygiene."""
import copy

import pytest
import torch
import torchvision
from torch import nn

from utils.attribution import (backward_rule, class_scores, completeness, count_functional_relus,
                               guided_backprop, input_gradient, integrated_gradients, saliency,
                               saliency_box, smoothgrad)
from utils.hooks import count_hooks
from utils.targets import TargetError


class ThreeUnits(nn.Module):
    """6 inputs -> 4 hidden units (one per input x0..x3) -> activation -> 2 class scores.

    x = (1, 2, -3, 7, 0, 0): unit A gets 1 (> 0), B gets 2 (> 0), C gets -3 (< 0), D gets 7
    (> 6, saturated if the activation is ReLU6). Class 0 sends back (2, -1, 4, 5).
    """

    def __init__(self, act):
        super().__init__()
        self.flat = nn.Flatten()
        self.hidden = nn.Linear(6, 4, bias=False)
        self.act = act
        self.out = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.eye(4, 6))
            self.out.weight.copy_(torch.tensor([[2.0, -1.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0]]))

    def forward(self, x):
        return self.out(self.act(self.hidden(self.flat(x))))


X6 = torch.tensor([1.0, 2.0, -3.0, 7.0, 0.0, 0.0]).view(1, 3, 1, 2)


@pytest.mark.parametrize("act, rule, expected", [
    # plain gradient: forward mask only -> A, B (and D for ReLU, not for saturated ReLU6)
    (nn.ReLU(), "gradient", [2, -1, 0, 5, 0, 0]),
    (nn.ReLU6(), "gradient", [2, -1, 0, 0, 0, 0]),
    # guided: forward mask AND positive back-signal -> B (negative) dropped
    (nn.ReLU(), "guided", [2, 0, 0, 5, 0, 0]),
    (nn.ReLU6(), "guided", [2, 0, 0, 0, 0, 0]),
    # deconvnet: positive back-signal only, forward mask ignored -> C passes, B dropped
    (nn.ReLU(), "deconvnet", [2, 0, 4, 5, 0, 0]),
    (nn.ReLU6(), "deconvnet", [2, 0, 4, 5, 0, 0]),
])
def test_relu_rules_match_hand_computed_values(act, rule, expected):
    net = ThreeUnits(act)
    grad = input_gradient(net, X6, 0, rule=rule)
    assert torch.equal(grad.flatten(), torch.tensor(expected, dtype=torch.float32))


def small_convnet(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 5)).double().eval()


def test_saliency_equals_finite_differences():
    net = small_convnet()
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    grad = input_gradient(net, x, 3)
    numeric = torch.zeros_like(x)
    h = 1e-6
    for i in range(x.numel()):
        e = torch.zeros(x.numel(), dtype=x.dtype)
        e[i] = h
        e = e.view_as(x)
        with torch.no_grad():
            numeric.view(-1)[i] = (net(x + e)[0, 3] - net(x - e)[0, 3]) / (2 * h)
    assert torch.allclose(grad, numeric, atol=1e-7)
    # saliency = max over colour channels of |gradient|
    assert torch.allclose(saliency(net, x, 3), numeric.abs().amax(dim=1))


def region_model():
    """A toy classifier that only looks at rows 8..15, columns 16..23 of a 32×32 image."""
    torch.manual_seed(1)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:16, 16:24] = 1

    class Region(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.relu = nn.ReLU()
            self.fc = nn.Linear(8, 3)
            self.register_buffer("mask", mask)

        def forward(self, x):
            return self.fc((self.relu(self.conv(x)) * self.mask).mean(dim=(2, 3)) * 16)

    return Region().eval()


def inside(flat_index, width=32):
    y, x = divmod(int(flat_index), width)
    return 8 <= y < 16 and 16 <= x < 24


def test_maps_peak_where_the_model_looks():
    net = region_model()
    x = torch.randn(2, 3, 32, 32)
    for m in (saliency(net, x, 1), guided_backprop(net, x, 1).abs().amax(1),
              smoothgrad(net, x, 1, samples=8).abs().amax(1)):
        for k in range(2):
            assert inside(m[k].argmax())
            assert m[k].sum() > 0
    # outside the region the gradient is exactly zero
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[8:16, 16:24] = False
    assert saliency(net, x, 1)[:, outside].abs().max() == 0


def test_every_method_on_a_batch_equals_per_image():
    net = small_convnet().float()
    x = torch.randn(3, 3, 8, 8)
    targets = [0, 4, 2]
    methods = {
        "saliency": lambda xb, t: saliency(net, xb, t),
        "guided": lambda xb, t: guided_backprop(net, xb, t),
        "deconvnet": lambda xb, t: input_gradient(net, xb, t, rule="deconvnet"),
        "smoothgrad": lambda xb, t: smoothgrad(net, xb, t, samples=6, batch_size=4, seed=3),
        "ig": lambda xb, t: integrated_gradients(net, xb, t, steps=10, batch_size=4),
    }
    for name, method in methods.items():
        batch = method(x, targets)
        single = torch.cat([method(x[i:i + 1], t) for i, t in enumerate(targets)])
        assert torch.allclose(batch, single, atol=1e-6), name


def test_integrated_gradients_completeness_on_tiny_net():
    net = small_convnet()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ig = integrated_gradients(net, x, [1, 2], steps=256)
    total, gap = completeness(net, x, [1, 2], ig)
    assert torch.allclose(total, gap, rtol=1e-3, atol=1e-4)


def test_integrated_gradients_completeness_real_model(lite):
    """Σ IG = S_c(x) - S_c(black) within 5 % at 64 steps on the bundled model and cat photo."""
    model = lite
    x = model.spec.preprocess("cat")
    black = model.spec.valid_range()[0]
    target = int(model(x).argmax())
    ig = integrated_gradients(model, x, target, baseline=black, steps=64)
    total, gap = completeness(model, x, target, ig, baseline=black)
    assert gap.item() > 1.0      # a real score difference, not 0 ≈ 0
    assert abs(total.item() - gap.item()) < 0.05 * abs(gap.item())


def model_state(model):
    return (copy.deepcopy(model.state_dict()), [m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [getattr(m, "inplace", None) for m in model.modules()])


def same_state(a, b):
    return (all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:])


def test_no_hook_left_and_model_unchanged_even_after_error():
    net = small_convnet().float().train()
    net[1].inplace = True                       # an in-place ReLU, as users often have
    before = model_state(net)
    x = torch.randn(2, 3, 8, 8)
    saliency(net, x, 1)
    guided_backprop(net, x, [1, 2])
    input_gradient(net, x, 1, rule="deconvnet")
    smoothgrad(net, x, 1, samples=4)
    integrated_gradients(net, x, 1, steps=4)
    with pytest.raises(RuntimeError):
        with backward_rule(net, "guided"):
            assert count_hooks(net) == 2        # one per ReLU module while inside
            raise RuntimeError("boom")
    assert count_hooks(net) == 0
    assert same_state(before, model_state(net))
    assert all(p.grad is None for p in net.parameters())


def test_guided_and_gradient_differ_and_guided_is_never_larger_in_hidden_layers():
    # guided backprop keeps a subset of plain-gradient paths: on a 1-hidden-layer ReLU net
    # with positive output weights both rules coincide
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():
        net[3].weight.abs_()
    x = torch.randn(4, 3, 2, 2)
    assert torch.allclose(input_gradient(net, x, 0), guided_backprop(net, x, 0))
    with torch.no_grad():
        net[3].weight[0, :2] *= -1
    assert not torch.allclose(input_gradient(net, x, 0), guided_backprop(net, x, 0))


def test_clear_errors():
    net = small_convnet().float()
    x = torch.randn(1, 3, 8, 8)
    with pytest.raises(TargetError, match="out of range"):
        saliency(net, x, 7)
    with pytest.raises(TargetError, match="one per image"):
        saliency(net, torch.randn(2, 3, 8, 8), [1, 2, 3])
    with pytest.raises(ValueError, match="Unknown rule"):
        input_gradient(net, x, 1, rule="lrp")
    with pytest.raises(ValueError, match="N×3×H×W"):
        saliency(net, x[0], 1)


def test_functional_relu_is_reported():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    net = Functional().eval()
    with pytest.raises(ValueError, match="F.relu"):
        guided_backprop(net, torch.randn(1, 3, 4, 4), 0)
    assert count_functional_relus(net, torch.randn(1, 3, 4, 4)) == 1
    assert count_functional_relus(small_convnet().float(), torch.randn(1, 3, 8, 8)) == 0
    googlenet = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    assert count_functional_relus(googlenet, torch.randn(1, 3, 64, 64)) == 57
    with pytest.raises(ValueError, match="deconvnet rule must drop"):
        input_gradient(googlenet, torch.randn(1, 3, 64, 64), 0, rule="deconvnet")


def test_guided_rule_reaches_googlenet_functional_relus():
    # GoogLeNet's BasicConv2d ends in F.relu. The same network with an nn.ReLU module in each
    # block instead (same weights) must give exactly the same guided backprop.
    torch.manual_seed(0)
    googlenet = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    modular = copy.deepcopy(googlenet)
    for name, block in list(modular.named_modules()):
        if type(block).__name__ == "BasicConv2d":
            parent, _, child = name.rpartition(".")
            setattr(modular.get_submodule(parent), child,
                    nn.Sequential(block.conv, block.bn, nn.ReLU()))
    x = torch.randn(2, 3, 64, 64)
    guided = guided_backprop(googlenet, x, [3, 7])
    scale = float(guided.abs().max())
    assert scale > 0
    assert torch.allclose(guided, guided_backprop(modular, x, [3, 7]), atol=1e-5 * scale)
    plain = input_gradient(googlenet, x, [3, 7])
    assert (guided - plain).abs().max() > 0.1 * scale                      # the rule acted
    assert count_hooks(googlenet) == 0


def test_rules_on_a_shared_relu_module_resnet():
    # ResNet calls one `relu` module several times per block; every call gets the rule
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(1, 3, 64, 64)
    guided = guided_backprop(net, x, 2)
    assert count_hooks(net) == 0
    assert not torch.allclose(guided, input_gradient(net, x, 2))
    assert torch.isfinite(guided).all() and guided.abs().sum() > 0


def test_class_scores_are_logits():
    net = small_convnet().float()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(class_scores(net, x, [1, 3]), net(x)[[0, 1], [1, 3]])


def test_saliency_box_boxes_the_largest_blob_not_a_stray_speck():
    m = torch.zeros(60, 80)
    m[20:40, 30:55] = 1.0                   # the object: 20 rows × 25 columns
    m[2:4, 2:4] = 5.0                       # a small, very bright speck far away
    box, mask = saliency_box(m, quantile=0.85, sigma=1.0)
    x0, y0, x1, y1 = box
    assert abs(x0 - 30) <= 3 and abs(x1 - 55) <= 3 and abs(y0 - 20) <= 3 and abs(y1 - 40) <= 3
    assert not mask[:6, :6].any()           # the speck is another, smaller component
    with pytest.raises(ValueError, match="H×W"):
        saliency_box(torch.zeros(3, 8, 8))


def test_class_saliencies_equal_the_saliency_of_each_class(lite):
    # the batched backward pass of an explorer's top classes gives each class its own map
    from utils.attribution import class_saliencies, saliency
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    classes = [3, 281, "tabby", 3]                   # an index, a label, a class twice
    maps = class_saliencies(lite, x, classes)
    one = torch.cat([saliency(lite, x, c) for c in classes])
    assert maps.shape == (4, 96, 96) and torch.allclose(maps, one, atol=1e-6 * float(one.max()))
    assert not torch.allclose(maps[0], maps[1])      # other classes, other maps
    assert count_hooks(lite) == 0 and all(p.grad is None for p in lite.parameters())
    with pytest.raises(ValueError, match="one image"):
        class_saliencies(lite, torch.zeros(2, 3, 32, 32), [1])
    with pytest.raises(TargetError):
        class_saliencies(lite, x, ["no such class"])
