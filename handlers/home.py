"""The App Home tab: "My tickets", with a button for a new one."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.core import Bot
from bot.forms import new_ticket_form


def register(app: AsyncApp, bot: Bot) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        tickets = await bot.tickets.recent_tickets(event["user"])
        await client.views_publish(user_id=event["user"], view=views.home_view(tickets))

    @app.action(views.HOME_NEW_TICKET)
    async def home_new_ticket(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id", "")
        view = await new_ticket_form(bot, source="home", user_id=user_id, channel_id=None)
        await client.views_open(trigger_id=body["trigger_id"], view=view)
