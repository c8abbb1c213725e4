"""Checks for the course's exercises: one `check_<exercise>(your_object)` per exercise.

Each check runs your code and the reference on the same seeded inputs, including edge
cases (a batch of one, non-square images, one channel, an odd number of heads, a single
token), and returns a `CheckResult`: green when it passed, red with the first difference
and the likely cause when not, amber while the exercise still raises NotImplementedError.
A check never raises, and refuses the course's own reference. `use_or_reference` then
picks your object or the reference under another name, so later cells keep working either
way and re-running the check still checks your code; after a failed check the first cell
that uses it also shows, once, what your version gives next to the reference's:

    result = check_patchify(patchify)
    display(result)
    to_patches = use_or_reference(result, patchify, vit_course.patches.patchify)

`vit_course.checks.compare` is the runner every check uses (`compare.settings` holds its
time limit).
"""

from .attention import check_multi_head_self_attention, check_scaled_dot_product_attention
from .attention_stats import check_mean_attention_distance
from .block import check_transformer_block
from .cost import check_count_parameters, check_vit_flops
from .finetune import check_freeze_backbone, check_layerwise_lr_groups
from .inference import check_preprocess, check_top_k
from .vit import check_vision_transformer
from .patches import check_conv_to_linear_weight, check_patchify
from .position import check_interpolate_positions, check_sincos_2d
from .result import CheckResult
from .robustness import check_shift_images, check_shuffle_patches
from .rollout import check_attention_rollout
from .side_by_side import use_or_reference

__all__ = [
    "CheckResult",
    "use_or_reference",
    "check_patchify",  # 01
    "check_conv_to_linear_weight",
    "check_sincos_2d",  # 02
    "check_interpolate_positions",
    "check_scaled_dot_product_attention",  # 03
    "check_multi_head_self_attention",
    "check_transformer_block",  # 04
    "check_vision_transformer",
    "check_attention_rollout",  # 07
    "check_mean_attention_distance",
    "check_preprocess",  # 05
    "check_top_k",
    "check_freeze_backbone",  # 06
    "check_layerwise_lr_groups",
    "check_count_parameters",  # 08
    "check_vit_flops",
    "check_shift_images",
    "check_shuffle_patches",
]
