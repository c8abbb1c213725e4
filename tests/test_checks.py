"""The exercise checks pass correct code however it is written, and name each known mistake.

For every check: the reference passes; correct code written differently (einops, a loop
over heads, a hand-written softmax) passes; each mistake a learner is likely to make
fails with a message naming its cause; a `NotImplementedError` stub is "not done yet";
an exception in learner code is reported, not raised; results render as text and HTML.
"""

from __future__ import annotations

import functools
import math

import pytest
from learner_copies import as_learner
import torch
from einops import rearrange
from torch import nn
from torch.nn import functional as F

from vit_course import checks
from vit_course.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from vit_course.block import TransformerBlock
from vit_course.checks import CheckResult, use_or_reference
from vit_course.checks.finetune import tiny_vit_classifier
from vit_course.cost import count_parameters, vit_flops_breakdown, vit_forward_flops
from vit_course.finetune import freeze_backbone, layerwise_lr_groups
from vit_course.inference import preprocess, top_k
from vit_course.patches import patchify
from vit_course.rollout import attention_rollout, cls_rollout_map


def stub(*args, **kwargs):
    raise NotImplementedError("Exercise: write this")


def broken(*args, **kwargs):
    raise ValueError("boom")


# patchify ------------------------------------------------------------------------------


def patchify_einops(x, P):
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (c p1 p2)", p1=P, p2=P)


def patchify_unfold(x, P):
    return F.unfold(x, kernel_size=P, stride=P).transpose(1, 2)


def patchify_loops(x, P):
    B, C, H, W = x.shape
    patches = [x[:, :, i : i + P, j : j + P].reshape(B, -1) for i in range(0, H, P) for j in range(0, W, P)]
    return torch.stack(patches, dim=1)


def patchify_tensor_unfold(x, P):
    B, C, H, W = x.shape
    t = x.unfold(2, P, P).unfold(3, P, P)  # (B, C, rows, cols, P, P)
    return t.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * P * P)


def patchify_ppc(x, P):  # lucidrains' vit-pytorch
    return rearrange(x, "b c (h p1) (w p2) -> b (h w) (p1 p2 c)", p1=P, p2=P)


def patchify_column_major(x, P):
    return rearrange(x, "b c (h p1) (w p2) -> b (w h) (c p1 p2)", p1=P, p2=P)


def patchify_swapped_hw(x, P):
    B, C, W, H = x.shape  # names swapped
    t = x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 3, 5)
    return t.reshape(B, -1, C * P * P)


def patchify_first_image_only(x, P):
    return patchify_einops(x, P)[0]


def patchify_merged_batch(x, P):
    return patchify_einops(x, P).reshape(-1, x.shape[1] * P * P)


def patchify_transposed(x, P):
    return F.unfold(x, kernel_size=P, stride=P)


def patchify_no_permute(x, P):
    B, C, H, W = x.shape
    return x.reshape(B, (H // P) * (W // P), C * P * P)


def patchify_wrong_n(x, P):
    B, C, H, W = x.shape
    return patchify_einops(x, P).reshape(B, (H // P) ** 2, -1)  # N from H alone


# attention -----------------------------------------------------------------------------


def sdpa_einsum(q, k, v):
    scores = torch.einsum("...qd,...kd->...qk", q, k) / q.shape[-1] ** 0.5
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.einsum("...qk,...kd->...qd", weights, v), weights


def sdpa_manual(q, k, v):
    d = q.size(-1)
    scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
    e = scores.exp()
    weights = e / e.sum(dim=-1, keepdim=True)
    return torch.matmul(weights, v), weights


def sdpa_with(scale=None, dim=-1, transpose=True, softmax=True, v_first=False):
    def fn(q, k, v):
        s = scale(q, k) if scale else 1 / math.sqrt(q.shape[-1])
        scores = (q @ (k.transpose(-2, -1) if transpose else k)) * s
        weights = scores.softmax(dim) if softmax else scores
        return (v @ weights if v_first else weights @ v), weights

    return fn


def sdpa_scores_returned(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.softmax(-1) @ v, scores


class MHSAEinops(nn.Module):
    def __init__(self, hidden_size, num_heads, qkv_bias=True):
        super().__init__()
        self.h = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, x):
        q, k, v = (rearrange(p(x), "b n (h d) -> b h n d", h=self.h) for p in (self.q_proj, self.k_proj, self.v_proj))
        out, weights = sdpa_einsum(q, k, v)
        return self.o_proj(rearrange(out, "b h n d -> b n (h d)")), weights


class MHSALoop(MHSAEinops):
    """One head at a time, then concatenate."""

    def forward(self, x):
        D = x.shape[-1]
        d = D // self.h
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        outs, maps = [], []
        for i in range(self.h):
            sl = slice(i * d, (i + 1) * d)
            o, w = sdpa_manual(q[..., sl], k[..., sl], v[..., sl])
            outs.append(o)
            maps.append(w)
        return self.o_proj(torch.cat(outs, dim=-1)), torch.stack(maps, dim=1)


class MHSAMistake(MHSAEinops):
    """Reference-style attention with one switch per known mistake."""

    split, merge, scale_full, o_proj_used, bias_used, average = "ok", "ok", False, True, True, False

    def forward(self, x):
        B, N, D = x.shape
        h, d = self.h, D // self.h

        def proj(layer):
            return F.linear(x, layer.weight, layer.bias if self.bias_used else None)

        def split(t):
            if self.split == "dh":
                return t.view(B, N, d, h).permute(0, 3, 1, 2)
            if self.split == "no_transpose":
                return t.view(B, h, N, d)
            return t.view(B, N, h, d).transpose(1, 2)

        q, k, v = split(proj(self.q_proj)), split(proj(self.k_proj)), split(proj(self.v_proj))
        w = (q @ k.transpose(-2, -1) / math.sqrt(D if self.scale_full else d)).softmax(-1)
        out = w @ v
        out = out.reshape(B, N, D) if self.merge == "no_transpose" else out.transpose(1, 2).reshape(B, N, D)
        if self.o_proj_used:
            out = self.o_proj(out)
        return out, (w.mean(1) if self.average else w)


def mhsa_mistake(**switches):
    return type("Mistake", (MHSAMistake,), switches)


class MHSAAlwaysBias(MHSAEinops):
    def __init__(self, hidden_size, num_heads, qkv_bias=True):
        super().__init__(hidden_size, num_heads, qkv_bias=True)


# block ---------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, config, act):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.act = act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def exact_gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class BlockAlt(nn.Module):
    """Correct, written differently: our loop attention, a hand-written GELU."""

    eps_attr, eps_forward, act, order, attn_res, mlp_res, first = None, None, staticmethod(exact_gelu), "pre", True, True, "norm1"

    def __init__(self, config):
        super().__init__()
        eps = config.layer_norm_eps if self.eps_attr is None else self.eps_attr
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=eps)
        self.attn = MHSALoop(config.hidden_size, config.num_attention_heads, qkv_bias=config.qkv_bias)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=eps)
        self.mlp = MLP(config, self.act)

    def norm(self, name, x):
        layer = getattr(self, name)
        if self.eps_forward is None:
            return layer(x)
        return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, self.eps_forward)

    def forward(self, x):
        if self.order == "post":
            x = self.norm("norm1", x + self.attn(x)[0])
            return self.norm("norm2", x + self.mlp(x))
        a = self.attn(self.norm(self.first, x))[0]
        x = x + a if self.attn_res else a
        m = self.mlp(self.norm("norm2", x))
        return x + m if self.mlp_res else m


def block_variant(**switches):
    if "act" in switches:
        switches["act"] = staticmethod(switches["act"])
    return type("BlockVariant", (BlockAlt,), switches)


class UnbiasedLayerNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim)), eps

    def forward(self, x):
        return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, keepdim=True) + self.eps) * self.weight + self.bias


class BlockUnbiasedNorm(BlockAlt):
    def __init__(self, config):
        super().__init__(config)
        self.norm1 = UnbiasedLayerNorm(config.hidden_size, config.layer_norm_eps)
        self.norm2 = UnbiasedLayerNorm(config.hidden_size, config.layer_norm_eps)


class BlockReturnsTuple(BlockAlt):
    def forward(self, x):
        return super().forward(x), None


class BlockFusedQKV(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)

    def forward(self, x):
        return x


# rollout -------------------------------------------------------------------------------


def rollout_reduce(attentions):
    T = attentions[0].shape[-1]
    eye = torch.eye(T)
    maps = []
    for a in attentions:
        m = 0.5 * a.mean(dim=1) + 0.5 * eye
        maps.append(m / m.sum(-1, keepdim=True))
    return functools.reduce(lambda acc, m: m @ acc, maps)


def rollout_loops(attentions):
    stacked = torch.stack(attentions)  # (L, B, H, T, T)
    L, B, H, T, _ = stacked.shape
    out = []
    for b in range(B):
        r = torch.eye(T)
        for layer in range(L):
            m = (stacked[layer, b].sum(0) / H + torch.eye(T)) / 2
            m = m / m.sum(dim=1, keepdim=True)
            r = torch.mm(m, r)
        out.append(r)
    return torch.stack(out)


def rollout_with(order="left", self_w=0.5, attn_w=0.5, renorm="rows", fuse="mean", keepdim=True):
    def fn(attentions):
        T = attentions[0].shape[-1]
        r = None
        for a in attentions:
            f = a.mean(1) if fuse == "mean" else a.max(dim=1).values
            m = attn_w * f + self_w * torch.eye(T)
            if renorm == "rows":
                m = m / (m.sum(-1, keepdim=True) if keepdim else m.sum(-1))
            elif renorm == "cols":
                m = m / m.sum(-2, keepdim=True)
            r = m if r is None else (m @ r if order == "left" else r @ m)
        return r

    return fn


# inference -----------------------------------------------------------------------------


def preprocess_pil(image, processor, rescale=True, normalize_first=False, channels_last=False, resample=None, swap_size=False, batch=True):
    import numpy as np
    from PIL import Image

    H, W = processor.size["height"], processor.size["width"]
    image = image.convert("RGB")
    size = (H, W) if swap_size else (W, H)
    x = np.asarray(image.resize(size, Image.BILINEAR if resample is None else resample), dtype=np.float32)
    mean, std = np.array(processor.image_mean, np.float32), np.array(processor.image_std, np.float32)
    if normalize_first:
        x = (x - mean) / std * processor.rescale_factor
    else:
        x = ((x * processor.rescale_factor if rescale else x) - mean) / std
    t = torch.from_numpy(x)
    if not channels_last:
        t = t.permute(2, 0, 1)
    return t.unsqueeze(0) if batch else t


def preprocess_from_dict(image, config):
    import torchvision.transforms.v2.functional as tvF

    size = config["size"]
    x = tvF.pil_to_tensor(image.convert("RGB"))
    x = tvF.resize(x, [size["height"], size["width"]], antialias=True).float() * config["rescale_factor"]
    x = tvF.normalize(x, list(config["image_mean"]), list(config["image_std"]))
    return x[None]


def top_k_sorted(logits, k, id2label):
    probs = F.softmax(logits, dim=1)
    values, idx = torch.sort(probs, dim=1, descending=True)
    return [[(id2label[i.item()], v.item()) for v, i in zip(vs[:k], ix[:k])] for vs, ix in zip(values, idx)]


def top_k_python(logits, k, id2label):
    out = []
    for row in logits.softmax(-1).tolist():
        ranked = sorted(range(len(row)), key=lambda i: -row[i])[:k]
        out.append([[id2label[i], row[i]] for i in ranked])
    return out


def top_k_with(softmax=True, ascending=False, offset=0):
    def fn(logits, k, id2label):
        s = logits.softmax(-1) if softmax else logits
        v, i = s.topk(k, dim=-1, largest=not ascending)
        return [[(id2label.get(int(j) + offset, "?"), float(p)) for p, j in zip(pv, iv)] for pv, iv in zip(v, i)]

    return fn


# fine-tuning ---------------------------------------------------------------------------


def freeze_vit(model):
    model.vit.requires_grad_(False)
    return model


def freeze_all(model):
    model.requires_grad_(False)


def freeze_nothing(model):
    return model


def freeze_but_final_norm(model):
    model.vit.embeddings.requires_grad_(False)
    for layer in model.vit.layers:
        layer.requires_grad_(False)


def lr_groups_per_param(model, base_lr, decay):
    L = model.config.num_hidden_layers
    groups = []
    for name, p in model.named_parameters():
        if "embeddings" in name:
            i = 0
        elif ".layers." in name:
            i = int(name.split(".layers.")[1].split(".")[0]) + 1
        else:
            i = L + 1
        groups.append({"params": [p], "lr": base_lr * decay ** (L + 1 - i), "weight_decay": 0.05})
    return groups


def lr_groups_with(exponent):
    def fn(model, base_lr, decay):
        L = model.config.num_hidden_layers
        groups = []
        for name, p in model.named_parameters():
            i = 0 if "embeddings" in name else int(name.split(".layers.")[1].split(".")[0]) + 1 if ".layers." in name else L + 1
            groups.append({"params": [p], "lr": base_lr * decay ** exponent(L, i)})
        return groups

    return fn


# cost ----------------------------------------------------------------------------------


def flops_loop(config):
    H, W = config.image_size if isinstance(config.image_size, tuple) else (config.image_size,) * 2
    N = (H // config.patch_size) * (W // config.patch_size)
    T, D, I = N + 1, config.hidden_size, config.intermediate_size
    macs = N * config.num_channels * config.patch_size**2 * D
    for _ in range(config.num_hidden_layers):
        macs += 4 * T * D * D + 2 * T * T * D + 2 * T * D * I
    return 2 * (macs + D * config.num_labels)


def flops_without(*parts, macs=False):
    def fn(config):
        b = vit_flops_breakdown(config)
        total = sum(v for k, v in b.items() if k not in parts)
        return total // 2 if macs else total

    return fn


def flops_no_cls(config):
    b = dict(vit_flops_breakdown(config))
    N, D, I, L = config.num_patches, config.hidden_size, config.intermediate_size, config.num_hidden_layers
    b.update(qkv_projections=6 * L * N * D * D, attention_scores=2 * L * N * N * D, attention_values=2 * L * N * N * D,
             output_projection=2 * L * N * D * D, mlp=4 * L * N * D * I)
    return sum(b.values())


# the table -----------------------------------------------------------------------------

CHECKS = {
    "patchify": (checks.check_patchify, patchify, [patchify_einops, patchify_unfold, patchify_loops, patchify_tensor_unfold]),
    "sdpa": (checks.check_scaled_dot_product_attention, scaled_dot_product_attention, [sdpa_einsum, sdpa_manual]),
    "mhsa": (checks.check_multi_head_self_attention, MultiHeadSelfAttention, [MHSAEinops, MHSALoop]),
    "block": (checks.check_transformer_block, TransformerBlock, [BlockAlt]),
    "rollout": (checks.check_attention_rollout, attention_rollout, [rollout_reduce, rollout_loops]),
    "preprocess": (checks.check_preprocess, preprocess, [preprocess_pil]),
    "top_k": (checks.check_top_k, top_k, [top_k_sorted, top_k_python]),
    "freeze": (checks.check_freeze_backbone, freeze_backbone, [freeze_vit]),
    "lr_groups": (checks.check_layerwise_lr_groups, layerwise_lr_groups, [lr_groups_per_param]),
    "count": (checks.check_count_parameters, count_parameters, [lambda m: sum(p.numel() for p in m.parameters())]),
    "flops": (checks.check_vit_flops, vit_forward_flops, [flops_loop]),
}

MISTAKES = [
    ("patchify", patchify_ppc, "(P, P, C)"),
    ("patchify", patchify_column_major, "column by column"),
    ("patchify", patchify_swapped_hw, "swapped"),
    ("patchify", patchify_first_image_only, "batch dimension"),
    ("patchify", patchify_merged_batch, "batch and patch dimensions are merged"),
    ("patchify", patchify_transposed, "transposed"),
    ("patchify", patchify_no_permute, "without a permute"),
    ("patchify", patchify_wrong_n, "number of patches"),
    ("sdpa", sdpa_with(scale=lambda q, k: 1.0), "no scaling"),
    ("sdpa", sdpa_with(scale=lambda q, k: 1 / q.shape[-1]), "by d instead of sqrt(d)"),
    ("sdpa", sdpa_with(scale=lambda q, k: 1 / math.sqrt(k.shape[-2])), "sqrt(N)"),
    ("sdpa", sdpa_with(dim=-2), "wrong dimension"),
    ("sdpa", sdpa_with(dim=1), "wrong dimension"),
    ("sdpa", sdpa_with(transpose=False), "transpose"),
    ("sdpa", sdpa_with(softmax=False), "before the softmax"),
    ("sdpa", sdpa_scores_returned, "before the softmax"),
    ("sdpa", sdpa_with(v_first=True), "wrong order"),
    ("sdpa", lambda q, k, v: sdpa_einsum(q, k, v)[::-1], "swapped"),
    ("mhsa", mhsa_mistake(split="dh"), "split"),
    ("mhsa", mhsa_mistake(split="no_transpose"), "split"),
    ("mhsa", mhsa_mistake(split="no_transpose", merge="no_transpose"), "split"),
    ("mhsa", mhsa_mistake(merge="no_transpose"), "merged"),
    ("mhsa", mhsa_mistake(scale_full=True), "sqrt(hidden_size)"),
    ("mhsa", mhsa_mistake(o_proj_used=False), "o_proj"),
    ("mhsa", mhsa_mistake(average=True), "averaged"),
    ("mhsa", mhsa_mistake(bias_used=False), "biases are ignored"),
    ("mhsa", MHSAAlwaysBias, "qkv_bias"),
    ("block", block_variant(order="post"), "post-norm"),
    ("block", block_variant(attn_res=False), "residual around attention"),
    ("block", block_variant(mlp_res=False), "residual around the MLP"),
    ("block", block_variant(eps_attr=1e-5), "eps"),
    ("block", block_variant(eps_forward=1e-5), "eps"),
    ("block", block_variant(eps_forward=1e-6), "eps"),
    ("block", block_variant(act=lambda x: F.gelu(x, approximate="tanh")), "tanh"),
    ("block", block_variant(act=F.relu), "ReLU"),
    ("block", block_variant(first="norm2"), "norm2 is used before attention"),
    ("block", BlockUnbiasedNorm, "unbiased variance"),
    ("block", BlockReturnsTuple, "return only x"),
    ("block", BlockFusedQKV, "missing parameters"),
    ("rollout", rollout_with(order="right"), "wrong order"),
    ("rollout", rollout_with(self_w=0.0, attn_w=1.0), "identity"),
    ("rollout", rollout_with(renorm=None), "not renormalised"),
    ("rollout", rollout_with(fuse="max"), "max"),
    ("rollout", rollout_with(self_w=1.0, attn_w=1.0, renorm=None), "identity has weight 1"),
    ("rollout", rollout_with(self_w=1.0), "identity has weight 1"),
    ("rollout", rollout_with(renorm="cols"), "columns"),
    ("rollout", rollout_with(keepdim=False), "keepdim"),
    ("rollout", lambda attentions: rollout_reduce(attentions)[:, 0], "CLS row"),
    ("preprocess", functools.partial(preprocess_pil, rescale=False), "not rescaled"),
    ("preprocess", functools.partial(preprocess_pil, normalize_first=True), "normalised before rescaling"),
    ("preprocess", functools.partial(preprocess_pil, channels_last=True), "channels are last"),
    ("preprocess", functools.partial(preprocess_pil, resample=3), "interpolation"),
    ("preprocess", functools.partial(preprocess_pil, resample=0), "interpolation"),
    ("preprocess", functools.partial(preprocess_pil, swap_size=True), "(width, height)"),
    ("preprocess", functools.partial(preprocess_pil, batch=False), "batch dimension"),
    ("top_k", top_k_with(softmax=False), "softmax is missing"),
    ("top_k", top_k_with(ascending=True), "least to most"),
    ("top_k", top_k_with(offset=1), "off by one"),
    ("freeze", freeze_all, "classifier is frozen"),
    ("freeze", freeze_nothing, "nothing was frozen"),
    ("freeze", freeze_but_final_norm, "LayerNorm"),
    ("lr_groups", lr_groups_with(lambda L, i: L - i), "off by one"),
    ("lr_groups", lr_groups_with(lambda L, i: i), "wrong way"),
    ("lr_groups", lr_groups_with(lambda L, i: 0), "no decay"),
    ("lr_groups", lr_groups_with(lambda L, i: L + 1 - (i - 1 if 0 < i <= L else i)), "i + 1"),
    ("count", lambda m: len(list(m.parameters())), "tensors are counted"),
    ("count", lambda m: sum(p.numel() for p in m.parameters() if p.requires_grad), "only trainable"),
    ("count", lambda m: sum(t.numel() for t in m.state_dict().values()), "buffers"),
    ("flops", flops_without(macs=True), "multiply-adds"),
    ("flops", flops_without("attention_scores", "attention_values"), "attention products"),
    ("flops", flops_no_cls, "CLS"),
    ("flops", flops_without("patch_embedding"), "patch embedding"),
    ("flops", flops_without("classifier"), "classifier"),
]


@pytest.mark.parametrize("key", list(CHECKS))
def test_reference_passes(key):
    check, reference, _ = CHECKS[key]
    result = check(as_learner(reference))
    assert result.passed and result.status == "pass", str(result)


@pytest.mark.parametrize(
    "key, learner",
    [(key, alt) for key, (_, _, alts) in CHECKS.items() for alt in alts],
    ids=lambda x: x if isinstance(x, str) else getattr(x, "__name__", "alt"),
)
def test_correct_code_written_differently_passes(key, learner):
    result = CHECKS[key][0](learner)
    assert result.passed, f"expected correct code to pass, got:\n{result}"


def test_preprocess_accepts_the_processor_as_a_dict():
    result = checks.check_preprocess(preprocess_from_dict, pass_as="dict")
    assert result.passed, str(result)


@pytest.mark.parametrize(
    "key, learner, keyword",
    MISTAKES,
    ids=[f"{k}-{i}-{w}" for i, (k, _, w) in enumerate(MISTAKES)],
)
def test_mistake_fails_and_names_its_cause(key, learner, keyword):
    result = CHECKS[key][0](learner)
    assert not result.passed and result.status == "fail", str(result)
    assert "the check itself failed" not in result.message, str(result)
    assert keyword.lower() in str(result).lower(), f"expected {keyword!r} in the message, got:\n{result}"


@pytest.mark.parametrize("key", list(CHECKS))
def test_stub_is_not_done_yet(key):
    result = CHECKS[key][0](stub if key not in ("mhsa", "block") else type("Stub", (nn.Module,), {"__init__": stub}))
    assert not result.passed and result.not_done and result.status == "todo", str(result)
    assert "not done yet" in str(result)
    assert "NotImplementedError" in result.message


@pytest.mark.parametrize("key", list(CHECKS))
def test_exception_in_learner_code_is_reported_not_raised(key):
    result = CHECKS[key][0](broken)
    assert not result.passed and result.status == "fail"
    assert "ValueError: boom" in result.message, str(result)


def test_a_wrong_signature_is_named():
    class NoQkvBias(MHSAEinops):
        def __init__(self, hidden_size, num_heads, bias=True):
            super().__init__(hidden_size, num_heads, bias)

    result = checks.check_multi_head_self_attention(NoQkvBias)
    assert "TypeError" in result.message and "qkv_bias" in result.message
    assert "does not take the arguments the check passes as `cls(hidden_size, num_heads, qkv_bias=...)`" in str(result)
    result = checks.check_patchify(lambda images: images)
    assert "does not take the arguments" in str(result) and "`fn(images (B, C, H, W), patch_size)" in str(result)


def test_none_is_a_failure_not_a_crash():
    result = checks.check_patchify(None)
    assert not result.passed and "None" in result.message


def test_forgotten_transpose_of_k_that_raises_gets_a_hint():
    def no_transpose(q, k, v):  # raises on the first case where N != d
        if q.shape[-1] == q.shape[-2]:
            return scaled_dot_product_attention(q, k, v)
        return sdpa_with(transpose=False)(q, k, v)

    result = checks.check_scaled_dot_product_attention(no_transpose)
    assert not result.passed and "RuntimeError" in result.message
    assert "transpose" in str(result)


def test_results_render_as_text_and_html():
    passed = checks.check_patchify(as_learner(patchify))
    failed = checks.check_patchify(patchify_ppc)
    todo = checks.check_patchify(stub)
    assert str(passed).startswith("✓ check_patchify passed")
    assert str(failed).startswith("✗ check_patchify failed")
    assert str(todo).startswith("○ check_patchify not done yet")
    assert "likely cause:" in str(failed)
    assert repr(failed) == str(failed)
    for result, colour in ((passed, "#2e7d32"), (failed, "#c62828"), (todo, "#ef8f00")):
        html = result._repr_html_()
        assert html.startswith("<div") and colour in html and "check_patchify" in html
    assert "'b c (h p1)" not in failed._repr_html_() and "&#x27;b c (h p1)" in failed._repr_html_()  # escaped
    assert bool(passed) and not bool(failed) and not bool(todo)


def test_results_are_deterministic_and_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    first = [str(checks.check_transformer_block(block_variant(act=F.relu))), str(checks.check_patchify(patchify_ppc))]
    second = [str(checks.check_transformer_block(block_variant(act=F.relu))), str(checks.check_patchify(patchify_ppc))]
    assert first == second
    assert torch.equal(state, torch.get_rng_state())


def test_check_result_rejects_contradictions():
    with pytest.raises(ValueError):
        CheckResult(True, "x", "check_x", status="fail")
    assert CheckResult(False, "x", "check_x").status == "fail"


def test_use_or_reference_says_which_is_used(capsys):
    assert use_or_reference(checks.check_patchify(patchify_einops), patchify_einops, patchify) is patchify_einops
    assert use_or_reference(checks.check_patchify(stub), stub, patchify) is patchify
    wrapped = use_or_reference(checks.check_patchify(patchify_ppc), patchify_ppc, patchify)
    assert wrapped is not patchify and wrapped.__wrapped__ is patchify  # the reference, shown once beside yours
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Using your patchify_einops.",
        "Your stub is not finished yet: the cells below use vit_course.patches.patchify.",
        "Your patchify_ppc does not pass check_patchify yet: the cells below use vit_course.patches.patchify.",
    ]


# the references themselves -------------------------------------------------------------


def test_rollout_defaults_follow_the_formula():
    gen = torch.Generator().manual_seed(0)
    attentions = [torch.randn(2, 3, 5, 5, generator=gen).softmax(-1) for _ in range(3)]
    expected = torch.eye(5).expand(2, 5, 5)
    for a in attentions:
        m = 0.5 * a.mean(1) + 0.5 * torch.eye(5)
        expected = (m / m.sum(-1, keepdim=True)) @ expected
    torch.testing.assert_close(attention_rollout(attentions), expected)
    torch.testing.assert_close(attention_rollout(attentions).sum(-1), torch.ones(2, 5))


def test_rollout_head_fusion_and_discard_ratio():
    gen = torch.Generator().manual_seed(1)
    attentions = [torch.randn(2, 4, 5, 5, generator=gen).softmax(-1) for _ in range(2)]
    for fusion in ("max", "min"):
        out = attention_rollout(attentions, head_fusion=fusion)
        assert out.shape == (2, 5, 5)
        torch.testing.assert_close(out.sum(-1), torch.ones(2, 5))
    assert not torch.allclose(attention_rollout(attentions, head_fusion="max"), attention_rollout(attentions))
    # discarding: each image loses its own weakest links, CLS -> CLS always kept
    discarded = attention_rollout(attentions[:1], discard_ratio=0.5)
    fused = attentions[0].mean(1)
    for b in range(2):
        flat = fused[b].flatten()
        drop = flat.topk(12, largest=False).indices
        drop = drop[drop != 0]
        kept = flat.clone()
        kept[drop] = 0
        m = 0.5 * kept.reshape(5, 5) + 0.5 * torch.eye(5)
        torch.testing.assert_close(discarded[b], m / m.sum(-1, keepdim=True))
    with pytest.raises(ValueError):
        attention_rollout(attentions, head_fusion="median")
    with pytest.raises(ValueError):
        attention_rollout([])


def test_cls_rollout_map_is_the_cls_row_on_the_grid():
    rollout = torch.arange(2 * 7 * 7, dtype=torch.float32).reshape(2, 7, 7)
    grid = cls_rollout_map(rollout, grid_size=(2, 3), normalize=False)
    torch.testing.assert_close(grid, rollout[:, 0, 1:].reshape(2, 2, 3))
    assert cls_rollout_map(rollout, grid_size=(2, 3)).amax(dim=(1, 2)).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError):
        cls_rollout_map(rollout, grid_size=(2, 2))


def test_vit_forward_flops_matches_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from vit_course import ViTConfig, VisionTransformer

    config = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                       image_size=(32, 48), patch_size=8, num_labels=3)
    model = VisionTransformer(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 48))
    assert counter.get_total_flops() == vit_forward_flops(config)


def test_count_parameters_counts_frozen_and_trainable():
    model = tiny_vit_classifier()
    total = count_parameters(model)
    freeze_backbone(model)
    assert count_parameters(model) == total
    assert count_parameters(model, trainable_only=True) == 32 * 5 + 5


def test_layerwise_lr_groups_work_with_an_optimizer():
    model = tiny_vit_classifier(num_hidden_layers=2)
    groups = layerwise_lr_groups(model, 1e-3, 0.5)
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3 * 0.5**3, 1e-3 * 0.5**2, 1e-3 * 0.5, 1e-3]
