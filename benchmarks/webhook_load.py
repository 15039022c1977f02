"""Benchmark: 1,000 updates from 100 users posted by webhook to one, then two bot processes on
PostgreSQL and Redis; prints updates/s and p50/p95 time to the first reply and to the last part.

Run: .venv/bin/python benchmarks/webhook_load.py [--postgres URL] [--redis URL] [--users 100]
     [--flooders 20] [--reports 14] [--helps 9] [--repeats 50] [--instances 1|2]

PostgreSQL (default TEST_POSTGRES_URL, postgresql+asyncpg://postgres@127.0.0.1:5432/test) gets a
fresh database per run, dropped afterwards; Redis (default TEST_REDIS_URL,
redis://127.0.0.1:6379/15) keeps the run's keys under the run's own bot id, deleted afterwards.
The fake Bot API (this process, `enforce_rate_limits=True`: 429 past 1 message/s per chat or
30/s overall) posts the updates in turn to the instances, as a load balancer would, with 40 in
flight; `--repeats` of them go a second time to the next instance. Flooders send `--reports`
reports (10 a minute are allowed, one warning, then silence), the others `--helps` /help.
A report of an empty day is its text and its CSV. Times are by the fake's clock, from posting an
update to the first and the last message answering it; updates/s runs from the first post to
the last answer. The ratio of the two runs shows whether the second instance helps.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

from bot.storage.engine import create_engine, migrate  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402
from tests.scale.instances import (  # noqa: E402
    Load,
    Run,
    forget,
    fresh_token,
    instance_logs,
    instances,
    percentile,
    run_load,
)

POSTGRES = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def _admin(url: str, statement: str) -> None:
    admin = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await admin.dispose()


def keep_logs(folder: Path) -> Path:
    """The instances' logs copied out of the run's folder, which goes away: for a look."""
    kept = Path(tempfile.mkdtemp(prefix="webhook_load_logs_"))
    for log in folder.glob("bot-*.log"):
        shutil.copy(log, kept)
    return kept


async def one_run(count: int, load: Load, postgres: str, redis: str) -> Run:
    name = f"bench_webhook_{uuid.uuid4().hex[:10]}"
    await _admin(postgres, f'CREATE DATABASE "{name}"')
    database = make_url(postgres).set(database=name).render_as_string(hide_password=False)
    token = fresh_token()
    try:
        engine = create_engine(database)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        with tempfile.TemporaryDirectory() as folder:
            async with FakeTelegram(token=token, enforce_rate_limits=True) as tg:
                async with instances(
                    Path(folder),
                    tg,
                    count=count,
                    database_url=database,
                    redis_url=redis,
                    admins=load.user_ids(),
                ) as targets:
                    try:
                        run = await run_load(tg, targets, load)
                    except TimeoutError as exc:
                        logs = instance_logs(Path(folder))
                        unavailable = sum(log.count("database unavailable") for log in logs)
                        kept = keep_logs(Path(folder))
                        print(
                            f"{count} instance(s): INCOMPLETE ({exc}); {unavailable} updates "
                            f"answered 'database unavailable'; logs kept in {kept}",
                            flush=True,
                        )
                        raise
                overall, per_chat = tg.send_peaks()
                too_many = tg.too_many_requests()
                refused = dict(tg.refused_by_limit)
            outages = sum(log.count("Redis is unreachable") for log in instance_logs(Path(folder)))
        first = [percentile(run.first_reply, share) for share in (0.5, 0.95)]
        last = [percentile(run.last_part, share) for share in (0.5, 0.95)]
        print(
            f"{count} instance(s): {load.updates} updates in {run.seconds:.1f} s = "
            f"{run.updates_per_second:.1f} updates/s; first reply p50 {first[0]:.2f} s, p95 "
            f"{first[1]:.2f} s; last part p50 {last[0]:.2f} s, p95 {last[1]:.2f} s; peak "
            f"{overall} msg/s overall, {per_chat}/s per chat; {too_many} answered 429 {refused}; "
            f"{outages} Redis outage warnings",
            flush=True,
        )
        return run
    finally:
        await forget(redis, token)
        await _admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main(args: argparse.Namespace) -> None:
    load = Load(
        users=args.users,
        flooders=args.flooders,
        reports_each=args.reports,
        helps_each=args.helps,
        repeats=args.repeats,
    )
    print(
        f"{load.updates} updates from {load.users} users ({load.flooders} asking "
        f"{load.reports_each} reports each, the others {load.helps_each} /help), "
        f"{load.repeats} delivered twice",
        flush=True,
    )
    if args.instances:
        await one_run(args.instances, load, args.postgres, args.redis)
        return
    one = await one_run(1, load, args.postgres, args.redis)
    two = await one_run(2, load, args.postgres, args.redis)
    ratio = two.updates_per_second / one.updates_per_second
    print(f"two instances / one: {ratio:.2f}x updates/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=POSTGRES)
    parser.add_argument("--redis", default=REDIS)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--flooders", type=int, default=20)
    parser.add_argument("--reports", type=int, default=14)
    parser.add_argument("--helps", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument(
        "--instances", type=int, choices=(1, 2), help="one run with this many (default: both)"
    )
    asyncio.run(main(parser.parse_args()))
