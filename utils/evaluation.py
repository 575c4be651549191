"""Is an explanation any good? Three tests that do not need a human.

* Deletion and insertion (Petsiuk, Das & Saenko, "RISE", BMVC 2018): remove the pixels a map
  ranks highest, a fixed number per step, and watch the class probability fall (deletion,
  lower area is better); or start from a blurred image and put them back (insertion, higher
  area is better). Deleted pixels take the mean colour (0 in normalised input); insertion
  starts from a Gaussian blur (kernel 11, σ = 5). AUC = (Σ p − p₀/2 − p_n/2) / n.
* Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", ECCV
  2016): a hit when the map's maximum lies inside the object's box, with 15 px tolerance
  in the photo's own pixels (pass ``photo_shape``; boxes are then photo pixels too).
* Sanity checks (Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018): randomise
  the weights from the logits down, layer by layer (cascading); a map that does not change
  (high Spearman rank correlation with the original) does not explain *this* model.

Coordinates (utils/README.md): maps are H×W arrays indexed [y, x]; points are (y, x);
boxes are (x0, y0, x1, y1), x1 and y1 exclusive; sizes and shapes are (H, W).
"""
import copy
import math

import numpy as np
import torch
from scipy.stats import spearmanr

from . import attribution, cam, fixations, occlusion
from .env import progress_bar
from .hooks import model_guard
from .images import blur, one_image
from .localize import check_boxes
from .targets import check_target, choose_target


# ------------------------------------------------------------------- deletion / insertion

def pixel_order(saliency):
    """Pixel indices (flattened H×W) from most to least salient; ties keep raster order."""
    values = torch.as_tensor(np.asarray(saliency, dtype=np.float32)).flatten()
    return torch.argsort(-values, stable=True)


def blurred(x):
    """The insertion start: the image under a Gaussian blur (RISE: kernel 11, σ = 5)."""
    return blur(x, 5.0, kernel=11)


def auc(curve):
    """Area under a curve sampled at equal steps on [0, 1] (trapezoid rule)."""
    curve = np.asarray(curve, dtype=np.float64)
    return float((curve.sum() - curve[0] / 2 - curve[-1] / 2) / (len(curve) - 1))


@torch.no_grad()
def deletion_insertion(model, x, saliency, target=None, mode="deletion", pixels_per_step=224,
                       batch_size=32, progress=True):
    """Probability of ``target`` as pixels are deleted (or inserted) in saliency order.

    ``x``: one normalised image 1×3×H×W; ``saliency``: H×W map (higher = more important);
    ``target``: the class whose probability is tracked (None: the predicted class).
    Returns (curve, auc); curve[0] is the untouched (deletion) or blurred (insertion) image.
    The step images are built and classified in batches. An interrupt (■) is re-raised (a
    partial curve has no AUC), the model left as found.
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError("mode is 'deletion' or 'insertion'")
    x = one_image(x, model)
    targets = check_target(model, target, 1)
    _, _, h, w = x.shape
    if tuple(np.shape(saliency)) != (h, w):
        raise ValueError(f"the map must be {h}×{w} like the image, not {np.shape(saliency)}")
    order = pixel_order(saliency).to(x.device)
    n_steps = int(np.ceil(h * w / pixels_per_step))
    start, finish = (x, torch.zeros_like(x)) if mode == "deletion" else (blurred(x), x)
    curve = []
    steps = range(0, n_steps + 1, batch_size)
    with model_guard(model):
        target = int(choose_target(targets, model(x))[0])
        for first in progress_bar(steps, progress, mode):
            batch = []
            for step in range(first, min(first + batch_size, n_steps + 1)):
                mask = torch.zeros(h * w, device=x.device)
                mask[order[:step * pixels_per_step]] = 1.0     # the pixels changed so far
                mask = mask.view(1, 1, h, w)
                batch.append(start * (1 - mask) + finish * mask)
            probs = model(torch.cat(batch)).softmax(dim=1)[:, target]
            curve.extend(probs.tolist())
    return curve, auc(curve)


# ------------------------------------------------------------------- pointing game

def peak(saliency):
    """(y, x) of the map's maximum (the first one in raster order if tied)."""
    values = np.asarray(saliency)
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(values)), values.shape))


def pointing_hit(saliency, boxes, tolerance=15, photo_shape=None):
    """True if the map's maximum is within ``tolerance`` px of one of the boxes.

    ``boxes``: a list of (x0, y0, x1, y1), or one box. Without ``photo_shape`` the boxes
    and the tolerance are in the map's pixels. With ``photo_shape`` = (H, W) of the photo
    that the map's image was resized from, they are in the photo's own pixels, as in Zhang
    et al.: the maximum is carried to the photo first (``fixations.to_image_coordinates``).
    A flat map (every value the same, e.g. no fixation left) points nowhere: a miss, not
    the corner where ``argmax`` would land.
    """
    values = saliency.detach().cpu().numpy() if torch.is_tensor(saliency) else np.asarray(saliency)
    if values.ndim != 2:
        raise ValueError(f"pointing_hit takes one H×W map, not shape {values.shape}: pass "
                         "maps[i] for image i of a batch.")
    boxes = check_boxes(boxes)
    if values.size == 0 or values.max() == values.min():
        return False
    y, x = peak(values)
    if photo_shape is not None:
        (h, w), (height, width) = values.shape, photo_shape
        [(y, x)] = fixations.to_image_coordinates([(y, x)], (h, w), (width, height))
    for x0, y0, x1, y1 in boxes:
        dx = max(x0 - x, 0, x - x1)
        dy = max(y0 - y, 0, y - y1)
        if np.hypot(dx, dy) <= tolerance:
            return True
    return False


def class_discriminative(maps, boxes):
    """Is an explanation class-discriminative? True if each class's map peaks on its own
    object: ``maps[i]`` (H×W, one per class) has its maximum inside ``boxes[i]`` (map
    pixels, no tolerance), for every i.

    Selvaraju et al. (Grad-CAM, 2017) call a map class-discriminative when it localises the
    class asked for, on an image that holds several. With disjoint boxes, a map that is the
    same for every class has one peak, so it fails for at least one of them; no threshold
    is involved.
    """
    if len(maps) != len(boxes) or len(maps) < 2:
        raise ValueError("class_discriminative takes one map and one box per class, two or more")
    return all(pointing_hit(m, [box], tolerance=0) for m, box in zip(maps, boxes))


def box_in_map(box, photo_shape, map_shape):
    """A box drawn on the photo (x0, y0, x1, y1) in the pixels of a map of the resized photo."""
    (height, width), (h, w) = photo_shape, map_shape
    x0, y0, x1, y1 = box
    return (int(x0 * w / width), int(y0 * h / height),
            math.ceil(x1 * w / width), math.ceil(y1 * h / height))


def share_in_box(saliency, box, photo_shape=None, top=None):
    """The share of a map that falls inside ``box``, and the box's share of the image.

    The energy-based pointing game (Wang et al., Score-CAM, 2020):
    $\\sum_{p \\in box} M_p / \\sum_p M_p$ for a map $M \\ge 0$. A map that ignores the object
    scores about the box's area (chance); one that sits on it scores more. ``top`` = 0.05
    counts the 5 % largest pixels instead of the values (for speckled gradients).
    ``photo_shape`` = (H, W) when the box is in the photo's pixels (as in annotations()).
    """
    values = saliency.detach().cpu().numpy() if torch.is_tensor(saliency) else np.asarray(saliency)
    values = np.abs(values.astype(np.float64))
    if values.ndim != 2:
        raise ValueError(f"share_in_box takes one H×W map, not shape {values.shape}.")
    if photo_shape is not None:
        box = box_in_map(box, photo_shape, values.shape)
    x0, y0, x1, y1 = (int(round(v)) for v in check_boxes(box)[0])
    if top is not None:
        values = (values >= np.quantile(values, 1 - top)).astype(np.float64)
    inside = np.zeros_like(values, dtype=bool)
    inside[y0:y1, x0:x1] = True
    return float(values[inside].sum() / max(values.sum(), 1e-12)), float(inside.mean())


def compose_scene(obj, background, box, size=224):
    """Paste an object crop onto a background at a known place: (image, box).

    ``box`` = (x0, y0, x1, y1) in the size×size scene; the crop is resized to fill it.
    """
    scene = background.convert("RGB").resize((size, size))
    x0, y0, x1, y1 = box
    scene.paste(obj.convert("RGB").resize((x1 - x0, y1 - y0)), (x0, y0))
    return scene, tuple(box)


# ------------------------------------------------------------------- sanity checks

def parameterised_layers(model):
    """Names of the layers with weights, from the logits down to the input."""
    names = [name for name, m in model.named_modules()
             if name and any(True for _ in m.parameters(recurse=False))]
    return names[::-1]


def cascading_randomisation(model, layers=None, seed=2018):
    """Yield (layer name, model copy) with every layer from the top down to it re-initialised.

    A layer may be a whole block: all its parameters are re-initialised (and BatchNorm
    statistics reset). The user's model is never modified: the steps work on one deep copy
    that accumulates the randomisation, as in Adebayo et al.'s cascading test.
    """
    layers = layers if layers is not None else parameterised_layers(model)
    randomised = copy.deepcopy(model)
    cuda = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    state = None          # this walk's own random state, carried from one layer to the next
    for name in layers:
        # The caller's generators are left as they were, and whatever the caller draws between
        # two layers does not change the next layer's new weights.
        with torch.random.fork_rng(devices=cuda):
            if state is None:
                torch.manual_seed(seed)
            else:
                torch.random.set_rng_state(state[0])
                for device, device_state in zip(cuda, state[1]):
                    torch.cuda.set_rng_state(device_state, device)
            for module in randomised.get_submodule(name).modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if hasattr(module, "reset_running_stats"):
                    module.reset_running_stats()
            state = (torch.random.get_rng_state(), [torch.cuda.get_rng_state(d) for d in cuda])
        yield name, randomised


def rank_correlation(a, b, absolute=True):
    """Spearman rank correlation of two maps (of |values| by default, as Adebayo et al.)."""
    a, b = (np.asarray(m.detach().cpu() if torch.is_tensor(m) else m, dtype=np.float64) for m in (a, b))
    a, b = (np.abs(a), np.abs(b)) if absolute else (a, b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    if a.min() == a.max() or b.min() == b.max():
        return 0.0                                  # a constant map has no ranking
    return float(spearmanr(a.ravel(), b.ravel()).statistic)


# ------------------------------------------------------------------- the methods compared

# Every method of the comparison, called with its own target convention; ``fast`` lowers
# the sample counts. name: (function, options in default mode, options in fast mode)
EXPLANATIONS = {
    "gradient": (attribution.input_gradient, {}, {}),
    "guided backprop": (attribution.guided_backprop, {}, {}),
    "SmoothGrad": (attribution.smoothgrad, {"samples": 25, "progress": False},
                   {"samples": 8, "progress": False}),
    "Integrated Gradients": (attribution.integrated_gradients, {"steps": 32, "progress": False},
                             {"steps": 16, "progress": False}),
    "CAM": (cam.cam, {}, {}),
    "Grad-CAM": (cam.grad_cam, {}, {}),
    # the authors' rule for the network's family (fixations.official_position: on the
    # bundled Lite0 their residual demo's), counted points: the number of paths into each
    # point is what tells the object apart where the paper's set merges them (notebook 06)
    "CNN-Fixations": (fixations.backtrack, {"count": True}, {"count": True}),
    "occlusion": (occlusion.occlusion, {"size": 32, "stride": 16, "progress": False},
                  {"size": 32, "stride": 32, "progress": False}),
}
METHODS = list(EXPLANATIONS)


def methods_for(model, x):
    """The methods of ``EXPLANATIONS`` that apply to ``model`` (CAM needs a GAP head)."""
    return [m for m in METHODS if m != "CAM" or cam.cam_applies(model, x)]


def pixel_map(result, size):
    """Any method's result for one image -> an H×W array, larger = more important.

    One rule per family (see utils/README.md): input attributions (1×3×H×W) -> max over
    colour channels of |·| (Simonyan et al.); layer maps (1×h×w) -> bilinear upsampling;
    points [(y, x)] -> their blurred density; an occlusion grid -> the drop in probability,
    spread over the pixels each square covered.
    """
    if isinstance(result, dict) and "prob" in result:          # an occlusion grid
        drop = result["clean_prob"][0] - result["prob"][0]
        m = occlusion.to_pixels(drop, result["size"], result["stride"], size).nan_to_num(0.0)
    elif isinstance(result, (list, dict)):                       # points, or counted points
        _, m = fixations.fixation_heatmap(result, size)
    elif result.dim() == 4:
        m = attribution.pixel_map(result)[0]
    else:
        m = cam.upsample(result, size)[0]
    return np.asarray(m.detach().float().cpu() if torch.is_tensor(m) else m, dtype=np.float32)


def explanation_map(method, model, x, target=None, fast=False):
    """One method's map for one image ``x`` (1×3×H×W) and class: an H×W array."""
    if method not in EXPLANATIONS:
        raise KeyError(f"Unknown method {method!r}; choose one of {METHODS}.")
    x = one_image(x, model)
    function, default, quick = EXPLANATIONS[method]
    result = function(model, x, target, **(quick if fast else default))
    return pixel_map(result, tuple(x.shape[-2:]))


# ------------------------------------------------------------------- baselines

def centre_map(shape):
    """The centre baseline: an H×W map that peaks at the image centre and falls off with the
    distance to it (a Gaussian, σ = a quarter of the shorter side). It never looks at the
    image, so a test on which it scores as well as a method cannot rank that method."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    sigma = min(h, w) / 4
    return np.exp(-((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def edge_map(x):
    """The image-only baseline: the edge strength of the image itself (Sobel gradient magnitude
    of its grey levels), an H×W map for one image ``x`` (1×3×H×W, any normalisation). It never
    looks at the model, so a test that it passes as well as a method cannot tell that method
    from an edge detector (the confound Adebayo et al. raise)."""
    grey = torch.as_tensor(x).detach().float().cpu().reshape(-1, *x.shape[-2:]).mean(0)[None, None]
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    kernels = torch.stack([sobel, sobel.T])[:, None]
    gx, gy = torch.nn.functional.conv2d(torch.nn.functional.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)[0]
    return torch.hypot(gx, gy).numpy().astype(np.float32)


def random_map(shape, seed=0):
    """The random baseline: an H×W map of uniform noise, so pixels come in a random order."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def chance_hit_rate(box, shape, tolerance=15):
    """The pointing game's chance level for one image: the share of an H×W image's pixels
    within ``tolerance`` px of ``box`` (x0, y0, x1, y1), i.e. the probability that a map
    whose maximum falls on a uniformly random pixel scores a hit."""
    (x0, y0, x1, y1), (h, w) = check_boxes(box)[0], shape
    y, x = np.mgrid[0:h, 0:w]
    dx = np.maximum.reduce([x0 - x, np.zeros_like(x), x - x1])
    dy = np.maximum.reduce([y0 - y, np.zeros_like(y), y - y1])
    return float((np.hypot(dx, dy) <= tolerance).mean())


# ------------------------------------------------------------------- verdicts

def sign_test(wins, losses):
    """Two-sided exact sign test: the chance of a split at least as uneven as ``wins`` :
    ``losses`` if each of the ``wins + losses`` differing cases went either way with p = 1/2."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


def outperforms(hits, baseline_hits, level=0.05):
    """True if a method hits significantly more often than a baseline on the same images.

    ``hits``, ``baseline_hits``: one True/False per image, in the same order. Only the
    images where exactly one of the two hits tell them apart; the exact sign test on those
    must reach the conventional ``level`` 0.05 (chance, not the run, sets the bar). With
    fewer than 6 such images no split can reach it: a small study cannot rank the two.
    """
    if len(hits) != len(baseline_hits):
        raise ValueError("hits and baseline_hits must score the same images")
    wins = sum(bool(a) and not bool(b) for a, b in zip(hits, baseline_hits))
    losses = sum(bool(b) and not bool(a) for a, b in zip(hits, baseline_hits))
    return wins > losses and sign_test(wins, losses) < level


def chance_p_value(hits, chance_rates):
    """The exact chance of scoring at least as many hits as ``hits`` (one True/False per
    image) if each image i were hit with its own chance probability ``chance_rates[i]``
    (``chance_hit_rate``: a maximum on a random pixel): the upper tail of a Poisson-binomial
    distribution, computed exactly by convolution."""
    if len(hits) != len(chance_rates):
        raise ValueError("hits and chance_rates must score the same images")
    distribution = np.array([1.0])                   # P(k hits) after 0 images
    for rate in chance_rates:
        distribution = np.convolve(distribution, [1 - rate, rate])
    return float(distribution[sum(bool(h) for h in hits):].sum())


def above_chance(hits, chance_rates, level=0.05):
    """True if a map hits more images than a maximum on a random pixel would: the chance of
    at least as many hits (``chance_p_value``) is below the conventional ``level`` 0.05
    (chance, not the run, sets the bar; a handful of images cannot reach it)."""
    return chance_p_value(hits, chance_rates) < level


def discordant_needed(level=0.05):
    """The fewest images on which one map hits and the other misses that a sign test
    (``sign_test``) needs to reach ``level``, even when all of them go one way: 6 at 0.05.
    A study with fewer such images cannot rank the two (its power to do so is zero)."""
    n = 1
    while sign_test(n, 0) >= level:
        n += 1
    return n


def more_in_box_than_chance(saliency, box, factor=1.0, photo_shape=None, top=None):
    """True if the share of the map inside ``box`` (``share_in_box``) is more than ``factor``
    times the box's share of the image: chance, what a flat map or one that ignores the
    object scores. ``factor`` = 2 asks for twice chance."""
    share, area = share_in_box(saliency, box, photo_shape, top)
    return share > factor * area


def more_in_box(saliency, other, box, photo_shape=None, top=None):
    """True if ``saliency`` puts a larger share inside ``box`` than ``other`` does."""
    return share_in_box(saliency, box, photo_shape, top)[0] > share_in_box(other, box, photo_shape, top)[0]


def more_alike(pair, other_pair, absolute=True):
    """True if the two maps of ``pair`` are more alike (Spearman ρ, ``rank_correlation``)
    than the two of ``other_pair``: e.g. a method whose map changes less between two
    classes than another method's does. No threshold: the other pair is the reference."""
    return rank_correlation(*pair, absolute=absolute) > rank_correlation(*other_pair, absolute=absolute)


def less_alike_than_random(correlation, random_correlations, level=0.05):
    """True if two maps (e.g. one per class) are less alike than pairs drawn at random: their
    ``correlation`` (Spearman ρ) is lower than enough of the ``random_correlations`` (the ρ of
    maps of randomly chosen classes on the same image) that a rank test reaches ``level``:
    p = (1 + #{random ρ ≤ ρ}) / (n + 1) ≤ 0.05, the conventional level (chance sets the bar:
    with 19 random pairs the maps must be less alike than every one of them)."""
    below = sum(r <= correlation for r in random_correlations)
    return (1 + below) / (len(random_correlations) + 1) <= level


def is_degenerate(saliency):
    """True for a constant map (e.g. Grad-CAM when ReLU(Σ_k α_k A^k) is zero everywhere).
    It ranks no pixel, so a rank correlation with it is undefined (``rank_correlation``
    returns 0): such a step of the sanity check is neither a pass nor a fail."""
    values = np.asarray(saliency.detach().cpu() if torch.is_tensor(saliency) else saliency, dtype=np.float64)
    return bool(values.min() == values.max())


def sanity_score(correlations):
    """One number for a cascade, our summary (Adebayo et al. show the per-layer curves of ρ,
    with and without absolute values, SSIM and HOG similarity; they give no single score):
    the mean |ρ| over the randomised steps (near 0: the map changed with the weights; near 1:
    it did not), leaving out degenerate steps (``None``). NaN when every step is degenerate."""
    valid = [abs(r) for r in correlations if r is not None]
    return float(np.mean(valid)) if valid else float("nan")


def beats(scores, a, b, lower=True):
    """True if method ``a`` scores strictly better than ``b`` in ``scores`` {method: value}
    (lower is better unless ``lower=False``); False if either score is NaN (degenerate)."""
    sa, sb = float(scores[a]), float(scores[b])
    if math.isnan(sa) or math.isnan(sb):
        return False
    return sa < sb if lower else sa > sb


def ranking(scores, lower=True):
    """Methods from best to worst by ``scores`` {method: value}; NaN scores go last."""
    finite = [m for m in scores if not math.isnan(float(scores[m]))]
    ordered = sorted(finite, key=lambda m: float(scores[m]), reverse=not lower)
    return ordered + [m for m in scores if m not in finite]
