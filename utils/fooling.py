"""Fooling images: a change too small to see that makes the network say another class.

Targeted iterative gradient steps (the lecture's fooling images; Kurakin et al.'s iterative
version of FGSM, x' = x - α·sign(∇ₓ loss)): at each step move every pixel by ``step`` (a
fraction of the pixel range) against the gradient of the cross-entropy towards the
``target`` class, keep the total change within ``epsilon`` of the pixel range (L∞) and the
pixels valid, and stop as soon as the network predicts ``target``. Images of a batch are
treated independently: each stops on its own.
"""
import torch
import torch.nn.functional as F

from .env import progress_bar
from .hooks import model_guard
from .images import image_batch
from .models import valid_range as model_valid_range
from .targets import predicted_target


def fool(model, x, target, step=0.5 / 255, epsilon=8 / 255, max_steps=100, valid_range=None,
         progress=True):
    """Return (fooled batch, info). ``step`` and ``epsilon`` are fractions of the pixel range
    ([0, 1] RGB), converted per channel to the normalised space of ``x``.

    info: ``"success"`` (N bools), ``"steps"`` (N ints), ``"linf"`` (N floats: max |change| as
    a fraction of the pixel range), ``"pred"`` (N predicted classes at the end).
    Interrupting (■) stops within one step and returns the images so far.
    """
    x = image_batch(x, model)
    n = x.shape[0]
    t = predicted_target(model, x, target)
    low, high = valid_range if valid_range is not None else model_valid_range(model, x.device)
    low, high = low.to(x), high.to(x)
    scale = high - low                       # one unit of pixel range, per channel
    adv = x.detach().clone()
    steps = torch.zeros(n, dtype=torch.long)
    with model_guard(model, freeze=True):
        try:
            for _ in progress_bar(range(max_steps + 1), progress, "fooling"):
                adv.requires_grad_(True)
                with torch.enable_grad():
                    logits = model(adv)
                    loss = F.cross_entropy(logits, t, reduction="sum")
                    (grad,) = torch.autograd.grad(loss, adv)
                active = (logits.argmax(1) != t).detach()
                if not active.any() or int(steps.max()) >= max_steps:
                    break
                move = (step * scale * grad.sign()) * active.view(-1, 1, 1, 1)
                new = adv.detach() - move
                new = x + torch.max(torch.min(new - x, epsilon * scale), -epsilon * scale)
                adv = torch.max(torch.min(new, high), low)     # only a finished step counts
                steps += active.cpu().long()
        except KeyboardInterrupt:
            print(f"Interrupted after {int(steps.max())} steps: returning the images so far.")
    adv = adv.detach()
    with torch.no_grad(), model_guard(model):
        pred = model(adv).argmax(1)
    linf = ((adv - x).abs() / scale).flatten(1).amax(1)
    info = {"success": (pred == t).cpu(), "steps": steps, "linf": linf.cpu(), "pred": pred.cpu()}
    return adv.detach(), info


def random_sign_perturbation(x, linf, valid_range=None, seed=0, model=None):
    """``x`` with every value moved by ±``linf`` (a fraction of the pixel range, per channel),
    signs drawn at random, clipped to valid pixels: as large as a fooling change in L∞, and
    larger in every other norm (every pixel moves by the full amount)."""
    low, high = valid_range if valid_range is not None else model_valid_range(model, x.device)
    low, high = low.to(x), high.to(x)
    gen = torch.Generator().manual_seed(seed)
    signs = (torch.randint(0, 2, x.shape, generator=gen) * 2 - 1).to(x)
    return torch.max(torch.min(x + signs * linf * (high - low), high), low)


@torch.no_grad()
def fooled_by_direction(model, x, fooled, target, trials=8, seed=0, valid_range=None):
    """True if the fooling change works by its direction, not its size (Szegedy et al.;
    Goodfellow et al.: random noise rarely changes the class): ``fooled`` (1×3×H×W) is
    classified as ``target``, and each of ``trials`` random ±L∞ perturbations of ``x`` with
    the same L∞ as ``fooled − x`` keeps ``x``'s own label.

    Chance is the random direction; no threshold beyond "every trial keeps the label".
    """
    low, high = valid_range if valid_range is not None else model_valid_range(model, x.device)
    with model_guard(model):
        label = int(model(x).argmax(1)[0])
        if int(model(fooled).argmax(1)[0]) != int(target):
            return False
        linf = float(((fooled - x).abs() / (high - low).to(x)).max())
        return all(int(model(random_sign_perturbation(x, linf, (low, high), seed + k)).argmax(1)[0])
                   == label for k in range(trials))
