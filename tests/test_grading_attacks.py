"""Attacks on `vit-course grade` beyond tests/test_grading.py (issue: grading, security review).

Each test writes one release of notebook 01 and a few hostile submissions. Tests named
`test_defeated_*` show an attack that the grader already stops; the others reproduce a
real problem and fail until it is fixed. Needs bubblewrap (`bwrap`).

The hostile submissions reach the grader's side through the worker's protocol pipe, which
the student's code inherits: it finds the `_Protocol` object with `gc` and writes a reply
of its own, then ends the process, so the grader reads the forged line as the answer.
"""

from __future__ import annotations

import copy
import csv
import os
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None,
                                reason="bubblewrap is not installed: apt-get install bubblewrap (CI installs it)")

from test_grading import CONV, PATCHIFY, _set_solution  # the same correct answers and cell edits

# writes `line` on the grader's protocol pipe instead of the worker, then ends the child
FORGE = textwrap.dedent('''
    import gc as _gc, os as _os
    def _forge(line):
        proto = next(o for o in _gc.get_objects() if type(o).__name__ == "_Protocol")
        proto.out.write(line)
        _os._exit(0)
''')


def _forged_model_reply(layers: int) -> str:
    """A reply of ~300 bytes that asks the grader to build a ViTModel of `layers` layers."""
    return ('{"ok":{"$t":"module","cls":"transformers.ViTModel","config":{"hidden_size":8,"num_hidden_layers":%d,'
            '"num_attention_heads":1,"intermediate_size":8,"image_size":4,"patch_size":4},'
            '"state":{"$t":"dict","v":[]},"requires_grad":{}},"writeback":[]}' % layers)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    from vit_course.grading.release import load_manifest, release

    root = tmp_path_factory.mktemp("attacks")
    release(["01"], root / "release", root / "instructor")
    base = nbformat.read(root / "release" / "01" / "01_patching.ipynb", as_version=4)
    spec = load_manifest(root / "instructor")["assignments"]["01"]["01_patching"]
    return {"root": root, "base": base, "spec": spec, "instructor": root / "instructor"}


def _write(released, submitted: Path, name: str, patchify: str = PATCHIFY, conv: str = CONV) -> Path:
    nb = copy.deepcopy(released["base"])
    _set_solution(nb, "patchify", patchify)
    _set_solution(nb, "conv_to_linear_weight", conv)
    path = submitted / name / "01" / "01_patching.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(nb, path)
    return path


def _grade_class(released, submitted: Path, memory_mb: int = 1024) -> dict[tuple[str, str], dict]:
    from vit_course.grading.gradebook import grade
    from vit_course.grading.runner import Options

    out = submitted.parent / (submitted.name + "-grades")
    grade(submitted, out, workers=1, options=Options(timeout=20, memory_mb=memory_mb), instructor=released["instructor"],
          progress=False)
    with open(out / "gradebook.csv") as f:
        return {(r["student"], r["exercise"]): r for r in csv.DictReader(f)}


def test_forged_reply_cannot_make_the_grader_build_a_model_of_its_choosing(released, tmp_path, monkeypatch):
    """BUG: a ~300-byte line forged on the protocol pipe makes the grader's own process build
    `transformers.ViTModel(config)` with the student's config (wire._decode_module builds the
    model before it compares it with the state sent), outside every limit: --timeout and
    --memory-mb bound the sandbox only. With num_hidden_layers=3000 the grader spent ~12 s
    of its own CPU on one call; 10**6 layers stalls the whole class's grading for hours, and a
    wide config (hidden_size 4096, 50 layers: ~40 GB) gets the grader's pool process OOM-killed,
    which breaks the ProcessPoolExecutor and marks every classmate graded after it `crashed`.
    Here: 300 layers are asked for with an empty state; no ViTLayer should be built."""
    from transformers.models.vit import modeling_vit

    from vit_course.grading.runner import Options, grade_notebook

    built = []
    original = modeling_vit.ViTLayer.__init__

    def counting(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(modeling_vit.ViTLayer, "__init__", counting)
    path = _write(released, tmp_path / "submitted", "forger",
                  patchify=FORGE + f"def patchify(images, patch_size):\n    _forge({_forged_model_reply(300)!r}.encode() + b'\\n')\n")
    rows = grade_notebook(path, "forger", "01", "01_patching", released["spec"], Options(timeout=20, memory_mb=1024))
    patchify_row = next(r for r in rows if r.exercise == "check_patchify")
    assert patchify_row.points == 0
    assert len(built) == 0, (f"the grader built {len(built)} ViT layers in its own process from the student's "
                             "forged reply; it must check the size against the state sent before building anything")


def test_symlinked_notebook_is_not_graded_as_the_students_work(released, tmp_path):
    """BUG: gradebook._jobs and runner.grade_notebook follow symlinks. A submission whose
    notebook is a symlink to a classmate's notebook (unzip keeps symlinks from an LMS archive)
    gets the classmate's full marks; a student *folder* that is a symlink to a classmate's is
    graded twice. A symlink to the instructor's grading.json is opened and parsed by the
    grader (it came back `invalid`, without its content). A symlinked notebook or student
    folder should be refused (status `invalid`, 0 points), never followed."""
    submitted = tmp_path / "submitted"
    victim = _write(released, submitted, "a_victim")
    thief = submitted / "thief" / "01"
    thief.mkdir(parents=True)
    os.symlink(victim, thief / "01_patching.ipynb")
    os.symlink(submitted / "a_victim", submitted / "alias")
    table = _grade_class(released, submitted)
    assert table[("a_victim", "check_patchify")]["points"] == "2", "the honest student must keep the points"
    for student in ("thief", "alias"):
        for exercise in ("check_patchify", "check_conv_to_linear_weight"):
            row = table.get((student, exercise))
            if row is None:
                continue  # a refused folder may be left out altogether
            assert row["points"] == "0" and row["status"] == "invalid", (
                f"{student}'s symlink to a classmate's work was followed and graded: {row}")


def test_a_process_that_leaves_its_process_group_is_ended_with_its_exercise(released, tmp_path):
    """BUG: worker.main ends what an exercise left behind with os.killpg(child's pid), so a
    grandchild that calls os.setsid() (or setpgid) survives its exercise and runs on, in the
    same sandbox, through the notebook's later exercises. Busy instead of asleep, 64 such
    processes (RLIMIT_NPROC does not hold when the grader runs as root) each burn up to
    --timeout CPU seconds after their exercise is over, and with --workers 2 starve the
    classmate graded beside them into a `timeout`. Here: the patchify cell leaves a sleeping
    setsid process; the conv answer reports it if it is still alive during its own exercise."""
    submitted = tmp_path / "submitted"
    # the cells run again for every exercise: only the first run leaves a process behind
    escape = textwrap.dedent('''
        import os, time
        if not os.path.exists("/tmp/escapee.pid") and os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open("/tmp/escapee.pid", "w") as _f:
                    _f.write(str(os.getpid()))
                time.sleep(120)
            os._exit(0)
        time.sleep(1)
    ''') + PATCHIFY
    check_alive = textwrap.dedent('''
        import os
        def _alive():
            try:
                pid = int(open("/tmp/escapee.pid").read())
            except OSError:
                return None  # no escapee recorded in this sandbox: nothing outlived its exercise
            try:
                state = open(f"/proc/{pid}/stat").read().split()[2]
            except OSError:
                return None
            return None if state == "Z" else f"pid {pid} still running (state {state})"
    ''') + CONV.replace("    weight = ", "    if _alive():\n        raise RuntimeError('escapee: ' + _alive())\n    weight = ")
    _write(released, submitted, "escaper", patchify=escape, conv=check_alive)
    table = _grade_class(released, submitted)
    assert table[("escaper", "check_patchify")]["points"] == "2", table[("escaper", "check_patchify")]
    row = table[("escaper", "check_conv_to_linear_weight")]
    assert "escapee" not in row["message"], f"a process left by the patchify exercise outlived it: {row['message']}"
    assert row["points"] == "2", row


def test_the_sandboxs_tmp_is_bounded_by_the_memory_limit(released, tmp_path):
    """BUG: the sandbox's /tmp is a bubblewrap tmpfs without a size (sandbox.bwrap_command,
    `--tmpfs /tmp`), and tmpfs pages are the machine's RAM, charged to neither RLIMIT_AS nor
    RLIMIT_FSIZE (64 MB per file, not per sandbox). A cell that writes many 60 MB files fills
    the grading machine's memory however small --memory-mb is. Here --memory-mb is 128 and
    the patchify cell writes 5 x 60 MB (300 MB, freed when the sandbox ends); the writes past
    the limit should fail."""
    submitted = tmp_path / "submitted"
    filler = textwrap.dedent('''
        _total = 0
        for _i in range(5):
            try:
                with open(f"/tmp/fill{_i}", "wb") as _f:
                    for _ in range(60):
                        _f.write(b"x" * (1 << 20))
                        _total += 1 << 20
            except OSError:
                break
        import os as _os
        for _i in range(5):
            try:
                _os.remove(f"/tmp/fill{_i}")
            except OSError:
                pass
        def patchify(images, patch_size):
            raise RuntimeError(f"filled {_total >> 20} MB of /tmp")
    ''')
    _write(released, submitted, "filler", patchify=filler)
    table = _grade_class(released, submitted, memory_mb=128)
    message = table[("filler", "check_patchify")]["message"]
    assert "filled" in message, message
    filled = int(message.split("filled ")[1].split(" MB")[0])
    assert filled <= 128 + 64, f"the sandbox wrote {filled} MB to its RAM-backed /tmp with --memory-mb 128"


def test_an_answer_built_on_another_course_function_with_the_same_logic_is_caught(released, tmp_path):
    """BUG (policy): only the exercise's named reference is blocked (worker.block_reference on
    `patches.patchify`); `vit_course.mae.mae_patchify` does the same job with the channels last,
    so one permute turns it into patchify, and `patches.unpatchify` (its inverse) stays callable
    too. This answer writes none of the exercise's logic and scores full marks, unflagged.
    It should score 0 and be marked `tampered`, like an answer that calls the reference."""
    submitted = tmp_path / "submitted"
    borrowed = textwrap.dedent('''
        from vit_course.mae import mae_patchify as _mp
        def patchify(images, patch_size):
            B, C = images.shape[:2]
            x = _mp(images, patch_size)
            return x.reshape(B, x.shape[1], patch_size, patch_size, C).permute(0, 1, 4, 2, 3).reshape(B, x.shape[1], -1)
    ''')
    _write(released, submitted, "borrower", patchify=borrowed)
    row = _grade_class(released, submitted)[("borrower", "check_patchify")]
    assert row["points"] == "0" and row["status"] == "tampered", row


def test_defeated_forged_replies_cost_only_the_forgers_exercise(released, tmp_path):
    """Forged protocol lines that the grader cannot use: JSON nested 200,000 deep (json's
    RecursionError in the grader's process), a reply that claims an unknown class, and a
    message full of HTML. Each costs only that exercise: the forger's other exercise and the
    classmate graded after them keep their points, and the feedback page shows the HTML as text."""
    submitted = tmp_path / "submitted"
    _write(released, submitted, "deep", patchify=FORGE + "def patchify(images, patch_size):\n"
                                                          "    _forge(b'[' * 200000 + b'\\n')\n")
    _write(released, submitted, "unknown_class", patchify=FORGE + "def patchify(images, patch_size):\n"
           "    _forge(b'{\"ok\":{\"$t\":\"module\",\"cls\":\"os.system\",\"init\":{},\"state\":{}},\"writeback\":[]}\\n')\n")
    _write(released, submitted, "html", patchify="def patchify(images, patch_size):\n"
           "    raise RuntimeError('<script>alert(1)</script><img src=x onerror=alert(2)>')\n")
    _write(released, submitted, "z_honest")
    table = _grade_class(released, submitted)
    page = (tmp_path / "submitted-grades" / "feedback" / "html" / "01_patching.html").read_text()
    assert "&lt;script&gt;" in page and "<script>" not in page and "<img" not in page
    for student in ("deep", "unknown_class", "html"):
        row = table[(student, "check_patchify")]
        assert row["points"] == "0", row
        assert table[(student, "check_conv_to_linear_weight")]["points"] == "2"
    assert table[("z_honest", "check_patchify")]["points"] == "2"
    assert table[("z_honest", "check_conv_to_linear_weight")]["points"] == "2"


def test_defeated_hunting_the_original_reference(released, tmp_path):
    """The original `patchify` is not reachable from the student's code: gc holds no function
    with the reference's code un-poisoned, and neither the source nor any cache file next to
    it can be opened (the audit hook refuses, PermissionError). Scores 0 for patchify."""
    submitted = tmp_path / "submitted"
    hunt = textwrap.dedent('''
        import gc as _gc, types as _types, os as _os
        import vit_course.patches as _vp
        _found = [o for o in _gc.get_objects() if isinstance(o, _types.FunctionType)
                  and o.__code__.co_name == "patchify" and "_reference_called" not in o.__code__.co_names
                  and o.__code__.co_filename.endswith("patches.py")]
        _d = _os.path.dirname(_vp.__file__)
        _cache = _os.path.join(_d, "__pycache__")
        _names = [n for n in _os.listdir(_d) if "patches" in n]
        _names += ["__pycache__/" + n for n in (_os.listdir(_cache) if _os.path.isdir(_cache) else []) if "patches" in n]
        _opened = []
        for _n in _names:
            try:
                open(_os.path.join(_d, _n), "rb").read(10)
                _opened.append("READ " + _n)
            except Exception as _e:
                _opened.append(type(_e).__name__ + " " + _n)
        def patchify(images, patch_size):
            if _found:
                return _found[0](images, patch_size)
            raise RuntimeError("hunt: %d functions; %r" % (len(_found), _opened))
    ''')
    _write(released, submitted, "hunter", patchify=hunt)
    table = _grade_class(released, submitted)
    row = table[("hunter", "check_patchify")]
    assert row["points"] == "0", row
    assert "hunt: 0 functions" in row["message"] and "READ" not in row["message"], row["message"]
    assert "PermissionError patches.py" in row["message"], row["message"]
