"""Changes inside an open ticket form that change the form itself (a team → its priorities)."""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.core import Bot
from bot.forms import refreshed_ticket_form

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.action({"block_id": re.compile("^" + re.escape(views.FIELD_BLOCK_PREFIX)), "action_id": views.VALUE})
    async def form_field_changed(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        view = body.get("view") or {}
        if view.get("callback_id") != views.MODAL_CALLBACK_ID or not view.get("id"):
            return
        try:
            await client.views_update(view_id=view["id"], hash=view.get("hash"), view=await refreshed_ticket_form(bot, view))
        except Exception as exc:  # the form stays as it was, and can still be submitted
            log.warning("could not refresh the ticket form %s: %s", view.get("id"), exc)
