"""Telling the person: the notice as soon as the outcome is known (the form, an ephemeral message
or the thread reply), and a follow-up for what went wrong after it."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError

from ..slack import cards, views
from ..journal.storage import Submission, journaled
from ..slack.views import Origin
from .context import MESSAGE_SOURCES, WORKFLOW, Context
from .failures import SLACK_NO_ACCESS
from .worker import Failure

log = logging.getLogger(__name__)


class Notify:
    name = "notify"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, sub: Submission) -> bool:
        """Tell the person the outcome as soon as it is known: the ticket id right after create."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        if origin.source == WORKFLOW:
            return False  # the workflow step's outputs (or error) are its notice
        if origin.source in MESSAGE_SOURCES:
            await self._in_thread(sub, origin)
            p["told_warnings"] = len(sub.warnings)
            return True
        if sub.ticket:
            ticket = self.ctx.ticket(sub)
            if p.get("add_to"):
                text = views.added_text(ticket.display_id, p["title"], sub.warnings, self.ctx.link(ticket))
            else:
                text = views.created_text(ticket.display_id, p["title"], sub.warnings, self.ctx.link(ticket))
        else:
            text = views.failed_text(sub.last_error or "unknown error", p["title"], p["description"])
        if p.get("view_id"):
            modal = await self.outcome_modal(sub)
            # Errors the person can fix: the form comes back with their values and the errors
            # beside the fields; a message follows only if the form is gone.
            if await self.ctx.update_view(p["view_id"], modal) and p.get("field_errors") and not sub.ticket:
                return True
        await self.ctx.tell(p["user_id"], origin.channel_id, text)
        p["told_warnings"] = len(sub.warnings)
        return True

    async def failed(self, sub: Submission, why: Failure) -> None:
        log.error("submission %s: could not tell <%s> the outcome: %s", sub.id, sub.payload["user_id"], why.reason)
        sub.payload["told_warnings"] = len(sub.warnings)

    async def outcome_modal(self, sub: Submission) -> dict[str, Any]:
        """What the form shows once the outcome is known: the ticket, or why there is none."""
        p = sub.payload
        if sub.ticket:
            ticket = self.ctx.ticket(sub)
            if p.get("add_to"):
                return views.added_modal(ticket.display_id, p["title"], self.ctx.link(ticket))
            return views.created_modal(ticket.display_id, p["title"], self.ctx.link(ticket))
        if p.get("field_errors"):
            return await self._form_with_errors(sub)
        return views.failed_modal(sub.last_error or "unknown error", p["title"], p["description"])

    async def _in_thread(self, sub: Submission, origin: Origin) -> None:
        """A ticket from a conversation: the reply in its thread is the notice (with *Edit details*
        where the ticket can be edited); a failure goes to the person who asked, with the message."""
        p = sub.payload
        if not sub.ticket:
            text = views.failed_from_message_text(sub.last_error or "unknown error", p.get("message_text") or p["title"])
            await self.ctx.tell(p["user_id"], origin.channel_id, text)
            return
        ticket = self.ctx.ticket(sub)
        backend = self.ctx.backend(origin.backend)
        minimal = await self.ctx.minimal_in(origin.channel_id)  # shared with another organisation
        reply = views.ticket_thread_reply(
            ticket.display_id, p["title"], p.get("requester_id") or p["user_id"],
            sub.id if backend.can_edit else None, sub.warnings, url=None if minimal else self.ctx.link(ticket),
        )
        card = self.ctx.card(ticket, reply["text"], sub.id if backend.can_edit else None, minimal=minimal)
        if card is not None:  # the reply is the ticket's live card
            reply = cards.card_message(card, cards.NEW)
        try:
            resp = await self.ctx.slack.chat_postMessage(channel=origin.channel_id, thread_ts=origin.thread_ts, **reply)
            self.ctx.posted_card(sub, card, origin.channel_id, resp["ts"], origin.thread_ts or resp["ts"])
        except SlackApiError as exc:
            if exc.response.get("error") not in SLACK_NO_ACCESS:
                raise
            await self.ctx.slack.chat_postMessage(channel=p["user_id"], text=reply["text"])

    async def _form_with_errors(self, sub: Submission) -> dict[str, Any]:
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        backend = self.ctx.backend(origin.backend)
        fields = await backend.form_fields()
        return views.ticket_modal(
            origin,
            fields,
            title=p["title"],
            description=p["description"],
            values=p["values"],
            share_default=bool(p.get("share")),
            errors={**p["field_errors"], "": sub.last_error or ""},
            title_max_length=backend.title_max_length,
            description_max_length=backend.description_max_length,
        )


class Followup:
    name = "followup"
    failed = Notify.failed  # a follow-up that cannot be sent is logged like a notice that could not

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, sub: Submission) -> bool:
        """What went wrong after the person was told the ticket id (a reply, the thread link)."""
        told = sub.payload.get("told_warnings", 0)
        if not sub.ticket or len(sub.warnings) <= told or sub.payload.get("function"):
            return False
        p = sub.payload
        ticket = self.ctx.ticket(sub)
        text = views.followup_text(ticket.display_id, sub.warnings[told:], self.ctx.link(ticket))
        await self.ctx.tell(p["user_id"], journaled(Origin, p["origin"]).channel_id, text)
        p["told_warnings"] = len(sub.warnings)
        return True
