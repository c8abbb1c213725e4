"""DeiT: a ViT with a distillation token (Touvron et al., 2021, Sec. 4, Fig. 2).

    z0 = [x_cls; x_dist; x_p^1 E; ...; x_p^N E] + E_pos      two learned tokens, N + 2 positions
    z_L = Blocks(z0)                                          the same blocks as ViT
    y_cls = head(LN(z_L^0)),  y_dist = head_dist(LN(z_L^1))   one classifier per token
    at inference: y = (y_cls + y_dist) / 2

The distillation token is trained to predict the teacher's label (hard distillation,
Eq. 3) while the CLS token predicts the true label: `hard_distillation_loss`. Mirrors
HF's `DeiTForImageClassificationWithTeacher` (backbone under `deit.`, heads
`cls_classifier` and `distillation_classifier`). Used by notebook 09.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .block import TransformerBlock
from .config import ViTConfig, to_2tuple
from .hf import LAYER_NAMES, LAYER_PREFIX, LEGACY, detect_layout
from .paths import check_model_folder
from .patches import PatchEmbedding, check_images
from .state_dict import check_state_dict, renamed_state_dict
from . import position

if TYPE_CHECKING:
    import transformers

# ours -> HF, outside the blocks
TOP_NAMES = {
    "cls_token": "deit.embeddings.cls_token",
    "dist_token": "deit.embeddings.distillation_token",
    "pos_embed": "deit.embeddings.position_embeddings",
    "patch_embed.proj": "deit.embeddings.patch_embeddings.projection",
    "norm": "deit.layernorm",
    "head": "cls_classifier",
    "head_dist": "distillation_classifier",
}


class DeiT(nn.Module):
    """A ViT with CLS and distillation tokens and a classifier on each.

    Args:
        config: the same hyperparameters as a ViT; `num_labels` must be positive (both
            heads classify).
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if config.num_labels <= 0:
            raise ValueError(f"a DeiT with a teacher needs num_labels > 0 for its two heads, got {config.num_labels}")
        self.config = config
        D = config.hidden_size
        self.patch_embed = PatchEmbedding(config.patch_size, config.num_channels, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        # N + 2 positions: CLS, distillation, then the patches
        self.pos_embed = position.learned_position_embedding(2 + config.num_patches, D, std=config.initializer_range)
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.head = nn.Linear(D, config.num_labels)
        self.head_dist = nn.Linear(D, config.num_labels)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=config.initializer_range)
                nn.init.zeros_(module.bias) if module.bias is not None else None
        nn.init.trunc_normal_(self.cls_token, std=config.initializer_range)
        nn.init.trunc_normal_(self.dist_token, std=config.initializer_range)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 2+N, D) after the final LayerNorm: CLS, distillation, patches."""
        config = self.config
        check_images(pixel_values, config.patch_size, config.num_channels)
        B, _, H, W = pixel_values.shape
        if (H, W) != to_2tuple(config.image_size):
            expected = "x".join(map(str, to_2tuple(config.image_size)))
            raise ValueError(f"expected images of size {expected}, got {H}x{W}")
        x = self.patch_embed(pixel_values)  # (B, N, D)
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, D)
        dist = self.dist_token.expand(B, -1, -1)  # (B, 1, D)
        x = self.pos_drop(torch.cat([cls, dist, x], dim=1) + self.pos_embed)  # (B, 2+N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_heads(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (CLS logits, distillation logits), each (B, num_labels)."""
        features = self.forward_features(pixel_values)
        return self.head(features[:, 0]), self.head_dist(features[:, 1])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, num_labels): the mean of both heads, as at inference in the paper."""
        cls_logits, dist_logits = self.forward_heads(pixel_values)
        return (cls_logits + dist_logits) / 2

    @classmethod
    def from_hf(cls, source: str | Path | transformers.PreTrainedModel) -> "DeiT":
        """From a `transformers.DeiTForImageClassificationWithTeacher` or its
        `save_pretrained` directory."""
        import transformers

        if isinstance(source, (str, Path)):
            check_model_folder(source)  # config parsed, weights readable and finite
            source = transformers.DeiTForImageClassificationWithTeacher.from_pretrained(source)
        if not isinstance(source, transformers.DeiTForImageClassificationWithTeacher):
            raise ValueError(
                f"expected a transformers DeiTForImageClassificationWithTeacher or its directory, got {type(source).__name__}"
            )
        config = config_from_hf(source.config)
        model = cls(config)
        model.load_state_dict(from_hf_state_dict(source.state_dict(), model))
        return model.eval()

    def to_hf(self) -> transformers.DeiTForImageClassificationWithTeacher:
        """A `transformers.DeiTForImageClassificationWithTeacher` with the same weights, in eval mode."""
        import transformers

        hf_model = transformers.DeiTForImageClassificationWithTeacher(config_to_hf(self.config))
        scheme, _ = detect_layout(hf_model.state_dict())
        state_dict = {hf_name(k, scheme): v for k, v in self.state_dict().items()}
        check_state_dict(hf_model.state_dict(), state_dict, source="converted DeiT state dict")
        hf_model.load_state_dict(state_dict)
        return hf_model.eval()


def hard_distillation_loss(
    cls_logits: torch.Tensor, dist_logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor
) -> torch.Tensor:
    """Eq. 3: the CLS head learns the labels, the distillation head the teacher's argmax, half each."""
    if cls_logits.shape != dist_logits.shape or cls_logits.shape != teacher_logits.shape:
        raise ValueError(
            "expected CLS, distillation and teacher logits of one shape (B, num_labels), got "
            f"{tuple(cls_logits.shape)}, {tuple(dist_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    teacher_labels = teacher_logits.argmax(dim=-1)  # (B,)
    return 0.5 * F.cross_entropy(cls_logits, labels) + 0.5 * F.cross_entropy(dist_logits, teacher_labels)


def hf_name(key: str, scheme: str) -> str:
    """Our DeiT parameter name -> HF's, e.g. `dist_token` -> `deit.embeddings.distillation_token`."""
    module, _, leaf = key.rpartition(".")
    if key.startswith("blocks."):
        _, index, sub = module.split(".", 2)
        hf_sub = LAYER_NAMES[sub][0 if scheme == LEGACY else 1]
        return "deit." + LAYER_PREFIX[scheme].format(index) + f"{hf_sub}.{leaf}"
    if key in TOP_NAMES:
        return TOP_NAMES[key]
    return f"{TOP_NAMES[module]}.{leaf}"


def from_hf_state_dict(hf_state_dict: dict, model: DeiT) -> dict:
    """HF's DeiT state dict (either naming scheme) -> ours, every key and shape checked."""
    scheme, _ = detect_layout(hf_state_dict)
    return renamed_state_dict(hf_state_dict, model.state_dict(), lambda ours: hf_name(ours, scheme),
                              source="HF DeiT state dict")


_SHARED = [f.name for f in fields(ViTConfig) if f.name not in ("num_labels", "id2label", "attn_implementation")]


def config_from_hf(hf_config: transformers.DeiTConfig) -> ViTConfig:
    """A `transformers.DeiTConfig` -> our `ViTConfig` (DeiT keeps ViT's hyperparameters)."""
    if getattr(hf_config, "model_type", None) != "deit":
        raise ValueError(f"expected a DeiT config (model_type 'deit'), got model_type {getattr(hf_config, 'model_type', None)!r}")
    kwargs = {name: getattr(hf_config, name) for name in _SHARED}
    return ViTConfig(**kwargs, num_labels=hf_config.num_labels, id2label=dict(hf_config.id2label))


def config_to_hf(config: ViTConfig) -> transformers.DeiTConfig:
    """Our `ViTConfig` -> a `transformers.DeiTConfig`."""
    import transformers

    kwargs = {k: v for k, v in asdict(config).items() if k in _SHARED}
    id2label = config.id2label or {i: f"LABEL_{i}" for i in range(config.num_labels)}
    return transformers.DeiTConfig(**kwargs, id2label=id2label, label2id={v: k for k, v in id2label.items()})
