"""A localisation study large enough to rank explanation methods.

A handful of photos framed around their object cannot rank a method: a map that always
points at the centre hits most of them. The study (``data/study.json``) holds boxed objects
mostly away from the centre, of three kinds:

* ``photo``: a bundled photo with its hand-drawn box(es);
* ``composed``: the boxed crop of a photo pasted off-centre onto another photo;
* ``two objects``: two crops of different classes in one frame, to test whether a map
  follows the class asked for (class discrimination).

Every scene is resized to the network's input (S×S, as ``spec.preprocess`` does), and every
box is given in those pixels, (x0, y0, x1, y1) with x1 and y1 exclusive. The statistics
reuse ``utils.evaluation``: ``pointing_hit``, ``share_in_box``, ``centre_map``,
``random_map``, ``chance_hit_rate``, ``class_discriminative``; this module only gathers them
over the study.
"""
import json
import math
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from . import evaluation as E
from .env import progress_bar
from .images import DATA_DIR, load_image
from .localize import draw_box
from .plotting import grid_axes
from .targets import class_index

STUDY_FILE = DATA_DIR / "study.json"
REFERENCE = 224          # the composed scenes' "at" boxes are drawn on a 224×224 scene
TOLERANCE = 15           # pointing-game tolerance in the scene's (224-px) pixels: ours; Zhang et al.
                         # use 15 px on the original image (~500 px), so ours is about twice as lenient
KINDS = ("photo", "composed", "two objects")


@dataclass
class StudyObject:
    """One boxed object: its ImageNet class (label and index) and its box in scene pixels."""
    label: str
    index: int
    box: tuple


@dataclass
class Scene:
    """One picture of the study, resized to the network's input (``image`` is S×S)."""
    name: str
    kind: str
    image: Image.Image
    objects: list = field(default_factory=list)


def scaled_box(box, from_size, to_size):
    """A box on an image of (W, H) ``from_size`` in the pixels of that image resized to
    ``to_size`` (W, H): x0, y0 rounded down, x1, y1 rounded up, so the box never shrinks."""
    (w0, h0), (w1, h1) = from_size, to_size
    x0, y0, x1, y1 = box
    return (math.floor(x0 * w1 / w0), math.floor(y0 * h1 / h0),
            min(math.ceil(x1 * w1 / w0), w1), min(math.ceil(y1 * h1 / h0), h1))


def load_study(size=224, every=1):
    """The study's scenes, each an S×S image with its objects (``Scene``).

    ``every`` = k keeps every k-th scene of each kind (fast mode: fewer scenes, the same
    code). Boxes of photos are scaled from the photo's pixels; composed boxes from 224 px.
    """
    data = json.loads(STUDY_FILE.read_text())
    photos = data["photos"]
    picture = {name: load_image(DATA_DIR / entry["file"]) for name, entry in photos.items()}
    scenes = []
    for kind in KINDS:
        chosen = [s for s in data["scenes"] if s["kind"] == kind][::every]
        for entry in chosen:
            if kind == "photo":
                photo = picture[entry["photo"]]
                image = photo.resize((size, size), Image.BICUBIC)
                objects = [StudyObject(label, class_index(label),
                                       scaled_box(photos[entry["photo"]]["objects"][label], photo.size, (size, size)))
                           for label in entry["objects"]]
                name = f"{entry['photo']}: " + " + ".join(entry["objects"])
            else:
                image = picture[entry["background"]].resize((size, size), Image.BICUBIC)
                objects = []
                for obj in entry["objects"]:
                    crop = picture[obj["photo"]].crop(photos[obj["photo"]]["objects"][obj["label"]])
                    at = scaled_box(obj["at"], (REFERENCE, REFERENCE), (size, size))
                    image, box = E.compose_scene(crop, image, at, size)
                    objects.append(StudyObject(obj["label"], class_index(obj["label"]), box))
                name = " + ".join(o.label for o in objects) + f" on {entry['background']}"
            scenes.append(Scene(name, kind, image, objects))
    return scenes


def study_objects(scenes):
    """Every (scene, object) pair of the study, in order."""
    return [(scene, obj) for scene in scenes for obj in scene.objects]


def study_maps(model, scenes, methods, fast=True, progress=True):
    """Each method's map for each object, cued with the object's class:
    ``maps[i][method]`` for the i-th pair of ``study_objects(scenes)`` (H×W arrays)."""
    maps = []
    spec = model.spec
    device = next(model.parameters()).device
    for scene in progress_bar(scenes, progress, "scenes"):
        x = spec.preprocess(scene.image, device=device)
        for obj in scene.objects:
            maps.append({m: E.explanation_map(m, model, x, obj.index, fast=fast) for m in methods})
    return maps


# ------------------------------------------------------------------- statistics

def wilson_interval(hits, n, z=1.96):
    """The Wilson score interval (95 % for z = 1.96) for a rate of ``hits`` out of ``n``:
    $\\frac{\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n + z^2/4n^2}}{1 + z^2/n}$.
    Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or n hits."""
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def pointing_hits(maps, pairs, tolerance=TOLERANCE):
    """One True/False per object: does the map's maximum fall within ``tolerance`` px of its box?"""
    if len(maps) != len(pairs):
        raise ValueError(f"{len(maps)} maps for {len(pairs)} objects")
    return [E.pointing_hit(m, [obj.box], tolerance) for m, (_, obj) in zip(maps, pairs)]


def baseline_maps(pairs, size, seed=0):
    """The two maps that never look at the image, one per object: the centre map, and a
    random map (uniform noise, a new seed per object, so its maximum is a random pixel)."""
    return {"centre": [E.centre_map((size, size))] * len(pairs),
            "random": [E.random_map((size, size), seed + i) for i in range(len(pairs))]}


def chance_rates(pairs, size, tolerance=TOLERANCE):
    """Each object's chance of a hit by a maximum on a uniformly random pixel."""
    return [E.chance_hit_rate(obj.box, (size, size), tolerance) for _, obj in pairs]


def mostly_off_centre(pairs, size, tolerance=TOLERANCE, share=0.25):
    """True if the centre map (``evaluation.centre_map``) hits at most ``share`` of the
    objects: a study on which a method can beat a map that never looks at the image."""
    hits = pointing_hits([E.centre_map((size, size))] * len(pairs), pairs, tolerance)
    return sum(hits) <= share * len(pairs)


def pointing_summary(hits):
    """(hits, n, rate, (low, high)) with the 95 % Wilson interval."""
    k, n = sum(bool(h) for h in hits), len(hits)
    return k, n, k / max(n, 1), wilson_interval(k, n)


def shares(maps, pairs):
    """Per object: (share of the map inside the box, the box's share of the image)."""
    return [E.share_in_box(m, obj.box) for m, (_, obj) in zip(maps, pairs)]


def share_summary(share_pairs):
    """(mean share of the map in the boxes, mean share of the image the boxes cover, the
    number of objects whose share beats its box's area): chance is the box's area."""
    inside, area = np.array(share_pairs, dtype=np.float64).reshape(-1, 2).T
    return float(inside.mean()), float(area.mean()), int((inside > area).sum())


def two_object_scenes(pairs):
    """Indices (i, j) into ``pairs`` of the two objects of each two-object scene."""
    found = {}
    for i, (scene, _) in enumerate(pairs):
        if len(scene.objects) == 2:
            found.setdefault(id(scene), []).append(i)
    return [tuple(v) for v in found.values()]


def discrimination(maps, pairs):
    """For each scene with two objects A and B, cued once with each class:
    (own, other, peak) where ``own`` = the shares of A's map in A's box and of B's map in
    B's box, ``other`` = the shares of A's map in B's box and of B's map in A's box, and
    ``peak`` = ``evaluation.class_discriminative`` (each class's maximum on its own object)."""
    rows = []
    for i, j in two_object_scenes(pairs):
        a, b = pairs[i][1].box, pairs[j][1].box
        own = (E.share_in_box(maps[i], a)[0], E.share_in_box(maps[j], b)[0])
        other = (E.share_in_box(maps[i], b)[0], E.share_in_box(maps[j], a)[0])
        rows.append((own, other, E.class_discriminative([maps[i], maps[j]], [a, b])))
    return rows


def discriminates(row):
    """A scene's verdict by share: each class's map puts more on its own object than on the
    other one. A map that is the same for both classes cannot pass (it would need
    share(A) > share(B) and share(B) > share(A)); nor can a flat map on equal boxes."""
    own, other, _ = row
    return all(o > t for o, t in zip(own, other))


DISCRIMINATION_CHANCE = 0.25   # our bar: a map whose preference between the two boxes is drawn
                               # afresh for each cue (like the random map) wins each of the two
                               # comparisons with probability 1/2 on equal boxes, both with 1/4.
                               # A map that is the same for both cues never passes (scores 0).


def discriminates_above_chance(rows, level=0.05):
    """True if more two-object scenes pass ``discriminates`` than chance allows: the exact
    chance of at least that many passes at 1/4 per scene (``evaluation.chance_p_value``)
    is below the conventional ``level`` 0.05."""
    passed = [discriminates(r) for r in rows]
    return E.chance_p_value(passed, [DISCRIMINATION_CHANCE] * len(passed)) < level


def told_apart(table, methods, key, level=0.05):
    """The pairs (a, b) of ``methods`` where a does significantly better than b on the same
    items: ``table[m][key]`` is one True/False per item (``"hits"`` per object, ``"passed"``
    per two-object scene), compared by ``evaluation.outperforms`` (exact sign test on the
    items where exactly one of the two succeeds, at the conventional ``level``)."""
    return [(a, b) for a in methods for b in methods
            if a != b and E.outperforms(table[a][key], table[b][key], level)]


def overlapping_boxes(scenes):
    """The names of the scenes whose boxes overlap: there a maximum in the overlap lands on
    both objects, and a share counts for both (``discriminates`` assumes separate boxes)."""
    def overlap(a, b):
        return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
    return [s.name for s in scenes if any(overlap(a.box, b.box) for i, a in enumerate(s.objects)
                                          for b in s.objects[i + 1:])]


def more_in_boxes_than_area(share_pairs, level=0.05):
    """True if the map's share inside the box beats the box's share of the image on
    significantly more objects than not (two-sided exact sign test, ``evaluation.sign_test``,
    at the conventional ``level``): a flat map ties everywhere and fails."""
    inside, area = np.array(share_pairs, dtype=np.float64).reshape(-1, 2).T
    wins, losses = int((inside > area).sum()), int((inside < area).sum())
    return wins > losses and E.sign_test(wins, losses) < level


def method_table(maps, pairs, methods, size, tolerance=TOLERANCE):
    """One row per method and for the centre and random baselines: pointing hits with the
    Wilson interval, the sign test against the centre (``evaluation.outperforms``) and the
    exact test against chance (``evaluation.above_chance``), the mean share in the box, and
    the two-object scenes discriminated (by share, and by peak; ``"passed"``: one True/False
    per scene). With an ``"edges"`` map among ``methods``, ``"beats edges"`` is the sign test
    of each row against the edge map."""
    per_object = {m: [mp[m] for mp in maps] for m in methods}
    per_object.update(baseline_maps(pairs, size))
    chance = chance_rates(pairs, size, tolerance)
    centre_hits = pointing_hits(per_object["centre"], pairs, tolerance)
    table = {}
    for method, method_maps in per_object.items():
        hits = pointing_hits(method_maps, pairs, tolerance)
        rows = discrimination(method_maps, pairs)
        passed = [discriminates(r) for r in rows]
        object_shares = shares(method_maps, pairs)
        table[method] = {
            "hits": hits, "pointing": pointing_summary(hits), "passed": passed,
            "beats centre": E.outperforms(hits, centre_hits),
            "above chance": E.above_chance(hits, chance),
            "share": share_summary(object_shares),
            "more in boxes": more_in_boxes_than_area(object_shares),
            "discriminated": sum(passed),
            "discriminates above chance": discriminates_above_chance(rows),
            "peak discriminated": sum(r[2] for r in rows), "scenes": len(rows)}
    if "edges" in table:
        for row in table.values():
            row["beats edges"] = E.outperforms(row["hits"], table["edges"]["hits"])
    return table


# ------------------------------------------------------------------- figures

def show_scenes(scenes, ncols=5, size=2.2):
    """Every scene with its boxes (one colour per object of a two-object scene)."""
    fig, axes = grid_axes(len(scenes), ncols=ncols, size=size)
    for ax, scene in zip(axes, scenes):
        ax.imshow(scene.image)
        for obj, colour in zip(scene.objects, ("#00e5ff", "#ff4fd8")):
            draw_box(ax, obj.box, color=colour)
        ax.set_title(" + ".join(o.label for o in scene.objects), fontsize=10)
    fig.tight_layout()
    return fig


def show_ranking(table, methods, chance, names=None):
    """Three panels, one row per method and baseline: pointing (share of hits, 95 % Wilson
    interval, the expected hits of a random maximum as a line), the mean share of the map in
    the box (the boxes' mean area as a line) and the two-object scenes discriminated.
    ``names`` {method: label} renames rows on the figure."""
    names = names or {}
    baselines = [m for m in ("edges", "random", "centre") if m in table]
    rows = sorted([m for m in methods if m not in baselines], key=lambda m: -table[m]["pointing"][2]) + baselines
    y = np.arange(len(rows))[::-1]                   # best method at the top, baselines below
    colour = ["0.55" if m in baselines else "C0" for m in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 0.42 * len(rows) + 1.8), sharey=True)
    rate = np.array([table[m]["pointing"][2] for m in rows])
    low, high = np.array([table[m]["pointing"][3] for m in rows]).T
    axes[0].errorbar(rate, y, xerr=[rate - low, high - rate], fmt="none", ecolor=colour, lw=2.5)
    axes[0].scatter(rate, y, c=colour, s=60, zorder=3)
    axes[0].axvline(float(np.mean(chance)), color="C3", ls="--", lw=1.5, label="chance")
    axes[0].set(xlim=(0, 1), xlabel="share of hits (95 % Wilson interval)", yticks=y,
                yticklabels=[names.get(m, m) + (" (baseline)" if m in baselines else "") for m in rows], title="pointing game")
    inside = [table[m]["share"][0] for m in rows]
    axes[1].barh(y, inside, color=colour)
    axes[1].axvline(table[rows[0]]["share"][1], color="C3", ls="--", lw=1.5, label="box area")
    axes[1].set(xlim=(0, 1), xlabel="mean share of the map in the box", title="energy in the box")
    scenes = table[rows[0]]["scenes"]
    passed = [table[m]["discriminated"] for m in rows]
    axes[2].barh(y, passed, color=colour)
    for row_y, count in zip(y, passed):               # a count, so that 0 does not read as missing
        axes[2].text(count + 0.1, row_y, str(count), va="center", fontsize=11)
    axes[2].axvline(DISCRIMINATION_CHANCE * scenes, color="C3", ls="--", lw=1.5, label="chance")
    axes[2].set(xlim=(0, scenes), xlabel=f"two-object scenes, of {scenes}", title="follows the class (by share)")
    for ax in axes:
        ax.axhline(y[len(rows) - len(baselines)] + 0.5, color="0.3", lw=1)   # methods above, baselines below
        ax.legend(loc="lower right", fontsize=10)
    fig.tight_layout()
    return fig
