"""Tests never download and always run in fast mode; notebooks inherit these settings.

Every figure a notebook draws under nbval is checked for a projector (small panels,
overlapping or cut-off texts: ``utils.plotting.log_figure_problems``); the run fails at the
end if any figure has such a problem, with one line per figure.
"""
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("VCNN_OFFLINE", "1")
os.environ.setdefault("VCNN_FAST", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
FIGURE_LOG = Path(tempfile.mkdtemp()) / "figures.jsonl"
os.environ["VCNN_FIGURE_LOG"] = str(FIGURE_LOG)       # read by the notebooks' kernels


def figure_problems():
    return [json.loads(line) for line in FIGURE_LOG.read_text().splitlines()] if FIGURE_LOG.exists() else []


def pytest_sessionfinish(session, exitstatus):
    problems = figure_problems()
    if problems:
        print(f"\n{len(problems)} notebook figure(s) a projector cannot show:")
        for problem in problems:
            print(f"  {problem}")
        session.exitstatus = 1
