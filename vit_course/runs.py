"""Where the course's training scripts write: a new run folder, or the shipped models only when asked.

`scripts/train_fashion.py` and `scripts/train_family.py` share these, so both behave alike:

- by default the model folders go to a new `runs/<UTC time>/` (ignored by git);
- `--ship` writes into `data/models/`, replacing the shipped models, then records the new
  files in `data/MANIFEST.json` (what `vit-course manifest --update` does);
- `--out-dir DIR` writes elsewhere; a model folder already there is replaced only with
  `--overwrite`, and `--out-dir data/models` needs `--ship`;
- where the models go is checked before any training (`output_problem`), and a model whose
  weights hold NaN or inf is never written (`write_model_folder`): each folder is written
  into a temporary folder and swapped in, with a `metrics.json` holding the SHA-256 of
  every file, so there is never half a model.

No notebook uses this module; the scripts do.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from . import paths
from .train import TrainingDiverged

RUNS_DIR = paths.REPO_DIR / "runs"


def shipped_dir() -> Path:
    """`data/models/`: the folder `--ship` writes into (follows `$VIT_COURSE_DATA`)."""
    return paths.DATA_DIR / "models"


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """`--out-dir`, `--ship`, `--overwrite`, `--no-save`: the same four in every training script."""
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the model folders go (default: a new folder runs/<UTC time>/)")
    parser.add_argument("--ship", action="store_true",
                        help="write into data/models/, replacing the shipped models, and update data/MANIFEST.json")
    parser.add_argument("--overwrite", action="store_true", help="replace model folders already in --out-dir")
    parser.add_argument("--no-save", action="store_true", help="train and report, write nothing")


def output_dir(out_dir: Path | None, ship: bool) -> Path:
    """The folder the model folders go to; a ValueError for a combination that would surprise."""
    shipped = shipped_dir()
    if ship and out_dir is not None:
        raise ValueError("--ship writes into data/models: leave out --out-dir")
    if ship:
        return shipped
    if out_dir is None:
        return RUNS_DIR / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    if out_dir.resolve() == shipped.resolve():
        raise ValueError(f"--out-dir {out_dir} holds the shipped models: pass --ship to replace them")
    return out_dir


def output_problem(out_dir: Path, names: Sequence[str], overwrite: bool) -> str | None:
    """Why the model folders `names` cannot be written into `out_dir`, or None if they can."""
    problem = paths.writable_problem(out_dir) if not out_dir.exists() or out_dir.is_file() else None
    if problem is None and out_dir.is_dir() and not os.access(out_dir, os.W_OK):
        problem = f"{out_dir} is not writable"
    if problem:
        return f"--out-dir: {problem}"
    existing = [str(out_dir / name) for name in names if (out_dir / name).exists()]
    if existing and not overwrite:
        return f"{', '.join(existing)} already exist: pass --overwrite to replace, or another --out-dir"
    return None


def resolve_output(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Check the output arguments of `add_output_arguments` before training: set `args.out_dir`
    to where the models go (`--ship` implies `--overwrite`); a ValueError names the problem."""
    if args.no_save:
        return
    args.out_dir = output_dir(args.out_dir, args.ship)
    args.overwrite = args.overwrite or args.ship
    problem = output_problem(args.out_dir, names, args.overwrite)
    if problem:
        raise ValueError(problem)


def nonfinite_weights(model: nn.Module) -> list[str]:
    """Names of the weights (parameters and buffers) holding NaN or inf."""
    return [n for n, t in model.state_dict().items() if t.is_floating_point() and not bool(t.isfinite().all())]


def check_finite(model: nn.Module, what: str) -> None:
    """Raise `TrainingDiverged` naming the first non-finite weights of `model`."""
    bad = nonfinite_weights(model)
    if bad:
        raise TrainingDiverged(f"{what}: non-finite weights in {bad[:3]}")


def write_model_folder(out: Path, model: nn.Module, save: Callable[[Path], None], metrics: dict) -> None:
    """Write a model folder: `save(folder)` writes the weights, then `metrics.json` with the size
    and SHA-256 of every file; all in a temporary folder swapped in at the end.

    Weights that are not finite are refused (`TrainingDiverged`): nothing is written then. A
    folder written into `data/models/` is recorded in `data/MANIFEST.json`.
    """
    check_finite(model, f"nothing written to {out}")
    with paths.atomic_folder(out) as tmp:
        save(tmp)
        metrics["size_bytes"] = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())  # without metrics.json
        metrics["sha256"] = {f.name: paths.sha256(f) for f in sorted(tmp.iterdir()) if f.is_file()}
        paths.atomic_write_text(tmp / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out} ({metrics['size_bytes'] / 1e6:.2f} MB)")
    if out.resolve().parent == shipped_dir().resolve():
        print(f"recorded the new files in {paths.write_manifest(paths.DATA_DIR)}")


def recorded_command(script: str, argv: Sequence[str] | None = None) -> str:
    """`python scripts/NAME.py ARGS` as metrics.json records it, without `--out-dir DIR`:
    where the model is written does not change it."""
    args, skip = [], False
    for arg in sys.argv[1:] if argv is None else argv:
        if skip or arg == "--out-dir":
            skip = not skip
            continue
        if not arg.startswith("--out-dir="):
            args.append(arg)
    return "python " + shlex.join([f"scripts/{script}", *args])
