"""Badges, setup cells and the README table come from utils/colab.py, and the setup cell
really installs the collection when run as Colab would run it."""
import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap

import pytest

from utils import colab

sys.path.insert(0, str(colab.ROOT / "tools"))
import sync_colab  # noqa: E402


def test_every_notebook_has_the_generated_badge_and_setup_cell():
    assert colab.notebooks(), "no notebooks found"
    for path in colab.notebooks():
        cells = json.loads(path.read_text())["cells"]
        badges = [c for c in cells if colab.BADGE_TAG in c["metadata"].get("tags", [])]
        setups = [c for c in cells if colab.SETUP_TAG in c["metadata"].get("tags", [])]
        assert len(badges) == 1 and len(setups) == 1, path.name
        assert "".join(badges[0]["source"]) == colab.badge_markdown(path.name), path.name
        assert "".join(setups[0]["source"]) == colab.setup_cell_source(), path.name
        assert f"/blob/{colab.REPO_REF}/notebooks/{path.name}" in colab.badge_markdown(path.name)


def test_sync_script_reports_nothing_stale():
    assert sync_colab.main(check=True) == 0, "run: python tools/sync_colab.py"
    readme = (colab.ROOT / "README.md").read_text()
    for path in colab.notebooks():
        assert colab.colab_url(path.name) in readme


def test_setup_cell_never_reinstalls_colabs_own_packages():
    source = colab.setup_cell_source()
    assert "--no-deps" in source
    for name in ("torch", "torchvision", "ipywidgets"):
        assert all(not p.startswith(name + "=") for p in colab.COLAB_PACKAGES)
        assert f'"{name}' not in source


def test_setup_cell_installs_the_repo_at_the_pinned_ref_in_simulated_colab(tmp_path):
    if not (colab.ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the project")
    source_repo = tmp_path / "origin"
    subprocess.run(["git", "clone", "--quiet", str(colab.ROOT), str(source_repo)], check=True)
    tags = subprocess.run(["git", "-C", str(source_repo), "tag"], capture_output=True, text=True).stdout
    if colab.REPO_REF not in tags.split():
        subprocess.run(["git", "-C", str(source_repo), "tag", colab.REPO_REF], check=True)
    pinned = subprocess.run(["git", "-C", str(source_repo), "rev-parse", colab.REPO_REF + "^{commit}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # Move the origin past the tag: the cell must check out the tag, not the newest commit.
    subprocess.run(["git", "-C", str(source_repo), "-c", "user.name=t", "-c", "user.email=t@t",
                    "commit", "--quiet", "--allow-empty", "-m", "later"], check=True)

    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    target = tmp_path / "content" / "visualizing-cnns"
    cell = (colab.setup_cell_source().replace(colab.REPO_URL, str(source_repo))
            .replace(colab.COLAB_DIR, str(target)))
    script = "import google.colab\n" + cell + textwrap.dedent("""
        import importlib.machinery, os, sys
        spec = importlib.machinery.PathFinder.find_spec("utils", sys.path)
        print(spec.origin)
        print(os.getcwd())
        """)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    origin, cwd = result.stdout.strip().splitlines()[-2:]
    assert origin == str(target / "utils" / "__init__.py")
    assert cwd == str(target / "notebooks")
    head = subprocess.run(["git", "-C", str(target), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert head == pinned


def test_setup_cell_does_nothing_outside_colab(tmp_path):
    assert importlib.machinery.PathFinder  # the cell's only effect outside Colab: imports
    before = set(os.listdir(tmp_path))
    result = subprocess.run([sys.executable, "-c", colab.setup_cell_source()], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "" and set(os.listdir(tmp_path)) == before
