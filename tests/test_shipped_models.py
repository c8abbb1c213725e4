"""The models in data/models: load offline, reproduce their metrics.json, stay small."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read once, when transformers is imported

import numpy as np
import pytest
import torch
from PIL import Image

from vit_course import cnn
from vit_course.cost import count_parameters
from vit_course.data import (
    FASHION_MNIST_LABELS, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
    load_fashion_mnist, load_photo, to_model_input,
)
from vit_course.paths import DATA_DIR

VIT_DIR = DATA_DIR / "models" / "vit-tiny-fashion"
CNN_DIR = DATA_DIR / "models" / "cnn-fashion"
MAX_BYTES = 10 * 1024 * 1024


def metrics_of(folder):
    return json.loads((folder / "metrics.json").read_text())


@pytest.fixture(scope="module")
def vit():
    from transformers import AutoModelForImageClassification

    return AutoModelForImageClassification.from_pretrained(VIT_DIR).eval()


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(VIT_DIR)


@pytest.fixture(scope="module")
def test_subset():
    return load_fashion_mnist("test")


@torch.inference_mode()
def predictions(model, images, channels):
    x = to_model_input(images, FASHION_MNIST_MEAN, FASHION_MNIST_STD, channels)  # (N, C, 28, 28)
    out = model(pixel_values=x).logits if channels == 3 else model(x)
    return out.argmax(-1)  # (N,)


def test_vit_reproduces_its_test_subset_accuracy(vit, test_subset):
    images, labels = test_subset
    metrics = metrics_of(VIT_DIR)
    correct = int((predictions(vit, images, 3) == labels).sum())
    assert correct == metrics["test_subset_correct"], f"{correct} correct, metrics.json says {metrics['test_subset_correct']}"
    assert abs(correct / len(labels) - metrics["test_subset_accuracy"]) < 1e-9


@pytest.mark.parametrize("kind", ["vit", "cnn"])
def test_models_reproduce_their_official_test_accuracy(kind, vit):
    """All 10k official test images ship in data/fashion_mnist/official, so this runs anywhere."""
    images, labels = load_fashion_mnist("test", source="full")
    assert len(labels) == 10_000
    folder, model, channels = (VIT_DIR, vit, 3) if kind == "vit" else (CNN_DIR, cnn.load(CNN_DIR).eval(), 1)
    metrics = metrics_of(folder)
    correct = int((predictions(model, images, channels) == labels).sum())
    assert correct == metrics["test_correct"], f"{correct} of 10000 correct, metrics.json says {metrics['test_correct']}"
    assert abs(correct / 10_000 - metrics["test_accuracy"]) < 1e-9


def test_vit_reaches_the_90_percent_target_on_the_official_test_split():
    assert metrics_of(VIT_DIR)["test_accuracy"] >= 0.90


def test_cnn_reproduces_its_test_subset_accuracy(test_subset):
    images, labels = test_subset
    metrics = metrics_of(CNN_DIR)
    model = cnn.load(CNN_DIR)
    correct = int((predictions(model, images, 1) == labels).sum())
    assert correct == metrics["test_subset_correct"], f"{correct} correct, metrics.json says {metrics['test_subset_correct']}"
    assert abs(correct / len(labels) - metrics["test_subset_accuracy"]) < 1e-9


def test_vit_has_the_class_names(vit):
    assert [vit.config.id2label[i] for i in range(10)] == list(FASHION_MNIST_LABELS)
    assert vit.config.label2id["Ankle boot"] == 9


def test_processor_matches_the_tensor_path_on_gray_images(processor, test_subset):
    images, _ = test_subset
    pil = [Image.fromarray(im.numpy(), mode="L") for im in images[:64]]
    got = processor(pil, return_tensors="pt").pixel_values
    expected = to_model_input(images[:64], FASHION_MNIST_MEAN, FASHION_MNIST_STD, channels=3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_processor_accepts_a_large_rgb_photo(processor):
    photo = load_photo("chelsea")
    assert photo.mode == "RGB" and max(photo.size) > 28
    x = processor(photo, return_tensors="pt").pixel_values
    assert x.shape == (1, 3, 28, 28), x.shape


def test_pipeline_on_gray_digit_size_image_and_rgb_photo(vit, test_subset):
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(VIT_DIR))
    images, _ = test_subset
    gray = Image.fromarray(images[0].numpy(), mode="L")  # 28x28 grayscale
    top = classify(gray, top_k=3)
    assert len(top) == 3 and all(r["label"] in FASHION_MNIST_LABELS for r in top)
    expected = FASHION_MNIST_LABELS[int(predictions(vit, images[:1], 3)[0])]
    assert top[0]["label"] == expected, f"pipeline says {top[0]['label']}, model says {expected}"
    photo = classify(load_photo("chelsea"), top_k=1)
    assert photo[0]["label"] in FASHION_MNIST_LABELS and 0 < photo[0]["score"] <= 1


@pytest.mark.parametrize("folder", [VIT_DIR, CNN_DIR], ids=["vit", "cnn"])
def test_model_folder_is_small_and_metrics_are_complete(folder):
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size <= MAX_BYTES, f"{folder.name} is {size / 1e6:.1f} MB"
    metrics = metrics_of(folder)
    for key in ("test_accuracy", "test_subset_accuracy", "val_accuracy", "train_seconds", "num_threads",
                "torch_version", "num_parameters", "size_bytes", "epochs", "hyperparameters", "command"):
        assert key in metrics, f"metrics.json of {folder.name} lacks {key}"


def test_cnn_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = cnn.SmallCNN(cnn.CNNConfig(channels=(8, 16), id2label={0: "a"})).eval()
    cnn.save(model, tmp_path)
    again = cnn.load(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(again(x), model(x))
    assert again.config == model.config
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"], "no temp files left"


def test_cnn_load_names_the_keys_that_do_not_fit(tmp_path):
    from safetensors.torch import load_file, save_file

    cnn.save(cnn.SmallCNN(cnn.CNNConfig(channels=(8, 16))), tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state.pop("head.bias")
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(3, 3)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as info:
        cnn.load(tmp_path)
    message = str(info.value)
    assert "head.bias" in message and "extra.weight" in message and "head.weight" in message, message


def test_cnn_is_small():
    assert count_parameters(cnn.SmallCNN()) < 500_000
    assert cnn.SmallCNN()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_vit_fine_tunes_on_mnist_digits_within_a_minute(vit):
    """Re-initialise the head for 10 digits and train one epoch on the 1000-image subset."""
    import copy
    import time

    from vit_course.data import MNIST_MEAN, MNIST_STD, load_mnist, make_loader

    torch.manual_seed(0)
    model = copy.deepcopy(vit).train()
    model.classifier = torch.nn.Linear(model.config.hidden_size, 10)
    images, labels = load_mnist("train")
    loader = make_loader(images, labels, 64, train=True, augment=False, mean=MNIST_MEAN, std=MNIST_STD,
                         channels=3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(pixel_values=x).logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - start
    assert seconds < 60, f"one epoch of fine-tuning took {seconds:.1f} s"
    test_x, test_y = load_mnist("test")
    model.eval()
    with torch.inference_mode():
        x = to_model_input(test_x, MNIST_MEAN, MNIST_STD, channels=3)
        acc = (model(pixel_values=x).logits.argmax(-1) == test_y).float().mean().item()
    assert acc > 0.5, f"after one epoch the digits are only {acc:.2f} right (chance 0.1)"
    assert np.isfinite(loss.item())
