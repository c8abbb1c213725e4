"""`fit` stops when it should, refuses bad arguments, and resumes an interrupted run exactly.

The fault test kills a training process with SIGKILL (no clean-up runs) between two
checkpoints, resumes it in this process, and compares every loss and weight with an
uninterrupted run of the same seed.
"""

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from vit_course import train
from vit_course.data import make_loader
from vit_course.train import LiveLossPlot, evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import run as tiny_run  # noqa: E402


def _loader(n=32, batch_size=8):
    images = torch.randint(0, 256, (n, 4, 4), dtype=torch.uint8)
    return make_loader(images, torch.arange(n) % 2, batch_size=batch_size)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 2))


def test_fit_stops_at_the_first_non_finite_loss_and_names_the_step():
    model = _model()
    calls = []

    def loss_fn(logits, labels):  # finite for two steps, then NaN
        calls.append(1)
        loss = nn.functional.cross_entropy(logits, labels)
        return loss * math.nan if len(calls) == 3 else loss

    with pytest.raises(train.TrainingDiverged, match="the loss is nan at step 3"):
        fit(model, _loader(), epochs=5, loss_fn=loss_fn)
    assert len(calls) == 3, "training went on after the NaN"
    assert all(bool(p.isfinite().all()) for p in model.parameters()), "the NaN step updated the weights"


def test_fit_with_a_huge_learning_rate_stops_instead_of_training_to_the_end():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 2))
    steps = []
    with pytest.raises(train.TrainingDiverged, match="at step"):
        fit(model, _loader(), optimizer=torch.optim.SGD(model.parameters(), lr=1e4), epochs=20,
            callback=lambda step, loss: steps.append(step))
    assert len(steps) < 20 * 4, "trained to the end"


@pytest.mark.parametrize("kwargs, match", [
    (dict(clip_grad_norm=-1.0), r"clip_grad_norm must be in \(0.0, inf\), got -1"),
    (dict(clip_grad_norm=0.0), "clip_grad_norm must be in"),
    (dict(epochs=0), "epochs must be at least 1, got 0"),
    (dict(epochs=1.5), "epochs must be an integer"),
    (dict(max_steps=0), "max_steps must be at least 1"),
    (dict(lr=-1e-3), "lr must be in"),
    (dict(lr=float("nan")), "lr must be a finite number"),
    (dict(weight_decay=-0.1), "weight_decay must be in"),
    (dict(checkpoint_every=5), "checkpoint_every needs a checkpoint file"),
])
def test_fit_rejects_bad_arguments_before_training(kwargs, match):
    model = _model()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        fit(model, _loader(), **kwargs)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters())), "weights changed"


def test_train_epoch_rejects_a_negative_clip_norm():
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="clip_grad_norm must be in"):
        train.train_epoch(model, _loader(), optimizer, clip_grad_norm=-1)


def test_fit_rejects_an_empty_train_loader():
    with pytest.raises(ValueError, match="at least one batch"):
        fit(_model(), _loader(n=0))


def test_evaluate_on_an_empty_loader_is_nan():
    assert math.isnan(evaluate(_model(), _loader(n=0)))
    assert 0.0 <= evaluate(_model(), _loader()) <= 1.0


def test_live_loss_plot_rejects_every_zero():
    with pytest.raises(ValueError, match="every must be at least 1, got 0"):
        LiveLossPlot(every=0, live=False)
    plot = LiveLossPlot(every=1, live=False)
    plot(1, 0.5)
    assert plot.curves["loss"] == ([1], [0.5])


def test_an_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(_model(), _loader(), checkpoint=checkpoint)
    with pytest.raises(ValueError, match="pass resume=True"):
        fit(_model(), _loader(), checkpoint=checkpoint)


def test_a_broken_checkpoint_names_itself(tmp_path):
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{checkpoint} is not a readable training checkpoint"):
        fit(_model(), _loader(), checkpoint=checkpoint, resume=True)


def test_resume_after_a_finished_run_trains_only_the_new_epochs(tmp_path):
    checkpoint = tmp_path / "run.pt"
    first = fit(_model(), _loader(), epochs=1, checkpoint=checkpoint)
    more = fit(_model(), _loader(), epochs=3, checkpoint=checkpoint, resume=True)
    assert more.losses[:first.steps] == first.losses and more.steps == 3 * first.steps


def test_a_killed_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path):
    reference_model, reference = tiny_run(None)  # 3 epochs of 6 shuffled, augmented batches, dropout
    checkpoint = tmp_path / "run.pt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(train.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    killed = subprocess.run([sys.executable, str(Path(__file__).parent / "_tiny_run.py"), str(checkpoint), "11"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["position"] == {**saved["position"], "epoch": 1, "batch": 3}, "expected the step-9 checkpoint"
    model, history = tiny_run(checkpoint, resume=True)
    assert history.losses == reference.losses, "the resumed run saw other batches or other dropout"
    assert history.val_accuracy == reference.val_accuracy
    for (name, a), b in zip(model.state_dict().items(), reference_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the uninterrupted run"


def test_a_run_interrupted_with_a_progress_bar_resumes_exactly_without_one(tmp_path):
    reference_model, reference = tiny_run(None)  # no bar: the bar must not change the batches
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(checkpoint, progress=True, interrupt_at=11)  # last checkpoint: step 9, mid-epoch
    model, history = tiny_run(checkpoint, resume=True, progress=False)
    assert history.losses == reference.losses
    for (name, a), b in zip(model.state_dict().items(), reference_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the uninterrupted run"
