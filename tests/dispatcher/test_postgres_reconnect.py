"""A PostgreSQL connection lost between two commands: the next command reconnects and answers."""

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.app import build_dispatcher
from bot.storage.engine import create_engine, migrate
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
        assert "Wrote: <b>4</b>" in first
        assert second == first
        assert not [t for t in harness.texts() if "Temporary problem" in t]
        await dispatcher.emit_shutdown()
    finally:
        await engine.dispose()
