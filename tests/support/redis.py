"""Redis for tests: the shared server (TEST_REDIS_URL, skipped unless reachable or required by
REQUIRE_REDIS=1), a key prefix of each test's own, and throwaway servers a test may stop."""

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from redis.asyncio import Redis

from tests.support.process import free_port

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_REDIS = os.environ.get("REQUIRE_REDIS") == "1"


def unavailable(reason: str) -> None:
    if REQUIRE_REDIS:
        pytest.fail(f"Redis required (REQUIRE_REDIS=1) but {reason}")
    pytest.skip(f"{reason}: Redis tests skipped")


async def reachable_redis_url() -> str:
    """TEST_REDIS_URL once it answers PING."""
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not reachable"
        unavailable(f"not reachable at {REDIS_URL} ({exc})")
    finally:
        await client.aclose()
    return REDIS_URL


def unique_prefix() -> str:
    """Keys of one test only: tests (and other checkouts' tests) share the server."""
    return f"test{uuid.uuid4().hex[:12]}:"


class ThrowawayRedis:
    """A `redis-server` of the test's own on a free port, without persistence: stop() makes
    Redis unreachable (connections refused), start() brings an empty one back on that port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.binary = binary or "redis-server"
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        # The server says when it listens; what it prints afterwards is drained, not kept.
        async with asyncio.timeout(10):
            while b"Ready to accept connections" not in await self.process.stdout.readline():
                if self.process.stdout.at_eof():
                    raise RuntimeError(f"redis-server did not start on port {self.port}")
        self._drain = asyncio.create_task(self.process.stdout.read())

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
            await self._drain
        self.process = None


@asynccontextmanager
async def throwaway_redis() -> AsyncIterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
