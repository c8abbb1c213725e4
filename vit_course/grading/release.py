"""`vit-course release`: student notebooks for a class, and what the grader keeps apart.

    vit-course release 01 03 --out release/        # notebooks 01 and 03 (default: all)

For every chosen solution notebook it writes, with nbgrader's own preprocessors
(`ClearSolutions`, `ClearHiddenTests`, `LockCells`, `ClearOutput`, `ComputeChecksums`),
`release/<assignment>/<notebook>.ipynb`: no solutions, no hidden tests, no outputs, and
nbgrader metadata kept, so stock nbgrader can collect and grade it too. The assignment is
the notebook's number (`01`) unless `--assignment NAME` puts them all under one name.

Apart from the release, in the instructor's folder (`--instructor DIR`, default
`$VIT_COURSE_INSTRUCTOR` or `~/.local/share/vit-course/instructor`), it writes
`grading.json`: for each graded exercise its check, the reference it must not call, the
locked check cell as released (to tell when a student changed it), and held-out cases
drawn from a fresh secret seed with the reference's outputs (see `heldout`). Releasing
again into the same folders needs `--force`.

Used by the "For instructors" section of the README; tested in tests/test_grading.py.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import nbformat

from vit_course.paths import REPO_DIR, atomic_write

from . import heldout, wire

SOLUTIONS_DIR = REPO_DIR / "notebooks" / "solutions"
MANIFEST = "grading.json"
_USE_OR_REFERENCE = re.compile(r"^\s*(\w+)\s*=\s*use_or_reference\(\s*\w+\s*,\s*(\w+)\s*,\s*([\w.]+)\s*\)", re.M)
_CHECK_CALL = re.compile(r"^\s*\w+\s*=\s*(check_\w+)\(\s*(\w+)\s*\)", re.M)


# Other code that does an exercise's whole job: blocked with the reference while it is graded
ALSO_BLOCKED = {
    "check_patchify": ("vit_course.mae:mae_patchify", "vit_course.patches:unpatchify"),
    "check_sincos_2d": ("vit_course.mae:mae_position_embedding",),
    "check_interpolate_positions": ("vit_course.position:interpolate_pos_encoding",),
    "check_vit_flops": ("vit_course.cost:vit_flops_breakdown",),
    "check_window_partition": ("transformers.models.swin.modeling_swin:window_partition",),
    "check_random_masking": ("transformers.models.vit_mae.modeling_vit_mae:ViTMAEEmbeddings.random_masking",),
    "check_clip_loss": ("transformers.models.clip.modeling_clip:clip_loss",),
}


def instructor_dir(given: str | os.PathLike | None = None) -> Path:
    root = given or os.environ.get("VIT_COURSE_INSTRUCTOR") or Path.home() / ".local" / "share" / "vit-course" / "instructor"
    return Path(root)


def solution_notebooks(selection: list[str] | None = None) -> list[Path]:
    """Solution notebooks by number (`01`), stem (`01_patching`) or path; all when empty."""
    every = sorted(SOLUTIONS_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return every
    chosen = []
    for item in selection:
        path = Path(item)
        if path.suffix == ".ipynb" and path.exists():
            chosen.append(path)
            continue
        matches = [p for p in every if p.stem == item or p.name.split("_")[0] == item]
        if not matches:
            names = ", ".join(p.name.split("_")[0] for p in every)
            raise ValueError(f"no solution notebook {item!r}: expected a number ({names}), a name like "
                             f"01_patching, or a path to a .ipynb file")
        chosen.extend(matches)
    return chosen


def _grade(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


@dataclass
class Exercise:
    grade_id: str
    check: str
    learner: str
    points: float
    reference: str | None
    check_source: str
    solution_ids: list[str]


def exercises(nb: nbformat.NotebookNode) -> list[Exercise]:
    """The graded exercises of a solution or release notebook, from its check cells."""
    found, solutions = [], {}
    for cell in nb.cells:
        meta = _grade(cell)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            for name in _defined_names(cell.source):
                solutions[name] = meta.get("grade_id")
        if meta.get("grade") and meta.get("points"):
            match = _CHECK_CALL.search(cell.source)
            if not match:
                raise ValueError(f"graded cell {meta.get('grade_id')!r} does not call a check_* function on the answer")
            check, learner = match.groups()
            found.append(Exercise(meta["grade_id"], check, learner, float(meta["points"]), None,
                                  without_hidden(cell.source), [solutions.get(learner, "")]))
    for cell in nb.cells:
        for alias, learner, reference in _USE_OR_REFERENCE.findall(cell.source):
            for exercise in found:
                if exercise.learner == learner:
                    exercise.reference = reference
    return found


def bindings(nb: nbformat.NotebookNode) -> list[str]:
    """`attend = reference.scaled_dot_product_attention`: what later cells use, bound to the reference.

    An alias that is also the name of an answer is left out: a student whose cell fails to
    define `patchify` must not be graded on the reference.
    """
    learners = {e.learner for e in exercises(nb)}
    return [f"{alias} = {reference}" for cell in nb.cells if cell.cell_type == "code"
            for alias, _, reference in _USE_OR_REFERENCE.findall(cell.source) if alias not in learners]


def import_cell(nb: nbformat.NotebookNode) -> str:
    code = [c for c in nb.cells if c.cell_type == "code"]
    return code[0].source if code else ""


def _defined_names(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def without_hidden(source: str) -> str:
    return re.sub(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[ \t]*\n?", "", source, flags=re.S).rstrip()


def student_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A release copy of a solution notebook, made by nbgrader's preprocessors."""
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions, ComputeChecksums, LockCells

    nb = copy.deepcopy(nb)
    nb.metadata.pop("jupytext", None)  # the solution's pairing with its text source is not the student's
    resources: dict = {}
    for preprocessor in (LockCells(), ClearSolutions(), ClearOutput(), ComputeChecksums(), ClearHiddenTests(),
                         ComputeChecksums()):
        nb, resources = preprocessor.preprocess(nb, resources)
    return nb


def release(selection: list[str] | None, out: str | os.PathLike, instructor: str | os.PathLike | None = None,
            assignment: str | None = None, force: bool = False) -> dict:
    """Write the student notebooks under `out` and the grader's manifest; return the manifest."""
    out, key_dir = Path(out), instructor_dir(instructor)
    manifest_path = key_dir / MANIFEST
    if manifest_path.exists() and not force:
        raise FileExistsError(f"{manifest_path} exists (a class was released before): grading that class needs it. "
                              "Pass --force to release again and replace it, or --instructor DIR for another class")
    seed = secrets.randbits(63)
    manifest: dict = {"version": 1, "assignments": {}}
    for path in solution_notebooks(selection):
        nb = nbformat.read(path, as_version=4)
        name = assignment or path.name.split("_")[0]
        target = out / name / path.name
        if target.exists() and not force:
            raise FileExistsError(f"{target} exists: pass --force to replace it")
        namespace = reference_namespace(import_cell(nb))
        entries = []
        for exercise in exercises(nb):
            reference = eval(exercise.reference, namespace) if exercise.reference else None  # instructor's own cell
            if reference is None or exercise.check not in heldout.PROBES:
                raise ValueError(f"{path.name}: exercise {exercise.grade_id!r} has no reference (a use_or_reference "
                                 f"cell) or no held-out probe ({exercise.check!r} in vit_course.grading.heldout.PROBES)")
            cases = heldout.make_cases(exercise.check, reference, seed)
            entry = dict(vars(exercise))
            entry["heldout"] = wire.encode(cases)
            entry["also_block"] = list(ALSO_BLOCKED.get(exercise.check, ()))
            entries.append(entry)
        released = student_notebook(nb)
        manifest["assignments"].setdefault(name, {})[path.stem] = {
            "imports": import_cell(nb),
            "bindings": bindings(nb),
            "cell_ids": [c.get("id") for c in released.cells],
            "exercises": entries,
        }
        with atomic_write(target, "w") as f:
            nbformat.write(released, f)
    with atomic_write(manifest_path, "w") as f:
        json.dump(manifest, f)
    os.chmod(manifest_path, 0o600)
    return manifest


_NAMESPACES: dict[str, dict] = {}


def reference_namespace(imports: str) -> dict:
    """The notebook's import cell run once in the grader (it is the instructor's own code)."""
    if imports not in _NAMESPACES:
        from .worker import run_statements

        import torch

        namespace: dict = {"__name__": "__grader__", "display": lambda *a, **k: None}
        # the cell may set torch's global state (07 turns gradients off): keep the grader's
        grad, threads, dtype = torch.is_grad_enabled(), torch.get_num_threads(), torch.get_default_dtype()
        try:
            with contextlib.redirect_stdout(io.StringIO()), torch.random.fork_rng(devices=[]):
                run_statements(imports, namespace, "import cell")
        finally:
            torch.set_grad_enabled(grad)
            torch.set_num_threads(threads)
            torch.set_default_dtype(dtype)
        _NAMESPACES[imports] = namespace
    return _NAMESPACES[imports]


def load_manifest(instructor: str | os.PathLike | None = None) -> dict:
    path = instructor_dir(instructor) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `vit-course release ... --out DIR` first (it writes the held-out "
                                "cases there), or pass --instructor DIR where it was written")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): release the class again with `vit-course release --force`") from None
    if manifest.get("version") != 1:
        raise ValueError(f"{path}: unknown manifest version {manifest.get('version')!r}")
    return manifest
