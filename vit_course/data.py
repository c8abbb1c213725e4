"""The course's data: Fashion-MNIST, MNIST digits, a few photos and class names, offline.

Two sources of Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017):
- `source="subset"` (default): balanced subsets shipped in `data/fashion_mnist/`
  (train 600, val 100, test 200 images per class), made by `scripts/make_data.py`.
  train and val come from the official train split, disjoint; test from the official
  test split. Each `.npz` keeps the indices of its images in the official split.
- `source="full"`: the official idx files, 60k train and 10k test, read from
  `$VIT_COURSE_FASHION_MNIST`, `/usr/share/datasets/fashion-mnist` (Debian
  `dataset-fashion-mnist`) or a torchvision download folder.

Images come as uint8 tensors `(N, 28, 28)`, labels as int64 `(N,)`. `make_loader` turns
them into batches of float `(B, C, H, W)` the way a model wants them: in [0, 1],
optionally normalised, augmented, resized, and replicated to 3 channels for a model
made for RGB (torchvision's `Grayscale(num_output_channels=3)` does the same).

Used by every notebook (notebooks 01-10).
"""

from __future__ import annotations

import gzip
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vit_course.paths import DATA_DIR, read_json, verify_shipped
from vit_course.validation import integer, number

if TYPE_CHECKING:
    from PIL import Image

FASHION_MNIST_LABELS = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MNIST_LABELS = tuple(str(d) for d in range(10))

# Per-pixel mean and std of the official 60k train split, pixels scaled to [0, 1]
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
# The usual MNIST values (train split)
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
HOW_TO_GET_FASHION_MNIST = (
    "To get the full Fashion-MNIST: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
    "or online `torchvision.datasets.FashionMNIST(root, download=True)` then set "
    "VIT_COURSE_FASHION_MNIST=root, or download the four idx .gz files from "
    "https://github.com/zalandoresearch/fashion-mnist into a folder and point "
    "VIT_COURSE_FASHION_MNIST at it."
)


# ---------------------------------------------------------------------------
# Reading files


def _missing(what: str, looked: list[Path], how: str) -> FileNotFoundError:
    places = "\n".join(f"  - {p}" for p in looked)
    return FileNotFoundError(f"{what} not found. Looked in:\n{places}\n{how}")


def fashion_mnist_dirs() -> list[Path]:
    """Folders that may hold the official idx files, in the order they are tried."""
    dirs = []
    env = os.environ.get("VIT_COURSE_FASHION_MNIST")
    if env:
        # Either the folder of the idx files or a torchvision `root`
        dirs += [Path(env), Path(env) / "FashionMNIST" / "raw"]
    dirs.append(FASHION_MNIST_SYSTEM_DIR)
    dirs.append(DATA_DIR / "fashion_mnist" / "official")  # ships the official test split only
    for root in (DATA_DIR, Path.home() / "data", Path.cwd() / "data"):
        dirs.append(root / "FashionMNIST" / "raw")  # torchvision's download layout
    return list(dict.fromkeys(dirs))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one idx file (`.gz` or not): the format of the original MNIST files.

    A truncated, padded or foreign file, or a shipped one that differs from its record in
    data/MANIFEST.json, is a ValueError naming it.
    """
    verify_shipped(path)
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, OSError) as err:  # a truncated or broken .gz
        raise ValueError(f"{path}: cannot be read ({type(err).__name__}: {err}). {HOW_TO_GET_FASHION_MNIST}") from err
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":  # magic: 0, 0, dtype (0x08 = uint8), ndim
        raise ValueError(f"{path}: not an idx file of uint8 (got {len(data)} bytes). {HOW_TO_GET_FASHION_MNIST}")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise ValueError(
            f"{path}: truncated or padded idx file: its header says shape {shape}, {expected} bytes, "
            f"the file has {len(data)}. {HOW_TO_GET_FASHION_MNIST}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find_idx(name: str) -> tuple[Path | None, list[Path]]:
    looked = []
    for folder in fashion_mnist_dirs():
        for candidate in (folder / f"{name}.gz", folder / name):
            looked.append(candidate)
            if candidate.is_file():
                return candidate, looked
    return None, looked


def read_fashion_mnist_idx(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The official split as numpy: images uint8 `(N, 28, 28)`, labels uint8 `(N,)`."""
    if split not in IDX_FILES:
        raise ValueError(f"the full Fashion-MNIST has splits 'train' and 'test', not {split!r}")
    arrays, paths = [], []
    for name in IDX_FILES[split]:
        path, looked = _find_idx(name)
        if path is None:
            raise _missing(f"Fashion-MNIST file {name}(.gz)", looked, HOW_TO_GET_FASHION_MNIST)
        arrays.append(read_idx(path))
        paths.append(path)
    images, labels = arrays
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"Fashion-MNIST {split!r} files do not match: expected images (N, 28, 28) and labels (N,), "
            f"got {images.shape} in {paths[0]} and {labels.shape} in {paths[1]}. {HOW_TO_GET_FASHION_MNIST}"
        )
    return images, labels


def _load_npz(folder: str, split: str, splits: tuple[str, ...]) -> dict[str, np.ndarray]:
    if split not in splits:
        raise ValueError(f"{folder} subset has splits {splits}, not {split!r}")
    path = DATA_DIR / folder / f"{split}.npz"
    if not path.is_file():
        raise _missing(
            f"{folder} subset {split!r}", [path],
            "It ships with the repository: check out data/ again, or rebuild it with "
            "`python scripts/make_data.py` (needs the full dataset; " + HOW_TO_GET_FASHION_MNIST + ")",
        )
    return _read_npz(path)


NPZ_FIX = "check out data/ again (`git checkout -- data/`) or rebuild it with `python scripts/make_data.py`"


def _read_npz(path: Path, fix: str = NPZ_FIX) -> dict[str, np.ndarray]:
    """The arrays of a shipped `.npz`, checked: as recorded in the manifest, readable, images paired with labels."""
    verify_shipped(path)
    try:
        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} cannot be read ({type(err).__name__}: {err}). Fix: {fix}") from err
    if "images" in arrays and len(arrays["images"]) != len(arrays.get("labels", ())):
        raise ValueError(f"{path}: {len(arrays['images'])} images but {len(arrays.get('labels', ()))} labels. Fix: {fix}")
    return arrays


def load_fashion_mnist(split: str, source: str = "subset") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images uint8 `(N, 28, 28)` and labels int64 `(N,)`.

    Args:
        split: "train", "val" or "test" for the subset; "train" or "test" for the full set.
        source: "subset" (shipped: 6000 / 1000 / 2000 images) or "full" (official 60k / 10k).
    """
    if source == "subset":
        npz = _load_npz("fashion_mnist", split, ("train", "val", "test"))
        images, labels = npz["images"], npz["labels"]
    elif source == "full":
        images, labels = read_fashion_mnist_idx(split)
    else:
        raise ValueError(f"source must be 'subset' or 'full', not {source!r}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def fashion_mnist_indices(split: str) -> np.ndarray:
    """Indices into the official split of the shipped subset `split`, or of "heldout".

    "heldout" is the 5k images (500 per class) of the official train split that
    `scripts/train_fashion.py` keeps out of training for model selection; the shipped
    val subset is drawn from it, the shipped train subset from the other 55k.
    """
    if split == "heldout":
        path = DATA_DIR / "fashion_mnist" / "heldout.npz"
        if not path.is_file():
            raise _missing("Fashion-MNIST held-out indices", [path], "Rebuild with `python scripts/make_data.py`.")
        arrays = _read_npz(path)
        if "indices" not in arrays:
            raise ValueError(f"{path} holds no 'indices' array (it has {sorted(arrays)}). Fix: {NPZ_FIX}")
        return arrays["indices"]
    return _load_npz("fashion_mnist", split, ("train", "val", "test"))["indices"]


def load_mnist(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The shipped MNIST digits subset: uint8 `(N, 28, 28)`, int64 `(N,)`; split "train" or "test"."""
    npz = _load_npz("mnist", split, ("train", "test"))
    return torch.from_numpy(npz["images"].copy()), torch.from_numpy(npz["labels"].astype(np.int64))


# ---------------------------------------------------------------------------
# From uint8 images to model inputs


def to_model_input(
    images: torch.Tensor,
    mean: float | None = FASHION_MNIST_MEAN,
    std: float | None = FASHION_MNIST_STD,
    channels: int = 1,
    size: int | None = None,
) -> torch.Tensor:
    """uint8 `(N, H, W)` -> float `(N, C, size, size)`; one `(H, W)` -> `(C, size, size)`.

    Pixels go to [0, 1], then `(x - mean) / std` if mean is given, then the gray channel
    is copied `channels` times. No augmentation. Same numbers as the Hugging Face image
    processor shipped with our models (rescale 1/255, normalize, convert to RGB).
    Anything but gray uint8 images (floats, channel axes) is a ValueError.
    """
    check_gray_images(images, allow_single=True)
    check_preprocessing(mean, std, channels, size)
    single = images.dim() == 2
    x = images.reshape(-1, 1, *images.shape[-2:]).float() / 255.0  # (N, 1, H, W)
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            antialias=True, align_corners=False)
    if mean is not None:
        x = (x - mean) / std
    x = x.expand(-1, channels, -1, -1).contiguous()  # (N, C, H, W)
    return x[0] if single else x


def check_gray_images(images: Any, allow_single: bool = False) -> None:
    """Raise a ValueError unless `images` is a uint8 tensor `(N, H, W)` (or `(H, W)`)."""
    shapes = "(N, H, W) or one (H, W)" if allow_single else "(N, H, W)"
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected a uint8 torch.Tensor of gray images {shapes}, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        hint = ""
        if images.is_floating_point():
            hint = ("; pixels are divided by 255 here, so float images would be scaled twice: for images "
                    "already in [0, 1] pass (x * 255).round().to(torch.uint8) or normalise (x - mean) / std yourself")
        raise ValueError(f"expected uint8 images with pixels 0..255, got {images.dtype}{hint}")
    if images.ndim not in ((2, 3) if allow_single else (3,)):
        hint = ""
        if images.ndim == 4 or (images.ndim == 3 and images.shape[-1] in (1, 3, 4)):
            hint = "; these look like colour or channel-first images: take one gray channel first"
        raise ValueError(f"expected gray images {shapes}, got shape {tuple(images.shape)}{hint}")
    if images.ndim == 3 and images.shape[-1] in (3, 4) and images.shape[-2] > 4:
        raise ValueError(
            f"expected gray images {shapes}, got shape {tuple(images.shape)}, which looks like one colour "
            "image (H, W, C): take one gray channel first"
        )


def check_preprocessing(mean: float | None, std: float | None, channels: int, size: int | None) -> None:
    """Raise a ValueError unless the preprocessing arguments make sense."""
    if mean is not None:
        number(mean, "mean")
        if std is None:
            raise ValueError("std must be given with mean, got std=None")
        number(std, "std", low=0.0, low_open=True)
    integer(channels, "channels", minimum=1)
    if size is not None:
        integer(size, "size", minimum=1)


class RandomShiftFlip:
    """Light augmentation for 28x28 images: random crop after zero padding, horizontal flip.

    Works on one uint8 image `(1, H, W)`; uses torch's global RNG so `torch.manual_seed`
    makes it reproducible. Same as `RandomCrop(H, padding=pad)` + `RandomHorizontalFlip()`.
    """

    def __init__(self, pad: int = 2, flip: bool = True):
        self.pad, self.flip = pad, flip

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (self.pad,) * 4)  # (1, H + 2p, W + 2p)
        i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        x = padded[..., i:i + h, j:j + w]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x

    def __repr__(self) -> str:
        return f"RandomShiftFlip(pad={self.pad}, flip={self.flip})"


class ImageDataset(Dataset):
    """uint8 images `(N, H, W)` with labels; item i -> (float `(C, H', W')`, int label)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, augment=None,
                 mean: float | None = None, std: float | None = None,
                 channels: int = 1, size: int | None = None):
        check_gray_images(images)
        check_preprocessing(mean, std, channels, size)
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"expected integer labels (N,) as a torch.Tensor, got {got}")
        if len(images) != len(labels):
            raise ValueError(f"expected one label per image, got {len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels
        self.augment = augment  # on the uint8 (1, H, W) image, before scaling
        self.mean, self.std, self.channels, self.size = mean, std, channels, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].unsqueeze(0)  # (1, H, W) uint8
        if self.augment is not None:
            x = self.augment(x)
        x = to_model_input(x[0], self.mean, self.std, self.channels, self.size)  # (C, H', W')
        return x, int(self.labels[i])


def make_loader(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 128,
    *,
    train: bool = False,
    augment: bool | Callable[[torch.Tensor], torch.Tensor] | None = None,
    normalize: bool = True,
    mean: float = FASHION_MNIST_MEAN,
    std: float = FASHION_MNIST_STD,
    channels: int = 1,
    size: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A DataLoader of `(x float (B, C, H, W), y int64 (B,))`.

    Args:
        train: shuffle (with a generator seeded by `seed`) and, unless `augment=False`,
            augment with `RandomShiftFlip()`.
        augment: True, False, or a callable on one uint8 image `(1, H, W)`.
        normalize: subtract `mean` and divide by `std` (pass the MNIST values for digits).
        channels: 3 to feed a model made for RGB images; the gray channel is copied.
        size: resize to `size x size` (bilinear), e.g. 224 for a model pretrained there.
    """
    integer(batch_size, "batch_size", minimum=1)
    integer(num_workers, "num_workers", minimum=0)
    augment = train if augment is None else augment
    if augment is True:
        augment = RandomShiftFlip()
    dataset = ImageDataset(
        images, labels, augment=augment or None,
        mean=mean if normalize else None, std=std if normalize else None,
        channels=channels, size=size,
    )
    generator = torch.Generator().manual_seed(seed) if train else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=train, generator=generator,
                      num_workers=num_workers)


# ---------------------------------------------------------------------------
# Photos and class names


def _read_json(relative: str):
    folder = relative.split("/")[0]
    fix = f"check out data/{folder} again (`git checkout -- data/{folder}`) or run `python scripts/make_data.py`"
    return read_json(DATA_DIR / relative, fix)


def list_photos() -> list[dict]:
    """The shipped photos: dicts with name, file, source, licence, caption."""
    return _read_json("photos/photos.json")


def load_photo(name: str) -> Image.Image:
    """A shipped photo as a `PIL.Image` ("RGB", or "L" for the grayscale camera), e.g. "chelsea"."""
    from PIL import Image

    photos = {p["name"]: p for p in list_photos()}
    if name not in photos:
        raise KeyError(f"no photo {name!r}; the photos are {sorted(photos)}")
    path = DATA_DIR / "photos" / photos[name]["file"]
    if not path.is_file():
        raise _missing(f"photo {name!r}", [path], "Rebuild with `python scripts/make_data.py`.")
    verify_shipped(path)
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except (OSError, SyntaxError) as err:  # PIL: truncated or not an image
        raise ValueError(f"{path} cannot be read as an image ({err}). Fix: `git checkout -- data/photos`") from err


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names, in the order of a classifier's outputs."""
    return _read_json("labels/imagenet.json")


def fashion_mnist_labels() -> list[str]:
    return _read_json("labels/fashion_mnist.json")


def mnist_labels() -> list[str]:
    return _read_json("labels/mnist.json")
