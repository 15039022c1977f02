"""Issue 5: roles, who is asking, group chats, buttons, report flood control and secrets.

Most tests run the Application of `python -m bot` (`build_application`) polling the fake Bot API
server (tests/e2e/access_support.py: `running`); the ones that need a frozen clock, or an update
kind the fake does not model, feed the Dispatcher of `build_dispatcher` directly (`direct`).
Waits are on the fake's events and on a count of the updates being handled, never on sleeps.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.types import Chat, InlineQuery
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.app
import bot.telegram.delivery
from bot.app import build_application, serve, wait_for_telegram
from bot.digests.rules import parse_rule
from bot.digests.subscriptions import add_subscription
from bot.logs import REDACTED, RedactSecrets, setup_logging
from bot.storage.engine import session_factory
from bot.telegram.middlewares import AccessMiddleware, ReportFloodMiddleware
from tests.e2e.access_support import (
    ADMIN,
    ANONYMOUS_ADMIN,
    CHANNEL_BOT,
    GROUP,
    HELP_START,
    INVALID_BUTTON,
    LEAD,
    NOT_ALLOWED,
    NOT_ENABLED,
    NOW,
    ON_BEHALF_HINT,
    ONLY_ADMINS,
    OTHER_GROUP,
    SENDS,
    SERVICE_USER,
    SLOW_DOWN,
    STRANGER,
    Live,
    direct,
    grant_leads,
    is_enabled_in_db,
    make_settings,
    message,
    methods,
    refusal,
    role_in_db,
    running,
    subscription_states,
    table_counts,
    texts,
)
from tests.fake_telegram import FakeTelegram

EMPTY_DAY = "/clients 2026-11-05"  # a day without appeals: text and CSV, no pies (fast)
EMPTY_DAY_REPORT = ["sendMessage", "sendDocument"]
GRANTED = "{} is now a lead: they can see reports."
ENABLED = "This group is enabled: leads and admins can get reports here."
DISABLED = "This group is disabled: the bot will not answer here."
GRANT_USAGE = "Usage: /grant USER_ID, or reply /grant to the person's message."


@pytest.fixture
def data(hand_counted: AsyncEngine) -> AsyncEngine:
    """The hand-counted data set, so that a leaked report would show real numbers."""
    return hand_counted


async def enable_group(live: Live, chat_id: int = GROUP) -> None:
    calls = await live.round_trip("/enable", user_id=ADMIN, chat_id=chat_id)
    assert texts(calls) == [ENABLED]


def report_message(live: Live, chat_id: int) -> dict[str, Any]:
    """The last report text the bot sent to the chat (the one carrying the buttons)."""
    reports = [m for m in live.tg.sent_messages(chat_id) if "reply_markup" in m]
    assert reports, live.tg.sent_messages(chat_id)
    return reports[-1]


# -- 1. roles ----------------------------------------------------------------------------------


async def test_admin_grants_and_revokes_the_lead_role_by_id(data: AsyncEngine) -> None:
    async with running(data) as live:
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD)
        assert texts(calls) == [refusal(LEAD)]

        calls = await live.round_trip(f"/grant {LEAD}", user_id=ADMIN)
        assert texts(calls) == [GRANTED.format(LEAD)]
        assert [c.params["chat_id"] for c in calls] == [str(ADMIN)]
        assert await role_in_db(data, LEAD) == ("lead", None)

        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD)
        assert methods(calls) == EMPTY_DAY_REPORT
        assert texts(calls)[0].startswith("<b>Clients report</b>")

        calls = await live.round_trip(f"/revoke {LEAD}", user_id=ADMIN)
        assert texts(calls) == [f"{LEAD} is no longer a lead."]
        assert await role_in_db(data, LEAD) == (None, None)
        calls = await live.round_trip(f"/revoke {LEAD}", user_id=ADMIN)
        assert texts(calls) == [f"{LEAD} had no role."]

        # Refused again, silently: the first refusal (moments ago) is not repeated within the hour.
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD)
        assert [c for c in calls if c.method in SENDS] == []
        assert live.tg.errors() == []


async def test_grant_by_reply_stores_the_name_and_users_lists_people(data: AsyncEngine) -> None:
    person = 9001
    async with running(data) as live:
        await enable_group(live)
        live.say(
            "hello, may I see the reports?",
            user_id=person,
            chat_id=GROUP,
            first_name="Ann <Sales>",
            last_name="& Co",
        )
        asked = live.tg.pending_updates[-1]["message"]["message_id"]
        calls = await live.round_trip("/grant", user_id=ADMIN, chat_id=GROUP, reply_to=asked)
        assert texts(calls) == [GRANTED.format(person)]
        assert await role_in_db(data, person) == ("lead", "Ann <Sales> & Co")

        calls = await live.round_trip("/users", user_id=ADMIN)
        assert texts(calls) == [
            f"<b>People</b>\n<code>{ADMIN}</code>: admin\n"
            f"<code>{person}</code>: lead — Ann &lt;Sales&gt; &amp; Co"
        ]
        assert calls[0].result["text"].endswith("lead — Ann <Sales> & Co")

        # The new lead gets reports in the group.
        calls = await live.round_trip(EMPTY_DAY, user_id=person, chat_id=GROUP)
        assert methods(calls) == EMPTY_DAY_REPORT
        assert {c.params["chat_id"] for c in calls if c.method in SENDS} == {str(GROUP)}

        # Replying to the bot's own message or to an anonymous admin names nobody.
        bot_message = live.tg.sent_messages(GROUP)[0]["message_id"]
        calls = await live.round_trip("/grant", user_id=ADMIN, chat_id=GROUP, reply_to=bot_message)
        assert texts(calls) == [GRANT_USAGE]
        anonymous = {"id": ANONYMOUS_ADMIN, "is_bot": True, "first_name": "Group"}
        live.say("psst", user_id=ANONYMOUS_ADMIN, chat_id=GROUP, **{"from": anonymous})
        psst = live.tg.pending_updates[-1]["message"]["message_id"]
        calls = await live.round_trip("/grant", user_id=ADMIN, chat_id=GROUP, reply_to=psst)
        assert texts(calls) == [GRANT_USAGE]
        assert await role_in_db(data, ANONYMOUS_ADMIN) is None

        # /revoke works by reply too.
        calls = await live.round_trip("/revoke", user_id=ADMIN, chat_id=GROUP, reply_to=asked)
        assert texts(calls) == [f"{person} is no longer a lead."]
        calls = await live.round_trip(EMPTY_DAY, user_id=person, chat_id=GROUP)
        assert texts(calls) == [refusal(person)]
        assert live.tg.errors() == []


async def test_admins_from_admin_ids_cannot_be_revoked_or_granted(data: AsyncEngine) -> None:
    second_admin = 43
    async with running(data, admin_ids=(ADMIN, second_admin)) as live:
        calls = await live.round_trip(f"/revoke {ADMIN}", user_id=second_admin)
        assert texts(calls) == ["Admins come from ADMIN_IDS and cannot be revoked here."]
        calls = await live.round_trip(f"/grant {ADMIN}", user_id=second_admin)
        assert texts(calls) == [f"{ADMIN} is an admin already."]
        # Leading zeros are the same id.
        calls = await live.round_trip(f"/revoke 000{second_admin}", user_id=ADMIN)
        assert texts(calls) == ["Admins come from ADMIN_IDS and cannot be revoked here."]
        assert await role_in_db(data, ADMIN) is None  # admins are never stored

        calls = await live.round_trip("/users", user_id=ADMIN)
        assert texts(calls) == [
            f"<b>People</b>\n<code>{ADMIN}</code>: admin\n<code>{second_admin}</code>: admin"
        ]
        calls = await live.round_trip("/digest", user_id=ADMIN)
        assert texts(calls)[0].startswith("No digests in this chat.")
        assert live.tg.errors() == []


@pytest.mark.parametrize(
    "argument", ["", "abc", "-5", "+5", "5 6", "1.5", "0x10", "1234567890123456", "@someone"]
)
async def test_grant_without_a_usable_target_explains_the_usage(
    data: AsyncEngine, argument: str
) -> None:
    async with direct(data) as harness:
        before = await table_counts(data)
        await harness.send(f"/grant {argument}".strip(), user_id=ADMIN)
        assert harness.texts() == [GRANT_USAGE]
        assert await table_counts(data) == before


ADMIN_COMMANDS = [
    "/grant 9",
    "/revoke 9",
    "/users",
    "/digest",
    "/digest daily 09:00",
    "/digest off all",
    "/timezone",
    "/timezone UTC",
    "/enable",
    "/disable",
]


@pytest.mark.parametrize("command", ADMIN_COMMANDS)
async def test_only_admins_manage_digests_timezones_roles_and_chats(
    data: AsyncEngine, command: str
) -> None:
    await grant_leads(data, [LEAD])
    async with direct(data) as harness:
        before = await table_counts(data)
        await harness.send(command, user_id=LEAD)
        assert harness.texts() == [ONLY_ADMINS]
        await harness.send(command, user_id=STRANGER)
        assert harness.texts() == [ONLY_ADMINS, refusal(STRANGER)]
        assert harness.names() == ["sendMessage", "sendMessage"]
        assert await table_counts(data) == before
        assert await role_in_db(data, 9) is None


@pytest.mark.parametrize("command", ["/clients 2026-11-05", "/channels", "/start", "/help"])
async def test_leads_get_reports_and_the_directory(data: AsyncEngine, command: str) -> None:
    await grant_leads(data, [LEAD])
    async with direct(data) as harness:
        await harness.send(command, user_id=LEAD)
        assert harness.names()[0] == "sendMessage"
        assert ONLY_ADMINS not in harness.texts() and refusal(LEAD) not in harness.texts()


SERVICE_ACCOUNT = (
    "{} is a Telegram service account, not a person: reply to the person's own message, "
    "or send /grant with their numeric id."
)


@pytest.mark.parametrize("service_id", [SERVICE_USER, ANONYMOUS_ADMIN, CHANNEL_BOT])
async def test_grant_refuses_telegram_s_service_accounts(
    data: AsyncEngine, service_id: int
) -> None:
    """A reply to a linked channel's post (777000), an anonymous admin's message (1087968824) or
    a post as a channel (136817688) names a stand-in, not a person; so does the bare id."""
    channel = Chat(id=-1009000000001, type="channel", title="News")
    post = message(
        "news", user_id=service_id, chat_id=GROUP, sender_chat=channel, from_bot=False
    )
    async with direct(data) as harness:
        await harness.send("/enable", user_id=ADMIN, chat_id=GROUP)
        harness.clear()
        await harness.send("/grant", user_id=ADMIN, chat_id=GROUP, reply_to=post)
        await harness.send(f"/grant {service_id}", user_id=ADMIN)
        assert harness.texts() == [SERVICE_ACCOUNT.format(service_id)] * 2
    assert await role_in_db(data, service_id) is None


async def test_roles_are_stored_in_the_database_and_survive_a_restart(data: AsyncEngine) -> None:
    async with direct(data) as first:
        await first.send(f"/grant {LEAD}", user_id=ADMIN)
        assert first.texts() == [GRANTED.format(LEAD)]
    async with direct(data) as second:  # a new process: nothing but the database carries over
        await second.send(EMPTY_DAY, user_id=LEAD)
        assert second.names() == EMPTY_DAY_REPORT
        await second.send(f"/revoke {LEAD}", user_id=ADMIN)
    async with direct(data) as third:
        await third.send(EMPTY_DAY, user_id=LEAD)
        assert third.texts() == [refusal(LEAD)]


# -- 2. who is asking --------------------------------------------------------------------------

LINKED_CHANNEL = {"id": -1009000000001, "type": "channel", "title": "News"}


ON_BEHALF = [
    # (who Telegram names as the sender, the chat it was sent on behalf of, extra fields)
    ({"id": ANONYMOUS_ADMIN, "is_bot": True, "first_name": "Group"}, "the group", {}),
    (
        {"id": SERVICE_USER, "is_bot": False, "first_name": "Telegram"},
        LINKED_CHANNEL,
        {"is_automatic_forward": True},
    ),
    ({"id": CHANNEL_BOT, "is_bot": False, "first_name": "Channel"}, LINKED_CHANNEL, {}),
    # Any sender_chat, even beside an admin's id: the chat spoke, not the person.
    ({"id": ADMIN, "is_bot": False, "first_name": "Admin"}, LINKED_CHANNEL, {}),
]


async def test_messages_on_behalf_of_a_chat_get_a_hint_and_no_data(data: AsyncEngine) -> None:
    """An anonymous group admin (1087968824 with sender_chat = the group), a linked channel's
    automatic forward (777000), a user writing as a channel, or any message with sender_chat:
    the bot cannot tell who asked, so it refuses with a hint to turn anonymity off."""
    async with running(data) as live:
        await enable_group(live)
        group_chat = {"id": GROUP, "type": "supergroup", "title": f"Supergroup {GROUP}"}
        for sender, sender_chat, extra in ON_BEHALF:
            on_behalf = group_chat if sender_chat == "the group" else sender_chat
            for command in ("/clients week", "/digest daily 09:00", f"/grant {STRANGER}"):
                calls = await live.round_trip(
                    command,
                    user_id=sender["id"],
                    chat_id=GROUP,
                    **{"from": sender, "sender_chat": on_behalf, **extra},
                )
                assert [c.method for c in calls] == ["sendMessage"], (sender, command)
                (hint,) = texts(calls)
                assert hint.startswith(ON_BEHALF_HINT)
                assert "Remain anonymous" in hint
        assert await subscription_states(data) == {}
        assert await role_in_db(data, STRANGER) is None
        assert live.tg.errors() == []


async def test_a_forwarded_command_counts_as_sent_by_the_forwarder(data: AsyncEngine) -> None:
    def origin(user_id: int) -> dict[str, Any]:
        user = {"id": user_id, "is_bot": False, "first_name": "Original"}
        return {"type": "user", "sender_user": user, "date": 1_762_000_000}

    async with running(data) as live:
        # A stranger forwards an admin's /clients: refused, no data.
        calls = await live.round_trip(
            "/clients yesterday", user_id=STRANGER, forward_origin=origin(ADMIN)
        )
        assert [c.method for c in calls] == ["sendMessage"]
        assert texts(calls) == [refusal(STRANGER)]
        # A stranger's forwarded /grant does not grant anything either.
        calls = await live.round_trip(
            f"/grant {STRANGER}", user_id=STRANGER, forward_origin=origin(ADMIN)
        )
        assert [c for c in calls if c.method in SENDS] == []  # refused once an hour
        assert await role_in_db(data, STRANGER) is None
        # An admin forwards a stranger's /clients: the admin asked, the admin gets it.
        calls = await live.round_trip(EMPTY_DAY, user_id=ADMIN, forward_origin=origin(STRANGER))
        assert methods(calls) == EMPTY_DAY_REPORT
        assert {c.params["chat_id"] for c in calls if c.method in SENDS} == {str(ADMIN)}
        assert live.tg.errors() == []


async def test_an_edited_command_gets_no_reply(data: AsyncEngine) -> None:
    """The bot does not react to edited messages: no handler is registered for edited_message,
    so editing an old message into `/clients week` (even an admin's) produces nothing. Editing
    is not a way around the access check, and a report is never sent twice for one message."""
    async with direct(data) as harness:
        edited = message("/clients week", user_id=ADMIN).model_copy(
            update={"edit_date": 1_762_000_000}
        )
        await harness.feed(edited_message=edited)
        await harness.feed(edited_message=message("/grant 9", user_id=ADMIN))
        assert harness.session.requests == []
        assert await role_in_db(data, 9) is None

        # The same command as a new message is answered: the silence above is the edit's.
        await harness.feed(message=message(EMPTY_DAY, user_id=ADMIN))
        assert harness.names() == EMPTY_DAY_REPORT


async def test_channel_posts_and_inline_queries_produce_nothing(data: AsyncEngine) -> None:
    channel = Chat(id=-1009000000001, type="channel", title="News")
    async with direct(data) as harness:
        post = message("/clients week", user_id=None, chat_id=channel.id).model_copy(
            update={"chat": channel, "sender_chat": channel}
        )
        await harness.feed(channel_post=post)
        await harness.feed(edited_channel_post=post)
        query = InlineQuery(
            id="1", from_user=message("x", user_id=ADMIN).from_user, query="week", offset=""
        )
        await harness.feed(inline_query=query)
        assert harness.session.requests == []


# -- 3. group chats ----------------------------------------------------------------------------


async def test_a_group_is_served_only_after_an_admin_enables_it(data: AsyncEngine) -> None:
    await grant_leads(data, [LEAD])
    async with running(data) as live:
        # Not enabled: leads and strangers get nothing, the admin learns how to enable it.
        for user_id in (LEAD, STRANGER):
            calls = await live.round_trip("/clients yesterday", user_id=user_id, chat_id=GROUP)
            assert calls == [], user_id
        calls = await live.round_trip("/clients yesterday", user_id=ADMIN, chat_id=GROUP)
        assert texts(calls) == [NOT_ENABLED]
        assert [c.method for c in calls] == ["sendMessage"]
        calls = await live.round_trip("/help", user_id=STRANGER, chat_id=GROUP)
        assert calls == []  # not even /help: the group is not served at all

        await enable_group(live)
        assert await is_enabled_in_db(data, GROUP)

        # Enabled: a lead's report goes to the group, a stranger is refused there.
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD, chat_id=GROUP)
        assert methods(calls) == EMPTY_DAY_REPORT
        assert {c.params["chat_id"] for c in calls if c.method in SENDS} == {str(GROUP)}
        calls = await live.round_trip("/clients yesterday", user_id=STRANGER, chat_id=GROUP)
        assert [c.method for c in calls] == ["sendMessage"]
        assert texts(calls) == [refusal(STRANGER)]
        calls = await live.round_trip("/clients yesterday", user_id=STRANGER, chat_id=GROUP)
        assert calls == []  # once an hour

        # Another group is still not served.
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD, chat_id=OTHER_GROUP)
        assert calls == []

        calls = await live.round_trip("/disable", user_id=ADMIN, chat_id=GROUP)
        assert texts(calls) == [DISABLED]
        assert not await is_enabled_in_db(data, GROUP)
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD, chat_id=GROUP)
        assert calls == []
        assert live.tg.errors() == []


async def test_only_an_admin_can_enable_or_disable_a_group(data: AsyncEngine) -> None:
    await grant_leads(data, [LEAD])
    async with running(data) as live:
        calls = await live.round_trip("/enable", user_id=LEAD, chat_id=GROUP)
        assert texts(calls) == [ONLY_ADMINS]
        calls = await live.round_trip("/enable", user_id=STRANGER, chat_id=GROUP)
        assert texts(calls) == [refusal(STRANGER)]
        assert not await is_enabled_in_db(data, GROUP)

        await enable_group(live)
        calls = await live.round_trip("/disable", user_id=9002, chat_id=GROUP)
        assert texts(calls) == [refusal(9002)]
        assert await is_enabled_in_db(data, GROUP)

        calls = await live.round_trip("/enable", user_id=ADMIN)
        assert texts(calls) == [
            "/enable is for groups; private chats with admins and leads work already."
        ]
        assert live.tg.errors() == []


async def test_disable_in_a_private_chat_explains_it_is_for_groups(data: AsyncEngine) -> None:
    async with direct(data) as harness:
        before = await table_counts(data)
        await harness.send("/disable", user_id=ADMIN)
        assert harness.texts() != [DISABLED]
        assert "for groups" in harness.texts()[0]
        assert await table_counts(data) == before


@pytest.mark.parametrize("new_status", ["member", "administrator"])
async def test_the_bot_leaves_a_group_a_non_admin_added_it_to(
    data: AsyncEngine, new_status: str
) -> None:
    await grant_leads(data, [LEAD])
    async with running(data) as live:
        for adder, chat_id in ((STRANGER, GROUP), (LEAD, OTHER_GROUP)):
            mark = len(live.tg.calls())
            update = live.tg.my_chat_member(chat_id, user_id=adder, new_status=new_status)
            await live.settle(update)
            assert [(c.method, c.params["chat_id"]) for c in live.since(mark)] == [
                ("leaveChat", str(chat_id))
            ]
        # An admin adding it: it stays, silently, until /enable.
        mark = len(live.tg.calls())
        await live.settle(
            live.tg.my_chat_member(-1001234500003, user_id=ADMIN, new_status="member")
        )
        assert live.since(mark) == []
        assert live.tg.errors() == []


async def test_the_bot_leaves_a_channel_a_non_admin_added_it_to(data: AsyncEngine) -> None:
    channel = -1009000000002
    async with running(data) as live:
        mark = len(live.tg.calls())
        update = live.tg.my_chat_member(
            channel, user_id=STRANGER, new_status="administrator", chat_type="channel"
        )
        await live.settle(update)
        assert [(c.method, c.params["chat_id"]) for c in live.since(mark)] == [
            ("leaveChat", str(channel))
        ]
        # An admin adding it: it stays.
        mark = len(live.tg.calls())
        await live.settle(
            live.tg.my_chat_member(
                -1009000000003, user_id=ADMIN, new_status="administrator", chat_type="channel"
            )
        )
        assert live.since(mark) == []
        assert live.tg.errors() == []


async def test_a_promotion_by_the_group_owner_does_not_make_the_bot_leave(
    data: AsyncEngine,
) -> None:
    owner = 9003
    async with running(data) as live:
        await live.settle(live.tg.my_chat_member(GROUP, user_id=ADMIN, new_status="member"))
        await enable_group(live)
        mark = len(live.tg.calls())
        update = live.tg.my_chat_member(
            GROUP, user_id=owner, new_status="administrator", old_status="member"
        )
        await live.settle(update)
        assert live.since(mark) == []


@pytest.mark.parametrize(
    ("chat_id", "new_status"),
    [(GROUP, "left"), (GROUP, "kicked"), (ADMIN, "kicked")],
    ids=["removed-from-group", "kicked-from-group", "blocked-in-private"],
)
async def test_removal_or_block_deactivates_that_chat_s_digests(
    data: AsyncEngine, chat_id: int, new_status: str
) -> None:
    async with session_factory(data)() as session:
        for where in (chat_id, chat_id, OTHER_GROUP):
            await add_subscription(session, where, parse_rule("daily 09:00"), now=NOW)
        await session.commit()
    async with running(data) as live:
        update = live.tg.my_chat_member(
            chat_id, user_id=ADMIN, new_status=new_status, old_status="member"
        )
        await live.settle(update)
        states = await subscription_states(data)
        assert states[chat_id] == [(False, f"bot {new_status}")] * 2
        assert states[OTHER_GROUP] == [(True, None)]
        assert [c for c in live.tg.calls() if c.method in SENDS] == []


@pytest.mark.parametrize("where", [ADMIN, GROUP], ids=["private", "group"])
async def test_commands_for_another_bot_are_ignored(data: AsyncEngine, where: int) -> None:
    async with running(data) as live:
        if where == GROUP:
            await enable_group(live)
        for command in (
            "/clients@other_bot week",
            "/help@other_bot",
            "/grant@other_bot 9",
            "/enable@other_bot",
            "/clients@fake_analytics_bo week",
        ):
            calls = await live.round_trip(command, user_id=ADMIN, chat_id=where)
            assert calls == [], command
        assert await role_in_db(data, 9) is None

        for command in (
            "/clients@fake_analytics_bot 2026-11-05",
            "/clients@FAKE_ANALYTICS_BOT 2026-11-05",
        ):
            calls = await live.round_trip(command, user_id=ADMIN, chat_id=where)
            assert methods(calls) == EMPTY_DAY_REPORT, command
        assert live.tg.errors() == []


async def test_an_enabled_group_stays_enabled_after_becoming_a_supergroup(
    data: AsyncEngine,
) -> None:
    old, new = -5001, -1005001
    await grant_leads(data, [LEAD])
    async with running(data) as live:
        await enable_group(live, old)
        # Telegram's two service messages of an upgrade, then the old id is gone.
        admin = {"id": ADMIN, "is_bot": False, "first_name": "Admin"}
        for where, field, value in (
            ({"id": old, "type": "group", "title": "Team"}, "migrate_to_chat_id", new),
            ({"id": new, "type": "supergroup", "title": "Team"}, "migrate_from_chat_id", old),
        ):
            update = live.tg.queue_update(
                {
                    "message": {
                        "message_id": 90,
                        "date": 1_762_000_000,
                        "chat": where,
                        "from": admin,
                        field: value,
                    }
                }
            )
            await live.settle(update)
        live.tg.migrate_chat(old, new)
        calls = await live.round_trip(EMPTY_DAY, user_id=LEAD, chat_id=new)
        assert methods(calls) == EMPTY_DAY_REPORT


# -- 4. buttons --------------------------------------------------------------------------------


FORGED = [
    "rep:forever::",
    "garbage",
    "rep:week",
    "rep:week:",
    "rep:week:a:b:c",
    "rep::",
    "REP:week::",
]


async def test_a_forged_or_malformed_button_gets_a_short_alert_only(data: AsyncEngine) -> None:
    """Telegram only delivers data a button carried, but a client can forge it; and buttons
    of an older bot version may carry codes this one does not know."""
    async with running(data) as live:
        await live.round_trip(EMPTY_DAY, user_id=ADMIN)
        shown = report_message(live, ADMIN)["message_id"]
        for forged in FORGED:
            for presser in (ADMIN, STRANGER):
                calls = await live.press(
                    forged, user_id=presser, chat_id=ADMIN, message_id=shown, check=False
                )
                assert [(c.method, c.ok) for c in calls] == [("answerCallbackQuery", True)]
                assert calls[0].params["text"] == INVALID_BUTTON, forged
                assert calls[0].params["show_alert"] == "true"
        assert live.tg.errors() == []


STALE = [
    ("rep:week:fax:", "Unknown channel “fax”. Known channels: email, telegram, vk, whatsapp"),
    ("rep:week:whatsapp:Gone", "Unknown app “Gone”. Known apps: "),
]


async def test_a_stale_button_for_an_unknown_name_gets_one_explanation(data: AsyncEngine) -> None:
    """A button whose channel or app no longer exists (the data was re-imported)."""
    async with running(data) as live:
        await live.round_trip(EMPTY_DAY, user_id=ADMIN)
        shown = report_message(live, ADMIN)["message_id"]
        for button, explanation in STALE:
            calls = await live.press(
                button, user_id=ADMIN, chat_id=ADMIN, message_id=shown, check=False
            )
            assert [(c.method, c.status) for c in calls if c.method != "sendChatAction"] == [
                ("answerCallbackQuery", 200),
                ("sendMessage", 200),
            ], button
            (text,) = texts(calls)
            assert text.startswith(explanation)
            assert calls[0].params.get("text") is None  # the press itself just stops spinning
        assert live.tg.errors() == []


async def test_every_press_rechecks_the_presser_s_role(data: AsyncEngine) -> None:
    await grant_leads(data, [LEAD])
    async with running(data) as live:
        await enable_group(live)
        await live.round_trip(EMPTY_DAY, user_id=ADMIN, chat_id=GROUP)
        shown = report_message(live, GROUP)["message_id"]

        # Anyone in the group can press; a stranger gets an alert and nothing else, every time.
        for _ in range(2):
            calls = await live.press(
                "rep:yesterday::", user_id=STRANGER, chat_id=GROUP, message_id=shown
            )
            assert [
                (c.method, c.params.get("text"), c.params.get("show_alert")) for c in calls
            ] == [("answerCallbackQuery", NOT_ALLOWED, "true")]

        # A lead's press re-runs the report in the group.
        calls = await live.press("rep:today::", user_id=LEAD, chat_id=GROUP, message_id=shown)
        assert methods(calls) == [
            "answerCallbackQuery",
            "sendMessage",
            "sendMediaGroup",
            "sendDocument",
        ]
        assert {c.params["chat_id"] for c in calls if c.method in SENDS} == {str(GROUP)}

        # Revoked: the same button now gives an alert only.
        await live.round_trip(f"/revoke {LEAD}", user_id=ADMIN)
        calls = await live.press("rep:today::", user_id=LEAD, chat_id=GROUP, message_id=shown)
        assert [c.method for c in calls] == ["answerCallbackQuery"]
        assert calls[0].params["text"] == NOT_ALLOWED

        # Disabled group: even the admin's press is refused.
        await live.round_trip("/disable", user_id=ADMIN, chat_id=GROUP)
        calls = await live.press("rep:today::", user_id=ADMIN, chat_id=GROUP, message_id=shown)
        assert [c.method for c in calls] == ["answerCallbackQuery"]
        assert calls[0].params["text"] == NOT_ALLOWED
        assert live.tg.errors() == []


# -- 6. flood ----------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The production middlewares of build_dispatcher, reading a clock the test moves."""
    fake = FakeClock()
    monkeypatch.setattr(bot.app, "AccessMiddleware", partial(AccessMiddleware, clock=fake))
    monkeypatch.setattr(
        bot.app, "ReportFloodMiddleware", partial(ReportFloodMiddleware, clock=fake)
    )
    return fake


async def test_more_than_ten_reports_a_minute_get_one_warning_then_are_dropped(
    data: AsyncEngine, clock: FakeClock
) -> None:
    await grant_leads(data, [LEAD, LEAD + 1])
    async with direct(data) as harness:
        for second in range(10):
            clock.now = 1_000.0 + second
            await harness.send(EMPTY_DAY, user_id=LEAD)
        assert harness.names() == EMPTY_DAY_REPORT * 10
        harness.clear()

        clock.now = 1_030.0
        await harness.send(EMPTY_DAY, user_id=LEAD)
        assert harness.texts() == [SLOW_DOWN]
        for _ in range(3):
            await harness.send("/clients week", user_id=LEAD)
        await harness.press("rep:week::", user_id=LEAD)
        assert harness.names() == ["sendMessage", "answerCallbackQuery"]  # warned once, silent
        assert harness.alerts() == [(None, None)]  # the button still stops spinning

        # Other commands and other users are not held back.
        await harness.send("/help", user_id=LEAD)
        await harness.send(EMPTY_DAY, user_id=LEAD + 1)
        assert harness.names()[2:] == ["sendMessage", *EMPTY_DAY_REPORT]
        harness.clear()

        # A minute after the first one, reports flow again.
        clock.now = 1_060.0
        await harness.send(EMPTY_DAY, user_id=LEAD)
        assert harness.names() == EMPTY_DAY_REPORT


async def test_button_presses_count_as_reports_and_get_the_warning_as_an_alert(
    data: AsyncEngine, clock: FakeClock
) -> None:
    await grant_leads(data, [LEAD])
    async with direct(data) as harness:
        for _ in range(5):
            await harness.send("/clients 2026-11-01..2026-11-05", user_id=LEAD)
        for _ in range(5):
            await harness.press("rep:week:email:", user_id=LEAD)
        harness.clear()
        await harness.press("rep:week::", user_id=LEAD)
        assert harness.names() == ["answerCallbackQuery"]
        assert harness.alerts() == [(SLOW_DOWN, True)]
        await harness.send(EMPTY_DAY, user_id=LEAD)
        assert harness.names() == ["answerCallbackQuery"]


async def test_one_report_in_flight_per_user() -> None:
    flood = ReportFloodMiddleware(clock=lambda: 0.0)
    entered = {name: asyncio.Event() for name in "ABC"}
    release = {name: asyncio.Event() for name in "ABC"}
    order: list[str] = []

    async def report(event: object, data: dict[str, Any]) -> None:
        name = data["name"]
        order.append(f"{name} in")
        entered[name].set()
        await release[name].wait()
        order.append(f"{name} out")

    handler = HandlerObject(callback=report, flags={"report": True})

    def run(name: str, user_id: int) -> asyncio.Task[Any]:
        from_user = message("x", user_id=user_id).from_user
        data = {"event_from_user": from_user, "handler": handler, "name": name}
        return asyncio.create_task(flood(report, object(), data))

    first = run("A", LEAD)
    await entered["A"].wait()
    second = run("B", LEAD)  # the same user: waits for A
    other = run("C", LEAD + 1)  # another user: runs at once
    await entered["C"].wait()  # B was scheduled before C and has had its turn
    assert not entered["B"].is_set()
    release["A"].set()
    await entered["B"].wait()
    release["B"].set()
    release["C"].set()
    await asyncio.gather(first, second, other)
    assert order[:4] == ["A in", "C in", "A out", "B in"]


async def test_a_stranger_is_refused_at_most_once_an_hour(
    data: AsyncEngine, clock: FakeClock
) -> None:
    async with direct(data) as harness:
        await harness.send("/clients week", user_id=STRANGER)  # at 1000 s
        assert harness.texts() == [refusal(STRANGER)]
        clock.now = 1_001.0
        await harness.send("/channels", user_id=STRANGER)
        await harness.send("/start", user_id=STRANGER)
        clock.now = 4_599.0
        await harness.send("/clients week", user_id=STRANGER)
        assert harness.names() == ["sendMessage"]

        # A button must be answered every time, or the client keeps spinning: an alert.
        await harness.press("rep:week::", user_id=STRANGER)
        assert harness.alerts() == [(NOT_ALLOWED, True)]

        # Another stranger has their own hour; the first one's ends at 3600 s.
        await harness.send("/clients week", user_id=STRANGER + 1)
        clock.now = 4_600.0
        await harness.send("/clients week", user_id=STRANGER)
        assert harness.texts() == [refusal(STRANGER), refusal(STRANGER + 1), refusal(STRANGER)]
        # Public commands are not refusals: /help always answers.
        await harness.send("/help", user_id=STRANGER)
        assert harness.texts()[-1].startswith(HELP_START)


# -- 7. secrets --------------------------------------------------------------------------------

SECRET_TOKEN = "987654:SECRET-TOKEN-should-never-appear"
SECRET_PART = SECRET_TOKEN.split(":", 1)[1]


@contextmanager
def production_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """bot.logs.setup_logging as the CLI installs it (root handler + RedactSecrets), at DEBUG,
    writing into a buffer; the previous root handlers come back afterwards."""
    stream = io.StringIO()
    root, alembic = logging.getLogger(), logging.getLogger("alembic")
    saved_handlers, saved_levels = root.handlers[:], (root.level, alembic.level)
    monkeypatch.setattr(sys, "stderr", stream)
    try:
        setup_logging(logging.DEBUG, [SECRET_TOKEN])
        yield stream
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_levels[0])
        alembic.setLevel(saved_levels[1])


class LogEvent(logging.Handler):
    """Sets an asyncio event when a record's message contains `needle` (event-based waits)."""

    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle, self.seen = needle, asyncio.Event()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if self.needle in record.getMessage():
            self.count += 1
            self.seen.set()


def assert_clean(text: str, where: str) -> None:
    """Neither the token nor its secret half appears; on failure, show the lines that leak."""
    leaks = [line for line in text.splitlines() if SECRET_PART in line]
    assert leaks == [], where


def test_redact_secrets_cleans_message_args_exception_and_stack() -> None:
    try:
        raise RuntimeError(f"POST http://127.0.0.1:1/bot{SECRET_TOKEN}/getMe failed")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "aiogram",
        logging.ERROR,
        __file__,
        1,
        "request %s to %r",
        (f"bot{SECRET_TOKEN}", {"t": SECRET_TOKEN}),
        exc_info,
    )
    record.stack_info = f"Stack (most recent call last):\n  token={SECRET_TOKEN}"
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactSecrets([SECRET_TOKEN, ""]))
    handler.handle(record)
    output = handler.stream.getvalue()  # type: ignore[attr-defined]
    assert_clean(output, "log output")
    assert output.count(REDACTED) == 4  # message, its repr'd dict, the exception, the stack
    assert "RuntimeError: POST http://127.0.0.1:1/bot<token>/getMe failed" in output
    assert "Traceback (most recent call last)" in output


async def test_the_token_never_appears_in_logs_replies_or_files(
    data: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures = 0

    async def broken(*args: object, **kwargs: object) -> None:
        nonlocal failures
        failures += 1
        raise RuntimeError(f"GET http://127.0.0.1/bot{SECRET_TOKEN}/getFile exploded")

    with production_logging(monkeypatch) as logs:
        async with running(data, token=SECRET_TOKEN) as live:
            # A normal report with its CSV, and the directory.
            await live.round_trip("/clients yesterday", user_id=ADMIN)
            await live.round_trip("/channels", user_id=ADMIN)
            # An unexpected exception in a handler, whose text carries the token.
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(bot.telegram.delivery, "build_report", broken)
                calls = await live.round_trip("/clients week", user_id=ADMIN)
            assert texts(calls)[0].startswith("Sorry, something went wrong on our side.")
            # 500s until the retries give up: the handler fails, the apology gets through.
            live.tg.fail_next("sendMessage", status=500, times=3)
            calls = await live.round_trip("/help", user_id=ADMIN)
            assert [c.status for c in calls if c.method == "sendMessage"] == [500, 500, 500, 200]
            # A 401 on a reply (a revoked token while running).
            live.tg.fail_next("sendMessage", status=401, times=1)
            await live.round_trip("/help", user_id=ADMIN)
            calls_seen = live.tg.calls()
    output = logs.getvalue()
    assert failures == 1
    assert (
        "incident" in output and "RuntimeError: GET http://127.0.0.1/bot<token>/getFile" in output
    )
    assert "sendMessage failed 3 times: TelegramServerError" in output
    assert "TelegramUnauthorizedError" in output
    assert_clean(output, "log output")

    for call in calls_seen:
        assert_clean(repr(call.params), call.method)
        assert_clean(repr(call.response), call.method)
        for upload in call.files.values():
            assert SECRET_PART.encode() not in upload.data, upload.filename
    assert files_holding(tmp_path, SECRET_PART.encode()) == []


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    """Saved files (the database with its journal, imported data) that contain needle."""
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_network_errors_while_waiting_for_telegram_are_logged_without_the_token(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """getMe through the production path (session retries, then wait_for_telegram's back-off)
    against a closed port; cancelled once the log shows the first back-off."""
    settings = make_settings(
        sqlite_engine, token=SECRET_TOKEN, api_url=f"http://127.0.0.1:{closed_port()}"
    )
    app = build_application(settings, sqlite_engine)
    try:
        with production_logging(monkeypatch) as logs:
            retry = LogEvent("Telegram is not reachable")
            logging.getLogger().addHandler(retry)
            waiting = asyncio.create_task(wait_for_telegram(app.bot, max_delay=1.0))
            await retry.seen.wait()
            waiting.cancel()
            with suppress(asyncio.CancelledError):
                await waiting
    finally:
        await app.bot.session.close()
    output = logs.getvalue()
    assert "getMe: TelegramNetworkError, retry 1" in output  # the session's own retries
    assert "getMe failed 3 times: TelegramNetworkError" in output
    assert "Telegram is not reachable (TelegramNetworkError); retrying in 1 s" in output
    assert_clean(output, "log output")


async def test_a_rejected_token_is_logged_without_the_token(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeTelegram(token="987654:another-token") as tg:  # Telegram answers 401
        settings = make_settings(sqlite_engine, token=SECRET_TOKEN, api_url=tg.base_url)
        with production_logging(monkeypatch) as logs:
            assert await serve(settings, sqlite_engine) == 2
        assert [(c.method, c.status) for c in tg.calls()] == [("getMe", 401)]
    output = logs.getvalue()
    assert "Telegram rejected BOT_TOKEN" in output
    assert_clean(output, "log output")
