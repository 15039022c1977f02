"""Database engine for SQLite (default) and PostgreSQL, and schema migration through Alembic."""

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, InternalError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.storage.aggregates import ensure_aggregates
from bot.storage.statistics import analyze, statistics_missing

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL advisory lock that lets one instance at a time migrate ("bot migrate" in ASCII).
MIGRATION_LOCK = 0x626F74206D6967
SQLITE_BUSY_TIMEOUT_MS = 10_000
# SQLite reads the database file through a memory map of up to this size (0x7fff0000, the most
# its default build allows). A live batch reads index pages at random places: mapped, each is a
# memory access instead of a read() call and a copy, and the kernel keeps pages mapped into the
# process where it may drop unmapped page cache nobody read for a while (this machine pages out
# file cache idle for a minute): 5M live batches 90 s apart took a median of 279 ms unmapped and
# 97 ms mapped (benchmarks/idle_batches.py). Writes still go through the WAL.
SQLITE_MMAP_BYTES = 0x7FFF0000
# A WAL longer than this is cut back to it by the commit after the WAL restarts. Without a
# limit the WAL of a big import (5M appeals: 933 MB) stays on the disk, and later commits write
# their frames into pages of it the kernel has paged out meanwhile: a frame covering part of a
# page makes the kernel read that page back first (5M live batches after an import: 84-243 ms
# with it long, 62-99 ms cut back and kept mapped by bot.storage.resident; report_speed.py).
# A few live batches' frames fit, so steady writes reuse the file instead of growing it.
SQLITE_WAL_KEEP_BYTES = 16 * 2**20

# Storage functions take the update's session or a connection of their own alike.
Executor = AsyncSession | AsyncConnection
T = TypeVar("T")
# SQLSTATE classes of a connection the server ended or refused: 08 (connection exception) and
# 57P (an administrator's shutdown, a crash, a server still starting).
_LOST_SQLSTATES = ("08", "57P")


# SQLite's primary result codes that mean "not now" rather than "wrong": busy or locked past the
# busy timeout, an I/O or locking-protocol failure, a file that cannot be opened, a full disk.
# Everything else SQLite raises as OperationalError (a syntax error above all) is a defect.
_SQLITE_TEMPORARY_CODES = frozenset({5, 6, 10, 13, 14, 15})


def sqlite_defect(exc: BaseException) -> bool:
    """The error is SQLite refusing a statement (SQLITE_ERROR: a syntax error, a missing
    table), which no retry cures, however the driver classes it."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.Error) and code is not None and (
        code & 0xFF not in _SQLITE_TEMPORARY_CODES
    )


def connection_lost(exc: BaseException) -> bool:
    """The database error says the connection is gone (a restart, a failover, a terminated
    session), not that the statement was wrong: a read may be tried again on a fresh one.

    A session the server ended mid-query surfaces in several ways: the driver notices the
    closed socket (SQLAlchemy then invalidates the connection), reports the server's shutdown
    code, or finds its protocol in an impossible state (asyncpg's InternalClientError).
    """
    if not isinstance(exc, DBAPIError) or sqlite_defect(exc):
        return False
    if exc.connection_invalidated or isinstance(
        exc, OperationalError | InterfaceError | InternalError
    ):
        return True
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", "") or "")
    return sqlstate.startswith(_LOST_SQLSTATES)


async def read_retrying(engine: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """Run a read on a connection of its own; if the connection is lost meanwhile, once more on
    a fresh one (a read has no effect to repeat). A second loss is raised to the caller."""
    for attempt in (1, 2):
        async with engine.connect() as connection:
            try:
                return await read(connection)
            except DBAPIError as exc:
                if attempt == 2 or not connection_lost(exc):
                    raise
                # Not back into the pool: the next checkout opens a new connection.
                await connection.invalidate()
                logger.warning(
                    "database connection lost during a read (%s): retrying on a fresh one",
                    type(exc.orig).__name__,
                )
    raise AssertionError("unreachable")


async def session_read_retrying(
    sessions: async_sessionmaker[Any], read: Callable[[AsyncSession], Awaitable[T]]
) -> T:
    """read_retrying for code written against a session (the middlewares' short reads)."""
    for attempt in (1, 2):
        async with sessions() as session:
            try:
                return await read(session)
            except DBAPIError as exc:
                if attempt == 2 or not connection_lost(exc):
                    raise
                await session.invalidate()
                logger.warning(
                    "database connection lost during a read (%s): retrying on a fresh one",
                    type(exc.orig).__name__,
                )
    raise AssertionError("unreachable")


def create_engine(url: str, *, background_checkpoints: bool = False) -> AsyncEngine:
    """Create the async engine; SQLite gets WAL (kept short), a busy timeout, foreign keys and
    mapped reads.

    background_checkpoints=True keeps SQLite's commits from checkpointing the WAL: the caller
    runs bot.storage.checkpoints.checkpoint_forever instead (the bot does).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(
            engine.sync_engine,
            "connect",
            partial(_sqlite_pragmas, autocheckpoint=not background_checkpoints),
        )
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def write_transaction(engine: AsyncEngine) -> AsyncContextManager[AsyncConnection]:
    """A transaction that will write: on SQLite it takes the write lock at BEGIN (IMMEDIATE).

    A deferred transaction that upgrades to a write fails at once with "database is locked"
    when another writer got there first; an immediate one waits out the busy timeout instead.
    """
    return engine.execution_options(sqlite_begin="IMMEDIATE").begin()


def _sqlite_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, autocheckpoint: bool) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    if not autocheckpoint:
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_KEEP_BYTES}")
    cursor.close()
    # The driver's own implicit BEGIN is turned off; _sqlite_begin starts each transaction.
    dbapi_connection.isolation_level = None


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision; existing data is kept."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Instances starting together would run the same DDL at once and block each other
            # (the second waits for the first's new tables, the first for the second's): one
            # migrates, the others wait for its commit and find the schema up to date.
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(_upgrade)
        # A database filled by an older version (or restored) may have no statistics at all.
        if await statistics_missing(connection):
            await analyze(connection)
        # The first start after the store's migration builds it from the appeals.
        await ensure_aggregates(connection)
    logger.info("database schema is up to date (%s)", engine.url.render_as_string())


def dialect_insert(dialect_name: str) -> Any:
    """The INSERT construct with ON CONFLICT support for this backend."""
    return postgresql.insert if dialect_name == "postgresql" else sqlite.insert


async def upsert(
    executor: Executor, table: Table, key: dict[str, object], values: dict[str, object]
) -> None:
    """Insert the row, or set `values` on the row that already has `key`."""
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    statement = dialect_insert(bind.dialect.name)(table).values(**key, **values)
    await executor.execute(statement.on_conflict_do_update(index_elements=list(key), set_=values))
