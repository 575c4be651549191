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
