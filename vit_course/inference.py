"""Inference by hand: what an image processor does to a photo, and reading the top k classes.

`preprocess(image, processor)` reproduces `ViTImageProcessor(image, return_tensors="pt")`
step by step (resize, rescale, normalise); `top_k(logits, k, id2label)` turns logits into
the k most likely labels with their probabilities. Notebook 05 asks learners to write
both; these are the reference answers its checks compare with.

Used by notebook 05.
"""

from __future__ import annotations

from typing import Any

import torch


def _get(processor, key: str):
    """A setting from a processor object or from its `to_dict()`."""
    return processor[key] if isinstance(processor, dict) else getattr(processor, key)


def preprocess(image: Any, processor: Any) -> torch.Tensor:
    """A PIL image -> pixel values (1, 3, H, W), as `processor(image, return_tensors="pt")`.

    `processor` is a `ViTImageProcessor` or its `to_dict()`.
    """
    import torchvision.transforms.v2.functional as tvF
    from torchvision.transforms import InterpolationMode

    size = _get(processor, "size")
    height, width = int(size["height"]), int(size["width"])
    pixels = tvF.pil_to_tensor(image.convert("RGB"))  # (3, h, w) uint8
    resample = int(_get(processor, "resample"))
    modes = {0: InterpolationMode.NEAREST, 2: InterpolationMode.BILINEAR, 3: InterpolationMode.BICUBIC}
    pixels = tvF.resize(pixels, [height, width], interpolation=modes[resample], antialias=True)  # (3, H, W)
    x = pixels.float() * float(_get(processor, "rescale_factor"))  # 0..255 -> 0..1
    mean = torch.tensor(_get(processor, "image_mean"), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(_get(processor, "image_std"), dtype=torch.float32).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)  # (1, 3, H, W)


def top_k(logits: torch.Tensor, k: int, id2label: dict[int, str]) -> list[list[tuple[str, float]]]:
    """Logits (B, C) -> for each image, the k most likely (label, probability), most likely first."""
    probs = logits.softmax(dim=-1)  # (B, C)
    values, indices = probs.topk(k, dim=-1)  # (B, k), sorted descending
    return [[(id2label[int(i)], float(p)) for p, i in zip(row_p, row_i)] for row_p, row_i in zip(values, indices)]
