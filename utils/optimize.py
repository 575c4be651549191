"""Optimise an *image* (not the network) so that a loss of it goes down.

Texture synthesis, style transfer, DeepDream and feature inversion all share one loop:

    x  <- a start image (white noise, the content photo, ...)
    repeat:  x <- x - step · (direction from ∇ₓ loss(x))      # the network's weights are frozen
             x <- clamp(x, black, white)                     # stay a displayable image

``optimize_image`` is that loop, once, for all of them. Gatys et al. use L-BFGS (the
default here, as ``torch.optim.LBFGS`` with a closure); DeepDream and inversion use plain
gradient steps (``optimizer="adam"`` or ``"sgd"``). The loop

* never touches the model: with ``model=`` it runs inside ``model_guard(freeze=True)``,
  so weights get no gradient and every flag is restored afterwards;
* keeps the image in the valid pixel range. The papers use L-BFGS-B with box bounds;
  PyTorch's L-BFGS has none, so we clamp after every iteration (the usual adaptation);
* shows a progress bar, and stops cleanly: interrupt the kernel (■), or press a Stop
  button that sets ``stop`` (an ``threading.Event`` or any callable returning True), and
  you get the best image so far, not an exception;
* is re-runnable: every call starts from a fresh copy of ``x0`` with a fresh optimiser,
  so running a cell twice gives the same result twice.
"""
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .hooks import model_guard


@dataclass
class OptimResult:
    """What ``optimize_image`` returns."""
    image: torch.Tensor                  # the best image found (detached, clamped)
    losses: list                         # loss at the start of each iteration, then the final one
    snapshots: dict = field(default_factory=dict)   # iteration -> image, every ``snapshot_every``
    stopped: bool = False                # True if interrupted or stopped early
    seconds: float = 0.0
    parts: dict = field(default_factory=dict)       # last value of each named loss term
    evaluations: int = 0                 # forward+backward passes (L-BFGS line search adds some)

    @property
    def reduction(self):
        """First loss / best loss: how many times smaller the loss became."""
        best = min(self.losses) if self.losses else math.nan
        return self.losses[0] / best if self.losses and best > 0 else math.inf


def _should_stop(stop):
    if stop is None:
        return False
    return stop.is_set() if hasattr(stop, "is_set") else bool(stop())


def _make_optimizer(name, x, lr, history_size):
    if name == "lbfgs":
        # max_iter=1: one L-BFGS iteration per .step(), so we can clamp, report and stop
        # between iterations; the curvature history is kept across calls.
        return torch.optim.LBFGS([x], lr=lr, max_iter=1, history_size=history_size,
                                 line_search_fn="strong_wolfe",
                                 tolerance_grad=0.0, tolerance_change=0.0)
    if name == "adam":
        return torch.optim.Adam([x], lr=lr)
    if name == "sgd":
        return torch.optim.SGD([x], lr=lr)
    raise ValueError(f"Unknown optimizer {name!r}; use 'lbfgs', 'adam' or 'sgd'.")


def optimize_image(loss_fn, x0, steps, low=None, high=None, model=None, optimizer="lbfgs",
                   lr=1.0, history_size=20, stop=None, snapshot_every=0, progress=True,
                   description="optimising"):
    """Minimise ``loss_fn(x)`` over the image ``x``, starting from ``x0``; return an ``OptimResult``.

    ``loss_fn(x)`` returns a scalar tensor, or ``(scalar, {name: float})`` to also report
    the terms it is made of. ``low``/``high`` are per-channel bounds broadcastable to ``x``
    (``spec.valid_range()``: the normalised black and white). ``model`` is frozen and
    restored by ``model_guard`` for the duration. L-BFGS, as in Gatys et al.:

        closure:  g = ∇ₓ loss(x);   step:  x ← x + t·d,  d from the last ``history_size``
                  (Δx, Δg) pairs, t from a strong-Wolfe line search;   then clamp x.
    """
    x = x0.detach().clone().requires_grad_(True)
    opt = _make_optimizer(optimizer, x, lr, history_size)
    result = OptimResult(image=x.detach().clone(), losses=[])
    best = math.inf
    last = {}

    def closure():
        opt.zero_grad(set_to_none=True)
        out = loss_fn(x)
        loss, parts = out if isinstance(out, tuple) else (out, {})
        if not torch.isfinite(loss):
            raise FloatingPointError("The loss became NaN or infinite: lower the learning "
                                     "rate or the loss weights.")
        loss.backward()
        result.evaluations += 1
        if not last:          # the first call of a step scores x itself (later: line search)
            last.update(loss=float(loss.detach()), parts=parts)
        return loss

    start = time.perf_counter()
    guard = model_guard(model, freeze=True) if model is not None else nullcontext()
    bar = tqdm(range(steps), desc=description, disable=not progress, leave=False)
    with guard:
        try:
            for i in bar:
                if _should_stop(stop):
                    result.stopped = True
                    break
                before = x.detach().clone()
                last.clear()
                opt.step(closure)
                with torch.no_grad():
                    if low is not None or high is not None:
                        x.copy_(x.clamp(min=low, max=high))
                        _tell_lbfgs_the_step(opt, x, before)
                # the loss reported is the one evaluated at the start of the iteration (x before the step)
                result.losses.append(last["loss"])
                result.parts = dict(last["parts"])
                if last["loss"] < best:
                    best = last["loss"]
                    result.image = before
                if snapshot_every and (i + 1) % snapshot_every == 0:
                    result.snapshots[i + 1] = x.detach().clone()
                bar.set_postfix(loss=f"{last['loss']:.3g}")
        except KeyboardInterrupt:
            result.stopped = True
        finally:
            bar.close()
    # the final image has not been scored yet: keep it if it is at least as good
    with torch.no_grad(), (model_guard(model, freeze=True) if model is not None else nullcontext()):
        out = loss_fn(x.detach())
        final = float(out[0] if isinstance(out, tuple) else out)
    if math.isfinite(final) and final <= best:
        result.image = x.detach().clone()
        result.losses.append(final)
    result.seconds = time.perf_counter() - start
    return result


def _tell_lbfgs_the_step(opt, x, before):
    """After clamping, the step taken is x − before, not the t·d L-BFGS planned. L-BFGS builds
    its next curvature pair from s = t·d, so we store the real step there (t = 1)."""
    state = opt.state.get(x) if isinstance(opt, torch.optim.LBFGS) else None
    if state and "d" in state:
        state["d"] = (x - before).flatten()
        state["t"] = 1.0


def white_noise_like(x, low, high, amplitude=1.0, generator=None):
    """White noise in the valid range (the start image of Gatys et al.), around mid-gray.

    ``amplitude=1`` fills the whole range [low, high] uniformly; smaller values give fainter
    noise, uniform in ``mid ± amplitude·(high − low)/2``.
    """
    u = torch.rand(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
    mid, half = (low + high) / 2, (high - low) / 2
    return mid + amplitude * (2 * u - 1) * half
