"""Write every notebook's Colab badge and setup cell, and the README's notebook table,
from utils/colab.py. Run after changing the repository URL or ref, or adding a notebook:

    python tools/sync_colab.py          # rewrite
    python tools/sync_colab.py --check  # exit 1 if anything is out of date

Cells are found by their tags ("colab-badge", "colab-setup"); a notebook without them
gets the badge as its first cell and the setup cell right after the title cell.
"""
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from utils import colab  # noqa: E402

README = colab.ROOT / "README.md"
TABLE = re.compile(r"(<!-- notebooks:start -->\n)(?:.*?\n)?(<!-- notebooks:end -->)", re.S)


def _lines(text):
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + [lines[-1]]


def _find(cells, tag):
    return next((i for i, c in enumerate(cells) if tag in c.get("metadata", {}).get("tags", [])), None)


def synced_notebook(nb, name):
    cells = nb["cells"]
    badge = {"cell_type": "markdown", "metadata": {"tags": [colab.BADGE_TAG]},
             "source": _lines(colab.badge_markdown(name))}
    i = _find(cells, colab.BADGE_TAG)
    if i is None:
        cells.insert(0, badge)
    else:
        cells[i]["source"] = badge["source"]
    i = _find(cells, colab.SETUP_TAG)
    if i is None:
        title = next(k for k, c in enumerate(cells) if c["cell_type"] == "markdown"
                     and colab.BADGE_TAG not in c["metadata"].get("tags", []))
        cells.insert(title + 1, {"cell_type": "code", "execution_count": None, "outputs": [],
                                 "metadata": {"tags": [colab.SETUP_TAG]},
                                 "source": _lines(colab.setup_cell_source())})
    else:
        cells[i]["source"] = _lines(colab.setup_cell_source())
    return nb


def synced_readme(text):
    if not TABLE.search(text):
        raise SystemExit("README.md lacks the <!-- notebooks:start --> ... end markers.")
    return TABLE.sub(lambda m: m.group(1) + colab.readme_table() + "\n" + m.group(2), text)


def main(check=False):
    stale = []
    for path in colab.notebooks():
        old = path.read_text()
        new = json.dumps(synced_notebook(json.loads(old), path.name), indent=1, ensure_ascii=False) + "\n"
        if json.loads(new) != json.loads(old):
            stale.append(path.name)
            if not check:
                path.write_text(new)
    old = README.read_text()
    new = synced_readme(old)
    if new != old:
        stale.append("README.md")
        if not check:
            README.write_text(new)
    if stale:
        print(("Out of date: " if check else "Updated: ") + ", ".join(stale))
    return 1 if (check and stale) else 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
