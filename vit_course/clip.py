"""CLIP's training signal: match each image with its caption in a batch (Radford et al., 2021, Sec. 2.3, Fig. 3).

    I = normalise(image_embeds), T = normalise(text_embeds)       (B, E) each, unit length
    logits_per_image = exp(t) I T^T                                (B, B); t is learned, init ln(1/0.07)
    loss = (CE(logits_per_image, arange B) + CE(logits_per_text, arange B)) / 2

The loss is symmetric: each image must pick its caption among the batch's captions, and
each caption its image. The temperature is learned as a logarithm (`logit_scale`), so
the scale exp(t) stays positive. Mirrors `transformers.CLIPModel`'s `logits_per_image`,
`logits_per_text` and `loss` (`return_loss=True`) on its projected embeddings. Used by
notebook 10.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

LOGIT_SCALE_INIT = math.log(1 / 0.07)  # 2.6593, CLIP's initial temperature 0.07


def _check_pair(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> None:
    if image_embeds.ndim != 2 or text_embeds.ndim != 2 or image_embeds.shape[1] != text_embeds.shape[1]:
        raise ValueError(
            "expected image and text embeddings of shapes (B_images, E) and (B_texts, E) with one E, got "
            f"{tuple(image_embeds.shape)} and {tuple(text_embeds.shape)}"
        )


def clip_logits(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B_i, E), (B_t, E), log-scale -> logits_per_image (B_i, B_t), logits_per_text (B_t, B_i).

    Each entry is the cosine similarity of an image and a text, times exp(logit_scale).
    """
    _check_pair(image_embeds, text_embeds)
    image_embeds = image_embeds / image_embeds.norm(dim=-1, keepdim=True)  # unit length
    text_embeds = text_embeds / text_embeds.norm(dim=-1, keepdim=True)
    scale = torch.as_tensor(logit_scale, dtype=image_embeds.dtype).exp()
    logits_per_image = scale * image_embeds @ text_embeds.T  # (B_i, B_t)
    return logits_per_image, logits_per_image.T


def clip_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """The symmetric contrastive loss of a batch of B matching (image, text) pairs, row i with row i."""
    if image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"expected as many texts as images (pair i is image i with text i), got {image_embeds.shape[0]} images "
            f"and {text_embeds.shape[0]} texts"
        )
    logits_per_image, logits_per_text = clip_logits(image_embeds, text_embeds, logit_scale)
    targets = torch.arange(len(logits_per_image), device=logits_per_image.device)  # pair i is the right answer
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2
