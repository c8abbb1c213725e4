"""Checking a state dict against the model it is meant for, before anything is copied.

The one generic check of the package (timm keeps its own in `_helpers.py`): every
bridge (`hf`, `timm_bridge`, `deit`, `mae`, `swin`, `dinov2`), `VisionTransformer.load_state_dict`
and `cnn.load` call `check_state_dict`, so a missing, unexpected or misshaped weight is
always one ValueError that names each key. Used by notebooks 03-10 through those modules.
"""

from __future__ import annotations

from collections.abc import Mapping


def check_state_dict(expected: Mapping, given: Mapping, source: str = "state dict") -> None:
    """Raise a ValueError naming every missing, unexpected or misshaped key.

    Args:
        expected: name -> tensor of the model (only the shapes are read: meta tensors do).
        given: name -> tensor about to be loaded.
        source: what `given` is, for the message (a file, "HF state dict", ...).
    """
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {', '.join(unexpected)}")
    for key in expected:
        if key in given and tuple(given[key].shape) != tuple(expected[key].shape):
            problems.append(
                f"key {key} has shape {tuple(given[key].shape)}, expected {tuple(expected[key].shape)}"
            )
    if problems:
        raise ValueError(f"{source} does not fit the model: " + "; ".join(problems))
