"""`fit` stops when it should, refuses bad arguments, and resumes an interrupted run exactly.

The fault tests stop a training process with SIGKILL (no clean-up runs) between two
checkpoints, with SIGTERM and SIGINT at chosen points of a step (inside the update, in the
forward pass) and from outside at a moment nobody chose; each resumes it in this process
and compares every loss and weight with an uninterrupted run of the same seed.
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
from vit_course.train import History, LiveLossPlot, evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))
from _tiny_run import run as tiny_run, tiny_run as _tiny_parts  # noqa: E402


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


def _default_signals():
    """SIGINT and SIGTERM as a terminal's program gets them. A shell without job control
    starts background commands (`make test &`, nohup) with SIGINT ignored, which their
    children inherit, and `fit` rightly leaves an ignored signal ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def default_signal_handlers():
    """This process's handlers as Python installs them from `_default_signals`' dispositions,
    for the test, then whatever they were."""
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


def _child(checkpoint, how, step, **kwargs):
    """`tests/_tiny_run.py` in a new process, with this checkout's package first on its path
    and the default signal dispositions."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(train.__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(Path(__file__).parent / "_tiny_run.py"), str(checkpoint), how,
                             str(step)], env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals, **kwargs)


def _assert_same_run(model, history, reference_model, reference):
    assert history.losses == reference.losses, "the resumed run saw other batches or other dropout"
    assert history.val_accuracy == reference.val_accuracy
    for (name, a), b in zip(model.state_dict().items(), reference_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the uninterrupted run"


@pytest.fixture(scope="module")
def reference():
    return tiny_run(None)  # 3 epochs of 6 shuffled, augmented batches, dropout, a step schedule


def test_a_killed_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(tmp_path, reference):
    checkpoint = tmp_path / "run.pt"
    killed = _child(checkpoint, "kill", 11)
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["position"] == {**saved["position"], "epoch": 1, "batch": 3}, "expected the step-9 checkpoint"
    _assert_same_run(*tiny_run(checkpoint, resume=True), *reference)


@pytest.mark.parametrize("how, step, saved_steps, signum", [
    ("sigterm-in-update", 8, 8, signal.SIGTERM),  # lands between optimizer.step() and scheduler.step()
    ("sigint-in-forward", 8, 7, signal.SIGINT),  # lands before step 8's update
])
def test_a_signalled_run_saves_where_it_stopped_and_resumes_exactly(tmp_path, reference, how, step, saved_steps,
                                                                     signum):
    """No checkpoint_every: the only mid-epoch checkpoint is the one the interrupt writes."""
    checkpoint = tmp_path / "run.pt"
    child = _child(checkpoint, how, step)
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signum, f"expected the process to end by {signum!r}, got {child.returncode}: {err}"
    saved = torch.load(checkpoint, weights_only=True)
    assert len(saved["history"]["losses"]) == saved_steps, "the checkpoint is not at the last finished step"
    assert saved["position"]["epoch"] == 1 and saved["position"]["batch"] == saved_steps - 6
    assert saved["scheduler"]["last_epoch"] == saved_steps, "the scheduler was saved out of step with the optimizer"
    _assert_same_run(*tiny_run(checkpoint, resume=True), *reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_run_signalled_from_outside_at_any_moment_resumes_exactly(tmp_path, reference, signum):
    checkpoint = tmp_path / "run.pt"
    child = _child(checkpoint, "wait", 0)
    for line in child.stdout:  # let it train a few steps, then signal it wherever it is
        if line.strip() == "step 4":
            break
    child.send_signal(signum)
    _, err = child.communicate(timeout=300)
    assert child.returncode == -signum, err
    saved = torch.load(checkpoint, weights_only=True)
    assert 4 <= len(saved["history"]["losses"]) < 18, "expected a checkpoint from the middle of the run"
    _assert_same_run(*tiny_run(checkpoint, resume=True), *reference)


def test_a_keyboard_interrupt_saves_the_last_step_and_is_raised_again(tmp_path, reference):
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt) as info:
        tiny_run(checkpoint, interrupt_at=11)  # no checkpoint_every: only the interrupt saves mid-epoch
    assert f"saved to {checkpoint} after step 11" in "".join(getattr(info.value, "__notes__", [""]))
    assert len(torch.load(checkpoint, weights_only=True)["history"]["losses"]) == 11
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "fit left its SIGINT handler installed"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    _assert_same_run(*tiny_run(checkpoint, resume=True), *reference)


def test_an_interrupt_without_a_checkpoint_only_stops(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        tiny_run(None, interrupt_at=3)
    assert not list(tmp_path.iterdir())


def test_a_keyboard_interrupt_without_a_checkpoint_keeps_the_history_passed_in():
    """The notebook's stop button: fit returns nothing, but the History given to it holds every finished step."""
    uninterrupted = fit(_model(), _loader(), epochs=3)

    def stop(step, loss):
        if step == 6:
            raise KeyboardInterrupt

    history = History()
    with pytest.raises(KeyboardInterrupt) as info:
        fit(_model(), _loader(), epochs=3, callback=stop, history=history)
    assert history.losses == uninterrupted.losses[:6], "the steps before the interrupt were lost"
    assert history.val_accuracy == []
    assert "interrupted after 6 finished steps" in "".join(getattr(info.value, "__notes__", [""]))


@pytest.mark.parametrize("history", [History(losses=[0.5]), {"losses": []}], ids=["not empty", "not a History"])
def test_fit_records_only_into_an_empty_history(history):
    with pytest.raises(ValueError, match="history must be an empty History"):
        fit(_model(), _loader(), history=history)


def test_a_resumed_run_fills_the_history_passed_in(tmp_path, reference):
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(checkpoint, interrupt_at=11)
    model, loader, optimizer, scheduler = _tiny_parts()
    history = History()
    returned = fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=3, val_loader=loader,
                   checkpoint=checkpoint, resume=True, history=history)
    assert returned is history
    _assert_same_run(model, history, *reference)


def test_a_run_interrupted_with_a_progress_bar_resumes_exactly_without_one(tmp_path, reference):
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        tiny_run(checkpoint, progress=True, interrupt_at=11, checkpoint_every=3)
    _assert_same_run(*tiny_run(checkpoint, resume=True, progress=False), *reference)
