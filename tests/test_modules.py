"""The building blocks on their own: patching, positions, attention, and their errors."""

import math

import pytest
import torch
import transformers
from torch.nn import functional as F

from vit_course import VisionTransformer, ViTConfig
from vit_course.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from vit_course.patches import LinearPatchEmbedding, PatchEmbedding, patchify, unpatchify
from vit_course.position import interpolate_pos_encoding, sincos_1d, sincos_2d

TINY = dict(image_size=16, patch_size=4, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
            intermediate_size=48, num_labels=5)


def test_patchify_matches_conv_kernel_order():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 12, 20, generator=g)
    conv = PatchEmbedding(patch_size=4, num_channels=3, hidden_size=8)
    linear = LinearPatchEmbedding.from_conv(conv)
    torch.testing.assert_close(linear(images), conv(images), atol=1e-6, rtol=0)


def test_patchify_is_row_major_and_unpatchify_inverts_it():
    images = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    # patch 1 is the second patch of the first row: columns 4..7 of rows 0..3
    torch.testing.assert_close(patches[0, 1], images[0, :, 0:4, 4:8].reshape(-1))
    torch.testing.assert_close(unpatchify(patches, 4, (8, 12), 3), images)


def test_patchify_equals_the_einops_pattern_with_channels_first():
    einops = pytest.importorskip("einops")
    images = torch.randn(2, 3, 8, 12)
    expected = einops.rearrange(images, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=4, p2=4)
    torch.testing.assert_close(patchify(images, 4), expected)


def test_sincos_tables_have_unit_pairs_and_distinct_rows():
    table = sincos_1d(10, 16)
    assert table.shape == (10, 16)
    torch.testing.assert_close(table[:, :8] ** 2 + table[:, 8:] ** 2, torch.ones(10, 8))
    grid = sincos_2d(3, 4, 16)
    assert grid.shape == (12, 16)
    assert torch.cdist(grid, grid).add(torch.eye(12)).min() > 0, "two positions share an embedding"
    # the first half encodes the row only: positions in one row share it
    torch.testing.assert_close(grid[0, :8], grid[3, :8])


def test_interpolate_pos_encoding_keeps_cls_and_resizes_grid():
    pos = torch.randn(1, 1 + 16, 8)
    out = interpolate_pos_encoding(pos, 24, 32, patch_size=4)
    assert out.shape == (1, 1 + 6 * 8, 8)
    torch.testing.assert_close(out[:, 0], pos[:, 0])
    assert interpolate_pos_encoding(pos, 16, 16, patch_size=4) is pos


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 5, 7), (2, 4, 6, 1)])
def test_scaled_dot_product_attention_matches_torch(shape):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
    out, weights = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6, rtol=0)
    expected = (q @ k.transpose(-2, -1) / math.sqrt(shape[-1])).softmax(-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(-1), torch.ones(shape[:-1]))


def test_attention_mask_blocks_keys():
    q = k = v = torch.randn(1, 4, 8)
    mask = torch.tensor([True, True, False, False])
    _, weights = scaled_dot_product_attention(q, k, v, mask=mask)
    assert torch.all(weights[..., 2:] == 0)


def test_multi_head_attention_weights_shape_and_fused_path():
    attn = MultiHeadSelfAttention(24, 3).eval()
    x = torch.randn(2, 5, 24)
    out, weights = attn(x)
    assert out.shape == (2, 5, 24) and weights.shape == (2, 3, 5, 5)
    attn.fused = True
    fused_out, none = attn(x, need_weights=False)
    assert none is None
    torch.testing.assert_close(fused_out, out, atol=1e-6, rtol=0)


def test_backbone_returns_cls_features_and_head_returns_logits():
    x = torch.randn(2, 3, 16, 16)
    assert VisionTransformer(ViTConfig(**TINY)).eval()(x).shape == (2, 5)
    backbone = VisionTransformer(ViTConfig(**{**TINY, "num_labels": 0})).eval()
    assert backbone(x).shape == (2, 24)
    assert backbone.forward_features(x).shape == (2, 1 + 16, 24)
    maps = backbone.attention_maps(x)
    assert len(maps) == 2 and maps[0].shape == (2, 3, 17, 17)


def test_config_round_trips_through_hf_config():
    config = ViTConfig(**TINY, id2label={i: f"c{i}" for i in range(5)})
    hf_config = config.to_hf()
    assert isinstance(hf_config, transformers.ViTConfig)
    assert hf_config.layer_norm_eps == 1e-12 and hf_config.hidden_act == "gelu" and hf_config.qkv_bias
    assert ViTConfig.from_hf(hf_config) == config


# Bad input: a ValueError that says what was expected and what was given

@pytest.mark.parametrize(
    "make_input, expected_words",
    [
        (lambda: torch.randn(1, 3, 18, 16), ["divisible", "18x16"]),
        (lambda: torch.randn(1, 3, 20, 20), ["16x16", "20x20", "interpolate_pos_encoding"]),
        (lambda: torch.randn(1, 1, 16, 16), ["3 channels", "got 1"]),
        (lambda: torch.randn(3, 16, 16), ["rank 4", "rank 3"]),
    ],
    ids=["not_divisible", "wrong_size", "wrong_channels", "wrong_rank"],
)
def test_bad_images_get_a_clear_value_error(make_input, expected_words):
    model = VisionTransformer(ViTConfig(**TINY))
    with pytest.raises(ValueError) as error:
        model(make_input())
    for word in expected_words:
        assert word in str(error.value), f"{word!r} missing from: {error.value}"


def test_config_rejects_heads_that_do_not_divide_hidden_size():
    with pytest.raises(ValueError, match="divisible by num_attention_heads.*hidden_size=25"):
        ViTConfig(**{**TINY, "hidden_size": 25})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadSelfAttention(10, 3)


def test_config_rejects_image_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="patch_size=4.*18x16"):
        ViTConfig(**{**TINY, "image_size": (18, 16)})


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda sd: sd.pop("norm.weight"), "missing keys: norm.weight"),
        (lambda sd: sd.update(extra=torch.zeros(1)), "unexpected keys: extra"),
        (lambda sd: sd.update({"blocks.1.mlp.fc1.weight": torch.zeros(47, 24)}),
         "key blocks.1.mlp.fc1.weight has shape (47, 24), expected (48, 24)"),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_state_dict_problems_name_the_key(edit, expected):
    model = VisionTransformer(ViTConfig(**TINY))
    state_dict = dict(model.state_dict())
    edit(state_dict)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state_dict)
    assert expected in str(error.value)


def test_hf_checkpoint_with_a_misshaped_key_names_it(tmp_path):
    from safetensors.torch import load_file, save_file

    hf_model = transformers.ViTForImageClassification(ViTConfig(**TINY).to_hf())
    hf_model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights["vit.layernorm.weight"] = torch.ones(23)
    del weights["classifier.bias"]
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(ValueError) as error:
        VisionTransformer.from_hf(tmp_path)
    message = str(error.value)
    assert "missing keys: classifier.bias" in message
    assert "vit.layernorm.weight has shape (23,), expected (24,)" in message


def test_from_hf_rejects_other_sources(tmp_path):
    with pytest.raises(ValueError, match="expected a transformers ViT model"):
        VisionTransformer.from_hf(42)
    with pytest.raises(ValueError, match="not a local directory"):
        VisionTransformer.from_hf(str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        (tmp_path / "config.json").write_text(ViTConfig(**TINY).to_hf().to_json_string())
        VisionTransformer.from_hf(tmp_path)
