"""Checks for counting what a ViT costs: parameters and forward FLOPs.

`check_count_parameters(fn)` compares `fn(model) -> int` with
`vit_course.cost.count_parameters` on models with frozen parts, buffers and a shared
weight. `check_vit_flops(fn)` compares `fn(config) -> int` with
`vit_course.cost.vit_forward_flops` (matrix products only, 2 FLOPs per multiply-add).

Used by notebook 08.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .compare import CheckFailure, as_count, check, learner_call


class _Tied(nn.Module):
    """An embedding and an output layer sharing one weight, as in language models."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.embed.weight


def _models():
    """(description, model) pairs, built the same way every time."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        frozen = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4))
        frozen[0].requires_grad_(False)
        models = [
            ("nn.Linear(3, 4)", nn.Linear(3, 4)),
            ("an MLP whose first layer is frozen", frozen),
            ("a conv net with BatchNorm (whose running statistics are buffers, not parameters)",
             nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                           nn.Linear(8, 2))),
            ("a model whose embedding and output layer share one weight", _Tied()),
        ]
        try:
            from vit_course.config import ViTConfig
            from vit_course.vit import VisionTransformer

            config = ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                               image_size=16, patch_size=8, num_labels=3)
            models.append(("a tiny vit_course.VisionTransformer", VisionTransformer(config)))
        except ImportError:  # pragma: no cover
            pass
    return models


@check("count_parameters", reference="vit_course.cost:count_parameters")
def check_count_parameters(fn: Callable[..., Any]) -> str:
    """`fn(model) -> int`: every learned number, frozen or not, shared tensors once, no buffers."""
    from vit_course.cost import count_parameters

    for case, model in _models():
        expected = count_parameters(model)
        answer = learner_call(fn, model, case=case, names=("model",))
        got = as_count(answer)  # int, numpy integer or a one-element tensor
        if got is None or not math.isfinite(got) or got != int(got):
            raise CheckFailure(f"expected a whole number, got {answer!r:.60}", details=(f"on {case}",))
        if int(got) == expected:
            continue
        variants = [
            ("tensors are counted, not numbers: add up p.numel() for each parameter", len(list(model.parameters()))),
            ("only trainable parameters are counted: count frozen ones too (drop the requires_grad filter)",
             count_parameters(model, trainable_only=True)),
            ("buffers (like BatchNorm's running mean) are counted: count model.parameters(), not the state_dict",
             sum(t.numel() for t in model.state_dict().values())),
            ("a shared weight is counted twice: model.parameters() lists it once",
             sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))),
        ]
        cause = next((text for text, value in variants if value == int(got) and value != expected), None)
        raise CheckFailure(f"expected {expected:,} parameters, got {int(got):,}", details=(f"on {case}",), cause=cause)
    return "the counts match on 5 models (frozen layers, BatchNorm buffers, a shared weight, a tiny ViT)"


def _configs():
    from vit_course.config import ViTConfig

    return [
        ("ViT-S/16 at 224x224 with 1000 classes",
         ViTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, num_labels=1000)),
        ("a tiny ViT on 32x48 images (height x width), patch 8, 3 heads, 3 classes",
         ViTConfig(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=48,
                   image_size=(32, 48), patch_size=8, num_labels=3)),
        ("ViT-B/16 at 224x224 without a classifier (num_labels=0)", ViTConfig()),
    ]


def _variant(config, **drop) -> int:
    from vit_course.cost import vit_flops_breakdown

    parts = vit_flops_breakdown(config)
    if drop.get("no_cls"):  # every encoder term with T = N instead of N + 1
        N = config.num_patches
        D, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
        parts.update(
            qkv_projections=L * 2 * 3 * N * D * D,
            attention_scores=L * 2 * N * N * D,
            attention_values=L * 2 * N * N * D,
            output_projection=L * 2 * N * D * D,
            mlp=L * 2 * 2 * N * D * I,
        )
    if drop.get("one_head"):
        parts["attention_scores"] //= config.num_attention_heads
        parts["attention_values"] //= config.num_attention_heads
    for key in drop.get("parts", ()):
        parts[key] = 0
    total = sum(parts.values())
    return total // 2 if drop.get("macs") else total


FLOP_MISTAKES = [
    ("multiply-adds are counted, not FLOPs: each multiply-add is 2 FLOPs", dict(macs=True)),
    ("the attention products q k^T and weights @ v are missing: 2 * T^2 * D FLOPs each per layer",
     dict(parts=("attention_scores", "attention_values"))),
    ("the attention products are counted for one head only: over all heads q k^T costs 2 * T^2 * D",
     dict(one_head=True)),
    ("the CLS token is left out: the encoder sees T = N + 1 tokens", dict(no_cls=True)),
    ("the patch embedding is missing: 2 * N * (C * P * P) * D FLOPs", dict(parts=("patch_embedding",))),
    ("the classifier is missing: 2 * D * num_labels FLOPs on the CLS token", dict(parts=("classifier",))),
    ("the output projection o_proj is missing: 2 * T * D^2 FLOPs per layer", dict(parts=("output_projection",))),
]


@check("vit_flops", reference="vit_course.cost:vit_forward_flops")
def check_vit_flops(fn: Callable[..., Any]) -> str:
    """`fn(config) -> int` forward FLOPs of one image: compare with `vit_course.cost.vit_forward_flops`."""
    from vit_course.cost import vit_forward_flops

    for case, config in _configs():
        expected = vit_forward_flops(config)
        answer = learner_call(fn, config, case=case, names=("config",))
        got = as_count(answer)  # int, numpy integer (np.int64) or a one-element tensor
        if got is None or not math.isfinite(got):
            raise CheckFailure(f"expected a number of FLOPs, got {answer!r:.60}", details=(f"on {case}",))
        if abs(got - expected) <= 1e-9 * expected:
            continue
        cause = next(
            (text for text, kw in FLOP_MISTAKES if abs(got - _variant(config, **kw)) <= 1e-9 * expected),
            None,
        )
        raise CheckFailure(
            f"expected {expected:,} FLOPs, got {got:,.0f} ({got / expected:.3f} times as many)",
            details=(f"on {case}",),
            cause=cause,
        )
    return "the FLOPs match on 3 configs (ViT-S/16 with a head, a non-square tiny ViT, ViT-B/16 without a head)"
