"""One bot for several workspaces: the OAuth installs (slack_sdk's SQLAlchemy stores on the bot's own
database, tables made by migration 0005), the workspace a piece of work is for, and the Slack client
that speaks with that workspace's token.

The workspace travels with the work rather than through every call: a request sets it (server/bolt.py,
from what Slack sent), the journal records it with each submission and the worker sets it again
before a step runs (`Workspace.of` / `Workspace.enter`), so the steps, People and the poller keep
using one client (`WorkspaceClient`) whose calls carry the token of the workspace at hand. With a
single SLACK_BOT_TOKEN none of this applies: the client uses that token, as before."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import Any

from slack_sdk.oauth.installation_store.models.bot import Bot as InstalledBot
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore, SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import AsyncSQLAlchemyOAuthStateStore
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

# What an install asks for unless SLACK_SCOPES says otherwise: the manifest's bot scopes (tests/test_oauth.py
# checks they are the same).
BOT_SCOPES = ("commands", "chat:write", "users:read", "users:read.email", "reactions:read", "app_mentions:read",
              "channels:history", "groups:history", "im:history", "channels:read", "groups:read", "links:read", "links:write")
STATE_SECONDS = 600  # an install started at /slack/install must come back within this time


@dataclass(frozen=True)
class Workspace:
    """Where a request came from, as Slack names it: the workspace, its Enterprise Grid org, and
    whether the app is installed for the whole org (then the org's token serves every workspace)."""

    team_id: str | None = None
    enterprise_id: str | None = None
    is_enterprise_install: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: Any) -> "Workspace | None":
        """From what the journal recorded (None: recorded before installs by OAuth, or by a
        single-workspace bot)."""
        if not isinstance(data, dict):
            return None
        return cls(data.get("team_id"), data.get("enterprise_id"), bool(data.get("is_enterprise_install")))

    def __str__(self) -> str:
        if self.is_enterprise_install:
            return f"org {self.enterprise_id}"
        return f"workspace {self.team_id}" + (f" (org {self.enterprise_id})" if self.enterprise_id else "")

    def enter(self) -> None:
        """This task (and the tasks it starts) now works for this workspace."""
        _current.set(self)

    @staticmethod
    def use(workspace: "Workspace | None") -> None:
        """This task now works for `workspace` (None: for none; a loop over several workspaces' work)."""
        _current.set(workspace)

    @staticmethod
    def current() -> "Workspace | None":
        return _current.get()


_current: contextvars.ContextVar[Workspace | None] = contextvars.ContextVar("slack_workspace", default=None)


class NotInstalled(Exception):
    """The app is not (or no longer) installed where this work is for: uninstalled, or its tokens revoked."""

    def __init__(self, workspace: Workspace | None) -> None:
        where = str(workspace) if workspace else "an unknown workspace"
        super().__init__(f"the app is not installed in {where} (uninstalled, or its tokens were revoked)")
        self.workspace = workspace


class Installations:
    """The installs, on the bot's database: slack_sdk's stores for Bolt's OAuth flow, and the bot token
    of a workspace for everything else, kept in memory briefly (a replica sees another's uninstall
    within `cache_seconds`, its own at once; an install, anywhere, at once)."""

    def __init__(self, engine: AsyncEngine, client_id: str, *, scopes: str = "", cache_seconds: float = 30.0) -> None:
        self.scopes = tuple(s.strip() for s in scopes.split(",") if s.strip())  # SLACK_SCOPES; empty: BOT_SCOPES
        self.store = AsyncSQLAlchemyInstallationStore(
            client_id=client_id, engine=engine, bots_table_name="slack_bots",
            installations_table_name="slack_installations", logger=log,
        )
        self.states = AsyncSQLAlchemyOAuthStateStore(
            expiration_seconds=STATE_SECONDS, engine=engine, logger=log, table_name="slack_oauth_states",
        )
        self.cache_seconds = cache_seconds
        # Token rotation (an install whose token expires): renewed this long before it does, one
        # replica at a time (`exclusive`: the database's lock), through slack_sdk's rotator.
        self.rotator: AsyncTokenRotator | None = None
        self.exclusive: Callable[[str], AbstractAsyncContextManager[None]] | None = None
        self.rotate_before_seconds = 7200.0
        self._cache: dict[tuple[str | None, str | None], tuple[float, InstalledBot | None]] = {}

    @staticmethod
    def _key(w: Workspace) -> tuple[str | None, str | None]:
        # An org-wide install is found by its org alone, whichever of its workspaces asks.
        return (w.enterprise_id, None if w.is_enterprise_install else w.team_id)

    async def bot(self, w: Workspace) -> InstalledBot | None:
        """The installed bot serving this workspace (or its org), None if there is none."""
        key = self._key(w)
        cached = self._cache.get(key)
        if cached and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        found = await self.store.async_find_bot(
            enterprise_id=w.enterprise_id, team_id=key[1], is_enterprise_install=w.is_enterprise_install
        )
        if found is None and w.enterprise_id and not w.is_enterprise_install:
            # A workspace of an org where the app is installed org-wide: Slack may say either.
            found = await self.store.async_find_bot(enterprise_id=w.enterprise_id, team_id=None, is_enterprise_install=True)
        if found is None:  # not kept: an install made a moment later (here or elsewhere) serves at once
            return None
        self._cache[key] = (time.monotonic(), found)
        if self._expiring(found):
            found = await self._rotate(w, found)
        return found

    def _expiring(self, found: InstalledBot) -> bool:
        return bool(self.rotator and found.bot_refresh_token and found.bot_token_expires_at
                    and found.bot_token_expires_at <= time.time() + self.rotate_before_seconds)

    async def _rotate(self, w: Workspace, found: InstalledBot) -> InstalledBot:
        """A new bot token for one about to expire (`oauth.v2.access`, grant_type=refresh_token), saved
        for every replica. A refresh token works once: replicas take turns, and one that finds the token
        renewed by another meanwhile uses that one."""
        assert self.rotator is not None
        key = self._key(w)
        lock = self.exclusive(f"slack.rotate.{key[0]}.{key[1]}") if self.exclusive else contextlib.nullcontext()
        async with lock:
            latest = await self.store.async_find_bot(enterprise_id=key[0], team_id=key[1],
                                                     is_enterprise_install=found.is_enterprise_install)
            if latest is None:
                self._cache.pop(key, None)
                return found
            if not self._expiring(latest):
                renewed = latest
            else:
                renewed = await self.rotator.perform_bot_token_rotation(
                    bot=latest, minutes_before_expiration=int(self.rotate_before_seconds // 60)) or latest
                if renewed is not latest:
                    await self.store.async_save_bot(renewed)
                    log.info("the bot token of %s was renewed (token rotation)", w)
        self._cache[key] = (time.monotonic(), renewed)
        return renewed

    async def token(self, w: Workspace | None) -> str:
        """The bot token for this workspace. Raises NotInstalled."""
        found = await self.bot(w) if w else None
        if found is None or not found.bot_token:
            raise NotInstalled(w)
        return found.bot_token

    async def forget(self, w: Workspace, *, everything: bool = True) -> None:
        """Uninstalled (`everything`: app_uninstalled), or its bot token revoked (tokens_revoked)."""
        key = self._key(w)
        if everything:
            await self.store.async_delete_all(enterprise_id=w.enterprise_id, team_id=key[1])
        else:
            await self.store.async_delete_bot(enterprise_id=w.enterprise_id, team_id=key[1])
        self._cache.clear()  # also its org's workspaces, found through the org-wide install
        log.info("the app was removed from %s: its tokens are forgotten", w)

    async def all(self) -> list[InstalledBot]:
        """Every installed bot, newest install first (`python app.py check`)."""
        import sqlalchemy as sa

        t = self.store.bots
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(sa.select(t).where(t.c.client_id == self.store.client_id)
                                       .order_by(t.c.installed_at.desc()))).mappings().all()
        seen, out = set(), []
        for row in rows:
            if (row["enterprise_id"], row["team_id"]) not in seen:
                seen.add((row["enterprise_id"], row["team_id"]))
                out.append(SQLAlchemyInstallationStore.build_bot_entity(row))
        return out


class WorkspaceClient(AsyncWebClient):
    """The bot's Web API client. With installs by OAuth, each call carries the bot token of the
    workspace the current task works for (`Workspace.current`); a call made for no workspace, or for
    one where the app is not installed, raises NotInstalled. With one SLACK_BOT_TOKEN: that token."""

    installations: Installations | None = None

    async def api_call(self, api_method: str, *, params: dict | None = None, json: dict | None = None,  # type: ignore[override]
                       **kwargs: Any) -> Any:
        if self.installations is not None and api_method != "oauth.v2.access":
            explicit = (params or {}).get("token") or (json or {}).get("token")
            if not explicit:
                token = await self.installations.token(Workspace.current())
                if json is not None:
                    json = {**json, "token": token}
                else:
                    params = {**(params or {}), "token": token}
        return await super().api_call(api_method, params=params, json=json, **kwargs)
