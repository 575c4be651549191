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

import torch

from . import attribution, cam, deepdream, evaluation, features, inversion, localize, occlusion, style
from .features import strongest_channels
from .fixations import fc_rule, record_forward
from .hooks import resolve_layer
from .localize import bounding_box
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
    expected = torch.as_tensor(expected, dtype=torch.float32).cpu()
    answer = torch.as_tensor(answer, dtype=torch.float32).cpu()
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


# --- 05 CAM and Grad-CAM -----------------------------------------------------------------
def check_alpha(alpha, gradients):
    """α_k = mean of channel k's gradient over all positions."""
    expected = torch.as_tensor(gradients, dtype=torch.float32).mean(dim=(-2, -1))
    return verdict(same_numbers(alpha, expected), "Right: α is the spatial mean of the gradients.",
                   "Not yet: α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij, one number per channel "
                   "(average over the two spatial dimensions).", answered=alpha is not None)


def check_box(box, heatmap, fraction):
    """The box of the largest region above fraction · max of the raw map."""
    expected = bounding_box(heatmap, fraction)
    ok = box is not None and tuple(int(v) for v in box) == expected
    return verdict(ok, "Right: that is the paper's box.",
                   f"Not yet: threshold the raw map at {fraction:.0%} of its maximum, keep the "
                   "largest connected component (scipy.ndimage.label) and take its extent.",
                   answered=box is not None)


# --- 06 CNN-Fixations --------------------------------------------------------------------
def check_positive_contributors(model, x, target, answer):
    """How many inputs of the classifier contribute positively to ``target``?"""
    layer = model.spec.layer("classifier")
    gm, values = record_forward(model, x)
    fc = next(n for n in gm.graph.nodes if n.op == "call_module" and n.target == layer)
    a = values[fc.all_input_nodes[0]][0]
    right = int(((a * model.get_submodule(layer).weight[target]) > 0).sum())
    return verdict(answer == right, f"Right: {right} inputs of {layer} push class {target} up; "
                   "the first rule keeps all of them.",
                   f"Not yet: {answer}. Hint: multiply the classifier's input vector a by the "
                   "class's weight row W[target] element by element and count the positive products.",
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
    return verdict(same_numbers(answer, gram_matrix(EXERCISE_FEATURES)[0]), "Right!",
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


def check_rescale_filter(student):
    """01: one filter rescaled to [0, 1] for display."""
    return check_function(student, features.rescale_filter, (_random(3, 5, 5),),
                          "Subtract the filter's minimum, divide by (max − min).")


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
    return check_function(student, occlusion.occluded_copies, inputs,
                          "Repeat the image once per (top, left); in copy k set "
                          "[:, top:top + size, left:left + size] to 0.")


def check_saliency(student, model, x, target):
    """04: Simonyan's saliency map, max_c |∂S_c/∂x|, for one image."""
    return check_function(student, attribution.saliency, (model, x, target),
                          "The logit (not the softmax), its gradient with respect to x, then "
                          "|·| and the max over the 3 colour channels; model in eval mode.")


def check_grad_cam_map(student):
    """05: Grad-CAM from a layer's activations and gradients (N×K×h×w each)."""
    return check_function(student, cam.grad_cam_map, (_random(2, 4, 5, 5), _random(2, 4, 5, 5, seed=1)),
                          "α = gradients averaged over (h, w); Σ_k α_k A^k; then ReLU.")


def check_fc_rule(student):
    """06: the inputs of a fully connected unit that push it up: indices j with a_j · w_j > 0."""
    a, w = _random(16).clamp(min=0), _random(16, seed=1)

    def reference(a, w):
        return sorted(j for (j,) in fc_rule({(0,)}, a, w[None], spatial_input=False))
    return check_function(lambda a, w: sorted(int(j) for j in student(a, w)), reference, (a, w),
                          "Multiply a and w element by element and keep the indices of the "
                          "positive products.")


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
    """09: DeepDream's normalised step, x − lr · g / mean|g| per image."""
    return check_function(student, deepdream.normalized_step,
                          (_random(2, 3, 8, 8), _random(2, 3, 8, 8, seed=1), 0.01),
                          "Divide each image's gradient by its own mean absolute value.")


def check_tv_beta(student):
    """10: the TV^β regulariser of Mahendran & Vedaldi, per image (β = 2)."""
    return check_function(student, inversion.tv_beta, (_random(2, 3, 6, 6), 2),
                          "Differences to the right and downwards neighbours (repeat the last "
                          "column/row), squared and added, to the power β/2, summed per image.")


def check_auc(student):
    """11: the area under a deletion or insertion curve sampled at equal steps on [0, 1]."""
    curves = [[0.9, 0.5, 0.2, 0.1, 0.0], [0.2, 0.4, 0.8]]
    return check_function(lambda: [student(c) for c in curves],
                          lambda: [evaluation.auc(c) for c in curves], (),
                          "Trapezoid rule: (sum − first/2 − last/2) / (number of points − 1).")
