"""Redis fixtures of the scale tests."""

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tests.support.redis import ThrowawayRedis, reachable_redis_url, throwaway_redis, unique_prefix


@pytest.fixture
async def redis_url() -> str:
    return await reachable_redis_url()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    """A client of the shared test server; the test's keys are deleted afterwards."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.fixture
async def throwaway() -> AsyncIterator[ThrowawayRedis]:
    async with throwaway_redis() as server:
        yield server
