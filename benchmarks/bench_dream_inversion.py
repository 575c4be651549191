"""Time DeepDream and feature inversion on the bundled model (notebooks 09 and 10).

    python benchmarks/bench_dream_inversion.py --threads 2

Prints, for the notebooks' default settings: one dream step at 224 px and the dream time at
320 px that notebook 09 predicts from it (``deepdream.dream_seconds``) next to the measured one;
one inversion iteration of notebook 10's figure (the first four stages and the logits, each
inverted on its own, 160 px) predicted (``inversion.seconds_per_iteration``) and measured; one
training step of the up-convolutional decoder (batch 16, 64-px crops); and the decoder's time
per image. Compare predicted and measured to see whether the notebooks' time budgets hold.
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
    parser.add_argument("--steps", type=int, default=20, help="inversion iterations to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)

    step_s = dd.step_seconds(model, "dream")
    x = model.spec.preprocess("palace", size=320)
    measured = timed(lambda: dd.deepdream(model, x, "dream", progress=False))
    print(f"deepdream: one step at 224 px {step_s * 1000:.0f} ms; one dream at 320 px "
          f"(4 octaves × 10 steps) predicted {dd.dream_seconds(step_s, 320):.1f} s, measured {measured:.1f} s")

    x = model.spec.preprocess("cat", size=160)
    layers = list(model.spec.layer("stages"))[:4] + [inv.LOGITS]
    predicted = inv.seconds_per_iteration(model, x, layers)
    measured = timed(lambda: [inv.invert(model, x, layer, steps=args.steps, progress=False)
                              for layer in layers]) / args.steps
    print(f"inversion, {len(layers)} layers one by one at 160 px: predicted {predicted:.2f} s, "
          f"measured {measured:.2f} s per iteration")

    decoder = upconv.UpConvDecoder()
    crops = torch.rand(16, 3, 64, 64)
    codes = upconv.encode(model, crops)
    optimizer = torch.optim.Adam(decoder.parameters())

    def training_step():
        loss = torch.nn.functional.mse_loss(decoder(codes), crops)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    print(f"decoder training step (batch 16, 64 px): {timed(training_step, repeats=10) * 1000:.0f} ms")
    shipped = upconv.load_decoder()
    seconds = timed(lambda: upconv.reconstruct(shipped, model, x), repeats=5)
    print(f"decoder inversion at 160 px: {seconds * 1000:.0f} ms per image (encoder included)")


if __name__ == "__main__":
    main()
