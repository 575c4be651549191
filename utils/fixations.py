"""CNN-Fixations: the image points that support a prediction, found without gradients.

Mopuri, Garg & Babu, "CNN Fixations: An unraveling approach to visualize the
discriminative image regions", IEEE TIP 2019 (arXiv 1708.06670).

One forward pass records every layer's input. Then, starting from the class neuron, the
set of *fixations* is carried down the network, layer by layer, to pixel positions. The
authors' code (val-iisc/cnn-fixations) has one set of rules per family of network: plain
networks (``demo/layers.py``, their AlexNet and VGG-16 demos), GoogLeNet (``layers.py``
``inception``) and residual networks (``demo/demo_res101.ipynb``, functions ``start``,
``res2res``, ``end``). Here the rules run on the traced graph of any torchvision-style CNN
instead of one hand-written path per network; each rule says whose it is:

* FC → FC (the input is a vector): keep every input neuron j with a positive
  contribution a_j · W_ij to a kept neuron i (layers.py ``fc``; the residual demo's
  ``start`` means the same, its comment says "choosing all positive elements", but its
  ascending ``argsort(conv)[:num]`` keeps the smallest contributions: we follow the paper).
* FC → conv (the input is a flattened H×W>1 map): keep the single best contributor
  argmax_j a_j · W_ij, a point (channel, y, x) (layers.py ``fc``, ``data.ndim == 3``).
* conv (grouped and depthwise too): for a point (k, y, x), each input channel c
  contributes Σ_window a_c · W'_kc over the (zero-padded) window under the point; keep the
  channel c* with the largest contribution (layers.py ``conv``, and every conv of the
  residual demo). W' is the weight with the BatchNorm that follows the conv folded in
  (scale γ/√(σ²+ε) per output channel). The point's position is one of three rules
  (``POSITIONS``; ``position="official"``, the default, picks the family's, ``FAMILIES``):
  "centre" (the plain-network and GoogLeNet demos): the point keeps its place on the grid,
  the centre of its window (layers.py ``conv`` returns (S·y, S·x), which is the window
  centre for every padded conv of AlexNet, VGG and GoogLeNet; for AlexNet's unpadded conv1
  it is the window's corner, 5 px off, a shift we do not copy);
  "activation" (the residual demo): in a conv wider than 1×1 the real window position
  where the *activation* of c* is largest (the weights do not count), as ``res2res`` does
  in the 3×3 convs and ``end`` in conv1; a 1×1 conv keeps the place. Carried over to
  EfficientNet's inverted-residual blocks as it stands (1×1 expansion and projection keep
  the place, the depthwise k×k moves it, the stem too); in a depthwise conv the channel
  is forced (ours: the demo has none);
  "strongest" (ours): the real window position where c* *contributes* most, if it
  contributes positively anywhere (else the centre).
  Ties go to the position nearest the centre (``np.argmax`` in the demos takes the first).
* max / average pooling (adaptive and global too): the maximum of the same channel inside
  the pooling window ("the switch"; layers.py ``pool``; the residual demo treats the
  global average pool this way). Where several positions share the maximum (ReLU6
  saturates at 6), all of them are kept, instead of the first in raster order (the
  top-left one).
* residual addition out = branch + skip: follow the skip if its activation at the point
  is ≥ the branch's, else the branch (the residual demo's ``res2res``).
* channel concatenation: the input that owns the channel (layers.py ``inception``).
* element-wise layers (ReLU, ReLU6, BatchNorm, dropout, scaling): the point is unchanged.

The paper keeps the points of each layer as a *set*: a point reached along several paths is
one point. The walk here also counts the paths that reach each point (the rules route each
point on its own, so the set is exactly the counted points' keys); ``count=True`` returns
the counts. On a network without max pooling that number is what tells the object from the
background best (notebook 06 measures it). The walk routes all the points of a layer at once
(the batched rules); ``reference=True`` routes one point at a time with the rules as
written, and the tests check that both agree.

At the input, points are pixel positions; the authors' outlier rule drops a point unless
more than 5% of all points lie closer than 0.1 × the image diagonal (demo/utils.py
``out_rem``, ``diag_percent=0.1``), and their ``heatmap(img, points, sigma=20)`` blurs the
rest with σ = 20 px of the image the points live in, whatever its size
(``fixation_heatmap``: both are its defaults).

Coordinates (as everywhere in ``utils``, see utils/README.md): a point is (y, x), row then
column, in whole pixels. ``backtrack`` returns points of the network input (S×S, the whole
photo resized); ``cnn_fixations`` and ``FixationExplorer`` return points of the upright
photo (``to_image_coordinates``). Sizes are (H, W), like array shapes; only PIL's
``image.size`` is (W, H).
"""
import math
import warnings
import weakref
from collections import Counter, defaultdict, namedtuple

import numpy as np
import torch
import torch.fx as fx
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.nn.modules.utils import _pair

from .hooks import model_guard
from .images import load_image, one_image
from .plotting import MAX_PER_ROW
from .receptive_field import Axis
from .targets import check_target, choose_target

ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout,
                       nn.Identity, nn.LeakyReLU, nn.Hardtanh)
POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
LEAF_MODULES = (nn.Conv2d, nn.Linear) + ELEMENTWISE_MODULES + POOL_MODULES
POSITIONS = ("centre", "activation", "strongest")     # where a conv moves a point: see conv_rule


class _Tracer(fx.Tracer):
    """Keeps every Conv2d (also subclasses with built-in padding) as one node."""

    def is_leaf_module(self, module, qualified_name):
        return isinstance(module, LEAF_MODULES) or super().is_leaf_module(module, qualified_name)


def trace(model):
    """The model's computation graph (torch.fx), with convs, pools and linears as nodes."""
    try:
        graph = _Tracer().trace(model)
    except Exception as err:
        raise TypeError(f"CNN-Fixations could not trace {type(model).__name__} with torch.fx "
                        f"({type(err).__name__}: {err}). It needs a network without "
                        "data-dependent control flow.") from None
    return fx.GraphModule(model, graph)


class _Recorder(fx.Interpreter):
    """Runs the graph once and keeps every node's output."""

    def run_node(self, node):
        out = super().run_node(node)
        self.values[node] = out
        return out


def record(graph_module, x):
    """{node: output tensor} for one forward pass (no gradients)."""
    recorder = _Recorder(graph_module)
    recorder.values = {}
    with torch.no_grad():
        recorder.run(x)
    return recorder.values


# ------------------------------------------------------------------- rules, one per layer
#
# Each rule is written twice. The functions below (``fc_rule``, ``conv_rule``, ...) route one
# point at a time, as the paper states the rules: they are the reference, read in the notebook
# and checked by hand in tests/test_fixations.py. The walk runs their batched forms
# (``_fc_batch``, ``_conv_batch``, ...: every point of a layer at once, as index tensors),
# which tests/test_fixations.py checks equal to the reference walk (``backtrack(...,
# reference=True)``) on small networks.

def fc_rule(points, a, weight, spatial_input, top=None):
    """FC layer. ``a``: input vector (D,); ``weight``: (out, D); points: {(i,)}.
    ``top``: keep only the ``top`` largest positive contributions (None: all positive ones)."""
    kept = set()
    for (i,) in points:
        contributions = a * weight[i]                          # c_j = a_j · W_ij
        if spatial_input:                                      # FC -> conv: single best
            kept.add((int(contributions.argmax()),))
        else:                                                  # FC -> FC: all positive
            positive = torch.nonzero(contributions > 0).flatten()
            if top is not None:
                positive = positive[contributions[positive].argsort(descending=True)[:top]]
            kept.update((int(j),) for j in positive.tolist())
    return kept


def conv_rule(points, a, weight, stride, pad, groups, position="centre"):
    """Conv layer. ``a``: input (C, H, W); ``weight``: (K_out, C/groups, kh, kw), BN folded.

    A point (k, y, x) goes to channel c* = argmax_c Σ_window a_c · W_kc, the input channel
    contributing most (zero padding contributes nothing), at ``position``:
    "centre" (the plain-network demo, layers.py ``conv``): the centre of the window, the
    same place on the grid; "activation" (the residual demo, ``res2res`` and ``end``): the
    real window position where the *activation* a_c* is largest; "strongest" (ours): the
    real window position where c* *contributes* most, a_c* · W_kc*, if it contributes
    positively anywhere. Ties go to the position nearest the centre (``best_position``).
    A 1×1 window has one position: every rule keeps the place.
    """
    C, H, W = a.shape
    kh, kw = weight.shape[2:]
    in_per_group = C // groups
    out_per_group = weight.shape[0] // groups
    centre = ((kh - 1) // 2, (kw - 1) // 2)
    kept = set()
    for k, y, x in points:
        top, left = stride[0] * y - pad[0], stride[1] * x - pad[1]
        first = (k // out_per_group) * in_per_group
        window = _window(a[first:first + in_per_group], top, left, kh, kw)
        contribution = window * weight[k]                      # C/groups × kh × kw
        best = int(contribution.sum(dim=(1, 2)).argmax())
        dy, dx = centre
        if position != "centre" and kh * kw > 1:
            real = _on_map(top, left, kh, kw, H, W, a.device)
            if position == "activation":
                dy, dx = best_position(window[best], real, centre, positive=False)
            else:
                dy, dx = best_position(contribution[best], real, centre, positive=True)
        kept.add((first + best, min(max(top + dy, 0), H - 1), min(max(left + dx, 0), W - 1)))
    return kept


def best_position(values, real, centre, positive):
    """(dy, dx) in a kh×kw window: the largest of ``values`` among the ``real`` positions (a
    kh×kw mask, False on padding; None: all real), the one nearest ``centre`` if several tie
    (``np.argmax`` in the authors' code takes the first, the top-left one: a dead ReLU's
    window of zeros would walk the point up and to the left, layer after layer).
    ``positive=True`` (the "strongest" rule): ``centre`` unless the largest value is > 0."""
    values = values if real is None else values.masked_fill(~real, -math.inf)
    top = values.max()
    if positive and not top > 0:
        return centre
    ys, xs = torch.nonzero(values == top, as_tuple=True)
    if len(ys) == 1:
        return int(ys[0]), int(xs[0])
    nearest = int(((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2).argmin())
    return int(ys[nearest]), int(xs[nearest])


def _on_map(top, left, kh, kw, H, W, device=None):
    """kh×kw mask (on ``device``, the activations' own), True where the window starting at
    (top, left) lies on the H×W map; None if it lies on the map entirely."""
    if top >= 0 and left >= 0 and top + kh <= H and left + kw <= W:
        return None
    rows, cols = torch.arange(top, top + kh, device=device), torch.arange(left, left + kw, device=device)
    return ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]


def _window(a, top, left, kh, kw):
    """a[:, top:top+kh, left:left+kw] with zeros where the window leaves the map (padding)."""
    C, H, W = a.shape
    if top >= 0 and left >= 0 and top + kh <= H and left + kw <= W:
        return a[:, top:top + kh, left:left + kw]
    window = a.new_zeros(C, kh, kw)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + kh, H), min(left + kw, W)
    if y1 > y0 and x1 > x0:
        window[:, y0 - top:y1 - top, x0 - left:x1 - left] = a[:, y0:y1, x0:x1]
    return window


def pool_rule(points, a, out_size, kernel=None, stride=None, pad=(0, 0)):
    """Pooling. Each (c, y, x) goes to the maximum of channel c inside its window (all the
    positions that share it, if several do)."""
    C, H, W = a.shape
    kept = set()
    for c, y, x in points:
        if kernel is None:                                     # adaptive: PyTorch's windows
            y0, y1 = (y * H) // out_size[0], math.ceil((y + 1) * H / out_size[0])
            x0, x1 = (x * W) // out_size[1], math.ceil((x + 1) * W / out_size[1])
        else:
            y0, x0 = stride[0] * y - pad[0], stride[1] * x - pad[1]
            y1, x1 = y0 + kernel[0], x0 + kernel[1]
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, H), min(x1, W)
        window = a[c, y0:y1, x0:x1]
        for dy, dx in torch.nonzero(window == window.max()).tolist():
            kept.add((c, y0 + dy, x0 + dx))
    return kept


def add_rule(points, skip, branch):
    """Residual addition: to the skip input if skip ≥ branch at the point, else the branch."""
    to_skip, to_branch = set(), set()
    for point in points:
        (to_skip if skip[point] >= branch[point] else to_branch).add(point)
    return to_skip, to_branch


def cat_rule(points, sizes):
    """Channel concatenation: (c, y, x) -> (input index, (c - offset, y, x))."""
    offsets = np.cumsum([0] + list(sizes))
    routed = defaultdict(set)
    for c, *rest in points:
        index = int(np.searchsorted(offsets, c, side="right") - 1)
        routed[index].add((c - int(offsets[index]), *rest))
    return routed


# The batched forms, in NumPy (a few microseconds per operation on the small arrays of a
# walk, where a torch call costs tens). ``idx``: the points of a layer as an N×d integer
# array (rows (i,) or (c, y, x)); each returns (new points M×d', the source row of each, M)
# so that the paths of a point follow it. Work is split into chunks of about CHUNK numbers
# to bound the memory.
CHUNK = 1 << 22
_ARRAYS = {}      # (id of a recorded tensor, layout) -> (a weak reference to it, its array)


def _array(t, channels_last=False):
    """A NumPy copy of the recorded tensor ``t`` (on the CPU; with ``channels_last``, its
    channels moved last: …×H×W×C), kept while ``t`` lives: the explorer reuses one recorded
    pass for every class, and a point's channels are then one contiguous row."""
    key = (id(t), channels_last)
    ref, array = _ARRAYS.get(key, (None, None))
    if ref is None or ref() is not t:
        for stale in [k for k, (r, _) in _ARRAYS.items() if r() is None]:
            del _ARRAYS[stale]                            # the tensor is gone: free its copy
        source = t.detach().float().cpu()
        array = np.ascontiguousarray((source.movedim(-3, -1) if channels_last else source).numpy())
        _ARRAYS[key] = (weakref.ref(t), array)
    return array


def _chunks(n, per_point):
    step = max(1, CHUNK // max(1, per_point))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _fc_batch(idx, a, weight, spatial_input, top=None):
    """``fc_rule`` for every point at once."""
    points, sources = [], []
    for part in _chunks(len(idx), a.size):
        contributions = a[None] * weight[idx[part, 0]]           # N × D
        rows = np.arange(part.start, part.stop)
        if spatial_input:
            points.append(contributions.argmax(axis=1)[:, None])
            sources.append(rows)
            continue
        keep = contributions > 0
        if top is not None and top < contributions.shape[1]:
            strongest = np.argsort(-contributions, axis=1, kind="stable")[:, :top]
            chosen = np.zeros_like(keep)
            np.put_along_axis(chosen, strongest, True, axis=1)
            keep &= chosen
        n, j = np.nonzero(keep)
        points.append(j[:, None])
        sources.append(rows[n])
    return np.concatenate(points), np.concatenate(sources)


def _gather_windows(a, channels, top, left, kh, kw, fill, last=None):
    """a[channels[n], top[n] + i, left[n] + j] for every point n, as N × kh × kw × channels
    (``channels``: N × m indices, or None for all of them, read from ``last``, ``a`` with its
    channels last), ``fill`` off the map, and the N × kh × kw mask of the positions on the map."""
    _, H, W = a.shape
    rows = top[:, None] + np.arange(kh)
    cols = left[:, None] + np.arange(kw)
    real = ((rows >= 0) & (rows < H))[:, :, None] & ((cols >= 0) & (cols < W))[:, None, :]
    rows, cols = np.clip(rows, 0, H - 1)[:, :, None], np.clip(cols, 0, W - 1)[:, None, :]
    if channels is None:
        window = (np.moveaxis(a, 0, -1) if last is None else last)[rows, cols]
    else:
        window = a[channels[:, None, None, :], rows[..., None], cols[..., None]]
    return np.where(real[..., None], window, np.float32(fill)), real


def _best_position_batch(values, real, centre, positive):
    """``best_position`` for N windows (N × kh × kw) at once: (dy, dx), two N-vectors."""
    n, kh, kw = values.shape
    values = np.where(real, values, -np.inf)
    top = values.reshape(n, -1).max(axis=1)
    ys, xs = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    distance = ((ys - centre[0]) ** 2 + (xs - centre[1]) ** 2).astype(np.float64)
    ties = values == top[:, None, None]
    flat = np.where(ties, distance, np.inf).reshape(n, -1).argmin(axis=1)
    dy, dx = flat // kw, flat % kw
    if positive:
        dead = ~(top > 0)
        dy, dx = np.where(dead, centre[0], dy), np.where(dead, centre[1], dx)
    return dy, dx


def _conv_batch(idx, a, weight, stride, pad, groups, position="centre", last=None):
    """``conv_rule`` for every point at once. ``a``: C×H×W; ``weight``: K × kh × kw × C/g
    (channels last, BatchNorm folded); ``last``: ``a`` with its channels last."""
    C, H, W = a.shape
    kh, kw = weight.shape[1:3]
    in_per_group, out_per_group = C // groups, weight.shape[0] // groups
    centre = ((kh - 1) // 2, (kw - 1) // 2)
    if kh * kw == 1 and pad == (0, 0) and groups == 1 and last is not None:   # 1×1: one row each
        k, y, x = idx.T
        y, x = stride[0] * y, stride[1] * x
        best = (last[y, x] * weight[k, 0, 0]).argmax(axis=1)
        return np.stack([best, y, x], axis=1), np.arange(len(idx))
    group = np.arange(in_per_group)
    points = []
    for part in _chunks(len(idx), in_per_group * kh * kw):
        k, y, x = idx[part].T
        top, left = stride[0] * y - pad[0], stride[1] * x - pad[1]
        first = (k // out_per_group) * in_per_group
        channels = None if groups == 1 else first[:, None] + group
        window, real = _gather_windows(a, channels, top, left, kh, kw, 0.0, last)  # N×kh×kw×C/g
        contribution = window * weight[k]
        best = contribution.sum(axis=(1, 2)).argmax(axis=1)
        dy, dx = np.full_like(y, centre[0]), np.full_like(x, centre[1])
        if position != "centre" and kh * kw > 1:
            rows = np.arange(len(best))
            chosen = window[rows, :, :, best] if position == "activation" else contribution[rows, :, :, best]
            dy, dx = _best_position_batch(chosen, real, centre, positive=position == "strongest")
        points.append(np.stack([first + best, np.clip(top + dy, 0, H - 1),
                                np.clip(left + dx, 0, W - 1)], axis=1))
    return np.concatenate(points), np.arange(len(idx))


def _pool_batch(idx, a, out_size, kernel=None, stride=None, pad=(0, 0)):
    """``pool_rule`` for every point at once (every tied maximum kept)."""
    C, H, W = a.shape
    c, y, x = idx.T
    if kernel is None:                                     # adaptive: PyTorch's windows
        y0, y1 = (y * H) // out_size[0], -((-(y + 1) * H) // out_size[0])
        x0, x1 = (x * W) // out_size[1], -((-(x + 1) * W) // out_size[1])
        kh, kw = int((y1 - y0).max()), int((x1 - x0).max())
    else:
        y0, x0 = stride[0] * y - pad[0], stride[1] * x - pad[1]
        y1, x1 = y0 + kernel[0], x0 + kernel[1]
        kh, kw = kernel
    window, real = _gather_windows(a, c[:, None], y0, x0, kh, kw, -np.inf)
    inside = ((np.arange(kh) < (y1 - y0)[:, None])[:, :, None]
              & (np.arange(kw) < (x1 - x0)[:, None])[:, None, :])
    window = np.where(real & inside, window[..., 0], -np.inf)
    n, i, j = np.nonzero(window == window.reshape(len(idx), -1).max(axis=1)[:, None, None])
    return np.stack([c[n], y0[n] + i, x0[n] + j], axis=1), n


def _add_batch(idx, skip, branch):
    """``add_rule`` for every point at once: (rows to the skip, rows to the branch)."""
    c, y, x = idx.T
    to_skip = skip[c, y, x] >= branch[c, y, x]
    return np.nonzero(to_skip)[0], np.nonzero(~to_skip)[0]


# ------------------------------------------------------------------- the graph walk

def _conv_padding(module):
    """(top, left) padding of the conv, plus any static 'same' padding module inside it."""
    pad = list(_pair(module.padding)) if not isinstance(module.padding, str) else [0, 0]
    static = getattr(module, "static_padding", None)
    if isinstance(static, nn.ZeroPad2d):
        left, right, top, bottom = static.padding
        pad = [pad[0] + top, pad[1] + left]
    elif isinstance(module.padding, str) and module.padding == "same":
        pad = [(module.kernel_size[0] - 1) // 2, (module.kernel_size[1] - 1) // 2]
    return tuple(pad)


def _folded_weight(gm, node):
    """Conv weight with the following BatchNorm's per-channel scale folded in (cached)."""
    cache = gm.__dict__.setdefault("_folded_weights", {})
    if node.target not in cache:
        cache[node.target] = _fold(gm, node)
    return cache[node.target]


def _fold(gm, node):
    conv = gm.get_submodule(node.target)
    weight = conv.weight.detach()
    users = list(node.users)
    if len(users) == 1 and users[0].op == "call_module":
        bn = gm.get_submodule(users[0].target)
        if isinstance(bn, nn.BatchNorm2d):
            scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
            weight = weight * scale.view(-1, 1, 1, 1)
    return weight


def _is_flatten(node):
    return (node.op == "call_function" and node.target is torch.flatten) or \
        (node.op == "call_method" and node.target in ("view", "reshape", "flatten"))


def _spatial_vector(node, values):
    """True if this vector node is a flattened map with H×W > 1 (walks element-wise ops)."""
    while True:
        if _is_flatten(node):
            source = values[node.args[0]]
            return source.dim() == 4 and source.shape[2] * source.shape[3] > 1
        inputs = node.all_input_nodes
        if node.op not in ("call_module", "call_function", "call_method") or len(inputs) != 1:
            return False
        if node.op == "call_module" and not isinstance(node.graph.owning_module.get_submodule(
                node.target), ELEMENTWISE_MODULES):
            return False                                       # a Linear or pool: not a flatten
        node = inputs[0]


def record_forward(model, x, graph=None):
    """Trace ``model`` (or reuse ``graph``) and run it once on ``x``: (graph, values).

    Eval mode, no gradients. A widget that changes only the class reuses the result.
    """
    x = one_image(x, model)
    with model_guard(model):
        gm = graph if graph is not None else trace(model)
        return gm, record(gm, x)


Layer = namedtuple("Layer", "points shape centres cut axes", defaults=(None,))
Layer.__doc__ = """The points as they reach one layer's input: {(c, y, x): paths} (the
paper's set is its keys), the input's shape (C, H, W) (or (D,) for a vector), each point's
input pixel at the centre of its receptive field, {(c, y, x): (y, x)} (None for a vector),
and ``cut``: True if every path of the network runs through this input (a block boundary),
so that it holds *all* the points at that depth (inside a residual block the points that
took the skip are elsewhere); ``axes``: the map's receptive-field (rows, cols) ``Axis``
(``grid_places``)."""


FAMILIES = {"plain": "centre", "inception": "centre", "residual": "activation"}
FAMILIES_DOC = """The authors' rule for each family of network (``position="official"``):
plain networks (AlexNet, VGG-16: demo/layers.py) and GoogLeNet (concatenations:
layers.py ``inception``) keep a point at its window's centre in every convolution; residual
networks (ResNet-101: demo/demo_res101.ipynb) move it to the strongest activation of the
chosen channel in every convolution wider than 1×1 (``network_family``)."""


def network_family(graph_module):
    """"residual" if the graph adds two maps of the same shape (a skip connection),
    "inception" if it concatenates maps along the channels, else "plain"."""
    family = "plain"
    for node in graph_module.graph.nodes:
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if _is_add(node) and len(tensors) == 2:
            return "residual"
        if node.target is torch.cat and (node.args[1:] or [node.kwargs.get("dim", 0)])[0] == 1:
            family = "inception"
    return family


def official_position(model, graph=None):
    """The conv rule of the authors' demo for ``model``'s family (``FAMILIES``)."""
    return FAMILIES[network_family(graph if graph is not None else trace(model))]


def _is_add(node):
    target = node.target
    return target in (torch.add, "add", "__add__", "iadd", "__iadd__") or \
        getattr(target, "__name__", "") in ("add", "iadd")


def backtrack(model, x, target=None, recorded=None, return_layers=False, position="official",
              count=False, top=None, reference=False):
    """Fixations for class ``target`` on one image ``x`` (1×3×H×W): pixels of the input.

    ``target``: a class index or label (None: the predicted class; ``utils.targets``).
    ``recorded`` is an earlier ``record_forward(model, x)``. ``position``: where a conv
    moves a point (``conv_rule``): "official" (default: the authors' rule for the network's
    family, ``official_position``), "centre" (their plain-network demo), "activation" (their
    residual demo) or "strongest" (ours).
    ``count=False`` (the paper): the points of every layer are a set, and the sorted list
    of distinct (y, x) comes back. ``count=True``: a ``Counter`` {(y, x): number of paths
    from the class neuron} (its keys are the same pixels).
    With ``return_layers=True`` also returns {layer name: ``Layer``} for every conv, pool
    and linear layer on the way, from the class down to the pixels.
    ``top``: at the FC -> FC layers keep only the ``top`` strongest positive inputs of each
    neuron (None, as both demos: all of them. The residual demo's ``start`` means all
    positive ones, "choosing all positive elements", but its ascending
    ``np.argsort(conv)[:num]`` keeps the ``num`` smallest contributions; we follow the paper).
    ``reference=True`` routes one point at a time with the rules as written (``conv_rule``
    ...), slowly; the default routes every point of a layer at once, with the same result.
    """
    if position not in POSITIONS + ("official",):
        raise ValueError(f"position is one of {POSITIONS + ('official',)}, not {position!r}")
    x = one_image(x, model)
    targets = check_target(model, target, 1)
    gm, values = recorded or record_forward(model, x)
    if position == "official":
        position = official_position(model, gm)
    output = _output_node(gm)
    target = int(choose_target(targets, values[output])[0])
    walk = _walk_reference if reference else _walk
    reached = walk(gm, values, output, target, position, top)
    image = next(n for n in gm.graph.nodes if n.op == "placeholder")
    pixels = Counter()
    for (*_, y, x_), paths in reached.get(image, Counter()).items():
        pixels[(y, x_)] += paths
    pixels = pixels if count else sorted(pixels)
    return (pixels, _layers(gm, values, reached)) if return_layers else pixels


def _walk_reference(gm, values, output, target, position, top):
    """{node: Counter {point: paths}}: the points reaching each node, one point at a time."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    pending = defaultdict(Counter)
    pending[output][(target,)] = 1
    reached = {}                                   # node -> its points, once all are in
    for node in reversed(list(gm.graph.nodes)):
        if node.op == "get_attr" or not pending.get(node):
            continue
        reached[node] = pending.pop(node)
        if node.op == "placeholder":
            continue
        rule = _rule(gm, node, values, order, position, top)
        for point, paths in reached[node].items():
            for source, sources in rule({point}).items():
                for q in sources:
                    pending[source][q] += paths
    return reached


class _Points(namedtuple("_Points", "idx paths distinct", defaults=(False,))):
    """The points reaching a node in the batched walk: an N×d integer array of points, the
    number of paths to each (N), and whether they are known to be distinct."""

    def counter(self):
        return Counter(dict(zip(map(tuple, self.idx.tolist()), self.paths.tolist())))


def _merge(parts):
    """One ``_Points`` from several (each point once, its paths summed)."""
    if len(parts) == 1 and (parts[0].distinct or len(parts[0].idx) < 2):
        return parts[0]
    idx = np.concatenate([p.idx for p in parts])
    paths = np.concatenate([p.paths for p in parts])
    sizes = tuple(int(s) for s in idx.max(axis=0) + 1)
    keys, inverse = np.unique(np.ravel_multi_index(tuple(idx.T), sizes), return_inverse=True)
    unique = np.stack(np.unravel_index(keys, sizes), axis=1)
    summed = np.zeros(len(keys), dtype=np.int64)
    np.add.at(summed, inverse.reshape(-1), paths)
    return _Points(unique, summed, True)


class _LazyCounters(dict):
    """{node: Counter}, converted from the batched walk's arrays only when read."""

    def __getitem__(self, node):
        value = super().__getitem__(node)
        if isinstance(value, _Points):
            value = value.counter()
            self[node] = value
        return value

    def get(self, node, default=None):
        return self[node] if node in self else default

    def items(self):
        return [(node, self[node]) for node in self]


def _walk(gm, values, output, target, position, top):
    """``_walk_reference`` with every point of a node routed at once (the batched rules)."""
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    pending = defaultdict(list)
    pending[output].append(_Points(np.array([[target]]), np.ones(1, dtype=np.int64), True))
    reached = _LazyCounters()
    for node in reversed(list(gm.graph.nodes)):
        parts = [p for p in pending.pop(node, []) if len(p.idx)]
        if node.op == "get_attr" or not parts:
            continue
        points = _merge(parts)
        reached[node] = points
        if node.op == "placeholder":
            continue
        for source, (new, rows) in _batch_rule(gm, node, values, order, position, top)(points.idx).items():
            if rows is None:                       # one to one (element-wise, flatten)
                pending[source].append(_Points(new, points.paths, True))
            elif len(new):
                pending[source].append(_Points(new, points.paths[rows]))
    return reached


def _batch_rule(gm, node, values, order, position, top=None):
    """``_rule`` batched: N×d points at the node's output -> {input node: (points, rows)}
    (rows None: each point to one point, its own)."""
    inputs = [a for a in node.args if isinstance(a, fx.Node)]
    same = lambda idx: {inputs[0]: (idx, None)}
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        if isinstance(module, ELEMENTWISE_MODULES):
            return same
        a = _array(values[inputs[0]])[0]
        if isinstance(module, nn.Linear):
            spatial, weight = _spatial_vector(inputs[0], values), _array(module.weight)
            return lambda idx: {inputs[0]: _fc_batch(idx, a, weight, spatial, top)}
        if isinstance(module, nn.Conv2d):
            if _pair(module.dilation) != (1, 1):
                raise NotImplementedError("dilated convolutions are not supported")
            weight = _array(_folded_weight(gm, node), channels_last=True)
            stride, pad = _pair(module.stride), _conv_padding(module)
            last = _array(values[inputs[0]], channels_last=True)[0] if module.groups == 1 else None
            return lambda idx: {inputs[0]: _conv_batch(idx, a, weight, stride, pad, module.groups,
                                                       position, last)}
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            out = tuple(values[node].shape[2:])
            return lambda idx: {inputs[0]: _pool_batch(idx, a, out)}
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            return lambda idx: {inputs[0]: _pool_batch(idx, a, None, kernel, stride,
                                                       _pair(module.padding))}
        raise NotImplementedError(f"no CNN-Fixations rule for {type(module).__name__} ({node.target})")
    if _is_flatten(node):
        shape = tuple(_batch0(values[inputs[0]]).shape)

        def unflatten(idx):
            if idx.shape[1] != 1 or len(shape) < 2:
                return same(idx)
            return {inputs[0]: (np.stack(np.unravel_index(idx[:, 0], shape), axis=1), None)}
        return unflatten
    if _is_add(node):
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensors) == 2 and values[tensors[0]].shape == values[tensors[1]].shape:
            skip, branch = sorted(tensors, key=order.get)      # the skip was computed first
            skip_value, branch_value = _array(values[skip])[0], _array(values[branch])[0]

            def route(idx):
                to_skip, to_branch = _add_batch(idx, skip_value, branch_value)
                return {skip: (idx[to_skip], to_skip), branch: (idx[to_branch], to_branch)}
            return route
        return lambda idx: {tensors[0]: (idx, None)}
    if node.target is torch.cat:
        tensors, dim = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim != 1:
            raise NotImplementedError("only channel concatenation (dim=1) is supported")
        offsets = np.cumsum([0] + [values[t].shape[1] for t in tensors])

        def split(idx):
            owner = np.searchsorted(offsets, idx[:, 0], side="right") - 1
            routed = {}
            for i, t in enumerate(tensors):
                rows = np.nonzero(owner == i)[0]
                moved = idx[rows].copy()
                moved[:, 0] -= offsets[i]
                routed[t] = (moved, rows)
            return routed
        return split
    # element-wise functions and methods (relu, scaling, unsqueeze, getitem of channels...)
    return same if inputs else (lambda idx: {})


def _rule(gm, node, values, order, position, top=None):
    """The node's rule as a function: points at its output -> {input node: points}."""
    inputs = [a for a in node.args if isinstance(a, fx.Node)]
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        a = _batch0(values[inputs[0]])
        if isinstance(module, nn.Linear):
            spatial, weight = _spatial_vector(inputs[0], values), module.weight.detach()
            return lambda points: {inputs[0]: fc_rule(points, a, weight, spatial, top)}
        if isinstance(module, nn.Conv2d):
            if _pair(module.dilation) != (1, 1):
                raise NotImplementedError("dilated convolutions are not supported")
            weight, stride, pad = _folded_weight(gm, node), _pair(module.stride), _conv_padding(module)
            return lambda points: {inputs[0]: conv_rule(points, a, weight, stride, pad, module.groups,
                                                        position)}
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            out = tuple(values[node].shape[2:])
            return lambda points: {inputs[0]: pool_rule(points, a, out)}
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            return lambda points: {inputs[0]: pool_rule(points, a, None, kernel, stride,
                                                        _pair(module.padding))}
        if isinstance(module, ELEMENTWISE_MODULES):
            return lambda points: {inputs[0]: points}
        raise NotImplementedError(f"no CNN-Fixations rule for {type(module).__name__} ({node.target})")
    target = node.target
    if _is_flatten(node):
        shape = tuple(_batch0(values[inputs[0]]).shape)
        return lambda points: {inputs[0]: {tuple(int(v) for v in np.unravel_index(p[0], shape))
                                           if len(p) == 1 and len(shape) > 1 else p for p in points}}
    if _is_add(node):
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensors) == 2 and values[tensors[0]].shape == values[tensors[1]].shape:
            skip, branch = sorted(tensors, key=order.get)      # the skip was computed first
            skip_value, branch_value = _batch0(values[skip]), _batch0(values[branch])

            def route(points):
                to_skip, to_branch = add_rule(points, skip_value, branch_value)
                return {skip: to_skip, branch: to_branch}
            return route
        return lambda points: {tensors[0]: points}
    if target is torch.cat:
        tensors, dim = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim != 1:
            raise NotImplementedError("only channel concatenation (dim=1) is supported")
        sizes = [values[t].shape[1] for t in tensors]
        return lambda points: {tensors[i]: pts for i, pts in cat_rule(points, sizes).items()}
    # element-wise functions and methods (relu, scaling, unsqueeze, getitem of channels...)
    return lambda points: {inputs[0]: points} if inputs else {}


def _batch0(value):
    return value[0] if isinstance(value, torch.Tensor) and value.dim() >= 2 else value


def _layers(gm, values, reached):
    """{name: Layer} for the conv, pool and linear modules the walk went through, deep first."""
    axes, cuts = _grid_axes(gm, values), _cut_nodes(gm)
    layers = {}
    for node in reversed(list(gm.graph.nodes)):
        if node in reached and node.op == "call_module" and isinstance(
                gm.get_submodule(node.target), (nn.Conv2d, nn.Linear) + POOL_MODULES):
            source = node.all_input_nodes[0]
            points = reached.get(source, Counter())
            layers[node.target] = Layer(points, tuple(values[source].shape[1:]),
                                        _centres(points, axes.get(source)), source in cuts,
                                        axes.get(source))
    return layers


def _cut_nodes(gm):
    """Nodes that every path from the input to the output runs through: no edge of the
    graph jumps over them (in the graph's order)."""
    nodes = list(gm.graph.nodes)
    order = {node: i for i, node in enumerate(nodes)}
    reach, cuts = -1, set()                  # reach: the furthest node an earlier one feeds
    for i, node in enumerate(nodes):
        if reach <= i:
            cuts.add(node)
        reach = max([reach] + [order[user] for user in node.users])
    return cuts


def _grid_axes(gm, values):
    """{node: (rows, cols)} receptive-field ``Axis`` of every 4-D map (utils.receptive_field):
    the unit at (y, x) is centred on input pixel (rows.start + y·rows.jump, cols.start + ...)."""
    axes = {}
    for node in gm.graph.nodes:
        inputs = [n for n in node.all_input_nodes if n in axes]
        if node.op == "placeholder":
            axes[node] = (Axis(1, 1, 0.0), Axis(1, 1, 0.0))
        elif inputs and isinstance(values.get(node), torch.Tensor) and values[node].dim() == 4:
            rows, cols = axes[inputs[0]]
            module = gm.get_submodule(node.target) if node.op == "call_module" else None
            if isinstance(module, nn.Conv2d):
                kernel, stride, pad = module.kernel_size, _pair(module.stride), _conv_padding(module)
            elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                kernel, stride = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
                pad = _pair(module.padding)
            elif values[node].shape[2:] != values[inputs[0]].shape[2:]:
                continue                                       # a resize we do not follow
            else:
                axes[node] = (rows, cols)                      # element-wise, add, cat
                continue
            axes[node] = (rows.through(kernel[0], stride[0], pad[0]),
                          cols.through(kernel[1], stride[1], pad[1]))
    return axes


def _centres(points, axes):
    """{(c, y, x): input pixel (y, x) at the centre of its receptive field}, or None for
    points that are not on a map."""
    if axes is None or not points or len(next(iter(points))) != 3:
        return None
    rows, cols = axes
    return {(c, y, x): (round(rows.start + y * rows.jump), round(cols.start + x * cols.jump))
            for c, y, x in points}


def grid_places(layer):
    """Every place a point of ``layer`` can take: the input pixel (y, x) at the centre of the
    receptive field of each cell of its H×W map (a point sits at one of them, whatever its
    channel). Empty for a vector."""
    if layer.axes is None or len(layer.shape) != 3:
        return []
    rows, cols = layer.axes
    return [(round(rows.start + y * rows.jump), round(cols.start + x * cols.jump))
            for y in range(layer.shape[1]) for x in range(layer.shape[2])]


def walk_places(model, layers, position="official"):
    """{layer name: the places its points can take} for the block boundaries of a walk
    (the layers of ``layer_shares``), in input pixels.

    With the ``"strongest"`` and ``"activation"`` rules a conv may move a point to any cell
    of its input map:
    the places are that map's cells (``grid_places``). With the ``"centre"`` rule a conv
    keeps a point's place and only a pooling switch moves it, so the places are the cells
    of the map under the last pooling layer passed (the global pool's input, the last
    block's grid, until a max pool moves the points onto its finer input grid).
    """
    position = official_position(model) if position == "official" else position
    places, current = {}, None
    for name, layer in layers.items():
        if layer.axes is None or len(layer.shape) != 3:
            continue
        pooled = isinstance(model.get_submodule(name), POOL_MODULES)
        if position != "centre" or current is None or pooled:
            current = grid_places(layer)
        if layer.centres and layer.cut:
            places[name] = current
    return places


def layer_pixels(layer, count=True):
    """A layer's points at their receptive fields' centres: Counter {(y, x): paths}, or with
    ``count=False`` {(y, x): distinct points} (the paper's set, each point once)."""
    pixels = Counter()
    for point, centre in layer.centres.items():
        pixels[centre] += layer.points[point] if count else 1
    return pixels


# ------------------------------------------------------------------- points -> map

def _weighted(points):
    """A list of (y, x) (repeats allowed) or a {(y, x): weight} mapping -> (N×2 array, N weights)."""
    if isinstance(points, dict):
        return np.asarray(list(points), dtype=float).reshape(-1, 2), np.asarray(list(points.values()), dtype=float)
    return np.asarray(points, dtype=float).reshape(-1, 2), np.ones(len(points))


def remove_outliers(points, image_size, share=0.05, radius=0.1):
    """The authors' outlier rule (demo/utils.py ``out_rem``, called with ``diag_percent=0.1``):
    keep a point if more than ``share`` (5 %) of all points lie *closer* than ``radius`` ×
    the image diagonal to it (itself included).

    ``points``: a list of (y, x), or a Counter {(y, x): paths} whose points weigh their
    paths (then a Counter comes back). ``image_size`` = (H, W) of the image the points live in.
    On a square image the radius, 0.1 × √2 = 0.1414 of the side, is just under the spacing of
    a 7×7 grid (1/7 = 0.1429): points bound to such a grid do not count their neighbours'.
    """
    if len(points) == 0:
        return type(points)() if isinstance(points, dict) else []
    array, weights = _weighted(points)
    diagonal = math.hypot(*image_size)
    distances = np.linalg.norm(array[:, None] - array[None], axis=2)
    neighbours = ((distances < radius * diagonal) * weights[None]).sum(axis=1)
    keep = neighbours > share * weights.sum()
    if isinstance(points, dict):
        return Counter({p: w for (p, w), k in zip(points.items(), keep) if k})
    return [tuple(p) for p, k in zip(points, keep) if k]


SIGMA = 20          # the authors' blur: σ = 20 px of the image the points live in


def fixation_heatmap(points, size, sigma=SIGMA):
    """The paper's last two steps: drop outliers, blur the rest. Returns (kept points, map).

    ``size`` = (H, W) of the image the points live in; ``sigma`` in its pixels (the authors'
    ``heatmap(img, points, sigma=20)``: 20 px whatever the photo's size).
    """
    kept = remove_outliers(points, size)
    return kept, fixation_map(kept, size, sigma)


MAP_GRID = 256      # a map is computed on a grid with at most this many px on its shorter side


def fixation_map(points, size, sigma=SIGMA, grid=MAP_GRID):
    """Impulses at the points, blurred by a Gaussian of ``sigma`` px, in [0, 1].

    ``points``: a list of (y, x), or a Counter {(y, x): paths} (an impulse of that height).
    ``size`` = (H, W). A photo larger than ``grid`` px (shorter side) is blurred on a coarser
    grid (at most ``grid`` px, or σ/8 photo px per cell if that is finer), with σ scaled
    alike, and the result upsampled bilinearly: σ is then at least 8 grid cells, so the map
    stays within a few per cent of the full-size blur while a 4000×3000 photo takes a
    fraction of a second instead of many. ``grid=None``: full size.
    """
    h, w = size
    scale = max(1.0, min(min(h, w) / grid, sigma / 8)) if grid else 1.0
    gh, gw = max(1, round(h / scale)), max(1, round(w / scale))
    sy, sx = h / gh, w / gw                      # photo pixels per grid cell
    impulses = np.zeros((gh, gw), dtype=np.float64)
    for (y, x), weight in zip(*_weighted(points)):   # the cell holding each point's centre
        impulses[min(int((y + 0.5) / sy), gh - 1), min(int((x + 0.5) / sx), gw - 1)] += weight
    blurred = gaussian_filter(impulses, (sigma / sy, sigma / sx), mode="constant")
    if (gh, gw) != (h, w):
        blurred = torch.nn.functional.interpolate(torch.from_numpy(blurred)[None, None], size=(h, w),
                                                  mode="bilinear", align_corners=False)[0, 0].numpy()
    top = blurred.max()
    return blurred / top if top > 0 else blurred


def share_inside(points, box):
    """Share of ``points`` (a list of (y, x), or a Counter weighted by paths) inside the box
    (x0, y0, x1, y1), x1 and y1 exclusive, in the points' own pixels. NaN without points."""
    array, weights = _weighted(points)
    if weights.sum() == 0:
        return float("nan")
    x0, y0, x1, y1 = box
    inside = (array[:, 1] >= x0) & (array[:, 1] < x1) & (array[:, 0] >= y0) & (array[:, 0] < y1)
    return float((weights * inside).sum() / weights.sum())


def chance_inside(box, image_shape, places=None):
    """The share of the points that chance puts inside ``box`` (x0, y0, x1, y1).

    Points that can sit anywhere: the box's share of the image (``image_shape`` = (H, W)).
    Points bound to a grid (the centre rule keeps every point on one of the last block's
    cells): the share of the ``places`` they can take (photo pixels, ``walk_places`` carried
    to the photo) that lie inside the box; 0 means no point can land in it.
    """
    if places is None:
        x0, y0, x1, y1 = box
        return (x1 - x0) * (y1 - y0) / (image_shape[0] * image_shape[1])
    return share_inside(sorted(set(map(tuple, places))), box)


def more_inside_than_chance(points, box, image_shape, alpha=0.05, places=None):
    """Does the *set* of points land on the object more often than chance?

    Uniformly scattered points fall inside ``box`` (x0, y0, x1, y1) with probability
    p = the box's share of the image (``image_shape`` = (H, W)); the claim holds if the
    number k of the n distinct points inside it is unlikely under that chance, a one-sided
    binomial test: P(K ≥ k | n, p) < ``alpha`` (5 %, the usual significance level). A
    share a little above p from a few dozen points is not enough.
    Points bound to ``places`` (a grid's cells in photo pixels, ``chance_inside``): n
    distinct places drawn at random among the M places, K of them inside the box, a
    one-sided hypergeometric test (a permutation test over the places); a box that holds
    no place cannot be hit, and the answer is False.
    Sets only: counted points (a Counter) are paths, not independent draws, and raise a
    TypeError.
    """
    if isinstance(points, dict):
        raise TypeError("more_inside_than_chance tests a set of points, not counted paths")
    from scipy.stats import binomtest, hypergeom
    points = sorted(set(map(tuple, points)))
    if not points:
        return False
    inside = round(share_inside(points, box) * len(points))
    if places is None:
        chance = chance_inside(box, image_shape)
        return bool(binomtest(inside, len(points), chance, alternative="greater").pvalue < alpha)
    places = sorted(set(map(tuple, places)))
    if not set(points) <= set(places):
        raise ValueError("every point must sit at one of the places")
    inside_places = round(share_inside(places, box) * len(places))
    if inside_places == 0:
        return False
    return bool(hypergeom.sf(inside - 1, len(places), inside_places, len(points)) < alpha)


def layer_shares(layers, box, input_size, image_size, count=True):
    """[(layer name, share of its points inside ``box``)] for the block boundaries on a map
    (``Layer.cut``: they hold all the points of their depth), deep first.

    ``box`` is in photo pixels (``images.annotations()``); each point is taken at the centre
    of its receptive field, carried to the photo (``image_size`` = PIL's (W, H)). A point
    weighs its paths, or with ``count=False`` (the paper's sets) 1.
    """
    return [(name, share_inside(to_image_coordinates(layer_pixels(layer, count), input_size,
                                                     image_size), box))
            for name, layer in layers.items() if layer.centres and layer.cut]


def five_crops(image, size=224, resize=256):
    """Shorter side to ``resize``; corners and centre crops of ``size`` with their offsets."""
    from PIL import Image
    w, h = image.size
    scale = resize / min(w, h)
    big = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    W, H = big.size
    corners = [(0, 0), (W - size, 0), (0, H - size), (W - size, H - size),
               ((W - size) // 2, (H - size) // 2)]
    return [(big.crop((x, y, x + size, y + size)), (y, x)) for x, y in corners], scale


def to_image_coordinates(points, input_size, image_size):
    """(y, x) in the network input (``input_size`` = (S, S), the whole image resized) ->
    (y, x) pixels of the image; ``image_size`` is PIL's ``image.size``, i.e. (W, H).
    A Counter {(y, x): paths} comes back as a Counter of image pixels."""
    (h_in, w_in), (w, h) = input_size, image_size
    move = lambda y, x: (int((y + 0.5) * h / h_in), int((x + 0.5) * w / w_in))
    if isinstance(points, dict):
        moved = Counter()
        for (y, x), paths in points.items():
            moved[move(y, x)] += paths
        return moved
    return [move(y, x) for y, x in points]


def cnn_fixations(model, image, target=None, multi_crop=False, position="official", count=False):
    """Fixations on a PIL image, in its pixel coordinates, and the class backtracked.

    ``multi_crop=False``: the whole image resized to the input size (as everywhere in this
    collection). ``multi_crop=True``: the authors' five crops (corners and centre of
    the image scaled to 256 px): the label is the argmax of the mean probability (or
    ``target``), and every crop that predicts it is backtracked; the union is returned. If
    no crop predicts it, a warning says so and no points come back.
    ``image`` is anything ``load_image`` reads (a bundled name, a path, a PIL image...);
    points are (y, x) pixels of the upright photo (EXIF rotation applied): a sorted list,
    or with ``count=True`` a Counter {(y, x): paths}. ``position``: see ``backtrack``.
    """
    spec = model.spec
    device = next(model.parameters()).device
    targets = check_target(model, target, 1)
    image = load_image(image)
    options = dict(position=position, count=count)
    if not multi_crop:
        x = spec.preprocess(image, device=device)
        recorded = record_forward(model, x)
        target = int(choose_target(targets, recorded[1][_output_node(recorded[0])])[0])
        points = backtrack(model, x, target, recorded, **options)
        return to_image_coordinates(points, x.shape[2:], image.size), target
    from torchvision.transforms.functional import to_tensor
    crops, scale = five_crops(image, spec.size, round(spec.size * 256 / 224))
    batch = spec.normalize(torch.stack([to_tensor(c) for c, _ in crops])).to(device)
    with model_guard(model), torch.no_grad():
        probs = model(batch).softmax(dim=1)
    target = int(choose_target(targets, probs.mean(dim=0, keepdim=True))[0])
    points, graph = Counter(), trace(model)
    for (crop, (oy, ox)), p, x in zip(crops, probs, batch):
        if int(p.argmax()) == target:
            found = backtrack(model, x[None], target, record_forward(model, x[None], graph), **options)
            for (y, x_), paths in (found.items() if count else zip(found, [1] * len(found))):
                points[(int((y + oy) / scale), int((x_ + ox) / scale))] += paths
    if not points:
        warnings.warn(f"No crop predicts class {target} ({spec.labels[target]!r}), so no crop "
                      "was backtracked and there are no fixations. Use multi_crop=False, or "
                      "another target.", stacklevel=2)
    return (points if count else sorted(points)), target


class FixationExplorer:
    """Fixations for a widget: one recorded forward pass per image, reused for every class;
    each class's points are kept until the image changes, so going back to a class is free."""

    def __init__(self, model, position="official", count=False):
        self.model, self.image, self.options = model, None, dict(position=position, count=count)

    def points(self, image, target=None):
        """Fixations of ``target`` on ``image`` (anything ``load_image`` reads), in the
        pixels of the upright photo."""
        if image is not self.image:
            device = next(self.model.parameters()).device
            self.image, self.photo = image, load_image(image)
            self.x = self.model.spec.preprocess(self.photo, device=device)
            self.recorded = record_forward(self.model, self.x)
            self.found = {}
        if target not in self.found:
            points = backtrack(self.model, self.x, target, self.recorded, **self.options)
            self.found[target] = to_image_coordinates(points, self.x.shape[2:], self.photo.size)
        return self.found[target].copy()         # the caller may change its copy


def _output_node(gm):
    """The graph node whose value the model returns (the logits)."""
    return next(n for n in gm.graph.nodes if n.op == "output").args[0]


# ------------------------------------------------------------------- figures and exercise

def plot_layer_walk(image, layers, input_size, n_panels=8, title=None):
    """The fixations as they move down the network: one panel per layer (deep -> shallow).

    Each panel shows the points held by the *input* of the layer its title names, each drawn
    at the centre of its receptive field, and says how many distinct points there are, on
    what grid, and at how many distinct places. ``title`` replaces the figure's default title.
    """
    import matplotlib.pyplot as plt
    spatial = [(name, layer) for name, layer in layers.items() if layer.centres and layer.cut]
    picks = np.unique(np.linspace(0, len(spatial) - 1, n_panels).round().astype(int))
    ncols = min(len(picks), MAX_PER_ROW)
    nrows = -(-len(picks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        name, layer = spatial[i]
        ys, xs = zip(*set(layer.centres.values()))
        ax.imshow(image, extent=(0, input_size[1], input_size[0], 0))
        ax.scatter(xs, ys, s=24, c="#00e5ff", edgecolors="black", linewidths=0.8,
                   clip_on=False)                      # points on the border stay whole
        ax.set_title(f"input of {name}\n{len(layer.points)} pts, {len(set(layer.centres.values()))} places, "
                     f"{layer.shape[1]}×{layer.shape[2]}", fontsize=9)
    fig.suptitle(title or "Backtracking: where the fixations are, from the last conv block down to pixels")
    for _ in range(2):          # the second pass fits the title above the panels' moved titles
        fig.tight_layout(h_pad=1.5)
    return fig


PEAK = dict(marker="X", markersize=15, markerfacecolor="white", markeredgecolor="black",
            markeredgewidth=1.5, linestyle="none")          # the map's maximum, on any colour


def peak_of(heat, size=None):
    """(x, y) of the maximum of ``heat``, in the pixels of an image of ``size`` (H, W)
    (default: the map's own), for drawing."""
    heat = np.asarray(heat)
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    h, w = size or heat.shape
    return (x + 0.5) * w / heat.shape[1] - 0.5, (y + 0.5) * h / heat.shape[0] - 0.5


def mark_peak(ax, heat, size=None):
    """Mark the maximum of a map drawn over an image of ``size`` (H, W): a white cross that
    reads on a projector, where the top of a colour map blended over the photo washes out."""
    return ax.plot(*peak_of(heat, size), **PEAK)[0]


def plot_fixations(image, points, kept, heat, box=None, title=""):
    """Two panels: the fixations (outliers in gray), and the blurred map with its box."""
    import matplotlib.pyplot as plt

    from .localize import draw_box
    from .plotting import STRETCHED, show_heatmap
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9))
    axes[0].imshow(image)
    nowhere = np.empty((0, 2))
    axes[0].scatter(*nowhere.T, s=12, c="lightgray", edgecolors="black", linewidths=0.3,
                    label="outliers")
    axes[0].scatter(*nowhere.T, s=30, c="#00e5ff", edgecolors="black", linewidths=0.8,
                    label="fixations")
    axes[0].axis("off")
    show_heatmap(image, np.zeros(np.asarray(heat).shape), ax=axes[1], title="blurred")
    axes[1].images[-1].colorbar.set_label(STRETCHED, fontsize=10)
    draw_box(axes[1], (0, 0, 1, 1))
    axes[1].plot([], [], **PEAK)
    axes[1].set_title(f"blurred (σ = {SIGMA} px); cross: its peak")
    fig.suptitle("class")
    update_fixations(fig, points, kept, heat, box, title)
    fig.tight_layout()
    return fig


def update_fixations(fig, points, kept, heat, box=None, title=""):
    """Another class's fixations in a ``plot_fixations`` figure of the same image, in place;
    returns the artists that changed (for ``widgets.connect``)."""
    from .plotting import normalize_map, update_map
    points_ax, map_ax = fig.axes[0], fig.axes[1]
    outliers = sorted(set(points) - set(kept))
    for dots, where in zip(points_ax.collections, (outliers, kept)):
        dots.set_offsets([(x, y) for y, x in where] or np.empty((0, 2)))
    points_ax.set_title(f"{len(kept)} of {len(points)} fixations kept ({len(outliers)} outliers, gray)")
    frame, peak = map_ax.patches[0], map_ax.lines[0]
    peak.set_data(*[[v] for v in peak_of(heat)])
    frame.set_visible(box is not None)
    if box is not None:
        frame.set_bounds(box[0] - 0.5, box[1] - 0.5, box[2] - box[0], box[3] - box[1])
    return (list(points_ax.collections) + [points_ax.title]
            + update_map(map_ax.images[-1], normalize_map(heat), limits=(0, 1))
            + [frame, peak, fig.suptitle(title)])
