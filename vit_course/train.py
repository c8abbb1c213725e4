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

What it does not do silently: a NaN or infinite loss stops training with
`TrainingDiverged` naming the step (before that step's update); bad arguments are a
ValueError before the first step. `fit(..., checkpoint="run.pt")` saves model, optimizer,
scheduler, history and RNG states after every epoch (and every `checkpoint_every` steps);
`resume=True` replays the interrupted epoch's shuffle and continues exactly where the
checkpoint stopped, so an interrupted run ends with the same weights as an uninterrupted one.

Used by notebooks 06 and 08.
"""

from __future__ import annotations

import inspect
import math
import os
import random
from collections.abc import Callable, Iterable
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
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite: training stopped before that step's update."""


def _check_clip(clip_grad_norm) -> None:
    if clip_grad_norm is not None:
        number(clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)


def _train_step(model, batch, optimizer, scheduler, loss_fn, clip_grad_norm, device, step: int) -> float:
    """One optimiser step; `step` (counted from 1) names it if the loss is not finite."""
    x, y = unpack(batch)
    x, y = x.to(device), y.to(device)
    loss = loss_fn(logits_of(model, x), y)
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
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return value


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler=None,
    loss_fn: Callable | None = None,
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
        clip_grad_norm: clip the global gradient norm to this value (> 0) when given.
        callback: `callback(step, loss)` after every step, `step` counted from `step + 1`.

    Raises `TrainingDiverged` (naming the step) when the loss is NaN or infinite.
    """
    _check_clip(clip_grad_norm)
    if max_steps is not None:
        integer(max_steps, "max_steps", minimum=0)
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = _device_of(model)
    model.train()
    losses = []
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_steps is not None and total is not None:
        total = min(total, max_steps)
    for batch in _progress(loader, progress, total=total, desc=desc, leave=True):
        if max_steps is not None and len(losses) >= max_steps:
            break
        losses.append(_train_step(model, batch, optimizer, scheduler, loss_fn, clip_grad_norm, device,
                                  step + len(losses) + 1))
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


def save_checkpoint(path, model, optimizer, scheduler, history: History, position: dict,
                    loader_rng: torch.Tensor | None = None) -> None:
    """Write model, optimizer, scheduler, history and RNG states to `path`, atomically.

    `position` says where the run is: epoch, batches done in it, and the RNG states
    at that epoch's start (to replay its shuffle).
    """
    state = {
        "format": CHECKPOINT_FORMAT,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "history": {"losses": history.losses, "val_accuracy": history.val_accuracy},
        "position": position,
        "rng": {"global": _rng_state(), "loader": loader_rng},
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
    clip_grad_norm: float | None = None,
    progress: bool = False,
    callback: Callback | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
) -> History:
    """Train `model` for `epochs` passes (at most `max_steps` steps in all).

    Args:
        optimizer: default AdamW(lr, weight_decay) over the parameters that require grad.
        scheduler: stepped after every step.
        val_loader: when given, `evaluate` runs after every epoch.
        clip_grad_norm: clip the global gradient norm to this value (> 0) when given.
        progress: a tqdm bar per epoch.
        callback: `callback(step, loss)` after every step, e.g. a `LiveLossPlot`.
        checkpoint: a file to save the run to after every epoch (and every
            `checkpoint_every` steps): model, optimizer, scheduler, history, RNG states.
        resume: continue the run saved in `checkpoint` (if the file exists) exactly
            where it stopped; the same call (same arguments, `progress` included)
            then finishes an interrupted run.

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
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    loss_fn = loss_fn or nn.functional.cross_entropy
    device = _device_of(model)
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

    def save(epoch: int, batch: int, epoch_rng: dict) -> None:
        if checkpoint is not None:
            position = {"epoch": epoch, "batch": batch, "epoch_rng": epoch_rng}
            save_checkpoint(checkpoint, model, optimizer, scheduler, history, position,
                            loader_rng=generator.get_state() if generator is not None else None)

    for epoch in range(start_epoch, epochs):
        if max_steps is not None and history.steps >= max_steps:
            break
        if saved is not None:  # resuming: the RNG as it was when this epoch (or the checkpoint) began
            set_rng(saved["position"]["epoch_rng"] if skip else saved["rng"])
        epoch_rng = rng_now()
        model.train()
        total = len(train_loader) if hasattr(train_loader, "__len__") else None
        # A tqdm bar iterates the loader once more when it is made (it draws from the loader's
        # generator), so an exact resume needs the same `progress` as the interrupted run
        batches = iter(_progress(train_loader, progress, total=total,
                                 desc=f"epoch {epoch + 1}/{epochs}", leave=True))
        for _ in range(skip):  # replay the interrupted epoch's shuffle up to where it stopped
            next(batches)
        if saved is not None and skip:
            set_rng(saved["rng"])  # then the RNG as it was when the checkpoint was written
        done = skip
        skip, saved = 0, None
        for batch in batches:
            if max_steps is not None and history.steps >= max_steps:
                break
            history.losses.append(_train_step(model, batch, optimizer, scheduler, loss_fn, clip_grad_norm,
                                              device, history.steps + 1))
            done += 1
            if callback is not None:
                callback(history.steps, history.losses[-1])
            if checkpoint_every is not None and history.steps % checkpoint_every == 0:
                save(epoch, done, epoch_rng)
        if val_loader is not None:
            history.val_accuracy.append(evaluate(model, val_loader))
        if total is not None and done < total:  # stopped by max_steps inside the epoch
            save(epoch, done, epoch_rng)
        else:
            save(epoch + 1, 0, epoch_rng)
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
