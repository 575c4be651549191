"""The repository itself: what a reader of utils and the notebooks relies on."""
import importlib
import inspect
import json
import pkgutil
import re
import subprocess
from pathlib import Path

import utils

ROOT = Path(__file__).resolve().parent.parent


def public_functions():
    for info in pkgutil.iter_modules(utils.__path__):
        module = importlib.import_module(f"utils.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isfunction(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                yield f"{info.name}.{name}", obj


def test_a_class_to_explain_is_always_called_target():
    other_names = {"classes", "targets", "class_index", "cls", "label_index"}
    for name, function in public_functions():
        assert not other_names & set(inspect.signature(function).parameters), name


def test_no_binary_package_or_archive_is_tracked():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:                                    # not a git checkout (e.g. an sdist)
        return
    assert not [f for f in files if re.search(r"\.(whl|zip|tar|tgz|gz|egg)$", f)]


def test_notebooks_show_whole_functions_not_slices_of_source():
    slicing = re.compile(r"getsource\([^)]*\)\s*\[|source\.index\(|src\.index\(|source\[|src\[")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            assert not slicing.search("".join(cell["source"])), path.name
