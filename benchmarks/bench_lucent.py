"""Feature visualisation (notebook 12): ``utils.featurevis`` against lucent (``torch-lucent``).

    pip install -r benchmarks/requirements.txt        # torch-lucent and kornia 0.4.1: see there
    VCNN_OFFLINE=1 python benchmarks/bench_lucent.py --threads 2
    VCNN_OFFLINE=1 python benchmarks/bench_lucent.py --legibility --steps 512   # pictures, not speed

Both render the same channel objective (the channel's mean, before the ReLU6 clip) on the
bundled model with the same parametrisation (1/f Fourier coefficients, decorrelated colour,
sigmoid; Adam), the same transformations (pad 12, jitter 8, scale 0.9-1.1, rotate ±10°,
jitter 4) and the same number of steps, at 224 px (lucent upsamples anything smaller to 224).
lucent divides its image by 4 ("magic" constant): its learning rate and start are 4× ours so
that the two images move alike. The runs are interleaved (ours, lucent, ours, lucent, ...).
lucent hooks every module of the model and never removes its hooks, so each of its runs gets
a fresh copy of the model, frozen as a careful user would (otherwise it also computes weight
gradients). Reported: the objective each final image reaches (measured the same way, on the
untransformed image) and the time per step (median over rounds), after one short warm-up run
of each that is not counted.
"""
import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils import featurevis as fv  # noqa: E402
from utils.env import fixed_threads  # noqa: E402
from utils.hooks import unclipped_layer  # noqa: E402
from utils.models import load_model  # noqa: E402


def ours(model, layer, channel, size, steps, seed):
    run = fv.visualize(model, fv.channel(layer, channel), size=size, steps=steps, seed=seed,
                       progress=False)
    return run.rgb, run.seconds / steps


def theirs(model, layer, channel, size, steps, seed, lr=4 * fv.LEARNING_RATE, sd=4 * 0.01):
    """lucent's ``render_vis`` on a fresh, frozen copy of the model, with the model's
    normalisation added to its standard transforms; the image and the time per step (the
    optimisation alone). ``lr`` and ``sd`` default to ours scaled to lucent's image (÷4); None
    keeps lucent's own (Adam at 0.05, sd 0.01)."""
    from lucent.optvis import objectives, param, render, transform
    copied = copy.deepcopy(model).eval()
    for p in copied.parameters():
        p.requires_grad_(False)
    torch.manual_seed(seed)
    np.random.seed(seed)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (model.spec.mean, model.spec.std))
    transforms = transform.standard_transforms + [lambda x: (x - mean) / std]
    start = time.perf_counter()
    images = render.render_vis(
        copied, objectives.channel(layer.replace(".", "_"), channel),
        param_f=lambda: param.image(size, fft=True, decorrelate=True, sd=sd),
        optimizer=None if lr is None else (lambda params: torch.optim.Adam(params, lr=lr)),
        transforms=transforms, thresholds=(steps,), preprocess=False, progress=False,
        show_image=False)
    seconds = (time.perf_counter() - start) / steps
    return torch.as_tensor(images[-1]).permute(0, 3, 1, 2).float(), seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--channels", type=int, nargs="+", default=[59, 287])
    parser.add_argument("--layer", default="blocks.11.expand")
    parser.add_argument("--legibility", nargs="*", metavar="LAYER:CHANNEL",
                        help="instead: render these channels (default: notebook 12's early 119, "
                             "middle 133, late 59) ours and lucent's own way, --steps each")
    parser.add_argument("--figure", default="lucent_legibility.png", help="--legibility's figure")
    args = parser.parse_args()
    with fixed_threads(args.threads):       # ours would otherwise re-measure the CPU (share_cpu)
        if args.legibility is None:
            compare(args)
        else:
            legibility(args)


def legibility(args):
    """Do the early and middle channels of notebook 12 stay unreadable (a fine grid, blobs)
    because of our recipe or budget, or because of the network? The same channels rendered
    by notebook 12's recipe at 128 px, the same with the network fed 224 px copies (lucent's
    upsampling), and by lucent with its own defaults; ``--steps`` steps each (lucid: 512)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)
    paths = dict(zip(("early", "middle", "late"), model.spec.layer("style")[-3:]))
    wanted = args.legibility or ["early:119", "middle:133", "late:59"]
    channels = [(paths.get(name, name), int(c)) for name, c in (w.rsplit(":", 1) for w in wanted)]
    ways = {"ours (notebook 12, 128 px)": lambda layer, c: fv.visualize(
                model, fv.channel(layer, c), size=128, steps=args.steps, progress=False).rgb,
            "ours, network at 224 px": lambda layer, c: fv.visualize(
                model, fv.channel(layer, c), size=128, steps=args.steps, network_size=224,
                progress=False).rgb,
            "lucent 0.1.8, its defaults": lambda layer, c: theirs(model, layer, c, 128, args.steps,
                                                                  seed=0, lr=None, sd=None)[0]}
    fig, axes = plt.subplots(len(ways), len(channels), figsize=(3 * len(channels), 3.2 * len(ways)),
                             squeeze=False)
    print(f"{args.steps} steps; high-frequency share: energy above 1/8 cycle per pixel "
          "(white noise 0.95)")
    for row, (way, render) in enumerate(ways.items()):
        for col, (path, c) in enumerate(channels):
            layer = unclipped_layer(model, path)
            rgb = render(layer, c)
            share = float(fv.high_frequency_share(rgb))
            print(f"{way:28s} {layer} {c}: high-frequency share {share:.3f}", flush=True)
            axes[row, col].imshow(rgb[0].permute(1, 2, 0).numpy())
            axes[row, col].set_title(f"{way}\n{layer} {c}: {share:.2f}", fontsize=8)
            axes[row, col].axis("off")
    fig.tight_layout()
    fig.savefig(args.figure, dpi=100)
    print("figure:", args.figure)


def compare(args):
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)
    layer = unclipped_layer(model, args.layer)
    for render in (ours, theirs):          # warm-up, not counted: first calls pay one-time costs
        render(model, layer, args.channels[0], args.size, 2, seed=0)
    rows = {name: {"objective": [], "step": []} for name in ("ours", "lucent")}
    for r in range(args.rounds):
        for channel in args.channels:
            for name, render in (("ours", ours), ("lucent", theirs)):
                rgb, step = render(model, layer, channel, args.size, args.steps, seed=r)
                value = float(fv.activation(model, fv.channel(layer, channel), rgb))
                rows[name]["objective"].append(value)
                rows[name]["step"].append(step)
                print(f"round {r + 1}, channel {channel}, {name:6s}: objective {value:6.2f}, "
                      f"{step * 1000:.0f} ms per step", flush=True)
    print(f"\n{layer}, channels {args.channels}, {args.size} px, {args.steps} steps, "
          f"{args.rounds} rounds, {args.threads} threads")
    for name, row in rows.items():
        print(f"{name:6s}: objective median {statistics.median(row['objective']):.2f} "
              f"(min {min(row['objective']):.2f}), {statistics.median(row['step']) * 1000:.0f} ms per step")
    ratio = [a / b for a, b in zip(rows["ours"]["objective"], rows["lucent"]["objective"])]
    speed = [b / a for a, b in zip(rows["ours"]["step"], rows["lucent"]["step"])]
    print(f"ours / lucent objective, median per run: {statistics.median(ratio):.2f}; "
          f"lucent / ours time per step: {statistics.median(speed):.2f}")


if __name__ == "__main__":
    main()
