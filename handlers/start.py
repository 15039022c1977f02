"""/start, /help and /lang: what the bot does, the period grammar, metric definitions, language;
and a hint for text that is no command."""

import html

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Settings
from bot.storage.people import Role, role_of, store_language
from bot.telegram.i18n import SUPPORTED_LANGUAGES
from bot.telegram.middlewares import AfterCommit


def admin_help() -> list[str]:
    """The admin commands with their syntax, shown to admins only."""
    return [
        _("<b>Admin commands</b>"),
        _(
            "/digest daily 09:00, /digest weekly mon 09:00, /digest monthly 1 09:00 "
            '[channel=NAME] [app="NAME"]: a scheduled report to this chat'
        ),
        _("/digest: this chat's digests; /digest off N, /digest off all, /digest resume N"),
        _("/timezone [Europe/Moscow]: this chat's timezone"),
        _("/grant USER_ID, /revoke USER_ID (or as a reply to their message): the lead role"),
        _("/users: people and their roles"),
        _("/enable, /disable: let a group use the bot, or stop it there"),
        _("/sources: each desk source with its newest event, events today and refusals"),
        "",
    ]


def help_text(role: Role | None = None, default_period: str = "week") -> str:
    return "\n".join(
        [
            _("<b>Commands</b>"),
            _(
                '/clients [period] [channel=NAME] [app="NAME"]: client report with charts '
                "(channels, apps, trend) and a CSV file"
            ),
            _("/channels: channels and apps with all-time client counts"),
            _("/lang ru|en: language of replies"),
            "",
            *(admin_help() if role == "admin" else []),
            _("<b>Periods</b> (default: {period})").format(period=html.escape(default_period)),
            _(
                "today, yesterday, week, month, quarter, year, last week, last month, 7d, 30d, "
                "2026-11-05, 05.11.2026, 2026-11, 2026-11-01..2026-11-15, 01.11.2026-15.11.2026"
            ),
            _("Russian words work too: сегодня, вчера, неделя, месяц, прошлый месяц."),
            "",
            _("<b>Comparison</b>"),
            _(
                "today, week, month, quarter, year and 7d compare with the same part of the "
                "previous day, week, month, quarter, year or 7 days, up to the same time "
                "(month on 27 Nov at 14:35: 1–27 Oct to 14:35)."
            ),
            _(
                "yesterday, last week, last month, a past date or month compare with the day, "
                "week or month before; a range with one as long right before it."
            ),
            _(
                "If the previous period starts before the first appeal the bot holds, the "
                "reply says “no earlier data” instead of a percentage; in its first 12 hours "
                "a period says it has just begun."
            ),
            "",
            _("<b>Metrics</b>"),
            _("All clients: clients who ever wrote (through the filtered channel or app)."),
            _("Clients who wrote: clients with at least one conversation in the period."),
            _(
                "New: of those, clients whose first-ever conversation (any channel) is in the "
                "period."
            ),
            _("Returning: clients who wrote minus new ones."),
            _(
                "Conversations: conversations clients started in the period; one reopened after "
                "it was closed counts again."
            ),
            _(
                "Repeat conversations: conversations in the period that are not the client's "
                "first-ever one."
            ),
            _(
                "Channels and apps: clients per channel or app; a client who wrote through two "
                "channels counts in both, so the slices can add up to more than the clients who "
                "wrote."
            ),
        ]
    )


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(CommandStart())
    async def start(message: Message, settings: Settings, role: Role | None = None) -> None:
        await message.answer(
            _(
                "Hello! I report your clients: who wrote, who is new, through which channels.\n"
                "Try /clients week or /clients month."
            )
            + "\n\n"
            + help_text(role, settings.default_period)
        )

    @router.message(Command("help"), flags={"access": "public"})
    async def show_help(message: Message, session: AsyncSession, settings: Settings) -> None:
        # Public, so the access middleware did not look the role up.
        role = (
            None
            if message.from_user is None
            else await role_of(session, message.from_user.id, settings.admin_ids)
        )
        await message.answer(help_text(role, settings.default_period))

    @router.message(Command("lang"), flags={"access": "public", "writes": True})
    async def set_language(
        message: Message,
        command: CommandObject,
        session: AsyncSession,
        i18n: I18n,
        after_commit: AfterCommit,
    ) -> None:
        choice = (command.args or "").strip().lower()
        if choice not in SUPPORTED_LANGUAGES or message.from_user is None:
            await message.answer(_("Usage: /lang ru or /lang en"))
            return
        await store_language(session, message.from_user.id, choice)
        with i18n.use_locale(choice):
            after_commit.answer(message, _("Language: English."))

    # Registered last in the first router: only text no command took gets here. Private chats
    # only, as chatter in a group is not for the bot.
    @router.message(
        F.chat.type == "private", F.text, ~F.text.startswith("/"), flags={"access": "public"}
    )
    async def not_a_command(message: Message, session: AsyncSession, settings: Settings) -> None:
        assert message.from_user is not None
        role = await role_of(session, message.from_user.id, settings.admin_ids)
        # Someone without a role gets silence here: the refusal comes with a command.
        if role is not None:
            await message.answer(
                _("I answer commands: try /clients week, or /help for all of them.")
            )

    return router
