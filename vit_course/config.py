"""The hyperparameters of a Vision Transformer (Dosovitskiy et al., 2021, Table 1).

`ViTConfig` mirrors `transformers.ViTConfig`: the same field names and the same defaults
(ViT-B/16 at 224), so a config moves between the two without renaming. Two defaults
differ from other libraries and matter for exact parity: `layer_norm_eps=1e-12` (timm
uses 1e-6, `nn.LayerNorm` 1e-5) and `hidden_act="gelu"`, the exact erf GELU.

Used by notebooks 01, 03, 04 and 08.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

from .validation import integer, number

if TYPE_CHECKING:
    import transformers

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "fast")  # "fast": one fused qkv Linear + sdpa


def to_2tuple(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """`224` -> `(224, 224)`; `(224, 160)` stays as it is (height, width)."""
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


@dataclass
class ViTConfig:
    hidden_size: int = 768  # D, the width of every token
    num_hidden_layers: int = 12  # L, transformer blocks
    num_attention_heads: int = 12  # heads; D must divide evenly among them
    intermediate_size: int = 3072  # MLP width, 4 * D in the paper
    hidden_act: str = "gelu"  # exact erf GELU, as HF; "gelu_new" is the tanh approximation
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02  # std of the truncated normal init
    layer_norm_eps: float = 1e-12  # HF's value, not nn.LayerNorm's 1e-5
    image_size: int | tuple[int, int] = 224  # (height, width) or one int for a square
    patch_size: int = 16  # P
    num_channels: int = 3  # C
    qkv_bias: bool = True
    num_labels: int = 0  # 0: no head, the model returns CLS features
    id2label: dict[int, str] | None = field(default=None, compare=False)
    attn_implementation: str = "eager"  # "eager" teaches and returns weights; "sdpa" is fused

    def __post_init__(self) -> None:
        self._validate_fields()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_attention_heads: expected a multiple of "
                f"{self.num_attention_heads}, got hidden_size={self.hidden_size}"
            )
        if not isinstance(self.image_size, int):
            self.image_size = to_2tuple(self.image_size)
        height, width = to_2tuple(self.image_size)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"image_size must be divisible by patch_size={self.patch_size}: "
                f"got image_size={height}x{width}"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {ACTIVATIONS}, got {self.hidden_act!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise ValueError(
                f"attn_implementation must be one of {ATTN_IMPLEMENTATIONS}, got {self.attn_implementation!r}"
            )
        if self.id2label is not None:
            try:
                self.id2label = {int(k): v for k, v in self.id2label.items()}
            except (TypeError, ValueError):
                raise ValueError(
                    f"id2label must map class indices (int, or digit strings as in a config.json) to names, "
                    f"got keys {list(self.id2label)}"
                ) from None
            if self.num_labels and sorted(self.id2label) != list(range(self.num_labels)):
                raise ValueError(
                    f"id2label must name the classes 0..{self.num_labels - 1} (num_labels={self.num_labels}), "
                    f"got keys {sorted(self.id2label)}"
                )

    def _validate_fields(self) -> None:
        """Every field's type and range, before anything divides by it."""
        for name in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "patch_size", "num_channels"):
            integer(getattr(self, name), name, minimum=1)
        integer(self.num_labels, "num_labels", minimum=0)
        sizes = self.image_size if isinstance(self.image_size, (list, tuple)) else [self.image_size]
        if len(sizes) != (2 if isinstance(self.image_size, (list, tuple)) else 1):
            raise ValueError(f"image_size must be an int or (height, width), got {self.image_size!r}")
        for size in sizes:
            integer(size, "image_size", minimum=1)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            number(getattr(self, name), name, low=0.0, high=1.0, high_open=True)
        number(self.initializer_range, "initializer_range", low=0.0)
        number(self.layer_norm_eps, "layer_norm_eps", low=0.0, low_open=True)
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"qkv_bias must be True or False, got {self.qkv_bias!r}")
        if self.id2label is not None and not isinstance(self.id2label, dict):
            raise ValueError(f"id2label must be a dict {{class index: name}} or None, got {type(self.id2label).__name__}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along (height, width)."""
        height, width = to_2tuple(self.image_size)
        return (height // self.patch_size, width // self.patch_size)

    @property
    def num_patches(self) -> int:
        """N = H W / P^2."""
        rows, cols = self.grid_size
        return rows * cols

    @classmethod
    def from_hf(cls, hf_config: transformers.ViTConfig, num_labels: int | None = None) -> "ViTConfig":
        """From a `transformers.ViTConfig`; `num_labels=None` takes the HF config's own."""
        if getattr(hf_config, "model_type", "vit") != "vit":
            raise ValueError(f"expected a ViT config (model_type 'vit'), got model_type {hf_config.model_type!r}")
        ours = {f.name for f in fields(cls)} - {"num_labels", "id2label", "attn_implementation"}
        kwargs = {name: getattr(hf_config, name) for name in ours}
        kwargs["num_labels"] = hf_config.num_labels if num_labels is None else num_labels
        if kwargs["num_labels"]:
            kwargs["id2label"] = dict(hf_config.id2label)
        return cls(**kwargs)

    def to_hf(self) -> transformers.ViTConfig:
        """A `transformers.ViTConfig` with the same values."""
        import transformers

        kwargs = {k: v for k, v in asdict(self).items() if k not in ("num_labels", "id2label", "attn_implementation")}
        if self.num_labels:
            id2label = self.id2label or {i: f"LABEL_{i}" for i in range(self.num_labels)}
            kwargs["id2label"] = id2label
            kwargs["label2id"] = {v: k for k, v in id2label.items()}
        return transformers.ViTConfig(**kwargs)
