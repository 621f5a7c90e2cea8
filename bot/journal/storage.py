"""Storage: the submission journal, the thread ↔ ticket links, and the small tables beside them, on
SQLite (one process, the default) or PostgreSQL (several replicas), through SQLAlchemy Core.
Every SQL statement the bot runs lives in this module; the schema's history lives in
`bot/journal/migrations` (Alembic), applied by `migrate` at start-up under a lock.

A submission is written here *before* Slack gets its acknowledgement, then carried through its steps;
each finished step is recorded so that no step is ever done twice, and unfinished work resumes after
a restart. One thread maps to at most one ticket: `links` has the thread as its key, and a pending
submission reserves its thread with a unique `thread_key`. These keys are constraints in the
database, so they hold across processes.

Work is shared by lease: a process `claim`s due submissions (atomically: a single UPDATE … RETURNING;
on PostgreSQL its sub-select takes the rows FOR UPDATE SKIP LOCKED), `renew`s its leases while it
works and gives them up with `release_all` on a graceful stop; only the holder may save a submission.

`DATABASE_URL`: `sqlite:///./data/tickets.db` (driver aiosqlite; WAL, synchronous=FULL, created 0600
in a 0700 folder) or `postgresql://user:pass@host:5432/db` (driver asyncpg). On SQLite one serving
process per file: `open(serving=True)` holds an exclusive lock on `<file>.lock` until `close`.

Statements are SQLAlchemy Core, built once below and compiled once per dialect; `Storage` runs them
on the driver's connection (aiosqlite's, or an asyncpg pool) rather than through the engine's
per-statement machinery, which cost about three times the CPU per statement (measured: ~75 µs on
SQLite and ~60 µs on PostgreSQL per statement this way, ~230 µs and ~250 µs through the engine).
The engine runs migrations, the copy to PostgreSQL and the rare statement with an IN list.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

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

# --- the schema as the queries see it (its history: bot/journal/migrations) ------------------------------

metadata = sa.MetaData()
_REAL = sa.Double().with_variant(sqlite_dialect.REAL(), "sqlite")

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    sa.Column("thread_key", sa.Text, unique=True),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),  # pending | done | failed
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("steps_done", sa.Text, nullable=False, server_default=""),
    sa.Column("ticket", sa.Text),  # JSON of the created ticket
    sa.Column("thread_ts", sa.Text),  # thread connected to the ticket
    sa.Column("maybe_created", sa.Integer, nullable=False, server_default="0"),  # an attempt may have created it
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _REAL, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("warnings", sa.Text, nullable=False, server_default="[]"),
    sa.Column("created_at", _REAL, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
    sa.Column("owner", sa.Text),  # the process working on it, while its lease lasts
    sa.Column("lease_until", _REAL, nullable=False, server_default="0"),
    sa.Column("requester_id", sa.Text),  # the Slack user it is filed for (payload's), once known: Home lists it
)
people = sa.Table(  # Slack profiles (users.info), refreshed after a while
    "people",
    metadata,
    sa.Column("slack_user_id", sa.Text, primary_key=True),
    sa.Column("profile", sa.Text),  # JSON, NULL when Slack does not know the user
    sa.Column("fetched_at", _REAL, nullable=False),
)
identities = sa.Table(  # Slack user → user id in a ticket system
    "identities",
    metadata,
    sa.Column("backend", sa.Text, primary_key=True),
    sa.Column("slack_user_id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("resolved_at", _REAL, nullable=False),
)
state = sa.Table(  # small named values, e.g. a rotating refresh token
    "state",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
)
routes = sa.Table(  # what admins set in Slack with /ticket config
    "routes",
    metadata,
    sa.Column("channel_id", sa.Text, primary_key=True),
    sa.Column("route", sa.Text, nullable=False),  # JSON
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
)
links = sa.Table(
    "links",
    metadata,
    sa.Column("channel_id", sa.Text, primary_key=True),
    sa.Column("thread_ts", sa.Text, primary_key=True),
    sa.Column("ticket_id", sa.Text, nullable=False),
    sa.Column("display_id", sa.Text, nullable=False),
    sa.Column("backend", sa.Text, nullable=False),
    sa.Column("submission_id", sa.Text),
    sa.Column("created_at", _REAL, nullable=False),
)
slack_events = sa.Table(  # Slack event ids already handled (a redelivery is recognised)
    "slack_events",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("received_at", _REAL, nullable=False),
    sa.Column("submission_id", sa.Text),
)
# Every table, in the order `bot.journal.copydb` copies them.
TABLES = (links, routes, people, identities, state, submissions, slack_events)


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


# --- the statements, built once (SQLAlchemy compiles each once per dialect and caches it) ---------

_S = submissions
_b = sa.bindparam
_LINK_COLUMNS = (links.c.channel_id, links.c.thread_ts, links.c.ticket_id, links.c.display_id, links.c.backend)
_PENDING = _S.c.status == "pending"

_INSERT_SUBMISSION = sa.insert(_S)
_SUBMISSION_BY_ID = sa.select(_S).where(_S.c.id == _b("sub_id"))
_SUBMISSION_BY_DEDUPE_KEY = sa.select(_S).where(_S.c.dedupe_key == _b("key"))
_SUBMISSION_BY_THREAD_KEY = sa.select(_S).where(_S.c.thread_key == _b("key"))
_PENDING_BY_THREAD_KEY = sa.select(_S).where(_S.c.thread_key == _b("key"), _PENDING)
_DUE = (
    sa.select(_S.c.id)
    .where(_PENDING, _S.c.next_attempt_at <= _b("now"))
    .where(sa.or_(_S.c.owner.is_(None), _S.c.lease_until < _b("now")))
    .order_by(_S.c.next_attempt_at, _S.c.created_at)
    .limit(_b("limit", type_=sa.Integer))
)


def _claim(due: sa.Select[Any]) -> sa.Update:
    return (
        sa.update(_S)
        .where(_S.c.id.in_(due))
        .values(owner=_b("claim_owner"), lease_until=_b("claim_until"))
        .returning(*_S.c)
    )


_CLAIM = {
    "sqlite": _claim(_DUE),  # one UPDATE … RETURNING: SQLite runs one writer at a time
    # Rows another replica's claim is taking right now are skipped, not waited for nor taken twice.
    "postgresql": _claim(_DUE.with_for_update(skip_locked=True)),
}
_RENEW = (
    sa.update(_S)
    .where(_S.c.owner == _b("holder"), _S.c.id.in_(_b("ids", expanding=True)))
    .values(lease_until=_b("until"))
    .returning(_S.c.id)
)
_RELEASE_ALL = sa.update(_S).where(_S.c.owner == _b("holder")).values(owner=None, lease_until=0)
_RELEASE_OTHERS = sa.update(_S).where(_S.c.owner.is_not(None), _S.c.owner != _b("holder")).values(owner=None, lease_until=0)
_LATER = sa.case((_S.c.next_attempt_at > _S.c.lease_until, _S.c.next_attempt_at), else_=_S.c.lease_until)
_NEXT_DUE = sa.select(sa.func.min(sa.case((_S.c.owner.is_(None), _S.c.next_attempt_at), else_=_LATER))).where(_PENDING)
_PENDING_SUBMISSIONS = sa.select(_S).where(_PENDING).order_by(_S.c.created_at)
# The SET clause comes from the columns given; only the holder's save matches (SQLite: IS). A save
# never writes `owner` or `lease_until`; a release lets go of both.
_SAVE_WHERE = (_S.c.id == _b("sub_id"), _S.c.owner.is_not_distinct_from(_b("holder")))
_SAVE = sa.update(_S).where(*_SAVE_WHERE).returning(_S.c.id)  # a row back when saved: one round trip
_RELEASE = sa.update(_S).where(*_SAVE_WHERE).values(owner=None, lease_until=0).returning(_S.c.id)
_TICKETS_OF = (
    sa.select(_S)
    .where(sa.or_(_S.c.user_id == _b("user_id_"), _S.c.requester_id == _b("user_id_")), _S.c.ticket.is_not(None))
    .order_by(_S.c.created_at.desc())
    .limit(_b("limit", type_=sa.Integer))
)
_COUNTS = sa.select(_S.c.status, sa.func.count()).group_by(_S.c.status)
_BACKLOG = sa.select(sa.func.count(), sa.func.min(_S.c.created_at)).where(_PENDING)
_STUCK = sa.select(sa.func.count(), sa.func.min(_S.c.created_at)).where(_PENDING, _S.c.created_at < _b("before"))
_PURGE_SUBMISSIONS = sa.delete(_S).where(
    sa.or_(_S.c.status == "done", _S.c.status == "failed"), _S.c.updated_at < _b("cutoff")
)
_PURGE_EVENTS = sa.delete(slack_events).where(slack_events.c.received_at < _b("cutoff"))
_LINK = sa.select(*_LINK_COLUMNS).where(links.c.channel_id == _b("channel"), links.c.thread_ts == _b("ts"))
_PERSON = sa.select(people.c.profile, people.c.fetched_at).where(people.c.slack_user_id == _b("user"))
_IDENTITY = sa.select(identities.c.user_id).where(
    identities.c.backend == _b("backend_"),
    identities.c.slack_user_id == _b("user"),
    identities.c.email == _b("email_"),
    identities.c.resolved_at > _b("since"),
)
_STATE = sa.select(state.c.value).where(state.c.name == _b("name_"))
_ROUTE = sa.select(routes.c.route).where(routes.c.channel_id == _b("channel"))
_PING = sa.select(sa.literal(1))
_ROUTES_VERSION = sa.select(sa.func.count(), sa.func.max(routes.c.updated_at))
_LOCK_KEY = sa.func.hashtextextended(_b("lock_name", type_=sa.Text), 0)  # PostgreSQL: a name → a 64-bit key
_ADVISORY_LOCK = sa.select(sa.func.pg_advisory_lock(_LOCK_KEY))
_ADVISORY_UNLOCK = sa.select(sa.func.pg_advisory_unlock(_LOCK_KEY))


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    return (pg_dialect.insert if dialect == "postgresql" else sqlite_dialect.insert)(table)


def _upsert(dialect: str, table: sa.Table) -> Any:
    """INSERT, or replace the row with the same primary key (VALUES from the parameters)."""
    stmt = _dialect_insert(dialect, table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


_UPSERT = {d: {t.name: _upsert(d, t) for t in (people, identities, state, routes)} for d in ("sqlite", "postgresql")}
# The first link of a thread stays.
_ADD_LINK = {
    d: _dialect_insert(d, links).on_conflict_do_nothing(index_elements=["channel_id", "thread_ts"])
    for d in ("sqlite", "postgresql")
}
_ADD_EVENT = {
    d: _dialect_insert(d, slack_events).on_conflict_do_nothing(index_elements=["event_id"])
    for d in ("sqlite", "postgresql")
}


# --- what the service works with ------------------------------------------------------------------


@dataclass
class Submission:
    id: str
    dedupe_key: str
    payload: dict[str, Any]
    thread_key: str | None = None
    status: str = "pending"
    steps_done: set[str] = field(default_factory=set)
    ticket: dict[str, Any] | None = None
    thread_ts: str | None = None
    maybe_created: bool = False
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    owner: str | None = None
    lease_until: float = 0.0

    @classmethod
    def new(cls, dedupe_key: str, payload: dict[str, Any], thread_key: str | None) -> "Submission":
        now = time.time()
        return cls(
            id=uuid.uuid4().hex,
            dedupe_key=dedupe_key,
            payload=payload,
            thread_key=thread_key,
            created_at=now,
            updated_at=now,
        )

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> "Submission":
        return cls(
            id=row["id"],
            dedupe_key=row["dedupe_key"],
            thread_key=row["thread_key"],
            status=row["status"],
            payload=json.loads(row["payload"]),
            steps_done=set(filter(None, row["steps_done"].split(","))),
            ticket=json.loads(row["ticket"]) if row["ticket"] else None,
            thread_ts=row["thread_ts"],
            maybe_created=bool(row["maybe_created"]),
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            warnings=json.loads(row["warnings"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            owner=row["owner"],
            lease_until=row["lease_until"],
        )

    def _progress(self) -> dict[str, Any]:
        """The columns a save writes: the work's progress, never its lease (`owner`, `lease_until`
        belong to claim, renew and release)."""
        return {
            "thread_key": self.thread_key,
            "status": self.status,
            "payload": json.dumps(self.payload),
            "requester_id": self.payload.get("requester_id"),  # known once a message is read
            "steps_done": ",".join(sorted(self.steps_done)),
            "ticket": json.dumps(self.ticket) if self.ticket else None,
            "thread_ts": self.thread_ts,
            "maybe_created": int(self.maybe_created),
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
            "warnings": json.dumps(self.warnings),
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Link:
    channel_id: str
    thread_ts: str
    ticket_id: str
    display_id: str
    backend: str


T = TypeVar("T")


def journaled(cls: type[T], data: Mapping[str, Any]) -> T:
    """A dataclass rebuilt from what the journal holds, ignoring keys it does not know: in a rolling
    deploy an older replica reads payloads a newer one wrote."""
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


class LeaseLost(Exception):
    """This process no longer holds the submission (its lease ran out and another took it over)."""


class ThreadTaken(Exception):
    """The thread already has a ticket, or a submission on its way to one."""

    def __init__(self, display_id: str | None) -> None:
        super().__init__(display_id or "pending")
        self.display_id = display_id


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


class Storage:
    """`Storage(DATABASE_URL)`: `sqlite:///path/to/file.db`, `postgresql://user:pass@host:5432/db`
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
        self._claim = _CLAIM[self.dialect]
        self._upsert = _UPSERT[self.dialect]
        self._add_link = _ADD_LINK[self.dialect]
        self._add_event = _ADD_EVENT[self.dialect]

    async def open(self, *, serving: bool = False, pool_size: int = 10) -> "Storage":
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

    # --- running statements (autocommit: each statement is its own transaction) -------------

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

    async def _submissions(self, stmt: Any, params: Mapping[str, Any] = EMPTY) -> list[Submission]:
        columns = self._prepare(stmt, params).columns
        return [Submission._from_row(dict(zip(columns, row))) for row in await self._fetch(stmt, params)]

    async def _submission(self, stmt: Any, params: Mapping[str, Any]) -> Submission | None:
        found = await self._submissions(stmt, params)
        return found[0] if found else None

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

    async def routes_version(self) -> tuple[int, float | None]:
        """Changes when any channel route is saved, by any process: (routes, latest save). Cheap
        enough to poll every second or two so every replica applies a route saved on another."""
        row = await self._first(_ROUTES_VERSION)
        return (row[0], row[1]) if row else (0, None)

    # --- submissions -----------------------------------------------------------------------

    async def add_submission(self, sub: Submission) -> tuple[Submission, bool]:
        """Journal a submission. Returns (the stored one, True) or, for a duplicate of an earlier
        submission (same dedupe key), (that earlier one, False), whatever state its thread is in
        now (a redelivered event whose ticket exists is no new request). Raises ThreadTaken."""
        if sub.thread_key:
            channel_id, thread_ts = sub.thread_key.split(":", 1)
            link = await self.link_for_thread(channel_id, thread_ts)
            if link:
                existing = await self._submission(_SUBMISSION_BY_DEDUPE_KEY, {"key": sub.dedupe_key})
                if existing:
                    return existing, False
                raise ThreadTaken(link.display_id)
        try:
            await self._write(
                _INSERT_SUBMISSION,
                {
                    "id": sub.id,
                    "dedupe_key": sub.dedupe_key,
                    "thread_key": sub.thread_key,
                    "payload": json.dumps(sub.payload),
                    "user_id": sub.payload.get("user_id"),
                    "requester_id": sub.payload.get("requester_id"),
                    "created_at": sub.created_at,
                    "updated_at": sub.updated_at,
                    "owner": sub.owner,
                    "lease_until": sub.lease_until,
                },
            )
            return sub, True
        except IntegrityError:  # a unique key: the dedupe key, or the thread reservation
            existing = await self._submission(_SUBMISSION_BY_DEDUPE_KEY, {"key": sub.dedupe_key})
            if existing:
                return existing, False
            taken = await self._submission(_SUBMISSION_BY_THREAD_KEY, {"key": sub.thread_key})
            raise ThreadTaken((taken.ticket or {}).get("display_id") if taken else None) from None

    async def get_submission(self, sub_id: str) -> Submission | None:
        return await self._submission(_SUBMISSION_BY_ID, {"sub_id": sub_id})

    async def claim(self, owner: str, lease_seconds: float, limit: int) -> list[Submission]:
        """Take up to `limit` pending submissions that are due and held by nobody (or whose holder's
        lease ran out), oldest due first, for `owner` until its lease expires. Atomic: two processes
        claiming at once never get the same submission (on PostgreSQL the rows are taken FOR UPDATE
        SKIP LOCKED)."""
        now = time.time()
        claimed = await self._submissions(
            self._claim, {"now": now, "limit": limit, "claim_owner": owner, "claim_until": now + lease_seconds}
        )
        return sorted(claimed, key=lambda s: (s.next_attempt_at, s.created_at))

    async def renew(self, owner: str, ids: list[str], lease_seconds: float) -> tuple[set[str], float]:
        """Extend this owner's leases on the submissions it is still working on. Returns the ids
        whose lease was extended (those it no longer holds are missing) and the new expiry."""
        until = time.time() + lease_seconds
        if not ids:
            return set(), until
        async with self.engine.connect() as conn:  # an IN list: SQLAlchemy expands it per call
            result = await conn.execute(_RENEW, {"holder": owner, "ids": list(ids), "until": until})
            return {row[0] for row in result}, until

    async def release_others(self, owner: str) -> None:
        """Let go of every lease not held by `owner` (SQLite at start-up: the only serving process
        finds leases of a process that died)."""
        await self._write(_RELEASE_OTHERS, {"holder": owner})

    async def release_all(self, owner: str) -> None:
        """Give up every lease this owner holds (a graceful stop): another process may carry on."""
        await self._write(_RELEASE_ALL, {"holder": owner})

    async def next_due(self) -> float | None:
        """When the earliest pending submission nobody holds is due (epoch seconds), or None."""
        row = await self._first(_NEXT_DUE)
        return row[0] if row and row[0] is not None else None

    async def pending_submissions(self) -> list[Submission]:
        return await self._submissions(_PENDING_SUBMISSIONS)

    async def save_submission(self, sub: Submission, *, release: bool = False) -> None:
        """Record the submission's progress. Only its holder may: raises LeaseLost when another
        process has taken it over. A save never moves the lease (renew does); what happened is
        recorded even after the lease ran out, as long as nobody took the submission over.
        `release`: let go of it (it waits for its next attempt, or is finished)."""
        sub.updated_at = time.time()
        params = {"sub_id": sub.id, "holder": sub.owner, **sub._progress()}
        if not await self._fetch(_RELEASE if release else _SAVE, params):
            raise LeaseLost(sub.id)
        if release:
            sub.owner, sub.lease_until = None, 0.0

    async def tickets_of(self, user_id: str, limit: int = 10) -> list[Submission]:
        """The most recent submissions that became tickets filed by the person or for them (submitter
        or requester)."""
        return await self._submissions(_TICKETS_OF, {"user_id_": user_id, "limit": limit})

    async def counts(self) -> dict[str, int]:
        return {status: n for status, n in await self._fetch(_COUNTS)}

    async def backlog(self) -> tuple[int, float | None]:
        """(pending submissions, created_at of the oldest) for health and metrics."""
        row = await self._first(_BACKLOG)
        return (row[0], row[1]) if row else (0, None)

    async def stuck(self, older_than: float) -> tuple[int, float | None]:
        """(pending submissions created more than `older_than` seconds ago, created_at of the oldest)."""
        row = await self._first(_STUCK, {"before": time.time() - older_than})
        return (int(row[0] or 0), row[1]) if row else (0, None)

    async def purge(self, older_than_seconds: float) -> dict[str, int]:
        """Retention: delete finished submissions (done or failed) whose last change is older than
        `older_than_seconds`, and Slack event ids received before then. Pending submissions and
        thread links are kept. Returns how many rows went, by table."""
        cutoff = {"cutoff": time.time() - older_than_seconds}
        return {
            "submissions": await self._write(_PURGE_SUBMISSIONS, cutoff, count=True),
            "slack_events": await self._write(_PURGE_EVENTS, cutoff, count=True),
        }

    # --- links -----------------------------------------------------------------------------

    async def link_for_thread(self, channel_id: str, thread_ts: str) -> Link | None:
        row = await self._first(_LINK, {"channel": channel_id, "ts": thread_ts})
        return Link(*row) if row else None

    async def pending_display_for_thread(self, channel_id: str, thread_ts: str) -> Submission | None:
        return await self._submission(_PENDING_BY_THREAD_KEY, {"key": f"{channel_id}:{thread_ts}"})

    async def first_delivery(self, event_id: str, submission_id: str | None = None) -> bool:
        """Record a Slack event id; False when it was recorded before, by any process (the
        primary key decides, so two replicas receiving the same event agree)."""
        changed = await self._write(
            self._add_event,
            {"event_id": event_id, "received_at": time.time(), "submission_id": submission_id},
            count=True,
        )
        return changed == 1

    async def add_link(self, link: Link, submission_id: str) -> None:
        """Connect the thread to the ticket; the first link of a thread stays."""
        await self._write(
            self._add_link,
            {
                "channel_id": link.channel_id,
                "thread_ts": link.thread_ts,
                "ticket_id": link.ticket_id,
                "display_id": link.display_id,
                "backend": link.backend,
                "submission_id": submission_id,
                "created_at": time.time(),
            },
        )

    # --- people, identities, routes, state --------------------------------------------------

    async def person(self, slack_user_id: str) -> tuple[dict[str, Any] | None, float] | None:
        """(profile or None, fetched_at), or None when never fetched."""
        row = await self._first(_PERSON, {"user": slack_user_id})
        if not row:
            return None
        return (json.loads(row[0]) if row[0] else None), row[1]

    async def save_person(self, slack_user_id: str, profile: dict[str, Any] | None) -> None:
        await self._write(
            self._upsert["people"],
            {
                "slack_user_id": slack_user_id,
                "profile": json.dumps(profile) if profile is not None else None,
                "fetched_at": time.time(),
            },
        )

    async def identity(self, backend: str, slack_user_id: str, email: str, max_age: float) -> str | None:
        row = await self._first(
            _IDENTITY, {"backend_": backend, "user": slack_user_id, "email_": email, "since": time.time() - max_age}
        )
        return row[0] if row else None

    async def save_identity(self, backend: str, slack_user_id: str, email: str, user_id: str) -> None:
        await self._write(
            self._upsert["identities"],
            {
                "backend": backend,
                "slack_user_id": slack_user_id,
                "email": email,
                "user_id": user_id,
                "resolved_at": time.time(),
            },
        )

    async def get_state(self, name: str) -> str | None:
        row = await self._first(_STATE, {"name_": name})
        return row[0] if row else None

    async def set_state(self, name: str, value: str) -> None:
        await self._write(self._upsert["state"], {"name": name, "value": value, "updated_at": time.time()})

    async def route(self, channel_id: str) -> dict[str, Any] | None:
        row = await self._first(_ROUTE, {"channel": channel_id})
        return json.loads(row[0]) if row else None

    async def save_route(self, channel_id: str, route: dict[str, Any], updated_by: str) -> None:
        await self._write(
            self._upsert["routes"],
            {"channel_id": channel_id, "route": json.dumps(route), "updated_by": updated_by, "updated_at": time.time()},
        )
