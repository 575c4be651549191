"""Timings for notebook 02: the one-time feature pass and a new unit's top patches.

    VCNN_OFFLINE=1 python benchmarks/bench_patches.py [per_photo] [warp]
"""
import sys
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from utils import patches as P  # noqa: E402
from utils.models import load_model  # noqa: E402

per_photo = int(sys.argv[1]) if len(sys.argv) > 1 else 16
warp = int(sys.argv[2]) if len(sys.argv) > 2 else 160
print("torch threads:", torch.get_num_threads())
model = load_model("efficientnet_lite0", device="cpu")
regions = P.propose_regions(P.bundled_photos(), per_photo=per_photo)
layers = ["blocks.2", "blocks.4", "head.1"]
start = time.perf_counter()
bank = P.build_feature_bank(model, regions, layers, unit_layers=["head.1"], size=warp, progress=False)
build = time.perf_counter() - start
print(f"feature pass: {len(regions)} regions at {warp} px in {build:.1f} s "
      f"({len(regions) / build:.1f} regions/s)")
start = time.perf_counter()
for c in range(10):
    bank.top_regions("blocks.4", c)
print(f"top_regions (channel): {(time.perf_counter() - start) / 10 * 1000:.1f} ms")
start = time.perf_counter()
for c in range(10):
    P.show_top_patches(bank, "head.1", c, 3, 3)
    plt.close("all")
print(f"top patches with figure: {(time.perf_counter() - start) / 10:.2f} s")
