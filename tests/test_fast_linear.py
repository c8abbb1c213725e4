"""`vit_course.fast_linear`: oneDNN's Linear equals `nn.Linear` (outputs and gradients), runs
where it says it does, falls back to `F.linear` elsewhere, and its fused activations equal
the activation applied afterwards."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from vit_course.block import MLP, FastMLP
from vit_course.config import ViTConfig
from vit_course.fast_linear import FastLinear, activation_name, onednn_applies, onednn_linear, plain_linears

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


def ops_run(fn):
    """The names of the operators `fn` ran."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


def pair(in_features=48, out_features=40, bias=True, seed=0):
    torch.manual_seed(seed)
    plain = nn.Linear(in_features, out_features, bias=bias)
    fast = FastLinear(in_features, out_features, bias=bias)
    fast.load_state_dict(plain.state_dict())
    return plain, fast


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 48), (3, 11, 48)])
def test_fast_linear_equals_nn_linear_and_runs_onednn(shape, bias):
    plain, fast = pair(bias=bias)
    x = torch.randn(*shape)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), plain(x), atol=1e-5, rtol=1e-5)
        assert "mkldnn::_linear_pointwise" in ops_run(lambda: fast(x)), "FastLinear did not run oneDNN's kernel"
    assert fast.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.parametrize("act, reference", [(nn.GELU(), F.gelu), (nn.GELU(approximate="tanh"), lambda y: F.gelu(y, approximate="tanh")),
                                            (nn.ReLU(), F.relu), (None, lambda y: y), (nn.SiLU(), F.silu)])
def test_fused_activation_equals_activation_after_the_linear(act, reference):
    plain, fast = pair()
    x = torch.randn(5, 9, 48) * 3
    with torch.no_grad():
        torch.testing.assert_close(fast(x, act), reference(plain(x)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bias", [True, False])
def test_gradients_equal_nn_linears(bias):
    plain, fast = pair(bias=bias)
    x = torch.randn(4, 6, 48)
    x_plain, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    F.gelu(plain(x_plain)).square().sum().backward()
    fast(x_fast, nn.GELU()).square().sum().backward()  # while training: the Linear, then the GELU
    torch.testing.assert_close(x_fast.grad, x_plain.grad, atol=1e-5, rtol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-5, msg=lambda m: f"gradient of {name}: {m}")


def test_a_fused_activation_is_refused_where_a_gradient_is_needed():
    x, w = torch.randn(3, 8, requires_grad=True), torch.randn(4, 8)
    with pytest.raises(RuntimeError, match="expected no fused activation while training, got 'gelu'"):
        onednn_linear(x, w, None, "gelu")


@pytest.mark.parametrize("case", ["bf16", "autocast", "float64"])
def test_falls_back_to_f_linear_off_float32_or_under_autocast(case):
    plain, fast = pair()
    x = torch.randn(5, 48)
    if case == "bf16":
        plain, fast, x = plain.bfloat16(), fast.bfloat16(), x.bfloat16()
    if case == "float64":
        plain, fast, x = plain.double(), fast.double(), x.double()
    context = torch.autocast("cpu", dtype=torch.bfloat16, enabled=case == "autocast")
    with torch.no_grad(), context:
        assert not onednn_applies(x, fast.weight)
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: fast(x))
        got, expected = fast(x), plain(x)
    assert got.dtype == expected.dtype, f"expected {expected.dtype} as F.linear gives, got {got.dtype}"
    torch.testing.assert_close(got, expected)


def test_activation_names_fuse_only_what_onednn_computes():
    assert activation_name(nn.GELU()) == "gelu"
    assert activation_name(nn.GELU(approximate="tanh")) == "gelu_tanh"
    assert activation_name(nn.ReLU()) == "relu"
    assert activation_name(nn.SiLU()) is None
    assert activation_name(None) == "none"


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_fast_mlp_equals_the_teaching_mlp_in_eval_and_training(hidden_act):
    config = ViTConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, hidden_act=hidden_act, hidden_dropout_prob=0.0)
    torch.manual_seed(0)
    teaching, fast = MLP(config), FastMLP(config)
    fast.load_state_dict(teaching.state_dict())
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), teaching(x), atol=1e-5, rtol=1e-5)
        assert "mkldnn::_linear_pointwise" in ops_run(lambda: fast(x))
    fast(x).sum().backward()
    teaching(x).sum().backward()
    torch.testing.assert_close(fast.fc1.weight.grad, teaching.fc1.weight.grad, atol=1e-5, rtol=1e-5)


def test_plain_linears_gives_back_nn_linear_with_the_same_weights():
    config = ViTConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64)
    mlp = FastMLP(config)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        before = mlp(x)
        plain_linears(mlp)
        assert type(mlp.fc1) is nn.Linear and type(mlp.fc2) is nn.Linear
        assert "mkldnn::_linear_pointwise" not in ops_run(lambda: mlp(x))
        torch.testing.assert_close(mlp(x), before, atol=1e-5, rtol=1e-5)
