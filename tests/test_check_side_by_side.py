"""After a failed check, the first use of `use_or_reference`'s object shows the learner's
version next to the reference's on that cell's data, once; the notebook runs on the reference.

Each test shows the bad case (a wrong, raising, slow, leaky or in-place learner version)
and that a passed or unfinished exercise shows nothing.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
import torch
from learner_copies import as_learner

from vit_course import checks
from vit_course.attention import MultiHeadSelfAttention
from vit_course.block import TransformerBlock
from vit_course.checks import compare, side_by_side, use_or_reference
from vit_course.checks.block import make_config
from vit_course.checks.finetune import tiny_vit_classifier
from vit_course.cost import vit_forward_flops
from vit_course.finetune import freeze_backbone, layerwise_lr_groups
from vit_course.inference import top_k
from vit_course.patches import patchify


@pytest.fixture
def shown(monkeypatch):
    """What `use_or_reference`'s objects display, in order."""
    seen = []
    monkeypatch.setattr(side_by_side, "_show", seen.append)
    return seen


def patchify_transposed(x, P):  # pixels transposed inside each patch
    B, C, H, W = x.shape
    return x.reshape(B, C, H // P, P, W // P, P).permute(0, 2, 4, 1, 5, 3).reshape(B, -1, C * P * P)


def images():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_failing_function_shows_both_once_and_the_cells_get_the_reference(shown):
    to_patches = use_or_reference(checks.check_patchify(patchify_transposed), patchify_transposed, patchify)
    x = images()
    first, second = to_patches(x, 16), to_patches(x, 16)
    assert torch.equal(first, patchify(x, 16)) and torch.equal(second, patchify(x, 16))
    assert len(shown) == 1, shown
    text = str(shown[0])
    assert text.startswith("Your patchify_transposed next to vit_course.patches.patchify on this cell's data")
    assert "yours:     a tensor of shape (2, 4, 768), float32" in text
    assert "reference: a tensor of shape (2, 4, 768), float32" in text
    assert "values differ" in text and "largest abs difference" in text, text
    assert "<strong>" in shown[0]._repr_html_()


def test_a_passing_or_unfinished_function_shows_nothing(shown, capsys):
    def stub(x, P):
        raise NotImplementedError

    mine = as_learner(patchify)
    assert use_or_reference(checks.check_patchify(mine), mine, patchify) is mine
    assert use_or_reference(checks.check_patchify(stub), stub, patchify) is patchify
    mine(images(), 16)
    patchify(images(), 16)
    assert shown == []


def test_an_error_in_the_learner_version_is_named_and_the_cell_goes_on(shown):
    def raises_on_big_images(x, P):
        if x.shape[-1] > 16:
            raise ValueError("only small images")
        return patchify_transposed(x, P)

    to_patches = use_or_reference(checks.check_patchify(raises_on_big_images), raises_on_big_images, patchify)
    out = to_patches(images(), 16)
    assert torch.equal(out, patchify(images(), 16))
    assert "yours:     raised ValueError: only small images" in str(shown[0]), str(shown[0])


def test_the_learner_version_runs_under_the_runner_guards(shown):
    def leaky_slow_chatty(x, P):
        print("x" * 5000)
        torch.set_default_dtype(torch.float64)
        return patchify(x, P).numpy()

    before = compare._global_state()
    to_patches = use_or_reference(checks.check_patchify(leaky_slow_chatty), leaky_slow_chatty, patchify)
    shown.clear()
    x = images()
    to_patches(x, 16)
    assert compare._global_state() == before, "the learner's setting leaked into the notebook"
    assert "changed torch's global settings" in str(shown[0]) and "default dtype" in str(shown[0])
    assert "your code printed 5,001 characters" in str(shown[0]) and len(str(shown[0])) < 2500

    def loops(x, P):
        while True:
            pass

    limit, compare.settings.time_limit_s = compare.settings.time_limit_s, 0.3
    try:
        to_patches = use_or_reference(checks.check_patchify(loops), loops, patchify)
        assert torch.equal(to_patches(x, 16), patchify(x, 16))
    finally:
        compare.settings.time_limit_s = limit
    assert "ran for more than 0.3 s on this cell's data" in str(shown[-1]), str(shown[-1])


def test_the_learner_version_gets_copies_so_the_notebook_data_is_untouched(shown):
    def zeroes_its_input(x, P):
        out = patchify(x, P).clone()
        x.zero_()
        return out

    to_patches = use_or_reference(checks.check_patchify(zeroes_its_input), zeroes_its_input, patchify)
    x = images()
    to_patches(x, 16)
    assert torch.equal(x, images()), "the learner's in-place change reached the notebook's tensor"
    assert "changed its input in place" in str(shown[0]), str(shown[0])


def test_what_it_returns_is_refused_by_the_check():
    wrapped = use_or_reference(checks.check_patchify(patchify_transposed), patchify_transposed, patchify)
    result = checks.check_patchify(wrapped)
    assert not result.passed and result.message == compare.REFUSED, str(result)


def test_calls_made_inside_a_check_stay_silent_and_do_not_count(shown):
    attend = use_or_reference(checks.check_patchify(patchify_transposed), patchify_transposed, patchify)

    def uses_it(x, P):
        return attend(x, P)

    checks.check_patchify(uses_it)
    assert shown == []
    attend(images(), 16)
    assert len(shown) == 1


class DoubledAttention(MultiHeadSelfAttention):
    def forward(self, x):
        out, weights = super().forward(x)
        return 2 * out, weights


def test_a_failing_module_shows_both_on_its_first_forward_with_the_same_weights(shown):
    MHSA = use_or_reference(checks.check_multi_head_self_attention(DoubledAttention), DoubledAttention,
                            MultiHeadSelfAttention)
    assert MHSA is not MultiHeadSelfAttention and issubclass(MHSA, MultiHeadSelfAttention)
    assert MHSA.__name__ == "MultiHeadSelfAttention"
    module = MHSA(16, 4)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    reference = MultiHeadSelfAttention(16, 4)
    reference.load_state_dict(module.state_dict())
    out, _ = module(x)
    module(x)
    assert torch.allclose(out, reference(x)[0])
    assert len(shown) == 1
    text = str(shown[0])
    assert "(with the reference's weights)" in text and "output[0]" in text and "values differ" in text, text
    # saved and copied as the reference class: the notebook can still pickle its model
    assert type(pickle.loads(pickle.dumps(module))) is MultiHeadSelfAttention
    assert type(copy.deepcopy(module)) is MultiHeadSelfAttention


def test_a_module_whose_forward_is_right_says_what_failed_instead(shown):
    class InPlaceResidual(TransformerBlock):
        def forward(self, x):
            h = x + self.attn(self.norm1(x))[0]
            h += self.mlp(self.norm2(h))
            return h

    Block = use_or_reference(checks.check_transformer_block(InPlaceResidual), InPlaceResidual, TransformerBlock)
    Block(make_config(hidden_size=24, num_attention_heads=3, intermediate_size=48))(torch.randn(1, 3, 24))
    assert "the same on this data; your check failed with: forward is right, but backward fails" in str(shown[0])


def test_a_module_that_cannot_take_the_weights_says_which(shown):
    class Renamed(MultiHeadSelfAttention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.proj = self.o_proj
            del self.o_proj

    MHSA = use_or_reference(checks.check_multi_head_self_attention(Renamed), Renamed, MultiHeadSelfAttention)
    MHSA(16, 4)(torch.randn(1, 3, 16))
    assert "cannot take the reference's weights: it has no o_proj.weight" in str(shown[0]), str(shown[0])


def test_other_outputs_are_compared_in_their_own_terms(shown):
    def forgets_return(model):
        freeze_backbone(model)

    freeze = use_or_reference(checks.check_freeze_backbone(forgets_return), forgets_return, freeze_backbone)
    model = tiny_vit_classifier()
    assert freeze(model) is model
    assert "yours:     None" in str(shown[-1]) and "where the reference returns the model" in str(shown[-1])

    def one_group(model, base_lr, decay):
        return [{"params": list(model.parameters()), "lr": base_lr}]

    groups = use_or_reference(checks.check_layerwise_lr_groups(one_group), one_group, layerwise_lr_groups)
    groups(tiny_vit_classifier(), 1e-3, 0.5)
    assert "parameters get another lr; the first, vit.embeddings.cls_token" in str(shown[-1]), str(shown[-1])

    def macs(config):
        return np.int64(vit_forward_flops(config) // 2)

    flops = use_or_reference(checks.check_vit_flops(macs), macs, vit_forward_flops)
    flops(make_config())
    assert "yours is 0.5 times the reference's" in str(shown[-1]), str(shown[-1])

    def class_order(logits, k, id2label):
        return [sorted(row, key=lambda pair: pair[0]) for row in top_k(logits, k, id2label)]

    top = use_or_reference(checks.check_top_k(class_order), class_order, top_k)
    top(torch.tensor([[3.0, 0.0, 1.0]]), 2, {0: "z", 1: "b", 2: "c"})
    assert "output[0][0]: yours ('c', 0.1142), the reference's ('z', 0.84379)" in str(shown[-1]), str(shown[-1])


def test_in_a_plain_python_session_it_prints(capsys):
    to_patches = use_or_reference(checks.check_patchify(patchify_transposed), patchify_transposed, patchify)
    capsys.readouterr()
    to_patches(images(), 16)
    out = capsys.readouterr().out
    assert out.startswith("Your patchify_transposed next to vit_course.patches.patchify"), out
