"""How long a student waits after moving a widget: from the change in the browser to the new
figure on screen, measured in a real JupyterLab driven by headless Chromium.

    python tools/widget_latency.py                       # notebooks 01-06, default mode
    python tools/widget_latency.py 03 --fast --repeats 3
    python tools/widget_latency.py 04 06 --back-and-forth    # returns to a value shown before

For each notebook: copies it (without outputs) to a temporary folder, opens it in JupyterLab, runs all cells,
then for every explorer (a cell whose output has controls and a figure) changes each
dropdown and slider ``--repeats`` times (next option / one step) and times, in the page,
``performance.now()`` at the change to the first animation frame after the new image has
been decoded, and to the "computing…" line of an explorer whose change takes long
(``utils.widgets.Busy``). Prints one line per control with the median and the slowest time,
the median time to that line where it showed, and the number of changes timed. A control
whose change takes over ``--slow`` seconds (it recomputes a whole map) is changed twice only,
and a change gets ``--timeout`` seconds, so that a full run stays within about ten minutes.
A greyed-out control is first enabled by stepping the explorer's first control, untimed.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium`` (see
benchmarks/requirements.txt); runs offline (``VCNN_OFFLINE=1``). Time it on an idle machine:
a second busy process on two cores changes the numbers several times over.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ["01", "02", "03", "04", "05", "06"]

# In the page: change one control of one explorer and call back with the milliseconds until
# a new image is decoded and painted (or an error text). Arguments: cell index, control index,
# direction (1: the next option / one step right, -1: back).
CHANGE_AND_TIME = r"""
const [cellIndex, controlIndex, direction, timeoutMs, done] = arguments;
const panel = window.jupyterapp.shell.currentWidget;
const node = panel.content.widgets[cellIndex].node;
const area = node.querySelector('.jp-Cell-outputArea');
const control = area.querySelectorAll('select, .widget-slider .noUi-handle')[controlIndex];
const seen = new Set([...area.querySelectorAll('img')].map(img => img.src));
let t0 = 0, finished = false, busy = null;
const finish = value => { if (!finished) { finished = true; observer.disconnect(); done([value, busy]); } };
const observer = new MutationObserver(() => {
  if (busy === null && area.textContent.includes('computing')) busy = performance.now() - t0;
  // a new picture: a new source, not greyed out (the busy state's class change re-renders the
  // old picture under a new blob URL: that is not the new figure)
  const fresh = [...area.querySelectorAll('img')].find(img => img.src && !seen.has(img.src)
                                                       && !img.classList.contains('vcnn-busy'));
  if (fresh) {
    observer.disconnect();
    fresh.decode().catch(() => null).then(() =>
      requestAnimationFrame(() => finish(performance.now() - t0)));
  }
});
observer.observe(area, {subtree: true, childList: true, characterData: true, attributes: true,
                        attributeFilter: ['src']});
setTimeout(() => finish('timeout'), timeoutMs);
t0 = performance.now();
if (control.tagName === 'SELECT') {
  const n = control.options.length;
  control.selectedIndex = (control.selectedIndex + direction + n) % n;
  control.dispatchEvent(new Event('change', {bubbles: true}));
} else {
  const atEnd = control.getAttribute('aria-valuenow') === control.getAttribute('aria-valuemax');
  const forward = atEnd ? 'ArrowLeft' : 'ArrowRight';          // back: undo the last move
  const key = direction > 0 ? forward : (window.lastKey === 'ArrowRight' ? 'ArrowLeft' : 'ArrowRight');
  window.lastKey = key;
  control.dispatchEvent(new KeyboardEvent('keydown', {key: key, bubbles: true}));
}
"""

# The explorers: cells whose output holds at least one control and one image.
FIND_EXPLORERS = r"""
const panel = window.jupyterapp.shell.currentWidget;
const found = [];
panel.content.widgets.forEach((cell, index) => {
  const area = cell.node.querySelector('.jp-Cell-outputArea');
  if (!area || !area.querySelector('.jupyter-widgets img')) return;
  const controls = [...area.querySelectorAll('select, .widget-slider .noUi-handle')].map(c => {
    const box = c.closest('.widget-dropdown, .widget-slider');
    const label = box && box.querySelector('.widget-label');
    return (label && label.textContent.trim()) || c.tagName.toLowerCase();
  });
  if (controls.length) found.push({cell: index, controls: controls,
      source: cell.model.sharedModel.getSource().split('\n').slice(-1)[0].slice(0, 70)});
});
return found;
"""

# In the page: whether a control is greyed out (e.g. notebook 02's position slider on a layer
# whose full maps were not kept). Arguments: cell index, control index.
IS_DISABLED = r"""
const [cellIndex, controlIndex] = arguments;
const node = window.jupyterapp.shell.currentWidget.content.widgets[cellIndex].node;
const control = node.querySelector('.jp-Cell-outputArea')
    .querySelectorAll('select, .widget-slider .noUi-handle')[controlIndex];
const target = control.closest('.noUi-target');
return control.disabled === true || (target !== null && target.hasAttribute('disabled'));
"""

KERNEL_BUSY = r"""
const panel = window.jupyterapp.shell.currentWidget;
const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
const pending = panel ? panel.content.widgets.filter(c => c.model.type === 'code'
    && c.model.sharedModel.getSource().trim() && c.model.executionCount === null).length : -1;
return [kernel ? kernel.status : 'none', pending, panel && panel.context ? panel.context.path : ''];
"""

# Where a run stopped: the first code cell not run, and the text of the first error output.
WHERE_STOPPED = r"""
const cells = window.jupyterapp.shell.currentWidget.content.widgets;
const first = cells.findIndex(c => c.model.type === 'code'
    && c.model.sharedModel.getSource().trim() && c.model.executionCount === null);
const error = cells.map(c => c.node.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"], .jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]'))
    .find(node => node);
return [first, first >= 0 ? cells[first].model.sharedModel.getSource().slice(0, 200) : '',
        error ? error.textContent.slice(-1500) : ''];
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(folder, fast):
    """JupyterLab serving ``folder``, app exposed to the page, notebook windowing off (every
    cell stays in the page, so its output can be found)."""
    settings = folder / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = dict(os.environ, VCNN_OFFLINE="1", VCNN_FAST="1" if fast else "0",
               JUPYTERLAB_SETTINGS_DIR=str(folder / "lab-settings"))
    port, token = free_port(), "latency"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={folder}",
         "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, f"http://127.0.0.1:{port}", token


def wait_for(url, token, limit_s=120):
    """Until the server answers (it takes seconds to start, more on a busy machine)."""
    import urllib.request
    deadline = time.time() + limit_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(1)


def browser():
    from selenium import webdriver
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=service)


def run_all(driver, url, token, name, limit_s):
    driver.get(f"{url}/lab/tree/{name}?reset&token={token}")     # reset: no tab of the last one
    deadline = time.time() + 120
    while time.time() < deadline:          # the page, the app and this notebook's kernel are up
        status, _, path = driver.execute_script(KERNEL_BUSY)
        if status == "idle" and path.endswith(name):
            break
        time.sleep(1)
    start = time.time()
    driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    time.sleep(3)
    idle_since = None
    while time.time() - start < limit_s:
        status, pending, _ = driver.execute_script(KERNEL_BUSY)
        if status == "idle" and pending == 0:
            return time.time() - start
        idle_since = (idle_since or time.time()) if status == "idle" else None
        if idle_since and time.time() - idle_since > 20:     # idle with cells left: it stopped
            break
        time.sleep(2)
    first, source, error = driver.execute_script(WHERE_STOPPED)
    raise TimeoutError(f"{name}: not finished after {limit_s} s; first cell not run: {first} "
                       f"({source!r}); {status}; error shown: {error or 'none'}")


def enable(driver, explorer, k, timeout_s):
    """A greyed-out control (it does nothing at the explorer's current setting) is enabled by
    stepping the explorer's first other control, untimed, until it is; False if eight steps
    do not enable it."""
    first = next((i for i, label in enumerate(explorer["controls"]) if i != k), None)
    for _ in range(8):
        if not driver.execute_script(IS_DISABLED, explorer["cell"], k):
            return True
        if first is None:
            break
        driver.execute_async_script(CHANGE_AND_TIME, explorer["cell"], first, 1, timeout_s * 1000)
        time.sleep(0.5)
    return not driver.execute_script(IS_DISABLED, explorer["cell"], k)


def measure(driver, repeats, timeout_s, back_and_forth=False, slow_s=3.0):
    """Times per control: ``repeats`` changes to the next value, or with ``back_and_forth``
    one change forward and then ``repeats`` changes back and forth between the same two
    values (the first is left out: only returns to a value already shown are timed). A
    control whose change took over ``slow_s`` seconds (it recomputes a map) is changed no
    more than twice. Each time is (ms to the new figure, ms to the "computing…" line or None)."""
    rows = []
    driver.set_script_timeout(timeout_s + 5)
    for explorer in driver.execute_script(FIND_EXPLORERS):
        for k, label in enumerate(explorer["controls"]):
            times = []
            if not enable(driver, explorer, k, timeout_s):
                rows.append((explorer["cell"], explorer["source"], label + " (greyed out)", []))
                continue
            for i in range(repeats + back_and_forth):
                if len(times) >= 2 and max(ms for ms, _ in times) > 1000 * slow_s:
                    break
                direction = -1 if back_and_forth and i % 2 else 1
                ms, busy = driver.execute_async_script(CHANGE_AND_TIME, explorer["cell"], k,
                                                       direction, timeout_s * 1000)
                if ms == "timeout":
                    break
                times.append((ms, busy))
                time.sleep(0.5)              # let the kernel settle
            rows.append((explorer["cell"], explorer["source"], label,
                         times[1:] if back_and_forth else times))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", default=DEFAULT, help="numbers, e.g. 01 03")
    parser.add_argument("--fast", action="store_true", help="run the notebooks in fast mode")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30, help="seconds per change")
    parser.add_argument("--slow", type=float, default=3.0,
                        help="a control slower than this (seconds) is changed only twice")
    parser.add_argument("--back-and-forth", action="store_true",
                        help="time returns to a value already shown (an explorer's cache)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vcnn-latency-"))
    paths = [next((ROOT / "notebooks").glob(f"{n}_*.ipynb")) for n in args.notebooks]
    for path in paths:                     # copies without outputs: every cell must run again
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, folder / path.name)
    server, url, token = start_lab(folder, args.fast)
    driver = None
    try:
        wait_for(url, token)
        driver = browser()
        print(f"mode: {'fast' if args.fast else 'default'}; {os.cpu_count()} CPUs; "
              "milliseconds from a change to the new figure painted (median, slowest), "
              "and to the 'computing…' line where one showed (median)"
              + ("; returns to a value shown before" if args.back_and_forth else ""))
        for path in paths:
            seconds = run_all(driver, url, token, path.name, limit_s=900)
            print(f"\n{path.name} (ran in {seconds:.0f} s)")
            for cell, source, label, times in measure(driver, args.repeats, args.timeout,
                                                      args.back_and_forth, args.slow):
                figure = [ms for ms, _ in times]
                busy = [ms for _, ms in times if ms is not None]
                shown = (f"{statistics.median(figure):7.0f} {max(figure):7.0f}" if times
                         else "  no new figure")
                shown += f"  busy {statistics.median(busy):5.0f}" if busy else " " * 12
                print(f"  cell {cell:3d} {label:10s} {shown} n={len(times)}  {source}")
            driver.execute_script("window.jupyterapp.commands.execute('kernelmenu:shutdown')")
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
