"""Masked autoencoders: hide 75% of the patches, encode the rest, rebuild the pixels (He et al., 2022).

    noise (B, N) -> argsort -> keep the N(1 - r) lowest        random_masking, Sec. 3 "Masking"
    encoder: a ViT on the visible patches only (+ CLS)        MaskedAutoencoder.forward_encoder
    decoder: mask tokens put back in place, small ViT          forward_decoder, "MAE decoder"
    loss: MSE on the masked patches only                       mae_loss, "Reconstruction target"

Mirrors HF's `ViTMAEForPreTraining` (encoder under `vit.`, decoder under `decoder.`):
given the same `noise` the loss, logits, mask and `ids_restore` are the same. Two details
differ from the plain ViT: the position tables are fixed 2D sin-cos (column half first,
`mae_position_embedding`), and the pixel target flattens each patch as (P, P, C)
(`mae_patchify`), not as the (C, P, P) of `vit_course.patches.patchify`. Used by
notebook 10.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import nn

from .block import TransformerBlock
from .config import ViTConfig, to_2tuple
from .hf import LAYER_NAMES, LEGACY, detect_layout
from .patches import PatchEmbedding, check_images
from .paths import check_model_folder
from .position import sincos_2d
from .state_dict import check_state_dict, renamed_state_dict

if TYPE_CHECKING:
    import transformers


@dataclass
class MAEConfig(ViTConfig):
    """ViT's fields for the encoder, plus the decoder and the masking (`transformers.ViTMAEConfig`'s names)."""

    decoder_hidden_size: int = 512
    decoder_num_hidden_layers: int = 8
    decoder_num_attention_heads: int = 16
    decoder_intermediate_size: int = 2048
    mask_ratio: float = 0.75  # r: the share of patches hidden from the encoder
    norm_pix_loss: bool = False  # target: each patch's pixels normalised by their mean and std

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"expected 0 <= mask_ratio < 1, got {self.mask_ratio}")
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            raise ValueError(
                f"decoder_hidden_size must be divisible by decoder_num_attention_heads: expected a multiple of "
                f"{self.decoder_num_attention_heads}, got {self.decoder_hidden_size}"
            )
        rows, cols = self.grid_size
        if rows != cols:
            raise ValueError(f"expected a square patch grid (MAE's sin-cos tables), got {rows}x{cols}")
        for width in (self.hidden_size, self.decoder_hidden_size):
            if width % 4:
                raise ValueError(f"expected encoder and decoder widths divisible by 4 for 2D sin-cos, got {width}")

    def decoder_config(self) -> ViTConfig:
        """The decoder's blocks: the encoder's settings at the decoder's sizes."""
        return ViTConfig(
            hidden_size=self.decoder_hidden_size, num_hidden_layers=self.decoder_num_hidden_layers,
            num_attention_heads=self.decoder_num_attention_heads, intermediate_size=self.decoder_intermediate_size,
            hidden_act=self.hidden_act, hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob, layer_norm_eps=self.layer_norm_eps,
            image_size=self.image_size, patch_size=self.patch_size, num_channels=self.num_channels, qkv_bias=self.qkv_bias,
        )

    @classmethod
    def from_hf(cls, hf_config: transformers.ViTMAEConfig) -> "MAEConfig":
        if getattr(hf_config, "model_type", None) != "vit_mae":
            raise ValueError(f"expected a ViTMAE config (model_type 'vit_mae'), got {getattr(hf_config, 'model_type', None)!r}")
        names = [f.name for f in fields(cls) if f.name not in ("num_labels", "id2label", "attn_implementation")]
        return cls(**{n: getattr(hf_config, n) for n in names})

    def to_hf(self) -> transformers.ViTMAEConfig:
        import transformers

        skip = ("num_labels", "id2label", "attn_implementation")
        return transformers.ViTMAEConfig(**{k: v for k, v in asdict(self).items() if k not in skip})


class MAEOutput(NamedTuple):
    loss: torch.Tensor  # ()
    logits: torch.Tensor  # (B, N, P*P*C): predicted pixels of every patch
    mask: torch.Tensor  # (B, N): 1 where the patch was hidden
    ids_restore: torch.Tensor  # (B, N)


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (B, N, D) -> visible (B, K, D), mask (B, N), ids_restore (B, N), with K = int(N (1 - r)).

    Each sample keeps the K patches with the lowest noise. `ids_restore` is the inverse
    of the shuffle: `visible` followed by N - K mask tokens, gathered with it, is back in
    patch order. `mask` is 1 for a hidden patch, 0 for a kept one.
    """
    if x.ndim != 3:
        raise ValueError(f"expected tokens of rank 3 (B, N, D), got shape {tuple(x.shape)}")
    B, N, D = x.shape
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"expected 0 <= mask_ratio < 1, got {mask_ratio}")
    if noise is None:
        noise = torch.rand(B, N, device=x.device)
    if noise.shape != (B, N):
        raise ValueError(f"expected noise of shape ({B}, {N}), one number per patch, got {tuple(noise.shape)}")
    keep = int(N * (1 - mask_ratio))
    ids_shuffle = noise.argsort(dim=1)  # (B, N): lowest noise first
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N): the inverse permutation
    ids_keep = ids_shuffle[:, :keep]  # (B, K)
    visible = x.gather(1, ids_keep[:, :, None].expand(B, keep, D))  # (B, K, D)
    mask = torch.ones(B, N, device=x.device)
    mask[:, :keep] = 0  # in shuffled order: the first K are kept
    mask = mask.gather(1, ids_restore)  # (B, N) in patch order
    return visible, mask, ids_restore


def mae_patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C): patches row-major, each flattened as (P, P, C), as MAE's target."""
    check_images(images, patch_size)
    B, C, H, W = images.shape
    P = patch_size
    x = images.reshape(B, C, H // P, P, W // P, P)  # (B, C, rows, P, cols, P)
    x = x.permute(0, 2, 4, 3, 5, 1)  # (B, rows, cols, P, P, C)
    return x.reshape(B, (H // P) * (W // P), P * P * C)


def mae_unpatchify(patches: torch.Tensor, patch_size: int, image_size: int | tuple[int, int], num_channels: int = 3) -> torch.Tensor:
    """(B, N, P*P*C) -> (B, C, H, W), the inverse of `mae_patchify`."""
    H, W = to_2tuple(image_size)
    P, C = patch_size, num_channels
    if patches.ndim != 3 or patches.shape[1:] != ((H // P) * (W // P), P * P * C):
        raise ValueError(
            f"expected patches of shape (B, {(H // P) * (W // P)}, {P * P * C}) for a {C}x{H}x{W} image and patch "
            f"size {P}, got {tuple(patches.shape)}"
        )
    x = patches.reshape(-1, H // P, W // P, P, P, C)  # (B, rows, cols, P, P, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(-1, C, H, W)


def mae_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix_loss: bool = False) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only.

    pred, target (B, N, P*P*C); mask (B, N), 1 where hidden. With `norm_pix_loss` each
    target patch is first normalised by its own mean and variance (+1e-6), as in the paper.
    """
    if pred.shape != target.shape or pred.ndim != 3 or mask.shape != pred.shape[:2]:
        raise ValueError(
            f"expected pred and target of one shape (B, N, P*P*C) and mask (B, N), got pred {tuple(pred.shape)}, "
            f"target {tuple(target.shape)}, mask {tuple(mask.shape)}"
        )
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as the paper's code
        target = (target - mean) / (var + 1e-6) ** 0.5
    per_patch = ((pred - target) ** 2).mean(dim=-1)  # (B, N)
    return (per_patch * mask).sum() / mask.sum()


def mae_position_embedding(grid: int, dim: int) -> torch.Tensor:
    """(1, 1+grid^2, dim): MAE's fixed table, a zero CLS row then 2D sin-cos, column half first."""
    table = sincos_2d(grid, grid, dim)  # (N, dim): row half, column half
    table = torch.cat([table[:, dim // 2:], table[:, : dim // 2]], dim=1)  # MAE puts the column first
    return torch.cat([torch.zeros(1, dim), table])[None]


class MaskedAutoencoder(nn.Module):
    """A ViT encoder that sees only the visible patches, and a light decoder that rebuilds all.

    Args:
        config: `MAEConfig`, the field names of `transformers.ViTMAEConfig`.
    """

    def __init__(self, config: MAEConfig) -> None:
        super().__init__()
        self.config = config
        D, Dd, N = config.hidden_size, config.decoder_hidden_size, config.num_patches
        P, C = config.patch_size, config.num_channels
        grid = config.grid_size[0]
        self.patch_embed = PatchEmbedding(P, C, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(mae_position_embedding(grid, D), requires_grad=False)  # fixed
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(mae_position_embedding(grid, Dd), requires_grad=False)
        decoder_config = config.decoder_config()
        self.decoder_blocks = nn.ModuleList(TransformerBlock(decoder_config) for _ in range(config.decoder_num_hidden_layers))
        self.decoder_norm = nn.LayerNorm(Dd, eps=config.layer_norm_eps)
        self.decoder_pred = nn.Linear(Dd, P * P * C)  # pixels of one patch, (P, P, C) order
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a Linear layer, as the paper's code
        nn.init.normal_(self.cls_token, std=config.initializer_range)
        nn.init.normal_(self.mask_token, std=config.initializer_range)

    def _check(self, pixel_values: torch.Tensor) -> None:
        config = self.config
        check_images(pixel_values, config.patch_size, config.num_channels)
        if tuple(pixel_values.shape[2:]) != to_2tuple(config.image_size):
            expected = "x".join(map(str, to_2tuple(config.image_size)))
            raise ValueError(f"expected images of size {expected}, got {pixel_values.shape[2]}x{pixel_values.shape[3]}")

    def forward_encoder(
        self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None, mask_ratio: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> latent (B, 1+K, D), mask (B, N), ids_restore (B, N)."""
        self._check(pixel_values)
        x = self.patch_embed(pixel_values) + self.pos_embed[:, 1:]  # (B, N, D)
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        x, mask, ids_restore = random_masking(x, ratio, noise)  # (B, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1+K, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1+K, D), ids_restore (B, N) -> predicted pixels (B, N, P*P*C)."""
        x = self.decoder_embed(latent)  # (B, 1+K, Dd)
        B, K1, Dd = x.shape
        N = ids_restore.shape[1]
        masked = self.mask_token.expand(B, N + 1 - K1, Dd)  # (B, N-K, Dd)
        x_ = torch.cat([x[:, 1:], masked], dim=1)  # (B, N, Dd): shuffled order
        x_ = x_.gather(1, ids_restore[:, :, None].expand(B, N, Dd))  # (B, N, Dd): patch order
        x = torch.cat([x[:, :1], x_], dim=1) + self.decoder_pos_embed  # (B, 1+N, Dd)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]  # (B, N, P*P*C), CLS dropped

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor | None = None) -> MAEOutput:
        latent, mask, ids_restore = self.forward_encoder(pixel_values, noise)
        pred = self.forward_decoder(latent, ids_restore)
        target = mae_patchify(pixel_values, self.config.patch_size)
        return MAEOutput(mae_loss(pred, target, mask, self.config.norm_pix_loss), pred, mask, ids_restore)

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1+N, D): the encoder on every patch, none masked (for a linear probe)."""
        return self.forward_encoder(pixel_values, mask_ratio=0.0)[0]

    @classmethod
    def from_hf(cls, source: str | Path | transformers.ViTMAEForPreTraining) -> "MaskedAutoencoder":
        """From a `transformers.ViTMAEForPreTraining` or its `save_pretrained` directory."""
        import transformers

        if isinstance(source, (str, Path)):
            check_model_folder(source)  # as shipped, config parsed, weights readable and finite
            source = transformers.ViTMAEForPreTraining.from_pretrained(source)
        if not isinstance(source, transformers.ViTMAEForPreTraining):
            raise ValueError(f"expected a transformers ViTMAEForPreTraining or its directory, got {type(source).__name__}")
        model = cls(MAEConfig.from_hf(source.config))
        model.load_state_dict(from_hf_state_dict(source.state_dict(), model))
        return model.eval()

    def to_hf(self) -> transformers.ViTMAEForPreTraining:
        """A `transformers.ViTMAEForPreTraining` with the same weights, in eval mode."""
        import transformers

        hf_model = transformers.ViTMAEForPreTraining(self.config.to_hf())
        scheme, _ = detect_layout(hf_model.state_dict())
        state_dict = {hf_name(k, scheme): v for k, v in self.state_dict().items()}
        check_state_dict(hf_model.state_dict(), state_dict, source="converted MAE state dict")
        hf_model.load_state_dict(state_dict)
        return hf_model.eval()


TOP_NAMES = {
    "cls_token": "vit.embeddings.cls_token",
    "pos_embed": "vit.embeddings.position_embeddings",
    "patch_embed.proj": "vit.embeddings.patch_embeddings.projection",
    "norm": "vit.layernorm",
    "decoder_embed": "decoder.decoder_embed",
    "mask_token": "decoder.mask_token",
    "decoder_pos_embed": "decoder.decoder_pos_embed",
    "decoder_norm": "decoder.decoder_norm",
    "decoder_pred": "decoder.decoder_pred",
}
# where the N-th block lives, by naming scheme (see vit_course.hf)
BLOCK_PREFIX = {
    ("blocks", LEGACY): "vit.encoder.layer.{}.",
    ("blocks", "current"): "vit.layers.{}.",
    ("decoder_blocks", LEGACY): "decoder.decoder_layers.{}.",
    ("decoder_blocks", "current"): "decoder.decoder_layers.{}.",
}


def hf_name(key: str, scheme: str) -> str:
    """Our MAE parameter name -> HF's, e.g. `decoder_blocks.0.mlp.fc1.weight` -> `decoder.decoder_layers.0.mlp.fc1.weight`."""
    module, _, leaf = key.rpartition(".")
    group = key.split(".", 1)[0]
    if group in ("blocks", "decoder_blocks"):
        _, index, sub = module.split(".", 2)
        hf_sub = LAYER_NAMES[sub][0 if scheme == LEGACY else 1]
        return BLOCK_PREFIX[group, scheme].format(index) + f"{hf_sub}.{leaf}"
    if key in TOP_NAMES:
        return TOP_NAMES[key]
    return f"{TOP_NAMES[module]}.{leaf}"


def from_hf_state_dict(hf_state_dict: dict, model: MaskedAutoencoder) -> dict:
    """HF's ViTMAEForPreTraining state dict (either naming scheme) -> ours, every key and shape checked."""
    scheme, _ = detect_layout(hf_state_dict)
    return renamed_state_dict(hf_state_dict, model.state_dict(), lambda ours: hf_name(ours, scheme),
                              source="HF ViTMAE state dict")
