"""What a check returns: a verdict that reads well as text and as a coloured panel.

A `CheckResult` is truthy when the exercise passed. In a notebook it shows as a green
(passed), red (failed) or amber (not done yet) panel; as text it is one line, then
indented details. Everything in it is deterministic (fixed inputs, no timings), so
the outputs that nbval compares never change from one run to the next.

Used by every notebook (notebooks 01-10).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

PASS = "pass"
FAIL = "fail"
TODO = "todo"

_SYMBOL = {PASS: "✓", FAIL: "✗", TODO: "○"}
_VERB = {PASS: "passed", FAIL: "failed", TODO: "not done yet"}
# (border, background, text) per status
_COLOURS = {
    PASS: ("#2e7d32", "#e8f5e9", "#1b5e20"),
    FAIL: ("#c62828", "#ffebee", "#b71c1c"),
    TODO: ("#ef8f00", "#fff8e1", "#7a4f01"),
}


@dataclass(frozen=True)
class CheckResult:
    """The verdict of one `check_*` function.

    Args:
        passed: True when every case matched the reference.
        message: one sentence saying what was checked or what went wrong.
        name: the check's name, e.g. "check_patchify".
        status: "pass", "fail" or "todo" (the exercise still raises NotImplementedError);
            derived from `passed` when left empty.
        details: extra lines: which case, which output, where it first differs.
        cause: the likely cause when the wrong output matches a known mistake.
    """

    passed: bool
    message: str
    name: str
    status: str = ""
    details: tuple[str, ...] = field(default_factory=tuple)
    cause: str | None = None

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", PASS if self.passed else FAIL)
        if self.status not in _SYMBOL:
            raise ValueError(f"status must be one of {sorted(_SYMBOL)}, got {self.status!r}")
        if self.passed != (self.status == PASS):
            raise ValueError(f"passed={self.passed} contradicts status={self.status!r}")
        object.__setattr__(self, "details", tuple(self.details))

    @property
    def not_done(self) -> bool:
        """True while the exercise is still the `raise NotImplementedError` stub."""
        return self.status == TODO

    def __bool__(self) -> bool:
        return self.passed

    def headline(self) -> str:
        return f"{_SYMBOL[self.status]} {self.name} {_VERB[self.status]}: {self.message}"

    def lines(self) -> list[str]:
        """The details, then the likely cause, as they appear under the headline."""
        out = list(self.details)
        if self.cause:
            out.append(f"likely cause: {self.cause}")
        return out

    def __str__(self) -> str:
        return "\n".join([self.headline(), *("    " + line for line in self.lines())])

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        border, background, text = _COLOURS[self.status]
        title = f"{_SYMBOL[self.status]} {html.escape(self.name)} {_VERB[self.status]}"
        parts = [
            f'<div style="border-left: 6px solid {border}; background: {background}; color: {text}; '
            'padding: 0.5em 0.8em; margin: 0.3em 0; border-radius: 3px; font-family: sans-serif;">',
            f"<strong>{title}</strong>: {html.escape(self.message)}",
        ]
        if self.details:
            body = "\n".join(html.escape(line) for line in self.details)
            parts.append(f'<pre style="margin: 0.4em 0 0 0; background: transparent; color: {text};">{body}</pre>')
        if self.cause:
            parts.append(f'<div style="margin-top: 0.4em;"><strong>Likely cause:</strong> {html.escape(self.cause)}</div>')
        parts.append("</div>")
        return "".join(parts)
