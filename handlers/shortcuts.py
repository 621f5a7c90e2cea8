"""The "Create ticket" message shortcut: the ticket modal, prefilled from the message."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.core import Bot
from bot.forms import new_ticket_form

log = logging.getLogger(__name__)
PERMALINK_WAIT = 1.0  # the trigger_id lives 3 s: never wait longer than this for the link


def register(app: AsyncApp, bot: Bot) -> None:
    @app.message_shortcut(views.SHORTCUT_CALLBACK_ID)
    async def create_ticket_shortcut(ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        message = shortcut.get("message") or {}
        channel = shortcut.get("channel") or {}
        channel_id = channel.get("id")
        root = message.get("thread_ts") or message.get("ts") or shortcut.get("message_ts")
        trigger_id = shortcut["trigger_id"]
        if channel_id and root:
            taken, display_id = await bot.tickets.thread_ticket(channel_id, root)
            if taken:
                await client.views_open(trigger_id=trigger_id, view=views.already_linked_modal(display_id))
                return
        permalink = await _permalink(client, channel_id, message.get("ts"))
        text = message.get("text") or ""
        view = await new_ticket_form(
            bot,
            source="shortcut",
            user_id=(shortcut.get("user") or {}).get("id", ""),
            channel_id=channel_id,
            channel_name=channel.get("name"),
            title=views.title_from_message(text),
            description=views.description_from_message(text, permalink),
            thread_ts=root,
            requester_id=message.get("user"),
        )
        await client.views_open(trigger_id=trigger_id, view=view)


async def _permalink(client: AsyncWebClient, channel_id: str | None, ts: str | None) -> str | None:
    if not (channel_id and ts):
        return None
    try:
        resp = await asyncio.wait_for(client.chat_getPermalink(channel=channel_id, message_ts=ts), PERMALINK_WAIT)
        return resp.get("permalink")
    except Exception as exc:  # the modal opens without the link rather than not at all
        log.info("chat.getPermalink failed: %s", exc)
        return None
