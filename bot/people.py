"""Slack user id → `Person` (name, e-mail, picture) and admin flags, from `users.info`.

Profiles are cached in the database and fetched again after `refresh` seconds; when Slack cannot be
asked, a stale profile is better than none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import Person

from .storage import Storage

# users.info errors that say "this person cannot be found": file the ticket without them.
UNKNOWN_USER_ERRORS = {"user_not_found", "user_not_visible", "users_not_found", "account_inactive"}


@dataclass(frozen=True)
class Profile:
    person: Person
    is_admin: bool = False  # workspace admin or owner
    deleted: bool = False


def _profile(data: dict[str, Any]) -> Profile:
    return Profile(
        person=Person(name=data["name"], email=data.get("email"), image_url=data.get("image")),
        is_admin=bool(data.get("is_admin")),
        deleted=bool(data.get("deleted")),
    )


class People:
    def __init__(self, slack: AsyncWebClient, storage: Storage, *, refresh: float = 3600.0) -> None:
        self.slack = slack
        self.storage = storage
        self.refresh = refresh

    async def profile(self, user_id: str | None) -> Profile | None:
        """The person's profile, or None when Slack does not know them. Other errors propagate."""
        if not user_id:
            return None
        cached = await self.storage.person(user_id)
        if cached and time.time() - cached[1] < self.refresh:
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
        name = p.get("real_name") or user.get("real_name") or p.get("display_name") or user.get("name") or user_id
        data = {
            "name": f"{name} (deactivated in Slack)" if user.get("deleted") else name,
            "email": None if user.get("deleted") else (p.get("email") or None),
            "image": p.get("image_72"),
            "is_admin": bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner")),
            "deleted": bool(user.get("deleted")),
        }
        await self.storage.save_person(user_id, data)
        return _profile(data)

    async def get(self, user_id: str | None) -> Person | None:
        profile = await self.profile(user_id)
        return profile.person if profile else None
