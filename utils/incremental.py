"""Exact incremental inference for occlusion (Krypton: Nakandala, Kumar & Papakonstantinou,
SIGMOD 2019, "Incremental and Approximate Inference for Faster Occlusion-based Deep CNN
Explanations", its exact mode).

A grey square changes a small part of the image, and in each layer only the part of the map
that the change reaches: its projective field, a rectangle. A convolution or pooling with
kernel k, stride s and padding p computes output row i from input rows i·s − p … i·s − p + k − 1,
so a change in input rows [a, b) reaches output rows

    ⌈(a + p − k + 1) / s⌉  ≤  i  <  ⌈(b + p) / s⌉      (clipped to the map; columns alike;
                                                        a kernel dilated by d spans d(k − 1) + 1).

So the network runs once on the clean image and keeps every activation. For each occluder
position, each layer is recomputed only on that rectangle, from the input rectangle plus the
border its kernel reads (taken from the clean activations, with the layer's padding at the map's
edge), and everything outside the rectangle is the clean activation. Layers that work position
by position (batch norm in eval mode, ReLU, ReLU6, a residual add, a concatenation of channels)
keep the rectangle; an add or a concatenation takes the union of its inputs' rectangles. Where a
rectangle covers the whole map, and for every other layer (global pooling, the fully connected
head), the layer runs normally on the whole map. The occluder positions of one batch share the
rectangle's size, so each layer is one call for the whole batch.

The result is the same as running every occluded image through the network (up to float
rounding). The walk follows the network's graph as ``torch.fx`` traces it, so sequences (AlexNet,
VGG), residual blocks (ResNet, MBConv) and inception blocks are handled by the same few rules.

What it saves is the work outside the rectangles: ``IncrementalOcclusion`` counts the
multiply-adds it runs (``macs``) against those of full inference (``full_macs``). With a 48 px
square on a 224 px image it still runs 24% of them on VGG-16, but 56% on AlexNet and 67% on
EfficientNet-Lite0 (benchmarks/README.md): a large square soon reaches most of a small map,
and the fully connected head always runs in full. The paper reports up to 5× for this exact
mode.
"""
import inspect
import math
import operator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.node import map_aggregate


@dataclass
class Patch:
    """B copies of one activation map that differ from the clean map only in a rectangle.

    ``values`` (B×…×h×w) is copy k's map on rows tops[k] … tops[k]+h−1 and columns
    lefts[k] … lefts[k]+w−1; everywhere else copy k equals ``clean`` (1×…×H×W).
    """
    values: torch.Tensor
    tops: list
    lefts: list
    clean: torch.Tensor

    @property
    def size(self):
        return tuple(self.values.shape[-2:])

    @property
    def map_size(self):
        return tuple(self.clean.shape[-2:])


def crop(clean, tops, lefts, height, width):
    """B crops of the map ``clean`` (1×…×H×W), copy k's at (tops[k], lefts[k])."""
    return torch.cat([clean[..., t:t + height, left:left + width] for t, left in zip(tops, lefts)])


def overlap(start, length, other_start, other_length):
    """The rows (or columns) two intervals share, as (first, stop), or None."""
    first, stop = max(start, other_start), min(start + length, other_start + other_length)
    return (first, stop) if first < stop else None


def read(patch, tops, lefts, height, width):
    """Copy k's map on the rectangle at (tops[k], lefts[k]) of size height×width: the clean map
    there, with the changed values pasted in where the two rectangles overlap."""
    if (tops, lefts, (height, width)) == (patch.tops, patch.lefts, patch.size):
        return patch.values
    out = crop(patch.clean, tops, lefts, height, width)
    h, w = patch.size
    for k, (top, left) in enumerate(zip(tops, lefts)):
        rows = overlap(top, height, patch.tops[k], h)
        cols = overlap(left, width, patch.lefts[k], w)
        if rows and cols:
            (r0, r1), (c0, c1) = rows, cols
            pt, pl = patch.tops[k], patch.lefts[k]
            out[k, ..., r0 - top:r1 - top, c0 - left:c1 - left] = \
                patch.values[k, ..., r0 - pt:r1 - pt, c0 - pl:c1 - pl]
    return out


def whole(patch):
    """The B full maps (B×…×H×W)."""
    zeros = [0] * len(patch.tops)
    return read(patch, zeros, zeros, *patch.map_size)


def settle(patch):
    """A patch that covers its whole map is just the B full maps."""
    return patch.values if patch.size == patch.map_size else patch


def common_length(firsts, stops, size):
    """One length for all copies (the longest span [first, stop), at least 1), and starts moved
    back where that length would leave the map [0, size): a batch runs one layer call on one
    size. (Rows that did not change come out as they were: recomputing them is harmless.)"""
    length = max(1, *(stop - first for first, stop in zip(firsts, stops)))
    return [min(first, size - length) for first in firsts], length


# ---- layers that read a window of their input: convolution, max-pooling, zero-padding ----

@dataclass
class Window:
    """How a layer reads its input: kernel, stride, dilation and padding before the map (top,
    left), each (rows, columns); ``fill`` is the padding value and ``apply`` runs the layer on
    an input that is already padded."""
    kernel: tuple
    stride: tuple
    dilation: tuple
    padding: tuple
    fill: float
    apply: callable


def pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def conv2d_arguments(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``F.conv2d``'s arguments by name."""
    return dict(weight=weight, bias=bias, stride=stride, padding=padding, dilation=dilation,
                groups=groups)


def convolution_window(weight, bias, stride, padding, dilation, groups):
    if isinstance(padding, str):                  # 'same' / 'valid': not handled here
        return None
    return Window(tuple(weight.shape[-2:]), pair(stride), pair(dilation), pair(padding), 0.0,
                  lambda x: F.conv2d(x, weight, bias, stride, 0, dilation, groups))


def window_of(node, module, args, kwargs):
    """The ``Window`` of a convolution, max-pooling or zero-padding step, else None."""
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros":
        return convolution_window(module.weight, module.bias, module.stride, module.padding,
                                  module.dilation, module.groups)
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        kernel, stride, dilation = pair(module.kernel_size), pair(module.stride), pair(module.dilation)
        return Window(kernel, stride, dilation, pair(module.padding), -math.inf,
                      lambda x: F.max_pool2d(x, kernel, stride, 0, dilation))
    if isinstance(module, nn.ZeroPad2d):              # (left, right, top, bottom): a 1×1 window
        left, _, top, _ = module.padding
        return Window((1, 1), (1, 1), (1, 1), (top, left), 0.0, lambda x: x)
    if node.op == "call_function" and node.target is F.conv2d:
        return convolution_window(**conv2d_arguments(*args, **kwargs))
    return None


@dataclass
class Span:
    """Along one axis: the output rows to recompute (``starts``, ``length``), the rows of the
    padded input they read (``read_starts``, ``read_length``), and the padding after the map."""
    starts: list
    length: int
    read_starts: list
    read_length: int
    pad_after: int


def span(starts, length, in_size, out_size, kernel, stride, dilation, pad):
    """The output rows a change in input rows [start, start + length) reaches (see the module
    docstring), made one length for the batch, and the input rows they read."""
    reach = dilation * (kernel - 1) + 1                     # rows one window covers
    firsts = [max(0, (a + pad - reach) // stride + 1) for a in starts]    # ⌈(a+p−k+1)/s⌉
    stops = [min(out_size, -(-(a + length + pad) // stride)) for a in starts]
    out_starts, out_length = common_length(firsts, stops, out_size)
    pad_after = max(0, (out_size - 1) * stride + reach - pad - in_size)
    return Span(out_starts, out_length, [o * stride for o in out_starts],
                (out_length - 1) * stride + reach, pad_after)


def windowed(window, patch, out_clean, pad=F.pad):
    """The layer on the rectangle its input's change reaches: read that rectangle's input
    (plus the kernel's border) from the padded clean map with the change pasted in, run it.
    ``pad`` pads the clean map (``F.pad``, or a cache of the maps padded before)."""
    (h, w), (height, width) = patch.size, patch.map_size
    out_height, out_width = out_clean.shape[-2:]
    rows = span(patch.tops, h, height, out_height, window.kernel[0], window.stride[0],
                window.dilation[0], window.padding[0])
    cols = span(patch.lefts, w, width, out_width, window.kernel[1], window.stride[1],
                window.dilation[1], window.padding[1])
    top, left = window.padding
    pads = (left, cols.pad_after, top, rows.pad_after)
    clean = pad(patch.clean, pads, value=window.fill) if any(pads) else patch.clean
    padded = Patch(patch.values, [t + top for t in patch.tops], [column + left for column in patch.lefts],
                   clean)
    x = read(padded, rows.read_starts, cols.read_starts, rows.read_length, cols.read_length)
    return Patch(window.apply(x), rows.starts, cols.starts, out_clean)


# ---- layers that work position by position -----------------------------------------------

POSITIONWISE_MODULES = (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Identity)   # batch norm: eval mode
POSITIONWISE_FUNCTIONS = {operator.add, torch.add, operator.mul, torch.mul, F.relu, torch.relu,
                          F.relu6, torch.cat, torch.unsqueeze, operator.getitem}  # last 3: channels


def positionwise(node, module, out_clean, map_size):
    """True for a step that computes each (row, column) from the same position of its inputs:
    a value-by-value layer or operation, or one that selects, inserts or joins channels (its
    output keeps one image and the maps' size)."""
    known = isinstance(module, POSITIONWISE_MODULES) or (
        node.op == "call_function" and node.target in POSITIONWISE_FUNCTIONS)
    return (known and torch.is_tensor(out_clean) and out_clean.dim() >= 3
            and out_clean.shape[0] == 1 and tuple(out_clean.shape[-2:]) == map_size)


def on_union(run, args, kwargs, patches, out_clean):
    """``run(args, kwargs)``, a position-wise step, on the union of its inputs' rectangles."""
    (height, width), n = patches[0].map_size, len(patches[0].tops)
    tops, h = common_length([min(p.tops[k] for p in patches) for k in range(n)],
                            [max(p.tops[k] + p.size[0] for p in patches) for k in range(n)], height)
    lefts, w = common_length([min(p.lefts[k] for p in patches) for k in range(n)],
                             [max(p.lefts[k] + p.size[1] for p in patches) for k in range(n)], width)

    def on_rectangle(a):                  # constant maps (a mask, say) are cropped alike
        if isinstance(a, Patch):
            return read(a, tops, lefts, h, w)
        if torch.is_tensor(a) and a.dim() >= 2 and tuple(a.shape[-2:]) == (height, width):
            return crop(a, tops, lefts, h, w)
        return a
    return Patch(run(*map_aggregate((args, kwargs), on_rectangle)), tops, lefts, out_clean)


# ---- the walk over the graph ---------------------------------------------------------------

class TracingError(ValueError):
    """``torch.fx`` cannot follow the model's forward pass (e.g. Python control flow that
    depends on the values of a tensor)."""


def trace(model):
    """The model's graph of operations, as ``torch.fx`` records them, with each in-place step
    made out of place (a ``Patch`` is not the tensor it stands for, so it cannot be overwritten;
    the clean activations are read again for every position)."""
    try:
        graph = fx.Tracer().trace(model)
    except Exception as err:                   # fx raises many kinds; none changes the model
        raise TracingError(f"torch.fx cannot trace {type(model).__name__} "
                           f"({type(err).__name__}: {err}).") from err
    order = {node: k for k, node in enumerate(graph.nodes)}
    for node in graph.nodes:
        if writes_in_place(node):
            overwritten = node.args[0]
            if isinstance(overwritten, fx.Node) and any(order[user] > order[node]
                                                        for user in overwritten.users):
                raise TracingError(f"{node.name} overwrites a map that later steps read.")
            make_out_of_place(node)
    return graph


def inplace_argument(node):
    """The arguments of a function call bound to its parameter names, if it has ``inplace``."""
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)
    except (TypeError, ValueError):            # a builtin without a signature, say
        return None
    return bound if "inplace" in inspect.signature(node.target).parameters else None


def writes_in_place(node):
    """True for a step that overwrites its first input: ``x.add_(y)``, ``torch.relu_(x)``,
    ``F.relu(x, inplace=True)``. (``x += y`` is traced as ``x + y``.)"""
    if node.op == "call_method":
        return node.target.endswith("_") and not node.target.startswith("_")
    if node.op != "call_function":
        return False
    if getattr(node.target, "__name__", "").endswith("_"):
        return True
    bound = inplace_argument(node)
    return bound is not None and bool(bound.arguments.get("inplace"))


def make_out_of_place(node):
    if node.op == "call_method" and callable(getattr(torch.Tensor, node.target[:-1], None)):
        node.target = node.target[:-1]                         # x.add_(y) -> x.add(y)
    elif node.op == "call_function" and inplace_argument(node) is not None:
        bound = inplace_argument(node)
        bound.arguments["inplace"] = False                     # F.relu(x, inplace=False)
        node.args, node.kwargs = bound.args, bound.kwargs
    else:
        raise TracingError(f"{node.name} works in place ({node.target}).")


def output_node(graph, path):
    """The node that gives the output of the module at ``path``: its call, or for a block or a
    stage, the last operation inside it."""
    inside = [node for node in graph.nodes
              if (node.op == "call_module" and node.target == path)
              or path in [where for where, _ in node.meta.get("nn_module_stack", {}).values()]]
    if not inside:
        raise TracingError(f"The traced graph has no operation inside {path!r}.")
    return inside[-1]


def multiply_adds(module, node, args, kwargs, output):
    """Multiply-adds a convolution or a fully connected layer spent on ``output`` (0 for the
    rest: they are a small fraction of the work)."""
    out = output.values if isinstance(output, Patch) else output
    if isinstance(module, nn.Conv2d):
        return out.numel() * module.weight[0].numel()
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    if node.op == "call_function" and node.target is F.conv2d:
        return out.numel() * conv2d_arguments(*args, **kwargs)["weight"][0].numel()
    return 0


class CountingInterpreter(fx.Interpreter):
    """Runs the graph node by node and adds up the multiply-adds (``macs``)."""

    def __init__(self, model, graph, keep_all=False, modules=None):
        super().__init__(model, garbage_collect_values=not keep_all, graph=graph)
        self.macs, self.modules = 0, {} if modules is None else modules

    def module_of(self, node):
        """The module a node calls (None for a function), looked up once per node."""
        if node not in self.modules:
            self.modules[node] = self.fetch_attr(node.target) if node.op == "call_module" else None
        return self.modules[node]

    def run_node(self, node):
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        output = self.compute(node, args, kwargs)
        self.macs += multiply_adds(self.module_of(node), node, args, kwargs, output)
        return output

    def compute(self, node, args, kwargs):
        return self.as_the_model_does(node, args, kwargs)

    def as_the_model_does(self, node, args, kwargs):
        return getattr(self, node.op)(node.target, args, kwargs)


def clean_activations(model, graph, image):
    """Every node's output for one clean image (1×3×H×W), and the multiply-adds it took."""
    interpreter = CountingInterpreter(model, graph, keep_all=True)
    interpreter.run(image)
    return interpreter.env, interpreter.macs


class OccludedPass(CountingInterpreter):
    """Runs the graph on B occluded copies of one image, carrying ``Patch``es instead of maps.

    ``clean`` holds every node's clean output; the value of the node ``keep`` (a layer whose
    maps the caller wants) is copied to ``kept`` as B full maps.
    """

    def __init__(self, model, graph, clean, keep=None, memo=None):
        memo = {} if memo is None else memo       # what one image's passes share: see below
        super().__init__(model, graph, modules=memo.setdefault("modules", {}))
        self.clean, self.keep, self.kept = clean, keep, None
        self.padded = memo.setdefault("padded", {})       # clean maps padded for a window
        if "varying" not in memo:                         # nodes that depend on the image
            memo["varying"] = set()
            for node in graph.nodes:
                if node.op == "placeholder" or any(n in memo["varying"] for n in node.all_input_nodes):
                    memo["varying"].add(node)
        self.varying = memo["varying"]

    def pad(self, clean, pads, value):
        """``F.pad`` of a clean map, computed once per map and padding (the clean maps do
        not change from one position to the next)."""
        key = (id(clean), tuple(pads), value)
        if key not in self.padded:
            self.padded[key] = (clean, F.pad(clean, pads, value=value))   # clean: keeps id valid
        return self.padded[key][1]

    def compute(self, node, args, kwargs):
        patches = patches_in((args, kwargs))
        full = any(n in self.varying and not isinstance(self.env[n], Patch)
                   for n in node.all_input_nodes)          # an input already changed everywhere
        if patches and not full:
            module, out_clean = self.module_of(node), self.clean[node]
            window = window_of(node, module, args, kwargs) if len(patches) == 1 else None
            if window is not None and args[0] is patches[0]:
                return settle(windowed(window, patches[0], out_clean, self.pad))
            if positionwise(node, module, out_clean, patches[0].map_size):
                run = lambda a, k: self.as_the_model_does(node, a, k)
                return settle(on_union(run, args, kwargs, patches, out_clean))
        args, kwargs = map_aggregate((args, kwargs), lambda a: whole(a) if isinstance(a, Patch) else a)
        return self.as_the_model_does(node, args, kwargs)   # the layer on whole maps

    def run_node(self, node):
        output = super().run_node(node)
        if node is self.keep:
            self.kept = whole(output) if isinstance(output, Patch) else output.clone()
        return output


def patches_in(arguments):
    """The ``Patch``es among a step's arguments (which may sit in lists, tuples, dicts)."""
    found = []
    map_aggregate(arguments, lambda a: found.append(a) if isinstance(a, Patch) else None)
    return found


class IncrementalOcclusion:
    """Occluded forward passes of the images ``x`` (N×3×H×W) by incremental inference.

    ``forward(i, tops, lefts, size, fill)`` returns the logits of image i with a size×size
    square of ``fill`` at each (top, left), and the maps of ``layer`` (a module path) if one was
    given, like a full forward pass of the occluded copies would. ``macs`` adds up the
    multiply-adds spent, ``full_macs`` those a full forward pass per copy would have spent.
    Run it inside ``model_guard`` (eval mode), under ``torch.no_grad()``.
    """

    def __init__(self, model, x, layer=None):
        self.model, self.x, self.graph = model, x, trace(model)
        self.keep = output_node(self.graph, layer) if layer is not None else None
        self.image, self.clean, self.clean_macs = None, None, 0
        self.macs, self.full_macs = 0, 0
        self.memo = {}            # shared by the passes of one image (OccludedPass)

    def forward(self, i, tops, lefts, size, fill):
        if self.image != i:                       # the clean activations of image i, once
            self.image = i
            self.clean, self.clean_macs = clean_activations(self.model, self.graph, self.x[i:i + 1])
            self.memo = {}
        square = self.x.new_empty(len(tops), self.x.shape[1], size, size)
        square[:] = fill
        occluded = OccludedPass(self.model, self.graph, self.clean, self.keep, self.memo)
        logits = occluded.run(settle(Patch(square, list(tops), list(lefts), self.x[i:i + 1])))
        self.macs += occluded.macs
        self.full_macs += self.clean_macs * len(tops)
        return logits, occluded.kept
