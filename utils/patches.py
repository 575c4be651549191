"""Maximally activating patches (R-CNN's pool5 figure) and neighbours in feature space.

Girshick et al. (CVPR 2014, §3.x "Visualization, ablation") ask *what does one unit of the
network respond to?* and answer with data instead of optimisation:

1. cut many region proposals out of a collection of photos and *warp* each to the network's
   input size (R-CNN: selective-search boxes, 227×227; here random multi-scale boxes);
2. run every warped region through the network once and record every unit's activation;
3. for a unit (channel c at position y, x), sort the regions by its activation
   ``a_r = f(warp(region_r))[c, y, x]``, apply non-maximum suppression (NMS), and show the
   top 16 with their scores.

Here a unit can also be a whole *channel*: its score on a region is the channel's maximum
over all positions, and the patch shown is the receptive field of the position of that
maximum (as Zeiler & Fergus do for their top-9). NMS runs on the patches that are shown,
in photo coordinates, so one strong spot seen by many overlapping proposals counts once.

``FeatureBank`` does step 2 once, with a progress bar, and caches it; every query after that
(a new unit, a new layer, nearest neighbours) is array indexing, with no forward pass.

The collection is the bundled photos (offline), or a small public image set downloaded once
with a checksum (``utils.images.image_set``). Both give a list of (name, PIL image) and
follow the same code path from there.
"""
import functools
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import functional as TF

from .env import progress_bar
from .hooks import ChannelError, capture_activations, model_guard, resolve_layer
from .images import load_image, sample_images
from .localize import box_iou
from .receptive_field import receptive_fields

# --------------------------------------------------------------------------- collection

def bundled_photos(names=None):
    """The bundled photos as [(name, PIL image)] (all of data/images by default)."""
    names = names or sample_images()
    return [(name, load_image(name)) for name in names]


# --------------------------------------------------------------------------- proposals

@dataclass
class Regions:
    """Region proposals over a photo collection: ``boxes[r] = (x0, y0, x1, y1)`` in the
    pixels of photo ``image_of[r]`` (end exclusive)."""
    photos: list                 # [(name, PIL image)]
    boxes: np.ndarray            # R×4 float
    image_of: np.ndarray         # R ints
    key: tuple = field(default=())

    def __len__(self):
        return len(self.boxes)

    def warp(self, r, size):
        """Region r cropped and warped (anisotropically, as R-CNN does) to size×size."""
        image = self.photos[self.image_of[r]][1]
        x0, y0, x1, y1 = self.boxes[r]
        return image.resize((size, size), Image.BILINEAR, box=(x0, y0, x1, y1))

    def crop(self, r, box=None):
        """The photo's pixels inside ``box`` (default: region r itself), unwarped."""
        image = self.photos[self.image_of[r]][1]
        box = self.boxes[r] if box is None else box
        return image.crop(tuple(int(round(v)) for v in box))


def random_boxes(width, height, n, rng, min_frac=0.15, max_frac=0.9, max_aspect=2.0):
    """``n`` random boxes inside a width×height photo, the whole photo first.

    Side length uniform on a log scale between ``min_frac`` and ``max_frac`` of the shorter
    side; aspect ratio log-uniform in [1/max_aspect, max_aspect]; position uniform.
    """
    boxes = [(0.0, 0.0, float(width), float(height))]
    short = min(width, height)
    while len(boxes) < n:
        side = short * np.exp(rng.uniform(np.log(min_frac), np.log(max_frac)))
        aspect = np.exp(rng.uniform(-np.log(max_aspect), np.log(max_aspect)))
        w, h = min(side * np.sqrt(aspect), width), min(side / np.sqrt(aspect), height)
        x0, y0 = rng.uniform(0, width - w), rng.uniform(0, height - h)
        boxes.append((x0, y0, x0 + w, y0 + h))
    return np.array(boxes[:n], dtype=np.float64)


def propose_regions(photos, per_photo=50, seed=0, **box_options):
    """``per_photo`` random multi-scale region proposals on each photo (``random_boxes``)."""
    rng = np.random.default_rng(seed)
    boxes, owner = [], []
    for i, (_, image) in enumerate(photos):
        boxes.append(random_boxes(image.width, image.height, per_photo, rng, **box_options))
        owner += [i] * per_photo
    key = (tuple(n for n, _ in photos), tuple(im.size for _, im in photos), per_photo, seed,
           tuple(sorted(box_options.items())))
    return Regions(photos, np.concatenate(boxes), np.array(owner), key)


# --------------------------------------------------------------------------- NMS

def nms(boxes, scores, iou=0.3, groups=None, k=None):
    """Greedy non-maximum suppression: indices kept, best score first.

    Walk the boxes from the highest score down; keep a box unless it overlaps an already
    kept box of the same group (same photo) with IoU > ``iou``. Stop after ``k`` kept.
    """
    scores = np.asarray(scores, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64)
    groups = np.zeros(len(scores), int) if groups is None else np.asarray(groups)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        same = [j for j in keep if groups[j] == groups[i]]
        if same and box_iou(boxes[i], boxes[same]).max() > iou:
            continue
        keep.append(int(i))
        if k is not None and len(keep) == k:
            break
    return keep


# --------------------------------------------------------------------------- features

@dataclass
class Hit:
    """One of a unit's top regions: its index, the unit's score, the patch box in the photo."""
    region: int
    score: float
    box: tuple


class FeatureBank:
    """Every region's activations at a few layers, computed once (see ``build_feature_bank``).

    For each layer: ``peak[layer]`` (R×C, channel maximum over positions) and ``where[layer]``
    (R×C, flat index of that maximum); for the layers in ``unit_layers`` also the full maps
    ``maps[layer]`` (R×C×h×w, float16) so that single units (c, y, x) can be scored.
    ``codes`` (R×D) are the penultimate-layer features, ``thumbs`` (R×t×t×3 uint8) small
    copies of the warped regions (pixel space).
    """

    def __init__(self, regions, fields, size):
        self.regions, self.fields, self.size = regions, fields, size
        self.peak, self.where, self.maps = {}, {}, {}
        self.codes = self.thumbs = None
        self.forward_passes = 0

    @property
    def layers(self):
        return list(self.fields)

    def channels(self, layer):
        return self.peak[self._check(layer)].shape[1]

    def _check(self, layer):
        if layer not in self.fields:
            raise KeyError(f"Layer {layer!r} was not recorded; recorded layers: {self.layers}. "
                           "Add it to `layers` when building the bank.")
        return layer

    def scores(self, layer, channel, y=None, x=None):
        """Score of every region for a channel (y = x = None) or a unit (c, y, x)."""
        layer = self._check(layer)
        n = self.channels(layer)
        if not 0 <= channel < n:
            raise ChannelError(f"Channel {channel} is out of range 0..{n - 1} for {layer}.")
        if y is None and x is None:
            return self.peak[layer][:, channel]
        if layer not in self.maps:
            raise KeyError(f"Single units need full maps; {layer} was recorded as channel maxima "
                           f"only. Pass unit_layers=[{layer!r}] when building the bank.")
        h, w = self.maps[layer].shape[-2:]
        if not (0 <= y < h and 0 <= x < w):
            raise ChannelError(f"Unit position ({y}, {x}) is outside the {h}×{w} map of {layer}.")
        return self.maps[layer][:, channel, y, x].astype(np.float32)

    def patch_boxes(self, layer, channel, y=None, x=None):
        """Box in photo pixels of the patch each region shows for this channel / unit:
        the receptive field of the unit (or of the channel's argmax), inside the region."""
        layer = self._check(layer)
        field = self.fields[layer]
        w_map = field.shape[1]
        if y is None and x is None:
            flat = self.where[layer][:, channel]
            cells = zip(flat // w_map, flat % w_map)
            x0, y0, x1, y1 = (np.array(v, dtype=np.float64)
                              for v in zip(*[field.box(a, b) for a, b in cells]))
        else:                                    # one unit: the same box in every region
            x0, y0, x1, y1 = field.box(y, x)
        boxes = self.regions.boxes
        sx = (boxes[:, 2] - boxes[:, 0]) / self.size
        sy = (boxes[:, 3] - boxes[:, 1]) / self.size
        return np.stack([boxes[:, 0] + x0 * sx, boxes[:, 1] + y0 * sy,
                         boxes[:, 0] + x1 * sx, boxes[:, 1] + y1 * sy], axis=1)

    def top_regions(self, layer, channel, y=None, x=None, k=16, iou=0.3):
        """The ``k`` best regions for a channel or unit after NMS on their patch boxes."""
        scores = self.scores(layer, channel, y, x)
        boxes = self.patch_boxes(layer, channel, y, x)
        keep = nms(boxes, scores, iou, groups=self.regions.image_of, k=k)
        return [Hit(i, float(scores[i]), tuple(float(v) for v in boxes[i])) for i in keep]

    def neighbours(self, query, k=8, space="feature", exclude_iou=0.3):
        """The ``k`` regions nearest to region ``query`` by Euclidean distance, in feature
        space (penultimate-layer codes, Krizhevsky et al. 2012 Fig. 4) or pixel space
        (the warped region's pixels). Regions overlapping the query, or an earlier
        neighbour, by IoU > ``exclude_iou`` in the same photo are skipped."""
        data = self.codes if space == "feature" else self.thumbs.reshape(len(self.thumbs), -1)
        return nearest_apart(data, self.regions.boxes, self.regions.image_of, query, k,
                             exclude_iou)


def nearest_apart(points, boxes, owner, query, k=5, exclude_iou=0.3):
    """The ``k`` points nearest to point ``query`` (Euclidean), as (index, distance), skipping
    any whose box overlaps the query's, or an earlier neighbour's, by IoU > ``exclude_iou``
    in the same photo (``owner``): two crops of one spot are not two neighbours."""
    data = np.asarray(points, dtype=np.float32).reshape(len(points), -1)
    dist = np.linalg.norm(data - data[query], axis=1)
    order = nms(boxes, -dist, exclude_iou, groups=owner, k=k + 1)
    return [(i, float(dist[i])) for i in order if i != query][:k]


def _warped_batches(regions, size, batch_size, normalize, thumb):
    for first in range(0, len(regions), batch_size):
        crops = [regions.warp(r, size) for r in range(first, min(first + batch_size, len(regions)))]
        rgb = torch.stack([TF.to_tensor(c) for c in crops])
        small = np.stack([np.asarray(c.resize((thumb, thumb), Image.BILINEAR)) for c in crops])
        yield normalize(rgb), small


_BANKS = {}


def build_feature_bank(model, regions, layers, unit_layers=(), penultimate="penultimate",
                       size=None, batch_size=32, thumb=32, device=None, progress=True):
    """Run every warped region through ``model`` once and keep what the queries need.

    One batched forward pass per ``batch_size`` regions, with a progress bar; hooks record
    ``layers`` (channel maxima and where they are), the full maps of ``unit_layers`` and
    the ``penultimate`` features. The result is cached: the same model, regions and
    settings return the same ``FeatureBank`` without any forward pass. An interrupt (■) is
    re-raised (a bank of some regions only would be misindexed), nothing cached, the model
    left as found.
    """
    if not isinstance(regions, Regions):
        raise TypeError(f"regions must come from propose_regions(photos), not a "
                        f"{type(regions).__name__}.")
    spec = model.spec
    size = size or spec.size
    layers = [layers] if isinstance(layers, str) else list(layers)
    unit_layers = [unit_layers] if isinstance(unit_layers, str) else list(unit_layers)
    for name in layers + [penultimate]:
        resolve_layer(model, name)
    unknown = [u for u in unit_layers if u not in layers]
    if unknown:
        raise ValueError(f"unit_layers {unknown} must also be in layers {layers}.")
    key = (id(model), spec.name, regions.key, tuple(layers), tuple(unit_layers), penultimate,
           size, thumb)
    if key in _BANKS and _BANKS[key][0]() is model:
        return _BANKS[key][1]
    device = device or next(model.parameters()).device
    fields = dict(zip(layers, receptive_fields(model, layers, size)))
    bank = FeatureBank(regions, fields, size)
    peak, where, maps, codes, thumbs = ({layer: [] for layer in layers}, {layer: [] for layer in layers},
                                        {layer: [] for layer in unit_layers}, [], [])
    batches = _warped_batches(regions, size, batch_size, spec.normalize, thumb)
    n_batches = -(-len(regions) // batch_size)
    with model_guard(model), torch.no_grad(), \
            capture_activations(model, layers + [penultimate]) as acts:
        for x, small in progress_bar(batches, progress, "regions → features", total=n_batches):
            model(x.to(device))
            bank.forward_passes += 1
            for layer in layers:
                flat = acts[layer].float().flatten(2)          # B×C×(h·w)
                values, index = flat.max(dim=2)
                peak[layer].append(values.cpu().numpy())
                where[layer].append(index.cpu().numpy().astype(np.int32))
                if layer in maps:
                    maps[layer].append(acts[layer].cpu().half().numpy())
            codes.append(acts[penultimate].flatten(1).float().cpu().numpy())
            thumbs.append(small)
    bank.peak = {layer: np.concatenate(v) for layer, v in peak.items()}
    bank.where = {layer: np.concatenate(v) for layer, v in where.items()}
    bank.maps = {layer: np.concatenate(v) for layer, v in maps.items()}
    bank.codes, bank.thumbs = np.concatenate(codes), np.concatenate(thumbs)
    _BANKS[key] = (weakref.ref(model), bank)
    return bank


def selective_channels(bank, layer, n=4, k=16, y=None, x=None):
    """Channels whose top-``k`` regions stand out most from the rest (z-score of the mean
    top-k score): a quick way to pick units worth showing. With ``y, x``: the units
    (c, y, x) at that position instead (R-CNN's pool5 units), needing full maps."""
    if y is None and x is None:
        scores = bank.peak[bank._check(layer)]
    else:
        scores = np.stack([bank.scores(layer, c, y, x) for c in range(bank.channels(layer))], 1)
    top = np.sort(scores, axis=0)[-k:].mean(axis=0)
    z = (top - scores.mean(axis=0)) / (scores.std(axis=0) + 1e-6)
    return [int(c) for c in np.argsort(-z)[:n]]


# --------------------------------------------------------------------------- claims

def near_duplicate_pairs(bank, hits, iou=0.3):
    """Pairs of ``hits`` from the same photo whose patches overlap by IoU > ``iou``."""
    owner = bank.regions.image_of
    return sum(owner[a.region] == owner[b.region] and box_iou(a.box, [b.box])[0] > iou
               for i, a in enumerate(hits) for b in hits[i + 1:])


def chance_duplicate_pairs(bank, layer, channel, k=8, iou=0.3, draws=200, seed=0):
    """``near_duplicate_pairs`` among k regions drawn at random (their patches for this
    channel): the 95th percentile over ``draws`` draws."""
    boxes = bank.patch_boxes(layer, channel)
    rng = np.random.default_rng(seed)
    counts = [near_duplicate_pairs(bank, [Hit(int(r), 0.0, tuple(boxes[r])) for r in
                                          rng.choice(len(boxes), k, replace=False)], iou)
              for _ in range(draws)]
    return float(np.quantile(counts, 0.95))


def duplicates_without_nms(bank, layer, channel, k=8, iou=0.3):
    """True if a channel's top k *without* NMS hold more near-duplicate pairs than k random
    regions would (``chance_duplicate_pairs``, their 95th percentile): the top of the list
    repeats itself."""
    hits = bank.top_regions(layer, channel, k=k, iou=1.0)
    return near_duplicate_pairs(bank, hits, iou) > chance_duplicate_pairs(bank, layer, channel,
                                                                          k, iou)


def count_beyond_chance(count, n, rate=0.05, alpha=0.01):
    """True if ``count`` of ``n`` tests passed is more than chance allows, when chance passes
    each test at most ``rate`` of the time (a test whose threshold is the 95th percentile of
    a null passes by chance at most 5% of the time): the count lies in the upper tail of
    Binomial(n, rate), p < ``alpha``."""
    from scipy.stats import binom
    return bool(count > 0 and binom.sf(count - 1, n, rate) < alpha)


def duplicates_common(bank, layer, channels, k=8, iou=0.3):
    """True if more of ``channels`` repeat themselves without NMS (``duplicates_without_nms``,
    passed by random regions at most 5% of the time) than chance allows
    (``count_beyond_chance``)."""
    count = sum(duplicates_without_nms(bank, layer, c, k, iou) for c in channels)
    return count_beyond_chance(count, len(channels))


def shared_with_units(bank, layer, channel, k=8, iou=0.3):
    """How many of the channel's top-k regions (maximum over positions) each unit
    (channel, y, x) of the map also has in its own top k: an h×w array of counts."""
    mine = {hit.region for hit in bank.top_regions(layer, channel, k=k, iou=iou)}
    h, w = bank.maps[bank._check(layer)].shape[-2:]
    return np.array([[len(mine & {hit.region for hit in bank.top_regions(layer, channel, y, x,
                                                                          k=k, iou=iou)})
                      for x in range(w)] for y in range(h)])


def unit_closest_to_channel(shared, y, x, quantile=0.95):
    """True if the unit at (y, x) shares more of its top list with its channel's list than
    the channel's units at the other cells do (``shared``, from ``shared_with_units``):
    above their ``quantile``. The null is the same channel at another cell, so what the
    lists share because they come from one channel and one set of photos does not count."""
    shared = np.asarray(shared, dtype=float)
    others = np.delete(shared.ravel(), y * shared.shape[1] + x)
    return bool(shared[y, x] > np.quantile(others, quantile))


def neighbour_lists(bank, space="feature", k=5):
    """For every region, its k nearest regions (``FeatureBank.neighbours``: overlapping
    regions skipped), as lists of indices."""
    return [[r for r, _ in bank.neighbours(q, k, space)] for q in range(len(bank.regions))]


def map_neighbour_lists(bank, shown, positions, k=5, exclude_iou=0.3):
    """For each of the regions ``shown``, its k nearest on a 2-D map (``positions``, one row
    per shown region), skipping overlapping crops of one photo as ``neighbour_lists`` does;
    indices into ``shown``."""
    shown = np.asarray(shown)
    boxes, owner = bank.regions.boxes[shown], bank.regions.image_of[shown]
    return [[i for i, _ in nearest_apart(positions, boxes, owner, q, k, exclude_iou)]
            for q in range(len(shown))]


def patch_share(hits, regions):
    """Median side of the patches shown (``hits``) as a share of their region's side."""
    sides = [np.sqrt((h.box[2] - h.box[0]) * (h.box[3] - h.box[1])) /
             np.sqrt(np.prod(regions.boxes[h.region, 2:] - regions.boxes[h.region, :2]))
             for h in hits]
    return float(np.median(sides))


# --------------------------------------------------------------------------- figures

def show_top_patches(bank, layer, channel, y=None, x=None, k=16, iou=0.3, ncols=6, size=1.8,
                     title=None):
    """R-CNN's figure for one unit: its top ``k`` patches after NMS, each with its score.

    The patches and their scores are tiles of one image (a mosaic), so that
    ``update_top_patches`` can show another unit by changing that image and the title."""
    import matplotlib.pyplot as plt
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    fig, ax = plt.subplots(figsize=(size * ncols, (size + 0.25) * nrows + 0.4))
    ax.imshow(np.zeros((nrows * TILE_H, ncols * TILE_W, 3), np.uint8))
    ax.axis("off")
    fig.suptitle("unit", fontsize=12)                 # its text: update_top_patches
    update_top_patches(fig, bank, layer, channel, y, x, k, iou, title)
    fig.tight_layout()
    return fig


def update_top_patches(fig, bank, layer, channel, y=None, x=None, k=16, iou=0.3, title=None):
    """Fill a ``show_top_patches`` figure with another unit's patches, in place; returns the
    artists that changed (for ``widgets.connect``). Slots without a patch stay blank."""
    from PIL import ImageDraw
    shown = fig.axes[0].images[0]
    height, width = shown.get_array().shape[:2]
    mosaic = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(mosaic)
    for slot, hit in enumerate(bank.top_regions(layer, channel, y, x, k=k, iou=iou)):
        row, col = divmod(slot, width // TILE_W)
        left, top = col * TILE_W + GAP_PX // 2, row * TILE_H + LABEL_PX
        mosaic.paste(bank.regions.crop(hit.region, hit.box).resize((PATCH_PX, PATCH_PX),
                                                                   Image.BILINEAR), (left, top))
        pen.text((left + PATCH_PX // 2, top - 2), f"{hit.score:.2f}", fill="black", anchor="md",
                 font=_label_font())
    shown.set_data(np.asarray(mosaic))
    unit = f"channel {channel}" if y is None else f"unit ({channel}, {y}, {x})"
    field = bank.fields[layer]
    rf = f"{field.size:g}" if not isinstance(field.size, tuple) else str(field.size)
    return [shown, fig.suptitle(title or f"{layer} · {unit} · RF {rf} px of {bank.size}",
                                fontsize=12)]


PATCH_PX, GAP_PX, LABEL_PX = 96, 10, 20         # a patch as shown, the gap between, its label
TILE_W, TILE_H = PATCH_PX + GAP_PX, PATCH_PX + LABEL_PX


@functools.lru_cache(maxsize=1)
def _label_font():
    """matplotlib's own font (DejaVu Sans), for the scores written into the mosaic."""
    from matplotlib import font_manager
    from PIL import ImageFont
    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 14)


def follow_layer(bank, layer, channel_box, position_box):
    """Fit the explorer's controls to ``layer``: the channel slider to its channels; the
    position slider enabled only where the bank kept full maps (a unit (c, y, x) needs
    them), up to that map's last cell, greyed out and set to -1 (the whole channel) on the
    other layers."""
    channel_box.max = bank.channels(layer) - 1
    position_box.disabled = layer not in bank.maps
    if position_box.disabled:
        position_box.value = -1
    else:
        h, w = bank.maps[layer].shape[-2:]
        position_box.max = h * w - 1


def show_neighbours(bank, query, k=5, size=1.8):
    """Query region, then its nearest regions in feature space (top row) and pixel space."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, k + 1, figsize=(size * (k + 1), size * 2 + 0.4), squeeze=False)
    for row, space in enumerate(("feature", "pixel")):
        found = bank.neighbours(query, k, space)
        axes[row, 0].imshow(bank.regions.warp(query, 80))
        axes[row, 0].set_title("query", fontsize=10)
        for ax, (r, dist) in zip(axes[row, 1:], found):
            ax.imshow(bank.regions.warp(r, 80))
            ax.set_title(f"{bank.regions.photos[bank.regions.image_of[r]][0]}", fontsize=10)
        axes[row, 0].set_ylabel(f"{space}\nspace", fontsize=11)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def embed(codes, method="tsne", seed=0, perplexity=30):
    """2-D positions of feature vectors: t-SNE after PCA to 50 dims (a speed-up; van der
    Maaten & Hinton also reduce with PCA before t-SNE), or plain PCA."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    codes = np.asarray(codes, dtype=np.float32)
    reduced = PCA(n_components=min(50, *codes.shape), random_state=seed).fit_transform(codes)
    if method == "pca":
        return reduced[:, :2]
    perplexity = min(perplexity, (len(codes) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)


def show_embedding(bank, regions_shown, positions, zoom=1.0, size=7):
    """Thumbnails of ``regions_shown`` drawn at their 2-D ``positions``."""
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    fig, ax = plt.subplots(figsize=(size, size))
    ax.scatter(positions[:, 0], positions[:, 1], s=2, alpha=0)
    for r, (px, py) in zip(regions_shown, positions):
        box = AnnotationBbox(OffsetImage(bank.thumbs[r], zoom=zoom), (px, py), frameon=False)
        ax.add_artist(box)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig
