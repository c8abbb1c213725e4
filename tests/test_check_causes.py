"""Mistakes met when learners tried the exercises: each fails with its own named cause.

Every mistake below is written as a learner would write it (not with the check's own
helpers), and the test asks for words of the cause that only that mistake prints.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from vit_course import checks
from vit_course.checks.position import check_interpolate_positions, check_sincos_2d
from vit_course.inference import preprocess, top_k
from vit_course.position import sincos_2d
from vit_course.rollout import attention_rollout


def assert_cause(result, *words):
    assert not result.passed and result.status == "fail", str(result)
    assert "the check itself failed" not in result.message, str(result)
    text = str(result).lower()
    for word in words:
        assert word.lower() in text, f"expected {word!r} in:\n{result}"


# 01 patchify --------------------------------------------------------------------------------


def patchify_pixels_transposed(x, P):
    B, C, H, W = x.shape
    return x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 5, 3).reshape(B, -1, C * P * P)


def test_pixels_transposed_inside_a_patch_is_named():
    assert_cause(checks.check_patchify(patchify_pixels_transposed), "pixels inside each patch are transposed")


# 02 sin-cos and resizing ------------------------------------------------------------------


def sincos(rows, cols, dim, temperature=10000.0, start=0, use_temperature=True):
    t = temperature if use_temperature else 10000.0
    d = dim // 2
    omega = 1.0 / t ** (torch.arange(d // 2, dtype=torch.float64) / (d // 2))

    def table(n):
        a = torch.arange(start, start + n, dtype=torch.float64)[:, None] * omega
        return torch.cat([a.sin(), a.cos()], 1)

    r, c = table(rows), table(cols)
    return torch.cat([r[:, None].expand(rows, cols, d), c[None].expand(rows, cols, d)], -1).reshape(-1, dim).float()


def test_sincos_reference_style_passes_and_honours_temperature():
    assert check_sincos_2d(sincos).passed


def test_positions_starting_at_1_are_named():
    assert_cause(check_sincos_2d(lambda r, c, d, temperature=10000.0: sincos(r, c, d, temperature, start=1)),
                 "positions start at 1")


def test_an_ignored_temperature_is_named():
    result = check_sincos_2d(lambda r, c, d, temperature=10000.0: sincos(r, c, d, temperature, use_temperature=False))
    assert_cause(result, "temperature argument is ignored")
    assert "temperature=100" in str(result)


def interp(pos, rows, cols, how="ok"):
    cls_row, grid = pos[:, :1], pos[:, 1:]
    side = math.isqrt(grid.shape[1])
    D = grid.shape[-1]
    grid = grid.reshape(1, side, side, D).permute(0, 3, 1, 2)
    if how == "dino":
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic",
                             align_corners=False)
    elif how == "cols_rows":
        grid = F.interpolate(grid, size=(cols, rows), mode="bicubic", align_corners=False)
    else:
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    return torch.cat([cls_row, grid.permute(0, 2, 3, 1).reshape(1, -1, D)], dim=1)


def test_dino_scale_factor_is_named():
    assert check_interpolate_positions(interp).passed
    assert_cause(check_interpolate_positions(lambda p, r, c: interp(p, r, c, "dino")), "DINO's scale_factor")


def test_size_cols_rows_is_named_not_the_permute():
    result = check_interpolate_positions(lambda p, r, c: interp(p, r, c, "cols_rows"))
    assert_cause(result, "size=(new_cols, new_rows)")
    assert "permute(0, 3, 2, 1)" not in str(result)


# 03 attention --------------------------------------------------------------------------------


class MHSA(nn.Module):
    how = "ok"

    def __init__(self, hidden_size, num_heads, qkv_bias=True):
        super().__init__()
        self.h = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        B, N, D = x.shape
        h, d = self.h, D // self.h
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.how == "swap_qk":
            q, k = k, q
        if self.how == "keys_as_values":
            v = k
        if self.how == "transpose23":
            split = lambda t: t.reshape(B, N, h, d).transpose(2, 3)  # noqa: E731
        else:
            split = lambda t: t.reshape(B, N, h, d).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        weights = (q @ k.transpose(-2, -1) / math.sqrt(d)).softmax(-1)
        out = (weights @ v).transpose(1, 2).reshape(B, N, D)
        return self.o_proj(out), weights


def mhsa(how):
    return type(f"MHSA_{how}", (MHSA,), {"how": how})


@pytest.mark.parametrize(
    "how, words",
    [("swap_qk", "q and k are swapped"), ("keys_as_values", "keys are used as values"),
     ("transpose23", "transpose(2, 3)")],
)
def test_attention_mistakes_are_named(how, words):
    assert checks.check_multi_head_self_attention(MHSA).passed
    assert_cause(checks.check_multi_head_self_attention(mhsa(how)), words)


# 04 block --------------------------------------------------------------------------------


class Block(nn.Module):
    how = "ok"

    def __init__(self, config):
        super().__init__()
        from vit_course.attention import MultiHeadSelfAttention

        D = config.hidden_size
        self.norm1 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.attn = type("Mine", (MultiHeadSelfAttention,), {})(D, config.num_attention_heads,
                                                                  qkv_bias=config.qkv_bias)
        self.norm2 = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(D, config.intermediate_size)
        self.mlp.fc2 = nn.Linear(config.intermediate_size, D)

    def mlp_forward(self, x):
        h = self.mlp.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.how == "quick_gelu" else F.gelu(h)
        return self.mlp.fc2(h)

    def forward(self, x):
        if self.how == "parallel":
            return x + self.attn(self.norm1(x))[0] + self.mlp_forward(self.norm2(x))
        x = x + self.attn(self.norm1(x))[0]
        return x + self.mlp_forward(self.norm2(x))


@pytest.mark.parametrize("how, words", [("quick_gelu", "quick GELU"), ("parallel", "in parallel")])
def test_block_mistakes_are_named(how, words):
    assert checks.check_transformer_block(Block).passed
    assert_cause(checks.check_transformer_block(type("B", (Block,), {"how": how})), words)


# 05 preprocess and top-k ------------------------------------------------------------------


def preprocess_with(mean=None, std=None, convert=True):
    def fn(image, processor):
        import numpy as np

        if convert:
            image = image.convert("RGB")
        size = processor.size
        resized = image.resize((size["width"], size["height"]), resample=2)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32)).permute(2, 0, 1) / 255.0
        m = torch.tensor(processor.image_mean if mean is None else mean(processor)).view(3, 1, 1)
        s = torch.tensor(processor.image_std if std is None else std(processor)).view(3, 1, 1)
        return ((x - m) / s)[None]

    return fn


@pytest.mark.parametrize(
    "learner, words",
    [
        (preprocess_with(lambda p: [0.485, 0.456, 0.406], lambda p: [0.229, 0.224, 0.225]), "hard-coded to ImageNet's"),
        (preprocess_with(lambda p: [0.5] * 3, lambda p: [0.5] * 3), "hard-coded to 0.5"),
        (preprocess_with(lambda p: [p.image_mean[0]] * 3, lambda p: [p.image_std[0]] * 3), "one mean and std for all"),
        (preprocess_with(lambda p: p.image_mean[::-1], lambda p: p.image_std[::-1]), "wrong channels"),
        (preprocess_with(convert=False), "convert('RGB')"),
    ],
    ids=["imagenet", "half", "one-channel-stats", "reversed", "no-convert"],
)
def test_preprocess_mistakes_are_named(learner, words):
    assert checks.check_preprocess(preprocess_with()).passed
    assert_cause(checks.check_preprocess(learner), words)


def test_preprocess_that_converts_only_gray_images_fails_on_rgba():
    def converts_gray_only(image, processor):
        if image.mode == "L":
            image = image.convert("RGB")
        return preprocess_with(convert=False)(image, processor)

    result = checks.check_preprocess(converts_gray_only)
    assert_cause(result, "RGBA", "convert('RGB')")
    assert "a gray" not in str(result)


def test_top_k_in_class_order_is_named():
    def class_order(logits, k, id2label):
        probs = logits.softmax(-1)
        rows = []
        for row in probs:
            idx = sorted(row.topk(k).indices.tolist())
            rows.append([(id2label[i], float(row[i])) for i in idx])
        return rows

    assert_cause(checks.check_top_k(class_order), "class order")


# 06 layer-wise learning rates --------------------------------------------------------------


def lr_groups_transformers4(model, base_lr, decay):
    import re

    L = model.config.num_hidden_layers
    groups = []
    for name, p in model.named_parameters():
        match = re.search(r"encoder\.layer\.(\d+)\.", name)  # transformers 4's names
        i = 0 if "embeddings" in name else int(match.group(1)) + 1 if match else L + 1
        groups.append({"params": [p], "lr": base_lr * decay ** (L + 1 - i)})
    return groups


def test_transformers_4_layer_names_are_named():
    assert_cause(checks.check_layerwise_lr_groups(lr_groups_transformers4), "vit.encoder.layer.N")


def test_parameter_names_in_groups_are_not_called_a_tensor():
    def names(model, base_lr, decay):
        return [{"params": [n for n, _ in model.named_parameters()], "lr": base_lr}]

    result = checks.check_layerwise_lr_groups(names)
    assert_cause(result, "holds the name", "named_parameters()")
    assert "a tensor" not in str(result)


# 07 rollout ----------------------------------------------------------------------------------


def rollout_renorm_before(attentions):
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T)
    result = eye.expand(B, T, T)
    for a in attentions:
        fused = a.mean(1)
        fused = fused / fused.sum(-1, keepdim=True)
        result = (0.5 * fused + 0.5 * eye) @ result
    return result


def rollout_batch_mean(attentions):
    B, _, T, _ = attentions[0].shape
    result = torch.eye(T).expand(B, T, T)
    for a in attentions:
        m = 0.5 * a.mean(0) + 0.5 * torch.eye(T)
        result = (m / m.sum(-1, keepdim=True)) @ result
    return result


def test_rollout_renormalised_before_the_identity_is_named():
    assert_cause(checks.check_attention_rollout(rollout_renorm_before), "before the identity is added")


def test_rollout_mean_over_the_batch_gets_its_own_cause():
    result = checks.check_attention_rollout(rollout_batch_mean)
    assert_cause(result, "mean(dim=0) averages the batch")
    assert "keepdim" not in (result.cause or "")
    assert checks.check_attention_rollout(lambda a: attention_rollout(list(a))).passed


# 08 shift ------------------------------------------------------------------------------------


def shift_with_minus_zero_slice(images, dx, dy):
    out = torch.zeros_like(images)
    H, W = images.shape[-2:]
    ys, yd = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    if dx >= 0:  # the classic slip: images[..., :-dx] is empty when dx == 0
        out[..., yd, dx:] = images[..., ys, :-dx]
    else:
        out[..., yd, :dx] = images[..., ys, -dx:]
    return out


def test_the_minus_zero_slice_is_named():
    assert_cause(checks.check_shift_images(shift_with_minus_zero_slice), ":-0")


# references used above stay importable -------------------------------------------------------

_ = (preprocess, top_k, sincos_2d)
