"""Zeiler & Fergus' deconvnet: project one activation back down to pixel space.

Two implementations of the same idea:

* ``project_with_switches`` is the paper's machine (§2.1). Forward the image through a chain
  of Conv2d / ReLU / MaxPool2d layers (AlexNet's and VGG's ``features``), recording the max-pool
  **switches** (where each maximum came from). Keep one activation, zero the rest, and go
  down: (i) **unpool** with the switches, (ii) **rectify** with a ReLU, (iii) **filter** with
  the transposed filters (``conv_transpose2d`` with the same weights, i.e. every filter
  flipped vertically and horizontally; no bias).
* ``project_with_rule`` is the backward-rule shortcut: backpropagate from that activation
  with the deconvnet ReLU rule (R_l = 1[R_(l+1) > 0] R_(l+1), forward mask ignored). Max-pool
  backward already routes to the switches and conv backward is the transposed convolution,
  so on AlexNet/VGG both give the same picture; the rule form also runs on networks without
  max-pooling (the bundled EfficientNet-Lite0) and with the "gradient" or "guided" rule.

Unpooling sums what two overlapping windows send to the same switch (AlexNet's 3×3 stride-2
pools): that is the exact transpose of max-pooling. ``nn.MaxUnpool2d`` would instead keep
only one of the colliding values.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .attribution import RULES, backward_rule
from .hooks import capture_activations, check_channel, layer_outputs, model_guard, resolve_layer
from .images import image_batch
from .localize import mask_box

SWITCH_LAYERS = (nn.Conv2d, nn.ReLU, nn.ReLU6, nn.MaxPool2d, nn.Dropout)


# ----------------------------------------------------------------------------- building blocks
def unpool(y, switches, output_size):
    """Place each value of ``y`` (N×C×h×w) at its switch in a zero N×C×H×W map (summing collisions).

    ``switches`` are the flat indices returned by ``max_pool2d(..., return_indices=True)``.
    """
    n, c = y.shape[:2]
    height, width = output_size[-2:]
    out = y.new_zeros(n, c, height * width)
    out.scatter_add_(2, switches.flatten(2), y.flatten(2))
    return out.view(n, c, height, width)


def transposed_filter(y, conv, input_size):
    """Filter with the transposed conv: same weights flipped in space, channels swapped, no bias."""
    size = tuple(input_size[-2:])
    pad = conv.padding if isinstance(conv.padding, tuple) else (conv.padding,) * 2
    # output_padding recovers the input size when the stride dropped some rows/columns
    base = [(y.shape[-2 + i] - 1) * conv.stride[i] - 2 * pad[i]
            + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1 for i in range(2)]
    extra = tuple(size[i] - base[i] for i in range(2))
    return F.conv_transpose2d(y, conv.weight, None, conv.stride, pad, extra, conv.groups,
                              conv.dilation)


def switch_chain(model, layer):
    """The modules from the input up to ``layer`` if they form a plain Conv/ReLU/MaxPool chain.

    ``layer`` must sit in an ``nn.Sequential`` that takes the image (``features`` of AlexNet
    and VGG). Otherwise raise an error that says to use ``project_with_rule``.
    """
    target = resolve_layer(model, layer)
    for name, parent in model.named_modules():
        if isinstance(parent, nn.Sequential) and any(m is target for m in parent):
            chain = []
            for m in parent:
                chain.append(m)
                if m is target:
                    break
            first = next(iter(model.children()), None)
            bad = [type(m).__name__ for m in chain if not isinstance(m, SWITCH_LAYERS)]
            if parent is first and not bad and any(isinstance(m, nn.MaxPool2d) for m in parent):
                return chain
            why = (f"it contains {sorted(set(bad))}" if bad else
                   "that block is not the network's first stage" if parent is not first else
                   "there is no max-pooling")
            break
    else:
        why = "it is not inside an nn.Sequential stack of layers"
    raise ValueError(f"Switch-based deconvnet needs a Conv2d/ReLU/MaxPool2d chain from the image "
                     f"to {layer!r}, but {why}. Use project_with_rule(model, ...) instead, "
                     "which works on any network with ReLU modules.")


def pick_position(activation, channel, position=None):
    """(y, x) of the strongest activation of ``channel`` in a C×H×W map, unless given."""
    if position is not None:
        return tuple(int(p) for p in position)
    flat = int(activation[channel].flatten().argmax())
    return divmod(flat, activation.shape[-1])


def keep_one(activation, channel, position):
    """A copy of a C×H×W map with every value zeroed except ``activation[channel, y, x]``."""
    kept = torch.zeros_like(activation)
    y, x = position
    kept[channel, y, x] = activation[channel, y, x]
    return kept


# ----------------------------------------------------------------------------- projections
def project_down(chain, sizes, switches, r):
    """The deconvnet's way down: through ``chain`` in reverse, each layer undone by its rule.

    ``sizes`` are the layers' input shapes and ``switches`` the max-pooling indices, both
    recorded on the way up; ``r`` is the kept activation (all others zero).
    """
    switches = list(switches)
    for m, size in zip(reversed(chain), reversed(sizes)):
        if isinstance(m, nn.MaxPool2d):
            r = unpool(r, switches.pop(), size)          # (i) unpool at the switches
        elif isinstance(m, (nn.ReLU, nn.ReLU6)):
            r = F.relu(r)                               # (ii) rectify
        elif isinstance(m, nn.Conv2d):
            r = transposed_filter(r, m, size)           # (iii) transposed filters
    return r


@torch.no_grad()
def project_with_switches(model, x, layer, channel, position=None):
    """Zeiler & Fergus' deconvnet projection of one activation of ``layer`` to pixels.

    Returns (projection N×3×H×W, positions [(y, x)] per image). The strongest activation of
    ``channel`` in each image is projected unless ``position`` (y, x) is given.
    """
    x = image_batch(x, model)
    chain = switch_chain(model, layer)
    with model_guard(model):
        outs = []
        for i in range(x.shape[0]):
            sizes, switches, h = [], [], x[i:i + 1]
            for m in chain:                                   # forward, recording switches
                sizes.append(h.shape)
                if isinstance(m, nn.MaxPool2d):
                    h, idx = F.max_pool2d(h, m.kernel_size, m.stride, m.padding, m.dilation,
                                          m.ceil_mode, return_indices=True)
                    switches.append(idx)
                else:
                    h = m(h)
            channel = check_channel(h, channel, layer, position)
            pos = pick_position(h[0], channel, position)
            r = project_down(chain, sizes, switches, keep_one(h[0], channel, pos)[None])
            outs.append((r, pos))
    return torch.cat([o[0] for o in outs]), [o[1] for o in outs]


def project_with_rule(model, x, layer, channel, position=None, rule="deconvnet"):
    """Backpropagate one activation of ``layer`` to pixels with a ReLU ``rule``.

    ``rule`` = "deconvnet" (Zeiler & Fergus, any network with ReLU modules), "guided" (guided
    backprop) or "gradient" (plain gradient). The backward pass starts from the kept activation
    itself (all others zero), so the result has the same scale as ``project_with_switches``.
    Returns (projection N×3×H×W, positions [(y, x)] per image).
    """
    x = image_batch(x, model)
    module = resolve_layer(model, layer)
    with backward_rule(model, rule):
        x = x.detach().clone().requires_grad_(True)
        with torch.enable_grad(), capture_activations(model, [module], detach=False) as acts:
            model(x)
            act = acts[module]
            channel = check_channel(act, channel, layer, position)
            positions = [pick_position(a, channel, position) for a in act.detach()]
            seed = torch.stack([keep_one(a, channel, p) for a, p in zip(act.detach(), positions)])
            act.backward(seed)
    return x.grad.detach(), positions


class ChannelProjector:
    """``project_with_rule`` for one image and one ``layer``, channel after channel (an
    explorer's slider): the forward pass of each rule runs once, here, up to the layer, and its
    graph is kept; ``projector(channel)`` then runs only the backward passes, from the
    channel's strongest activation (or ``position``). Same numbers as ``project_with_rule``.

    A backward pass costs about as much per channel whether the channels go one at a time or
    batched (it works on the image's full resolution), so channels are not precomputed.
    ``projector(channel)`` returns {rule: (projection 1×3×H×W, (y, x))}.
    """

    def __init__(self, model, x, layer, rules=RULES):
        x = image_batch(x, model)
        if x.shape[0] != 1:
            raise ValueError(f"ChannelProjector takes one image, got a batch of {x.shape[0]}.")
        self.layer, self.passes = layer, {}
        for rule in rules:
            with backward_rule(model, rule), torch.enable_grad():
                image = x.detach().clone().requires_grad_(True)
                self.passes[rule] = (image, layer_outputs(model, image, [layer])[layer])

    def __call__(self, channel, position=None):
        out = {}
        for rule, (image, act) in self.passes.items():
            channel = check_channel(act, channel, self.layer, position)
            value = act.detach()[0]
            where = pick_position(value, channel, position)
            seed = keep_one(value, channel, where)[None]
            grad, = torch.autograd.grad(act, image, seed, retain_graph=True)
            out[rule] = (grad, where)
        return out


def square_box(box, shape):
    """The smallest square (x0, y0, x1, y1) around ``box`` that lies inside an image of
    ``shape`` (H, W) (no larger than its shorter side): panels that show different boxes at
    one size keep their proportions."""
    x0, y0, x1, y1 = box
    height, width = shape[:2]
    side = min(max(x1 - x0, y1 - y0), height, width)
    left = min(max((x0 + x1 - side) // 2, 0), width - side)
    top = min(max((y0 + y1 - side) // 2, 0), height - side)
    return left, top, left + side, top + side


def support_box(projection, fraction=0.02):
    """(x0, y0, x1, y1) around the pixels where |projection| > fraction · max, for one
    3×H×W projection: the part of the image that reached the unit (its effective receptive
    field). The whole image if nothing reached it."""
    energy = projection.detach().abs().amax(dim=0).cpu().numpy()
    box = mask_box(energy > fraction * energy.max())
    return box if box is not None else (0, 0, energy.shape[1], energy.shape[0])


@torch.no_grad()
def top_activations(model, x, layer, channels, k=9):
    """For each channel of ``layer``: the k images with the strongest activation, as
    [(image index, (y, x), value), ...] sorted strongest first (one entry per image, like the
    paper's top-9 taken over distinct validation images)."""
    x = image_batch(x, model)
    with model_guard(model), capture_activations(model, [layer]) as acts:
        model(x)
    act = acts[layer]
    channels = [check_channel(act, c, layer) for c in channels]
    result = {}
    for c in channels:
        flat = act[:, c].flatten(1)
        values, where = flat.max(dim=1)
        order = values.argsort(descending=True)[:k]
        result[c] = [(int(i), divmod(int(where[i]), act.shape[-1]), float(values[i])) for i in order]
    return result


# ----------------------------------------------------------------------------- verdicts
def projection_correlations(projections):
    """|Pearson correlation| of every pair of projections in a batch (N×3×H×W), leaving out
    all-zero ones (an activation of 0 projects nothing): a list, one value per pair."""
    flat = [p.detach().double().flatten().cpu() for p in projections]
    flat = [p for p in flat if p.abs().max() > 0]
    return [abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item())
            for i, a in enumerate(flat) for b in flat[i + 1:]]


def same_picture_on_every_image(projections, tolerance=1e-3):
    """True if the projections of one unit at one position where it is positive, on different
    images (N×3×H×W), are all the same picture up to scale: |correlation| ≥ 1 − ``tolerance``
    for every pair.

    It must hold for the deconvnet rule on a network without max-pooling: the way down (ReLU
    on the signal, transposed filters, BatchNorm's scale) uses nothing of the image, only the
    activation's value. With switches (AlexNet, VGG) or the forward mask (gradient, guided
    backprop) the image enters and the pictures differ. ``tolerance`` covers float round-off.
    """
    pairs = projection_correlations(projections)
    return len(pairs) > 0 and min(pairs) >= 1 - tolerance


def changes_with_image(projections, tolerance=1e-3):
    """True if the projections of one unit at one place, on different images (N×3×H×W), are
    not all the same picture up to scale: some pair has |correlation| < 1 − ``tolerance``.

    The claim is Zeiler & Fergus': the switches carry each image's "where" into the
    reconstruction. Without switches and without the forward mask (the deconvnet rule on a
    network without max-pooling) the way down uses nothing of the image, every pair scores
    |r| = 1 and this is False; ``tolerance`` covers float round-off only.
    """
    return len(projection_correlations(projections)) > 0 and \
        not same_picture_on_every_image(projections, tolerance)


def one_place(activations, channel):
    """The position (y, x) where ``channel`` is positive on the most images of a batch of
    N×C×H×W activations, and the indices of those images: the place where one unit can be
    compared across images (a unit at 0 projects nothing). Of tied positions, the one nearest
    the map's centre (its projection is least cut by the image's border)."""
    positive = activations[:, channel] > 0
    count = positive.sum(0)
    height, width = count.shape
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    off_centre = (ys - (height - 1) / 2) ** 2 + (xs - (width - 1) / 2) ** 2
    score = count.double().cpu() * (height * width) ** 2 - off_centre.double()   # count first
    y, x = divmod(int(score.flatten().argmax()), width)
    return (y, x), positive[:, y, x].nonzero().flatten().tolist()


def edge_agreement(projection, photo, box, blur=5):
    """Pearson r, inside ``box`` = (x0, y0, x1, y1), between where a 3×H×W projection is
    strong (|projection| summed over colours) and where the H×W×3 photo has edges (the
    gradient magnitude of its grey version), both averaged over ``blur`` × ``blur`` pixels
    (the stride-2 layers leave a checkerboard in every projection).

    0 is chance: a picture whose layout has nothing to do with the photo's edges.
    """
    grey = torch.as_tensor(photo, dtype=torch.float64).mean(-1)
    dy, dx = torch.gradient(grey)
    strong = projection.detach().double().abs().sum(0).cpu()

    def smooth(m):
        return F.avg_pool2d(m[None, None], blur, 1, blur // 2, count_include_pad=False)[0, 0]

    x0, y0, x1, y1 = box
    pair = torch.stack([smooth(strong)[y0:y1, x0:x1].flatten(),
                        smooth((dx ** 2 + dy ** 2).sqrt())[y0:y1, x0:x1].flatten()])
    return torch.corrcoef(pair)[0, 1].nan_to_num(0.0).item()
