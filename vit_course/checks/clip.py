"""Check for notebook 10's CLIP exercise: the symmetric contrastive loss.

`check_clip_loss(fn)` compares `fn(image_embeds (B, E), text_embeds (B, E), logit_scale)`
with `vit_course.clip.clip_loss` (pair i is image i with text i; `logit_scale` is the
log of the scale, a 0-d tensor). The embeddings are not unit length and not symmetric,
so a missing normalisation or a one-directional loss shows. The known mistakes sit below,
each beside its sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from vit_course.clip import LOGIT_SCALE_INIT, clip_loss

from .compare import CheckFailure, check, diagnose, fmt_num, learner_call, randn, shape_of, tensor_distance

# B, E, logit_scale, description
CASES = [
    (4, 8, LOGIT_SCALE_INIT, "a batch of 4 pairs, E=8, logit_scale=ln(1/0.07) (CLIP's initial value)"),
    (3, 5, 0.5, "3 pairs, E=5, logit_scale=0.5"),
    (6, 4, 0.0, "6 pairs, E=4, logit_scale=0 (a scale of exp(0) = 1)"),
    (2, 16, 4.6052, "2 pairs, E=16, logit_scale=ln(100), CLIP's cap"),
    (1, 3, 1.0, "a single pair: the only caption is the right one"),
]


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _mistakes(image, text, t):
    targets = torch.arange(len(image))
    i, tx = _normalise(image), _normalise(text)
    scale = torch.as_tensor(t).exp()
    per_image = scale * i @ tx.T

    def symmetric(a, b):  # the right loss on embeddings normalised some other way (or not at all)
        logits = scale * a @ b.T
        return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2

    return [
        ("only the image-to-text direction: CLIP averages the loss over both, "
         "(CE(logits_per_image, labels) + CE(logits_per_text, labels)) / 2",
         lambda: F.cross_entropy(per_image, targets)),
        ("only the text-to-image direction: CLIP averages the loss over both, "
         "(CE(logits_per_image, labels) + CE(logits_per_text, labels)) / 2",
         lambda: F.cross_entropy(per_image.T, targets)),
        ("the two directions are summed, not averaged: divide by 2",
         lambda: F.cross_entropy(per_image, targets) + F.cross_entropy(per_image.T, targets)),
        ("the temperature is not exponentiated: logit_scale is a logarithm, the logits are multiplied by "
         "logit_scale.exp()", lambda: clip_loss(image, text, torch.log(torch.as_tensor(t)))),
        ("the embeddings are not normalised: divide each row by its norm, so the logits are cosine similarities",
         lambda: symmetric(image, text)),
        ("the embeddings are normalised over the batch (dim=0), not over each vector (dim=-1)",
         lambda: symmetric(image / image.norm(dim=0, keepdim=True), text / text.norm(dim=0, keepdim=True))),
        ("the logits are divided by exp(logit_scale) instead of multiplied: the scale exp(t) sharpens the softmax",
         lambda: (F.cross_entropy(i @ tx.T / scale, targets) + F.cross_entropy(tx @ i.T / scale, targets)) / 2),
    ]


@check("clip_loss", reference="vit_course.clip:clip_loss")
def check_clip_loss(fn: Callable[..., Any]) -> str:
    """`fn(image_embeds (B, E), text_embeds (B, E), logit_scale) -> loss ()`: compare with `vit_course.clip.clip_loss`."""
    for seed, (B, E, t, case) in enumerate(CASES):
        image = randn(B, E, seed=400 + seed, std=2.0) + 0.5  # not unit length, not centred
        text = randn(B, E, seed=500 + seed, std=3.0)
        logit_scale = torch.tensor(float(t))
        expected = clip_loss(image, text, logit_scale)
        got = learner_call(fn, image.clone(), text.clone(), logit_scale.clone(), case=case)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.reshape(())
        if not isinstance(got, torch.Tensor) or got.ndim != 0:
            cause = None
            if isinstance(got, torch.Tensor) and got.shape in ((B,), (B, B)):
                cause = "the loss is not reduced to one number: cross_entropy averages over the batch by default"
            raise CheckFailure(f"your function should return a 0-d tensor (the loss), got {shape_of(got)}",
                               details=(f"on {case}",), cause=cause)
        if tensor_distance()(got, expected) < float("inf"):
            continue
        cause = diagnose(got, _mistakes(image, text, t), tensor_distance())
        raise CheckFailure(
            f"wrong loss for {B} pairs, E={E}, logit_scale={fmt_num(t)}",
            details=(f"on {case}", f"expected {fmt_num(expected)}, got {fmt_num(got)}"),
            cause=cause,
        )
    return (f"{len(CASES)} batches give the same loss as vit_course.clip.clip_loss "
            "(1 to 6 pairs, temperatures from exp(0) to 100)")


__all__ = ["check_clip_loss"]
