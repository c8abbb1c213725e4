"""JupyterLab in headless Chromium: start both, run a notebook the way a learner does, report.

Used by the browser tests (tests/browser/). `jupyter_lab` starts JupyterLab from this
environment on a free local port with a token and its own settings; `chromium` starts
the system's Chromium through Playwright (no browser download). `run_notebook` opens a
notebook, runs all cells and returns what the page shows; `problems` turns that into
sentences (error outputs, missing check panels, widgets shown as text); `try_widgets`
changes every control of every widget and says which did not change its figure;
`console_problems` keeps the browser console's errors; `layout_problems` measures the
widgets in a laptop-sized window and in a wide one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from vit_course.checks.result import _COLOURS, _VERB

REPO = Path(__file__).resolve().parents[2]
ENABLE = ("install Chromium from your distribution (Debian/Ubuntu: apt-get install chromium) and the "
          "test extra (pip install -c constraints.txt -e '.[test]'), then run make test-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# JupyterLab settings for the test server: every cell in the DOM (the default windowing
# leaves cells out of view unrendered), no news or update checks (the tests run offline)
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
    "@jupyterlab/extensionmanager-extension/plugin.jupyterlab-settings": {"enabled": False},
}
# "✓ check_patchify passed" -> status; the panel's left border says the same in colour
_STATUS_OF_VERB = {verb: status for status, verb in _VERB.items()}
TITLE = re.compile(r"^[✓✗○] (\S+) (" + "|".join(map(re.escape, _VERB.values())) + r")(?::|$)")


def rgb(hex_colour: str) -> str:
    """'#c62828' -> 'rgb(198, 40, 40)', the way the browser reports a computed colour."""
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


BORDER = {status: rgb(colours[0]) for status, colours in _COLOURS.items()}


def missing_tools() -> str | None:
    """Why the browser tests cannot run here (and how to enable them), or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return f"the Python package playwright is not installed; to run the browser tests, {ENABLE}"
    if shutil.which("chromium") is None:
        return f"no chromium on PATH; to run the browser tests, {ENABLE}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its notebook folder and how to reach it."""

    root: Path
    port: int
    token: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (the next notebook gets the cores to itself)."""
        for kernel in self.api("kernels"):
            with contextlib.suppress(OSError):
                self.api(f"kernels/{kernel['id']}", method="DELETE")


def _stop(process: subprocess.Popen) -> None:
    """Stop a process, its process group and every descendant (kernels start their own sessions)."""
    import psutil

    with contextlib.suppress(psutil.Error):
        family = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
    for child in family:
        with contextlib.suppress(psutil.Error):
            child.kill()


@contextlib.contextmanager
def jupyter_lab(root: Path, startup_timeout: float = 120.0):
    """JupyterLab from this Python on a free local port, serving `root`; stopped on exit."""
    home = Path(tempfile.mkdtemp(prefix="vit-course-lab-"))
    settings = home / "settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTER_DATA_DIR=str(home / "data"), MPLBACKEND="module://matplotlib_inline.backend_inline")
    lab = Lab(root=root, port=free_port(), token=os.urandom(16).hex(), log=home / "lab.log")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={lab.port}",
               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={lab.token}",
               f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    with open(lab.log, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n{lab.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                lab.api("status")
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"JupyterLab did not answer within {startup_timeout:.0f} s; log: {lab.log}")
            time.sleep(0.5)
        yield lab
    finally:
        _stop(process)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def chromium():
    """The system's Chromium, headless, driven by Playwright; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def copy_without_outputs(source: Path, folder: Path) -> Path:
    """The notebook with its outputs and saved widget state removed: all the page shows is from this run."""
    nb = nbformat.read(source, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    target = folder / source.name
    nbformat.write(nb, target)
    return target


# ---- the page ------------------------------------------------------------------------------

@dataclass
class Page:
    """A browser tab showing one notebook in JupyterLab, with the console errors seen so far."""

    page: object
    console: list[str] = field(default_factory=list)

    def js(self, script: str, arg=None):
        return self.page.evaluate(script, arg)


def open_notebook(browser, lab: Lab, name: str, timeout: float = 120.0, viewport: dict | None = None) -> Page:
    """A new tab with `name` (relative to lab.root) open and its kernel idle (1400 x 1000 px by default)."""
    context = browser.new_context(viewport=viewport or {"width": 1400, "height": 1000})
    tab = Page(context.new_page())
    tab.page.on("console", lambda m: m.type == "error" and tab.console.append(f"console error: {m.text}"))
    tab.page.on("pageerror", lambda e: tab.console.append(f"page error: {e}"))
    tab.page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset", timeout=timeout * 1000)
    tab.page.wait_for_function(
        """name => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                    return w && w.context && w.context.path.endsWith(name) && w.sessionContext.session
                        && w.sessionContext.session.kernel && w.sessionContext.kernelDisplayStatus === 'idle'; }""",
        arg=name, timeout=timeout * 1000, polling=250)
    return tab


IDLE = """() => { const w = window.jupyterapp.shell.currentWidget;
                 return w.sessionContext.kernelDisplayStatus === 'idle'
                     && !w.content.widgets.some(c => c.model.type === 'code' && c.promptNode
                                                      && c.promptNode.textContent.includes('*')); }"""


def wait_idle(tab: Page, timeout: float) -> None:
    """Until the kernel is idle and no cell is queued or running, twice in a row 0.5 s apart."""
    deadline = time.monotonic() + timeout
    while True:
        tab.page.wait_for_function(IDLE, timeout=max(1.0, deadline - time.monotonic()) * 1000, polling=250)
        time.sleep(0.5)
        if tab.js(IDLE):
            return


def run_all(tab: Page, timeout: float = 300.0) -> None:
    """Run > Run All Cells, then wait for the kernel to go idle."""
    tab.js("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    wait_idle(tab, timeout)


# What the page shows for every cell: the outputs in the front end's model, and for each
# output node its MIME type, its text, the check panels and the widget parts in it
COLLECT = """() => {
  const cells = window.jupyterapp.shell.currentWidget.content.widgets;
  return cells.map((cell, index) => {
    const code = cell.model.type === 'code';
    const nodes = code ? [...cell.node.querySelectorAll('.jp-OutputArea-output')] : [];
    return {
      index, type: cell.model.type,
      outputs: code ? cell.model.outputs.toJSON() : [],
      rendered: nodes.map(node => ({
        mime: node.getAttribute('data-mime-type') || '',
        text: node.innerText.slice(0, 2000),
        panels: [...node.querySelectorAll('strong')].map(s => ({
          title: s.textContent.trim(),
          border: s.parentElement ? getComputedStyle(s.parentElement).borderLeftColor : '',
          cause: s.parentElement ? [...s.parentElement.querySelectorAll('strong')]
                     .filter(t => t.textContent.startsWith('Likely cause')).map(t => t.parentElement.textContent)
                     .join(' ') : ''})),
        widget_views: node.querySelectorAll('.jupyter-widgets').length,
        controls: node.querySelectorAll('.widget-slider, .widget-dropdown').length,
        images: node.querySelectorAll('img').length,
      })),
    };
  });
}"""


@dataclass
class Panel:
    name: str
    status: str
    border: str
    cause: str


def panels(cell: dict) -> list[Panel]:
    """The check panels (titles in the status colours) shown in one cell's outputs."""
    found = []
    for node in cell["rendered"]:
        for strong in node["panels"]:
            match = TITLE.match(strong["title"])
            if match:
                found.append(Panel(match[1], _STATUS_OF_VERB[match[2]], strong["border"], strong["cause"]))
    return found


def collect(tab: Page) -> list[dict]:
    return tab.js(COLLECT)


def expected_from(notebook: Path) -> dict:
    """From the notebook file: the graded (check) cells with their stored status, and the widget cells."""
    nb = nbformat.read(notebook, as_version=4)
    checks, widgets = {}, set()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        stored = [o.get("data", {}) for o in cell.get("outputs", []) if "data" in o]
        if cell.metadata.get("nbgrader", {}).get("grade"):
            titles = [TITLE.match(line.strip()) for data in stored
                      for line in data.get("text/plain", "").splitlines()[:1]]
            statuses = [_STATUS_OF_VERB[m[2]] for m in titles if m]
            checks[index] = statuses[0] if statuses else None
        if any(WIDGET_MIME in data for data in stored):
            widgets.add(index)
    return {"checks": checks, "widgets": widgets}


def stored_controls(notebook: Path) -> int | None:
    """How many sliders and dropdowns the notebook file's saved widget state holds (None: no state saved)."""
    nb = nbformat.read(notebook, as_version=4)
    saved = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    if saved is None:
        return None
    return sum(m["model_name"].endswith(("SliderModel", "DropdownModel")) and "Style" not in m["model_name"]
               for m in saved.get("state", {}).values())


def problems(cells: list[dict], expected: dict) -> list[str]:
    """Everything wrong on the page, one sentence each; empty when the notebook is fine."""
    found = []
    for cell in cells:
        where = f"cell {cell['index']}"
        for output in cell["outputs"]:
            if output.get("output_type") == "error":
                found.append(f"{where}: error output {output.get('ename')}: {output.get('evalue')}")
        for node in cell["rendered"]:
            if node["mime"] == "application/vnd.jupyter.error" and not any(
                    o.get("output_type") == "error" for o in cell["outputs"]):
                found.append(f"{where}: an error is shown: {node['text'][:300]}")
        shown = panels(cell)
        for panel in shown:
            if panel.border != BORDER[panel.status]:
                found.append(f"{where}: the {panel.name} panel says {panel.status!r} but its border is "
                             f"{panel.border}, expected {BORDER[panel.status]}")
        if cell["index"] in expected["checks"]:
            want = expected["checks"][cell["index"]]
            if not shown:
                text = " | ".join(n["text"][:200] for n in cell["rendered"]) or "no output"
                found.append(f"{where}: no check panel rendered, the page shows: {text}")
            elif want is not None and shown[0].status != want:
                found.append(f"{where}: the {shown[0].name} panel says {shown[0].status!r}, "
                             f"the notebook file says {want!r}")
        widget_outputs = [k for k, o in enumerate(cell["outputs"]) if WIDGET_MIME in o.get("data", {})]
        if cell["index"] in expected["widgets"] and not widget_outputs:
            found.append(f"{where}: the notebook file shows a widget here, this run did not display one")
        if len(cell["rendered"]) != len(cell["outputs"]):
            found.append(f"{where}: {len(cell['outputs'])} outputs, {len(cell['rendered'])} shown")
            continue
        for k in widget_outputs:
            node = cell["rendered"][k]
            if node["widget_views"] == 0 or "Error displaying widget" in node["text"]:
                found.append(f"{where}: a widget is not rendered as a control, the page shows: {node['text'][:300]}")
    return found


# ---- widgets -------------------------------------------------------------------------------

IMAGE_BYTES = """async ([cell, k]) => {
  const nodes = window.jupyterapp.shell.currentWidget.content.widgets[cell].node
      .querySelectorAll('.jp-OutputArea-output');
  const img = nodes[k] && nodes[k].querySelector('img');
  if (!img || !img.src) return null;
  const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return bytes.length + ':' + [...digest].map(b => b.toString(16).padStart(2, '0')).join('');
}"""


def _outputs(tab: Page, cell: int):
    return tab.page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-OutputArea-output")


def _image(tab: Page, cell: int, k: int) -> str | None:
    return tab.js(IMAGE_BYTES, [cell, k])


def _wait_new_image(tab: Page, cell: int, k: int, before: str | None, timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = _image(tab, cell, k)
        if now is not None and now != before:
            return now
        time.sleep(0.25)
    return None


def try_widgets(tab: Page, cells: list[dict], timeout: float = 60.0) -> tuple[list[str], list[str]]:
    """Change every control of every widget once; (what changed its figure, the problems)."""
    changed, found = [], []
    for cell in cells:
        for k, node in enumerate(cell["rendered"]):
            if node["controls"] == 0 or node["widget_views"] == 0:
                continue
            where = f"cell {cell['index']}, widget {k}"
            output = _outputs(tab, cell["index"]).nth(k)
            image = _image(tab, cell["index"], k)
            if image is None:
                found.append(f"{where}: has controls but no figure (no image data)")
                continue
            controls = output.locator(".widget-slider, .widget-dropdown")
            for c in range(controls.count()):
                control = controls.nth(c)
                label = "".join(control.locator(".widget-label").all_inner_texts()).strip() or f"control {c}"
                moved = _change(control)
                if moved is None:
                    found.append(f"{where}: the {label!r} control could not be changed")
                    continue
                new = _wait_new_image(tab, cell["index"], k, image, timeout)
                if new is None:
                    found.append(f"{where}: changing {label!r} ({moved}) did not change the figure "
                                 f"within {timeout:.0f} s")
                else:
                    changed.append(f"{where}: {label} ({moved})")
                    image = new
                wait_idle(tab, timeout)
    return changed, found


def _change(control) -> str | None:
    """One change, the way a learner makes it: another option, or the slider to its other end."""
    select = control.locator("select")
    if select.count():
        values = select.locator("option").evaluate_all("os => os.map(o => o.value)")
        current = select.input_value()
        others = [v for v in values if v != current]
        if not others:
            return None
        select.select_option(others[0])
        return f"{current!r} -> {others[0]!r}"
    readout = control.locator(".widget-readout")
    before = readout.inner_text().strip()
    handle = control.locator(".noUi-handle").first
    handle.focus()
    handle.press("End")
    if readout.inner_text().strip() == before:
        handle.press("Home")
    after = readout.inner_text().strip()
    return None if after == before else f"{before} -> {after}"


# ---- widget layout -------------------------------------------------------------------------

# A laptop window with JupyterLab's file browser open, where a row of controls is tight,
# and a wide screen with the sidebar closed, where a stretched image shows
NARROW = {"width": 1024, "height": 768}
WIDE = {"width": 1920, "height": 1080}
MIN_TRACK_PX = 100  # a slider track narrower than this is hard to drag; 0 is no track at all

MEASURE = """() => {
  const found = {sliders: [], images: [], sidebar: 0, height: window.innerHeight};
  const left = document.querySelector('#jp-left-stack');
  found.sidebar = left ? left.getBoundingClientRect().width : 0;
  window.jupyterapp.shell.currentWidget.content.widgets.forEach((cell, index) => {
    for (const node of cell.node.querySelectorAll('.jp-OutputArea-output')) {
      if (!node.querySelector('.jupyter-widgets')) continue;
      for (const slider of node.querySelectorAll('.widget-slider')) {
        const track = slider.querySelector('.slider-container') || slider.querySelector('.noUi-target');
        found.sliders.push({index, label: (slider.querySelector('.widget-label') || {}).textContent || '',
                            track: track ? track.getBoundingClientRect().width : 0});
      }
      for (const img of node.querySelectorAll('img')) {
        const r = img.getBoundingClientRect();
        found.images.push({index, width: r.width, height: r.height, natural: img.naturalWidth});
      }
    }
  });
  return found;
}"""


def _measure(tab: Page, viewport: dict, sidebar: bool) -> dict:
    tab.page.set_viewport_size(viewport)
    tab.js("""open => { const shell = window.jupyterapp.shell;
                       if (open) { window.jupyterapp.commands.execute('filebrowser:activate'); }
                       else { shell.collapseLeft(); } }""", sidebar)
    time.sleep(1.0)  # let the layout settle
    return tab.js(MEASURE)


def layout_problems(tab: Page) -> list[str]:
    """The widgets of a notebook that ran, measured twice: at NARROW with the file browser
    open, every slider keeps a track of at least MIN_TRACK_PX; at WIDE with the sidebar
    closed, no widget image is drawn wider than its own pixels (stretched, hence blurred)
    or taller than the window. One sentence per problem."""
    found = []
    narrow = _measure(tab, NARROW, sidebar=True)
    if narrow["sidebar"] < 150:
        found.append(f"the file browser did not open at {NARROW['width']} px (sidebar {narrow['sidebar']:.0f} px)")
    for s in narrow["sliders"]:
        if s["track"] < MIN_TRACK_PX:
            found.append(f"cell {s['index']}: at {NARROW['width']} px with the file browser open, the slider "
                         f"{s['label'].strip()!r} has a {s['track']:.0f} px track (at least {MIN_TRACK_PX} px wanted)")
    wide = _measure(tab, WIDE, sidebar=False)
    for im in wide["images"]:
        if im["natural"] and im["width"] > im["natural"] + 1:
            found.append(f"cell {im['index']}: at {WIDE['width']} px a widget image of {im['natural']} px is drawn "
                         f"{im['width']:.0f} px wide ({im['width'] / im['natural']:.1f}x, blurred)")
        if im["height"] > wide["height"]:
            found.append(f"cell {im['index']}: a widget image is {im['height']:.0f} px tall, taller than the "
                         f"{wide['height']} px window")
    return found


def check_layout(browser, lab: Lab, notebook: Path, timeout: float = 300.0) -> list[str]:
    """Run a copy of `notebook` (outputs removed) in a NARROW window; its `layout_problems`."""
    name = copy_without_outputs(notebook, lab.root).name
    tab = open_notebook(browser, lab, name, viewport=NARROW)
    try:
        run_all(tab, timeout)
        return layout_problems(tab)
    finally:
        tab.page.context.close()
        lab.shutdown_kernels()


# ---- screenshots ---------------------------------------------------------------------------

def screenshot(tab: Page, folder: Path, name: str) -> Path:
    """The notebook, every cell, as one tall PNG in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{Path(name).stem}.png"
    height = tab.js("""() => { const node = window.jupyterapp.shell.currentWidget.content.node;
        return Math.max(node.scrollHeight, ...[...node.querySelectorAll('.jp-WindowedPanel-outer')]
                                                   .map(n => n.scrollHeight)); }""")
    tab.page.set_viewport_size({"width": 1400, "height": min(max(1000, height + 200), 20000)})
    tab.js("""() => { const node = window.jupyterapp.shell.currentWidget.content.node;
        for (const n of [node, ...node.querySelectorAll('.jp-WindowedPanel-outer')]) n.scrollTop = 0; }""")
    time.sleep(0.5)
    tab.page.screenshot(path=str(path))
    return path


# ---- one notebook, start to end ------------------------------------------------------------

@dataclass
class Report:
    """What one notebook did in the browser."""

    problems: list[str]
    changed: list[str]
    screenshot: Path | None
    seconds: float


def check_notebook(browser, lab: Lab, notebook: Path, screenshots: Path, timeout: float = 300.0,
                   widget_timeout: float = 60.0) -> Report:
    """Open a copy of `notebook` (outputs removed) in `lab`, Run All, inspect, try every widget.

    The screenshot is taken and the tab and kernels are closed even when something fails.
    """
    start = time.monotonic()
    name = copy_without_outputs(notebook, lab.root).name
    tab, shot, found, changed = None, None, [], []
    try:
        tab = open_notebook(browser, lab, name)
        run_all(tab, timeout)
        cells = collect(tab)
        found = problems(cells, expected_from(notebook))
        changed, widget_problems = try_widgets(tab, cells, widget_timeout)
        found += widget_problems + tab.console
    finally:
        if tab is not None:
            with contextlib.suppress(Exception):
                shot = screenshot(tab, screenshots, name)
            tab.page.context.close()
        lab.shutdown_kernels()
    return Report(found, changed, shot, time.monotonic() - start)


# ---- an exercise, typed ---------------------------------------------------------------------

def cell_index(tab: Page, starts_with: str) -> int:
    """The index of the first cell whose source starts with `starts_with`."""
    index = tab.js("""text => window.jupyterapp.shell.currentWidget.content.widgets
                        .findIndex(c => c.model.sharedModel.getSource().startsWith(text))""", starts_with)
    if index < 0:
        raise ValueError(f"no cell starts with {starts_with!r}")
    return index


def run_above(tab: Page, index: int, timeout: float = 300.0) -> None:
    """Run every cell above cell `index` (Run > Run All Above Selected Cell)."""
    tab.js("""i => { const w = window.jupyterapp.shell.currentWidget; w.content.activeCellIndex = i;
                     window.jupyterapp.commands.execute('notebook:run-all-above'); }""", index)
    wait_idle(tab, timeout)


def type_and_run_with_check(tab: Page, index: int, source: str, timeout: float = 120.0) -> Panel:
    """Replace cell `index`'s code by typing `source`, Shift+Enter it and the check below; its panel."""
    cell = tab.page.locator(".jp-Notebook .jp-Cell").nth(index)
    cell.locator(".cm-content").click()
    tab.page.keyboard.press("Control+a")
    tab.page.keyboard.insert_text(source)
    typed = tab.js("i => window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel.getSource()",
                   index)
    if typed.strip() != source.strip():
        raise AssertionError(f"cell {index} holds {typed!r} after typing, not {source!r}")
    tab.page.keyboard.press("Shift+Enter")
    tab.page.keyboard.press("Shift+Enter")
    wait_idle(tab, timeout)
    check = collect(tab)[index + 1]
    shown = panels(check)
    if len(shown) != 1:
        raise AssertionError(f"cell {index + 1} should show one check panel, shows {check['rendered']}")
    return shown[0]
