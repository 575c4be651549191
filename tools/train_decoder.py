"""Train the up-convolutional decoder of notebook 10 and save its weights in data/.

    python tools/train_decoder.py                     # the shipped weights (a few CPU minutes)
    python tools/train_decoder.py --steps 6000 --images path/to/folder   # more data, longer
    python tools/train_decoder.py --image-set imagenette-160 --n-images 2000 --steps 5000 \
        --crops 8192 --out decoder_imagenette.pt          # online: a downloaded set

The encoder is the bundled EfficientNet-Lite0 up to ``blocks.4``, frozen. Training uses random
crops of the bundled photos except the held-out ones (``utils.upconv.HELD_OUT``), which give
the validation loss, and of the photos in ``data/decoder_training/``. ``--images`` adds every
JPEG/PNG of a folder of your own to training; ``--image-set`` adds photos of a public set's
training split, downloaded once and cached (``utils.downloads.IMAGE_SETS``: Imagenette, 94 MB).
The held-out photos stay the same, so validation losses of different runs compare.

Seeded (crops, initial weights, batches): a rerun gives the same decoder up to floating-point
rounding, and to the bit with ``--threads 1``. At the end it prints the PSNR of the held-out photos, whole at ``--eval-size`` px,
decoded and replaced by the mean training image.
"""
import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from utils import upconv  # noqa: E402
from utils.downloads import IMAGE_SETS  # noqa: E402
from utils.images import image_set  # noqa: E402
from utils.env import fixed_threads, share_cpu  # noqa: E402
from utils.inversion import psnr  # noqa: E402
from utils.models import load_model  # noqa: E402


def held_out_psnr(model, decoder, train_names, val_names, size):
    """PSNR (dB) of each held-out photo, whole at size×size: decoded, and the mean training image."""
    spec = model.spec
    photos = torch.cat([spec.preprocess(name, size=size) for name in val_names])
    decoded = upconv.reconstruct(decoder, model, photos)
    mean = spec.normalize(upconv.mean_image(train_names, size)).expand_as(photos)
    return {"decoder": psnr(decoded, photos, spec).tolist(), "mean image": psnr(mean, photos, spec).tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--crops", type=int, default=3072, help="training crops (codes computed once)")
    parser.add_argument("--size", type=int, default=64, help="crop side in pixels (multiple of 8)")
    parser.add_argument("--width", type=int, default=96, help="channels of the decoder's convolutions")
    parser.add_argument("--eval-size", type=int, default=160,
                        help="side of the held-out photos for the final PSNR (multiple of 8)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--images", type=Path, help="a folder of extra training images")
    parser.add_argument("--image-set", choices=sorted(IMAGE_SETS),
                        help="add photos of a downloadable set (its training split)")
    parser.add_argument("--n-images", type=int, default=1000,
                        help="how many photos of --image-set to use")
    parser.add_argument("--out", type=Path, default=upconv.WEIGHTS_PATH)
    parser.add_argument("--threads", type=int,
                        help="torch's CPU threads (default: the cores other processes leave idle)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if not args.threads:
        share_cpu(wait=0.25)
    with fixed_threads(args.threads) if args.threads else contextlib.nullcontext():
        return train_and_save(args)


def train_and_save(args):
    model = load_model(upconv.ENCODER_MODEL, device="cpu", verbose=False)
    train_names, val_names = upconv.training_split()
    if args.images:
        train_names += sorted(str(p) for p in args.images.iterdir()
                              if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.image_set:
        photos = image_set(args.image_set, args.n_images, seed=args.seed, split="train")
        train_names += [image for _, image in photos]          # PIL images work as names
    print(f"training on {len(train_names)} images, validating on {val_names}")
    start = time.perf_counter()
    decoder, history = upconv.train_decoder(model, upconv.ENCODER_LAYER, train_names, val_names,
                                            steps=args.steps, crops=args.crops, size=args.size,
                                            lr=args.lr, width=args.width, seed=args.seed)
    minutes = (time.perf_counter() - start) / 60
    for step, train, val in zip(history["step"], history["train"], history["val"]):
        print(f"step {step:5d}  train MSE {train:.4f}  held-out MSE {val:.4f}")
    scores = held_out_psnr(model, decoder, train_names, val_names, args.eval_size)
    for name, decoded, mean in zip(val_names, scores["decoder"], scores["mean image"]):
        print(f"{name} at {args.eval_size} px: decoder {decoded:.1f} dB, mean image {mean:.1f} dB")
    upconv.save_decoder(decoder, args.out, layer=upconv.ENCODER_LAYER, steps=args.steps,
                        crops=args.crops, size=args.size, width=args.width, lr=args.lr,
                        seed=args.seed, held_out=val_names, images=len(train_names),
                        image_set=args.image_set, val_mse=round(history["val"][-1], 5),
                        held_out_psnr={k: [round(v, 2) for v in scores[k]] for k in scores})
    print(f"{minutes:.1f} min; saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    return history


if __name__ == "__main__":
    main()
