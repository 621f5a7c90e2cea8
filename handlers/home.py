"""The App Home tab: "My tickets", with a button for a new one."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.core import Bot
from bot.slack.forms import new_ticket_form

from .common import after_ack, open_view

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_home_opened")  # events are acknowledged by Bolt before this runs
    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        try:
            tickets = await bot.tickets.recent_tickets(event["user"])
            await client.views_publish(user_id=event["user"], view=views.home_view(tickets))
        except Exception:  # nobody is waiting for an answer; the next visit tries again
            log.exception("could not publish the Home tab of %s", event["user"])

    @app.action(views.HOME_NEW_TICKET)
    async def home_new_ticket(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id", "")

        async def open_form() -> None:
            view = await new_ticket_form(bot, source="home", user_id=user_id, channel_id=None)
            await open_view(client, body["trigger_id"], view, user_id=user_id, channel_id=None)

        await after_ack(open_form, client, user_id=user_id, channel_id=None, what="open the ticket form")
