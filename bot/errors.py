"""User-facing errors of the application shell; every message is safe to show as it is.

AppError
 ├── SettingsError     a setting has a value the bot cannot use (bot/config.py)
 ├── ImportFileError   a file was not imported; lists its problems (bot/ingest/files.py)
 ├── DemoRefused       demo data would land on existing data (bot/ingest/demo.py)
 └── CliError          a command-line argument or the database stopped a command (bot/cli.py)

The analytics core has its own root, ReportError (reports/errors.py); the CLI catches those two
roots and nothing else. Like ReportError, a message is kept as an English template plus its
values, so it can be shown in the reader's language (the template is the gettext message id).
"""

import gettext
from typing import Any

from reports.errors import N_


def N_plural(singular: str, plural: str) -> tuple[str, str]:  # noqa: N802 - a gettext marker
    """Mark a message with a plural form for `pybabel extract -k N_plural:1,2`."""
    return singular, plural


class AppError(Exception):
    """Root of the shell's errors whose message a user or an operator may read."""

    # The CLI puts "error: " before a one-line message; a multi-line report has its own heading.
    labelled = True

    def __init__(
        self, template: str, *, plural: str | None = None, count: int = 0, **values: Any
    ) -> None:
        self.template = template
        # A message with a number in it has a plural form too, chosen by the catalog's rules.
        self.plural = plural
        self.count = count
        self.values = values
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return self.localized(gettext.NullTranslations())

    def localized(self, translations: gettext.NullTranslations) -> str:
        if self.plural is not None:
            text = translations.ngettext(self.template, self.plural, self.count)
            return text.format(count=self.count, **self.values)
        # Only a template with values is formatted: a plain message may quote braces.
        translated = translations.gettext(self.template)
        return translated.format(**self.values) if self.values else translated


class CliError(AppError):
    """A one-line error for the terminal."""


__all__ = ["N_", "AppError", "CliError", "N_plural"]
