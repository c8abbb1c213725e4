"""vit_course: the reference implementations behind the Vision Transformer course.

Each module holds one idea and mirrors the Hugging Face class named in its docstring:
`patches`, `position`, `attention`, `block`, `vit`, and `hf` for moving weights.
"""

from .config import ViTConfig
from .vit import VisionTransformer

__all__ = ["ViTConfig", "VisionTransformer"]
__version__ = "0.1.0"
