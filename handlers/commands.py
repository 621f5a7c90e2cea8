"""`/ticket [title]` opens the ticket modal; `/ticket help` explains the bot."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.core import Bot

log = logging.getLogger(__name__)
HELP_WORDS = {"help", "-h", "--help", "?"}


def register(app: AsyncApp, bot: Bot) -> None:
    @app.command(bot.settings.slash_command)
    async def ticket_command(ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
        text = (command.get("text") or "").strip()
        if text.lower() in HELP_WORDS:
            await ack(text=views.help_text(bot.settings.slash_command), response_type="ephemeral")
            return
        await ack()
        origin = views.Origin(
            source="command",
            channel_id=command.get("channel_id") or None,
            channel_name=command.get("channel_name") or None,
            backend=bot.tickets.default_backend,
        )
        backend = bot.tickets.backend(origin.backend)
        view = views.ticket_modal(
            origin,
            await backend.form_fields(),
            title=text,
            share_default=bot.settings.share_in_channel_default,
            title_max_length=backend.title_max_length,
            description_max_length=backend.description_max_length,
        )
        await client.views_open(trigger_id=command["trigger_id"], view=view)
