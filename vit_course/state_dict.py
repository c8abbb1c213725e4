"""Checking a state dict against the model it is meant for, before anything is copied.

The one generic check of the package (timm keeps its own in `_helpers.py`), and the one
renaming that goes with it (`renamed_state_dict`, timm's `remap_state_dict`): every
bridge (`hf`, `timm_bridge`, `deit`, `mae`, `swin`, `dinov2`), `VisionTransformer.load_state_dict`
and `cnn.load` call `check_state_dict`, so a missing, unexpected or misshaped weight is
always one ValueError that names each key. Used by notebooks 03-10 through those modules.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def state_dict_differences(expected: Mapping, given: Mapping) -> tuple[list[str], list[str], list[str]]:
    """(missing, unexpected, misshaped) keys of `given` against `expected`, each in order."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    misshaped = [k for k in expected if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    return missing, unexpected, misshaped


def check_state_dict(expected: Mapping, given: Mapping, source: str = "state dict") -> None:
    """Raise a ValueError naming every missing, unexpected or misshaped key.

    Args:
        expected: name -> tensor of the model (only the shapes are read: meta tensors do).
        given: name -> tensor about to be loaded.
        source: what `given` is, for the message (a file, "HF state dict", ...).
    """
    missing, unexpected, misshaped = state_dict_differences(expected, given)
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for key in misshaped:
        problems.append(f"key {key} has shape {tuple(given[key].shape)}, expected {tuple(expected[key].shape)}")
    if problems:
        raise ValueError(f"{source} does not fit the model: " + "; ".join(problems))


def renamed_state_dict(given: Mapping, expected: Mapping, their_name: Callable[[str], str],
                       source: str = "state dict") -> dict:
    """`given`, named by another library, renamed to our names: `their_name(ours)` spells each
    of our keys in `expected` their way. Every key and shape is checked before anything is
    returned (`check_state_dict`, in their names)."""
    table = {ours: their_name(ours) for ours in expected}  # ours -> theirs
    check_state_dict({table[ours]: value for ours, value in expected.items()}, given, source)
    return {ours: given[theirs] for ours, theirs in table.items()}
