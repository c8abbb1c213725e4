"""The ViT family's sizes, computed from configs alone and set beside the published numbers.

Every model is built on the meta device (shapes, no memory, no weights), its parameters
counted and one 224x224 image's forward pass counted by `torch.utils.flop_counter`
(2 FLOPs per multiply-add, matrix products and convolutions only). Papers quote
"FLOPs" as multiply-adds, so `gmacs` = FLOPs / 2 is the column to compare with them.

Published numbers, with their sources:
- ViT-B/16, ViT-L/16, ViT-H/14: Dosovitskiy et al. (2021), Table 1: 86M, 307M, 632M.
- ViT-Ti/16 and ViT-S/16: the widths DeiT introduced (Touvron et al., 2021, Table 1),
  5.7M and 22M as quoted in the course's source material.
- DeiT-Ti, DeiT-S, DeiT-B: Touvron et al. (2021), Table 1: 5M, 22M, 86M; the distilled
  models (a second token and head) as listed in the DeiT repository's README
  (facebookresearch/deit): 6M, 22M, 87M.
- DeiT-S, DeiT-B and Swin-T multiply-adds, Swin-T parameters: Liu et al. (2021), Table 1:
  4.6G, 17.5G; 29M and 4.5G.

Used by notebook 09.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch

from .config import ViTConfig
from .cost import count_parameters


@dataclass(frozen=True)
class Quoted:
    params_m: float | None  # millions of parameters, as printed
    gmacs: float | None  # billions of multiply-adds at 224x224, as printed ("GFLOPs" in the papers)
    source: str


def _vit(width: int, depth: int, heads: int, patch: int = 16) -> ViTConfig:
    return ViTConfig(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                     intermediate_size=4 * width, patch_size=patch, image_size=224, num_labels=1000)


# name: (family, config)
VARIANTS = {
    "ViT-Ti/16": ("vit", _vit(192, 12, 3)),
    "ViT-S/16": ("vit", _vit(384, 12, 6)),
    "ViT-B/16": ("vit", _vit(768, 12, 12)),
    "ViT-L/16": ("vit", _vit(1024, 24, 16)),
    "ViT-H/14": ("vit", _vit(1280, 32, 16, patch=14)),
    "DeiT-Ti (distilled)": ("deit", _vit(192, 12, 3)),
    "DeiT-S (distilled)": ("deit", _vit(384, 12, 6)),
    "DeiT-B (distilled)": ("deit", _vit(768, 12, 12)),
    "Swin-T": ("swin", None),
}

QUOTED = {
    "ViT-Ti/16": Quoted(5.7, None, "course sources (DeiT-Ti's width)"),
    "ViT-S/16": Quoted(22, 4.6, "course sources; MACs: Swin Table 1 (DeiT-S)"),
    "ViT-B/16": Quoted(86, 17.5, "ViT Table 1; MACs: Swin Table 1 (DeiT-B)"),
    "ViT-L/16": Quoted(307, None, "ViT Table 1"),
    "ViT-H/14": Quoted(632, None, "ViT Table 1"),
    "DeiT-Ti (distilled)": Quoted(6, None, "DeiT README"),
    "DeiT-S (distilled)": Quoted(22, None, "DeiT README"),
    "DeiT-B (distilled)": Quoted(87, None, "DeiT README"),
    "Swin-T": Quoted(29, 4.5, "Swin Table 1"),
}


def build_on_meta(name: str) -> torch.nn.Module:
    """The variant `name` as one of the course's models, on the meta device, in eval mode."""
    if name not in VARIANTS:
        raise ValueError(f"expected one of {list(VARIANTS)}, got {name!r}")
    family, config = VARIANTS[name]
    with torch.device("meta"):
        if family == "vit":
            from .vit import VisionTransformer

            return VisionTransformer(config).eval()
        if family == "deit":
            from .deit import DeiT

            return DeiT(config).eval()
        from .swin import SwinConfig, SwinTransformer

        return SwinTransformer(SwinConfig(num_labels=1000)).eval()  # the defaults are Swin-T


def forward_flops(model: torch.nn.Module, image_size: int = 224) -> int:
    """FLOPs of one image's forward pass (2 per multiply-add), counted on the model's device."""
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.empty(1, 3, image_size, image_size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def variant_table(names: Iterable[str] | None = None) -> list[dict]:
    """One row per variant: computed parameters (M) and multiply-adds (G) beside the quoted ones."""
    rows = []
    for name in names or VARIANTS:
        model = build_on_meta(name)
        params = count_parameters(model)
        quoted = QUOTED[name]
        rows.append({
            "model": name,
            "params_m": params / 1e6,
            "gmacs": forward_flops(model) / 2e9,
            "quoted_params_m": quoted.params_m,
            "quoted_gmacs": quoted.gmacs,
            "source": quoted.source,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table (numbers rounded for print)."""

    def num(x, digits):
        return "-" if x is None else f"{x:.{digits}f}"

    lines = [f"{'model':<20} {'params (M)':>10} {'quoted':>7} {'GMACs':>7} {'quoted':>7}  source"]
    for r in rows:
        lines.append(
            f"{r['model']:<20} {num(r['params_m'], 2):>10} {num(r['quoted_params_m'], 1):>7} "
            f"{num(r['gmacs'], 2):>7} {num(r['quoted_gmacs'], 1):>7}  {r['source']}"
        )
    return "\n".join(lines)
