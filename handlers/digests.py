"""/digest and /timezone: manage a chat's scheduled digests and the zone its periods use."""

import html
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.config import Settings, zone_named
from bot.digests.clock import DigestClock
from bot.digests.rules import next_slot, parse_rule
from bot.digests.subscriptions import add_subscription, chat_subscriptions, remove_subscriptions
from bot.storage.chats import chat_zone, save_chat
from bot.telegram.middlewares import AfterCommit
from reports.errors import echo, is_number
from reports.i18n import format_date
from reports.metrics import load_catalog
from reports.model import ReportFilter

Clock = Callable[[], datetime]
# `writes`: the update's transaction takes the write lock at its start (DbSessionMiddleware).
ADMIN_WRITES = {"access": "admin", "writes": True}


def _when(moment: datetime, zone: ZoneInfo, lang: str) -> str:
    local = moment.astimezone(zone)
    return f"{format_date(local.date(), lang)}, {local:%H:%M}"


def build_router() -> Router:
    router = Router(name=__name__)

    # Replies go out after the commit (AfterCommit): this transaction holds the write lock.
    @router.message(Command("digest"), flags=ADMIN_WRITES)
    async def digest_command(
        message: Message,
        command: CommandObject,
        session: AsyncSession,
        engine: AsyncEngine,
        settings: Settings,
        clock: Clock,
        i18n: I18n,
        after_commit: AfterCommit,
        digest_clock: DigestClock | None = None,
    ) -> None:
        chat_id, lang = message.chat.id, i18n.current_locale
        zone = await chat_zone(session, chat_id, settings.timezone)
        arguments = (command.args or "").strip()
        words = arguments.split()
        if not words:
            after_commit.answer(message, await _listing(session, chat_id, zone, clock(), lang))
            return
        if words[0].casefold() == "off":
            current = await chat_subscriptions(session, chat_id)
            if len(words) == 2 and words[1].casefold() == "all":
                removed = await remove_subscriptions(
                    session, [s.id for s in current], reason="removed with /digest off all"
                )
            elif len(words) == 2 and is_number(words[1]) and 1 <= int(words[1]) <= len(current):
                target = current[int(words[1]) - 1]
                removed = await remove_subscriptions(
                    session, [target.id], reason="removed with /digest off"
                )
            else:
                after_commit.answer(
                    message, _("Usage: /digest off N (a number from /digest) or /digest off all.")
                )
                return
            if digest_clock is not None:
                after_commit.call(digest_clock.rebuild)
            after_commit.answer(message, _("Digests removed: {count}.").format(count=removed))
            return
        rule = parse_rule(arguments)
        if rule.channel or rule.app:
            # An unknown name is refused now rather than failing every morning.
            async with engine.connect() as connection:
                (await load_catalog(connection)).resolve(
                    ReportFilter(channel=rule.channel, app=rule.app)
                )
        now = clock()
        await save_chat(session, chat_id, language=lang)
        await add_subscription(session, chat_id, rule, now=now)
        if digest_clock is not None:
            after_commit.call(digest_clock.rebuild)
        after_commit.answer(
            message,
            _("Digest added: {rule}. Next: {when} ({zone}).").format(
                rule=html.escape(rule.describe(), quote=False),
                when=_when(next_slot(rule, zone, now), zone, lang),
                zone=zone.key,
            ),
        )

    @router.message(Command("timezone"), flags=ADMIN_WRITES)
    async def timezone_command(
        message: Message,
        command: CommandObject,
        session: AsyncSession,
        settings: Settings,
        clock: Clock,
        i18n: I18n,
        after_commit: AfterCommit,
        digest_clock: DigestClock | None = None,
    ) -> None:
        name = (command.args or "").strip()
        if name:
            zone = zone_named(name)
            if zone is None:
                after_commit.answer(
                    message,
                    _(
                        "Unknown timezone “{name}”. Try Europe/Moscow or Asia/Yekaterinburg."
                    ).format(name=html.escape(echo(name), quote=False)),
                )
                return
            await save_chat(
                session, message.chat.id, language=i18n.current_locale, timezone=zone.key
            )
            if digest_clock is not None:
                after_commit.call(digest_clock.rebuild)
        else:
            zone = await chat_zone(session, message.chat.id, settings.timezone)
        after_commit.answer(
            message,
            _("Timezone: {zone}. Local time: {time}.").format(
                zone=zone.key, time=_when(clock(), zone, i18n.current_locale)
            ),
        )

    return router


async def _listing(
    session: AsyncSession, chat_id: int, zone: ZoneInfo, now: datetime, lang: str
) -> str:
    subscriptions = await chat_subscriptions(session, chat_id)
    if not subscriptions:
        return _(
            "No digests in this chat. Add one: /digest daily 09:00, /digest weekly mon 09:00 "
            "or /digest monthly 1 09:00."
        )
    lines = [_("<b>Digests of this chat</b> ({zone})").format(zone=zone.key)]
    for number, subscription in enumerate(subscriptions, start=1):
        lines.append(
            _("{number}. {rule} — next: {when}").format(
                number=number,
                rule=html.escape(subscription.rule.describe(), quote=False),
                when=_when(next_slot(subscription.rule, zone, now), zone, lang),
            )
        )
    lines.append(_("Remove one with /digest off N, or all with /digest off all."))
    return "\n".join(lines)
