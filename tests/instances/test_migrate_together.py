"""Instances started together on a fresh PostgreSQL database: each migrates it, one at a time."""

import asyncio
from pathlib import Path

from sqlalchemy import text

from bot.storage.engine import create_engine
from tests.instances.support import run_command


async def test_two_instances_migrating_a_fresh_database_at_once_both_succeed(
    postgres_url: str, tmp_path: Path
) -> None:
    results = await asyncio.gather(
        *(run_command(tmp_path, postgres_url, "migrate") for _ in range(2))
    )
    assert [code for code, _ in results] == [0, 0], results
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert len(versions.all()) == 1
    finally:
        await engine.dispose()
