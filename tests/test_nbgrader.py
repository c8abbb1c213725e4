"""Stock nbgrader on the course: generate_assignment and autograde, with the shipped config.

Submissions are copies of what `vit-course release` writes, so this also shows that the
release stays an nbgrader assignment. A correct submission gets full marks, a stub none,
and no graded cell draws nbgrader's "cannot be converted to a float" warning.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from vit_course.paths import REPO_DIR

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(shutil.which("nbgrader", path=str(BIN)) is None,
                                reason="nbgrader is not installed: pip install -e '.[instructor]'")


def _run(*args: str, cwd: Path) -> str:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", HF_HUB_OFFLINE="1")
    done = subprocess.run([str(BIN / "nbgrader"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_stock_nbgrader_grades_the_released_notebook(tmp_path):
    from vit_course.grading.release import release

    course = tmp_path / "course"
    (course / "source" / "01").mkdir(parents=True)
    shutil.copy(REPO_DIR / "notebooks" / "solutions" / "01_patching.ipynb", course / "source" / "01")
    shutil.copy(REPO_DIR / "nbgrader_config.py", course)
    _run("generate_assignment", "01", "--force", cwd=course)
    assert (course / "release" / "01" / "01_patching.ipynb").exists()

    release(["01"], tmp_path / "ours", tmp_path / "instructor")
    ours = nbformat.read(tmp_path / "ours" / "01" / "01_patching.ipynb", as_version=4)
    solution = {c.id: c for c in nbformat.read(course / "source" / "01" / "01_patching.ipynb", as_version=4).cells}
    for student, solved in (("alice", True), ("bob", False)):
        nb = nbformat.from_dict(ours)
        if solved:
            for cell in nb.cells:
                if cell.metadata.get("nbgrader", {}).get("solution"):
                    cell.source = "".join(line for line in solution[cell.id].source.splitlines(True)
                                          if "SOLUTION" not in line)
        path = course / "submitted" / student / "01" / "01_patching.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    log = _run("autograde", "01", "--force", cwd=course)
    assert "cannot be converted to" not in log, "a graded cell's last line shows a value nbgrader cannot read"
    _run("export", "--to", str(tmp_path / "grades.csv"), cwd=course)
    with open(tmp_path / "grades.csv") as f:
        scores = {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(f)}
    assert scores == {"alice": (4.0, 4.0), "bob": (0.0, 4.0)}
