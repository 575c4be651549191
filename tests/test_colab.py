"""Badges, setup cells and the README table come from utils/colab.py, and the setup cell
really installs the collection when run as Colab would run it."""
import importlib.machinery
import json
import os
import subprocess
import sys
import textwrap
import types

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
        # Colab cannot open a notebook at a ref that does not exist yet: badges use the branch.
        assert f"/blob/{colab.DEFAULT_BRANCH}/notebooks/{path.name}" in colab.badge_markdown(path.name)


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


# The checkout logic of the setup cell, run in this process against a local repository:
# google.colab faked, pip intercepted, git real. Nothing touches the network.

def _git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo, message):
    _git(repo, "commit", "--quiet", "--allow-empty", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path):
    """A repository with a commit on its default branch `main`, standing in for GitHub."""
    repo = tmp_path / "origin"
    subprocess.run(["git", "init", "--quiet", "--initial-branch=main", str(repo)], check=True)
    (repo / "notebooks").mkdir()
    (repo / "notebooks" / "README").write_text("notebooks\n")
    _git(repo, "add", "notebooks")
    _git(repo, "commit", "--quiet", "-m", "first")
    return repo


@pytest.fixture
def run_cell(tmp_path, monkeypatch, capfd):
    """Run the setup cell as Colab would (fetching from ``origin``), with pip intercepted.
    Returns a function: () -> (stdout lines, git clone calls, pip calls)."""
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.chdir(tmp_path)                 # undone afterwards: the cell changes directory
    monkeypatch.setattr(sys, "path", list(sys.path))  # and prepends the clone to sys.path
    real_run, calls = subprocess.run, []

    def fake_run(args, *a, **kw):
        calls.append(list(args))
        if list(args[:3]) == [sys.executable, "-m", "pip"]:
            return subprocess.CompletedProcess(args, 0)
        return real_run(args, *a, **kw)

    monkeypatch.setattr(subprocess, "run", fake_run)
    target = tmp_path / "content" / "visualizing-cnns"

    def run():
        calls.clear()
        source = colab.setup_cell_source(repo_url=str(tmp_path / "origin"), colab_dir=str(target))
        exec(compile(source, "<setup cell>", "exec"), {})  # noqa: S102 - the cell, as Colab runs it
        out, err = capfd.readouterr()
        assert err == "", err                   # git's own messages never reach the student
        assert os.getcwd() == str(target / "notebooks") and sys.path[0] == str(target)
        clones = [c for c in calls if c[:2] == ["git", "clone"]]
        pips = [c for c in calls if c[:3] == [sys.executable, "-m", "pip"]]
        return out.splitlines(), clones, pips

    run.target = target
    return run


def _head(repo):
    return _git(repo, "rev-parse", "HEAD")


def test_setup_cell_falls_back_to_the_default_branch_with_one_warning(origin, run_cell):
    tip = _commit(origin, "second")             # no tag colab.REPO_REF anywhere
    lines, clones, pips = run_cell()
    assert _head(run_cell.target) == tip
    assert len(lines) == 2, lines
    assert lines[0].startswith("Warning:") and colab.REPO_REF in lines[0] and "origin/main" in lines[0]
    assert sum("warning" in line.lower() for line in lines) == 1
    short = _git(run_cell.target, "rev-parse", "--short", tip)
    assert lines[1] == f"Code from commit {short} (origin/main)"
    assert len(clones) == 1 and len(pips) == 1 and "--no-deps" in pips[0]


def test_setup_cell_checks_out_the_pinned_tag_without_a_warning(origin, run_cell):
    _git(origin, "tag", colab.REPO_REF)
    pinned = _head(origin)
    _commit(origin, "later")                    # main moves past the tag: the tag must win
    lines, clones, pips = run_cell()
    assert _head(run_cell.target) == pinned
    short = _git(run_cell.target, "rev-parse", "--short", pinned)
    assert lines == [f"Code from commit {short} ({colab.REPO_REF})"]
    assert len(clones) == 1 and len(pips) == 1


def test_setup_cell_rerun_reuses_the_clone_and_follows_the_origin(origin, run_cell):
    lines, clones, _ = run_cell()
    assert len(clones) == 1 and len(lines) == 2 and lines[0].startswith("Warning:")
    (run_cell.target / "notebooks" / "output.png").write_text("made by a notebook")

    tip = _commit(origin, "second")             # still no tag: the new tip of main
    lines, clones, _ = run_cell()
    assert clones == [] and _head(run_cell.target) == tip
    assert len(lines) == 2 and sum(line.startswith("Warning:") for line in lines) == 1

    _git(origin, "tag", colab.REPO_REF)         # the tag is published, then main moves on
    _commit(origin, "third")
    lines, clones, _ = run_cell()
    assert clones == [] and _head(run_cell.target) == tip
    assert len(lines) == 1 and f"({colab.REPO_REF})" in lines[0]
    assert (run_cell.target / "notebooks" / "output.png").exists()   # the clone was kept

    lines, clones, _ = run_cell()               # and once more, nothing changed
    assert clones == [] and _head(run_cell.target) == tip and len(lines) == 1


def test_setup_cell_with_the_real_repository_url_only_names_the_defaults():
    source = colab.setup_cell_source()
    assert f'"{colab.REPO_URL}", "{colab.REPO_REF}", "{colab.COLAB_DIR}"' in source
    assert source.count("print(") == 2          # the warning and the commit line, nothing else
