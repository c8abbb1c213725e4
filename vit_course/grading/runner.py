"""Grading one submitted notebook: the student's cells in the sandbox, the verdict here.

`grade_notebook(path, spec, options)` returns one `Row` per graded exercise. For each
exercise it starts a child of the sandbox's worker (see `worker`) with the reference of
that exercise made unusable, runs the student's solution cells and the cells they added
(nothing else: no training, no figures), and then judges the answer in this process:

1. the notebook's own check (`vit_course.checks.check_*`), called on a stand-in for the
   student's object (`remote`), with this process's pristine references;
2. the held-out cases stored at release (`heldout`), compared with their stored outputs.

Full points when both pass, none otherwise. The status says what happened:
graded, timeout, memory, crashed (the process ended), invalid (not a notebook),
missing (no such notebook or exercise), tampered (a check cell changed or deleted, or
the answer used the reference). A cell of another exercise that kills the process or
hangs is skipped on a retry, so it costs only its own exercise.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import torch

from . import heldout, wire
from .remote import RemoteClass, RemoteFunction
from .sandbox import Sandbox, SandboxDied, Timeout

MAX_NOTEBOOK_BYTES = 64 << 20
STATUSES = ("graded", "timeout", "memory", "crashed", "invalid", "missing", "tampered")
_MEMORY_WORDS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "out of memory")


@dataclass
class Options:
    timeout: float = 60.0  # wall seconds per exercise, the student's cells included
    memory_mb: int = 2048  # what the answer may allocate beyond the course's imports
    processes: int = 64  # per sandbox, where the kernel can enforce it (not as root)
    sandboxed: bool = True


@dataclass
class Row:
    student: str
    assignment: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str
    panel: str = ""  # the check's HTML panel, for the feedback page
    code_hash: str = ""  # the answer's normalised code, for the copy check
    student_output: str = ""

    def csv(self) -> list:
        return [self.student, self.assignment, self.notebook, self.exercise, f"{self.points:g}",
                f"{self.max_points:g}", self.status, self.message]


class Stopped(Exception):
    """The exercise's process is gone (timeout, crash, memory); later calls are not made."""


class Session:
    """Requests to one exercise's child, with its deadline; remembers how it ended."""

    def __init__(self, sandbox: Sandbox, deadline: float) -> None:
        self.sandbox, self.deadline = sandbox, deadline
        self.ended: str | None = None  # "timeout", "crashed", "memory"
        self.detail = ""
        self.memory = False
        self.reference_called = False

    def receive(self) -> dict:
        try:
            message = self.sandbox.receive(self.deadline - time.monotonic())
        except Timeout:
            self.stop("timeout", "ran past the time limit")
        except SandboxDied as e:
            self.stop("crashed", str(e))
        if not isinstance(message, dict):
            self.stop("crashed", "the sandbox sent something that is not a message")
        if message.get("reference_called"):
            self.reference_called = True
        if message.get("event") == "exited":
            signal = message.get("signal")
            if signal in (24, 9) and time.monotonic() >= self.deadline - 1:
                self.stop("timeout", "ran past the time limit")
            if signal == 24:
                self.stop("timeout", "used up its CPU time")
            how = f"was killed by signal {signal}" if signal else f"ended the process (exit code {message.get('code')})"
            self.stop("crashed", f"your code {how}")
        return message

    def stop(self, how: str, detail: str) -> None:
        if self.ended is None:
            self.ended, self.detail = how, detail
        if how == "timeout":
            self.sandbox.kill()
        raise Stopped(detail)

    def request(self, message: dict) -> dict:
        if self.ended:
            raise Stopped(self.detail)
        try:
            self.sandbox.send(message)
        except SandboxDied as e:
            self.stop("crashed", str(e))
        reply = self.receive()
        error = reply.get("error")
        if error and any(word in f"{error.get('type')}: {error.get('message')}" for word in _MEMORY_WORDS):
            self.memory = True
        return reply


def _student_cells(nb, spec: dict) -> list[dict]:
    """The solution cells and the cells the student added, in order; never the check cells."""
    released = set(spec["cell_ids"])
    cells = []
    for index, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        if meta.get("solution") or cell.get("id") not in released:
            cells.append({"index": index, "source": cell.source, "solution": meta.get("grade_id")})
    return cells


def _check_cells(nb) -> dict[str, str]:
    out = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        if meta.get("grade") and meta.get("grade_id"):
            out[meta["grade_id"]] = cell.source
    return out


def code_hash(source: str, name: str) -> str:
    """The definition of `name` in `source`, names, comments, docstrings and layout aside."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    nodes = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name]
    if not nodes:
        return ""
    node = nodes[0]
    names: dict[str, str] = {}

    class Normalise(ast.NodeTransformer):
        def rename(self, value: str) -> str:
            return names.setdefault(value, f"v{len(names)}")

        def visit_Name(self, n):
            n.id = self.rename(n.id)
            return n

        def visit_arg(self, n):
            n.arg, n.annotation = self.rename(n.arg), None
            return n

        def _strip_doc(self, n):
            if n.body and isinstance(n.body[0], ast.Expr) and isinstance(getattr(n.body[0], "value", None), ast.Constant) \
                    and isinstance(n.body[0].value.value, str):
                n.body = n.body[1:] or [ast.Pass()]
            n.name = self.rename(n.name)
            if hasattr(n, "returns"):
                n.returns = None
            self.generic_visit(n)
            return n

        visit_FunctionDef = visit_ClassDef = visit_AsyncFunctionDef = _strip_doc

    normal = Normalise().visit(node)
    return hashlib.sha256(ast.dump(normal, annotate_fields=False).encode()).hexdigest()[:16]


def _find_check(name: str):
    import importlib
    import pkgutil

    import vit_course.checks as checks

    if hasattr(checks, name):
        return getattr(checks, name)
    for module in pkgutil.iter_modules(checks.__path__):
        mod = importlib.import_module(f"vit_course.checks.{module.name}")
        if hasattr(mod, name):
            return getattr(mod, name)
    raise LookupError(f"no check named {name!r} in vit_course.checks")


def reference_object(exercise: dict, imports: str) -> Any:
    """The course's reference for an exercise, as the released notebook names it."""
    from .release import reference_namespace

    with contextlib.redirect_stdout(io.StringIO()):
        return eval(exercise["reference"], reference_namespace(imports))  # the instructor's import cell


def grade_notebook(path: Path | None, student: str, assignment: str, notebook: str, spec: dict,
                   options: Options) -> list[Row]:
    """Every graded exercise of one submitted notebook, as gradebook rows."""

    def rows(status: str, message: str) -> list[Row]:
        return [Row(student, assignment, notebook, e["grade_id"], 0.0, e["points"], status, message)
                for e in spec["exercises"]]

    if path is None or not (path.exists() or path.is_symlink()):
        return rows("missing", f"no {notebook}.ipynb in this student's {assignment}/ folder")
    if path.is_symlink() or not path.is_file():
        return rows("invalid", f"{path.name} is a symbolic link or not a regular file: a submission must be the "
                               "student's own file; nothing was graded")
    if path.stat().st_size > MAX_NOTEBOOK_BYTES:
        return rows("invalid", f"{path.name} is {path.stat().st_size / 1e6:.0f} MB, over the limit of "
                               f"{MAX_NOTEBOOK_BYTES / 1e6:.0f} MB for one notebook; nothing could be graded")
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - whatever makes it unreadable
        text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        return rows("invalid", f"{path.name} is not a valid notebook ({type(e).__name__}: {text}); nothing could be graded")
    cells = _student_cells(nb, spec)
    checks = _check_cells(nb)
    sandbox = Sandbox(options.sandboxed)
    out = []
    try:
        for exercise in spec["exercises"]:
            out.append(_grade_exercise(sandbox, cells, checks, exercise, spec, options,
                                       Row(student, assignment, notebook, exercise["grade_id"], 0.0,
                                           exercise["points"], "graded", "")))
    finally:
        sandbox.kill()
    return out


def _start(sandbox: Sandbox, spec: dict, options: Options) -> None:
    if sandbox.proc is None:
        sandbox.start({"imports": spec["imports"], "bindings": spec["bindings"]}, timeout=max(60.0, options.timeout))


def _grade_exercise(sandbox: Sandbox, cells: list[dict], checks: dict[str, str], exercise: dict, spec: dict,
                    options: Options, row: Row) -> Row:
    learner = exercise["learner"]
    own = [c for c in cells if c["solution"] in exercise["solution_ids"]]
    if not own:
        row.status = "missing"
        row.message = f"the solution cell of this exercise ({exercise['solution_ids'][0]}) is not in the notebook"
        return row
    row.code_hash = code_hash(own[-1]["source"], learner)
    own_index = {c["index"] for c in own}
    skip: set[int] = set()
    notes: list[str] = []
    verdict = None
    for _attempt in range(4):
        session = Session(sandbox, time.monotonic() + options.timeout)
        running, cell_errors = None, []
        try:
            try:
                _start(sandbox, spec, options)
            except (Timeout, SandboxDied) as e:
                session.stop("crashed", f"the sandbox did not start ({type(e).__name__}: {e})")
            sandbox.send({"op": "exercise", "cells": [c for c in cells if c["index"] not in skip],
                          "names": [learner], "block_expr": exercise["reference"],
                          "also_block": exercise.get("also_block", []), "memory_mb": options.memory_mb,
                          "cpu_seconds": int(options.timeout) + 1, "processes": options.processes})
            while True:
                message = session.receive()
                if message.get("event") == "cell":
                    running = message["index"]
                elif message.get("event") == "cell_error" and message.get("index") in own_index:
                    cell_errors = [str(e)[:300] for e in message.get("errors", [])][:3]
                elif message.get("event") == "loaded":
                    running = None
                    break
            verdict = _judge(session, exercise, message.get("objects", {}).get(learner, "missing"))
            with contextlib.suppress(Stopped):
                session.request({"op": "done"})
            with contextlib.suppress(Timeout, SandboxDied):
                sandbox.receive(10)  # the child's "exited"
        except (Stopped, SandboxDied) as e:
            if session.ended is None:
                session.ended, session.detail = "crashed", str(e)
            if running is not None and running not in own_index:
                # another exercise's cell ended the process or hung: skip it, so it costs only its own exercise
                skip.add(running)
                notes.append(f"cell {running} {session.detail}; it was skipped for this exercise")
                sandbox.kill()
                continue
        break
    if session.ended and session.ended != "done":
        sandbox.kill()  # a fresh sandbox for the next exercise
    if verdict is not None and verdict[2]:
        row.points, row.message = float(exercise["points"]), verdict[0].headline()
    elif session.ended:
        row.status = "memory" if session.memory else session.ended
        row.message = _ended_message(row.status, session.detail, options)
    elif session.memory:
        row.status, row.message = "memory", _ended_message("memory", "", options)
    elif verdict is not None:
        result, problems, _ = verdict
        row.message = result.headline() if not result.passed else \
            f"passes the notebook's check but not the held-out cases: {problems[0]}"
    if verdict is not None and verdict[0] is not None:
        row.panel = verdict[0]._repr_html_()
    tampered = _tampering(checks, exercise)
    if session.reference_called:
        row.points, row.status = 0.0, "tampered"
        row.message = "your answer uses vit_course's reference for this exercise instead of your own code (0 points)"
    elif tampered:
        would, row.points, row.status = row.points, 0.0, "tampered"
        row.message = (f"{tampered}; the grader judged the answer with its own check: it would score "
                       f"{would:g}/{exercise['points']:g}; review it. {row.message}")
    if cell_errors and not row.points:
        row.message += " Your solution cell raised: " + "; ".join(cell_errors)
    if notes:
        row.message += " (" + "; ".join(notes) + ")"
    return row


def _tampering(checks: dict[str, str], exercise: dict) -> str | None:
    if exercise["grade_id"] not in checks:
        return "the check cell of this exercise was deleted"
    from .release import without_hidden

    if without_hidden(checks[exercise["grade_id"]]).strip() != exercise["check_source"].strip():
        return "the check cell of this exercise was changed"
    return None


def _ended_message(status: str, detail: str, options: Options) -> str:
    if status == "timeout":
        return f"your code ran past the time limit of {options.timeout:g} s for this exercise"
    if status == "memory":
        return f"your code ran out of memory (limit {options.memory_mb} MB beyond the course's imports)"
    return f"{detail} while this exercise was graded"


def _judge(session: Session, exercise: dict, kind: str):
    """(CheckResult, held-out problems, passed) for the student's object, judged here."""
    from vit_course.checks import CheckResult

    learner = exercise["learner"]
    if kind == "missing":
        result = CheckResult(False, f"no `{learner}` is defined: keep the name the notebook gives", exercise["check"])
        return result, ["not defined"], False
    proxy = (RemoteClass if kind == "class" else RemoteFunction)(session, learner)
    check = _find_check(exercise["check"])
    from vit_course.checks.compare import settings

    # the session keeps the time (per exercise, in the sandbox); the notebook's per-call alarm
    # would leave a reply in flight and the next request would read it
    limit, settings.time_limit_s = settings.time_limit_s, None
    try:
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            result = check(proxy)
    finally:
        settings.time_limit_s = limit
    if not result.passed:
        return result, [result.message], False
    probe = heldout.PROBES[exercise["check"]]
    problems = []
    cases = wire.decode(exercise["heldout"])
    for number, case in enumerate(cases, 1):
        try:
            with torch.random.fork_rng(devices=[]):
                got = probe.run(proxy, case["inputs"])
        except Stopped:
            raise
        except Exception as e:  # noqa: BLE001 - the student's error, raised here again
            problems.append(f"held-out case {number} of {len(cases)} raised {type(e).__name__}: {str(e)[:200]}")
            break
        lines = heldout.compare(got, case["expected"], probe.atol)
        if lines:
            problems.append(f"held-out case {number} of {len(cases)}: {lines[0]}")
            break
    return result, problems, not problems
