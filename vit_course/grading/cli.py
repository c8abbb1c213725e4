"""The instructor's subcommands of `vit-course`: `release` and `grade` (see README, "For instructors")."""

from __future__ import annotations

import argparse
import sys


def _release(args) -> int:
    from .release import instructor_dir, release

    try:
        manifest = release(args.notebooks, args.out, args.instructor, args.assignment, args.force)
    except (ValueError, FileExistsError, ImportError) as e:
        print(f"vit-course release: {e}", file=sys.stderr)
        return 2
    for assignment, notebooks in manifest["assignments"].items():
        for notebook, spec in notebooks.items():
            points = sum(e["points"] for e in spec["exercises"])
            print(f"{args.out}/{assignment}/{notebook}.ipynb: {len(spec['exercises'])} graded exercises, {points:g} points")
    print(f"held-out cases and the grader's manifest: {instructor_dir(args.instructor)}/grading.json "
          "(keep it away from students)")
    return 0


def _grade(args) -> int:
    from .gradebook import grade, summary
    from .runner import Options

    if not args.no_sandbox:
        from .sandbox import bwrap_path

        if not bwrap_path():
            print("vit-course grade: bubblewrap (bwrap) is not installed, so students' code cannot be sandboxed.\n"
                  "Install it (Debian/Ubuntu: apt-get install bubblewrap), or pass --no-sandbox to grade anyway.",
                  file=sys.stderr)
            return 2
    else:
        print("WARNING: --no-sandbox: students' code runs as you, with your files, your network and no memory "
              "or process limits beyond rlimits. Only the verdict stays in the grader's process.", file=sys.stderr)
    for name in ("workers", "timeout", "memory_mb"):
        if getattr(args, name) <= 0:
            print(f"vit-course grade: --{name.replace('_', '-')} must be positive, got {getattr(args, name)}",
                  file=sys.stderr)
            return 2
    options = Options(timeout=args.timeout, memory_mb=args.memory_mb, sandboxed=not args.no_sandbox)
    try:
        rows = grade(args.submitted, args.out, args.workers, options, args.instructor, progress=not args.quiet)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"vit-course grade: {e}", file=sys.stderr)
        return 2
    print(summary(rows))
    print(f"gradebook: {args.out}/gradebook.csv; feedback: {args.out}/feedback/<student>/<notebook>.html")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("release", help="(instructor) student notebooks without solutions, and held-out cases",
                       description="Write student notebooks (no solutions, no hidden tests, nbgrader metadata kept) "
                                   "to OUT/<assignment>/, and the grader's held-out cases to the instructor folder.")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK", help="numbers (01), names or paths (default: all)")
    p.add_argument("--out", required=True, help="folder for the student notebooks")
    p.add_argument("--instructor", default=None,
                   help="instructor-only folder for grading.json (default: $VIT_COURSE_INSTRUCTOR or "
                        "~/.local/share/vit-course/instructor)")
    p.add_argument("--assignment", default=None, help="one assignment name for all notebooks (default: their numbers)")
    p.add_argument("--force", action="store_true", help="replace an earlier release and its held-out cases")
    p.set_defaults(func=_release)

    p = sub.add_parser("grade", help="(instructor) grade submissions in a sandbox into a gradebook",
                       description="Grade SUBMITTED/<student>/<assignment>/<notebook>.ipynb: each answer runs in a "
                                   "bubblewrap sandbox, the course's checks and held-out cases judge it from outside. "
                                   "Writes OUT/gradebook.csv and OUT/feedback/.")
    p.add_argument("submitted", help="nbgrader's submitted/ folder")
    p.add_argument("--out", required=True, help="folder for gradebook.csv and feedback/")
    p.add_argument("--workers", type=int, default=2, help="submissions graded at once (default: 2)")
    p.add_argument("--timeout", type=float, default=60.0, help="wall seconds per exercise (default: 60)")
    p.add_argument("--memory-mb", type=int, default=2048,
                   help="memory an answer may use beyond the course's imports, in MB (default: 2048)")
    p.add_argument("--instructor", default=None, help="where `release` wrote grading.json")
    p.add_argument("--no-sandbox", action="store_true", help="run students' code without bubblewrap (unsafe)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_grade)

