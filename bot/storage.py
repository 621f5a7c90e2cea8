"""SQLite storage: the submission journal and the thread ↔ ticket links.

A submission is written here *before* Slack gets its acknowledgement, then carried through its steps;
each finished step is recorded so that no step is ever done twice, and unfinished work resumes after
a restart. One thread maps to at most one ticket: `links` has the thread as its key, and a pending
submission reserves its thread with a unique `thread_key`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

SCHEMA = """
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
    updated_at      REAL NOT NULL,
    owner           TEXT,                              -- the process working on it, while its lease lasts
    lease_until     REAL NOT NULL DEFAULT 0
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
    def _from_row(cls, row: sqlite3.Row) -> "Submission":
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


@dataclass(frozen=True)
class Link:
    channel_id: str
    thread_ts: str
    ticket_id: str
    display_id: str
    backend: str


class LeaseLost(Exception):
    """This process no longer holds the submission (its lease ran out and another took it over)."""


class ThreadTaken(Exception):
    """The thread already has a ticket, or a submission on its way to one."""

    def __init__(self, display_id: str | None) -> None:
        super().__init__(display_id or "pending")
        self.display_id = display_id


class Storage:
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> "Storage":
        if self.path != ":memory:":
            # Created readable by its owner only: it holds what people typed.
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        await self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a submission acknowledged to Slack survives a power loss, not only a crash.
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(SCHEMA)
        async with self._db.execute("PRAGMA table_info(submissions)") as cur:
            columns = {row[1] for row in await cur.fetchall()}
        if "owner" not in columns:  # a database from before leases
            await self._db.execute("ALTER TABLE submissions ADD COLUMN owner TEXT")
            await self._db.execute("ALTER TABLE submissions ADD COLUMN lease_until REAL NOT NULL DEFAULT 0")
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("storage is not open")
        return self._db

    async def ping(self) -> bool:
        try:
            async with self.db.execute("SELECT 1") as cur:
                return (await cur.fetchone()) is not None
        except Exception:
            return False

    # --- submissions -----------------------------------------------------------------------

    async def add_submission(self, sub: Submission) -> tuple[Submission, bool]:
        """Journal a submission. Returns (the stored one, True) or, for a duplicate of an earlier
        submission (same dedupe key), (that earlier one, False). Raises ThreadTaken."""
        if sub.thread_key:
            channel_id, thread_ts = sub.thread_key.split(":", 1)
            link = await self.link_for_thread(channel_id, thread_ts)
            if link:
                raise ThreadTaken(link.display_id)
        try:
            await self.db.execute(
                "INSERT INTO submissions (id, dedupe_key, thread_key, payload, user_id, created_at, updated_at,"
                " owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sub.id,
                    sub.dedupe_key,
                    sub.thread_key,
                    json.dumps(sub.payload),
                    sub.payload.get("user_id"),
                    sub.created_at,
                    sub.updated_at,
                    sub.owner,
                    sub.lease_until,
                ),
            )
            return sub, True
        except sqlite3.IntegrityError:
            existing = await self._one("SELECT * FROM submissions WHERE dedupe_key = ?", sub.dedupe_key)
            if existing:
                return existing, False
            taken = await self._one("SELECT * FROM submissions WHERE thread_key = ?", sub.thread_key)
            raise ThreadTaken((taken.ticket or {}).get("display_id") if taken else None) from None

    async def get_submission(self, sub_id: str) -> Submission | None:
        return await self._one("SELECT * FROM submissions WHERE id = ?", sub_id)

    async def claim(self, owner: str, lease_seconds: float, limit: int) -> list[Submission]:
        """Take up to `limit` pending submissions that are due and held by nobody (or whose holder's
        lease ran out), oldest due first, for `owner` until its lease expires."""
        now = time.time()
        async with self.db.execute(
            "UPDATE submissions SET owner = ?, lease_until = ? WHERE id IN ("
            " SELECT id FROM submissions WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (owner IS NULL OR lease_until < ?) ORDER BY next_attempt_at, created_at LIMIT ?)"
            " RETURNING *",
            (owner, now + lease_seconds, now, now, limit),
        ) as cur:
            rows = await cur.fetchall()
        return sorted((Submission._from_row(r) for r in rows), key=lambda s: (s.next_attempt_at, s.created_at))

    async def renew(self, owner: str, ids: list[str], lease_seconds: float) -> None:
        """Extend this owner's leases on the submissions it is still working on."""
        if ids:
            await self.db.execute(
                f"UPDATE submissions SET lease_until = ? WHERE owner = ? AND id IN ({','.join('?' * len(ids))})",
                (time.time() + lease_seconds, owner, *ids),
            )

    async def release_all(self, owner: str) -> None:
        """Give up every lease this owner holds (a graceful stop): another process may carry on."""
        await self.db.execute("UPDATE submissions SET owner = NULL, lease_until = 0 WHERE owner = ?", (owner,))

    async def next_due(self) -> float | None:
        """When the earliest pending submission nobody holds is due (epoch seconds), or None."""
        async with self.db.execute(
            "SELECT MIN(CASE WHEN owner IS NULL THEN next_attempt_at"
            " ELSE MAX(next_attempt_at, lease_until) END) FROM submissions WHERE status = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row and row[0] is not None else None

    async def pending_submissions(self) -> list[Submission]:
        async with self.db.execute(
            "SELECT * FROM submissions WHERE status = 'pending' ORDER BY created_at"
        ) as cur:
            return [Submission._from_row(r) for r in await cur.fetchall()]

    async def save_submission(self, sub: Submission, *, release: bool = False) -> None:
        """Record the submission's progress. Only its holder may: raises LeaseLost when another
        process has taken it over. `release`: let go of it (it waits for its next attempt, or is
        finished)."""
        sub.updated_at = time.time()
        owner = sub.owner
        if release:
            sub.owner, sub.lease_until = None, 0.0
        async with self.db.execute(
            "UPDATE submissions SET thread_key=?, status=?, payload=?, steps_done=?, ticket=?, thread_ts=?,"
            " maybe_created=?, attempts=?, next_attempt_at=?, last_error=?, warnings=?, updated_at=?,"
            " owner=?, lease_until=? WHERE id=? AND owner IS ?",
            (
                sub.thread_key,
                sub.status,
                json.dumps(sub.payload),
                ",".join(sorted(sub.steps_done)),
                json.dumps(sub.ticket) if sub.ticket else None,
                sub.thread_ts,
                int(sub.maybe_created),
                sub.attempts,
                sub.next_attempt_at,
                sub.last_error,
                json.dumps(sub.warnings),
                sub.updated_at,
                sub.owner,
                sub.lease_until,
                sub.id,
                owner,
            ),
        ) as cur:
            if cur.rowcount == 0:
                raise LeaseLost(sub.id)

    async def tickets_of(self, user_id: str, limit: int = 10) -> list[Submission]:
        """The person's most recent submissions that became tickets."""
        async with self.db.execute(
            "SELECT * FROM submissions WHERE user_id = ? AND ticket IS NOT NULL ORDER BY created_at DESC LIMIT ?",
            (user_id, limit),
        ) as cur:
            return [Submission._from_row(r) for r in await cur.fetchall()]

    async def counts(self) -> dict[str, int]:
        async with self.db.execute("SELECT status, COUNT(*) FROM submissions GROUP BY status") as cur:
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def backlog(self) -> tuple[int, float | None]:
        """(pending submissions, created_at of the oldest) for health and metrics."""
        async with self.db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM submissions WHERE status = 'pending'"
        ) as cur:
            row = await cur.fetchone()
        return (row[0], row[1]) if row else (0, None)

    async def _one(self, sql: str, *args: Any) -> Submission | None:
        async with self.db.execute(sql, args) as cur:
            row = await cur.fetchone()
        return Submission._from_row(row) if row else None

    # --- links -----------------------------------------------------------------------------

    async def link_for_thread(self, channel_id: str, thread_ts: str) -> Link | None:
        async with self.db.execute(
            "SELECT channel_id, thread_ts, ticket_id, display_id, backend FROM links"
            " WHERE channel_id = ? AND thread_ts = ?",
            (channel_id, thread_ts),
        ) as cur:
            row = await cur.fetchone()
        return Link(*row) if row else None

    async def pending_display_for_thread(self, channel_id: str, thread_ts: str) -> Submission | None:
        return await self._one(
            "SELECT * FROM submissions WHERE thread_key = ? AND status = 'pending'",
            f"{channel_id}:{thread_ts}",
        )

    async def add_link(self, link: Link, submission_id: str) -> None:
        await self.db.execute(
            "INSERT OR IGNORE INTO links (channel_id, thread_ts, ticket_id, display_id, backend,"
            " submission_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (link.channel_id, link.thread_ts, link.ticket_id, link.display_id, link.backend, submission_id, time.time()),
        )

    # --- people, identities, routes ---------------------------------------------------------

    async def person(self, slack_user_id: str) -> tuple[dict[str, Any] | None, float] | None:
        """(profile or None, fetched_at), or None when never fetched."""
        async with self.db.execute(
            "SELECT profile, fetched_at FROM people WHERE slack_user_id = ?", (slack_user_id,)
        ) as cur:
            row = await cur.fetchone()
        if not row:
            return None
        return (json.loads(row[0]) if row[0] else None), row[1]

    async def save_person(self, slack_user_id: str, profile: dict[str, Any] | None) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO people (slack_user_id, profile, fetched_at) VALUES (?, ?, ?)",
            (slack_user_id, json.dumps(profile) if profile is not None else None, time.time()),
        )

    async def identity(self, backend: str, slack_user_id: str, email: str, max_age: float) -> str | None:
        async with self.db.execute(
            "SELECT user_id FROM identities WHERE backend = ? AND slack_user_id = ? AND email = ?"
            " AND resolved_at > ?",
            (backend, slack_user_id, email, time.time() - max_age),
        ) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def save_identity(self, backend: str, slack_user_id: str, email: str, user_id: str) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO identities (backend, slack_user_id, email, user_id, resolved_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (backend, slack_user_id, email, user_id, time.time()),
        )

    async def get_state(self, name: str) -> str | None:
        async with self.db.execute("SELECT value FROM state WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return row[0] if row else None

    async def set_state(self, name: str, value: str) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO state (name, value, updated_at) VALUES (?, ?, ?)", (name, value, time.time())
        )

    async def route(self, channel_id: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT route FROM routes WHERE channel_id = ?", (channel_id,)) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row else None

    async def save_route(self, channel_id: str, route: dict[str, Any], updated_by: str) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO routes (channel_id, route, updated_by, updated_at) VALUES (?, ?, ?, ?)",
            (channel_id, json.dumps(route), updated_by, time.time()),
        )
