"""Optimise an *image* (not the network) so that a loss of it goes down.

Texture synthesis, style transfer, DeepDream and feature inversion all share one loop:

    x  <- a start image (white noise, the content photo, ...)
    repeat:  x <- x - step · (direction from ∇ₓ loss(x))      # the network's weights are frozen
             x <- clamp(x, black, white)                     # stay a displayable image

``optimize_image`` is that loop, once, for all of them; the methods differ in the step:

* Gatys et al. (texture, style): L-BFGS, ``optimizer="lbfgs"`` (the default);
* Mahendran & Vedaldi (inversion): ``optimizer="sgd"`` with ``momentum=0.9`` and a
  stepwise learning rate ``lr=[...]`` (one per iteration; momentum restarts when it changes);
* DeepDream: its own step x ← x + η·g/mean|g|, passed as ``optimizer=`` a function that
  builds a ``torch.optim.Optimizer`` (``utils.deepdream.NormalizedStep``); ``keep="last"``.

The loop

* never touches the model: with ``model=`` it runs inside ``model_guard(freeze=True)``,
  so weights get no gradient and every flag is restored afterwards;
* keeps the image in the valid pixel range. The papers use L-BFGS-B with box bounds;
  PyTorch's L-BFGS has none, so we clamp after every iteration (the usual adaptation);
* optimises a batch of independent images when ``loss_fn`` returns one loss per image:
  it minimises their sum, and each image keeps its own best point;
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

from .env import progress_bar
from .hooks import model_guard


@dataclass
class OptimResult:
    """What ``optimize_image`` returns."""
    image: torch.Tensor                  # the best image found (detached, clamped), or the last
    losses: list                         # loss at the start of each iteration, then that of `image`
    snapshots: dict = field(default_factory=dict)   # iteration -> image, every ``snapshot_every``
    stopped: bool = False                # True if interrupted or stopped early
    seconds: float = 0.0
    parts: dict = field(default_factory=dict)       # last value of each named loss term
    history: list = field(default_factory=list)     # the named terms, one dict per entry of losses
    evaluations: int = 0                 # forward+backward passes (L-BFGS line search adds some)
    restarts: int = 0                    # images sent back to their best point (``blowup``)

    @property
    def reduction(self):
        """First loss / best loss: how many times smaller the loss became."""
        best = min(self.losses) if self.losses else math.nan
        return self.losses[0] / best if self.losses and best > 0 else math.inf


LINE_SEARCH_EVALUATIONS = 25     # at most, per L-BFGS iteration (torch's strong-Wolfe default)


def _should_stop(stop):
    if stop is None:
        return False
    return stop.is_set() if hasattr(stop, "is_set") else bool(stop())


def _make_optimizer(name, x, lr, momentum, history_size):
    if callable(name):
        return name([x], lr)
    if name == "lbfgs":
        # max_iter=1: one L-BFGS iteration per .step(), so we can clamp, report and stop
        # between iterations; the curvature history is kept across calls. max_eval: torch's
        # default for max_iter=1 is one evaluation per step, which leaves the line search
        # none: a rejected trial step would be rejected again at every later iteration.
        return torch.optim.LBFGS([x], lr=lr, max_iter=1, max_eval=1 + LINE_SEARCH_EVALUATIONS,
                                 history_size=history_size,
                                 line_search_fn="strong_wolfe",
                                 tolerance_grad=0.0, tolerance_change=0.0)
    if name == "adam":
        return torch.optim.Adam([x], lr=lr)
    if name == "sgd":
        # PyTorch's v ← μv + g, x ← x − lr·v is the papers' v ← μv − lr·g, x ← x + v
        # (the two velocities differ by the factor −lr, which is constant between resets)
        return torch.optim.SGD([x], lr=lr, momentum=momentum)
    raise ValueError(f"Unknown optimizer {name!r}; use 'lbfgs', 'adam', 'sgd' or a function "
                     "params, lr -> torch.optim.Optimizer.")


def _split(out):
    """``loss_fn``'s output -> (loss tensor, {name: value})."""
    return out if isinstance(out, tuple) else (out, {})


def _as_record(value):
    value = torch.as_tensor(value).detach()
    return float(value) if value.dim() == 0 else value.flatten().tolist()


def optimize_image(loss_fn, x0, steps, low=None, high=None, model=None, optimizer="lbfgs",
                   lr=1.0, momentum=0.0, history_size=20, keep="best", blowup=None, stop=None,
                   snapshot_every=0, progress=True, description="optimising"):
    """Minimise ``loss_fn(x)`` over the image ``x``, starting from ``x0``; return an ``OptimResult``.

    ``loss_fn(x)`` returns a scalar tensor, or one loss per image (a vector: the images are
    independent and each keeps its own best point), optionally as ``(loss, {name: value})``
    to also report the terms it is made of. ``low``/``high`` are per-channel bounds
    broadcastable to ``x`` (``spec.valid_range()``: the normalised black and white).
    ``model`` is frozen and restored by ``model_guard`` for the duration.

    ``lr``: a number, or one per iteration (a schedule); when it changes, the optimiser's
    state is cleared, so momentum restarts. ``keep``: "best" (the image with the lowest
    loss) or "last". ``blowup``: with a gradient-step optimiser, an image whose loss turns
    NaN or exceeds ``blowup`` × its best goes back to its best point, loses its momentum and
    continues with half the step (a safeguard; without it a NaN loss raises an error).

    L-BFGS, as in Gatys et al.:

        closure:  g = ∇ₓ loss(x);   step:  x ← x + t·d,  d from the last ``history_size``
                  (Δx, Δg) pairs, t from a strong-Wolfe line search;   then clamp x.

    It minimises loss(x) / |loss(x0)|, the same minimum in units of the start's loss:
    torch's L-BFGS has absolute tolerances (it drops curvature pairs with Δxᵀ·Δg ≤ 1e-10),
    which a loss of 1e-5 (a network with random weights) never passes. ``losses`` are
    reported in the loss's own units. Each iteration starts where the previous line search
    stopped; that point's loss and gradient are remembered, not computed twice.
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {keep!r}.")
    schedule = list(lr) if isinstance(lr, (list, tuple)) else [lr] * steps
    if len(schedule) < steps:
        raise ValueError(f"The learning-rate schedule has {len(schedule)} values for {steps} steps.")
    x = x0.detach().clone().requires_grad_(True)
    low, high = (b.to(x) if torch.is_tensor(b) else b for b in (low, high))   # bounds made on the CPU
    opt = _make_optimizer(optimizer, x, schedule[0] if schedule else 1.0, momentum, history_size)
    lbfgs = isinstance(opt, torch.optim.LBFGS)
    result = OptimResult(image=x.detach().clone(), losses=[])
    best = None                            # each image's lowest loss so far (a tensor)
    step_scale = torch.ones(())            # per-image step factor, halved by a restart
    last = {}
    unit = []                              # L-BFGS: the loss of x0, its unit
    memo = []                              # L-BFGS: the points evaluated during the last step

    def evaluate():
        loss, parts = _split(loss_fn(x))
        finite = torch.isfinite(loss.detach())
        if not finite.all() and (blowup is None or lbfgs or best is None
                                 or not torch.isfinite(best[~finite]).all()):
            raise FloatingPointError("The loss became NaN or infinite: lower the learning "
                                     "rate or the loss weights.")
        total = loss.sum()
        if lbfgs:             # in units of the start's loss (see the docstring)
            if not unit:
                unit.append(float(total.detach().abs()) or 1.0)
            total = total / unit[0]
        total.backward()
        if step_scale.dim():
            x.grad.mul_(step_scale)
        result.evaluations += 1
        return total.detach(), loss.detach(), parts

    def closure():
        opt.zero_grad(set_to_none=True)
        starting = not last   # the first call of a step scores x itself (later: line search)
        seen = [m for m in memo if starting and torch.equal(m[0], x)]
        if seen:              # where the last line search stopped: no need to compute it again
            total, loss, parts, x.grad = *seen[0][1:4], seen[0][4].clone()
        else:
            total, loss, parts = evaluate()
        if lbfgs:
            if starting:
                memo.clear()
            memo.append((x.detach().clone(), total, loss, parts, x.grad.clone()))
        if starting:
            last.update(loss=loss, parts=parts)
        return total

    def record(loss, parts):
        result.losses.append(float(loss.sum()))
        result.parts = {name: _as_record(value) for name, value in parts.items()}
        result.history.append(result.parts)

    start = time.perf_counter()
    guard = model_guard(model, freeze=True) if model is not None else nullcontext()
    bar = progress_bar(range(steps), progress, description)
    with guard:
        try:
            for i in bar:
                if _should_stop(stop):
                    result.stopped = True
                    break
                _set_rate(opt, schedule, i)
                before = x.detach().clone()
                last.clear()
                opt.step(closure)
                loss = last["loss"]                     # the loss of x *before* the step
                best = _keep_best(result, before, loss, best)
                with torch.no_grad():
                    if blowup is not None and not lbfgs:
                        blown = ~torch.isfinite(loss) | (loss > blowup * best)
                        if blown.any():
                            step_scale = _restart(opt, x, blown, result.image, step_scale)
                            result.restarts += int(blown.sum())
                    if low is not None or high is not None:
                        x.copy_(x.clamp(min=low, max=high))
                        _tell_lbfgs_the_step(opt, x, before)
                # the loss reported is the one evaluated at the start of the iteration (x before the step)
                record(torch.where(torch.isfinite(loss), loss, best), last["parts"])
                if snapshot_every and (i + 1) % snapshot_every == 0:
                    result.snapshots[i + 1] = x.detach().clone()
                bar.set_postfix(loss=f"{result.losses[-1]:.3g}")
        except KeyboardInterrupt:
            result.stopped = True
        finally:
            bar.close()
    with torch.no_grad(), (model_guard(model, freeze=True) if model is not None else nullcontext()):
        _finish(result, loss_fn, x.detach(), best, keep, record)
    result.seconds = time.perf_counter() - start
    return result


def _set_rate(opt, schedule, i):
    """Iteration i's learning rate; a new rate clears the optimiser's state (momentum)."""
    if i > 0 and schedule[i] != schedule[i - 1]:
        opt.state.clear()
    for group in opt.param_groups:
        group["lr"] = schedule[i]


def _keep_best(result, images, loss, best):
    """Put each image that beat its best loss into ``result.image``; return the new bests."""
    if best is None:
        best = torch.full_like(loss, math.inf)
    improved = loss < best
    if loss.dim():
        result.image[improved] = images[improved]
    elif improved:
        result.image = images
    return torch.where(improved, loss, best)


def _finish(result, loss_fn, final, best, keep, record):
    """The final image has not been scored yet: score it, keep it where it is at least as
    good as the best (every image with ``keep="last"``), and record the returned images' loss."""
    loss, parts = _split(loss_fn(final))
    take = torch.ones_like(loss, dtype=torch.bool) if keep == "last" or best is None else \
        torch.isfinite(loss) & (loss <= best)
    if take.all():
        result.image = final.clone()
    elif take.any():
        result.image[take] = final[take]
    if not take.all():                        # some images went back: score what is returned
        loss, parts = _split(loss_fn(result.image))
    record(loss, parts)


def _restart(opt, x, rows, best_images, step_scale):
    """Send images ``rows`` back to their best point, clear their optimiser state (momentum)
    and halve their step. Returns the new per-image step factor."""
    if rows.dim() == 0:                       # one loss for the whole batch: all images
        rows = rows.expand(x.shape[0])
    x[rows] = best_images[rows]
    for value in opt.state[x].values():
        if torch.is_tensor(value) and value.shape == x.shape:
            value[rows] = 0
    if not step_scale.dim():
        step_scale = torch.ones(x.shape[0], *[1] * (x.dim() - 1), dtype=x.dtype, device=x.device)
    step_scale[rows] /= 2
    return step_scale


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
