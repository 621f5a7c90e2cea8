"""Slack user id → `Person` (name, e-mail, picture) and admin flags, from `users.info`; and the
workspace the bot is installed in, from `auth.test`.

Profiles are cached in the database and fetched again after `refresh` seconds; when Slack cannot be
asked, a stale profile is better than none.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import Person

from ..installations import Workspace as Installed
from ..journal.storage import Storage

log = logging.getLogger(__name__)

# users.info errors that say "this person cannot be found": file the ticket without them.
UNKNOWN_USER_ERRORS = {"user_not_found", "user_not_visible", "users_not_found", "account_inactive"}
WORKSPACE_RETRY = 5.0  # seconds between two background auth.test attempts after a failure


@dataclass(frozen=True)
class Profile:
    person: Person
    is_admin: bool = False  # admin or owner of the workspace in `team_id`
    deleted: bool = False
    team_id: str | None = None  # the person's own workspace (another one for Slack Connect guests)
    enterprise_id: str | None = None  # Enterprise Grid org, if any
    is_org_admin: bool = False  # admin or owner of that Grid org
    is_bot: bool = False  # an app's bot user, not a person


@dataclass(frozen=True)
class Workspace:
    """Where the bot is installed, as `auth.test` tells."""

    team_id: str
    url: str  # https://<domain>.slack.com/
    enterprise_id: str | None = None
    bot_user_id: str | None = None
    bot_id: str | None = None

    def permalink(self, channel_id: str, ts: str, thread_ts: str | None = None) -> str:
        """A message's link, as chat.getPermalink builds it, without asking Slack."""
        link = f"{self.url.rstrip('/')}/archives/{channel_id}/p{ts.replace('.', '')}"
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel_id}"
        return link

    def admin_here(self, profile: Profile | None) -> bool:
        """Is this person an admin or owner here: of this workspace, or of the Enterprise Grid org
        it belongs to? An admin of another workspace (a Slack Connect guest) is not."""
        if profile is None or profile.deleted:
            return False
        if profile.is_admin and profile.team_id and profile.team_id == self.team_id:
            return True
        return bool(self.enterprise_id) and profile.enterprise_id == self.enterprise_id and profile.is_org_admin


def _profile(data: dict[str, Any]) -> Profile:
    return Profile(
        person=Person(name=data["name"], email=data.get("email"), image_url=data.get("image")),
        is_admin=bool(data.get("is_admin")),
        deleted=bool(data.get("deleted")),
        team_id=data.get("team_id"),
        enterprise_id=data.get("enterprise_id"),
        is_org_admin=bool(data.get("is_org_admin")),
        is_bot=bool(data.get("is_bot")),
    )


class People:
    def __init__(self, slack: AsyncWebClient, storage: Storage, *, refresh: float = 3600.0) -> None:
        self.slack = slack
        self.storage = storage
        self.refresh = refresh
        # Per installed workspace (installs by OAuth: `Installed.current()`; one SLACK_BOT_TOKEN: None).
        self._workspaces: dict[Installed | None, Workspace] = {}
        self._workspace_tasks: dict[Installed | None, asyncio.Task[Workspace]] = {}
        self._workspace_failed_at = -1e18

    # --- the workspace ------------------------------------------------------------------------

    @property
    def known_workspace(self) -> Workspace | None:
        """The workspace if `auth.test` has answered already; never calls Slack."""
        return self._workspaces.get(Installed.current())

    async def workspace(self) -> Workspace:
        """The bot's workspace (with installs by OAuth: the one at hand): `auth.test`, asked once per
        process (one call at a time; a failed call is asked again next time)."""
        key = Installed.current()
        if (found := self._workspaces.get(key)) is not None:
            return found
        task = self._workspace_tasks.get(key)
        if task is None or task.done():
            task = self._workspace_tasks[key] = asyncio.create_task(self._auth_test(key), name="auth.test")
        return await asyncio.shield(task)

    def warm_workspace(self) -> None:
        """Ask `auth.test` in the background, so that no request waits for it (after a failure, not
        again for WORKSPACE_RETRY seconds)."""
        task = self._workspace_tasks.get(Installed.current())
        if self.known_workspace is not None or (task and not task.done()):
            return
        if time.monotonic() - self._workspace_failed_at < WORKSPACE_RETRY:
            return

        async def warm() -> None:
            try:
                await self.workspace()
            except Exception as exc:  # asked again when next needed
                self._workspace_failed_at = time.monotonic()
                log.warning("auth.test failed: %s", exc)

        asyncio.get_running_loop().create_task(warm(), name="auth.test warm-up")

    async def _auth_test(self, key: Installed | None) -> Workspace:
        resp = await self.slack.auth_test()
        self._workspaces[key] = Workspace(
            # an org-wide install's token names no workspace: the one at hand is the request's
            team_id=resp.get("team_id") or (key.team_id if key else None) or "",
            url=resp.get("url") or "",
            enterprise_id=resp.get("enterprise_id") or None,
            bot_user_id=resp.get("user_id"),
            bot_id=resp.get("bot_id"),
        )
        return self._workspaces[key]

    # --- people ---------------------------------------------------------------------------------

    async def profile(self, user_id: str | None) -> Profile | None:
        """The person's profile, or None when Slack does not know them. Other errors propagate."""
        if not user_id:
            return None
        cached = await self.storage.person(user_id)
        # A profile cached before the bot recorded people's workspaces (or bot users) is fetched again.
        fresh = (cached and (cached[0] is None or ("team_id" in cached[0] and "is_bot" in cached[0]))
                 and time.time() - cached[1] < self.refresh)
        if cached and fresh:
            return _profile(cached[0]) if cached[0] else None
        try:
            resp = await self.slack.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") in UNKNOWN_USER_ERRORS:
                await self.storage.save_person(user_id, None)
                return None
            if cached and cached[0]:
                return _profile(cached[0])
            raise
        except Exception:
            if cached and cached[0]:
                return _profile(cached[0])
            raise
        user = resp.get("user") or {}
        p = user.get("profile") or {}
        grid = user.get("enterprise_user") or {}
        name = p.get("real_name") or user.get("real_name") or p.get("display_name") or user.get("name") or user_id
        data = {
            "name": f"{name} (deactivated in Slack)" if user.get("deleted") else name,
            "email": None if user.get("deleted") else (p.get("email") or None),
            "image": p.get("image_72"),
            "is_admin": bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")),
            "deleted": bool(user.get("deleted")),
            "team_id": user.get("team_id") or p.get("team"),
            "enterprise_id": grid.get("enterprise_id"),
            "is_org_admin": bool(grid.get("is_admin") or grid.get("is_owner")),
            "is_bot": bool(user.get("is_bot")),
        }
        await self.storage.save_person(user_id, data)
        return _profile(data)

    async def get(self, user_id: str | None) -> Person | None:
        profile = await self.profile(user_id)
        return profile.person if profile else None
