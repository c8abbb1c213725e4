"""Check for the mean attention distance exercise (notebook 07, attention visualization).

`check_mean_attention_distance(fn)` compares `fn(attn, grid_size, patch_size) -> (heads,)`
with `vit_course.attention_stats.mean_attention_distance` on square and non-square grids,
one and several heads, a single patch, local and global heads, and a head that gives CLS
most of its attention (only there does a missing renormalisation show). The mistakes it
recognises are written out below, each next to the sentence it prints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .compare import (
    CheckFailure,
    check,
    diagnose,
    learner_call,
    randn,
    tensor_distance,
    tensor_problems,
)

# heads, (rows, cols), patch_size, kind, description
CASES = [
    (3, (4, 4), 14, "random", "3 heads of random attention on a 4x4 grid of 14-pixel patches (T = 1 + 16)"),
    (2, (2, 3), 14, "random", "a non-square grid: 2 rows x 3 columns of 14-pixel patches, 2 heads"),
    (2, (3, 2), 4, "random", "a non-square grid: 3 rows x 2 columns of 4-pixel patches, 2 heads"),
    (4, (3, 3), 7, "cls-heavy", "4 heads that give CLS most of their attention (3x3 grid, patch 7)"),
    (3, (4, 5), 4, "local-global", "a local head (self), a neighbour head and a uniform head on a 4x5 grid"),
    (1, (1, 1), 16, "random", "a single patch (T = 2): every distance is 0"),
]


def make_attention(heads: int, rows: int, cols: int, kind: str, seed: int) -> torch.Tensor:
    """(heads, 1 + N, 1 + N) attention weights whose rows sum to 1."""
    T = 1 + rows * cols
    if kind == "local-global":
        from vit_course.attention_stats import patch_distance_matrix

        d = patch_distance_matrix((rows, cols), 1)  # (N, N) in patches
        scores = torch.full((heads, T, T), -1e4)
        scores[:, 0] = 0.0  # CLS attends uniformly
        scores[:, :, 0] = 0.0  # every token gives CLS some attention
        patch = scores[:, 1:, 1:]
        patch[0] = torch.where(d == 0, 4.0, -1e4)  # head 0: itself (and a bit of CLS)
        patch[1] = torch.where((d > 0) & (d < 1.5), 2.0, -1e4)  # head 1: its 8 neighbours
        patch[2:] = 0.0  # the rest: uniform over every token
        return scores.softmax(-1)
    scores = randn(heads, T, T, seed=seed, std=1.5)
    if kind == "cls-heavy":
        scores[:, :, 0] += 4.0  # most of each row's weight goes to CLS
    return scores.softmax(-1)


def _distances(rows: int, cols: int, P: int, metric: str = "euclidean", swapped: bool = False) -> torch.Tensor:
    k = torch.arange(rows * cols)
    if swapped:  # row = k % rows, col = k // rows: the grid read column by column
        r, c = k % rows, k // rows
    else:
        r, c = k // cols, k % cols
    dr = (r[:, None] - r[None, :]).float()
    dc = (c[:, None] - c[None, :]).float()
    if metric == "euclidean":
        return P * (dr**2 + dc**2).sqrt()
    if metric == "squared":
        return P**2 * (dr**2 + dc**2)
    return P * (dr.abs() + dc.abs())  # manhattan


def _variant(attn, rows, cols, P, *, prefix="cls", renorm=True, weighted=True, reduce="sum",
             metric="euclidean", swapped=False, in_patches=False) -> torch.Tensor:
    N = rows * cols
    a = attn[:, 1:, 1:] if prefix == "cls" else attn[:, :N, :N]  # "first": CLS taken as patch 0
    if renorm:
        a = a / a.sum(-1, keepdim=True)
    d = _distances(rows, cols, 1 if in_patches else P, metric, swapped)
    if not weighted:
        per_query = d.mean(-1).expand(attn.shape[0], N)  # (heads, N): the same for every head
    elif reduce == "mean":
        per_query = (a * d).mean(-1)
    else:
        per_query = (a * d).sum(-1)
    return per_query.mean(-1)


MISTAKES = [
    ("CLS is not excluded: the first N tokens were taken as the patches (CLS as patch 0, the last patch "
     "dropped); the patches are tokens 1..N: attn[:, 1:, 1:]", dict(prefix="first")),
    ("CLS is not excluded and the weights are not renormalised", dict(prefix="first", renorm=False)),
    ("the weights are not renormalised after dropping CLS, so the attention CLS gets counts as distance 0: "
     "divide each query's row of attn[:, 1:, 1:] by its sum", dict(renorm=False)),
    ("the distance is in patches, not pixels: multiply the grid distance by patch_size", dict(in_patches=True)),
    ("the distance is in patches and the weights are not renormalised", dict(in_patches=True, renorm=False)),
    ("rows and columns are swapped: patch k sits at row k // cols, column k % cols (row-major); "
     "square grids hide this", dict(swapped=True)),
    ("the distances are not weighted by the attention: every head gets the plain average distance; "
     "weight d_ij by a_ij", dict(weighted=False)),
    ("the weighted distances are averaged over the keys (.mean) instead of summed: a weighted average "
     "is sum_j a_ij d_ij with weights summing to 1", dict(reduce="mean")),
    ("the weighted distances are averaged over the keys and not renormalised", dict(reduce="mean", renorm=False)),
    ("squared distances: take the square root, d = P * sqrt(dr^2 + dc^2)", dict(metric="squared")),
    ("Manhattan distance |dr| + |dc|: the paper uses the Euclidean distance P * sqrt(dr^2 + dc^2)",
     dict(metric="manhattan")),
]


def _hints(error: BaseException) -> str | None:
    text = str(error)
    if "must match the size of tensor" in text or "size mismatch" in text:
        return ("the attention has 1 + N tokens but the distance matrix N: drop CLS first, "
                "attn[:, 1:, 1:] (queries and keys)")
    if "invalid for input of size" in text:
        return "a reshape that does not fit: grid_size is (rows, cols), N = rows * cols"
    return None


@check("mean_attention_distance", hints=_hints,
       reference="vit_course.attention_stats:mean_attention_distance")
def check_mean_attention_distance(fn: Callable[..., Any]) -> str:
    """`fn(attn (heads, T, T), grid_size (rows, cols), patch_size) -> (heads,)`: compare with
    `vit_course.attention_stats.mean_attention_distance`."""
    from vit_course.attention_stats import mean_attention_distance

    for seed, (heads, (rows, cols), P, kind, case) in enumerate(CASES):
        attn = make_attention(heads, rows, cols, kind, seed)
        expected = mean_attention_distance(attn, (rows, cols), P)
        got = learner_call(fn, attn.clone(), (rows, cols), P, case=case, names=("attn",))
        problems = tensor_problems("distances", got, expected, atol=1e-4, rtol=1e-4)
        if not problems:
            continue
        cause = None
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else None
        N = rows * cols
        if shape == (heads, N):
            cause = "one distance per query patch is returned: average over the queries too, giving (heads,)"
        elif shape == (heads, 1 + N):
            cause = "one distance per query token is returned (CLS included): drop CLS, average over the queries"
        elif shape == ():
            cause = "the heads are averaged together: return one distance per head, shape (heads,)"
        else:
            variants = [
                (text, lambda kw=kw: _variant(attn, rows, cols, P, **kw))
                for text, kw in MISTAKES
            ]
            cause = diagnose(got, variants, tensor_distance(atol=1e-4, rtol=1e-4))
        raise CheckFailure(
            f"wrong mean attention distance for {heads} head(s) on a {rows}x{cols} grid, patch_size={P}",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return (f"{len(CASES)} cases match vit_course.attention_stats.mean_attention_distance "
            "(square and non-square grids, local and global heads, CLS-heavy heads, a single patch)")
