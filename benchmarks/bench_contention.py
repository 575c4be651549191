"""A notebook beside a CPU-bound neighbour: torch's thread choice under contention.

Runs one notebook top to bottom (default mode, offline) four times, in one interleaved
session: on an idle machine and beside one busy-looping process, each with the threads that
``utils.env.share_cpu`` chooses and with torch's default (all cores, ``VCNN_THREADS``).

    python benchmarks/bench_contention.py notebooks/05_cam_and_gradcam.ipynb
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def run(path, threads=None):
    """Seconds to execute the notebook; ``threads`` fixes torch's thread count."""
    env = dict(os.environ, VCNN_OFFLINE="1", VCNN_FAST="0", VCNN_THREADS=str(threads or ""))
    os.environ.update(env)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return time.perf_counter() - start


def main(path):
    cores = os.cpu_count()
    run(path, cores)                       # warm-up: the first run pays for cold imports
    rows = []
    for neighbour in (False, True):
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if neighbour else None
        try:
            for label, threads in (("share_cpu", None), (f"fixed {cores}", cores)):
                rows.append((neighbour, label, run(path, threads)))
                print(rows[-1], flush=True)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    idle = {label: seconds for neighbour, label, seconds in rows if not neighbour}
    print("\n| neighbour | threads | seconds | vs idle share_cpu |\n|---|---|---|---|")
    for neighbour, label, seconds in rows:
        print(f"| {'one busy process' if neighbour else 'none'} | {label} | {seconds:.0f} | "
              f"{seconds / idle['share_cpu']:.1f}x |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "notebooks/05_cam_and_gradcam.ipynb").resolve())
