"""`/ticket config`: admins choose where tickets from a channel go, and the form's defaults.

Both listeners acknowledge before asking Slack whether the person is an admin: the form opens (or
the refusal comes) after the ack, and a saved form shows "Saving…" until the check and the save
are done."""

from __future__ import annotations

import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.core import Bot
from bot.slack.drafts import parse_form
from bot.slack.forms import CONFIG_FIELDS, channel_config_form
from bot.routing import INTAKE_VALUES, RouteEntry, emoji_name

from .common import after_ack, open_view, slack_error, tell

log = logging.getLogger(__name__)
TYPE_NAMES = {"TICKET_TYPE_REQUEST": "request", "TICKET_TYPE_INCIDENT": "incident"}
TITLE = "Channel tickets"


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
    await ack()  # first: the admin check asks Slack, which may be slow or rate-limited
    user_id = command.get("user_id", "")

    async def open_config() -> None:
        if not await bot.may_configure(user_id):
            await tell(client, user_id, channel_id, refusal(bot))
            return
        await open_view(client, command["trigger_id"], await channel_config_form(bot, channel_id),
                        user_id=user_id, channel_id=channel_id, what="the channel settings")

    await after_ack(open_config, client, user_id=user_id, channel_id=channel_id, what="open the channel settings")


async def bot_is_member(client: AsyncWebClient, channel_id: str) -> bool:
    """Is the bot in this channel (`conversations.info`'s `is_member`)? A private channel it is not
    in is `channel_not_found` to it. In doubt (Slack failed), yes: no false warning."""
    try:
        resp = await client.conversations_info(channel=channel_id)
    except Exception as exc:
        if slack_error(exc) == "channel_not_found":
            return False
        log.info("conversations.info %s failed: %s", channel_id, slack_error(exc))
        return True
    return bool((resp.get("channel") or {}).get("is_member", True))


def register(app: AsyncApp, bot: Bot) -> None:
    @app.view_submission(views.CONFIG_CALLBACK_ID)
    async def channel_config_saved(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        try:
            channel_id = json.loads(view.get("private_metadata") or "{}")["channel_id"]
        except (ValueError, KeyError, TypeError):
            await ack(response_action="update", view=views.notice_modal("This form is out of date; run `/ticket config` again.", title=TITLE))
            return
        state = (view.get("state") or {}).get("values") or {}
        chosen = ((state.get(views.BACKEND_BLOCK) or {}).get(views.VALUE) or {}).get("selected_option") or {}
        route = await bot.router.route(channel_id)
        backend_name = chosen.get("value") if chosen.get("value") in bot.backends else route.backend
        backend = bot.tickets.backend(backend_name)
        try:  # from memory: the form was built from the same fields
            fields = [f for f in await backend.form_fields_for({}) if f.id in CONFIG_FIELDS]
        except Exception as exc:
            log.warning("cannot read the channel settings form: %s", exc)
            await ack(response_action="update", view=views.notice_modal(
                f"{views.escape(backend.display_name)} did not send the form's fields; nothing was saved. "
                "Please run `/ticket config` again in a minute.", title=TITLE))
            return
        form = parse_form({"values": state}, fields, title_max_length=1, description_max_length=1,
                          block_ids={views.FIELD_BLOCK_PREFIX + f.id for f in fields})
        form.errors.pop(views.TITLE_BLOCK, None)
        intake = ((state.get(views.INTAKE_BLOCK) or {}).get(views.VALUE) or {}).get("selected_option") or {}
        intake_value = intake.get("value") if intake.get("value") in INTAKE_VALUES else None
        typed_emoji = (((state.get(views.EMOJI_BLOCK) or {}).get(views.VALUE) or {}).get("value") or "").strip()
        emoji = None
        if typed_emoji:
            try:
                emoji = emoji_name(typed_emoji)
            except ValueError:
                form.errors[views.EMOJI_BLOCK] = "An emoji's name, like ticket or :ticket: (no spaces)."
        if form.errors:
            await ack(response_action="errors", errors=form.errors)
            return
        await ack(response_action="update", view=views.notice_modal(":hourglass_flowing_sand: Saving…", title=TITLE))
        share_options = ((state.get(views.SHARE_BLOCK) or {}).get(views.VALUE) or {}).get("selected_options") or []
        entry = RouteEntry(
            backend=backend_name,
            team=form.values.get("team_id"),
            type=TYPE_NAMES.get(form.values.get("type", "")),
            share=any(o.get("value") == "share" for o in share_options if isinstance(o, dict)),
            intake=intake_value,
            reaction_emoji=emoji,
        )

        async def save() -> None:
            if not await bot.may_configure(user_id):
                summary = refusal(bot)
            else:
                await bot.router.save(channel_id, entry, user_id)
                summary = f"Saved. Tickets from <#{channel_id}> go to *{views.escape(backend.display_name)}*"
                if entry.team:
                    summary += f", team `{views.escape(entry.team)}`"
                if entry.type:
                    summary += f", as {entry.type}s by default"
                summary += "; they are " + ("shared in the channel" if entry.share else "not shared") + " unless the person chooses otherwise."
                if entry.intake == "button":
                    summary += "\nEach new message here gets a *Create ticket* button."
                elif entry.intake == "auto":
                    summary += "\nEach new message here becomes a ticket."
                if entry.reaction_emoji:
                    summary += f"\nA :{entry.reaction_emoji}: reaction files a message as a ticket."
                if entry.intake in ("button", "auto") and not await bot_is_member(client, channel_id):
                    summary += "\n" + views.not_member_warning(channel_id)
            try:
                await client.views_update(view_id=view["id"], view=views.notice_modal(summary, title=TITLE))
            except Exception as exc:  # the form was closed meanwhile: tell them in the channel
                log.info("views.update of the channel settings failed: %s", slack_error(exc))
                await tell(client, user_id, channel_id, summary)

        await after_ack(save, client, user_id=user_id, channel_id=channel_id, what="save the channel settings")
