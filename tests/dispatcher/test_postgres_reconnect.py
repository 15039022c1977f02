"""A PostgreSQL connection lost between two commands or during a report: the command answers."""

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

import bot.telegram.delivery
from bot.app import build_dispatcher
from bot.storage.engine import create_engine, migrate
from reports.metrics import build_report
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, load
from tests.support.dispatcher import Direct
from tests.support.settings import NOW, make_settings


async def test_commands_survive_the_server_dropping_every_connection(
    postgres_url: str, tmp_path: Path
) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate(engine)
        await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
        await load(engine, tmp_path, OLD_ROWS, "old")
        dispatcher = build_dispatcher(make_settings(engine), engine, clock=lambda: NOW)
        harness = Direct(dispatcher)

        await harness.send("/clients yesterday")
        # The server ends every session of the bot's pool (a restart or a failover), from a
        # connection outside that pool.
        outside = create_async_engine(postgres_url, poolclass=NullPool)
        async with outside.connect() as connection:
            ended = await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            assert ended.all()  # the pool's idle connections were there to end
        await outside.dispose()
        await harness.send("/clients yesterday")

        first, second = (t for t in harness.texts() if t.startswith("<b>Clients report"))
        assert "Clients who wrote: <b>4</b>" in first
        assert second == first
        assert not [t for t in harness.texts() if "Temporary problem" in t]
        await dispatcher.emit_shutdown()
    finally:
        await engine.dispose()


class KillDuringReport:
    """Wraps the report's first query: the server ends that very connection (a restart or a
    failover) just before the query runs, for the first `times` reports."""

    def __init__(self, postgres_url: str, times: int) -> None:
        self.outside = create_async_engine(postgres_url, poolclass=NullPool)
        self.times = times
        self.killed = 0

    async def __call__(self, connection: AsyncConnection, *args: Any, **kwargs: Any) -> Any:
        if self.killed < self.times:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with self.outside.connect() as other:
                await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            self.killed += 1
        return await build_report(connection, *args, **kwargs)


async def reconnect_setup(postgres_url: str, tmp_path: Path) -> AsyncEngine:
    engine = create_engine(postgres_url)
    await migrate(engine)
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")
    return engine


async def test_a_connection_ended_during_a_report_is_retried_once_on_a_fresh_one(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await reconnect_setup(postgres_url, tmp_path)
    killer = KillDuringReport(postgres_url, times=1)
    try:
        monkeypatch.setattr(bot.telegram.delivery, "build_report", killer)
        dispatcher = build_dispatcher(make_settings(engine), engine, clock=lambda: NOW)
        harness = Direct(dispatcher)

        await harness.send("/clients yesterday")

        assert killer.killed == 1
        (report,) = (t for t in harness.texts() if t.startswith("<b>Clients report"))
        assert "Clients who wrote: <b>4</b>" in report
        assert not [t for t in harness.texts() if "Incident" in t or "Temporary" in t]
        await dispatcher.emit_shutdown()
    finally:
        await killer.outside.dispose()
        await engine.dispose()


async def test_a_connection_ended_twice_gets_the_retry_note_not_an_incident(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = await reconnect_setup(postgres_url, tmp_path)
    killer = KillDuringReport(postgres_url, times=2)
    try:
        monkeypatch.setattr(bot.telegram.delivery, "build_report", killer)
        dispatcher = build_dispatcher(make_settings(engine), engine, clock=lambda: NOW)
        harness = Direct(dispatcher)

        await harness.send("/clients yesterday")

        assert killer.killed == 2
        assert harness.texts() == [
            "Temporary problem with the database: please retry in a minute."
        ]
        # The next command finds a working pool.
        harness.clear()
        await harness.send("/clients yesterday")
        assert [t for t in harness.texts() if t.startswith("<b>Clients report")]
        await dispatcher.emit_shutdown()
    finally:
        await killer.outside.dispose()
        await engine.dispose()
