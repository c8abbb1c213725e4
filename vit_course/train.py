"""A small training loop for every model in the course: `train_epoch`, `evaluate`, `fit`.

The notebooks train three kinds of model with the same few lines:
- Hugging Face `ViTForImageClassification` (called with `pixel_values=`, returns `.logits`),
- `vit_course.VisionTransformer` (also takes `pixel_values`, returns the logits),
- plain `nn.Module`s such as `vit_course.cnn.SmallCNN` (called with the tensor).
`logits_of` hides the difference. A batch is either `(x, y)` (what
`vit_course.data.make_loader` yields) or a dict `{"pixel_values", "labels"}` (what HF's
`Trainer` takes), so one Dataset serves both APIs.

`fit(..., progress=True)` shows a tqdm bar; `callback(step, loss)` runs after every
optimiser step, e.g. a `LiveLossPlot` that redraws a loss curve in the notebook every few
steps. The loop is what `transformers.Trainer` does for us, written out: forward, loss,
backward, (clip), step, schedule.

A loss that needs more than logits and labels plugs in as `compute_loss(model, batch)`
(what `transformers.Trainer.compute_loss` is): `scripts/train_fashion.py` distils its ViT
from a CNN's logits that way, with the library's `get_cosine_schedule_with_warmup`.

What it does not do silently: a NaN or infinite loss stops training with
`TrainingDiverged` naming the step (before that step's update); bad arguments are a
ValueError before the first step. `fit(..., checkpoint="run.pt")` saves model, optimizer,
scheduler, history and RNG states after every epoch (and every `checkpoint_every` steps),
and when the run is interrupted (KeyboardInterrupt, SIGINT, SIGTERM) at its last finished
step; `resume=True` replays the interrupted epoch's shuffle and continues exactly where the
checkpoint stopped, so an interrupted run ends with the same weights as an uninterrupted one.

Used by notebooks 04, 06 and 08.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import signal
import threading
from collections.abc import Callable, Iterable
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .paths import atomic_write
from .validation import integer, number

Callback = Callable[[int, float], None]


def unpack(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch `(x, y)` or `{"pixel_values": x, "labels": y}` -> `(x, y)`."""
    if isinstance(batch, dict):
        return batch["pixel_values"], batch["labels"]
    x, y = batch
    return x, y


def _takes_pixel_values(model: nn.Module) -> bool:
    try:
        return "pixel_values" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits `(B, num_labels)` of any course model for images `x` `(B, C, H, W)`."""
    out = model(pixel_values=x) if _takes_pixel_values(model) else model(x)
    return out.logits if hasattr(out, "logits") else out


def _device_of(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _progress(iterable, enabled: bool, **kwargs):
    """An iterator over `iterable`, shown as a tqdm bar when `enabled`.

    The iterator is made here, once, and the bar wraps it: `tqdm.auto`'s bar calls
    `iter()` on what it is given when it is made and again when it is iterated, and every
    `iter()` of a shuffled DataLoader draws a fresh order from its generator. Wrapping the
    iterator keeps the batch order (and so the weights) the same with and without a bar.
    """
    batches = iter(iterable)
    if not enabled:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, **kwargs)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite: training stopped before that step's update."""


# compute_loss(model, batch) -> loss; the batch as the loader yields it (on the CPU)
ComputeLoss = Callable[[nn.Module, Any], torch.Tensor]


def _check_clip(clip_grad_norm) -> None:
    if clip_grad_norm is not None:
        number(clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)


def _loss_hook(loss_fn: Callable | None, compute_loss: ComputeLoss | None, device: torch.device) -> ComputeLoss:
    """`compute_loss(model, batch) -> loss`, by default `loss_fn(logits_of(model, x), y)` on `device`."""
    if compute_loss is not None:
        if loss_fn is not None:
            raise ValueError("pass loss_fn (logits, labels) or compute_loss (model, batch), not both")
        if not callable(compute_loss):
            raise ValueError(f"compute_loss must be a function (model, batch) -> loss, got {compute_loss!r}")
        return compute_loss
    loss_fn = loss_fn or nn.functional.cross_entropy

    def default(model: nn.Module, batch) -> torch.Tensor:
        x, y = unpack(batch)
        return loss_fn(logits_of(model, x.to(device)), y.to(device))

    return default


def _backward(model, batch, optimizer, compute_loss: ComputeLoss, clip_grad_norm, step: int) -> float:
    """Loss and gradients of one batch; `step` (counted from 1) names it if the loss is not finite."""
    loss = compute_loss(model, batch)
    value = loss.item()
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"the loss is {value} at step {step}: training stopped before that step's update. "
            "Lower the learning rate, or clip gradients with clip_grad_norm=1.0"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
    return value


def _update(optimizer, scheduler) -> None:
    optimizer.step()
    if scheduler is not None:
        scheduler.step()


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    loss_fn: Callable | None = None,
    compute_loss: ComputeLoss | None = None,
    max_steps: int | None = None,
    clip_grad_norm: float | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    step: int = 0,
    desc: str = "train",
) -> list[float]:
    """One pass over `loader` (or `max_steps` batches); returns the loss of every step.

    Args:
        scheduler: stepped after every optimiser step (e.g. `get_cosine_schedule_with_warmup`).
        loss_fn: `loss_fn(logits, labels)`; default cross-entropy.
        compute_loss: `compute_loss(model, batch) -> loss` instead of `loss_fn`, for a loss
            that needs more than logits and labels (as `transformers.Trainer.compute_loss`).
        clip_grad_norm: clip the global gradient norm to this value (> 0) when given.
        callback: `callback(step, loss)` after every step, `step` counted from `step + 1`.

    Raises `TrainingDiverged` (naming the step) when the loss is NaN or infinite.
    """
    _check_clip(clip_grad_norm)
    if max_steps is not None:
        integer(max_steps, "max_steps", minimum=0)
    compute_loss = _loss_hook(loss_fn, compute_loss, _device_of(model))
    model.train()
    losses = []
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    for batch in _progress(loader, progress, total=total, desc=desc, leave=True):
        if max_steps is not None and len(losses) >= max_steps:
            break
        losses.append(_backward(model, batch, optimizer, compute_loss, clip_grad_norm, step + len(losses) + 1))
        _update(optimizer, scheduler)
        if callback is not None:
            callback(step + len(losses), losses[-1])
    return losses


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and true labels of every example in `loader`: two `(N,)` tensors."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    preds, labels = [], []
    for batch in loader:
        x, y = unpack(batch)
        preds.append(logits_of(model, x.to(device)).argmax(dim=-1).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    if not labels:  # an empty loader
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: nn.Module, loader: Iterable) -> float:
    """Accuracy of `model` on `loader`, a fraction in [0, 1] (eval mode, no gradients);
    nan for a loader with no examples."""
    preds, labels = predict(model, loader)
    return float((preds == labels).float().mean()) if len(labels) else math.nan


@dataclass
class History:
    """What `fit` returns: the loss of every step and the accuracy after every epoch."""

    losses: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)


# ---------------------------------------------------------------------------
# Checkpoints: everything a run needs to continue exactly where it stopped


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))


def save_checkpoint(path, model, optimizer, scheduler, history: History, position: dict, rng: dict) -> None:
    """Write model, optimizer, scheduler, history and RNG states to `path`, atomically.

    `position` says where the run is: epoch, batches done in it, and the RNG states at
    that epoch's start (to replay its shuffle); `rng` the RNG states at that point
    (`{"global": ..., "loader": ...}`).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": {"losses": history.losses, "val_accuracy": history.val_accuracy},
        "position": position,
        "rng": rng,
    }
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path) -> dict:
    """Read a checkpoint written by `fit(checkpoint=...)`; a broken file names itself."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(
            f"{path} is not a readable training checkpoint ({type(err).__name__}: {err}). "
            "Fix: delete it and train again without resume"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by vit_course.train.fit")
    return state


CHECKPOINT_FORMAT = "vit_course.train.fit/1"


class _Interrupts:
    """SIGINT and SIGTERM as `KeyboardInterrupt` while `fit` runs, held back during an update.

    Python's own SIGINT handler can raise between `optimizer.step()` and `scheduler.step()`,
    leaving a state no checkpoint can describe. Inside `with interrupts.held():` a signal is
    only noted, and raised when the block ends. SIGTERM (whose default kills the process
    with no clean-up) becomes an interrupt too, so `fit` can save before the process ends;
    `fit` then ends the process with SIGTERM, as it would have. Handlers are installed only
    in the main thread and only over Python's defaults: a handler someone else set stays.
    """

    DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}

    def __init__(self, install: bool):
        self.install, self.holding, self.pending, self.signum = install, False, None, None
        self.previous: dict = {}

    def __enter__(self) -> "_Interrupts":
        if self.install and threading.current_thread() is threading.main_thread():
            for signum, default in self.DEFAULTS.items():
                if signal.getsignal(signum) is default:
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum, frame) -> None:
        if self.holding:
            self.pending = signum
            return
        self.signum = signum
        raise KeyboardInterrupt(signal.Signals(signum).name)

    @contextlib.contextmanager
    def held(self):
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.pending is not None:
            self.signum, self.pending = self.pending, None
            raise KeyboardInterrupt(signal.Signals(self.signum).name)


def fit(
    model: nn.Module,
    train_loader: Iterable,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    epochs: int = 1,
    max_steps: int | None = None,
    scheduler=None,
    val_loader: Iterable | None = None,
    loss_fn: Callable | None = None,
    compute_loss: ComputeLoss | None = None,
    clip_grad_norm: float | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    epoch_callback: Callable[[int, History], None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> History:
    """Train `model` for `epochs` passes (at most `max_steps` steps in all).

    Args:
        optimizer: default AdamW(lr, weight_decay) over the parameters that require grad.
        scheduler: stepped after every step.
        val_loader: when given, `evaluate` runs after every epoch.
        loss_fn: `loss_fn(logits, labels)`; default cross-entropy.
        compute_loss: `compute_loss(model, batch) -> loss` instead of `loss_fn`, for a loss
            that needs more than logits and labels, e.g. distillation from a teacher's
            logits carried in the batch (as `transformers.Trainer.compute_loss`).
        clip_grad_norm: clip the global gradient norm to this value (> 0) when given.
        progress: a tqdm bar per epoch (it does not change the batches).
        callback: `callback(step, loss)` after every step, e.g. a `LiveLossPlot`.
        epoch_callback: `epoch_callback(epoch, history)` after every epoch (counted from
            1) and its evaluation, e.g. to keep the weights of the best epoch.
        checkpoint: a file to save the run to after every epoch (and every
            `checkpoint_every` steps): model, optimizer, scheduler, history, RNG states.
            A KeyboardInterrupt, SIGINT or SIGTERM saves it at the last finished step,
            then goes on (the interrupt is raised again, SIGTERM ends the process).
        resume: continue the run saved in `checkpoint` (if the file exists) exactly
            where it stopped; the same call (same arguments; `progress` may differ)
            then finishes an interrupted run as if it had never stopped. A callback that
            draws random numbers is not replayed.

    Raises `TrainingDiverged` naming the step when the loss becomes NaN or infinite.
    """
    integer(epochs, "epochs", minimum=1)
    if max_steps is not None:
        integer(max_steps, "max_steps", minimum=1)
    number(lr, "lr", low=0.0, low_open=True)
    number(weight_decay, "weight_decay", low=0.0)
    _check_clip(clip_grad_norm)
    if checkpoint_every is not None:
        integer(checkpoint_every, "checkpoint_every", minimum=1)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs a checkpoint file: pass checkpoint='run.pt'")
    if hasattr(train_loader, "__len__") and len(train_loader) == 0:
        raise ValueError("expected a train_loader with at least one batch, got an empty one")
    compute_loss = _loss_hook(loss_fn, compute_loss, _device_of(model))
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history = History()
    start_epoch, skip, saved = 0, 0, None
    if checkpoint is not None and Path(checkpoint).exists():
        if not resume:
            raise ValueError(
                f"checkpoint {checkpoint} exists: pass resume=True to continue that run, "
                "or delete the file to start again"
            )
        saved = load_checkpoint(checkpoint)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None and saved["scheduler"] is not None:
            scheduler.load_state_dict(saved["scheduler"])
        history = History(list(saved["history"]["losses"]), list(saved["history"]["val_accuracy"]))
        start_epoch, skip = saved["position"]["epoch"], saved["position"]["batch"]
    generator = getattr(train_loader, "generator", None)

    def rng_now() -> dict:
        return {"global": _rng_state(), "loader": generator.get_state() if generator is not None else None}

    def set_rng(state: dict) -> None:
        _set_rng_state(state["global"])
        if generator is not None and state["loader"] is not None:
            generator.set_state(state["loader"])

    # Where the run stands after its last finished step: what an interrupt saves. None
    # while nothing changed since the last save (or since the checkpoint was read)
    mark: dict | None = None

    def save(epoch: int, batch: int, epoch_rng: dict, rng: dict) -> None:
        nonlocal mark
        position = {"epoch": epoch, "batch": batch, "epoch_rng": epoch_rng}
        save_checkpoint(checkpoint, model, optimizer, scheduler, history, position, rng)
        mark = None

    with _Interrupts(install=checkpoint is not None) as interrupts:
        try:
            for epoch in range(start_epoch, epochs):
                if max_steps is not None and history.steps >= max_steps:
                    break
                if saved is not None:  # resuming: the RNG as it was when this epoch (or the checkpoint) began
                    set_rng(saved["position"]["epoch_rng"] if skip else saved["rng"])
                epoch_rng = rng_now()
                model.train()
                total = len(train_loader) if hasattr(train_loader, "__len__") else None
                batches = _progress(train_loader, progress, total=total,
                                    desc=f"epoch {epoch + 1}/{epochs}", leave=True)
                for _ in range(skip):  # replay the interrupted epoch's shuffle up to where it stopped
                    next(batches)
                if saved is not None and skip:
                    set_rng(saved["rng"])  # then the RNG as it was when the checkpoint was written
                done = skip
                skip, saved = 0, None
                for batch in batches:
                    if max_steps is not None and history.steps >= max_steps:
                        break
                    loss = _backward(model, batch, optimizer, compute_loss, clip_grad_norm, history.steps + 1)
                    with interrupts.held():  # the update and its record: all of it or none
                        _update(optimizer, scheduler)
                        history.losses.append(loss)
                        done += 1
                        if checkpoint is not None:
                            mark = {"epoch": epoch, "batch": done, "epoch_rng": epoch_rng, "rng": rng_now()}
                    if callback is not None:
                        callback(history.steps, history.losses[-1])
                    if checkpoint_every is not None and history.steps % checkpoint_every == 0:
                        save(**mark)
                if val_loader is not None:
                    history.val_accuracy.append(evaluate(model, val_loader))
                if checkpoint is not None:
                    if total is not None and done < total:  # stopped by max_steps inside the epoch
                        save(epoch, done, epoch_rng, rng_now())
                    else:
                        save(epoch + 1, 0, epoch_rng, rng_now())
                if epoch_callback is not None:
                    epoch_callback(epoch + 1, history)
        except KeyboardInterrupt as err:
            signum, interrupts.signum = interrupts.signum, None
            if mark is not None:
                with interrupts.held():  # a second Ctrl-C does not stop the save halfway
                    save(**mark)
                if hasattr(err, "add_note"):  # Python 3.11+
                    err.add_note(f"fit: the run was saved to {checkpoint} after step {history.steps}; "
                                 "continue it with the same call and resume=True")
            if signum == signal.SIGTERM and interrupts.previous.get(signal.SIGTERM) is signal.SIG_DFL:
                interrupts.__exit__()
                signal.raise_signal(signal.SIGTERM)  # end the process as SIGTERM would have
            raise
    return history


class LiveLossPlot:
    """A loss curve that redraws itself in the notebook every `every` steps.

    Pass it as `fit(..., callback=plot)`. `plot.start("label")` begins a new curve, so
    several runs share one figure; `plot.add(label, losses)` adds a finished one. In
    Jupyter it updates one output through a display handle (no flicker, and the tqdm bar
    above it stays); the last drawing stays in the notebook as a static image. Outside
    IPython, or with `live=False`, it only records.
    """

    def __init__(self, every: int = 5, title: str = "training loss", live: bool = True,
                 figsize: tuple[float, float] = (6.0, 3.0)):
        from matplotlib.figure import Figure

        integer(every, "every", minimum=1)
        self.every, self.title, self.live = every, title, live
        self.curves: dict[str, tuple[list[int], list[float]]] = {}
        self.current: str | None = None
        # A Figure outside pyplot: the inline backend does not show it again at cell end
        self.figure = Figure(figsize=figsize, layout="constrained")
        self.ax = self.figure.add_subplot()
        self._handle = None

    def start(self, label: str) -> "LiveLossPlot":
        self.current = label
        self.curves[label] = ([], [])
        return self

    def add(self, label: str, losses: list[float]) -> "LiveLossPlot":
        """A finished curve (e.g. `History.losses` of an earlier run), steps 1, 2, ..."""
        self.curves[label] = (list(range(1, len(losses) + 1)), list(losses))
        return self

    def __call__(self, step: int, loss: float) -> None:
        if self.current is None:
            self.start("loss")
        steps, losses = self.curves[self.current]
        steps.append(step)
        losses.append(loss)
        if step % self.every == 0:
            self.draw()

    def draw(self) -> None:
        ax = self.ax
        ax.clear()
        for label, (steps, losses) in self.curves.items():
            ax.plot(steps, losses, label=label)
        ax.set(xlabel="step", ylabel="cross-entropy", title=self.title)
        if len(self.curves) > 1:
            ax.legend()
        if not self.live:
            return
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover
            return
        if get_ipython() is None:  # a plain Python script: nothing to draw into
            return
        if self._handle is None:
            self._handle = display(self.figure, display_id=True)
        else:
            self._handle.update(self.figure)
