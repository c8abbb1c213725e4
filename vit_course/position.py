"""Where a patch came from (Dosovitskiy et al., 2021, Sec. 3.1 and Appendix D.4).

Attention treats its input as a set, so a ViT adds a position embedding to every token.
ViT learns one vector per position (`learned_position_embedding`); the sin-cos tables
(Vaswani et al., 2017, Sec. 3.5, and a 2D form as in MAE, He et al., 2022) are fixed
alternatives. `interpolate_pos_encoding` resizes a learned grid for another image size
exactly as HF's `ViTEmbeddings.interpolate_pos_encoding` does (Sec. 3.2, "Fine-tuning
and higher resolution").

Used by notebook 02.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def learned_position_embedding(num_positions: int, hidden_size: int, std: float = 0.02) -> nn.Parameter:
    """A trainable (1, num_positions, D) table, initialised like HF's (truncated normal)."""
    table = torch.empty(1, num_positions, hidden_size)
    nn.init.trunc_normal_(table, std=std)
    return nn.Parameter(table)


def sincos_1d(num_positions: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(num_positions, dim): sin on the first half of the dims, cos on the second."""
    if dim % 2:
        raise ValueError(f"expected an even embedding dim for sin-cos, got {dim}")
    omega = 1.0 / temperature ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))  # (dim/2,)
    angles = torch.arange(num_positions, dtype=torch.float64)[:, None] * omega[None, :]  # (n, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()  # (n, dim)


def sincos_2d(rows: int, cols: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(rows*cols, dim): the first half of the dims encodes the row, the second the column."""
    if dim % 4:
        raise ValueError(f"expected an embedding dim divisible by 4 for 2D sin-cos, got {dim}")
    row_table = sincos_1d(rows, dim // 2, temperature)  # (rows, dim/2)
    col_table = sincos_1d(cols, dim // 2, temperature)  # (cols, dim/2)
    row_part = row_table[:, None, :].expand(rows, cols, dim // 2)  # (rows, cols, dim/2)
    col_part = col_table[None, :, :].expand(rows, cols, dim // 2)  # (rows, cols, dim/2)
    return torch.cat([row_part, col_part], dim=-1).reshape(rows * cols, dim)


def interpolate_pos_encoding(pos_embed: torch.Tensor, height: int, width: int, patch_size: int) -> torch.Tensor:
    """Resize a (1, 1+N, D) table, CLS row first, to the patch grid of a height x width image.

    The stored grid must be square, as in HF. Bicubic, align_corners=False; returned
    unchanged when the number of patches matches and the image is square, as HF does.
    """
    num_positions = pos_embed.shape[1] - 1
    new_rows, new_cols = height // patch_size, width // patch_size
    if new_rows * new_cols == num_positions and height == width:
        return pos_embed
    side = int(math.isqrt(num_positions))
    if side * side != num_positions:
        raise ValueError(f"expected a square grid of position embeddings, got {num_positions} positions")
    dim = pos_embed.shape[-1]
    cls_pos = pos_embed[:, :1]  # (1, 1, D)
    grid = pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)  # (1, D, side, side)
    grid = F.interpolate(grid, size=(new_rows, new_cols), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_rows * new_cols, dim)  # (1, N', D)
    return torch.cat([cls_pos, grid], dim=1)  # (1, 1+N', D)
