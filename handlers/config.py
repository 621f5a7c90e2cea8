"""`/ticket config`: admins choose where tickets from a channel go, and the form's defaults."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot import views
from bot.core import Bot
from bot.drafts import parse_form
from bot.routing import RouteEntry

CONFIG_FIELDS = {"team_id", "type"}
TYPE_NAMES = {"TICKET_TYPE_REQUEST": "request", "TICKET_TYPE_INCIDENT": "incident"}


def refusal(bot: Bot) -> str:
    return (
        "Only workspace admins and owners"
        + (" and the people listed in TICKET_ADMINS" if bot.settings.admin_ids else "")
        + " can change where tickets from this channel go. Ask one of them."
    )


async def open_channel_config(bot: Bot, ack: AsyncAck, command: dict[str, Any], client: AsyncWebClient) -> None:
    channel_id = command.get("channel_id") or ""
    if not channel_id or channel_id[0] not in "CG":
        await ack(text="Run `/ticket config` in the channel you want to set up.", response_type="ephemeral")
        return
    if not await bot.may_configure(command.get("user_id", "")):
        await ack(text=refusal(bot), response_type="ephemeral")
        return
    await ack()
    route = await bot.router.route(channel_id)
    backend = bot.tickets.backend(route.backend)
    fields = [f for f in await backend.form_fields_for(route.values) if f.id in CONFIG_FIELDS]
    view = views.config_modal(
        channel_id,
        [(name, b.display_name) for name, b in bot.backends.items()],
        route.backend,
        fields,
        values=route.values,
        share=route.share,
    )
    await client.views_open(trigger_id=command["trigger_id"], view=view)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.view_submission(views.CONFIG_CALLBACK_ID)
    async def channel_config_saved(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        try:
            channel_id = json.loads(view.get("private_metadata") or "{}")["channel_id"]
        except (ValueError, KeyError, TypeError):
            await ack(response_action="update", view=views.notice_modal("This form is out of date; run `/ticket config` again.", title="Channel tickets"))
            return
        if not await bot.may_configure(user_id):
            await ack(response_action="update", view=views.notice_modal(refusal(bot), title="Channel tickets"))
            return
        state = (view.get("state") or {}).get("values") or {}
        chosen = ((state.get(views.BACKEND_BLOCK) or {}).get(views.VALUE) or {}).get("selected_option") or {}
        route = await bot.router.route(channel_id)
        backend_name = chosen.get("value") if chosen.get("value") in bot.backends else route.backend
        backend = bot.tickets.backend(backend_name)
        fields = [f for f in await backend.form_fields_for({}) if f.id in CONFIG_FIELDS]
        form = parse_form({"values": state}, fields, title_max_length=1, description_max_length=1,
                          block_ids={views.FIELD_BLOCK_PREFIX + f.id for f in fields})
        form.errors.pop(views.TITLE_BLOCK, None)
        if form.errors:
            await ack(response_action="errors", errors=form.errors)
            return
        share_options = ((state.get(views.SHARE_BLOCK) or {}).get(views.VALUE) or {}).get("selected_options") or []
        entry = RouteEntry(
            backend=backend_name,
            team=form.values.get("team_id"),
            type=TYPE_NAMES.get(form.values.get("type", "")),
            share=any(o.get("value") == "share" for o in share_options if isinstance(o, dict)),
        )
        await bot.router.save(channel_id, entry, user_id)
        summary = f"Saved. Tickets from <#{channel_id}> go to *{backend.display_name}*"
        if entry.team:
            summary += f", team `{entry.team}`"
        if entry.type:
            summary += f", as {entry.type}s by default"
        summary += "; they are " + ("shared in the channel" if entry.share else "not shared") + " unless the person chooses otherwise."
        await ack(response_action="update", view=views.notice_modal(summary, title="Channel tickets"))
