"""The check runner's guards: each shown failing on the bad case, and passing on the good.

The runner (`vit_course.checks.compare`) is what every `check_*` calls learner code
through: it requires the reference's type and dtype, accepts numpy integers as counts,
catches in-place changes to inputs, runs a backward pass on modules, puts torch's global
settings back, stops code that runs too long, keeps prints short and refuses the
course's own reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from learner_copies import as_learner
from torch import nn

from vit_course import checks
from vit_course.attention import MultiHeadSelfAttention, scaled_dot_product_attention
from vit_course.block import TransformerBlock
from vit_course.checks import compare
from vit_course.checks.clip import check_clip_loss
from vit_course.checks.mae import check_random_masking
from vit_course.checks.swin import check_shifted_window_mask, check_window_partition
from vit_course.cost import vit_forward_flops
from vit_course.patches import conv_to_linear_weight, patchify


def test_a_copy_of_the_reference_passes():
    assert checks.check_patchify(as_learner(patchify)).passed


# type and dtype ----------------------------------------------------------------------


def test_a_numpy_array_is_refused_and_named():
    result = checks.check_patchify(lambda x, P: patchify(x, P).numpy())
    assert not result.passed
    assert "you returned a numpy.ndarray / float32" in str(result), str(result)
    assert "torch.from_numpy" in (result.cause or "")


def test_a_float64_result_is_refused_and_named():
    result = checks.check_patchify(lambda x, P: patchify(x, P).double())
    assert not result.passed
    assert "you returned a torch.Tensor / float64" in str(result) and "expected float32" in str(result), str(result)


def test_sincos_computed_in_float64_numpy_is_refused():
    def sincos_numpy(rows, cols, dim):
        from vit_course.position import sincos_2d

        return torch.from_numpy(sincos_2d(rows, cols, dim).numpy().astype(np.float64))

    result = checks.check_sincos_2d(sincos_numpy)
    assert not result.passed and "float64" in str(result), str(result)


def test_a_numpy_integer_count_is_accepted_and_a_string_is_not():
    assert checks.check_vit_flops(lambda config: np.int64(vit_forward_flops(config))).passed
    assert checks.check_vit_flops(lambda config: torch.tensor(vit_forward_flops(config))).passed
    result = checks.check_vit_flops(lambda config: str(vit_forward_flops(config)))
    assert not result.passed and "expected a number of FLOPs" in result.message


# inputs changed in place ----------------------------------------------------------------


def test_an_input_scaled_in_place_is_named():
    def sdpa_in_place(q, k, v):
        q *= q.shape[-1] ** -0.5
        weights = (q @ k.transpose(-2, -1)).softmax(-1)
        return weights @ v, weights

    result = checks.check_scaled_dot_product_attention(sdpa_in_place)
    assert not result.passed
    assert "changed its input in place: q" in result.message, str(result)
    assert checks.check_scaled_dot_product_attention(as_learner(scaled_dot_product_attention)).passed


def test_conv_weight_zeroed_in_place_is_named_not_called_a_wrong_weight():
    def zeroes_the_conv(conv):
        weight, bias = conv_to_linear_weight(conv)
        weight = weight.clone()
        with torch.no_grad():
            conv.weight.zero_()
        return weight, bias

    result = checks.check_conv_to_linear_weight(zeroes_the_conv)
    assert not result.passed
    assert "changed its input in place: conv's weight" in result.message, str(result)
    assert "wrong weight" not in result.message


# backward through modules ----------------------------------------------------------------


class BlockInPlaceResidual(TransformerBlock):
    """Right under no_grad; the in-place `+=` breaks backward (norm2 saved h)."""

    def forward(self, x):
        h = x + self.attn(self.norm1(x))[0]
        h += self.mlp(self.norm2(h))
        return h


class BlockNoGrad(TransformerBlock):
    def forward(self, x):
        with torch.no_grad():
            return super().forward(x)


def test_an_in_place_residual_fails_on_backward():
    result = checks.check_transformer_block(BlockInPlaceResidual)
    assert not result.passed, str(result)
    assert "backward fails" in result.message and "in-place" in (result.cause or ""), str(result)
    assert checks.check_transformer_block(as_learner(TransformerBlock)).passed


def test_a_forward_under_no_grad_fails_on_backward():
    result = checks.check_transformer_block(BlockNoGrad)
    assert not result.passed and "no gradient flows" in result.message, str(result)


def test_a_detached_parameter_is_named():
    class Mine(MultiHeadSelfAttention):
        def forward(self, x):
            out, weights = super().forward(x)
            return out.detach() + 0 * self.o_proj.bias, weights

    result = checks.check_multi_head_self_attention(Mine)
    assert not result.passed and "no gradient to" in result.message and "q_proj.weight" in result.message, str(result)


def test_backward_can_be_turned_off_for_remote_modules():
    class Remote(BlockNoGrad):
        _vit_course_remote = True

    assert checks.check_transformer_block(Remote).passed
    compare.settings.run_backward = False
    try:
        assert checks.check_transformer_block(BlockNoGrad).passed
    finally:
        compare.settings.run_backward = True


# torch's global settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda: torch.set_default_dtype(torch.float64), "default dtype float32 -> float64"),
        (lambda: torch.set_num_threads(max(1, torch.get_num_threads() + 1)), "number of threads"),
        (lambda: torch.use_deterministic_algorithms(True), "deterministic algorithms"),
        (lambda: torch.set_default_device("meta"), "default device cpu -> meta (torch.set_default_device)"),
    ],
    ids=["dtype", "threads", "deterministic", "device"],
)
def test_a_changed_global_setting_fails_and_is_put_back(change, words):
    before = compare._global_state()

    def leaky(x, P):
        change()
        return patchify(x, P)

    result = checks.check_patchify(leaky)
    assert not result.passed and "global settings" in result.message and words in result.message, str(result)
    assert compare._global_state() == before, "the check left torch's settings changed"


def test_grad_mode_is_restored_after_a_check():
    torch.set_grad_enabled(False)
    try:
        checks.check_transformer_block(as_learner(TransformerBlock))
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


# time limit ------------------------------------------------------------------------------


def test_an_endless_loop_is_stopped_with_the_case_named():
    def loops(x, P):
        while True:
            pass

    limit, compare.settings.time_limit_s = compare.settings.time_limit_s, 0.3  # a grader sets its own
    try:
        result = checks.check_patchify(loops)
    finally:
        compare.settings.time_limit_s = limit
    assert not result.passed
    assert "ran for more than 0.3 s on a batch of 2 RGB 8x8 images, patch_size=4" in result.message, str(result)


# prints ----------------------------------------------------------------------------------


def test_prints_are_captured_and_cut_short(capsys):
    def chatty(x, P):
        print("x" * 100_000)
        return patchify(x, P)

    result = checks.check_patchify(chatty)
    assert result.passed, str(result)
    assert capsys.readouterr().out == ""
    text = str(result)
    assert "your code printed 700,007 characters" in text and len(text) < 2000, text[:300]


# the reference itself --------------------------------------------------------------------


REFERENCES = [
    (checks.check_patchify, "vit_course.patches", "patchify"),
    (checks.check_conv_to_linear_weight, "vit_course.patches", "conv_to_linear_weight"),
    (checks.check_sincos_2d, "vit_course.position", "sincos_2d"),
    (checks.check_interpolate_positions, "vit_course.checks.position", "interpolate_positions"),
    (checks.check_scaled_dot_product_attention, "vit_course.attention", "scaled_dot_product_attention"),
    (checks.check_multi_head_self_attention, "vit_course.attention", "MultiHeadSelfAttention"),
    (checks.check_transformer_block, "vit_course.block", "TransformerBlock"),
    (checks.check_vision_transformer, "vit_course.vit", "VisionTransformer"),
    (checks.check_attention_rollout, "vit_course.rollout", "attention_rollout"),
    (checks.check_mean_attention_distance, "vit_course.attention_stats", "mean_attention_distance"),
    (checks.check_preprocess, "vit_course.inference", "preprocess"),
    (checks.check_top_k, "vit_course.inference", "top_k"),
    (checks.check_freeze_backbone, "vit_course.finetune", "freeze_backbone"),
    (checks.check_layerwise_lr_groups, "vit_course.finetune", "layerwise_lr_groups"),
    (checks.check_count_parameters, "vit_course.cost", "count_parameters"),
    (checks.check_vit_flops, "vit_course.cost", "vit_forward_flops"),
    (checks.check_shift_images, "vit_course.robustness", "shift_images"),
    (checks.check_shuffle_patches, "vit_course.robustness", "shuffle_patches"),
    # notebooks 09 and 10
    (check_window_partition, "vit_course.swin", "window_partition"),
    (check_shifted_window_mask, "vit_course.swin", "shifted_window_mask"),
    (check_random_masking, "vit_course.mae", "random_masking"),
    (check_clip_loss, "vit_course.clip", "clip_loss"),
]


@pytest.mark.parametrize("check_fn, module, name", REFERENCES, ids=[r[2] for r in REFERENCES])
def test_the_course_reference_is_refused(check_fn, module, name):
    import importlib

    result = check_fn(getattr(importlib.import_module(module), name))
    assert not result.passed and result.message == compare.REFUSED, str(result)


# what the grader relies on ---------------------------------------------------------------


def test_at_call_flag_on_the_exception_is_honoured():
    def remote_signature_error(x, P):
        error = TypeError("remote_signature_error() takes 1 positional argument but 2 were given")
        error._vit_course_at_call = True
        raise error

    result = checks.check_patchify(remote_signature_error)
    assert "does not take the arguments" in (result.cause or ""), str(result)

    def wrong_arguments_inside(x, P):
        error = TypeError("bad operand")
        error._vit_course_at_call = False
        raise error

    assert "does not take the arguments" not in (checks.check_patchify(wrong_arguments_inside).cause or "")


def test_freeze_backbone_that_forgets_to_return_the_model_fails():
    from vit_course.finetune import freeze_backbone

    result = checks.check_freeze_backbone(lambda model: (freeze_backbone(model), None)[1])
    assert not result.passed and "return model" in (result.cause or ""), str(result)
    assert checks.check_freeze_backbone(as_learner(freeze_backbone)).passed


def test_float_inf_count_is_refused():
    assert not checks.check_count_parameters(lambda model: math.inf).passed
    assert not checks.check_count_parameters(lambda model: nn.Linear).passed


# every check, not only patchify's ---------------------------------------------------------


def _as(out, how):
    """`out` (a tensor, or a tuple whose first item is one) as numpy or float64."""
    if isinstance(out, torch.Tensor):
        return out.numpy() if how == "numpy" else out.double()
    return type(out)([_as(out[0], how), *out[1:]])


def _function_returning(reference, how):
    def mine(*args, **kwargs):
        return _as(reference(*args, **kwargs), how)

    return mine


def _module_returning(reference, how):
    class Mine(reference):
        def forward(self, *args):
            return _as(super().forward(*args), how)

    return Mine


def _tensor_checks():
    from vit_course.attention_stats import mean_attention_distance
    from vit_course.checks.position import interpolate_positions
    from vit_course.inference import preprocess
    from vit_course.position import sincos_2d
    from vit_course.robustness import shift_images, shuffle_patches
    from vit_course.rollout import attention_rollout
    from vit_course.vit import VisionTransformer

    functions = [
        (checks.check_patchify, patchify), (checks.check_conv_to_linear_weight, conv_to_linear_weight),
        (checks.check_sincos_2d, sincos_2d), (checks.check_interpolate_positions, interpolate_positions),
        (checks.check_scaled_dot_product_attention, scaled_dot_product_attention),
        (checks.check_attention_rollout, attention_rollout),
        (checks.check_mean_attention_distance, mean_attention_distance), (checks.check_preprocess, preprocess),
        (checks.check_shift_images, shift_images), (checks.check_shuffle_patches, shuffle_patches),
    ]
    modules = [
        (checks.check_multi_head_self_attention, MultiHeadSelfAttention),
        (checks.check_transformer_block, TransformerBlock), (checks.check_vision_transformer, VisionTransformer),
    ]
    return [(c, r, _function_returning) for c, r in functions] + [(c, r, _module_returning) for c, r in modules]


TENSOR_CHECKS = _tensor_checks()


@pytest.mark.parametrize("how, words", [("numpy", "you returned a numpy.ndarray"),
                                        ("float64", "you returned a torch.Tensor / float64")])
@pytest.mark.parametrize("check_fn, reference, make", TENSOR_CHECKS, ids=[c.__name__ for c, _, _ in TENSOR_CHECKS])
def test_every_tensor_check_refuses_numpy_and_float64_and_says_the_values_are_right(check_fn, reference, make, how,
                                                                                 words):
    result = check_fn(make(reference, how))
    assert not result.passed, str(result)
    assert words in str(result) and "its values match the reference" in str(result), str(result)
    assert ("numpy array" if how == "numpy" else "another dtype") in (result.cause or ""), str(result)


def test_a_numpy_integer_parameter_count_is_accepted():
    from vit_course.cost import count_parameters

    assert checks.check_count_parameters(lambda model: np.int64(count_parameters(model))).passed
    assert not checks.check_count_parameters(lambda model: np.float64(count_parameters(model) + 0.5)).passed


# grad mode and the global random generator ------------------------------------------------


def test_a_grad_mode_switched_off_for_good_is_named():
    from vit_course.finetune import freeze_backbone

    def freeze_with_no_grad(model):
        torch.set_grad_enabled(False)  # "freezing" the notebook instead of the backbone
        return freeze_backbone(model)

    result = checks.check_freeze_backbone(freeze_with_no_grad)
    assert not result.passed and "grad mode True -> False (torch.set_grad_enabled)" in result.message, str(result)
    assert torch.is_grad_enabled()

    class BlockSwitchesGradOff(TransformerBlock):
        def forward(self, x):
            torch.set_grad_enabled(False)
            return super().forward(x)

    result = checks.check_transformer_block(BlockSwitchesGradOff)
    assert not result.passed and "grad mode" in result.message, str(result)
    assert torch.is_grad_enabled()


def test_a_reseeded_global_generator_is_named_and_the_callers_stream_goes_on():
    def reseeds(x, P):
        torch.manual_seed(1234)
        return patchify(x, P)

    torch.manual_seed(7)
    torch.rand(3)
    expected_next = torch.rand(2)
    torch.manual_seed(7)
    torch.rand(3)
    result = checks.check_patchify(reseeds)
    assert torch.equal(torch.rand(2), expected_next), "the check moved the caller's random stream"
    assert not result.passed and "reseeded with 1234 (torch.manual_seed)" in result.message, str(result)
    assert "torch.Generator" in (result.cause or "")


def test_random_numbers_drawn_without_reseeding_are_fine():
    def draws(x, P):
        torch.randn(3)  # e.g. a module initialised inside
        return patchify(x, P)

    assert checks.check_patchify(draws).passed


# one time limit for the whole check -------------------------------------------------------


def test_a_slow_answer_is_stopped_after_the_checks_budget_not_after_every_case():
    import time

    def slow(x, P):
        time.sleep(0.2)
        return patchify(x, P)

    settings = compare.settings
    saved = settings.time_limit_s, settings.check_time_limit_s
    settings.time_limit_s, settings.check_time_limit_s = 1.0, 0.5
    try:
        start = time.monotonic()
        result = checks.check_patchify(slow)
        took = time.monotonic() - start
    finally:
        settings.time_limit_s, settings.check_time_limit_s = saved
    assert not result.passed and "more than 0.5 s in all over the check's cases" in result.message, str(result)
    assert "stopped on non-square images: (2, 3, 8, 12)" in result.message, str(result)
    assert took < 1.5, f"{took:.1f} s: 7 cases x 0.2 s would be 1.4 s"


def test_no_time_limit_means_no_check_budget_either():
    import time

    def slow(x, P):
        time.sleep(0.05)
        return patchify(x, P)

    settings = compare.settings
    saved = settings.time_limit_s, settings.check_time_limit_s
    settings.time_limit_s, settings.check_time_limit_s = None, 0.1  # what the grader sets
    try:
        assert checks.check_patchify(slow).passed
    finally:
        settings.time_limit_s, settings.check_time_limit_s = saved


# a rebound name cannot pass ----------------------------------------------------------------


def test_rebinding_the_learner_name_cannot_give_a_false_pass():
    from vit_course import patches
    from vit_course.checks import use_or_reference

    def wrong(x, P):
        return patchify(x, P) + 1

    def stub(x, P):
        raise NotImplementedError

    for answer in (wrong, stub):  # the old `patchify = use_or_reference(result, patchify, ...)` cell
        rebound = use_or_reference(checks.check_patchify(answer), answer, patches.patchify)
        again = checks.check_patchify(rebound)
        assert not again.passed and again.message == compare.REFUSED, str(again)
