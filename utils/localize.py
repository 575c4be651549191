"""Boxes from maps: the weakly supervised localisation every explanation paper reports.

One rule for all methods: threshold the map at a fraction of its own maximum (CAM: 20%,
Grad-CAM: 15%), keep the largest connected region, box it. The map is the *raw* one, only
upsampled to the image size; thresholding a display-normalised map would move the box.

A box is (x0, y0, x1, y1): left, top, right, bottom in pixels, x to the right and y down,
x1 and y1 exclusive (NumPy's ``m[y0:y1, x0:x1]`` is the box). Points elsewhere are (y, x).
"""
import numpy as np
from matplotlib.patches import Rectangle
from scipy import ndimage

from .plotting import resize_map


class BoxError(ValueError):
    """Something given as a box that is not (x0, y0, x1, y1) with x0 < x1 and y0 < y1."""


def check_boxes(boxes):
    """``boxes`` as a list of (x0, y0, x1, y1) tuples of floats; a single box is taken as
    [box]. Anything else (wrong shape, x1 ≤ x0, NaN, no box at all) raises a ``BoxError``."""
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):               # ragged lists, strings, None inside
        array = np.empty(0)
    if array.shape == (4,):
        array = array[None]
    ok = array.ndim == 2 and array.shape[1] == 4 and len(array) > 0 and np.isfinite(array).all()
    if not ok or (array[:, 2] <= array[:, 0]).any() or (array[:, 3] <= array[:, 1]).any():
        raise BoxError(f"A box is 4 numbers (x0, y0, x1, y1) with x0 < x1 and y0 < y1 (x to "
                       f"the right, y down); got {boxes!r}. Pass one box or a list of boxes, "
                       "e.g. [(30, 40, 120, 200)].")
    return [tuple(float(v) for v in box) for box in array]


def largest_region(mask):
    """The largest 8-connected region of a boolean mask (a mask of the same shape)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def mask_box(mask):
    """(x0, y0, x1, y1) around the True pixels of a boolean H×W mask (x1, y1 exclusive);
    None if the mask is empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def bounding_box(heatmap, fraction, size=None):
    """(x0, y0, x1, y1) around the largest region where map ≥ fraction · max (x1, y1 exclusive).

    ``size`` = (H, W) upsamples the map bilinearly first. None if the map has no positive value.
    """
    values = np.asarray(heatmap.detach().cpu() if hasattr(heatmap, "detach") else heatmap,
                        dtype=np.float32)
    if size is not None and values.shape != tuple(size):
        values = resize_map(values, tuple(size))
    if values.max() <= 0:
        return None
    return mask_box(largest_region(values >= fraction * values.max()))


def box_iou(box, boxes):
    """Intersection over union of an (x0, y0, x1, y1) box with another box (a float) or with
    each row of an R×4 array of boxes (an array of R values)."""
    single = np.ndim(boxes) == 1
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = np.where(area + areas - inter > 0, inter / np.maximum(area + areas - inter, 1e-12), 0.0)
    return float(iou[0]) if single else iou


ILSVRC_IOU = 0.5   # ILSVRC: a box is a correct localisation at IoU ≥ 0.5 with the truth


def correct_localisation(box, truth, threshold=ILSVRC_IOU):
    """True if ``box`` counts as a correct localisation of ``truth`` by the ILSVRC rule that
    CAM and Grad-CAM report (Russakovsky et al. 2015): IoU ≥ 0.5. No box (None) is wrong."""
    return box is not None and box_iou(box, truth) >= threshold


def box_area(box):
    """Area in pixels of an (x0, y0, x1, y1) box (x1, y1 exclusive); 0 for no box (None)."""
    return 0 if box is None else (box[2] - box[0]) * (box[3] - box[1])


def draw_box(ax, box, color="#00e5ff", label=None, dashed=False):
    """Draw an (x0, y0, x1, y1) box on an image axis (a thick line, visible on a projector;
    ``dashed`` for a hand-drawn box next to a computed one)."""
    if box is None:
        return
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=color, linewidth=2.5, label=label,
                           linestyle="--" if dashed else "-"))
