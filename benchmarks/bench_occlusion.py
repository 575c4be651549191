"""Time utils.occlusion (incremental inference) against captum's Occlusion, interleaved.

    pip install -r benchmarks/requirements.txt
    VCNN_OFFLINE=1 python benchmarks/bench_occlusion.py [--models alexnet vgg16 efficientnet_lite0]
        [--size 48] [--stride 16] [--batch 64] [--repeats 3] [--threads 2] [--full]

For each network: one image (``coffee`` at 224 px), the window and stride of notebook 03
(48 px, stride 16: 144 positions), a grey square (0 after normalisation), the predicted class,
and captum given our batch (``perturbations_per_eval``). The runs alternate, ours then captum,
``--repeats`` times; the table gives each one's median time and the median of the per-round
ratios captum / ours. ``--full`` adds our full pass (``incremental=False``) to every round.

Before timing, the script counts the multiply-adds of convolutions and linear layers that
incremental inference actually runs, against those of a full forward pass per occluded image:
the method cannot beat full inference by more than the inverse of that fraction. It also
checks that both give the same attribution: captum's per-pixel p_clean − p_occluded equals our
grid spread with ``utils.occlusion.to_pixels``.

The paper networks use their pretrained weights when torchvision has them cached, and random
weights otherwise (the timing and the equality hold; the maps mean nothing then).
"""
import argparse
import statistics
import time

import torch
import torchvision

from utils.hooks import model_guard
from utils.incremental import IncrementalOcclusion
from utils.models import BUNDLED, REGISTRY, cached_weights_path, load_model
from utils.occlusion import occlusion, positions, to_pixels


def network(name):
    """The registered network with its weights if they are at hand, else random weights."""
    if name == BUNDLED or cached_weights_path(name).exists():
        return load_model(name, device="cpu", verbose=False), "pretrained"
    torch.manual_seed(0)
    options = {"googlenet": {"aux_logits": False, "transform_input": True, "init_weights": True}}
    model = torchvision.models.get_model(name, weights=None, **options.get(name, {})).eval()
    model.spec = REGISTRY[name]
    return model, "random weights"


def multiply_adds_fraction(model, x, size, stride, batch):
    """Multiply-adds run by incremental inference / those of full inference, all positions."""
    rows, cols = positions(x.shape[2], size, stride), positions(x.shape[3], size, stride)
    tops, lefts = [t for t in rows for _ in cols], [left for _ in rows for left in cols]
    with torch.no_grad(), model_guard(model):
        run = IncrementalOcclusion(model, x)
        for start in range(0, len(tops), batch):
            run.forward(0, tops[start:start + batch], lefts[start:start + batch], size, 0.0)
    return run.macs / run.full_macs


def tiles(x, args):
    """True if the squares end on the last row and column. Otherwise captum adds one more
    position per row and column, a square cut off by the image's edge, and the two differ."""
    return all((side - args.size) % args.stride == 0 for side in x.shape[-2:])


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(name, args):
    from captum.attr import Occlusion

    model, weights = network(name)
    x = model.spec.preprocess(args.image)
    with torch.no_grad():
        target = int(model(x).argmax())
    captum = Occlusion(lambda inp: model(inp).softmax(dim=1))
    runs = {
        "ours": lambda: occlusion(model, x, target, size=args.size, stride=args.stride,
                                  batch_size=args.batch, progress=False),
        "captum": lambda: captum.attribute(
            x, sliding_window_shapes=(3, args.size, args.size),
            strides=(3, args.stride, args.stride), baselines=0.0, target=target,
            perturbations_per_eval=args.batch),
    }
    if args.full:
        runs["ours, full pass"] = lambda: occlusion(
            model, x, target, size=args.size, stride=args.stride, batch_size=args.batch,
            progress=False, incremental=False)

    fraction = multiply_adds_fraction(model, x, args.size, args.stride, args.batch)  # warms ours
    with torch.no_grad():
        model(x.repeat(args.batch, 1, 1, 1))                                       # warms captum
    times, first = {key: [] for key in runs}, {}
    for _ in range(args.repeats):
        for key, run in runs.items():
            seconds, result = timed(run)
            times[key].append(seconds)
            first.setdefault(key, result)
    ours, attribution = first["ours"], first["captum"][0, 0]
    mine = ours["clean_prob"][0] - to_pixels(ours["prob"][0], args.size, args.stride, x.shape[-2:])
    covered = ~torch.isnan(mine)
    difference = (mine[covered] - attribution[covered]).abs().max().item() if tiles(x, args) \
        else float("nan")
    ratios = [c / o for c, o in zip(times["captum"], times["ours"])]
    row = {"model": name, "weights": weights, "positions": len(ours["tops"]) * len(ours["lefts"]),
           "fraction": fraction, "ratio": statistics.median(ratios), "ratios": ratios,
           "difference": difference, "range": (mine[covered].max() - mine[covered].min()).item()}
    row.update({key: statistics.median(values) for key, values in times.items()})
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["alexnet", "vgg16", BUNDLED])
    parser.add_argument("--image", default="coffee")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--full", action="store_true", help="also time incremental=False")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    print(f"window {args.size}, stride {args.stride}, batch {args.batch}, {args.repeats} rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if (224 - args.size) % args.stride:
        print("The stride does not tile a 224 px image: captum runs more (cut-off) squares than "
              "we do, so the times are not comparable and the equality check is skipped.")
    extra = " ours, full pass (s) |" if args.full else ""
    print("\n| model | weights | positions | multiply-adds computed | ours (s) | captum (s) |"
          f"{extra} captum / ours (median of rounds) | max abs. difference (map range) |")
    print("|---|---|---|---|---|---|" + ("---|" if args.full else "") + "---|---|")
    for name in args.models:
        row = bench(name, args)
        full = f" {row['ours, full pass']:.2f} |" if args.full else ""
        rounds = ", ".join(f"{r:.2f}" for r in row["ratios"])
        print(f"| {row['model']} | {row['weights']} | {row['positions']} | {row['fraction']:.1%} | "
              f"{row['ours']:.2f} | {row['captum']:.2f} |{full} **{row['ratio']:.2f}** ({rounds}) | "
              f"{row['difference']:.1e} ({row['range']:.1e}) |", flush=True)


if __name__ == "__main__":
    main()
