"""The machinery every check shares: call learner code safely, compare with the reference.

A check body calls learner code only through `learner_call`, so an exception there is
told apart from a bug in the check. It ends by returning a success message or raising
`CheckFailure`; `check` turns either, or a learner exception, into a `CheckResult` and
never lets an exception out. `diagnose` runs the known mistakes on the failing case and
names the one whose output the learner's matches. Inputs come from `randn`, seeded per
case, so every message is the same on every run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .result import TODO, CheckResult

ATOL = 1e-5
RTOL = 1e-5


class CheckFailure(Exception):
    """Raised by a check body: the learner's object ran but gave a wrong answer."""

    def __init__(self, message: str, details: Sequence[str] = (), cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)
        self.cause = cause


class LearnerError(Exception):
    """Learner code raised `error` while running `case`."""

    def __init__(self, error: BaseException, case: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.case = case
        # raised by the call itself (a signature mismatch), not inside the learner's code
        tb = error.__traceback__
        self.at_call = tb is not None and tb.tb_next is None


def learner_call(fn: Callable, *args, case: str = "", **kwargs) -> Any:
    """Call learner code without gradients and without touching the global RNG state."""
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            return fn(*args, **kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # a learner's bug, whatever it is
        raise LearnerError(error, case) from error


def describe_exception(error: BaseException) -> str:
    """`TypeError: message`, the message cut to its first 3 lines and 300 characters."""
    text = str(error).strip()
    lines = text.splitlines()
    if len(lines) > 3:
        text = "\n".join(lines[:3]) + " ..."
    if len(text) > 300:
        text = text[:300] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def check(exercise: str, hints: Callable[[BaseException], str | None] | None = None):
    """Turn a check body into a `check_*` function that always returns a `CheckResult`.

    `exercise` names the learner's object in messages ("patchify"). `hints(error)` may
    return a likely cause for an exception raised by learner code.
    """

    def decorate(body: Callable[..., str]) -> Callable[..., CheckResult]:
        name = body.__name__

        @functools.wraps(body)
        def run(obj, *args, **kwargs) -> CheckResult:
            if obj is None:
                return CheckResult(False, f"expected your {exercise}, got None", name)
            try:
                # a fixed seed inside, the caller's RNG state untouched outside
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    message = body(obj, *args, **kwargs)
            except LearnerError as e:
                if isinstance(e.error, NotImplementedError):
                    return CheckResult(
                        False,
                        f"{exercise} still raises NotImplementedError: replace the `raise` with your code, "
                        "then run this cell again",
                        name,
                        status=TODO,
                    )
                cause = hints(e.error) if hints else None
                if cause is None and isinstance(e.error, TypeError) and e.at_call:
                    usage = (body.__doc__ or "").split(":")[0].strip()
                    usage = f" as {usage}" if usage.startswith("`") else ""
                    cause = f"your {exercise} does not take the arguments the check passes{usage}: keep the given signature"
                details = (f"on {e.case}",) if e.case else ()
                return CheckResult(False, f"your code raised {describe_exception(e.error)}", name, details=details, cause=cause)
            except CheckFailure as e:
                return CheckResult(False, e.message, name, details=e.details, cause=e.cause)
            except Exception as e:  # a bug in the check, not in the learner's code
                return CheckResult(
                    False,
                    f"the check itself failed with {describe_exception(e)} (please report this to the course authors)",
                    name,
                )
            return CheckResult(True, message, name)

        return run

    return decorate


def randn(*shape: int, seed: int, std: float = 1.0) -> torch.Tensor:
    """Normal noise from a generator of its own: the same numbers on every run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator) * std


def fmt_shape(shape) -> str:
    return str(tuple(int(s) for s in shape))


def fmt_num(x: float) -> str:
    return f"{float(x):.5g}"


def shape_of(x: Any) -> str:
    """A tensor's shape, or the type of whatever else it is."""
    if isinstance(x, torch.Tensor):
        return fmt_shape(x.shape)
    return f"a {type(x).__name__}"


def as_float_tensor(x: Any) -> torch.Tensor | None:
    """`x` as a float tensor if it is a tensor or array-like of numbers, else None."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64 if x.dtype == torch.float64 else torch.float32)
    try:
        import numpy as np

        if isinstance(x, np.ndarray):
            return torch.from_numpy(np.asarray(x, dtype=np.float32))
    except ImportError:  # pragma: no cover
        pass
    return None


def close(got: Any, expected: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> bool:
    """Same shape and all values within tolerance; never raises."""
    got = as_float_tensor(got)
    if got is None or got.shape != expected.shape:
        return False
    expected = expected.detach().to(got.dtype)
    return bool(torch.isclose(got, expected, atol=atol, rtol=rtol).all())


def max_abs_diff(got: Any, expected: torch.Tensor) -> float:
    got = as_float_tensor(got)
    if got is None or got.shape != expected.shape:
        return math.inf
    diff = (got.double() - expected.detach().double()).abs()
    return float(diff.nan_to_num(nan=math.inf).max()) if diff.numel() else 0.0


def tensor_problems(what: str, got: Any, expected: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> list[str]:
    """Lines saying how `got` differs from `expected`; empty when they match."""
    tensor, expected = as_float_tensor(got), expected.detach()
    if tensor is None:
        return [f"{what} should be a torch.Tensor of shape {fmt_shape(expected.shape)}, got {shape_of(got)}"]
    if tensor.shape != expected.shape:
        return [f"{what} has shape {fmt_shape(tensor.shape)}, expected {fmt_shape(expected.shape)}"]
    expected = expected.to(tensor.dtype)
    ok = torch.isclose(tensor, expected, atol=atol, rtol=rtol)
    if bool(ok.all()):
        return []
    bad = (~ok).nonzero()
    index = tuple(int(i) for i in bad[0])
    lines = [
        f"{what}: {len(bad)} of {ok.numel()} values differ; the first at index {index}",
        f"expected {fmt_num(expected[index])}, got {fmt_num(tensor[index])}; "
        f"largest abs difference {fmt_num(max_abs_diff(tensor, expected))}",
    ]
    if bool(torch.isnan(tensor).any()):
        lines.append(f"{what} contains NaN")
    return lines


def diagnose(got: Any, variants: Sequence[tuple[str, Callable[[], Any]]], matches: Callable[[Any, Any], float]) -> str | None:
    """The cause of the variant closest to `got` among those it matches, else None.

    `variants` are (cause, thunk) pairs; a thunk computes what that mistake outputs on
    the failing case (one that raises is skipped). `matches(got, variant_output)` gives
    a distance, `math.inf` when they do not match. The closest one wins, so a mistake
    that is nearly invisible on this case cannot mask the one that is.
    """
    best, best_distance = None, math.inf
    for cause, thunk in variants:
        try:
            with torch.no_grad():
                output = thunk()
            distance = matches(got, output)
        except Exception:
            continue
        if distance < best_distance:
            best, best_distance = cause, distance
    return best


def tensor_distance(atol: float = ATOL, rtol: float = RTOL) -> Callable[[Any, Any], float]:
    """A `diagnose` distance for single tensors: largest abs difference, inf unless close."""

    def distance(got: Any, output: torch.Tensor) -> float:
        return max_abs_diff(got, output) if close(got, output, atol, rtol) else math.inf

    return distance


def tuple_distance(atol: float = ATOL, rtol: float = RTOL) -> Callable[[Any, Any], float]:
    """A `diagnose` distance for tuples of tensors: every part must be close."""

    def distance(got: Any, output: tuple) -> float:
        if not isinstance(got, (tuple, list)) or len(got) != len(output):
            return math.inf
        if not all(close(g, o, atol, rtol) for g, o in zip(got, output)):
            return math.inf
        return max(max_abs_diff(g, o) for g, o in zip(got, output))

    return distance


def copy_weights(learner: torch.nn.Module, reference: torch.nn.Module, what: str, layout: str) -> None:
    """Copy every reference parameter into the learner's parameter of the same name.

    Raises `CheckFailure` naming the missing or misshaped ones; `layout` tells the
    learner which names the check expects.
    """
    if not isinstance(learner, torch.nn.Module):
        raise CheckFailure(f"your {what} should be a torch.nn.Module, got a {type(learner).__name__}")
    theirs = dict(learner.named_parameters())
    missing = [name for name in reference.state_dict() if name not in theirs]
    if missing:
        shown = ", ".join(missing[:6]) + (", ..." if len(missing) > 6 else "")
        raise CheckFailure(
            f"your {what} is missing parameters the check copies the reference weights into: {shown}",
            details=(f"expected names: {layout}",),
        )
    with torch.no_grad():
        for name, value in reference.state_dict().items():
            if theirs[name].shape != value.shape:
                raise CheckFailure(
                    f"your {what}'s {name} has shape {fmt_shape(theirs[name].shape)}, expected {fmt_shape(value.shape)}"
                )
            theirs[name].copy_(value)


def fail_with_diagnosis(
    message: str,
    problems: Sequence[str],
    case: str,
    cause: str | None,
) -> None:
    """Raise the `CheckFailure` for a wrong output on `case`."""
    raise CheckFailure(message, details=(f"on {case}", *problems), cause=cause)
