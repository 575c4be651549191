"""Getting any picture into an RGB image the networks can read.

``load_image`` accepts a file path, a URL, raw bytes, a PIL image, a NumPy array or a
tensor, and always returns an 8-bit RGB ``PIL.Image``: grayscale, RGBA, palette, CMYK and
16-bit images are converted, phone photos are turned upright from their EXIF tag, huge
images are shrunk, and anything unusable raises an ``ImageError`` that says what to do.
"""
import io
import math
import tarfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from .downloads import IMAGE_SETS, DownloadError, download, stream

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
IMAGE_DIR = DATA_DIR / "images"

MIN_SIDE = 32      # smaller than this, a CNN has nothing to look at
MAX_SIDE = 1024    # larger images are shrunk: nothing here needs more pixels


class ImageError(ValueError):
    """An input that cannot be turned into a usable RGB image."""


def sample_images():
    """Names of the bundled photos and textures (see data/ATTRIBUTION.md)."""
    return sorted(p.stem for p in IMAGE_DIR.glob("*.jpg"))


def sample_path(name):
    """Path of a bundled image by name, e.g. ``sample_path("cat")``."""
    path = IMAGE_DIR / f"{name}.jpg"
    if not path.exists():
        raise ImageError(f"No bundled image called {name!r}. Choose one of {sample_images()}.")
    return path


def load_image(source, max_side=MAX_SIDE, min_side=MIN_SIDE):
    """Return ``source`` as an upright 8-bit RGB ``PIL.Image``.

    ``source`` may be the name of a bundled image ("cat"), a path, an http(s) URL, bytes,
    a PIL image, a NumPy array (H×W or H×W×C, uint8, uint16 or floats in [0, 1]) or a
    tensor (C×H×W or 1×C×H×W, floats in [0, 1] or uint8).
    """
    image = _to_pil(source)
    image = ImageOps.exif_transpose(image)
    image = _to_rgb(image)
    if min(image.size) < min_side:
        raise ImageError(f"The image is {image.size[0]}×{image.size[1]} pixels; at least "
                         f"{min_side} px per side is needed. Use a larger image.")
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side), Image.LANCZOS)
    return image


def _to_pil(source):
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(source), "the given bytes")
    if isinstance(source, torch.Tensor):
        return _array_to_pil(_tensor_to_hwc(source))
    if isinstance(source, np.ndarray):
        return _array_to_pil(source)
    if isinstance(source, (str, Path)):
        text = str(source)
        if not text.strip():
            raise ImageError("The image path is an empty string. Give a file path, a URL, "
                             f"or a bundled image: {sample_images()}.")
        if text.startswith(("http://", "https://")):
            return _open_bytes(_download(text), text)
        path = Path(text).expanduser()
        if not path.exists() and "/" not in text and "\\" not in text and not path.suffix:
            path = sample_path(text)
        if not path.exists():
            raise ImageError(f"File not found: {text}. Check the path, or pick a bundled "
                             f"image: {sample_images()}.")
        if path.is_dir():
            raise ImageError(f"{text} is a folder, not an image file.")
        return _open_bytes(path.read_bytes(), text)
    raise ImageError(f"Cannot read an image from a {type(source).__name__}. Give a path, "
                     "URL, bytes, PIL image, NumPy array or tensor.")


def _open_bytes(data, what):
    if not data:
        raise ImageError(f"{what} is empty: no image data.")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise ImageError(f"{what} is not an image Pillow can read ({err}). "
                         "Use a JPEG, PNG, GIF, BMP, TIFF or WebP file.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{what} looks like an image but is corrupt or truncated ({err}). "
                         "Try another copy of the file.") from None
    return image


def _download(url):
    """The bytes at ``url``, through ``utils.downloads.stream`` (progress bar, timeouts)."""
    data = io.BytesIO()
    try:
        stream(url, data)
    except DownloadError as err:
        raise ImageError(f"{err} Or upload the file instead.") from None
    return data.getvalue()


def _tensor_to_hwc(tensor):
    array = tensor.detach().cpu()
    if array.dtype in (torch.bfloat16, torch.float16):     # NumPy has no bfloat16
        array = array.float()
    if array.dim() == 4:
        if array.shape[0] != 1:
            raise ImageError(f"Got a batch of {array.shape[0]} images; pass one image.")
        array = array[0]
    if array.dim() == 3 and array.shape[0] in (1, 3, 4):
        array = array.permute(1, 2, 0)
    return array.numpy()


def _array_to_pil(array):
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(f"An array of shape {array.shape} is not an image: expected "
                         "H×W (gray), H×W×3 (RGB) or H×W×4 (RGBA).")
    if array.dtype == np.uint8:
        pass
    elif array.dtype == np.uint16:
        array = (array / 257.0).round().astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError("The array holds NaN or infinite values.")
        if array.min() < -1e-3 or array.max() > 1 + 1e-3:
            raise ImageError(f"Float images must lie in [0, 1]; this one spans "
                             f"[{array.min():.3g}, {array.max():.3g}]. Was it normalised? "
                             "Undo the normalisation first (spec.deprocess).")
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    else:
        raise ImageError(f"Unsupported array type {array.dtype}; use uint8, uint16 or float.")
    return Image.fromarray(np.ascontiguousarray(array))


def _to_rgb(image):
    """Convert any Pillow mode to RGB: transparency onto white, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray((np.clip(array / top, 0, 1) * 255).round().astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-12)
        image = Image.fromarray(((array - array.min()) / span * 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def annotations():
    """Hand-drawn boxes on the bundled images: {image: {label: (x0, y0, x1, y1)}}."""
    import json
    data = json.loads((DATA_DIR / "annotations.json").read_text())
    return {name: {label: tuple(box) for label, box in boxes.items()}
            for name, boxes in data.items() if not name.startswith("_")}


def input_channels(model=None):
    """Colour channels ``model`` takes: those of its first convolution (3 without a model)."""
    first = next((m for m in model.modules() if isinstance(m, torch.nn.Conv2d)), None) \
        if model is not None else None
    return first.in_channels if first is not None else 3


def image_batch(x, model=None):
    """Check a network input: a float N×3×H×W tensor (``model.spec.preprocess`` makes one).

    A float batch of another precision (float64, bfloat16) is converted to the dtype of
    ``model``'s weights (float32 without a model), and a batch on another device is moved
    to theirs (a CPU batch for a model on the GPU); anything else raises an ``ImageError``
    that says what to pass instead. (A hand-built network whose first convolution takes
    another number of channels gets batches of that many.)
    """
    c = input_channels(model)
    if not isinstance(x, torch.Tensor):
        raise ImageError(f"Expected a normalised N×{c}×H×W tensor, got a {type(x).__name__}. "
                         "Use x = model.spec.preprocess(image) to make one.")
    if x.dim() == 3 and x.shape[0] == c:
        raise ImageError(f"Got one image of shape {tuple(x.shape)}; methods take a batch "
                         f"N×{c}×H×W: use x.unsqueeze(0) (or model.spec.preprocess(image)).")
    if x.dim() != 4 or x.shape[1] != c:
        raise ImageError(f"Expected a normalised N×{c}×H×W batch, got shape {tuple(x.shape)}. "
                         "Use x = model.spec.preprocess(image) to make one.")
    if not x.is_floating_point():
        raise ImageError(f"Expected a float tensor (normalised pixels), got {x.dtype}. "
                         "Use x = model.spec.preprocess(image) to make one.")
    weight = next(model.parameters(), None) if model is not None else None
    dtype = weight.dtype if weight is not None else torch.float32
    device = weight.device if weight is not None else x.device
    return x if (x.dtype, x.device) == (dtype, device) else x.to(device=device, dtype=dtype)


def one_image(x, model=None):
    """``image_batch`` for methods defined per image: exactly one image, 1×3×H×W."""
    x = image_batch(x, model)
    if x.shape[0] != 1:
        raise ImageError(f"Got a batch of {x.shape[0]} images; this method takes one image "
                         "(1×3×H×W): call it once per image, e.g. with x[i:i + 1].")
    return x


def blur(x, sigma, kernel=None):
    """Gaussian blur of an N×3×H×W batch, with a kernel of ±3σ unless ``kernel`` is given."""
    kernel = kernel or 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x, [kernel, kernel], [sigma, sigma])


def image_set(name="imagenette-160", n_images=40, seed=0, cache_dir=None, split="val"):
    """``n_images`` photos of a downloadable set (``utils.downloads.IMAGE_SETS``) as
    [(name, PIL image)].

    The archive is downloaded once; photos of ``split`` ("train" or "val") are picked at
    random with ``seed`` and read straight out of the archive (nothing is unpacked).
    """
    if name not in IMAGE_SETS:
        raise KeyError(f"Unknown image set {name!r}; choose one of {list(IMAGE_SETS)}.")
    info = IMAGE_SETS[name]
    folder = f"{info['root']}{split}/"
    path = download(info["url"], cache_dir, info.get("sha256"), info.get("md5"))
    with tarfile.open(path) as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile()
                          and m.name.startswith(folder)
                          and m.name.lower().endswith((".jpg", ".jpeg", ".png"))),
                         key=lambda m: m.name)
        if not members:
            raise OSError(f"{path.name} holds no images under {folder}.")
        chosen = np.random.default_rng(seed).choice(len(members), min(n_images, len(members)),
                                                    replace=False)
        photos = []
        for i in tqdm(sorted(chosen), desc=f"reading {name}", leave=False):
            data = archive.extractfile(members[i]).read()
            photos.append((Path(members[i].name).stem, load_image(data)))
    return photos
