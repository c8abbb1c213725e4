"""The notebooks' check cells: one shape for the grader, and no false "passed" on a re-run.

A check cell is `result = check_x(x)`, `display(result)`, then the hidden test (removed in
the learner copies). The cell after it keeps the learner's name for the learner's code:
`use_or_reference` binds what later cells use to another name, so running the check cell
again (the stub still in place, or a new answer typed but its cell not run) checks the
learner's code, not the reference; and a check given what `use_or_reference` returned
(the reference, or the reference wrapped after a failed check) refuses it.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch

from vit_course.checks.compare import REFUSED

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((REPO / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
LEARNERS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHECK_CELL = re.compile(
    r"result = (check_\w+)\((\w+)\)\ndisplay\(result\)\n### BEGIN HIDDEN TESTS\n"
    r"assert result\.passed, result\.message\n### END HIDDEN TESTS"
)
LEARNER_CHECK_CELL = re.compile(r"result = (check_\w+)\((\w+)\)\ndisplay\(result\)")  # hidden tests removed
USE_LINE = re.compile(r"^(\w+) = use_or_reference\(result, (\w+), .+\)$", re.M)
CLASS_EXERCISES = {"MultiHeadSelfAttention", "TransformerBlock", "MyViT"}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _graded(path: Path) -> list[tuple[int, dict]]:
    return [(i, c) for i, c in enumerate(_cells(path))
            if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("grade")]


def _pairs(path: Path):
    """(check cell source, the use line after it, the checked name) for each graded check."""
    cells = _cells(path)
    shape = CHECK_CELL if path.parent.name == "solutions" else LEARNER_CHECK_CELL
    out = []
    for i, cell in _graded(path):
        match = shape.fullmatch(_source(cell))
        assert match, f"{path.name}, cell {cell['id']}: not the graded check cell shape:\n{_source(cell)}"
        name = match.group(2)
        use = next((m for c in cells[i + 1:] if c["cell_type"] == "code" for m in USE_LINE.finditer(_source(c))), None)
        assert use and use.group(2) == name, f"{path.name}: no use_or_reference of {name} after cell {cell['id']}"
        out.append((_source(cell), use.group(0), name))
    return out


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_graded_check_cells_have_one_shape_and_end_without_a_value(path):
    assert _graded(path), f"{path.name} has no graded cells"
    for _, cell in _graded(path):
        assert CHECK_CELL.fullmatch(_source(cell)), f"{path.name}, cell {cell['id']}:\n{_source(cell)}"


@pytest.mark.parametrize("path", SOLUTIONS + LEARNERS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_cell_rebinds_the_learner_name_to_the_reference(path):
    for _, use_line, name in _pairs(path):
        bound = USE_LINE.match(use_line).group(1)
        assert bound != name, f"{path.name}: `{use_line}` rebinds {name}, so a re-run checks the reference"


def _imports(path: Path) -> str:
    """The import statements of the notebook's first code cell, nothing else it runs."""
    first = next(c for c in _cells(path) if c["cell_type"] == "code")
    tree = ast.parse(_source(first))
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom)))


def _stub(name: str, error: type[Exception] = NotImplementedError):
    if name in CLASS_EXERCISES:
        def __init__(self, *args, **kwargs):
            raise error("Exercise")

        return type(name, (torch.nn.Module,), {"__init__": __init__})

    def stub(*args, **kwargs):
        raise error("Exercise")

    stub.__name__ = name
    return stub


@pytest.mark.parametrize("path", SOLUTIONS + LEARNERS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_rerunning_a_check_cell_after_the_use_cell_is_not_green(path):
    namespace = {"display": lambda *args: None}
    exec(_imports(path), namespace)
    for check_cell, use_line, name in _pairs(path):
        check_cell = check_cell.split("### BEGIN HIDDEN TESTS")[0]  # as in the learner notebook
        namespace[name] = _stub(name)
        exec(check_cell, namespace)
        assert namespace["result"].not_done, str(namespace["result"])
        exec(use_line, namespace)  # prints which object the next cells use
        exec(check_cell, namespace)  # the learner runs the check cell again
        assert not namespace["result"].passed, f"{path.name}: re-running `{check_cell.splitlines()[0]}` passed"
        # and had the cell rebound the learner's name, the check would refuse what it got
        bound = USE_LINE.match(use_line).group(1)
        exec(f"{name} = {bound}", namespace)
        exec(check_cell, namespace)
        assert not namespace["result"].passed, f"{path.name}: checking what `{use_line}` returned passed"
        # the same after a wrong answer (a failed check, not a stub): the reference comes wrapped
        namespace[name] = _stub(name, ValueError)
        exec(check_cell, namespace)
        assert namespace["result"].status == "fail", str(namespace["result"])
        exec(use_line, namespace)
        exec(check_cell, namespace)
        assert not namespace["result"].passed
        exec(f"{name} = {bound}", namespace)
        exec(check_cell, namespace)
        assert namespace["result"].message == REFUSED, f"{path.name}: `{use_line}`: {namespace['result']}"
