"""*Edit details*: the button under the reply to a ticket made from a conversation (Serval) opens
a form to change its title, priority or due date (the type is fixed at creation).

The button acks at once and opens a "Loading…" form with its trigger (a trigger_id works for 3
seconds): who may edit and the ticket's current details are read after that, and the form is
filled in with `views.update`. A submission is acknowledged with "Saving…"; the ticket system is
asked afterwards, with only what the person changed from what the form showed (kept in the form's
private_metadata), and the form shows the outcome."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.core import Bot
from bot.slack.edits import TITLE, edit_form, save_edit

from .common import after_ack, open_view, slack_error, tell

log = logging.getLogger(__name__)
EDIT_ACTION = views.EDIT_TICKET_ACTION  # the button the ticket service posts (value: the submission id)


def _selected(state: dict[str, Any], block_id: str) -> dict[str, Any]:
    return (state.get(block_id) or {}).get(views.VALUE) or {}


def register(app: AsyncApp, bot: Bot) -> None:
    @app.action(EDIT_ACTION)
    async def edit_clicked(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user_id = (body.get("user") or {}).get("id", "")
        channel_id = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        sub_id = action.get("value") or ""

        async def open_form() -> None:
            loading = views.notice_modal(":hourglass_flowing_sand: Loading the ticket…", title=TITLE)
            opened = await open_view(client, body["trigger_id"], loading, user_id=user_id, channel_id=channel_id,
                                     what="the ticket's details")
            if not opened or not opened.get("id"):
                return
            await client.views_update(view_id=opened["id"], hash=opened.get("hash"),
                                      view=await edit_form(bot, sub_id, user_id, channel_id))

        await after_ack(open_form, client, user_id=user_id, channel_id=channel_id, what="open the ticket's details")

    @app.view_submission(views.EDIT_CALLBACK_ID)
    async def edit_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            sub_id, display_id, shown = str(meta["sub"]), str(meta["display_id"]), meta["shown"]
            if not isinstance(shown, dict):  # what the form showed: only changes to it are sent
                raise TypeError("shown")
        except (ValueError, KeyError, TypeError):
            await ack(response_action="update", view=views.notice_modal(
                "This form is out of date; use *Edit details* again.", title=TITLE))
            return
        channel_id = meta.get("channel_id")
        state = (view.get("state") or {}).get("values") or {}
        errors: dict[str, str] = {}
        title = " ".join((_selected(state, views.EDIT_TITLE_BLOCK).get("value") or "").split())
        if not title:
            errors[views.EDIT_TITLE_BLOCK] = "Please enter a title."
        priority_id = (_selected(state, views.EDIT_PRIORITY_BLOCK).get("selected_option") or {}).get("value") or None
        due_date = None
        picked = _selected(state, views.EDIT_DUE_BLOCK).get("selected_date")
        if picked:
            try:
                due_date = dt.date.fromisoformat(picked)
            except ValueError:
                errors[views.EDIT_DUE_BLOCK] = "Please pick a date."
            else:  # an overdue ticket's date, left as it was, is no error
                if due_date < dt.date.today() and picked != shown.get("due_date"):
                    errors[views.EDIT_DUE_BLOCK] = "The due date cannot be in the past."
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack(response_action="update", view=views.notice_modal(":hourglass_flowing_sand: Saving…", title=TITLE))

        async def save() -> None:
            result, text = await save_edit(bot, sub_id, display_id, user_id, shown=shown, title=title,
                                           priority_id=priority_id, due_date=due_date)
            try:
                await client.views_update(view_id=view["id"], view=result)
            except Exception as exc:  # the form was closed meanwhile: tell them where they are
                log.info("views.update of the edit form failed: %s", slack_error(exc))
                await tell(client, user_id, channel_id, text)

        await after_ack(save, client, user_id=user_id, channel_id=channel_id, what="change the ticket")
