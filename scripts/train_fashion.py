"""Train the course's two Fashion-MNIST models on the CPU, reproducibly, and ship them.

- `vit`: a tiny Hugging Face `ViTForImageClassification` (28x28, patch 4 -> 49 tokens,
  3 input channels: gray copied, so RGB photos go through its image processor too),
  written with `save_pretrained` + a `ViTImageProcessor` to `data/models/vit-tiny-fashion/`.
  It learns from the labels and from the CNN's predictions on the same images (knowledge
  distillation, Hinton et al. 2015, with a CNN teacher as in DeiT, Touvron et al. 2021);
  `--distill-alpha 0` trains on the labels alone.
- `cnn`: `vit_course.cnn.SmallCNN`, written to `data/models/cnn-fashion/`; `--model both`
  trains it first, then distils the ViT from it.

The training loop is `vit_course.train.fit` (the one the notebooks use): distillation plugs
in as its `compute_loss`, the schedule is transformers' `get_cosine_schedule_with_warmup`,
the best epoch is kept by its `epoch_callback`. This script holds the recipes (`Recipe`,
`ViTRecipe`) and the orchestration: data, model selection, metrics, writing.

Data: the official train split minus a fixed, balanced 5k held out
(`data/fashion_mnist/heldout.npz`) for model selection: 55k images to train on. The
official 10k test split is used once, after training, to report accuracy; never to
choose anything. Each model folder gets a `metrics.json` with its numbers, the command and
the SHA-256 of every file written.

Nothing shipped is replaced by accident (`vit_course.runs`, shared with
`scripts/train_family.py`): models go to a new folder `runs/<time>/` unless `--ship` asks
to replace the ones in `data/models/` (and records them in `data/MANIFEST.json`); an
existing model folder in `--out-dir` is replaced only with `--overwrite`. Every argument is
checked before any data is read (a bad one: status 2); a run whose loss or weights become
NaN or infinite stops, saves nothing and exits with status 1.

    python scripts/train_fashion.py --ship                   # both models, shipped recipe
    python scripts/train_fashion.py --model vit --epochs 1 --limit 5000 --no-save   # timing
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vit_course import ViTConfig, cnn, runs
from vit_course.cost import count_parameters
from vit_course.data import (
    FASHION_MNIST_LABELS, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
    RandomShiftFlip, fashion_mnist_indices, load_fashion_mnist, make_loader, to_model_input,
)
from vit_course.train import ComputeLoss, History, TrainingDiverged, fit, logits_of, predict
from vit_course.validation import integer, number

OUT_NAMES = {"vit": "vit-tiny-fashion", "cnn": "cnn-fashion"}
AUGMENTATIONS = {  # on each uint8 training image (1, 28, 28)
    "shift_flip": RandomShiftFlip(pad=2, flip=True),  # random crop after 2 px zero padding, h-flip
    "flip": RandomShiftFlip(pad=0, flip=True),  # h-flip only
    "none": None,
}
FLIP_P = {"flip": 0.5, "none": 0.0}  # what distillation's TeacherTargets can mirror
EVAL_BATCH = 500
TRAIN_IMAGES = 55_000  # the official 60k train split minus the held-out 5k


@dataclass(frozen=True)
class Recipe:
    """How one model is trained; every field is checked when the recipe is made."""

    epochs: int
    weight_decay: float
    augment: str  # a key of AUGMENTATIONS
    batch_size: int = 128
    lr: float = 2e-3  # peak, after a linear warmup; cosine to 0 after it, per step
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    clip_grad_norm: float = 1.0

    kind = "cnn"
    channels = 1  # input channels the model takes

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            integer(getattr(self, name), "--" + name.replace("_", "-"), minimum=1)
        for name, bounds in RANGES.items():
            if hasattr(self, name):
                number(getattr(self, name), "--" + name.replace("_", "-"), **bounds)
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"--augment must be one of {sorted(AUGMENTATIONS)}, got {self.augment!r}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"--warmup-epochs must be at most --epochs ({self.epochs}), got {self.warmup_epochs}")


@dataclass(frozen=True)
class ViTRecipe(Recipe):
    """A ViT's recipe: its shape, and how much it learns from the CNN teacher."""

    hidden_size: int = 96
    num_layers: int = 6
    num_heads: int = 4
    mlp_ratio: int = 2
    patch_size: int = 4
    distill_alpha: float = 0.5  # weight of the teacher's soft targets (0: labels only)
    distill_temperature: float = 2.0

    kind = "vit"
    channels = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("hidden_size", "num_layers", "num_heads", "mlp_ratio", "patch_size"):
            integer(getattr(self, name), "--" + name.replace("_", "-"), minimum=1)
        if self.hidden_size % self.num_heads:
            raise ValueError(f"--hidden-size {self.hidden_size} must be divisible by --num-heads {self.num_heads}")
        if 28 % self.patch_size:
            raise ValueError(f"--patch-size must divide the 28-pixel images (1, 2, 4, 7, 14, 28), got {self.patch_size}")
        if self.distill_alpha > 0 and self.augment not in FLIP_P:
            raise ValueError(f"distillation supports --augment {' or '.join(FLIP_P)}, got {self.augment}")

    def model_config(self) -> ViTConfig:
        return ViTConfig(
            image_size=28, patch_size=self.patch_size, num_channels=self.channels, hidden_size=self.hidden_size,
            num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
            intermediate_size=self.mlp_ratio * self.hidden_size, num_labels=10,
            id2label=dict(enumerate(FASHION_MNIST_LABELS)),
        )


RANGES = {  # float fields: their valid intervals, as vit_course.validation.number takes them
    "lr": dict(low=0.0, low_open=True),
    "weight_decay": dict(low=0.0),
    "warmup_epochs": dict(low=0.0),
    "label_smoothing": dict(low=0.0, high=1.0, high_open=True),
    "clip_grad_norm": dict(low=0.0, low_open=True),
    "distill_alpha": dict(low=0.0, high=1.0),
    "distill_temperature": dict(low=0.0, low_open=True),
}

RECIPES = {
    # ViT: with 2 px random shifts, lr 1e-3, a 15-epoch run had 86% held-out after 10 epochs; in
    # 1-epoch screens, h-flip only beat shift+flip (80% vs 71%) and lr 2e-3 beat 1e-3 and 3e-3.
    # Full runs, held-out 5k / official test (the test split was read only after each run):
    # - hidden 96, 15 epochs, labels only: 90.0% / 88.9%
    # - hidden 128, 20 epochs, labels only: 90.1% / 89.2%
    # - hidden 128, 20 epochs, distilled from the CNN (alpha 0.5, T 2): 90.9% / 89.6%
    # Width did little, distillation helped and the held-out accuracy still rose late in each run,
    # so the shipped recipe goes back to hidden 96 (faster) and trains longer, distilled:
    # - hidden 96, 36 epochs, distilled: 92.6% / 91.65% (59 min on 2 threads), the shipped model
    "vit": ViTRecipe(epochs=36, weight_decay=0.05, augment="flip"),
    # CNN: 3 epochs (about 2 min each on one thread): 92.7% / 91.6%
    "cnn": Recipe(epochs=3, weight_decay=0.01, augment="shift_flip"),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def build_model(recipe: Recipe) -> nn.Module:
    if recipe.kind == "cnn":
        return cnn.SmallCNN(cnn.CNNConfig(id2label=dict(enumerate(FASHION_MNIST_LABELS))))
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_config(recipe.model_config().to_hf())


def eval_loader(images: torch.Tensor, labels: torch.Tensor, channels: int, batch_size: int = EVAL_BATCH) -> DataLoader:
    """The uint8 images `(N, 28, 28)` in order, normalised, no augmentation."""
    return make_loader(images, labels, batch_size, channels=channels)


def measure(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, channels: int) -> tuple[float, int]:
    """(accuracy, number correct) of `model` on uint8 images `(N, 28, 28)`."""
    preds, truth = predict(model, eval_loader(images, labels, channels))
    correct = int((preds == truth).sum())
    return correct / len(truth), correct


class TeacherTargets(Dataset):
    """Training images, each h-flipped with probability `flip_p`, with its label and the
    teacher's logits for exactly that view (precomputed for both views: `(2, N, 10)`)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
                 flip_p: float, channels: int):
        self.images, self.labels, self.teacher = images, labels, teacher_logits
        self.flip_p, self.channels = flip_p, channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        flip = bool(torch.rand(()) < self.flip_p)
        image = self.images[i].flip(-1) if flip else self.images[i]  # (28, 28) uint8
        x = to_model_input(image, FASHION_MNIST_MEAN, FASHION_MNIST_STD, self.channels)
        return x, int(self.labels[i]), self.teacher[int(flip), i]


@torch.inference_mode()
def teacher_logits(teacher: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The CNN teacher's logits for every uint8 image `(N, 28, 28)` and its mirror: `(2, N, 10)`."""
    teacher.eval()

    def logits(view: torch.Tensor) -> torch.Tensor:  # (N, 10)
        no_labels = torch.zeros(len(view), dtype=torch.long)
        return torch.cat([logits_of(teacher, x) for x, _ in eval_loader(view, no_labels, 1, batch_size)])

    return torch.stack([logits(view) for view in (images, images.flip(-1))])


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor,
                      recipe: ViTRecipe) -> torch.Tensor:
    """(1 - a) * CE(labels, smoothed) + a * T^2 * KL(teacher_T || student_T) (Hinton et al., 2015)."""
    a, t = recipe.distill_alpha, recipe.distill_temperature
    ce = F.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
    kd = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1),
                  log_target=True, reduction="batchmean")
    return (1 - a) * ce + a * t * t * kd


def distill_from(recipe: ViTRecipe) -> ComputeLoss:
    """`fit`'s `compute_loss` for batches `(x, y, teacher logits)`."""

    def compute_loss(model: nn.Module, batch: tuple) -> torch.Tensor:
        x, y, teacher = batch
        return distillation_loss(logits_of(model, x), y, teacher, recipe)

    return compute_loss


def optimizer_for(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, the CLS token and the position embeddings."""
    plain = [n for n, p in model.named_parameters() if p.dim() < 2 or n.endswith(("cls_token", "position_embeddings"))]
    decay = [p for n, p in model.named_parameters() if n not in plain]
    no_decay = [p for n, p in model.named_parameters() if n in plain]
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)


def schedule_for(optimizer: torch.optim.Optimizer, recipe: Recipe,
                 steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' linear warmup over `warmup_epochs`, then cosine to 0, stepped per step.

    The shipped models were trained before the script moved onto `fit`, with a schedule of
    its own that was the same but for one step: its warmup reached `lr * (s + 1) / W` at
    step `s`, this one `lr * s / W` (0 at the first step). tests/test_train_script.py shows it.
    """
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=round(recipe.warmup_epochs * steps_per_epoch),
                                           num_training_steps=recipe.epochs * steps_per_epoch)


@dataclass
class Best:
    """Model selection on the held-out 5k only: the best epoch so far and its weights."""

    accuracy: float = -1.0
    epoch: int = 0
    state: dict | None = None


def train(recipe: Recipe, data: dict, seed: int, limit: int | None, teacher: nn.Module | None = None,
          max_steps: int | None = None) -> tuple[nn.Module, dict]:
    """Train one model on `data["train"]` (the first `limit` images), select on `data["heldout"]`."""
    seed_everything(seed)
    model = build_model(recipe)
    train_x, train_y = data["train"]
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if teacher is None:
        loader = make_loader(train_x, train_y, recipe.batch_size, train=True, channels=recipe.channels, seed=seed,
                             augment=AUGMENTATIONS[recipe.augment] or False)
        hook = dict(loss_fn=partial(F.cross_entropy, label_smoothing=recipe.label_smoothing))
    else:  # the teacher sees the same (possibly mirrored) image as the student
        targets = TeacherTargets(train_x, train_y, teacher_logits(teacher, train_x), FLIP_P[recipe.augment],
                                 recipe.channels)
        loader = DataLoader(targets, batch_size=recipe.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
        hook = dict(compute_loss=distill_from(recipe))
    optimizer = optimizer_for(model, recipe)
    scheduler = schedule_for(optimizer, recipe, len(loader))
    sizes = [len(y) for y in torch.arange(len(train_y)).split(recipe.batch_size)]  # examples in each batch
    best, log, clock = Best(), [], {"epoch": time.perf_counter()}
    heldout = eval_loader(*data["heldout"], recipe.channels)

    def end_of_epoch(epoch: int, history: History) -> None:
        losses = history.losses[(epoch - 1) * len(loader):]
        train_loss = sum(loss * n for loss, n in zip(losses, sizes)) / sum(sizes[:len(losses)])
        accuracy, seconds = history.val_accuracy[-1], time.perf_counter() - clock["epoch"]
        log.append({"epoch": epoch, "train_loss": round(train_loss, 5), "heldout_accuracy": accuracy,
                    "epoch_seconds": round(seconds, 1)})
        print(f"{recipe.kind} epoch {epoch}: loss {train_loss:.4f}  held-out acc {accuracy:.4f}  {seconds:.0f} s",
              flush=True)
        if accuracy > best.accuracy:
            best.accuracy, best.epoch, best.state = accuracy, epoch, copy.deepcopy(model.state_dict())
        clock["epoch"] = time.perf_counter()

    start = time.perf_counter()
    history = fit(model, loader, optimizer=optimizer, scheduler=scheduler, epochs=recipe.epochs, max_steps=max_steps,
                  val_loader=heldout, clip_grad_norm=recipe.clip_grad_norm, progress=True,
                  epoch_callback=end_of_epoch, **hook)
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best.state)
    model.eval()
    return model, {"history": log, "best_epoch": best.epoch, "train_seconds": round(train_seconds, 1),
                   "seconds_per_epoch": round(train_seconds / recipe.epochs, 1),
                   "first_losses": history.losses[:FIRST_LOSSES]}


FIRST_LOSSES = 20  # the loss of the first steps, recorded exactly: a rerun can be compared step by step


def save_function(kind: str, model: nn.Module) -> Callable[[Path], None]:
    """What writes `model` into a folder: `save_pretrained` + its image processor, or `cnn.save`."""

    def save(folder: Path) -> None:
        if kind == "vit":
            from transformers import ViTImageProcessor

            model.save_pretrained(folder)
            ViTImageProcessor(
                do_resize=True, size={"height": 28, "width": 28}, resample=2,  # bilinear
                do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                image_mean=[FASHION_MNIST_MEAN] * 3, image_std=[FASHION_MNIST_STD] * 3,
                do_convert_rgb=True,  # gray "L" images and RGBA become RGB
            ).save_pretrained(folder)
        else:
            cnn.save(model, folder, extra={"image_mean": FASHION_MNIST_MEAN, "image_std": FASHION_MNIST_STD})

    return save


def write_model_dir(kind: str, model: nn.Module, out: Path, metrics: dict) -> None:
    """Write the model folder atomically; non-finite weights are refused (nothing written)."""
    runs.write_model_folder(out, model, save_function(kind, model), metrics)


RECIPE_ARGS = ("epochs", "batch_size", "lr", "hidden_size", "num_layers", "mlp_ratio", "num_heads", "patch_size",
               "weight_decay", "warmup_epochs", "label_smoothing", "augment", "distill_alpha", "distill_temperature")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vit", "cnn", "both"], default="both")
    parser.add_argument("--epochs", type=int, help="override the default of each model")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--hidden-size", type=int, help="ViT width")
    parser.add_argument("--num-layers", type=int, help="ViT depth")
    parser.add_argument("--mlp-ratio", type=int, help="ViT MLP width / hidden size")
    parser.add_argument("--num-heads", type=int, help="ViT attention heads")
    parser.add_argument("--patch-size", type=int, help="ViT patch size")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--warmup-epochs", type=float)
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument("--augment", choices=sorted(AUGMENTATIONS))
    parser.add_argument("--distill-alpha", type=float,
                        help="ViT: weight of distillation from the CNN teacher (0: labels only)")
    parser.add_argument("--distill-temperature", type=float, help="ViT: softmax temperature of distillation")
    parser.add_argument("--teacher", type=Path, default=runs.shipped_dir() / OUT_NAMES["cnn"],
                        help="CNN folder to distil from (trained by this script on the same 55k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--limit", type=int, help="train on the first N images only (timing runs)")
    parser.add_argument("--max-steps", type=int, help="stop after N steps of the full recipe's schedule")
    runs.add_output_arguments(parser)
    return parser


def recipe_for(kind: str, args: argparse.Namespace) -> Recipe:
    """The shipped recipe of `kind`, with the arguments given in its place (checked on the way)."""
    recipe = RECIPES[kind]
    names = {f.name for f in dataclasses.fields(recipe)}
    return dataclasses.replace(recipe, **{k: getattr(args, k) for k in RECIPE_ARGS
                                          if k in names and getattr(args, k) is not None})


def check_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict[str, Recipe]:
    """Every argument checked before any data is read: a bad one stops here (status 2).

    Returns the recipe of each model to train, the CNN first (it is the ViT's teacher).
    """
    kinds = ["cnn", "vit"] if args.model == "both" else [args.model]
    try:
        for key in ("threads", "limit", "max_steps"):
            if getattr(args, key) is not None:
                integer(getattr(args, key), "--" + key.replace("_", "-"), minimum=1)
        if args.limit is not None and args.limit > TRAIN_IMAGES:
            raise ValueError(f"--limit must be at most {TRAIN_IMAGES} (the train split outside the held-out 5k), "
                             f"got {args.limit}")
        recipes = {kind: recipe_for(kind, args) for kind in kinds}
        vit = recipes.get("vit")
        if vit is not None and vit.distill_alpha > 0 and "cnn" not in kinds:
            for name in ("config.json", "model.safetensors", "metrics.json"):
                if not (args.teacher / name).is_file():
                    raise ValueError(f"--teacher {args.teacher} has no {name}: train the CNN first (--model both) "
                                     "or pass --distill-alpha 0")
        runs.resolve_output(args, [OUT_NAMES[kind] for kind in kinds])
    except ValueError as err:
        parser.error(str(err))
    return recipes


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    recipes = check_args(args, parser)
    try:
        run(args, recipes, argv)
    except TrainingDiverged as err:
        print(f"training diverged: {err}. Nothing saved; try a lower --lr.", file=sys.stderr)
        return 1
    return 0


def load_data() -> dict:
    """The 55k to train on, the held-out 5k, the official 10k test split and the shipped subsets."""
    try:
        full_x, full_y = load_fashion_mnist("train", source="full")
        test = load_fashion_mnist("test", source="full")
        heldout = torch.from_numpy(fashion_mnist_indices("heldout"))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"train_fashion.py: {err}") from err
    keep = torch.ones(len(full_y), dtype=torch.bool)
    keep[heldout] = False
    if set(fashion_mnist_indices("val")) - set(heldout.tolist()):
        raise SystemExit("train_fashion.py: the shipped val subset must lie inside the held-out 5k")
    return {
        "train": (full_x[keep], full_y[keep]),  # 55k
        "heldout": (full_x[heldout], full_y[heldout]),  # 5k, model selection
        "test": test,  # 10k, reported once at the end
        "test_subset": load_fashion_mnist("test"),  # shipped 2k
        "val_subset": load_fashion_mnist("val"),  # shipped 1k, inside the held-out 5k
    }


def evaluation(model: nn.Module, data: dict, channels: int) -> dict:
    """The figures metrics.json records, measured on the splits in `data`."""
    test_acc, test_correct = measure(model, *data["test"], channels)
    sub_acc, sub_correct = measure(model, *data["test_subset"], channels)
    heldout_acc, _ = measure(model, *data["heldout"], channels)
    val_acc, _ = measure(model, *data["val_subset"], channels)
    return {
        "test_accuracy": test_acc,  # official 10k test split
        "test_correct": test_correct,
        "test_subset_accuracy": sub_acc,  # data/fashion_mnist/test.npz
        "test_subset_correct": sub_correct,
        "test_subset_size": len(data["test_subset"][1]),
        "val_accuracy": heldout_acc,  # 5k held out of the train split, used for model selection
        "val_subset_accuracy": val_acc,  # data/fashion_mnist/val.npz, part of the held-out 5k
    }


def run(args: argparse.Namespace, recipes: dict[str, Recipe], argv: Sequence[str] | None = None) -> None:
    """Train the models of `recipes` (CNN first), measure them, write them (after all have trained)."""
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_data()
    print(f"train {len(data['train'][1])}, held out {len(data['heldout'][1])}, test {len(data['test'][1])}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    trained = {}  # kind -> (model, metrics); the CNN goes first: it is the ViT's teacher
    for kind, recipe in recipes.items():
        print(f"== {kind}: {recipe}", flush=True)
        teacher, teacher_record = None, None
        if getattr(recipe, "distill_alpha", 0) > 0:  # the CNN trained just now, or the one in --teacher
            teacher, teacher_metrics = trained.get("cnn") or (
                cnn.load(args.teacher), json.loads((args.teacher / "metrics.json").read_text()))
            teacher_record = {k: teacher_metrics[k] for k in ("val_accuracy", "train_images", "command")}
            print(f"distilling from the CNN (held-out accuracy {teacher_record['val_accuracy']:.4f})")
        model, log = train(recipe, data, args.seed, args.limit, teacher, max_steps=args.max_steps)
        runs.check_finite(model, f"{kind} after training")
        figures = evaluation(model, data, recipe.channels)
        print(f"{kind}: official test {figures['test_accuracy']:.4f}, test subset "
              f"{figures['test_subset_accuracy']:.4f}, held-out {figures['val_accuracy']:.4f}, "
              f"val subset {figures['val_subset_accuracy']:.4f}", flush=True)
        hyperparameters = dataclasses.asdict(recipe)
        if teacher_record is not None:
            hyperparameters["teacher"] = teacher_record
        metrics = {
            "model": kind,
            **figures,
            "train_images": len(data["train"][1][:args.limit]),
            "num_parameters": count_parameters(model),
            "train_seconds": log["train_seconds"],
            "seconds_per_epoch": log["seconds_per_epoch"],
            "best_epoch": log["best_epoch"],
            "epochs": recipe.epochs,
            "hyperparameters": {**hyperparameters, "seed": args.seed, "optimizer": "AdamW",
                                "schedule": "transformers.get_cosine_schedule_with_warmup, per step",
                                "augmentation": repr(AUGMENTATIONS[recipe.augment]),
                                "normalization": [FASHION_MNIST_MEAN, FASHION_MNIST_STD],
                                "input_channels": recipe.channels, "max_steps": args.max_steps},
            "history": log["history"],
            "first_losses": log["first_losses"],
            "num_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_after": [round(v, 2) for v in os.getloadavg()],  # the CPU is shared
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "python_version": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "command": runs.recorded_command("train_fashion.py", argv),
        }
        trained[kind] = (model, metrics)
    if not args.no_save:  # only once every model trained well: a diverged ViT leaves the CNN unshipped too
        for kind, (model, metrics) in trained.items():
            write_model_dir(kind, model, args.out_dir / OUT_NAMES[kind], metrics)


if __name__ == "__main__":
    sys.exit(main())
