"""First-layer filters, activation maps and feature-space neighbours (notebook 01).

Krizhevsky et al. (2012), Fig. 3: the 96 learned 11×11×3 conv1 kernels (48 on each of the
two GPUs they trained on), each shown as a small colour image; torchvision's ``alexnet`` is
the later one-GPU variant with 64. Zeiler & Fergus (2014, Fig. 6 and §4.1): some of those
kernels are "dead" (no structure) and some alias, from the 11×11 kernels at stride 4. Fig. 4: images whose last-hidden-layer (fc7, 4096-d) vectors are
closest in Euclidean distance to a query's, although their pixels are far apart.
"""
import numpy as np
import torch

from .hooks import capture_activations, model_guard, resolve_layer
from .images import DATA_DIR, ImageError, image_batch, load_image


def first_layer_filters(model):
    """Weights of the model's ``first_conv`` role, out_channels × 3 × k × k (CPU copy)."""
    return resolve_layer(model, "first_conv").weight.detach().float().cpu()


def rescale_filter(w):
    """One filter (C×k×k) rescaled to [0, 1]: (w − min) / (max − min), for display."""
    return (w - w.min()) / (w.max() - w.min() + 1e-12)


def filter_response(x, w, stride=1):
    """One filter's response map: the dot product ⟨w, patch⟩ at every position.

    ``x``: one image C×H×W (already padded), ``w``: one filter C×k×k. Output position (i, j)
    looks at the patch ``x[:, i·stride : i·stride + k, j·stride : j·stride + k]``:

        response[i, j] = Σ_c Σ_u Σ_v w[c, u, v] · x[c, i·stride + u, j·stride + v]

    (a cross-correlation: the filter is not flipped). A conv layer's map for channel c is
    this, plus the channel's bias, before the layer's normalisation and activation.
    ``torch.nn.functional.conv2d(x[None], w[None], stride=stride)[0, 0]`` is the same, fast.
    """
    k = w.shape[-1]
    rows, cols = (x.shape[1] - k) // stride + 1, (x.shape[2] - k) // stride + 1
    response = torch.zeros(rows, cols, dtype=x.dtype)
    for i in range(rows):
        for j in range(cols):
            patch = x[:, i * stride: i * stride + k, j * stride: j * stride + k]
            response[i, j] = (w * patch).sum()
    return response


def filter_tiles(weights, upscale=1):
    """Each filter rescaled on its own to [0, 1], (w - min) / (max - min), as H×W×3 tiles.

    Per-filter rescaling shows every filter's pattern at full contrast; their relative
    strengths are lost (``filter_norms`` keeps them). ``upscale`` repeats pixels so that
    a 3×3 kernel is visible as a 3×3 block rather than a blur.
    """
    tiles = []
    for w in weights:
        tile = rescale_filter(w).permute(1, 2, 0).numpy()
        tiles.append(np.kron(tile, np.ones((upscale, upscale, 1))) if upscale > 1 else tile)
    return tiles


def filter_norms(weights):
    """L2 norm of each filter ‖w‖₂ (before any normalisation layer that follows)."""
    return weights.flatten(1).norm(dim=1)


def following_batchnorm(model, conv):
    """The BatchNorm2d that normalises ``conv``'s output (the next module after it with as
    many features as it has filters), or None (e.g. AlexNet has none)."""
    modules = list(model.modules())
    for module in modules[modules.index(conv) + 1:]:
        if isinstance(module, torch.nn.Conv2d):
            return None
        if isinstance(module, torch.nn.BatchNorm2d) and module.num_features == conv.out_channels:
            return module
    return None


def effective_gains(model):
    """How strongly each first-layer filter drives its channel, a BatchNorm that follows
    folded in. In eval mode BatchNorm computes γ (z − μ) / √(σ² + ε) + β from the conv's
    output z = ⟨w, patch⟩, so the channel's output changes by ‖w‖ · |γ| / √(σ² + ε) per unit
    of input along w: the filter's gain. Without BatchNorm the gain is ‖w‖."""
    conv = resolve_layer(model, "first_conv")
    gains = filter_norms(first_layer_filters(model))
    bn = following_batchnorm(model, conv)
    if bn is not None:
        gains = gains * bn.weight.detach().abs().cpu() / torch.sqrt(bn.running_var.cpu() + bn.eps)
    return gains


def dead_filters(gains, ratio=1e-3):
    """Indices of "dead" filters (Zeiler & Fergus 2014, Fig. 6): a gain below ``ratio`` of the
    median filter's. A thousandth of a typical gain moves the channel by less than 0.1 % of what
    the same patch does to a typical channel: its map is the constant β, and rescaling its
    weights to [0, 1] would only stretch float rounding noise into a pattern."""
    gains = torch.as_tensor(gains)
    return torch.nonzero(gains < ratio * gains.median()).flatten().tolist()


@torch.no_grad()
def stage_activations(model, x):
    """One forward pass (eval mode); {stage module path: activation (N×C×h×w)} for the
    ``stages`` role."""
    x = image_batch(x, model)
    stages = model.spec.layer("stages")
    with model_guard(model), capture_activations(model, stages) as acts:
        model(x)
    return {name: acts[name] for name in stages}


def strongest_channels(activation, k=6):
    """Indices of the k channels with the largest mean activation (first image)."""
    return activation[0].flatten(1).mean(dim=1).topk(k).indices.tolist()


def channel_contrast(activation, border=1):
    """Each channel's contrast on each image: the spatial std of its map, n×C, with a frame
    of ``border`` cells left out (zero padding makes the map's edge an outlier: one bright
    frame or one border cell would otherwise rank a channel that found nothing inside)."""
    if border and min(activation.shape[-2:]) > 2 * border + 1:
        activation = activation[..., border:-border, border:-border]
    return activation.flatten(2).float().std(dim=2).cpu()


def most_varying_channels(activation, k=6, border=1):
    """Indices of the k channels whose map varies most over the image (``channel_contrast``
    of the first image, the map's 1-cell frame left out).

    A channel that is "on" everywhere says little about this picture; one whose map has
    strong contrast has found something specific in it: an edge, a texture, an eye.
    """
    return channel_contrast(activation[:1], border)[0].topk(k).indices.tolist()


def _mean_pairwise_rho(ranks):
    """Mean Spearman ρ over all pairs of rows of a rank matrix (n×C), for each of a stack
    of such matrices (S×n×C)."""
    z = ranks - ranks.mean(axis=-1, keepdims=True)
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    gram = z @ np.swapaxes(z, -1, -2)                         # S×n×n of ρ
    n = ranks.shape[-2]
    return (gram.sum(axis=(-1, -2)) - n) / (n * (n - 1))


def channel_agreement(activation, shuffles=1000, seed=0, quantile=0.95):
    """Do different photos give their contrast to the same channels of a layer? (ρ, chance)

    ρ: Spearman rank correlation, over the layer's channels, of each channel's contrast
    (``channel_contrast``) on photo i and on photo j, averaged over every pair of photos of
    the batch. It is high when a channel's contrast has a typical size whatever the photo
    (generic channels), near 0 when which channels stand out depends on the photo. Chance:
    the ``quantile`` of the same mean when each photo's channels are shuffled on their own
    (channel identities carry nothing from photo to photo).
    """
    from scipy.stats import rankdata
    contrast = channel_contrast(activation).numpy()
    if contrast.shape[0] < 2:
        raise ValueError("Agreement compares photos: give a batch of at least two.")
    ranks = rankdata(contrast, axis=1).astype(np.float32)
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.broadcast_to(ranks, (shuffles, *ranks.shape)), axis=-1)
    return float(_mean_pairwise_rho(ranks)), float(np.quantile(_mean_pairwise_rho(shuffled),
                                                              quantile))


def same_channels_respond(activation):
    """True if the photos of the batch give their contrast to the same channels more than
    shuffled channels would (``channel_agreement``'s mean ρ above the 95th percentile of its
    shuffles). False says: no agreement detectable, not that the photos use other channels."""
    rho, chance = channel_agreement(activation)
    return rho > chance


def rises_at_every_stage(values):
    """True if each value is larger than the one before (e.g. selectivity, stage by stage).

    No tuned margin: the claim is an ordering, and one flat or falling step refutes it."""
    return all(later > earlier for earlier, later in zip(values, values[1:]))


def photos_per_channel(activation, fraction=0.5):
    """Median, over the channels that respond, of the number of photos on which a channel's
    mean activation reaches ``fraction`` of its largest (a generic channel: all of them;
    a specific one: one or two)."""
    r = activation.flatten(2).mean(dim=2).clamp_min(0)          # n × C
    peak = r.max(dim=0).values
    responding = peak > 0
    counts = (r[:, responding] >= fraction * peak[responding]).sum(dim=0)
    return float(counts.float().median())


def sparsity(activation, threshold=0.0):
    """Fraction of activations that are ≤ threshold (off), over every image of the batch."""
    return float((activation <= threshold).float().mean())


# Every photo bundled with the collection (data/images and data/decoder_training) and what it
# shows: the "class" that nearest neighbours should share. Photos alone in their subject
# stay in the gallery as distractors but are not queries (no neighbour could share it).
GALLERY_SUBJECTS = {
    "cat": "animal", "squirrel": "animal", "baboon": "animal", "butterfly": "animal",
    "chicky": "animal",
    "astronaut": "person", "grace_hopper": "person",
    "fruits": "fruit", "apple": "fruit", "orange": "fruit",
    "palace": "building", "building": "building", "home": "building", "leuven": "building",
    "aero1": "building", "aero3": "building",
    "brick": "texture", "grass": "texture", "gravel": "texture",
    "flower": "plant", "aloe": "plant",
    "coffee": "coffee", "ping_pong": "table objects", "rocket": "rocket", "blox": "toy blocks",
    "board": "circuit board", "graffiti": "graffiti", "notebook": "notebook",
    "rubberwhale": "toys", "smarties": "sweets",
}


def gallery_photos():
    """Every bundled photo, [(name, PIL image)]: data/images, then data/decoder_training."""
    paths = sorted((DATA_DIR / "images").glob("*.jpg")) + sorted(
        (DATA_DIR / "decoder_training").glob("*.jpg"))
    return [(path.stem, load_image(path)) for path in paths]


def nearest_lists(vectors, k=5):
    """Each row's k nearest *other* rows (Euclidean), an n×k array of indices."""
    vectors = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    distances = torch.cdist(vectors, vectors)
    distances.fill_diagonal_(float("inf"))
    return distances.argsort(dim=1)[:, :k].numpy()


def neighbour_counts(vectors, k=5):
    """How many other rows count each row among their k nearest (a "hub" is everyone's
    neighbour: in Euclidean distance, a flat image near the mean is close to every image)."""
    found = nearest_lists(vectors, k)
    return np.bincount(found.flatten(), minlength=len(found))


def label_share(neighbours, labels):
    """Share of neighbours that carry their query's label (``neighbours``: one list of
    indices per item). Only items whose label has a second item are queries."""
    labels = np.asarray(labels)
    counts = {label: int((labels == label).sum()) for label in set(labels.tolist())}
    same = [labels[j] == labels[q] for q, found in enumerate(neighbours)
            if counts[labels[q]] > 1 for j in found]
    return float(np.mean(same))


def chance_label_share(neighbours, labels, shuffles=500, seed=0, quantile=0.95):
    """``label_share`` with the labels shuffled among the items: its ``quantile`` over
    ``shuffles`` shuffles (what neighbours reach by chance)."""
    rng = np.random.default_rng(seed)
    return float(np.quantile([label_share(neighbours, rng.permutation(labels))
                              for _ in range(shuffles)], quantile))


def labels_gather(neighbours, labels):
    """True if neighbours carry their query's label more often than chance
    (``label_share`` above the 95th percentile of shuffled labels, ``chance_label_share``)."""
    return label_share(neighbours, labels) > chance_label_share(neighbours, labels)


def beats_by_more_than_chance(neighbours_a, neighbours_b, labels, shuffles=500, seed=0):
    """True if the neighbours of space a carry the query's label more often than those of
    space b, by more than chance: the gap of the two ``label_share`` must exceed the 95th
    percentile of the gap when the labels are shuffled among the items."""
    def gap(shuffled):
        return label_share(neighbours_a, shuffled) - label_share(neighbours_b, shuffled)
    rng = np.random.default_rng(seed)
    null = [gap(rng.permutation(labels)) for _ in range(shuffles)]
    return gap(np.asarray(labels)) > float(np.quantile(null, 0.95))


def same_subject_share(vectors, subjects, k=5):
    """How often a photo's k nearest neighbours show its subject (leave-one-out): the share
    of all neighbours of the photos whose subject has a second photo."""
    return label_share(nearest_lists(vectors, k), subjects)


def chance_share(vectors, subjects, k=5, shuffles=500, seed=0, quantile=0.95):
    """``same_subject_share`` reached by chance: its ``quantile`` when the subjects are
    shuffled among the photos."""
    return chance_label_share(nearest_lists(vectors, k), subjects, shuffles, seed, quantile)


def neighbours_share_subject(vectors, subjects, k=5):
    """True if neighbours in this space show the query's subject more often than chance
    (``same_subject_share`` above the 95th percentile of shuffled subjects)."""
    return labels_gather(nearest_lists(vectors, k), subjects)


def closer_in_meaning(feature_vectors, pixel_vectors, subjects, k=5):
    """True if feature-space neighbours share the query's subject more often than pixel-space
    neighbours, by more than chance (``beats_by_more_than_chance``)."""
    return beats_by_more_than_chance(nearest_lists(feature_vectors, k),
                                     nearest_lists(pixel_vectors, k), subjects)


@torch.no_grad()
def embed(model, images, batch_size=16):
    """Last-hidden-layer vectors (role ``penultimate``), one row per image, batched.

    ``images``: a list of pictures (anything ``load_image`` reads), not a tensor.
    """
    if not isinstance(images, (list, tuple)):
        raise ImageError(f"embed takes a list of images (PIL images, paths, names), not a "
                         f"{type(images).__name__}: for one image pass [image].")
    device = next(model.parameters()).device
    layer = model.spec.layer("penultimate")
    rows = []
    for start in range(0, len(images), batch_size):
        batch = torch.cat([model.spec.preprocess(im) for im in images[start:start + batch_size]])
        with model_guard(model), capture_activations(model, layer) as acts:
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


def selectivity(activation):
    """How image-specific a layer's channels are: the lifetime sparseness of each channel over
    the images of the batch (Vinje & Gallant 2000), averaged over the channels that respond.

    With r_i the channel's mean activation on image i of n (negative values count as 0):

        S = (1 − (Σ r_i / n)² / (Σ r_i² / n)) / (1 − 1/n)

    0: the channel responds equally to every picture (a generic edge or colour detector);
    1: it responds to one picture only (a specific part or object).
    """
    if activation.shape[0] < 2:
        raise ValueError("Selectivity compares images: give a batch of at least two.")
    r = activation.flatten(2).mean(dim=2).clamp_min(0)          # n × C
    n = r.shape[0]
    responding = r.pow(2).mean(0) > 0
    s = (1 - r.mean(0).pow(2) / r.pow(2).mean(0)) / (1 - 1 / n)
    return float(s[responding].mean())


# ---------------------------------------------------------------- figures (pure functions)

def plot_filters(model, ncols=5, upscale=None, size=2.2):
    """The first-layer filters as a grid of colour tiles (Krizhevsky et al., Fig. 3), sorted
    by ``effective_gains`` (largest first); dead filters (``dead_filters``) are drawn as a
    flat grey tile marked "dead" instead of their rescaled float noise."""
    from .plotting import grid_axes
    weights = first_layer_filters(model)
    k = weights.shape[-1]
    upscale = upscale or max(1, 24 // k)
    gains = effective_gains(model)
    dead = set(dead_filters(gains))
    order = gains.argsort(descending=True).tolist()
    tiles = filter_tiles(weights[order], upscale)
    fig, axes = grid_axes(len(tiles), ncols=min(ncols, len(tiles)), size=size,
                          title=f"{model.spec.name}: {len(tiles)} first-layer filters, {k}×{k}×3, "
                                f"largest gain first; {len(dead)} dead")
    for ax, tile, index in zip(axes, tiles, order):
        if index in dead:
            ax.imshow(np.full_like(tile, 0.5), vmin=0, vmax=1)
            ax.text(0.5, 0.5, "dead", transform=ax.transAxes, ha="center", va="center",
                    fontsize=13, color="white", fontweight="bold")
        else:
            ax.imshow(tile, interpolation="nearest")
        ax.set_title(f"#{index}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_stage_overview(image, activations, n_channels=4, title=None):
    """One row per stage: the input, then its n most varying channels as gray maps."""
    import matplotlib.pyplot as plt
    names = list(activations)
    row_height = 2.6 * image.size[1] / image.size[0] + 0.6          # panel + two title lines
    fig, axes = plt.subplots(len(names), n_channels + 1, squeeze=False,
                             figsize=(2.6 * (n_channels + 1), row_height * len(names)))
    for row, name in enumerate(names):
        act = activations[name]
        axes[row, 0].imshow(image)
        axes[row, 0].set_title(f"{name}\n{act.shape[1]}×{act.shape[2]}×{act.shape[3]}", fontsize=10)
        for col, channel in enumerate(most_varying_channels(act, n_channels), start=1):
            values = act[0, channel].float().cpu()
            inner = values[1:-1, 1:-1]                    # the grey scale ignores the frame
            axes[row, col].imshow(values, cmap="gray", vmin=float(inner.min()),
                                  vmax=float(inner.max()), extent=photo_extent(image))
            axes[row, col].set_title(f"ch {channel}", fontsize=11)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title or "Channels with the most contrast at each stage (bright = strong)")
    fig.tight_layout()
    return fig


def photo_extent(image):
    """``imshow`` extent that stretches a (square) map over the photo's own width × height:
    the network sees the photo squashed to a square, shown back at the photo's shape."""
    width, height = image.size
    return (0, width, height, 0)


def plot_channel(image, activation, channel, layer_name=""):
    """One channel's activation map next to the image, and overlaid on it, each normalized
    from its min to its max on a fixed colour scale, so that ``update_channel`` can show
    another channel in place (the titles give the max)."""
    import matplotlib.pyplot as plt

    from .plotting import STRETCHED, show_heatmap, show_map
    first = np.zeros(activation.shape[-2:], dtype=np.float32)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    axes[0].imshow(image)
    axes[0].axis("off")
    axes[0].set_title("input")
    show_map(first, ax=axes[1], cmap="gray")
    axes[1].images[0].set_extent(photo_extent(image))
    show_heatmap(image, first, ax=axes[2])
    for ax in axes[1:]:
        ax.images[-1].colorbar.set_label(STRETCHED, fontsize=10)
    update_channel(fig, activation, channel, layer_name)
    fig.tight_layout()
    return fig


def update_channel(fig, activation, channel, layer_name=""):
    """Show another channel (or layer) of the same image in a ``plot_channel`` figure, in
    place; returns the artists that changed (for ``widgets.connect``)."""
    from .plotting import normalize_map, resize_map, update_map
    channels = activation.shape[1]
    channel = min(int(channel), channels - 1)
    values = activation[0, channel].float().cpu().numpy()
    relative = normalize_map(values)
    map_ax, overlay_ax = fig.axes[1], fig.axes[2]
    map_ax.set_title(f"{layer_name}\nchannel {channel} of 0..{channels - 1}")
    overlay_ax.set_title(f"constant {values.max():.2f}: silent here" if values.max() == values.min()
                         else f"overlay (max {values.max():.2f})")
    heat = overlay_ax.images[-1]
    return (update_map(map_ax.images[0], relative, limits=(0, 1)) + [map_ax.title]
            + update_map(heat, resize_map(relative, heat.get_array().shape), limits=(0, 1))
            + [overlay_ax.title])


def plot_neighbours(query, gallery, subjects, pixel_hits, feature_hits):
    """The query photo, then its nearest gallery photos in pixel space (top row) and in the
    last hidden layer (bottom row); each title gives the photo, its subject and the distance,
    in green where the subject is the query's.

    ``query``: (name, image); ``gallery``: [(name, image)]; ``subjects``: {name: subject};
    ``*_hits``: (indices into ``gallery``, distances) from ``nearest_neighbours``.
    """
    import matplotlib.pyplot as plt
    k = len(pixel_hits[0])
    fig, axes = plt.subplots(2, k + 1, figsize=(2.3 * (k + 1), 5.9), squeeze=False)
    name, image = query
    for row, (space, (indices, distances)) in enumerate(
            [("pixels", pixel_hits), ("last hidden layer", feature_hits)]):
        axes[row, 0].imshow(image.resize((128, 128)))
        axes[row, 0].set_title(f"query: {name}\n{subjects[name]}", fontsize=11)
        axes[row, 0].set_ylabel(space, fontsize=12, fontweight="bold")
        for col, (i, d) in enumerate(zip(indices, distances), start=1):
            other, picture = gallery[i]
            same = subjects[other] == subjects[name]
            axes[row, col].imshow(picture.resize((128, 128)))
            axes[row, col].set_title(f"{other}\n{subjects[other]}, d = {d:.3g}", fontsize=10,
                                     color="#1b7a1b" if same else "black")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Nearest neighbours of the query: raw pixels (top) vs last hidden layer "
                 "(bottom); green = same subject")
    fig.tight_layout()
    return fig
