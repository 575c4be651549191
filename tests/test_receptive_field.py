"""Receptive fields against values worked out by hand, and against the gradient."""
import pytest
import torch
import torchvision
from torch import nn

from utils.models import REGISTRY
from utils.receptive_field import (Axis, gradient_footprint, receptive_field, receptive_fields,
                                  whole_field_input)


def tv(name):
    model = torchvision.models.get_model(name, weights=None).eval()
    model.spec = REGISTRY[name]
    return model


def test_vgg16_by_hand():
    # 3×3 convs add 2·jump, 2×2/2 pools add 1·jump and double it:
    # 1+2+2=5 →6 (j2) →14 →16 (j4) →40 →44 (j8) →92 →100 (j16) →196 (conv5_3) →212 (pool5).
    # start moves by (k-1)/2 - p = 0.5 jump at each pool: 0.5, 1.5, 3.5, 7.5, 15.5.
    vgg = tv("vgg16")
    conv1_2, conv5_3, relu5_3, pool5 = receptive_fields(
        vgg, ["features.2", "features.28", "features.29", "features.30"])
    assert (conv1_2.size, conv1_2.jump, conv1_2.start) == (5, 1, 0)
    assert (conv5_3.size, conv5_3.jump, conv5_3.start) == (196, 16, 7.5)
    assert relu5_3.size == 196
    assert (pool5.size, pool5.jump, pool5.start) == (212, 32, 15.5)
    assert pool5.shape == (7, 7)


def test_alexnet_by_hand():
    # torchvision AlexNet: conv1 11/4 pad 2, pool 3/2, conv2 5 pad 2, pool 3/2,
    # conv3-5 3 pad 1, pool 3/2.  size: 11, 19, 51, 67, 99, 131, 163, 195;
    # jump: 4, 8, 8, 16, 16, 16, 16, 32; start 0+(5-2)·1=3, 3+1·4=7, 7+0=7, 7+1·8=15, ..., 15+16=31.
    expected = {"features.0": (11, 4, 3), "features.2": (19, 8, 7), "features.3": (51, 8, 7),
                "features.5": (67, 16, 15), "features.6": (99, 16, 15),
                "features.8": (131, 16, 15), "features.10": (163, 16, 15),
                "features.12": (195, 32, 31)}
    fields = receptive_fields(tv("alexnet"), list(expected))
    assert {f.layer: (f.size, f.jump, f.start) for f in fields} == expected


def test_resnet50_and_googlenet_take_the_largest_path():
    # ResNet-50's last block: 427 px (conv branch, not the identity shortcut).
    assert receptive_field(tv("resnet50"), "layer4").size == 427
    g = torchvision.models.get_model("googlenet", weights=None, init_weights=False).eval()
    g.spec = REGISTRY["googlenet"]
    a, b = receptive_fields(g, ["inception3a.branch1", "inception3a"])
    assert b.size > a.size            # the concatenation sees as far as its widest branch


def test_googlenet_with_its_trained_input_transform():
    """The trained GoogLeNet re-normalises its input colour by colour (``transform_input``:
    x[:, 0], x[:, 1], x[:, 2] rescaled and stacked again): the fields are those of the plain net."""
    layers = ["inception3b", "inception4c", "inception5b"]
    fields = []
    for transform in (True, False):
        g = torchvision.models.googlenet(weights=None, init_weights=False, aux_logits=False,
                                         transform_input=transform).eval()
        fields.append([(f.rows, f.cols, f.shape) for f in receptive_fields(g, layers, 224)])
    assert fields[0] == fields[1]
    assert fields[0][0][0].size < fields[0][1][0].size < fields[0][2][0].size < 1000


class SamePadNet(nn.Module):
    """EfficientNet-style 'same' padding: ZeroPad2d((0, 1, 0, 1)) then a conv with padding 0,
    a residual block, and a stride-2 conv."""

    def __init__(self):
        super().__init__()
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.branch = nn.Conv2d(4, 4, 5, padding=2)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        x = torch.relu(self.stem(self.pad(x)))
        x = x + self.branch(x)
        return self.down(x)


def test_asymmetric_same_padding_and_residual():
    net = SamePadNet().eval()
    stem, res, down = receptive_fields(net, ["stem", "branch", "down"], input_size=32)
    # stem: pad left 0, k3 s2: size 3, jump 2, start 0 + (1 - 0)·1 = 1
    assert (stem.size, stem.jump, stem.start) == (3, 2, 1)
    # branch k5 p2: size 3 + 4·2 = 11, start unchanged; the sum's union is the branch
    assert (res.size, res.jump, res.start) == (11, 2, 1)
    # down k3 s2 p1 on the sum: 11 + 2·2 = 15, jump 4, start 1 + 0 = 1
    assert (down.size, down.jump, down.start) == (15, 4, 1)


def test_gradient_stays_inside_the_receptive_field():
    torch.manual_seed(0)
    net = SamePadNet().eval()
    field = receptive_field(net, "down", input_size=32)
    grad = gradient_footprint(net, "down", 0, 3, 4, input_size=32)
    ys, xs = torch.nonzero(grad > 0, as_tuple=True)
    x0, y0, x1, y1 = field.box(3, 4)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    # for plain convolutions with random weights the bound is tight
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (x0, x1, y0, y1)


def test_bundled_lite0(lite):
    stem, b1, head = receptive_fields(lite, ["stem", "blocks.1", "head"])
    assert (stem.size, stem.jump, stem.start) == (3, 2, 1)
    # blocks.0: depthwise 3×3 s1 → 3 + 2·2 = 7; blocks.1: depthwise 3×3 s2, pad (0, 1) → 11, jump 4, start 3
    assert (b1.size, b1.jump, b1.start) == (11, 4, 3)
    assert head.jump == 32 and head.shape == (7, 7)


def test_box_and_errors():
    field = receptive_field(tv("alexnet"), "features.12")
    assert field.box(0, 0) == (0, 0, 31 + 97 + 1, 31 + 97 + 1)     # clipped at the top-left
    assert field.box(0, 0, clip=False)[0] == 31 - 97
    assert Axis(3, 2, 1).through(3, 1, 1) == Axis(7, 2, 1)
    with pytest.raises(KeyError, match="No layer"):
        receptive_field(tv("alexnet"), "features.99")


def test_whole_field_input_grows_until_a_field_fits():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(2, 2, 3, dilation=120, padding=120)).eval()   # field 483 px
    field, (y, x) = whole_field_input(net, "2")
    x0, y0, x1, y1 = field.box(y, x, clip=False)
    assert field.size == 483 and field.input_size >= 483
    assert min(x0, y0) >= 0 and max(x1, y1) <= field.input_size
    small, _ = whole_field_input(net[:1], "0")                  # 3 px: the default size holds it
    assert small.input_size == 224
