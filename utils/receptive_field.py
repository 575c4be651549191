"""Receptive fields: which input pixels can change one unit of a layer?

Every unit of a conv layer sees a square window of the input, its *receptive field*. Three
numbers per axis describe all the windows of a layer (Araujo, Norris & Sim, Distill 2019;
Dumoulin & Visin 2016):

* ``size`` r   — side of the window, in input pixels;
* ``jump`` j   — distance in input pixels between two neighbouring units (the total stride);
* ``start`` s  — input coordinate of the centre of unit 0 (pixel centres are 0, 1, 2, ...).

Unit i then covers input pixels ``s + i·j - (r-1)/2 ... s + i·j + (r-1)/2``. A layer with
kernel k, dilation d (effective kernel k_e = d(k-1)+1), stride t and left padding p maps
(r, j, s) of its input to

    r_out = r + (k_e - 1)·j,    j_out = j·t,    s_out = s + ((k_e - 1)/2 - p)·j.

Pointwise layers (ReLU, BatchNorm) change nothing. We compute the numbers *from the network
itself*: one forward pass of a blank image, in which every torch operation (module or
functional: ``F.relu``, ``torch.cat``, ``x + identity``, the ``F.pad`` inside EfficientNet's
'same'-padded convolutions) passes its input's (r, j, s) on to its output.

Branches and residual connections: where tensors meet (``+``, ``cat``, ``*``), the output's
window is the **union** of its inputs' windows, i.e. the largest path through the block
(for a ResNet block: the convolution branch, not the identity shortcut). This is the
*theoretical* receptive field; the *effective* one (where the gradient is large) is
concentrated near its centre (Luo et al. 2016), see ``gradient_footprint``.
"""
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from .hooks import capture_activations, check_channel, model_guard, model_spec, resolve_layer


@dataclass(frozen=True)
class Axis:
    """Receptive field along one axis: window size, jump (total stride), centre of unit 0."""
    size: float
    jump: float
    start: float

    def through(self, kernel, stride, pad_left, dilation=1):
        """The field after a conv/pool layer: r + (k_e-1)j, j·t, s + ((k_e-1)/2 - p)j."""
        k_eff = dilation * (kernel - 1) + 1
        return Axis(self.size + (k_eff - 1) * self.jump, self.jump * stride,
                    self.start + ((k_eff - 1) / 2 - pad_left) * self.jump)

    def span(self, i):
        """First and last input coordinate seen by unit i (may lie outside the image)."""
        centre = self.start + i * self.jump
        return centre - (self.size - 1) / 2, centre + (self.size - 1) / 2


GLOBAL = Axis(math.inf, math.inf, 0.0)   # after global pooling: every pixel counts


def union(axes):
    """The window covering all of ``axes`` (where branches or a residual meet)."""
    axes = list(axes)
    if any(a.size == math.inf for a in axes):
        return GLOBAL
    low = min(a.start - (a.size - 1) / 2 for a in axes)
    high = max(a.start + (a.size - 1) / 2 for a in axes)
    return Axis(high - low + 1, max(a.jump for a in axes), (low + high) / 2)


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of every unit of one layer, per axis (rows, cols), plus its map size."""
    layer: str
    rows: Axis
    cols: Axis
    shape: tuple            # (height, width) of the layer's output for the traced input
    input_size: int

    @property
    def size(self):
        return _one(self.rows.size, self.cols.size)

    @property
    def jump(self):
        return _one(self.rows.jump, self.cols.jump)

    @property
    def start(self):
        return _one(self.rows.start, self.cols.start)

    def box(self, y, x, clip=True):
        """Input-pixel box (x0, y0, x1, y1), end exclusive, seen by the unit at (y, x)."""
        y0, y1 = self.rows.span(y)
        x0, x1 = self.cols.span(x)
        box = (x0, y0, x1 + 1, y1 + 1)
        if clip:
            box = tuple(min(max(v, 0), self.input_size) for v in box)
        return box

    def __str__(self):
        return (f"{self.layer}: size {_fmt(self.size)} px, jump {_fmt(self.jump)} px, "
                f"start {_fmt(self.start)} px, map {self.shape[0]}×{self.shape[1]}")


def _one(a, b):
    return a if a == b else (a, b)


def _fmt(v):
    if isinstance(v, tuple):
        return "×".join(_fmt(x) for x in v)
    return "all" if v == math.inf else (f"{v:g}")


def _arg(args, kwargs, index, name, default):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


def _tensors(values):
    for v in values:
        if isinstance(v, torch.Tensor):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _tensors(v)


def _is_map(tensor):
    """N×C×H×W, or one channel of it (N×H×W: GoogLeNet's ``transform_input`` takes the
    colours one by one, ``x[:, 0]``, and stacks them again)."""
    return tensor.dim() in (3, 4)


class _Tracker(TorchFunctionMode):
    """Passes (rows, cols) receptive fields from each op's inputs to its output, for the
    tensors that are maps (``_is_map``): the last two axes are rows and columns."""

    def __init__(self):
        super().__init__()
        self.fields = {}    # id(tensor) -> (rows Axis, cols Axis) or None (unknown)
        self.alive = []     # keep traced tensors alive so that their ids stay unique

    def set(self, tensor, field):
        self.fields[id(tensor)] = field
        self.alive.append(tensor)

    def get(self, tensor):
        return self.fields.get(id(tensor))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in _tensors([out]) if _is_map(t)]
        if not outs:
            return out
        field = self._rule(func, args, kwargs, outs[0])
        for t in outs:
            self.set(t, field)
        return out

    def _rule(self, func, args, kwargs, out):
        name = getattr(func, "__name__", "")
        inputs = [t for t in _tensors(list(args) + list(kwargs.values())) if _is_map(t)
                  and id(t) in self.fields]
        known = [self.get(t) for t in inputs]
        if not known or any(f is None for f in known):
            return None
        rows, cols = known[0]
        first = inputs[0]
        if name == "conv2d":
            k = _arg(args, kwargs, 1, "weight", None).shape[-2:]
            stride = _pair(_arg(args, kwargs, 3, "stride", 1))
            padding = _arg(args, kwargs, 4, "padding", 0)
            dilation = _pair(_arg(args, kwargs, 5, "dilation", 1))
            if padding == "same":
                padding = tuple((d * (kk - 1)) // 2 for d, kk in zip(dilation, k))
            padding = (0, 0) if padding == "valid" else _pair(padding)
            return (rows.through(k[0], stride[0], padding[0], dilation[0]),
                    cols.through(k[1], stride[1], padding[1], dilation[1]))
        if name in ("max_pool2d", "max_pool2d_with_indices", "_max_pool2d", "avg_pool2d"):
            k = _pair(_arg(args, kwargs, 1, "kernel_size", None))
            stride = _arg(args, kwargs, 2, "stride", None)
            stride = k if stride in (None, [], ()) else _pair(stride)
            padding = _pair(_arg(args, kwargs, 3, "padding", 0))
            dilation = (1, 1) if name == "avg_pool2d" else _pair(_arg(args, kwargs, 4, "dilation", 1))
            return (rows.through(k[0], stride[0], padding[0], dilation[0]),
                    cols.through(k[1], stride[1], padding[1], dilation[1]))
        if name == "pad":
            pad = list(_arg(args, kwargs, 1, "pad", ())) + [0, 0, 0, 0]
            left, top = pad[0], pad[2]     # F.pad order: (left, right, top, bottom)
            return (Axis(rows.size, rows.jump, rows.start - top * rows.jump),
                    Axis(cols.size, cols.jump, cols.start - left * cols.jump))
        if name.startswith("adaptive_"):
            if out.shape[-2:] == first.shape[-2:]:
                return rows, cols
            if tuple(out.shape[-2:]) == (1, 1):
                return GLOBAL, GLOBAL
            return None      # a non-trivial adaptive pool: windows of varying size
        if any(t.shape[-2:] != out.shape[-2:] and t.shape[-2:] != (1, 1) for t in inputs):
            return None      # resizing we do not model (interpolate, ...): unknown
        return (union(f[0] for f in known), union(f[1] for f in known))


def receptive_field(model, layer, input_size=None):
    """The ``ReceptiveField`` of every unit of ``layer`` (a role or module path).

    Runs one forward pass of a blank ``input_size``² image (the model's own size by
    default) and follows the receptive field through every operation, as explained at the
    top of this file.
    """
    return receptive_fields(model, [layer], input_size)[0]


def receptive_fields(model, layers, input_size=None):
    """``receptive_field`` for several layers with a single forward pass."""
    spec = model_spec(model)
    size = input_size or (spec.size if spec is not None else 224)
    for name in layers:
        resolve_layer(model, name)          # a clear error for a missing layer, up front
    device = next(model.parameters()).device
    x = torch.zeros(1, 3, size, size, device=device)
    tracker = _Tracker()
    tracker.set(x, (Axis(1, 1, 0), Axis(1, 1, 0)))
    with model_guard(model), torch.no_grad(), capture_activations(model, layers) as acts:
        with tracker:
            model(x)
    fields = []
    for name in layers:
        out = acts[name]
        field = tracker.get(out)
        if field is None:
            raise ValueError(f"Cannot follow the receptive field up to {name!r}: an operation "
                             "on the way resizes the map in a way this code does not model.")
        fields.append(ReceptiveField(str(name), field[0], field[1], tuple(out.shape[-2:]), size))
    return fields


def gradient_footprint(model, layer, channel, y, x, input_size=None):
    """|d unit / d input| summed over colours: the pixels a unit *actually* depends on.

    Nonzero only inside the theoretical receptive field (tests check it); usually
    concentrated near its centre (the effective receptive field of Luo et al. 2016).
    """
    spec = model_spec(model)
    size = input_size or (spec.size if spec is not None else 224)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, size, size, generator=gen).to(device).requires_grad_(True)
    with model_guard(model, freeze=True), torch.enable_grad(), \
            capture_activations(model, [layer], detach=False) as acts:      # also under no_grad
        model(image)
        check_channel(acts[layer], channel, layer, (y, x))
        acts[layer][0, channel, y, x].backward()
    return image.grad[0].abs().sum(0).cpu()



def whole_field_input(model, layer):
    """The smallest input on which a unit's whole receptive field lies inside the image,
    from the model's own size up in steps of the layer's jump: that ``ReceptiveField`` and
    the unit (y, x) nearest the image's centre among those whose field fits. On a smaller
    input part of the field is padding, and the footprint cannot be compared with it."""
    field = receptive_field(model, layer)
    while True:
        size, (h, w) = field.input_size, field.shape
        inside = [(y, x) for y in range(h) for x in range(w)
                  if min(field.box(y, x, clip=False)) >= 0 and max(field.box(y, x, clip=False)) <= size]
        if inside:
            centre = (size - 1) / 2
            return field, min(inside, key=lambda u: abs(field.rows.start + u[0] * field.rows.jump - centre)
                              + abs(field.cols.start + u[1] * field.cols.jump - centre))
        jump = int(max(field.rows.jump, field.cols.jump))
        wanted = int(math.ceil((max(field.rows.size, field.cols.size) + 2 * jump) / jump)) * jump
        field = receptive_field(model, layer, max(size + jump, wanted))


def centre_share(footprint, box):
    """How much of a gradient footprint (H×W) lies in the centre of its field ``box``.

    Returns (share of Σ|footprint| inside the box that falls in the central box of half its
    width and height, that central box's share of the box's area). A flat footprint (every
    pixel of the field counts alike) scores the area share, 0.25: that is chance.
    """
    footprint = np.abs(np.asarray(footprint, dtype=np.float64))
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    field = footprint[y0:y1, x0:x1]
    h, w = field.shape
    top, left = int(round(h / 4)), int(round(w / 4))
    centre = field[top:top + int(round(h / 2)), left:left + int(round(w / 2))]
    return float(centre.sum() / max(field.sum(), 1e-30)), centre.size / field.size


def concentrated_near_centre(footprint, box):
    """True if the central quarter of the field holds more of the footprint than a flat
    footprint would (``centre_share`` above its area share): the effective receptive field
    is smaller than the theoretical one (Luo et al. 2016)."""
    share, area = centre_share(footprint, box)
    return share > area


def coverage(field, y, x):
    """The share of the input that unit (y, x) sees: its field clipped to the image."""
    x0, y0, x1, y1 = field.box(y, x)
    return (x1 - x0) * (y1 - y0) / field.input_size ** 2


def least_covered_unit(field):
    """The unit (y, x) of the layer that sees the smallest share of the input (a corner
    unit; with asymmetric padding, the corner whose field sticks out furthest)."""
    h, w = field.shape
    return min(((y, x) for y in range(h) for x in range(w)), key=lambda u: coverage(field, *u))


def smallest_coverage(field):
    """The smallest share of the input that any unit of the layer sees (its field clipped
    to the image): the share of ``least_covered_unit``."""
    return coverage(field, *least_covered_unit(field))


def show_footprint(footprint, box, ax, title=None, margin=0.25, color="#00e5ff"):
    """A gradient footprint on its own (no photo under it), as sqrt(|grad|), its colours from
    0 to the 99.5th percentile inside the field (a few pixels are brighter), cropped to the
    field ``box`` plus ``margin`` of its side on every side, with the box drawn."""
    footprint = np.sqrt(np.abs(np.asarray(footprint, dtype=np.float64)))
    x0, y0, x1, y1 = box
    pad = margin * max(x1 - x0, y1 - y0)
    H, W = footprint.shape
    left, top = int(max(0, x0 - pad)), int(max(0, y0 - pad))
    right, bottom = int(min(W, x1 + pad)), int(min(H, y1 + pad))
    inside = footprint[int(max(0, y0)):int(y1), int(max(0, x0)):int(x1)]
    ax.imshow(footprint[top:bottom, left:right], cmap="magma", vmin=0,
              vmax=float(np.quantile(inside, 0.995)) or 1.0,
              extent=(left - 0.5, right - 0.5, bottom - 0.5, top - 0.5))
    from matplotlib.patches import Rectangle
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=2, ec=color))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=11)
    return ax


def show_receptive_field(image, field, units, ax=None, colors=("#00e5ff", "#ffd600", "#ff4081")):
    """``image`` (shown at the network's input size) with the receptive field of each unit
    (y, x) in ``units`` as a box, its centre as a dot, and the grid of all unit centres."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.6))
    size = field.input_size
    ax.imshow(image.resize((size, size)) if hasattr(image, "resize") else image,
              extent=(-0.5, size - 0.5, size - 0.5, -0.5))
    h, w = field.shape
    cy = field.rows.start + field.rows.jump * np.arange(h)
    cx = field.cols.start + field.cols.jump * np.arange(w)
    gx, gy = np.meshgrid(cx, cy)
    ax.plot(gx.ravel(), gy.ravel(), ".", color="white", ms=2 if h * w <= 900 else 1, alpha=0.7)
    low, high = -0.5, size - 0.5                 # the view: the image and every box drawn
    for (y, x), color in zip(units, colors):
        x0, y0, x1, y1 = field.box(y, x, clip=False)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, lw=2.5,
                               ec=color, ls="-"))
        ax.plot(cx[x], cy[y], "o", color=color, ms=6)
        if math.isfinite(x0):
            low, high = min(low, x0 - 0.5, y0 - 0.5), max(high, x1 - 0.5, y1 - 0.5)
    margin = 0.03 * (high - low)
    ax.set_xlim(low - margin, high + margin)
    ax.set_ylim(high + margin, low - margin)
    ax.set_title(f"{field.layer}\nRF {_fmt(field.size)} px, jump {_fmt(field.jump)}", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax
