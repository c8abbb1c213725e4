"""How far each head looks: mean attention distance (Dosovitskiy et al., 2021, Sec. 4.5, Fig. 7 right, App. D.7).

For a query patch i and a key patch j whose centres lie in the patch grid at (r_i, c_i)
and (r_j, c_j), the distance in pixels is

    d_ij = P * sqrt((r_i - r_j)^2 + (c_i - c_j)^2)

A head's mean attention distance is the attention-weighted average of d_ij over the key
patches, averaged over the query patches (and over images):

    dist(head) = mean_i  sum_j a_ij d_ij / sum_j a_ij        i, j patches only, CLS excluded

Dividing by `sum_j a_ij` makes it a weighted average over the patches: whatever share a
query gives to CLS (or to register tokens) does not count as distance 0. The paper calls
it the analogue of a CNN's receptive field size: small for local heads, about half the
image for global ones. Patch k sits at row `k // cols`, column `k % cols` (row-major, as
`flatten(2)` after the patch-embedding convolution lays them out).

`token_norms` and `high_norm_outliers` measure the other thing the attention figures
show: a few patch tokens with very large norms (Darcet et al., 2024, "Vision
Transformers Need Registers", Sec. 2).

Used by notebook 07.
"""

from __future__ import annotations

import torch

from .config import to_2tuple


def patch_coordinates(grid_size: int | tuple[int, int]) -> torch.Tensor:
    """(rows * cols, 2) float tensor of each patch's (row, col), row-major."""
    rows, cols = to_2tuple(grid_size)
    r = torch.arange(rows).repeat_interleave(cols)  # (N,) 0 0 0 1 1 1 ...
    c = torch.arange(cols).repeat(rows)  # (N,) 0 1 2 0 1 2 ...
    return torch.stack([r, c], dim=1).float()  # (N, 2)


def patch_distance_matrix(grid_size: int | tuple[int, int], patch_size: int) -> torch.Tensor:
    """(N, N) Euclidean distances in pixels between the centres of every two patches."""
    coords = patch_coordinates(grid_size) * patch_size  # (N, 2) in pixels
    return torch.cdist(coords, coords)  # (N, N)


def mean_attention_distance(
    attn: torch.Tensor,
    grid_size: int | tuple[int, int],
    patch_size: int,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Mean attention distance in pixels of each head: (heads, T, T) -> (heads,).

    Args:
        attn: one image's attention weights (heads, T, T), T = num_prefix_tokens + N;
            a leading batch dimension (B, heads, T, T) is averaged over as well.
        grid_size: (rows, cols) of the patch grid, or one int for a square grid.
        patch_size: P, pixels per patch side.
        num_prefix_tokens: tokens before the patches (1 for CLS, more with registers).
    """
    rows, cols = to_2tuple(grid_size)
    N = rows * cols
    T = attn.shape[-1]
    if T != num_prefix_tokens + N:
        raise ValueError(
            f"expected {num_prefix_tokens} + {rows}x{cols} = {num_prefix_tokens + N} tokens, got T={T}"
        )
    patches = attn[..., num_prefix_tokens:, num_prefix_tokens:].float()  # (..., heads, N, N)
    weights = patches / patches.sum(dim=-1, keepdim=True).clamp_min(1e-12)  # rows sum to 1 over patches
    distance = patch_distance_matrix((rows, cols), patch_size).to(weights.device)  # (N, N)
    per_query = (weights * distance).sum(dim=-1)  # (..., heads, N)
    per_head = per_query.mean(dim=-1)  # (..., heads)
    return per_head.reshape(-1, per_head.shape[-1]).mean(dim=0) if per_head.dim() > 1 else per_head


def token_norms(hidden_states: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """L2 norm of every patch token: (B, T, D) -> (B, N), prefix tokens dropped."""
    return hidden_states[:, num_prefix_tokens:].norm(dim=-1)


def high_norm_outliers(norms: torch.Tensor, factor: float = 2.0) -> torch.Tensor:
    """Boolean mask of the patches whose norm is above `factor` times their image's median norm.

    Darcet et al. (2024) see the artifact tokens as a separate mode of the norm
    histogram (norm > 150 in DINOv2-g, where the bulk is below 100); a cut relative to the
    median works for any model size. `norms` is (N,) or (B, N), one row per image, as
    `token_norms` returns; the mask has the same shape.
    """
    return norms > factor * norms.median(dim=-1, keepdim=True).values
