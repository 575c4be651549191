"""Occlusion sensitivity (Zeiler & Fergus 2014, Fig. 7): does the classifier look at the object?

Slide a grey square over the image. For every position of the square record, in one batched
forward pass over all occluded copies (letters as in the paper's Fig. 7, whose panel (a) is
the photo and (c) the feature map's deconvnet projection, ``utils.deconvnet``):

(b) the total activation of one feature map (by default the strongest map of the last conv
    block on the *unoccluded* image);
(d) the softmax probability of the class of interest (the paper: the correct class);
(e) the most probable label.

"Grey" is the mean colour of the training set, which is 0 after normalisation: the occluder
removes information without adding an edge of some colour. The paper gives neither the
square's size nor its stride; both are arguments here. Squares are placed with their top-left
corner at 0, stride, 2·stride, ... so that each lies fully inside the image.

Every occluded copy differs from the image only under its square, so by default each layer is
recomputed only where the square's change reaches it (``utils.incremental``: Krypton's exact
incremental inference); ``incremental=False`` runs every copy through the whole network, the
reference it equals.
"""
import warnings

import torch
from torch import nn

from .env import progress_bar
from .hooks import ChannelError, capture_activations, check_channel, layer_path, model_guard
from .images import image_batch, one_image
from .incremental import IncrementalOcclusion, TracingError
from .targets import check_target, choose_target


def positions(length, size, stride):
    """Top-left coordinates of the squares along one axis (fully inside the image)."""
    if not 0 < size <= length:
        raise ValueError(f"Occluder size {size} must be between 1 and the image side {length}.")
    if stride < 1:
        raise ValueError(f"Stride must be at least 1, got {stride}.")
    return list(range(0, length - size + 1, stride))


def occluded_copies(image, tops, lefts, size, fill=0.0):
    """One copy of ``image`` (3×H×W) per (top, left), with a size×size square set to ``fill``."""
    copies = image.unsqueeze(0).repeat(len(tops), 1, 1, 1)
    for k, (top, left) in enumerate(zip(tops, lefts)):
        copies[k, :, top:top + size, left:left + size] = fill
    return copies


def strongest_feature_map(model, x, layer):
    """Index of the channel of ``layer`` with the largest total activation, per image."""
    with model_guard(model), torch.no_grad(), capture_activations(model, [layer]) as acts:
        model(x)
    return acts[layer].flatten(2).sum(2).argmax(dim=1)


def feature_channels(activations, channel, layer):
    """The map of ``layer`` whose total is recorded, per image: ``channel`` (one for every
    image, or one per image) checked against the layer, or each image's strongest map."""
    if channel is None:
        return activations.flatten(2).sum(2).argmax(dim=1)
    n = activations.shape[0]
    wanted = channel.flatten().tolist() if torch.is_tensor(channel) else \
        list(channel) if isinstance(channel, (list, tuple)) else [channel]
    if len(wanted) not in (1, n):
        raise ChannelError(f"Give one channel, or one per image: {n} images, {len(wanted)} channels.")
    checked = [check_channel(activations, c, layer) for c in wanted]
    return torch.tensor(checked, device=activations.device).expand(n)


def _full_forward(model, x, layer=None):
    """``forward(i, tops, lefts, size, fill)``: the logits of the occluded copies of image i,
    each run through the whole network, and the maps of ``layer`` (None: no layer)."""
    def forward(i, tops, lefts, size, fill):
        with capture_activations(model, [layer] if layer is not None else []) as acts:
            logits = model(occluded_copies(x[i], tops, lefts, size, fill))
        return logits, acts.get(layer)
    return forward


def _module_path(model, layer):
    """The module path of a role, a path or a module of ``model``."""
    if isinstance(layer, nn.Module):
        return next(name for name, m in model.named_modules() if m is layer)
    return layer_path(model, layer)


@torch.no_grad()
def score_positions(forward, jobs, tops, lefts, batch_size, size, fill, target, channels=None,
                    progress=True):
    """The heart of occlusion: for each job (image i, first position), ``forward`` runs the
    batch of occluded copies of image i; keep the probability of ``target[i]`` (d), the
    most probable label (e) and, given ``channels``, the total activation of the image's map (b)."""
    probs, labels, feats = [], [], []
    for i, start in progress_bar(jobs, progress, "occlusion"):
        logits, maps = forward(i, tops[start:start + batch_size], lefts[start:start + batch_size],
                               size, fill)
        p = logits.softmax(dim=1)
        probs.append(p[:, target[i]])
        labels.append(p.argmax(dim=1))
        if channels is not None:
            feats.append(maps[:, channels[i]].flatten(1).sum(1))
    return probs, labels, feats


def occlusion(model, x, target=None, size=32, stride=16, fill=0.0, layer=None, channel=None,
              batch_size=64, progress=True, incremental=True):
    """Occlusion maps for each image of the batch ``x`` (N×3×H×W, normalised).

    Returns a dict of tensors with one grid row per occluder row:

    * ``"prob"``    N×R×C probability of ``target`` with the square at each position (d);
    * ``"feature"`` N×R×C total activation of map ``channel`` of ``layer`` (b), if a layer is given;
      ``channel`` defaults to the strongest map of each unoccluded image (returned as ``"channel"``);
    * ``"label"``   N×R×C most probable class index (e);
    * ``"clean_prob"`` p(target) without occluder; ``"target"`` the classes (None: top-1);
      ``"tops"``, ``"lefts"``: square corners.

    ``incremental=True`` recomputes each layer only where the square changes it (exact, see
    ``utils.incremental``); ``False`` runs each occluded copy through the whole network.
    An interrupt (■) is re-raised (a partial grid means nothing), the model left as found.
    """
    x = image_batch(x, model)
    n, _, height, width = x.shape
    targets = check_target(model, target, n)
    if channel is not None and layer is None:
        raise ValueError("channel picks a feature map of a layer: pass layer= too, e.g. "
                         "layer='last_conv'.")
    rows, cols = positions(height, size, stride), positions(width, size, stride)
    tops = [t for t in rows for _ in cols]
    lefts = [left for _ in rows for left in cols]
    jobs = [(i, s) for i in range(n) for s in range(0, len(tops), batch_size)]
    with model_guard(model):
        with capture_activations(model, [layer] if layer is not None else []) as acts:
            clean_probs = model(x).softmax(1)
        targets = choose_target(targets, clean_probs)          # None: each image's top-1
        clean = clean_probs.gather(1, targets[:, None])[:, 0]
        if layer is not None:                                  # channel checked before the work
            channels = feature_channels(acts[layer], channel, layer)
        forward = _full_forward(model, x, layer)
        if incremental:
            try:
                path = _module_path(model, layer) if layer is not None else None
                forward = IncrementalOcclusion(model, x, path).forward
            except TracingError as err:
                warnings.warn(f"{err} Occlusion runs every occluded image through the whole "
                              "network instead (same result, slower).", stacklevel=2)
        probs, labels, feats = score_positions(forward, jobs, tops, lefts, batch_size, size, fill,
                                               targets, channels if layer is not None else None,
                                               progress)

    def grid(parts):
        return torch.cat(parts).view(n, len(rows), len(cols)).cpu()

    out = {"prob": grid(probs), "label": grid(labels), "clean_prob": clean.cpu(),
           "target": targets.cpu(),
           "tops": rows, "lefts": cols, "size": size, "stride": stride}
    if layer is not None:
        out["feature"] = grid(feats)
        out["channel"] = channels.cpu()
    return out


def to_pixels(grid, size, stride, shape):
    """Spread an R×C occlusion grid over an H×W image: each pixel gets the mean value of the
    squares that covered it (the layout captum's ``Occlusion`` uses); uncovered pixels get nan."""
    height, width = shape
    total = torch.zeros(height, width, dtype=torch.float64)
    count = torch.zeros(height, width, dtype=torch.float64)
    rows, cols = positions(height, size, stride), positions(width, size, stride)
    grid = torch.as_tensor(grid, dtype=torch.float64).cpu()      # a grid computed on a GPU too
    for r, top in enumerate(rows):
        for c, left in enumerate(cols):
            total[top:top + size, left:left + size] += grid[r, c]
            count[top:top + size, left:left + size] += 1
    return (total / count).float()


def grid_extent(tops, lefts, size, stride):
    """``imshow`` extent (left, right, bottom, top), in the image's pixels, that draws an R×C
    occlusion grid over the photo: cell (r, c) becomes a stride-wide square centred on the
    centre of the square that made it, (lefts[c] + size/2, tops[r] + size/2)."""
    half = stride / 2
    return (lefts[0] + size / 2 - half, lefts[-1] + size / 2 + half,
            tops[-1] + size / 2 + half, tops[0] + size / 2 - half)


class LiveOccluder:
    """One grey square at a time, for a slider: where it is, what the network says.

    The clean image's activations are computed once; each move recomputes, layer by layer,
    only the part of the map the square reaches (``utils.incremental``), so a move costs a
    fraction of a forward pass. ``occluder(top, left)`` returns (p(target), top-1 class,
    share of a full forward pass's multiply-adds that the move cost).
    """

    def __init__(self, model, x, target=None, size=48, fill=0.0):
        self.model, self.x, self.size, self.fill = model, one_image(x, model), size, fill
        with model_guard(model), torch.no_grad():
            logits = model(self.x)
        self.target = int(choose_target(check_target(model, target, 1), logits)[0])
        self.clean_prob = logits.softmax(1)[0, self.target].item()
        self.passes = IncrementalOcclusion(model, self.x)

    def __call__(self, top, left):
        height, width = self.x.shape[-2:]
        if not (0 <= top <= height - self.size and 0 <= left <= width - self.size):
            raise ValueError(f"The {self.size} px square must lie inside the {height}×{width} "
                             f"image: 0 ≤ top ≤ {height - self.size}, 0 ≤ left ≤ {width - self.size}.")
        before = (self.passes.macs, self.passes.full_macs)
        with model_guard(self.model), torch.no_grad():
            logits, _ = self.passes.forward(0, [top], [left], self.size, self.fill)
        p = logits.softmax(1)[0]
        share = (self.passes.macs - before[0]) / max(self.passes.full_macs - before[1], 1)
        return p[self.target].item(), int(p.argmax()), share


# ----------------------------------------------------------------------------- verdicts
def label_change_rates(labels, target, tops, lefts, size, box):
    """How often the square changed the top-1 label away from ``target``: (share of the
    positions whose square centre lies in ``box``, share of the other positions).

    ``labels``: the R×C grid ``occlusion(...)["label"][i]``; ``tops``, ``lefts``: its square
    corners; ``box`` = (x0, y0, x1, y1) in the network input's pixels.
    """
    x0, y0, x1, y1 = box
    on = torch.tensor([x0 <= left + size // 2 < x1 and y0 <= top + size // 2 < y1
                       for top in tops for left in lefts])
    changed = torch.as_tensor(labels).flatten() != int(target)
    if on.all() or not on.any():
        raise ValueError("label_change_rates needs square positions both on and off the box.")
    return changed[on].float().mean().item(), changed[~on].float().mean().item()


def hiding_object_changes_label(labels, target, tops, lefts, size, box):
    """Zeiler & Fergus' reading of occlusion map (e): the label changes more often when the
    square's centre is on the object (in ``box``) than at the other positions, all pooled
    (one rate for the rest of the image, not one per other object).

    Chance is equality: a network that ignored the object would change its label as often
    wherever the square sits. No other threshold.
    """
    on_object, elsewhere = label_change_rates(labels, target, tops, lefts, size, box)
    return on_object > elsewhere


def fill_effect(p_fill, p_mean):
    """Mean |Δp| between two occlusion maps of the same image, squares and class: one whose
    square is filled with some colour, one with the mean colour (0 after normalisation)."""
    return (torch.as_tensor(p_fill, dtype=torch.float64)
            - torch.as_tensor(p_mean, dtype=torch.float64)).abs().mean().item()


def colour_matters(p_fill, p_mean, p_nearby):
    """True if a square's colour, not only what it hides, moves the occlusion map: the map
    with fill ``p_fill`` differs from the mean-colour map ``p_mean`` (``fill_effect``) by
    more than the maps ``p_nearby`` of fills an imperceptible step (8/255, the fooling
    images' budget) from the mean do.

    The nearby fills are the counterfactual: a colour no one can tell from the mean. A fill
    equal to the mean, or the same fill twice, scores 0 and fails.
    """
    floor = max(fill_effect(p, p_mean) for p in p_nearby)
    return fill_effect(p_fill, p_mean) > floor
