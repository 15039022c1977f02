"""Short reads tried once more on a fresh connection when the first one fails for the connection's
sake (a lost server, a lock), and not for a wrong statement."""

import logging
import sqlite3

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.storage.engine import (
    connection_lost,
    read_retrying,
    session_factory,
    session_read_retrying,
    sqlite_defect,
)


class FailsFirst:
    """A read that fails its first `times` tries with the driver's OperationalError."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.tries = 0

    async def __call__(self, session: AsyncSession) -> int:
        self.tries += 1
        if self.tries <= self.times:
            # A statement SQLite refuses at run time the way a lost or locked database does.
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return int((await session.execute(text("SELECT 41 + 1"))).scalar_one())


async def test_a_session_read_that_fails_once_is_retried_on_a_fresh_connection(
    sqlite_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    read = FailsFirst(times=1)
    with caplog.at_level(logging.WARNING, logger="bot.storage.engine"):
        assert await session_read_retrying(session_factory(sqlite_engine), read) == 42
    assert read.tries == 2
    assert "retrying on a fresh one" in caplog.text


async def test_a_session_read_that_fails_twice_raises(sqlite_engine: AsyncEngine) -> None:
    read = FailsFirst(times=2)
    with pytest.raises(OperationalError):
        await session_read_retrying(session_factory(sqlite_engine), read)
    assert read.tries == 2
    # The pool still serves the next read.
    assert await session_read_retrying(session_factory(sqlite_engine), FailsFirst(0)) == 42


async def test_a_wrong_statement_is_not_tried_again(sqlite_engine: AsyncEngine) -> None:
    tries = 0

    async def missing_parameter(session: AsyncSession) -> object:
        nonlocal tries
        tries += 1
        return (await session.execute(text("SELECT :a"), {"b": 1})).all()

    with pytest.raises(StatementError, match="bind parameter 'a'"):
        await session_read_retrying(session_factory(sqlite_engine), missing_parameter)
    assert tries == 1


async def test_a_connection_read_is_retried_alike(sqlite_engine: AsyncEngine) -> None:
    tries = 0

    async def read(connection: object) -> int:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise OperationalError("SELECT 1", {}, Exception("database is locked"))
        return 7

    assert await read_retrying(sqlite_engine, read) == 7  # type: ignore[arg-type]
    assert tries == 2


def sqlite_error(code: int, message: str) -> OperationalError:
    orig = sqlite3.OperationalError(message)
    orig.sqlite_errorcode = code  # type: ignore[attr-defined]
    return OperationalError("SELECT 1", {}, orig)


def test_sqlite_busy_and_io_errors_are_temporary_and_its_refusals_are_defects() -> None:
    for code, message in ((5, "database is locked"), (6, "table is locked"), (10, "disk I/O")):
        assert not sqlite_defect(sqlite_error(code, message))
        assert connection_lost(sqlite_error(code, message))
    # SQLITE_IOERR_SHORT_READ: an extended code of the same primary one.
    assert not sqlite_defect(sqlite_error(522, "disk I/O error"))
    assert sqlite_defect(sqlite_error(1, 'near "ELSE": syntax error'))
    assert not connection_lost(sqlite_error(1, 'near "ELSE": syntax error'))


async def test_a_statement_sqlite_refuses_is_raised_at_once(sqlite_engine: AsyncEngine) -> None:
    tries = 0

    async def syntax_error(session: AsyncSession) -> object:
        nonlocal tries
        tries += 1
        return (await session.execute(text("SELECT CASE ELSE 1 END"))).all()

    with pytest.raises(OperationalError, match="syntax error") as raised:
        await session_read_retrying(session_factory(sqlite_engine), syntax_error)
    assert sqlite_defect(raised.value)
    assert tries == 1
