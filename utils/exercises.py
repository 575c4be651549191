"""The notebooks' "try it yourself" checks, one convention for all of them.

Every ``check_...`` takes the student's answer, prints one verdict line (right, or a hint
that says how to get there) and returns a ``Verdict``: true or false like a bool, and shown
as nothing in a notebook, so the printed line is all a student sees. An answer still
``None``, or a function that still raises ``NotImplementedError``, is "not answered yet":
false, and one neutral line instead of a verdict.

"Implement the core" exercises give the student a stub of one of the method's central
functions; ``check_function`` runs it and the ``utils`` reference on the same inputs and
compares them by relative error. ``solution(reference)`` prints the reference when asked.
"""
import inspect

import numpy as np
import torch
from scipy import ndimage

from . import attribution, cam, deconvnet, deepdream, evaluation, features, inversion, localize, occlusion, style
from .features import strongest_channels
from .fixations import conv_rule, record_forward
from .hooks import resolve_layer
from .localize import bounding_box, largest_region
from .style import gram_matrix

NOT_ANSWERED = "Not answered yet: write your answer in the cell above, then run this cell again."

EXERCISE_FEATURES = torch.tensor([[[[1., 0.], [2., 1.]], [[0., 1.], [1., 3.]]]])


class Verdict:
    """A check's result: ``if check(...)`` and ``check(...) == True`` work as with a bool, but
    a notebook cell that ends with the check shows nothing more than the printed line."""

    def __init__(self, ok):
        self.ok = bool(ok)

    def __bool__(self):
        return self.ok

    def __eq__(self, other):
        return self.ok == other

    __hash__ = None

    def __repr__(self):
        return repr(self.ok)

    def _ipython_display_(self):
        pass


def verdict(ok, right, hint, answered=True):
    """Print ``right`` if ``ok`` else ``hint`` (or the not-answered line); return the Verdict."""
    ok = bool(ok) and answered
    print(right if ok else hint if answered else NOT_ANSWERED)
    return Verdict(ok)


def solution(reference):
    """Print the source of a reference function: one way to solve the exercise."""
    print(inspect.getsource(reference))


def same_numbers(answer, expected, tolerance=1e-5):
    """True if ``answer`` (list, array or tensor) holds ``expected``'s values within a
    relative ``tolerance``; False for None or the wrong number of values."""
    if answer is None:
        return False
    expected = torch.as_tensor(expected, dtype=torch.float32).detach().cpu()
    answer = torch.as_tensor(answer, dtype=torch.float32).detach().cpu()
    if answer.numel() != expected.numel():
        return False
    scale = float(expected.abs().max()) + 1e-12
    return bool(torch.allclose(answer.reshape(expected.shape), expected, atol=tolerance * scale))


# --- 01 filters and activations ----------------------------------------------------------
def check_first_conv_parameters(model, answer):
    """How many numbers does the first conv layer learn (weights + biases)?"""
    conv = resolve_layer(model, "first_conv")
    right = sum(p.numel() for p in conv.parameters())
    biases = f" + {conv.bias.numel()} biases." if conv.bias is not None else " (no bias)."
    return verdict(answer == right, f"Right: {right} = {tuple(conv.weight.shape)} weights{biases}",
                   f"Not yet: {answer} is not it. Hint: out_channels × in_channels × k × k, plus "
                   f"one bias per filter if the layer has biases; look at "
                   f"{type(conv).__name__}.weight.shape.", answered=answer is not None)


def check_strongest_channel(activations, layer, answer):
    """Which channel of ``layer`` has the largest mean activation on the image?"""
    right = strongest_channels(activations[layer], 1)[0]
    return verdict(answer == right, f"Right: channel {right} of {layer} responds most strongly "
                   "on average.",
                   f"Not yet: channel {answer} is not the strongest. Hint: average each channel's "
                   "map over height and width (activation[0].mean(dim=(1, 2))) and take the argmax.",
                   answered=answer is not None)


# --- 02 receptive fields -----------------------------------------------------------------
def check_vgg_conv4_3(answer):
    """The receptive field size of VGG-16's conv4_3 (``features.21``), worked out by hand."""
    import torchvision

    from .receptive_field import receptive_field
    vgg = torchvision.models.get_model("vgg16", weights=None)
    right = receptive_field(vgg, "features.21", input_size=224).size
    return verdict(answer == right, f"Right: {right} px.",
                   f"Not quite: {answer} is not it. Hint: a 3×3 conv adds 2 × jump, a 2×2 pool "
                   "adds 1 × jump and doubles the jump.", answered=answer is not None)


def check_jump(field, answer):
    """The jump (total stride) of a layer whose ``ReceptiveField`` is ``field``."""
    return verdict(answer == field.jump, f"Right: {field.jump:g} px between neighbouring units.",
                   f"Not quite: {answer} is not it. Hint: multiply (do not add) all the strides "
                   f"up to {field.layer}.", answered=answer is not None)


def check_vgg_pool5_jump(answer):
    """02: the jump of VGG-16's pool5 (``features.30``), worked out by hand."""
    import torchvision

    from .receptive_field import receptive_field
    vgg = torchvision.models.get_model("vgg16", weights=None)
    return check_jump(receptive_field(vgg, "features.30", input_size=224), answer)


def check_nms_dropped(bank, layer, channel, answer, k=16, iou=0.3, strict=0.1):
    """02: how many of a channel's top ``k`` at NMS IoU ``iou`` are gone from its top ``k`` at
    the stricter ``strict`` (R-CNN's 0.1)."""
    usual = {hit.region for hit in bank.top_regions(layer, channel, k=k, iou=iou)}
    stricter = {hit.region for hit in bank.top_regions(layer, channel, k=k, iou=strict)}
    right = len(usual - stricter)
    hint = (f"Not quite: {answer} is how many stay; count those that leave." if answer == k - right
            and answer != right else
            f"Not quite: {answer} is not it. Hint: the regions (hit.region) of "
            f"bank.top_regions(layer, channel, k={k}, iou={iou}) that are not among those of "
            f"iou={strict}.")
    return verdict(answer == right, f"Right: {right} of the top {k} leave; the stricter NMS "
                   "puts other photos' regions, or other spots, in their place.", hint,
                   answered=answer is not None)


# --- 03 occlusion and the deconvnet -------------------------------------------------------
UNPOOL_SWITCHES, UNPOOL_VALUES = [4, 3, 13, 10], [5., 2., 7., 3.]   # a 2×2 max-pool of a 4×4 map


def check_unpool(answer, switches=UNPOOL_SWITCHES, values=UNPOOL_VALUES):
    """03: the 4×4 map that unpooling ``values`` at the flat ``switches`` gives (a nested list)."""
    truth = deconvnet.unpool(torch.tensor(values).view(1, 1, 2, 2), torch.tensor(switches).view(1, 1, 2, 2),
                   (4, 4))[0, 0]
    transposed = truth.t()
    corners = torch.zeros(4, 4)
    corners[::2, ::2] = torch.tensor(values).view(2, 2)
    shape_ok = answer is not None and torch.as_tensor(answer, dtype=torch.float).shape == (4, 4)
    given = torch.as_tensor(answer, dtype=torch.float) if shape_ok else None
    hint = ("Not yet: give 4 rows of 4 numbers." if not shape_ok else
            "Not yet: flat index i is row i // 4, column i % 4 (rows first)." if torch.equal(given, transposed) else
            "Not yet: each value goes to its switch, not to the corner of its window." if torch.equal(given, corners) else
            "Not yet: flat index i is row i // 4, column i % 4; all other entries are 0.")
    return verdict(shape_ok and torch.equal(given, truth),
                   "Right: every value sits at its switch, zeros elsewhere.", hint,
                   answered=answer is not None)


def check_occlusion_grid(count, uncovered, side=224, size=40, stride=24):
    """03: forward passes of a size×size square moved by ``stride`` over a side×side image
    (squares fully inside, ``occlusion.positions``), and the pixel columns at the right edge
    that no square covers."""
    per_axis = len(occlusion.positions(side, size, stride))
    right_count, right_strip = per_axis ** 2, side - (occlusion.positions(side, size, stride)[-1] + size)
    answered = count is not None and uncovered is not None
    slips = {per_axis: "that is one axis: the square moves over rows and columns.",
             (per_axis - 1) ** 2: "count the square at 0 too: positions 0, stride, 2·stride, ...",
             round(side / stride) ** 2: "a square must lie fully inside the image."}
    hint = ("Not yet: " + slips[count]) if count != right_count and count in slips else         "Not yet: positions per axis = (side − size) // stride + 1; the passes are their square."         if count != right_count else         "Not yet: the last square starts at its last position and is size pixels wide."
    return verdict(answered and count == right_count and uncovered == right_strip,
                   f"Right: {per_axis} positions per axis, {right_count} passes; the last square "
                   f"ends at {side - right_strip}, so {right_strip} columns (and rows) stay uncovered.",
                   hint, answered=answered)


# --- 05 CAM and Grad-CAM -----------------------------------------------------------------
def check_alpha(alpha, gradients):
    """α_k = mean of channel k's gradient over all positions. On gradients that vary over
    the positions (an early layer) it catches the sum, one position, the max and the median."""
    gradients = torch.as_tensor(gradients, dtype=torch.float32)
    expected = gradients.mean(dim=(-2, -1))
    slips = [(gradients.sum(dim=(-2, -1)), "that is the sum; α divides it by Z = h·w. "),
             (gradients[..., 0, 0], "that is one position; α averages all of them. "),
             (gradients.amax(dim=(-2, -1)), "that is the largest gradient; α averages them. ")]
    slip = next((text for value, text in slips if same_numbers(alpha, value)), "")
    return verdict(same_numbers(alpha, expected), "Right: α is the spatial mean of the gradients.",
                   f"Not yet: {slip}α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij, one number per channel "
                   "(average over the two spatial dimensions).", answered=alpha is not None)


def box_exercise_map():
    """05, exercise 2: an 8×10 raw map on which each usual slip gives another box. Two regions
    lie above 15 % of the max: a diagonal staircase, the larger only when diagonal neighbours
    count (8-connected, as ``localize.largest_region``), and a 2×2 block, the larger when only
    side neighbours count. The staircase's box is wider than tall (x and y swapped give another
    box); the max is 3, not 1 (a threshold of 0.15 without the max takes the background); one
    value is negative (min-max normalising first lowers the threshold below the background)."""
    heatmap = np.full((8, 10), 0.15, dtype=np.float32)
    for y, x in [(1, 1), (1, 2), (2, 3), (2, 4), (3, 5), (3, 6), (4, 7), (4, 8)]:
        heatmap[y, x] = 1.8
    heatmap[2, 3] = 3.0
    heatmap[6:8, 1:3] = 1.2
    heatmap[7, 9] = -1.5
    return heatmap


def check_box(box, heatmap, fraction):
    """The box of the largest 8-connected region above fraction · max of the raw map. On
    ``box_exercise_map()`` it names the slip: side neighbours only, every region kept, x and y
    swapped, x1/y1 not one past the end."""
    expected = bounding_box(heatmap, fraction)
    values = np.asarray(heatmap, dtype=np.float32)
    mask = values >= fraction * values.max()
    labels, _ = ndimage.label(mask)                                  # side neighbours only
    x0, y0, x1, y1 = expected
    slips = {localize.mask_box(labels == 1 + np.argmax(np.bincount(labels.ravel())[1:])):
             "only side neighbours were counted; diagonal ones count too (8-connected). ",
             localize.mask_box(mask): "that box holds every region; keep the largest. ",
             (y0, x0, y1, x1): "x and y are swapped: x is the column, y the row. ",
             (x0, y0, x1 - 1, y1 - 1): "x1 and y1 are one past the last pixel. ",
             localize.mask_box(largest_region(values >= fraction)):
             f"that threshold takes in the background: {fraction:.0%} of the raw map's maximum, "
             "without normalising the map first. "}
    slips.pop(expected, None)
    ok = box is not None and tuple(int(v) for v in box) == expected
    slip = slips.get(tuple(int(v) for v in box), "") if box is not None else ""
    return verdict(ok, "Right: that is the paper's box.",
                   f"Not yet: {slip}Threshold the raw map at {fraction:.0%} of its maximum, keep "
                   "the largest 8-connected region (scipy.ndimage.label with "
                   "structure=np.ones((3, 3))) and take its extent.",
                   answered=box is not None)


# --- 06 CNN-Fixations --------------------------------------------------------------------
def check_positive_contributors(model, x, target, answer):
    """How many inputs of the classifier contribute positively to ``target``?"""
    layer = model.spec.layer("classifier")
    gm, values = record_forward(model, x)
    fc = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer)
    a = values[fc.all_input_nodes[0]][0]
    weight = model.get_submodule(layer).weight[target]
    right = int(((a * weight) > 0).sum())
    slips = {int((weight > 0).sum()): "that counts the positive weights; an input that did not fire "
                                      "contributes nothing, whatever its weight. ",
             int((a > 0).sum()): "that counts the inputs that fire; a negative weight turns their "
                                 "contribution against the class. ",
             int((a * weight >= 0).sum()): "a zero contribution does not push the class up. "}
    slips.pop(right, None)
    return verdict(answer == right, f"Right: {right} inputs of {layer} push class {target} up; "
                   "the first rule keeps all of them.",
                   f"Not yet: {answer}: {slips.get(answer, '')}Hint: multiply the classifier's input "
                   "vector a by the class's weight row W[target] element by element and count the "
                   "positive products.",
                   answered=answer is not None)


# --- 07 and 08 Gram matrices -------------------------------------------------------------
def check_gram_entries(channels, answer):
    """How many *different* numbers does the Gram matrix of N channels hold?"""
    right = channels * (channels + 1) // 2
    return verdict(answer == right, f"Right: G is symmetric, so N(N+1)/2 = {right} numbers for "
                   f"N = {channels}.",
                   "Not quite: G is N×N but symmetric (G_ij = G_ji). Count the diagonal and one "
                   "triangle.", answered=answer is not None)


def check_gram_by_hand(answer):
    """The 2×2 Gram matrix of ``EXERCISE_FEATURES`` (2 channels, 2×2 positions)."""
    expected = gram_matrix(EXERCISE_FEATURES)[0]
    if answer is not None and not same_numbers(answer, expected) and same_numbers(answer, 4 * expected):
        return verdict(False, "", "Not quite: that is Σ_k F_ik F_jk (the paper's G); this "
                       "collection divides it by M = 4 positions.")
    return verdict(same_numbers(answer, expected), "Right!",
                   "Not quite: G_ij = (1/M) Σ_k F_ik F_jk with M = 4 positions; flatten each "
                   "channel to a row first.", answered=answer is not None)


# --- implement the core ------------------------------------------------------------------
def check_function(student, reference, inputs, hint, tolerance=1e-4):
    """Right if ``student(*inputs)`` equals ``reference(*inputs)`` within a relative error of
    ``tolerance`` (of the reference's largest value); prints the error it measured."""
    try:
        answer = student(*inputs)
    except NotImplementedError:
        answer = None
    except Exception as err:        # the student's code: any error is a hint, not a crash
        return verdict(False, "", f"Not yet: your function raised {type(err).__name__}: {err}. {hint}")
    if answer is None:
        return verdict(False, "", "", answered=False)
    expected = torch.as_tensor(reference(*inputs), dtype=torch.float32).cpu()
    answer = torch.as_tensor(answer, dtype=torch.float32).detach().cpu()
    if answer.shape != expected.shape:
        return verdict(False, "", f"Not yet: your result has shape {tuple(answer.shape)}, the "
                       f"reference {tuple(expected.shape)}. {hint}")
    error = float((answer - expected).abs().max() / (expected.abs().max() + 1e-12))
    return verdict(error <= tolerance, f"Right: relative error {error:.1e} against utils.",
                   f"Not yet: relative error {error:.2g}. {hint}")


def _random(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def check_filter_response(student):
    """01: one filter's response map ⟨w, patch⟩ at every position of a padded image, with a
    stride (a flipped filter, a forgotten stride or a sum over one colour only is refused)."""
    return check_function(student, features.filter_response,
                          (_random(3, 9, 9), _random(3, 3, 3, seed=1), 2),
                          "Output (i, j) is the sum of w × x[:, i·stride : i·stride + k, "
                          "j·stride : j·stride + k] over colours and the k×k window; the "
                          "output has (H − k) // stride + 1 rows; do not flip the filter.")


def check_box_iou(student):
    """02: intersection over union of two (x0, y0, x1, y1) boxes."""
    pairs = [((0, 0, 10, 10), (5, 5, 15, 20)), ((0, 0, 4, 4), (1, 1, 3, 3)), ((0, 0, 2, 2), (5, 5, 6, 6))]
    return check_function(lambda: [student(a, b) for a, b in pairs],
                          lambda: [localize.box_iou(a, b) for a, b in pairs], (),
                          "Intersection: overlap width × height (0 if negative); union: the two "
                          "areas minus the intersection.")


def check_occluded_copies(student):
    """03: one copy of the image per position, with a size×size square set to the fill."""
    inputs = (_random(3, 8, 8), [0, 4, 5], [2, 0, 5], 3)
    # the student's function gets its own copy of the image: one that zeroes the image in
    # place (every copy then shows every square) cannot also change the reference's input
    return check_function(lambda image, *rest: student(image.clone(), *rest), occlusion.occluded_copies, inputs,
                          "Repeat the image once per (top, left); in copy k set "
                          "[:, top:top + size, left:left + size] to 0.")


def check_saliency(student, model, x, target):
    """04: Simonyan's saliency map, max_c |∂S_c/∂x|, for one image."""
    return check_function(student, attribution.saliency, (model, x, target),
                          "The logit (not the softmax), its gradient with respect to x, then "
                          "|·| and the max over the 3 colour channels; model in eval mode.")


RULE_INPUT = [1.0, -2.0, 4.0, 0.5]      # what a ReLU saw on the forward pass
RULE_SIGNAL = [-1.0, 2.0, 3.0, 0.5]    # the signal that comes back from above


def check_relu_rules(guided, deconv):
    """04: guided backprop's and the deconvnet's ReLU backward rules, applied by hand to
    ``RULE_INPUT`` and ``RULE_SIGNAL`` (the reference is ``attribution.relu_rule``). Catches the
    plain gradient (mask only), the rules swapped, and a deconvnet that keeps the forward mask."""
    answered = guided is not None and deconv is not None
    if not answered:
        return verdict(False, "", "", answered=False)
    f, r = torch.tensor(RULE_INPUT), torch.tensor(RULE_SIGNAL)
    right = {name: attribution.relu_rule(r, (f > 0).float(), name)
             for name in ("guided", "deconvnet")}
    ok_guided = same_numbers(guided, right["guided"])
    ok_deconv = same_numbers(deconv, right["deconvnet"])
    verdict(ok_guided, "guided: right",
            "guided: not yet. Where did the forward pass see a positive input, and where is the "
            "signal from above positive? Both must hold.")
    verdict(ok_deconv, "deconvnet: right",
            "deconvnet: not yet. Which of the two masks does the deconvnet keep?")
    return Verdict(ok_guided and ok_deconv)


IG_CHECK_STEPS = 8      # the coarse Riemann sum of the exercise


def completeness_error(model, x, target, baseline, steps):
    """Integrated Gradients' relative completeness error |Σ IG − (S_c(x) − S_c(x'))| / |S_c(x) − S_c(x')|."""
    ig = attribution.integrated_gradients(model, x, target, baseline=baseline, steps=steps,
                                          progress=False)
    total, gap = attribution.completeness(model, x, target, ig, baseline=baseline)
    return abs(total.item() - gap.item()) / abs(gap.item())


def check_ig_steps(model, x, target, baseline, error_8, passing, steps, error):
    """04: the completeness error with ``IG_CHECK_STEPS`` steps (``error_8``, a fraction) and
    which step counts pass the 5 % check (``passing``, a list), given the notebook's ``error``
    with ``steps`` steps. Catches a per cent given as a fraction's 100×, the absolute instead of
    the relative error, a zero baseline instead of black, and a guess of which passes."""
    if error_8 is None or passing is None:
        return verdict(False, "", "", answered=False)
    right_8 = completeness_error(model, x, target, baseline, IG_CHECK_STEPS)
    errors = {IG_CHECK_STEPS: right_8, steps: error}
    right_passing = sorted(s for s, e in errors.items() if e < 0.05)
    ok_error = abs(float(error_8) - right_8) <= 0.1 * right_8 + 1e-3
    ok_passing = sorted(int(s) for s in passing) == right_passing
    shown = ", ".join(f"{s} steps: {e:.1%}" for s, e in errors.items())
    verdict(ok_error, f"error with {IG_CHECK_STEPS} steps: right ({right_8:.1%})",
            f"error with {IG_CHECK_STEPS} steps: not yet. |Σ IG − gap| / |gap|, as a fraction "
            "(0.12 for 12 %), with the black baseline.")
    verdict(ok_passing, f"right: {right_passing or 'none'} pass the 5 % check ({shown})",
            "which pass: not yet. Compare each step count's error with 0.05.")
    return Verdict(ok_error and ok_passing)


def check_grad_cam_map(student):
    """05: Grad-CAM from a layer's activations and gradients (N×K×h×w each)."""
    return check_function(student, cam.grad_cam_map, (_random(2, 4, 5, 5), _random(2, 4, 5, 5, seed=1)),
                          "α = gradients averaged over (h, w); Σ_k α_k A^k; then ReLU.")


def conv_rule_cases():
    """06: the inputs of ``check_conv_rule``: (a, w, y, x) with a C×H×W input after a ReLU and
    one output channel's 3×3 filter. Inner points, points on the border (the window reaches
    into the padding), a dead window (no input fires), a window where every real position
    of the best channel contributes negatively (only the padding is 0), and a window where
    the best channel's activation has two equal maxima: the one nearer the centre wins, not
    the first (top-left) one that ``np.argmax`` takes."""
    a, w = _random(4, 6, 6).clamp(min=0), _random(4, 3, 3, seed=1)
    cases = [(a, w, y, x) for y, x in [(2, 3), (3, 1), (4, 4), (1, 2), (0, 0), (5, 3), (2, 5)]]
    dead = a.clone()
    dead[:, 3:6, 3:6] = 0                                    # nothing fires around (4, 4)
    cases.append((dead, w, 4, 4))
    cases.append((_random(4, 6, 6, seed=2).abs() + 0.1, -w.abs(), 0, 5))   # every product < 0
    tied = torch.zeros(4, 6, 6)
    tied[0, 1, 1] = tied[0, 2, 3] = 5.0                      # around (2, 2): corner and side tie
    cases.append((tied, w.abs(), 2, 2))                      # channel 0 is the only one firing
    return cases


def check_conv_rule(student):
    """06: one point (y, x) through a 3×3 conv (stride 1, zero padding 1), both of the
    authors' placements.

    ``student(a, w, y, x, position)`` -> (c, y_in, x_in), compared with ``fixations.conv_rule``
    on ``conv_rule_cases()`` for position "centre" (the plain-network demo) and "activation"
    (the residual demo). The hint names the first thing that differs: the channel, the centre
    placement or the activation placement.
    """
    def answer(*args):
        c, y, x = student(*args)
        return int(c), int(y), int(x)

    placements = ("centre", "activation")
    mistakes = []
    try:
        for a, w, y, x in conv_rule_cases():
            for position in placements:
                [right] = conv_rule({(0, y, x)}, a, w[None], (1, 1), (1, 1), 1, position)
                got = answer(a, w, y, x, position)
                if got != right:
                    mistakes.append((position, got[0] != right[0]))
    except NotImplementedError:
        return verdict(False, "", "", answered=False)
    except Exception as err:        # the student's code: any error is a hint, not a crash
        return verdict(False, "", f"Not yet: your function raised {type(err).__name__}: {err}. "
                       "Return a tuple (c, y_in, x_in) of ints.")
    if any(channel for _, channel in mistakes):
        hint = ("the channel. For each input channel c, sum a_c · w_c over the 3×3 window "
                "(zero outside the map) and keep the c with the largest sum.")
    elif any(position == "centre" for position, _ in mistakes):
        hint = "the centre placement: the point keeps its place, (y, x) (stride 1, padding 1)."
    else:
        hint = ("the activation placement: the window position (i, j) where the chosen "
                "channel's activation a_c* is largest (the weights do not count) goes to "
                "(y − 1 + i, x − 1 + j) on the input; padding is not a position, and where "
                "several positions share the maximum the one nearest the centre wins (so where "
                "the channel is zero all over the window the point stays at (y, x)).")
    return verdict(not mistakes, f"Right: both placements agree with utils on all "
                   f"{len(conv_rule_cases())} points.",
                   f"Not yet: {len(mistakes)} of {len(placements) * len(conv_rule_cases())} "
                   f"answers differ; look at {hint}")


def check_gram_matrix(student):
    """07: Gram matrices G = F Fᵀ / (H·W) of an N×C×H×W batch."""
    return check_function(student, style.gram_matrix, (_random(2, 4, 5, 6),),
                          "Flatten each channel to a row (N×C×HW), multiply by its transpose, "
                          "divide by H·W.")


def check_content_loss(student):
    """08: L_content = ½ Σ (F − P)²."""
    return check_function(student, style.content_loss, (_random(1, 4, 5, 5), _random(1, 4, 5, 5, seed=1)),
                          "Half the sum of the squared differences, over every entry.")


def check_dream_step(student):
    """09: DeepDream's normalised step, x − lr · g / mean|g| per image. The two images'
    gradients differ in scale by 100, so one mean over the whole batch is caught."""
    grad = _random(2, 3, 8, 8, seed=1) * torch.tensor([1.0, 100.0]).view(2, 1, 1, 1)
    return check_function(student, deepdream.normalized_step, (_random(2, 3, 8, 8), grad, 0.01),
                          "Descend (x − …), and divide each image's gradient by its own mean "
                          "absolute value (not the batch's, not the norm, not the max).")


TV_BETAS = (1.0, 2.0, 3.0)   # the check runs every β: code that ignores β, or takes (…)^β, fails


def check_tv_beta(student):
    """10: the TV^β regulariser of Mahendran & Vedaldi, per image, for β = 1, 2 and 3: ignoring
    β, forgetting the square root (^β instead of ^(β/2)), |∂x|^β + |∂y|^β, dropping the border
    instead of repeating it, adding the colour channels before the power, or averaging instead
    of summing all give another number for some β."""
    u = _random(2, 3, 6, 6)
    return check_function(lambda u: torch.stack([torch.as_tensor(student(u, beta)) for beta in TV_BETAS]),
                          lambda u: torch.stack([inversion.tv_beta(u, beta) for beta in TV_BETAS]), (u,),
                          "Per pixel and channel: dx to the right and dy downwards neighbour (the last "
                          "column/row repeated, so 0 there), then (dx² + dy²)^(β/2), summed over "
                          "channels and pixels of each image. Try β = 1 and 2.")


def check_auc(student):
    """11: the area under a deletion or insertion curve sampled at equal steps on [0, 1]."""
    curves = [[0.9, 0.5, 0.2, 0.1, 0.0], [0.2, 0.4, 0.8]]
    return check_function(lambda: [student(c) for c in curves],
                          lambda: [evaluation.auc(c) for c in curves], (),
                          "Trapezoid rule: (sum − first/2 − last/2) / (number of points − 1).")


def check_lowest_deletion(answer, areas, tie=1e-3):
    """11: a method whose deletion area in ``areas`` {method: area} is the lowest; methods
    within ``tie`` of the lowest (e.g. CAM and Grad-CAM, often equal) count as tied for it."""
    best = min(areas, key=areas.get)
    tied = [m for m in areas if areas[m] - areas[best] <= tie]
    known = answer in areas if answer is not None else True
    right = answer in tied
    others = f" (tied within {tie:g}: {', '.join(tied)})" if len(tied) > 1 else ""
    return verdict(right, f"Right: {answer}'s deletion area, {areas.get(answer, float('nan')):.3f}, is the lowest{others}.",
                   f"Not yet: {answer!r} is " + ("not the lowest. Hint: E.deletion_insertion returns "
                   "(curve, area): compare the areas of every method's map; lower is better." if known else
                   f"not one of the methods: {', '.join(areas)}."), answered=answer is not None)


# --- 09 and 10: the short questions -----------------------------------------------------
def check_step_units(answer):
    """09: η = 1.5 on 0–255 pixels, in the units of x = (rgb − μ)/σ for σ = 0.229 (4 decimals)."""
    exact = 1.5 / 255 / 0.229
    right = round(exact, 4)
    rounds_right = answer is not None and round(float(answer), 4) == right    # 0.02569 or 0.0257
    cut = answer is not None and round(float(answer), 4) == round(exact - 0.00005, 4)   # 0.0256
    return verdict(rounds_right, f"Right: {exact:.5f}, which rounds to {right}.",
                   f"Almost: {exact:.5f} rounds to {right} (to the nearest, not down)." if cut else
                   "Not quite: first 0–255 to [0, 1] (divide by 255), then to x (divide by σ).",
                   answered=answer is not None)


def check_first_octave(answer, side=300, octaves=4, scale=1.4):
    """09: the side of the smallest octave of a side×side image (``deepdream.octave_sizes``)."""
    right = deepdream.octave_sizes(side, side, octaves, scale)[0][0]
    return verdict(answer == right, f"Right: {side}/{scale}^{octaves - 1} ≈ {right}.",
                   f"Not quite: the last octave is the image itself, so the first is {scale} "
                   f"times smaller {octaves - 1} times; round to the nearest pixel.",
                   answered=answer is not None)


def check_sigma(answer, shape=(3, 96, 96)):
    """10: σ_x of ``inversion.typical_norm`` for a C×H×W image, to three significant figures:
    anything within 0.5 % is right (rounding 255 × 0.226 = 57.63 to 57.6 gives 9578, the exact
    value is 9583). Hints for the plausible slips: H·W instead of C·H·W, no square root, 0–1
    units instead of 0–255."""
    c, h, w = shape
    right = inversion.typical_norm(shape)
    std = inversion.PIXEL_STD_255
    if answer is None or not isinstance(answer, (int, float)):
        return verdict(False, "", "Not quite: give one number, σ_x = √(C·H·W) × 255 × 0.226.",
                       answered=answer is not None)
    slips = {(h * w) ** 0.5 * std: "that is √(H·W) × 57.63: count the three channels too.",
             c * h * w * std: "that is C·H·W × 57.63: σ_x uses the square root of the count.",
             (c * h * w) ** 0.5 * 0.226: "that is in 0–1 units: σ_x is in 0–255 units (× 255)."}
    hint = next((text for value, text in slips.items() if abs(answer - value) <= 0.005 * value),
                "Not quite: √(number of values) × 255 × 0.226.")
    return verdict(abs(answer - right) <= 0.005 * right, f"Right: σ_x ≈ {right:.0f}.",
                   hint if hint.startswith("Not") else "Not quite: " + hint)


def spike_costs(height=100.0, betas=(1.0, 2.0)):
    """What one spike of ``height`` (one pixel of one channel, inside a flat image) adds to
    TV^β, for each β: computed with ``inversion.tv_beta`` on a 1×1×5×5 image."""
    u = torch.zeros(1, 1, 5, 5)
    u[..., 2, 2] = height
    return [float(inversion.tv_beta(u, beta)) for beta in betas]


def check_spike_cost(answer):
    """10: the TV^β cost of a spike of height 100, as (for β = 1, for β = 2), within 1 %."""
    right = spike_costs()
    if answer is not None and (not isinstance(answer, (tuple, list)) or len(answer) != 2):
        return verdict(False, "", "Not quite: give two numbers, as a pair: (for β = 1, for β = 2).")
    ok = answer is not None and all(abs(a - r) <= 0.01 * r for a, r in zip(answer, right))
    return verdict(ok, f"Right: {right[0]:.0f} and {right[1]:.0f}: TV¹ grows with the height, TV² "
                   "with its square, so β = 1 lets tall spikes through cheaply.",
                   "Not quite: three pixels get a jump: the spike itself (to its right and below: "
                   "√(h² + h²) for β = 1), its left neighbour and its upper neighbour (h each).",
                   answered=answer is not None)


# --- 12 feature visualisation ------------------------------------------------------------
def check_fourier_image(student):
    """12: Olah et al.'s 1/f Fourier parametrisation, F⁻¹[s(f)·z] with s(f) = 1/max(|f|, 1/max(H, W)),
    on an odd width and a non-square image: a scale of |f| instead of 1/|f|, a forgotten
    bound at f = 0, fftfreq for the columns or the default (not orthonormal) inverse all differ."""
    from .featurevis import spectrum_to_image
    return check_function(student, spectrum_to_image, (_random(2, 3, 12, 9, 2), 12, 17),
                          "Scale each coefficient by 1/max(|f|, 1/max(H, W)) with |f| = hypot(fftfreq(H)[:, None], "
                          "rfftfreq(W)[None, :]), make it complex (torch.view_as_complex), then "
                          "torch.fft.irfft2(..., s=(H, W), norm='ortho').")
