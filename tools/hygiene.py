"""What a reader of a saved notebook sees, kept clean: one home for the rules that
``execute_notebooks.py`` applies and ``tests/test_notebook_outputs.py`` enforces.

* progress bars are for the live run: none stays in a saved output;
* a widget shows a still figure where it cannot run (GitHub, nbviewer), never only its text,
  and the still shows something (not a blank page);
* an exercise not yet answered prints nothing that reads as a failure (a pitfall's
  deliberate "wrong:" next to "right:" is a lesson, not a failure), nor a bare ``False``;
* test markers are cell tags (``nbval-check-output``...), never comments in the source.
"""
import base64
import io
import re

PROGRESS_BAR = re.compile(r"\d+%\|")
FAILURE = re.compile(r"^(Not yet|Not quite|not yet|not quite)\b|Traceback", re.M)   # an exercise's verdict
WIDGET = "application/vnd.jupyter.widget-view+json"


def output_text(output):
    text = output.get("text") or output.get("data", {}).get("text/plain", "")
    return "".join(text) if isinstance(text, list) else text


def is_progress_bar(output):
    """A tqdm bar: a widget or a stderr stream whose text is a bar."""
    widget_or_stderr = WIDGET in output.get("data", {}) or output.get("name") == "stderr"
    return widget_or_stderr and bool(PROGRESS_BAR.search(output_text(output)))


def clean(notebook):
    """Drop progress bars from every saved output (in place); return the notebook."""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [o for o in cell["outputs"] if not is_progress_bar(o)]
    return notebook


def is_blank(output):
    """True for an output whose image has a single colour everywhere (a still drawn empty)."""
    from PIL import Image
    for mime in ("image/jpeg", "image/png"):
        if mime in output.get("data", {}):
            image = Image.open(io.BytesIO(base64.b64decode(output["data"][mime]))).convert("L")
            low, high = image.getextrema()
            return high - low < 8                      # JPEG noise stays within a few levels
    return False


def problems(notebook):
    """What a reader would trip on, one line each (empty when the notebook is clean)."""
    found = []
    for i, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        outputs = cell.get("outputs", [])
        if "NBVAL" in source:
            found.append(f"cell {i}: an NBVAL comment in the source (use a cell tag)")
        if any(is_progress_bar(o) for o in outputs):
            found.append(f"cell {i}: a progress bar in a saved output")
        widgets = [o for o in outputs if WIDGET in o.get("data", {}) and not is_progress_bar(o)]
        if any(not any(k.startswith("image/") for k in o["data"]) for o in widgets):
            found.append(f"cell {i}: a widget with no still figure (shown as text on GitHub)")
        if any(is_blank(o) for o in widgets):
            found.append(f"cell {i}: a widget whose still figure is blank")
        for o in outputs:
            bare_false = o.get("output_type") == "execute_result" and output_text(o).strip() == "False"
            if o.get("output_type") == "error" or FAILURE.search(output_text(o)) or bare_false:
                found.append(f"cell {i}: an output reads as a failure: {output_text(o)[:60]!r}")
                break
    return found
