"""CNN-Fixations: the image points that support a prediction, found without gradients.

Mopuri, Garg & Babu, "CNN Fixations: An unraveling approach to visualize the
discriminative image regions", IEEE TIP 2019 (arXiv 1708.06670).

One forward pass records every layer's input. Then, starting from the class neuron, the
set of *fixations* is carried down the network, layer by layer, to pixel positions. The
rules follow the official code (val-iisc/cnn-fixations); here they run on the traced
graph of any torchvision-style CNN instead of one hand-written path per network:

* FC → FC (the input is a vector): keep every input neuron j with a positive
  contribution a_j · W_ij to a kept neuron i.
* FC → conv (the input is a flattened H×W>1 map): keep the single best contributor
  argmax_j a_j · W_ij, a point (channel, y, x).
* conv (grouped and depthwise too): for a point (k, y, x), the input window under it
  contributes Σ_window a_c · W'_kc for each input channel c; keep the channel with the
  largest contribution, and move the point to the window position where that channel
  contributes most. (The official code keeps the window centre for AlexNet/VGG and takes
  the strongest position in the window for ResNet's 3×3 convs; one rule for all here. For
  1×1 convs nothing moves.) W' is the weight with the BatchNorm that follows the conv
  folded in (scale γ/√(σ²+ε) per output channel): a negative scale flips the choice.
* max / average pooling (adaptive and global too): the argmax inside the pooling window,
  same channel ("the switch"; the official code treats ResNet's global pool this way).
* residual addition out = branch + skip: follow the skip if its activation at the point
  is ≥ the branch's, else the branch.
* channel concatenation: the input that owns the channel, channel index shifted.
* element-wise layers (ReLU, ReLU6, BatchNorm, dropout, scaling): the point is unchanged.

Points are de-duplicated after every layer (they are sets). At the input, points are pixel
positions; outliers are dropped (a point needs more than 5% of all points within 0.1 ×
the image diagonal) and a Gaussian blur (σ = 20 px at 224 px) turns them into a map.

Coordinates (as everywhere in ``utils``, see utils/README.md): a point is (y, x), row then
column, in whole pixels. ``backtrack`` returns points of the network input (S×S, the whole
photo resized); ``cnn_fixations`` and ``FixationExplorer`` return points of the upright
photo (``to_image_coordinates``). Sizes are (H, W), like array shapes; only PIL's
``image.size`` is (W, H).
"""
import math
import warnings
from collections import defaultdict

import numpy as np
import torch
import torch.fx as fx
from scipy.ndimage import gaussian_filter
from torch import nn
from torch.nn.modules.utils import _pair

from .hooks import model_guard
from .images import load_image, one_image
from .plotting import MAX_PER_ROW
from .targets import check_target, choose_target

ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.BatchNorm2d, nn.BatchNorm1d, nn.Dropout,
                       nn.Identity, nn.LeakyReLU, nn.Hardtanh)
POOL_MODULES = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
LEAF_MODULES = (nn.Conv2d, nn.Linear) + ELEMENTWISE_MODULES + POOL_MODULES


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

def fc_rule(points, a, weight, spatial_input):
    """FC layer. ``a``: input vector (D,); ``weight``: (out, D); points: {(i,)}."""
    contributions = a[None, :] * weight                        # out × D
    kept = set()
    for (i,) in points:
        row = contributions[i]
        if spatial_input:                                      # FC -> conv: single best
            kept.add((int(row.argmax()),))
        else:                                                  # FC -> FC: all positive
            kept.update((int(j),) for j in torch.nonzero(row > 0).flatten().tolist())
    return kept


def conv_rule(points, a, weight, stride, pad, groups):
    """Conv layer. ``a``: input (C, H, W); ``weight``: (K_out, C/groups, kh, kw), BN folded.

    A point (k, y, x) goes to (c*, y*, x*): c* = argmax_c Σ_window a_c · W_kc, the input
    channel contributing most, and (y*, x*) the window position where c* contributes most.
    """
    C, H, W = a.shape
    kh, kw = weight.shape[2:]
    in_per_group = C // groups
    out_per_group = weight.shape[0] // groups
    kept = set()
    for k, y, x in points:
        top, left = stride[0] * y - pad[0], stride[1] * x - pad[1]
        first = (k // out_per_group) * in_per_group
        window = _window(a[first:first + in_per_group], top, left, kh, kw)
        contribution = window * weight[k]                      # C/groups × kh × kw
        best = int(contribution.sum(dim=(1, 2)).argmax())
        dy, dx = np.unravel_index(int(contribution[best].argmax()), (kh, kw))
        kept.add((first + best, min(max(top + int(dy), 0), H - 1), min(max(left + int(dx), 0), W - 1)))
    return kept


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
    """Pooling. Each (c, y, x) goes to the argmax of channel c inside its window."""
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
        dy, dx = np.unravel_index(int(window.argmax()), tuple(window.shape))
        kept.add((c, y0 + int(dy), x0 + int(dx)))
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


# ------------------------------------------------------------------- the graph walk

def _conv_padding(module):
    """Symmetric padding of the conv plus any static 'same' padding module inside it."""
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


def _spatial_vector(node, values):
    """True if this vector node is a flattened map with H×W > 1 (walks element-wise ops)."""
    while True:
        is_flatten = (node.op == "call_function" and node.target is torch.flatten) or \
            (node.op == "call_method" and node.target in ("view", "reshape", "flatten"))
        if is_flatten:
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


def backtrack(model, x, target=None, recorded=None, return_layers=False):
    """Fixations for class ``target`` on one image ``x`` (1×3×H×W): sorted (y, x) pixels.

    ``target``: a class index or label (None: the predicted class; ``utils.targets``).
    ``recorded`` is an earlier ``record_forward(model, x)``. With ``return_layers=True``
    also returns {layer name: (points, input shape)} for every conv, pool and linear layer
    on the way, the points as they reach that layer's input.
    """
    x = one_image(x, model)
    targets = check_target(model, target, 1)
    gm, values = recorded or record_forward(model, x)
    output = _output_node(gm)
    target = int(choose_target(targets, values[output])[0])
    pending = defaultdict(set)
    pending[output] = {(target,)}
    layers = {}
    order = {node: i for i, node in enumerate(gm.graph.nodes)}
    for node in reversed(list(gm.graph.nodes)):
        if node.op in ("placeholder", "get_attr"):
            continue
        points = pending.pop(node, set())
        if not points:
            continue
        routed = _route(gm, node, points, values, order)
        for source, source_points in routed.items():
            pending[source] |= source_points
        if return_layers and node.op == "call_module" and isinstance(
                gm.get_submodule(node.target), (nn.Conv2d, nn.Linear) + POOL_MODULES):
            source = node.all_input_nodes[0]
            layers[node.target] = (routed[source], tuple(values[source].shape[1:]))
    image = next(n for n in gm.graph.nodes if n.op == "placeholder")
    pixels = sorted({(p[-2], p[-1]) for p in pending[image]})
    return (pixels, layers) if return_layers else pixels


def _batch0(value):
    return value[0] if isinstance(value, torch.Tensor) and value.dim() >= 2 else value


def _route(gm, node, points, values, order):
    """Apply the node's rule: {input node: points at that input}."""
    inputs = [a for a in node.args if isinstance(a, fx.Node)]
    if node.op == "call_module":
        module = gm.get_submodule(node.target)
        a = _batch0(values[inputs[0]])
        if isinstance(module, nn.Linear):
            spatial = _spatial_vector(inputs[0], values)
            return {inputs[0]: fc_rule(points, a, module.weight.detach(), spatial)}
        if isinstance(module, nn.Conv2d):
            if _pair(module.dilation) != (1, 1):
                raise NotImplementedError("dilated convolutions are not supported")
            return {inputs[0]: conv_rule(points, a, _folded_weight(gm, node), _pair(module.stride),
                                         _conv_padding(module), module.groups)}
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            out = values[node].shape[2:]
            return {inputs[0]: pool_rule(points, a, tuple(out))}
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            return {inputs[0]: pool_rule(points, a, None, _pair(module.kernel_size),
                                         _pair(module.stride or module.kernel_size),
                                         _pair(module.padding))}
        if isinstance(module, ELEMENTWISE_MODULES):
            return {inputs[0]: points}
        raise NotImplementedError(f"no CNN-Fixations rule for {type(module).__name__} ({node.target})")
    target = node.target
    if target in (torch.flatten,) or (node.op == "call_method" and target in ("view", "reshape", "flatten")):
        shape = tuple(_batch0(values[inputs[0]]).shape)
        return {inputs[0]: {tuple(int(v) for v in np.unravel_index(p[0], shape)) if len(p) == 1
                            and len(shape) > 1 else p for p in points}}
    if target in (torch.add, "add", "__add__", "iadd", "__iadd__") or getattr(target, "__name__", "") in ("add", "iadd"):
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        if len(tensors) == 2 and values[tensors[0]].shape == values[tensors[1]].shape:
            skip, branch = sorted(tensors, key=order.get)      # the skip was computed first
            to_skip, to_branch = add_rule(points, _batch0(values[skip]), _batch0(values[branch]))
            return {skip: to_skip, branch: to_branch}
        return {tensors[0]: points}
    if target is torch.cat:
        tensors, dim = node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if dim != 1:
            raise NotImplementedError("only channel concatenation (dim=1) is supported")
        routed = cat_rule(points, [values[t].shape[1] for t in tensors])
        return {tensors[i]: pts for i, pts in routed.items()}
    # element-wise functions and methods (relu, scaling, unsqueeze, getitem of channels...)
    return {inputs[0]: points} if inputs else {}


# ------------------------------------------------------------------- points -> map

def remove_outliers(points, image_size, share=0.05, radius=0.1):
    """Keep points with more than ``share`` of all points within ``radius`` × diagonal."""
    if len(points) == 0:
        return []
    array = np.asarray(points, dtype=float)
    diagonal = math.hypot(*image_size)
    distances = np.linalg.norm(array[:, None] - array[None], axis=2)
    neighbours = (distances <= radius * diagonal).sum(axis=1)
    return [tuple(p) for p, n in zip(points, neighbours) if n > share * len(points)]


def fixation_heatmap(points, size, sigma_at_224=20):
    """The paper's last two steps: drop outliers, blur the rest. Returns (kept points, map).

    ``size`` = (H, W) of the image the points live in; σ scales with min(H, W) / 224.
    """
    kept = remove_outliers(points, size)
    return kept, fixation_map(kept, size, sigma_at_224 * min(size) / 224)


MAP_GRID = 256      # a map is computed on a grid with at most this many px on its shorter side


def fixation_map(points, size, sigma=None, grid=MAP_GRID):
    """Impulses at the points, blurred by a Gaussian (σ = 20 px at 224, scaled), in [0, 1].

    ``size`` = (H, W). A photo larger than ``grid`` px (shorter side) is blurred on a grid of
    that size, with σ scaled alike, and the result upsampled bilinearly: σ is then at least
    ~20 grid cells, so the map stays within a few per cent of the full-size blur while a
    4000×3000 photo takes a fraction of a second instead of many. ``grid=None``: full size.
    """
    h, w = size
    sigma = sigma if sigma is not None else 20 * min(h, w) / 224
    scale = max(1.0, min(h, w) / grid) if grid else 1.0
    gh, gw = max(1, round(h / scale)), max(1, round(w / scale))
    sy, sx = h / gh, w / gw                      # photo pixels per grid cell
    impulses = np.zeros((gh, gw), dtype=np.float64)
    for y, x in points:                          # the cell holding each point's centre
        impulses[min(int((y + 0.5) / sy), gh - 1), min(int((x + 0.5) / sx), gw - 1)] += 1
    blurred = gaussian_filter(impulses, (sigma / sy, sigma / sx), mode="constant")
    if (gh, gw) != (h, w):
        blurred = torch.nn.functional.interpolate(torch.from_numpy(blurred)[None, None], size=(h, w),
                                                  mode="bilinear", align_corners=False)[0, 0].numpy()
    top = blurred.max()
    return blurred / top if top > 0 else blurred


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
    (y, x) pixels of the image; ``image_size`` is PIL's ``image.size``, i.e. (W, H)."""
    (h_in, w_in), (w, h) = input_size, image_size
    return [(int((y + 0.5) * h / h_in), int((x + 0.5) * w / w_in)) for y, x in points]


def cnn_fixations(model, image, target=None, multi_crop=False):
    """Fixations on a PIL image, in its pixel coordinates, and the class backtracked.

    ``multi_crop=False``: the whole image resized to the input size (as everywhere in this
    collection). ``multi_crop=True``: the official code's five crops (corners and centre of
    the image scaled to 256 px): the label is the argmax of the mean probability (or
    ``target``), and every crop that predicts it is backtracked; the union is returned. If
    no crop predicts it, a warning says so and no points come back.
    ``image`` is anything ``load_image`` reads (a bundled name, a path, a PIL image...);
    points are (y, x) pixels of the upright photo (EXIF rotation applied).
    """
    spec = model.spec
    device = next(model.parameters()).device
    targets = check_target(model, target, 1)
    image = load_image(image)
    if not multi_crop:
        x = spec.preprocess(image, device=device)
        recorded = record_forward(model, x)
        target = int(choose_target(targets, recorded[1][_output_node(recorded[0])])[0])
        points = backtrack(model, x, target, recorded)
        return to_image_coordinates(points, x.shape[2:], image.size), target
    from torchvision.transforms.functional import to_tensor
    crops, scale = five_crops(image, spec.size, round(spec.size * 256 / 224))
    batch = spec.normalize(torch.stack([to_tensor(c) for c, _ in crops])).to(device)
    with model_guard(model), torch.no_grad():
        probs = model(batch).softmax(dim=1)
    target = int(choose_target(targets, probs.mean(dim=0, keepdim=True))[0])
    points, graph = set(), trace(model)
    for (crop, (oy, ox)), p, x in zip(crops, probs, batch):
        if int(p.argmax()) == target:
            recorded = record_forward(model, x[None], graph)
            points |= {(int((y + oy) / scale), int((x_ + ox) / scale))
                       for y, x_ in backtrack(model, x[None], target, recorded)}
    if not points:
        warnings.warn(f"No crop predicts class {target} ({spec.labels[target]!r}), so no crop "
                      "was backtracked and there are no fixations. Use multi_crop=False, or "
                      "another target.", stacklevel=2)
    return sorted(points), target


class FixationExplorer:
    """Fixations for a widget: one recorded forward pass per image, reused for every class."""

    def __init__(self, model):
        self.model, self.image = model, None

    def points(self, image, target=None):
        """Fixations of ``target`` on ``image`` (anything ``load_image`` reads), in the
        pixels of the upright photo."""
        if image is not self.image:
            device = next(self.model.parameters()).device
            self.image, self.photo = image, load_image(image)
            self.x = self.model.spec.preprocess(self.photo, device=device)
            self.recorded = record_forward(self.model, self.x)
        points = backtrack(self.model, self.x, target, self.recorded)
        return to_image_coordinates(points, self.x.shape[2:], self.photo.size)


def _output_node(gm):
    """The graph node whose value the model returns (the logits)."""
    return next(n for n in gm.graph.nodes if n.op == "output").args[0]


# ------------------------------------------------------------------- figures and exercise

def layer_points_in_pixels(points, shape, input_size):
    """Points (c, y, x) on an h×w map as approximate input pixels (cell centres)."""
    h, w = shape[-2:]
    return [((y + 0.5) * input_size[0] / h, (x + 0.5) * input_size[1] / w) for _, y, x in points]


def plot_layer_walk(image, layers, input_size, n_panels=8):
    """The fixations as they move down the network: one panel per layer (deep -> shallow).

    Points at a layer are drawn at the centre of their cell on the input; each panel says
    how many distinct points there are and on what grid.
    """
    import matplotlib.pyplot as plt
    spatial = [(name, pts, shape) for name, (pts, shape) in layers.items() if len(shape) == 3]
    picks = np.unique(np.linspace(0, len(spatial) - 1, n_panels).round().astype(int))
    ncols = min(len(picks), MAX_PER_ROW)
    nrows = -(-len(picks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.8 * ncols, 3.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, picks):
        name, points, shape = spatial[i]
        ys, xs = zip(*layer_points_in_pixels(points, shape, input_size))
        ax.imshow(image, extent=(0, input_size[1], input_size[0], 0))
        ax.scatter(xs, ys, s=10, c="#00e5ff", edgecolors="black", linewidths=0.4)
        ax.set_title(f"{name}\n{len(points)} pts on {shape[1]}×{shape[2]}", fontsize=10)
    fig.suptitle("Backtracking: where the fixations are, from the last conv block down to pixels")
    fig.tight_layout(h_pad=1.5)
    return fig


def plot_fixations(image, points, kept, heat, box=None, title=""):
    """Two panels: the fixations (outliers in gray), and the blurred map with its box."""
    import matplotlib.pyplot as plt
    from .localize import draw_box
    from .plotting import show_heatmap
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.9))
    axes[0].imshow(image)
    outliers = sorted(set(points) - set(kept))
    if outliers:
        axes[0].scatter([x for _, x in outliers], [y for y, _ in outliers], s=12, c="lightgray",
                        edgecolors="black", linewidths=0.3, label="outliers")
    axes[0].scatter([x for _, x in kept], [y for y, _ in kept], s=14, c="#00e5ff",
                    edgecolors="black", linewidths=0.4, label="fixations")
    axes[0].set_title(f"{len(kept)} fixations ({len(outliers)} outliers)")
    axes[0].axis("off")
    show_heatmap(image, heat, ax=axes[1], title="blurred (σ = 20 px at 224)")
    draw_box(axes[1], box)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
