"""Incremental occlusion (Krypton's exact mode) equals running every occluded copy through the
whole network: on the bundled model, on the paper networks with random weights, for windows
that touch the border, batches that mix rows, and a feature map; and it leaves the model as
found."""
import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from utils.hooks import capture_activations, count_hooks, model_guard
from utils.incremental import IncrementalOcclusion, TracingError, span, trace, writes_in_place
from utils.occlusion import occluded_copies, occlusion, positions

from test_attribution import model_state, same_state

# (window, stride) at a 64 px input: squares ending on the last row and column (16/16, 24/20),
# and an odd stride whose squares fall differently on each layer's grid and miss the edge (12/17)
WINDOWS = [(16, 16), (24, 20), (12, 17)]


def random_network(name):
    """A torchvision network with random weights and batch-norm statistics that are not the
    identity, in train mode with in-place ReLUs (as torchvision builds them)."""
    torch.manual_seed(0)
    options = {"googlenet": {"aux_logits": False, "transform_input": True, "init_weights": False}}
    net = torchvision.models.get_model(name, weights=None, **options.get(name, {}))
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")   # signals survive the depth
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net.train()


LAST_CONV = {"alexnet": "features.11", "vgg16": "features.29", "resnet50": "layer4",
             "googlenet": "inception5b"}


@pytest.mark.parametrize("name", list(LAST_CONV))
def test_incremental_logits_equal_full_inference_on_the_paper_networks(name):
    net = random_network(name)
    before = model_state(net)
    x = torch.randn(1, 3, 64, 64)
    for size, stride in WINDOWS:
        rows = positions(64, size, stride)
        tops, lefts = [t for t in rows for _ in rows], [left for _ in rows for left in rows]
        with torch.no_grad(), model_guard(net):
            run = IncrementalOcclusion(net, x, LAST_CONV[name])
            with capture_activations(net, [LAST_CONV[name]]) as acts:
                full_logits = net(occluded_copies(x[0], tops, lefts, size))
            clean_logits = net(x)
            for start in range(0, len(tops), 7):           # batches that mix occluder rows
                logits, maps = run.forward(0, tops[start:start + 7], lefts[start:start + 7], size, 0.0)
                expected = full_logits[start:start + 7]
                assert (logits - expected).abs().max() < 1e-4 * expected.abs().max()
                expected = acts[LAST_CONV[name]][start:start + 7]       # the last conv's maps
                assert (maps - expected).abs().max() < 1e-4 * expected.abs().max()
        effect = (full_logits - clean_logits).abs().max()
        assert effect > 1e-2 * full_logits.abs().max()      # the square does change the output
        assert 0 < run.macs < run.full_macs
    assert same_state(before, model_state(net)) and count_hooks(net) == 0


@pytest.mark.parametrize("name", list(LAST_CONV))
def test_occlusion_maps_are_the_same_in_both_modes(name):
    net = random_network(name)
    x = torch.randn(2, 3, 64, 64)
    fill = torch.tensor([-1.0, 0.5, 2.0]).view(3, 1, 1)           # a colour, not grey
    size, stride = WINDOWS[1]
    fast = occlusion(net, x, [3, 7], size, stride, fill, layer=LAST_CONV[name], batch_size=5,
                     progress=False)
    full = occlusion(net, x, [3, 7], size, stride, fill, layer=LAST_CONV[name], batch_size=5,
                     progress=False, incremental=False)
    assert (fast["prob"] - full["prob"]).abs().max() < 1e-4
    assert torch.allclose(fast["feature"], full["feature"], rtol=1e-4, atol=1e-4)
    assert torch.equal(fast["channel"], full["channel"])
    assert torch.equal(fast["label"], full["label"])
    assert net.training and count_hooks(net) == 0


def test_bundled_model_gives_the_same_maps_as_full_inference(lite):
    x = lite.spec.preprocess("cat")
    before = model_state(lite)
    black = lite.spec.valid_range()[0].view(3, 1, 1)
    for fill in (0.0, black):
        fast = occlusion(lite, x, size=48, stride=32, fill=fill, layer="last_conv", progress=False)
        full = occlusion(lite, x, size=48, stride=32, fill=fill, layer="last_conv",
                         progress=False, incremental=False)
        assert (fast["prob"] - full["prob"]).abs().max() < 1e-4
        assert (fast["clean_prob"] - fast["prob"]).abs().max() > 0.05    # the map shows something
        assert torch.allclose(fast["feature"], full["feature"], rtol=1e-4)
        assert torch.equal(fast["label"], full["label"])
    assert same_state(before, model_state(lite)) and count_hooks(lite) == 0


class EveryRule(nn.Module):
    """A small network that takes every rule: a channel transform (select, scale, join), zero
    padding and a functional convolution (as in the bundled model), a depthwise dilated conv,
    two branches of different strides joined by an add, a ceil-mode max-pool with padding,
    channels joined by a concatenation, a constant mask, global pooling and a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 8, 3, bias=False)     # called functionally, like the bundled
                                                        # model's convolutions
        self.bn = nn.BatchNorm2d(8).eval()
        self.bn.running_mean.uniform_(-1, 1)
        self.depthwise = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.wide = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.narrow = nn.Conv2d(8, 8, 1, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.side = nn.Conv2d(8, 4, 1)
        self.register_buffer("mask", torch.rand(1, 1, 5, 5))
        self.fc = nn.Linear(12, 5)

    def forward(self, x):
        x = torch.cat([torch.unsqueeze(x[:, c], 1) * (c + 1.0) for c in range(3)], 1)
        x = F.relu6(self.bn(F.conv2d(self.pad(x), self.stem.weight, None, 2)))
        x = x + self.depthwise(x)
        x = torch.relu(self.wide(x) + self.narrow(x))
        x = self.pool(x)
        x = torch.cat([x, self.side(x)], 1) * self.mask
        return self.fc(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("size, stride", [(1, 3), (2, 1), (5, 4), (9, 8)])
def test_every_rule_equals_full_inference_on_a_small_network(size, stride):
    net = EveryRule().eval()
    x = torch.randn(1, 3, 37, 37)                    # odd sizes: the edges are uneven
    fast = occlusion(net, x, 2, size, stride, batch_size=13, progress=False)
    full = occlusion(net, x, 2, size, stride, batch_size=13, progress=False, incremental=False)
    assert (fast["prob"] - full["prob"]).abs().max() < 1e-6
    assert (full["prob"] - full["clean_prob"][0]).abs().max() > 1e-3
    assert count_hooks(net) == 0
    with torch.no_grad():                            # and no rule fell back to whole maps
        run = IncrementalOcclusion(net, x)
        run.forward(0, [0, 14, 28], [28, 14, 0], size, 0.0)
    assert run.macs < 0.5 * run.full_macs


class InPlace(nn.Module):
    """In-place steps: one whose input no later step reads (it can run out of place), and,
    with ``overwrite_read_map``, one that overwrites a map a later step reads."""

    def __init__(self, overwrite_read_map):
        super().__init__()
        torch.manual_seed(0)
        self.narrow, self.wide, self.fc = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 5, padding=2), \
            nn.Linear(4, 3)
        self.overwrite_read_map = overwrite_read_map

    def forward(self, x):
        x = F.relu(self.narrow(x), inplace=True)
        y = self.wide(x)
        if self.overwrite_read_map:
            x.add_(y)                    # `x` is read below: it must see the sum
        else:
            y += x
            x = y
        return self.fc(x.amax(dim=(2, 3)))


@pytest.mark.parametrize("overwrite_read_map", [False, True])
def test_in_place_steps_run_out_of_place_or_fall_back_to_full_inference(overwrite_read_map):
    net = InPlace(overwrite_read_map).eval()
    x = torch.randn(1, 3, 20, 20)
    if overwrite_read_map:
        with pytest.raises(TracingError, match="overwrites a map that later steps read"):
            trace(net)
        with pytest.warns(UserWarning, match="whole network instead"):
            fast = occlusion(net, x, 0, size=4, stride=4, progress=False)
    else:
        assert not any(writes_in_place(node) for node in trace(net).nodes)
        fast = occlusion(net, x, 0, size=4, stride=4, progress=False)
    full = occlusion(net, x, 0, size=4, stride=4, progress=False, incremental=False)
    assert (fast["prob"] - full["prob"]).abs().max() < 1e-6


@pytest.mark.parametrize("kernel, stride, padding, dilation", [
    (3, 1, 1, 1), (11, 4, 2, 1), (3, 2, 0, 1), (1, 2, 0, 1), (5, 1, 2, 1), (3, 1, 2, 2), (2, 2, 0, 1)])
def test_span_is_exactly_the_rows_a_change_reaches(kernel, stride, padding, dilation):
    """Change input rows [a, b) of a random map, convolve: every output row that changes lies in
    the rows ``span`` names (nothing is missed), and so do its first and last (the rectangle is
    tight; a dilated kernel may skip rows in between)."""
    torch.manual_seed(1)
    x, weight = torch.randn(1, 2, 40, 1), torch.randn(3, 2, kernel, 1)
    conv = lambda t: F.conv2d(t, weight, None, (stride, 1), (padding, 0), (dilation, 1))
    out_size = conv(x).shape[2]
    for a, b in [(0, 5), (3, 9), (17, 18), (30, 40), (0, 40)]:
        changed = x.clone()
        changed[:, :, a:b] += 1
        moved = (conv(changed) - conv(x)).abs().amax(dim=(0, 1, 3)) > 0
        rows = span([a], b - a, 40, out_size, kernel, stride, dilation, padding)
        first, stop = rows.starts[0], rows.starts[0] + rows.length
        changed_rows = moved.nonzero()[:, 0].tolist()
        if not changed_rows:                      # a 1×1 stride-2 kernel skips odd rows
            assert rows.length == 1               # the least a layer call can recompute
            continue
        assert (changed_rows[0], changed_rows[-1] + 1) == (first, stop), (a, b)
        if dilation == 1:
            assert moved[first:stop].all()


def test_a_model_fx_cannot_trace_falls_back_to_full_inference():
    class Branching(nn.Module):                       # control flow on a tensor's value
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 3)

        def forward(self, x):
            x = self.conv(x)
            if x.mean() > 0:
                x = -x
            return self.fc(x.mean(dim=(2, 3)))
    torch.manual_seed(0)
    net = Branching().eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.warns(UserWarning, match="cannot trace"):
        fast = occlusion(net, x, 1, size=4, stride=4, progress=False)
    full = occlusion(net, x, 1, size=4, stride=4, progress=False, incremental=False)
    assert torch.equal(fast["prob"], full["prob"]) and count_hooks(net) == 0


def test_live_occluder_gives_the_probability_and_label_of_the_occluded_image(lite):
    from utils.hooks import count_hooks
    from utils.occlusion import LiveOccluder, occluded_copies
    x = lite.spec.preprocess("ping_pong")
    live = LiveOccluder(lite, x, size=48)
    for top, left in [(80, 128), (0, 0), (176, 176)]:
        p, label, share = live(top, left)
        with torch.no_grad():
            full = lite(occluded_copies(x[0], [top], [left], 48)).softmax(1)[0]
        assert abs(p - full[live.target].item()) < 1e-4 and label == int(full.argmax())
        assert 0 < share < 1                                  # less work than a full pass
    assert live(80, 128)[0] < live.clean_prob                 # hiding the ball lowers p
    with pytest.raises(ValueError, match="inside"):
        live(200, 0)
    assert count_hooks(lite) == 0 and not lite.training
