"""Every solution notebook has a paired plain-text source, and the two are in step.

`notebooks/solutions/NN_x.py` (jupytext's percent format) is the notebook as text: a change
to a notebook reviews as a diff of that file. Here jupytext reads each .py back and its
cells (types, sources, nbgrader metadata and tags) must be the notebook's; a failure names
the first cell that differs and the command that fixes it. The learner notebooks and the
released ones do not carry the pairing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jupytext
import nbformat
import pytest

from test_learner_notebooks import load_tool

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "notebooks" / "solutions"
NOTEBOOKS = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))
FORMATS = "ipynb,py:percent"
COMPARED_METADATA = ("nbgrader", "tags")

make_learner = load_tool("make_learner")


def cells_of(nb: nbformat.NotebookNode) -> list[dict]:
    """What the text source must hold of each cell."""
    return [{"cell_type": c.cell_type, "source": c.source,
             **{key: c.get("metadata", {}).get(key) for key in COMPARED_METADATA}} for c in nb.cells]


def step_problems(notebook: Path, root: Path = REPO) -> list[str]:
    """How `notebook` and its paired .py differ, each with the command that fixes it."""
    text = notebook.with_suffix(".py")
    name = notebook.relative_to(root)
    fix = (f"after editing the .py run `jupytext --sync {name}` (or `make sync`: the newer file wins); "
           f"to write the .py afresh from the .ipynb run `make pair`")
    nb = nbformat.read(notebook, as_version=4)
    if nb.metadata.get("jupytext", {}).get("formats") != FORMATS:
        return [f"{name} is not paired with {text.name} (metadata.jupytext.formats should be {FORMATS!r}). Fix: "
                "`make pair`"]
    if not text.exists():
        return [f"{text.relative_to(root)} is missing. Fix: `make pair`"]
    want, got = cells_of(nb), cells_of(jupytext.read(text))
    if len(want) != len(got):
        return [f"{name} has {len(want)} cells, {text.name} {len(got)}. Fix: {fix}"]
    for index, (a, b) in enumerate(zip(want, got)):
        for key in a:
            if a[key] != b[key]:
                return [f"{name}, cell {index}: its {key} differs from {text.name}'s. Fix: {fix}"]
    return []


def test_there_are_solution_notebooks():
    assert len(NOTEBOOKS) >= 10, NOTEBOOKS


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_solution_notebook_is_in_step_with_its_text_source(notebook):
    problems = step_problems(notebook)
    assert not problems, problems[0]


def _pair(tmp_path: Path, notebook: Path) -> Path:
    """A paired copy of `notebook` in tmp_path, written as `make pair` does (ipynb -> py)."""
    target = tmp_path / notebook.name
    nbformat.write(nbformat.read(notebook, as_version=4), target)
    jupytext.write(jupytext.read(target), target.with_suffix(".py"), fmt="py:percent")
    return target


def test_a_change_to_either_file_alone_is_caught(tmp_path):
    target = _pair(tmp_path, NOTEBOOKS[0])
    assert step_problems(target, tmp_path) == []
    nb = nbformat.read(target, as_version=4)
    code = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells[code].source += "\nx = 1"
    nbformat.write(nb, target)
    problems = step_problems(target, tmp_path)
    assert problems and f"cell {code}: its source differs" in problems[0] and "make sync" in problems[0], problems
    target = _pair(tmp_path, NOTEBOOKS[0])  # in step again; now the .py alone changes a cell's type
    text = target.with_suffix(".py").read_text(encoding="utf-8")
    target.with_suffix(".py").write_text(text.replace("# %%\n", "# %% [markdown]\n", 1), encoding="utf-8")
    problems = step_problems(target, tmp_path)
    assert problems and "its cell_type differs" in problems[0], problems
    target.with_suffix(".py").unlink()
    assert "is missing. Fix: `make pair`" in step_problems(target, tmp_path)[0]


def test_an_unpaired_notebook_is_named_with_the_fix(tmp_path):
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.metadata.pop("jupytext", None)
    nbformat.write(nb, tmp_path / NOTEBOOKS[0].name)
    assert "is not paired" in step_problems(tmp_path / NOTEBOOKS[0].name, tmp_path)[0]


def test_learner_and_released_notebooks_do_not_carry_the_pairing():
    from vit_course.grading.release import student_notebook

    solution = nbformat.read(NOTEBOOKS[0], as_version=4)
    assert "jupytext" in solution.metadata
    assert "jupytext" not in make_learner.make_learner(copy.deepcopy(solution), NOTEBOOKS[0]).metadata
    assert "jupytext" not in student_notebook(solution).metadata
    assert "jupytext" in solution.metadata, "student_notebook changed the solution it was given"
    for learner in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert "jupytext" not in nbformat.read(learner, as_version=4).metadata, learner.name
