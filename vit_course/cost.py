"""What a ViT costs: parameters and forward FLOPs in closed form (Dosovitskiy et al., 2021, Table 1).

`count_parameters` counts the numbers a model learns. `vit_forward_flops` counts the
floating-point operations of one image's forward pass through every matrix product,
2 per multiply-add, as `torch.utils.flop_counter` does; LayerNorm, softmax, GELU, bias
additions and residual sums are left out (together a few percent). With T = N + 1
tokens of width D, MLP width I and L layers:

    patch embedding   2 N (C P^2) D
    per layer         2 (4 T D^2 + 2 T^2 D + 2 T D I)    q, k, v, o; q k^T and weights v; the MLP
    classifier        2 D num_labels                       on the CLS token only

`vit_flops_breakdown` gives the same sum term by term. Works with `vit_course.ViTConfig`
and `transformers.ViTConfig` alike.

Used by notebooks 01, 03, 06, 08 and 09.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import to_2tuple


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """The number of learned numbers in `model` (shared tensors counted once, buffers never)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def vit_flops_breakdown(config: Any) -> dict[str, int]:
    """Forward FLOPs per image, by matrix product, for a ViT with this config."""
    H, W = to_2tuple(config.image_size)
    P, C = config.patch_size, config.num_channels
    D, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    N = (H // P) * (W // P)  # patches
    T = N + 1  # tokens, CLS included
    num_labels = getattr(config, "num_labels", 0) or 0
    return {
        "patch_embedding": 2 * N * (C * P * P) * D,
        "qkv_projections": L * 2 * 3 * T * D * D,
        "attention_scores": L * 2 * T * T * D,  # q k^T, all heads together
        "attention_values": L * 2 * T * T * D,  # weights v
        "output_projection": L * 2 * T * D * D,
        "mlp": L * 2 * 2 * T * D * I,
        "classifier": 2 * D * num_labels,
    }


def vit_forward_flops(config: Any) -> int:
    """Forward FLOPs of one image (2 per multiply-add, matrix products only)."""
    return sum(vit_flops_breakdown(config).values())
