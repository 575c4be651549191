"""load_image turns every kind of input into an upright 8-bit RGB image, or says why not."""
import io
import time

import numpy as np
import pytest
import torch
from PIL import Image
from test_downloads import FAULTS, answer, serve, short_timeouts  # noqa: F401 (a fixture)

from utils.images import ImageError, load_image, sample_images
from utils.models import REGISTRY


def png_bytes(image, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, format=kwargs.pop("format", "PNG"), **kwargs)
    return buffer.getvalue()


def test_bundled_images_load_and_are_listed():
    names = sample_images()
    assert {"cat", "coffee", "brick"} <= set(names)
    for name in names:
        image = load_image(name)
        assert image.mode == "RGB" and min(image.size) >= 256


def test_path_bytes_pil_array_and_tensor_agree(tmp_path):
    rgb = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    expected = rgb
    for source in (str(path), path, path.read_bytes(), Image.fromarray(rgb), rgb,
                   torch.from_numpy(rgb).permute(2, 0, 1).float() / 255):
        got = np.asarray(load_image(source))
        assert got.shape == (40, 60, 3)
        assert np.abs(got.astype(int) - expected).max() <= 1, type(source)


def test_modes_are_converted():
    gray = Image.fromarray(np.full((40, 40), 77, np.uint8))
    assert np.asarray(load_image(gray))[0, 0].tolist() == [77, 77, 77]
    rgba = Image.new("RGBA", (40, 40), (255, 0, 0, 0))          # fully transparent red
    assert np.asarray(load_image(rgba))[0, 0].tolist() == [255, 255, 255]  # onto white
    palette = Image.new("P", (40, 40))
    palette.putpalette([0, 0, 255] * 256)
    assert np.asarray(load_image(palette))[0, 0].tolist() == [0, 0, 255]
    cmyk = Image.new("CMYK", (40, 40), (0, 255, 255, 0))         # pure red in CMYK
    assert np.asarray(load_image(cmyk))[0, 0].tolist() == [255, 0, 0]
    sixteen = Image.fromarray(np.full((40, 40), 65535, np.uint16))
    assert np.asarray(load_image(sixteen))[0, 0].tolist() == [255, 255, 255]
    assert np.asarray(load_image(np.full((40, 40), 32768, np.uint16)))[0, 0, 0] == 128


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 40))                 # white stripe on the left
    exif = image.getexif()
    exif[0x0112] = 6                                              # "rotate 90° clockwise"
    upright = load_image(png_bytes(image, format="JPEG", exif=exif.tobytes()))
    assert upright.size == (40, 80)
    assert np.asarray(upright)[:5, :, 0].mean() > 200            # stripe now on top


def test_huge_images_are_downsized():
    big = Image.new("RGB", (3000, 1500))
    assert load_image(big).size == (1024, 512)
    assert load_image(big, max_side=300).size == (300, 150)


@pytest.mark.parametrize("source, message", [
    (b"this is not an image", "not an image"),
    (b"", "empty"),
    ("", "empty string"),
    ("no/such/file.jpg", "not found"),
    ("tiger", "No bundled image"),
    (np.zeros((10, 10, 3), np.uint8), "at least 32"),
    (np.zeros((50, 50, 5), np.uint8), "not an image"),
    (np.full((50, 50, 3), 2.5), "[0, 1]"),
    (torch.zeros(2, 3, 50, 50), "batch"),
    (12345, "Cannot read"),
])
def test_bad_input_gets_a_clear_error(source, message):
    with pytest.raises(ImageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_image(source)


@pytest.mark.usefixtures("short_timeouts")
@pytest.mark.parametrize("fault", FAULTS)
def test_an_image_url_on_a_misbehaving_server_fails_in_seconds(fault):
    with serve(FAULTS[fault]) as server:
        start = time.perf_counter()
        with pytest.raises(ImageError, match="Could not download"):
            load_image(f"{server}/cat.jpg")
        assert time.perf_counter() - start < 2.5


@pytest.mark.usefixtures("short_timeouts")
def test_an_image_url_loads():
    image = Image.new("RGB", (64, 48), (10, 20, 200))
    with serve(answer(png_bytes(image))) as server:
        assert np.array_equal(np.asarray(load_image(f"{server}/x.png")), np.asarray(image))


def test_corrupt_file_gets_a_clear_error(tmp_path):
    data = png_bytes(Image.new("RGB", (64, 64), (10, 20, 30)), format="JPEG")
    path = tmp_path / "broken.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="corrupt|not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_preprocess_deprocess_round_trip(name):
    spec = REGISTRY[name]
    image = load_image("cat")
    x = spec.preprocess(image)
    assert x.shape == (1, 3, spec.size, spec.size)
    back = spec.deprocess(x)
    expected = np.asarray(image.resize((spec.size, spec.size), Image.BICUBIC), np.float32) / 255
    assert np.abs(back - expected).max() < 1e-5
    rgb = torch.rand(2, 3, 8, 8)
    assert torch.allclose(spec.denormalize(spec.normalize(rgb)), rgb, atol=1e-6)
    low, high = spec.valid_range()
    assert torch.allclose(spec.denormalize(low), torch.zeros(1, 3, 1, 1), atol=1e-6)
    assert torch.allclose(spec.denormalize(high), torch.ones(1, 3, 1, 1), atol=1e-6)
