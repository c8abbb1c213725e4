"""`scripts/train_family.py` writes as `scripts/train_fashion.py` does (`vit_course.runs`): a new
run folder by default, the shipped model replaced only with --ship (and the manifest
updated), arguments checked before training, NaN neither trained through nor saved.

The real trainers take minutes; `main` is run here with a stand-in trainer that returns a
tiny Swin at once, so what is tested is the script's handling of where its model goes.
"""

import importlib.util
import json
import math
import shutil

import pytest
import torch

from vit_course import data as data_module
from vit_course import paths, runs
from vit_course.paths import DATA_DIR
from vit_course.train import TrainingDiverged


@pytest.fixture(scope="module")
def family():
    path = DATA_DIR.parent / "scripts" / "train_family.py"
    spec = importlib.util.spec_from_file_location("train_family_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_swin():
    import transformers

    torch.manual_seed(0)
    config = transformers.SwinConfig(image_size=28, patch_size=2, num_channels=1, embed_dim=8, depths=[1, 1],
                                     num_heads=[1, 2], window_size=7, num_labels=10)
    return transformers.SwinForImageClassification(config)


@pytest.fixture
def fake_trainer(family, monkeypatch):
    """train_swin replaced by one that returns a tiny untrained Swin; `state["nan"]` spoils its weights."""
    state = {"calls": 0, "nan": False}

    def train_swin(hp, seed):
        state["calls"] += 1
        model = tiny_swin()
        if state["nan"]:
            with torch.no_grad():
                next(model.parameters()).fill_(math.nan)
        return model, {"test_accuracy": 0.1, "test_correct": 1000, "history": []}

    monkeypatch.setattr(family, "train_swin", train_swin)
    return state


@pytest.mark.parametrize("argv, match", [
    (["--model", "swin", "--threads", "0"], "--threads must be at least 1, got 0"),
    (["--model", "swin", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--model", "clip", "--epochs", "3"], "clip trains for a number of steps (1500), not epochs"),
    (["--model", "swin", "--out-dir", str(DATA_DIR / "models")], "holds the shipped models: pass --ship"),
    (["--model", "swin", "--ship", "--out-dir", "/tmp/x"], "--ship writes into data/models"),
])
def test_bad_arguments_stop_before_training(family, fake_trainer, capsys, argv, match):
    with pytest.raises(SystemExit) as exit_info:
        family.main(argv)
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err
    assert fake_trainer["calls"] == 0, "training started before the arguments were checked"


def test_an_out_dir_that_is_a_file_stops_before_training(family, fake_trainer, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        family.main(["--model", "swin", "--out-dir", str(blocker)])
    assert exit_info.value.code == 2 and f"{blocker} is a file, not a folder" in capsys.readouterr().err
    assert fake_trainer["calls"] == 0


def test_the_default_output_is_a_new_run_folder(family):
    parser = family.build_parser()
    args = parser.parse_args(["--model", "mae"])
    family.check_args(args, parser)
    assert args.out_dir.parent == runs.RUNS_DIR and not args.overwrite


def test_a_run_writes_its_folder_and_is_not_replaced_silently(family, fake_trainer, tmp_path, capsys):
    import transformers

    out = tmp_path / "runs"
    assert family.main(["--model", "swin", "--out-dir", str(out)]) == 0
    folder = out / "swin-tiny-fashion"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["command"] == "python scripts/train_family.py --model swin"
    assert metrics["sha256"] == {f.name: paths.sha256(f) for f in folder.iterdir() if f.name != "metrics.json"}
    transformers.SwinForImageClassification.from_pretrained(folder)
    with pytest.raises(SystemExit) as exit_info:
        family.main(["--model", "swin", "--out-dir", str(out)])
    assert exit_info.value.code == 2 and "already exist: pass --overwrite" in capsys.readouterr().err
    assert family.main(["--model", "swin", "--out-dir", str(out), "--overwrite"]) == 0


def test_non_finite_weights_are_not_saved_and_the_run_exits_1(family, fake_trainer, tmp_path, capsys):
    fake_trainer["nan"] = True
    out = tmp_path / "runs"
    assert family.main(["--model", "swin", "--out-dir", str(out)]) == 1
    assert "non-finite weights" in capsys.readouterr().err
    assert not (out / "swin-tiny-fashion").exists()


def test_a_nan_loss_stops_before_the_update(family):
    family.check_loss(torch.tensor(0.5), "swin", 0)
    with pytest.raises(TrainingDiverged, match="swin: the loss is nan at step 4"):
        family.check_loss(torch.tensor(math.nan), "swin", 3)


def test_shipping_replaces_the_model_in_data_and_updates_the_manifest(family, fake_trainer, tmp_path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    for module in (paths, data_module):
        monkeypatch.setattr(module, "DATA_DIR", copy)
    weights = copy / "models" / "swin-tiny-fashion" / "model.safetensors"
    before = paths.sha256(weights)
    assert family.main(["--model", "swin", "--ship"]) == 0
    assert paths.sha256(weights) != before, "--ship did not replace the shipped model"
    assert paths.manifest_problems(copy) == [], "data/MANIFEST.json does not record the new model"
    assert paths.sha256(DATA_DIR / "models" / "swin-tiny-fashion" / "model.safetensors") == before


def test_the_script_needs_no_sys_path_hack():
    source = (DATA_DIR.parent / "scripts" / "train_family.py").read_text()
    assert "sys.path.insert" not in source and "tempfile" not in source, "use the installed package's helpers"
