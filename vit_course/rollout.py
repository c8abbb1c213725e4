"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers", Sec. 3).

One layer's attention, fused over heads, says how much each token's output draws on
each token's input. The residual connection carries each token through unchanged as
well, so a layer's map is 0.5 A + 0.5 I with each row renormalised to sum to 1. Following
the flow back through all layers multiplies the maps, last layer on the left:

    R = Â_L @ ... @ Â_2 @ Â_1

Row 0 of R (the CLS token) over the patch columns is the saliency map drawn over the
image (`cls_rollout_map`). `head_fusion` ("mean", "max", "min") and `discard_ratio`
(zero the weakest links) are the options of jacobgil's vit-explain, applied per image;
with the defaults the result is exactly the formula above. Feed it the per-layer
weights from `VisionTransformer.attention_maps` or HF's `outputs.attentions` (eager).

Used by notebook 07.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

HEAD_FUSIONS = ("mean", "max", "min")


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """(B, heads, T, T) -> (B, T, T)."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")


def discard_lowest(fused: torch.Tensor, discard_ratio: float) -> torch.Tensor:
    """Zero the `discard_ratio` fraction of smallest entries of each (T, T) map, never CLS->CLS."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    B, T, _ = fused.shape
    count = int(T * T * discard_ratio)
    if count == 0:
        return fused
    flat = fused.reshape(B, T * T)  # (B, T*T)
    lowest = flat.topk(count, dim=-1, largest=False).indices  # (B, count)
    drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, lowest, True)
    drop[:, 0] = False  # keep CLS -> CLS, as vit-explain does
    return flat.masked_fill(drop, 0.0).reshape(B, T, T)


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> torch.Tensor:
    """A list over layers of (B, heads, T, T) attention weights -> the rollout (B, T, T).

    Row i of the result says how much token i at the last layer draws on each input token.
    """
    attentions = list(attentions)
    if not attentions:
        raise ValueError("expected at least one layer of attention weights, got an empty list")
    for i, a in enumerate(attentions):
        if a.ndim != 4 or a.shape[-1] != a.shape[-2] or a.shape != attentions[0].shape:
            raise ValueError(
                f"expected every layer's weights of shape (B, heads, T, T) like layer 0's "
                f"{tuple(attentions[0].shape)}, got {tuple(a.shape)} at layer {i}"
            )
    B, _, T, _ = attentions[0].shape
    eye = torch.eye(T, dtype=attentions[0].dtype, device=attentions[0].device)  # (T, T)
    rollout = eye.expand(B, T, T)  # (B, T, T)
    for attention in attentions:
        fused = discard_lowest(fuse_heads(attention, head_fusion), discard_ratio)  # (B, T, T)
        a = 0.5 * fused + 0.5 * eye  # the residual keeps half of each token
        a = a / a.sum(dim=-1, keepdim=True)  # each row sums to 1 again
        rollout = a @ rollout  # the newest layer on the left
    return rollout


def cls_rollout_map(
    rollout: torch.Tensor,
    grid_size: int | tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    normalize: bool = True,
) -> torch.Tensor:
    """The CLS row of a rollout (B, T, T) over the patches, as a (B, rows, cols) map.

    `grid_size` is (rows, cols) of the patch grid, a square when None; `num_prefix_tokens`
    counts CLS (and register tokens, if any) before the patches. `normalize` scales each
    map to a maximum of 1 for display.
    """
    B, T, _ = rollout.shape
    cls_row = rollout[:, 0, num_prefix_tokens:]  # (B, N)
    N = T - num_prefix_tokens
    if grid_size is None:
        side = int(round(N**0.5))
        grid_size = (side, side)
    elif isinstance(grid_size, int):
        grid_size = (grid_size, grid_size)
    rows, cols = grid_size
    if rows * cols != N:
        raise ValueError(f"expected a grid of {N} patches, got grid_size={rows}x{cols} = {rows * cols}")
    grid = cls_row.reshape(B, rows, cols)  # (B, rows, cols)
    if normalize:
        grid = grid / grid.amax(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(grid.dtype).tiny)
    return grid
