"""Instances started together on a fresh PostgreSQL database: each migrates it, one at a time."""

import asyncio
import sys
from pathlib import Path

from sqlalchemy import text

from bot.storage.engine import create_engine
from tests.support.process import bot_env


async def test_two_instances_migrating_a_fresh_database_at_once_both_succeed(
    postgres_url: str, tmp_path: Path
) -> None:
    env = bot_env(tmp_path, "http://127.0.0.1:9", DATABASE_URL=postgres_url)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "migrate",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(process.communicate() for process in processes)), 120
    )
    logs = [output.decode() for output, _ in outputs]
    assert [process.returncode for process in processes] == [0, 0], logs
    engine = create_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            versions = await connection.execute(text("SELECT version_num FROM alembic_version"))
            assert len(versions.all()) == 1
    finally:
        await engine.dispose()
