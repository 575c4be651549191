"""Time texture synthesis and style transfer on this machine (notebooks 07 and 08).

    python benchmarks/bench_style.py          # default (128 px) and fast (64 px) settings

Prints seconds per L-BFGS iteration and per run, and the machine load, which matters on a
shared machine: timings under load are upper bounds.
"""
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils import style  # noqa: E402
from utils.models import load_model  # noqa: E402


def main():
    model = load_model("efficientnet_lite0", "cpu", verbose=False)
    net, _ = style.average_pooling(model)
    print(f"torch threads: {torch.get_num_threads()}, load average: {os.getloadavg()[0]:.1f}")
    for size, steps in [(64, 30), (128, 120)]:
        x = model.spec.preprocess("brick", size=size)
        start = time.perf_counter()
        r = style.synthesise_texture(net, x, steps=steps, noise=0.1, progress=False)
        t = time.perf_counter() - start
        print(f"texture  {size:3d} px, {steps:3d} iterations: {t:5.1f} s "
              f"({t / r.evaluations * 1000:.0f} ms per evaluation, {r.evaluations} evaluations), "
              f"loss ÷ {r.reduction:,.0f}")
    for size, steps in [(64, 30), (128, 100)]:
        c, s = model.spec.preprocess("palace", size=size), model.spec.preprocess("coffee", size=size)
        start = time.perf_counter()
        r = style.transfer_style(net, c, s, ratio=1e-5, steps=steps, init="content", progress=False)
        t = time.perf_counter() - start
        print(f"style    {size:3d} px, {steps:3d} iterations: {t:5.1f} s "
              f"({t / r.evaluations * 1000:.0f} ms per evaluation, {r.evaluations} evaluations)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
