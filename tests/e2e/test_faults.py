"""Fault tests: the real application against the fake Bot API, with failures injected.

Each test runs what `python -m bot` runs (`build_application`, or the same parts wired by hand
where a test must swap one of them), polls the fake server in `tests/fake_telegram.py`, injects
a fault and ends with every message delivered exactly once, or with a clear note to the user,
and with the bot still answering `/help`. Waits are on the fake's events; real time passes only
where the product itself waits (retry_after, retry backoff, the render timeout, the SQLite busy
timeout) or where the test holds a lock for a set time.

The clock is frozen at 2026-11-11 12:00 Moscow, so "yesterday" is the hand-counted day of
`tests/datasets.py` (a report of three parts: text, an album of two pies and the trend, the CSV).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_application, build_bot, build_dispatcher, wait_for_telegram
from bot.ingest.demo import load_demo
from bot.rendering import Renderer
from bot.storage.chats import set_enabled
from bot.storage.engine import create_engine, migrate, session_factory
from bot.storage.tables import chats, people, subscriptions
from bot.telegram import outbound
from bot.telegram.outbound import Limits, OutboundLimiter, RateLimitMiddleware, RetryMiddleware
from reports.metrics import build_report
from reports.model import ReportFilter
from reports.periods import parse_period
from tests.e2e.fault_support import HANG_FLAG_ENV, SLOW_SECONDS, charts_or_hang, slow_charts
from tests.fake_telegram import BOT_USERNAME, Call, FakeTelegram
from tests.support.polling import SENDS, Live, polling
from tests.support.settings import ADMIN, MSK, NOW, make_settings

TOKEN = "123456:TEST-token"
# How long a test waits for one update before it fails instead of hanging.
SETTLE_TIMEOUT = 60.0
ROOT = Path(__file__).resolve().parent.parent.parent

REPORT = ["sendMessage", "sendMediaGroup", "sendDocument"]
YESTERDAY_CSV = "clients_2026-11-10_2026-11-10.csv"
REPORT_TITLE = "Clients report\nPeriod: 10 Nov 2026 (Europe/Moscow)\n"
CHARTS_UNAVAILABLE = (
    "Charts are unavailable right now; the numbers above and the CSV are complete."
)
CSV_UNDELIVERED = (
    "Sorry, the CSV file could not be delivered: Telegram did not accept it. Please retry."
)
PHOTOS_FORBIDDEN = "Bad Request: not enough rights to send photos to the chat"
CHARTS_NOT_ALLOWED = (
    "Sorry, the charts could not be posted here: this chat does not allow the bot to send photos."
)
GROUP = -1001234500001
DATABASE_TEMPORARY = "Temporary problem with the database: please retry in a minute."
LANGUAGE_RU = "Язык: русский."
NOT_JSON_502 = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


# -- harness -----------------------------------------------------------------------------------


@asynccontextmanager
async def production(
    engine: AsyncEngine,
    *,
    limiter: OutboundLimiter | None = None,
    admins: tuple[int, ...] = (ADMIN,),
    **fake: Any,
) -> AsyncIterator[Live]:
    """`build_application` (production limiter unless given) polling a fresh fake."""
    async with FakeTelegram(token=TOKEN, **fake) as tg:
        app = build_application(
            make_settings(engine, token=TOKEN, api_url=tg.base_url, admin_ids=admins),
            engine,
            clock=lambda: NOW,
            limiter=limiter,
        )
        async with polling(tg, app.bot, app.dispatcher, timeout=SETTLE_TIMEOUT) as live:
            yield live


def assert_one_report(live: Live, *, chat_id: int = ADMIN) -> list[Call]:
    """The yesterday report arrived exactly once: text, album of three charts, CSV, in order."""
    delivered = live.delivered(chat_id)
    assert [call.method for call in delivered] == REPORT
    text, album, document = delivered
    assert text.result["text"].startswith(REPORT_TITLE)
    assert [item["type"] for item in album.json("media")] == ["photo", "photo", "photo"]
    assert len(album.result) == 3
    assert document.result["document"]["file_name"] == YESTERDAY_CSV
    return delivered


# -- Telegram errors on sends ------------------------------------------------------------------


async def test_a_429_on_the_album_waits_retry_after_and_the_album_arrives_once(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        live.tg.fail_next("sendMediaGroup", 429, retry_after=2)
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        albums = live.tg.calls("sendMediaGroup")
        assert [call.status for call in albums] == [429, 200]
        assert albums[0].response is not None
        assert albums[0].response["parameters"] == {"retry_after": 2}
        assert albums[1].at - albums[0].at >= 2.0  # it waited retry_after before the retry
        # The retry carries the same three charts, and only the album is resent.
        assert [f.data for f in albums[1].media_files() if f] == [
            f.data for f in albums[0].media_files() if f
        ]
        assert_one_report(live)
        assert live.tg.errors() == [albums[0]]
        await live.assert_serves_help()


async def test_two_500s_on_the_text_are_retried_and_the_text_arrives_once(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        live.tg.fail_next("sendMessage", 500, times=2)
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        texts = live.tg.calls("sendMessage")
        assert [call.status for call in texts] == [500, 500, 200]
        assert texts[0].params == texts[1].params == texts[2].params
        # Backed off before each retry (0.5 s, then 1 s, each plus up to 10 % jitter).
        gaps = [later.at - earlier.at for earlier, later in pairwise(texts)]
        assert gaps[0] >= 0.5 and gaps[1] >= 1.0
        assert_one_report(live)
        assert live.tg.errors() == texts[:2]
        await live.assert_serves_help()


async def test_a_non_json_502_on_the_csv_is_retried_and_the_csv_arrives_once(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        # A proxy in front of Telegram answers with its HTML error page (ClientDecodeError).
        live.tg.fail_next("sendDocument", 502, raw_body=NOT_JSON_502)
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", 2, timeout=30)
        await live.settle(update)

        documents = live.tg.calls("sendDocument")
        assert [(call.status, call.raw_body) for call in documents] == [
            (502, NOT_JSON_502),
            (200, None),
        ]
        first, retry = (call.file("document") for call in documents)
        assert first is not None and retry is not None and first.data == retry.data
        assert_one_report(live)
        await live.assert_serves_help()


async def test_a_connection_dropped_before_the_text_was_processed_is_retried_once(
    hand_counted: AsyncEngine,
) -> None:
    # Dropped before Telegram executed the request: nothing was sent, so a retry cannot
    # duplicate. (A drop *after* processing can: the message exists but its answer was lost,
    # and Telegram has no idempotency key, so the retry sends it again. See the next test.)
    async with production(hand_counted) as live:
        live.tg.drop_next("sendMessage")
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        texts = live.tg.calls("sendMessage")
        assert [call.response is None for call in texts] == [True, False]
        assert texts[0].params == texts[1].params
        assert_one_report(live)
        assert live.tg.errors() == []
        await live.assert_serves_help()


async def test_a_connection_dropped_after_processing_is_resent_and_so_duplicated(
    hand_counted: AsyncEngine,
) -> None:
    """Documents a known limit, not a wish: Telegram executed the request but its answer was
    lost; the bot cannot tell this from a drop before processing (no idempotency key in the Bot
    API), so it retries and the chat sees the message twice. Everything after it goes once."""
    async with production(hand_counted) as live:
        live.tg.drop_next("sendMessage", after_processing=True)
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        texts = live.tg.calls("sendMessage")
        assert [call.response is None for call in texts] == [True, False]
        shown = [m for m in live.tg.sent_messages(ADMIN) if "text" in m]
        assert len(shown) == 2 and shown[0]["text"] == shown[1]["text"]
        methods = [m for m in live.delivered_methods() if m != "sendMessage"]
        assert methods == ["sendMediaGroup", "sendDocument"]
        await live.assert_serves_help()


async def test_a_csv_that_keeps_failing_gets_one_note_naming_it_and_the_bot_goes_on(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        live.tg.fail_next("sendDocument", 500, times=3)  # every attempt the retry policy makes
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", 3, timeout=30)
        await live.settle(update)

        assert [call.status for call in live.tg.calls("sendDocument")] == [500, 500, 500]
        delivered = live.delivered()
        assert [call.method for call in delivered] == [
            "sendMessage",
            "sendMediaGroup",
            "sendMessage",
        ]
        text, album, note = delivered
        assert text.result["text"].startswith(REPORT_TITLE)
        assert len(album.result) == 3
        assert note.result["text"] == CSV_UNDELIVERED
        await live.assert_serves_help()


async def enable_group(engine: AsyncEngine, chat_id: int) -> None:
    async with session_factory(engine)() as session:
        await set_enabled(session, chat_id, True, language="en")
        await session.commit()


async def test_a_group_that_forbids_photos_gets_the_text_one_note_and_the_csv(
    hand_counted: AsyncEngine,
) -> None:
    await enable_group(hand_counted, GROUP)
    async with production(hand_counted) as live:
        live.tg.restrict_chat(GROUP, photos=False)
        update = live.say("/clients yesterday", user_id=ADMIN, chat_id=GROUP)
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        # Refused for good: asked once, not retried.
        (album,) = live.tg.calls("sendMediaGroup")
        assert album.status == 400
        assert album.description == PHOTOS_FORBIDDEN
        delivered = live.delivered(GROUP)
        assert [call.method for call in delivered] == [
            "sendMessage",
            "sendMessage",
            "sendDocument",
        ]
        text, note, document = delivered
        assert text.result["text"].startswith(REPORT_TITLE)
        assert note.result["text"] == CHARTS_NOT_ALLOWED
        assert document.result["document"]["file_name"] == YESTERDAY_CSV
        assert live.tg.errors() == [album]
        await live.assert_serves_help()


async def test_a_button_whose_answer_fails_three_times_still_gets_its_report(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        # A message that carries no buttons: the fake then takes any callback data.
        live.tg.fail_next("answerCallbackQuery", 500, times=3)
        update = live.tg.press_button(
            "rep:yesterday::", chat_id=ADMIN, user_id=ADMIN, message_id=1
        )
        await live.tg.wait_for("sendDocument", timeout=30)
        await live.settle(update)

        answers = live.tg.calls("answerCallbackQuery")
        assert [call.status for call in answers] == [500, 500, 500]
        # Answering the press is best effort: the report is what was asked for, and no
        # incident is reported on top of it.
        assert_one_report(live)
        assert live.tg.errors() == answers
        await live.assert_serves_help()


# -- Telegram unreachable at start-up, and polling faults --------------------------------------


class VirtualTime:
    """Virtual seconds for the start-up retries: Telegram answers getMe with 500 until `outage`
    virtual seconds have passed, and no real time passes.

    Every getMe after the first follows exactly one sleep (wait_for_telegram's or the retry
    middleware's), so each sleep decides whether the next getMe fails.
    """

    def __init__(self, tg: FakeTelegram, outage: float) -> None:
        self.tg, self.outage = tg, outage
        self.now = 0.0
        self.backoffs: list[float] = []  # wait_for_telegram's sleeps
        self.retries: list[float] = []  # the retry middleware's sleeps
        self.last_sleep = 0.0
        tg.fail_next("getMe", 500)

    async def _advance(self, delay: float) -> None:
        self.now += delay
        self.last_sleep = delay
        if self.now < self.outage:
            self.tg.fail_next("getMe", 500)
        await asyncio.sleep(0)

    async def backoff_sleep(self, delay: float) -> None:
        self.backoffs.append(delay)
        await self._advance(delay)

    async def retry_sleep(self, delay: float) -> None:
        self.retries.append(delay)
        await self._advance(delay)


async def test_get_me_failing_for_20_seconds_at_start_up_is_waited_out_then_polling_serves(
    hand_counted: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.app")
    async with FakeTelegram(token=TOKEN) as tg:
        clock = VirtualTime(tg, outage=20.0)
        limiter = OutboundLimiter()
        app = build_application(
            make_settings(hand_counted, token=TOKEN, api_url=tg.base_url),
            hand_counted,
            limiter=limiter,
        )
        # The production request middlewares, with the retry's sleep made virtual as well.
        installed = list(app.bot.session.middleware)
        assert [type(m) for m in installed] == [RetryMiddleware, RateLimitMiddleware]
        for middleware in installed:
            app.bot.session.middleware.unregister(middleware)
        app.bot.session.middleware(RetryMiddleware(sleep=clock.retry_sleep))
        app.bot.session.middleware(RateLimitMiddleware(limiter))

        # A command sent while Telegram was unreachable waits in Telegram's queue.
        queued = tg.send_message("/help", chat_id=ADMIN, user_id=ADMIN)

        me = await wait_for_telegram(app.bot, sleep=clock.backoff_sleep)

        assert me.username == BOT_USERNAME
        # Doubling back-off between attempts, for as long as getMe kept failing.
        backoffs = clock.backoffs
        assert backoffs == [min(2.0**n, 30.0) for n in range(len(backoffs))]
        # It succeeded at the first getMe after the 20 s outage, and never waited for real.
        assert clock.now >= 20.0 > clock.now - clock.last_sleep
        attempts = tg.calls("getMe")
        assert [call.status for call in attempts] == [500] * (len(attempts) - 1) + [200]
        assert len(attempts) == 1 + len(backoffs) + len(clock.retries)
        assert attempts[-1].at - attempts[0].at < 5.0
        logged = [r.getMessage() for r in caplog.records if r.name == "bot.app"]
        assert logged == [
            f"Telegram is not reachable (TelegramServerError); retrying in {delay:.0f} s"
            for delay in backoffs
        ]
        assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "bot.app")
        assert tg.calls("getUpdates") == []

        async with polling(tg, app.bot, app.dispatcher, timeout=SETTLE_TIMEOUT) as live:
            await live.settle(queued)
            (answer,) = live.delivered()
            assert answer.result["text"].startswith("Commands\n")
            await live.assert_serves_help()
            # Polling used the bot user wait_for_telegram fetched: no further getMe.
            assert len(tg.calls("getMe")) == len(attempts)
        assert live.delivered_methods() == ["sendMessage", "sendMessage"]


@pytest.mark.parametrize("drops", [1, 4], ids=["one-drop", "four-drops-past-the-retries"])
async def test_polling_survives_dropped_get_updates_and_answers_each_command_once(
    hand_counted: AsyncEngine, drops: int
) -> None:
    # Four drops outlast the retry middleware's three attempts, so aiogram's own polling
    # back-off takes over for one round.
    async with production(hand_counted) as live:
        live.tg.drop_next("getUpdates", times=drops)
        first = live.command("/help")  # answered by the poll in progress; the next one drops
        await live.settle(first)
        second = live.command("/help")
        await live.settle(second)

        polls = live.tg.calls("getUpdates")
        assert sum(call.response is None for call in polls) == drops
        offsets = [int(call.params.get("offset", 0)) for call in polls]
        assert offsets == sorted(offsets)  # the offset never went back
        delivered = live.delivered()
        assert [call.method for call in delivered] == ["sendMessage", "sendMessage"]
        assert all(call.result["text"].startswith("Commands\n") for call in delivered)
        await live.assert_serves_help()
        assert live.tg.pending_updates == []


# -- chart rendering ---------------------------------------------------------------------------


async def test_a_hung_chart_renderer_gives_text_and_csv_with_a_note_then_a_fresh_pool_works(
    hand_counted: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    flag = tmp_path / "hang"
    flag.touch()
    monkeypatch.setenv(HANG_FLAG_ENV, str(flag))  # before the pool spawns its worker
    renderer = Renderer(workers=1, timeout=6.0, chart_function=charts_or_hang)
    async with FakeTelegram(token=TOKEN) as tg:
        settings = make_settings(hand_counted, token=TOKEN, api_url=tg.base_url)
        bot = build_bot(settings)
        outbound.install(bot, OutboundLimiter())
        dispatcher = build_dispatcher(settings, hand_counted, clock=lambda: NOW, renderer=renderer)
        async with polling(tg, bot, dispatcher, timeout=SETTLE_TIMEOUT) as live:
            first = live.command("/clients yesterday")
            await live.tg.wait_for("sendDocument", timeout=30)
            await live.settle(first)

            text, document = live.delivered()
            assert (text.method, document.method) == ("sendMessage", "sendDocument")
            assert text.result["text"].startswith(REPORT_TITLE)
            assert text.params["text"].endswith(f"\n\n<i>{CHARTS_UNAVAILABLE}</i>")
            assert document.result["document"]["file_name"] == YESTERDAY_CSV
            assert "chart rendering took over 6.0 s" in caplog.text

            flag.unlink()  # the renderer works again; the stuck worker was ended
            before = len(live.delivered())
            second = live.command("/clients yesterday")
            await live.tg.wait_for("sendDocument", 2, timeout=30)
            await live.settle(second)
            again = live.delivered()[before:]
            assert [call.method for call in again] == REPORT
            assert CHARTS_UNAVAILABLE not in again[0].params["text"]
            assert len(again[1].result) == 3
            await live.assert_serves_help()
        assert live.tg.calls("sendMediaGroup") == [again[1]]


async def test_renders_queued_behind_others_are_not_timed_out(hand_counted: AsyncEngine) -> None:
    # The timeout is for a stuck render, not for the wait in line behind healthy ones (it used
    # to run from submission, and its pool termination then failed the renders in flight too).
    periods = parse_period("yesterday", now=NOW, tz=MSK)
    async with hand_counted.connect() as connection:
        report = await build_report(connection, periods, ReportFilter())
    # One worker; each render takes a little over SLOW_SECONDS, well under the timeout.
    renderer = Renderer(workers=1, timeout=SLOW_SECONDS + 1.5, chart_function=slow_charts)
    try:
        await renderer.warm_up()
        bundles = await asyncio.gather(
            *(renderer.render(report, lang="en", delimiter=",") for _ in range(3))
        )
    finally:
        renderer.close()
    assert [len(bundle.charts) for bundle in bundles] == [2, 2, 2]
    assert all(CHARTS_UNAVAILABLE not in bundle.text for bundle in bundles)


async def heartbeat(stop: asyncio.Event, lags: list[float], period: float = 0.01) -> None:
    """Wake every `period` seconds and record how late each wake-up came."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(period)
        lags.append(loop.time() - started - period)


async def test_the_loop_stays_responsive_while_ten_reports_render(
    sqlite_engine: AsyncEngine,
) -> None:
    await load_demo(sqlite_engine, now=NOW)
    users = tuple(range(1001, 1011))
    helper = 2000
    # Pacing is not what this measures.
    limiter = OutboundLimiter(Limits(per_second=1000, chat_interval=0, group_per_minute=1000))
    async with production(sqlite_engine, limiter=limiter, admins=users) as live:
        lags: list[float] = []
        stop = asyncio.Event()
        # What the earlier tests of this pytest process left on the heap is not the bot's: a
        # full collection of it in mid-measurement once showed up as a 250 ms "stall".
        gc.collect()
        gc.freeze()
        beat = asyncio.create_task(heartbeat(stop, lags))
        try:
            updates = [live.command("/clients month", user_id=user) for user in users]
            await live.tg.wait_for("sendMessage", timeout=60)  # the first report's text
            asked = live.command("/help", user_id=helper)
            documents = await live.tg.wait_for("sendDocument", len(users), timeout=120)
        finally:
            stop.set()
            await beat
            gc.unfreeze()
        for update in [*updates, asked]:
            await live.settle(update)

        (help_reply,) = live.delivered(helper)
        assert help_reply.result["text"].startswith("Commands\n")
        # Answered while reports were still being produced.
        assert help_reply.at < max(call.at for call in documents)
        for user in users:
            assert live.delivered_methods(user) == REPORT, user
        assert len(lags) > 10
        worst = max(lags)
        print(f"heartbeat: {len(lags)} beats, max lag {worst * 1000:.1f} ms")
        assert worst < 0.1, f"the event loop stalled for {worst * 1000:.0f} ms"
        await live.assert_serves_help(user_id=users[0])


async def test_fifty_reports_at_once_are_all_answered(hand_counted: AsyncEngine) -> None:
    # More reports at once than the SQLite pool's 15 connections (5 + 10 overflow): a report
    # must not hold its update's session connection while build_report asks for another, or
    # they all wait for each other until the 30 s pool timeout (found by benchmarks/load.py).
    users = tuple(range(1001, 1051))
    limiter = OutboundLimiter(Limits(per_second=1000, chat_interval=0, group_per_minute=1000))
    async with production(hand_counted, limiter=limiter, admins=users) as live:
        updates = [live.command("/clients yesterday", user_id=user) for user in users]
        for update in updates:
            await live.settle(update, timeout=120)

        refused = [user for user in users if live.delivered_methods(user) != REPORT]
        assert refused == [], [live.delivered(user)[0].result["text"] for user in refused]
        for user in users:
            assert_one_report(live, chat_id=user)
        await live.assert_serves_help()


async def test_a_report_waiting_for_its_chat_s_pace_does_not_hold_back_other_chats(
    hand_counted: AsyncEngine,
) -> None:
    # The production limiter: a report's album waits 1.1 s after its text in that chat, and
    # only that chat waits (found by benchmarks/load.py: one global "next" instant used to make
    # every chat wait for the slowest chat's turn).
    other = 43
    async with production(hand_counted) as live:
        report = live.command("/clients yesterday")
        (text,) = await live.tg.wait_for("sendMessage")
        asked_at = time.monotonic()
        question = live.command("/help", user_id=other)
        await live.settle(question)
        (reply,) = live.delivered(other)
        albums = live.tg.calls("sendMediaGroup")
        assert reply.at - asked_at < 0.5
        assert albums == [] or reply.at < albums[0].at  # not queued behind the album's turn
        await live.settle(report)
        assert_one_report(live)
        assert text.params["chat_id"] == str(ADMIN)


# -- SQLite locked by another process ----------------------------------------------------------


class HeldLock:
    """A second sqlite3 connection holding BEGIN EXCLUSIVE on the file for `seconds`."""

    def __init__(self, engine: AsyncEngine, seconds: float) -> None:
        path = engine.url.database
        assert path and path != ":memory:"
        self.connection = sqlite3.connect(path, isolation_level=None, timeout=5)
        self.connection.execute("BEGIN EXCLUSIVE")
        self.taken_at = time.monotonic()
        self.released_at: float | None = None
        self.released = asyncio.Event()
        self._timer = asyncio.get_running_loop().call_later(seconds, self.release)

    def release(self) -> None:
        self._timer.cancel()
        if self.released_at is None:
            self.connection.rollback()
            self.connection.close()
            self.released_at = time.monotonic()
            self.released.set()

    def __enter__(self) -> HeldLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


async def stored_language(engine: AsyncEngine, user_id: int) -> str | None:
    async with engine.connect() as connection:
        return await connection.scalar(
            select(people.c.language).where(people.c.user_id == user_id)
        )


async def stored_timezone(engine: AsyncEngine, chat_id: int) -> str | None:
    async with engine.connect() as connection:
        return await connection.scalar(select(chats.c.timezone).where(chats.c.chat_id == chat_id))


async def subscription_count(engine: AsyncEngine, chat_id: int) -> int:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(subscriptions.c.id).where(subscriptions.c.chat_id == chat_id)
        )
        return len(rows.all())


async def test_a_2_second_lock_only_delays_a_write_command(hand_counted: AsyncEngine) -> None:
    async with production(hand_counted) as live:
        with HeldLock(hand_counted, 2.0) as lock:
            update = live.command("/lang ru")
            await live.settle(update)

        (reply,) = live.delivered()
        assert reply.result["text"] == LANGUAGE_RU
        assert lock.released_at is not None and reply.at >= lock.released_at  # it waited
        assert await stored_language(hand_counted, ADMIN) == "ru"
        await live.assert_serves_help(lang="ru")


async def test_a_2_second_lock_only_delays_an_admin_write_command(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        with HeldLock(hand_counted, 2.0) as lock:
            update = live.command("/timezone Europe/Berlin")
            await live.settle(update)

        (reply,) = live.delivered()
        assert reply.result["text"].startswith("Timezone: Europe/Berlin. Local time: ")
        assert lock.released_at is not None and reply.at >= lock.released_at
        assert await stored_timezone(hand_counted, ADMIN) == "Europe/Berlin"
        await live.assert_serves_help()


async def test_a_2_second_lock_only_delays_a_command_that_reads_then_writes(
    hand_counted: AsyncEngine,
) -> None:
    # /digest reads the chat's timezone before it writes. Within one deferred SQLite
    # transaction the upgrade to a write would fail at once ("database is locked") instead of
    # waiting out the busy timeout; the read transaction must end before the write.
    async with production(hand_counted) as live:
        with HeldLock(hand_counted, 2.0) as lock:
            update = live.command("/digest daily 09:00")
            await live.settle(update)
            await lock.released.wait()

        (reply,) = live.delivered()
        assert reply.result["text"].startswith("Digest added: ")
        assert lock.released_at is not None and reply.at >= lock.released_at
        assert await subscription_count(hand_counted, ADMIN) == 1
        await live.assert_serves_help()


async def test_a_15_second_lock_gets_the_retry_note_writes_nothing_and_the_bot_goes_on(
    hand_counted: AsyncEngine,
) -> None:
    async with production(hand_counted) as live:
        with HeldLock(hand_counted, 15.0) as lock:
            update = live.command("/lang ru")
            await live.settle(update)
            (reply,) = live.delivered()
            assert reply.result["text"] == DATABASE_TEMPORARY
            # Given up after the 10 s busy timeout, while the lock was still held.
            assert reply.at - lock.taken_at >= 9.5
            assert lock.released_at is None
            await lock.released.wait()

        assert await stored_language(hand_counted, ADMIN) is None
        again = live.command("/lang ru")
        await live.settle(again)
        assert live.delivered()[-1].result["text"] == LANGUAGE_RU
        assert await stored_language(hand_counted, ADMIN) == "ru"
        await live.assert_serves_help(lang="ru")
        assert len(live.delivered()) == 3


# -- SIGTERM -----------------------------------------------------------------------------------


async def test_sigterm_during_a_report_lets_it_finish_and_exits_cleanly(tmp_path: Path) -> None:
    database = tmp_path / "bot.db"
    url = f"sqlite+aiosqlite:///{database}"
    engine = create_engine(url)
    try:
        await migrate(engine)
        await load_demo(engine, now=datetime.now(UTC))
    finally:
        await engine.dispose()

    output = tmp_path / "bot.log"
    async with FakeTelegram(token=TOKEN) as tg:
        env = {
            **os.environ,
            "BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": tg.base_url,
            "DATABASE_URL": url,
            "ADMIN_IDS": str(ADMIN),
            "TIMEZONE": "Europe/Moscow",
            "LANGUAGE": "en",
            "PYTHONUNBUFFERED": "1",
            # This test is about polling; the web server has its own (tests/ingest).
            "WEB_PORT": "0",
        }
        env.pop("CSV_DELIMITER", None)
        with output.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=ROOT, env=env, stdout=sink, stderr=sink
            )
        try:
            exited = asyncio.create_task(process.wait())
            polls = asyncio.create_task(tg.wait_polling(timeout=90))
            await asyncio.wait({exited, polls}, return_when=asyncio.FIRST_COMPLETED)
            if not polls.done():  # the bot exited before it ever polled: show its log
                polls.cancel()
                with suppress(asyncio.CancelledError):
                    await polls
                raise AssertionError(output.read_text())
            polls.result()

            update = tg.send_message("/clients week", chat_id=ADMIN, user_id=ADMIN)
            await tg.wait_for("sendMessage", timeout=60)
            # The per-chat pace holds the album for 1.1 s: the report is still in flight.
            assert tg.calls("sendDocument") == []
            process.send_signal(signal.SIGTERM)

            await tg.wait_for("sendDocument", timeout=60)
            code = await asyncio.wait_for(exited, 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    log = output.read_text()
    assert code == 0, log
    assert "Traceback" not in log, log
    delivered = [call.method for call in tg.calls() if call.method in SENDS and call.ok]
    assert delivered == REPORT, log
    assert [call.status for call in tg.calls() if call.method in SENDS] == [200, 200, 200]
    album = tg.calls("sendMediaGroup")[0]
    assert len(album.result) == 3
    # The command was confirmed before the bot stopped: a restart will not run it again.
    assert tg.pending_updates == []
    assert update in [u["update_id"] for c in tg.calls("getUpdates") if c.ok for u in c.result]
