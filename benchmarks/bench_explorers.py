"""Where an explorer's time goes, in Python: every control of the explorers of notebooks 03
and 04 changed as a student would, the callback timed and split into computation, figure
drawing and JPEG encoding.

    VCNN_OFFLINE=1 python benchmarks/bench_explorers.py                  # the working tree
    VCNN_OFFLINE=1 python benchmarks/bench_explorers.py --before e244c26 --fast

Each notebook's code cells run in this process (as a kernel would run them, the Agg backend,
no browser) up to its last explorer; with ``--before REV`` the notebooks as they were at git
revision REV run too, in a second namespace, with the same ``utils``. Then each control of each
explorer is changed ``--repeats`` times (a dropdown: its next option; a slider: one step) and
the versions take turns, change by change, so that a busy machine slows both alike: read the
before/after ratio, not the absolute times, on a shared machine. ``--fast`` runs the cells in
fast mode (the explorers' per-change work is the same; only the recomputed maps get smaller).

Columns (milliseconds, median): ``total`` the whole callback (what the kernel spends on one
change; the browser adds a round trip of about 40 ms and the JPEG's decoding); ``compute`` the
method (the incremental pass, the projections, the saliency maps, the forward pass of a new
photo's menu); ``figure`` the rest of the notebook's draw function (set_data, titles, a new
figure); ``render`` matplotlib's drawing of the pixels (a full render or a blit); ``jpeg`` the
encoding; ``other`` what is left (loading a photo, the widgets' traits).
"""
import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402

from utils import widgets  # noqa: E402

NOTEBOOKS = ["03", "04"]
# the method's own work, by the name a notebook calls it (nested calls count once)
COMPUTE = ["run_occlusion", "project_with_rule", "project_with_switches", "saliency",
           "saliency_maps", "class_saliencies", "top_k", "class_model"]
PARTS = ["total", "compute", "figure", "render", "jpeg", "other"]

clock = {}                       # seconds per part during the change being timed
depth = [0]                      # > 0 inside a timed computation


def timed(part, fn):
    """``fn``, adding its time to ``clock[part]`` (computations: the outermost call only)."""
    def wrapper(*args, **kwargs):
        outer = part != "compute" or depth[0] == 0
        depth[0] += part == "compute"
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            depth[0] -= part == "compute"
            if outer:
                clock[part] = clock.get(part, 0.0) + time.perf_counter() - start
    wrapper.__wrapped__ = fn
    return wrapper


def instrument_widgets():
    """Time the rendering and the encoding inside ``connect``; record each explorer made."""
    made = []
    connect = widgets.connect

    def recording_connect(draw, *args, **controls):
        box = connect(timed("draw", draw), *args, **controls)
        made.append((box, controls))
        return box
    widgets.connect = recording_connect
    widgets._jpeg = timed("jpeg", widgets._jpeg)
    widgets.figure_jpeg = timed("render", widgets.figure_jpeg)
    widgets.InPlace.jpeg = timed("render", widgets.InPlace.jpeg)
    from utils.deconvnet import ChannelProjector
    from utils.occlusion import LiveOccluder
    LiveOccluder.__call__ = timed("compute", LiveOccluder.__call__)
    ChannelProjector.__call__ = timed("compute", ChannelProjector.__call__)
    return made


def notebook_source(number, revision):
    path = next((ROOT / "notebooks").glob(f"{number}_*.ipynb")).relative_to(ROOT)
    if revision is None:
        return path.name, (ROOT / path).read_text()
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:{path.as_posix()}"],
                          capture_output=True, text=True, check=True).stdout
    return path.name, text


def run_notebook(number, revision, made):
    """Run the code cells up to the last explorer; returns its explorers [(box, controls)]."""
    import matplotlib.pyplot as plt
    name, text = notebook_source(number, revision)
    cells = [c for c in nbformat.reads(text, as_version=4).cells if c.cell_type == "code"
             and "colab-setup" not in c.metadata.get("tags", [])]
    last = max(k for k, c in enumerate(cells) if "connect(" in c.source)
    namespace, first = {"__name__": "__main__"}, len(made)
    start = time.time()
    with contextlib.chdir(ROOT / "notebooks"):
        for cell in cells[:last + 1]:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                try:
                    exec(compile(cell.source, name, "exec"), namespace)
                except Exception as err:            # an exercise left for the student, say
                    print(f"  ({name}: a cell raised {type(err).__name__}: {err})", file=sys.stderr)
            plt.close("all")
    for fn in COMPUTE:
        if callable(namespace.get(fn)):
            namespace[fn] = timed("compute", namespace[fn])
    print(f"{name} at {revision or 'the working tree'}: cells ran in {time.time() - start:.0f} s")
    return made[first:]


def next_value(control):
    """The control a student moves (an image picker's menu) and its next value."""
    control = control.choice if isinstance(control, widgets.ImagePicker) else control
    if hasattr(control, "options"):
        values = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return control, values[(values.index(control.value) + 1) % len(values)]
    step = control.step
    return control, control.value + step if control.value + step <= control.max else control.value - step


def time_change(control):
    clock.clear()
    control, value = next_value(control)
    start = time.perf_counter()
    control.value = value
    total = time.perf_counter() - start
    compute = clock.get("compute", 0.0)
    render = clock.get("render", 0.0) - clock.get("jpeg", 0.0)
    draw = clock.get("draw", 0.0)
    figure = draw - min(compute, draw)
    parts = dict(total=total, compute=compute, figure=figure, render=render,
                 jpeg=clock.get("jpeg", 0.0))
    parts["other"] = total - sum(parts[p] for p in ("compute", "figure", "render", "jpeg"))
    return {k: 1000 * v for k, v in parts.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=NOTEBOOKS)
    parser.add_argument("--before", help="git revision of the notebooks to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--slow", type=float, default=2.0,
                        help="a control slower than this many seconds is changed only twice")
    parser.add_argument("--fast", action="store_true", help="run the cells in fast mode")
    args = parser.parse_args()
    os.environ["VCNN_FAST"] = "1" if args.fast else "0"
    os.environ.setdefault("VCNN_OFFLINE", "1")
    import torch
    made = instrument_widgets()
    versions = ([("before", args.before)] if args.before else []) + [("after", None)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"{'fast' if args.fast else 'default'} mode; load average {os.getloadavg()[0]:.1f} at start")
    for number in args.notebooks:
        explorers = {label: run_notebook(number, revision, made) for label, revision in versions}
        rows = []
        for k, (box, controls) in enumerate(explorers["after"]):
            for name in controls:
                times = {label: [] for label in explorers}
                for repeat in range(args.repeats):
                    if repeat >= 2 and max(t["total"] for ts in times.values() for t in ts) > 1000 * args.slow:
                        break
                    for label in explorers:              # the versions take turns
                        if k < len(explorers[label]):
                            times[label].append(time_change(explorers[label][k][1][name]))
                rows.append((k, name, times))
        print(f"\nnotebook {number}: milliseconds per change, median of the changes "
              f"({'; '.join(label for label in explorers)} interleaved)")
        print(f"  {'explorer · control':24s} {'version':7s} {'n':>2s} " + " ".join(f"{p:>8s}" for p in PARTS))
        for k, name, times in rows:
            for label, ts in times.items():
                medians = [statistics.median(t[p] for t in ts) for p in PARTS] if ts else []
                print(f"  {f'{k + 1} · {name}':24s} {label:7s} {len(ts):2d} "
                      + " ".join(f"{m:8.0f}" for m in medians))
        load = os.getloadavg()[0]
        print(f"  (load average {load:.1f} at the end: above 2 on 2 cores, other processes shared them)")


if __name__ == "__main__":
    main()
