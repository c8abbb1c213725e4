"""`use_or_reference`: the learner's object after a passed check, else the reference, and once,
what the learner's version gives next to it.

After a failed check the cells below run on the reference, so the notebook keeps working,
but every later comparison would print "True" and the learner would never see what their
mistake does. So after a failed check (not a stub: that has nothing to show)
`use_or_reference` returns the reference wrapped: a function that runs the reference and,
on its first call, also runs the learner's function on copies of the same inputs; or a
subclass of the reference module whose first forward also builds the learner's module with
the same arguments, gives it the reference's weights and runs it on the same input. The
learner's code runs through the check runner (`compare.call_learner`: a time limit, prints
captured, torch's settings put back, no gradients, inputs copied so nothing of the
notebook changes), and one short `SideBySide` is shown: the type, shape and dtype of
both, the largest difference, or the error the learner's code raised. Later calls are
silent. Calls made while a check runs stay silent too and do not count as the first.

    result = check_patchify(patchify)
    to_patches = use_or_reference(result, patchify, vit_course.patches.patchify)
    tokens = to_patches(images, 16)  # shows, once, your patchify next to the reference

Checks refuse what it returns ("this is vit_course's reference"). Used by notebooks 01-10.
"""

from __future__ import annotations

import copy
import functools
import html
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from . import compare
from .result import CheckResult

# (border, background, text): neither the verdict's red nor its green
_COLOURS = ("#1565c0", "#e3f2fd", "#0d47a1")
_MAX_LINES = 8
_AT = "this cell's data"


@dataclass(frozen=True)
class SideBySide:
    """What the learner's version gave next to the reference's on one cell's data.

    Args:
        title: one line naming both ("Your patchify next to vit_course.patches.patchify ...").
        rows: (label, text) pairs: "yours", "reference", then what differs.
    """

    title: str
    rows: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def lines(self) -> list[str]:
        width = max((len(label) for label, _ in self.rows), default=0)
        return [f"{label + ':':<{width + 1}} {text}" if label else text for label, text in self.rows]

    def __str__(self) -> str:
        return "\n".join([self.title, *("    " + line for line in self.lines())])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        border, background, text = _COLOURS
        body = "\n".join(html.escape(line) for line in self.lines())
        return (
            f'<div style="border-left: 6px solid {border}; background: {background}; color: {text}; '
            'padding: 0.5em 0.8em; margin: 0.3em 0; border-radius: 3px; font-family: sans-serif;">'
            f"<strong>{html.escape(self.title)}</strong>"
            f'<pre style="margin: 0.4em 0 0 0; background: transparent; color: {text};">{body}</pre></div>'
        )


def _show(obj: SideBySide) -> None:
    """Display in a notebook, print elsewhere."""
    try:
        from IPython import get_ipython

        if get_ipython() is not None:
            from IPython.display import display

            display(obj)
            return
    except ImportError:  # pragma: no cover - IPython ships with the course
        pass
    print(obj)


def _display_name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _qualified_name(obj: Any) -> str:
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else _display_name(obj)


# describing and comparing outputs ----------------------------------------------------------


def _is_groups(value: Any) -> bool:
    return (isinstance(value, (list, tuple)) and bool(value)
            and all(isinstance(g, dict) and "params" in g for g in value))


def describe(value: Any) -> str:
    """A short description: "a tensor of shape (2, 4, 48), float32", "None", "1,234", ..."""
    import numpy as np

    if value is None:
        return "None"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {compare.fmt_shape(value.shape)}, {str(value.dtype).replace('torch.', '')}"
    if isinstance(value, np.ndarray):
        return f"a numpy.ndarray of shape {compare.fmt_shape(value.shape)}, {value.dtype}"
    if isinstance(value, torch.nn.Module):
        params = list(value.parameters())
        trainable = sum(p.requires_grad for p in params)
        return f"a {type(value).__name__} with {trainable} of {len(params)} parameter tensors trainable"
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return compare.fmt_num(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    if _is_record(value):
        return "(" + ", ".join(describe(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if _is_groups(value):
        lrs = [float(g["lr"]) for g in value if isinstance(g.get("lr"), numbers.Real)]
        span = f", lr {min(lrs):.3g} to {max(lrs):.3g}" if lrs else ""
        return f"{len(value)} param group{'s' if len(value) != 1 else ''}{span}"
    if isinstance(value, (tuple, list)) and 0 < len(value) <= 4 and all(
        v is None or isinstance(v, (torch.Tensor, np.ndarray)) for v in value
    ):
        return f"a {type(value).__name__} of " + "; ".join(describe(v) for v in value)
    text = repr(value)
    return f"a {type(value).__name__}: " + (text if len(text) <= 80 else text[:77] + "...")


def _is_record(value: Any) -> bool:
    """A short tuple of plain values, like top_k's (label, probability)."""
    return (isinstance(value, tuple) and 0 < len(value) <= 4
            and all(isinstance(v, (str, numbers.Real)) for v in value))


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-6)
    return type(a) is type(b) and a == b


def _param_names(inputs: Sequence[Any]) -> dict[int, str]:
    """id(parameter) -> name, for the modules among `inputs`."""
    names: dict[int, str] = {}
    for value in inputs:
        if isinstance(value, torch.nn.Module):
            names.update({id(p): n for n, p in value.named_parameters()})
    return names


def _group_lrs(groups: Any, names: dict[int, str]) -> dict[str, float] | None:
    """Parameter name -> lr in `groups`, or None when they do not read that way."""
    out: dict[str, float] = {}
    try:
        for group in groups:
            params = group["params"]
            for p in [params] if isinstance(params, torch.Tensor) else list(params):
                p = p[1] if isinstance(p, tuple) and len(p) == 2 else p
                if id(p) not in names:
                    return None
                out[names[id(p)]] = float(group["lr"])
    except Exception:  # noqa: BLE001 - malformed groups: compared by description only
        return None
    return out


def differences(got: Any, expected: Any, where: str = "", names: tuple[dict, dict] = ({}, {})) -> list[str]:
    """Lines saying how `got` (the learner's) differs from `expected` (the reference's); [] if alike.

    `names` maps parameters to names for (the learner's inputs, the reference's), so that
    param groups built on copies of a model can be compared by name.
    """
    import numpy as np

    what = where or "the output"
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, (torch.Tensor, np.ndarray)):
            return [f"{what}: {describe(got)} where the reference gives {describe(expected)}"]
        return compare.tensor_problems(what, got, expected)
    if isinstance(expected, torch.nn.Module):
        if not isinstance(got, torch.nn.Module):
            return [f"{what}: {describe(got)} where the reference returns the model"]
        mine = {n for n, p in got.named_parameters() if p.requires_grad}
        theirs = {n for n, p in expected.named_parameters() if p.requires_grad}
        lines = []
        if mine - theirs:
            extra = sorted(mine - theirs)
            lines.append(f"trainable in yours, frozen in the reference: {', '.join(extra[:3])}"
                         + (f" and {len(extra) - 3} more" if len(extra) > 3 else ""))
        if theirs - mine:
            lost = sorted(theirs - mine)
            lines.append(f"frozen in yours, trainable in the reference: {', '.join(lost[:3])}"
                         + (f" and {len(lost) - 3} more" if len(lost) > 3 else ""))
        return lines
    if _is_groups(expected):
        reference_lrs = _group_lrs(expected, names[1])
        learner_lrs = _group_lrs(got, names[0]) if _is_groups(got) else None
        if reference_lrs is None or learner_lrs is None:
            return [] if describe(got) == describe(expected) else [f"{what}: {describe(got)}"]
        missing = [n for n in reference_lrs if n not in learner_lrs]
        wrong = [n for n in reference_lrs if n in learner_lrs
                 and not math.isclose(learner_lrs[n], reference_lrs[n], rel_tol=1e-6)]
        lines = [f"{len(missing)} parameters are in none of your groups, e.g. {missing[0]}"] if missing else []
        if wrong:
            n = wrong[0]
            lines.append(f"{len(wrong)} of {len(reference_lrs)} parameters get another lr; the first, {n}: "
                         f"yours {learner_lrs[n]:.3g}, the reference's {reference_lrs[n]:.3g}")
        return lines
    if isinstance(expected, numbers.Real) and not isinstance(expected, bool):
        value = compare.as_count(got)
        if value is None:
            return [f"{what}: {describe(got)} where the reference gives {describe(expected)}"]
        if math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-12):
            return []
        if expected:
            return [f"{what}: yours is {value / expected:.3g} times the reference's"]
        return [f"{what}: yours {describe(got)}, the reference's {describe(expected)}"]
    if _is_record(expected):
        if isinstance(got, (tuple, list)) and len(got) == len(expected) and all(map(_same_value, got, expected)):
            return []
        shown = describe(tuple(got)) if isinstance(got, (tuple, list)) else describe(got)
        return [f"{what}: yours {shown}, the reference's {describe(expected)}"]
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return [f"{what}: {describe(got)} where the reference gives {describe(expected)}"]
        for i, (g, e) in enumerate(zip(got, expected)):
            lines = differences(g, e, f"{where or 'output'}[{i}]", names)
            if lines:
                return lines
        return []
    try:
        same = bool(got == expected)
    except Exception:  # noqa: BLE001 - no equality: compared by description
        same = describe(got) == describe(expected)
    return [] if same else [f"{what}: yours {describe(got)}, the reference's {describe(expected)}"]


# running the learner's version ------------------------------------------------------------


def _copy(value: Any) -> Any:
    """A deep copy that a learner's code may change freely; generators keep their state."""
    memo: dict[int, Any] = {}

    def generators(v: Any, depth: int = 0) -> None:
        if isinstance(v, torch.Generator):
            g = torch.Generator(device=v.device)
            g.set_state(v.get_state())
            memo[id(v)] = g
        elif depth < 3 and isinstance(v, (list, tuple)):
            for item in v:
                generators(item, depth + 1)
        elif depth < 3 and isinstance(v, dict):
            for item in v.values():
                generators(item, depth + 1)

    generators(value)
    return copy.deepcopy(value, memo)


def _rows_for_run(got: Any, error: str | None, expected: Any, names: tuple[dict, dict],
                  printed: list[str], failure: str) -> list[tuple[str, str]]:
    if error is not None:
        rows = [("yours", error), ("reference", describe(expected))]
    else:
        found = differences(got, expected, names=names)
        rows = [("yours", describe(got)), ("reference", describe(expected))]
        if found:
            rows += [("", line) for line in found[:_MAX_LINES]]
        else:
            said = failure if len(failure) <= 160 else failure[:157] + "..."
            rows.append(("", f"the same on this data; your check failed with: {said}"))
    return rows + [("", line) for line in printed[:6]]


def _run_learner(fn: Callable[..., Any], args: tuple, kwargs: dict, names: Sequence[str] | None = None,
                 ) -> tuple[Any, str | None, list[str]]:
    """(output, None, printed) or (None, what went wrong, printed), through the check runner."""
    with compare._run_scope(None) as scope:
        try:
            got = compare.call_learner(fn, args, kwargs, case=_AT, names=names)
        except compare.LearnerError as e:
            return None, f"raised {compare.describe_exception(e.error)}", compare._printed_lines(scope)
        except compare.CheckFailure as e:
            return None, e.message, compare._printed_lines(scope)
        return got, None, compare._printed_lines(scope)


def _compared_function(learner: Callable[..., Any], reference: Callable[..., Any], title: str,
                       failure: str) -> Callable[..., Any]:
    state = {"shown": False, "busy": False}

    @functools.wraps(reference)
    def run(*args: Any, **kwargs: Any) -> Any:
        if state["shown"] or state["busy"] or compare.running_check():
            return reference(*args, **kwargs)
        state["busy"] = True
        try:
            try:
                copies = _copy((args, kwargs))
            except Exception as e:  # noqa: BLE001 - nothing to compare on, say so once
                copies, why = None, f"not run: this cell's inputs cannot be copied ({type(e).__name__})"
            expected = reference(*args, **kwargs)
            state["shown"] = True
            if copies is None:
                _show(SideBySide(title, (("yours", why), ("reference", describe(expected)))))
                return expected
            got, error, printed = _run_learner(learner, copies[0], copies[1])
            names = (_param_names([*copies[0], *copies[1].values()]), _param_names([*args, *kwargs.values()]))
            _show(SideBySide(title, tuple(_rows_for_run(got, error, expected, names, printed, failure))))
            return expected
        finally:
            state["busy"] = False

    run._vit_course_reference = True  # type: ignore[attr-defined]  # checks refuse it
    return run


def _compared_module(learner_cls: type, reference_cls: type, title: str, failure: str) -> type:
    """A subclass of the reference module whose first forward also runs the learner's module."""
    state = {"shown": False, "busy": False}

    def __init__(self: torch.nn.Module, *args: Any, **kwargs: Any) -> None:
        reference_cls.__init__(self, *args, **kwargs)
        try:
            init = _copy((args, kwargs))
        except Exception:  # noqa: BLE001 - the originals, which are only read
            init = (args, kwargs)
        object.__setattr__(self, "_vit_course_init", init)

    def forward(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if state["shown"] or state["busy"] or compare.running_check():
            return reference_cls.forward(self, *args, **kwargs)
        state["busy"] = True
        try:
            copies = _copy((args, kwargs))
            out = reference_cls.forward(self, *args, **kwargs)
            state["shown"] = True
            _show(SideBySide(title, tuple(_module_rows(self, learner_cls, copies, out, failure))))
            return out
        finally:
            state["busy"] = False

    def __reduce_ex__(self: torch.nn.Module, protocol: Any) -> Any:
        # pickled and deep-copied as the reference class itself: this one has no importable name
        state = dict(self.__dict__)
        state.pop("_vit_course_init", None)
        return (_new, (reference_cls,), state)

    namespace = {
        "__init__": __init__, "forward": forward, "__reduce_ex__": __reduce_ex__,
        "__module__": reference_cls.__module__, "__qualname__": reference_cls.__qualname__,
        "__doc__": reference_cls.__doc__, "_vit_course_reference": True,
    }
    return type(reference_cls.__name__, (reference_cls,), namespace)


def _new(cls: type) -> Any:
    """An empty instance of `cls`, filled by its `__setstate__` (unpickling, deep copies)."""
    return cls.__new__(cls)


def _module_rows(reference: torch.nn.Module, learner_cls: type, inputs: tuple[tuple, dict],
                 out: Any, failure: str) -> list[tuple[str, str]]:
    """Build the learner's module as the reference was built, give it the same weights, run it."""
    init_args, init_kwargs = getattr(reference, "_vit_course_init", ((), {}))
    learner, error, printed = _run_learner(learner_cls, init_args, init_kwargs)
    if error is not None:
        return [("yours", f"could not be built: {error}"), ("reference", describe(out))] + [("", p) for p in printed]
    if not isinstance(learner, torch.nn.Module):
        return [("yours", f"built {describe(learner)}, not a torch.nn.Module"), ("reference", describe(out))]
    theirs, mine = reference.state_dict(), learner.state_dict()
    missing = [k for k in theirs if k not in mine]
    misshaped = [k for k in theirs if k in mine and tuple(mine[k].shape) != tuple(theirs[k].shape)]
    if missing or misshaped:
        bad = missing or misshaped
        why = "has no" if missing else "has another shape for"
        return [("yours", f"cannot take the reference's weights: it {why} {', '.join(bad[:4])}"
                          + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")),
                ("reference", describe(out))]
    try:
        device = next(reference.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    with torch.no_grad():
        for k, v in theirs.items():
            mine[k].copy_(v)
    learner.to(device).train(reference.training)
    expected = out
    if reference.training:  # dropout would make the two differ: compare both in eval mode
        learner.eval()
        reference.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                expected = reference(*inputs[0], **inputs[1])
        finally:
            reference.train()
    got, error, printed = _run_learner(learner, *_copy(inputs), names=("x",))
    rows = _rows_for_run(got, error, expected, ({}, {}), printed, failure)
    return [(label, f"{text} (with the reference's weights)" if label == "yours" and error is None else text)
            for label, text in rows]


# the notebooks' entry point ----------------------------------------------------------------


def use_or_reference(result: CheckResult, learner_obj: Any, reference_obj: Any) -> Any:
    """Your object if its check passed, else the reference, so the cells below keep working.

    Prints one line saying which is used, e.g. "Using your patchify." or
    "Your patchify is not finished yet: the cells below use vit_course.patches.patchify."
    After a failed check the reference comes wrapped: its first use also runs your version
    on the same data and shows the two side by side, once.
    """
    name, reference = _display_name(learner_obj), _qualified_name(reference_obj)
    if isinstance(result, CheckResult) and result.passed:
        print(f"Using your {name}.")
        return learner_obj
    if isinstance(result, CheckResult) and result.not_done:
        print(f"Your {name} is not finished yet: the cells below use {reference}.")
        return reference_obj
    check = result.name if isinstance(result, CheckResult) else "its check"
    print(f"Your {name} does not pass {check} yet: the cells below use {reference}.")
    if not isinstance(result, CheckResult) or learner_obj is None or learner_obj is reference_obj:
        return reference_obj
    title = f"Your {name} next to {reference} on {_AT} (shown once; the cells use the reference)"
    if isinstance(reference_obj, type) and issubclass(reference_obj, torch.nn.Module):
        if isinstance(learner_obj, type):
            return _compared_module(learner_obj, reference_obj, title, result.message)
        return reference_obj
    if callable(reference_obj) and callable(learner_obj) and not isinstance(reference_obj, type):
        return _compared_function(learner_obj, reference_obj, title, result.message)
    return reference_obj
