"""Every file shipped in data/ is checked against the size and SHA-256 in data/MANIFEST.json.

The probes change a copy of data/ (the package pointed at it), never the real files: a weight
file altered but still readable and finite (only the hash can tell), a 0-byte model and data
file, a missing file. Each is a ValueError naming the file and the command that restores it,
and a problem in `vit-course doctor` (exit 1 with --strict).
"""

import io
import shutil
import subprocess

import numpy as np
import pytest
import torch

from vit_course import cnn, data, paths
from vit_course.cli import main
from vit_course.doctor import doctor
from vit_course.vit import VisionTransformer

REAL_DATA = paths.DATA_DIR


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    """A copy of data/ (models, subsets, manifest) that the package reads instead of data/."""
    copy = tmp_path / "data"
    shutil.copytree(REAL_DATA, copy)
    for module in (paths, data):
        monkeypatch.setattr(module, "DATA_DIR", copy)
    monkeypatch.setenv("VIT_COURSE_CACHE", str(tmp_path / "cache"))
    return copy


def _alter_keeping_size(path):
    """Overwrite the last 64 bytes with float32 1.0s: same size, still finite and readable."""
    raw = path.read_bytes()
    path.write_bytes(raw[:-64] + np.ones(16, np.float32).tobytes())


def test_every_file_shipped_in_data_is_recorded_and_matches():
    listed = subprocess.run(["git", "ls-files", "data"], cwd=REAL_DATA.parent, capture_output=True,
                            text=True, check=True).stdout.split()
    shipped = {f.removeprefix("data/") for f in listed} - {"README.md", paths.MANIFEST_NAME}
    assert shipped, "git lists no files in data/"
    recorded = set(paths.manifest())
    assert shipped - recorded == set(), f"shipped but not in data/MANIFEST.json: {sorted(shipped - recorded)}"
    assert recorded - shipped == set(), f"recorded but not shipped: {sorted(recorded - shipped)}"
    assert paths.manifest_problems() == [], "run `vit-course manifest --update` after changing data/ on purpose"


def test_an_altered_but_readable_cnn_is_named_with_the_fix(data_copy):
    weights = data_copy / "models" / "cnn-fashion" / "model.safetensors"
    _alter_keeping_size(weights)
    with pytest.raises(ValueError) as error:
        cnn.load(weights.parent)
    message = str(error.value)
    assert str(weights) in message and "SHA-256" in message
    assert "git checkout -- " in message and paths.UPDATE_MANIFEST in message


def test_an_altered_vit_config_is_named_before_transformers_reads_it(data_copy):
    config = data_copy / "models" / "vit-tiny-fashion" / "config.json"
    config.write_text(config.read_text().replace('"hidden_dropout_prob": 0.0', '"hidden_dropout_prob": 0.5'))
    assert paths.shipped_problem(config), "the edit did not change the file (nothing tested)"
    with pytest.raises(ValueError, match=f"{config}.*Fix: `git checkout -- "):
        VisionTransformer.from_hf(config.parent)


def test_an_altered_data_subset_is_named_with_the_fix(data_copy):
    test_npz = data_copy / "fashion_mnist" / "test.npz"
    _alter_keeping_size(test_npz)
    with pytest.raises(ValueError, match=f"{test_npz}.*SHA-256.*Fix: `git checkout -- "):
        data.load_fashion_mnist("test")


def test_an_intact_copy_loads(data_copy):
    model = cnn.load(data_copy / "models" / "cnn-fashion")
    assert isinstance(model, cnn.SmallCNN)
    images, labels = data.load_fashion_mnist("val")
    assert len(images) == len(labels) == 1000


@pytest.mark.parametrize("damage", ["empty model", "empty data", "missing tokenizer", "altered"])
def test_doctor_reports_a_damaged_shipped_file_and_strict_fails(data_copy, damage):
    target = {
        "empty model": data_copy / "models" / "cnn-fashion" / "model.safetensors",
        "empty data": data_copy / "mnist" / "test.npz",
        "missing tokenizer": data_copy / "models" / "clip-tiny-fashion" / "tokenizer.json",
        "altered": data_copy / "models" / "swin-tiny-fashion" / "model.safetensors",
    }[damage]
    if damage.startswith("empty"):
        target.write_bytes(b"")
    elif damage == "missing tokenizer":
        target.unlink()
    else:
        _alter_keeping_size(target)
    out = io.StringIO()
    report = doctor(file=out)
    assert any(str(target) in p and "git checkout -- " in p for p in report.problems), report.problems
    assert "No problems found" not in out.getvalue()
    assert main(["doctor", "--strict"]) == 1
    assert main(["manifest"]) == 1


def test_manifest_update_records_a_deliberate_change(data_copy, capsys):
    weights = data_copy / "models" / "cnn-fashion" / "model.safetensors"
    _alter_keeping_size(weights)
    assert main(["manifest"]) == 1 and str(weights) in capsys.readouterr().err
    assert main(["manifest", "--update"]) == 0
    assert main(["manifest"]) == 0 and paths.manifest_problems() == []
    cnn.load(weights.parent)


def test_a_file_is_hashed_once_until_it_changes(data_copy, monkeypatch):
    calls = []
    real = paths.sha256
    monkeypatch.setattr(paths, "sha256", lambda path: calls.append(path) or real(path))
    labels = data_copy / "labels" / "mnist.json"
    for _ in range(3):
        paths.verify_shipped(labels)
    assert len(calls) == 1, f"hashed {len(calls)} times while unchanged"
    labels.write_text(labels.read_text())  # same bytes, new mtime
    paths.verify_shipped(labels)
    assert len(calls) == 2, "not hashed again after the file changed"


def test_files_outside_data_are_not_checked(tmp_path):
    model = cnn.SmallCNN()
    cnn.save(model, tmp_path / "run")
    loaded = cnn.load(tmp_path / "run")
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
