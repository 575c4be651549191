"""Time CNN-Fixations on the bundled model: trace + one forward pass, then the backtracking
with each conv rule (batched, and the one-point reference walk), and a class change in
notebook 06's explorer, first visit of each class, as the notebook builds it.

    python benchmarks/bench_fixations.py [--repeats 5]

Prints the median of each part (and the slowest class change). The explorer's budget is
under 150 ms from a change to the new figure in the browser (tools/widget_latency.py); the
Python callback timed here is most of it (the browser's round trip adds about 40 ms).
"""
import argparse
import statistics
import time

import matplotlib
import torch
from bench_gradcam import median_time

from utils import fixations as F
from utils import widgets
from utils.images import load_image
from utils.localize import bounding_box
from utils.models import load_model, top_k

matplotlib.use("Agg")


def explorer_class_changes(model, image_name):
    """Milliseconds of each class change in notebook 06's explorer (its draw function and
    ``widgets.connect``), each class visited for the first time: the top-10 classes in turn;
    and the median of each part of ``draw``."""
    explorer = F.FixationExplorer(model, count=True)
    on_screen, parts = {}, {"fixations": [], "map and box": [], "figure update": []}

    def draw(image, label):                      # notebook 06, section 8
        start = time.perf_counter()
        pts = explorer.points(image, label)
        middle = time.perf_counter()
        kept_w, heat_w = F.fixation_heatmap(pts, image.size[::-1])
        view = (pts, kept_w, heat_w, bounding_box(heat_w, 0.2), label)
        end = time.perf_counter()
        if on_screen.get("image") is not image:
            on_screen.update(image=image, figure=F.plot_fixations(image, *view))
            return on_screen["figure"]
        changed = F.update_fixations(on_screen["figure"], *view)
        for name, seconds in zip(parts, (middle - start, end - middle, time.perf_counter() - end)):
            parts[name].append(1000 * seconds)
        return changed

    picker = widgets.image_picker(image_name)
    x = model.spec.preprocess(picker.image)
    classes = widgets.class_picker(top_k(model, x, 10))
    widgets.connect(draw, image=picker, label=classes)
    times = []
    for _, label in classes.options[1:]:
        start = time.perf_counter()
        classes.value = label                   # connect redraws synchronously
        times.append(1000 * (time.perf_counter() - start))
    return times, {name: statistics.median(ms) for name, ms in parts.items()}


def main(repeats):
    torch.set_num_threads(2)
    model = load_model("efficientnet_lite0", device="cpu")
    image = load_image("cat")
    x = model.spec.preprocess(image)
    recorded = F.record_forward(model, x)
    F.backtrack(model, x, 285, recorded)                      # warm-up
    forward = median_time(lambda: F.record_forward(model, x), repeats)
    walks = {(rule, reference): median_time(lambda: F.backtrack(model, x, 285, recorded, position=rule,
                                                                reference=reference), repeats)
             for rule in F.POSITIONS for reference in (False, True)}
    whole = median_time(lambda: F.cnn_fixations(model, image), repeats)
    crops = median_time(lambda: F.cnn_fixations(model, image, multi_crop=True), max(1, repeats // 2))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, efficientnet_lite0, cat "
          f"(official rule: {F.official_position(model)})")
    print(f"trace + recorded forward pass:   {forward:.3f} s")
    for (rule, reference), seconds in walks.items():
        print(f"backtracking, '{rule}' rule, {'one point at a time' if reference else 'batched':19s} "
              f"{seconds:.3f} s")
    print(f"whole image, end to end:         {whole:.3f} s")
    print(f"five crops, end to end:          {crops:.3f} s")
    for name in ("cat", "squirrel", "coffee"):
        times, parts = explorer_class_changes(model, name)
        print(f"explorer, {name}: class change (first visit, callback and JPEG) median "
              f"{statistics.median(times):.0f} ms, slowest {max(times):.0f} ms over {len(times)} classes; "
              + ", ".join(f"{part} {ms:.0f} ms" for part, ms in parts.items()) + " (medians; the rest: JPEG)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    main(parser.parse_args().repeats)
