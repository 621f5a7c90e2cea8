"""Submitting the ticket modal: inline errors, or journal the submission and show progress.

Nothing here asks Slack or a ticket system before the ack: the form's fields come from memory, and
whether the person may name another requester was decided when their form was built."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.slack import views
from bot.core import Bot
from bot.slack.forms import may_pick_requester, parse_ticket_form
from bot.journal.storage import ThreadTaken


def register(app: AsyncApp, bot: Bot) -> None:
    @app.view_submission(views.MODAL_CALLBACK_ID)
    async def ticket_modal_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        origin, form = await parse_ticket_form(bot, view)
        user_id = (body.get("user") or {}).get("id")
        if not user_id:
            form.errors.setdefault(views.TITLE_BLOCK, "Slack did not say who you are; try again.")
        requester = form.requester_id
        blocks = {b.get("block_id") for b in view.get("blocks") or [] if isinstance(b, dict)}
        if (
            user_id
            and requester
            and requester not in (user_id, origin.requester_id)
            and not may_pick_requester(bot, blocks)
        ):
            form.errors[views.ON_BEHALF_BLOCK] = "You can file tickets only for yourself here."
        if form.errors:
            await ack(response_action="errors", errors=form.errors)
            return
        view_id = view.get("id")
        try:
            stored = await bot.tickets.submit(
                # A view submitted twice (double click, replay) has the same id and hash; after the
                # bot updates the form (errors to fix), its hash changes and a new submission counts.
                dedupe_key=f"view:{view_id}:{view.get('hash') or ''}" if view_id else f"hash:{view.get('hash')}:{user_id}",
                origin=origin,
                form=form,
                user_id=user_id,
                view_id=view_id,
                requester_id=requester,
            )
        except ThreadTaken as taken:
            if origin.channel_id and origin.thread_ts:
                bot.threads.note(bot.threads.key(origin.channel_id, origin.thread_ts))
            await ack(response_action="update", view=views.already_linked_modal(taken.display_id))
            return
        if stored.ticket:  # a repeat of a submission whose ticket exists: its outcome, not "Creating…"
            await ack(response_action="update",
                      view=views.created_modal(stored.ticket["display_id"], stored.payload["title"],
                                               bot.tickets.link_of(stored.ticket)))
            return
        bot.threads.note(stored.thread_key)  # taken now: the next shortcut on it is answered before its form
        await ack(response_action="update", view=views.progress_modal(form.title))
