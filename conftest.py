"""Tests never download and always run in fast mode; notebooks inherit these settings.

Every figure a notebook draws under nbval is checked for a projector (small panels,
overlapping or cut-off texts: ``utils.plotting.log_figure_problems``); the run fails at the
end if any figure has such a problem, with one line per figure.
"""
import json
import os
import random
import tempfile
from pathlib import Path

os.environ.setdefault("VCNN_OFFLINE", "1")
os.environ.setdefault("VCNN_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
FIGURE_LOG = Path(tempfile.mkdtemp()) / "figures.jsonl"
os.environ["VCNN_FIGURE_LOG"] = str(FIGURE_LOG)       # read by the notebooks' kernels


def pytest_addoption(parser):
    parser.addoption("--shuffle", type=int, default=None, metavar="SEED",
                     help="run the unit tests in a random order (seeded); notebooks keep theirs")


def pytest_collection_modifyitems(config, items):
    """``--shuffle SEED``: no unit test may depend on what ran before it."""
    seed = config.getoption("--shuffle")
    if seed is None:
        return
    units = [item for item in items if not str(item.fspath).endswith(".ipynb")]
    random.Random(seed).shuffle(units)
    items[:] = units + [item for item in items if str(item.fspath).endswith(".ipynb")]


def figure_problems():
    return [json.loads(line) for line in FIGURE_LOG.read_text().splitlines()] if FIGURE_LOG.exists() else []


def pytest_sessionfinish(session, exitstatus):
    problems = figure_problems()
    if problems:
        print(f"\n{len(problems)} notebook figure(s) a projector cannot show:")
        for problem in problems:
            print(f"  {problem}")
        session.exitstatus = 1
