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
import math

import torch
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from .attribution import class_scores, target_indices
from .hooks import model_guard


def blur(x, sigma):
    """Gaussian blur of an N×3×H×W batch (kernel of ±3σ)."""
    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


def class_model(model, targets, size=224, steps=200, lr=25.0, l2=1e-3, jitter=16,
                blur_every=10, blur_sigma=0.5, valid_range=None, init=None, seed=0,
                progress=False):
    """Gradient ascent on S_c(I) - λ||I||² for each class in ``targets``; returns N×3×S×S.

    ``valid_range`` is the (low, high) pair of normalised black and white (default:
    ``model.spec.valid_range()``, or [0, 1]). ``init`` defaults to small random noise.
    """
    spec = getattr(model, "spec", None)
    device = next(model.parameters()).device
    n = len(targets) if hasattr(targets, "__len__") else 1
    t = target_indices(targets, n)
    if valid_range is None:
        valid_range = spec.valid_range(device) if spec is not None else (torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    low, high = (v.to(device) for v in valid_range)
    gen = torch.Generator().manual_seed(seed)
    img = init.clone().to(device) if init is not None else \
        (0.1 * torch.randn(n, 3, size, size, generator=gen)).to(device)
    with model_guard(model, freeze=True):
        for step in tqdm(range(steps), disable=not progress, desc="class model", leave=False):
            dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
            img = img.roll((dy, dx), dims=(2, 3)).detach().requires_grad_(True)
            with torch.enable_grad():
                objective = class_scores(model, img, t) - l2 * img.pow(2).flatten(1).sum(1)
                (grad,) = torch.autograd.grad(objective.sum(), img)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            img = (img.detach() + lr * grad / norm).roll((-dy, -dx), dims=(2, 3))
            img = torch.max(torch.min(img, high), low)
            if blur_every and (step + 1) % blur_every == 0:
                img = blur(img, blur_sigma)
    return img.detach()
