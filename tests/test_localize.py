"""Boxes from maps: largest region, raw-map threshold, IoU."""
import numpy as np
import torch

from utils.localize import bounding_box, box_iou, largest_region


def test_box_is_around_the_largest_region_above_the_fraction():
    heat = np.zeros((20, 30))
    heat[2:6, 3:9] = 1.0          # 24 px, the peak
    heat[10:18, 10:25] = 0.5      # 120 px, above 20% of the max -> the largest region
    heat[0, 29] = 0.9
    assert bounding_box(heat, 0.2) == (10, 10, 25, 18)
    assert bounding_box(heat, 0.6) == (3, 2, 9, 6)       # only the peak survives
    assert bounding_box(torch.zeros(4, 4), 0.2) is None
    mask = largest_region(heat >= 0.6)
    assert mask.sum() == 24


def test_upsampling_and_iou():
    heat = torch.zeros(7, 7)
    heat[3, 3] = 1.0
    box = bounding_box(heat, 0.5, size=(224, 224))
    x0, y0, x1, y1 = box
    assert x0 < 112 < x1 and y0 < 112 < y1 and (x1 - x0) < 64
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == 50 / 150
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
