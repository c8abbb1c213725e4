"""The variant table: counted on the meta device, cross-checked against transformers and the closed form."""

import pytest
import torch
import transformers

from vit_course.cost import vit_forward_flops
from vit_course.variants import QUOTED, VARIANTS, build_on_meta, format_table, forward_flops, variant_table


@pytest.fixture(scope="module")
def rows():
    return {row["model"]: row for row in variant_table()}


def test_every_variant_is_within_rounding_of_its_published_size(rows):
    for name, row in rows.items():
        quoted = QUOTED[name]
        assert abs(row["params_m"] - quoted.params_m) / quoted.params_m < 0.05, f"{name}: {row}"
        if quoted.gmacs is not None:
            assert abs(row["gmacs"] - quoted.gmacs) / quoted.gmacs < 0.03, f"{name}: {row}"


def test_the_models_hold_no_memory():
    assert all(p.is_meta for p in build_on_meta("ViT-H/14").parameters())


@pytest.mark.parametrize("name", ["ViT-Ti/16", "ViT-H/14"])
def test_counted_flops_equal_the_closed_form_of_vit_course_cost(name, rows):
    assert rows[name]["gmacs"] * 2e9 == pytest.approx(vit_forward_flops(VARIANTS[name][1]), rel=1e-12)


@pytest.mark.parametrize("name,hf_class", [("ViT-B/16", "ViTForImageClassification"),
                                           ("DeiT-S (distilled)", "DeiTForImageClassificationWithTeacher"),
                                           ("Swin-T", "SwinForImageClassification")])
def test_parameter_counts_equal_the_transformers_models(name, hf_class, rows):
    family, config = VARIANTS[name]
    if family == "swin":
        hf_config = transformers.SwinConfig(num_labels=1000)
    else:
        from vit_course.deit import config_to_hf

        hf_config = config_to_hf(config) if family == "deit" else config.to_hf()
    with torch.device("meta"):
        hf_model = getattr(transformers, hf_class)(hf_config)
    assert rows[name]["params_m"] * 1e6 == sum(p.numel() for p in hf_model.parameters())


def test_the_distillation_token_and_head_are_the_only_difference_from_vit(rows):
    D = 384
    extra = D + D + D * 1000 + 1000  # one more token, its position, a second head
    assert round((rows["DeiT-S (distilled)"]["params_m"] - rows["ViT-S/16"]["params_m"]) * 1e6) == extra


def test_format_table_and_bad_names(rows):
    text = format_table([rows["Swin-T"]])
    assert text.splitlines()[1].split()[:2] == ["Swin-T", f"{rows['Swin-T']['params_m']:.2f}"]
    with pytest.raises(ValueError, match="expected one of .* got 'ViT-G'"):
        build_on_meta("ViT-G")
    assert forward_flops(build_on_meta("ViT-Ti/16")) > 0
