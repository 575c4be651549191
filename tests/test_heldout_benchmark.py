"""benchmarks/heldout_fixations.py places its pasted objects where a map that always points at
the centre cannot hit them (its README says so). Checked on synthetic stamps, nothing fetched."""
import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image

from utils import evaluation as E
from utils.study import TOLERANCE

SIZE = 224
spec = importlib.util.spec_from_file_location(
    "heldout_fixations", Path(__file__).resolve().parents[1] / "benchmarks" / "heldout_fixations.py")
heldout = importlib.util.module_from_spec(spec)
spec.loader.exec_module(heldout)


def stamp(width, height):
    """An RGBA stamp: an opaque ellipse on a transparent background."""
    y, x = np.mgrid[0:height, 0:width]
    inside = ((x - width / 2) / (width / 2)) ** 2 + ((y - height / 2) / (height / 2)) ** 2 <= 1
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.where(inside, 255, 0)
    return Image.fromarray(rgba, "RGBA")


def test_pasted_boxes_are_out_of_the_centre_maps_reach():
    rng = np.random.default_rng(0)
    background = Image.new("RGB", (SIZE, SIZE), (90, 90, 90))
    centre = E.centre_map((SIZE, SIZE))
    for _ in range(200):
        shape = stamp(int(rng.integers(40, 400)), int(rng.integers(40, 400)))
        scene, box = heldout.paste_stamp(background, shape, heldout.away_from_centre(rng, SIZE, shape))
        assert not E.pointing_hit(centre, [box], TOLERANCE)
        x0, y0, x1, y1 = box
        pixels = np.asarray(scene)
        assert (pixels[y0:y1, x0:x1, 0] == 200).any() and (pixels[..., 0] == 200).sum() == \
            (pixels[y0:y1, x0:x1, 0] == 200).sum()          # the box holds every pasted pixel


def test_a_stamp_pasted_at_the_centre_is_hit_by_the_centre_map():
    # the counterfactual: the same paste without the rule lands under the centre map's peak
    background = Image.new("RGB", (SIZE, SIZE), (90, 90, 90))
    _, box = heldout.paste_stamp(background, stamp(100, 60), (62, 62, 162, 162))
    assert E.pointing_hit(E.centre_map((SIZE, SIZE)), [box], TOLERANCE)
