"""Submitting the ticket modal: inline errors, or journal the submission and show progress."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import views
from bot.core import Bot
from bot.drafts import parse_form
from bot.storage import ThreadTaken

log = logging.getLogger(__name__)


def register(app: AsyncApp, bot: Bot) -> None:
    @app.view_submission(views.MODAL_CALLBACK_ID)
    async def ticket_modal_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        origin = views.Origin.load(view.get("private_metadata"))
        backend = bot.tickets.backend(origin.backend)
        form = parse_form(
            view.get("state"),
            await backend.form_fields(),
            title_max_length=backend.title_max_length,
            description_max_length=backend.description_max_length,
            block_ids={b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)},
        )
        if form.errors:
            await ack(response_action="errors", errors=form.errors)
            return
        user_id = (body.get("user") or {}).get("id")
        view_id = view.get("id")
        if not user_id:
            await ack(response_action="errors", errors={views.TITLE_BLOCK: "Slack did not say who you are; try again."})
            return
        try:
            await bot.tickets.submit(
                # A view submitted twice (double click, replay) has the same id and hash; after the
                # bot updates the form (errors to fix), its hash changes and a new submission counts.
                dedupe_key=f"view:{view_id}:{view.get('hash') or ''}" if view_id else f"hash:{view.get('hash')}:{user_id}",
                origin=origin,
                form=form,
                user_id=user_id,
                view_id=view_id,
            )
        except ThreadTaken as taken:
            await ack(response_action="update", view=views.already_linked_modal(taken.display_id))
            return
        await ack(response_action="update", view=views.progress_modal(form.title))
