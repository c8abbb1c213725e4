"""Our contrastive loss against the real `transformers.CLIPModel`, same process, same embeddings.

The embeddings are CLIPModel's own projected features (`get_image_features`,
`get_text_features`, before normalisation); both weight regimes of test_parity.py.
"""

import math

import pytest
import torch
import transformers
from torch.nn import functional as F

from vit_course.clip import LOGIT_SCALE_INIT, clip_logits, clip_loss

from parity_helpers import assert_close  # noqa: E402
REGIMES = ["default_init", "std_0.3"]


def make_clip(regime, seed=0):
    torch.manual_seed(seed)
    text = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=16)
    vision = dict(image_size=30, patch_size=2, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                  num_attention_heads=4)
    model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision, projection_dim=24))
    if regime == "std_0.3":
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.3)
    model.set_attn_implementation("eager")
    return model.eval()


def batch(n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 30, 30, generator=g), torch.randint(1, 99, (n, 7), generator=g)


def features(model, pixels, ids):
    image = model.get_image_features(pixel_values=pixels)
    text = model.get_text_features(input_ids=ids)
    image = getattr(image, "pooler_output", image)  # a tensor or an output object, by version
    text = getattr(text, "pooler_output", text)
    return image, text


@pytest.mark.parametrize("regime", REGIMES)
def test_loss_and_logits_match_clip_model(regime):
    model = make_clip(regime)
    pixels, ids = batch()
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels, return_loss=True)
        image, text = features(model, pixels, ids)
        logits_per_image, logits_per_text = clip_logits(image, text, model.logit_scale)
        assert_close(logits_per_image, out.logits_per_image, f"{regime} logits_per_image")
        assert_close(logits_per_text, out.logits_per_text, f"{regime} logits_per_text")
        assert_close(clip_loss(image, text, model.logit_scale), out.loss, f"{regime} loss")


def test_near_misses_are_caught_by_the_comparison():
    """A one-directional loss, an unexponentiated temperature and unnormalised embeddings all differ."""
    model = make_clip("std_0.3")
    pixels, ids = batch()
    with torch.no_grad():
        expected = model(input_ids=ids, pixel_values=pixels, return_loss=True).loss
        image, text = features(model, pixels, ids)
        targets = torch.arange(5)
        one_way = F.cross_entropy(clip_logits(image, text, model.logit_scale)[0], targets)
        not_exp = clip_loss(image, text, torch.log(model.logit_scale))  # the scale used as is, not exp()
        raw = F.cross_entropy(model.logit_scale.exp() * image @ text.T, targets)
    for name, value in {"one direction": one_way, "temperature not exponentiated": not_exp, "not normalised": raw}.items():
        assert abs(value - expected) > 1e-3, f"{name} should differ from CLIP's loss"


def test_initial_temperature_is_clips():
    assert math.isclose(LOGIT_SCALE_INIT, transformers.CLIPConfig().logit_scale_init_value, abs_tol=1e-4)


def test_perfectly_aligned_pairs_give_a_small_loss():
    e = torch.eye(4) * 3
    assert clip_loss(e, e, LOGIT_SCALE_INIT) < 1e-3 < clip_loss(e, e.roll(1, 0), LOGIT_SCALE_INIT)


def test_bad_input_is_a_value_error_naming_expected_and_given():
    with pytest.raises(ValueError, match=r"\(B_images, E\) and \(B_texts, E\) with one E, got \(3, 4\) and \(3, 5\)"):
        clip_logits(torch.zeros(3, 4), torch.zeros(3, 5), 1.0)
    with pytest.raises(ValueError, match="as many texts as images .* got 3 images and 2 texts"):
        clip_loss(torch.zeros(3, 4), torch.zeros(2, 4), 1.0)
