"""`vit-course grade`: every submission of a class, in parallel, into one gradebook.

    vit-course grade submitted/ --out grades/ [--workers 2] [--timeout 60] [--memory-mb 2048]

`submitted/` has nbgrader's layout, `submitted/<student>/<assignment>/<notebook>.ipynb`.
It writes, each file atomically:

- `grades/gradebook.csv`: one row per student, notebook and graded exercise
  (student, assignment, notebook, exercise, points, max_points, status, message);
- `grades/feedback/<student>/<notebook>.html`: each exercise's check panel and message.

Answers whose normalised code equals the course's reference or another student's are
flagged in the message ("FLAGGED for review"), their points unchanged. Two runs on the
same output folder take turns (a lock file), so the gradebook is never half-written.
Exits 0 when every submission was processed, whatever the scores.
"""

from __future__ import annotations

import concurrent.futures
import csv
import fcntl
import html
import inspect
import multiprocessing
import os
import sys
from collections import defaultdict
from pathlib import Path

from vit_course.paths import atomic_write

from .release import load_manifest
from .runner import Options, Row, code_hash, grade_notebook
from .sandbox import bwrap_path, selftest

COLUMNS = ("student", "assignment", "notebook", "exercise", "points", "max_points", "status", "message")


def _jobs(submitted: Path, manifest: dict) -> list[tuple]:
    if not submitted.is_dir():
        raise FileNotFoundError(f"{submitted} is not a folder: expected nbgrader's layout "
                                "SUBMITTED/<student>/<assignment>/<notebook>.ipynb")
    links = sorted(p.name for p in submitted.iterdir() if p.is_symlink())
    if links:
        print(f"warning: {links} are symbolic links, not students' folders; they are not graded", file=sys.stderr)
    students = sorted(p for p in submitted.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith("."))
    present = {a.name for s in students for a in s.iterdir() if a.is_dir() and not a.is_symlink()}
    unknown = sorted(present - set(manifest["assignments"]))
    if unknown:
        print(f"warning: assignments {unknown} were not released to this instructor folder; they are not graded",
              file=sys.stderr)
    jobs = []
    for student in students:
        for assignment in sorted(present & set(manifest["assignments"])):
            for notebook, spec in manifest["assignments"][assignment].items():
                path = student / assignment / f"{notebook}.ipynb"
                jobs.append((str(path) if path.exists() else None, student.name, assignment, notebook, spec))
    return jobs


def _work(job: tuple, options: Options) -> list[Row]:
    import torch

    torch.set_num_threads(1)
    path, student, assignment, notebook, spec = job
    try:
        return grade_notebook(Path(path) if path else None, student, assignment, notebook, spec, options)
    except Exception as e:  # noqa: BLE001 - a grader bug must not lose the class's other grades
        return [Row(student, assignment, notebook, ex["grade_id"], 0.0, ex["points"], "crashed",
                    f"the grader failed on this notebook ({type(e).__name__}: {e}); please report it")
                for ex in spec["exercises"]]


def _flag_copies(rows: list[Row], manifest: dict) -> None:
    from .runner import reference_object

    reference_hash = {}
    for notebooks in manifest["assignments"].values():
        for spec in notebooks.values():
            for exercise in spec["exercises"]:
                try:
                    obj = reference_object(exercise, spec["imports"])
                    source = inspect.getsource(obj)
                    reference_hash[exercise["grade_id"]] = code_hash(source, obj.__name__)
                except (OSError, TypeError, SyntaxError, NameError, AttributeError):
                    pass
    by_code = defaultdict(list)
    for row in rows:
        if row.code_hash:
            by_code[(row.assignment, row.exercise, row.code_hash)].append(row)
    for row in rows:
        if not row.code_hash:
            continue
        flags = []
        if reference_hash.get(row.exercise) == row.code_hash:
            flags.append("the same code as the course's reference")
        others = [r.student for r in by_code[(row.assignment, row.exercise, row.code_hash)] if r.student != row.student]
        if others:
            flags.append("the same code as " + ", ".join(sorted(others)[:5]) + (" ..." if len(others) > 5 else ""))
        if flags:
            row.message = f"FLAGGED for review ({'; '.join(flags)}, names and comments aside). {row.message}"


def feedback_page(student: str, notebook: str, rows: list[Row]) -> str:
    total = sum(r.points for r in rows)
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
           f"<title>{html.escape(notebook)}: feedback for {html.escape(student)}</title></head>",
           "<body style='font-family: sans-serif; max-width: 60em; margin: 2em auto;'>",
           f"<h1>{html.escape(notebook)}</h1><p>{html.escape(student)}: {total:g} / "
           f"{sum(r.max_points for r in rows):g} points</p>"]
    for r in rows:
        out.append(f"<h2>{html.escape(r.exercise)}: {r.points:g} / {r.max_points:g} ({html.escape(r.status)})</h2>")
        out.append(f"<p>{html.escape(r.message)}</p>")
        if r.panel:
            out.append(r.panel)
    out.append("</body></html>")
    return "\n".join(out)


def write_outputs(rows: list[Row], out: Path) -> None:
    with atomic_write(out / "gradebook.csv", "w") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(row.csv())
    pages = defaultdict(list)
    for row in rows:
        pages[(row.student, row.notebook)].append(row)
    for (student, notebook), page in pages.items():
        with atomic_write(out / "feedback" / student / f"{notebook}.html", "w") as f:
            f.write(feedback_page(student, notebook, page))


def grade(submitted: str | os.PathLike, out: str | os.PathLike, workers: int = 2, options: Options | None = None,
          instructor: str | os.PathLike | None = None, progress: bool = True) -> list[Row]:
    """Grade every submission; write the gradebook and feedback under `out`; return the rows."""
    options = options or Options()
    if options.sandboxed and not bwrap_path():
        raise RuntimeError("bubblewrap (bwrap) is not installed: students' code would run with your rights. "
                           "Install it (Debian/Ubuntu: apt-get install bubblewrap) or pass --no-sandbox "
                           "on a machine where that is acceptable")
    if options.sandboxed and (problem := selftest()):
        raise RuntimeError(f"{problem}. Grading needs a working sandbox: on a container, allow user namespaces; "
                           "or pass --no-sandbox where that is acceptable")
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    manifest = load_manifest(instructor)
    jobs = _jobs(Path(submitted), manifest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".grade.lock", "w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{out} is being written by another `vit-course grade`; waiting for it to finish", file=sys.stderr)
            fcntl.flock(lock, fcntl.LOCK_EX)
        rows = _run(jobs, workers, options, progress)
        _flag_copies(rows, manifest)
        write_outputs(rows, out)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    return rows


def _run(jobs: list[tuple], workers: int, options: Options, progress: bool) -> list[Row]:
    from tqdm.auto import tqdm

    results: dict[int, list[Row]] = {}
    bar = tqdm(total=len(jobs), desc="grading", unit="notebook", disable=not progress, file=sys.stderr)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_work, job, options): i for i, job in enumerate(jobs)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except Exception as e:  # noqa: BLE001 - a worker process that died
                path, student, assignment, notebook, spec = jobs[i]
                results[i] = [Row(student, assignment, notebook, ex["grade_id"], 0.0, ex["points"], "crashed",
                                  f"the grader's worker died on this notebook ({type(e).__name__}); please report it")
                              for ex in spec["exercises"]]
            bar.update()
    bar.close()
    return [row for i in range(len(jobs)) for row in results[i]]


def summary(rows: list[Row]) -> str:
    counts = defaultdict(int)
    for row in rows:
        counts[row.status] += 1
    students = len({r.student for r in rows})
    return f"{len(rows)} exercises of {students} students: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))



