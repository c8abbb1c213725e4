"""The check runner every check uses: call learner code safely, compare with the reference.

A check body calls learner code only through `learner_call` (and `learner_backward` for
modules), so an exception there is told apart from a bug in the check. Each call

- stops after `settings.time_limit_s` seconds (and the calls of one check together after
  `settings.check_time_limit_s`) with a message naming the case,
- captures what the learner's code prints (shown, cut short, under the verdict),
- fails when it changes its inputs in place or torch's global settings (default dtype,
  threads, deterministic algorithms, default device, grad mode, the global RNG's seed),
  and puts those settings back,
- runs without gradients and without touching the caller's RNG state.

A body ends by returning a success message or raising `CheckFailure`; `check` turns
either, or a learner exception, into a `CheckResult` and never lets an exception out. It
refuses the course's own reference ("run your exercise cell first"). `tensor_problems`
requires the reference's type and dtype; `diagnose` runs the known mistakes on the
failing case and names the one whose output the learner's matches. Inputs come from
`randn`, seeded per case, so every message is the same on every run. Used by every
module in `vit_course.checks` (and by `use_or_reference`, which runs learner code once on
a notebook cell's data), so by the check cells of notebooks 01-08.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
import numbers
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .result import TODO, CheckResult

ATOL = 1e-5
RTOL = 1e-5


@dataclass
class Settings:
    """What the runner allows learner code; a grader may change these before it calls checks.

    Args:
        time_limit_s: seconds one call of learner code may run (None: no limit, neither
            per call nor per check). Enforced with SIGALRM, so only in the main thread
            of a process that has it.
        check_time_limit_s: seconds all the calls of one check may run together, so a
            slow answer stops after this long, not after time_limit_s times the cases.
        print_limit: characters of the learner's prints shown under a verdict.
        run_backward: run a backward pass through the learner's modules. A module whose
            forward runs elsewhere can also opt out with `_vit_course_remote = True`.
    """

    time_limit_s: float | None = 15.0
    check_time_limit_s: float | None = 30.0
    print_limit: int = 600
    run_backward: bool = True


settings = Settings()


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
        # raised by the call itself (a signature mismatch), not inside the learner's code;
        # a caller that runs learner code elsewhere says so with `_vit_course_at_call`
        flag = getattr(error, "_vit_course_at_call", None)
        if isinstance(flag, bool):
            self.at_call = flag
        else:
            tb = error.__traceback__
            self.at_call = tb is not None and tb.tb_next is None


class _TimeLimit(BaseException):
    """Raised inside learner code when it runs past `settings.time_limit_s`."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    usable = (
        seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _TimeLimit()

    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, stop)
    previous_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_timer[0] > 0:  # an outer timer was running: let it go on
            left = max(previous_timer[0] - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, previous_timer[1])


class _Printed(io.TextIOBase):
    """A stream that keeps the first characters written to it and counts the rest."""

    def __init__(self, keep: int) -> None:
        self.keep, self.text, self.total = keep, [], 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        kept = sum(len(t) for t in self.text)
        if kept < self.keep:
            self.text.append(s[: self.keep - kept])
        self.total += len(s)
        return len(s)


@dataclass
class _Run:
    """One check (or one side-by-side run) in progress: what learner code printed, and
    the monotonic time by which all its calls must have ended (None: no such limit)."""

    printed: _Printed
    deadline: float | None = None


# the checks in progress, innermost last
_runs: list[_Run] = []


@contextlib.contextmanager
def _run_scope(budget: float | None) -> Iterator[_Run]:
    """A `_Run` for the duration of one check; `budget` seconds for all its learner calls."""
    usable = budget is not None and settings.time_limit_s is not None
    run = _Run(_Printed(settings.print_limit), time.monotonic() + budget if usable else None)
    _runs.append(run)
    try:
        yield run
    finally:
        _runs.remove(run)


def running_check() -> bool:
    """True while a check (or a side-by-side run of learner code) is in progress."""
    return bool(_runs)


def _printed_lines(run: _Run | None = None) -> list[str]:
    run = run or (_runs[-1] if _runs else None)
    if run is None or not run.printed.total:
        return []
    out = run.printed
    kept = "".join(out.text)
    text = kept.rstrip("\n")
    lines = [f"your code printed {out.total:,} characters" + (f"; the first {len(kept):,}:" if out.total > len(kept) else ":")]
    lines += ["  | " + line for line in text.splitlines()[:12]]
    return lines


def _global_state() -> dict[str, Any]:
    """torch's process-wide settings that learner code could change by accident."""
    state = {
        "default dtype": torch.get_default_dtype(),
        "number of threads": torch.get_num_threads(),
        "deterministic algorithms": (
            torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
        ),
        "grad mode": torch.is_grad_enabled(),
    }
    if hasattr(torch, "get_default_device"):
        state["default device"] = str(torch.get_default_device())
    return state


_SETTERS = {
    "default dtype": ("torch.set_default_dtype", lambda v: torch.set_default_dtype(v)),
    "number of threads": ("torch.set_num_threads", lambda v: torch.set_num_threads(v)),
    "deterministic algorithms": (
        "torch.use_deterministic_algorithms", lambda v: torch.use_deterministic_algorithms(v[0], warn_only=v[1])
    ),
    "grad mode": ("torch.set_grad_enabled", lambda v: torch.set_grad_enabled(v)),
    "default device": ("torch.set_default_device", lambda v: torch.set_default_device(v)),
}


def _restore(before: dict[str, Any]) -> list[str]:
    """Put back every setting that changed since `before`; the names of those that did."""
    changed = []
    after = _global_state()
    for key, value in before.items():
        if after.get(key) != value:
            changed.append(f"{key} {_show_setting(value)} -> {_show_setting(after.get(key))} ({_SETTERS[key][0]})")
            _SETTERS[key][1](value)
    return changed


def _show_setting(value: Any) -> str:
    return str(value).replace("torch.", "") if not isinstance(value, tuple) else str(value[0])


def _snapshot(value: Any, depth: int = 0) -> Any:
    """A copy of the tensors in `value` (tensors, modules, PIL images, lists, dicts), else None."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, torch.nn.Module):
        return {k: v.detach().clone() for k, v in value.state_dict().items()}
    if hasattr(value, "tobytes") and hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        return (value.mode, value.size, value.tobytes())
    if depth < 2 and isinstance(value, (list, tuple)):
        return [_snapshot(v, depth + 1) for v in value]
    if depth < 2 and isinstance(value, dict):
        return {k: _snapshot(v, depth + 1) for k, v in value.items()}
    return None


def _changes(value: Any, before: Any, what: str) -> list[str]:
    """Where `value` differs from its `_snapshot`: e.g. ["q", "conv's weight"]."""
    if before is None:
        return []
    if isinstance(value, torch.Tensor):
        same = value.shape == before.shape and bool(torch.equal(value.detach(), before)) if value.dtype == before.dtype else False
        if not same and value.is_floating_point() and value.shape == before.shape:
            same = bool(torch.equal(value.detach().isnan(), before.isnan())) and bool(
                (value.detach().nan_to_num() == before.nan_to_num()).all()
            )
        return [] if same else [what]
    if isinstance(value, torch.nn.Module):
        now = value.state_dict()
        return [f"{what}'s {k}" for k, v in before.items() if k not in now or _changes(now[k], v, k)]
    if isinstance(before, tuple):  # a PIL image
        return [] if (value.mode, value.size, value.tobytes()) == before else [what]
    if isinstance(before, list) and isinstance(value, (list, tuple)):
        if len(value) != len(before):
            return [what]
        return [c for i, (v, b) in enumerate(zip(value, before)) for c in _changes(v, b, f"{what}[{i}]")]
    if isinstance(before, dict) and isinstance(value, dict):
        return [c for k, b in before.items() for c in (_changes(value[k], b, f"{what}[{k!r}]") if k in value else [what])]
    return []


def _input_names(args: tuple, kwargs: dict, names: Sequence[str] | None) -> list[tuple[str, Any]]:
    named = [(names[i] if names and i < len(names) else f"argument {i + 1}", a) for i, a in enumerate(args)]
    return named + list(kwargs.items())


def _call_limit() -> float | None:
    """Seconds the next learner call may run: the per-call limit, or what is left of the check's."""
    limit = settings.time_limit_s
    deadline = _runs[-1].deadline if _runs else None
    if limit is None or deadline is None:
        return limit
    return max(min(limit, deadline - time.monotonic()), 1e-3)


def learner_call(fn: Callable[..., Any], *args: Any, case: str = "", names: Sequence[str] | None = None,
                 grad: bool = False, **kwargs: Any) -> Any:
    """Call learner code `fn(*args, **kwargs)`: the one door through which checks run it.

    Without gradients unless `grad`, without touching the caller's RNG state, under the
    time limit, with its prints captured. `names` name the positional arguments in
    messages ("q", "k", "v"). Raises `LearnerError` when the learner's code raises,
    `CheckFailure` when it ran too long or changed its inputs or torch's settings.
    """
    return call_learner(fn, args, kwargs, case=case, names=names, grad=grad)


def call_learner(fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
                 case: str = "", names: Sequence[str] | None = None, grad: bool = False) -> Any:
    """`learner_call` with the arguments as a tuple and a dict, so that any keyword reaches `fn`."""
    args, kwargs = tuple(args), dict(kwargs or {})
    inputs = _input_names(args, kwargs, names)
    snapshots = [_snapshot(value) for _, value in inputs]
    before = _global_state()
    stream = _runs[-1].printed if _runs else _Printed(0)
    limit = _call_limit()
    timed_out, inside = False, []
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
            seed = torch.initial_seed()
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
            stack.enter_context(_time_limit(limit))
            try:
                result = fn(*args, **kwargs)
            except _TimeLimit:
                timed_out = True
            # changes the contexts above undo on exit, so that the settings after it cannot show
            if torch.is_grad_enabled() != grad:
                inside.append(f"grad mode {grad} -> {torch.is_grad_enabled()} (torch.set_grad_enabled)")
            if torch.initial_seed() != seed:
                inside.append(f"the global random generator reseeded with {torch.initial_seed()} (torch.manual_seed)")
    except (KeyboardInterrupt, SystemExit):
        _restore(before)
        raise
    except _TimeLimit:  # the alarm fired between the call's end and the timer's cancel
        timed_out = True
    except BaseException as error:  # a learner's bug, whatever it is
        _restore(before)
        raise LearnerError(error, case) from error
    changed = inside + _restore(before)
    if timed_out:
        overall = limit is not None and settings.time_limit_s is not None and limit < settings.time_limit_s
        budget = settings.check_time_limit_s if overall else settings.time_limit_s
        raise CheckFailure(
            f"your code ran for more than {budget:g} s in all over the check's cases and was stopped on "
            f"{case or 'a case'}" if overall else
            f"your code ran for more than {budget:g} s on {case or 'a case'} and was stopped",
            details=(f"on {case}",) if case else (),
            cause="an endless loop, or far more work than needed: every input the check passes is tiny",
        )
    if changed:
        raise CheckFailure(
            "your code changed torch's global settings (the check put them back): " + "; ".join(changed),
            details=(f"on {case}",) if case else (),
            cause="a function should not change settings for the whole notebook: remove the call from it"
                  + (" (pass a torch.Generator to draw reproducible numbers)" if "reseeded" in " ".join(changed) else ""),
        )
    modified = [c for (what, value), snap in zip(inputs, snapshots) for c in _changes(value, snap, what)]
    if modified:
        shown = ", ".join(modified[:4]) + (f" and {len(modified) - 4} more" if len(modified) > 4 else "")
        raise CheckFailure(
            f"your code changed its input in place: {shown}",
            details=(f"on {case}",) if case else (),
            cause="an in-place operation on an input (q *= ..., x += ..., x[...] = ..., .add_(), .zero_()) "
                  "changes the caller's tensor: make a new one instead, q = q * ...",
        )
    return result


def learner_backward(module: Any, *args: Any, case: str = "", expected: Sequence[str] = ()) -> None:
    """Run `module(*args)` with gradients and backpropagate a scalar made from its output.

    Fails when backward raises (an in-place operation autograd could not undo) or when a
    parameter named in `expected` gets no gradient. Skipped when `settings.run_backward`
    is off or the module says its forward runs elsewhere (`_vit_course_remote`).
    """
    if not settings.run_backward or getattr(module, "_vit_course_remote", False):
        return
    if not isinstance(module, torch.nn.Module):
        return
    for p in module.parameters():
        p.grad = None

    def forward_backward(*inputs: Any) -> bool:
        out = module(*inputs)
        if isinstance(out, (tuple, list)) and out:
            out = out[0]
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return False
        weights = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
        (out * weights).sum().backward()
        return True

    try:
        flows = learner_call(forward_backward, *args, case=case, names=("x",), grad=True)
    except LearnerError as e:
        if "inplace" in str(e.error) or "in-place" in str(e.error):
            raise CheckFailure(
                f"forward is right, but backward fails: {describe_exception(e.error)}",
                details=(f"on {case}",) if case else (),
                cause="an in-place operation (x += ..., x.add_(...), an activation with inplace=True) overwrote a "
                      "tensor autograd needs: write x = x + attn(norm1(x))",
            ) from None
        raise
    if not flows:
        raise CheckFailure(
            "forward is right, but no gradient flows from its output back to the parameters",
            details=(f"on {case}",) if case else (),
            cause="forward runs under torch.no_grad() or leaves torch (.detach(), .data, .item(), numpy): "
                  "keep the whole computation in torch",
        )
    params = dict(module.named_parameters())
    missing = [n for n in expected if n in params and params[n].requires_grad and params[n].grad is None]
    for p in module.parameters():
        p.grad = None
    if missing:
        raise CheckFailure(
            f"forward is right, but backward gives no gradient to {', '.join(missing[:4])}"
            + (f" and {len(missing) - 4} more" if len(missing) > 4 else ""),
            details=(f"on {case}",) if case else (),
            cause="these parameters are reached through .detach() or .data (or not used): use them directly",
        )


def describe_exception(error: BaseException) -> str:
    """`TypeError: message`, the message cut to its first 3 lines and 300 characters."""
    text = str(error).strip()
    lines = text.splitlines()
    if len(lines) > 3:
        text = "\n".join(lines[:3]) + " ..."
    if len(text) > 300:
        text = text[:300] + " ..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # pragma: no cover - a typo in a check
        return None


REFUSED = "this is vit_course's reference, not your code: run your exercise cell first"


def _is_wrapped_reference(obj: Any) -> bool:
    try:
        return getattr(obj, "_vit_course_reference", None) is True
    except Exception:  # noqa: BLE001 - an object whose attributes raise is not ours
        return False


def _qualified(obj: Any) -> str:
    module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return f"{module}.{name}" if module and name else type(obj).__name__


def check(exercise: str, hints: Callable[[BaseException], str | None] | None = None,
          reference: str | Sequence[str] = ()) -> Callable[[Callable[..., str]], Callable[..., CheckResult]]:
    """Turn a check body into a `check_*` function that always returns a `CheckResult`.

    `exercise` names the learner's object in messages ("patchify"). `hints(error)` may
    return a likely cause for an exception raised by learner code. `reference` names the
    course's answers ("vit_course.patches:patchify"): passing one of them is refused, and
    so is what `use_or_reference` returns after a failed check (the reference, wrapped).
    """
    references = (reference,) if isinstance(reference, str) else tuple(reference)

    def decorate(body: Callable[..., str]) -> Callable[..., CheckResult]:
        name = body.__name__

        @functools.wraps(body)
        def run(obj: Any, *args: Any, **kwargs: Any) -> CheckResult:
            if obj is None:
                return CheckResult(False, f"expected your {exercise}, got None", name)
            if _is_wrapped_reference(obj):
                return CheckResult(False, REFUSED, name, details=(
                    f"{_qualified(obj)} is what use_or_reference returned: the course's answer, not yours",))
            for path in references:
                if obj is _resolve(path):
                    return CheckResult(False, REFUSED, name, details=(f"{path.replace(':', '.')} is the course's answer",))
            before = _global_state()
            try:
                with _run_scope(settings.check_time_limit_s) as scope:
                    result = _run(body, name, obj, args, kwargs)
                printed = _printed_lines(scope)
            finally:
                _restore(before)
            if printed:
                result = CheckResult(result.passed, result.message, result.name, status=result.status,
                                     details=(*result.details, *printed), cause=result.cause)
            return result

        def _run(body: Callable[..., str], name: str, obj: Any, args: tuple, kwargs: dict) -> CheckResult:
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
                # a wrong type or dtype first: numbers that look like a known mistake may be a coincidence
                cause = type_cause(e.details) or e.cause
                return CheckResult(False, e.message, name, details=e.details, cause=cause)
            except Exception as e:  # a bug in the check, not in the learner's code
                return CheckResult(
                    False,
                    f"the check itself failed with {describe_exception(e)} (please report this to the course authors)",
                    name,
                )
            return CheckResult(True, message, name)

        return run

    return decorate


def as_count(got: Any) -> float | None:
    """`got` as a plain number when it is one (int, float, numpy or one-element tensor), else None."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        return None
    return int(got) if isinstance(got, numbers.Integral) else float(got)


def randn(*shape: int, seed: int, std: float = 1.0) -> torch.Tensor:
    """Normal noise from a generator of its own: the same numbers on every run."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator) * std


def fmt_shape(shape: Sequence[int]) -> str:
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


def _dtype(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def type_cause(lines: Sequence[str]) -> str | None:
    """The cause for the lines `tensor_problems` gives a wrong type or dtype."""
    text = " ".join(lines)
    if "you returned a numpy." in text:
        return ("the result is a numpy array: the next cells need a torch.Tensor, so stay in torch "
                "(torch.from_numpy(array) converts one)")
    if "you returned a torch.Tensor / " in text:
        return ("the result has another dtype than the reference: numpy and Python floats default to float64; "
                "compute in the input's dtype or convert with .to(dtype)")
    return None


def tensor_problems(what: str, got: Any, expected: torch.Tensor, atol: float = ATOL, rtol: float = RTOL) -> list[str]:
    """Lines saying how `got` differs from `expected`; empty when they match.

    `got` must be a torch.Tensor of the reference's dtype: a numpy array or a float64
    tensor of the right numbers breaks the cells that use it next.
    """
    tensor, expected = as_float_tensor(got), expected.detach()
    if tensor is None or not isinstance(got, torch.Tensor):
        kind = f"a {type(got).__module__.split('.')[0]}.{type(got).__name__}" if tensor is not None else shape_of(got)
        if tensor is not None:  # a numpy array
            kind += f" / {got.dtype}"
        lines = [f"{what} should be a torch.Tensor of shape {fmt_shape(expected.shape)}, you returned {kind}"]
        if tensor is not None and close(tensor, expected, atol, rtol):
            lines.append("its values match the reference: only the type is wrong")
        return lines
    if tensor.shape != expected.shape:
        return [f"{what} has shape {fmt_shape(tensor.shape)}, expected {fmt_shape(expected.shape)}"]
    if got.dtype != expected.dtype:
        lines = [f"{what} has dtype {_dtype(got.dtype)}, expected {_dtype(expected.dtype)}: "
                 f"you returned a torch.Tensor / {_dtype(got.dtype)}"]
        if close(tensor, expected, atol, rtol):
            lines.append("its values match the reference: only the dtype is wrong")
        return lines
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
