"""Explorers that change their figure in place (``widgets.connect`` with a list of artists)
must show exactly what a fresh figure of the new choice shows: the same pixels, up to JPEG
noise. A stale panel, a colour bar left on the old range or a forgotten title fails here."""
import io

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils import cam as C  # noqa: E402
from utils import features  # noqa: E402
from utils import fixations as F  # noqa: E402
from utils.images import load_image  # noqa: E402
from utils.widgets import InPlace, channel_slider, class_picker, connect, figure_jpeg  # noqa: E402


def pixels(jpeg):
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.float32)


def same_picture(a, b):
    """Same size, and no pixel region differs beyond JPEG noise."""
    a, b = pixels(a), pixels(b)
    assert a.shape == b.shape
    difference = np.abs(a - b).mean(axis=2)
    assert difference.mean() < 1.0 and np.quantile(difference, 0.999) < 40, (
        difference.mean(), np.quantile(difference, 0.999))


def in_place(fig, first_changes, then):
    """Render ``fig`` by blitting after ``first_changes``, then after ``then()``."""
    view = InPlace(fig)
    view.jpeg(first_changes)
    picture = view.jpeg(then())
    plt.close(fig)
    return picture


def fresh(fig):
    picture = figure_jpeg(fig)
    plt.close(fig)
    return picture


def test_channel_update_matches_a_fresh_figure():
    image = load_image("cat")
    torch.manual_seed(0)
    activation = torch.rand(1, 8, 14, 14)
    activation[0, 5, 3:6, 3:9] = 4.0
    fig = features.plot_channel(image, activation, 1, "layer")
    moved = in_place(fig, features.update_channel(fig, activation, 2, "layer"),
                     lambda: features.update_channel(fig, activation, 5, "layer"))
    same_picture(moved, fresh(features.plot_channel(image, activation, 5, "layer")))


def test_a_stale_panel_would_be_caught():
    """The check above can fail: leaving out the overlay's artists shows the old overlay."""
    image = load_image("cat")
    torch.manual_seed(0)
    activation = torch.rand(1, 8, 14, 14)
    fig = features.plot_channel(image, activation, 1, "layer")
    moved = in_place(fig, features.update_channel(fig, activation, 1, "layer"),
                     lambda: features.update_channel(fig, activation, 5, "layer")[:3])
    with pytest.raises(AssertionError):
        same_picture(moved, fresh(features.plot_channel(image, activation, 5, "layer")))


def test_fixation_update_matches_a_fresh_figure():
    image = load_image("cat").resize((224, 160))
    rng = np.random.default_rng(0)
    a = [(int(y), int(x)) for y, x in rng.integers(0, 150, size=(30, 2))]
    b = [(int(y), int(x)) for y, x in rng.integers(20, 100, size=(12, 2))]
    heat_a, heat_b = rng.random((160, 224)), np.zeros((160, 224))
    heat_b[40:80, 60:120] = 1.0
    fig = F.plot_fixations(image, a, a[:25], heat_a, (10, 10, 50, 60), "first")
    moved = in_place(fig, F.update_fixations(fig, a, a[:25], heat_a, (10, 10, 50, 60), "first"),
                     lambda: F.update_fixations(fig, b, b, heat_b, None, "second"))
    same_picture(moved, fresh(F.plot_fixations(image, b, b, heat_b, None, "second")))


def test_cam_explorer_update_matches_a_fresh_figure(lite):
    x = lite.spec.preprocess("cat", size=128)
    explorer = C.CamExplorer(lite, x, layers=["blocks.10"], top=3)
    label = explorer.labels[1]
    fig = C.explorer_figure(explorer)
    moved = in_place(fig, C.update_explorer(fig, explorer, explorer.labels[0], "head", "Grad-CAM"),
                     lambda: C.update_explorer(fig, explorer, label, "blocks.10", "Grad-CAM"))
    same_picture(moved, fresh(C.draw_explorer(explorer, label, "blocks.10", "Grad-CAM")))


def test_connect_blits_returned_artists_and_skips_unchanged_values():
    fig, ax = plt.subplots(figsize=(2, 2))
    shown = ax.imshow(np.zeros((4, 4)), vmin=0, vmax=3, cmap="gray")
    calls = []

    def draw(channel, label):
        calls.append((channel, label))
        shown.set_data(np.full((4, 4), channel, dtype=float))
        return [shown]

    slider, classes = channel_slider(4, value=1), class_picker([("a", 0.6), ("b", 0.4)])
    box = connect(draw, channel=slider, label=classes)
    assert plt.fignum_exists(fig.number) is False        # shown by the widget only
    picture = box.children[-1]
    first = pixels(picture.value)
    slider.value = 3
    brighter = pixels(picture.value)
    assert brighter.mean() > first.mean() + 50            # the new value reached the picture
    box.redraw()                                          # nothing changed: nothing drawn
    assert calls == [(1, "a"), (3, "a")]
