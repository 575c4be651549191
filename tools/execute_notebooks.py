"""Run notebooks top to bottom in default mode and save them with their outputs, ready to
commit: widget state and progress bars stripped (``hygiene.py``), the measured run time written to ``metadata.vcnn.cpu_minutes``
(rounded up), then the Colab cells and the README table refreshed.

    python tools/execute_notebooks.py notebooks/01_filters_and_activations.ipynb
    python tools/execute_notebooks.py            # every notebook

Runs offline (``VCNN_OFFLINE=1``) so that the committed figures come from the bundled model,
as GitHub readers and the tests see them. Fast mode is switched off.
"""
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from utils import colab  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
import hygiene  # noqa: E402
import sync_colab  # noqa: E402


def execute(path):
    nb = nbformat.read(path, as_version=4)
    figure_log = Path(tempfile.mkdtemp()) / "figures.jsonl"
    os.environ.update(VCNN_OFFLINE="1", VCNN_FAST="0", VCNN_FIGURE_LOG=str(figure_log))
    start = time.perf_counter()
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    minutes = (time.perf_counter() - start) / 60
    nb.metadata.pop("widgets", None)
    hygiene.clean(nb)
    nb.metadata.setdefault("vcnn", {})["cpu_minutes"] = max(1, math.ceil(minutes))
    nbformat.write(nb, path)
    print(f"{path.name}: {minutes:.1f} min, {path.stat().st_size / 1e6:.2f} MB")
    for problem in hygiene.problems(nb):
        print(f"  {problem}")
    if figure_log.exists():                      # plotting.log_figure_problems, inside the kernel
        for line in figure_log.read_text().splitlines():
            print(f"  a figure a projector cannot show: {line}")


if __name__ == "__main__":
    paths = [Path(p).resolve() for p in sys.argv[1:]] or colab.notebooks()
    for notebook in paths:
        execute(notebook)
    sync_colab.main()
