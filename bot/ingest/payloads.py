"""Reading untrusted webhook JSON: bounded ids, sane instants, channel names, one-line errors."""

from datetime import UTC, datetime
from typing import Any

from reports.schema import NAME_MAX

# A desk's timestamps before this are not real events (a zero, a typo), and neither are
# timestamps in the far future.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_ID_INT = 10**18


class PayloadError(ValueError):
    """The body is JSON but not the expected shape; the message says what is wrong, briefly."""


def mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"{what} must be a JSON object")
    return value


def identifier(value: Any, what: str) -> str:
    """An id as text: a non-empty string of at most 200 characters, or a whole number."""
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{what} is missing")
    if isinstance(value, int):
        if abs(value) >= MAX_ID_INT:
            raise PayloadError(f"{what} is too large")
        return str(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise PayloadError(f"{what} is empty")
        if len(text) > NAME_MAX:
            raise PayloadError(f"{what} is longer than {NAME_MAX} characters")
        if any(ord(char) < 32 for char in text) or ":" in text:
            # ":" separates the parts of the appeal id built from it.
            raise PayloadError(f"{what} contains a control character or ':'")
        return encodable(text, what)
    raise PayloadError(f"{what} must be a string or a whole number")


def encodable(text: str, what: str) -> str:
    """The text, if it can be stored: JSON's "\\ud800" parses to a lone surrogate, which
    neither SQLite's nor PostgreSQL's driver can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PayloadError(f"{what} is not valid Unicode (a lone surrogate)") from None
    return text


def instant(value: Any, what: str) -> datetime:
    """Unix seconds or an ISO 8601 string with an offset, between 2000 and 2100."""
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{what} is missing")
    if isinstance(value, int | float):
        if not EARLIEST.timestamp() <= value < LATEST.timestamp():
            raise PayloadError(f"{what} is outside 2000-2099")
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str) and len(value) <= 64:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise PayloadError(f"{what} is not a timestamp") from None
        if moment.tzinfo is None:
            raise PayloadError(f"{what} has no UTC offset")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            # 0001-01-01T00:00+14:00 is before datetime.min in UTC (9999 at -14:00 after max).
            raise PayloadError(f"{what} is outside 2000-2099") from None
    else:
        raise PayloadError(f"{what} must be Unix seconds or an ISO 8601 string")
    if not EARLIEST <= moment < LATEST:
        raise PayloadError(f"{what} is outside 2000-2099")
    return moment


def channel_name(value: Any, known: dict[str, str]) -> str:
    """The product's channel name for a desk's channel type; unknown types kept, lower-cased."""
    if not isinstance(value, str) or not value.strip():
        raise PayloadError("channel must be a non-empty string")
    lowered = encodable(value.strip().lower(), "channel")
    if len(lowered) > NAME_MAX:
        raise PayloadError(f"channel is longer than {NAME_MAX} characters")
    return known.get(lowered, lowered)
