"""The learner notebooks are what tools/make_learner.py makes from the solutions.

On a small synthetic nbgrader notebook: solution regions become `raise
NotImplementedError` stubs at the marker's indentation, hidden tests disappear, ids and
metadata stay, outputs of unchanged cells survive a rewrite, malformed notebooks are
errors that name the cell. Then every committed solution notebook's learner version
must equal what the generator makes (outputs and execution counts aside), and
tools/execute_notebooks.py runs a notebook the way nbval does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"


def load_tool(name: str):
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_learner = load_tool("make_learner")

SOLUTION_CELL = '''def square(x):
    """Return x squared."""
    ### BEGIN SOLUTION
    y = x * x
    return y
    ### END SOLUTION
'''
LEARNER_CELL = '''def square(x):
    """Return x squared."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: square")
'''


def nbgrader(grade_id: str, grade: bool, solution: bool, points=None, locked=None) -> dict:
    meta = {"grade": grade, "solution": solution, "locked": (not solution) if locked is None else locked,
            "grade_id": grade_id, "schema_version": 3}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def solution_notebook() -> nbformat.NotebookNode:
    v4 = nbformat.v4
    cells = [
        v4.new_markdown_cell("# Squares\n\nWhat you will learn."),
        v4.new_code_cell("import math"),
        v4.new_code_cell(SOLUTION_CELL, metadata=nbgrader("square", False, True)),
        v4.new_code_cell(
            "assert square(3) == 9\n### BEGIN HIDDEN TESTS\nassert square(-2) == 4\n### END HIDDEN TESTS\nprint('ok')",
            metadata=nbgrader("test_square", True, False, points=1),
        ),
        v4.new_markdown_cell("Squares grow fast because ...", metadata=nbgrader("explain", True, True, points=2)),
        v4.new_code_cell(
            "cubes = []\nfor i in range(3):\n    ### BEGIN SOLUTION cube each number\n    cubes.append(i ** 3)\n"
            "    ### END SOLUTION\ntotal = sum(cubes)  # NBVAL_IGNORE_OUTPUT\n### BEGIN SOLUTION\ntotal += 0\n### END SOLUTION",
            metadata={**nbgrader("cubes", False, True), "tags": ["keep-me"]},
        ),
    ]
    nb = v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i}"
    return nb


def write(nb, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def layout(tmp_path):
    """(solution path, learner path) in a notebooks/solutions layout under tmp_path."""
    solution = write(solution_notebook(), tmp_path / "notebooks" / "solutions" / "01_squares.ipynb")
    return solution, tmp_path / "notebooks" / "01_squares.ipynb"


def test_solution_regions_become_stubs_keeping_the_signature():
    learner = make_learner.make_learner(solution_notebook())
    assert learner.cells[2].source == LEARNER_CELL
    assert learner.cells[5].source == (
        "cubes = []\nfor i in range(3):\n    # YOUR CODE HERE\n    raise NotImplementedError(\"Exercise: cube each number\")\n"
        "total = sum(cubes)  # NBVAL_IGNORE_OUTPUT\n# YOUR CODE HERE\nraise NotImplementedError(\"Exercise: cubes\")"
    )


def test_hidden_tests_are_removed_and_markdown_answers_cleared():
    learner = make_learner.make_learner(solution_notebook())
    assert learner.cells[3].source == "assert square(3) == 9\nprint('ok')"
    assert learner.cells[4].source == "YOUR ANSWER HERE"
    assert "SOLUTION" not in "".join(c.source for c in learner.cells)
    assert "HIDDEN" not in "".join(c.source for c in learner.cells)


def test_ids_types_metadata_and_untouched_cells_are_kept():
    solution = solution_notebook()
    learner = make_learner.make_learner(solution)
    assert [c.id for c in learner.cells] == [c.id for c in solution.cells]
    assert [c.cell_type for c in learner.cells] == [c.cell_type for c in solution.cells]
    assert [c.metadata for c in learner.cells] == [c.metadata for c in solution.cells]
    assert learner.cells[0].source == solution.cells[0].source and learner.cells[1].source == "import math"
    assert learner.metadata == solution.metadata
    nbformat.validate(learner)


def test_write_then_check_round_trips_and_ignores_outputs(layout):
    solution, learner = layout
    assert make_learner.write_learner(solution) is True
    assert make_learner.check_learner(solution) == []
    nb = nbformat.read(learner, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nb.cells[1].execution_count = 7
    nbformat.write(nb, learner)
    assert make_learner.check_learner(solution) == []
    # a rewrite keeps outputs of unchanged cells and so changes nothing
    assert make_learner.write_learner(solution) is False
    assert nbformat.read(learner, as_version=4).cells[1].execution_count == 7


def test_check_names_the_cell_that_differs(layout):
    solution, learner = layout
    make_learner.write_learner(solution)
    nb = nbformat.read(learner, as_version=4)
    nb.cells[2].source = SOLUTION_CELL  # the solution leaked into the learner version
    nb.cells[3].metadata["nbgrader"]["points"] = 5
    nbformat.write(nb, learner)
    problems = make_learner.check_learner(solution)
    assert any("cell 2 (id 'cell-2'): source differs" in p for p in problems), problems
    assert any("cell 3 (id 'cell-3'): nbgrader differs" in p for p in problems), problems
    assert make_learner.main(["--check", str(solution)]) == 1
    assert make_learner.main([str(solution)]) == 0
    assert make_learner.main(["--check", str(solution)]) == 0


def test_a_changed_cell_loses_its_stale_outputs(layout):
    solution, learner = layout
    make_learner.write_learner(solution)
    nb = nbformat.read(learner, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    nbformat.write(nb, learner)
    sol = nbformat.read(solution, as_version=4)
    sol.cells[1].source = "import math, os"
    nbformat.write(sol, solution)
    assert make_learner.write_learner(solution) is True
    assert nbformat.read(learner, as_version=4).cells[1].outputs == []


def test_missing_learner_notebook_is_reported(layout):
    solution, _ = layout
    assert "missing" in make_learner.check_learner(solution)[0]


def broken(mutate):
    nb = solution_notebook()
    mutate(nb)
    return nb


MALFORMED = {
    "duplicate grade_id": (lambda nb: nb.cells[3].metadata["nbgrader"].update(grade_id="square"), "cell 3", "also used by cell 2"),
    "BEGIN without END": (lambda nb: setattr(nb.cells[2], "source", SOLUTION_CELL.replace("    ### END SOLUTION\n", "")), "cell 2", "never closed"),
    "END without BEGIN": (lambda nb: setattr(nb.cells[2], "source", SOLUTION_CELL.replace("    ### BEGIN SOLUTION\n", "")), "cell 2", "without a 'BEGIN SOLUTION'"),
    "nested BEGIN": (lambda nb: setattr(nb.cells[2], "source", SOLUTION_CELL.replace("    y = x * x\n", "    ### BEGIN SOLUTION\n")), "cell 2", "inside another"),
    "graded cell without points": (lambda nb: nb.cells[3].metadata["nbgrader"].pop("points"), "cell 3", "points"),
    "solution code cell without markers": (lambda nb: setattr(nb.cells[2], "source", "def square(x):\n    return x * x"), "cell 2", "needs"),
    "markers outside a solution cell": (lambda nb: setattr(nb.cells[1], "source", "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"), "cell 1", "without nbgrader metadata"),
    "unlocked graded test": (lambda nb: nb.cells[3].metadata["nbgrader"].update(locked=False), "cell 3", "locked"),
    "missing id": (lambda nb: nb.cells[1].pop("id"), "cell 1", "no id"),
    "wrong schema": (lambda nb: nb.cells[2].metadata["nbgrader"].update(schema_version=1), "cell 2", "schema_version"),
    "stub that is not valid Python": (
        lambda nb: setattr(nb.cells[5], "source", "for i in range(3):\n### BEGIN SOLUTION\n    print(i)\n### END SOLUTION"),
        "cell 5",
        "not valid Python",
    ),
    "unbalanced hidden tests": (lambda nb: setattr(nb.cells[3], "source", "### BEGIN HIDDEN TESTS\nassert True"), "cell 3", "never closed"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_solution_notebook_names_the_cell(case):
    mutate, where, words = MALFORMED[case]
    with pytest.raises(make_learner.NotebookError) as info:
        make_learner.validate_solution(broken(mutate), "solutions/01_x.ipynb")
    message = str(info.value)
    assert f"solutions/01_x.ipynb, {where} " in message and words in message, message


def test_malformed_notebook_fails_the_cli_with_a_message(layout, capsys):
    solution, _ = layout
    nb = nbformat.read(solution, as_version=4)
    nb.cells[3].metadata["nbgrader"]["grade_id"] = "square"
    nbformat.write(nb, solution)
    assert make_learner.main([str(solution)]) == 1
    assert "grade_id 'square' is also used by cell 2" in capsys.readouterr().err


def test_magics_do_not_break_the_python_check():
    nb = solution_notebook()
    nb.cells[1].source = "%matplotlib inline\n!echo hi\nimport math"
    make_learner.validate_solution(nb)


# the committed notebooks -----------------------------------------------------------------

SOLUTIONS = make_learner.solution_notebooks(REPO / "notebooks" / "solutions")


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_committed_learner_notebook_matches_the_generator(solution):
    problems = make_learner.check_learner(solution)
    assert not problems, "\n".join(problems) + "\nrun python tools/make_learner.py"


@pytest.mark.parametrize("solution", SOLUTIONS, ids=[p.name for p in SOLUTIONS])
def test_solution_grade_ids_are_unique_across_the_course(solution):
    make_learner.validate_solution(nbformat.read(solution, as_version=4), solution)


# executing -------------------------------------------------------------------------------


def test_execute_notebook_runs_like_nbval(tmp_path, monkeypatch):
    execute = load_tool("execute_notebooks")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("import os\nprint(os.environ['HF_HUB_OFFLINE'], os.path.basename(os.getcwd()))"),
        v4.new_code_cell("# NBVAL_SKIP\nprint('skipped')", outputs=[v4.new_output("stream", name="stdout", text="old\n")]),
        v4.new_code_cell("# NBVAL_RAISES_EXCEPTION\nraise ValueError('expected')"),
        v4.new_code_cell("1 + 1", metadata={"tags": ["keep"]}),
    ])
    path = write(nb, tmp_path / "run_here" / "nb.ipynb")
    _, slow = execute.execute_notebook(path, timeout=60)
    assert slow == []
    out = nbformat.read(path, as_version=4)
    assert out.cells[0].outputs[0]["text"] == "1 run_here\n"
    assert out.cells[1].outputs[0]["text"] == "old\n"  # not run, outputs kept
    assert out.cells[2].outputs[0]["ename"] == "ValueError"
    assert out.cells[3].outputs[0]["data"]["text/plain"] == "2"
    assert [c.metadata.get("tags") for c in out.cells] == [None, None, None, ["keep"]]
    assert all("execution" not in c.metadata for c in out.cells)


def test_execute_notebook_names_the_slow_cells_that_show_no_progress_bar(tmp_path):
    """A cell over the limit without a bar is named; one with tqdm's widget or text bar, or an
    HTML <progress> (the Trainer's), is not."""
    execute = load_tool("execute_notebooks")
    v4 = nbformat.v4
    nb = v4.new_notebook(cells=[
        v4.new_code_cell("import sys, time\nimport tqdm, tqdm.auto"),
        v4.new_code_cell("time.sleep(1.5)"),
        v4.new_code_cell("for _ in tqdm.auto.tqdm(range(3)):\n    time.sleep(0.5)"),
        v4.new_code_cell("for _ in tqdm.tqdm(range(3), file=sys.stderr):\n    time.sleep(0.5)"),
        v4.new_code_cell("from IPython.display import HTML, display\n"
                         "display(HTML('<progress value=1 max=3></progress>'))\ntime.sleep(1.5)"),
        v4.new_code_cell("1 + 1"),
    ])
    path = write(nb, tmp_path / "nb.ipynb")
    executed, slow = execute.execute_notebook(path, timeout=60, write=False, slow_s=1.0)
    assert [index for index, _ in slow] == [1], slow
    assert slow[0][1] >= 1.5
    assert all("execution" not in cell.metadata for cell in executed.cells), "timings must not be stored"
