"""Fine-tuning helpers: freeze a backbone for linear probing, and layer-wise learning rates.

`freeze_backbone(model)` leaves only the classifier head trainable. `layerwise_lr_groups`
gives each encoder layer its own learning rate, decaying from the head down to the
embeddings (BEiT, Bao et al., 2022). Both read Hugging Face ViT parameter names (either
spelling) and `vit_course` ones. Notebook 06 asks learners to write them; these are the
reference answers its checks compare with.

Used by notebook 06.
"""

from __future__ import annotations

import re

import torch

_LAYER = re.compile(r"(?:^|\.)(?:layers?|blocks)\.(\d+)\.")  # HF <5.9, HF >=5.9, vit_course
_EMBEDDINGS = {"embeddings", "patch_embed", "cls_token", "pos_embed"}
HEAD_PREFIXES = ("classifier.", "head.")


def freeze_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """Linear probing: freeze every parameter but the classifier's (HF `classifier`, ours `head`)."""
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(HEAD_PREFIXES)
    return model


def layer_id(name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for encoder layer i, L + 1 for what follows the encoder.

    Reads HF names (`vit.embeddings.*`, `vit.layers.3.*` or `vit.encoder.layer.3.*`) and
    `vit_course` names (`patch_embed.*`, `cls_token`, `pos_embed`, `blocks.3.*`).
    """
    if _EMBEDDINGS & set(name.split(".")):
        return 0
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def layerwise_lr_groups(model: torch.nn.Module, base_lr: float, decay: float) -> list[dict]:
    """One optimizer param group per layer id, lr = base_lr * decay ** (L + 1 - id)."""
    L = model.config.num_hidden_layers
    groups: dict[int, list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault(layer_id(name, L), []).append(param)
    return [{"params": params, "lr": base_lr * decay ** (L + 1 - i)} for i, params in sorted(groups.items())]
