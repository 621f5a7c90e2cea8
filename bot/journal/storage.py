"""Storage: the submission journal and the thread ↔ ticket links, on SQLite (one process, the
default) or PostgreSQL (several replicas), through SQLAlchemy Core. Every SQL statement the bot runs
lives in this package: the journal's here, the small tables' beside it in `records`, the engine,
migrations and the running of statements in `database`, the tables in `schema`; the schema's
history in `bot/journal/migrations` (Alembic), applied by `migrate` at start-up under a lock.

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

Statements are built once below and compiled once per dialect (see `database`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from .database import (  # noqa: F401 (what the rest of the bot takes from here)
    EMPTY, DatabaseInUse, _dialect_insert, _lock_serving, head_revision, migrate, schema_revision,
)
from .follows import Followed, Follows  # noqa: F401
from .schema import (  # noqa: F401
    TABLES, followed, identities, leases, links, metadata, people, routes, slack_events, state, submissions,
)
from .url import database_url, is_memory, sqlite_file  # noqa: F401

# --- the statements, built once (SQLAlchemy compiles each once per dialect and caches it) ---------

_S = submissions
_b = sa.bindparam
_LINK_COLUMNS = (links.c.channel_id, links.c.thread_ts, links.c.ticket_id, links.c.display_id, links.c.backend)
_PENDING = _S.c.status == "pending"

_INSERT_SUBMISSION = sa.insert(_S)
_SUBMISSION_BY_ID = sa.select(_S).where(_S.c.id == _b("sub_id"))
_SUBMISSION_BY_DEDUPE_KEY = sa.select(_S).where(_S.c.dedupe_key == _b("key"))
_SUBMISSION_BY_THREAD_KEY = sa.select(_S).where(_S.c.thread_key == _b("key"))
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
# Which of up to THREAD_BATCH threads are taken (linked to a ticket, or with a pending submission),
# in one statement: the message shortcut's checks after its forms opened (`journal.threads`).
THREAD_BATCH = 50


def _taken_threads(n: int) -> Any:
    return sa.union_all(
        sa.select((links.c.channel_id + ":" + links.c.thread_ts).label("thread_key"), links.c.display_id).where(
            sa.or_(*(sa.and_(links.c.channel_id == _b(f"c{i}"), links.c.thread_ts == _b(f"t{i}")) for i in range(n)))
        ),
        sa.select(_S.c.thread_key, sa.null()).where(_S.c.thread_key.in_([_b(f"k{i}") for i in range(n)]), _PENDING),
    )


_TAKEN_THREADS = {n: _taken_threads(n) for n in (1, 5, 15, THREAD_BATCH)}  # by how many threads they take


# The first link of a thread stays.
_ADD_LINK = {
    d: _dialect_insert(d, links).on_conflict_do_nothing(index_elements=["channel_id", "thread_ts"])
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
    """A dataclass rebuilt from what was stored (the journal, a form's private_metadata), ignoring
    keys it does not know: in a rolling deploy an older replica reads what a newer one wrote."""
    return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})  # type: ignore[attr-defined]


class LeaseLost(Exception):
    """This process no longer holds the submission (its lease ran out and another took it over)."""


class ThreadTaken(Exception):
    """The thread already has a ticket, or a submission on its way to one."""

    def __init__(self, display_id: str | None) -> None:
        super().__init__(display_id or "pending")
        self.display_id = display_id


class Storage(Follows):
    """`Storage(DATABASE_URL)`: the journal and the thread links, beside the small tables
    (`Records`), on the database connection (`Database`, where URLs and errors are described)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._claim = _CLAIM[self.dialect]
        self._add_link = _ADD_LINK[self.dialect]

    async def _submissions(self, stmt: Any, params: Mapping[str, Any] = EMPTY) -> list[Submission]:
        columns = self._prepare(stmt, params).columns
        return [Submission._from_row(dict(zip(columns, row))) for row in await self._fetch(stmt, params)]

    async def _submission(self, stmt: Any, params: Mapping[str, Any]) -> Submission | None:
        found = await self._submissions(stmt, params)
        return found[0] if found else None

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
        thread links are kept; so are followed tickets, but for those no longer followed whose last
        change is older. Returns how many rows went, by table."""
        cutoff = {"cutoff": time.time() - older_than_seconds}
        return {
            "submissions": await self._write(_PURGE_SUBMISSIONS, cutoff, count=True),
            "slack_events": await self._write(_PURGE_EVENTS, cutoff, count=True),
            "followed": await self.purge_followed(cutoff["cutoff"]),
        }

    # --- links -----------------------------------------------------------------------------

    async def link_for_thread(self, channel_id: str, thread_ts: str) -> Link | None:
        row = await self._first(_LINK, {"channel": channel_id, "ts": thread_ts})
        return Link(*row) if row else None

    async def taken_threads(self, thread_keys: Sequence[str]) -> dict[str, str | None]:
        """Of these threads (`channel:ts`), those linked to a ticket (→ its display id) or with a
        pending submission (→ None): one statement for every THREAD_BATCH of them."""
        taken: dict[str, str | None] = {}
        for start in range(0, len(thread_keys), THREAD_BATCH):
            batch = thread_keys[start:start + THREAD_BATCH]
            size = next(n for n in _TAKEN_THREADS if n >= len(batch))
            params: dict[str, str] = {}
            for i in range(size):
                key = batch[i % len(batch)]  # a shorter batch repeats its keys
                params[f"c{i}"], _, params[f"t{i}"] = key.partition(":")
                params[f"k{i}"] = key
            for key, display_id in await self._fetch(_TAKEN_THREADS[size], params):
                if display_id is not None or key not in taken:  # a link's display id wins
                    taken[key] = display_id
        return taken

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
