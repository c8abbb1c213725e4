"""Bad input is a ValueError that says what was expected and what was given, before any work.

One test per probe of the package's loaders, helpers, config and model (issue: "silent
reinterpretation" and "errors from deep inside"). Each shows the bad case raising and,
where the guard could be too eager, the good case still passing.
"""

import gzip
import json
import shutil

import numpy as np
import pytest
import torch

from vit_course import data
from vit_course.config import ViTConfig
from vit_course.data import make_loader, to_model_input
from vit_course.vit import VisionTransformer

GRAY = torch.randint(0, 256, (2, 28, 28), dtype=torch.uint8)


# ---------------------------------------------------------------------------
# to_model_input / make_loader take uint8 gray images (N, H, W), nothing else


def test_float_images_in_unit_range_are_refused_not_divided_by_255_again():
    x = GRAY.float() / 255  # already in [0, 1]
    with pytest.raises(ValueError, match=r"expected uint8 .* got torch\.float32"):
        to_model_input(x, mean=None)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 1, 28, 28), (4, 28, 28, 3), (28, 28, 3)])
def test_channel_axes_are_refused_not_folded_into_the_batch(shape):
    images = torch.zeros(shape, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"expected gray images .*got shape " + str(shape).replace("(", r"\(").replace(")", r"\)")):
        to_model_input(images)


def test_documented_forms_still_work():
    assert to_model_input(GRAY, channels=3).shape == (2, 3, 28, 28)
    assert to_model_input(GRAY[0]).shape == (1, 28, 28)
    assert to_model_input(GRAY, mean=None, size=14).shape == (2, 1, 14, 14)


@pytest.mark.parametrize("kwargs, match", [
    (dict(channels=0), "channels must be at least 1, got 0"),
    (dict(channels=1.5), "channels must be an integer"),
    (dict(std=0.0), r"std must be in \(0.0, inf\), got 0"),
    (dict(std=float("nan")), "std must be a finite number"),
    (dict(size=0), "size must be at least 1"),
])
def test_preprocessing_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        to_model_input(GRAY, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=GRAY.float()), "expected uint8"),
    (dict(images=torch.zeros(2, 3, 28, 28, dtype=torch.uint8)), "expected gray images"),
    (dict(labels=torch.zeros(3, dtype=torch.long)), "2 images but 3 labels"),
    (dict(labels=torch.zeros(2)), "expected integer labels"),
    (dict(channels=0), "channels must be at least 1"),
    (dict(std=0.0), "std must be in"),
    (dict(batch_size=0), "batch_size must be at least 1"),
])
def test_make_loader_checks_its_input_before_the_first_batch(kwargs, match):
    args = dict(images=GRAY, labels=torch.zeros(2, dtype=torch.long))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        make_loader(args.pop("images"), args.pop("labels"), **args)


def test_make_loader_without_normalisation_ignores_std():
    x, _ = next(iter(make_loader(GRAY, torch.zeros(2, dtype=torch.long), normalize=False, std=0.0)))
    assert x.shape == (2, 1, 28, 28) and float(x.max()) <= 1.0


# ---------------------------------------------------------------------------
# idx, npz and JSON files: a broken file names itself and the fix


def _idx(path, array, extra=b""):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes() + extra)
    return path


def _full_fashion_folder(folder, n_images=10, n_labels=10):
    _idx(folder / "t10k-images-idx3-ubyte", np.zeros((n_images, 28, 28)))
    _idx(folder / "t10k-labels-idx1-ubyte", np.zeros(n_labels))
    return folder


def test_idx_images_and_labels_of_different_lengths_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_COURSE_FASHION_MNIST", str(_full_fashion_folder(tmp_path, 10, 5)))
    with pytest.raises(ValueError, match=r"do not match.*\(10, 28, 28\).*\(5,\)"):
        data.load_fashion_mnist("test", source="full")


def test_matching_idx_files_load(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_COURSE_FASHION_MNIST", str(_full_fashion_folder(tmp_path, 10, 10)))
    images, labels = data.load_fashion_mnist("test", source="full")
    assert images.shape == (10, 28, 28) and labels.shape == (10,)


def test_truncated_idx_file_names_its_path(tmp_path):
    path = _idx(tmp_path / "x-idx3-ubyte", np.zeros((10, 28, 28)))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=f"{path}: truncated or padded idx file.*apt-get install dataset-fashion-mnist"):
        data.read_idx(path)


def test_truncated_gzip_idx_file_names_its_path(tmp_path):
    raw = _idx(tmp_path / "raw", np.zeros((10, 28, 28))).read_bytes()
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(ValueError, match=f"{path}: cannot be read"):
        data.read_idx(path)


def test_truncated_npz_names_its_path_and_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    np.savez(folder / "test.npz", images=np.zeros((4, 28, 28), np.uint8), labels=np.zeros(4, np.uint8))
    (folder / "test.npz").write_bytes((folder / "test.npz").read_bytes()[:300])
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"test\.npz cannot be read .*git checkout -- data/"):
        data.load_fashion_mnist("test")


def test_truncated_heldout_indices_name_their_path_and_the_fix(tmp_path, monkeypatch):
    folder = tmp_path / "fashion_mnist"
    folder.mkdir()
    np.savez(folder / "heldout.npz", indices=np.arange(5000))
    (folder / "heldout.npz").write_bytes((folder / "heldout.npz").read_bytes()[:300])
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"heldout\.npz cannot be read .*git checkout -- data/"):
        data.fashion_mnist_indices("heldout")


def test_truncated_json_names_its_path_and_the_fix(tmp_path, monkeypatch):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "imagenet.json").write_text(json.dumps(["a", "b"])[:5])
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"imagenet\.json is not valid JSON .*git checkout -- data/labels"):
        data.imagenet_labels()


def test_empty_json_is_named_empty(tmp_path, monkeypatch):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "imagenet.json").write_text("")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=r"imagenet\.json is empty"):
        data.imagenet_labels()


# ---------------------------------------------------------------------------
# ViTConfig validates every field; the model names the dtype it wants


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_attention_heads=0), "num_attention_heads must be at least 1, got 0"),
    (dict(patch_size=0), "patch_size must be at least 1, got 0"),
    (dict(hidden_size=-64), "hidden_size must be at least 1"),
    (dict(num_hidden_layers=0), "num_hidden_layers must be at least 1"),
    (dict(intermediate_size=0), "intermediate_size must be at least 1"),
    (dict(num_channels=0), "num_channels must be at least 1"),
    (dict(num_labels=-1), "num_labels must be at least 0"),
    (dict(image_size=0), "image_size must be at least 1"),
    (dict(image_size=28.0), r"image_size must be an integer, got 28\.0"),
    (dict(image_size=(28, 28, 28)), r"image_size must be an int or \(height, width\)"),
    (dict(layer_norm_eps=-1), r"layer_norm_eps must be in \(0.0, inf\)"),
    (dict(layer_norm_eps=0.0), r"layer_norm_eps must be in \(0.0, inf\)"),
    (dict(hidden_dropout_prob=1.5), r"hidden_dropout_prob must be in \[0.0, 1.0\)"),
    (dict(attention_probs_dropout_prob=-0.1), "attention_probs_dropout_prob must be in"),
    (dict(initializer_range=float("nan")), "initializer_range must be a finite number"),
    (dict(hidden_size=True), "hidden_size must be an integer"),
    (dict(qkv_bias="yes"), "qkv_bias must be True or False"),
    (dict(num_labels=3, id2label={0: "a", 1: "b"}), r"id2label must name the classes 0\.\.2"),
    (dict(num_labels=2, id2label={"x": "a", 1: "b"}), r"id2label must map class indices .*got keys \['x', 1\]"),
    (dict(num_labels=2, id2label=["a", "b"]), "id2label must be a dict"),
])
def test_vit_config_rejects_each_bad_field(kwargs, match):
    base = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                image_size=28, patch_size=7, num_channels=1)
    with pytest.raises(ValueError, match=match):
        ViTConfig(**{**base, **kwargs})


def test_vit_config_accepts_rectangles_and_full_labels():
    config = ViTConfig(hidden_size=32, num_attention_heads=2, image_size=[28, 14], patch_size=7,
                       num_labels=2, id2label={"0": "a", "1": "b"})
    assert config.grid_size == (4, 2) and config.id2label == {0: "a", 1: "b"}


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float64, torch.float16])
def test_model_names_the_dtype_it_wants(dtype):
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=28, patch_size=7, num_channels=1)
    model = VisionTransformer(config).eval()
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(ValueError, match=rf"expected torch\.float32 pixel values .*got {dtype}"):
        model(x.to(dtype))
    assert model(x).shape == (1, 32)


# ---------------------------------------------------------------------------
# Model folders: a truncated or corrupted weights file names itself and the fix


def _broken_copy(src, dst, damage):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    weights = dst / "model.safetensors"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 3] if damage == "truncated" else raw[:-64] + b"\xff" * 64)
    return dst, weights


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_a_broken_vit_folder_names_its_weights_file(tmp_path, damage):
    from vit_course.paths import DATA_DIR

    folder, weights = _broken_copy(DATA_DIR / "models" / "vit-tiny-fashion", tmp_path / "vit", damage)
    with pytest.raises(ValueError, match=rf"{weights} .*Fix: .*git checkout -- data/models"):
        VisionTransformer.from_hf(folder)


@pytest.mark.parametrize("damage", ["truncated", "nan"])
def test_a_broken_cnn_folder_names_its_weights_file(tmp_path, damage):
    from vit_course import cnn
    from vit_course.paths import DATA_DIR

    folder, weights = _broken_copy(DATA_DIR / "models" / "cnn-fashion", tmp_path / "cnn", damage)
    with pytest.raises(ValueError, match=rf"{weights} .*Fix: .*git checkout -- data/models/cnn-fashion"):
        cnn.load(folder)


def _damaged_copy(name, dst, damage):
    """A copy of the shipped model folder `name`, one file damaged; returns (folder, damaged file)."""
    from vit_course.paths import DATA_DIR

    dst.mkdir()
    for f in (DATA_DIR / "models" / name).iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    target = dst / ("config.json" if damage.endswith("config") else "model.safetensors")
    raw = target.read_bytes()
    target.write_bytes({"truncated": raw[: len(raw) // 3], "nan": raw[:-64] + b"\xff" * 64, "empty config": b"",
                        "truncated config": raw[:20]}[damage])
    return dst, target


def _loaders():
    from vit_course.mae import MaskedAutoencoder
    from vit_course.swin import SwinTransformer

    return {"vit-tiny-fashion": VisionTransformer.from_hf, "mae-tiny-fashion": MaskedAutoencoder.from_hf,
            "swin-tiny-fashion": SwinTransformer.from_hf}


@pytest.mark.parametrize("damage", ["truncated", "nan", "empty config", "truncated config"])
@pytest.mark.parametrize("name", ["vit-tiny-fashion", "mae-tiny-fashion", "swin-tiny-fashion"])
def test_a_damaged_copy_of_any_model_folder_names_the_file_and_the_fix(tmp_path, name, damage):
    """Not only the ViT and the CNN: MAE and Swin read through transformers, which said
    "invalid header length" with no path, and loaded NaN weights silently."""
    folder, target = _damaged_copy(name, tmp_path / name, damage)
    with pytest.raises(ValueError, match=rf"{target} .*Fix: write {folder} again with save_pretrained"):
        _loaders()[name](folder)


@pytest.mark.parametrize("name", ["vit-tiny-fashion", "mae-tiny-fashion", "swin-tiny-fashion"])
def test_an_intact_copy_of_each_model_folder_loads(tmp_path, name):
    from vit_course.paths import DATA_DIR

    shutil.copytree(DATA_DIR / "models" / name, tmp_path / name)
    assert not _loaders()[name](tmp_path / name).training


def _resaved_copy(name, dst, layout):
    """The shipped model folder `name` written again as a sharded save (two safetensors files
    and their index) or as a legacy `pytorch_model.bin`; returns (folder, a weights file)."""
    from safetensors.torch import load_file, save_file

    from vit_course.paths import DATA_DIR

    src = DATA_DIR / "models" / name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    tensors = load_file(src / "model.safetensors")
    if layout == "bin":
        torch.save(tensors, dst / "pytorch_model.bin")
        return dst, dst / "pytorch_model.bin"
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, dst / file, metadata={"format": "pt"})
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst, dst / "model-00002-of-00002.safetensors"


@pytest.mark.parametrize("layout", ["sharded", "bin"])
@pytest.mark.parametrize("name", ["vit-tiny-fashion", "mae-tiny-fashion", "swin-tiny-fashion"])
def test_sharded_and_legacy_folders_load_and_their_nan_weights_are_named(tmp_path, name, layout):
    from safetensors.torch import load_file, save_file

    from vit_course.paths import DATA_DIR

    folder, weights = _resaved_copy(name, tmp_path / name, layout)
    loaded, shipped = (_loaders()[name](f).state_dict() for f in (folder, DATA_DIR / "models" / name))
    assert loaded.keys() == shipped.keys() and all(torch.equal(loaded[k], shipped[k]) for k in shipped)
    tensors = torch.load(weights, weights_only=True) if layout == "bin" else load_file(weights)
    key = next(k for k, t in tensors.items() if t.is_floating_point())
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    torch.save(tensors, weights) if layout == "bin" else save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"{weights} holds non-finite \(NaN or inf\) weights in \[.{key}"):
        _loaders()[name](folder)
