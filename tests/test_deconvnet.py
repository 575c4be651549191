"""Deconvnet: unpooling at the switches, hand-computed projections, switch form = rule form."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from utils.deconvnet import (ChannelProjector, project_with_rule, project_with_switches,
                             square_box, support_box, top_activations, unpool)
from utils.hooks import count_hooks


def test_unpool_puts_values_at_the_switches():
    x = torch.tensor([[1., 9., 0., 2.],
                      [3., 4., 8., 1.],
                      [7., 0., 5., 6.],
                      [2., 1., 0., 3.]]).view(1, 1, 4, 4)
    _, switches = F.max_pool2d(x, 2, return_indices=True)
    y = torch.tensor([[10., 20.], [30., 40.]]).view(1, 1, 2, 2)
    out = unpool(y, switches, x.shape)
    expected = torch.zeros(4, 4)
    expected[0, 1], expected[1, 2], expected[2, 0], expected[2, 3] = 10, 20, 30, 40
    assert torch.equal(out[0, 0], expected)
    assert torch.equal(out, F.max_unpool2d(y, switches, 2, output_size=x.shape[-2:]))


def test_unpool_sums_where_overlapping_windows_share_a_switch():
    # windows [0..2] and [2..4] both pick index 2: unpooling is the transpose of pooling
    x = torch.tensor([0., 1., 5., 1., 0.]).view(1, 1, 1, 5)
    _, switches = F.max_pool2d(x, (1, 3), stride=(1, 2), return_indices=True)
    out = unpool(torch.tensor([[[[3., 4.]]]]), switches, x.shape)
    assert out.flatten().tolist() == [0., 0., 7., 0., 0.]


class TinyZF(nn.Module):
    """conv 2×2 (weights 1 2 / 3 4) -> ReLU -> 2×2 max-pool, in a `features` block."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(1, 1, 2, bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1., 2.], [3., 4.]]).view(1, 1, 2, 2))
            conv.bias.fill_(-0.5)
        self.features = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(1, 2)

    def forward(self, x):
        return self.fc(self.features(x).flatten(1))


def test_switch_projection_matches_hand_computation():
    # a single 1 at (1, 1): conv outputs (before bias) 4 3 / 2 1, the max 4 - 0.5 sits at (0, 0);
    # projecting 3.5 down places 3.5 · W (no bias) at the window of that switch
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1
    net = TinyZF().eval()
    proj, pos = project_with_switches(net, x, "features.2", 0)
    expected = torch.zeros(3, 3)
    expected[:2, :2] = 3.5 * torch.tensor([[1., 2.], [3., 4.]])
    assert pos == [(0, 0)]
    assert torch.allclose(proj[0, 0], expected)
    rule, _ = project_with_rule(net, x, "features.2", 0)
    assert torch.allclose(rule, proj)


@pytest.mark.parametrize("arch, size, layers", [
    ("alexnet", 127, ["features.12", "features.10", "features.4"]),
    ("vgg11", 64, ["features.15", "features.8"]),
])
def test_switch_form_equals_rule_form_on_torchvision(arch, size, layers):
    torch.manual_seed(0)
    net = torchvision.models.get_model(arch, weights=None).eval()
    x = torch.randn(2, 3, size, size)
    for layer in layers:
        switches, pos_a = project_with_switches(net, x, layer, 7)
        rule, pos_b = project_with_rule(net, x, layer, 7, rule="deconvnet")
        assert pos_a == pos_b
        assert switches.abs().max() > 0
        assert torch.allclose(switches, rule, atol=1e-6 * float(switches.abs().max()) + 1e-12)
        # the deconvnet differs from the plain gradient of the same activation
        grad, _ = project_with_rule(net, x, layer, 7, rule="gradient")
        assert not torch.allclose(grad, rule)
    assert count_hooks(net) == 0


def test_batch_equals_per_image_and_position_is_respected():
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None).eval()
    x = torch.randn(2, 3, 127, 127)
    batch, pos = project_with_switches(net, x, "features.11", 3)
    one = torch.cat([project_with_switches(net, x[i:i + 1], "features.11", 3)[0] for i in range(2)])
    assert torch.allclose(batch, one)
    rule, _ = project_with_rule(net, x, "features.11", 3)
    rule_one = torch.cat([project_with_rule(net, x[i:i + 1], "features.11", 3)[0] for i in range(2)])
    assert torch.allclose(rule, rule_one, atol=1e-7)
    _, fixed = project_with_rule(net, x, "features.11", 3, position=(1, 2))
    assert fixed == [(1, 2), (1, 2)]


def test_projection_stays_inside_the_receptive_field():
    # a unit of VGG-11's features.4 (conv 3×3, pool 2, conv 3×3) sees an 8×8 window:
    # unit (5, 5) covers input rows and columns 7..14
    torch.manual_seed(0)
    net = torchvision.models.vgg11(weights=None).eval()
    x = torch.randn(1, 3, 32, 32)
    proj, _ = project_with_rule(net, x, "features.4", 0, position=(5, 5), rule="gradient")
    x0, y0, x1, y1 = support_box(proj[0], fraction=0.0)
    assert (x0, y0, x1, y1) == (7, 7, 15, 15)


def test_switch_form_refuses_networks_without_a_pooling_chain():
    net = torchvision.models.resnet18(weights=None).eval()
    with pytest.raises(ValueError, match="project_with_rule"):
        project_with_switches(net, torch.randn(1, 3, 32, 32), "layer2", 0)
    with pytest.raises(IndexError, match="channel"):
        project_with_rule(TinyZF(), torch.zeros(1, 1, 3, 3), "features.2", 5)


def test_top_activations_are_sorted_and_distinct_images():
    torch.manual_seed(0)
    net = TinyZF().eval()
    x = torch.rand(5, 1, 3, 3)
    top = top_activations(net, x, "features.1", [0], k=3)[0]
    values = [v for _, _, v in top]
    assert values == sorted(values, reverse=True)
    assert len({i for i, _, _ in top}) == 3
    with torch.no_grad():
        best = net.features[:2](x).flatten(1).max(1).values.max().item()
    assert values[0] == pytest.approx(best)


def test_channel_projector_equals_the_one_channel_projection(lite):
    # the explorer's projector keeps one forward pass per rule and answers channel after
    # channel: each answer is project_with_rule's, on the bundled model (ReLU6, no pooling)
    x = torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    layer = lite.spec.layer("stages")[2]
    projector = ChannelProjector(lite, x, layer)
    assert count_hooks(lite) == 0 and not any(p.grad is not None for p in lite.parameters())
    for channel in (0, 5, 0, 17):                      # a channel shown before, too
        shown = projector(channel)
        assert set(shown) == {"deconvnet", "gradient", "guided"}
        for rule, (projection, where) in shown.items():
            one, positions = project_with_rule(lite, x, layer, channel, rule=rule)
            assert [where] == positions and projection.abs().max() > 0
            assert torch.allclose(projection, one, atol=1e-6 * float(one.abs().max()))
    assert not torch.allclose(shown["guided"][0], shown["deconvnet"][0])
    fixed = projector(3, position=(1, 2))
    assert all(where == (1, 2) for _, where in fixed.values())
    with pytest.raises(IndexError, match="channel"):
        projector(10_000)
    with pytest.raises(ValueError, match="one image"):
        ChannelProjector(lite, torch.zeros(2, 3, 32, 32), layer)


def test_square_box_keeps_the_box_and_stays_inside_the_image():
    assert square_box((10, 20, 30, 30), (100, 100)) == (10, 15, 30, 35)    # centred, 20×20
    assert square_box((0, 0, 8, 40), (100, 100)) == (0, 0, 40, 40)         # pushed inside
    assert square_box((90, 95, 100, 100), (100, 100)) == (90, 90, 100, 100)
    assert square_box((0, 0, 100, 60), (60, 100)) == (20, 0, 80, 60)       # no larger than 60
