"""Checks for the attention exercises: one head, then many.

`check_scaled_dot_product_attention(fn)` compares `fn(q, k, v) -> (out, weights)` with
`vit_course.attention.scaled_dot_product_attention` on 3D and 4D inputs, Nq != Nk,
d != N and N = 1. `check_multi_head_self_attention(cls)` builds `cls(hidden_size,
num_heads, qkv_bias=...)`, copies the reference's `q_proj, k_proj, v_proj, o_proj`
weights into it and compares `forward(x) -> (out, weights)`, with 1, 2, 3 and 4 heads
and with and without the qkv bias. Known mistakes are recomputed on the failing case
by the small functions below.

Used by notebook 03.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from .compare import (
    CheckFailure,
    check,
    diagnose,
    fmt_shape,
    learner_backward,
    learner_call,
    randn,
    shape_of,
    tensor_problems,
    tuple_distance,
)

# q, k, v shapes and a description
SDPA_CASES = [
    ((2, 4, 4), (2, 4, 4), (2, 4, 4), "3D q, k, v of shape (2, 4, 4): N = d = 4"),
    ((2, 5, 8), (2, 5, 8), (2, 5, 8), "3D q, k, v of shape (2, 5, 8): N = 5, d = 8"),
    ((2, 3, 6, 8), (2, 3, 6, 8), (2, 3, 6, 8), "4D q, k, v of shape (2, 3, 6, 8): batch, heads, N, d"),
    ((2, 3, 8), (2, 5, 8), (2, 5, 6), "q (2, 3, 8), k (2, 5, 8), v (2, 5, 6): Nq = 3 != Nk = 5, dv = 6"),
    ((1, 1, 4), (1, 1, 4), (1, 1, 4), "a single token: q, k, v of shape (1, 1, 4)"),
    ((1, 2, 7, 16), (1, 2, 7, 16), (1, 2, 7, 16), "4D, batch of 1: (1, 2, 7, 16)"),
]


def _attend(q, k, v, scale: float, softmax_dim: int = -1, transpose_k: bool = True, softmax: bool = True,
            v_first: bool = False, return_scores: bool = False):
    """Attention with a switch per known mistake; `return_scores` returns pre-softmax weights."""
    scores = (q @ (k.transpose(-2, -1) if transpose_k else k)) * scale
    weights = scores.softmax(dim=softmax_dim) if softmax else scores
    out = v @ weights if v_first else weights @ v
    if return_scores:
        return scores.softmax(dim=-1) @ v, scores
    return out, weights


def _sdpa_mistakes(q, k, v):
    d, n = q.shape[-1], k.shape[-2]
    s = 1 / math.sqrt(d)
    mistakes = [
        ("no scaling: divide the scores q @ k^T by sqrt(d)", lambda: _attend(q, k, v, 1.0)),
        ("scaled by d instead of sqrt(d): use q @ k^T / math.sqrt(d)", lambda: _attend(q, k, v, 1 / d)),
        (
            "scaled by sqrt(N), the number of tokens, instead of sqrt(d), the size of each query: "
            "d = q.shape[-1]",
            lambda: _attend(q, k, v, 1 / math.sqrt(n)),
        ),
        (
            "softmax over the wrong dimension (dim=-2): each row of the weights (one query) must sum to 1 "
            "over the keys, softmax(dim=-1)",
            lambda: _attend(q, k, v, s, softmax_dim=-2),
        ),
        (
            "k was not transposed: the scores are q @ k.transpose(-2, -1); "
            "without it the product only runs when shapes happen to be square",
            lambda: _attend(q, k, v, s, transpose_k=False),
        ),
        (
            "the weights are returned before the softmax: return softmax(q @ k^T / sqrt(d)), whose rows sum to 1",
            lambda: _attend(q, k, v, s, softmax=False),
        ),
        (
            "the weights are returned before the softmax: return softmax(q @ k^T / sqrt(d)), whose rows sum to 1",
            lambda: _attend(q, k, v, s, return_scores=True),
        ),
        ("the product is in the wrong order: out = weights @ v, not v @ weights", lambda: _attend(q, k, v, s, v_first=True)),
    ]
    if q.ndim == 4:
        mistakes.append(
            (
                "softmax over the wrong dimension (dim=1, the heads for 4D inputs): use softmax(dim=-1), over the keys",
                lambda: _attend(q, k, v, s, softmax_dim=1),
            )
        )
    return mistakes


def _sdpa_hints(error: BaseException) -> str | None:
    text = str(error)
    shape_words = ("cannot be multiplied", "must match the size", "size mismatch", "Expected size", "shapes cannot")
    if any(word in text for word in shape_words):
        return "a matrix product with mismatched shapes: did you transpose k (k.transpose(-2, -1)) before q @ k^T?"
    if "transpose" in text and "dimension out of range" in text.lower():
        return "transpose the last two dims of k with k.transpose(-2, -1) so it works for 3D and 4D inputs"
    return None


def _split_pair(got, what: str):
    """`got` as (out, weights), or a CheckFailure saying what came back instead."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise CheckFailure(f"{what} should return a tuple (out, weights), got {shape_of(got)}")
    return got


def _swapped(got, expected) -> bool:
    from .compare import close

    return close(got[0], expected[1]) and close(got[1], expected[0])


@check("scaled_dot_product_attention", hints=_sdpa_hints,
       reference="vit_course.attention:scaled_dot_product_attention")
def check_scaled_dot_product_attention(fn: Callable[..., Any]) -> str:
    """`fn(q, k, v) -> (out, weights)`: compare with `vit_course.attention.scaled_dot_product_attention`."""
    from vit_course.attention import scaled_dot_product_attention

    for seed, (q_shape, k_shape, v_shape, case) in enumerate(SDPA_CASES):
        q = randn(*q_shape, seed=3 * seed)
        k = randn(*k_shape, seed=3 * seed + 1)
        v = randn(*v_shape, seed=3 * seed + 2)
        expected = scaled_dot_product_attention(q, k, v)
        got = _split_pair(learner_call(fn, q.clone(), k.clone(), v.clone(), case=case, names=("q", "k", "v")), "your function")
        problems = tensor_problems("out", got[0], expected[0]) + tensor_problems("weights", got[1], expected[1])
        if not problems:
            continue
        if _swapped(got, expected):
            cause = "out and weights are swapped: return (out, weights)"
        else:
            cause = diagnose(got, _sdpa_mistakes(q, k, v), tuple_distance())
        if cause is None and isinstance(got[1], torch.Tensor) and got[1].shape == expected[1].shape:
            row_sums = got[1].detach().float().sum(-1)
            if not torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-4):
                cause = "the rows of your weights do not sum to 1: take softmax(dim=-1) of the scaled scores"
        raise CheckFailure(
            f"wrong output for q {fmt_shape(q_shape)}, k {fmt_shape(k_shape)}, v {fmt_shape(v_shape)}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return f"{len(SDPA_CASES)} cases match the reference (3D and 4D, Nq != Nk, d != N, a single token)"


# hidden_size, num_heads, qkv_bias, B, N, description
MHSA_CASES = [
    (16, 4, True, 2, 5, "hidden_size=16, num_heads=4, x of shape (2, 5, 16)"),
    (24, 3, True, 1, 7, "an odd number of heads: hidden_size=24, num_heads=3, x of shape (1, 7, 24)"),
    (12, 2, False, 2, 4, "qkv_bias=False: hidden_size=12, num_heads=2, x of shape (2, 4, 12)"),
    (8, 2, True, 2, 1, "a single token: hidden_size=8, num_heads=2, x of shape (2, 1, 8)"),
    (6, 1, True, 2, 3, "one head: hidden_size=6, num_heads=1, x of shape (2, 3, 6)"),
]
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")


def _mhsa(x, p, h: int, split: str = "ok", merge: str = "ok", scale: str = "head", o_proj: bool = True,
          qkv_bias: bool = True, sources: tuple[str, str, str] = ("q_proj", "k_proj", "v_proj")):
    """Multi-head self-attention from the weights `p`, with a switch per known mistake."""
    B, N, D = x.shape
    d = D // h

    def proj(name, use_bias=True):
        bias = p.get(f"{name}.bias") if use_bias else None
        return F.linear(x, p[f"{name}.weight"], bias)

    def split_heads(t):
        if split == "dh":  # view(B, N, d, h), then heads moved forward
            return t.reshape(B, N, d, h).permute(0, 3, 1, 2)
        if split == "no_transpose":  # view(B, h, N, d) straight from (B, N, D)
            return t.reshape(B, h, N, d)
        return t.reshape(B, N, h, d).transpose(1, 2)

    q, k, v = (split_heads(proj(n, qkv_bias)) for n in sources)  # (B, h, N, d)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d if scale == "head" else D)  # (B, h, N, N)
    weights = scores.softmax(dim=-1)
    out = weights @ v  # (B, h, N, d)
    if merge == "dh":
        out = out.permute(0, 2, 3, 1).reshape(B, N, D)
    elif merge == "no_transpose":
        out = out.reshape(B, N, D)
    else:
        out = out.transpose(1, 2).reshape(B, N, D)
    if o_proj:
        out = F.linear(out, p["o_proj.weight"], p.get("o_proj.bias"))
    return out, weights


SPLIT_CAUSE = (
    "the heads are split with the wrong reshape: reshape (B, N, D) to (B, N, heads, head_dim), "
    "then transpose(1, 2) to (B, heads, N, head_dim)"
)
MERGE_CAUSE = (
    "the heads are not merged back correctly: transpose (B, heads, N, head_dim) to "
    "(B, N, heads, head_dim) before reshaping to (B, N, D)"
)


def _mhsa_mistakes(x, p, h):
    mistakes = [
        (
            "the scores are scaled by sqrt(hidden_size) instead of sqrt(head_dim): "
            "each head attends with vectors of size head_dim = hidden_size // num_heads",
            lambda: _mhsa(x, p, h, scale="full"),
        ),
        ("o_proj is not applied: the merged heads go through o_proj at the end", lambda: _mhsa(x, p, h, o_proj=False)),
        (
            "q and k are swapped: the queries come from q_proj(x), the keys from k_proj(x); "
            "the swap transposes every head's scores",
            lambda: _mhsa(x, p, h, sources=("k_proj", "q_proj", "v_proj")),
        ),
        (
            "the keys are used as values: v = v_proj(x), and out = weights @ v",
            lambda: _mhsa(x, p, h, sources=("q_proj", "k_proj", "k_proj")),
        ),
        (
            "the q/k/v biases are ignored: use the projections as layers (self.q_proj(x)) so qkv_bias is honoured",
            lambda: _mhsa(x, p, h, qkv_bias=False),
        ),
    ]
    for split in ("ok", "dh", "no_transpose"):
        for merge in ("ok", "dh", "no_transpose"):
            if split == merge == "ok":
                continue
            cause = SPLIT_CAUSE if split != "ok" else MERGE_CAUSE
            mistakes.append((cause, lambda s=split, m=merge: _mhsa(x, p, h, split=s, merge=m)))
            mistakes.append((cause, lambda s=split, m=merge: _mhsa(x, p, h, split=s, merge=m, o_proj=False)))
    return mistakes


def _init_attention(module: torch.nn.Module, seed: int) -> None:
    """Weights at std 0.25 and biases at std 0.1, so that every mistake shows."""
    with torch.no_grad():
        for i, (name, param) in enumerate(module.named_parameters()):
            std = 0.25 if name.endswith("weight") else 0.1
            param.copy_(randn(*param.shape, seed=1000 * seed + i, std=std))


def _check_projections(learner, D: int, qkv_bias: bool) -> None:
    missing = [name for name in PROJECTIONS if not isinstance(getattr(learner, name, None), torch.nn.Module)]
    if missing:
        raise CheckFailure(
            f"your module has no {', '.join(missing)}: the check copies the reference weights into "
            "q_proj, k_proj, v_proj and o_proj, each nn.Linear(hidden_size, hidden_size)"
        )
    for name in PROJECTIONS:
        layer = getattr(learner, name)
        weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (D, D):
            raise CheckFailure(
                f"{name}.weight has shape {shape_of(weight)}, expected {fmt_shape((D, D))}: "
                f"{name} should be nn.Linear(hidden_size, hidden_size)"
            )
        wants_bias = qkv_bias or name == "o_proj"
        if wants_bias and bias is None:
            raise CheckFailure(
                f"{name} has no bias but should have one (hidden_size={D}, qkv_bias={qkv_bias})",
                cause="qkv_bias is ignored: create q_proj, k_proj, v_proj with nn.Linear(D, D, bias=qkv_bias)"
                if name != "o_proj"
                else "o_proj keeps its bias whatever qkv_bias says: nn.Linear(D, D)",
            )
        if not wants_bias and bias is not None:
            raise CheckFailure(
                f"{name} has a bias, but qkv_bias=False",
                cause="qkv_bias is ignored: create q_proj, k_proj, v_proj with nn.Linear(D, D, bias=qkv_bias)",
            )


@check("MultiHeadSelfAttention", hints=_sdpa_hints, reference="vit_course.attention:MultiHeadSelfAttention")
def check_multi_head_self_attention(cls: type) -> str:
    """`cls(hidden_size, num_heads, qkv_bias=...)`, `forward(x) -> (out, weights)`: compare with the reference."""
    from vit_course.attention import MultiHeadSelfAttention

    backward = []
    for seed, (D, h, qkv_bias, B, N, case) in enumerate(MHSA_CASES):
        reference = MultiHeadSelfAttention(D, h, qkv_bias=qkv_bias).eval()
        _init_attention(reference, seed)
        learner = learner_call(cls, D, h, qkv_bias=qkv_bias, case=case)
        _check_projections(learner, D, qkv_bias)
        with torch.no_grad():
            for name in PROJECTIONS:
                getattr(learner, name).weight.copy_(getattr(reference, name).weight)
                if getattr(reference, name).bias is not None:
                    getattr(learner, name).bias.copy_(getattr(reference, name).bias)
        if isinstance(learner, torch.nn.Module):
            learner.eval()
        x = randn(B, N, D, seed=500 + seed)
        with torch.no_grad():
            expected = reference(x)
        got = _split_pair(learner_call(learner, x.clone(), case=case, names=("x",)), "forward")
        problems = tensor_problems("out", got[0], expected[0]) + tensor_problems("weights", got[1], expected[1])
        if not problems:
            backward.append((learner, x, case))
            continue
        p = {k: v.detach() for k, v in reference.state_dict().items()}
        cause = None
        if got[1] is None:
            cause = "forward returns None for the weights: return the (B, heads, N, N) attention weights too"
        elif isinstance(got[1], torch.Tensor) and tuple(got[1].shape) == (B, N, N) and h > 1:
            cause = "the weights are averaged over heads: return them per head, (B, heads, N, N)"
        elif isinstance(got[1], torch.Tensor) and tuple(got[1].shape) == (B, N, D // h, D // h) and D // h != N:
            cause = ("the heads are split with transpose(2, 3): after reshaping to (B, N, heads, head_dim), "
                     "transpose(1, 2) gives (B, heads, N, head_dim); transpose(2, 3) makes the weights "
                     "(B, N, head_dim, head_dim)")
        elif _swapped(got, expected):
            cause = "out and weights are swapped: return (out, weights)"
        else:
            cause = diagnose(got, _mhsa_mistakes(x, p, h), tuple_distance())
        raise CheckFailure(
            f"wrong output with hidden_size={D}, num_heads={h}, qkv_bias={qkv_bias}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    # once every forward matches: a backward pass, so a mistake in forward is named first
    for learner, x, case in backward:
        learner_backward(learner, x.clone(), case=case, expected=[f"{n}.weight" for n in PROJECTIONS])
    return (
        f"{len(MHSA_CASES)} cases match vit_course.attention.MultiHeadSelfAttention "
        "(1 to 4 heads, with and without qkv bias, N=1)"
    )
