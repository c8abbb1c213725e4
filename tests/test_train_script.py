"""The pieces of `scripts/train_fashion.py` that shaped the shipped ViT: distillation and its data."""

import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from vit_course.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, to_model_input
from vit_course.paths import DATA_DIR


@pytest.fixture(scope="module")
def script():
    path = DATA_DIR.parent / "scripts" / "train_fashion.py"
    spec = importlib.util.spec_from_file_location("train_fashion", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_fashion"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("train_fashion", None)


@pytest.fixture
def recipe(script):
    return script.RECIPES["vit"]  # alpha 0.5, T 2, label smoothing 0.1


def test_distillation_loss_without_teacher_weight_is_the_smoothed_cross_entropy(script, recipe):
    logits, labels, teacher = torch.randn(6, 10), torch.arange(6), torch.randn(6, 10)
    loss = script.distillation_loss(logits, labels, teacher, script.dataclasses.replace(recipe, distill_alpha=0.0))
    expected = nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_distillation_loss_is_half_the_cross_entropy_when_student_equals_teacher(script, recipe):
    logits, labels = torch.randn(6, 10), torch.arange(6)
    loss = script.distillation_loss(logits, labels, logits.clone(), recipe)
    expected = 0.5 * nn.functional.cross_entropy(logits, labels, label_smoothing=0.1)
    torch.testing.assert_close(loss, expected)


def test_distillation_loss_pulls_the_student_towards_the_teacher(script, recipe):
    labels = torch.zeros(4, dtype=torch.long)
    teacher = torch.tensor([[0.0, 5.0, 0.0]]).repeat(4, 1)  # the teacher says class 1
    student = torch.zeros(4, 3, requires_grad=True)
    script.distillation_loss(student, labels, teacher, script.dataclasses.replace(recipe, distill_alpha=1.0)).backward()
    assert (student.grad[:, 1] < 0).all(), "a gradient step should raise the teacher's class"
    assert (student.grad[:, [0, 2]] > 0).all()


def test_teacher_targets_give_the_teacher_logits_of_the_view_the_student_sees(script):
    images = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    labels = torch.arange(40) % 10
    # view 0 (as is) says 0, view 1 (mirrored) says 1, per image
    teacher = torch.stack([torch.zeros(40, 10), torch.ones(40, 10)])
    data = script.TeacherTargets(images, labels, teacher, flip_p=0.5, channels=3)
    torch.manual_seed(0)
    flips = 0
    for i in range(len(data)):
        x, y, t = data[i]
        assert x.shape == (3, 28, 28) and y == labels[i]
        plain = to_model_input(images[i], FASHION_MNIST_MEAN, FASHION_MNIST_STD, 3)
        mirrored = to_model_input(images[i].flip(-1), FASHION_MNIST_MEAN, FASHION_MNIST_STD, 3)
        if torch.equal(t, teacher[1, i]):
            torch.testing.assert_close(x, mirrored)
            flips += 1
        else:
            torch.testing.assert_close(x, plain)
            assert torch.equal(t, teacher[0, i])
    assert 5 < flips < 35, f"{flips} of 40 mirrored with p = 0.5"


def test_teacher_logits_cover_both_views(script):
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    seen = []

    class Recorder(nn.Module):
        def forward(self, x):  # (B, 1, 28, 28) -> (B, 10): the top row's first pixels, which a mirror changes
            seen.append(x.shape)
            return x[:, 0, 0, :10]

    logits = script.teacher_logits(Recorder(), images, batch_size=3)
    assert logits.shape == (2, 7, 10)
    assert all(shape[1] == 1 for shape in seen), "the CNN teacher takes one channel"
    plain = to_model_input(images, FASHION_MNIST_MEAN, FASHION_MNIST_STD, 1)
    torch.testing.assert_close(logits[0], plain[:, 0, 0, :10])
    torch.testing.assert_close(logits[1], plain.flip(-1)[:, 0, 0, :10])


def test_recorded_command_leaves_out_the_output_folder(script, monkeypatch):
    argv = ["scripts/train_fashion.py", "--model", "vit", "--out-dir", "/tmp/x", "--threads", "2", "--out-dir=/y"]
    monkeypatch.setattr(sys, "argv", argv)
    assert script.command_args() == ["--model", "vit", "--threads", "2"]


# ---------------------------------------------------------------------------
# Nothing shipped is lost: arguments checked first, new run folder, NaN never saved


@pytest.mark.parametrize("argv, match", [
    (["--limit", "0"], "--limit must be at least 1, got 0"),
    (["--limit", "-5"], "--limit must be at least 1, got -5"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--model", "vit", "--num-heads", "5"], "--hidden-size 96 must be divisible by --num-heads 5"),
    (["--model", "vit", "--patch-size", "5"], "--patch-size must divide the 28-pixel images"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "-1"], "--lr must be in"),
    (["--label-smoothing", "1.5"], "--label-smoothing must be in"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--model", "vit", "--teacher", "/nonexistent"], "--teacher /nonexistent has no config.json"),
    (["--out-dir", str(DATA_DIR / "models")], "holds the shipped models: pass --ship"),
    (["--ship", "--out-dir", "/tmp/x"], "--ship writes into data/models"),
    (["--max-steps", "0"], "--max-steps must be at least 1, got 0"),
    (["--warmup-epochs", "-1"], "--warmup-epochs must be in"),
    (["--model", "vit", "--distill-alpha", "2"], "--distill-alpha must be in"),
    (["--model", "vit", "--augment", "shift_flip"], "distillation supports --augment flip or none"),
])
def test_bad_arguments_stop_before_any_data_is_read(script, monkeypatch, capsys, argv, match):
    def no_data(*args, **kwargs):
        raise AssertionError("data was read before the arguments were checked")

    monkeypatch.setattr(script, "load_fashion_mnist", no_data)
    with pytest.raises(SystemExit) as exit_info:
        script.main(argv)
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err


def test_an_out_dir_that_is_a_file_stops_before_training(script, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit):
        script.main(["--out-dir", str(blocker)])
    assert f"{blocker} is a file, not a folder" in capsys.readouterr().err


def test_the_default_output_is_a_new_run_folder_not_the_shipped_models(script):
    parser = script.build_parser()
    args = parser.parse_args(["--limit", "256"])
    script.check_args(args, parser)
    assert args.out_dir.parent == script.RUNS_DIR, args.out_dir
    assert not args.out_dir.resolve().is_relative_to(DATA_DIR.resolve())
    args = parser.parse_args(["--ship"])
    script.check_args(args, parser)
    assert args.out_dir == DATA_DIR / "models" and args.overwrite


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.tobytes())


@pytest.fixture(scope="module")
def fake_fashion_root(tmp_path_factory):
    """Learnable stand-ins for the official idx files (60k train, 10k test), as the script reads them."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for split, n in (("train", 60000), ("t10k", 10000)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 60 + labels[:, None, None] * 19).astype(np.uint8)
        _idx(root / f"{split}-images-idx3-ubyte", images)
        _idx(root / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture
def fake_full_fashion(fake_fashion_root, monkeypatch):
    root = fake_fashion_root
    monkeypatch.setenv("VIT_COURSE_FASHION_MNIST", str(root))
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    yield root
    torch.set_num_threads(threads)  # the script sets both for the whole process
    torch.use_deterministic_algorithms(deterministic)


TINY_RUN = ["--model", "cnn", "--epochs", "1", "--limit", "256", "--batch-size", "32", "--threads", "1"]


def test_a_diverging_run_saves_nothing_and_exits_non_zero(script, fake_full_fashion, tmp_path, capsys):
    out = tmp_path / "runs"
    assert script.main([*TINY_RUN, "--lr", "1e4", "--out-dir", str(out)]) == 1
    assert "training diverged" in capsys.readouterr().err
    assert not (out / "cnn-fashion").exists(), "non-finite weights were saved"


def test_a_run_writes_its_folder_with_hashes_and_is_not_replaced_silently(script, fake_full_fashion, tmp_path,
                                                                            capsys):
    from vit_course import cnn
    from vit_course.paths import sha256

    out = tmp_path / "runs"
    assert script.main([*TINY_RUN, "--out-dir", str(out)]) == 0
    folder = out / "cnn-fashion"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["train_images"] == 256
    assert metrics["sha256"] == {f: sha256(folder / f) for f in ("config.json", "model.safetensors")}
    cnn.load(folder)
    with pytest.raises(SystemExit):
        script.main([*TINY_RUN, "--out-dir", str(out)])
    assert "already exist: pass --overwrite" in capsys.readouterr().err


def test_non_finite_weights_are_never_written(script, tmp_path):
    from vit_course import cnn

    model = cnn.SmallCNN()
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    with pytest.raises(script.TrainingDiverged, match="non-finite weights"):
        script.write_model_dir("cnn", model, tmp_path / "cnn-fashion", {})
    assert not (tmp_path / "cnn-fashion").exists()


# ---------------------------------------------------------------------------
# One training path: the script is vit_course.train.fit plus a recipe, and measures with train.predict


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_the_scripts_measurements_reproduce_the_shipped_models_recorded_figures(script, kind):
    """What metrics.json recorded (official 10k test split, shipped test and val subsets),
    measured again by the script's own evaluation (vit_course.train.predict)."""
    from transformers import AutoModelForImageClassification

    from vit_course import cnn
    from vit_course.data import load_fashion_mnist

    folder = DATA_DIR / "models" / script.OUT_NAMES[kind]
    metrics = json.loads((folder / "metrics.json").read_text())
    model = cnn.load(folder) if kind == "cnn" else AutoModelForImageClassification.from_pretrained(folder)
    channels = script.RECIPES[kind].channels
    assert channels == metrics["hyperparameters"]["input_channels"]
    _, correct = script.measure(model, *load_fashion_mnist("test", source="full"), channels)
    assert correct == metrics["test_correct"], f"{correct} of 10000 correct, metrics.json says {metrics['test_correct']}"
    _, correct = script.measure(model, *load_fashion_mnist("test"), channels)
    assert correct == metrics["test_subset_correct"]
    accuracy, _ = script.measure(model, *load_fashion_mnist("val"), channels)
    assert accuracy == metrics["val_subset_accuracy"]


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_the_shipped_recipe_is_the_one_metrics_json_records(script, kind):
    """The recipe the script would train with, field by field, against the shipped model's record."""
    recorded = json.loads((DATA_DIR / "models" / script.OUT_NAMES[kind] / "metrics.json").read_text())["hyperparameters"]
    recipe = script.dataclasses.asdict(script.RECIPES[kind])
    recipe.pop("clip_grad_norm")
    assert recorded["grad_clip"] == script.RECIPES[kind].clip_grad_norm
    assert {k: recorded[k] for k in recipe} == recipe
    assert recorded["augmentation"] == repr(script.AUGMENTATIONS[recipe["augment"]])


def test_the_script_trains_with_fit_and_transformers_schedule(script, fake_full_fashion, tmp_path, monkeypatch):
    from transformers import get_cosine_schedule_with_warmup

    calls = []
    real_fit = script.fit

    def recording_fit(model, loader, **kwargs):
        lrs = []
        callback = lambda step, loss: lrs.append(kwargs["optimizer"].param_groups[0]["lr"])  # noqa: E731
        calls.append((kwargs, lrs, len(loader)))
        return real_fit(model, loader, callback=callback, **kwargs)

    monkeypatch.setattr(script, "fit", recording_fit)
    assert script.main([*TINY_RUN, "--epochs", "2", "--no-save"]) == 0
    (kwargs, lrs, steps_per_epoch), = calls
    assert kwargs["clip_grad_norm"] == 1.0 and kwargs["epochs"] == 2 and kwargs["val_loader"] is not None
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=2e-3)
    expected = get_cosine_schedule_with_warmup(optimizer, steps_per_epoch, 2 * steps_per_epoch)
    want = []
    for _ in range(2 * steps_per_epoch):  # the lr after each step, as fit's callback sees it
        optimizer.step()
        expected.step()
        want.append(optimizer.param_groups[0]["lr"])
    assert lrs == want


def test_a_rerun_reproduces_the_recorded_first_losses_step_by_step(script, fake_full_fashion, tmp_path):
    """The script records the loss of its first steps in metrics.json; the same command,
    stopped early with --max-steps (same schedule), gives them again, bit for bit."""
    out = tmp_path / "runs"
    assert script.main([*TINY_RUN, "--out-dir", str(out)]) == 0
    recorded = json.loads((out / "cnn-fashion" / "metrics.json").read_text())
    assert len(recorded["first_losses"]) == 8  # 256 images in batches of 32
    again = tmp_path / "again"
    assert script.main([*TINY_RUN, "--max-steps", "5", "--out-dir", str(again)]) == 0
    rerun = json.loads((again / "cnn-fashion" / "metrics.json").read_text())
    assert rerun["first_losses"] == recorded["first_losses"][:5]


def test_a_distilled_vit_run_writes_a_model_transformers_loads(script, fake_full_fashion, tmp_path):
    from transformers import AutoModelForImageClassification

    out = tmp_path / "runs"
    tiny_vit = ["--model", "vit", "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2"]
    assert script.main([*tiny_vit, *TINY_RUN[2:], "--out-dir", str(out)]) == 0
    folder = out / "vit-tiny-fashion"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["hyperparameters"]["distill_alpha"] == 0.5 and "teacher" in metrics["hyperparameters"]
    model = AutoModelForImageClassification.from_pretrained(folder)
    assert model.config.hidden_size == 16 and model.config.num_labels == 10
