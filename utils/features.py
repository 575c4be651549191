"""First-layer filters, activation maps and feature-space neighbours (notebook 01).

Krizhevsky et al. (2012), Fig. 3: the 96 learned 11×11×3 conv1 kernels, each shown as a
small colour image; Fig. 4: images whose last-hidden-layer (fc7, 4096-d) vectors are
closest in Euclidean distance to a query's, although their pixels are far apart.
"""
import numpy as np
import torch
from PIL import Image, ImageOps

from .hooks import capture_activations, resolve_layer


def first_layer_filters(model):
    """Weights of the model's ``first_conv`` role, out_channels × 3 × k × k (CPU copy)."""
    return resolve_layer(model, "first_conv").weight.detach().float().cpu()


def filter_tiles(weights, upscale=1):
    """Each filter rescaled on its own to [0, 1], (w - min) / (max - min), as H×W×3 tiles.

    Per-filter rescaling shows every filter's pattern at full contrast; their relative
    strengths are lost (``filter_norms`` keeps them). ``upscale`` repeats pixels so that
    a 3×3 kernel is visible as a 3×3 block rather than a blur.
    """
    tiles = []
    for w in weights:
        w = (w - w.min()) / (w.max() - w.min() + 1e-12)
        tile = w.permute(1, 2, 0).numpy()
        tiles.append(np.kron(tile, np.ones((upscale, upscale, 1))) if upscale > 1 else tile)
    return tiles


def filter_norms(weights):
    """L2 norm of each filter: which ones the network relies on most."""
    return weights.flatten(1).norm(dim=1)


@torch.no_grad()
def stage_activations(model, x):
    """One forward pass; {stage module path: activation (N×C×h×w)} for the ``stages`` role."""
    stages = model.spec.layer("stages")
    with capture_activations(model, stages) as acts:
        model(x)
    return {name: acts[name] for name in stages}


def strongest_channels(activation, k=6):
    """Indices of the k channels with the largest mean activation (first image)."""
    return activation[0].flatten(1).mean(dim=1).topk(k).indices.tolist()


def sparsity(activation, threshold=0.0):
    """Fraction of activations that are ≤ threshold (off), for the first image."""
    return float((activation[0] <= threshold).float().mean())


def variants(image):
    """The same photo changed in ways that keep its content: flips, crops, zoom, gray, rotate."""
    w, h = image.size
    return {
        "original": image,
        "mirrored": ImageOps.mirror(image),
        "cropped left": image.crop((0, 0, int(w * 0.7), int(h * 0.85))),
        "cropped right": image.crop((int(w * 0.3), int(h * 0.15), w, h)),
        "zoomed": image.crop((w // 6, h // 6, w - w // 6, h - h // 6)),
        "grayscale": ImageOps.grayscale(image).convert("RGB"),
        "rotated": image.rotate(12, resample=Image.BICUBIC, expand=False, fillcolor=(128, 128, 128)),
    }


@torch.no_grad()
def embed(model, images, batch_size=16):
    """Last-hidden-layer vectors (role ``penultimate``), one row per image, batched."""
    device = next(model.parameters()).device
    layer = model.spec.layer("penultimate")
    rows = []
    for start in range(0, len(images), batch_size):
        batch = torch.cat([model.spec.preprocess(im) for im in images[start:start + batch_size]])
        with capture_activations(model, layer) as acts:
            model(batch.to(device))
        rows.append(acts[layer].flatten(1).cpu())
    return torch.cat(rows)


def pixel_vectors(images, size=64):
    """Raw pixels (size×size RGB in [0, 1]) as one row per image: the naive baseline."""
    return torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((size, size)),
                                                    dtype=np.float32) / 255.0).flatten()
                        for im in images])


def nearest_neighbours(query, gallery, k=5):
    """Indices and Euclidean distances of the k gallery rows closest to ``query``."""
    distances = torch.cdist(query[None], gallery)[0]
    order = distances.argsort()[:k]
    return order.tolist(), distances[order].tolist()
