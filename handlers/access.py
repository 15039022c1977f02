"""Roles and chats: /grant, /revoke, /users, /enable, /disable, and the bot's own membership."""

import html
import logging
from functools import partial

from aiogram import Bot, F, Router
from aiogram.filters import JOIN_TRANSITION, ChatMemberUpdatedFilter, Command, CommandObject
from aiogram.types import ChatMemberUpdated, Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.access import GROUP_DISABLED, NO_ROLE
from bot.config import Settings
from bot.digests.clock import DigestClock
from bot.digests.subscriptions import deactivate_chat, pause_subscriptions
from bot.storage.chats import move_chat, set_enabled
from bot.storage.people import grant_lead, list_people, revoke_lead
from bot.telegram.commands import set_person_menu
from bot.telegram.delivery import send_lines
from bot.telegram.middlewares import GROUP_TYPES, SERVICE_USER_IDS, AfterCommit
from reports.errors import is_number

logger = logging.getLogger(__name__)

ADMIN_ONLY = {"access": "admin"}
# `writes`: the update's transaction takes the write lock at its start (DbSessionMiddleware).
ADMIN_WRITES = {"access": "admin", "writes": True}
ANY_CHAT_ADMIN_WRITES = {"access": "admin", "any_chat": True, "writes": True}


def _target(message: Message, command: CommandObject) -> tuple[int, str | None] | None:
    """Who a /grant or /revoke is about: a numeric id, or the author of the replied message."""
    argument = (command.args or "").strip()
    if argument:
        if is_number(argument) and len(argument) <= 15 and int(argument) > 0:
            return int(argument), None
        return None
    replied = message.reply_to_message
    if replied is not None and replied.from_user is not None and not replied.from_user.is_bot:
        return replied.from_user.id, replied.from_user.full_name
    return None


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("grant"), flags=ADMIN_WRITES)
    async def grant(
        message: Message,
        command: CommandObject,
        bot: Bot,
        session: AsyncSession,
        settings: Settings,
        after_commit: AfterCommit,
    ) -> None:
        target = _target(message, command)
        if target is None:
            await message.answer(
                _("Usage: /grant USER_ID, or reply /grant to the person's message.")
            )
            return
        user_id, name = target
        if user_id in SERVICE_USER_IDS:
            # A reply to a linked channel's post or an anonymous admin's message names
            # Telegram's stand-in for the chat (777000, 1087968824, 136817688), not a person.
            await message.answer(
                _(
                    "{user_id} is a Telegram service account, not a person: reply to the "
                    "person's own message, or send /grant with their numeric id."
                ).format(user_id=user_id)
            )
            return
        if user_id in settings.admin_ids:
            await message.answer(_("{user_id} is an admin already.").format(user_id=user_id))
            return
        await grant_lead(session, user_id, granted_by=message.from_user.id, name=name)  # type: ignore[union-attr]
        logger.info("user %s granted lead to %s", message.from_user.id, user_id)  # type: ignore[union-attr]
        after_commit.answer(
            message, _("{user_id} is now a lead: they can see reports.").format(user_id=user_id)
        )
        # Their menu now shows the report commands (once they have written to the bot).
        after_commit.call(partial(set_person_menu, bot, user_id, "lead", settings.language))

    @router.message(Command("revoke"), flags=ADMIN_WRITES)
    async def revoke(
        message: Message,
        command: CommandObject,
        bot: Bot,
        session: AsyncSession,
        settings: Settings,
        after_commit: AfterCommit,
        digest_clock: DigestClock | None = None,
    ) -> None:
        target = _target(message, command)
        if target is None:
            await message.answer(
                _("Usage: /revoke USER_ID, or reply /revoke to the person's message.")
            )
            return
        user_id, _name = target
        if user_id in settings.admin_ids:
            await message.answer(_("Admins come from ADMIN_IDS and cannot be revoked here."))
            return
        revoked = await revoke_lead(session, user_id)
        if not revoked:
            after_commit.answer(message, _("{user_id} had no role.").format(user_id=user_id))
            return
        # Their private chat may no longer see data: its digests stop now, not at their time.
        paused = await pause_subscriptions(session, reason=NO_ROLE, chat_id=user_id)
        text = _("{user_id} is no longer a lead.").format(user_id=user_id)
        if paused:
            text += " " + ngettext(
                "{count} digest in their private chat is paused.",
                "{count} digests in their private chat are paused.",
                paused,
            ).format(count=paused)
            if digest_clock is not None:
                after_commit.call(digest_clock.rebuild)
        after_commit.answer(message, text)
        after_commit.call(partial(set_person_menu, bot, user_id, None, settings.language))

    @router.message(Command("users"), flags=ADMIN_ONLY)
    async def users(message: Message, bot: Bot, session: AsyncSession, settings: Settings) -> None:
        people = await list_people(session, settings.admin_ids)
        lines = [_("<b>People</b>")]
        for person in people:
            role = _("admin") if person.role == "admin" else _("lead")
            name = f" — {html.escape(person.name, quote=False)}" if person.name else ""
            lines.append(f"<code>{person.user_id}</code>: {role}{name}")
        await send_lines(bot, message.chat.id, lines)

    @router.message(Command("enable"), flags=ANY_CHAT_ADMIN_WRITES)
    async def enable(
        message: Message, session: AsyncSession, i18n: I18n, after_commit: AfterCommit
    ) -> None:
        if message.chat.type not in GROUP_TYPES:
            await message.answer(
                _("/enable is for groups; private chats with admins and leads work already.")
            )
            return
        await set_enabled(session, message.chat.id, True, language=i18n.current_locale)
        after_commit.answer(
            message, _("This group is enabled: leads and admins can get reports here.")
        )

    @router.message(Command("disable"), flags=ANY_CHAT_ADMIN_WRITES)
    async def disable(
        message: Message,
        session: AsyncSession,
        i18n: I18n,
        after_commit: AfterCommit,
        digest_clock: DigestClock | None = None,
    ) -> None:
        if message.chat.type not in GROUP_TYPES:
            await message.answer(
                _("/disable is for groups; to stop talking to the bot here, block it.")
            )
            return
        await set_enabled(session, message.chat.id, False, language=i18n.current_locale)
        paused = await pause_subscriptions(session, reason=GROUP_DISABLED, chat_id=message.chat.id)
        text = _("This group is disabled: the bot will not answer here.")
        if paused:
            text += " " + ngettext(
                "{count} digest of this group is paused; after /enable, /digest resume N "
                "restarts it.",
                "{count} digests of this group are paused; after /enable, /digest resume N "
                "restarts them.",
                paused,
            ).format(count=paused)
            if digest_clock is not None:
                after_commit.call(digest_clock.rebuild)
        after_commit.answer(message, text)

    # Joining only: a promotion inside a group the bot already serves is not "being added".
    @router.my_chat_member(ChatMemberUpdatedFilter(JOIN_TRANSITION))
    async def added(event: ChatMemberUpdated, bot: Bot, settings: Settings) -> None:
        # A channel too: whoever can post there would otherwise have the bot as a member.
        if event.chat.type not in (*GROUP_TYPES, "channel"):
            return
        if event.from_user.id not in settings.admin_ids:
            logger.warning(
                "user %s added the bot to chat %s without being an admin: leaving",
                event.from_user.id,
                event.chat.id,
            )
            await bot.leave_chat(event.chat.id)

    @router.message(
        F.migrate_to_chat_id, flags={"access": "public", "any_chat": True, "writes": True}
    )
    async def upgraded(message: Message, session: AsyncSession) -> None:
        # A group became a supergroup: its settings and digests continue under the new id.
        assert message.migrate_to_chat_id is not None
        await move_chat(session, message.chat.id, message.migrate_to_chat_id)
        logger.info("chat %s became %s", message.chat.id, message.migrate_to_chat_id)

    @router.my_chat_member(
        F.new_chat_member.status.in_({"left", "kicked"}), flags={"writes": True}
    )
    async def removed(
        event: ChatMemberUpdated,
        session: AsyncSession,
        after_commit: AfterCommit,
        digest_clock: DigestClock | None = None,
    ) -> None:
        logger.info("bot removed from chat %s: its digests stop", event.chat.id)
        await deactivate_chat(session, event.chat.id, reason=f"bot {event.new_chat_member.status}")
        if digest_clock is not None:
            after_commit.call(digest_clock.rebuild)

    return router
