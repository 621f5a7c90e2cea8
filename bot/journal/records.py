"""The small tables beside the journal: Slack profiles (`people`), identities in the ticket
systems, channel routes, named state, and the Slack event ids already handled."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa

from .database import Database, _dialect_insert
from .schema import identities, people, routes, slack_events, state

_b = sa.bindparam
_PERSON = sa.select(people.c.profile, people.c.fetched_at).where(people.c.slack_user_id == _b("user"))
_IDENTITY = sa.select(identities.c.user_id).where(
    identities.c.backend == _b("backend_"),
    identities.c.slack_user_id == _b("user"),
    identities.c.email == _b("email_"),
    identities.c.resolved_at > _b("since"),
)
_STATE = sa.select(state.c.value).where(state.c.name == _b("name_"))
_ROUTE = sa.select(routes.c.route).where(routes.c.channel_id == _b("channel"))
_ROUTES_VERSION = sa.select(sa.func.count(), sa.func.max(routes.c.updated_at))


def _upsert(dialect: str, table: sa.Table) -> Any:
    """INSERT, or replace the row with the same primary key (VALUES from the parameters)."""
    stmt = _dialect_insert(dialect, table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )


_UPSERT = {d: {t.name: _upsert(d, t) for t in (people, identities, state, routes)} for d in ("sqlite", "postgresql")}
_ADD_EVENT = {
    d: _dialect_insert(d, slack_events).on_conflict_do_nothing(index_elements=["event_id"])
    for d in ("sqlite", "postgresql")
}


class Records(Database):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._upsert = _UPSERT[self.dialect]
        self._add_event = _ADD_EVENT[self.dialect]

    async def routes_version(self) -> tuple[int, float | None]:
        """Changes when any channel route is saved, by any process: (routes, latest save). Cheap
        enough to poll every second or two so every replica applies a route saved on another."""
        row = await self._first(_ROUTES_VERSION)
        return (row[0], row[1]) if row else (0, None)


    async def first_delivery(self, event_id: str, submission_id: str | None = None) -> bool:
        """Record a Slack event id; False when it was recorded before, by any process (the
        primary key decides, so two replicas receiving the same event agree)."""
        changed = await self._write(
            self._add_event,
            {"event_id": event_id, "received_at": time.time(), "submission_id": submission_id},
            count=True,
        )
        return changed == 1


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
