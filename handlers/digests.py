"""/digest and /timezone: manage a chat's scheduled digests and the zone its periods use."""

import html
from collections.abc import Callable
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.access import GROUP_DISABLED, NO_ROLE
from bot.config import Settings, zone_named
from bot.digests.clock import DigestClock
from bot.digests.rules import next_owed_slot, parse_rule
from bot.digests.runner import latest_recorded_slots
from bot.digests.subscriptions import (
    Subscription,
    add_subscription,
    chat_subscriptions,
    remove_subscriptions,
    resume_subscriptions,
)
from bot.storage.chats import chat_zone, save_chat
from bot.telegram.delivery import send_lines
from bot.telegram.middlewares import AfterCommit
from reports.errors import echo, is_number
from reports.i18n import format_date, translator
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
        bot: Bot,
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
            lines = await _listing(session, chat_id, zone, clock(), lang)
            # A long listing is split at line boundaries, as /users is.
            after_commit.call(partial(send_lines, bot, chat_id, lines))
            return
        if words[0].casefold() == "resume":
            current = await chat_subscriptions(session, chat_id)
            number = int(words[1]) if len(words) == 2 and is_number(words[1]) else 0
            if not 1 <= number <= len(current):
                after_commit.answer(
                    message,
                    _(
                        "Usage: /digest resume N, where N is the number of a paused digest "
                        "in /digest."
                    ),
                )
                return
            target = current[number - 1]
            # The command passed the access decision in this chat, so the chat may see data.
            now = clock()
            if not await resume_subscriptions(session, [target.id], now=now):
                after_commit.answer(
                    message, _("Digest {number} is not paused.").format(number=number)
                )
                return
            if digest_clock is not None:
                after_commit.call(digest_clock.rebuild)
            after_commit.answer(
                message,
                _("Digest {number} resumed: {rule}. Next: {when} ({zone}).").format(
                    number=number,
                    rule=html.escape(target.rule.describe(translator(lang)), quote=False),
                    when=_when(
                        next_owed_slot(target.rule, zone, now, since=now, recorded=None),
                        zone,
                        lang,
                    ),
                    zone=zone.key,
                ),
            )
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
        translations = translator(lang)
        current = await chat_subscriptions(session, chat_id)
        for number, existing in enumerate(current, start=1):
            if existing.rule.same_as(rule):
                after_commit.answer(
                    message,
                    _(
                        "This chat already has that digest: {number}. {rule}. To change it, "
                        "remove it first with /digest off {number}."
                    ).format(
                        number=number,
                        rule=html.escape(existing.rule.describe(translations), quote=False),
                    ),
                )
                return
        now = clock()
        await save_chat(session, chat_id, language=lang)
        await add_subscription(session, chat_id, rule, now=now)
        if digest_clock is not None:
            after_commit.call(digest_clock.rebuild)
        first = next_owed_slot(rule, zone, now, since=now, recorded=None).astimezone(zone)
        after_commit.answer(
            message,
            _("Digest added: {report}, {schedule} {zone}, first on {date}.").format(
                report=html.escape(rule.coverage(translations), quote=False),
                schedule=rule.schedule(translations),
                zone=zone.key,
                date=format_date(first.date(), lang),
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
) -> list[str]:
    subscriptions = await chat_subscriptions(session, chat_id)
    if not subscriptions:
        return [
            _(
                "No digests in this chat. Add one: /digest daily 09:00, /digest weekly mon 09:00 "
                "or /digest monthly 1 09:00."
            )
        ]
    # The next run is what the digest runner will do: the same rule over the same ledger.
    recorded = await latest_recorded_slots(session, [s.id for s in subscriptions])
    lines = [_("<b>Digests of this chat</b> ({zone})").format(zone=zone.key)]
    for number, subscription in enumerate(subscriptions, start=1):
        rule = html.escape(subscription.rule.describe(translator(lang)), quote=False)
        if subscription.paused_reason is not None:
            lines.append(
                _("{number}. {rule} — paused: {why}. Resume with /digest resume {number}.").format(
                    number=number, rule=rule, why=_pause_reason(subscription)
                )
            )
            continue
        when = next_owed_slot(
            subscription.rule,
            zone,
            now,
            since=subscription.since,
            recorded=recorded.get(subscription.id),
        )
        lines.append(
            _("{number}. {rule} — next: {when}").format(
                number=number, rule=rule, when=_when(when, zone, lang)
            )
        )
    lines.append(_("Remove one with /digest off N, or all with /digest off all."))
    return lines


def _pause_reason(subscription: Subscription) -> str:
    if subscription.paused_reason == GROUP_DISABLED:
        return _("the group was disabled")
    if subscription.paused_reason == NO_ROLE:
        return _("the person of this chat may no longer see reports")
    return _("this chat may no longer see reports")
