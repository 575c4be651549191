"""Inverting a representation with a trained up-convolutional network (Dosovitskiy & Brox, CVPR 2016).

Instead of optimising one image per code (``utils.inversion``), train a decoder f once so
that f(Φ(x)) ≈ x for all images, with the encoder Φ frozen:

    min_w  Σ_i ‖x_i − f(Φ(x_i); w)‖²                      (pixel MSE, the paper's loss)

then inverting a new code is one forward pass. The paper decodes AlexNet's conv layers with
three convolutions followed by stride-2 up-convolutions, LeakyReLU(0.2) after each, trained
on ImageNet.

Our small version, sized for a CPU:

* encoder: the bundled EfficientNet-Lite0 up to ``blocks.4`` (40 channels, 1/8 of the input
  size), the default model offline;
* decoder: three 3×3 convolutions, three 4×4 stride-2 up-convolutions (×8 in size; the paper
  uses 5×5, whose uneven overlap draws a checkerboard), a 3×3 convolution to RGB, LeakyReLU(0.2)
  after every layer but the last (0.34 M weights, 0.7 MB in float16);
* data: random 64-px crops, at random scales and flips, of the bundled photos and of the
  training photos in ``data/decoder_training/``; ``HELD_OUT`` is never used in training (it
  gives the validation loss and the comparison in notebook 10). Adam with lr 1e-3, cosine
  decay (the paper: 1e-4, for far longer).

``tools/train_decoder.py`` retrains it and writes ``data/decoder_lite0_blocks4.pt``.
"""
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.transforms import functional as TF

from .env import progress_bar
from .hooks import layer_outputs, model_guard
from .images import DATA_DIR, image_batch, load_image, sample_images

ENCODER_MODEL = "efficientnet_lite0"
ENCODER_LAYER = "blocks.4"
STRIDE = 8                                  # blocks.4 is 1/8 of the input size
HELD_OUT = ("cat", "astronaut")             # never seen in training
TRAINING_DIR = DATA_DIR / "decoder_training"
WEIGHTS_PATH = DATA_DIR / "decoder_lite0_blocks4.pt"


class UpConvDecoder(nn.Module):
    """Φ(x) (C×h×w) -> RGB image (3×8h×8w), values nominally in [0, 1]."""

    def __init__(self, in_channels=40, width=96):
        super().__init__()
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), act(),
            nn.Conv2d(width, width, 3, padding=1), act(),
            nn.Conv2d(width, width, 3, padding=1), act())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, 64, 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), act(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), act(),
            nn.Conv2d(16, 3, 3, padding=1))

    def forward(self, code):
        return self.up(self.body(code))


def training_split():
    """(training images, held-out names): the bundled photos except ``HELD_OUT``, then the
    photos of ``data/decoder_training/`` (as paths)."""
    bundled = [name for name in sample_images() if name not in HELD_OUT]
    extra = sorted(str(path) for path in TRAINING_DIR.glob("*.jpg"))
    return bundled + extra, list(HELD_OUT)


def random_crops(names, count, size=64, seed=0):
    """``count`` RGB crops (count×3×size×size, uint8) of the named images: random scale
    (shorter side 1.5–4 × ``size``), random position, random horizontal flip."""
    generator = torch.Generator().manual_seed(seed)
    images = [load_image(n) for n in names]
    crops = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for i in range(count):
        image = images[i % len(images)]
        side = int(size * (1.5 + 2.5 * torch.rand(1, generator=generator).item()))
        scale = side / min(image.size)
        resized = image.resize((max(size, round(image.width * scale)),
                                max(size, round(image.height * scale))), Image.BICUBIC)
        top = int(torch.randint(0, resized.height - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, resized.width - size + 1, (1,), generator=generator))
        crops[i] = TF.pil_to_tensor(resized.crop((left, top, left + size, top + size)))
        if torch.rand(1, generator=generator).item() < 0.5:
            crops[i] = crops[i].flip(-1)
    return crops


def to_unit(crops):
    """uint8 crops -> float RGB in [0, 1] (floats pass unchanged)."""
    return crops.float() / 255 if crops.dtype == torch.uint8 else crops


@torch.no_grad()
def encode(model, rgb, layer=ENCODER_LAYER, batch_size=64):
    """Φ(x) for RGB images (floats in [0, 1], or uint8 crops), in batches on the model's device,
    model left as found."""
    if not (torch.is_tensor(rgb) and rgb.dtype == torch.uint8):   # uint8: ``random_crops``
        rgb = image_batch(rgb, model)           # anything but a float batch: a clear error first
    device = next(model.parameters()).device
    codes = []
    with model_guard(model):
        for i in range(0, len(rgb), batch_size):
            batch = image_batch(to_unit(rgb[i:i + batch_size].to(device)), model)
            codes.append(layer_outputs(model, model.spec.normalize(batch), layer)[layer])
    return torch.cat(codes)


def mean_image(names, size, count=256, seed=0):
    """The average of ``count`` random crops (1×3×size×size, RGB in [0, 1]): the inversion
    that ignores the code, the baseline every decoder must beat."""
    return to_unit(random_crops(names, count, size, seed)).mean(0, keepdim=True)


def train_decoder(model, layer=ENCODER_LAYER, train_names=None, val_names=None, steps=3000,
                  crops=3072, val_crops=256, size=64, batch_size=16, lr=1e-3, width=96,
                  eval_every=250, seed=0, progress=True):
    """Train an ``UpConvDecoder`` for ``layer`` of ``model``; return (decoder, history).

    ``history`` = {"step": [...], "train": [...], "val": [...]}: mean pixel MSE (RGB in [0, 1])
    on the training batches since the last evaluation and on the held-out crops.
    Codes are computed once for a fixed set of crops (the encoder is frozen), so each step
    costs only the decoder. Interrupting (■) stops within one step and returns the decoder
    trained so far (and its history until then).
    """
    default_train, default_val = training_split()
    train_names = train_names or default_train
    val_names = val_names or default_val
    torch.manual_seed(seed)
    x_train = random_crops(train_names, crops, size, seed)
    x_val = to_unit(random_crops(val_names, val_crops, size, seed + 1))
    code_train, code_val = encode(model, x_train, layer), encode(model, x_val, layer)
    decoder = UpConvDecoder(code_train.shape[1], width).to(code_train.device)
    optimizer = torch.optim.Adam(decoder.parameters(), lr=lr, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history = {"step": [], "train": [], "val": []}
    generator = torch.Generator().manual_seed(seed)
    running = []

    def validate():
        decoder.eval()
        with torch.no_grad():
            value = float(F.mse_loss(decoder(code_val), x_val.to(code_val.device)))
        decoder.train()
        return value

    history["step"].append(0)
    history["train"].append(math.nan)
    history["val"].append(validate())
    bar = progress_bar(range(1, steps + 1), progress, "training decoder")
    step = 0
    try:
        for step in bar:
            index = torch.randint(0, len(x_train), (batch_size,), generator=generator)
            target = to_unit(x_train[index]).to(code_train.device)
            loss = F.mse_loss(decoder(code_train[index]), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            running.append(loss.item())
            if step % eval_every == 0 or step == steps:
                history["step"].append(step)
                history["train"].append(sum(running) / len(running))
                history["val"].append(validate())
                running = []
                bar.set_postfix(val=f"{history['val'][-1]:.4f}")
    except KeyboardInterrupt:
        print(f"Interrupted at step {step} of {steps}: returning the decoder trained so far.")
    finally:
        bar.close()
    decoder.eval()
    return decoder, history


def save_decoder(decoder, path=WEIGHTS_PATH, **info):
    """Save the weights (float16: half the size, no visible difference) and how they were made."""
    state = {k: v.half() for k, v in decoder.state_dict().items()}
    torch.save({"state_dict": state, "in_channels": decoder.body[0].in_channels,
                "width": decoder.body[0].out_channels, "info": info}, Path(path))


def load_decoder(path=WEIGHTS_PATH):
    """The decoder saved by ``save_decoder`` (the shipped one by default), in eval mode."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No decoder weights at {path}. Train them with "
                                "`python tools/train_decoder.py`.")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    decoder = UpConvDecoder(saved["in_channels"], saved["width"])
    decoder.load_state_dict({k: v.float() for k, v in saved["state_dict"].items()})
    decoder.info = saved.get("info", {})
    return decoder.eval()


@torch.no_grad()
def reconstruct(decoder, model, x, layer=ENCODER_LAYER):
    """Decoder's reconstruction of the normalised images ``x`` (side a multiple of 8), normalised."""
    x = image_batch(x, model)
    if x.shape[-1] % STRIDE or x.shape[-2] % STRIDE:
        raise ValueError(f"Image sides must be multiples of {STRIDE}; got {tuple(x.shape[-2:])}.")
    rgb = decoder(encode(model, model.spec.denormalize(x).clamp(0, 1), layer)).clamp(0, 1)
    return model.spec.normalize(rgb)


def grayscale_names(names):
    """The images among ``names`` whose three colour channels are equal (a gray photo)."""
    gray = []
    for name in names:
        rgb = TF.pil_to_tensor(load_image(name).convert("RGB")).int()
        if bool((rgb[0] == rgb[1]).all() and (rgb[1] == rgb[2]).all()):
            gray.append(name)
    return gray
