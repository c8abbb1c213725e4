"""Moving weights between `vit_course` and timm's `VisionTransformer` (timm/models/vision_transformer.py).

timm names the parts as we do (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.norm1`,
`mlp.fc1`, `norm`, `head`) with two differences that matter for exact parity:

- attention has one fused `attn.qkv` Linear (3D, D): rows 0..D-1 are the query, then key,
  then value; its output projection is `attn.proj` (our `attn.o_proj`);
- every LayerNorm has eps 1e-6 (HF's ViT 1e-12, `nn.LayerNorm` 1e-5): the config keeps
  the timm model's eps.

Only the plain ViT of the paper maps: one CLS token, positions on it too, pre-norm blocks
without layer scale or q/k norm, the CLS token pooled. Anything else is a ValueError that
names it. timm is optional (`pip install vit-course[timm]`). Used by notebook 09; reached
through `VisionTransformer.from_timm` and `to_timm`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .attention import split_qkv_state_dict
from .config import ViTConfig
from .state_dict import check_state_dict

# ours -> timm inside a block; q, k, v come out of the fused qkv
BLOCK_NAMES = {"norm1": "norm1", "attn.o_proj": "attn.proj", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
QKV = ("attn.q_proj", "attn.k_proj", "attn.v_proj")
ACTIVATIONS = {"none": "gelu", "tanh": "gelu_new"}  # nn.GELU(approximate=...) -> HF's hidden_act


def _import_timm():
    try:
        import timm
    except ImportError as error:
        raise ImportError("timm is not installed: pip install 'vit-course[timm]' (or pip install timm)") from error
    return timm


def _unsupported(model) -> list[str]:
    """What makes a timm ViT differ from the paper's, in words."""
    problems = []
    if getattr(model, "global_pool", None) != "token":
        problems.append(f"global_pool must be 'token' (the CLS token), got {model.global_pool!r}")
    if getattr(model, "cls_token", None) is None or model.num_prefix_tokens != 1:
        problems.append(f"expected exactly one prefix token (CLS), got {model.num_prefix_tokens}")
    if getattr(model, "no_embed_class", False):
        problems.append("no_embed_class=True (no position for the CLS token) is not ViT's layout")
    if getattr(model, "dynamic_img_size", False):
        problems.append("dynamic_img_size=True is not supported: create the model with a fixed img_size")
    for name in ("norm_pre", "fc_norm"):
        if not isinstance(getattr(model, name, nn.Identity()), nn.Identity):
            problems.append(f"{name} must be absent (nn.Identity), got {type(getattr(model, name)).__name__}")
    if not isinstance(getattr(model.patch_embed, "norm", nn.Identity()), nn.Identity):
        problems.append("a norm after the patch embedding is not ViT's layout")
    block = model.blocks[0]
    for name in ("ls1", "ls2", "norm1", "norm2"):
        if not hasattr(block, name):
            problems.append(f"blocks have no {name}: not timm's pre-norm Block")
    if not isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity):
        problems.append("layer scale (init_values) is not part of ViT")
    attn = block.attn
    if not hasattr(attn, "qkv") or not isinstance(getattr(attn, "q_norm", nn.Identity()), nn.Identity):
        problems.append("attention must be a fused qkv without q/k norm")
    act = getattr(block.mlp, "act", None)
    if not isinstance(act, nn.GELU) and not isinstance(act, nn.ReLU):
        problems.append(f"the MLP activation must be GELU (exact or tanh) or ReLU, got {type(act).__name__}")
    norms = {m.eps for m in model.modules() if isinstance(m, nn.LayerNorm)}
    if len(norms) > 1:
        problems.append(f"expected one LayerNorm eps throughout, got {sorted(norms)}")
    return problems


def config_from_timm(model: nn.Module) -> ViTConfig:
    """The `ViTConfig` of a timm `VisionTransformer`, read from its modules."""
    timm = _import_timm()
    if not isinstance(model, timm.models.vision_transformer.VisionTransformer):
        raise ValueError(f"expected a timm VisionTransformer, got {type(model).__name__}")
    problems = _unsupported(model)
    if problems:
        raise ValueError("this timm ViT does not map onto vit_course's ViT: " + "; ".join(problems))
    block = model.blocks[0]
    patch_h, patch_w = model.patch_embed.patch_size
    if patch_h != patch_w:
        raise ValueError(f"expected square patches, got {patch_h}x{patch_w}")
    act = block.mlp.act
    return ViTConfig(
        hidden_size=model.embed_dim,
        num_hidden_layers=len(model.blocks),
        num_attention_heads=block.attn.num_heads,
        intermediate_size=block.mlp.fc1.out_features,
        hidden_act="relu" if isinstance(act, nn.ReLU) else ACTIVATIONS[act.approximate],
        layer_norm_eps=model.norm.eps,
        image_size=tuple(model.patch_embed.img_size),
        patch_size=patch_h,
        num_channels=model.patch_embed.proj.in_channels,
        qkv_bias=block.attn.qkv.bias is not None,
        num_labels=model.num_classes,
    )


def from_timm_state_dict(timm_state_dict: dict, model: nn.Module) -> dict:
    """timm's ViT state dict -> ours for `model` (a `VisionTransformer`): the fused qkv split
    in three, every key and shape checked."""
    config = model.config
    expected = split_qkv_state_dict(model.state_dict())  # the teaching layout, whatever the model's
    D = config.hidden_size
    table = {}  # timm key -> our key, for everything but the fused qkv
    expected_timm = {}
    for ours, value in expected.items():
        module, _, leaf = ours.rpartition(".")
        if ours.startswith("blocks."):
            _, index, sub = module.split(".", 2)
            if sub in QKV:
                expected_timm[f"blocks.{index}.attn.qkv.{leaf}"] = torch.empty(3 * D, *value.shape[1:], device="meta")
                continue
            timm_key = f"blocks.{index}.{BLOCK_NAMES[sub]}.{leaf}"
        else:
            timm_key = ours
        table[timm_key] = ours
        expected_timm[timm_key] = value
    check_state_dict(expected_timm, timm_state_dict, source="timm ViT state dict")
    ours = {table[k]: v for k, v in timm_state_dict.items() if k in table}
    for index in range(config.num_hidden_layers):
        for leaf in ("weight", "bias"):
            fused = timm_state_dict.get(f"blocks.{index}.attn.qkv.{leaf}")
            if fused is None:
                continue
            for name, part in zip(QKV, fused.chunk(3, dim=0)):  # (3D, ...) -> 3 x (D, ...): q, k, v
                ours[f"blocks.{index}.{name}.{leaf}"] = part
    return ours


def from_timm(model: nn.Module, cls: type[nn.Module]) -> nn.Module:
    """A `cls` (`VisionTransformer`) with the weights of a timm `VisionTransformer`, in eval mode."""
    config = config_from_timm(model)
    ours = cls(config)
    ours.load_state_dict(from_timm_state_dict(model.state_dict(), ours))
    return ours.eval()


def to_timm(model: nn.Module) -> nn.Module:
    """A timm `VisionTransformer` with our model's weights, in eval mode."""
    timm = _import_timm()
    config = model.config
    if config.hidden_act == "relu":
        act_layer = nn.ReLU
    else:
        act_layer = partial(nn.GELU, approximate="tanh") if config.hidden_act != "gelu" else nn.GELU
    timm_model = timm.models.vision_transformer.VisionTransformer(
        img_size=config.image_size,
        patch_size=config.patch_size,
        in_chans=config.num_channels,
        num_classes=config.num_labels,
        embed_dim=config.hidden_size,
        depth=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
        mlp_ratio=config.intermediate_size / config.hidden_size,
        qkv_bias=config.qkv_bias,
        norm_layer=partial(nn.LayerNorm, eps=config.layer_norm_eps),
        act_layer=act_layer,
    )
    built = timm_model.blocks[0].mlp.fc1.out_features if config.num_hidden_layers else config.intermediate_size
    if built != config.intermediate_size:
        raise ValueError(f"timm built an MLP of width {built} from mlp_ratio, expected {config.intermediate_size}")
    state_dict = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        if key.startswith("blocks."):
            _, index, sub = module.split(".", 2)
            if sub in QKV:
                continue
            key = f"blocks.{index}.{BLOCK_NAMES[sub]}.{leaf}"
        state_dict[key] = value
    for index, block in enumerate(model.blocks):
        attn = block.attn
        state_dict[f"blocks.{index}.attn.qkv.weight"] = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
        if attn.q_proj.bias is not None:
            state_dict[f"blocks.{index}.attn.qkv.bias"] = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias])
    check_state_dict(timm_model.state_dict(), state_dict, source="converted timm state dict")
    timm_model.load_state_dict(state_dict)
    return timm_model.eval()
