"""The saved notebooks as GitHub shows them: no progress bar, no widget as text, no output
that reads as a failure, no test marker in a cell's source (tools/hygiene.py)."""
import base64
import io
import json
import sys

import pytest
from PIL import Image

from utils import colab

sys.path.insert(0, str(colab.ROOT / "tools"))
import hygiene  # noqa: E402


@pytest.mark.parametrize("path", colab.notebooks(), ids=lambda p: p.name)
def test_saved_notebook_is_clean(path):
    assert hygiene.problems(json.loads(path.read_text())) == []


def test_the_rules_catch_what_they_are_for():
    bar = {"output_type": "display_data", "data": {hygiene.WIDGET: {}, "text/plain": "x:  10%|#  | 1/10"}}
    widget = {"output_type": "execute_result", "data": {hygiene.WIDGET: {}, "text/plain": "VBox()"}}
    still = {"output_type": "execute_result", "data": {hygiene.WIDGET: {}, "image/jpeg": jpeg(DRAWN)}}
    failure = {"output_type": "stream", "name": "stdout", "text": "Not yet: look again"}
    bare = {"output_type": "execute_result", "data": {"text/plain": "False"}}
    cells = [{"cell_type": "code", "source": s, "outputs": o} for s, o in
             [("# NBVAL_CHECK_OUTPUT", []), ("", [bar]), ("", [widget]), ("", [still]), ("", [failure]),
              ("", [bare])]]
    found = hygiene.problems({"cells": cells})
    assert [f.split(":")[0] for f in found] == ["cell 0", "cell 1", "cell 2", "cell 4", "cell 5"]
    assert hygiene.clean({"cells": cells})["cells"][1]["outputs"] == []


def jpeg(image):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


WHITE = Image.new("RGB", (64, 32), "white")
DRAWN = WHITE.copy()
DRAWN.paste((0, 0, 0), (8, 8, 24, 24))


def test_a_blank_still_is_caught():
    """An explorer's still drawn as an empty white page is as bad as no still."""
    white, drawn = WHITE, DRAWN
    blank = {"output_type": "execute_result", "data": {hygiene.WIDGET: {}, "image/jpeg": jpeg(white)}}
    still = {"output_type": "execute_result", "data": {hygiene.WIDGET: {}, "image/jpeg": jpeg(drawn)}}
    cells = [{"cell_type": "code", "source": "", "outputs": [o]} for o in (blank, still)]
    assert [f.split(":")[0] for f in hygiene.problems({"cells": cells})] == ["cell 0"]
