"""Widget callbacks, without a browser: a control change redraws with the new value, an
upload becomes the image, a bad upload shows an error and keeps the last good image."""
import io
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from utils import widgets
from utils.images import sample_path
from utils.widgets import ImagePicker, channel_slider, class_picker, connect, uploaded_bytes


def png(color, size=(64, 48)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_connect_redraws_with_the_new_values():
    calls = []
    slider = channel_slider(10, value=2)
    classes = class_picker([("Egyptian cat", 0.8), ("tabby", 0.1)])
    connect(lambda channel, label: calls.append((channel, label)), channel=slider, label=classes)
    assert calls == [(2, "Egyptian cat")]
    slider.value = 7
    classes.value = "tabby"
    assert calls[-2:] == [(7, "Egyptian cat"), (7, "tabby")]
    assert slider.max == 9


def upload(picker, name, content):
    """What the browser does when a file is chosen, in the format of the installed ipywidgets
    (8: a tuple of dicts; 7, as Colab ships it: a dict by name, and a read-only trait)."""
    if widgets.IPYWIDGETS_7:
        picker.upload.set_trait("value", {name: {"metadata": {"name": name}, "content": content}})
    else:
        picker.upload.value = ({"name": name, "type": "image/png", "size": len(content),
                                "content": memoryview(content),
                                "last_modified": datetime.now(timezone.utc)},)


def test_image_picker_upload_path_and_errors(tmp_path):
    seen = []
    picker = ImagePicker("cat")
    connect(lambda image: seen.append(image.size), image=picker)
    assert seen[-1] == picker.image.size == Image.open(sample_path("cat")).size
    upload(picker, "red.png", png((255, 0, 0)))
    assert seen[-1] == (64, 48) and np.asarray(picker.image)[0, 0].tolist() == [255, 0, 0]
    upload(picker, "bad.png", b"not an image")
    assert "not an image" in picker.message.value
    assert np.asarray(picker.image)[0, 0].tolist() == [255, 0, 0]    # the last good image
    path = tmp_path / "blue.png"
    path.write_bytes(png((0, 0, 255), (50, 40)))
    picker.path.value = str(path)
    assert picker.message.value == "" and seen[-1] == (50, 40)
    picker.choice.value = "coffee"
    assert picker.image.size == Image.open(sample_path("coffee")).size


def test_uploaded_bytes_reads_both_ipywidgets_formats():
    data = png((1, 2, 3))
    assert uploaded_bytes(({"content": memoryview(data)},)) == data        # ipywidgets 8
    assert uploaded_bytes({"x.png": {"content": data}}) == data            # ipywidgets 7
    assert uploaded_bytes(()) is None


def test_a_connected_figure_leaves_a_still_for_viewers_without_widgets():
    import base64

    import matplotlib.pyplot as plt

    def draw(channel):
        plt.figure(figsize=(2, 2))
        plt.plot([0, channel])

    box = connect(draw, channel=channel_slider(4, value=1))
    bundle = box._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/jpeg"])[:2] == b"\xff\xd8"          # a JPEG
    still = box.still
    box.children[0].value = 3                     # a redraw keeps the first figure as the still
    assert box.still == still



def test_channel_slider_follows_the_layer_and_opens_on_its_strongest_channel():
    import torch

    from utils.widgets import follow_layer, layer_picker

    class Spec:
        layers = {"stages": ["a", "b"]}

        def layer(self, role):
            return self.layers[role]

    class Model:
        spec = Spec()
    acts = {"a": torch.zeros(1, 64, 4, 4), "b": torch.zeros(1, 16, 4, 4)}
    acts["b"][0, 5] = 1.0
    layer, channel = layer_picker(Model()), channel_slider(64, value=63)
    follow_layer(layer, channel, acts.__getitem__)
    layer.value = "b"
    assert channel.max == 15 and channel.value == 5


def test_a_slow_change_says_it_is_computing_until_its_figure_is_sent():
    import threading

    import matplotlib.pyplot as plt

    said = threading.Event()
    seen = {}

    def draw(channel):
        if channel == 3:                   # a slow change: runs until the explorer says so
            seen["said"] = said.wait(30)
            seen["grey"] = "vcnn-busy" in box.children[-1]._dom_classes
        plt.figure(figsize=(2, 2))
        plt.plot([0, channel])

    slider = channel_slider(4, value=1)
    box = connect(draw, busy_after=0.0, channel=slider)
    line = box.busy.line
    line.observe(lambda change: said.set() if "computing" in change["new"] else None, names="value")
    first = box.children[-1].value
    slider.value = 3
    assert seen == {"said": True, "grey": True}
    assert line.value == "" and "vcnn-busy" not in box.children[-1]._dom_classes
    assert box.children[-1].value != first                      # the new figure was sent


def test_a_quick_change_never_says_it_is_computing():
    said = []
    slider = channel_slider(4, value=1)
    box = connect(lambda channel: None, busy_after=30.0, channel=slider)
    box.busy.line.observe(lambda change: said.append(change["new"]), names="value")
    slider.value = 2
    slider.value = 3
    assert said == [] and box.busy.line.value == ""


def test_a_new_photo_looks_busy_before_its_other_observers_run_and_a_bad_one_clears_it():
    import threading

    said, seen = threading.Event(), []
    picker = ImagePicker("cat")
    menu = class_picker([("a", 0.5), ("b", 0.5)])

    def follow_photo(change):                # the menu follows the photo before the redraw
        seen.append(("menu", said.wait(30)))
    picker.choice.observe(follow_photo, names="value")
    box = connect(lambda image, label: seen.append(("draw", image.size)), busy_after=0.0,
                  image=picker, label=menu)
    box.busy.line.observe(lambda change: said.set() if "computing" in change["new"] else None,
                          names="value")
    picker.choice.value = "coffee"
    assert seen[-2:] == [("menu", True), ("draw", picker.image.size)]
    assert box.busy.line.value == "" and not box.busy.running
    said.clear()
    upload(picker, "bad.png", b"not an image")
    assert "not an image" in picker.message.value
    assert box.busy.line.value == "" and not box.busy.running        # nothing to wait for
