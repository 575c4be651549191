"""DeepDream: make a layer see more of what it already sees (google/deepdream, 2015).

Gradient *ascent* on the image for the objective ½‖a_L(x)‖², the squared L2 norm of one
layer's activations, whose gradient with respect to the activations is simply a_L: every
unit that fires is asked to fire more. The recipe of the original ``dream.ipynb``:

* **step**   x ← x + η · g / mean(|g|),  g = ∇ₓ ½‖a_L‖²,  η = 1.5 in 0–255 pixel units;
* **jitter** roll the image by a random (dy, dx) ∈ [−32, 32]² before the step, roll back after
  (one of "a few simple tricks that we found useful", the original says, without a reason);
* **clip**   keep the pixels valid (0–255 there, [0, 1] here);
* **octaves** dream first on a small copy (4 octaves, each 1.4× smaller than the next),
  then carry the *detail* it added (x − base) up to the next size and keep dreaming.

Adaptation to torchvision: we keep the image in RGB [0, 1] while stepping and normalise it
inside the forward pass, so η = 1.5/255 and the clip to [0, 1] are exact, whatever the
model's mean and std are.

Each octave is one run of the shared loop ``utils.optimize.optimize_image``: the loss is
−objective of the jittered image (``jittered_loss``), the step is ``NormalizedStep``, the
bounds are 0 and 1, and the dream keeps the last image (not the "best" one).
"""

import torch
import torch.nn.functional as F

from .env import seconds_per_step
from .hooks import layer_outputs, model_guard, resolve_layer
from .images import image_batch
from .optimize import optimize_image

STEP_SIZE = 1.5 / 255       # google/deepdream's step_size=1.5 on 0–255 images
JITTER = 32                 # pixels
OCTAVES = 4
OCTAVE_SCALE = 1.4
STEPS_PER_OCTAVE = 10


def l2_objective(activations):
    """½‖a‖² per image (a vector of length N): the DeepDream objective."""
    return 0.5 * activations.pow(2).flatten(1).sum(1)


def guided_objective(guide_features):
    """The guided dream of dream.ipynb: each position of ``a`` is pulled towards the guide
    feature vector it already resembles most (largest dot product).

    In the original, the gradient at the layer is set to y[:, argmax(aᵀy)]; the objective
    Σ_positions a · y_best has exactly that gradient. ``guide_features`` is 1×C×h×w.
    """
    y = guide_features.detach().flatten(2)[0]                  # C × M

    def objective(activations):
        a = activations.flatten(2)                              # N × C × P
        best = torch.einsum("ncp,cm->npm", a, y).argmax(dim=2)  # N × P: best guide position
        matched = y[:, best].permute(1, 0, 2)                   # N × C × P
        return (a * matched.detach()).sum(dim=(1, 2))

    return objective


def octave_sizes(height, width, octaves=OCTAVES, scale=OCTAVE_SCALE):
    """(h, w) of each octave, smallest first; the last one is the image's own size."""
    if octaves < 1 or scale <= 1:
        raise ValueError("Use at least 1 octave and an octave scale above 1 (e.g. 4 and 1.4).")
    return [(max(1, round(height / scale ** i)), max(1, round(width / scale ** i)))
            for i in reversed(range(octaves))]


def normalized_step(x, grad, lr):
    """x − lr · g / mean|g|, the mean taken over each image of the batch (google/deepdream)."""
    mean_abs = grad.abs().flatten(1).mean(1).clamp_min(1e-12)
    return x - lr * grad / mean_abs.view(-1, *[1] * (x.dim() - 1))


class NormalizedStep(torch.optim.Optimizer):
    """google/deepdream's step: x ← x − lr · g / mean|g|, the mean taken over each image.

    Dividing by the mean absolute gradient makes every step change the pixels by ``lr`` on
    average, whatever the layer's scale. (Descent on −objective is ascent on the objective.)
    """

    def __init__(self, params, lr=STEP_SIZE):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for x in group["params"]:
                if x.grad is not None:
                    x.copy_(normalized_step(x, x.grad, group["lr"]))
        return loss


def jittered_loss(model, layer, objective=l2_objective, jitter=JITTER, generator=None):
    """The loss of one dream step, for RGB images in [0, 1]: −objective(a_L), per image,
    of the image rolled by a random (dy, dx) ∈ [−jitter, jitter]².

    The original rolls the image, steps, and rolls back. Rolling *inside* the loss does the
    same: the gradient flows back through the roll, so it arrives already rolled back.
    """
    def loss(rgb):
        dy, dx = (torch.randint(-jitter, jitter + 1, (2,), generator=generator).tolist()
                  if jitter else (0, 0))
        shifted = torch.roll(rgb, (dy, dx), dims=(2, 3))
        return -objective(layer_outputs(model, model.spec.normalize(shifted), layer)[layer])
    return loss


def dream_octave(model, rgb, layer, steps, objective=l2_objective, step_size=STEP_SIZE,
                 jitter=JITTER, generator=None, progress=True, description="dreaming"):
    """``steps`` DeepDream steps on RGB images in [0, 1] (N×3×H×W); returns the
    ``OptimResult`` (``.image``: the new images; ``.stopped``: interrupted).

        repeat:  g = ∇ objective(a_L(roll(x)));  x ← clip(x + η·g/mean|g|, 0, 1)
    """
    return optimize_image(jittered_loss(model, layer, objective, jitter, generator), rgb, steps,
                          low=0.0, high=1.0, model=model, optimizer=NormalizedStep,
                          lr=step_size, keep="last", progress=progress, description=description)


def _resize(rgb, size):
    if tuple(rgb.shape[-2:]) == tuple(size):
        return rgb
    return F.interpolate(rgb, size=size, mode="bilinear", align_corners=False,
                         antialias=size[0] < rgb.shape[-2])


def deepdream(model, x, layer="dream", steps=STEPS_PER_OCTAVE, octaves=OCTAVES,
              octave_scale=OCTAVE_SCALE, step_size=STEP_SIZE, jitter=JITTER, guide=None,
              seed=0, progress=True, return_octaves=False):
    """Dream on the normalised image batch ``x`` at ``layer``; return the dreamed batch (normalised).

    ``guide``: an optional normalised guide image (1×3×h×w) for a guided dream.
    ``return_octaves=True`` also returns the RGB result at the end of each octave.
    The model is left exactly as found (``model_guard``), the run is repeatable (``seed``).
    Interrupting (■) stops within one step and returns the dream so far: no further octave
    runs, and the detail added until then is carried up to the full size.
    """
    spec = model.spec
    x = image_batch(x, model)
    guide = image_batch(guide, model) if guide is not None else None
    resolve_layer(model, layer)                  # fail early, with a clear message
    generator = torch.Generator().manual_seed(seed)
    base = spec.denormalize(x.detach()).clamp(0, 1)
    sizes = octave_sizes(*base.shape[-2:], octaves=octaves, scale=octave_scale)
    per_octave = []
    with model_guard(model, freeze=True):
        objective = l2_objective
        if guide is not None:
            with torch.no_grad():
                objective = guided_objective(layer_outputs(model, guide, layer)[layer])
        detail = torch.zeros_like(_resize(base, sizes[0]))
        for k, size in enumerate(sizes):
            octave_base = _resize(base, size)
            detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
            run = dream_octave(model, (octave_base + detail).clamp(0, 1), layer, steps,
                               objective, step_size, min(jitter, max(size) // 2), generator,
                               progress, f"octave {k + 1}/{len(sizes)}")
            image = run.image
            detail = image - octave_base
            per_octave.append(image)
            if run.stopped:                      # interrupted: no more octaves
                break
    if image.shape[-2:] != base.shape[-2:]:      # stopped early: the detail so far, full size
        image = (base + F.interpolate(detail, size=sizes[-1], mode="bilinear",
                                      align_corners=False)).clamp(0, 1)
    out = spec.normalize(image)
    return (out, per_octave) if return_octaves else out


def typical_wavelength(detail):
    """How fine an image change is: its power-weighted mean spatial frequency, inverted, in
    pixels, one value per image of ``detail`` (N×3×H×W, e.g. dream − photo, in RGB; its gray
    level, mean removed, under a Hann window so that the image's border adds no false edges):

        λ̄ = Σ_f |D(f)|² / Σ_f |f|·|D(f)|²,   D = 2-D Fourier transform,  |f| in cycles per pixel

    Thin, sharp strokes give a short λ̄ (white noise: about 2.6 px); soft, blurred ones a long
    one. It measures the detail's frequency content, *not* the size of a motif: a maze of thin
    lines with wide cells has a short λ̄, and so does a large motif drawn with fine strokes.
    A change of amplitude leaves it as it is.
    """
    gray = detail.mean(dim=1)
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    h, w = gray.shape[-2:]
    window = torch.outer(torch.hann_window(h, periodic=False), torch.hann_window(w, periodic=False))
    power = torch.fft.fft2(gray * window.to(gray)).abs().pow(2)
    fy = torch.fft.fftfreq(h, device=gray.device)
    fx = torch.fft.fftfreq(w, device=gray.device)
    radius = torch.hypot(fy[:, None], fx[None, :])
    return power.sum(dim=(-2, -1)) / (power * radius).sum(dim=(-2, -1)).clamp_min(1e-12)


def step_seconds(model, layer="dream", size=224):
    """Wall time of one dream step (forward to ``layer`` and back) on a size×size image, on
    this machine and network (``env.seconds_per_step``)."""
    resolve_layer(model, layer)
    device = next(model.parameters()).device
    rgb = torch.full((1, 3, size, size), 0.5, device=device, requires_grad=True)
    loss = jittered_loss(model, layer, jitter=0)
    with model_guard(model, freeze=True):
        return seconds_per_step(lambda: loss(rgb).sum().backward())


def dream_seconds(step_s, size, steps=STEPS_PER_OCTAVE, octaves=OCTAVES, octave_scale=OCTAVE_SCALE,
                  measured_at=224):
    """What one dream of a size×size image will take: ``steps`` per octave, each costing
    ``step_s`` (measured at ``measured_at`` px) times the octave's share of pixels."""
    pixels = sum(h * w for h, w in octave_sizes(size, size, octaves, octave_scale))
    return steps * step_s * pixels / measured_at ** 2


def activation_norm(model, x, layer):
    """‖a_L(x)‖ per image, to check that dreaming made the layer fire more."""
    x = image_batch(x, model)
    with torch.no_grad(), model_guard(model):
        return layer_outputs(model, x, layer)[layer].flatten(1).norm(dim=1)


# --- the claims the notebook checks: each compares two dreams, none uses a tuned number -------
def softer_detail(detail, other):
    """Claim: what ``detail`` added (dream − photo, RGB) is softer, lower in spatial frequency,
    than what ``other`` added: its ``typical_wavelength`` is longer, image by image. The baseline
    is the other dream itself (e.g. the same layer without octaves); nothing is tuned: a finer
    change, or the same change only stronger, fails. It says nothing about motif size. One bool
    per image. Equal up to float rounding (1e-4) is not longer."""
    mine, theirs = typical_wavelength(detail), typical_wavelength(other)
    return (mine > theirs) & ~torch.isclose(mine, theirs, rtol=1e-4)


def mean_change(detail):
    """How much a dream changed the photo: the mean |dream − photo| per image, in [0, 1] units."""
    return detail.abs().flatten(1).mean(1)


def guide_likeness(model, x, guide, layer):
    """How much the layer's code of ``x`` (normalised) looks like the guide's: for every
    position of x, the cosine similarity of its feature vector with the best-matching guide
    position (the match the guided objective uses), averaged over positions. One per image."""
    with torch.no_grad(), model_guard(model):
        y = layer_outputs(model, image_batch(guide, model), layer)[layer][0]
        a = layer_outputs(model, image_batch(x, model), layer)[layer]
    y = F.normalize(y.flatten(1), dim=0)                         # C × M, the guide
    a = F.normalize(a.flatten(2), dim=1)                         # N × C × P
    return torch.einsum("ncp,cm->npm", a, y).amax(dim=2).mean(dim=1)


def closer_to_guide(model, guided, baseline, guide, layer):
    """Claim: the guided dream's code at ``layer`` looks more like the guide's than the
    ``baseline``'s does (``guide_likeness``); the baseline is the photo it started from (did the
    dream move towards the guide?) or the free dream of that photo (is it the guide that moved
    it?). It can fail: the guided objective raises dot products, which a larger norm alone
    can do, while the likeness is a cosine. It says nothing about what a viewer sees."""
    return guide_likeness(model, guided, guide, layer) > guide_likeness(model, baseline, guide, layer)
