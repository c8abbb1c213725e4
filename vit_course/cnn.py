"""A small convolutional network for Fashion-MNIST: the baseline the ViT is compared with.

Three blocks of (conv 3x3 -> BatchNorm -> ReLU) x 2 then 2x2 max-pool halve the image
28 -> 14 -> 7 -> 3 while the channels grow 32 -> 64 -> 128; a global average pool and
one linear layer give the 10 logits. About 290k parameters, all of it local, shared,
translation-equivariant filters: the inductive bias a ViT has to learn from data
(Dosovitskiy et al., 2021, section 3.1 "Inductive bias").

`save(model, folder)` writes `model.safetensors` and `config.json`; `load(folder)` reads
them back and names any missing, unexpected or misshaped weight.

Used by notebooks 08 and 09.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vit_course.paths import atomic_write, read_json, read_safetensors
from vit_course.state_dict import check_state_dict

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class CNNConfig:
    in_channels: int = 1  # grayscale Fashion-MNIST
    channels: tuple[int, ...] = (32, 64, 128)  # one entry per block; each block halves H and W
    convs_per_block: int = 2
    num_labels: int = 10
    dropout: float = 0.1  # before the linear head
    id2label: dict[int, str] = field(default_factory=dict)  # optional class names

    def __post_init__(self):
        self.channels = tuple(self.channels)
        self.id2label = {int(k): v for k, v in self.id2label.items()}


class ConvBlock(nn.Module):
    """(conv 3x3 -> BatchNorm -> ReLU) x n, then a 2x2 max-pool: (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int = 2):
        super().__init__()
        layers = []
        for i in range(num_convs):
            layers += [
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),  # BatchNorm has its own bias, so the conv has none
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.convs(x))


class SmallCNN(nn.Module):
    """Conv blocks -> global average pool -> linear head. Input float `(B, C, H, W)`, output logits `(B, num_labels)`."""

    def __init__(self, config: CNNConfig | None = None):
        super().__init__()
        self.config = config or CNNConfig()
        c = self.config
        widths = (c.in_channels, *c.channels)
        self.blocks = nn.Sequential(*[ConvBlock(widths[i], widths[i + 1], c.convs_per_block)
                                      for i in range(len(c.channels))])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(c.dropout)
        self.head = nn.Linear(widths[-1], c.num_labels)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)  # (B, C_last, H / 2**n, W / 2**n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)  # (B, 128, 3, 3) for 28x28 input
        x = self.pool(x).flatten(1)  # (B, 128)
        return self.head(self.dropout(x))  # (B, num_labels)


def save(model: SmallCNN, folder: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write `model.safetensors` and `config.json` into `folder`, each file atomically."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_write(folder / WEIGHTS_NAME) as f:
        f.write(save(tensors, metadata={"format": "pt"}))
    config = {"model_type": "vit_course.cnn.SmallCNN", **asdict(model.config), **(extra or {})}
    with atomic_write(folder / CONFIG_NAME, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return folder


def load(folder: str | os.PathLike) -> SmallCNN:
    """Read a folder written by `save`; raise ValueError naming every key that does not fit."""
    folder = Path(folder)
    fix = ("`git checkout -- data/models/cnn-fashion` for the shipped model, "
           "or save it again with vit_course.cnn.save")
    raw = read_json(folder / CONFIG_NAME, fix)
    known = CNNConfig.__dataclass_fields__
    try:
        model = SmallCNN(CNNConfig(**{k: v for k, v in raw.items() if k in known}))
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"{folder / CONFIG_NAME} is not a SmallCNN config ({err}). Fix: {fix}") from err
    state = read_safetensors(folder / WEIGHTS_NAME, fix)
    check_state_dict(model.state_dict(), state, source=f"{folder / WEIGHTS_NAME} (SmallCNN({model.config}))")
    model.load_state_dict(state)
    return model.eval()
