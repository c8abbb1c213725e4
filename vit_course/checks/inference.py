"""Checks for the inference exercises: preprocessing an image and reading the top k classes.

`check_preprocess(fn)` compares `fn(image, processor) -> (1, 3, H, W)` with what HF's
`ViTImageProcessor` returns (resize, rescale by 1/255, normalise). transformers 5
resizes with torchvision's antialiased bilinear; PIL's `Image.BILINEAR` gives the same
image up to one grey level in a few pixels, so the tolerance is one grey level.
`check_top_k(fn)` compares `fn(logits, k, id2label)` with `top_k`. The reference answers
are `vit_course.inference.preprocess` and `vit_course.inference.top_k`.

Used by notebook 05.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vit_course.inference import preprocess, top_k  # noqa: F401  (the references)

from .compare import (
    CheckFailure,
    LearnerError,
    check,
    describe_exception,
    fmt_num,
    fmt_shape,
    learner_call,
    randn,
    shape_of,
    tensor_problems,
)


# source (h, w), target (H, W), mean, std, description
PREPROCESS_CASES = [
    ((30, 50), (24, 40), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
     "a 50x30 (w x h) image resized to height 24, width 40, mean = std = 0.5"),
    ((60, 40), (32, 32), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
     "a 40x60 image resized to 32x32 with the ImageNet mean and std"),
    ((20, 20), (48, 36), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3),
     "a 20x20 image enlarged to height 48, width 36, per-channel mean and std"),
]
# a gray ("L") and an RGBA image, as PNG files give them: preprocess converts them to RGB first
MODE_CASES = [
    ((24, 16), (16, 16), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), "L", "a gray (mode 'L') 16x24 image, as a PNG scan gives it"),
    ((16, 16), (16, 16), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "RGBA", "an RGBA 16x16 image (a PNG with transparency)"),
]
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _image(h: int, w: int, seed: int, mode: str = "RGB"):
    from PIL import Image

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(noise).convert(mode)


def _processor(size, mean, std):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size[0], "width": size[1]}, image_mean=list(mean), image_std=list(std))


def _pil_pipeline(image, H, W, mean, std, resample=None, rescale=True, normalize_first=False, bgr=False):
    from PIL import Image

    image = image.convert("RGB")
    resized = image.resize((W, H), Image.BILINEAR if resample is None else resample)
    x = torch.from_numpy(np.array(resized, dtype=np.float32)).permute(2, 0, 1)  # (3, H, W)
    if bgr:
        x = x.flip(0)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    if normalize_first:
        x = (x - m) / s / 255.0
    else:
        x = ((x / 255.0 if rescale else x) - m) / s
    return x.unsqueeze(0)


def _interpolate(image, H, W, mean, std, mode: str, antialias: bool):
    from torch.nn import functional as F

    x = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(H, W), mode=mode, antialias=antialias, align_corners=False if mode != "nearest" else None)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    return (x / 255.0 - m) / s


def _preprocess_mistakes(image, H, W, mean, std):
    from PIL import Image

    interpolation = (
        "the image is resized with another interpolation: the processor uses resample=BILINEAR with antialiasing, "
        "image.resize((width, height), Image.BILINEAR)"
    )
    return [
        ("the pixels are not rescaled from 0..255 to 0..1: multiply by rescale_factor (1/255) before normalising",
         lambda: _pil_pipeline(image, H, W, mean, std, rescale=False)),
        ("normalised before rescaling: first x / 255, then (x - mean) / std",
         lambda: _pil_pipeline(image, H, W, mean, std, normalize_first=True)),
        ("the channels are reversed (BGR): keep PIL's RGB order", lambda: _pil_pipeline(image, H, W, mean, std, bgr=True)),
        (interpolation, lambda: _pil_pipeline(image, H, W, mean, std, resample=Image.NEAREST)),
        ("the mean and std are hard-coded to ImageNet's: read them from the processor, processor.image_mean "
         "and processor.image_std", lambda: _pil_pipeline(image, H, W, *IMAGENET)),
        ("the mean and std are hard-coded to 0.5: read them from the processor, processor.image_mean "
         "and processor.image_std", lambda: _pil_pipeline(image, H, W, (0.5,) * 3, (0.5,) * 3)),
        ("one mean and std for all channels (image_mean[0], image_std[0]): each channel has its own, "
         "mean.view(3, 1, 1) and std.view(3, 1, 1)", lambda: _pil_pipeline(image, H, W, (mean[0],) * 3, (std[0],) * 3)),
        ("the mean and std are applied to the wrong channels (reversed): channel c uses image_mean[c], "
         "shaped (3, 1, 1) to broadcast over (3, H, W)", lambda: _pil_pipeline(image, H, W, mean[::-1], std[::-1])),
        ("mean and std are swapped: (x - mean) / std", lambda: _pil_pipeline(image, H, W, std, mean)),
        (interpolation, lambda: _pil_pipeline(image, H, W, mean, std, resample=Image.BICUBIC)),
        (interpolation, lambda: _interpolate(image, H, W, mean, std, "bilinear", antialias=False)),
        (interpolation, lambda: _interpolate(image, H, W, mean, std, "nearest", antialias=False)),
        (interpolation, lambda: _interpolate(image, H, W, mean, std, "bicubic", antialias=False)),
    ]


def _preprocess_shape_cause(shape, H, W) -> str | None:
    if shape == (3, H, W):
        return "the batch dimension is missing: add it with .unsqueeze(0)"
    if shape == (1, H, W, 3) or shape == (H, W, 3):
        return "the channels are last (H, W, 3), as numpy and PIL keep them: permute(2, 0, 1) to (3, H, W)"
    if shape in ((1, 3, W, H), (3, W, H)) and H != W:
        return "height and width are swapped: PIL's image.resize takes (width, height)"
    return None


@check("preprocess", reference="vit_course.inference:preprocess")
def check_preprocess(fn: Callable[..., Any], pass_as: str = "processor") -> str:
    """`fn(image, processor) -> (1, 3, H, W)`: compare with HF's `ViTImageProcessor`.

    `pass_as="dict"` hands `fn` the processor's `to_dict()` instead of the processor.
    """
    cases = [(*c[:4], "RGB", c[4]) for c in PREPROCESS_CASES] + MODE_CASES
    for seed, ((h, w), (H, W), mean, std, mode, case) in enumerate(cases):
        image = _image(h, w, seed, mode)
        processor = _processor((H, W), mean, std)
        # the processor itself needs RGB (the exercise converts): gray and RGBA are compared with their RGB
        expected = processor(image.convert("RGB"), return_tensors="pt")["pixel_values"]  # (1, 3, H, W)
        given = processor.to_dict() if pass_as == "dict" else processor
        try:
            got = learner_call(fn, image.copy(), given, case=case, names=("image", "processor"))
        except LearnerError as e:
            if mode == "RGB" or isinstance(e.error, NotImplementedError):
                raise
            raise CheckFailure(  # RGB images passed: the mode is what breaks it
                f"your code raised {describe_exception(e.error)}",
                details=(f"on {case}",),
                cause=f"a mode {mode!r} image has {len(image.getbands())} channel(s): image.convert('RGB') first",
            ) from None
        # one grey level, in normalised units, for the channel with the smallest std
        atol = 1.05 / (255.0 * min(std))
        problems = tensor_problems("pixel values", got, expected, atol=atol, rtol=0.0)
        if not problems:
            continue
        cause = None
        if isinstance(got, torch.Tensor) and tuple(got.shape) != tuple(expected.shape):
            cause = _preprocess_shape_cause(tuple(got.shape), H, W)
            if cause is None and mode != "RGB" and got.ndim >= 3 and got.shape[-3] in (1, 4):
                cause = (f"a mode {mode!r} image keeps {got.shape[-3]} channel(s): convert it first, "
                         "image.convert('RGB'), so the model gets 3 channels")
        if cause is None:
            from .compare import diagnose, tensor_distance

            cause = diagnose(got, _preprocess_mistakes(image, H, W, mean, std), tensor_distance(atol=atol, rtol=0.0))
        if cause is None and isinstance(got, torch.Tensor) and got.shape == expected.shape:
            if abs(float(got.float().mean() - expected.mean())) < 0.05:
                cause = (
                    "rescaling and normalising look right, so the resize differs: the processor resizes to "
                    "(height, width) with antialiased bilinear interpolation"
                )
        raise CheckFailure(
            f"wrong pixel values for a {w}x{h} image and a processor of size {H}x{W} (height x width)",
            details=(f"on {case}", *problems),
            cause=cause,
        )
    return (f"{len(cases)} images match ViTImageProcessor's pixel_values to within one grey level "
            "(RGB, gray and RGBA)")


LABELS = ["cat", "dog", "bird", "fish", "horse", "sheep", "cow", "frog", "deer", "truck"]

# B, C, k, description
TOP_K_CASES = [
    (2, 10, 3, "logits of shape (2, 10), k=3"),
    (1, 5, 1, "logits of shape (1, 5), k=1"),
    (3, 4, 4, "logits of shape (3, 4), k=4 (every class)"),
]


def _top_k_variant(logits, k, id2label, transform="softmax", ascending=False, offset=0, class_order=False):
    scores = {
        "softmax": lambda t: t.softmax(-1),
        "none": lambda t: t,
        "sigmoid": torch.sigmoid,
        "log_softmax": lambda t: t.log_softmax(-1),
        "batch": lambda t: t.softmax(0),
    }[transform](logits)
    values, indices = scores.topk(k, dim=-1, largest=not ascending)
    if class_order:  # the right k classes, listed by class index (topk(sorted=False), or a sort of the indices)
        indices, order = indices.sort(dim=-1)
        values = values.gather(-1, order)
    return [[(id2label.get(int(i) + offset, "?"), float(p)) for p, i in zip(rv, ri)] for rv, ri in zip(values, indices)]


def _top_k_problem(got, expected) -> str | None:
    """What is wrong with `got` (a list of lists of (label, prob)), or None when it matches."""
    if not isinstance(got, (list, tuple)):
        return f"expected a list of {len(expected)} lists of (label, probability) pairs, got {shape_of(got)}"
    if len(got) != len(expected):
        return f"expected one list per image ({len(expected)}), got {len(got)}"
    for b, (row, want) in enumerate(zip(got, expected)):
        if not isinstance(row, (list, tuple)) or len(row) != len(want):
            length = len(row) if isinstance(row, (list, tuple)) else shape_of(row)
            return f"image {b}: expected a list of k={len(want)} (label, probability) pairs, got {length}"
        for j, (pair, (label, prob)) in enumerate(zip(row, want)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return f"image {b}, rank {j}: expected a (label, probability) pair, got {shape_of(pair)}"
            got_label, got_prob = pair
            try:
                got_prob = float(got_prob)
            except (TypeError, ValueError):
                return f"image {b}, rank {j}: the probability should be a number, got {shape_of(got_prob)}"
            if got_label != label:
                return f"image {b}, rank {j}: expected label {label!r}, got {got_label!r}"
            if not math.isclose(got_prob, prob, abs_tol=1e-5, rel_tol=1e-5):
                return f"image {b}, rank {j} ({label!r}): expected probability {fmt_num(prob)}, got {fmt_num(got_prob)}"
    return None


@check("top_k", reference="vit_course.inference:top_k")
def check_top_k(fn: Callable[..., Any]) -> str:
    """`fn(logits (B, C), k, id2label) -> [[(label, prob), ...] per image]`: compare with `top_k`."""
    for seed, (B, C, k, case) in enumerate(TOP_K_CASES):
        logits = randn(B, C, seed=900 + seed, std=2.0)
        id2label = {i: LABELS[i] for i in range(C)}
        expected = top_k(logits, k, id2label)
        got = learner_call(fn, logits.clone(), k, dict(id2label), case=case, names=("logits", "k", "id2label"))
        problem = _top_k_problem(got, expected)
        if problem is None:
            continue
        variants = [
            ("the softmax is missing: the probabilities are logits.softmax(dim=-1)", dict(transform="none")),
            ("sorted from least to most likely: take the largest first, topk(k) or sort(descending=True)", dict(ascending=True)),
            ("labels are off by one: the label of class index i is id2label[i]", dict(offset=1)),
            ("labels are off by one: the label of class index i is id2label[i]", dict(offset=-1)),
            ("sigmoid instead of softmax: the classes compete, so use logits.softmax(dim=-1)", dict(transform="sigmoid")),
            ("log-probabilities instead of probabilities: use softmax, not log_softmax", dict(transform="log_softmax")),
            ("the softmax runs over the batch (dim=0): use softmax(dim=-1), over the classes", dict(transform="batch")),
            ("the right k classes, but listed in class order: list them most likely first, "
             "topk(k) (sorted=True, its default) or sort by probability", dict(class_order=True)),
        ]
        cause = None
        for text, kw in variants:
            if _top_k_problem(got, _top_k_variant(logits, k, id2label, **kw)) is None:
                cause = text
                break
        if cause is None and isinstance(got, (list, tuple)) and len(got) == B and all(
            isinstance(r, (list, tuple)) and len(r) == k + 1 for r in got
        ):
            cause = f"k + 1 = {k + 1} classes are returned per image, expected k = {k}"
        raise CheckFailure(
            f"wrong top-{k} for logits of shape {fmt_shape((B, C))}",
            details=(f"on {case}", problem),
            cause=cause,
        )
    return f"{len(TOP_K_CASES)} cases match: labels in order and probabilities from the softmax"
