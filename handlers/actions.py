"""Changes inside an open ticket form that change the form itself (a team → its priorities and
custom fields), and *Add to this ticket instead* on a suggested ticket."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import suggestions, views
from bot.core import Bot
from bot.slack.forms import refreshed_ticket_form

from .common import after_ack

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.action({"block_id": re.compile("^" + re.escape(views.FIELD_BLOCK_PREFIX)), "action_id": views.VALUE})
    async def form_field_changed(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        view = body.get("view") or {}
        if view.get("callback_id") != views.MODAL_CALLBACK_ID or not view.get("id"):
            return
        user_id = (body.get("user") or {}).get("id") or ""
        try:
            form = await refreshed_ticket_form(bot, view)
            try:
                resp = await client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)
            except Exception as exc:
                # The suggestions may have been added since the person acted: the form is rebuilt
                # from what they typed, so the change applies to the newest version.
                newer = suggestions.latest_hash(view["id"])
                if suggestions.slack_error(exc) != "hash_conflict" or not newer or newer == view.get("hash"):
                    raise
                resp = await client.views_update(view_id=view["id"], hash=newer, view=form)
        except Exception as exc:  # the form stays as it was, and can still be submitted
            log.warning("could not refresh the ticket form %s: %s", view.get("id"), suggestions.slack_error(exc))
            return
        # Another team: its own open tickets (a look-up under way runs again on this version).
        await suggestions.offer(bot, client, resp.get("view"), user_id=user_id)

    @app.action(views.ADD_TO_TICKET_ACTION)
    async def add_to_ticket(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id")

        async def add() -> None:
            await suggestions.add_to_ticket(bot, client, body)

        await after_ack(add, client, user_id=user_id, channel_id=None, what="add to that ticket")
