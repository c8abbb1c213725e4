"""Multi-head self-attention (Vaswani et al., 2017, Sec. 3.2; Dosovitskiy et al., 2021, Eq. 2-3).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V

`scaled_dot_product_attention` is that line, returning the weights too so they can be
looked at. `MultiHeadSelfAttention` mirrors HF's `ViTAttention` (in transformers >= 5.9:
`q_proj`, `k_proj`, `v_proj`, `o_proj`): project, split D into heads, attend in each
head, merge, project back. `fused=True` swaps the teaching path for PyTorch's fused
`F.scaled_dot_product_attention`, which is faster but returns no weights.

`FusedQKVSelfAttention` is the fast path (`ViTConfig(attn_implementation="fast")`, as
timm's `Attention`): one `qkv` Linear of width 3D instead of three of width D, then the
fused kernel, its two Linears `FastLinear` (oneDNN's GEMM on the CPU, see
`vit_course.fast_linear`). Same numbers, fewer, larger and faster matrix products.
`fuse_qkv_state_dict` and `split_qkv_state_dict` move weights between the two layouts, so
HF checkpoints load into either. Measured in `vit_course.bench` and notebook 08.

Used by notebooks 03 and 04.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn
from torch.nn import functional as F

from .fast_linear import FastLinear


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., Nq, d), (..., Nk, d), (..., Nk, dv) -> out (..., Nq, dv), weights (..., Nq, Nk).

    `mask` is boolean, True where a query may attend to a key, broadcastable to the weights.
    The weights are returned before dropout.
    """
    d = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., Nq, Nk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)  # each row sums to 1 over the keys
    out = F.dropout(weights, p=dropout_p) @ v if dropout_p else weights @ v  # (..., Nq, dv)
    return out, weights


def head_size(hidden_size: int, num_heads: int) -> int:
    """d = D / h, with a clear error when D is not a multiple of h."""
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size must be divisible by num_heads: expected a multiple of {num_heads}, got {hidden_size}"
        )
    return hidden_size // num_heads


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with `num_heads` heads of size `hidden_size // num_heads`.

    Args:
        hidden_size: D, the token width.
        num_heads: h; D must be divisible by h.
        qkv_bias: whether the query, key and value projections have a bias (HF default True).
        dropout: dropout on the attention weights, during training only.
        fused: use `F.scaled_dot_product_attention` when no weights are asked for.
    """

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0, fused: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, head_size(hidden_size, num_heads)
        self.dropout = dropout
        self.fused = fused
        self.q_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden_size, hidden_size, bias=qkv_bias)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        return x.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, _, N, _ = x.shape
        return x.transpose(1, 2).reshape(B, N, self.num_heads * self.head_dim)  # (B, N, D)

    def forward(self, x: torch.Tensor, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, D) -> out (B, N, D), weights (B, h, N, N) or None."""
        q = self.split_heads(self.q_proj(x))  # (B, h, N, d)
        k = self.split_heads(self.k_proj(x))  # (B, h, N, d)
        v = self.split_heads(self.v_proj(x))  # (B, h, N, d)
        dropout_p = self.dropout if self.training else 0.0
        if self.fused and not need_weights:
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
        else:
            out, weights = scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # (B, h, N, d)
        return self.o_proj(self.merge_heads(out)), weights


class FusedQKVSelfAttention(MultiHeadSelfAttention):
    """The fast path: the same attention with q, k, v computed by one Linear (D -> 3D).

    Takes `MultiHeadSelfAttention`'s arguments (`fused` is ignored: this path always uses
    the fused kernel unless weights are asked for). `qkv.weight` is `q_proj.weight`,
    `k_proj.weight`, `v_proj.weight` stacked along the output dimension.
    """

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool = True, dropout: float = 0.0, fused: bool = True) -> None:
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = num_heads, head_size(hidden_size, num_heads)
        self.dropout = dropout
        self.fused = True
        self.qkv = FastLinear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.o_proj = FastLinear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, D) -> out (B, N, D), weights (B, h, N, N) or None."""
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim)  # (B, N, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, h, N, d)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)  # (B, h, N, d)
        else:
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p), None
        return self.o_proj(self.merge_heads(out)), weights


_QKV = re.compile(r"^((?:.*\.)?)([qkv])_proj\.(weight|bias)$")  # prefix: empty or ends with "."


def fuse_qkv_state_dict(state_dict: dict) -> dict:
    """Teaching layout -> fast layout: every `X.q_proj.P`, `X.k_proj.P`, `X.v_proj.P`
    (P = weight or bias) becomes one `X.qkv.P`, q first; other keys pass unchanged."""
    fused, parts = {}, {}
    for key, value in state_dict.items():
        match = _QKV.match(key)
        if match is None:
            fused[key] = value
            continue
        prefix, which, kind = match.groups()
        parts.setdefault((prefix, kind), {})[which] = value
    for (prefix, kind), qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(qkv))
            raise ValueError(
                f"cannot fuse {prefix.rstrip('.') or 'the attention'}: expected q_proj, k_proj and v_proj {kind}, missing "
                + ", ".join(f"{m}_proj.{kind}" for m in missing)
            )
        fused[f"{prefix}qkv.{kind}"] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return fused


def split_qkv_state_dict(state_dict: dict) -> dict:
    """Fast layout -> teaching layout: the inverse of `fuse_qkv_state_dict`."""
    split = {}
    for key, value in state_dict.items():
        match = re.match(r"^((?:.*\.)?)qkv\.(weight|bias)$", key)
        if match is None:
            split[key] = value
            continue
        prefix, kind = match.groups()
        if value.shape[0] % 3:
            raise ValueError(f"{key}: expected a first dimension divisible by 3, got shape {tuple(value.shape)}")
        for which, part in zip("qkv", value.chunk(3, dim=0)):
            split[f"{prefix}{which}_proj.{kind}"] = part
    return split
