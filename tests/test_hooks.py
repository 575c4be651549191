"""Hooks are always removed; the guard restores the model exactly."""
import pytest
import torch
from torch import nn

from utils.hooks import (capture_activations, count_hooks, graph_from_layers,
                         model_guard, resolve_layer, unclipped_layer)


def tiny():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8, 1))
    net.spec = type("S", (), {"layers": {"first_conv": "0", "classifier": "3"}})()
    return net


def test_activations_by_role_and_path_equal_a_manual_forward():
    net = tiny()
    x = torch.randn(1, 1, 4, 4)
    with capture_activations(net, ["first_conv", "1"]) as acts:
        net(x)
    conv = net[0](x)
    assert torch.allclose(acts["first_conv"], conv)
    assert torch.allclose(acts["1"], conv.clamp(min=0))
    assert count_hooks(net) == 0


def test_graph_starts_at_the_first_hooked_layer_and_gradients_stay_exact():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU(inplace=True),
                        nn.Flatten(), nn.Linear(8, 1))
    x = torch.randn(1, 1, 4, 4)
    seen = {}
    net[0].register_forward_hook(lambda m, i, out: seen.update(first=out.requires_grad))
    with torch.no_grad(), graph_from_layers(net, ["1", "2"]) as acts:   # even inside no_grad
        y = net(x)
        g1, g2 = torch.autograd.grad(y.sum(), [acts["1"], acts["2"]])
    assert torch.is_grad_enabled()                      # the user's mode is back
    assert seen["first"] is False                       # nothing before layer "1" was recorded
    assert acts["1"].is_leaf and acts["1"].requires_grad
    # the same gradients from a fully recorded pass
    h1 = net[1](net[0](x)).requires_grad_(True)
    h2 = net[2](h1)
    e1, e2 = torch.autograd.grad(net[5](net[4](torch.relu(h2))).sum(), [h1, h2])
    assert torch.allclose(g1, e1) and torch.allclose(g2, e2)
    # the in-place ReLU after layer "2" did not overwrite the captured activation
    assert (acts["2"] < 0).any()
    net[0]._forward_hooks.clear()
    assert count_hooks(net) == 0


def test_hooks_are_removed_when_the_body_raises():
    net = tiny()
    with pytest.raises(RuntimeError):
        with capture_activations(net, ["0", "3"]):
            raise RuntimeError("boom")
    with pytest.raises(KeyError, match="No layer"):
        with capture_activations(net, ["0", "does.not.exist"]):
            pass
    assert count_hooks(net) == 0


def test_guard_restores_mode_grad_flags_and_inplace():
    net = tiny().train()
    net[0].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError):
        with model_guard(net, freeze=True):
            assert not net.training and not net[1].inplace
            assert not any(p.requires_grad for p in net.parameters())
            raise ValueError("stop half-way")
    assert net.training and net[1].inplace
    assert net[0].weight.requires_grad is False and net[3].weight.requires_grad is True
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_resolve_layer_suggests_close_names():
    with pytest.raises(KeyError, match="Did you mean"):
        resolve_layer(tiny(), "first_conf")
    with pytest.raises(KeyError, match="first_conv"):
        resolve_layer(tiny(), "conv1")


def test_unclipped_layer_steps_back_over_a_final_relu6_only():
    block = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU6())
    net = nn.Sequential(block, nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU()))
    assert unclipped_layer(net, "0") == "0.1"            # BN output: values before the clip
    assert unclipped_layer(net, "1") == "1"              # a ReLU has no ceiling: unchanged
    assert unclipped_layer(net, "0.0") == "0.0"          # a leaf module: unchanged
