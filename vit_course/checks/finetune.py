"""Checks for the fine-tuning exercises: linear probing and layer-wise learning rates.

Both run on a tiny random `transformers.ViTForImageClassification` (no download).
The reference answers are `vit_course.finetune.freeze_backbone` and
`vit_course.finetune.layerwise_lr_groups`.

Layer ids follow BEiT and timm's layer decay: the embeddings are layer 0, encoder layer
i is layer i + 1, and everything after the encoder (the final LayerNorm, the classifier)
is layer L + 1. A parameter of layer id j trains with

    lr = base_lr * decay ** (L + 1 - j)

so the classifier gets base_lr and the patch embedding the smallest rate.

Used by notebook 06.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from vit_course.finetune import HEAD_PREFIXES, freeze_backbone, layer_id, layerwise_lr_groups  # noqa: F401

from .compare import CheckFailure, check, fmt_num, learner_call

if TYPE_CHECKING:
    from transformers import ViTForImageClassification


def tiny_vit_classifier(num_hidden_layers: int = 2, num_labels: int = 5,
                        seed: int = 0) -> ViTForImageClassification:
    """A small random `transformers.ViTForImageClassification`, the same on every call."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        num_labels=num_labels,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ViTForImageClassification(config)


def _names(names: list[str], limit: int = 4) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


@check("freeze_backbone", reference="vit_course.finetune:freeze_backbone")
def check_freeze_backbone(fn: Callable[..., Any]) -> str:
    """`fn(model)` on an HF `ViTForImageClassification`: only `classifier.*` stays trainable."""
    for layers in (2, 3):
        model = tiny_vit_classifier(num_hidden_layers=layers)
        case = f"a ViTForImageClassification with {layers} layers"
        returned = learner_call(fn, model, case=case, names=("model",), grad=True)  # grad: a leaked no_grad shows
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        head = [n for n, _ in model.named_parameters() if n.startswith("classifier.")]
        frozen_head = [n for n in head if n not in trainable]
        still_trainable = [n for n in trainable if not n.startswith("classifier.")]
        if not frozen_head and not still_trainable:
            if returned is not model:
                raise CheckFailure(
                    f"the right parameters are frozen, but your function returned "
                    f"{'None' if returned is None else 'a ' + type(returned).__name__}, expected the model it was given",
                    details=(f"on {case}",),
                    cause="return model at the end, so that freeze_backbone(digit_model()) gives the frozen model",
                )
            continue
        total = len(list(model.parameters()))
        cause = None
        if not still_trainable and len(frozen_head) == len(head):
            cause = "the classifier is frozen too: everything is frozen, so nothing would train"
        elif frozen_head:
            cause = f"the classifier is (partly) frozen: {_names(frozen_head)} should keep requires_grad=True"
        elif len(still_trainable) + len(head) == total:
            cause = "nothing was frozen: set requires_grad = False on every parameter outside the classifier"
        elif all(n.startswith("vit.layernorm.") for n in still_trainable):
            cause = "the final LayerNorm (vit.layernorm) is left trainable: freeze all of model.vit"
        else:
            cause = f"these backbone parameters are still trainable: {_names(still_trainable)}"
        raise CheckFailure(
            f"{len(trainable)} of {total} parameter tensors are trainable; expected only the classifier's {len(head)}",
            details=(f"on {case}",),
            cause=cause,
        )
    return "only classifier.weight and classifier.bias stay trainable (models with 2 and 3 layers)"


# layers, base_lr, decay
LR_CASES = [(2, 1e-3, 0.5), (3, 2e-4, 0.75)]


def _lr_of(groups, model) -> dict[int, float]:
    """id(param) -> lr from the learner's groups; a CheckFailure when they are malformed."""
    names = {id(p): n for n, p in model.named_parameters()}
    if isinstance(groups, dict) or not isinstance(groups, (list, tuple)):
        raise CheckFailure(f"expected a list of param groups (dicts with 'params' and 'lr'), got a {type(groups).__name__}")
    lrs: dict[int, float] = {}
    for g, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group or "lr" not in group:
            raise CheckFailure(f"group {g} should be a dict with 'params' and 'lr', got {group!r:.80}")
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        for p in params:
            if isinstance(p, tuple) and len(p) == 2:  # named parameters
                p = p[1]
            if isinstance(p, str):
                raise CheckFailure(
                    f"group {g} holds the name {p!r}, not the parameter itself",
                    cause="'params' takes the parameter tensors: model.named_parameters() gives (name, param) pairs; "
                          "keep param",
                )
            if id(p) not in names:
                what = "a tensor" if isinstance(p, torch.Tensor) else f"a {type(p).__name__}"
                raise CheckFailure(f"group {g} holds {what} that is not a parameter of the model")
            if id(p) in lrs:
                raise CheckFailure(f"{names[id(p)]} appears in more than one group; the optimizer would refuse it")
            lrs[id(p)] = float(group["lr"])
    return lrs


def _expected_lr(name: str, L: int, base_lr: float, decay: float, variant: str = "") -> float:
    """The lr of parameter `name`, or what a known mistake (`variant`) gives it."""
    j = layer_id(name, L)
    if variant == "zero_based" and 0 < j <= L:
        j -= 1
    if variant == "norm_with_last" and j == L + 1 and not name.startswith(HEAD_PREFIXES):
        j = L
    if variant.startswith("layers_unseen") and 0 < j <= L:  # encoder layers not recognised by name
        j = L + 1 if variant == "layers_unseen_top" else 0
    exponent = {"off_by_one": L - j, "off_by_one_up": L + 2 - j, "reversed": j, "none": 0}.get(variant, L + 1 - j)
    return base_lr * decay**exponent


LR_MISTAKES = [
    ("the exponent is off by one: lr = base_lr * decay ** (L + 1 - layer_id), so the classifier gets base_lr", "off_by_one"),
    ("the exponent is off by one: lr = base_lr * decay ** (L + 1 - layer_id), so the classifier gets base_lr", "off_by_one_up"),
    ("the decay runs the wrong way: the classifier gets base_lr and the embeddings the smallest lr", "reversed"),
    ("no decay: every group has base_lr; layer j gets base_lr * decay ** (L + 1 - j)", "none"),
    ("encoder layer i should have layer id i + 1 (the embeddings are 0)", "zero_based"),
    ("the final LayerNorm (vit.layernorm) belongs with the classifier (layer id L + 1), not the last encoder layer", "norm_with_last"),
    ("the encoder layers are not recognised, so they get the classifier's lr: transformers 5 names them "
     "vit.layers.N (transformers 4: vit.encoder.layer.N); read N from either", "layers_unseen_top"),
    ("the encoder layers are not recognised, so they get the embeddings' lr: transformers 5 names them "
     "vit.layers.N (transformers 4: vit.encoder.layer.N); read N from either", "layers_unseen_bottom"),
]


@check("layerwise_lr_groups", reference="vit_course.finetune:layerwise_lr_groups")
def check_layerwise_lr_groups(fn: Callable[..., Any]) -> str:
    """`fn(model, base_lr, decay) -> param groups`: each parameter's lr as `layerwise_lr_groups` gives it."""
    for layers, base_lr, decay in LR_CASES:
        model = tiny_vit_classifier(num_hidden_layers=layers)
        case = f"a ViTForImageClassification with {layers} layers, base_lr={base_lr:g}, decay={decay:g}"
        groups = learner_call(fn, model, base_lr, decay, case=case, names=("model",), grad=True)
        try:
            lrs = _lr_of(groups, model)
        except CheckFailure as e:
            raise CheckFailure(e.message, details=(f"on {case}",), cause=e.cause) from None
        named = list(model.named_parameters())
        missing = [n for n, p in named if id(p) not in lrs]
        if missing:
            raise CheckFailure(
                f"{len(missing)} parameters are in no group: {_names(missing)}",
                details=(f"on {case}",),
                cause="every trainable parameter must be in exactly one group",
            )
        wrong = [
            (n, lrs[id(p)], _expected_lr(n, layers, base_lr, decay))
            for n, p in named
            if not math.isclose(lrs[id(p)], _expected_lr(n, layers, base_lr, decay), rel_tol=1e-6)
        ]
        if not wrong:
            continue
        cause = None
        for text, variant in LR_MISTAKES:
            if all(math.isclose(lrs[id(p)], _expected_lr(n, layers, base_lr, decay, variant), rel_tol=1e-6) for n, p in named):
                cause = text
                break
        name, got, want = wrong[0]
        raise CheckFailure(
            f"{len(wrong)} of {len(named)} parameters have the wrong learning rate",
            details=(
                f"on {case}",
                f"the first: {name} (layer id {layer_id(name, layers)}): expected lr {fmt_num(want)}, got {fmt_num(got)}",
            ),
            cause=cause,
        )
    return "every parameter gets base_lr * decay ** (L + 1 - layer_id) (models with 2 and 3 layers)"
