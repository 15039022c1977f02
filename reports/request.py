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
    period_words = []
    for word in words:
        key, sep, value = word.partition("=")
        field = FILTER_KEYS.get(key.strip().casefold()) if sep else None
        if field is None:
            period_words.append(word)
            continue
        if field in values:
            raise RequestError(N_("{key}= is given twice."), key=field)
        value = value.strip()
        if not value or len(value) > NAME_MAX:
            raise RequestError(
                N_("{key}= needs a name of 1 to {limit} characters."), key=field, limit=NAME_MAX
            )
        values[field] = value
    return ReportRequest(
        period_text=" ".join(period_words) or default_period,
        filter=ReportFilter(channel=values.get("channel"), app=values.get("app")),
    )
