"""CNN-Fixations: every rule against values worked out by hand, the whole walk on tiny
networks built by hand, no gradients, determinism, and the bundled model on the cat."""
import io
from collections import Counter

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from utils import fixations as F
from utils.hooks import count_hooks
from utils.evaluation import pointing_hit
from utils.images import annotations, load_image
from utils.targets import TargetError


# ------------------------------------------------------------------ single rules by hand

def test_fc_to_fc_keeps_every_positive_contributor():
    a = torch.tensor([1.0, -2.0, 3.0, 0.5])
    W = torch.tensor([[2.0, 1.0, -1.0, 4.0],      # contributions 2, -2, -3, 2  -> {0, 3}
                      [0.0, -1.0, 1.0, 0.0]])     # contributions 0,  2,  3, 0  -> {1, 2}
    assert F.fc_rule({(0,)}, a, W, spatial_input=False) == {(0,), (3,)}
    assert F.fc_rule({(0,), (1,)}, a, W, spatial_input=False) == {(0,), (1,), (2,), (3,)}


def test_fc_to_conv_keeps_the_single_best_contributor():
    a = torch.tensor([1.0, -2.0, 3.0, 0.5])
    W = torch.tensor([[2.0, 1.0, -1.0, 4.0]])      # contributions 2, -2, -3, 2.0: first max
    assert F.fc_rule({(0,)}, a, W, spatial_input=True) == {(0,)}
    W = torch.tensor([[2.0, 1.0, 1.0, 4.0]])       # 2, -2, 3, 2 -> index 2
    assert F.fc_rule({(0,)}, a, W, spatial_input=True) == {(2,)}


def test_conv_picks_the_best_channel_and_keeps_the_window_centre():
    a = torch.zeros(2, 3, 3)
    a[0] = 1.0                                      # channel 0: sum 9 under a ones filter
    a[1, 2, 0] = 20.0                               # channel 1: one strong pixel, bottom-left
    W = torch.ones(1, 2, 3, 3)
    # output (0, 1, 1) with pad 1 sees the whole 3×3 input: channel 1 (20) beats 0 (9).
    # The centre rule (the plain-network demo) keeps the point at the window centre (1, 1);
    # "strongest" moves it to the position where channel 1 contributes most: row 2, col 0.
    assert F.conv_rule({(0, 1, 1)}, a, W, stride=(1, 1), pad=(1, 1), groups=1) == {(1, 1, 1)}
    assert F.conv_rule({(0, 1, 1)}, a, W, (1, 1), (1, 1), 1, position="strongest") == {(1, 2, 0)}
    W[0, 1] = -1.0                                  # channel 1 now contributes -20
    out = F.conv_rule({(0, 1, 1)}, a, W, stride=(1, 1), pad=(1, 1), groups=1)
    assert out == {(0, 1, 1)}


def test_strongest_never_picks_padding_or_the_first_of_a_tie():
    W = torch.full((1, 1, 3, 3), -1.0)
    a = torch.ones(1, 3, 3)
    # output (0, 1, 2), pad 1: the window's right column is padding (contribution 0), every
    # real position contributes -1. Argmax would pick the padded (0, 3) and clamp it to the
    # border (0, 2); no real position contributes positively, so the point stays.
    assert F.conv_rule({(0, 1, 2)}, a, W, (1, 1), (1, 1), 1, position="strongest") == {(0, 1, 2)}
    assert F.conv_rule({(0, 2, 2)}, a, W, (1, 1), (1, 1), 1, position="strongest") == {(0, 2, 2)}
    # a dead window (all zeros, a ReLU that did not fire): argmax says the top-left corner,
    # the rule keeps the centre
    zeros = torch.zeros(1, 5, 5)
    assert F.conv_rule({(0, 2, 2)}, zeros, torch.ones(1, 1, 3, 3), (1, 1), (1, 1), 1,
                       position="strongest") == {(0, 2, 2)}
    # a tie between (1, 1), the top-left of the window, and (2, 3), nearer the centre (2, 2)
    tie = torch.zeros(1, 5, 5)
    tie[0, 1, 1] = tie[0, 2, 3] = 4.0
    assert F.conv_rule({(0, 2, 2)}, tie, torch.ones(1, 1, 3, 3), (1, 1), (1, 1), 1,
                       position="strongest") == {(0, 2, 3)}
    # a unique strongest position still wins
    tie[0, 1, 1] = 5.0
    assert F.conv_rule({(0, 2, 2)}, tie, torch.ones(1, 1, 3, 3), (1, 1), (1, 1), 1,
                       position="strongest") == {(0, 1, 1)}
    with pytest.raises(ValueError, match="position is one of"):
        F.backtrack(PoolNet(), torch.zeros(1, 1, 4, 4), 0, position="argmax")


def test_grouped_and_strided_conv_windows():
    a = torch.arange(4 * 4 * 4, dtype=torch.float32).view(4, 4, 4)
    W = torch.ones(4, 1, 2, 2)                      # depthwise 2×2, stride 2, no padding
    # output (3, 1, 0) of a depthwise conv reads only input channel 3, rows 2-3, cols 0-1;
    # the window's centre (rounded to the top-left for an even kernel) is (2, 0); a grows
    # with the index, so the largest contribution is at (3, 1).
    assert F.conv_rule({(3, 1, 0)}, a, W, stride=(2, 2), pad=(0, 0), groups=4) == {(3, 2, 0)}
    assert F.conv_rule({(3, 1, 0)}, a, W, (2, 2), (0, 0), 4, position="strongest") == {(3, 3, 1)}


def test_pooling_follows_the_switch_and_keeps_every_tied_maximum():
    a = torch.tensor([[[1.0, 5.0, 2.0, 0.0],
                       [3.0, 4.0, 9.0, 1.0],
                       [0.0, 0.0, 1.0, 1.0],
                       [7.0, 0.0, 1.0, 8.0]]])
    switch = lambda p: F.pool_rule({p}, a, None, kernel=(2, 2), stride=(2, 2))
    assert switch((0, 0, 0)) == {(0, 0, 1)}
    assert switch((0, 0, 1)) == {(0, 1, 2)}
    assert switch((0, 1, 0)) == {(0, 3, 0)}
    assert switch((0, 1, 1)) == {(0, 3, 3)}
    assert F.pool_rule({(0, 0, 0)}, a, (1, 1)) == {(0, 1, 2)}             # global pool
    saturated = torch.tensor([[[6.0, 1.0], [2.0, 6.0]]])                   # ReLU6 at its cap
    assert F.pool_rule({(0, 0, 0)}, saturated, (1, 1)) == {(0, 0, 0), (0, 1, 1)}


def test_residual_follows_the_larger_input_and_concat_shifts_channels():
    skip = torch.tensor([[[2.0, 0.0]]])
    branch = torch.tensor([[[1.0, 3.0]]])
    assert F.add_rule({(0, 0, 0), (0, 0, 1)}, skip, branch) == ({(0, 0, 0)}, {(0, 0, 1)})
    assert F.add_rule({(0, 0, 0)}, skip, skip) == ({(0, 0, 0)}, set())     # tie -> skip
    routed = F.cat_rule({(0, 1, 1), (4, 0, 0), (7, 2, 2)}, sizes=[3, 2, 5])
    assert dict(routed) == {0: {(0, 1, 1)}, 1: {(1, 0, 0)}, 2: {(2, 2, 2)}}


# ------------------------------------------------------------------ whole walks by hand

class PoolNet(nn.Module):
    """conv(identity) -> BN -> ReLU -> maxpool 2 -> flatten -> fc (picks one quadrant)."""

    def __init__(self, bn_scale=1.0):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 1, 1] = 1.0
            self.bn.weight.fill_(bn_scale)
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]]))
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))


def test_the_walk_lands_on_the_strongest_pixel_of_the_chosen_quadrant():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 2, 3] = 5.0                             # bottom-right quadrant's max
    x[0, 0, 3, 2] = 4.0
    x[0, 0, 0, 1] = 9.0                             # top-left quadrant's max
    net = PoolNet()
    # class 0: fc reads the bottom-right pooled cell only -> switch at (2, 3) -> identity conv.
    assert F.backtrack(net, x, 0) == [(2, 3)]
    assert F.backtrack(net, x, 1) == [(0, 1)]


class ResidualNet(nn.Module):
    """out = relu(branch(x) + x) -> global average pool -> fc over the 2 channels."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Conv2d(2, 2, 1, bias=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.branch.weight.copy_(torch.tensor([[[[0.0]], [[1.0]]], [[[0.0]], [[0.0]]]]))
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0]]))
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.branch(x) + x)), 1))


def test_residual_routing_through_a_whole_network():
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 0, 0] = 3.0       # channel 0: strongest at (0, 0), via the skip (branch out is 0)
    x[0, 1, 1, 1] = 2.0       # channel 1 feeds the branch of channel 0 at (1, 1): 2 > skip 0
    # fc: both channels contribute positively (FC -> FC through a global pool).
    # channel 0 -> global switch (0, 0): value 3 = skip 3 + branch 0 -> skip -> pixel (0, 0).
    # channel 1 -> its map is x[1] = 2 at (1, 1), branch 0 there -> skip -> pixel (1, 1).
    assert F.backtrack(ResidualNet(), x, 0) == [(0, 0), (1, 1)]
    x[0, 0, 0, 0] = 0.0
    x[0, 0, 1, 0] = 1.0
    # channel 0: map = branch (x[1]) + x[0]: (1,1) = 2 + 0 -> the switch, branch wins (2 > 0)
    # -> 1×1 conv routes to input channel 1 at (1, 1); channel 1's map is x[1] too.
    assert F.backtrack(ResidualNet(), x, 0) == [(1, 1)]


def test_batchnorm_is_folded_into_the_conv():
    a = torch.zeros(1, 2, 3, 3)
    a[0, 0] = 1.0
    a[0, 1] = 2.0

    class Net(nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 1, bias=False)
            self.bn = nn.BatchNorm2d(1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(1, 1, bias=False)
            with torch.no_grad():
                self.conv.weight.copy_(torch.tensor([[[[1.0]], [[-1.0]]]]))
                self.bn.weight.fill_(scale)
                self.fc.weight.fill_(-scale)         # so that the pooled value contributes > 0
            self.eval()

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.bn(self.conv(x))), 1))

    gm_pos, values_pos = F.record_forward(Net(1.0), a)
    gm_neg, values_neg = F.record_forward(Net(-1.0), a)
    # contributions per input channel: +1·1 = 1 vs 2·(-1) = -2 -> channel 0;
    # with BN scale -1 the signs flip: -1 vs +2 -> channel 1.
    conv_pos = next(n for n in gm_pos.graph.nodes if n.target == "conv")
    conv_neg = next(n for n in gm_neg.graph.nodes if n.target == "conv")
    assert F._folded_weight(gm_pos, conv_pos)[0, :, 0, 0].tolist() == pytest.approx([1, -1], abs=1e-3)
    assert F._folded_weight(gm_neg, conv_neg)[0, :, 0, 0].tolist() == pytest.approx([-1, 1], abs=1e-3)
    layers_pos = F.backtrack(Net(1.0), a, 0, return_layers=True)[1]
    layers_neg = F.backtrack(Net(-1.0), a, 0, return_layers=True)[1]
    assert {p[0] for p in layers_pos["conv"][0]} == {0}
    assert {p[0] for p in layers_neg["conv"][0]} == {1}


# ------------------------------------------------------------------ properties

def test_no_gradients_deterministic_and_model_untouched(lite):
    x = lite.spec.preprocess("cat")
    before = {k: v.clone() for k, v in lite.state_dict().items()}
    lite.train()
    with torch.no_grad():
        first = F.backtrack(lite, x, 285)
    second = F.backtrack(lite, x, 285)
    assert first == second and len(first) > 10
    assert lite.training                                  # mode restored
    lite.eval()
    assert all(p.grad is None and p.requires_grad for p in lite.parameters())
    assert all(torch.equal(before[k], v) for k, v in lite.state_dict().items())
    assert count_hooks(lite) == 0


class SamePadConv(nn.Conv2d):
    """TensorFlow 'same' padding as EfficientNet's convs hold it: a padding module inside."""

    def __init__(self):
        super().__init__(1, 1, 3, stride=2, bias=False)
        self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))       # left, right, top, bottom

    def forward(self, x):
        return super().forward(self.static_padding(x))


class SamePadNet(nn.Module):
    """A 3×3 conv of stride 2 padded only at the bottom and right (as in EfficientNet), then
    a global max pool and a linear layer."""

    def __init__(self):
        super().__init__()
        self.conv = SamePadConv()
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc.weight.fill_(1.0)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def test_the_window_centre_under_asymmetric_padding():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 3, 3] = 1.0
    # the output is 2×2; output (1, 1) reads rows 2-4 and cols 2-4 (4 is padding), sums 1,
    # the largest: the switch. Its window's centre is input (3, 3): 2·1 + 1, not 2·1.
    points, layers = F.backtrack(SamePadNet(), x, 0, return_layers=True)
    assert points == [(3, 3)]
    assert layers["pool"].centres == {(0, 1, 1): (3, 3)}        # its receptive field's centre
    assert F.layer_pixels(layers["conv"]) == {(3, 3): 1}


class TwoChannelNet(nn.Module):
    """Two input channels copied by a 1×1 conv, a global max pool, a linear layer that reads
    both with positive weights."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.fc.weight.fill_(1.0)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


def test_counting_keeps_the_paths_that_the_sets_merge():
    x = torch.zeros(1, 2, 3, 3)
    x[0, :, 1, 2] = 2.0                     # both channels peak at (1, 2)...
    x[0, 1, 0, 0] = 1.0                     # ...channel 1 is also on at (0, 0), weaker
    net = TwoChannelNet()
    # class -> both channels (positive contributions) -> both switches at (1, 2) -> the 1×1
    # conv keeps each channel -> two points at pixel (1, 2): one point as a set, two paths.
    assert F.backtrack(net, x, 0) == [(1, 2)]
    assert F.backtrack(net, x, 0, count=True) == {(1, 2): 2}
    kept, heat = F.fixation_heatmap(Counter({(1, 2): 2, (40, 40): 1}), (60, 60))
    assert kept == {(1, 2): 2, (40, 40): 1}          # 2 of 3 paths near (1, 2): not outliers
    assert heat[1, 2] > heat[40, 40]                 # two paths weigh twice
    assert F.share_inside(Counter({(1, 2): 2, (40, 40): 1}), (0, 0, 10, 10)) == pytest.approx(2 / 3)
    assert F.share_inside([(1, 2), (40, 40)], (0, 0, 10, 10)) == pytest.approx(1 / 2)


# ------------------------------------------------------------------ the bundled model

def test_on_a_network_without_max_pooling_the_centre_rule_never_moves_a_point(lite):
    """EfficientNet-Lite0 has no pooling but the global one: below the global switch, the
    window-centre rule keeps every point on its 7×7 cell, so the pixels are the centres of
    the receptive fields of the switches' cells; counted paths are conserved at every depth."""
    x = lite.spec.preprocess("squirrel")
    points, layers = F.backtrack(lite, x, "fox squirrel", return_layers=True, position="centre")
    start = layers["pool"]                           # the points at the last block's output
    assert start.shape[1:] == (7, 7) and len(points) <= 49
    assert points == sorted(set(start.centres.values()))
    counted = F.backtrack(lite, x, "fox squirrel", count=True, position="centre")
    assert counted == F.layer_pixels(start) and sorted(counted) == points
    totals = {sum(layer.points.values()) for layer in layers.values() if layer.cut and layer.centres}
    assert totals == {sum(counted.values())}


@pytest.mark.parametrize("name", ["squirrel", "ping_pong"])
def test_counted_fixations_localise_the_object_against_chance(lite, name):
    """The object covers 26% (squirrel) and 4.5% (ping-pong ball) of the photo: by chance
    that share of the points would fall in its box. Counted, the fixations fall there at
    least twice as often and the map's peak is on the object; as sets (the paper), the
    share is lower, since merging drops how many channels chose a cell."""
    image = load_image(name)
    [(label, box)] = annotations()[name].items()
    area = (box[2] - box[0]) * (box[3] - box[1]) / (image.size[0] * image.size[1])
    counted, target = F.cnn_fixations(lite, image, label, count=True, position="centre")
    as_set, _ = F.cnn_fixations(lite, image, label, position="centre")
    assert F.share_inside(counted, box) > 2 * area
    assert F.share_inside(as_set, box) < F.share_inside(counted, box)
    _, heat = F.fixation_heatmap(counted, image.size[::-1])
    assert pointing_hit(heat, [box])
    official, _ = F.cnn_fixations(lite, image, label, count=True)     # the residual demo's rule
    assert F.share_inside(official, box) > 1.5 * area


def test_counted_fixations_tell_two_classes_apart(lite):
    """fruits: an orange and a lemon. Each class's counted fixations fall in its own box more
    often than the other class's fixations do."""
    boxes = annotations()["fruits"]
    orange, _ = F.cnn_fixations(lite, "fruits", "orange", count=True)
    lemon, _ = F.cnn_fixations(lite, "fruits", "lemon", count=True)
    assert F.share_inside(orange, boxes["orange"]) > F.share_inside(lemon, boxes["orange"])
    assert F.share_inside(lemon, boxes["lemon"]) > F.share_inside(orange, boxes["lemon"])


def test_another_class_gives_other_fixations(lite):
    x = lite.spec.preprocess("cat")
    assert F.backtrack(lite, x, 285) != F.backtrack(lite, x, 504)   # coffee mug


@pytest.mark.parametrize("name, family", [("alexnet", "plain"), ("vgg16", "plain"),
                                          ("resnet50", "residual"), ("googlenet", "inception")])
def test_every_rule_runs_on_the_paper_networks(name, family):
    """Random weights (the paper networks' code path, tools/paper_networks.py): every conv
    rule walks down to pixels, and the official one is the family's."""
    extra = {"aux_logits": False, "init_weights": False} if name == "googlenet" else {}
    torch.manual_seed(0)
    net = torchvision.models.get_model(name, weights=None, **extra).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        target = int(net(x).argmax())
    recorded = F.record_forward(net, x)
    assert F.network_family(recorded[0]) == family
    walks = {position: F.backtrack(net, x, target, recorded, position=position)
             for position in F.POSITIONS + ("official",)}
    for points in walks.values():
        assert points and all(0 <= y < 224 and 0 <= x_ < 224 for y, x_ in points)
    assert walks["official"] == walks[F.FAMILIES[family]]


def test_outliers_map_and_errors(lite):
    cluster = [(100 + i % 5, 100 + i // 5) for i in range(40)]
    assert F.remove_outliers(cluster + [(0, 223)], (224, 224)) == cluster
    kept, heat_map = F.fixation_heatmap(cluster + [(0, 223)], (224, 224))
    assert kept == cluster and (heat_map == F.fixation_map(cluster, (224, 224), sigma=20)).all()
    heat = F.fixation_map([(50, 60)], (224, 224))
    assert heat.max() == 1.0 and tuple(int(v) for v in divmod(heat.argmax(), 224)) == (50, 60)
    with pytest.raises(TargetError, match="out of range"):
        F.backtrack(lite, lite.spec.preprocess("cat"), 1000)
    with pytest.raises(ValueError, match="one image"):
        F.backtrack(lite, torch.zeros(2, 3, 224, 224), 0)


# ------------------------------------------------------------------ photos, sizes, speed

def test_a_large_photos_map_is_blurred_on_a_grid_close_to_the_full_size_blur():
    rng = np.random.default_rng(0)
    points = [(int(y), int(x)) for y, x in zip(rng.normal(1500, 300, 300).clip(0, 2999),
                                               rng.normal(2000, 400, 300).clip(0, 3999))]
    kept, heat = F.fixation_heatmap(points, (3000, 4000))      # σ = 20 px, on a 1200×1600 grid
    assert heat.shape == (3000, 4000) and heat.max() == 1.0 and len(kept) > 250
    # on a moderate size, the grid's map against the full-size blur: within 5 % of the peak
    points = [(int(y), int(x)) for y, x in zip(rng.uniform(0, 600, 40), rng.uniform(0, 800, 40))]
    fast, exact = F.fixation_map(points, (600, 800)), F.fixation_map(points, (600, 800), grid=None)
    assert np.abs(fast - exact).max() < 0.05
    small = [(50, 60), (100, 30)]                               # at most 256 px: exactly as before
    assert np.array_equal(F.fixation_map(small, (224, 224)), F.fixation_map(small, (224, 224), grid=None))


def test_a_bundled_name_works_and_multi_crop_says_when_no_crop_predicts(lite):
    by_name, label = F.cnn_fixations(lite, "cat")
    assert label == 285 and by_name == F.cnn_fixations(lite, load_image("cat"))[0]
    with pytest.warns(UserWarning, match="No crop predicts class 0"):
        points, label = F.cnn_fixations(lite, "cat", target=0, multi_crop=True)   # a tench
    assert points == [] and label == 0


@pytest.mark.parametrize("orientation, stored", [(6, Image.Transpose.ROTATE_90),
                                                 (8, Image.Transpose.ROTATE_270)],
                         ids=["exif-6", "exif-8"])
def test_points_lie_in_the_upright_photo_at_an_odd_aspect_ratio(lite, orientation, stored):
    upright = load_image("cat").resize((300, 120))              # W × H = 300 × 120
    exif = Image.Exif()
    exif[0x0112] = orientation                                  # "rotate me to view"
    data = io.BytesIO()
    upright.transpose(stored).save(data, format="PNG", exif=exif.tobytes())
    phone = Image.open(io.BytesIO(data.getvalue()))
    assert phone.size == (120, 300)                             # stored on its side
    points, _ = F.cnn_fixations(lite, phone)
    assert points and all(0 <= y < 120 and 0 <= x < 300 for y, x in points)
    assert points == F.cnn_fixations(lite, upright)[0]          # the same as the upright photo
    explorer = F.FixationExplorer(lite)
    assert explorer.points(phone) == points
    if orientation == 6:                                        # the five crops, once
        crops, _ = F.cnn_fixations(lite, phone, multi_crop=True)
        assert crops and all(0 <= y < 120 and 0 <= x < 300 for y, x in crops)


def test_explorer_keeps_each_class_until_the_image_changes(lite, monkeypatch):
    explorer = F.FixationExplorer(lite, count=True)
    cat, cup = load_image("cat"), load_image("coffee")
    first = explorer.points(cat, "tabby")
    fresh = F.FixationExplorer(lite, count=True).points(cat, "tabby")
    calls = []
    real_backtrack = F.backtrack
    monkeypatch.setattr(F, "backtrack", lambda *a, **k: calls.append(1) or real_backtrack(*a, **k))
    explorer.points(cat, "Egyptian cat")
    first["changed by the caller"] = 1                          # a copy: the kept points stay
    assert explorer.points(cat, "tabby") == fresh
    assert len(calls) == 1                                      # going back cost no backtracking
    explorer.points(cup, "tabby")
    assert len(calls) == 2                                      # a new image starts afresh


# ------------------------------------------------------------------ the residual demo's rule

def test_activation_placement_follows_the_activation_not_the_contribution():
    a = torch.zeros(2, 3, 3)
    a[0] = 1.0                                      # channel 0: 9 under a ones filter
    a[1, 2, 0] = 20.0                               # channel 1: contributes 20 at (2, 0)...
    a[1, 0, 2] = 30.0                               # ...and 0 at (0, 2), its largest activation
    W = torch.ones(1, 2, 3, 3)
    W[0, 1, 0, 2] = 0.0
    assert F.conv_rule({(0, 1, 1)}, a, W, (1, 1), (1, 1), 1, position="strongest") == {(1, 2, 0)}
    assert F.conv_rule({(0, 1, 1)}, a, W, (1, 1), (1, 1), 1, position="activation") == {(1, 0, 2)}
    assert F.conv_rule({(0, 1, 1)}, a, W, (1, 1), (1, 1), 1, position="centre") == {(1, 1, 1)}
    # the stem reads the normalised photo, negative in dark places: the largest value wins
    # even when every value is negative ("strongest" keeps the centre where nothing is > 0)
    dark = -torch.arange(1.0, 10.0).view(1, 3, 3)   # largest: -1 at (0, 0)
    one = torch.ones(1, 1, 3, 3)
    assert F.conv_rule({(0, 1, 1)}, dark, one, (1, 1), (1, 1), 1, position="activation") == {(0, 0, 0)}
    assert F.conv_rule({(0, 1, 1)}, dark, -one, (1, 1), (1, 1), 1, position="strongest") == {(0, 2, 2)}
    assert F.conv_rule({(0, 1, 1)}, dark, one, (1, 1), (1, 1), 1, position="strongest") == {(0, 1, 1)}
    # a 1×1 conv keeps the place under every rule; padding is never a position
    assert F.conv_rule({(0, 2, 1)}, a, W[:, :, :1, :1], (1, 1), (0, 0), 1, position="activation") == {(0, 2, 1)}
    assert F.conv_rule({(0, 0, 0)}, -torch.ones(1, 3, 3), one, (1, 1), (1, 1), 1,
                       position="activation") == {(0, 0, 0)}     # tie among real: the centre's


class ConcatNet(nn.Module):
    """Two 1×1 branches concatenated along the channels, a global pool, a linear layer."""

    def __init__(self):
        super().__init__()
        self.left, self.right = nn.Conv2d(2, 1, 1), nn.Conv2d(2, 1, 1)
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(2, 1)
        self.eval()

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.cat([self.left(x), self.right(x)], 1)), 1))


def test_the_official_rule_is_the_familys():
    for net, family, position in [(PoolNet(), "plain", "centre"), (ConcatNet(), "inception", "centre"),
                                  (ResidualNet(), "residual", "activation")]:
        graph = F.trace(net)
        assert F.network_family(graph) == family
        assert F.official_position(net) == position == F.FAMILIES[family]


class TinyMBConv(nn.Module):
    """A stem (3×3, stride 2), an inverted-residual block with its skip (1×1 expansion,
    depthwise 3×3, 1×1 projection, BatchNorms, ReLU6), a block without skip (depthwise 5×5 of
    stride 2), a max pool, a two-branch concatenation, a global pool and two linear layers:
    every rule of the walk, with random weights."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        bn_relu = lambda c: [nn.BatchNorm2d(c), nn.ReLU6()]
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), *bn_relu(8))
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1, bias=False), *bn_relu(24))
        self.depthwise = nn.Sequential(nn.Conv2d(24, 24, 3, 1, 1, groups=24, bias=False), *bn_relu(24))
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.down = nn.Sequential(nn.Conv2d(8, 8, 5, 2, 2, groups=8, bias=False), *bn_relu(8))
        self.pool = nn.MaxPool2d(3, 1, 1)
        self.a, self.b = nn.Conv2d(8, 6, 1), nn.Conv2d(8, 4, 3, padding=1, groups=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Linear(10, 12), nn.Linear(12, 5)
        for bn in [m for m in self.modules() if isinstance(m, nn.BatchNorm2d)]:
            nn.init.uniform_(bn.weight, -1, 2)
            nn.init.normal_(bn.bias)
            nn.init.uniform_(bn.running_var, 0.5, 2)
        self.eval()

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.depthwise(self.expand(x)))
        x = self.pool(self.down(x))
        x = torch.relu(torch.cat([self.a(x), self.b(x)], 1))
        return self.fc2(torch.relu(self.fc1(torch.flatten(self.gap(x), 1))))


@pytest.mark.parametrize("seed", range(4))
def test_the_batched_walk_equals_the_reference_walk(seed):
    """The walk routes every point of a layer at once; the rules as written route one point at
    a time (``reference=True``): the same points, paths and layers, for every rule."""
    net = TinyMBConv(seed)
    x = torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(seed))
    recorded = F.record_forward(net, x)
    for position in F.POSITIONS:
        for top in (None, 3):
            for target in range(5):
                fast, fast_layers = F.backtrack(net, x, target, recorded, return_layers=True,
                                                position=position, count=True, top=top)
                slow, slow_layers = F.backtrack(net, x, target, recorded, return_layers=True,
                                                position=position, count=True, top=top, reference=True)
                assert fast == slow and sum(fast.values()) > 0
                assert {k: v.points for k, v in fast_layers.items()} == \
                    {k: v.points for k, v in slow_layers.items()}


def test_the_batched_walk_equals_the_reference_on_the_bundled_model(lite):
    x = lite.spec.preprocess("squirrel")
    recorded = F.record_forward(lite, x)
    for position in F.POSITIONS:
        assert F.backtrack(lite, x, "fox squirrel", recorded, position=position, count=True) == \
            F.backtrack(lite, x, "fox squirrel", recorded, position=position, count=True, reference=True)


# ------------------------------------------------------------------ the authors' outliers and σ

def test_the_outlier_radius_is_strict_and_just_under_a_7x7_grids_spacing():
    """out_rem: a neighbour is *closer* than 0.1 × the diagonal. On a 224-px square that is
    31.7 px, and the places of a 7×7 grid are 32 px apart: a place that holds one point of
    many has no neighbour but itself, and is dropped however crowded the next place is."""
    diagonal = 0.1 * np.hypot(224, 224)
    assert 31 < diagonal < 32
    crowd = Counter({(16 + 32 * i, 16 + 32 * j): 10 for i in range(3) for j in range(3)})
    lone = (16 + 32 * 3, 16 + 32 * 2)                      # next to the crowd, one place down
    kept = F.remove_outliers(crowd + Counter({lone: 1}), (224, 224))
    assert lone not in kept and set(kept) == set(crowd)
    # the same place on a photo 7 % wider keeps it: 0.1 × its diagonal is 32.8 px
    assert lone in F.remove_outliers(crowd + Counter({lone: 1}), (224, 240))
    # exactly at the radius is not within it: two points 10 apart, radius 10, both alone
    far = [(0, 0), (0, 10)] + [(100, 100)] * 38
    assert (0, 0) not in F.remove_outliers(far, (60, 80), radius=0.1)   # diagonal 100


def test_the_blur_is_twenty_pixels_of_the_photo_at_any_size():
    width = lambda m: (m[m.shape[0] // 2] > 0.5).sum()       # full width at half maximum
    for side in (224, 448, 896):
        _, heat = F.fixation_heatmap([(side // 2, side // 2)], (side, side))
        assert width(heat) == pytest.approx(2.355 * 20, abs=3)
