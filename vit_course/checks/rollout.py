"""Check for the attention rollout exercise.

`check_attention_rollout(fn)` compares `fn(attentions) -> (B, T, T)` with
`vit_course.rollout.attention_rollout` (mean over heads, 0.5 A + 0.5 I, rows
renormalised, A_L @ ... @ A_1). One case feeds maps whose rows do not sum to 1 (as
after discarding weak links): only there does a missing renormalisation show.

Used by notebook 07.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .compare import (
    CheckFailure,
    check,
    diagnose,
    fmt_shape,
    learner_call,
    randn,
    tensor_distance,
    tensor_problems,
)

# layers, B, heads, T, row-stochastic?, description
CASES = [
    (3, 2, 3, 5, True, "3 layers of attention (B=2, heads=3, T=5)"),
    (2, 2, 2, 5, False, "2 layers whose rows do not sum to 1 (as after discarding weak links), B=2, heads=2, T=5"),
    (4, 1, 4, 10, True, "4 layers, a batch of 1, 4 heads, T=10 (CLS + a 3x3 grid)"),
    (1, 2, 2, 4, True, "a single layer (B=2, heads=2, T=4)"),
    (2, 1, 1, 1, True, "a single token (T=1)"),
]


def make_attentions(layers: int, B: int, H: int, T: int, stochastic: bool, seed: int) -> list[torch.Tensor]:
    """A list of `layers` (B, H, T, T) maps, rows softmaxed, or positive ones that are not."""
    out = []
    for layer in range(layers):
        scores = randn(B, H, T, T, seed=100 * seed + layer, std=1.5)
        out.append(scores.softmax(-1) if stochastic else scores.exp() / T)
    return out


def _rollout(attentions, fuse="mean", self_weight=0.5, attn_weight=0.5, renorm="rows", reverse=False):
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T)
    result = eye.expand(B, T, T)
    for a in attentions:
        fused = {"mean": a.mean(1), "max": a.amax(1), "sum": a.sum(1), "first": a[:, 0], "batch": a.mean(0)}[fuse]
        if renorm == "before":  # rows renormalised before the identity is added, not after
            fused = fused / fused.sum(-1, keepdim=True)
        m = attn_weight * fused + self_weight * eye
        if renorm == "rows":
            m = m / m.sum(-1, keepdim=True)
        elif renorm == "cols":
            m = m / m.sum(-2, keepdim=True)
        result = result @ m if reverse else m @ result
    return result


MISTAKES = [
    ("the product is in the wrong order: the newest layer goes on the left, rollout = A_l @ rollout", dict(reverse=True)),
    ("the identity (the residual connection) is missing: use 0.5 * A + 0.5 * I", dict(self_weight=0.0, attn_weight=1.0)),
    ("the rows are not renormalised: divide each row by its sum, a / a.sum(dim=-1, keepdim=True)", dict(renorm=None)),
    (
        "the identity has weight 1 and the rows are not renormalised: use 0.5 * A + 0.5 * I, rows summing to 1",
        dict(self_weight=1.0, attn_weight=1.0, renorm=None),
    ),
    ("the identity has weight 1 next to 0.5 * A: use 0.5 * A + 0.5 * I", dict(self_weight=1.0, attn_weight=0.5)),
    ("heads fused with max: the rollout averages the heads, attention.mean(dim=1)", dict(fuse="max")),
    ("heads summed instead of averaged: attention.mean(dim=1)", dict(fuse="sum")),
    ("only the first head is used: average all heads, attention.mean(dim=1)", dict(fuse="first")),
    ("the columns are renormalised instead of the rows: a / a.sum(dim=-1, keepdim=True)", dict(renorm="cols")),
    ("the rows are renormalised before the identity is added: add 0.5 * I first, then divide each row by its sum "
     "(only maps whose rows do not sum to 1 show it)", dict(renorm="before")),
    ("the heads are averaged over the batch axis (mean(dim=0)): attention is (B, heads, T, T), "
     "so average dim=1", dict(fuse="batch")),
    ("the rows are renormalised with a.sum(dim=-1) without keepdim=True, which divides columns", dict(renorm="bug")),
]


def _jacobgil_bug(attentions):
    # vit-explain's `a / a.sum(dim=-1)`: broadcasting divides column j by row j's sum
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T)
    result = eye.expand(B, T, T)
    for a in attentions:
        m = 0.5 * a.mean(1) + 0.5 * eye
        m = m / m.sum(-1)[:, None, :]
        result = m @ result
    return result


def _hints(error: BaseException) -> str | None:
    if "must match the size" in str(error) and "non-singleton dimension 0" in str(error):
        return ("the batch sizes differ in a product: attention is (B, heads, T, T), so average the heads with "
                "mean(dim=1); mean(dim=0) averages the batch")
    if "must match the size" in str(error):
        return (
            "shapes that do not broadcast: to divide each row by its sum keep the summed dim, "
            "a / a.sum(dim=-1, keepdim=True)"
        )
    return None


@check("attention_rollout", hints=_hints, reference="vit_course.rollout:attention_rollout")
def check_attention_rollout(fn: Callable[..., Any]) -> str:
    """`fn(attentions) -> (B, T, T)`: compare with `vit_course.rollout.attention_rollout`."""
    from vit_course.rollout import attention_rollout

    for seed, (layers, B, H, T, stochastic, case) in enumerate(CASES):
        attentions = make_attentions(layers, B, H, T, stochastic, seed)
        expected = attention_rollout(attentions)
        got = learner_call(fn, [a.clone() for a in attentions], case=case, names=("attentions",))
        problems = tensor_problems("rollout", got, expected)
        if not problems:
            continue
        if isinstance(got, torch.Tensor) and tuple(got.shape) == (B, T):
            cause = "only the CLS row is returned: return the whole (B, T, T) rollout; cls_rollout_map takes row 0"
        elif isinstance(got, torch.Tensor) and tuple(got.shape) == (B, H, T, T):
            cause = "the heads are kept: average them first, attention.mean(dim=1), to get (B, T, T)"
        else:
            variants = [
                (text, lambda kw=kw: _rollout(attentions, **kw)) for text, kw in MISTAKES if kw.get("renorm") != "bug"
            ]
            variants.append((MISTAKES[-1][0], lambda: _jacobgil_bug(attentions)))
            cause = diagnose(got, variants, tensor_distance())
        raise CheckFailure(
            f"wrong rollout for {layers} layer(s) of attention weights of shape {fmt_shape((B, H, T, T))}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return f"{len(CASES)} cases match vit_course.rollout.attention_rollout (1 to 4 layers, T=1, rows not summing to 1)"
