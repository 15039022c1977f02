"""User-facing errors of the analytics core; every message is safe to show as it is.

ReportError
 ├── PeriodError      the period text cannot be understood or is out of bounds
 ├── FilterError      an unknown channel or app was asked for
 ├── RequestError     the arguments of a report command cannot be split (reports/request.py)
 └── DigestRuleError  a /digest rule cannot be understood (bot/digests/rules.py)

The application shell's own errors have a root of their own, AppError (bot/errors.py).

A message is kept as an English template plus its values, so the bot can show it in the
reader's language (the template is the gettext message id).
"""

from collections.abc import Callable, Sequence
from typing import Any

# User input echoed back in an error is cut to this many characters.
ECHO_MAX = 50
# Long lists of known names are cut so the error stays one short message.
KNOWN_SHOWN = 15


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark a message id for `pybabel extract -k N_`; it is translated where it is shown."""
    return message


def echo(value: str) -> str:
    """User input made safe to quote back: whitespace folded, invisible and control characters
    (NUL, zero-width, right-to-left overrides) shown as "?", at most ECHO_MAX characters."""
    flat = " ".join(value.split())
    visible = "".join(char if char.isprintable() else "?" for char in flat)
    return visible if len(visible) <= ECHO_MAX else visible[: ECHO_MAX - 1] + "…"


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts "²", which int() refuses."""
    return text.isascii() and text.isdigit()


class ReportError(Exception):
    """Root of errors whose message a user may read."""

    def __init__(self, template: str, **values: Any) -> None:
        self.template = template
        self.values = values
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.localized(lambda text: text)

    def localized(self, gettext: Callable[[str], str]) -> str:
        # Only a template with values is formatted: a plain message may quote braces typed by
        # the user.
        translated = gettext(self.template)
        return translated.format(**self.values) if self.values else translated


class PeriodError(ReportError):
    pass


class FilterError(ReportError):
    @classmethod
    def unknown(cls, kind: str, value: str, known: Sequence[str]) -> "FilterError":
        shown = ", ".join(known[:KNOWN_SHOWN]) + (", …" if len(known) > KNOWN_SHOWN else "")
        template = (
            N_("Unknown channel “{value}”. Known channels: {known}")
            if kind == "channel"
            else N_("Unknown app “{value}”. Known apps: {known}")
        )
        return cls(template, value=echo(value), known=shown or "—")
