"""`/ticket [title]` opens the ticket modal; `/ticket help` explains; `/ticket config` sets up the
channel (see handlers/config.py)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import suggestions, views
from bot.core import Bot
from bot.slack.forms import new_ticket_form

from .common import after_ack, open_view
from .config import open_channel_config

HELP_WORDS = {"help", "-h", "--help", "?"}


def register(app: AsyncApp, bot: Bot) -> None:
    @app.command(bot.settings.slash_command)
    async def ticket_command(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = (command.get("text") or "").strip()
        if text.lower() in HELP_WORDS:
            await ack(text=views.help_text(bot.settings.slash_command), response_type="ephemeral")
            return
        if text.lower() == "config":
            await open_channel_config(bot, ack, command, client)
            return
        await ack()
        user_id, channel_id = command.get("user_id", ""), command.get("channel_id") or None

        async def open_form() -> None:
            view = await new_ticket_form(
                bot,
                source="command",
                user_id=user_id,
                channel_id=channel_id,
                channel_name=command.get("channel_name") or None,
                title=text,
            )
            opened = await open_view(client, command["trigger_id"], view, user_id=user_id, channel_id=channel_id)
            await suggestions.offer(bot, client, opened, user_id=user_id)  # after the form is open

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the ticket form")
