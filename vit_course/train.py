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
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

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
        clip_grad_norm: clip the global gradient norm to this value when given.
        callback: `callback(step, loss)` after every step, `step` counted from `step + 1`.
    """
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
        x, y = unpack(batch)
        x, y = x.to(device), y.to(device)
        loss = loss_fn(logits_of(model, x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
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
    return torch.cat(preds), torch.cat(labels)


def evaluate(model: nn.Module, loader: Iterable) -> float:
    """Accuracy of `model` on `loader`, a fraction in [0, 1] (eval mode, no gradients)."""
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
) -> History:
    """Train `model` for `epochs` passes (at most `max_steps` steps in all).

    Args:
        optimizer: default AdamW(lr, weight_decay) over the parameters that require grad.
        scheduler: stepped after every step.
        val_loader: when given, `evaluate` runs after every epoch.
        progress: a tqdm bar per epoch.
        callback: `callback(step, loss)` after every step, e.g. a `LiveLossPlot`.
    """
    if optimizer is None:
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    history = History()
    for epoch in range(epochs):
        left = None if max_steps is None else max_steps - history.steps
        if left is not None and left <= 0:
            break
        history.losses += train_epoch(
            model, train_loader, optimizer, scheduler=scheduler, loss_fn=loss_fn, max_steps=left,
            clip_grad_norm=clip_grad_norm, progress=progress, callback=callback, step=history.steps,
            desc=f"epoch {epoch + 1}/{epochs}",
        )
        if val_loader is not None:
            history.val_accuracy.append(evaluate(model, val_loader))
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
