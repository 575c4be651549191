"""Feature visualisation: the image a unit, a channel or a class wants to see.

Find an image x that makes an objective O of the network's activations large:

    x* = argmax_x  O(a(x))

The same gradient ascent as notebook 04's class models and notebook 09's DeepDream, with
three ways of doing it, each meant to make the picture more legible:

1. **naive** (Simonyan, Vedaldi & Zisserman 2014's pixel ascent, without their L2 penalty
   λ‖x‖² and with DeepDream's normalised step): ascend on the pixels themselves,
   x ← clip(x + η·g / mean|g|, 0, 1), g = ∇ₓ O. The result is mostly high-frequency
   noise that the network responds to and people do not.
2. **regularised** (Yosinski, Clune, Nguyen, Fuchs & Lipson 2015): after each step an
   image prior r_θ: L2 decay x ← μ + (1 − θ_decay)(x − μ) (μ the mean colour), a Gaussian
   blur every few steps, and pixels whose colour norm |x − μ| is among the smallest
   ``θ_n_pct`` percent set back to μ ("clipping small values").
3. **parametrised** (Olah, Mordvintsev & Schubert 2017, Distill "Feature Visualization"):
   the image is not stored as pixels but as Fourier coefficients scaled by 1/frequency, in
   decorrelated colour, squashed by a sigmoid,

       x = σ( C · F⁻¹[ s(f) · z ] ),   s(f) = 1 / max(|f|, 1/max(H, W)),

   and every step sees a randomly padded, jittered, scaled and rotated copy of x
   (transformation robustness). Equal steps on z then move low frequencies as much as
   high ones, and the colours move along the natural images' principal colour axes.

Objectives share one call shape, ``kind(layer, channel, ...)``, and return one value per
image of a batch; they add and negate (``channel(L, a) + channel(L, b)``, ``-channel(L, a)``).
A channel may be a list, one per image, so several channels are optimised in one batch.
All three methods run in the shared loop ``utils.optimize.optimize_image``: the model is
left exactly as found and every hook is removed (``hooks.layer_outputs``).
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .deepdream import NormalizedStep, l2_objective
from .env import progress_bar, seconds_per_step
from .hooks import LOGITS, check_channel, layer_outputs, model_guard, resolve_layer
from .images import blur
from .optimize import optimize_image
from .targets import check_target


# --------------------------------------------------------------------------- objectives

class Objective:
    """A function of one forward pass, {layer: activations} -> one value per image, to be
    maximised. ``layers`` are the layers it reads; ``check(model, outputs)`` raises a clear
    error for a channel or unit the layer lacks (run once before any optimisation)."""

    def __init__(self, name, layers, value, check=None):
        self.name, self.layers, self._value, self._check = name, tuple(layers), value, check

    def __call__(self, outputs):
        return self._value(outputs)

    def check(self, model, outputs):
        if self._check is not None:
            self._check(model, outputs)
        return self

    def _join(self, other, name, combine):
        def check(model, outputs):
            self.check(model, outputs)
            other.check(model, outputs)
        return Objective(name, dict.fromkeys(self.layers + other.layers), lambda o: combine(self(o), other(o)),
                         check)

    def __add__(self, other):
        return self._join(other, f"{self.name} + {other.name}", torch.add)

    def __sub__(self, other):
        return self._join(other, f"{self.name} − {other.name}", torch.sub)

    def __neg__(self):
        return Objective(f"−{self.name}", self.layers, lambda o: -self(o), self._check)

    def __rmul__(self, weight):
        return Objective(f"{weight:g}·{self.name}", self.layers, lambda o: weight * self(o), self._check)

    def __repr__(self):
        return f"Objective({self.name})"


def _per_image(channel, n):
    """A channel, or one per image, as a list of n."""
    channels = list(channel) if isinstance(channel, (list, tuple, np.ndarray, torch.Tensor)) else [channel]
    if len(channels) not in (1, n):
        raise ValueError(f"{len(channels)} channels for {n} images: give one, or one per image.")
    return channels * n if len(channels) == 1 else channels


def _checked(layer, channel, position=None):
    def check(model, outputs):
        a = outputs[layer]
        for c in _per_image(channel, a.shape[0]):
            check_channel(a, c, layer, position)
    return check


def _pick(a, channel):
    """a[i, channel_i] for each image i: N×h×w."""
    index = torch.tensor([int(c) for c in _per_image(channel, a.shape[0])], device=a.device)
    return a[torch.arange(a.shape[0], device=a.device), index]


def unit(layer, channel, y=None, x=None):
    """One unit: a[c, y, x], by default at the centre of the map (h // 2, w // 2)."""
    def value(outputs):
        a = outputs[layer]
        h, w = a.shape[-2:]
        return _pick(a, channel)[:, h // 2 if y is None else y, w // 2 if x is None else x]
    where = "centre" if y is None else f"({y}, {x})"
    return Objective(f"{layer}:{channel} unit at {where}", [layer], value,
                     lambda model, outputs: _checked(layer, channel, (
                         outputs[layer].shape[-2] // 2 if y is None else y,
                         outputs[layer].shape[-1] // 2 if x is None else x))(model, outputs))


def channel(layer, channel):
    """A whole channel: the mean of a[c] over all positions (Olah et al.'s "channel")."""
    return Objective(f"{layer}:{channel}", [layer], lambda o: _pick(o[layer], channel).mean((1, 2)),
                     _checked(layer, channel))


def peak(layer, channel):
    """A channel's largest value over positions: the score notebook 02 ranks patches by."""
    return Objective(f"{layer}:{channel} peak", [layer],
                     lambda o: _pick(o[layer], channel).flatten(1).amax(1), _checked(layer, channel))


def negative(layer, channel_):
    """The negative of a channel: the image that makes it as small as possible."""
    return -channel(layer, channel_)


def channel_sum(layer, first, second):
    """Two channels at once (Olah et al.'s interpolations start from such sums)."""
    return channel(layer, first) + channel(layer, second)


def layer_objective(layer, channel=None):
    """A whole layer: DeepDream's ½‖a_L‖² (notebook 09), every unit asked to fire more.
    (``channel`` is accepted for the shared call shape and must be None.)"""
    if channel is not None:
        raise ValueError("The layer objective takes every channel; pass channel=None.")
    return Objective(f"{layer} (DeepDream)", [layer], lambda o: l2_objective(o[layer]))


def class_logit(target, channel=None):
    """A class: its logit S_c (not the softmax), as Simonyan et al.'s class models (notebook 04).
    ``target``: a class index or label, or one per image. (``channel`` must be None.)"""
    if channel is not None:
        raise ValueError("A class objective has no channel; pass the class as target.")
    chosen = {}

    def check(model, outputs):
        n = outputs[LOGITS].shape[0]
        chosen["t"] = check_target(model, target, n)

    def value(outputs):
        logits = outputs[LOGITS]
        t = chosen["t"].to(logits.device)          # set by check, which runs first
        return logits[torch.arange(logits.shape[0], device=logits.device), t]
    return Objective(f"class {target}", [LOGITS], value, check)


OBJECTIVES = {"unit": unit, "channel": channel, "peak": peak, "layer": layer_objective, "class": class_logit,
              "negative": negative, "sum": channel_sum}


def diversity(layer):
    """Olah et al.'s diversity term for a batch of images of one objective: the mean cosine
    similarity between the images' Gram matrices at ``layer`` (their "style"),

        D = 1/(N(N−1)) Σ_{i≠j} ⟨G_i, G_j⟩ / (‖G_i‖ ‖G_j‖),   G_i = A_i A_iᵀ,  A_i: C×(h·w),

    returned (as the same value for every image) so that ``objective − λ·diversity(layer)``
    pushes the images apart. A batch of one has no pair: 0."""
    def value(outputs):
        a = outputs[layer].flatten(2)
        n = a.shape[0]
        if n < 2:
            return a.new_zeros(n)
        grams = F.normalize(torch.bmm(a, a.transpose(1, 2)).flatten(1), dim=1)
        similarity = grams @ grams.T
        mean_pair = (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))
        return mean_pair.expand(n)
    return Objective(f"diversity at {layer}", [layer], value)


# --------------------------------------------------------------------------- parametrisation

# The square root of ImageNet's colour covariance (columns: its principal axes, scaled by the
# square root of their variance), as lucid publishes it: column 0 is the brightness axis,
# 1 red-blue, 2 green-magenta. Normalised so that its largest column has unit length.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02],
                                       [0.27, 0.00, -0.05],
                                       [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


def decorrelated_to_rgb(z):
    """Colour: each pixel's 3 decorrelated values z -> C·z, correlated like ImageNet's RGB
    (N×3×H×W in, N×3×H×W out). White noise in z becomes noise of covariance C·Cᵀ."""
    return torch.einsum("ij,njhw->nihw", COLOR_CORRELATION.to(z), z)


def rgb_to_decorrelated(rgb):
    """The inverse of ``decorrelated_to_rgb``: C⁻¹ per pixel."""
    return torch.einsum("ij,njhw->nihw", torch.linalg.inv(COLOR_CORRELATION).to(rgb), rgb)


def frequencies(height, width):
    """|f| in cycles per pixel on the grid of ``torch.fft.rfft2`` (height × (width//2 + 1))."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx ** 2 + fy ** 2)


def spectrum_scale(height, width, decay_power=1.0):
    """s(f) = 1 / max(|f|, 1/max(H, W))^decay_power: equal coefficients give a 1/f image,
    the spectrum of natural photos; the constant term gets the lowest frequency's scale."""
    return 1.0 / frequencies(height, width).clamp_min(1.0 / max(height, width)) ** decay_power


def spectrum_to_image(coefficients, height, width, decay_power=1.0):
    """Fourier coefficients (N×3×h×(w//2+1)×2, real and imaginary parts) -> N×3×H×W:

        image = F⁻¹[ s(f) · (re + i·im) ]   (orthonormal inverse FFT)
    """
    scaled = spectrum_scale(height, width, decay_power).to(coefficients) * torch.view_as_complex(
        coefficients.contiguous())
    return torch.fft.irfft2(scaled, s=(height, width), norm="ortho")


def image_to_spectrum(image, decay_power=1.0):
    """The inverse of ``spectrum_to_image``: N×3×H×W -> coefficients (…×2)."""
    height, width = image.shape[-2:]
    spectrum = torch.fft.rfft2(image, norm="ortho") / spectrum_scale(height, width, decay_power).to(image)
    return torch.view_as_real(spectrum)


def fourier_rgb(coefficients, height, width, decay_power=1.0):
    """Olah et al.'s parametrised image: x = σ(C · F⁻¹[s(f)·z]) in [0, 1]."""
    return torch.sigmoid(decorrelated_to_rgb(spectrum_to_image(coefficients, height, width, decay_power)))


def random_spectrum(n, height, width, sd=0.01, generator=None):
    """Small random start coefficients, N×3×H×(W//2+1)×2."""
    return sd * torch.randn(n, 3, height, width // 2 + 1, 2, generator=generator)


# --------------------------------------------------------------------------- robustness

PAD = 12                                       # Olah et al. / lucid's transformations:
JITTER = (8, 4)                                # pad, jitter 8, scale, rotate, jitter 4
SCALES = tuple(1 + (i - 5) / 50 for i in range(11))    # 0.9 ... 1.1
ANGLES = tuple(range(-10, 11))                         # degrees


def random_transform(rgb, generator=None, pad=PAD, jitter=JITTER, scales=SCALES, angles=ANGLES):
    """One random copy of the RGB batch, as every step of Olah et al. sees it: pad with
    gray, crop at a random offset (jitter), rescale and rotate about the centre, crop again.
    The same draw for the whole batch."""
    def draw(options):
        return options[int(torch.randint(len(options), (1,), generator=generator))]

    def crop(x, d):
        if d <= 0:
            return x
        dy, dx = (int(v) for v in torch.randint(d + 1, (2,), generator=generator))
        return x[..., dy:x.shape[-2] - d + dy, dx:x.shape[-1] - d + dx]

    x = F.pad(rgb, [pad] * 4, value=0.5) if pad else rgb
    x = crop(x, jitter[0])
    scale, angle = draw(scales), np.deg2rad(draw(angles))
    if scale != 1 or angle != 0:
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
        grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return crop(x, jitter[1] if len(jitter) > 1 else 0)


# --------------------------------------------------------------------------- the three methods

def _evaluate(model, objective, rgb):
    """The objective of RGB images in [0, 1] (one value per image), keeping the graph."""
    outputs = layer_outputs(model, model.spec.normalize(rgb), list(objective.layers))
    return objective.check(model, outputs)(outputs)


def check_objective(model, objective, n=1, size=64):
    """Run ``objective`` once on ``n`` gray images: a layer, channel or class the model lacks
    raises its clear error here, before any optimisation."""
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective (featurevis.channel(layer, c), ...), "
                        f"not {type(objective).__name__}.")
    for layer in objective.layers:
        if layer != LOGITS:
            resolve_layer(model, layer)
    device = next(model.parameters()).device
    with torch.no_grad(), model_guard(model):
        gray = torch.full((n, 3, size, size), 0.5, device=device)
        objective.check(model, layer_outputs(model, model.spec.normalize(gray), list(objective.layers)))


class RegularisedStep(NormalizedStep):
    """Yosinski et al.'s update: a normalised gradient step, then the prior r_θ:

        x ← x + η·g/mean|g|;   x ← μ + (1 − θ_decay)(x − μ);
        every ``blur_every`` steps: x ← GaussianBlur_σ(x);
        pixels with |x − μ| (colour norm) below the ``small_norm_pct`` percentile: x ← μ.

    (The step is DeepDream's, notebook 09; it is descent on the loss −O.)"""

    def __init__(self, params, lr, mean, decay=0.01, blur_every=4, blur_sigma=1.0, small_norm_pct=20):
        super().__init__(params, lr)
        self.mean, self.decay, self.blur_every = mean, decay, blur_every
        self.blur_sigma, self.small_norm_pct, self.steps = blur_sigma, small_norm_pct, 0

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        self.steps += 1
        for group in self.param_groups:
            for x in group["params"]:
                x.copy_(yosinski_prior(x, self.mean.to(x), self.decay,
                                       self.blur_sigma if self.blur_every and self.steps % self.blur_every == 0 else 0,
                                       self.small_norm_pct))
        return loss


def yosinski_prior(x, mean, decay, blur_sigma, small_norm_pct):
    """r_θ(x) of Yosinski et al. 2015 on RGB images (μ: the mean colour, 1×3×1×1)."""
    x = mean + (1 - decay) * (x - mean)
    if blur_sigma:
        x = blur(x, blur_sigma)
    if small_norm_pct:
        norm = (x - mean).norm(dim=1, keepdim=True)                       # N×1×H×W
        cut = torch.quantile(norm.flatten(1), small_norm_pct / 100, dim=1).view(-1, 1, 1, 1)
        x = torch.where(norm < cut, mean.expand_as(x), x)
    return x


@dataclass
class Visualisation:
    """What ``visualize`` returns."""
    rgb: torch.Tensor          # N×3×H×W in [0, 1]
    objective: torch.Tensor    # the objective of each image (no transformation)
    method: str
    seconds: float
    steps: int
    losses: list

    def image(self, i=0):
        """Image i as an H×W×3 array for ``imshow``."""
        return self.rgb[i].permute(1, 2, 0).cpu().numpy()


METHODS = ("naive", "regularised", "parametrised")
STEP = 2 / 255                  # pixel methods: mean change per step, in [0, 1] units
LEARNING_RATE = 0.025           # parametrised: Adam on the Fourier coefficients. lucid: 0.05 on
                                # an image divided by 4, i.e. 0.0125 here; twice that is ours,
                                # to reach full contrast in the fewer steps a CPU affords


def visualize(model, objective, size=128, steps=256, method="parametrised", n=1, seed=0,
              lr=None, transforms=None, diversity_weight=0.0, diversity_layer=None,
              decay_power=1.0, sd=0.01, network_size=None, progress=True, stop=None, **prior):
    """Optimise ``n`` images (size×size) to maximise ``objective``; a ``Visualisation``.

    ``method``: "naive" (pixels, plain normalised ascent), "regularised" (pixels + Yosinski's
    prior; ``prior`` sets ``decay``, ``blur_every``, ``blur_sigma``, ``small_norm_pct``) or
    "parametrised" (Olah et al.: 1/f Fourier coefficients, decorrelated colour, sigmoid).
    ``transforms``: random pad/jitter/scale/rotation at every step (default: only with
    "parametrised"). ``diversity_weight`` λ: maximise O − λ·diversity (``diversity_layer``,
    default the objective's first layer). ``network_size``: each step's (transformed) copy is
    resized to this side before the network, as lucent does (224): one image pixel then spans
    more than one input pixel of the network. The model is left as found; ``stop``/■ return the
    images so far.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}.")
    if size < 16 or steps < 1 or n < 1:
        raise ValueError(f"size >= 16, steps >= 1 and n >= 1 are needed (got {size}, {steps}, {n}).")
    check_objective(model, objective, n)
    transforms = method == "parametrised" if transforms is None else transforms
    goal = objective
    if diversity_weight:
        goal = objective - diversity_weight * diversity(diversity_layer or objective.layers[0])
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    mean = torch.tensor(model.spec.mean).view(1, 3, 1, 1)

    def transformed(rgb):
        rgb = random_transform(rgb, generator) if transforms else rgb
        if network_size:
            rgb = F.interpolate(rgb, size=(network_size, network_size), mode="bilinear",
                                align_corners=False)
        return rgb

    if method == "parametrised":
        start = random_spectrum(n, size, size, sd, generator).to(device)

        def to_rgb(z):
            return fourier_rgb(z, size, size, decay_power)
        optimizer, low, high, rate = "adam", None, None, lr or LEARNING_RATE
    else:
        start = (0.5 + 0.1 * (torch.rand(n, 3, size, size, generator=generator) - 0.5)).to(device)

        def to_rgb(x):
            return x
        low, high, rate = 0.0, 1.0, lr or STEP
        optimizer = NormalizedStep if method == "naive" else \
            (lambda params, lr_: RegularisedStep(params, lr_, mean, **prior))

    def loss(z):
        return -_evaluate(model, goal, transformed(to_rgb(z)))

    result = optimize_image(loss, start, steps, low=low, high=high, model=model, optimizer=optimizer,
                            lr=rate, keep="last", stop=stop, progress=progress, description=method)
    rgb = to_rgb(result.image).detach()
    return Visualisation(rgb, activation(model, objective, rgb), method, result.seconds,
                         len(result.losses) - 1, result.losses)


# --------------------------------------------------------------------------- measurements

def step_seconds(model, objective, size=128, n=1):
    """Wall time of one parametrised step (transform, forward to the objective's layers and
    back) for ``n`` images of size×size, on this machine (``env.seconds_per_step``)."""
    check_objective(model, objective, n)
    device = next(model.parameters()).device
    z = random_spectrum(n, size, size).to(device).requires_grad_(True)
    generator = torch.Generator().manual_seed(0)

    def step():
        (-_evaluate(model, objective, random_transform(fourier_rgb(z, size, size), generator))).sum().backward()
    with model_guard(model, freeze=True):
        return seconds_per_step(step)


def activation(model, objective, rgb):
    """The objective of RGB images (N×3×H×W in [0, 1]), no transformation, no graph."""
    with torch.no_grad(), model_guard(model):
        return _evaluate(model, objective, rgb.to(next(model.parameters()).device)).detach().cpu()


def survival(model, objective, rgb, draws=16, seed=0):
    """How much of what an image added to its objective survives Olah et al.'s random
    transformations, one value per image (1: all of it, 0: none):

        ( mean over draws of O(T(x)) − O(gray) ) / ( O(x) − O(gray) ),

    measured from the mid-gray image every method starts near (and pads with)."""
    generator = torch.Generator().manual_seed(seed)
    gray = activation(model, objective, torch.full_like(rgb[:1], 0.5).expand_as(rgb))
    base = activation(model, objective, rgb) - gray
    kept = torch.stack([activation(model, objective, random_transform(rgb, generator))
                        for _ in range(draws)]).mean(0) - gray
    return kept / base


def channel_means(model, regions, layers, size, batch_size=64, progress=True):
    """{layer: R×C}: every channel's mean over positions (the ``channel`` objective) on every
    region of ``regions`` (``patches.propose_regions``), warped to size×size as the feature
    bank warps them: the optimised images' own measure, on the dataset."""
    from torchvision.transforms import functional as TF
    layers = [layers] if isinstance(layers, str) else list(layers)
    device = next(model.parameters()).device
    means = {layer: [] for layer in layers}
    starts = range(0, len(regions), batch_size)
    with torch.no_grad(), model_guard(model):
        for first in progress_bar(starts, progress, "regions → channel means"):
            rgb = torch.stack([TF.to_tensor(regions.warp(r, size))
                               for r in range(first, min(first + batch_size, len(regions)))])
            outputs = layer_outputs(model, model.spec.normalize(rgb.to(device)), layers)
            for layer in layers:
                means[layer].append(outputs[layer].float().mean((2, 3)).cpu())
    return {layer: torch.cat(values).numpy() for layer, values in means.items()}


def high_frequency_share(rgb, cutoff=0.125):
    """The share of an image's energy above ``cutoff`` cycles per pixel (wavelengths shorter
    than 1/cutoff px): Σ_{|f|>cutoff} |X(f)|² / Σ_f |X(f)|², X the 2-D Fourier transform of
    the gray level with its mean removed. White noise: about 1 − π·cutoff² (0.95 at 1/8);
    the bundled photos at 128 px: a median of about 0.1. One value per image."""
    gray = rgb.float().mean(dim=1)
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.fft2(gray).abs().pow(2)
    h, w = gray.shape[-2:]
    radius = torch.hypot(torch.fft.fftfreq(h)[:, None], torch.fft.fftfreq(w)[None, :])
    return (power * (radius > cutoff)).sum((-2, -1)) / power.sum((-2, -1)).clamp_min(1e-12)


def stretched(rgb):
    """Each image's contrast stretched around the mean gray for display: μ + (x − μ)·0.5/max|x − μ|.
    (The faint images of the pixel methods; the measurements use the images themselves.)"""
    centred = rgb - 0.5
    return 0.5 + 0.5 * centred / centred.abs().flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- the claims

def sign_test(wins, n, alpha=0.05):
    """True if ``wins`` of ``n`` paired comparisons going one way is more than chance: the
    one-sided binomial tail P(K ≥ wins | n, ½) is below ``alpha`` (6 of 6, 7 of 8, 8 of 10)."""
    from scipy.stats import binomtest
    return n > 0 and binomtest(int(wins), int(n), 0.5, alternative="greater").pvalue < alpha


def beats_dataset(optimised, patches):
    """Claim: the optimised image excites its channel more than any dataset region does.
    ``optimised``: the channel's objective on the image; ``patches``: the same measure on every
    region of the collection, at the same input size (``channel_means``). True if above
    their maximum."""
    return bool(float(optimised) > float(np.max(np.asarray(patches))))


def keeps_more(first, second, alpha=0.05):
    """Claim: images ``first`` keep more of their activation under random transformations
    (``survival``) than images ``second`` of the same channels, by a sign test over channels."""
    return exceeds(first, second, alpha)


def exceeds(first, second, alpha=0.05):
    """Claim: values ``first`` (an objective, a contrast, a high-frequency share ...) are larger
    than values ``second`` of the same channels, channel by channel, by a sign test."""
    first, second = np.broadcast_arrays(np.asarray(first, float), np.asarray(second, float))
    return sign_test(int((first > second).sum()), first.size, alpha)


def raises_each(on_pictures, on_gray):
    """Claim: every objective is higher on the picture optimised for it than on the mid-gray
    image (dicts or sequences in the same order). True only if all of them are."""
    pictures = list(on_pictures.values()) if isinstance(on_pictures, dict) else list(on_pictures)
    gray = list(on_gray.values()) if isinstance(on_gray, dict) else list(on_gray)
    if len(pictures) != len(gray) or not pictures:
        raise ValueError(f"{len(pictures)} pictures and {len(gray)} gray values: give one of each per objective.")
    return all(float(p) > float(g) for p, g in zip(pictures, gray))


def less_high_frequency(first, second, alpha=0.05):
    """Claim: images ``first`` have a smaller share of their energy at high frequencies
    (``high_frequency_share``) than images ``second`` of the same channels (sign test)."""
    return exceeds(second, first, alpha)


def gram_similarity(model, layer, rgb):
    """Mean pairwise cosine similarity of the images' Gram matrices at ``layer`` (the
    quantity the diversity term lowers; 1: the same style)."""
    objective = diversity(layer)
    return float(activation(model, objective, rgb)[0])


def less_alike(diverse, plain):
    """Claim: images made with the diversity term are less alike (``gram_similarity``) than
    images of the same objective made without it, from other random starts."""
    return bool(diverse < plain)
