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
    and keeps the previous image, so a bad upload never breaks the notebook.
    """

    def __init__(self, value="cat"):
        self.choice = W.Dropdown(options=sample_images(), value=value, description="image",
                                 layout=LAYOUT, style=STYLE)
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.path = W.Text(placeholder="or a path / URL, then Enter", description="path",
                           layout=LAYOUT, style=STYLE, continuous_update=False)
        self.message = W.HTML()
        super().__init__([self.choice, W.HBox([self.upload, self.path]), self.message])
        self.image = load_image(value)
        self.choice.observe(lambda change: self._set(change["new"]), names="value")
        self.upload.observe(lambda change: self._set(uploaded_bytes(change["new"])), names="value")
        self.path.observe(lambda change: self._set(change["new"].strip()), names="value")

    def _set(self, source):
        if source is None or source == "":
            return
        try:
            image = load_image(source)
        except ImageError as err:
            self.message.value = f"<span style='color:#b00'>{err}</span>"
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
        bundle = super()._repr_mimebundle_(**kwargs)
        if self.still is not None and bundle is not None:
            bundle["image/jpeg"] = self.still
        return bundle


def still_image(figure):
    """A matplotlib figure as a base64 JPEG string (the still of a widget's figure)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="jpeg", dpi=figure.dpi, bbox_inches="tight",
                   pil_kwargs={"quality": 85})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def connect(draw, **controls):
    """Call ``draw(**values)`` now and whenever a control changes; return the UI box.

    An ``ImagePicker`` passes its PIL image; other widgets pass their ``.value``. The first
    figure is also kept as the box's still image, for viewers that cannot run widgets.
    """
    import matplotlib.pyplot as plt
    output = W.Output()
    box = Explorer(list(controls.values()) + [output])

    def values():
        return {k: (c.image if isinstance(c, ImagePicker) else c.value) for k, c in controls.items()}

    def redraw(_=None):
        with output:
            output.clear_output(wait=True)
            draw(**values())
            if box.still is None and plt.get_fignums():
                box.still = still_image(plt.gcf())
            plt.show()

    for control in controls.values():
        if isinstance(control, ImagePicker):
            for part in (control.choice, control.upload, control.path):
                part.observe(lambda change: redraw(), names="value")
        else:
            control.observe(redraw, names="value")
    redraw()
    box.redraw = redraw
    return box
