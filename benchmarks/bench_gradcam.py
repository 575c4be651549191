"""Time our Grad-CAM against pytorch-grad-cam's ``GradCAM`` and captum's ``LayerGradCam``.

Same model, same input, same layer, same class; each produces a map upsampled to the input
size. Calls are interleaved (ours, theirs, ours, ...) so that a busy machine slows all of
them alike; the median wall time and the median CPU time (steadier on a shared machine)
of ``--repeats`` runs are reported. Also times what the widget of
notebook 05 does when the class changes (cached: no forward pass).

    pip install -r benchmarks/requirements.txt
    python benchmarks/bench_gradcam.py --threads 2
"""
import argparse
import io
import statistics
import time

import matplotlib
import torch
import torchvision

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from utils import cam as C
from utils.models import REGISTRY, load_model


def median_time(fn, repeats):
    """Median wall-clock seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(fn):
    """(wall seconds, CPU seconds of this process) of one call. On a shared machine the CPU
    time is the steadier measure of the work done; the wall time is what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def correlation(a, b):
    """Smallest per-image Pearson correlation between two batches of maps (None if a map
    is constant: random weights often give all-zero Grad-CAMs)."""
    values = []
    for u, v in zip(torch.as_tensor(a), torch.as_tensor(b)):
        u, v = u.flatten().double(), v.flatten().double()
        if u.std() == 0 or v.std() == 0:
            return None
        values.append(float(torch.corrcoef(torch.stack([u, v]))[0, 1]))
    return min(values)


def build(name):
    if name == "efficientnet_lite0":
        return load_model(name, device="cpu", verbose=False)
    model = torchvision.models.get_model(name, weights=None).eval()   # timing only
    model.spec = REGISTRY[name]
    return model


def compare(name, batch, repeats):
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = build(name)
    layer = model.get_submodule(model.spec.layer("last_conv"))
    images = ["cat", "coffee", "flower", "palace", "rocket", "astronaut", "brick", "grass"]
    x = torch.cat([model.spec.preprocess(images[i % len(images)]) for i in range(batch)])
    classes = [281 + i for i in range(batch)]
    size = x.shape[-2:]

    def ours():
        return C.upsample(C.grad_cam(model, x, classes, "last_conv"), size)

    pgc = GradCAM(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(c) for c in classes]

    def pytorch_grad_cam():
        return pgc(input_tensor=x, targets=targets)

    captum_method = LayerGradCam(model, layer)

    def captum():
        attr = captum_method.attribute(x, target=classes, relu_attributions=True)
        return LayerAttribution.interpolate(attr, tuple(size), "bilinear")[:, 0]

    methods = {"ours": ours, "pytorch-grad-cam": pytorch_grad_cam, "captum": captum}
    for fn in methods.values():                                      # warm-up
        fn()
    runs = {name: [] for name in methods}
    for _ in range(repeats):                                         # interleaved
        for name, fn in methods.items():
            runs[name].append(timed(fn))
    wall = {name: statistics.median(t[0] for t in r) for name, r in runs.items()}
    cpu = {name: statistics.median(t[1] for t in r) for name, r in runs.items()}
    mine = ours().detach()
    agree = {"pytorch-grad-cam": correlation(mine, pytorch_grad_cam()),
             "captum": correlation(mine, captum().detach())}
    pgc.activations_and_grads.release()
    return wall, cpu, agree


def class_switch(repeats):
    """What the widget does on a class change: map from the cache, upsampled."""
    model = load_model("efficientnet_lite0", device="cpu", verbose=False)
    x = model.spec.preprocess("cat")
    start = time.perf_counter()
    explorer = C.CamExplorer(model, x, top=10)
    setup = time.perf_counter() - start
    labels = explorer.labels
    first, switch = {}, {}
    for layer in explorer.layers:
        for method in explorer.methods():
            start = time.perf_counter()
            explorer.all_classes(layer, method)              # first look at (layer, method)
            first[layer, method] = time.perf_counter() - start
            switch[layer, method] = median_time(
                lambda: [C.upsample(explorer.heatmap(label, layer, method)[None], x.shape[-2:])
                         for label in labels], repeats) / len(labels)

    def redraw():       # what the notebook's inline backend does: draw and encode a PNG
        fig = C.draw_explorer(explorer, labels[1], explorer.layers[-1], "Grad-CAM")
        fig.savefig(io.BytesIO(), format="png")
        plt.close(fig)
    draw = median_time(redraw, repeats)
    return setup, max(first.values()), max(switch.values()), draw


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet50"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.repeats}")
    print("| model | batch | ours wall / CPU (s) | pytorch-grad-cam wall / CPU (s) | "
          "captum wall / CPU (s) | pgc / ours (CPU) | captum / ours (CPU) | corr. pgc | corr. captum |")
    print("|---|---|---|---|---|---|---|---|---|")
    show = lambda r: "n/a" if r is None else f"{r:.4f}"                       # noqa: E731
    for name in args.models:
        for batch in args.batches:
            wall, cpu, agree = compare(name, batch, args.repeats)
            cells = [f"{wall[k]:.3f} / {cpu[k]:.3f}" for k in ("ours", "pytorch-grad-cam", "captum")]
            print(f"| {name} | {batch} | {' | '.join(cells)} | "
                  f"{cpu['pytorch-grad-cam'] / cpu['ours']:.2f} | {cpu['captum'] / cpu['ours']:.2f} | "
                  f"{show(agree['pytorch-grad-cam'])} | {show(agree['captum'])} |", flush=True)
    setup, first, switch, draw = class_switch(args.repeats)
    print(f"\nWidget (efficientnet_lite0, cat, top-10): explorer set-up {setup:.2f} s (1 forward "
          f"+ 10 backward); first look at a layer/method (all 10 classes): {1000 * first:.1f} ms; "
          f"class switch: {1000 * switch:.2f} ms for the map; figure redraw: {1000 * draw:.0f} ms "
          "(slowest layer/method each)")


if __name__ == "__main__":
    main()
