"""Train the course's two Fashion-MNIST models on the CPU, reproducibly, and ship them.

- `vit`: a tiny Hugging Face `ViTForImageClassification` (28x28, patch 4 -> 49 tokens,
  3 input channels: gray copied, so RGB photos go through its image processor too),
  written with `save_pretrained` + a `ViTImageProcessor` to `data/models/vit-tiny-fashion/`.
  It learns from the labels and from the CNN's predictions on the same images (knowledge
  distillation, Hinton et al. 2015, with a CNN teacher as in DeiT, Touvron et al. 2021);
  `--distill-alpha 0` trains on the labels alone.
- `cnn`: `vit_course.cnn.SmallCNN`, written to `data/models/cnn-fashion/`; `--model both`
  trains it first, then distils the ViT from it.

Data: the official train split minus a fixed, balanced 5k held out
(`data/fashion_mnist/heldout.npz`) for model selection: 55k images to train on. The
official 10k test split is used once, after training, to report accuracy; never to
choose anything. Each model folder gets a `metrics.json` with its numbers, the command and
the SHA-256 of every file written.

Nothing shipped is replaced by accident: models go to a new folder `runs/<time>/` unless
`--ship` asks to replace the ones in `data/models/`; an existing model folder in
`--out-dir` is replaced only with `--overwrite`. Every argument is checked before any
data is read; a run whose loss or weights become NaN or infinite stops, saves nothing
and exits with status 1.

    python scripts/train_fashion.py --ship                   # both models, shipped recipe
    python scripts/train_fashion.py --model vit --epochs 1 --limit 5000 --no-save   # timing
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vit_course import cnn  # noqa: E402
from vit_course.data import (  # noqa: E402
    FASHION_MNIST_LABELS, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
    RandomShiftFlip, fashion_mnist_indices, load_fashion_mnist, make_loader, to_model_input,
)
from vit_course.paths import DATA_DIR, REPO_DIR, atomic_folder, atomic_write, sha256, writable_problem  # noqa: E402
from vit_course.train import TrainingDiverged, logits_of  # noqa: E402
from vit_course.validation import integer, number  # noqa: E402

OUT_NAMES = {"vit": "vit-tiny-fashion", "cnn": "cnn-fashion"}
AUGMENTATIONS = {  # on each uint8 training image (1, 28, 28)
    "shift_flip": RandomShiftFlip(pad=2, flip=True),  # random crop after 2 px zero padding, h-flip
    "flip": RandomShiftFlip(pad=0, flip=True),  # h-flip only
    "none": None,
}
CHANNELS = {"vit": 3, "cnn": 1}

DEFAULTS = {
    # ViT: with 2 px random shifts, lr 1e-3, a 15-epoch run had 86% held-out after 10 epochs; in
    # 1-epoch screens, h-flip only beat shift+flip (80% vs 71%) and lr 2e-3 beat 1e-3 and 3e-3.
    # Full runs, held-out 5k / official test (the test split was read only after each run):
    # - hidden 96, 15 epochs, labels only: 90.0% / 88.9%
    # - hidden 128, 20 epochs, labels only: 90.1% / 89.2%
    # - hidden 128, 20 epochs, distilled from the CNN (alpha 0.5, T 2): 90.9% / 89.6%
    # Width did little, distillation helped and the held-out accuracy still rose late in each run,
    # so the shipped recipe goes back to hidden 96 (faster) and trains longer, distilled:
    # - hidden 96, 36 epochs, distilled: 92.6% / 91.65% (59 min on 2 threads), the shipped model
    "vit": dict(epochs=36, batch_size=128, lr=2e-3, weight_decay=0.05, warmup_epochs=1.0, augment="flip",
                label_smoothing=0.1, hidden_size=96, num_layers=6, num_heads=4, mlp_ratio=2,
                patch_size=4, distill_alpha=0.5, distill_temperature=2.0),
    # CNN: 3 epochs (about 2 min each on one thread): 92.7% / 91.6%
    "cnn": dict(epochs=3, batch_size=128, lr=2e-3, weight_decay=0.01, warmup_epochs=1.0, augment="shift_flip",
                label_smoothing=0.1),
}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


def build_model(kind: str, hp: dict) -> nn.Module:
    id2label = dict(enumerate(FASHION_MNIST_LABELS))
    if kind == "cnn":
        return cnn.SmallCNN(cnn.CNNConfig(id2label=id2label))
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=28, patch_size=hp["patch_size"], num_channels=3,
        hidden_size=hp["hidden_size"], num_hidden_layers=hp["num_layers"],
        num_attention_heads=hp["num_heads"], intermediate_size=hp["mlp_ratio"] * hp["hidden_size"],
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        num_labels=10, id2label=id2label, label2id={v: k for k, v in id2label.items()},
    )
    return ViTForImageClassification(config)


@torch.inference_mode()
def logits_of_images(model: nn.Module, images: torch.Tensor, channels: int, batch_size: int = 500) -> torch.Tensor:
    """Logits of every uint8 image `(N, 28, 28)`, in eval mode, without augmentation: `(N, num_labels)`."""
    model.eval()
    return torch.cat([
        logits_of(model, to_model_input(images[s:s + batch_size], FASHION_MNIST_MEAN, FASHION_MNIST_STD, channels))
        for s in range(0, len(images), batch_size)])


def predict(model: nn.Module, images: torch.Tensor, channels: int) -> torch.Tensor:
    """Predicted class of every uint8 image `(N, 28, 28)`: `(N,)`."""
    return logits_of_images(model, images, channels).argmax(-1)


def accuracy(model, images, labels, channels) -> tuple[float, int]:
    correct = int((predict(model, images, channels) == labels).sum())
    return correct / len(labels), correct


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


def teacher_logits(teacher: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """The CNN teacher's logits for every uint8 image `(N, 28, 28)` and its mirror: `(2, N, 10)`."""
    return torch.stack([logits_of_images(teacher, view, 1, batch_size) for view in (images, images.flip(-1))])


def distillation_loss(logits, labels, teacher, hp) -> torch.Tensor:
    """(1 - a) * CE(labels, smoothed) + a * T^2 * KL(teacher_T || student_T) (Hinton et al., 2015)."""
    a, t = hp["distill_alpha"], hp["distill_temperature"]
    ce = F.cross_entropy(logits, labels, label_smoothing=hp["label_smoothing"])
    kd = F.kl_div(F.log_softmax(logits / t, -1), F.log_softmax(teacher / t, -1),
                  log_target=True, reduction="batchmean")
    return (1 - a) * ce + a * t * t * kd


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to `peak`, then cosine decay to 0."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def train(kind: str, hp: dict, data: dict, seed: int, limit: int | None,
          teacher: nn.Module | None = None) -> tuple[nn.Module, dict]:
    seed_everything(seed)
    model = build_model(kind, hp)
    channels = CHANNELS[kind]
    train_x, train_y = data["train"]
    if limit is not None:
        train_x, train_y = train_x[:limit], train_y[:limit]
    if teacher is None:
        loader = make_loader(train_x, train_y, hp["batch_size"], train=True, channels=channels, seed=seed,
                             augment=AUGMENTATIONS[hp["augment"]] or False)
    else:  # the teacher sees the same (possibly mirrored) image as the student
        flip_p = {"flip": 0.5, "none": 0.0}[hp["augment"]]
        targets = TeacherTargets(train_x, train_y, teacher_logits(teacher, train_x), flip_p, channels)
        loader = DataLoader(targets, batch_size=hp["batch_size"], shuffle=True,
                            generator=torch.Generator().manual_seed(seed))
    # No weight decay on biases, norms, the CLS token and the position embeddings
    plain = [n for n, p in model.named_parameters() if p.dim() < 2 or n.endswith(("cls_token", "position_embeddings"))]
    decay = [p for n, p in model.named_parameters() if n not in plain]
    no_decay = [p for n, p in model.named_parameters() if n in plain]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": hp["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=hp["lr"])
    loss_fn = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    total = hp["epochs"] * len(loader)
    warmup = round(hp["warmup_epochs"] * len(loader))
    history, best = [], (-1.0, None, 0)
    step, start = 0, time.perf_counter()
    for epoch in range(1, hp["epochs"] + 1):
        model.train()
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(loader, desc=f"{kind} epoch {epoch}/{hp['epochs']}", mininterval=10, leave=True)
        for x, y, *t in bar:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, total, warmup, hp["lr"])
            logits = logits_of(model, x)
            loss = distillation_loss(logits, y, t[0], hp) if t else loss_fn(logits, y)
            if not math.isfinite(loss.item()):
                raise TrainingDiverged(f"{kind}: the loss is {loss.item()} at epoch {epoch}, step {step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            seen += len(y)
            loss_sum += loss.item() * len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", refresh=False)
        epoch_s = time.perf_counter() - t0
        val_acc, _ = accuracy(model, *data["heldout"], channels)
        history.append({"epoch": epoch, "train_loss": round(loss_sum / seen, 5),
                        "heldout_accuracy": val_acc, "epoch_seconds": round(epoch_s, 1)})
        print(f"{kind} epoch {epoch}: loss {loss_sum / seen:.4f}  held-out acc {val_acc:.4f}  "
              f"{epoch_s:.0f} s", flush=True)
        if val_acc > best[0]:  # model selection on the held-out 5k only
            best = (val_acc, copy.deepcopy(model.state_dict()), epoch)
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best[1])
    model.eval()
    return model, {"history": history, "best_epoch": best[2], "train_seconds": round(train_seconds, 1),
                   "seconds_per_epoch": round(train_seconds / hp["epochs"], 1)}


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def nonfinite_parameters(model: nn.Module) -> list[str]:
    """Names of the weights (parameters and buffers) holding NaN or inf."""
    return [n for n, t in model.state_dict().items() if t.is_floating_point() and not bool(t.isfinite().all())]


def write_model_dir(kind: str, model: nn.Module, out: Path, metrics: dict) -> None:
    """Write into a temporary folder next to `out`, then swap it in: never half a model.

    Refuses weights that are not finite: nothing is written then.
    """
    bad = nonfinite_parameters(model)
    if bad:
        raise TrainingDiverged(f"{kind}: non-finite weights in {bad[:3]}; nothing written to {out}")
    with atomic_folder(out) as tmp:
        if kind == "vit":
            from transformers import ViTImageProcessor

            model.save_pretrained(tmp)
            ViTImageProcessor(
                do_resize=True, size={"height": 28, "width": 28}, resample=2,  # bilinear
                do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                image_mean=[FASHION_MNIST_MEAN] * 3, image_std=[FASHION_MNIST_STD] * 3,
                do_convert_rgb=True,  # gray "L" images and RGBA become RGB
            ).save_pretrained(tmp)
        else:
            cnn.save(model, tmp, extra={"image_mean": FASHION_MNIST_MEAN, "image_std": FASHION_MNIST_STD})
        metrics["size_bytes"] = dir_size(tmp)  # without metrics.json itself
        metrics["sha256"] = {f.name: sha256(f) for f in sorted(tmp.iterdir())}
        with atomic_write(tmp / "metrics.json", "w") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
    print(f"wrote {out} ({metrics['size_bytes'] / 1e6:.2f} MB)")


def command_args() -> list[str]:
    """The command line without `--out-dir DIR`: where the model is written does not change it."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip or arg == "--out-dir":
            skip = not skip
            continue
        if not arg.startswith("--out-dir="):
            args.append(arg)
    return args


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
    parser.add_argument("--teacher", type=Path, default=SHIPPED_DIR / OUT_NAMES["cnn"],
                        help="CNN folder to distil from (trained by this script on the same 55k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--limit", type=int, help="train on the first N images only (timing runs)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the model folders go (default: a new folder runs/<UTC time>/)")
    parser.add_argument("--ship", action="store_true",
                        help=f"write into {SHIPPED_DIR.relative_to(REPO_DIR)}/, replacing the shipped models")
    parser.add_argument("--overwrite", action="store_true", help="replace model folders already in --out-dir")
    parser.add_argument("--no-save", action="store_true")
    return parser


SHIPPED_DIR = DATA_DIR / "models"
RUNS_DIR = REPO_DIR / "runs"
ARG_RANGES = {  # float arguments: their valid intervals, as vit_course.validation.number takes them
    "lr": dict(low=0.0, low_open=True),
    "weight_decay": dict(low=0.0),
    "warmup_epochs": dict(low=0.0),
    "label_smoothing": dict(low=0.0, high=1.0, high_open=True),
    "distill_alpha": dict(low=0.0, high=1.0),
    "distill_temperature": dict(low=0.0, low_open=True),
}


def hyperparameters(kind: str, args) -> dict:
    """The defaults of `kind`, overridden by the arguments given."""
    hp = dict(DEFAULTS[kind])
    for key in ("epochs", "batch_size", "lr", "hidden_size", "num_layers", "mlp_ratio", "num_heads",
                "patch_size", "weight_decay", "warmup_epochs", "label_smoothing", "augment",
                "distill_alpha", "distill_temperature"):
        if getattr(args, key) is not None and key in hp:
            hp[key] = getattr(args, key)
    return hp


def check_args(args, parser: argparse.ArgumentParser) -> None:
    """Every argument checked before any data is read: a bad one stops here (status 2)."""

    def bad(message: str) -> None:
        parser.error(message)

    try:
        for key in ("epochs", "batch_size", "hidden_size", "num_layers", "mlp_ratio", "num_heads", "patch_size",
                    "threads", "limit"):
            if getattr(args, key) is not None:
                integer(getattr(args, key), "--" + key.replace("_", "-"), minimum=1)
        for key, bounds in ARG_RANGES.items():
            if getattr(args, key) is not None:
                number(getattr(args, key), "--" + key.replace("_", "-"), **bounds)
    except ValueError as err:
        bad(str(err))
    kinds = ["cnn", "vit"] if args.model == "both" else [args.model]
    for kind in kinds:
        hp = hyperparameters(kind, args)
        if kind == "vit":
            if hp["hidden_size"] % hp["num_heads"]:
                bad(f"--hidden-size {hp['hidden_size']} must be divisible by --num-heads {hp['num_heads']}")
            if 28 % hp["patch_size"]:
                bad(f"--patch-size must divide the 28-pixel images (1, 2, 4, 7, 14, 28), got {hp['patch_size']}")
            if hp["distill_alpha"] > 0 and hp["augment"] not in ("flip", "none"):
                bad(f"distillation supports --augment flip or none, got {hp['augment']}")
            if hp["distill_alpha"] > 0 and "cnn" not in kinds:
                for name in ("config.json", "model.safetensors", "metrics.json"):
                    if not (args.teacher / name).is_file():
                        bad(f"--teacher {args.teacher} has no {name}: train the CNN first (--model both) "
                            "or pass --distill-alpha 0")
    if args.no_save:
        return
    if args.ship and args.out_dir is not None:
        bad("--ship writes into data/models: leave out --out-dir")
    if args.ship:
        args.out_dir, args.overwrite = SHIPPED_DIR, True
    elif args.out_dir is None:
        args.out_dir = RUNS_DIR / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    elif args.out_dir.resolve() == SHIPPED_DIR.resolve():
        bad(f"--out-dir {args.out_dir} holds the shipped models: pass --ship to replace them")
    problem = writable_problem(args.out_dir) if not args.out_dir.exists() or args.out_dir.is_file() else None
    if problem is None and args.out_dir.is_dir() and not os.access(args.out_dir, os.W_OK):
        problem = f"{args.out_dir} is not writable"
    if problem:
        bad(f"--out-dir: {problem}")
    existing = [args.out_dir / OUT_NAMES[k] for k in kinds if (args.out_dir / OUT_NAMES[k]).exists()]
    if existing and not args.overwrite:
        bad(f"{', '.join(map(str, existing))} already exist: pass --overwrite to replace, or another --out-dir")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(args, parser)
    try:
        run(args)
    except TrainingDiverged as err:
        print(f"training diverged: {err}. Nothing saved; try a lower --lr.", file=sys.stderr)
        return 1
    return 0


def run(args) -> None:
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        full_x, full_y = load_fashion_mnist("train", source="full")
        test = load_fashion_mnist("test", source="full")
        heldout = torch.from_numpy(fashion_mnist_indices("heldout"))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"train_fashion.py: {err}") from err
    keep = torch.ones(len(full_y), dtype=torch.bool)
    keep[heldout] = False
    data = {
        "train": (full_x[keep], full_y[keep]),  # 55k
        "heldout": (full_x[heldout], full_y[heldout]),  # 5k, model selection
        "test": test,  # 10k, reported once at the end
        "test_subset": load_fashion_mnist("test"),  # shipped 2k
        "val_subset": load_fashion_mnist("val"),  # shipped 1k, inside the held-out 5k
    }
    assert not set(fashion_mnist_indices("val")) - set(heldout.tolist()), "val subset must be held out"
    print(f"train {len(data['train'][1])}, held out {len(heldout)}, test {len(data['test'][1])}; "
          f"torch threads {torch.get_num_threads()}", flush=True)

    trained = {}  # kind -> (model, metrics); the CNN goes first: it is the ViT's teacher
    for kind in (["cnn", "vit"] if args.model == "both" else [args.model]):
        hp = hyperparameters(kind, args)
        print(f"== {kind}: {hp}", flush=True)
        teacher = None
        if hp.get("distill_alpha", 0) > 0:  # the CNN trained just now, or the one in --teacher
            teacher, teacher_metrics = trained.get("cnn") or (
                cnn.load(args.teacher), json.loads((args.teacher / "metrics.json").read_text()))
            hp["teacher"] = {k: teacher_metrics[k] for k in ("val_accuracy", "train_images", "command")}
            print(f"distilling from the CNN (held-out accuracy {hp['teacher']['val_accuracy']:.4f})")
        model, log = train(kind, hp, data, args.seed, args.limit, teacher)
        bad = nonfinite_parameters(model)
        if bad:
            raise TrainingDiverged(f"{kind}: non-finite weights in {bad[:3]} after training")
        channels = CHANNELS[kind]
        test_acc, test_correct = accuracy(model, *data["test"], channels)
        sub_acc, sub_correct = accuracy(model, *data["test_subset"], channels)
        heldout_acc, _ = accuracy(model, *data["heldout"], channels)
        val_acc, val_correct = accuracy(model, *data["val_subset"], channels)
        print(f"{kind}: official test {test_acc:.4f}, test subset {sub_acc:.4f}, "
              f"held-out {heldout_acc:.4f}, val subset {val_acc:.4f}", flush=True)
        metrics = {
            "model": kind,
            "test_accuracy": test_acc,  # official 10k test split
            "test_correct": test_correct,
            "test_subset_accuracy": sub_acc,  # data/fashion_mnist/test.npz
            "test_subset_correct": sub_correct,
            "test_subset_size": len(data["test_subset"][1]),
            "val_accuracy": heldout_acc,  # 5k held out of the train split, used for model selection
            "val_subset_accuracy": val_acc,  # data/fashion_mnist/val.npz, part of the held-out 5k
            "train_images": len(data["train"][1][:args.limit]),
            "num_parameters": cnn.num_parameters(model),
            "train_seconds": log["train_seconds"],
            "seconds_per_epoch": log["seconds_per_epoch"],
            "best_epoch": log["best_epoch"],
            "epochs": hp["epochs"],
            "hyperparameters": {**hp, "seed": args.seed, "optimizer": "AdamW",
                                "schedule": "linear warmup + cosine to 0, per step",
                                "grad_clip": 1.0, "augmentation": repr(AUGMENTATIONS[hp["augment"]]),
                                "normalization": [FASHION_MNIST_MEAN, FASHION_MNIST_STD],
                                "input_channels": channels},
            "history": log["history"],
            "num_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_after": [round(v, 2) for v in os.getloadavg()],  # the CPU is shared
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "torch_version": torch.__version__,
            "transformers_version": transformers.__version__,
            "python_version": platform.python_version(),
            "machine": platform.processor() or platform.machine(),
            "command": "python " + shlex.join([os.path.relpath(sys.argv[0], DATA_DIR.parent), *command_args()]),
        }
        trained[kind] = (model, metrics)
        if not args.no_save:
            write_model_dir(kind, model, args.out_dir / OUT_NAMES[kind], metrics)


if __name__ == "__main__":
    sys.exit(main())
