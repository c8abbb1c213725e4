"""Fine-tuning: freeze a backbone, layer-wise learning rates, and recipes run over seeds.

`freeze_backbone(model)` leaves only the classifier head trainable. `layerwise_lr_groups`
gives each encoder layer its own learning rate, decaying from the head down to the
embeddings (BEiT, Bao et al., 2022). Both read Hugging Face ViT parameter names (either
spelling) and `vit_course` ones. Notebook 06 asks learners to write them; these are the
reference answers its checks compare with.

A `Recipe` is everything one fine-tuning run is, apart from the model and the data: what
trains (all, or the head: a linear probe), AdamW's learning rate and weight decay,
layer-wise decay, the schedule (a `transformers.get_scheduler` name) and its warmup, the
epochs and the batch size. `run_recipe(recipe, make_model, train_set, eval_loader, seed)`
makes the model, a loader seeded by `seed` alone (`seeded_loader`), the optimizer and the
scheduler, trains with `vit_course.train.fit` and returns the accuracy: two calls with one
seed give the same number, whatever else ran in between and with or without a progress
bar. `run_seeds` repeats it over seeds; `Summary` is their mean ± sd, `compare` turns
two summaries into a verdict computed from the numbers (is the gap larger than what the
seeds spread?) and `place` says where one more run falls among a recipe's seeds.

`choose_lr` picks a learning rate on held-out data. `FeatureProbe` is a linear probe on
features computed once (the backbone's output does not change while only the head
trains): `cls_features` computes a HF ViT's, `dinov2_features` DINOv2's, and
`load_dinov2_mnist_features` reads the ones `scripts/make_dinov2_features.py` ships for
the MNIST subset.

Used by notebook 06.
"""

from __future__ import annotations

import dataclasses
import math
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .paths import DATA_DIR, verify_shipped
from .train import Callback, History, evaluate, fit
from .validation import integer, number

_LAYER = re.compile(r"(?:^|\.)(?:layers?|blocks)\.(\d+)\.")  # HF <5.9, HF >=5.9, vit_course
_EMBEDDINGS = {"embeddings", "patch_embed", "cls_token", "pos_embed"}
HEAD_PREFIXES = ("classifier.", "head.")


def freeze_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """Linear probing: freeze every parameter but the classifier's (HF `classifier`, ours `head`)."""
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(HEAD_PREFIXES)
    return model


def layer_id(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, L + 1 for what follows the encoder.

    Reads HF names (`vit.embeddings.*`, `vit.layers.3.*` or `vit.encoder.layer.3.*`) and
    `vit_course` names (`patch_embed.*`, `cls_token`, `pos_embed`, `blocks.3.*`).
    """
    if _EMBEDDINGS & set(name.split(".")):
        return 0
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def layerwise_lr_groups(model: torch.nn.Module, base_lr: float, decay: float) -> list[dict]:
    """One optimizer param group per layer id, lr = base_lr * decay ** (L + 1 - id)."""
    L = model.config.num_hidden_layers
    groups: dict[int, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(layer_id(name, L), []).append(param)
    return [{"params": params, "lr": base_lr * decay ** (L + 1 - i)} for i, params in sorted(groups.items())]


# ---------------------------------------------------------------------------
# Recipes: one fine-tuning run, described by its settings

# transformers.get_scheduler names a Recipe accepts; "constant" ignores warmup there
SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")

LrGroups = Callable[[nn.Module, float, float], list[dict]]
Freeze = Callable[[nn.Module], Any]
MakeModel = Callable[[bool], nn.Module]  # make_model(pretrained) -> a fresh model


@dataclass(frozen=True)
class Recipe:
    """One fine-tuning run's settings. Change one field (`dataclasses.replace`) to ablate it.

    Args:
        name: how tables and verdicts call the run.
        pretrained: False trains the same architecture from random weights.
        linear_probe: freeze everything but the head (`freeze_backbone`).
        lr: AdamW's learning rate (with `layer_decay`: the head's).
        weight_decay: AdamW's decoupled weight decay, the same in every param group.
        layer_decay: layer-wise decay gamma (layer j gets lr * gamma ** (L + 1 - j));
            None for one group at `lr`.
        schedule: a `transformers.get_scheduler` name: "constant", "constant_with_warmup",
            "linear" or "cosine" (the last two decay to 0 at the last step).
        warmup_ratio: the fraction of the steps over which the rate rises linearly from 0
            (rounded up to whole steps, as `TrainingArguments.warmup_ratio`).
        epochs: passes over the training set.
        batch_size: images per step.
        clip_grad_norm: clip the gradient norm to this (the Trainer's default `max_grad_norm`
            is 1.0); None for no clipping.
    """

    name: str
    pretrained: bool = True
    linear_probe: bool = False
    lr: float = 1e-3
    weight_decay: float = 0.05  # BEiT's and DeiT's fine-tuning value
    layer_decay: float | None = None
    schedule: str = "constant"
    warmup_ratio: float = 0.0
    epochs: int = 2
    batch_size: int = 32
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        number(self.lr, "lr", low=0.0, low_open=True)
        number(self.weight_decay, "weight_decay", low=0.0)
        if self.layer_decay is not None:
            number(self.layer_decay, "layer_decay", low=0.0, high=1.0, low_open=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        number(self.warmup_ratio, "warmup_ratio", low=0.0, high=1.0, high_open=True)
        if self.warmup_ratio > 0 and self.schedule == "constant":
            raise ValueError("schedule 'constant' has no warmup (transformers.get_scheduler ignores it): "
                             "use 'constant_with_warmup', 'linear' or 'cosine'")
        integer(self.epochs, "epochs", minimum=1)
        integer(self.batch_size, "batch_size", minimum=1)
        if self.clip_grad_norm is not None:
            number(self.clip_grad_norm, "clip_grad_norm", low=0.0, low_open=True)

    def warmup_steps(self, total_steps: int) -> int:
        """Warmup steps of a run of `total_steps` steps."""
        return math.ceil(self.warmup_ratio * total_steps)


def seeded_loader(dataset: Dataset, batch_size: int, seed: int, shuffle: bool = True) -> DataLoader:
    """A DataLoader whose batch order depends on `seed` alone.

    It draws its shuffles from its own `torch.Generator`, so nothing drawn from torch's
    global RNG in between (a model's initialisation, another run) changes them, and `fit`
    draws one order per epoch whether or not it shows a progress bar.
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed))


def param_groups(model: nn.Module, recipe: Recipe, lr_groups: LrGroups = layerwise_lr_groups) -> list[dict]:
    """The optimizer's param groups: one per layer (`lr_groups`) with LLRD, else one; each
    with the recipe's weight decay. Only parameters that require grad."""
    if recipe.layer_decay is not None:
        groups = [dict(group) for group in lr_groups(model, recipe.lr, recipe.layer_decay)]
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": recipe.lr}]
    for group in groups:
        group["weight_decay"] = recipe.weight_decay
    return groups


def make_optimizer(model: nn.Module, recipe: Recipe, lr_groups: LrGroups = layerwise_lr_groups) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, recipe, lr_groups)`."""
    return torch.optim.AdamW(param_groups(model, recipe, lr_groups), lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """`transformers.get_scheduler(recipe.schedule, ...)` for a run of `total_steps` steps.

    It multiplies every group's own learning rate by the same factor, so it combines with LLRD.
    """
    from transformers import get_scheduler

    integer(total_steps, "total_steps", minimum=1)
    return get_scheduler(recipe.schedule, optimizer, num_warmup_steps=recipe.warmup_steps(total_steps),
                         num_training_steps=total_steps)


def lr_per_step(recipe: Recipe, total_steps: int) -> list[float]:
    """The learning rate `make_scheduler` gives at each of `total_steps` steps (a group whose
    own rate is `recipe.lr`), read off a one-parameter optimizer stepped that many times."""
    optimizer = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
    scheduler = make_scheduler(optimizer, recipe, total_steps)
    rates = []
    for _ in range(total_steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


@dataclass
class Run:
    """What `run_recipe` returns: the test accuracy, the training history and the model."""

    recipe: Recipe
    seed: int
    accuracy: float
    history: History
    model: nn.Module = field(repr=False)


def run_recipe(
    recipe: Recipe,
    make_model: MakeModel,
    train_set: Dataset,
    eval_loader: DataLoader,
    seed: int,
    *,
    freeze: Freeze = freeze_backbone,
    lr_groups: LrGroups = layerwise_lr_groups,
    progress: bool = False,
    callback: Callback | None = None,
) -> Run:
    """Train a fresh `make_model(recipe.pretrained)` with `recipe`; accuracy on `eval_loader`.

    `seed` seeds torch's global RNG before the model is made (random weights, dropout) and
    the loader's own generator (the batch order): the same seed gives the same run.
    `freeze` and `lr_groups` default to the reference answers of notebook 06's exercises.
    """
    integer(seed, "seed", minimum=0)
    torch.manual_seed(seed)
    model = make_model(recipe.pretrained)
    if recipe.linear_probe:
        freeze(model)
    loader = seeded_loader(train_set, recipe.batch_size, seed)
    optimizer = make_optimizer(model, recipe, lr_groups)
    scheduler = make_scheduler(optimizer, recipe, recipe.epochs * len(loader))
    history = fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=recipe.epochs,
                  clip_grad_norm=recipe.clip_grad_norm, progress=progress, callback=callback)
    return Run(recipe, seed, evaluate(model, eval_loader), history, model)


def run_seeds(
    recipe: Recipe,
    make_model: MakeModel,
    train_set: Dataset,
    eval_loader: DataLoader,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    progress: bool = False,
    **kwargs: Any,
) -> Summary:
    """`run_recipe` once per seed (no bar per epoch; `progress`: one bar over the seeds)."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError("run_seeds needs at least one seed")
    iterator = seeds
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(seeds, desc=recipe.name, leave=True)
    accuracies = [run_recipe(recipe, make_model, train_set, eval_loader, seed, **kwargs).accuracy
                  for seed in iterator]
    return Summary(recipe.name, tuple(accuracies), tuple(seeds))


def choose_lr(
    recipe: Recipe,
    lrs: Sequence[float],
    make_model: MakeModel,
    train_set: Dataset,
    val_loader: DataLoader,
    seeds: Sequence[int] = (0, 1, 2),
    **kwargs: Any,
) -> tuple[Recipe, dict[float, Summary]]:
    """The recipe at the learning rate of `lrs` with the best mean accuracy on `val_loader`.

    Returns it and every rate's validation `Summary`. A tie (to 9 decimals) goes to the
    smaller rate. Pass held-out data, never the test set: a rate chosen on the test set
    makes the test accuracy an optimistic estimate.
    """
    if not lrs:
        raise ValueError("choose_lr needs at least one learning rate")
    results = {float(lr): run_seeds(dataclasses.replace(recipe, lr=lr), make_model, train_set, val_loader,
                                    seeds, **kwargs) for lr in sorted(lrs)}
    best = max(results, key=lambda lr: (round(results[lr].mean, 9), -lr))  # round: 0.4 + 0.8 != 0.5 + 0.7
    return dataclasses.replace(recipe, lr=best), results


# ---------------------------------------------------------------------------
# Mean ± sd over seeds, and verdicts computed from them


@dataclass(frozen=True)
class Summary:
    """The accuracies (fractions) of one recipe over seeds: mean, sample sd, and their range."""

    name: str
    accuracies: tuple[float, ...]
    seeds: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.accuracies:
            raise ValueError(f"{self.name}: a summary needs at least one accuracy")
        if self.seeds and len(self.seeds) != len(self.accuracies):
            raise ValueError(f"{self.name}: {len(self.accuracies)} accuracies for {len(self.seeds)} seeds")

    @property
    def n(self) -> int:
        return len(self.accuracies)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def sd(self) -> float:
        """Sample standard deviation (n - 1); nan for one seed."""
        return statistics.stdev(self.accuracies) if self.n > 1 else math.nan

    def __str__(self) -> str:
        runs = ", ".join(f"{100 * a:.1f}" for a in self.accuracies)
        return f"{100 * self.mean:.1f} ± {100 * self.sd:.1f}% ({self.n} seeds: {runs})"


def separation_chance(n_a: int, n_b: int) -> float:
    """How often chance alone puts every run of one group above every run of the other.

    If the recipe did not matter, the n_a + n_b accuracies would be exchangeable: each of
    the C(n_a + n_b, n_a) ways to split them is as likely, and 2 of those (one per
    direction) separate the groups completely. 3 seeds each: 2 / 20 = 0.1.
    """
    integer(n_a, "n_a", minimum=1)
    integer(n_b, "n_b", minimum=1)
    return min(1.0, 2 / math.comb(n_a + n_b, n_a))


def compare(a: Summary, b: Summary) -> str:
    """A verdict on `a` versus `b` computed from their seeds: is the gap larger than the spread?

    "Larger than the seed noise" needs every seed of the better recipe above every seed of
    the other; otherwise the seeds overlap and the gap is within the noise of these seeds.
    """
    gap = 100 * (a.mean - b.mean)
    if a.n < 2 or b.n < 2:
        return (f"{a.name} vs {b.name}: {gap:+.1f} points from {a.n} and {b.n} seed(s): "
                "no spread to compare the gap with (run more seeds)")
    spread = f"seed sd {100 * a.sd:.1f} and {100 * b.sd:.1f} points"
    high, low = (a, b) if a.mean >= b.mean else (b, a)
    if min(high.accuracies) > max(low.accuracies):
        return (f"{high.name} beats {low.name} by {abs(gap):.1f} points and every seed of it beats "
                f"every seed of {low.name} ({spread}): a gap larger than the seed noise")
    return (f"{a.name} vs {b.name}: {gap:+.1f} points, but their seeds overlap ({spread}): "
            "the gap is within the noise of these seeds")


def place(value: float, summary: Summary, what: str) -> str:
    """Where one more accuracy `value` falls among `summary`'s seeds, in standard deviations.

    Within 2 sd of their mean it is as far off as another seed of that recipe could be;
    further, something more than the seed differs.
    """
    head = f"{what}: {100 * value:.1f}%"
    if summary.n < 2:
        return f"{head}; {summary.name} has {summary.n} seed: no spread to compare it with"
    if summary.sd == 0:
        same = value == summary.mean
        return f"{head}; every seed of {summary.name} gave {100 * summary.mean:.1f}%" + (
            ": the same" if same else ": it differs although the seeds do not")
    z = (value - summary.mean) / summary.sd
    verdict = ("within 2 sd, as far off as another seed of it could be" if abs(z) <= 2
               else "more than 2 sd away: something more than the seed differs")
    return f"{head}, {z:+.1f} sd from the mean of {summary.name} ({summary.n} seeds): {verdict}"


# ---------------------------------------------------------------------------
# Linear probes on features computed once


class FeatureProbe(nn.Module):
    """A zero-initialised linear classifier on precomputed features `(B, dim)` -> `(B, num_labels)`.

    Training only the head of a frozen backbone is this model trained on the backbone's
    features: the backbone's output does not change, so it can be computed once. The layer
    is called `classifier`, as in HF, so `freeze_backbone` and the same `Recipe` apply.
    """

    def __init__(self, dim: int, num_labels: int):
        super().__init__()
        self.classifier = nn.Linear(dim, num_labels)
        nn.init.zeros_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)  # (B, num_labels)


@torch.no_grad()  # not inference_mode: its tensors cannot enter autograd (a probe trains on them)
def cls_features(model: nn.Module, pixel_values: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """The CLS token after the final LayerNorm, `(N, D)`: what a HF classifier's head reads.

    `model` is a `ViTForImageClassification` (or any HF model whose `base_model` returns
    `last_hidden_state`), run in eval mode; `pixel_values` `(N, C, H, W)`.
    """
    integer(batch_size, "batch_size", minimum=1)
    was_training = model.training
    model.eval()
    features = [model.base_model(pixel_values=pixel_values[i:i + batch_size]).last_hidden_state[:, 0]
                for i in range(0, len(pixel_values), batch_size)]
    model.train(was_training)
    return torch.cat(features)


@torch.no_grad()  # not inference_mode: its tensors cannot enter autograd (a probe trains on them)
def dinov2_features(model: nn.Module, processor: Any, images: torch.Tensor,
                    batch_size: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """DINOv2's CLS token and mean patch token, after its final LayerNorm: two `(N, D)` tensors.

    `images` are gray uint8 `(N, H, W)`; `processor` (e.g. `load_dinov2_processor()`) makes
    them RGB, resizes and crops them to 224 x 224 and normalises them with ImageNet's
    mean and std, as for any photo.
    """
    from PIL import Image

    integer(batch_size, "batch_size", minimum=1)
    cls, patch_mean = [], []
    for start in range(0, len(images), batch_size):
        batch = [Image.fromarray(image.numpy()) for image in images[start:start + batch_size]]
        pixel_values = processor(images=batch, return_tensors="pt")["pixel_values"]  # (B, 3, 224, 224)
        hidden = model(pixel_values=pixel_values).last_hidden_state  # (B, 1 + N, D)
        cls.append(hidden[:, 0])
        patch_mean.append(hidden[:, 1:].mean(dim=1))
    return torch.cat(cls), torch.cat(patch_mean)


DINOV2_FEATURES_DIR = DATA_DIR / "dinov2_mnist"
MAKE_FEATURES = "python scripts/make_dinov2_features.py"


def load_dinov2_mnist_features(split: str) -> dict[str, Any]:
    """The shipped DINOv2-S features of the MNIST subset's `split` ("train" or "test").

    Returns float32 `cls` and `patch_mean` `(N, 384)` and int64 `labels` `(N,)`, in the
    order of `vit_course.data.load_mnist(split)`, and `provenance`: where the weights came
    from (`vit_course.dinov2.PROVENANCE` when they were computed). Written (float16) by
    `MAKE_FEATURES`.
    """
    if split not in ("train", "test"):
        raise ValueError(f"the DINOv2 MNIST features have splits ('train', 'test'), not {split!r}")
    path = DINOV2_FEATURES_DIR / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing. Fix: git checkout -- {path}, or rebuild it with {MAKE_FEATURES}")
    verify_shipped(path)
    with np.load(path) as npz:
        return {
            "cls": torch.from_numpy(npz["cls"].astype(np.float32)),
            "patch_mean": torch.from_numpy(npz["patch_mean"].astype(np.float32)),
            "labels": torch.from_numpy(npz["labels"].astype(np.int64)),
            "provenance": str(npz["provenance"]),
        }
