"""Two real bot processes in webhook mode on PostgreSQL and Redis under load: every update is
handled once (repeats included), each user's flood limit holds across the two, and what they
send together stays within Telegram's limits by the fake's clock, without a single 429.

The benchmark (benchmarks/webhook_load.py) runs the same with 1,000 updates; this is a
smaller load so that CI stays quick.
"""

from collections import Counter
from pathlib import Path

from bot.storage.engine import create_engine, migrate
from tests.fake_telegram import FakeTelegram
from tests.scale.instances import (
    FLOOD_LIMIT,
    SLOW_DOWN,
    Load,
    forget,
    fresh_token,
    instance_logs,
    instances,
    run_load,
)

LOAD = Load(users=24, flooders=4, reports_each=14, helps_each=7, repeats=20)


async def test_two_instances_share_one_bot_without_duplicates_or_breaches(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    engine = create_engine(postgres_url)
    try:
        # Migrated once before the instances start, as a deploy does.
        await migrate(engine)
    finally:
        await engine.dispose()
    token = fresh_token()
    try:
        async with FakeTelegram(token=token, enforce_rate_limits=True) as tg:
            async with instances(
                tmp_path,
                tg,
                count=2,
                database_url=postgres_url,
                redis_url=redis_url,
                admins=LOAD.user_ids(),
            ) as targets:
                run = await run_load(tg, targets, LOAD)
            # Both stopped: whatever either would still have sent is in by now.
            sends = [
                call
                for call in tg.calls()
                if call.ok and call.method in ("sendMessage", "sendDocument")
            ]
    finally:
        await forget(redis_url, token)

    assert run.updates == 196
    posted = Counter(target for _, target, _ in tg.webhook_deliveries)
    assert sorted(posted.values()) == [98 + 10, 98 + 10]  # in turn, repeats to the other one

    by_chat: dict[int, Counter[str]] = {}
    for call in sends:
        kind = "document" if call.method == "sendDocument" else "report"
        if call.method == "sendMessage" and call.result["text"] == SLOW_DOWN:
            kind = "warning"
        elif call.method == "sendMessage" and call.result["text"].startswith("Commands"):
            kind = "help"
        by_chat.setdefault(int(call.params["chat_id"]), Counter())[kind] += 1
    logs = instance_logs(tmp_path)
    trouble = [line for log in logs for line in log.splitlines() if " WARNING " in line]
    for user in LOAD.user_ids():
        if LOAD.is_flooder(user):
            # 14 asked, 7 on each instance: alone each would have let all 7 through.
            expected = Counter(report=FLOOD_LIMIT, document=FLOOD_LIMIT, warning=1)
        else:
            expected = Counter(help=LOAD.helps_each)
        assert by_chat[user] == expected, (user, trouble)

    # Redis answered throughout: the limits above are the shared ones, not each process's own.
    assert not [line for line in trouble if "Redis is unreachable" in line], trouble
    skipped = sum(log.count("delivered again: skipped") for log in logs)
    assert skipped == LOAD.repeats
    assert all("webhook mode" in log for log in logs)
    # Both instances did part of the work (each flooder's updates went to both).
    assert all(" sent to chat " in log for log in logs)

    overall, per_chat = tg.send_peaks()
    assert overall <= 30, overall
    assert per_chat <= 1, per_chat
    assert tg.too_many_requests() == 0
    assert not tg.rate_violations()
