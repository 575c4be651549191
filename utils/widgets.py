"""Builders for the standard controls, with core ipywidgets only.

The pattern in every notebook: a *pure* function draws the figure from explicit arguments;
the notebook calls it once (the static figure GitHub and the tests see), then hands the
same function to ``connect`` with the controls built here:

    image, layer = image_picker(), layer_picker(model)
    connect(draw, image=image, layer=layer)

``connect`` redraws into one output area whenever a control changes, so callbacks can be
tested without a browser: set ``control.value`` and look at what ``draw`` received.
"""
import base64
import io

import ipywidgets as W

from .images import ImageError, load_image, sample_images
from .plotting import log_figure_problems

IPYWIDGETS_7 = int(W.__version__.split(".")[0]) < 8     # as Colab ships it (7.7.1)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

LAYOUT = W.Layout(width="420px")
STYLE = {"description_width": "90px"}


def layer_picker(model, role="stages"):
    """Dropdown of the model's layers for ``role`` (a role naming a list), by module path."""
    paths = model.spec.layer(role)
    paths = paths if isinstance(paths, list) else [paths]
    return W.Dropdown(options=paths, value=paths[0], description="layer",
                      layout=LAYOUT, style=STYLE)


def channel_slider(n_channels, value=0):
    """Integer slider over channels 0 .. n-1."""
    return W.IntSlider(min=0, max=max(n_channels - 1, 0), value=min(value, n_channels - 1),
                       description="channel", continuous_update=False, layout=LAYOUT, style=STYLE)


def follow_layer(layer_control, channel_control, activation_of):
    """Keep the channel slider within the chosen layer's channels, opening on its strongest.

    ``activation_of(layer)`` returns that layer's activation (1×C×h×w), e.g. from a cache.
    Register this before ``connect`` so the slider is right when the figure redraws.
    """
    def update(change):
        activation = activation_of(change["new"])
        strongest = int(activation[0].flatten(1).mean(1).argmax())
        channel_control.max = activation.shape[1] - 1
        channel_control.value = strongest
    layer_control.observe(update, names="value")


def class_picker(predictions):
    """Dropdown over [(label, probability), ...] (e.g. ``top_k(model, x, 10)``); value = label."""
    options = [(f"{label} ({p:.2f})", label) for label, p in predictions]
    return W.Dropdown(options=options, value=options[0][1], description="class",
                      layout=LAYOUT, style=STYLE)


class ImagePicker(W.VBox):
    """Bundled image, uploaded file or typed path/URL; ``.image`` is the chosen PIL image.

    The last control touched wins. A file that cannot be read shows its error in the box
    and keeps the previous image, so a bad upload never breaks the notebook. The explorers
    it feeds (``connect``) look busy from the moment a new photo is chosen (``busy``: their
    ``Busy`` states), before any other observer of the photo runs (a class menu, say).
    """

    def __init__(self, value="cat"):
        self.choice = W.Dropdown(options=sample_images(), value=value, description="image",
                                 layout=LAYOUT, style=STYLE)
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.path = W.Text(placeholder="or a path / URL, then Enter", description="path",
                           layout=LAYOUT, style=STYLE, continuous_update=False)
        self.message = W.HTML()
        super().__init__([self.choice, W.HBox([self.upload, self.path]), self.message])
        self.image, self.busy = load_image(value), []
        self.choice.observe(lambda change: self._set(change["new"]), names="value")
        self.upload.observe(lambda change: self._set(uploaded_bytes(change["new"])), names="value")
        self.path.observe(lambda change: self._set(change["new"].strip()), names="value")

    def _set(self, source):
        if source is None or source == "":
            return
        for busy in self.busy:            # cleared when the explorer has redrawn
            busy.start()
        try:
            image = load_image(source)
        except ImageError as err:
            self.message.value = f"<span style='color:#b00'>{err}</span>"
            for busy in self.busy:        # nothing to redraw
                busy.stop()
            return
        self.message.value = ""
        self.image = image


def uploaded_bytes(value):
    """The file's bytes from a FileUpload value (ipywidgets 8 tuple or 7 dict), or None."""
    if not value:
        return None
    item = value[0] if isinstance(value, (tuple, list)) else next(iter(value.values()))
    return bytes(item["content"])


def image_picker(value="cat"):
    return ImagePicker(value)


class Explorer(W.VBox):
    """Controls and the figure they redraw. Where no widget can run (GitHub, nbviewer, a saved
    notebook opened without its kernel) the cell shows the first figure as a still image."""

    still = None            # the first figure, as base64 JPEG

    def _repr_mimebundle_(self, **kwargs):
        if IPYWIDGETS_7:    # 7 (Colab's) has no bundle of its own: the view its display hook sends
            bundle = {"text/plain": repr(self),
                      WIDGET_VIEW: {"version_major": 2, "version_minor": 0, "model_id": self.model_id}}
        else:
            bundle = super()._repr_mimebundle_(**kwargs)
        if self.still is not None and bundle is not None:
            bundle["image/jpeg"] = self.still
        return bundle

    if IPYWIDGETS_7:
        def _ipython_display_(self):
            """ipywidgets 7 shows a widget through this hook, which IPython prefers to any
            bundle: send the bundle above, still included."""
            from IPython.display import display
            display(self._repr_mimebundle_(), raw=True)


def figure_jpeg(figure, quality=88):
    """The figure as JPEG bytes, cropped to what it draws (like Jupyter's inline figures).

    One Agg render and a JPEG encoding of its pixels: about 0.1 s for a three-panel figure on
    a slow CPU, where Jupyter's own display of a figure takes about twice as long.
    """
    canvas = _agg_canvas(figure)
    log_figure_problems(figure)              # only when VCNN_FIGURE_LOG names a log; before
    canvas.draw()                            # the render, which its own layout pass would blank
    return _jpeg(canvas, _drawn_box(figure, canvas), quality)


class InPlace:
    """A figure redrawn in place by *blitting*, the way matplotlib animates: the parts that
    never change are rendered once and kept as pixels; a change draws only the artists that
    ``draw`` returns (images, titles, patches) over a copy of those pixels: 20-50 ms for the
    explorers' figures, where a new figure and its full render take 0.2-0.3 s. Artists left
    out of the list keep their first look, so ``draw`` must return every artist it changed,
    in drawing order.
    """

    def __init__(self, figure, quality=88):
        self.figure, self.quality = figure, quality
        self.canvas, self.background, self.box = _agg_canvas(figure), None, None

    def jpeg(self, changed):
        """The figure as JPEG bytes after ``draw`` changed the artists ``changed``."""
        if self.background is None:              # first: everything that never changes
            for artist in changed:
                artist.set_animated(True)
            log_figure_problems(self.figure)     # before the render (it would blank it)
            self.canvas.draw()
            self.background = self.canvas.copy_from_bbox(self.figure.bbox)
            self.box = _drawn_box(self.figure, self.canvas)
        else:
            self.canvas.restore_region(self.background)
        for artist in changed:
            self.figure.draw_artist(artist)
        return _jpeg(self.canvas, self.box, self.quality)


def _agg_canvas(figure):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    return figure.canvas if type(figure.canvas) is FigureCanvasAgg else FigureCanvasAgg(figure)


def _drawn_box(figure, canvas):
    """(top, bottom, left, right) in pixels of what the figure draws, plus a small margin."""
    import numpy as np
    box = figure.get_tightbbox(canvas.get_renderer()).padded(0.04)   # inches, from below
    box = box.transformed(figure.dpi_scale_trans)                     # pixels
    width, height = canvas.get_width_height()
    return (max(height - int(np.ceil(box.y1)), 0), min(height - int(box.y0), height),
            max(int(box.x0), 0), min(int(np.ceil(box.x1)), width))


def _jpeg(canvas, box, quality):
    import numpy as np
    from PIL import Image
    top, bottom, left, right = box
    pixels = np.asarray(canvas.buffer_rgba())[top:bottom, left:right, :3]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


BUSY_AFTER = 0.1            # seconds a change may take before it says "computing…"
BUSY_TEXT = ("<style>.vcnn-busy {opacity: 0.4; filter: grayscale(1)}</style>"
             "<span style='color:#555'>computing…</span>")


class Busy:
    """The explorer's busy state: ``with busy: draw(...)`` shows a "computing…" line and
    greys out the figure (``shown``) if the block is still running after ``after`` seconds,
    and clears both when it ends. A timer thread sets the state, so the browser hears of it
    while the kernel is still computing; a change quicker than ``after`` never flickers.
    """

    def __init__(self, picture, after=BUSY_AFTER):
        import threading
        self.picture, self.after, self.lock = picture, after, threading.Lock()
        self.line = W.HTML(layout=W.Layout(height="1.6em", margin="0"))
        self.shown, self.running, self.timer = False, False, None

    def show(self):
        with self.lock:
            if self.running and not self.shown:
                self.shown = True
                self.line.value = BUSY_TEXT
                self.picture.add_class("vcnn-busy")

    def start(self):
        """Start the clock (again: nothing), as ``with`` does."""
        import threading
        with self.lock:
            if self.running:
                return
            self.running = True
        self.timer = threading.Timer(self.after, self.show)
        self.timer.daemon = True
        self.timer.start()

    def stop(self):
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:
            self.running = False
            if self.shown:
                self.shown = False
                self.line.value = ""
                self.picture.remove_class("vcnn-busy")

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def connect(draw, busy_after=BUSY_AFTER, **controls):
    """Call ``draw(**values)`` now and whenever a control changes; return the UI box.

    What ``draw`` returns decides how the picture is made:

    * nothing, or a figure: ``draw`` made a new figure (with pyplot), rendered whole: simple,
      0.2-0.4 s per change for a figure of a few panels;
    * a list of artists: ``draw`` changed them in a figure it drew before (``set_data``,
      ``set_text``, ``set_clim``); only they are drawn again (``InPlace``): tens of ms.

    Either way the figure is rendered here into an ``ipywidgets.Image`` that is updated in
    place, the quickest way to a new picture in the browser. What ``draw``
    prints (text, progress bars, errors) appears in an output area above the figure. An
    ``ImagePicker`` passes its PIL image; other widgets pass their ``.value``. A change that
    leaves every value as it was drawn (two controls moved by one action) is not redrawn.

    A change that takes longer than ``busy_after`` seconds (a new photo, a map to recompute)
    says so while it runs: a line under the controls reads "computing…" and the figure greys
    out, until the new figure replaces it (``Busy``). Quicker changes never show it.
    """
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure
    output, picture = W.Output(), W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
    busy = Busy(picture, busy_after)
    box = Explorer(list(controls.values()) + [busy.line, output, picture])
    in_place = []                        # the InPlace of the figure last changed in place
    drawn = []                           # the values of the figure on screen

    def values():
        return {k: (c.image if isinstance(c, ImagePicker) else c.value) for k, c in controls.items()}

    def same(a, b):          # images by identity (comparing their pixels would cost more)
        return all(a[k] is b[k] or (not hasattr(a[k], "size") and a[k] == b[k]) for k in a)

    def redraw(_=None):
        now = values()
        if drawn and same(now, drawn[-1]):
            busy.stop()                  # a photo's busy state, if its explorer had drawn it
            return
        with output, busy:               # busy until the new figure is sent
            output.clear_output(wait=True)
            before = set(plt.get_fignums())
            result = draw(**now)
            new = set(plt.get_fignums()) - before
            if isinstance(result, (list, tuple)) and result:
                if not in_place or in_place[0].figure is not result[0].figure:
                    plt.close(result[0].figure)      # shown by the widget, not by the notebook
                    in_place[:] = [InPlace(result[0].figure)]
                picture.value = in_place[0].jpeg(list(result))
            elif isinstance(result, Figure) or new:
                picture.value = figure_jpeg(result if isinstance(result, Figure) else
                                            plt.figure(max(new)))
            if box.still is None and picture.value:
                box.still = base64.b64encode(picture.value).decode("ascii")
            for number in set(plt.get_fignums()) - before:
                plt.close(number)        # a new figure lives on in the widget (and in draw's
                                         # hands, to be changed in place next time)
            drawn[:] = [now]

    for control in controls.values():
        if isinstance(control, ImagePicker):
            control.busy.append(busy)
            for part in (control.choice, control.upload, control.path):
                part.observe(lambda change: redraw(), names="value")
        else:
            control.observe(redraw, names="value")
    redraw()
    box.redraw, box.busy = redraw, busy
    return box
