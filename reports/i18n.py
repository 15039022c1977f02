"""Translations (gettext catalogs in locales/) and locale-aware number, percent, date formats."""

import functools
import gettext
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from babel.dates import format_date as babel_format_date
from babel.numbers import format_decimal, format_percent, get_minus_sign_symbol

# The same catalogs aiogram's I18n middleware reads, so a string is translated once for both.
LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DOMAIN = "messages"
LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "en"

NO_CHANGE = "—"

# CLDR has moved group separators between U+00A0 and U+202F across releases (French did);
# pinning one keeps texts and tests stable whatever Babel version is installed.
_NARROW_NBSP = "\u202f"
_NBSP = "\u00a0"

_DATE_PATTERNS = {
    # Russian needs the genitive month ("27 ноября"), which CLDR's format context gives for MMMM.
    "ru": ("d MMMM", "d MMMM y"),
    "en": ("d MMM", "d MMM y"),
}


def normalize_language(lang: str | None) -> str:
    """Map a Telegram language code ("ru", "en-US", "pt-br", None) to a supported language."""
    primary = (lang or "").replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def translator(lang: str) -> gettext.NullTranslations:
    """The catalog for lang; a missing catalog falls back to the English source strings."""
    return gettext.translation(
        DOMAIN, localedir=LOCALES_DIR, languages=[normalize_language(lang)], fallback=True
    )


def _pin_spaces(text: str) -> str:
    return text.replace(_NARROW_NBSP, _NBSP)


def format_number(n: int, lang: str) -> str:
    """An integer grouped for the locale: 1 234 (no-break space) in Russian, 1,234 in English."""
    return _pin_spaces(format_decimal(n, locale=normalize_language(lang)))


def format_signed(n: int, lang: str) -> str:
    """A change with its sign always shown: +12, -3, ±0."""
    if n == 0:
        return "±0"
    if n > 0:
        return "+" + format_number(n, lang)
    return get_minus_sign_symbol(normalize_language(lang)) + format_number(-n, lang)


def _round_percent(ratio: Decimal) -> Decimal:
    # One decimal of a percent is as precise as a team lead needs, and stable to test.
    return (ratio * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _format_percent(percent: Decimal, lang: str) -> str:
    # normalize() drops a trailing ".0", so 5% rather than 5.0%; the locale places the % sign
    # and its spacing (5 % in Russian, with a no-break space).
    value = (percent / 100).normalize()
    return _pin_spaces(
        format_percent(value, locale=normalize_language(lang), decimal_quantization=False)
    )


def format_percent_change(current: int, previous: int, lang: str) -> str:
    """The relative change from previous to current (+11.1%), or "—" when previous is 0."""
    if previous == 0:
        return NO_CHANGE
    percent = _round_percent(Decimal(current - previous) / Decimal(previous))
    if percent == 0:
        # A change that rounds to 0% carries no sign, whichever way it went.
        return _format_percent(Decimal(0), lang)
    sign = "+" if percent > 0 else get_minus_sign_symbol(normalize_language(lang))
    return sign + _format_percent(abs(percent), lang)


def format_share(part: int, total: int, lang: str) -> str:
    """part as a percentage of total (45.2%); 0% when total is 0."""
    if total <= 0:
        return _format_percent(Decimal(0), lang)
    return _format_percent(_round_percent(Decimal(part) / Decimal(total)), lang)


def format_date(day: date, lang: str, *, year: bool = False) -> str:
    """27 ноября / 27 Nov, with the year appended when asked (27 Nov 2026)."""
    short, full = _DATE_PATTERNS[normalize_language(lang)]
    return babel_format_date(day, full if year else short, locale=normalize_language(lang))


def format_time(moment: time | datetime) -> str:
    """24-hour wall-clock time in moment's own zone (14:35), the same in both languages."""
    return f"{moment.hour:02d}:{moment.minute:02d}"


def _is_midnight(moment: datetime) -> bool:
    return (moment.hour, moment.minute, moment.second, moment.microsecond) == (0, 0, 0, 0)


def format_day_range(first: date, last: date, lang: str, *, year: bool = True) -> str:
    """Inclusive dates: 1–27 Nov 2026, 28 Oct – 3 Nov 2026, 29 Dec 2025 – 4 Jan 2026."""
    if first == last:
        return format_date(last, lang, year=year)
    end = format_date(last, lang, year=year)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day}–{end}"
    start = format_date(first, lang, year=year and first.year != last.year)
    return f"{start} – {end}"


def format_range(start: datetime, end: datetime, lang: str, *, year: bool = True) -> str:
    """A half-open range [start, end) in start's timezone, written so the end is not misread.

    Whole days show the inclusive last day (1–27 Nov 2026); otherwise both instants are given and
    the arrow reads "up to" (1 Nov, 00:00 → 27 Nov 2026, 14:35).
    """
    end = end.astimezone(start.tzinfo)
    if _is_midnight(start) and _is_midnight(end) and end.date() > start.date():
        last = date.fromordinal(end.date().toordinal() - 1)
        return format_day_range(start.date(), last, lang, year=year)
    start_time, end_time = format_time(start), format_time(end)
    if start.date() == end.date():
        return f"{format_date(start.date(), lang, year=year)}, {start_time} → {end_time}"
    start_day = format_date(start.date(), lang, year=year and start.year != end.year)
    end_day = format_date(end.date(), lang, year=year)
    return f"{start_day}, {start_time} → {end_day}, {end_time}"
