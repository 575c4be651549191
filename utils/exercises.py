"""The notebooks' "try it yourself" checks, one convention for all of them.

Every ``check_...`` takes the student's answer, prints one verdict line (right, or a hint
that says how to get there) and returns True or False. An answer still ``None`` (the
exercise not tried yet) is simply not right.
"""
import torch

from .features import strongest_channels
from .fixations import record_forward
from .hooks import resolve_layer
from .localize import bounding_box
from .style import gram_matrix

EXERCISE_FEATURES = torch.tensor([[[[1., 0.], [2., 1.]], [[0., 1.], [1., 3.]]]])


def verdict(ok, right, hint):
    """Print ``right`` if ``ok`` else ``hint``; return ``ok`` as a bool."""
    ok = bool(ok)
    print(right if ok else hint)
    return ok


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
                   f"{type(conv).__name__}.weight.shape.")


def check_strongest_channel(activations, layer, answer):
    """Which channel of ``layer`` has the largest mean activation on the image?"""
    right = strongest_channels(activations[layer], 1)[0]
    return verdict(answer == right, f"Right: channel {right} of {layer} responds most strongly "
                   "on average.",
                   f"Not yet: channel {answer} is not the strongest. Hint: average each channel's "
                   "map over height and width (activation[0].mean(dim=(1, 2))) and take the argmax.")


# --- 05 CAM and Grad-CAM -----------------------------------------------------------------
def check_alpha(alpha, gradients):
    """α_k = mean of channel k's gradient over all positions."""
    expected = torch.as_tensor(gradients, dtype=torch.float32).mean(dim=(-2, -1))
    return verdict(same_numbers(alpha, expected), "Right: α is the spatial mean of the gradients.",
                   "Not yet: α_k^c = (1/Z) Σ_ij ∂y^c/∂A^k_ij, one number per channel "
                   "(average over the two spatial dimensions).")


def check_box(box, heatmap, fraction):
    """The box of the largest region above fraction · max of the raw map."""
    expected = bounding_box(heatmap, fraction)
    ok = box is not None and tuple(int(v) for v in box) == expected
    return verdict(ok, "Right: that is the paper's box.",
                   f"Not yet: threshold the raw map at {fraction:.0%} of its maximum, keep the "
                   "largest connected component (scipy.ndimage.label) and take its extent.")


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
                   "class's weight row W[target] element by element and count the positive products.")


# --- 07 and 08 Gram matrices -------------------------------------------------------------
def check_gram_entries(channels, answer):
    """How many *different* numbers does the Gram matrix of N channels hold?"""
    right = channels * (channels + 1) // 2
    return verdict(answer == right, f"Right: G is symmetric, so N(N+1)/2 = {right} numbers for "
                   f"N = {channels}.",
                   "Not quite: G is N×N but symmetric (G_ij = G_ji). Count the diagonal and one "
                   "triangle.")


def check_gram_by_hand(answer):
    """The 2×2 Gram matrix of ``EXERCISE_FEATURES`` (2 channels, 2×2 positions)."""
    return verdict(same_numbers(answer, gram_matrix(EXERCISE_FEATURES)[0]), "Right!",
                   "Not quite: G_ij = (1/M) Σ_k F_ik F_jk with M = 4 positions; flatten each "
                   "channel to a row first.")
