"""The create step: a ticket from a submission, exactly once (a create that may have reached the
ticket system is looked up before another is sent), and the complete step that sets its fields."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict

from clients.base import BackendError, CreatedTicket, ThreadMessage, TicketBackend, TicketDraft

from ..slack import views
from ..journal.storage import Link, Submission, journaled
from ..slack.views import Origin
from .context import COMPLETE, CONNECT, FOLLOWUP, HISTORY, REPLY, Context, copyable
from .queued import QueuedNotices
from .requesters import Requesters
from .worker import Failure
from . import workflow

log = logging.getLogger(__name__)


class Create:
    name = "create"

    def __init__(self, ctx: Context, who: Requesters, notices: QueuedNotices) -> None:
        self.ctx, self.who, self.notices = ctx, who, notices

    async def run(self, sub: Submission) -> bool:
        backend = self.ctx.backend(sub.payload["origin"].get("backend"))
        if sub.payload.get("from_message") and not sub.payload.get("read"):
            await self._read_message(sub, backend)
        if sub.payload.get("function") and not sub.payload.get("resolved"):
            await workflow.resolve(self.ctx, sub, backend)  # a workflow step's inputs
        self._await_earlier_create(sub, backend)
        draft = await self.who.draft(sub, backend)
        if sub.payload.get("add_to"):
            ticket = journaled(CreatedTicket, sub.payload["add_to"])
            if not sub.payload.get("added"):
                await backend.add_message(
                    ticket, ThreadMessage(text=draft.description, author=draft.requester, author_id=draft.requester_id)
                )
                sub.payload["added"] = True
            return await self._created(sub, backend, draft, ticket)
        ticket = None
        if sub.maybe_created:
            since = dt.datetime.fromtimestamp(sub.created_at, dt.timezone.utc)
            ticket = await backend.find_ticket(draft, since)
            if ticket:
                log.info("submission %s: found ticket %s from an earlier attempt", sub.id, ticket.display_id)
        if ticket is None:
            earlier = sub.maybe_created
            sub.maybe_created = True  # from here a crash leaves "maybe": the next attempt looks first
            sub.payload["create_sent_at"] = time.time()  # and, if the crash was this process's, waits
            await self.ctx.storage.save_submission(sub)
            self.ctx.hold(sub)
            try:
                ticket = await backend.create_ticket(draft)
            except BackendError as exc:
                if not exc.ambiguous:
                    sub.maybe_created = earlier
                raise
            finally:  # answered or given up on: nothing of this attempt is on its way any more
                sub.payload.pop("create_sent_at", None)
        return await self._created(sub, backend, draft, ticket)

    async def failed(self, sub: Submission, why: Failure) -> None:
        sub.last_error = why.reason
        if why.field_errors:
            sub.payload["field_errors"] = why.field_errors
        sub.thread_key = None  # free the thread for another try
        sub.steps_done.update({COMPLETE, REPLY, HISTORY, CONNECT, FOLLOWUP})
        self.notices.stop(sub.id)
        log.warning("submission %s: ticket not created: %s", sub.id, why.reason)

    def _await_earlier_create(self, sub: Submission, backend: TicketBackend) -> None:
        """A create sent by a process that then died or was stopped may still land after this
        attempt's look-up. It is looked up only once that create cannot be on its way any more
        (its token request and its create request each within the client's timeout); until then the
        submission waits in the journal, holding no slot."""
        sent = sub.payload.get("create_sent_at")
        wait = sent + 2 * backend.request_timeout + 1.0 - time.time() if sent else 0.0
        if wait > 0:
            raise BackendError(
                f"an earlier attempt's create may still reach {backend.display_name}; looking for it in {wait:.0f} s",
                transient=True, retry_after=wait,
            )
        sub.payload.pop("create_sent_at", None)

    async def _created(self, sub: Submission, backend: TicketBackend, draft: TicketDraft, ticket: CreatedTicket) -> bool:
        sub.ticket = asdict(ticket)
        if draft.requester_id is None and backend.dm_sync_needs_requester and not sub.payload.get("add_to"):
            person = draft.requester.name if draft.requester else "the requester"
            whose = "your" if sub.payload.get("requester_id") == sub.payload["user_id"] else f"{views.escape(person)}'s"
            sub.warnings.append(
                f"{backend.display_name} has no account for {whose} e-mail address, so it will not send "
                "direct messages about this ticket."
            )
        origin = journaled(Origin, sub.payload["origin"])
        if sub.thread_key and origin.channel_id and origin.thread_ts:
            sub.thread_ts = origin.thread_ts
            await self.ctx.storage.add_link(
                Link(origin.channel_id, origin.thread_ts, ticket.id, ticket.display_id, ticket.backend), sub.id
            )
        self.notices.stop(sub.id)
        log.info("submission %s: %s %s %s", sub.id, "added to" if sub.payload.get("add_to") else "created", ticket.backend, ticket.display_id)
        return True

    async def _read_message(self, sub: Submission, backend: TicketBackend) -> None:
        """A ticket from a conversation: its title, description and requester come from the
        message, read when the ticket is made (the event was acknowledged without waiting)."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        ts = p["from_message"]["ts"]
        assert origin.channel_id and origin.thread_ts
        thread = await self.ctx.thread(origin.channel_id, origin.thread_ts, until=ts)
        message = next((m for m in thread if m.get("ts") == ts), None)
        if message is None:
            raise BackendError("the message is no longer in Slack (it may have been deleted)")
        root = message.get("thread_ts") or ts
        if root != origin.thread_ts:
            # A reaction names the message, not its thread: on a reply, the ticket is the thread's.
            await self._move_to_thread(sub, origin, root)
        if message.get("thread_ts"):
            # In a thread (a reply, or a root with replies): the thread's other messages are copied,
            # whichever message was marked (reacted to, mentioned in, posted).
            p["copy_history"] = True
        if not origin.channel_name:  # events do not carry it; the description and footer name it
            info = await self.ctx.slack.conversations_info(channel=origin.channel_id)
            origin.channel_name = (info.get("channel") or {}).get("name")
            p["origin"] = {**p["origin"], **asdict(origin)}  # keys a newer replica wrote stay
        text = views.message_text(message)
        files = [f.get("name") or f.get("title") for f in message.get("files") or [] if isinstance(f, dict)]
        if files:
            text += "\n\nFiles: " + ", ".join(filter(None, files))
        author = message.get("user")
        header = None
        requester = p["user_id"]
        app = await self.who.app_author(message, p["user_id"])
        if app:  # an app's message (an alert): filed for the person who asked, naming the app
            header = views.alert_from(app, origin.channel_id, origin.channel_name)
        elif author and author != p["user_id"]:
            if self.ctx.may_file_for_others is None or await self.ctx.may_file_for_others(p["user_id"]):
                requester = author
            else:  # ON_BEHALF_OF: the person who asked is the requester; the author is named
                person = await self.who.person(author)
                header = views.message_from(person.name if person else f"@{author}", origin.channel_id, origin.channel_name)
        permalink = (await self.ctx.slack.chat_getPermalink(channel=origin.channel_id, message_ts=ts)).get("permalink")
        description = views.description_from_message(text, permalink, backend.description_max_length, header=header)
        if not backend.can_add_messages and p.get("copy_history"):
            # Systems that take no messages get the thread's other messages in the description.
            whole = await self.ctx.thread(origin.channel_id, root)
            own = next((i for i, m in enumerate(whole) if m.get("ts") == ts), len(whole))
            others = ""
            for heading, messages in (("Earlier", whole[:own]), ("Later", whole[own + 1:])):
                lines = "\n".join(f"<@{m.get('user')}>: {views.plain(m.get('text') or '')}"
                                  for m in messages if copyable(m))
                if lines:
                    others += f"\n\n{heading} in the thread:\n{lines}"
            room = backend.description_max_length - len(description) - 20
            description += others[: max(0, room)]
        p["title"] = p["from_message"].get("title") or views.title_from_message(text) or "Ticket from Slack"
        p["title"] = p["title"][: backend.title_max_length]
        p["description"] = description
        p["requester_id"] = requester
        p["message_text"] = text[:3000]
        p["read"] = True

    async def _move_to_thread(self, sub: Submission, origin: Origin, root: str) -> None:
        """Reserve the message's real thread instead of the message; refused for good when that
        thread has a ticket already, or one on its way."""
        assert origin.channel_id
        taken, display_id = await self.ctx.thread_ticket(origin.channel_id, root)
        if taken:
            raise BackendError(
                f"this thread already has ticket {display_id}" if display_id else "a ticket is already being created for this thread"
            )
        origin.thread_ts = root
        sub.payload["origin"] = {**sub.payload["origin"], **asdict(origin)}
        sub.thread_key = f"{origin.channel_id}:{root}"
        await self.ctx.storage.save_submission(sub)  # the unique thread key decides a race with another


class Complete:
    name = "complete"

    def __init__(self, ctx: Context, who: Requesters) -> None:
        self.ctx, self.who = ctx, who

    async def run(self, sub: Submission) -> bool:
        if sub.payload.get("add_to"):
            return False  # an existing ticket: its fields are its own
        backend = self.ctx.backend(sub.payload["origin"].get("backend"))
        await backend.complete_ticket(self.ctx.ticket(sub), await self.who.draft(sub, backend))
        return False  # safe to repeat: saved with the next step

    async def failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The ticket was created, but not all its fields could be set: {views.escape(why.reason)}")
