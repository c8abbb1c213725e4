"""Every learner notebook (notebooks/NN_*.ipynb) in JupyterLab in headless Chromium.

The way a learner meets it: Run All on a copy without outputs, then: no error output,
every check cell shows its coloured panel with the status the notebook file stores,
every widget is a control (not its text repr), one change of each control redraws its
figure, no browser console error; as many controls redraw their figure as the file's
saved widget state holds. A screenshot of each notebook is saved in the folder the
failure names. Then one exercise round trip: a wrong patchify gets the red panel and its
likely cause, the solution's patchify the green one. Run alone with `make test-browser`.
"""

from __future__ import annotations

import nbformat
import pytest

import browser_lab
from browser_lab import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_learner_notebooks_are_numbered_from_01_without_gaps():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert len(numbers) >= 8 and numbers == list(range(1, len(numbers) + 1)), [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_learner_notebook_runs_in_jupyterlab(notebook, lab, browser, screenshots):
    report = browser_lab.check_notebook(browser, lab, notebook, screenshots)
    print(f"{notebook.name}: {report.seconds:.0f} s in the browser; figures redrawn by: {report.changed}")
    controls = browser_lab.stored_controls(notebook)
    if controls is not None and len(report.changed) != controls:
        report.problems.append(f"the notebook file's widget state has {controls} controls, "
                               f"{len(report.changed)} redrew their figure: {report.changed}")
    assert not report.problems, (f"{notebook.name} in JupyterLab ({len(report.problems)} problems):\n  "
                                 + "\n  ".join(report.problems) + f"\nscreenshot in {screenshots}")


WRONG_PATCHIFY = '''def patchify(images, patch_size):
    """(B, C, H, W) -> (B, N, C*P*P): each patch flattened as (P, P, C), a common mistake"""
    return einops.rearrange(images, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=patch_size, p2=patch_size)
'''


def solution_source(grade_id: str) -> str:
    """The exercise cell of notebooks/solutions/01_patching.ipynb, without the nbgrader markers."""
    nb = nbformat.read(REPO / "notebooks" / "solutions" / "01_patching.ipynb", as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return "\n".join(line for line in cell.source.splitlines() if "### " not in line) + "\n"


def test_exercise_round_trip_wrong_then_right(lab, browser, screenshots):
    notebook = REPO / "notebooks" / "01_patching.ipynb"
    name = browser_lab.copy_without_outputs(notebook, lab.root).name
    tab = browser_lab.open_notebook(browser, lab, name)
    try:
        exercise = browser_lab.cell_index(tab, "def patchify(")
        browser_lab.run_above(tab, exercise)

        wrong = browser_lab.type_and_run_with_check(tab, exercise, WRONG_PATCHIFY)
        assert (wrong.status, wrong.border) == ("fail", browser_lab.BORDER["fail"]), wrong
        assert "(P, P, C) order" in wrong.cause, f"the red panel should name the flattening order: {wrong}"

        right = browser_lab.type_and_run_with_check(tab, exercise, solution_source("patchify"))
        assert (right.status, right.border) == ("pass", browser_lab.BORDER["pass"]), right
        assert not tab.console, tab.console
    finally:
        browser_lab.screenshot(tab, screenshots, "01_patching_round_trip")
        tab.page.context.close()
        lab.shutdown_kernels()
