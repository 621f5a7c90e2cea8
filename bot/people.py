"""Slack user id → `Person` (name and e-mail, from `users.info`), cached for a while."""

from __future__ import annotations

import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import Person

# users.info errors that say "this person cannot be found": file the ticket without them.
UNKNOWN_USER_ERRORS = {"user_not_found", "user_not_visible", "users_not_found", "account_inactive"}


class People:
    def __init__(self, slack: AsyncWebClient, *, ttl: float = 600.0) -> None:
        self.slack = slack
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Person | None]] = {}

    async def get(self, user_id: str | None) -> Person | None:
        """The person, or None when Slack does not know them. Other Slack errors propagate."""
        if not user_id:
            return None
        hit = self._cache.get(user_id)
        if hit and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        try:
            resp = await self.slack.users_info(user=user_id)
        except SlackApiError as exc:
            if exc.response.get("error") not in UNKNOWN_USER_ERRORS:
                raise
            person = None
        else:
            user = resp.get("user") or {}
            profile = user.get("profile") or {}
            name = (
                profile.get("real_name")
                or user.get("real_name")
                or profile.get("display_name")
                or user.get("name")
                or user_id
            )
            if user.get("deleted"):
                person = Person(name=f"{name} (deactivated in Slack)")
            else:
                person = Person(name=name, email=profile.get("email") or None, image_url=profile.get("image_72"))
        self._cache[user_id] = (time.monotonic(), person)
        return person
