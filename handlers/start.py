"""/start, /help and /lang: what the bot does, the period grammar, metric definitions, language."""

from aiogram import Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.people import store_language
from bot.telegram.i18n import SUPPORTED_LANGUAGES
from bot.telegram.middlewares import AfterCommit


def help_text() -> str:
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
            _("<b>Periods</b> (default: week)"),
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
            _("Wrote: clients with at least one appeal in the period."),
            _("New: of those, clients whose first-ever appeal (any channel) is in the period."),
            _("Returning: wrote minus new."),
            _("Appeals: conversations started by clients in the period."),
            _("Repeat appeals: appeals in the period that are not the client's first-ever one."),
            _(
                "Channels and apps: clients per channel or app; a client who wrote through two "
                "channels counts in both, so the slices can add up to more than «wrote»."
            ),
        ]
    )


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(
            _(
                "Hello! I report your clients: who wrote, who is new, through which channels.\n"
                "Try /clients week or /clients month."
            )
            + "\n\n"
            + help_text()
        )

    @router.message(Command("help"), flags={"access": "public"})
    async def show_help(message: Message) -> None:
        await message.answer(help_text())

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

    return router
