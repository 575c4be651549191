"""Class model visualisation (Simonyan, Vedaldi & Zisserman 2014, §2).

Find an image I that the network scores highly for class c:

    I* = argmax_I  S_c(I) - λ ||I||²

with S_c the *unnormalised* score (the logit: maximising the softmax would mostly push the
other classes down). The paper gives neither λ nor the step size; we follow the lecture recipe
(CS231n), which adds two image priors that make the result readable:

* a normalised gradient step  I ← I + lr · g / ||g||₂  with g = ∇(S_c - λ||I||²);
* random **jitter** (roll the image by up to ``jitter`` pixels before the step, roll back
  after), so the image cannot rely on exact pixel positions;
* a light Gaussian **blur** every ``blur_every`` steps, which suppresses high frequencies;
* clamping to the range of valid (normalised) pixels.

Defaults are CS231n's (lr 25, λ = 1e-3, jitter 16 px, σ = 0.5 every 10 steps), set for inputs
normalised with ImageNet statistics; several classes are optimised together as one batch.
"""
import numpy as np
import torch

from .env import progress_bar
from .attribution import class_scores
from .hooks import model_guard
from .images import blur, image_batch
from .models import valid_range as model_valid_range
from .targets import check_target, predicted_target


def class_model(model, target, size=224, steps=200, lr=25.0, l2=1e-3, jitter=16,
                blur_every=10, blur_sigma=0.5, valid_range=None, init=None, seed=0,
                progress=True):
    """Gradient ascent on S_c(I) - λ||I||² for each class of ``target``; returns N×3×S×S.

    ``target``: a class (int or label) or a list of classes, one image each (None: the top-1
    class of ``init``). ``valid_range`` is the (low, high) pair of normalised black and white
    (default: ``utils.models.valid_range(model)``). ``init`` defaults to small random noise.
    Interrupting (■) stops within one step and returns the images of the last full step.
    """
    device = next(model.parameters()).device
    init = image_batch(init, model) if init is not None else None
    n = init.shape[0] if init is not None else max(len(target) if np.ndim(target) == 1 else 1, 1)
    t = check_target(model, target, n) if target is not None else None
    low, high = valid_range if valid_range is not None else model_valid_range(model, device)
    low, high = low.to(device), high.to(device)
    gen = torch.Generator().manual_seed(seed)
    img = init.clone().to(device) if init is not None else \
        (0.1 * torch.randn(n, 3, size, size, generator=gen)).to(device)
    with model_guard(model, freeze=True):
        if t is None:
            t = predicted_target(model, img, None)
        try:
            for step in progress_bar(range(steps), progress, "class model"):
                dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                rolled = img.roll((dy, dx), dims=(2, 3)).detach().requires_grad_(True)
                with torch.enable_grad():
                    objective = class_scores(model, rolled, t) - l2 * rolled.pow(2).flatten(1).sum(1)
                    (grad,) = torch.autograd.grad(objective.sum(), rolled)
                norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                new = (rolled.detach() + lr * grad / norm).roll((-dy, -dx), dims=(2, 3))
                new = torch.max(torch.min(new, high), low)
                if blur_every and (step + 1) % blur_every == 0:
                    new = blur(new, blur_sigma)
                img = new                       # only a finished step replaces the image
        except KeyboardInterrupt:
            print(f"Interrupted after {step} of {steps} steps: returning the image so far.")
    return img.detach()
