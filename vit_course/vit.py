"""The Vision Transformer (Dosovitskiy et al., 2021, Sec. 3.1, Eq. 1-4).

    z0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos        patch_embed, cls_token, pos_embed
    z_l = Block(z_{l-1}),  l = 1..L                      blocks
    y = head(LN(z_L^0))                                   norm, CLS pooling, head

Mirrors HF's `ViTModel` (without its pooler) and `ViTForImageClassification`, which
applies the classifier to the final-LayerNorm'd CLS token. `forward_features` ->
`pool` -> `forward_head` are the seams to hook into, as in timm. Weights move to and
from HF with `from_hf` and `to_hf` (see `vit_course.hf`), and to and from timm with
`from_timm` and `to_timm` (see `vit_course.timm_bridge`).

`fast_model` gives the fast path of a model, with the same weights: one fused qkv Linear,
PyTorch's fused attention and oneDNN's matrix products with the GELU fused in
(`attn_implementation="fast"`, see `vit_course.fast_linear`), by default under
`torch.compile` (`CompiledModel`, which runs the model eagerly where compiling fails).
`vit_course.bench` measures it against HF and timm.

Used by notebooks 02, 03, 04, 07, 08 and 09.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .attention import fuse_qkv_state_dict, split_qkv_state_dict
from .block import TransformerBlock
from .config import ViTConfig, to_2tuple
from .patches import PatchEmbedding, check_images
from .state_dict import check_state_dict
from . import position

if TYPE_CHECKING:
    import transformers


class VisionTransformer(nn.Module):
    """A ViT whose parameters map one to one onto HF's.

    Args:
        config: the hyperparameters; `config.num_labels == 0` gives a backbone that
            returns CLS features.
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        D = config.hidden_size
        self.patch_embed = PatchEmbedding(config.patch_size, config.num_channels, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = position.learned_position_embedding(1 + config.num_patches, D, std=config.initializer_range)
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.head = nn.Linear(D, config.num_labels) if config.num_labels else nn.Identity()
        self.apply(self._init_weights)
        nn.init.trunc_normal_(self.cls_token, std=config.initializer_range)

    def _init_weights(self, module: nn.Module) -> None:
        # HF's init: truncated normal weights, zero biases, unit LayerNorm
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def embed(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1+N, D): patch tokens, CLS first, plus positions."""
        config = self.config
        check_images(pixel_values, config.patch_size, config.num_channels)
        dtype = self.cls_token.dtype
        if pixel_values.dtype != dtype:
            raise ValueError(
                f"expected {dtype} pixel values (the model's dtype), got {pixel_values.dtype}; "
                "uint8 images go through vit_course.data.to_model_input, other floats through "
                f".to({dtype}) (or convert the model with model.to(dtype))"
            )
        B, _, H, W = pixel_values.shape
        if not interpolate_pos_encoding and (H, W) != to_2tuple(config.image_size):
            expected = "x".join(map(str, to_2tuple(config.image_size)))
            raise ValueError(
                f"expected images of size {expected}, got {H}x{W}; "
                "pass interpolate_pos_encoding=True to resize the position embeddings"
            )
        x = self.patch_embed(pixel_values)  # (B, N, D)
        cls = self.cls_token.expand(B, -1, -1)  # (B, 1, D)
        x = torch.cat([cls, x], dim=1)  # (B, 1+N, D)
        pos = self.pos_embed
        if interpolate_pos_encoding:
            pos = position.interpolate_pos_encoding(pos, H, W, config.patch_size)
        return self.pos_drop(x + pos)

    def forward_features(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1+N, D) after the final LayerNorm (HF's `last_hidden_state`)."""
        x = self.embed(pixel_values, interpolate_pos_encoding)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1+N, D) -> (B, D): the CLS token."""
        return features[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 1+N, D) -> logits (B, num_labels), or CLS features (B, D) without a head."""
        return self.head(self.pool(features))

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        return self.forward_head(self.forward_features(pixel_values, interpolate_pos_encoding))

    @torch.no_grad()
    def attention_maps(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> list[torch.Tensor]:
        """One (B, heads, 1+N, 1+N) tensor per layer, as HF's eager `attentions`."""
        x = self.embed(pixel_values, interpolate_pos_encoding)
        maps = []
        for block in self.blocks:
            x, weights = block.forward_with_attention(x, need_weights=True)
            maps.append(weights)
        return maps

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True, assign: bool = False) -> Any:
        """As `nn.Module.load_state_dict`, but a missing, unexpected or misshaped key is a
        ValueError that names it."""
        if self.config.attn_implementation == "fast":
            state_dict = fuse_qkv_state_dict(state_dict)  # a no-op on the fast layout
        else:
            state_dict = split_qkv_state_dict(state_dict)  # a no-op on the teaching layout
        if strict:
            check_state_dict(self.state_dict(), state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @classmethod
    def from_hf(cls, source: str | Path | transformers.PreTrainedModel,
                attn_implementation: str = "eager") -> "VisionTransformer":
        """From a transformers `ViTModel`/`ViTForImageClassification`, a `save_pretrained`
        directory, or (online) a hub id such as "google/vit-base-patch16-224".
        `attn_implementation="fast"` gives the fast path with the same weights."""
        from .hf import load_hf

        config, state_dict = load_hf(source)
        model = cls(replace(config, attn_implementation=attn_implementation))
        model.load_state_dict(state_dict)
        return model.eval()

    def to_hf(self) -> transformers.ViTModel | transformers.ViTForImageClassification:
        """An HF model with the same weights: `ViTForImageClassification` when the model has
        a head, else `ViTModel` without pooler. In eval mode."""
        from .hf import to_hf

        return to_hf(self)


    @classmethod
    def from_timm(cls, model: nn.Module) -> "VisionTransformer":
        """From a timm `VisionTransformer` (the fused qkv split, timm's LayerNorm eps kept);
        needs timm (see `vit_course.timm_bridge`)."""
        from .timm_bridge import from_timm

        return from_timm(model, cls)

    def to_timm(self) -> nn.Module:
        """A timm `VisionTransformer` with equal outputs, in eval mode; needs timm."""
        from .timm_bridge import to_timm

        return to_timm(self)


class CompiledModel(nn.Module):
    """`model` under `torch.compile`, or `model` itself where compiling fails.

    torch.compile traces the model on its first call and generates fused code for it: tens
    of seconds on a CPU, again for each new input shape and for train and eval mode (then
    cached). On the CPU it needs a C++ compiler. When compiling fails, that call warns,
    `fallback` says why, and from then on every call runs `model` eagerly.

    Args:
        model: the module to compile; `self.model` is it, with its parameters.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.fallback: str | None = None
        try:
            compiled = torch.compile(model)
        except Exception as error:  # e.g. a Python version that Dynamo does not support yet
            compiled, self.fallback = None, f"{type(error).__name__}: {error}"
            warnings.warn(f"torch.compile is unavailable, the model runs eagerly: {self.fallback}", stacklevel=2)
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: its parameters are model's

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.fallback is None:
            from torch._dynamo.exc import BackendCompilerFailed

            try:
                return self._compiled(*args, **kwargs)
            except BackendCompilerFailed as error:  # no C++ compiler, ...
                cause = getattr(error, "inner_exception", None) or error.__cause__ or error
                self.fallback = f"{type(cause).__name__}: {cause}"
                warnings.warn(f"torch.compile failed, the model runs eagerly: {self.fallback}", stacklevel=2)
        return self.model(*args, **kwargs)


def fast_model(model: VisionTransformer, compile: bool = True) -> VisionTransformer | CompiledModel:
    """The fast path of `model`, with its weights, in eval mode: a `VisionTransformer` with
    `attn_implementation="fast"` (one qkv Linear, fused attention, `FastLinear` layers), and with `compile` that
    model wrapped in `CompiledModel` (reach it as `.model`). `model` itself is not changed.

    Its outputs equal the teaching path's within 1e-4 in fp32 (`tests/test_fast_path.py`).
    """
    fast = VisionTransformer(replace(model.config, attn_implementation="fast"))
    fast.load_state_dict(model.state_dict())  # q, k, v stacked into qkv
    fast = fast.to(next(model.parameters()).device).eval()
    return CompiledModel(fast) if compile else fast
