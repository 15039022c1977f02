"""The one path that sends a report to a chat: text, then the charts, then the CSV (and, on a
press of "By hour", the heatmap of that report).

Commands and digests both come through `deliver_bundle`; digests also tell it which parts
Telegram already accepted, so a restart resends only what is missing.

A part Telegram refuses for good (a group that forbids photos) is not retried: the chat is
told once, in words, which part could not be posted and why, and the next parts still go.
Only a failure that may pass (5xx, the network, a long 429) is left to the caller.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, InputMediaPhoto, Message
from aiogram.utils.chat_action import ChatActionSender
from aiogram.utils.i18n import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.config import Settings
from bot.ingest.status import newest_data, silent_sources
from bot.rendering import Renderer
from bot.storage.chats import chat_zone
from bot.storage.engine import read_retrying, write_transaction
from bot.storage.report_views import load_view, remember_view
from bot.telegram.keyboards import report_keyboard
from bot.telegram.outbound import REJECTED, UNDELIVERABLE
from reports.bundle import HEATMAP_CAPTION, ReportBundle, caption_line
from reports.errors import N_
from reports.heatmap import build_heatmap
from reports.i18n import translator
from reports.metrics import build_report
from reports.model import Period, PeriodPair, ReportFilter
from reports.periods import parse_period
from reports.request import ReportRequest
from reports.trend import build_trend

logger = logging.getLogger(__name__)

PARTS = ("text", "charts", "csv")
# Telegram's limit on one message; raw HTML is never shorter than the parsed text it becomes.
MESSAGE_LIMIT = 4096

PartSent = Callable[[str], Awaitable[None]]
PartFailed = Callable[[str, Exception], Awaitable[None]]
PART_NAMES = {"text": N_("the summary"), "charts": N_("the charts"), "csv": N_("the CSV file")}
PART_FAILED = N_("Sorry, {part} could not be delivered: Telegram did not accept it. Please retry.")
PART_REJECTED = N_("Sorry, {part} could not be posted here: {reason}.")
# Telegram's descriptions of a chat's missing permission, and the reason a user reads instead
# (the description itself is not shown: a proxy's error text may quote the request URL).
REJECTION_REASONS = (
    (
        ("not enough rights to send photos", "chat_send_photos_forbidden"),
        N_("this chat does not allow the bot to send photos"),
    ),
    (
        ("not enough rights to send documents", "chat_send_docs_forbidden"),
        N_("this chat does not allow the bot to send files"),
    ),
    (
        ("not enough rights to send text messages", "chat_send_plain_forbidden"),
        N_("this chat does not allow the bot to send messages"),
    ),
)
REJECTED_OTHERWISE = N_("Telegram refused it")
HEATMAP_EMPTY = N_("No appeals in this period, so there is nothing to show by hour.")
HEATMAP_UNAVAILABLE = N_("The heatmap is unavailable right now; please try again later.")


@dataclass(slots=True)
class Uploads:
    """File ids Telegram gave a bundle's files, so later chats get them without re-uploading.

    Chats are served concurrently: the lock makes the others wait for the first upload.
    """

    charts: list[str] = field(default_factory=list)
    csv: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def produce_bundle(
    engine: AsyncEngine,
    renderer: Renderer,
    *,
    periods: PeriodPair,
    report_filter: ReportFilter,
    lang: str,
    delimiter: str,
    title: str | None = None,
    now: datetime | None = None,
    silent_after: timedelta | None = None,
) -> ReportBundle:
    """Compute and render one report; with `silent_after` (digests) it also warns of desk
    sources silent for longer than that."""
    as_of = now or datetime.now(UTC)

    async def read(connection: AsyncConnection) -> tuple[Any, ...]:
        report = await build_report(connection, periods, report_filter)
        trend = await build_trend(connection, periods, report_filter)
        data_until = await newest_data(connection)
        silent = (
            await silent_sources(connection, now=as_of, silent_after=silent_after)
            if silent_after is not None
            else []
        )
        return report, trend, data_until, silent

    # A connection the server ends during the report (a restart, a failover) is replaced once.
    report, trend, data_until, silent = await read_retrying(engine, read)
    report = replace(
        report,
        data_until=data_until,
        as_of=as_of,
        trend=trend,
        silent_sources=tuple((f"{source}:{label}", at) for source, label, at in silent),
    )
    bundle = await renderer.render(report, lang=lang, delimiter=delimiter, title=title)
    # The buttons under the report stand for exactly this period, zone and filter. A report
    # is worth more than its buttons: if the key cannot be stored, it goes without them.
    try:
        async with write_transaction(engine) as connection:
            key = await remember_view(connection, periods.current, report_filter, now=as_of)
    except SQLAlchemyError as exc:
        logger.warning("report view not stored (%s): buttons that need it are left out", exc)
        return bundle
    return replace(bundle, view_key=key)


def bundle_keyboard(
    bundle: ReportBundle, report_filter: ReportFilter, gettext: Callable[[str], str]
) -> InlineKeyboardMarkup | None:
    """The buttons under a report: re-run periods, and "By hour" when it has appeals."""
    return report_keyboard(
        report_filter, gettext, view_key=bundle.view_key, by_hour=not bundle.empty
    )


async def deliver_bundle(
    bot: Bot,
    chat_id: int,
    bundle: ReportBundle,
    *,
    keyboard: InlineKeyboardMarkup | None = None,
    done: Collection[str] = (),
    on_sent: PartSent | None = None,
    on_failure: PartFailed | None = None,
    uploads: Uploads | None = None,
) -> None:
    """Send the parts not in `done`, in order, calling `on_sent(part)` as each is settled:
    accepted, or refused for good and the chat told so (a retry would be refused again).

    Without `on_failure` a part that cannot be delivered for now raises (a digest retries later
    from the ledger); with it, the failure is reported and the next part is still tried. If
    even the note about a refused part is refused, the chat takes nothing: the refusal raises.
    """
    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("text", lambda: bot.send_message(chat_id, bundle.text, reply_markup=keyboard)),
        ("charts", lambda: _send_charts(bot, chat_id, bundle, uploads)),
        ("csv", lambda: _send_csv(bot, chat_id, bundle, uploads)),
    ]
    for part, send in steps:
        if part in done or (part == "charts" and not bundle.charts):
            continue
        try:
            try:
                await send()
            except REJECTED as refused:
                await _tell_rejected(bot, chat_id, part, refused, bundle.lang)
        except UNDELIVERABLE as exc:
            if on_failure is None:
                raise
            await on_failure(part, exc)
            continue
        await _mark(on_sent, part)


async def _tell_rejected(bot: Bot, chat_id: int, part: str, refused: Exception, lang: str) -> None:
    description = getattr(refused, "message", "")
    logger.warning("report part %s refused by chat %s: %s", part, chat_id, description)
    gettext = translator(lang).gettext
    wanted = description.lower()
    reason = next(
        (text for needles, text in REJECTION_REASONS if any(n in wanted for n in needles)),
        REJECTED_OTHERWISE,
    )
    note = gettext(PART_REJECTED).format(part=gettext(PART_NAMES[part]), reason=gettext(reason))
    try:
        await bot.send_message(chat_id, note)
    except REJECTED:
        raise refused from None


async def _send_csv(bot: Bot, chat_id: int, bundle: ReportBundle, uploads: Uploads | None) -> None:
    upload = BufferedInputFile(bundle.csv, bundle.csv_name)
    caption = bundle.csv_caption or None
    if uploads is None:
        await bot.send_document(chat_id, upload, caption=caption)
        return
    async with uploads.lock:
        if uploads.csv is None:
            sent = await bot.send_document(chat_id, upload, caption=caption)
            uploads.csv = sent.document.file_id if sent.document else None
            return
    await bot.send_document(chat_id, uploads.csv, caption=caption)


async def _send_charts(
    bot: Bot, chat_id: int, bundle: ReportBundle, uploads: Uploads | None
) -> None:
    charts, caption = bundle.charts, bundle.charts_caption or None
    files = [BufferedInputFile(data, name) for name, data in charts]
    if uploads is None:
        await _send_photos(bot, chat_id, files, caption)
        return
    async with uploads.lock:
        if len(uploads.charts) != len(charts):
            messages = await _send_photos(bot, chat_id, files, caption)
            uploads.charts = [message.photo[-1].file_id for message in messages if message.photo]
            return
    await _send_photos(bot, chat_id, list(uploads.charts), caption)


async def _send_photos(
    bot: Bot, chat_id: int, files: Sequence[BufferedInputFile | str], caption: str | None
) -> list[Message]:
    if len(files) == 1:
        return [await bot.send_photo(chat_id, files[0], caption=caption)]
    # Telegram shows the album's caption from its first item.
    return await bot.send_media_group(
        chat_id,
        [
            InputMediaPhoto(media=item, caption=caption if index == 0 else None)
            for index, item in enumerate(files)
        ],
    )


async def _mark(on_sent: PartSent | None, part: str) -> None:
    if on_sent is not None:
        await on_sent(part)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportService:
    """What a report command needs, wired once at start and injected as `report_service`."""

    engine: AsyncEngine
    renderer: Renderer
    settings: Settings
    clock: Callable[[], datetime]

    async def zone_of(self, chat_id: int) -> ZoneInfo:
        # Its own short read, ended before the report: a long report must not run inside a
        # read transaction (it would hold a pooled connection all along).
        return await read_retrying(
            self.engine,
            lambda connection: chat_zone(connection, chat_id, self.settings.timezone),
        )

    async def send(
        self, bot: Bot, chat_id: int, request: ReportRequest, *, lang: str
    ) -> ReportBundle:
        """Compute, render and send one report in answer to a command."""
        zone = await self.zone_of(chat_id)
        now = self.clock()
        periods = parse_period(request.period_text, now=now, tz=zone)
        started = time.perf_counter()
        # The chat sees "sending photo" while the numbers are computed and the charts drawn.
        async with ChatActionSender.upload_photo(bot=bot, chat_id=chat_id):
            bundle = await produce_bundle(
                self.engine,
                self.renderer,
                periods=periods,
                report_filter=request.filter,
                lang=lang,
                delimiter=self.settings.delimiter_for(lang),
                now=now,
            )

        async def tell_user(part: str, exc: Exception) -> None:
            await _tell_failed(bot, chat_id, part, exc, bundle.lang)

        keyboard = bundle_keyboard(bundle, request.filter, _)
        await deliver_bundle(bot, chat_id, bundle, keyboard=keyboard, on_failure=tell_user)
        logger.info(
            "report %s sent to chat %s in %.3f s",
            periods.current.label,
            chat_id,
            time.perf_counter() - started,
        )
        return bundle

    async def view(self, key: str) -> tuple[Period, ReportFilter] | None:
        """The period and filter a report's button stands for; None once expired."""
        return await read_retrying(self.engine, lambda connection: load_view(connection, key))

    async def send_heatmap(
        self, bot: Bot, chat_id: int, period: Period, report_filter: ReportFilter, *, lang: str
    ) -> None:
        """The hours heatmap of a report's period and filter, as one photo; an empty period
        or a failed drawing is said in one message instead."""
        gettext = translator(lang).gettext
        async with ChatActionSender.upload_photo(bot=bot, chat_id=chat_id):
            heatmap = await read_retrying(
                self.engine,
                lambda connection: build_heatmap(connection, period, report_filter),
            )
            png = await self.renderer.render_heatmap(heatmap, lang=lang)
        if png is None:
            empty = heatmap.total == 0
            await bot.send_message(
                chat_id, gettext(HEATMAP_EMPTY if empty else HEATMAP_UNAVAILABLE)
            )
            return
        caption = caption_line(HEATMAP_CAPTION, period, report_filter, lang=lang)
        try:
            try:
                await bot.send_photo(
                    chat_id, BufferedInputFile(png, "heatmap.png"), caption=caption
                )
            except REJECTED as refused:
                await _tell_rejected(bot, chat_id, "charts", refused, lang)
        except UNDELIVERABLE as exc:
            await _tell_failed(bot, chat_id, "charts", exc, lang)


async def _tell_failed(bot: Bot, chat_id: int, part: str, exc: Exception, lang: str) -> None:
    logger.error("report part %s to chat %s failed: %s", part, chat_id, type(exc).__name__)
    gettext = translator(lang).gettext
    with contextlib.suppress(*UNDELIVERABLE):
        await bot.send_message(
            chat_id, gettext(PART_FAILED).format(part=gettext(PART_NAMES[part]))
        )


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji counts two)."""
    return len(text.encode("utf-16-le")) // 2


def split_lines(lines: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Group whole lines into messages under the limit; each line must be balanced HTML."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        length = telegram_length(line) + 1
        if size + length > limit and current:
            messages.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += length
    if current:
        messages.append("\n".join(current))
    return messages


async def send_lines(bot: Bot, chat_id: int, lines: list[str]) -> None:
    for text in split_lines(lines):
        await bot.send_message(chat_id, text)
