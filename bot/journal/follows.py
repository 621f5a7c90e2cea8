"""The tickets the bot follows after filing them (`followed`), and named leases (`leases`): what was
last seen of each ticket is stored, so a change is announced once, by whichever process polls.

A closure (resolved or cancelled) is announced once: `claim_closure` raises the ticket's `closures`
count from what the caller saw with one conditional UPDATE, so of two processes (or a retry after a
restart) only one gets to post the notice."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .database import _dialect_insert
from .records import Records
from .schema import followed, leases

_b = sa.bindparam
_F = followed
_KEY = (_F.c.backend == _b("backend_"), _F.c.ticket_id == _b("ticket_id_"))
_ADD = {d: _dialect_insert(d, _F).on_conflict_do_nothing(index_elements=["backend", "ticket_id"])
        for d in ("sqlite", "postgresql")}
_ONE = sa.select(_F).where(*_KEY)
_DUE = (
    sa.select(_F)
    .where(_F.c.stopped == 0, _F.c.next_poll_at <= _b("now"))
    .order_by(_F.c.next_poll_at)
    .limit(_b("limit", type_=sa.Integer))
)
_OF_PERSON = sa.select(_F).where(sa.or_(_F.c.requester_id == _b("user_id_"), _F.c.submitter_id == _b("user_id_")))
_FOLLOWING = sa.select(sa.func.count()).where(_F.c.stopped == 0)
_SEEN = sa.update(_F).where(*_KEY).values(
    seen=_b("seen_"), changed_at=_b("changed_at_"), next_poll_at=_b("next_poll_at_")
)
_PUSH = sa.update(_F).where(*_KEY, _F.c.stopped == 0).values(pushed=_b("pushed_"), next_poll_at=0)
_APPLIED = sa.update(_F).where(*_KEY, _F.c.pushed == _b("pushed_")).values(pushed=None)
_PURGE = sa.delete(_F).where(_F.c.stopped == 1, _F.c.changed_at < _b("cutoff"))
_NEXT_POLL = sa.update(_F).where(*_KEY).values(next_poll_at=_b("next_poll_at_"))
_CARD_DEAD = sa.update(_F).where(*_KEY).values(card_dead=1)
_STOP = sa.update(_F).where(*_KEY).values(stopped=1)
_CLOSED_BY = sa.update(_F).where(*_KEY).values(closed_by=_b("closed_by_"), next_poll_at=0)
_CLAIM_CLOSURE = (
    sa.update(_F).where(*_KEY, _F.c.closures == _b("seen_closures"))
    .values(closures=_F.c.closures + 1, seen=_b("seen_"))
    .returning(_F.c.closures)
)
_UNCLAIM_CLOSURE = (
    sa.update(_F).where(*_KEY, _F.c.closures == _b("claimed")).values(closures=_F.c.closures - 1, seen=_b("seen_"))
)

_L = leases
_ADD_LEASE = {d: _dialect_insert(d, _L).on_conflict_do_nothing(index_elements=["name"]) for d in ("sqlite", "postgresql")}
_TAKE_LEASE = (
    sa.update(_L)
    .where(_L.c.name == _b("name_"), sa.or_(_L.c.owner == _b("owner_"), _L.c.lease_until < _b("now")))
    .values(owner=_b("owner_"), lease_until=_b("until"))
    .returning(_L.c.name)
)
_DROP_LEASE = sa.update(_L).where(_L.c.name == _b("name_"), _L.c.owner == _b("owner_")).values(owner=None, lease_until=0)


@dataclass
class Followed:
    """One followed ticket, as stored."""

    backend: str
    ticket_id: str
    ticket: dict[str, Any]  # the CreatedTicket's fields
    title: str
    submission_id: str | None = None
    requester_id: str | None = None
    submitter_id: str | None = None
    channel_id: str | None = None
    thread_ts: str | None = None
    card_ts: str | None = None
    card: dict[str, Any] | None = None  # the card's own lines and buttons (see bot.slack.cards)
    card_dead: bool = False
    workspace: dict[str, Any] | None = None  # installs by OAuth: whose token edits the card and tells people
    seen: dict[str, Any] | None = None  # the TicketState last seen
    pushed: dict[str, Any] | None = None  # a TicketState a webhook brought, not applied yet
    closures: int = 0
    closed_by: str | None = None
    stopped: bool = False
    next_poll_at: float = 0.0
    changed_at: float = 0.0
    created_at: float = 0.0

    @classmethod
    def _from_row(cls, row: Mapping[str, Any]) -> "Followed":
        data = dict(row)
        for key in ("ticket", "card", "seen", "pushed", "workspace"):
            data[key] = json.loads(data[key]) if data[key] else None
        data["card_dead"], data["stopped"] = bool(data["card_dead"]), bool(data["stopped"])
        return cls(**data)

    @property
    def people(self) -> set[str]:
        """Who may close, reopen and comment, and whose Home tab lists it."""
        return {p for p in (self.requester_id, self.submitter_id) if p}


class Follows(Records):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._add_followed = _ADD[self.dialect]
        self._add_lease = _ADD_LEASE[self.dialect]

    async def _followed(self, stmt: Any, params: Mapping[str, Any]) -> list[Followed]:
        columns = self._prepare(stmt, params).columns
        return [Followed._from_row(dict(zip(columns, row))) for row in await self._fetch(stmt, params)]

    async def follow(self, f: Followed) -> bool:
        """Start following a ticket; False when it is followed already (the first record stays)."""
        now = time.time()
        changed = await self._write(self._add_followed, {
            "backend": f.backend, "ticket_id": f.ticket_id, "ticket": json.dumps(f.ticket), "title": f.title,
            "submission_id": f.submission_id, "requester_id": f.requester_id, "submitter_id": f.submitter_id,
            "channel_id": f.channel_id, "thread_ts": f.thread_ts, "card_ts": f.card_ts,
            "card": json.dumps(f.card) if f.card is not None else None,
            "workspace": json.dumps(f.workspace) if f.workspace is not None else None,
            "seen": json.dumps(f.seen) if f.seen is not None else None,
            "next_poll_at": f.next_poll_at, "changed_at": f.changed_at or now, "created_at": f.created_at or now,
        }, count=True)
        return changed == 1

    async def followed(self, backend: str, ticket_id: str) -> Followed | None:
        found = await self._followed(_ONE, {"backend_": backend, "ticket_id_": ticket_id})
        return found[0] if found else None

    async def due_followed(self, limit: int) -> list[Followed]:
        """Followed tickets whose next look is due, the longest waiting first."""
        return await self._followed(_DUE, {"now": time.time(), "limit": limit})

    async def followed_of(self, user_id: str) -> list[Followed]:
        """The tickets this person asked for or filed that the bot follows (or followed)."""
        return await self._followed(_OF_PERSON, {"user_id_": user_id})

    async def following(self) -> int:
        row = await self._first(_FOLLOWING)
        return int(row[0]) if row else 0

    async def save_seen(self, backend: str, ticket_id: str, seen: dict[str, Any], changed_at: float,
                        next_poll_at: float) -> None:
        await self._write(_SEEN, {"backend_": backend, "ticket_id_": ticket_id, "seen_": json.dumps(seen),
                                  "changed_at_": changed_at, "next_poll_at_": next_poll_at})

    async def push_state(self, backend: str, ticket_id: str, pushed: dict[str, Any]) -> bool:
        """Journal a state a webhook brought: applied by the poller at once (its next round), by
        whichever process polls. False when the ticket is not followed."""
        return await self._write(_PUSH, {"backend_": backend, "ticket_id_": ticket_id,
                                         "pushed_": json.dumps(pushed, sort_keys=True)}, count=True) == 1

    async def pushed_applied(self, backend: str, ticket_id: str, pushed: dict[str, Any]) -> None:
        """Forget a pushed state once applied (not one pushed since)."""
        await self._write(_APPLIED, {"backend_": backend, "ticket_id_": ticket_id,
                                     "pushed_": json.dumps(pushed, sort_keys=True)})

    async def poll_later(self, backend: str, ticket_id: str, at: float) -> None:
        await self._write(_NEXT_POLL, {"backend_": backend, "ticket_id_": ticket_id, "next_poll_at_": at})

    async def card_dead(self, backend: str, ticket_id: str) -> None:
        await self._write(_CARD_DEAD, {"backend_": backend, "ticket_id_": ticket_id})

    async def stop_following(self, backend: str, ticket_id: str) -> None:
        await self._write(_STOP, {"backend_": backend, "ticket_id_": ticket_id})

    async def closed_by(self, backend: str, ticket_id: str, user_id: str | None) -> None:
        """Who closed it from Slack (the notice names them); it is looked at again at once."""
        await self._write(_CLOSED_BY, {"backend_": backend, "ticket_id_": ticket_id, "closed_by_": user_id})

    async def claim_closure(self, backend: str, ticket_id: str, seen_closures: int, seen: dict[str, Any]) -> bool:
        """Take the right to announce the next closure: True for exactly one caller that saw
        `seen_closures`, in any process. The closed state is recorded as seen in the same
        statement, so a process that dies before its notice went out leaves no second one to send."""
        rows = await self._fetch(_CLAIM_CLOSURE, {"backend_": backend, "ticket_id_": ticket_id,
                                                  "seen_closures": seen_closures, "seen_": json.dumps(seen)})
        return bool(rows)

    async def unclaim_closure(self, backend: str, ticket_id: str, claimed: int, seen: dict[str, Any] | None) -> None:
        """The notice could not be sent for a reason that may pass: the state seen before is put
        back, so the closure is seen (and announced) again at the next look."""
        await self._write(_UNCLAIM_CLOSURE, {"backend_": backend, "ticket_id_": ticket_id, "claimed": claimed,
                                             "seen_": json.dumps(seen) if seen is not None else None})

    async def purge_followed(self, cutoff: float) -> int:
        """Forget tickets no longer followed whose last change was before `cutoff` (retention)."""
        return await self._write(_PURGE, {"cutoff": cutoff}, count=True)

    # --- leases ------------------------------------------------------------------------------

    async def take_lease(self, name: str, owner: str, seconds: float) -> bool:
        """Hold (or keep holding) the named lease for `seconds`; False while another holds it."""
        await self._write(self._add_lease, {"name": name, "owner": None, "lease_until": 0})
        now = time.time()
        rows = await self._fetch(_TAKE_LEASE, {"name_": name, "owner_": owner, "now": now, "until": now + seconds})
        return bool(rows)

    async def drop_lease(self, name: str, owner: str) -> None:
        await self._write(_DROP_LEASE, {"name_": name, "owner_": owner})
