"""Two real bot processes on one PostgreSQL database: each digest part goes out once, even
when one of them is killed (SIGKILL) in the middle of the fan-out."""

import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.digests.rules import parse_rule
from bot.digests.subscriptions import add_subscription
from bot.storage.chats import save_chat
from bot.storage.engine import create_engine, migrate, session_factory
from bot.storage.people import grant_lead
from bot.storage.tables import digest_deliveries, subscriptions
from tests.datasets import load
from tests.instances.support import SharedTelegram, ledger_events, wait_until
from tests.support.process import ADMIN, TOKEN, bot_env, bot_process

CHATS = list(range(7001, 7051))
PARTS = Counter({"text": 1, "charts": 1, "csv": 1})
LEASE_SECONDS = 12


def yesterdays_appeals(now: datetime) -> list[tuple[str, ...]]:
    """Enough of a day for both pies and the trend: 3 channels, 12 clients."""
    day = (now - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    apps = [("whatsapp", "Sales"), ("telegram", "Support bot"), ("email", "Support inbox")]
    return [
        (
            f"a{n}",
            f"c{n % 12}",
            *apps[n % 3],
            (day + timedelta(hours=n % 24, minutes=n)).isoformat().replace("+00:00", "Z"),
        )
        for n in range(40)
    ]


async def subscribe_all(engine: AsyncEngine, slot: datetime) -> None:
    """Every chat a lead's private chat with a daily digest at `slot` (UTC), made 12 hours
    before it (yesterday's slot is not owed)."""
    rule = parse_rule(f"daily {slot:%H:%M}")
    async with session_factory(engine)() as session:
        for chat_id in CHATS:
            await save_chat(session, chat_id, language="en")
            await grant_lead(session, chat_id, granted_by=ADMIN, name=None)
            await add_subscription(session, chat_id, rule, now=slot - timedelta(hours=12))
        await session.commit()


async def ledger(engine: AsyncEngine) -> dict[int, tuple[str, Counter[str], str]]:
    """chat id -> (status, recorded parts, holder) of its digest's ledger row."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                subscriptions.c.chat_id,
                digest_deliveries.c.status,
                digest_deliveries.c.parts,
                digest_deliveries.c.claimed_by,
            ).join(subscriptions, subscriptions.c.id == digest_deliveries.c.subscription_id)
        )
        return {
            row.chat_id: (row.status, Counter(filter(None, row.parts.split(","))), row.claimed_by)
            for row in rows
        }


def holder_pid(claimed_by: str) -> int:
    return int(claimed_by.split(":")[1])  # host:pid:random (bot/digests/runner.py)


async def test_two_instances_send_each_part_once_when_one_is_killed_mid_fan_out(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate(engine)
        now = datetime.now(UTC)
        # Due this minute: both processes start while it is due (a deploy, a restart of both),
        # and each one's digest clock catches up on it at once. How the 50 split between them
        # depends on which claims first (often one claims them all); either way the survivor
        # must resume exactly what the dead one left, through its clock's retry after the lease.
        slot = now.replace(second=0, microsecond=0)
        await load(engine, tmp_path, yesterdays_appeals(now), "yesterday")
        await subscribe_all(engine, slot)
        async with (
            SharedTelegram(TOKEN, together=2) as tg,
            ledger_events(postgres_url) as events,
        ):
            envs = []
            for name in ("one", "two"):
                (tmp_path / name).mkdir()
                envs.append(
                    bot_env(
                        tmp_path / name,
                        tg.base_url,
                        DATABASE_URL=postgres_url,
                        TIMEZONE="UTC",
                        DIGEST_LEASE_SECONDS=str(LEASE_SECONDS),
                    )
                )
            async with (
                bot_process(tmp_path / "one", envs[0], tmp_path / "one.log") as one,
                bot_process(tmp_path / "two", envs[1], tmp_path / "two.log") as two,
            ):
                processes = {one.pid: one, two.pid: two}

                # Once the fan-out is under way, Telegram stops accepting for a moment.
                def delivered() -> int:
                    return sum(sum(parts.values()) for parts in tg.delivered_parts().values())

                await wait_until(
                    lambda: delivered() >= 30,
                    tg.changed,
                    timeout=120,
                    what="30 digest parts",
                )
                tg.refusing = True

                async def recorded_as_delivered() -> bool:
                    rows = await ledger(engine)
                    return all(
                        rows.get(chat, ("", Counter(), ""))[1] == parts
                        for chat, parts in tg.delivered_parts().items()
                    )

                # Killed when every part Telegram accepted is in the ledger: no part is lost
                # and none is known only to the process (bot/digests/runner.py says why).
                await wait_until(
                    recorded_as_delivered,
                    tg.changed,
                    events.changed,
                    timeout=30,
                    what="the ledger to record every delivered part",
                )
                rows = await ledger(engine)
                unfinished = Counter(
                    holder_pid(holder)
                    for status, _, holder in rows.values()
                    if status == "claimed"
                )
                assert set(unfinished) <= set(processes)
                victim_pid, victims_left = unfinished.most_common(1)[0]
                assert victims_left > 0
                processes[victim_pid].send_signal(signal.SIGKILL)
                assert await processes[victim_pid].wait() == -signal.SIGKILL
                killed_wall, killed_at = datetime.now(UTC), time.monotonic()
                (survivor,) = (process for pid, process in processes.items() if pid != victim_pid)
                assert survivor.returncode is None

                frozen = await ledger(engine)
                orphans = {
                    chat: parts
                    for chat, (status, parts, holder) in frozen.items()
                    if status == "claimed" and holder_pid(holder) == victim_pid
                }
                assert len(orphans) == victims_left
                async with engine.connect() as connection:
                    lease_end = await connection.scalar(
                        select(digest_deliveries.c.claim_expires_at)
                        .where(
                            digest_deliveries.c.status == "claimed",
                            digest_deliveries.c.claimed_by.like(f"%:{victim_pid}:%"),
                        )
                        .order_by(digest_deliveries.c.claim_expires_at.desc())
                        .limit(1)
                    )
                assert lease_end is not None
                tg.refusing = False

                async def all_sent() -> bool:
                    rows = await ledger(engine)
                    return len(rows) == len(CHATS) and all(
                        status == "sent" for status, _, _ in rows.values()
                    )

                await wait_until(
                    all_sent,
                    events.changed,
                    timeout=4 * LEASE_SECONDS + 60,
                    what="every digest to be sent",
                )
                delivered_parts = tg.delivered_parts()
                every_part_once = dict.fromkeys(CHATS, PARTS)
                assert {chat: delivered_parts.get(chat) for chat in CHATS} == every_part_once
                final = await ledger(engine)
                # The dead process's digests were finished by the survivor, not before its lease
                # ran out.
                for chat in orphans:
                    status, parts, holder = final[chat]
                    assert (status, parts, holder_pid(holder)) == ("sent", PARTS, survivor.pid)
                lease_left = (lease_end - killed_wall).total_seconds()
                resumed = [
                    call.at - killed_at
                    for call in tg.calls()
                    if call.ok
                    and call.method in ("sendMessage", "sendMediaGroup", "sendDocument")
                    and int(call.params["chat_id"]) in orphans
                    and call.at > killed_at
                ]
                assert resumed, "the survivor sent nothing of the dead process's digests"
                assert min(resumed) >= lease_left - 0.5
                assert not [call for call in tg.errors() if call.status != 429]
                # A report is drawn and uploaded once per run, not once per chat: each process's
                # catch-up, then the survivor's run of what it resumed (two runs if the dead
                # one's leases ended apart).
                uploads = [
                    call
                    for call in tg.calls("sendMediaGroup")
                    if call.ok and any(call.media_files())
                ]
                assert len(uploads) <= 4
    finally:
        await engine.dispose()
