"""Moving weights between `vit_course` and Hugging Face transformers.

HF has named ViT's parameters two ways. Up to transformers 5.8, and in every checkpoint
file (even one written by a newer `save_pretrained`), a layer is
`encoder.layer.N.attention.attention.{query,key,value}`, `attention.output.dense`,
`intermediate.dense`, `output.dense`; from 5.9 the module in memory is
`layers.N.attention.{q,k,v,o}_proj`, `mlp.fc1`, `mlp.fc2`. A classifier model puts the
backbone under `vit.`. The table below is the one place these names live: each of our
names against its two HF spellings. Loading checks every key before it copies anything,
and a mismatch names the key.

Used by notebooks 03 and 04.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .attention import split_qkv_state_dict
from .config import ViTConfig
from .paths import check_model_folder, read_json, read_safetensors, read_torch_weights
from .state_dict import check_state_dict, renamed_state_dict

if TYPE_CHECKING:
    import transformers

LEGACY, CURRENT = "legacy", "current"

# ours: (transformers <= 5.8 and checkpoint files, transformers >= 5.9 in memory)
LAYER_NAMES = {
    "norm1": ("layernorm_before", "layernorm_before"),
    "attn.q_proj": ("attention.attention.query", "attention.q_proj"),
    "attn.k_proj": ("attention.attention.key", "attention.k_proj"),
    "attn.v_proj": ("attention.attention.value", "attention.v_proj"),
    "attn.o_proj": ("attention.output.dense", "attention.o_proj"),
    "norm2": ("layernorm_after", "layernorm_after"),
    "mlp.fc1": ("intermediate.dense", "mlp.fc1"),
    "mlp.fc2": ("output.dense", "mlp.fc2"),
}
LAYER_PREFIX = {LEGACY: "encoder.layer.{}.", CURRENT: "layers.{}."}
TOP_NAMES = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj": "embeddings.patch_embeddings.projection",
    "norm": "layernorm",
}
HEAD_NAME = ("head", "classifier")  # the classifier sits outside the `vit.` backbone
POOLER_KEYS = ("pooler.dense.weight", "pooler.dense.bias")  # ViTModel's tanh pooler, unused by the classifier


def hf_name(key: str, scheme: str, backbone_prefix: str) -> str:
    """Our parameter name -> HF's, e.g. `blocks.3.attn.q_proj.weight` ->
    `vit.encoder.layer.3.attention.attention.query.weight` (legacy, classifier)."""
    module, _, leaf = key.rpartition(".")
    if key.startswith("blocks."):
        _, index, sub = module.split(".", 2)
        hf_sub = LAYER_NAMES[sub][0 if scheme == LEGACY else 1]
        return backbone_prefix + LAYER_PREFIX[scheme].format(index) + f"{hf_sub}.{leaf}"
    if module == HEAD_NAME[0]:
        return f"{HEAD_NAME[1]}.{leaf}"
    if key in TOP_NAMES:  # parameters without a module: cls_token, pos_embed
        return backbone_prefix + TOP_NAMES[key]
    return backbone_prefix + f"{TOP_NAMES[module]}.{leaf}"


def detect_layout(hf_keys: Iterable[str]) -> tuple[str, str]:
    """(scheme, backbone prefix) of an HF state dict's keys."""
    keys = list(hf_keys)
    prefix = "vit." if any(k.startswith("vit.") for k in keys) else ""
    scheme = LEGACY if any(".encoder.layer." in "." + k for k in keys) else CURRENT
    return scheme, prefix


def our_name(key: str, scheme: str, backbone_prefix: str) -> str:
    """HF's parameter name -> ours, the inverse of `hf_name`; a key the table lacks is a ValueError."""
    if key.startswith(f"{HEAD_NAME[1]}."):
        return HEAD_NAME[0] + key[len(HEAD_NAME[1]):]
    rest = key.removeprefix(backbone_prefix)
    layer = LAYER_PREFIX[scheme].partition("{}")[0]  # "encoder.layer." or "layers."
    if rest.startswith(layer):
        index, _, sub = rest[len(layer):].partition(".")
        module, _, leaf = sub.rpartition(".")
        ours = {names[0 if scheme == LEGACY else 1]: name for name, names in LAYER_NAMES.items()}
        if module in ours:
            return f"blocks.{index}.{ours[module]}.{leaf}"
    for ours, theirs in TOP_NAMES.items():
        if rest == theirs or rest.startswith(theirs + "."):
            return ours + rest[len(theirs):]
    raise ValueError(f"no name in vit_course for the HF ViT parameter {key!r}")


def _reference_state_dict(config: ViTConfig) -> dict:
    """HF's own ViT for `config`, on the meta device: its parameter names and shapes."""
    import transformers

    with torch.device("meta"):
        if config.num_labels:
            return transformers.ViTForImageClassification(config.to_hf()).state_dict()
        return transformers.ViTModel(config.to_hf(), add_pooling_layer=False).state_dict()


def from_hf_state_dict(hf_state_dict: dict, config: ViTConfig, source: str = "HF state dict") -> dict:
    """An HF ViT state dict (either naming scheme) -> ours, checked key by key and shape by shape
    against HF's own model of `config`."""
    reference = _reference_state_dict(config)
    layout = detect_layout(reference)
    expected = {our_name(k, *layout): v for k, v in reference.items()}  # ours -> meta tensor
    scheme, prefix = detect_layout(hf_state_dict)
    given = {k: v for k, v in hf_state_dict.items() if k.removeprefix(prefix) not in POOLER_KEYS}
    return renamed_state_dict(given, expected, lambda ours: hf_name(ours, scheme, prefix), source)


def read_checkpoint(directory: str | Path) -> dict:
    """The raw tensors of a `save_pretrained` directory, with the names in the file."""
    directory = Path(directory)
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    legacy = directory / "pytorch_model.bin"
    fix = f"write {directory} again with save_pretrained (a shipped model: `git checkout -- data/models`)"
    if single.exists():
        return read_safetensors(single, fix)
    if index.exists():  # sharded: every file the index names, each checked
        weight_map = read_json(index, fix).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no weight_map naming its shards. Fix: {fix}")
        shards = sorted(set(weight_map.values()))
        return {k: v for shard in shards for k, v in read_safetensors(directory / shard, fix).items()}
    if legacy.exists():
        return read_torch_weights(legacy, fix)
    raise FileNotFoundError(
        f"no weights in {directory}: looked for {single.name}, {index.name} and {legacy.name}"
    )


def load_hf(source: str | Path | transformers.PreTrainedModel) -> tuple[ViTConfig, dict]:
    """(our config, our state dict) from an HF model instance, a `save_pretrained`
    directory, or a hub id (online only)."""
    import transformers

    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            check_model_folder(path, weights=False)  # as shipped, config parsed (weights: below)
            hf_config = transformers.ViTConfig.from_pretrained(path)
            hf_state_dict, name = read_checkpoint(path), str(path)
        else:
            return load_hf(Path(_download(str(source))))
    elif isinstance(source, transformers.PreTrainedModel):
        if not isinstance(source, (transformers.ViTModel, transformers.ViTForImageClassification)):
            raise ValueError(
                f"expected a transformers ViTModel or ViTForImageClassification, got {type(source).__name__}"
            )
        hf_config, hf_state_dict, name = source.config, source.state_dict(), type(source).__name__
    else:
        raise ValueError(
            "expected a transformers ViT model, a save_pretrained directory or a hub id, "
            f"got {type(source).__name__}"
        )
    head = hf_state_dict.get("classifier.weight")
    config = ViTConfig.from_hf(hf_config, num_labels=0 if head is None else head.shape[0])
    return config, from_hf_state_dict(hf_state_dict, config, source=name)


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"])
    except Exception as error:  # offline, unknown id, no network: say what to do instead
        raise ValueError(
            f"{repo_id!r} is not a local directory and could not be fetched from the Hugging Face hub "
            f"({type(error).__name__}). Offline, pass a directory written by save_pretrained; "
            "online, unset HF_HUB_OFFLINE (see README)."
        ) from error


def to_hf(model: torch.nn.Module) -> transformers.ViTModel | transformers.ViTForImageClassification:
    """An HF model with our model's weights, in HF's in-memory naming, in eval mode."""
    import transformers

    hf_config = model.config.to_hf()
    if model.config.num_labels:
        hf_model = transformers.ViTForImageClassification(hf_config)
    else:
        hf_model = transformers.ViTModel(hf_config, add_pooling_layer=False)
    scheme, prefix = detect_layout(hf_model.state_dict())
    teaching = split_qkv_state_dict(model.state_dict())  # the fast path's fused qkv, split
    state_dict = {hf_name(k, scheme, prefix): v for k, v in teaching.items()}
    check_state_dict(hf_model.state_dict(), state_dict, source="converted state dict")
    hf_model.load_state_dict(state_dict, strict=True)
    return hf_model.eval()
