"""The browser tests catch what they are there to catch: tests of the tests.

Small notebooks built here, run in the same JupyterLab and Chromium as the course's:
a sound one (a widget whose figure follows its slider, a check panel) must pass, and
each broken variant must be reported: a widget callback that raises, a check panel
replaced by plain text, an error output, a browser console error.
"""

from __future__ import annotations

import nbformat
import pytest

import browser_lab

IMPORTS = """import ipywidgets as widgets
from IPython.display import HTML, display

from vit_course import plots
from vit_course.checks.result import CheckResult"""
WIDGET = """def draw(fig, n):
    fig.subplots().plot(range(n))


plots.figure_widget(draw, figsize=(2, 2), n=widgets.IntSlider(value=2, min=2, max=5, description="n"))"""
RAISING_WIDGET = """def draw(fig, n):
    if n != 2:
        raise RuntimeError("the callback fails when the slider moves")
    fig.subplots().plot(range(n))


plots.figure_widget(draw, figsize=(2, 2), n=widgets.IntSlider(value=2, min=2, max=5, description="n"))"""
PANEL = 'display(CheckResult(True, "3 cases match", name="check_square"))'
PANEL_AS_TEXT = 'print(CheckResult(True, "3 cases match", name="check_square"))'
ERROR = 'raise ValueError("a cell that fails")'
CONSOLE_ERROR = """HTML("<script>console.error('an error in the browser console')</script>")"""


def build(folder, name: str, *sources: str, graded: int | None = None):
    """A notebook of code cells; cell `graded` carries nbgrader's check-cell metadata."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    if graded is not None:
        nb.cells[graded].metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                                 "grade_id": "check_square", "points": 1, "schema_version": 3}
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def run(tmp_path, lab, browser, screenshots, name, *sources, graded=None):
    return browser_lab.check_notebook(browser, lab, build(tmp_path, name, *sources, graded=graded), screenshots,
                                      timeout=120, widget_timeout=15)


def test_a_sound_notebook_passes_and_its_slider_redraws_the_figure(tmp_path, lab, browser, screenshots):
    report = run(tmp_path, lab, browser, screenshots, "sound", IMPORTS, WIDGET, PANEL, graded=2)
    assert report.problems == []
    assert report.changed == ["cell 1, widget 0: n (2 -> 5)"]


BROKEN = {  # name: (cells, the graded cell, how the report begins)
    "raising_widget": ((IMPORTS, RAISING_WIDGET, PANEL), 2, "cell 1, widget 0: changing 'n' (2 -> 5) did not change"),
    "panel_as_text": ((IMPORTS, WIDGET, PANEL_AS_TEXT), 2, "cell 2: no check panel rendered, the page shows: ✓ check_square"),
    "error_output": ((IMPORTS, WIDGET, PANEL, ERROR), 2, "cell 3: error output ValueError: a cell that fails"),
    "console_error": ((IMPORTS, WIDGET, PANEL, CONSOLE_ERROR), 2, "console error: an error in the browser console"),
}


@pytest.mark.parametrize("name, sources, graded, expected", [(name, *case) for name, case in BROKEN.items()],
                         ids=list(BROKEN))
def test_a_broken_notebook_is_reported(tmp_path, lab, browser, screenshots, name, sources, graded, expected):
    report = run(tmp_path, lab, browser, screenshots, name, *sources, graded=graded)
    assert any(problem.startswith(expected) for problem in report.problems), (
        f"expected a problem starting with {expected!r}, got {report.problems}")


def test_without_chromium_the_reason_says_how_to_enable_the_tests(monkeypatch):
    monkeypatch.setattr(browser_lab.shutil, "which", lambda name: None)
    reason = browser_lab.missing_tools()
    assert reason and "no chromium on PATH" in reason and "apt-get install chromium" in reason, reason
    assert "make test-browser" in reason, reason
