"""How fast `vit-course grade` goes through a class: prints a table, times nothing in the tests.

    python scripts/bench_grading.py                     # both workloads below, 2 workers
    python scripts/bench_grading.py --students 10 --only course

Workloads, each a class of correct submissions (every check and held-out case runs in
full, the slowest case for the grader), graded in the bubblewrap sandbox:
- `nb01`: N students (default 100) submitting notebook 01, target at most 5 minutes;
- `course`: M students (default 30) submitting all released notebooks, target 20 minutes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from vit_course.grading.gradebook import grade
from vit_course.grading.release import SOLUTIONS_DIR, release
from vit_course.grading.runner import Options


def solved(released: Path) -> nbformat.NotebookNode:
    """The released notebook with the solution cells filled in from the solution notebook."""
    nb = nbformat.read(released, as_version=4)
    solution = {c.id: c for c in nbformat.read(SOLUTIONS_DIR / released.name, as_version=4).cells}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "".join(line for line in solution[cell.id].source.splitlines(True) if "SOLUTION" not in line)
    return nb


def make_class(root: Path, students: int, notebooks: list[str]) -> Path:
    release(notebooks, root / "release", root / "instructor", force=True)
    submitted = root / "submitted"
    for path in sorted((root / "release").glob("*/*.ipynb")):
        nb = solved(path)
        for i in range(students):
            target = submitted / f"student{i:03d}" / path.parent.name / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
    return submitted


def run(name: str, students: int, notebooks: list[str], workers: int, target_s: float) -> list:
    root = Path(tempfile.mkdtemp(prefix=f"bench-grading-{name}-"))
    try:
        submitted = make_class(root, students, notebooks)
        count = len(list(submitted.glob("*/*/*.ipynb")))
        start = time.perf_counter()
        rows = grade(submitted, root / "grades", workers=workers, options=Options(), instructor=root / "instructor",
                     progress=True)
        seconds = time.perf_counter() - start
        full = sum(r.points == r.max_points for r in rows)
        return [name, students, count, workers, f"{seconds:.0f}", f"{seconds / count:.2f}", f"{target_s:.0f}",
                "yes" if seconds <= target_s else "NO", f"{full}/{len(rows)}"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--students", type=int, default=None, help="students per workload (default: 100 and 30)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=("nb01", "course"), default=None)
    args = parser.parse_args(argv)
    table = [("workload", "students", "notebooks", "workers", "seconds", "s/notebook", "target s", "met",
              "full marks")]
    if args.only in (None, "nb01"):
        table.append(run("nb01", args.students or 100, ["01"], args.workers, 300))
    if args.only in (None, "course"):
        table.append(run("course", args.students or 30, [], args.workers, 1200))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for j, row in enumerate(table):
        print("| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)) + " |")
        if j == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
