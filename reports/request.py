"""The argument grammar of a report request: a period plus optional channel= and app= filters."""

import shlex
from dataclasses import dataclass

from reports.errors import N_, ReportError, echo
from reports.model import ReportFilter
from reports.schema import NAME_MAX

FILTER_KEYS = {
    "channel": "channel",
    "канал": "channel",
    "app": "app",
    "приложение": "app",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportRequest:
    period_text: str
    filter: ReportFilter


class RequestError(ReportError):
    pass


def parse_request(arguments: str, *, default_period: str) -> ReportRequest:
    """Split `week channel=whatsapp app="Sales & Partners"` into a period text and a filter."""
    try:
        words = shlex.split(arguments)
    except ValueError:
        raise RequestError(N_("Unbalanced quotes in “{text}”."), text=echo(arguments)) from None
    values: dict[str, str] = {}
    period_words: list[str] = []
    # Words right after a filter are where an unquoted name with spaces (app=R&D <beta>) split:
    # the first such run, with the filter it follows.
    latest: str | None = None
    loose: list[str] = []
    split: tuple[str, list[str]] | None = None
    before_filters = 0
    for word in words:
        key, sep, value = word.partition("=")
        field = FILTER_KEYS.get(key.strip().casefold()) if sep else None
        if field is None:
            period_words.append(word)
            if latest is None:
                before_filters += 1
            else:
                loose.append(word)
            continue
        if field in values:
            raise RequestError(N_("{key}= is given twice."), key=field)
        value = value.strip()
        if not value or len(value) > NAME_MAX:
            raise RequestError(
                N_("{key}= needs a name of 1 to {limit} characters."), key=field, limit=NAME_MAX
            )
        values[field] = value
        if latest is not None and loose and split is None:
            split = (latest, loose)
        latest, loose = field, []
    if latest is not None and loose and split is None:
        split = (latest, loose)
    # A period may follow the filters (app=Sales week), but not a period given before them.
    if split is not None and (before_filters or _not_a_period(split[1])):
        field, rest = split
        raise RequestError(
            N_("A name with spaces goes in quotes: {example}"),
            example=echo(f'{field}="{values[field]} {" ".join(rest)}"'),
        )
    return ReportRequest(
        period_text=" ".join(period_words) or default_period,
        filter=ReportFilter(channel=values.get("channel"), app=values.get("app")),
    )


def _not_a_period(words: list[str]) -> bool:
    """Words no period is written with: anything but letters, digits and . - – — : ."""
    return any(not (char.isalnum() or char in ".-–—:") for char in "".join(words))
