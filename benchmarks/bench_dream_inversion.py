"""Time DeepDream and feature inversion on the bundled model (notebooks 09 and 10).

    python benchmarks/bench_dream_inversion.py --threads 2

Prints seconds per dream (4 octaves × 10 steps) at 320 px and 224 px, seconds per inversion
iteration for a batch of 6 layers at 96 px, and the decoder's time per image.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils import deepdream as dd  # noqa: E402
from utils import inversion as inv  # noqa: E402
from utils import upconv  # noqa: E402
from utils.models import load_model  # noqa: E402


def timed(fn, repeats=1):
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)
    for size in (224, 320):
        x = model.spec.preprocess("palace", size=size)
        seconds = timed(lambda: dd.deepdream(model, x, "dream", progress=False))
        print(f"deepdream {size} px, 4 octaves × 10 steps: {seconds:.1f} s")
    x = model.spec.preprocess("cat", size=96)
    layers = list(model.spec.layer("stages")) + [inv.LOGITS]
    seconds = timed(lambda: inv.invert(model, x.repeat(len(layers), 1, 1, 1), layers, steps=20,
                                       progress=False))
    print(f"inversion, {len(layers)} layers at 96 px: {seconds / 20:.2f} s per iteration")
    decoder = upconv.load_decoder()
    seconds = timed(lambda: upconv.reconstruct(decoder, model, x), repeats=5)
    print(f"decoder inversion at 96 px: {seconds * 1000:.0f} ms per image (encoder included)")


if __name__ == "__main__":
    main()
