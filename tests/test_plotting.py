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


def test_overlapping_and_cut_off_texts_are_found():
    """The figure check finds a long title printed over its neighbour's, a title that runs
    onto the panel above, and a title cut off at the edge; a well spaced figure passes."""
    import matplotlib.pyplot as plt

    from utils.plotting import DPI, show_images, unreadable_texts

    images = [np.zeros((8, 8))] * 2
    spaced = show_images(images, titles=["left", "right"], size=2.6)
    spaced.set_dpi(DPI)
    assert unreadable_texts(spaced) == []
    crowded = show_images(images, titles=["a title far too long for the small panel under it"] * 2, size=2.6)
    crowded.set_dpi(DPI)
    assert any("overlaps" in line for line in unreadable_texts(crowded))
    stacked = show_images([np.zeros((8, 8))] * 2, ncols=1, size=2.6)
    stacked.axes[1].set_title("line one\nline two\nline three\nline four\nline five")
    stacked.set_dpi(DPI)
    assert any("covers the panel" in line for line in unreadable_texts(stacked))
    edge = show_images(images[:1], titles=["a title much wider than its little figure"], size=2.0)
    edge.set_dpi(DPI)
    assert any("cut off" in line for line in unreadable_texts(edge))
    assert not any("cut off" in line for line in unreadable_texts(edge, cropped_to_figure=False))
    plt.close("all")


def test_maps_are_drawn_from_tensors_that_record_gradients():
    """A saliency map straight from autograd (or from a GPU) is drawn without a raw error."""
    import matplotlib.pyplot as plt
    import torch

    from utils.plotting import map_array, normalize_map, resize_map, show_map, update_map

    values = torch.rand(4, 4, requires_grad=True) * 2
    assert map_array(values).dtype == np.float32 and normalize_map(values).max() == 1.0
    assert resize_map(values, (8, 8)).shape == (8, 8)
    ax = show_map(values)
    update_map(ax.images[0], values * 3)
    plt.close("all")
