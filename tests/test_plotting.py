"""Figures readable on a projector: panel widths measured as a notebook displays them."""
import numpy as np


def test_small_panels_are_measured_at_display_size():
    import matplotlib.pyplot as plt

    from utils.plotting import DPI, show_images, small_panels

    images = [np.zeros((8, 8))] * 8
    crowded = show_images(images, ncols=8, size=1.0)    # 8 panels of 1 in at DPI: too small
    crowded.set_dpi(DPI)
    assert len(small_panels(crowded)) == 8
    readable = show_images(images[:4], size=2.6)        # 4 per row, 2.6 in each
    readable.set_dpi(DPI)
    assert small_panels(readable) == []
    plt.close("all")
