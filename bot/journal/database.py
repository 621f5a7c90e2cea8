"""The journal's database: the engine, migrations (applied at start-up under a lock), one serving
process per SQLite file, and the running of statements on the driver's own connection.

Statements are SQLAlchemy Core, built once and compiled once per dialect; `Database` runs them on
the driver's connection (aiosqlite's, or an asyncpg pool) rather than through the engine's
per-statement machinery, which cost about three times the CPU per statement (measured: ~75 µs on
SQLite and ~60 µs on PostgreSQL per statement this way, ~230 µs and ~250 µs through the engine).
The engine runs migrations, the copy to PostgreSQL and the rare statement with an IN list.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from ..settings import SettingsError
from .url import database_url, is_memory, sqlite_file

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_MS = 5000  # a statement waits this long for SQLite's write lock
MIGRATION_BUSY_TIMEOUT_MS = 120_000  # a migration waits this long for another one to finish
PG_MIGRATION_LOCK = 0x7B07_71C6  # pg_advisory_xact_lock key: one migration at a time

# --- the database URL, engines, migrations --------------------------------------------------------


def _create_private_file(path: str) -> None:
    """The database file, readable by its owner only (it holds what people typed), in a folder
    only its owner may enter."""
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    os.chmod(path, 0o600)


def _ensure_wal(path: str, timeout: float = 30.0) -> None:
    """Put the file in WAL mode (it stays so). Switching needs the file to itself, and SQLite may
    answer "locked" without waiting when several processes open a new file at once: try again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=timeout, isolation_level=None)) as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


async def _prepare_sqlite_file(path: str) -> None:
    _create_private_file(path)
    await asyncio.to_thread(_ensure_wal, path)


def _engine(url: URL, *, migrations: bool = False) -> AsyncEngine:
    """The engine for serving (autocommit: every statement is its own transaction, one round trip)
    or, with `migrations`, one for `migrate` (real transactions; on SQLite BEGIN EXCLUSIVE)."""
    if url.get_backend_name() == "postgresql":
        if migrations:
            return create_async_engine(url, poolclass=NullPool)
        # Storage runs its statements on its own asyncpg pool; the engine is for the rare rest.
        return create_async_engine(url, isolation_level="AUTOCOMMIT", pool_size=2, max_overflow=8)
    memory = is_memory(url)
    if memory:
        pool: dict[str, Any] = {"poolclass": StaticPool}  # one connection: the database lives in it
    elif migrations:
        pool = {"poolclass": NullPool}
    else:
        # Storage keeps one connection for its statements (SQLite has one writer at a time anyway);
        # a few more for occasional other users of the engine (tests, tools).
        pool = {"pool_size": 1, "max_overflow": 3}
    engine = create_async_engine(url, isolation_level=None if migrations else "AUTOCOMMIT", **pool)
    busy = MIGRATION_BUSY_TIMEOUT_MS if migrations else BUSY_TIMEOUT_MS

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver never begins on its own
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={busy}")
        if not memory:  # the file was put in WAL mode before (_ensure_wal); it stays so
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a submission acknowledged to Slack survives a power loss, not only a crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    if migrations:

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Connection) -> None:
            # The migration lock on SQLite: one writer holds the database until it commits; a second
            # migrator waits (busy_timeout), then finds the schema up to date.
            conn.exec_driver_sql("BEGIN EXCLUSIVE")

    return engine


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = conn
    return cfg


def _upgrade(conn: Connection, revision: str = "head") -> str | None:
    """Bring the schema to `revision` (the newest by default) in one transaction, under the
    migration lock; returns the revision it is at."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with conn.begin():
        if conn.dialect.name == "postgresql":
            # Held until this transaction ends: replicas starting together migrate one at a time,
            # and the later ones find nothing left to do.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        tables = set(sa.inspect(conn).get_table_names())
        cfg = _alembic_config(conn)
        if "alembic_version" not in tables and "submissions" in tables:
            # Made by the bot before migrations existed: its tables are revision 0001 (0002 adds
            # the lease columns only where they are missing).
            log.info("database made before migrations: stamped as revision 0001")
            command.stamp(cfg, "0001")
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("database schema upgraded from %s to %s", before or "nothing", after)
    return after


async def migrate(url: str | URL, revision: str = "head") -> str | None:
    """Create or upgrade the schema of DATABASE_URL `url` to the newest revision (at start-up, and
    `python app.py migrate`); returns the revision. Safe to run from several processes at once: a
    lock (an advisory lock on PostgreSQL, an exclusive transaction on SQLite) lets one migrate while
    the others wait, then find nothing to do. Migrations are additive. Pending work is untouched.
    `revision`: stop at an earlier one (tests)."""
    parsed = database_url(url)
    if is_memory(parsed):
        raise ValueError("an in-memory database is migrated when its Storage opens")
    if path := sqlite_file(parsed):
        await _prepare_sqlite_file(path)
    engine = _engine(parsed, migrations=True)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_upgrade, revision)
    finally:
        await engine.dispose()


async def schema_revision(url: str | URL) -> str | None:
    """The database's schema revision (None when it has none yet), without changing anything."""
    from alembic.runtime.migration import MigrationContext

    engine = _engine(database_url(url), migrations=True)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    """The newest revision this version of the bot knows."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


# --- one serving process per SQLite file --------------------------------------------------------


class DatabaseInUse(SettingsError):
    """Another process is already serving from this SQLite file."""


def _lock_serving(path: str) -> int:
    lock_path = f"{path}.lock"
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = ""
        try:
            pid = Path(lock_path).read_text().strip()
            holder = f" (process {pid})" if pid else ""
        except OSError:
            pass
        raise DatabaseInUse(
            f"another bot process{holder} is already serving from the SQLite database {path} "
            f"(it holds {lock_path}). SQLite takes one serving process per database file: a second one "
            "would carry the same submissions and could file duplicate tickets. Stop the other process "
            "first; to run several replicas, use PostgreSQL (DATABASE_URL=postgresql://user:password@host:5432/db)."
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    return (pg_dialect.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)


_b = sa.bindparam
_PING = sa.select(sa.literal(1))
_LOCK_KEY = sa.func.hashtextextended(_b("lock_name", type_=sa.Text), 0)  # PostgreSQL: a name → a 64-bit key
_ADVISORY_LOCK = sa.select(sa.func.pg_advisory_lock(_LOCK_KEY))
_ADVISORY_UNLOCK = sa.select(sa.func.pg_advisory_unlock(_LOCK_KEY))
EMPTY: Mapping[str, Any] = {}


def _libpq_dsn(url: URL) -> str:
    """The PostgreSQL URL as asyncpg's own connect() reads it (libpq's sslmode spelling)."""
    query = dict(url.query)
    if "ssl" in query and "sslmode" not in query:
        query["sslmode"] = query.pop("ssl")
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


def _translated(exc: Exception, sql: str) -> Exception:
    """A driver's error as SQLAlchemy's, so callers see one family whatever the engine. The
    parameters (what people typed) stay out of the message."""
    import asyncpg

    if isinstance(exc, sa.exc.SQLAlchemyError) or isinstance(exc, RuntimeError):
        return exc
    if isinstance(exc, (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)):
        return IntegrityError(sql, None, exc, hide_parameters=True)
    if isinstance(exc, (sqlite3.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError)):
        return sa.exc.OperationalError(sql, None, exc, hide_parameters=True)
    return exc


class _Compiled:
    """A statement compiled for one dialect and one set of parameter names: its SQL, the order of
    its parameters, the values bound in the statement itself, and its result columns."""

    __slots__ = ("sql", "positions", "literals", "columns")

    def __init__(self, stmt: Any, dialect: sa.Dialect, keys: tuple[str, ...]) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
        self.sql: str = compiled.string
        if "POSTCOMPILE" in self.sql:  # an IN list expanded per call: run it through the engine
            raise ValueError("a statement with an expanding IN list cannot be compiled once")
        self.positions: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.literals = {k: v for k, v in compiled.construct_params(_check=False).items() if k not in keys}
        self.columns = tuple(c.key for c in stmt.exported_columns) if hasattr(stmt, "exported_columns") else ()

    def values(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(params[n] if n in params else self.literals[n] for n in self.positions)


class Database:
    """The connection to the journal's database and the running of its statements.
    `Database(DATABASE_URL)`: `sqlite:///path/to/file.db`, `postgresql://user:pass@host:5432/db`
    (or a bare SQLite path, or `:memory:`).

    Each statement is built with SQLAlchemy Core (above), compiled once per dialect, and run by the
    driver directly: on SQLite through this process's one aiosqlite connection (one hop to its
    thread per statement), on PostgreSQL through an asyncpg pool (prepared statements, autocommit).
    SQLAlchemy's engine (`engine`) serves migrations and tools. Errors come out as SQLAlchemy's
    (`IntegrityError` for a unique key, `OperationalError` for the rest)."""

    def __init__(self, url: str) -> None:
        self.url = database_url(url)
        self.dialect = self.url.get_backend_name()  # "sqlite" | "postgresql"
        self.path = sqlite_file(self.url) or (":memory:" if is_memory(self.url) else None)
        self._engine: AsyncEngine | None = None
        self._conn: AsyncConnection | None = None  # SQLite: holds this process's connection
        self._sqlite: Any = None  # its aiosqlite connection
        self._pool: Any = None  # PostgreSQL: the asyncpg pool
        self._compiled: dict[tuple[int, tuple[str, ...]], _Compiled] = {}
        self._lock_fd: int | None = None
        self._locks: dict[str, asyncio.Lock] = {}  # SQLite: exclusive() within this process

    async def open(self, *, serving: bool = False, pool_size: int = 10) -> Self:
        """Connect, after bringing the schema up to date (`migrate`). `serving`: this process will
        serve Slack from the database; on SQLite it then holds `<file>.lock` until `close`, and a
        second serving process on the same file is refused (DatabaseInUse). Commands that do not
        serve (check, migrate, a backup, copy-db) open without it. `pool_size`: PostgreSQL
        connections at most."""
        file = sqlite_file(self.url)
        if file:
            _create_private_file(file)
            if serving:
                self._lock_fd = _lock_serving(file)
        try:
            if not is_memory(self.url):
                await migrate(self.url)
            self._engine = _engine(self.url)
            if self.dialect == "sqlite":
                self._conn = await self._engine.connect()
                if is_memory(self.url):
                    await self._conn.run_sync(_upgrade)
                self._sqlite = (await self._conn.get_raw_connection()).driver_connection
            else:
                import asyncpg

                async def _no_reset(_conn: Any) -> None:
                    """Statements run in autocommit and change no session state: nothing to reset."""

                self._pool = await asyncpg.create_pool(
                    _libpq_dsn(self.url), min_size=1, max_size=pool_size, reset=_no_reset
                )
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        self._sqlite = None
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # and with it the lock
            self._lock_fd = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("storage is not open")
        return self._engine

    @property
    def postgres(self) -> bool:
        return self.dialect == "postgresql"

    def _prepare(self, stmt: Any, params: Mapping[str, Any]) -> _Compiled:
        key = (id(stmt), tuple(sorted(params)))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = _Compiled(stmt, self.engine.dialect, key[1])
        return compiled

    async def _fetch(self, stmt: Any, params: Mapping[str, Any] = EMPTY) -> list[Any]:
        """Run a statement that returns rows; its rows (tuples or asyncpg records)."""
        compiled = self._prepare(stmt, params)
        values = compiled.values(params)
        try:
            if self._sqlite is not None:
                return list(await self._sqlite.execute_fetchall(compiled.sql, values))
            if self._pool is None:
                raise RuntimeError("storage is not open")
            async with self._pool.acquire() as conn:
                return await conn.fetch(compiled.sql, *values)
        except Exception as exc:
            raise _translated(exc, compiled.sql) from exc

    async def _write(self, stmt: Any, params: Mapping[str, Any], *, count: bool = False) -> int:
        """Run a statement that returns no rows; with `count`, how many rows it changed."""
        compiled = self._prepare(stmt, params)
        values = compiled.values(params)
        try:
            if self._sqlite is not None:
                if not count:
                    await self._sqlite.execute_fetchall(compiled.sql, values)  # one hop
                    return -1
                async with self._sqlite.execute(compiled.sql, values) as cursor:
                    return cursor.rowcount
            if self._pool is None:
                raise RuntimeError("storage is not open")
            async with self._pool.acquire() as conn:
                status = await conn.execute(compiled.sql, *values)
            return int(status.rsplit(" ", 1)[-1]) if count else -1
        except Exception as exc:
            raise _translated(exc, compiled.sql) from exc

    async def _first(self, stmt: Any, params: Mapping[str, Any] = EMPTY) -> Any:
        rows = await self._fetch(stmt, params)
        return rows[0] if rows else None

    async def ping(self) -> bool:
        try:
            return await self._first(_PING) is not None
        except Exception:
            return False

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """Hold the lock `name` against every process on this database (e.g. one refresh-token
        exchange at a time across replicas). PostgreSQL: an advisory lock held by one pooled
        connection; SQLite: within this process, the only one serving from the file."""
        if self._pool is None:
            async with self._locks.setdefault(name, asyncio.Lock()):
                yield
            return
        conn = await self._pool.acquire()
        unlocked = False
        try:
            lock, unlock = self._prepare(_ADVISORY_LOCK, {"lock_name": name}), self._prepare(_ADVISORY_UNLOCK, {"lock_name": name})
            await conn.execute(lock.sql, *lock.values({"lock_name": name}))
            try:
                yield
            finally:
                await conn.execute(unlock.sql, *unlock.values({"lock_name": name}))
                unlocked = True
        finally:
            if not unlocked:  # cancelled or failed while locking or unlocking: end the session, and its lock
                conn.terminate()
            await self._pool.release(conn)
