"""The pre-norm transformer encoder block (Dosovitskiy et al., 2021, Eq. 2-3).

    x = x + MSA(LN(x))
    x = x + MLP(LN(x))

Mirrors HF's `ViTLayer` (`layernorm_before`, attention, `layernorm_after`, MLP) under the
names timm uses: `norm1`, `attn`, `norm2`, `mlp.fc1`, `mlp.fc2`. The fast path
(`attn_implementation="fast"`) uses `FastMLP`: the same layers, each a `FastLinear`, with
the GELU fused into fc1 where no gradient is needed (see `vit_course.fast_linear`).

Used by notebook 04.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import FusedQKVSelfAttention, MultiHeadSelfAttention
from .config import ViTConfig
from .fast_linear import FastLinear


def activation(name: str) -> nn.Module:
    """HF's activation names: "gelu" is the exact erf GELU, "gelu_new" the tanh one."""
    table = {
        "gelu": lambda: nn.GELU(),
        "gelu_new": lambda: nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
        "relu": lambda: nn.ReLU(),
    }
    if name not in table:
        raise ValueError(f"expected hidden_act in {sorted(table)}, got {name!r}")
    return table[name]()


class MLP(nn.Module):
    """D -> intermediate_size -> D with a GELU between: applied to each token alone."""

    def __init__(self, config: ViTConfig, linear: type[nn.Linear] = nn.Linear) -> None:
        super().__init__()
        self.fc1 = linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.fc2 = linear(config.intermediate_size, config.hidden_size)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.act(self.fc1(x))))  # (B, N, D)


class FastMLP(MLP):
    """The same MLP with `FastLinear` layers: the activation runs inside fc1's kernel."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config, linear=FastLinear)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(self.fc1, FastLinear):  # after `plain_linears`
            return super().forward(x)
        return self.drop(self.fc2(self.fc1(x, self.act)))  # (B, N, D)


class TransformerBlock(nn.Module):
    """One pre-norm block: attention, then MLP, each inside a residual connection."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        attention = FusedQKVSelfAttention if config.attn_implementation == "fast" else MultiHeadSelfAttention
        self.attn = attention(
            config.hidden_size,
            config.num_attention_heads,
            qkv_bias=config.qkv_bias,
            dropout=config.attention_probs_dropout_prob,
            fused=config.attn_implementation != "eager",
        )
        self.drop = nn.Dropout(config.hidden_dropout_prob)
        self.norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FastMLP(config) if config.attn_implementation == "fast" else MLP(config)

    def forward_with_attention(self, x: torch.Tensor, need_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, D) -> x (B, N, D), attention weights (B, h, N, N) or None."""
        attn_out, weights = self.attn(self.norm1(x), need_weights=need_weights)
        x = x + self.drop(attn_out)
        x = x + self.mlp(self.norm2(x))
        return x, weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_attention(x, need_weights=False)[0]
