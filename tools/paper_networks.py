"""Run notebooks on the paper networks' code path without any download.

Random-weight state dicts of the registered torchvision networks (AlexNet, VGG-16/19,
ResNet-50, GoogLeNet) are written where torch.hub would cache the real weights, in a
private ``TORCH_HOME`` that is deleted afterwards, so ``load_model("alexnet")`` finds them
and never falls back to the bundled model. Each notebook then runs top to bottom on its own
default network: shapes, layer roles, hooks and timings are exercised, the figures mean
nothing (random weights), so the executed notebook is thrown away. Only the run time is kept,
in ``metadata.vcnn.paper_cpu_minutes`` (with ``--record``), for the README table.

    python tools/paper_networks.py notebooks/07_texture_synthesis.ipynb
    python tools/paper_networks.py --fast                 # every notebook, fast mode
    python tools/paper_networks.py --record               # default mode, write the minutes
"""
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
import torchvision
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from utils import colab, models  # noqa: E402


def write_random_weights(torch_home):
    """A random-weight state dict for every torchvision network of the registry, saved
    under ``torch_home`` with the file name of its real weights."""
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    try:
        for name in models.available_models():
            if name == models.BUNDLED:
                continue
            path = models.cached_weights_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            network = torchvision.models.get_model(name, weights=None,
                                                   **models.PRETRAINED_ARGS.get(name, {}))
            torch.save(network.state_dict(), path)
    finally:
        if previous is None:
            os.environ.pop("TORCH_HOME")
        else:
            os.environ["TORCH_HOME"] = previous


def model_used(nb):
    """The set-up line the notebook printed (``env.describe``): 'model: alexnet | ...'."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "")
            for line in text.splitlines():
                if line.startswith("model:"):
                    return line
    return "?"


def run(path, torch_home, fast):
    nb = nbformat.read(path, as_version=4)
    os.environ.update(VCNN_OFFLINE="1", VCNN_FAST="1" if fast else "0",
                      TORCH_HOME=str(torch_home))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.0f} s  ({model_used(nb)})", flush=True)
    return seconds


def record(path, seconds):
    nb = json.loads(path.read_text())
    nb["metadata"].setdefault("vcnn", {})["paper_cpu_minutes"] = max(1, math.ceil(seconds / 60))
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    args = sys.argv[1:]
    fast, keep = "--fast" in args, "--record" in args
    paths = [Path(a).resolve() for a in args if not a.startswith("--")] or colab.notebooks()
    torch_home = Path(tempfile.mkdtemp(prefix="paper-networks-"))
    try:
        write_random_weights(torch_home)
        for notebook in paths:
            seconds = run(notebook, torch_home, fast)
            if keep and not fast:
                record(notebook, seconds)
    finally:
        shutil.rmtree(torch_home)
    if keep and not fast:
        import sync_colab  # noqa: E402  (tools/ is on the path when run as a script)
        sync_colab.main()
