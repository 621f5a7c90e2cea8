"""The ticket and its Slack thread: the reply that announces it there, the thread's other messages
copied into it, and the thread linked to it."""

from __future__ import annotations

import logging

from clients.base import Person, ThreadMessage

from ..slack import cards, views
from ..journal.storage import Link, Submission, journaled
from ..slack.views import Origin
from .context import CONNECT, MESSAGE_SOURCES, Context, copyable
from .requesters import Requesters
from .worker import Failure

log = logging.getLogger(__name__)
# Copied thread messages are recorded this many at a time: a process that dies mid-batch may copy
# up to this many again when the next one carries on (a live holder never loses its lease to another).
COPY_BATCH = 20


class Reply:
    name = "reply"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, sub: Submission) -> bool:
        origin = journaled(Origin, sub.payload["origin"])
        ticket = self.ctx.ticket(sub)
        user_id = sub.payload["user_id"]
        title = sub.payload["title"]
        if origin.source in MESSAGE_SOURCES:
            return False  # the thread reply was the notice
        if sub.payload.get("from_message") and not sub.thread_key:
            return False  # *Add to ticket* in a thread that has its own ticket: nothing to announce there
        posts = (origin.source == "shortcut" and origin.channel_id and origin.thread_ts) or \
            (sub.payload.get("share") and origin.channel_id)
        minimal = bool(posts) and await self.ctx.minimal_in(origin.channel_id)  # shared with another organisation
        link = None if minimal else self.ctx.link(ticket)
        if origin.source == "shortcut" and origin.channel_id and origin.thread_ts:
            text = (
                views.linked_reply_text(ticket.display_id, user_id, link)
                if sub.payload.get("add_to")
                else views.thread_reply_text(ticket.display_id, title, user_id, link)
            )
            kwargs = dict(channel=origin.channel_id, thread_ts=origin.thread_ts, text=text)
        elif sub.payload.get("share") and origin.channel_id:
            text = views.shared_ticket_text(ticket.display_id, title, user_id, link)
            kwargs = dict(channel=origin.channel_id, text=text)
        else:
            return False  # nothing to post
        card = self.ctx.card(ticket, kwargs["text"], minimal=minimal)  # the reply is the ticket's live card
        if card is not None:
            kwargs.update(cards.card_message(card, cards.NEW))
        resp = await self.ctx.slack.chat_postMessage(**kwargs)
        self.ctx.posted_card(sub, card, origin.channel_id, resp["ts"], origin.thread_ts or resp["ts"])
        if origin.source != "shortcut":
            sub.thread_ts = resp["ts"]
            await self.ctx.storage.add_link(
                Link(origin.channel_id, resp["ts"], ticket.id, ticket.display_id, ticket.backend), sub.id
            )
        return True

    async def failed(self, sub: Submission, why: Failure) -> None:
        origin = journaled(Origin, sub.payload["origin"])
        sub.warnings.append(
            f"I could not post in <#{origin.channel_id}> ({views.escape(why.reason)}); invite me to the channel to share tickets there."
        )
        if origin.source != "shortcut":
            sub.steps_done.add(CONNECT)  # no message, no thread to connect


class History:
    name = "history"

    def __init__(self, ctx: Context, who: Requesters) -> None:
        self.ctx, self.who = ctx, who

    async def run(self, sub: Submission) -> bool:
        """Copy the thread's other messages into the ticket before it is connected, each once;
        the connect then tells the system they are already in the thread."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        backend = self.ctx.backend(origin.backend)
        if not (p.get("copy_history") and sub.ticket and backend.can_add_messages and origin.channel_id and sub.thread_ts):
            return False
        ticket = self.ctx.ticket(sub)
        own = p.get("from_message", {}).get("ts") or origin.message_ts
        copied: dict[str, str] = p.setdefault("copied", {})
        unsaved = 0
        for message in await self.ctx.thread(origin.channel_id, sub.thread_ts):
            ts = message.get("ts")
            if not ts or ts == own or ts in copied or not copyable(message):
                continue
            if unsaved >= COPY_BATCH:  # progress in bounded saves: a long thread costs O(n), not O(n²)
                await self.ctx.storage.save_submission(sub)
                unsaved = 0
            self.ctx.hold(sub)
            person = await self.who.person(message["user"])
            author_id = await self.who.user_id(backend, message["user"], person, requester=False)
            # the back end names an author who is no user there in the text
            copied[ts] = await backend.add_message(ticket, ThreadMessage(
                text=views.plain(message.get("text") or ""), author=person or Person(name=f"<@{message['user']}>"),
                author_id=author_id, external_id=f"{origin.channel_id}:{ts}",
            )) or ""
            unsaved += 1
        return bool(copied)  # the last batch is saved with the step

    async def failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The thread's earlier messages could not be copied into the ticket: {views.escape(why.reason)}")


class Connect:
    name = "connect"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def run(self, sub: Submission) -> bool:
        origin = journaled(Origin, sub.payload["origin"])
        backend = self.ctx.backend(origin.backend)
        if not (sub.thread_ts and origin.channel_id and backend.can_connect_threads):
            return False  # nothing to connect
        copied = tuple(i for i in (sub.payload.get("copied") or {}).values() if i)
        integration = self.ctx.integration(sub)
        await backend.connect_thread(
            self.ctx.ticket(sub), origin.channel_id, sub.thread_ts, direct_message=origin.channel_id.startswith("D"),
            **({"accounted_for": copied} if copied else {}), **({"integration_id": integration} if integration else {}),
        )
        return True

    async def failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The Slack thread could not be linked to the ticket: {views.escape(why.reason)}")
