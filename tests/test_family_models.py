"""The ViT family's shipped models: plain transformers classes load them, they stay small, and
their metrics.json figures are reproduced on the official 10k test split.

Trained by scripts/train_family.py; each test names the command that rebuilds a model.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from vit_course.data import load_fashion_mnist, to_model_input
from vit_course.paths import DATA_DIR

sys.path.insert(0, str(DATA_DIR.parent / "scripts"))
import train_family  # noqa: E402

MAX_BYTES = 10 * 1024 * 1024
SWIN_DIR = DATA_DIR / "models" / "swin-tiny-fashion"
CLIP_DIR = DATA_DIR / "models" / "clip-tiny-fashion"
MAE_DIR = DATA_DIR / "models" / "mae-tiny-fashion"


def metrics_of(folder):
    return json.loads((folder / "metrics.json").read_text())


def shipped(folder):
    if not (folder / "metrics.json").exists():
        pytest.fail(f"{folder} is missing: run python scripts/train_family.py --model "
                    f"{folder.name.split('-')[0]} --threads 1")
    return metrics_of(folder)


@pytest.mark.parametrize("folder", [SWIN_DIR, CLIP_DIR, MAE_DIR], ids=lambda p: p.name)
def test_model_is_small_and_records_its_command(folder):
    metrics = shipped(folder)
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size <= MAX_BYTES, f"{folder} is {size / 1e6:.1f} MB, over 10 MB"
    assert metrics["command"].startswith("python scripts/train_family.py --model "), metrics["command"]


def test_swin_loads_with_transformers_and_reproduces_its_test_accuracy():
    import transformers

    metrics = shipped(SWIN_DIR)
    model = transformers.SwinForImageClassification.from_pretrained(SWIN_DIR).eval()
    images, labels = load_fashion_mnist("test", source="full")
    with torch.inference_mode():
        x = to_model_input(images, channels=1)
        preds = torch.cat([model(pixel_values=x[i:i + 500]).logits.argmax(-1) for i in range(0, len(x), 500)])
    correct = int((preds == labels).sum())
    # a different thread count may flip an image whose two top logits nearly tie
    assert abs(correct - metrics["test_correct"]) <= 2, (
        f"expected {metrics['test_correct']} correct of 10000 as in metrics.json, got {correct}")


def test_swin_is_the_course_swin():
    from vit_course.swin import SwinTransformer
    import transformers

    hf_model = transformers.SwinForImageClassification.from_pretrained(SWIN_DIR).eval()
    ours = SwinTransformer.from_hf(SWIN_DIR)
    x = to_model_input(load_fashion_mnist("test")[0][:8], channels=1)
    with torch.no_grad():
        assert (ours(x) - hf_model(pixel_values=x).logits).abs().max() < 1e-4


def test_clip_loads_with_transformers_and_reproduces_its_figures():
    import transformers

    metrics = shipped(CLIP_DIR)
    model = transformers.CLIPModel.from_pretrained(CLIP_DIR).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(CLIP_DIR)
    again = train_family.clip_metrics(model, tokenizer)
    for key in ("zero_shot_accuracy_heldout_templates", "zero_shot_accuracy_train_templates",
                "text_to_image_precision_at_100", "image_to_image_top5_same_class"):
        assert abs(again[key] - metrics[key]) <= 2e-4, f"{key}: metrics.json says {metrics[key]}, got {again[key]}"
    assert again["heldout_templates"] == metrics["heldout_templates"]
    assert not set(metrics["heldout_templates"]) & set(metrics["train_templates"]), "held-out templates were trained on"
    assert metrics["zero_shot_accuracy_heldout_templates"] > 0.5, "zero-shot should be far above chance (0.1)"



def test_mae_loads_with_transformers_and_reproduces_its_linear_probes():
    import transformers

    metrics = shipped(MAE_DIR)
    model = transformers.ViTMAEForPreTraining.from_pretrained(MAE_DIR).eval()
    hp = metrics["hyperparameters"]
    again = train_family.probe_accuracies(model, train_family.MAERecipe.from_record(hp), hp["seed"])
    for name, accuracy in metrics["linear_probe"].items():
        assert abs(again[name] - accuracy) <= 2e-3, f"{name}: metrics.json says {accuracy}, got {again[name]}"


def test_mae_reconstructs_masked_patches_better_than_predicting_zeros():
    """On test images (normalised pixels) its masked-patch loss beats predicting 0, the training mean."""
    from vit_course.mae import MaskedAutoencoder, mae_patchify

    shipped(MAE_DIR)
    model = MaskedAutoencoder.from_hf(MAE_DIR)
    x = to_model_input(load_fashion_mnist("test")[0][:200], channels=1)
    noise = torch.rand(200, 49, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(x, noise=noise)
    zeros_loss = ((mae_patchify(x, 4) ** 2).mean(-1) * out.mask).sum() / out.mask.sum()
    assert out.loss < 0.6 * zeros_loss, f"masked-patch loss {out.loss:.3f} vs predicting zeros {zeros_loss:.3f}"


def test_mae_position_tables_are_the_fixed_sin_cos_ones():
    """transformers 5.23 builds ViTMAEForPreTraining with zero tables; the script must fill them."""
    import transformers

    from vit_course.mae import mae_position_embedding

    shipped(MAE_DIR)
    model = transformers.ViTMAEForPreTraining.from_pretrained(MAE_DIR)
    hp = metrics_of(MAE_DIR)["hyperparameters"]
    grid = 28 // hp["patch_size"]
    assert torch.equal(model.vit.embeddings.position_embeddings, mae_position_embedding(grid, hp["hidden_size"]))
    assert torch.equal(model.decoder.decoder_pos_embed, mae_position_embedding(grid, hp["decoder_hidden_size"]))
