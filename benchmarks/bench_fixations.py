"""Time CNN-Fixations on the bundled model: trace + one forward pass, then the backtracking
with each conv rule (the paths are always counted; ``count`` only picks what comes back).

    python benchmarks/bench_fixations.py [--repeats 5]

Prints the median of each part; the issue's budget is under 2 s per image on 2 CPU cores.
"""
import argparse

import torch
from bench_gradcam import median_time

from utils import fixations as F
from utils.images import load_image
from utils.models import load_model


def main(repeats):
    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)
    image = load_image("cat")
    x = model.spec.preprocess(image)
    recorded = F.record_forward(model, x)
    F.backtrack(model, x, 285, recorded)                      # warm-up
    forward = median_time(lambda: F.record_forward(model, x), repeats)
    walks = {rule: median_time(lambda: F.backtrack(model, x, 285, recorded, position=rule), repeats)
             for rule in F.POSITIONS}
    whole = median_time(lambda: F.cnn_fixations(model, image), repeats)
    crops = median_time(lambda: F.cnn_fixations(model, image, multi_crop=True), max(1, repeats // 2))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, efficientnet_lite0, cat")
    print(f"trace + recorded forward pass:   {forward:.3f} s")
    for rule, seconds in walks.items():
        print(f"backtracking, '{rule}' rule:{' ' * (10 - len(rule))}{seconds:.3f} s")
    print(f"whole image, end to end:         {whole:.3f} s")
    print(f"five crops, end to end:          {crops:.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
