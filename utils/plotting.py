"""One look for every figure, readable on a projector.

* Heat maps use ``HEAT_CMAP`` (inferno: perceptually uniform, dark-to-bright, survives a
  washed-out projector and gray-scale printing); signed maps use ``SIGNED_CMAP``
  (blue-white-red, centred on zero).
* Overlays put the map on a *grayscale* copy of the photo so the colours belong to the map.
* Titles are large, axes are off, every heat map has a colour bar.
"""
import json
import os

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HEAT_CMAP = "inferno"
SIGNED_CMAP = "RdBu_r"
GRAY_CMAP = "gray"
DPI = 100                  # figure pixels per inch in the notebook
COLUMN_PX = 1100           # a JupyterLab output column on a 1280 px wide projector
MIN_PANEL_PX = 150         # narrower image panels cannot be read from the back of a hall
MAX_PER_ROW = 4            # panels per row, so that each stays wide enough


def use_lecture_style():
    """Larger fonts and a dpi of 100: legible on a projector, small in a saved notebook."""
    plt.rcParams.update({
        "figure.dpi": DPI, "savefig.dpi": DPI, "font.size": 12, "axes.titlesize": 12,
        "axes.titleweight": "bold", "figure.titlesize": 14, "figure.titleweight": "bold",
        "image.cmap": HEAT_CMAP, "axes.grid": False,
    })
    try:  # in Jupyter, JPEG figures keep notebooks small (photos compress 5-10× better)
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("jpeg", pil_kwargs={"quality": 88})
    except Exception:
        pass
    if os.environ.get("VCNN_FIGURE_LOG"):        # tools/execute_notebooks.py checks the figures
        log_small_panels(os.environ["VCNN_FIGURE_LOG"])


def small_panels(fig, column=COLUMN_PX, minimum=MIN_PANEL_PX):
    """Sizes (px, as displayed) of the figure's image panels whose longer side is under
    ``minimum`` (a portrait photo may be narrow and still readable).

    A notebook shrinks a figure wider than its ``column`` to fit, so a panel's displayed
    size is its share of the figure times min(1, column / figure width).
    """
    width_px, height_px = fig.get_figwidth() * fig.dpi, fig.get_figheight() * fig.dpi
    scale = min(1.0, column / width_px)
    sizes = [max(ax.get_position().width * width_px, ax.get_position().height * height_px) * scale
             for ax in fig.axes if ax.images]
    return [round(size) for size in sizes if size < minimum]


def _drawn_texts(fig):
    """(owner axes or None, text) for every non-empty text the figure draws: titles, axis
    labels, tick labels inside the view, annotations, legends, the suptitle."""
    for text in fig.texts:
        yield None, text
    for legend in fig.legends:
        yield from ((None, t) for t in [legend.get_title(), *legend.get_texts()])
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        yield from ((ax, t) for t in [ax.title, ax._left_title, ax._right_title, *ax.texts])
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                if not axis.get_visible():
                    continue
                yield ax, axis.label
                low, high = sorted(axis.get_view_interval())
                span = (high - low) * 1e-6
                for tick in axis.get_major_ticks():
                    if low - span <= tick.get_loc() <= high + span:
                        yield from ((ax, t) for t in (tick.label1, tick.label2))
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            yield from ((ax, t) for t in [legend.get_title(), *legend.get_texts()])


def unreadable_texts(fig, cropped_to_figure=True):
    """What a projector audience cannot read, one line each (empty when the figure is clean):
    two texts that overlap, a text printed over another panel's image, and (when the saved
    picture is cropped to the figure, as the explorers' are) a text cut off at its edge.
    Jupyter's inline figures grow to hold every text (``bbox_inches="tight"``), so for them
    ``cropped_to_figure=False``."""
    from matplotlib.transforms import Bbox
    fig.draw_without_rendering()
    renderer = fig._get_renderer()
    texts = [(owner, text, text.get_window_extent(renderer)) for owner, text in _drawn_texts(fig)
             if text.get_visible() and text.get_text().strip()]
    overlaps = lambda a, b: (Bbox.intersection(a, b) is not None
                             and min(Bbox.intersection(a, b).width, Bbox.intersection(a, b).height) > 1)
    found = []
    for i, (_, text, box) in enumerate(texts):
        for _, other, other_box in texts[i + 1:]:
            if overlaps(box, other_box):
                found.append(f"{text.get_text()!r} overlaps {other.get_text()!r}")
        for ax in fig.axes:
            if ax.images and ax is not texts[i][0] and overlaps(box, ax.get_window_extent(renderer)):
                found.append(f"{text.get_text()!r} covers the panel {ax.get_title()!r}")
        edge = fig.bbox
        if cropped_to_figure and (box.x0 < edge.x0 - 1 or box.y0 < edge.y0 - 1
                                  or box.x1 > edge.x1 + 1 or box.y1 > edge.y1 + 1):
            found.append(f"{text.get_text()!r} is cut off at the figure's edge")
    return found


def log_small_panels(path):
    """Append {figure size, small panels, unreadable texts} to ``path`` for each figure drawn
    that has any (``tools/execute_notebooks.py`` and the test suite read it)."""
    from matplotlib.backend_bases import FigureCanvasBase
    original = FigureCanvasBase.print_figure
    if getattr(original, "logs_small_panels", False):
        return

    def print_figure(canvas, *args, **kwargs):
        log_figure_problems(canvas.figure, path, cropped_to_figure=kwargs.get("bbox_inches") != "tight")
        return original(canvas, *args, **kwargs)
    print_figure.logs_small_panels = True
    FigureCanvasBase.print_figure = print_figure


def log_figure_problems(fig, path=None, cropped_to_figure=True):
    """Append the figure's small panels and unreadable texts to ``path`` (by default the file
    named by ``VCNN_FIGURE_LOG``; nothing when it is unset), one JSON line, if it has any."""
    path = path or os.environ.get("VCNN_FIGURE_LOG")
    if not path:
        return
    small, texts = small_panels(fig), unreadable_texts(fig, cropped_to_figure)
    if small or texts:
        titles = [fig.texts[0].get_text()] if fig.texts else [a.get_title() for a in fig.axes][:3]
        with open(path, "a") as log:
            log.write(json.dumps({"size_px": [round(v * fig.dpi) for v in fig.get_size_inches()],
                                  "small_panels_px": small, "unreadable_texts": texts,
                                  "titles": titles}) + "\n")


def to_numpy_image(image):
    """PIL image, H×W(×3) array or 3×H×W / H×W tensor -> float array in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        if image.dim() == 4:
            image = image[0]
        if image.dim() == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.squeeze(-1).numpy() if image.dim() == 3 and image.shape[-1] == 1 else image.numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.max() > 1.0 + 1e-6:
        image = image / 255.0
    return image


def map_array(values):
    """A map as a float32 NumPy array, whatever it came as: a list, an array, or a tensor
    (on a GPU, or still recording gradients)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu()
    return np.asarray(values, dtype=np.float32)


def normalize_map(values):
    """Rescale to [0, 1] for display only (never threshold a display-normalised map)."""
    values = map_array(values)
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def resize_map(heatmap, size):
    """Bilinear upsampling of an h×w map to (H, W), as CAM and Grad-CAM do."""
    tensor = torch.as_tensor(map_array(heatmap))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def grid_axes(n, ncols=None, size=2.6, title=None):
    """A figure with n image axes (axes turned off), laid out in rows of ``ncols``."""
    ncols = ncols or min(n, MAX_PER_ROW)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig, list(axes.flat)[:n]


def show_images(images, titles=None, ncols=None, size=2.6, title=None, cmap=GRAY_CMAP):
    """Images side by side (color or gray), each with an optional title. Returns the figure."""
    images = list(images)
    fig, axes = grid_axes(len(images), ncols, size, title)
    for i, (ax, image) in enumerate(zip(axes, images)):
        array = to_numpy_image(image)
        ax.imshow(array, cmap=cmap if array.ndim == 2 else None,
                  vmin=None if array.ndim == 3 else array.min(),
                  vmax=None if array.ndim == 3 else array.max())
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


def show_heatmap(image, heatmap, ax=None, title=None, alpha=0.55, cmap=HEAT_CMAP,
                 colorbar=True, signed=False, limits=None):
    """Overlay a map (any resolution) on a grayscale copy of ``image``, with a colour bar.

    The map is upsampled bilinearly to the image size; ``signed=True`` centres a diverging
    colour map on zero instead of stretching to [min, max]; ``limits`` = (vmin, vmax) sets
    the colour scale instead (one scale shared by several panels).
    """
    base = to_numpy_image(image)
    gray = base.mean(axis=2) if base.ndim == 3 else base
    values = resize_map(heatmap, gray.shape)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(gray, cmap=GRAY_CMAP, vmin=0, vmax=1)
    if signed:
        bound = float(np.abs(values).max()) or 1.0
        shown = ax.imshow(values, cmap=SIGNED_CMAP, alpha=alpha, vmin=-bound, vmax=bound)
    else:
        vmin, vmax = limits if limits is not None else (None, None)
        shown = ax.imshow(values, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)
    return _finish_panel(ax, shown, title, colorbar)


def _finish_panel(ax, shown, title, colorbar):
    """No axes, the title, and a colour bar for ``shown`` if asked."""
    ax.axis("off")
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    return ax


STRETCHED = "0 = min, 1 = max"          # colour-bar label of a map shown through normalize_map


def update_map(shown, values, signed=False, limits=None):
    """New ``values`` in a map drawn by ``show_map`` or ``show_heatmap`` (``shown``: its image
    artist). The colour range is stretched to them (centred on zero if ``signed``), unless
    ``limits`` fixes it. The map keeps its place on the axes at any resolution. Returns the
    artists to draw again, for ``widgets.connect``: the map, and its colour bar if its range
    changed (a fixed range saves redrawing the colour bar's ticks)."""
    values = map_array(values)
    shown.set_data(values)
    if limits is not None:
        shown.set_clim(*limits)
        return [shown]
    bound = float(np.abs(values).max()) or 1.0
    shown.set_clim(*((-bound, bound) if signed else (float(values.min()), float(values.max()))))
    return [shown] + ([shown.colorbar.ax] if shown.colorbar is not None else [])


def show_map(values, ax=None, title=None, cmap=HEAT_CMAP, colorbar=True):
    """A single 2-D map (activation, saliency) on its own, with a colour bar."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.6, 3.2))
    shown = ax.imshow(map_array(values), cmap=cmap)
    return _finish_panel(ax, shown, title, colorbar)
