"""Gradient attribution: which input pixels does a class score depend on?

All methods here differentiate the *unnormalised* class score S_c (the logit, before the
softmax) with respect to the input image, and differ only in what happens at the ReLUs on
the way back and in where the gradient is taken:

================== ============================================================ ===========
``saliency``       M_ij = max_c |dS_c/dI_(i,j,c)|                                Simonyan 2014
``guided_backprop``  at each ReLU keep only 1[x > 0] · 1[R > 0] · R              Springenberg 2015
``deconvnet``      at each ReLU keep only 1[R > 0] · R (forward mask ignored)     Zeiler & Fergus 2014
``smoothgrad``     mean of dS_c/dI over noisy copies x + N(0, σ²)                 Smilkov 2017
``integrated_gradients``  (x - x') · mean_k dS_c/dI at x' + α_k (x - x')          Sundararajan 2017
================== ============================================================ ===========

``backward_rule(model, rule)`` is the one place where ReLU backward passes are changed; it is
a ``with`` block whose hooks are removed on exit, also after an error. It handles ``nn.ReLU``
and ``nn.ReLU6`` modules (the bundled EfficientNet-Lite0 uses ReLU6, whose forward mask is
1[0 < x < 6]). ReLUs applied as functions (``F.relu`` inside ``forward``) are invisible to
module hooks. torchvision's GoogLeNet and Inception-v3 do that at the end of every
``BasicConv2d``; there the hook goes on the block's output, which is the ReLU's output, and the
guided rule works (the deconvnet rule cannot: it must drop the forward mask that the
functional ReLU always applies). Any other model without ReLU modules gets a clear error,
and ``count_functional_relus`` tells whether a model hides some.

Every function takes a batch ``x`` (N×3×H×W, already normalised) and a ``target`` class: one
int for every image, or one per image. Results equal those of the images taken one by one.
"""
from contextlib import contextmanager

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.overrides import TorchFunctionMode

from .env import progress_bar
from .hooks import enable_input_grad, forward_hooks, model_guard
from .images import image_batch
from .localize import largest_region, mask_box
from .targets import check_target, choose_target, predicted_target

RULES = ("gradient", "guided", "deconvnet")
RELU_TYPES = (nn.ReLU, nn.ReLU6)
RELU_ENDING_BLOCKS = ("BasicConv2d",)   # torchvision GoogLeNet/Inception: conv, BN, F.relu


# ----------------------------------------------------------------------------- scores
def class_scores(model, x, target=None):
    """S_c(x) for each image: the unnormalised score (logit) of its target class, shape (N,).

    ``target`` is checked before the forward pass (see ``utils.targets``); None = top-1.
    The pass runs in eval mode (``model_guard``), whatever mode the model is in.
    """
    targets = check_target(model, target, x.shape[0])
    with model_guard(model):
        logits = model(x)
    return logits.gather(1, choose_target(targets, logits)[:, None])[:, 0]


# ----------------------------------------------------------------------------- ReLU rules
def relu_modules(model):
    """The model's ReLU and ReLU6 modules (the places where backward rules apply)."""
    return [m for m in model.modules() if isinstance(m, RELU_TYPES)]


def relu_ending_blocks(model):
    """Blocks whose output is a *functional* ReLU's output (GoogLeNet's ``BasicConv2d``)."""
    return [m for m in model.modules() if type(m).__name__ in RELU_ENDING_BLOCKS]


def forward_mask(module, x):
    """Where the activation passes the gradient: 1[x > 0] for ReLU, 1[0 < x < 6] for ReLU6."""
    if isinstance(module, nn.ReLU6):
        return (x > 0) & (x < 6)
    return x > 0


def relu_rule(signal, mask, rule):
    """A ReLU's backward pass by ``rule``: ``signal`` is R_(l+1), ``mask`` is 1[f_l > 0]."""
    if rule == "gradient":            # plain backprop: the forward mask only
        return signal * mask
    if rule == "guided":              # forward mask AND positive backward signal
        return signal.clamp(min=0) * mask
    return signal.clamp(min=0)        # deconvnet: rectify the backward signal only


class _RuleReLU(torch.autograd.Function):
    """Forward: the module's own output. Backward: the chosen rule instead of ReLU's."""

    @staticmethod
    def forward(ctx, inputs, output, mask, rule):
        ctx.save_for_backward(mask)
        ctx.rule = rule
        return output.clone()

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return relu_rule(grad, mask, ctx.rule), None, None, None


@contextmanager
def backward_rule(model, rule="guided"):
    """``with`` block in which every ReLU/ReLU6 module of ``model`` backpropagates by ``rule``.

    * ``"gradient"``:  R_l = 1[f_l > 0] · R_(l+1)                 (ordinary backprop)
    * ``"guided"``:    R_l = 1[f_l > 0] · 1[R_(l+1) > 0] · R_(l+1)  (guided backpropagation)
    * ``"deconvnet"``: R_l = 1[R_(l+1) > 0] · R_(l+1)               (Zeiler & Fergus' deconvnet)

    f_l is the ReLU's input, R the signal coming back. Implemented with forward hooks that
    route the ReLU output through ``_RuleReLU``, so it works for a module called several
    times per pass (ResNet's shared ``relu``). On a ``BasicConv2d`` the hook sits on the
    block's output y = relu(f): autograd's own ReLU backward supplies 1[f > 0] (= 1[y > 0]),
    the hook adds 1[R > 0]. The model is put in eval mode with out-of-place ReLUs inside the
    block and left exactly as found afterwards.
    """
    if rule not in RULES:
        raise ValueError(f"Unknown rule {rule!r}; choose one of {RULES}.")
    modules, blocks = relu_modules(model), relu_ending_blocks(model)
    if blocks and rule == "deconvnet":
        raise ValueError(
            f"{type(model).__name__} applies its ReLUs as functions (F.relu inside "
            "BasicConv2d). The guided rule works there, but the deconvnet rule must drop the "
            "forward mask 1[f > 0], which a functional ReLU always applies. Use a model whose "
            "activations are modules (AlexNet, VGG, ResNet, the bundled efficientnet_lite0).")
    if not modules and not blocks:
        raise ValueError(
            f"{type(model).__name__} has no nn.ReLU / nn.ReLU6 module, so backward rules cannot "
            "be attached. It probably applies ReLU as a function (F.relu inside forward), "
            "which module hooks do not see. Use a model whose activations are modules "
            "(AlexNet, VGG, ResNet, GoogLeNet, the bundled efficientnet_lite0), or replace "
            "those F.relu calls with nn.ReLU modules.")

    def relu_hook(module, inputs, output):
        x = inputs[0]
        return _RuleReLU.apply(x, output, forward_mask(module, x.detach()), rule)

    def block_hook(module, inputs, output):          # output = relu(f): mask 1[output > 0]
        return _RuleReLU.apply(output, output, output.detach() > 0, rule)

    with model_guard(model, freeze=True), forward_hooks(modules, relu_hook), \
            forward_hooks(blocks, block_hook):
        yield model


class _ReluCounter(TorchFunctionMode):
    """Counts calls of relu-like functions while active."""

    NAMES = {"relu", "relu_", "relu6", "hardtanh", "hardtanh_"}

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.NAMES:
            self.calls += 1
        return func(*args, **(kwargs or {}))


@torch.no_grad()
def count_functional_relus(model, x):
    """How many ReLU applications in one forward pass are *not* done by a ReLU module.

    Module hooks (and so guided backprop and the deconvnet rule) miss these. 0 means every
    ReLU is a module; torchvision's GoogLeNet gives 57 (one per BasicConv2d).
    """
    x = image_batch(x, model)
    module_calls = []
    with model_guard(model), forward_hooks(relu_modules(model), lambda *_: module_calls.append(1)), \
            _ReluCounter() as counter:
        model(x)
    # an nn.ReLU module's forward itself calls F.relu once
    return counter.calls - len(module_calls)


# ----------------------------------------------------------------------------- gradients
def input_gradient(model, x, target=None, rule="gradient"):
    """dS_c/dx for each image (N×3×H×W), with the ReLU backward ``rule`` ("gradient",
    "guided", "deconvnet"). S_c is the logit: the softmax would mix in every other class.

    Summing the scores of the batch gives each image its own gradient, since image i's score
    does not depend on image j (the model is in eval mode: BatchNorm uses running stats).
    """
    x = image_batch(x, model)
    targets = check_target(model, target, x.shape[0])
    with backward_rule(model, rule) if rule != "gradient" else model_guard(model, freeze=True):
        x = enable_input_grad(x)
        with torch.enable_grad():
            class_scores(model, x, targets).sum().backward()
    return x.grad.detach()


def pixel_map(attribution):
    """The one reduction of an input attribution (N×3×H×W) to a map per image (N×H×W):
    max over the colour channels of |·|, as Simonyan et al. define the saliency map."""
    return attribution.abs().amax(dim=1)


def saliency(model, x, target=None):
    """Simonyan et al.'s image-specific class saliency: M_ij = max_c |∂S_c/∂I_(i,j,c)|, (N×H×W):
    ``input_gradient`` reduced by ``pixel_map``."""
    return pixel_map(input_gradient(model, x, target))


def class_saliencies(model, x, target):
    """``saliency`` of one image (1×3×H×W) for each class of ``target``, a list of K classes
    (indices or labels), as K×H×W: one forward pass and one backward pass batched over the
    K classes (the seeds of ``torch.autograd.grad(..., is_grads_batched=True)``), for an
    explorer that offers a photo's top classes. Same numbers as ``saliency(model, x, c)``
    class by class."""
    x = image_batch(x, model)
    if x.shape[0] != 1:
        raise ValueError(f"class_saliencies takes one image, got a batch of {x.shape[0]}.")
    classes = list(target)
    if not classes:
        raise ValueError("class_saliencies needs at least one class.")
    checked = check_target(model, classes, len(classes))       # labels or indices
    with model_guard(model, freeze=True), torch.enable_grad():
        x = enable_input_grad(x)
        logits = model(x)
        targets = choose_target(checked, logits)
        seeds = torch.zeros((len(targets),) + tuple(logits.shape), dtype=logits.dtype,
                            device=logits.device)
        seeds[torch.arange(len(targets)), 0, targets] = 1.0
        grads, = torch.autograd.grad(logits, x, seeds, is_grads_batched=True)
    return pixel_map(grads[:, 0])


def guided_backprop(model, x, target=None):
    """Guided backpropagation (Springenberg et al. 2015): dS_c/dx with the guided ReLU rule."""
    return input_gradient(model, x, target, rule="guided")


def smoothgrad(model, x, target=None, samples=50, noise=0.15, batch_size=16, rule="gradient",
               seed=0, progress=True):
    """SmoothGrad (Smilkov et al. 2017): M̂(x) = (1/n) Σ_k ∂S_c/∂x at x + N(0, σ²).

    σ = ``noise`` × (x.max() - x.min()) of each image: a *fraction of the input range*
    (the paper's 10-20 %), not an absolute standard deviation. The n noisy copies of one image
    go through the network ``batch_size`` at a time; every image draws its noise from a
    generator seeded with ``seed``, so a batch gives the per-image results. Returns the mean gradient (N×3×H×W);
    show it with ``pixel_map`` like a saliency map. An interrupt (■) is re-raised
    (images would have different sample counts), the model left as found.
    """
    x = image_batch(x, model)
    targets = predicted_target(model, x, target)      # None: the clean image's top-1
    out = torch.zeros_like(x)
    steps = [(i, s) for i in range(x.shape[0]) for s in range(0, samples, batch_size)]
    generator = None
    for i, start in progress_bar(steps, progress, "SmoothGrad"):
        if start == 0:
            generator = torch.Generator().manual_seed(seed)
        image = x[i:i + 1]
        sigma = noise * (image.max() - image.min())
        n = min(batch_size, samples - start)
        eps = torch.randn((n,) + tuple(image.shape[1:]), generator=generator).to(x)
        grads = input_gradient(model, image + sigma * eps, int(targets[i]), rule=rule)
        out[i] += grads.sum(0)
    return out / samples


def integrated_gradients(model, x, target=None, baseline=None, steps=64, batch_size=32,
                         progress=True):
    """Integrated Gradients (Sundararajan et al. 2017), midpoint Riemann sum:

        IG_i(x) = (x_i - x'_i) · (1/m) Σ_(k=1..m) ∂S_c/∂x_i at x' + ((k - ½)/m)(x - x')

    ``baseline`` x' defaults to zeros (in normalised space: the mean colour); pass
    ``spec.valid_range()[0]`` for the paper's black image. Completeness: Σ_i IG_i ≈
    S_c(x) - S_c(x'); check it with ``completeness`` and raise ``steps`` if it is off by more
    than a few per cent (the paper: 20-300 steps). The m path points are batched. An
    interrupt (■) is re-raised (part of the path is no integral), the model left as found.
    """
    x = image_batch(x, model)
    targets = predicted_target(model, x, target)
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    alphas = (torch.arange(steps, dtype=x.dtype, device=x.device) + 0.5) / steps
    out = torch.zeros_like(x)
    jobs = [(i, s) for i in range(x.shape[0]) for s in range(0, steps, batch_size)]
    for i, start in progress_bar(jobs, progress, "Integrated Gradients"):
        a = alphas[start:start + batch_size].view(-1, 1, 1, 1)
        path = baseline[i:i + 1] + a * (x[i:i + 1] - baseline[i:i + 1])
        out[i] += input_gradient(model, path, int(targets[i])).sum(0)
    return (x - baseline) * out / steps


@torch.no_grad()
def completeness(model, x, target, attributions, baseline=None):
    """(Σ attributions, S_c(x) - S_c(x')) per image: Integrated Gradients' completeness check."""
    x = image_batch(x, model)
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    with model_guard(model):
        gap = class_scores(model, x, target) - class_scores(model, baseline, target)
    return attributions.flatten(1).sum(1), gap


# ----------------------------------------------------------------------------- display
def to_grayscale(attribution, percentile=99.5):
    """One 3×H×W (or 1×3×H×W) attribution -> H×W array in [0, 1] for display: max over colour
    channels of |·| (Simonyan's choice), divided by its ``percentile`` and clipped, so that a
    few extreme pixels do not turn the rest of the map black."""
    a = attribution.detach().float().cpu()
    a = a[0] if a.dim() == 4 else a
    m = a.abs().amax(dim=0) if a.dim() == 3 else a.abs()
    return (m / (m.flatten().quantile(percentile / 100) + 1e-12)).clamp(0, 1).numpy()


def to_rgb(attribution, percentile=99.0):
    """One 3×H×W (or 1×3×H×W) signed attribution -> H×W×3 image: x / q · 0.5 + 0.5, clipped,
    with q the ``percentile`` of |x| (grey = 0, as in the guided backprop figures)."""
    a = attribution.detach().float().cpu()
    a = a[0] if a.dim() == 4 else a
    q = a.abs().flatten().quantile(percentile / 100) + 1e-12
    return (a / q * 0.5 + 0.5).clamp(0, 1).permute(1, 2, 0).numpy()


def saliency_box(saliency_map, quantile=0.8, sigma=8.0):
    """Weakly supervised localisation from one H×W saliency map: (box, mask).

    Simonyan et al. seed a GraphCut colour segmentation with the pixels above the 95 %
    (object) and below the 30 % (background) quantiles of the map, then box the largest
    connected component. We keep the idea without GraphCut: smooth the map (Gaussian,
    ``sigma`` pixels), keep the pixels above its ``quantile``, take the largest 8-connected
    component (``utils.localize``); box = (x0, y0, x1, y1), x1 and y1 exclusive.
    """
    m = saliency_map.detach().cpu().numpy() if torch.is_tensor(saliency_map) else np.asarray(saliency_map)
    if m.ndim != 2:
        raise ValueError(f"saliency_box takes one H×W map, got shape {m.shape}.")
    smooth = ndimage.gaussian_filter(m.astype("float64"), sigma)
    mask = largest_region(smooth >= np.quantile(smooth, quantile))
    return mask_box(mask), mask
