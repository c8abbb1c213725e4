"""Swin Transformer: attention inside local windows, shifted every other block (Liu et al., 2021).

    tokens: a (H, W) grid of P x P patches, C channels        patch_embed (conv + LayerNorm)
    per stage: blocks alternating W-MSA and SW-MSA            Sec. 3.2, Fig. 2
        W-MSA: attention only inside each M x M window        window_partition / window_reverse
        SW-MSA: the grid rolled by M/2 first, then masked     shifted_window_mask
        attention gets a learned bias B[dy, dx] per head      relative_position_index, Eq. 4
    between stages: 2x2 patch merging, C -> 2C, H -> H/2      PatchMerging, Sec. 3.1

Mirrors HF's `SwinModel` (and `SwinForImageClassification` with a head): the same
padding to a multiple of the window, the same -100 mask value, the same order of the four
merged patches, no shift when a stage's grid is a single window.
`shifted_window_mask` is written as the paper's code writes it (nine slices); HF computes
the same mask arithmetically. Used by notebook 09.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

from .block import activation
from .config import to_2tuple
from .patches import check_images
from .paths import check_model_folder
from .state_dict import check_state_dict, renamed_state_dict

if TYPE_CHECKING:
    import transformers

MASK_VALUE = -100.0  # HF's and the paper's: large enough that softmax gives ~0 weight


@dataclass
class SwinConfig:
    image_size: int | tuple[int, int] = 224
    patch_size: int = 4  # P: the first tokens are P x P patches
    num_channels: int = 3
    embed_dim: int = 96  # C of stage 1; doubled by every patch merging
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])  # blocks per stage (Swin-T)
    num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])  # heads per stage, head dim 32
    window_size: int = 7  # M: attention inside M x M windows
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    drop_path_rate: float = 0.0  # HF's default is 0.1; stochastic depth only acts in training
    hidden_act: str = "gelu"
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-5  # Swin's LayerNorms keep nn.LayerNorm's eps
    num_labels: int = 0  # 0: no head, the model returns pooled features

    def __post_init__(self) -> None:
        self.depths, self.num_heads = list(self.depths), list(self.num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"expected one head count per stage: {len(self.depths)} depths, got {len(self.num_heads)} num_heads")
        for stage, heads in enumerate(self.num_heads):
            dim = self.embed_dim * 2**stage
            if dim % heads:
                raise ValueError(f"stage {stage}: width {dim} must be divisible by num_heads, got {heads} heads")
        if not isinstance(self.image_size, int):
            self.image_size = to_2tuple(self.image_size)
        height, width = to_2tuple(self.image_size)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(f"image_size must be divisible by patch_size={self.patch_size}: got {height}x{width}")

    @property
    def grid_size(self) -> tuple[int, int]:
        height, width = to_2tuple(self.image_size)
        return (height // self.patch_size, width // self.patch_size)

    @property
    def num_features(self) -> int:
        """Channels after the last stage: C * 2^(stages - 1)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @classmethod
    def from_hf(cls, hf_config: transformers.SwinConfig) -> "SwinConfig":
        if getattr(hf_config, "model_type", None) != "swin":
            raise ValueError(f"expected a Swin config (model_type 'swin'), got model_type {getattr(hf_config, 'model_type', None)!r}")
        names = [n for n in cls.__dataclass_fields__ if n != "num_labels"]
        return cls(**{n: getattr(hf_config, n) for n in names}, num_labels=0)

    def to_hf(self, num_labels: int = 0) -> transformers.SwinConfig:
        import transformers

        kwargs = {k: v for k, v in asdict(self).items() if k != "num_labels"}
        return transformers.SwinConfig(**kwargs, use_absolute_embeddings=False, num_labels=max(num_labels, 1))


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/M * W/M, M, M, C): windows in row-major order, image by image."""
    if x.ndim != 4:
        raise ValueError(f"expected a feature map of rank 4 (B, H, W, C), got shape {tuple(x.shape)}")
    B, H, W, C = x.shape
    M = window_size
    if H % M or W % M:
        raise ValueError(f"expected height and width divisible by the window size {M}, got {H}x{W}")
    x = x.reshape(B, H // M, M, W // M, M, C)  # (B, rows, M, cols, M, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, rows, cols, M, M, C)
    return x.reshape(-1, M, M, C)  # (B * rows * cols, M, M, C)


def window_reverse(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """(B * H/M * W/M, M, M, C) -> (B, H, W, C), the inverse of `window_partition`."""
    M = window_size
    if height % M or width % M:
        raise ValueError(f"expected height and width divisible by the window size {M}, got {height}x{width}")
    per_image = (height // M) * (width // M)
    if windows.ndim != 4 or windows.shape[1:3] != (M, M) or windows.shape[0] % per_image:
        raise ValueError(
            f"expected windows of shape (B * {per_image}, {M}, {M}, C) for a {height}x{width} map, "
            f"got {tuple(windows.shape)}"
        )
    C = windows.shape[-1]
    x = windows.reshape(-1, height // M, width // M, M, M, C)  # (B, rows, cols, M, M, C)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, rows, M, cols, M, C)
    return x.reshape(-1, height, width, C)


def shifted_window_mask(height: int, width: int, window_size: int, shift_size: int) -> torch.Tensor:
    """(num_windows, M*M, M*M): 0 where two tokens of a window may attend, -100 where not.

    After rolling the grid by -shift, a window at the bottom or right edge holds tokens
    from opposite sides of the image. Label the grid in 3 x 3 regions (the last window
    and the last `shift` rows and columns split off), then forbid attention across labels.
    """
    M, s = window_size, shift_size
    if height % M or width % M:
        raise ValueError(f"expected height and width divisible by the window size {M}, got {height}x{width}")
    if not 0 < s < M:
        raise ValueError(f"expected 0 < shift_size < window_size={M}, got shift_size={s}")
    labels = torch.zeros(1, height, width, 1)  # (1, H, W, 1)
    region = 0
    for rows in (slice(0, -M), slice(-M, -s), slice(-s, None)):
        for cols in (slice(0, -M), slice(-M, -s), slice(-s, None)):
            labels[:, rows, cols, :] = region
            region += 1
    windows = window_partition(labels, M).reshape(-1, M * M)  # (nW, M*M)
    same = windows[:, None, :] == windows[:, :, None]  # (nW, M*M, M*M): query row, key column
    return torch.zeros(same.shape).masked_fill(~same, MASK_VALUE)


def relative_position_index(window_size: int) -> torch.Tensor:
    """(M*M, M*M): for tokens i, j of a window, the row of the bias table for their offset.

    Offsets (dy, dx) run over -(M-1)..M-1; shifted to 0..2M-2 and flattened row-major,
    they index a table of (2M-1)^2 rows.
    """
    M = window_size
    coords = torch.stack(torch.meshgrid(torch.arange(M), torch.arange(M), indexing="ij")).flatten(1)  # (2, M*M)
    offsets = coords[:, :, None] - coords[:, None, :]  # (2, M*M, M*M): (dy, dx) of i relative to j
    dy, dx = offsets[0] + M - 1, offsets[1] + M - 1  # 0 .. 2M-2
    return dy * (2 * M - 1) + dx


class WindowAttention(nn.Module):
    """Multi-head attention inside a window, plus a learned relative position bias (Eq. 4).

        Attention(Q, K, V) = softmax(Q K^T / sqrt(d) + B + mask) V
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, qkv_bias: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.window_size = window_size
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.o_proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """(heads, M*M, M*M): one learned number per head and offset."""
        bias = self.relative_position_bias_table[self.relative_position_index]  # (M*M, M*M, heads)
        return bias.permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B*nW, M*M, C), mask (nW, M*M, M*M) or None -> out (B*nW, M*M, C), weights (B*nW, h, M*M, M*M)."""
        Bw, N, C = x.shape
        q, k, v = (proj(x).reshape(Bw, N, self.num_heads, self.head_dim).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B*nW, h, N, d) each
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B*nW, h, N, N)
        scores = scores + self.relative_position_bias()[None]
        if mask is not None:
            nW = mask.shape[0]
            scores = scores.reshape(Bw // nW, nW, self.num_heads, N, N) + mask[None, :, None]
            scores = scores.reshape(Bw, self.num_heads, N, N)
        weights = scores.softmax(dim=-1)
        out = F.dropout(weights, self.dropout, self.training) @ v  # (B*nW, h, N, d)
        return self.o_proj(out.transpose(1, 2).reshape(Bw, N, C)), weights


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole residual branch with probability p (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(x.shape[0], *([1] * (x.ndim - 1)), device=x.device).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class SwinBlock(nn.Module):
    """A pre-norm block whose attention works in (shifted) windows, as HF's `SwinLayer`."""

    def __init__(self, config: SwinConfig, dim: int, num_heads: int, resolution: tuple[int, int],
                 shift_size: int, drop_path: float = 0.0) -> None:
        super().__init__()
        window_size = config.window_size
        if min(resolution) < window_size:  # HF's SwinModel fails here too (its bias table keeps M)
            raise ValueError(
                f"a stage's grid of {resolution[0]}x{resolution[1]} tokens is smaller than the window {window_size}: "
                "use a smaller window_size, fewer stages or larger images"
            )
        if min(resolution) == window_size:  # one window covers the grid: nothing to shift
            window_size, shift_size = min(resolution), 0
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = WindowAttention(dim, num_heads, window_size, config.qkv_bias, config.attention_probs_dropout_prob)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        hidden = int(config.mlp_ratio * dim)
        self.mlp = nn.Sequential()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.act = activation(config.hidden_act)
        self.mlp.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        """x (B, H*W, C) -> (B, H*W, C)."""
        H, W = resolution
        B, _, C = x.shape
        M, s = self.window_size, self.shift_size
        shortcut = x
        x = self.norm1(x).reshape(B, H, W, C)
        pad_h, pad_w = (M - H % M) % M, (M - W % M) % M  # zeros at the bottom and right, as HF
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))  # (B, Hp, Wp, C)
        Hp, Wp = H + pad_h, W + pad_w
        mask = None
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))  # move the top-left corner to the bottom-right
            mask = shifted_window_mask(Hp, Wp, M, s).to(x)
        windows = window_partition(x, M).reshape(-1, M * M, C)  # (B*nW, M*M, C)
        attended, _ = self.attn(windows, mask)
        x = window_reverse(self.drop(attended).reshape(-1, M, M, C), M, Hp, Wp)  # (B, Hp, Wp, C)
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        x = x[:, :H, :W].reshape(B, H * W, C)
        x = shortcut + self.drop_path(x)
        return x + self.drop(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, H*W, C) -> (B, H/2 * W/2, 2C): each 2x2 group concatenated (4C), normed, projected."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)  # nn.LayerNorm's eps, as HF
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, resolution: tuple[int, int]) -> torch.Tensor:
        H, W = resolution
        B, N, C = x.shape
        if N != H * W:
            raise ValueError(f"expected {H}*{W}={H * W} tokens for a {H}x{W} grid, got {N}")
        x = F.pad(x.reshape(B, H, W, C), (0, 0, 0, W % 2, 0, H % 2))  # an odd side gets a zero row or column
        # top-left, bottom-left, top-right, bottom-right: the order of the paper's code and HF's
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.reshape(B, -1, 4 * C)))  # (B, H/2 * W/2, 2C)


class SwinStage(nn.Module):
    def __init__(self, config: SwinConfig, stage: int, resolution: tuple[int, int], drop_paths: list[float]) -> None:
        super().__init__()
        dim = config.embed_dim * 2**stage
        heads = config.num_heads[stage]
        self.blocks = nn.ModuleList(
            SwinBlock(config, dim, heads, resolution, shift_size=0 if i % 2 == 0 else config.window_size // 2,
                      drop_path=drop_paths[i])
            for i in range(config.depths[stage])
        )
        self.downsample = PatchMerging(dim) if stage < len(config.depths) - 1 else nn.Identity()


class SwinTransformer(nn.Module):
    """Swin with HF's `SwinModel` outputs; `num_labels > 0` adds the classifier of
    `SwinForImageClassification` on the mean-pooled last stage.

    Args:
        config: the hyperparameters (`SwinConfig`, the field names of `transformers.SwinConfig`).
    """

    def __init__(self, config: SwinConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(config.num_channels, config.embed_dim, config.patch_size, config.patch_size)
        self.patch_embed.norm = nn.LayerNorm(config.embed_dim)  # nn.LayerNorm's eps, as HF
        self.pos_drop = nn.Dropout(config.hidden_dropout_prob)
        total = sum(config.depths)
        rates = [config.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # grows with depth
        rows, cols = config.grid_size
        self.stages = nn.ModuleList()
        for stage, depth in enumerate(config.depths):
            start = sum(config.depths[:stage])
            self.stages.append(SwinStage(config, stage, (rows, cols), rates[start:start + depth]))
            rows, cols = (rows + 1) // 2, (cols + 1) // 2
        self.norm = nn.LayerNorm(config.num_features, eps=config.layer_norm_eps)
        self.head = nn.Linear(config.num_features, config.num_labels) if config.num_labels else nn.Identity()
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=config.initializer_range)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """HF's `hidden_states`: the embeddings, then each stage's output after its merging,
        each (B, tokens, channels)."""
        config = self.config
        check_images(pixel_values, config.patch_size, config.num_channels)
        x = self.patch_embed.proj(pixel_values)  # (B, C, rows, cols)
        resolution = tuple(x.shape[2:])
        x = self.pos_drop(self.patch_embed.norm(x.flatten(2).transpose(1, 2)))  # (B, rows*cols, C)
        states = [x]
        for stage in self.stages:
            for block in stage.blocks:
                x = block(x, resolution)
            if isinstance(stage.downsample, PatchMerging):
                x = stage.downsample(x, resolution)
                resolution = ((resolution[0] + 1) // 2, (resolution[1] + 1) // 2)
            states.append(x)
        return states

    def forward_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, tokens of the last stage, num_features): HF's `last_hidden_state`."""
        return self.norm(self.hidden_states(pixel_values)[-1])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels), or the pooled features (B, num_features) without a head."""
        return self.head(self.forward_features(pixel_values).mean(dim=1))

    @classmethod
    def from_hf(cls, source: str | Path | transformers.PreTrainedModel) -> "SwinTransformer":
        """From a `transformers.SwinModel` or `SwinForImageClassification`, or its `save_pretrained` directory."""
        import transformers

        if isinstance(source, (str, Path)):
            check_model_folder(source)  # as shipped, config parsed, weights readable and finite
            config = transformers.AutoConfig.from_pretrained(source)
            is_classifier = any(a.endswith("ForImageClassification") for a in (config.architectures or []))
            kind = transformers.SwinForImageClassification if is_classifier else transformers.SwinModel
            source = kind.from_pretrained(source)
        if not isinstance(source, (transformers.SwinModel, transformers.SwinForImageClassification)):
            raise ValueError(f"expected a transformers SwinModel or SwinForImageClassification, got {type(source).__name__}")
        if source.config.use_absolute_embeddings:
            raise ValueError("expected a Swin without absolute position embeddings (use_absolute_embeddings=False), got True")
        config = SwinConfig.from_hf(source.config)
        if isinstance(source, transformers.SwinForImageClassification):
            config.num_labels = source.config.num_labels
        model = cls(config)
        model.load_state_dict(from_hf_state_dict(source.state_dict(), model))
        return model.eval()

    def to_hf(self) -> transformers.PreTrainedModel:
        """`SwinForImageClassification` with a head, else `SwinModel`; the same weights, in eval mode."""
        import transformers

        if self.config.num_labels:
            hf_model = transformers.SwinForImageClassification(self.config.to_hf(self.config.num_labels))
        else:
            hf_model = transformers.SwinModel(self.config.to_hf())
        prefix = "swin." if self.config.num_labels else ""
        state_dict = {hf_name(k, prefix): v for k, v in self.state_dict().items()}
        check_state_dict(hf_model.state_dict(), state_dict, source="converted Swin state dict")
        hf_model.load_state_dict(state_dict)
        return hf_model.eval()


# ours -> HF's in-memory names (transformers >= 5.9); tried in order, the first match wins
NAME_TABLE = [
    (r"^patch_embed\.proj\.", "embeddings.patch_embeddings.projection."),
    (r"^patch_embed\.norm\.", "embeddings.norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$",
     r"encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn\.", r"encoder.layers.\1.blocks.\2.attention."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.blocks.\2.mlp."),
    (r"^stages\.(\d+)\.downsample\.", r"encoder.layers.\1.downsample."),
    (r"^norm\.", "layernorm."),
]


def hf_name(key: str, prefix: str = "") -> str:
    """Our Swin parameter name -> HF's, e.g. `stages.0.blocks.1.attn.q_proj.weight` ->
    `encoder.layers.0.blocks.1.attention.q_proj.weight` (`swin.` in front for a classifier)."""
    if key.startswith("head."):
        return "classifier." + key.removeprefix("head.")
    for pattern, replacement in NAME_TABLE:
        if re.match(pattern, key):
            return prefix + re.sub(pattern, replacement, key)
    raise ValueError(f"no HF name for Swin parameter {key!r}")


def from_hf_state_dict(hf_state_dict: dict, model: SwinTransformer) -> dict:
    """HF's Swin state dict (in-memory names) -> ours, every key and shape checked."""
    prefix = "swin." if any(k.startswith("swin.") for k in hf_state_dict) else ""
    given = {k: v for k, v in hf_state_dict.items() if not k.endswith("relative_position_index")}
    return renamed_state_dict(given, model.state_dict(), lambda ours: hf_name(ours, prefix),
                              source="HF Swin state dict")
