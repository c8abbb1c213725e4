"""The shipped data: balanced, disjoint subsets, right shapes, photos and labels, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vit_course import data
from vit_course.paths import DATA_DIR

FASHION_SIZES = {"train": 600, "val": 100, "test": 200}  # per class
MNIST_SIZES = {"train": 100, "test": 50}


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fashion_subset_shapes_dtypes_and_balance(split):
    images, labels = data.load_fashion_mnist(split)
    n = 10 * FASHION_SIZES[split]
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8, (images.shape, images.dtype)
    assert labels.shape == (n,) and labels.dtype == torch.int64, (labels.shape, labels.dtype)
    counts = torch.bincount(labels, minlength=10).tolist()
    assert counts == [FASHION_SIZES[split]] * 10, f"expected {FASHION_SIZES[split]} per class, got {counts}"
    assert images.float().std() > 50, "images look blank"


def test_fashion_train_and_val_are_disjoint_and_val_is_held_out():
    train = set(data.fashion_mnist_indices("train").tolist())
    val = set(data.fashion_mnist_indices("val").tolist())
    heldout = set(data.fashion_mnist_indices("heldout").tolist())
    assert not train & val, "train and val subsets share images of the official train split"
    assert val <= heldout, "val subset must lie inside the 5k held out from model training"
    assert not train & heldout, "train subset must lie outside the held-out 5k"
    assert len(heldout) == 5000


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_fashion_subset_indices_point_into_the_official_split(split):
    npz = np.load(DATA_DIR / "fashion_mnist" / f"{split}.npz")
    assert str(npz["source_split"]) == ("test" if split == "test" else "train")
    idx = npz["indices"]
    assert len(np.unique(idx)) == len(idx), "duplicate images"
    assert idx.min() >= 0 and idx.max() < (10_000 if split == "test" else 60_000)


def test_full_fashion_mnist_matches_the_subset_when_installed():
    if not data.FASHION_MNIST_SYSTEM_DIR.is_dir():
        pytest.skip("full Fashion-MNIST not installed")
    images, labels = data.load_fashion_mnist("test", source="full")
    assert images.shape == (10_000, 28, 28) and labels.shape == (10_000,)
    sub_images, sub_labels = data.load_fashion_mnist("test")
    idx = torch.from_numpy(data.fashion_mnist_indices("test"))
    assert torch.equal(images[idx], sub_images) and torch.equal(labels[idx], sub_labels)


@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_subset_is_balanced(split):
    images, labels = data.load_mnist(split)
    n = 10 * MNIST_SIZES[split]
    assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels, minlength=10).tolist() == [MNIST_SIZES[split]] * 10


def test_mnist_train_and_test_are_disjoint():
    train = np.load(DATA_DIR / "mnist" / "train.npz")["indices"]
    test = np.load(DATA_DIR / "mnist" / "test.npz")["indices"]
    assert not set(train.tolist()) & set(test.tolist())


def test_missing_full_data_error_lists_every_place_looked(monkeypatch, tmp_path):
    monkeypatch.setenv("VIT_COURSE_FASHION_MNIST", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "no-system-dir")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "no-data")
    with pytest.raises(FileNotFoundError) as info:
        data.load_fashion_mnist("train", source="full")
    message = str(info.value)
    for place in data.fashion_mnist_dirs():
        assert str(place) in message, f"{place} missing from the error message:\n{message}"
    assert "apt-get install dataset-fashion-mnist" in message and "download=True" in message


def test_missing_subset_error_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="make_data.py") as info:
        data.load_mnist("train")
    assert str(tmp_path / "mnist" / "train.npz") in str(info.value)


def test_bad_split_or_source_is_a_value_error():
    with pytest.raises(ValueError):
        data.load_fashion_mnist("val", source="full")
    with pytest.raises(ValueError):
        data.load_fashion_mnist("train", source="internet")


def test_loader_gives_normalised_three_channel_batches():
    images, labels = data.load_fashion_mnist("val")
    loader = data.make_loader(images[:64], labels[:64], batch_size=32, channels=3, size=32)
    x, y = next(iter(loader))
    assert x.shape == (32, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (32,) and y.dtype == torch.int64
    assert torch.equal(x[:, 0], x[:, 2]), "gray channel must be copied"
    raw = data.make_loader(images[:32], labels[:32], batch_size=32, normalize=False)
    x, _ = next(iter(raw))
    assert x.shape == (32, 1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0
    assert torch.allclose(x[:, 0], images[:32].float() / 255)


def test_training_loader_is_shuffled_augmented_and_reproducible():
    images, labels = data.load_fashion_mnist("val")

    def first_batch():
        torch.manual_seed(0)
        return next(iter(data.make_loader(images, labels, batch_size=16, train=True, seed=1)))

    (x1, y1), (x2, y2) = first_batch(), first_batch()
    assert torch.equal(x1, x2) and torch.equal(y1, y2), "same seeds, different batches"
    plain = data.to_model_input(images, data.FASHION_MNIST_MEAN, data.FASHION_MNIST_STD)
    matches = [(plain == xi).all(dim=(1, 2, 3)).any().item() for xi in x1]
    assert not all(matches), "a training batch should be shuffled and augmented"


def test_random_shift_flip_keeps_shape_and_pixels():
    torch.manual_seed(0)
    x = torch.arange(28 * 28, dtype=torch.int64).reshape(1, 28, 28)
    out = data.RandomShiftFlip(pad=2)(x)
    assert out.shape == (1, 28, 28)
    assert set(out.unique().tolist()) - {0} <= set(x.unique().tolist())


def test_photos_load_as_pil_images():
    photos = data.list_photos()
    assert len(photos) >= 5
    for meta in photos:
        assert {"name", "file", "source", "licence", "caption"} <= set(meta)
        image = data.load_photo(meta["name"])
        assert max(image.size) <= 512 and image.mode in ("RGB", "L"), (meta["name"], image.size, image.mode)
    assert data.load_photo("chelsea").mode == "RGB"
    with pytest.raises(KeyError, match="chelsea"):
        data.load_photo("no-such-photo")


def test_label_lists():
    """The shipped label files (for readers outside Python) hold what the constants hold."""
    from vit_course.paths import read_json

    assert data.imagenet_labels()[:2] == ["tench", "goldfish"] and len(data.imagenet_labels()) == 1000
    assert read_json(DATA_DIR / "labels" / "fashion_mnist.json", "git checkout -- data/labels") == list(data.FASHION_MNIST_LABELS)
    assert len(data.FASHION_MNIST_LABELS) == 10 and data.FASHION_MNIST_LABELS[9] == "Ankle boot"
    assert read_json(DATA_DIR / "labels" / "mnist.json", "git checkout -- data/labels") == [str(d) for d in range(10)] == list(data.MNIST_LABELS)


def test_data_folder_stays_small():
    total = sum(f.stat().st_size for f in DATA_DIR.rglob("*") if f.is_file())
    # the project's own budget, well inside the 40 MB a clone may carry
    assert total < 20e6, f"data/ holds {total / 1e6:.1f} MB, budget 20 MB"
