"""The classroom grader against students who cheat, crash, hang or copy (issue: grading).

One release of notebook 01, then one `vit-course grade` over a class of adversarial
submissions; each test reads that class's gradebook and asserts the points and status of
one kind of submission. Needs bubblewrap (`bwrap`); `.ci/run` installs it.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest


from vit_course.paths import REPO_DIR

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is not installed: apt-get install bubblewrap (CI installs it)")

PATCHIFY = textwrap.dedent('''
    def patchify(images, patch_size):
        B, C, H, W = images.shape
        P = patch_size
        x = images.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(B, (H // P) * (W // P), C * P * P)
''')
# the same answer in another style: einops, other names, a comment
PATCHIFY_EINOPS = textwrap.dedent('''
    def patchify(imgs, p):
        # einops: rows and columns of patches, each flattened as (c, p, p)
        return einops.rearrange(imgs, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=p, p2=p)
''')
CONV = textwrap.dedent('''
    def conv_to_linear_weight(conv):
        weight = conv.weight.detach().reshape(conv.out_channels, -1)
        return weight, None if conv.bias is None else conv.bias.detach()
''')
WRONG_PATCHIFY = "def patchify(images, patch_size):\n    return torch.zeros(images.shape[0], 1, 1)\n"
MARKER = "vit-course-grading-test-marker"


def _set_solution(nb, grade_id: str, source: str) -> None:
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            cell.source = source
            return
    raise KeyError(grade_id)


def _add_cell(nb, source: str, before: str = "patchify") -> None:
    index = next(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") == before)
    cell = nbformat.v4.new_code_cell(source)
    nb.cells.insert(index, cell)


def _check_cell(nb, grade_id: str):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _memorised(source_dir: Path) -> str:
    """A patchify that returns the visible check's outputs, computed beforehand, and nothing else right."""
    from vit_course.checks.compare import randn
    from vit_course.checks.patches import PATCHIFY_CASES
    from vit_course.patches import patchify

    table = []
    for seed, (shape, P, _) in enumerate(PATCHIFY_CASES):
        x = randn(*shape, seed=seed)
        table.append((list(shape), P, round(float(x.sum()), 4), patchify(x, P).tolist()))
    path = source_dir / "answers.json"
    path.write_text(json.dumps(table))
    return textwrap.dedent(f'''
        import json as _json
        _TABLE = _json.loads({path.read_text()!r})

        def patchify(images, patch_size):
            for shape, P, total, out in _TABLE:
                if list(images.shape) == shape and P == patch_size and abs(float(images.sum()) - total) < 1e-3:
                    return torch.tensor(out)
            return torch.zeros(images.shape[0], (images.shape[2] // patch_size) * (images.shape[3] // patch_size),
                               images.shape[1] * patch_size ** 2)
    ''')


def _submissions(release: Path, submitted: Path, instructor: Path, gradebook_dir: Path) -> dict[str, str]:
    """Write one student per kind of submission; return {student: what it does}."""
    base = nbformat.read(release / "01" / "01_patching.ipynb", as_version=4)
    course_file = REPO_DIR / "vit_course" / f"{MARKER}.py"
    secrets = {
        "grading.json": str(instructor / "grading.json"),
        "solution": str(REPO_DIR / "notebooks" / "solutions" / "01_patching.ipynb"),
        "other student": str(submitted / "correct" / "01" / "01_patching.ipynb"),
        "gradebook": str(gradebook_dir / "gradebook.csv"),
        "shadow": "/etc/shadow",
    }
    kinds = {}

    def student(name: str, what: str, edit) -> None:
        nb = copy.deepcopy(base)
        edit(nb)
        path = submitted / name / "01" / "01_patching.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
        kinds[name] = what

    def both(patchify=PATCHIFY, conv=CONV):
        def edit(nb):
            _set_solution(nb, "patchify", patchify)
            _set_solution(nb, "conv_to_linear_weight", conv)
        return edit

    student("correct", "both answers right", both())
    student("other_style", "right, in another style (einops, other names)", both(patchify=PATCHIFY_EINOPS))
    student("copier", "a copy of `correct` with other names and comments",
            both(patchify=PATCHIFY.replace("images", "imgs").replace("    B, C", "    # copied\n    B, C")))
    student("stub", "nothing done", lambda nb: None)
    student("partial", "patchify right, conv still the stub", lambda nb: _set_solution(nb, "patchify", PATCHIFY))

    def edited_check(nb):
        _check_cell(nb, "check_patchify").source = (
            "from vit_course.checks import CheckResult\nresult = CheckResult(True, 'all good', 'check_patchify')\n"
            "display(result)")
    student("edited_check", "stub, and the check cell replaced by a green result", edited_check)

    def deleted_check(nb):
        both()(nb)
        nb.cells.remove(_check_cell(nb, "check_patchify"))
    student("deleted_check", "right answers, patchify's check cell deleted", deleted_check)

    student("rebound_check", "stub, and check_patchify rebound to a green one",
            lambda nb: _add_cell(nb, "from vit_course.checks import CheckResult\n"
                                     "check_patchify = lambda f: CheckResult(True, 'ok', 'check_patchify')\n"))
    student("patched_torch", "a wrong answer, with torch.isclose, allclose and equal patched to say yes",
            both(patchify="torch.isclose = lambda *a, **k: torch.ones((), dtype=torch.bool)\n"
                          "torch.allclose = lambda *a, **k: True\ntorch.equal = lambda *a, **k: True\n"
                          + WRONG_PATCHIFY))
    student("calls_reference", "returns vit_course.patches.patchify(...)",
            both(patchify="def patchify(images, patch_size):\n    return patches.patchify(images, patch_size)\n"))
    student("reloads_reference", "re-imports the reference from its source file",
            both(patchify="import importlib, vit_course.patches\n"
                          "_ref = importlib.reload(vit_course.patches).patchify\n"
                          "def patchify(images, patch_size):\n    return _ref(images, patch_size)\n"))
    student("replaces_reference", "replaces the reference and the checks' tensor_problems, wrong answer",
            both(patchify="import vit_course.patches, vit_course.checks.compare as _c, vit_course.checks.patches as _p\n"
                          "vit_course.patches.patchify = lambda images, P: torch.zeros(images.shape[0], 1, 1)\n"
                          "_c.tensor_problems = _p.tensor_problems = lambda *a, **k: []\n" + WRONG_PATCHIFY))
    student("input_transformer", "an IPython input transformer that turns later cells into `pass`",
            lambda nb: _add_cell(nb, "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"))
    student("no_traceback", "showtraceback disabled, stub", lambda nb: _add_cell(
        nb, "get_ipython().showtraceback = lambda *a, **k: None\nget_ipython().showsyntaxerror = lambda *a, **k: None\n"))
    student("memorised", "the visible check's outputs learned by heart", both(patchify=_memorised(submitted.parent)))
    student("infinite_loop", "patchify never returns; conv right",
            both(patchify="def patchify(images, patch_size):\n    while True:\n        pass\n"))
    student("swallows_interrupt", "a loop that catches KeyboardInterrupt; conv right",
            both(patchify="import time\ndef patchify(images, patch_size):\n    while True:\n        try:\n"
                          "            time.sleep(0.1)\n        except BaseException:\n            pass\n"))
    student("memory_bomb", "patchify allocates 64 GB; conv right",
            both(patchify="def patchify(images, patch_size):\n    return torch.ones(2**34)\n"))
    student("os_exit", "right patchify; os._exit(0) at the top of the conv cell",
            both(conv="import os\nos._exit(0)\n" + CONV))
    student("sys_exit", "patchify calls sys.exit(); conv right",
            both(patchify="import sys\ndef patchify(images, patch_size):\n    sys.exit(0)\n"))
    (submitted / "invalid_json" / "01").mkdir(parents=True)
    (submitted / "invalid_json" / "01" / "01_patching.ipynb").write_text('{"cells": [ this is not JSON')
    kinds["invalid_json"] = "a file that is not JSON"
    (submitted / "no_notebook" / "01").mkdir(parents=True)
    kinds["no_notebook"] = "an assignment folder without the notebook"
    reader = textwrap.dedent(f'''
        import socket
        _seen = {{}}
        for _what, _path in {secrets!r}.items():
            try:
                with open(_path, "rb") as _f:
                    _seen[_what] = "READ " + str(len(_f.read()))
            except Exception as _e:
                _seen[_what] = type(_e).__name__
        try:
            socket.create_connection(("127.0.0.1", 22), timeout=2)
            _seen["network"] = "CONNECTED"
        except Exception as _e:
            _seen["network"] = type(_e).__name__
        try:
            import subprocess
            _seen["cat"] = "RAN " + subprocess.run(["cat", patches.__file__], capture_output=True).stdout[:20].decode()
        except Exception as _e:
            _seen["cat"] = type(_e).__name__
        def patchify(images, patch_size):
            raise RuntimeError("seen: " + repr(sorted(_seen.items())))
    ''')
    student("reader", "tries to read the instructor's files, another student's, the gradebook; the network",
            both(patchify=reader))
    writer = textwrap.dedent(f'''
        _wrote = {{}}
        for _path in [{str(course_file)!r}, {str(submitted / MARKER)!r}, {str(gradebook_dir / MARKER)!r},
                      "/tmp/{MARKER}"]:
            try:
                with open(_path, "w") as _f:
                    _f.write("pwned")
                _wrote[_path] = "WROTE"
            except Exception as _e:
                _wrote[_path] = type(_e).__name__
        def patchify(images, patch_size):
            raise RuntimeError("wrote: " + repr(sorted(_wrote.items())))
    ''')
    student("writer", "writes into the course package, the submissions, the gradebook folder and /tmp",
            both(patchify=writer))
    forker = "import os, time\nfor _ in range(100):\n    if os.fork() == 0:\n        time.sleep(600)\n        os._exit(0)\n"
    student("fork_bomb", "forks 100 sleeping processes at the top of the patchify cell, then answers right",
            both(patchify=forker + PATCHIFY))
    return kinds


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    from vit_course.grading.gradebook import grade
    from vit_course.grading.release import release
    from vit_course.grading.runner import Options

    root = tmp_path_factory.mktemp("class")
    release_dir, instructor, submitted, out = root / "release", root / "instructor", root / "submitted", root / "grades"
    release(["01"], release_dir, instructor)
    kinds = _submissions(release_dir, submitted, instructor, out)
    out.mkdir()
    (out / "gradebook.csv").write_text("the previous gradebook\n")
    rows = grade(submitted, out, workers=2, options=Options(timeout=15, memory_mb=1024), instructor=instructor,
                 progress=False)
    with open(out / "gradebook.csv") as f:
        table = list(csv.DictReader(f))
    return {"root": root, "rows": rows, "table": table, "kinds": kinds, "out": out, "release": release_dir,
            "instructor": instructor, "submitted": submitted}


def _row(graded, student: str, exercise: str = "check_patchify") -> dict:
    found = [r for r in graded["table"] if r["student"] == student and r["exercise"] == exercise]
    assert len(found) == 1, f"expected one row for {student}/{exercise}, got {found}"
    return found[0]


def _points(graded, student: str) -> float:
    return sum(float(r["points"]) for r in graded["table"] if r["student"] == student)


def test_release_has_no_solutions_and_no_hidden_tests(graded):
    text = (graded["release"] / "01" / "01_patching.ipynb").read_text()
    solution = (REPO_DIR / "notebooks" / "solutions" / "01_patching.ipynb").read_text()
    assert "BEGIN SOLUTION" in solution and "BEGIN HIDDEN TESTS" in solution
    for word in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "assert result.passed"):
        assert word not in text, f"the release leaks {word!r}"
    assert not (graded["release"] / "solutions").exists()
    nb = nbformat.read(graded["release"] / "01" / "01_patching.ipynb", as_version=4)
    released = {c.id: c.source for c in nb.cells}
    for cell in nbformat.read(REPO_DIR / "notebooks" / "solutions" / "01_patching.ipynb", as_version=4).cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            region = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
            for line in filter(str.strip, region.splitlines()):
                assert line not in released[cell.id], f"the release leaks the solution line {line!r}"
    graded_cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert [c.metadata["nbgrader"]["points"] for c in graded_cells] == [2, 2]
    assert all(c.metadata["nbgrader"]["locked"] for c in graded_cells)


def test_heldout_cases_are_kept_apart_from_the_release(graded):
    manifest = json.loads((graded["instructor"] / "grading.json").read_text())
    assert all(e["heldout"] for e in manifest["assignments"]["01"]["01_patching"]["exercises"])
    assert oct((graded["instructor"] / "grading.json").stat().st_mode & 0o777) == "0o600"
    assert not list(graded["release"].rglob("grading.json"))


def test_gradebook_has_a_row_per_student_and_exercise(graded):
    table = graded["table"]
    assert list(table[0]) == ["student", "assignment", "notebook", "exercise", "points", "max_points", "status", "message"]
    assert len(table) == 2 * len(graded["kinds"])
    statuses = {r["status"] for r in table}
    assert statuses <= {"graded", "timeout", "memory", "crashed", "invalid", "missing", "tampered"}
    for student in graded["kinds"]:
        page = graded["out"] / "feedback" / student / "01_patching.html"
        assert page.exists(), f"no feedback page for {student}"
    assert "the previous gradebook" not in (graded["out"] / "gradebook.csv").read_text()
    assert not list(graded["out"].glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("student", ["correct", "other_style"])
def test_a_correct_answer_gets_full_marks(graded, student):
    for exercise in ("check_patchify", "check_conv_to_linear_weight"):
        row = _row(graded, student, exercise)
        assert (row["points"], row["status"]) == ("2", "graded"), row
    page = (graded["out"] / "feedback" / student / "01_patching.html").read_text()
    assert "check_patchify passed" in page and "4 / 4 points" in page


def test_a_stub_gets_nothing_and_says_not_done(graded):
    row = _row(graded, "stub")
    assert (row["points"], row["status"]) == ("0", "graded")
    assert "not done yet" in row["message"]


def test_a_partial_submission_gets_the_points_of_what_is_done(graded):
    assert _points(graded, "partial") == 2
    assert _row(graded, "partial", "check_conv_to_linear_weight")["points"] == "0"


def test_an_edited_check_cell_is_tampered_and_scores_nothing(graded):
    row = _row(graded, "edited_check")
    assert (row["points"], row["status"]) == ("0", "tampered")
    assert "changed" in row["message"] and "would score 0/2" in row["message"]


def test_a_deleted_check_cell_is_tampered_and_the_instructor_sees_what_the_answer_is_worth(graded):
    row = _row(graded, "deleted_check")
    assert (row["points"], row["status"]) == ("0", "tampered")
    assert "deleted" in row["message"] and "would score 2/2" in row["message"]
    assert _row(graded, "deleted_check", "check_conv_to_linear_weight")["points"] == "2"


@pytest.mark.parametrize("student", ["rebound_check", "patched_torch", "replaces_reference", "input_transformer",
                                     "no_traceback"])
def test_tricks_on_the_students_side_earn_nothing(graded, student):
    row = _row(graded, student)
    assert (row["points"], row["status"]) == ("0", "graded"), row


def test_using_the_reference_scores_zero_with_a_message(graded):
    row = _row(graded, "calls_reference")
    assert (row["points"], row["status"]) == ("0", "tampered"), row
    assert "reference" in row["message"]
    assert _row(graded, "calls_reference", "check_conv_to_linear_weight")["points"] == "2"


def test_the_reference_cannot_be_reloaded_from_its_source_file(graded):
    row = _row(graded, "reloads_reference")
    assert row["points"] == "0", row
    assert "the source of the reference is not available" in row["message"], row
    assert _row(graded, "reloads_reference", "check_conv_to_linear_weight")["points"] == "2"


def test_answers_learned_from_the_visible_check_fail_the_heldout_cases(graded):
    row = _row(graded, "memorised")
    assert (row["points"], row["status"]) == ("0", "graded"), row
    assert "held-out" in row["message"]


@pytest.mark.parametrize("student", ["infinite_loop", "swallows_interrupt"])
def test_a_hanging_answer_times_out_and_costs_only_its_exercise(graded, student):
    row = _row(graded, student)
    assert (row["points"], row["status"]) == ("0", "timeout"), row
    assert _row(graded, student, "check_conv_to_linear_weight")["points"] == "2"


def test_a_memory_bomb_is_stopped_and_reported(graded):
    row = _row(graded, "memory_bomb")
    assert (row["points"], row["status"]) == ("0", "memory"), row
    assert _row(graded, "memory_bomb", "check_conv_to_linear_weight")["points"] == "2"


def test_os_exit_in_one_cell_costs_only_that_exercise(graded):
    conv = _row(graded, "os_exit", "check_conv_to_linear_weight")
    assert (conv["points"], conv["status"]) == ("0", "crashed"), conv
    patchify = _row(graded, "os_exit")
    assert (patchify["points"], patchify["status"]) == ("2", "graded"), patchify
    assert "skipped" in patchify["message"]


def test_sys_exit_is_an_error_of_that_exercise(graded):
    row = _row(graded, "sys_exit")
    assert row["points"] == "0" and row["status"] in ("graded", "crashed"), row
    assert _row(graded, "sys_exit", "check_conv_to_linear_weight")["points"] == "2"


def test_invalid_json_and_missing_notebooks_are_named_not_silent_zeros(graded):
    row = _row(graded, "invalid_json")
    assert row["status"] == "invalid" and "not a valid notebook" in row["message"]
    row = _row(graded, "no_notebook")
    assert row["status"] == "missing" and "01_patching.ipynb" in row["message"]


def test_the_sandbox_sees_no_instructor_file_and_no_network(graded):
    message = _row(graded, "reader")["message"]
    assert "seen:" in message, message
    assert "READ" not in message and "CONNECTED" not in message and "RAN" not in message, message
    for what in ("grading.json", "solution", "other student", "gradebook", "shadow", "network", "cat"):
        assert f"'{what}'" in message


def test_nothing_is_written_outside_the_sandbox(graded):
    message = _row(graded, "writer")["message"]
    assert "wrote:" in message and "WROTE" not in message.replace("'/tmp/" + MARKER + "', 'WROTE'", ""), message
    for path in (REPO_DIR / "vit_course" / f"{MARKER}.py", graded["submitted"] / MARKER, graded["out"] / MARKER,
                 Path("/tmp") / MARKER):
        assert not path.exists(), f"a student's file appeared at {path}"


def test_a_fork_bomb_is_contained_and_cleaned_up(graded):
    row = _row(graded, "fork_bomb")
    assert row["status"] in ("graded", "timeout", "crashed"), row
    left = subprocess.run(["pgrep", "-f", "vit_course.grading.worker"], capture_output=True, text=True).stdout.split()
    assert not left, f"sandbox processes left running: {left}"


def test_copies_are_flagged_not_scored(graded):
    for student in ("correct", "copier"):
        row = _row(graded, student)
        assert row["points"] == "2" and "FLAGGED" in row["message"], row
    assert "FLAGGED" not in _row(graded, "other_style")["message"]


def test_two_grade_runs_on_one_folder_take_turns(graded, tmp_path):
    submitted = tmp_path / "submitted"
    for student in ("correct", "stub"):
        shutil.copytree(graded["submitted"] / student, submitted / student)
    out = tmp_path / "grades"
    env = dict(os.environ, VIT_COURSE_INSTRUCTOR=str(graded["instructor"]))
    command = [sys.executable, "-m", "vit_course.cli", "grade", str(submitted), "--out", str(out), "--quiet"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert any("waiting" in err for _, err in results), "the second run did not wait for the first"
    with open(out / "gradebook.csv") as f:
        table = list(csv.DictReader(f))
    assert sorted((r["student"], r["exercise"], r["points"]) for r in table) == [
        ("correct", "check_conv_to_linear_weight", "2"), ("correct", "check_patchify", "2"),
        ("stub", "check_conv_to_linear_weight", "0"), ("stub", "check_patchify", "0")]


def test_grade_refuses_to_run_unsandboxed_without_being_told(graded, tmp_path, monkeypatch):
    from vit_course.grading import cli, sandbox

    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    import argparse

    args = argparse.Namespace(no_sandbox=False, submitted=str(graded["submitted"]), out=str(tmp_path), workers=1,
                              timeout=10, memory_mb=100, instructor=str(graded["instructor"]), quiet=True)
    assert cli._grade(args) == 2
    assert not (tmp_path / "gradebook.csv").exists()


def test_release_refuses_to_overwrite_without_force(graded):
    from vit_course.grading.release import release

    with pytest.raises(FileExistsError, match="--force"):
        release(["01"], graded["release"], graded["instructor"])
    with pytest.raises(ValueError, match="no solution notebook '99'"):
        release(["99"], graded["root"] / "x", graded["root"] / "y")





def test_module_answers_are_judged_forward_and_backward_in_the_sandbox(tmp_path):
    """A block whose `x += mlp(...)` passes every forward but breaks backward scores nothing."""
    from vit_course.grading.release import release
    from vit_course.grading.runner import Options, grade_notebook

    sys.path.insert(0, str(REPO_DIR / "scripts"))
    from bench_grading import solved

    manifest = release(["04"], tmp_path / "release", tmp_path / "instructor")
    spec = manifest["assignments"]["04"]["04_cls_head_and_vit"]
    nb = solved(tmp_path / "release" / "04" / "04_cls_head_and_vit.ipynb")
    good = tmp_path / "good.ipynb"
    nbformat.write(nb, good)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "block_solution")
    line = next(l for l in cell.source.splitlines() if "return x + self.mlp(" in l)
    cell.source = cell.source.replace(line, line.replace("return x + self.mlp(self.norm2(x))",
                                                         "x += self.mlp(self.norm2(x))\n        return x"))
    assert "x += self.mlp" in cell.source
    bad = tmp_path / "bad.ipynb"
    nbformat.write(nb, bad)
    options = Options(timeout=60)
    rows = {r.exercise: r for r in grade_notebook(good, "good", "04", "04_cls_head_and_vit", spec, options)}
    assert [(r.points, r.status) for r in rows.values()] == [(3.0, "graded"), (4.0, "graded")], rows
    rows = {r.exercise: r for r in grade_notebook(bad, "bad", "04", "04_cls_head_and_vit", spec, options)}
    assert (rows["block_check"].points, rows["block_check"].status) == (0.0, "graded"), rows["block_check"]
    assert "backward" in rows["block_check"].message, rows["block_check"].message
    assert rows["vit_check"].points == 4.0, "the reference block is used for the ViT exercise, no cascade"


def test_every_graded_exercise_of_every_notebook_has_heldout_cases_and_a_reference():
    from vit_course.grading import heldout
    from vit_course.grading.release import exercises, solution_notebooks

    for path in solution_notebooks():
        for exercise in exercises(nbformat.read(path, as_version=4)):
            assert exercise.check in heldout.PROBES, f"{path.name}: no held-out probe for {exercise.check}"
            assert exercise.reference, f"{path.name}: no use_or_reference cell for {exercise.learner}"


def test_heldout_cases_catch_what_the_reference_would_not_do():
    """The comparison is strict: the reference passes its own cases, a mistake does not."""
    import torch

    from vit_course.grading import heldout
    from vit_course.patches import patchify
    from vit_course.position import sincos_2d

    cases = heldout.make_cases("check_patchify", patchify, seed=1)
    probe = heldout.PROBES["check_patchify"]
    for case in cases:
        assert heldout.compare(probe.run(patchify, case["inputs"]), case["expected"], probe.atol) == []
    transposed = lambda x, P: patchify(x.transpose(-2, -1).contiguous(), P)  # noqa: E731
    assert any(heldout.compare(probe.run(transposed, c["inputs"]), c["expected"], probe.atol) for c in cases)
    cases = heldout.make_cases("check_sincos_2d", sincos_2d, seed=3)
    default_only = lambda rows, cols, dim, temperature=10000.0: sincos_2d(rows, cols, dim)  # noqa: E731
    probe = heldout.PROBES["check_sincos_2d"]
    assert any(c["inputs"]["temperature"] != 10000.0 for c in cases)
    assert any(heldout.compare(probe.run(default_only, c["inputs"]), c["expected"], probe.atol) for c in cases)
    assert heldout.compare(torch.zeros(2), torch.zeros(2, dtype=torch.float64).float(), 1e-4) == []
    assert heldout.compare(3, 3, 0) == [] and heldout.compare(True, 1, 0) != []


def test_the_readme_counts_the_graded_exercises_and_points_there_are():
    import re

    from vit_course.grading.release import exercises, solution_notebooks

    found = [e for path in solution_notebooks() for e in exercises(nbformat.read(path, as_version=4))]
    text = (REPO_DIR / "README.md").read_text()
    match = re.search(r"(\d+) graded exercises in notebooks\s+01-(\d\d) \((\d+) points\)", text)
    assert match, "the README's For instructors section should say how many exercises and points there are"
    assert (int(match[1]), match[2], int(match[3])) == (
        len(found), solution_notebooks()[-1].name[:2], int(sum(e.points for e in found)))


def test_the_solutions_get_full_marks_in_every_notebook(tmp_path):
    """Every exercise, the held-out cases included, accepts the solution notebooks' answers."""
    from vit_course.grading.gradebook import grade
    from vit_course.grading.runner import Options

    sys.path.insert(0, str(REPO_DIR / "scripts"))
    from bench_grading import make_class

    submitted = make_class(tmp_path, 1, [])
    rows = grade(submitted, tmp_path / "grades", workers=2, options=Options(), instructor=tmp_path / "instructor",
                 progress=False)
    wrong = [r.csv() for r in rows if r.points != r.max_points]
    assert not wrong and len(rows) >= 21, wrong


def test_releasing_leaves_the_graders_torch_settings_alone(tmp_path):
    import torch

    from vit_course.grading.release import release

    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    release(["07", "08"], tmp_path / "release", tmp_path / "instructor")  # 07 turns gradients off, 08 threads to 1
    assert (torch.is_grad_enabled(), torch.get_num_threads()) == (grad, threads)
