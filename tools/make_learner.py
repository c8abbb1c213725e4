"""Make the learner notebooks from the solution notebooks, or check that they match.

    python tools/make_learner.py            # notebooks/solutions/NN_*.ipynb -> notebooks/NN_*.ipynb
    python tools/make_learner.py --check    # exit 1, naming each difference, if they are out of date
    python tools/make_learner.py PATH ...   # only these solution notebooks

Solution notebooks use nbgrader's format (`metadata.nbgrader`, schema_version 3), so
`nbgrader generate_assignment` works on them as well:

- a solution cell (`"solution": true`) keeps its code outside `### BEGIN SOLUTION` /
  `### END SOLUTION`; each region becomes, at the marker's indentation,
      # YOUR CODE HERE
      raise NotImplementedError("Exercise: <text after BEGIN SOLUTION, else the grade_id>")
  A Markdown solution cell without markers becomes "YOUR ANSWER HERE", as in nbgrader.
- `### BEGIN HIDDEN TESTS` / `### END HIDDEN TESTS` regions are removed, markers included.
- everything else is copied: cell ids, types, metadata (nbgrader, tags), notebook metadata,
  but for `metadata.jupytext`: the solutions are paired with text sources
  (notebooks/solutions/NN_x.py, `make sync`), the learner copies are not.

Learner notebooks are executed and committed with their own outputs (see
tools/execute_notebooks.py): writing keeps the outputs of every cell whose id and source
are unchanged and leaves the others empty. `--check` compares cell ids, types, sources,
`nbgrader` metadata and tags, never outputs or execution counts. Files are written
atomically. A malformed solution notebook (duplicate grade_id, unbalanced markers, a
graded cell without points, a learner cell that is not valid Python) is an error naming
the notebook and the cell.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path

import nbformat

from vit_course.paths import atomic_write_text, notebook_text

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS_DIR = REPO / "notebooks" / "solutions"
LEARNER_DIR = REPO / "notebooks"
NOTEBOOK_PATTERN = "[0-9][0-9]_*.ipynb"

BEGIN_SOLUTION, END_SOLUTION = "BEGIN SOLUTION", "END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"
CODE_STUB = ["# YOUR CODE HERE", 'raise NotImplementedError("Exercise: {text}")']
TEXT_STUB = "YOUR ANSWER HERE"
COMPARED_METADATA = ("nbgrader", "tags")


class NotebookError(ValueError):
    """A solution notebook that cannot be turned into a learner notebook."""


def cell_label(path: Path | str, index: int, cell) -> str:
    """`notebooks/solutions/01_x.ipynb, cell 4 (id 'ab12', grade_id 'patchify')`."""
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    extra = f", grade_id {grade_id!r}" if grade_id else ""
    return f"{path}, cell {index} (id {cell.get('id')!r}{extra})"


def _marker(line: str, word: str) -> bool:
    # nbgrader's rule: the delimiter anywhere in the line, whatever the comment mark
    return word in line


def _strip_regions(lines: list[str], begin: str, end: str, label: str, stub=None) -> tuple[list[str], int]:
    """Remove begin/end regions from `lines` (with line ends); `stub(indent, text)` replaces each."""
    out, depth, regions = [], False, 0
    for number, line in enumerate(lines, 1):
        if _marker(line, begin):
            if depth:
                raise NotebookError(f"{label}: line {number}: '{begin}' inside another '{begin}' region")
            depth, regions = True, regions + 1
            if stub is not None:
                indent = re.match(r"[ \t]*", line).group(0)
                text = line.split(begin, 1)[1].strip(" \t\r\n:-#")
                out.extend(stub(indent, text))
        elif _marker(line, end):
            if not depth:
                raise NotebookError(f"{label}: line {number}: '{end}' without a '{begin}' before it")
            depth = False
        elif not depth:
            out.append(line)
    if depth:
        raise NotebookError(f"{label}: '{begin}' is never closed by '{end}'")
    return out, regions


def _without_magics(source: str) -> str:
    """IPython lines (`%time`, `!pip`, `x?`) blanked, so the rest can be parsed as Python."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        lines.append("" if stripped.startswith(("%", "!")) or stripped.endswith("?") else line)
    return "\n".join(lines)


def validate_solution(nb, path: Path | str = "<notebook>") -> None:
    """Raise `NotebookError` naming the first malformed cell of a solution notebook."""
    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        label = cell_label(path, index, cell)
        if not cell.get("id"):
            raise NotebookError(f"{label}: the cell has no id; save the notebook with nbformat >= 4.5 (JupyterLab 3+)")
        source = cell.source
        meta = cell.get("metadata", {}).get("nbgrader")
        has_solution = BEGIN_SOLUTION in source or END_SOLUTION in source
        if meta is None:
            if has_solution:
                raise NotebookError(f"{label}: solution markers in a cell without nbgrader metadata (solution: true)")
            _strip_regions(source.splitlines(True), BEGIN_HIDDEN, END_HIDDEN, label)
            continue
        for key in ("grade", "solution", "grade_id"):
            if key not in meta:
                raise NotebookError(f"{label}: nbgrader metadata lacks {key!r}")
        if meta.get("schema_version") != 3:
            raise NotebookError(f"{label}: nbgrader schema_version should be 3, got {meta.get('schema_version')!r}")
        grade_id = meta["grade_id"]
        if grade_id in seen:
            raise NotebookError(f"{label}: grade_id {grade_id!r} is also used by cell {seen[grade_id]}")
        seen[grade_id] = index
        if meta["grade"]:
            points = meta.get("points")
            if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
                raise NotebookError(f"{label}: a graded cell needs 'points' (a number >= 0), got {points!r}")
        if meta["grade"] and not meta["solution"] and not meta.get("locked"):
            raise NotebookError(f"{label}: a graded test cell should be locked ('locked': true)")
        if meta["solution"]:
            if meta.get("locked"):
                raise NotebookError(f"{label}: a solution cell cannot be locked")
            _, regions = _strip_regions(source.splitlines(True), BEGIN_SOLUTION, END_SOLUTION, label)
            if cell.cell_type == "code" and regions == 0:
                raise NotebookError(f"{label}: a solution code cell needs '### {BEGIN_SOLUTION}' / '### {END_SOLUTION}'")
        elif has_solution:
            raise NotebookError(f"{label}: solution markers in a cell that is not a solution cell")
        _strip_regions(source.splitlines(True), BEGIN_HIDDEN, END_HIDDEN, label)
    learner = make_learner(nb, path, validate=False)
    for index, cell in enumerate(learner.cells):
        if cell.cell_type != "code":
            continue
        try:
            ast.parse(_without_magics(cell.source))
        except SyntaxError as e:
            label = cell_label(path, index, cell)
            raise NotebookError(f"{label}: the learner version is not valid Python: {e.msg} (line {e.lineno})") from None


def learner_source(cell, label: str) -> str:
    """The learner version of one cell's source."""
    source = cell.source
    meta = cell.get("metadata", {}).get("nbgrader") or {}
    lines = source.splitlines(True)
    if meta.get("solution"):
        if cell.cell_type == "code":
            grade_id = meta.get("grade_id", "")

            def stub(indent, text):
                return [indent + line.format(text=text or grade_id) + "\n" for line in CODE_STUB]

            lines, _ = _strip_regions(lines, BEGIN_SOLUTION, END_SOLUTION, label, stub)
        else:
            def text_stub(indent, text):
                return [indent + TEXT_STUB + "\n"]

            lines, regions = _strip_regions(lines, BEGIN_SOLUTION, END_SOLUTION, label, text_stub)
            if regions == 0:
                lines = [TEXT_STUB]
    lines, _ = _strip_regions(lines, BEGIN_HIDDEN, END_HIDDEN, label)
    out = "".join(lines)
    if not source.endswith("\n"):
        out = out.rstrip("\n")
    return out


def make_learner(solution, path: Path | str = "<notebook>", validate: bool = True):
    """The learner notebook for a solution notebook: sources and metadata, no outputs."""
    if validate:
        validate_solution(solution, path)
    nb = nbformat.v4.new_notebook()
    nb.nbformat, nb.nbformat_minor = solution.nbformat, max(solution.nbformat_minor, 5)
    nb.metadata = copy.deepcopy(solution.metadata)
    nb.metadata.pop("jupytext", None)  # the pairing with notebooks/solutions/NN_x.py stays with the solution
    for index, cell in enumerate(solution.cells):
        new = copy.deepcopy(cell)
        new.source = learner_source(cell, cell_label(path, index, cell))
        if new.cell_type == "code":
            new.outputs, new.execution_count = [], None
        new.get("metadata", {}).pop("execution", None)
        nb.cells.append(new)
    return nb


def learner_path(solution_path: Path | str, learner_dir: Path | str | None = None) -> Path:
    """notebooks/solutions/01_x.ipynb -> notebooks/01_x.ipynb (or `learner_dir`/01_x.ipynb)."""
    solution_path = Path(solution_path)
    folder = Path(learner_dir) if learner_dir is not None else solution_path.parent.parent
    return folder / solution_path.name


def _compared(cell) -> dict:
    meta = cell.get("metadata", {})
    return {
        "id": cell.get("id"),
        "cell_type": cell.cell_type,
        "source": cell.source,
        **{key: meta.get(key) for key in COMPARED_METADATA},
    }


def differences(expected, actual, path: Path | str = "<notebook>") -> list[str]:
    """How `actual` differs from `expected` in ids, types, sources and compared metadata."""
    problems = []
    if len(expected.cells) != len(actual.cells):
        problems.append(f"{path}: {len(actual.cells)} cells, expected {len(expected.cells)}")
    for index, (want, got) in enumerate(zip(expected.cells, actual.cells)):
        a, b = _compared(want), _compared(got)
        for key in a:
            if a[key] != b[key]:
                problems.append(f"{path}, cell {index} (id {a['id']!r}): {key} differs from what the generator makes")
    return problems


def write_learner(solution_path: Path | str, target: Path | str | None = None) -> bool:
    """Write the learner notebook, keeping outputs of unchanged cells; True when it changed."""
    solution_path = Path(solution_path)
    target = Path(target) if target is not None else learner_path(solution_path)
    nb = make_learner(nbformat.read(solution_path, as_version=4), solution_path)
    old = nbformat.read(target, as_version=4) if target.exists() else None
    if old is not None:
        previous = {c.get("id"): c for c in old.cells}
        for cell in nb.cells:
            before = previous.get(cell.get("id"))
            if cell.cell_type == "code" and before is not None and _compared(before) == _compared(cell):
                cell.outputs, cell.execution_count = before.get("outputs", []), before.get("execution_count")
    nbformat.validate(nb)
    text = notebook_text(nb)
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    atomic_write_text(target, text)
    return True


def check_learner(solution_path: Path | str, target: Path | str | None = None) -> list[str]:
    """Differences between the committed learner notebook and what the generator makes."""
    solution_path = Path(solution_path)
    target = Path(target) if target is not None else learner_path(solution_path)
    expected = make_learner(nbformat.read(solution_path, as_version=4), solution_path)
    if not target.exists():
        return [f"{target}: missing; run python tools/make_learner.py"]
    return differences(expected, nbformat.read(target, as_version=4), target)


def solution_notebooks(folder: Path | str = SOLUTIONS_DIR) -> list[Path]:
    return sorted(Path(folder).glob(NOTEBOOK_PATTERN))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="solution notebooks (default: notebooks/solutions/NN_*.ipynb)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a learner notebook is out of date")
    parser.add_argument("--out", type=Path, default=None, help="folder for learner notebooks (default: the solutions' parent)")
    args = parser.parse_args(argv)
    paths = args.paths or solution_notebooks()
    if not paths:
        print(f"no solution notebooks in {SOLUTIONS_DIR}")
        return 0
    problems: list[str] = []
    for path in paths:
        target = learner_path(path, args.out)
        try:
            if args.check:
                found = check_learner(path, target)
                problems += found
                print(f"{'ok  ' if not found else 'DIFF'} {target}")
            else:
                changed = write_learner(path, target)
                print(f"{'wrote' if changed else 'same '} {target}")
        except NotebookError as e:
            problems.append(str(e))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems and args.check:
        print("learner notebooks are out of date: run python tools/make_learner.py", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
