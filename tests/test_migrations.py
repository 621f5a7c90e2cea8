"""bot/journal/migrations (Alembic), run by bot.journal.storage.migrate at start-up and by `python app.py migrate`:
revision 0001 is main's schema before this change, 0002 adds the lease columns and slack_events,
0003 the requester of each submission (filled from the journal), 0004 the followed tickets and leases, 0005 slack_sdk's installation and OAuth state tables;
a database made before migrations is stamped and upgraded with nothing lost; replicas starting
together migrate once; migrations are additive."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.journal.storage import Storage, database_url, head_revision, metadata, migrate, schema_revision

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "bot" / "migrations"

# The schema on main before this change (`git show d399097:bot/journal/storage.py`), as the bot created it.
MAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS submissions (
    id              TEXT PRIMARY KEY,
    dedupe_key      TEXT NOT NULL UNIQUE,
    thread_key      TEXT UNIQUE,
    status          TEXT NOT NULL DEFAULT 'pending',   -- pending | done | failed
    payload         TEXT NOT NULL,
    user_id         TEXT,
    steps_done      TEXT NOT NULL DEFAULT '',
    ticket          TEXT,                              -- JSON of the created ticket
    thread_ts       TEXT,                              -- thread connected to the ticket
    maybe_created   INTEGER NOT NULL DEFAULT 0,        -- an attempt may have created the ticket
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    warnings        TEXT NOT NULL DEFAULT '[]',
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS submissions_pending ON submissions(status) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS submissions_user ON submissions(user_id, created_at);
CREATE TABLE IF NOT EXISTS people (          -- Slack profiles (users.info), refreshed after a while
    slack_user_id TEXT PRIMARY KEY,
    profile       TEXT,                      -- JSON, NULL when Slack does not know the user
    fetched_at    REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS identities (      -- Slack user → user id in a ticket system
    backend       TEXT NOT NULL,
    slack_user_id TEXT NOT NULL,
    email         TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    resolved_at   REAL NOT NULL,
    PRIMARY KEY (backend, slack_user_id)
);
CREATE TABLE IF NOT EXISTS state (           -- small named values, e.g. a rotating refresh token
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS routes (          -- what admins set in Slack with /ticket config
    channel_id  TEXT PRIMARY KEY,
    route       TEXT NOT NULL,               -- JSON
    updated_by  TEXT NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS links (
    channel_id    TEXT NOT NULL,
    thread_ts     TEXT NOT NULL,
    ticket_id     TEXT NOT NULL,
    display_id    TEXT NOT NULL,
    backend       TEXT NOT NULL,
    submission_id TEXT,
    created_at    REAL NOT NULL,
    PRIMARY KEY (channel_id, thread_ts)
);
"""
MAIN_TABLES = ("submissions", "people", "identities", "state", "routes", "links")


def sqlite_shape(path: Path) -> dict:
    """Everything SQLite knows about the tables and indexes, comments and formatting aside."""
    with sqlite3.connect(path) as db:
        shape = {}
        for table in MAIN_TABLES:
            shape[table] = {
                "columns": db.execute(f"PRAGMA table_info({table})").fetchall(),
                "indexes": sorted(
                    (unique, origin, partial, tuple(c[2] for c in db.execute(f"PRAGMA index_info('{name}')")))
                    for _, name, unique, origin, partial in db.execute(f"PRAGMA index_list({table})")
                ),
            }
        shape["named_indexes"] = {
            name: re.sub(r"\s*\(\s*", "(", re.sub(r"\s+", " ", sql.replace("IF NOT EXISTS ", "")))
            for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
        }
    return shape


def main_database(path: Path) -> None:
    """A database as main's code made and filled it, before migrations existed."""
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(MAIN_SCHEMA)
        db.executemany(
            "INSERT INTO submissions (id, dedupe_key, thread_key, status, payload, user_id, steps_done, ticket,"
            " thread_ts, maybe_created, attempts, next_attempt_at, last_error, warnings, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("s-done", "view-1", None, "done", json.dumps({"user_id": "U1", "title": "Printer"}), "U1",
                 "connect,create,reply", json.dumps({"id": "T1", "display_id": "IT-1"}), "111.1", 1, 1, 0,
                 None, "[]", now - 100, now - 90),
                ("s-pending", "view-2", "C1:222.2", "pending", json.dumps({"user_id": "U2", "title": "VPN"}), "U2",
                 "create", None, None, 1, 3, now - 1, "Serval 503", json.dumps(["slow"]), now - 50, now - 40),
            ],
        )
        db.execute("INSERT INTO links VALUES ('C1', '111.1', 'T1', 'IT-1', 'serval', 's-done', ?)", (now - 90,))
        db.execute("INSERT INTO people VALUES ('U1', ?, ?)", (json.dumps({"name": "Ann"}), now - 10))
        db.execute("INSERT INTO people VALUES ('U3', NULL, ?)", (now - 10,))
        db.execute("INSERT INTO identities VALUES ('serval', 'U1', 'ann@x', 'srv-1', ?)", (now - 10,))
        db.execute("INSERT INTO state VALUES ('socialboards.refresh_token', 'rt-7', ?)", (now - 5,))
        db.execute("INSERT INTO routes VALUES ('C9', ?, 'U1', ?)", (json.dumps({"backend": "serval"}), now - 5))


async def check_main_data_survived(s: Storage) -> None:
    done = await s.get_submission("s-done")
    assert done.status == "done" and done.ticket == {"id": "T1", "display_id": "IT-1"}
    assert done.steps_done == {"connect", "create", "reply"} and done.payload["title"] == "Printer"
    pending = await s.get_submission("s-pending")
    assert pending.status == "pending" and pending.steps_done == {"create"} and pending.maybe_created
    assert pending.attempts == 3 and pending.last_error == "Serval 503" and pending.warnings == ["slow"]
    assert pending.owner is None and pending.lease_until == 0  # the new columns, at their defaults
    assert (await s.link_for_thread("C1", "111.1")).display_id == "IT-1"
    assert (await s.person("U1"))[0] == {"name": "Ann"} and (await s.person("U3"))[0] is None
    assert await s.identity("serval", "U1", "ann@x", 3600) == "srv-1"
    assert await s.get_state("socialboards.refresh_token") == "rt-7"
    assert await s.route("C9") == {"backend": "serval"}
    assert await s.counts() == {"done": 1, "pending": 1}
    # The pending one carries on from its last recorded step, and its thread stays reserved.
    [claimed] = await s.claim("me", 30, limit=10)
    assert claimed.id == "s-pending" and claimed.steps_done == {"create"}
    assert await s.taken_threads(["C1:222.2"]) == {"C1:222.2": None}


# --- revision 0001 is main's schema ---------------------------------------------------------------


async def test_revision_0001_is_mains_schema_exactly(tmp_path):
    main_database(tmp_path / "main.db")
    assert await migrate(f"sqlite:///{tmp_path}/migrated.db", revision="0001") == "0001"
    assert sqlite_shape(tmp_path / "migrated.db") == sqlite_shape(tmp_path / "main.db")


async def test_head_matches_the_tables_the_queries_use(db_url):
    """The migrations and bot/journal/storage.py's table definitions describe the same columns, on both engines."""
    assert await migrate(db_url) == head_revision() == "0005"
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(
                lambda c: {
                    t: {col["name"]: (col["nullable"], type(col["type"]).__name__) for col in sa.inspect(c).get_columns(t)}
                    for t in metadata.tables
                }
            )
    finally:
        await engine.dispose()
    for name, table in metadata.tables.items():
        assert set(found[name]) == {c.name for c in table.columns}, name
    if "postgresql" in db_url:  # epoch seconds need 8 bytes: never PostgreSQL's 4-byte REAL
        assert found["submissions"]["next_attempt_at"][1] == "DOUBLE_PRECISION"
        assert found["submissions"]["lease_until"] == (False, "DOUBLE_PRECISION")
        assert found["links"]["created_at"][1] == "DOUBLE_PRECISION"


async def test_0005_makes_slack_sdks_installation_tables(db_url):
    """slack_sdk's own stores work on the tables the migration made (same names, columns, types)."""
    from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
    from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

    assert await migrate(db_url) == "0005"
    expected = sa.MetaData()
    SQLAlchemyInstallationStore.build_installations_table(expected, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(expected, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(expected, "slack_oauth_states")
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: {
                t: ({col["name"]: col["nullable"] for col in sa.inspect(c).get_columns(t)},
                    {i["name"] for i in sa.inspect(c).get_indexes(t)})
                for t in expected.tables
            })
    finally:
        await engine.dispose()
    for name, table in expected.tables.items():
        columns, indexes = found[name]
        assert columns == {c.name: c.nullable for c in table.columns}, name
        assert {i.name for i in table.indexes} <= indexes, name


# --- a database from before migrations -----------------------------------------------------------


async def test_a_database_made_by_main_is_upgraded_with_nothing_lost(tmp_path):
    path = tmp_path / "tickets.db"
    main_database(path)
    s = await Storage(f"sqlite:///{path}").open()
    try:
        assert await schema_revision(f"sqlite:///{path}") == head_revision()
        await check_main_data_survived(s)
    finally:
        await s.close()
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(submissions)")]
        assert columns[-3:] == ["owner", "lease_until", "requester_id"]
        assert db.execute("SELECT COUNT(*) FROM slack_events").fetchone() == (0,)
    s = await Storage(f"sqlite:///{path}").open()  # opened again: nothing left to do, nothing lost
    try:
        assert await s.counts() == {"done": 1, "pending": 1}
    finally:
        await s.close()


async def test_a_database_with_lease_columns_but_no_migrations_is_upgraded(tmp_path):
    """Made by the code that added the lease columns before Alembic (ALTER TABLE at open)."""
    path = tmp_path / "tickets.db"
    main_database(path)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE submissions ADD COLUMN owner TEXT")
        db.execute("ALTER TABLE submissions ADD COLUMN lease_until REAL NOT NULL DEFAULT 0")
    s = await Storage(f"sqlite:///{path}").open()
    try:
        assert await schema_revision(f"sqlite:///{path}") == head_revision()
        await check_main_data_survived(s)
    finally:
        await s.close()


async def test_migrating_twice_changes_nothing(db_url):
    assert await migrate(db_url) == "0005"
    s = await Storage(db_url).open()
    try:
        await s.set_state("k", "v")
    finally:
        await s.close()
    assert await migrate(db_url) == "0005"
    s = await Storage(db_url).open()
    try:
        assert await s.get_state("k") == "v"
    finally:
        await s.close()


async def test_upgrading_from_0001_keeps_data(db_url):
    assert await migrate(db_url, revision="0001") == "0001"
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.begin() as conn:  # a row as main's code wrote it
            await conn.execute(
                sa.text(
                    "INSERT INTO submissions (id, dedupe_key, thread_key, payload, user_id, created_at, updated_at)"
                    " VALUES ('s1', 'view-1', 'C1:1.0', :payload, 'U1', 1.5, 1.5)"
                ),
                {"payload": json.dumps({"user_id": "U1"})},
            )
    finally:
        await engine.dispose()
    s = await Storage(db_url).open()
    try:
        sub = await s.get_submission("s1")
        assert (sub.dedupe_key, sub.thread_key, sub.owner, sub.lease_until) == ("view-1", "C1:1.0", None, 0)
        assert sub.created_at == 1.5
    finally:
        await s.close()


async def test_0003_fills_the_requester_from_the_journal(db_url):
    """Submissions journaled before 0003 keep their requester (the payload's, in older payloads the
    origin's): after the upgrade the Home tab's query finds them for the requester too."""
    assert await migrate(db_url, revision="0002") == "0002"
    ticket = json.dumps({"id": "T1", "display_id": "IT-1", "backend": "serval"})
    rows = [  # id, payload, submitter
        ("s-for-bob", {"user_id": "U1", "requester_id": "U2", "origin": {"source": "reaction"}}, "U1"),
        ("s-old", {"user_id": "U1", "origin": {"source": "shortcut", "requester_id": "U3"}}, "U1"),
        ("s-unread", {"user_id": "U1", "requester_id": None, "origin": {"source": "mention"}}, "U1"),
    ]
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.begin() as conn:
            for i, (sub_id, payload, user) in enumerate(rows):
                await conn.execute(
                    sa.text(
                        "INSERT INTO submissions (id, dedupe_key, payload, user_id, ticket, created_at, updated_at)"
                        " VALUES (:id, :key, :payload, :user, :ticket, :at, :at)"
                    ),
                    {"id": sub_id, "key": f"k{i}", "payload": json.dumps(payload), "user": user, "ticket": ticket, "at": 1.0 + i},
                )
    finally:
        await engine.dispose()
    s = await Storage(db_url).open()  # migrates to the head
    try:
        assert [t.id for t in await s.tickets_of("U2")] == ["s-for-bob"]
        assert [t.id for t in await s.tickets_of("U3")] == ["s-old"]
        assert [t.id for t in await s.tickets_of("U1")] == ["s-unread", "s-old", "s-for-bob"]  # the submitter's, newest first
    finally:
        await s.close()


# --- replicas starting together ------------------------------------------------------------------


async def test_replicas_starting_together_migrate_once(db_url):
    results = await asyncio.gather(*(migrate(db_url) for _ in range(4)), return_exceptions=True)
    assert results == ["0005"] * 4
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.connect() as conn:
            versions = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert versions == ["0005"]


async def test_storages_opening_together_on_a_new_database(db_url):
    stores = await asyncio.gather(*(Storage(db_url).open() for _ in range(3)))
    try:
        assert [await s.ping() for s in stores] == [True] * 3
    finally:
        for s in stores:
            await s.close()


# --- additive within a release -------------------------------------------------------------------


async def test_the_previous_version_keeps_working_on_the_new_schema(db_url):
    """During a rolling deploy a replica of the previous version writes beside the new one: its
    statements (without the new columns) still work on the upgraded schema."""
    await migrate(db_url)
    engine = create_async_engine(database_url(db_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO submissions (id, dedupe_key, thread_key, payload, user_id, created_at, updated_at)"
                    " VALUES ('old', 'view-old', NULL, '{}', 'U1', 1, 1)"
                )
            )
            await conn.execute(
                sa.text(
                    "UPDATE submissions SET thread_key=NULL, status='done', steps_done='create', ticket=NULL,"
                    " thread_ts=NULL, maybe_created=1, attempts=1, next_attempt_at=0, last_error=NULL,"
                    " warnings='[]', updated_at=2 WHERE id='old'"
                )
            )
            await conn.execute(sa.text("INSERT INTO links VALUES ('C1', '1.0', 'T', 'IT-1', 'serval', 'old', 2)"))
    finally:
        await engine.dispose()


def test_migrations_are_additive():
    """No migration drops or alters what a running replica of the previous version uses."""
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        source = path.read_text()
        upgrade = source.split("def upgrade", 1)[1].split("def downgrade", 1)[0]
        for forbidden in ("drop_", "alter_column", "rename", "batch_alter_table", "DROP", "ALTER", "DELETE", "sa.delete"):
            assert forbidden not in upgrade, f"{path.name}: {forbidden}"
        for statement in upgrade.split("execute(")[1:]:  # only a backfill of what the migration adds
            assert statement.lstrip().startswith("sa.update("), f"{path.name}: execute({statement.strip()[:40]}"


async def test_an_in_memory_database_is_migrated_when_opened():
    s = await Storage(":memory:").open()
    try:
        async with s.engine.connect() as conn:
            version = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar_one()
        assert version == head_revision()
    finally:
        await s.close()
    with pytest.raises(ValueError):
        await migrate("sqlite:///:memory:")
