"""Every notebook announces its graded exercises the same way and ends with open problems.

The course's style: each graded exercise is introduced by a heading
`### Exercise N (P points): ...`, numbered from 1 in the order of the notebook, whose P
is the `points` of the nbgrader check cell that grades it; and a `## Exercises` section
of open problems, "not graded". Notebooks 01-04 import their checks from
`vit_course.checks` itself, as its docstring shows.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ["01_patching", "02_position_embeddings", "03_attention", "04_cls_head_and_vit", "05_pretrained_inference", "06_fine_tuning",
             "07_attention_visualization", "08_vit_vs_cnn", "09_vit_family", "10_mae_and_clip"]
WITH_OPEN_PROBLEMS = NOTEBOOKS
HEADING = re.compile(r"^### Exercise (\S+) \((\d+) points?\): \S", re.MULTILINE)
ANY_HEADING = re.compile(r"^#+ Exercise\b.*$", re.MULTILINE)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_graded_exercises_have_numbered_headings_with_the_check_cells_points(name):
    nb = nbformat.read(ROOT / "notebooks" / "solutions" / f"{name}.ipynb", as_version=4)
    headings, checks = [], []  # (cell, number, points) and (cell, points)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for line in ANY_HEADING.findall(cell.source):
                match = HEADING.match(line)
                assert match, f"{name} cell {index}: {line!r} is not '### Exercise N (P points): ...'"
                headings.append((index, match[1], int(match[2])))
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and cell.cell_type == "code":
            checks.append((index, meta["points"]))
    assert [number for _, number, _ in headings] == [str(k) for k in range(1, len(headings) + 1)], headings
    assert len(headings) == len(checks), f"{name}: {len(headings)} exercise headings, {len(checks)} check cells"
    for (h_cell, number, points), (c_cell, graded) in zip(headings, checks):
        assert h_cell < c_cell, f"{name}: exercise {number}'s heading (cell {h_cell}) comes after its check (cell {c_cell})"
        assert points == graded, f"{name}: exercise {number} says {points} points, its check cell {c_cell} gives {graded}"


@pytest.mark.parametrize("name", WITH_OPEN_PROBLEMS)
def test_the_notebook_has_an_exercises_section_of_open_problems(name):
    nb = nbformat.read(ROOT / "notebooks" / "solutions" / f"{name}.ipynb", as_version=4)
    sections = [c.source for c in nb.cells if c.cell_type == "markdown" and re.search(r"^## Exercises\s*$", c.source, re.M)]
    assert len(sections) == 1, f"{name}: {len(sections)} '## Exercises' sections"
    after = sections[0].split("## Exercises", 1)[1]
    assert "Open problems, not graded." in after and re.search(r"^1\. ", after, re.M), after[:300]
    assert "**Try next:**" not in after, "the open problems are the numbered list, not a 'Try next' line"


CHECKS_FROM_THE_PACKAGE = ["01_patching", "02_position_embeddings", "03_attention", "04_cls_head_and_vit"]
PACKAGE_IMPORT = re.compile(r"^from vit_course\.checks import ([\w, ]+)$", re.MULTILINE)


@pytest.mark.parametrize("name", CHECKS_FROM_THE_PACKAGE)
def test_every_check_the_notebook_calls_is_imported_from_vit_course_checks(name):
    nb = nbformat.read(ROOT / "notebooks" / "solutions" / f"{name}.ipynb", as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    deep = re.findall(r"^from vit_course\.checks\.\w+ import .*$", code, re.MULTILINE)
    assert not deep, f"{name}: checks imported from a submodule: {deep}"
    imported = {n.strip() for names in PACKAGE_IMPORT.findall(code) for n in names.split(",")}
    called = set(re.findall(r"\b(check_\w+)\(", code))
    assert called and called <= imported, f"{name}: calls {sorted(called)}, imports {sorted(imported)} from vit_course.checks"
