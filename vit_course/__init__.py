"""vit_course: the reference implementations behind the Vision Transformer course.

Each module holds one idea and mirrors the Hugging Face class named in its docstring:
`patches`, `position`, `attention`, `block`, `vit`, and `hf` for moving weights.
"""

from .assets import ASSETS, asset_status
from .config import ViTConfig
from .cost import count_parameters, vit_forward_flops
from .dinov2 import load_dinov2, load_dinov2_processor
from .doctor import doctor
from .rollout import attention_rollout, cls_rollout_map
from .vit import VisionTransformer

__all__ = [
    "ASSETS",
    "ViTConfig",
    "VisionTransformer",
    "asset_status",
    "attention_rollout",
    "cls_rollout_map",
    "count_parameters",
    "doctor",
    "load_dinov2",
    "load_dinov2_processor",
    "vit_forward_flops",
]
__version__ = "0.1.0"
