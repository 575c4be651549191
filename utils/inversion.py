"""Inverting a representation by optimisation (Mahendran & Vedaldi, CVPR 2015).

Given only the code Φ₀ = Φ(x₀) that a layer computed for an unknown image x₀, look for an
image whose code is the same, among images that look natural:

    x* = argmin_x  ‖Φ(x) − Φ₀‖² / ‖Φ₀‖²
                   + (λ_α/2 · Σ|x|^α  +  λ_V/2 · Σ_ij ((x_i,j+1 − x_ij)² + (x_i+1,j − x_ij)²)^(β/2)) / σ_x²

* the data term is divided by ‖Φ₀‖², so at every layer it is the squared relative error of the
  code (0.01: the code is off by 10 % of its length, ``relative_code_error``);
* α = 6 keeps pixels in range (a soft box), TV^β with β = 2 keeps them smooth (β = 1 gives
  spikes, paper Fig. 2);
* σ_x is the norm of a typical image, so the regularisers read "per typical image".

We follow the official code (deep-goggle ``invert_nn.m``, ``experiment_cnn.m``):
λ_α = 8e-10, λ_V = 1, 10, 100 for the first, middle and last third of the network,
start from Gaussian noise with norm σ_x, and gradient descent with momentum 0.9,

    v ← 0.9·v − lr·σ_x²·∇E(x),   x ← x + v,   lr = 0.004 × (1, 0.1, 0.01) for 1/4, 1/2, 1/4
    of the iterations (100/200/100 in the paper), v reset to 0 whenever lr changes.

Adaptation to torchvision: the constants were tuned for Caffe images, 0–255 with the mean
subtracted. We optimise exactly that quantity, u = 255·(rgb − ImageNet mean), and turn it into
the model's input inside the loss, so λ_α, λ_V and lr keep their meaning for every model.
σ_x = √(number of values) × 255 × 0.226 (the ImageNet pixel standard deviation); the official
code loads a precomputed σ_x instead.

The loop is the shared ``utils.optimize.optimize_image`` with ``optimizer="sgd"``,
``momentum=0.9`` and the schedule as one learning rate per iteration (lr·σ_x², since the
official code scales the gradient by σ_x²); the loss is one energy per image, so each image
keeps its own best point. With ``blowup=10`` an image whose energy blows up (more than 10 times
its best) restarts from its best point with half the step: a safeguard that is not in the paper.
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .env import seconds_per_step
from .hooks import LOGITS, forward_hooks, layer_outputs, layer_path, model_guard, model_spec, resolve_layer
from .images import image_batch
from .models import IMAGENET_MEAN
from .optimize import optimize_image

ALPHA = 6                 # the α-norm exponent of the experiments
BETA = 2                  # TV^β exponent for CNNs
LAMBDA_ALPHA = 8e-10      # deep-goggle experiment_cnn.m (for 0–255 images)
LAMBDA_TV = (1.0, 10.0, 100.0)   # first, middle, last third of the layers, at 227 px
PAPER_SIDE = 227          # CaffeNet's input side, for which the official constants were set
LR = 0.004
MOMENTUM = 0.9
PIXEL_STD_255 = 255 * 0.226      # typical standard deviation of a pixel, in 0–255 units


def to_model_input(u, spec):
    """Caffe-style u = 255·(rgb − ImageNet mean) -> the model's normalised input."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=u.dtype, device=u.device).view(1, 3, 1, 1)
    return spec.normalize(u / 255 + mean)


def alpha_norm(u, alpha=ALPHA):
    """Σ |u|^α per image (vector of length N)."""
    return u.abs().pow(alpha).flatten(1).sum(1)


def tv_beta(u, beta=BETA):
    """Σ_ij ((u_i,j+1 − u_ij)² + (u_i+1,j − u_ij)²)^(β/2) per image; last row/column repeat."""
    dx = torch.cat([u[..., :, 1:], u[..., :, -1:]], dim=-1) - u
    dy = torch.cat([u[..., 1:, :], u[..., -1:, :]], dim=-2) - u
    squared = dx.pow(2) + dy.pow(2)
    if beta == 2:
        return squared.flatten(1).sum(1)
    return (squared + 1e-8).pow(beta / 2).flatten(1).sum(1)


def typical_norm(shape):
    """σ_x: the norm of a typical image of this shape (C×H×W) in 0–255 units."""
    c, h, w = shape[-3:]
    return (c * h * w) ** 0.5 * PIXEL_STD_255


def layer_order(model):
    """Module paths in the order they run (one forward pass at the model's input size: AlexNet's
    pool5 has nothing left to pool below 64 px), ending with "logits"."""
    order = []
    names = {module: name for name, module in model.named_modules() if name}
    side = model.spec.size if model_spec(model) is not None else 224
    with torch.no_grad(), model_guard(model), \
            forward_hooks(names, lambda module, inputs, output: order.append(names[module])):
        model(torch.zeros(1, 3, side, side, device=next(model.parameters()).device))
    return list(dict.fromkeys(order)) + [LOGITS]


def default_tv_lambdas(model, layers, shape=None):
    """λ_V of each layer by depth, as in the official code: 1, 10, 100 for the first, middle
    and last third of the layers (one forward pass for all of them).

    ``shape`` (…×H×W): the images' size; the values are then multiplied by H·W/227². The
    TV^β (β = 2) of a smooth picture does not change when it is resized (the jumps between
    neighbours shrink as the pixels multiply), but σ_x² grows with the number of pixels: at a
    smaller size λ_V·TV^β/σ_x² would weigh the prior 227²/(H·W) times more against the data
    term than the paper's constants meant (2 times at 160 px, 5.6 times at 96 px).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    for layer in layers:
        if layer != LOGITS:
            resolve_layer(model, layer)      # a clear error for a wrong name, before any work
    order = layer_order(model)
    lambdas = []
    for layer in layers:
        path = LOGITS if layer == LOGITS else layer_path(model, layer)
        if path not in order:
            raise ValueError(f"Layer {layer!r} never runs in the forward pass; pick one that "
                             "does (model.spec.layers lists the roles).")
        depth = order.index(path) / (len(order) - 1)
        lambdas.append(LAMBDA_TV[min(int(depth * 3), 2)])
    if shape is not None:
        scale = shape[-2] * shape[-1] / PAPER_SIDE ** 2
        lambdas = [value * scale for value in lambdas]
    return lambdas


def default_tv_lambda(model, layer, shape=None):
    """λ_V of one layer (``default_tv_lambdas``)."""
    return default_tv_lambdas(model, [layer], shape)[0]


def step_schedule(steps, lr=LR):
    """lr for each iteration: 1×lr for the first quarter, 0.1× for the half, 0.01× after."""
    first, second = round(steps / 4), round(3 * steps / 4)
    return [lr if t < first else lr * 0.1 if t < second else lr * 0.01 for t in range(steps)]


@dataclass
class Inversion:
    """What ``invert`` returns."""
    images: torch.Tensor          # N×3×H×W, the model's normalised input
    layers: list                  # the layer each image was reconstructed from
    losses: list                  # total energy (summed over the batch) at each iteration
    data_terms: list = field(default_factory=list)   # ‖Φ(x)−Φ₀‖²/‖Φ₀‖² per image, each iteration
    stopped: bool = False         # interrupted (■): ``images`` are the best found until then
    restarts: int = 0             # times an image blew up and went back to its best point


def energy(model, u, layers, codes, lambda_alpha=LAMBDA_ALPHA, lambda_tv=1.0, alpha=ALPHA,
           beta=BETA):
    """E(u) per image: ‖Φ(u) − Φ₀‖²/‖Φ₀‖² + (λ_α/2·Σ|u|^α + λ_V/2·TV^β(u)) / σ_x².

    ``u``: images in Caffe units; ``codes[i]``: Φ₀ of image i at ``layers[i]``. Returns the
    energies and {"data": the data terms}, for ``optimize_image``.
    """
    sigma2 = typical_norm(u.shape) ** 2
    feats = layer_outputs(model, to_model_input(u, model.spec), list(dict.fromkeys(layers)))
    data = torch.stack([(feats[layer][i] - codes[i]).pow(2).sum() / codes[i].pow(2).sum()
                        for i, layer in enumerate(layers)])
    reg = (lambda_alpha / 2 * alpha_norm(u, alpha) + lambda_tv / 2 * tv_beta(u, beta)) / sigma2
    return data + reg, {"data": data}


def invert(model, x0, layers, steps=400, lr=LR, momentum=MOMENTUM, alpha=ALPHA, beta=BETA,
           lambda_alpha=LAMBDA_ALPHA, lambda_tv=None, seed=0, progress=True):
    """Reconstruct each image of the batch ``x0`` from its code at ``layers[i]``.

    ``layers`` is one layer (used for every image) or one per image; "logits" is the output.
    Several layers of one photo at once: ``invert(model, x.repeat(k, 1, 1, 1), k_layers)``.
    ``lambda_tv``: None = by depth and image size (``default_tv_lambdas``), a number, or one
    per image.
    Images do not interact (eval mode), so the batch equals inverting one by one.
    Interrupting (■) stops within one step and returns the best images so far (``stopped``).
    """
    spec = model.spec
    x0 = image_batch(x0, model)
    n = x0.shape[0]
    layers = [layers] * n if isinstance(layers, str) else list(layers)
    if len(layers) != n:
        raise ValueError(f"Give one layer, or one per image: {n} images, {len(layers)} layers.")
    for layer in layers:
        if layer != LOGITS:
            resolve_layer(model, layer)          # a clear error for a wrong name, before any work
    if lambda_tv is None:
        lambda_tv = default_tv_lambdas(model, layers, x0.shape)
    lam_tv = torch.as_tensor(lambda_tv, dtype=x0.dtype, device=x0.device).expand(n)
    wanted = list(dict.fromkeys(layers))
    sigma2 = typical_norm(x0.shape) ** 2
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    u0 = noise / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * sigma2 ** 0.5

    with model_guard(model, freeze=True):
        with torch.no_grad():
            target_all = layer_outputs(model, x0, wanted)
        targets = [target_all[layer][i] for i, layer in enumerate(layers)]
        def energy_of(u):
            return energy(model, u, layers, targets, lambda_alpha, lam_tv, alpha, beta)

        run = optimize_image(energy_of, u0, steps, model=model, optimizer="sgd", momentum=momentum,
                             lr=[rate * sigma2 for rate in step_schedule(steps, lr)],
                             blowup=10, progress=progress, description="inverting")
    return Inversion(images=to_model_input(run.image, spec), layers=layers, losses=run.losses,
                     data_terms=[h["data"] for h in run.history], stopped=run.stopped,
                     restarts=run.restarts)


def seconds_per_iteration(model, x0, layers):
    """Wall time of one iteration of ``invert`` for each of ``layers`` (inverted one at a time,
    as the notebook does), summed: one forward and backward pass of ``energy`` per layer, timed
    by ``env.seconds_per_step`` on the first image of ``x0``. Times the number of iterations,
    it is what the inversions will take on this machine and network."""
    x0 = image_batch(x0, model)[:1]
    layers = [layers] if isinstance(layers, str) else list(layers)
    u = torch.zeros_like(x0, requires_grad=True)
    with model_guard(model, freeze=True):
        with torch.no_grad():
            codes = layer_outputs(model, x0, list(dict.fromkeys(layers)))

        def one_iteration():
            for layer in layers:
                energy(model, u, [layer], [codes[layer][0]])[0].sum().backward()

        return seconds_per_step(one_iteration)


def psnr(x, y, spec):
    """Peak signal-to-noise ratio in dB between two normalised images, on RGB clamped to [0, 1]:
    10·log10(1 / mean (x − y)²), one value per image."""
    a = spec.denormalize(x).clamp(0, 1)
    b = spec.denormalize(y).clamp(0, 1)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-12))


def edge_map(rgb, side=32):
    """Strength of the colour edges of RGB images (N×3×H×W), √Σ_c (∂x² + ∂y²), after shrinking
    them to side×side by area averaging: N×(side−1)×(side−1)."""
    small = F.interpolate(rgb, size=(side, side), mode="area")
    dx = small[..., :-1, 1:] - small[..., :-1, :-1]
    dy = small[..., 1:, :-1] - small[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2)).sum(dim=1).sqrt()


def layout_correlation(x, y, spec, side=32):
    """Do two normalised batches have their edges in the same places? The Pearson correlation of
    their edge maps at side×side (``edge_map``), one value per image: 1 = the same layout, 0 =
    nothing in common.

    At 32×32 fine noise and one-pixel shifts do not count, and edge strength is blind to which
    colours meet: a reconstruction in false colours scores where its edges are right. PSNR
    instead mostly rewards the right average colour: a uniform image of the right colour scores
    well without a single edge."""
    a = edge_map(spec.denormalize(x).clamp(0, 1), side).flatten(1)
    b = edge_map(spec.denormalize(y).clamp(0, 1), side).flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)


def relative_code_error(data_term):
    """‖Φ(x) − Φ₀‖ / ‖Φ₀‖ from the data term ‖Φ(x) − Φ₀‖² / ‖Φ₀‖² (its square root): 0.1 = the
    code is off by a tenth of its length."""
    return torch.as_tensor(data_term, dtype=torch.float64).sqrt()


def layout_chance(images, others, spec):
    """The chance level of the layout correlation: its largest value between each image and
    *unrelated* photos (``others``, normalised, N'×3×H×W), edges in a similar place by
    coincidence (a centred subject, a horizon). One value per image."""
    return torch.stack([layout_correlation(images, other.expand_as(images), spec)
                        for other in others]).amax(0)


# --- the claims the notebook checks: each compares with a baseline, none with a tuned number ---
def keeps_layout(images, photos, others, spec):
    """Claim: each reconstruction keeps its photo's layout, more than chance allows: the claim
    holds for image i when r(images[i], photos[i]) > ``layout_chance`` (the max over unrelated
    photos of r(images[i], other)). One bool per image.
    """
    return layout_correlation(images, photos, spec) > layout_chance(images, others, spec)


def falls_with_depth(values):
    """Claim: a score falls at every step from the first layer to the last (``values`` in
    depth order). A score that merely drifts down, with one rise on the way, fails."""
    values = [float(v) for v in values]
    return all(a > b for a, b in zip(values, values[1:]))


def code_error(model, images, photo, layer):
    """‖Φ(image) − Φ(photo)‖² / ‖Φ(photo)‖² at ``layer``, one value per image of ``images``
    (the data term of ``energy``, for any image: a reconstruction, or an unrelated photo)."""
    photo, images = image_batch(photo, model), image_batch(images, model)
    with torch.no_grad(), model_guard(model):
        codes = layer_outputs(model, torch.cat([photo[:1], images]), layer)[layer]
    target, codes = codes[:1], codes[1:]
    return (codes - target).pow(2).flatten(1).sum(1) / target.pow(2).sum()


def matches_code(error, other_errors):
    """Convergence check: a reconstruction's code is closer to the photo's code than the code of
    any unrelated photo is (``other_errors``, from ``code_error``): the chance level of a code
    error is what a real image that is not this photo gives. It says the optimiser did its job,
    not what the layer keeps."""
    return bool(float(error) < float(torch.as_tensor(other_errors).min()))


def beats_on_every_photo(scores, baseline):
    """Claim: one method scores above another (a tensor of scores, one per photo, or one number)
    on every photo; a tie or a single loss fails."""
    return bool((torch.as_tensor(scores) > torch.as_tensor(baseline)).all())


def jump_sizes(images, spec):
    """The height of the jump at every pixel of RGB images in 0–255 gray levels,
    √(∂x² + ∂y²) per colour channel (the terms of TV¹): N×(3·H·W)."""
    u = 255 * spec.denormalize(images).clamp(0, 1)
    dx = torch.cat([u[..., :, 1:], u[..., :, -1:]], dim=-1) - u
    dy = torch.cat([u[..., 1:, :], u[..., -1:, :]], dim=-2) - u
    return (dx.pow(2) + dy.pow(2)).sqrt().flatten(1)


def top_jump_share(images, spec, top=0.01):
    """The share of the total variation (TV¹, the sum of all jumps) that the largest ``top``
    of the jumps carry, one value per image: large for an image of a few tall jumps (sharp
    edges, isolated spikes on a smooth ground), small for one whose variation is spread over
    many small jumps (blur, fine even noise). ``top`` of the total is an even spread."""
    jumps = jump_sizes(images, spec)
    k = max(1, round(top * jumps.shape[1]))
    return jumps.topk(k, dim=1).values.sum(1) / jumps.sum(1).clamp_min(1e-12)


def concentrates_jumps(images, others, spec, top=0.01):
    """Claim (Mahendran & Vedaldi, Fig. 2: TV¹ "spikes", TV² does not): ``images`` (made with
    β = 1) put a larger share of their variation into their largest jumps than ``others``
    (the same inversion with β = 2 at the same λ_V). The baseline is the other run itself,
    image by image; one bool per image."""
    return top_jump_share(images, spec, top) > top_jump_share(others, spec, top)
