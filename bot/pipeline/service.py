"""The ticket service: intake journals what people ask for (`submit`, `submit_message`; edits and
Home read the journal), and the durable worker (`bot.pipeline.worker`: leases, retries, the failure rule)
carries each submission through the ticket steps defined here:
create → notify the person → complete → reply in Slack → copy the thread's history → connect the
thread → follow-up notice.

`failure` classifies what a step raised: only what cannot heal is permanent (a ticket system's 4xx,
Slack's error answers); the rest is retried from the journal. A step that fails for good records
what the person is told, with what they typed when no ticket exists. A create attempt that may have
reached the ticket system is followed, on the next attempt, by a look-up for the submission's
reference, so a retry never makes a duplicate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import BackendError, CreatedTicket, FormField, Person, ThreadMessage, TicketBackend, TicketDraft

from .. import views
from ..drafts import Form, values_from_json
from ..people import People
from ..journal.storage import Link, Storage, Submission, ThreadTaken, journaled
from .worker import Failure, Step, Worker
from ..views import Origin

log = logging.getLogger(__name__)

CREATE, NOTIFY, COMPLETE, REPLY, HISTORY, CONNECT, FOLLOWUP = (
    "create", "notify", "complete", "reply", "history", "connect", "followup"
)
# Where a ticket starts from a message in a thread: the thread is reserved, replied in and connected.
MESSAGE_SOURCES = {"reaction", "mention", "intake"}  # tickets made from a conversation, without a form
THREAD_SOURCES = {"shortcut"} | MESSAGE_SOURCES
# Messages that are not part of the conversation copied into a ticket.
SKIPPED_SUBTYPES = {"channel_join", "channel_leave", "group_join", "group_leave", "bot_message", "thread_broadcast_bot"}
# Copied thread messages are recorded this many at a time: a process that dies mid-batch may copy
# up to this many again when the next one carries on (a live holder never loses its lease to another).
COPY_BATCH = 20
DETAILS_WAIT = 5.0  # seconds the *Edit details* form waits for the ticket's current details
SLACK_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# Errors that mean "the bot cannot post there"; the person is told in a DM instead.
SLACK_NO_ACCESS = {"not_in_channel", "channel_not_found", "is_archived", "user_not_in_channel", "restricted_action",
                   "cannot_dm_bot", "method_not_supported_for_channel_type"}


def failure(exc: BaseException) -> Failure:
    """The one classification of errors every step shares. Only what cannot heal is permanent:
    a ticket system's refusal (4xx other than 408, 409, 429) and Slack's own error answers;
    everything else, unexpected errors included, is retried."""
    if isinstance(exc, BackendError):
        return Failure(exc.message, exc.transient, exc.retry_after, exc.field_errors or None)
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error") or "unknown Slack error")
        status = getattr(exc.response, "status_code", 200)
        retry_after = None
        if status == 429:
            try:
                retry_after = float((exc.response.headers or {}).get("Retry-After", 1))
            except (TypeError, ValueError):
                retry_after = 1.0
        transient = status == 429 or status >= 500 or error in SLACK_TRANSIENT
        return Failure(f"Slack: {error}", transient, retry_after)
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError, OSError, sqlite3.Error)):
        return Failure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, True)
    if type(exc).__module__.startswith("sqlalchemy"):  # the database: locked, unreachable, full
        return Failure(f"database: {type(exc).__name__}", True)
    log.error("unexpected error in a ticket step; it is retried", exc_info=exc)
    return Failure(f"unexpected error ({type(exc).__name__})", True)


def slack_error(exc: BaseException) -> str:
    """The Slack error code of a failed Web API call (e.g. `not_in_channel`), else the exception's type."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or "unknown_error")
    return type(exc).__name__


class TicketService:
    def __init__(
        self,
        storage: Storage,
        backends: dict[str, TicketBackend],
        slack: AsyncWebClient,
        *,
        default_backend: str,
        people: People,
        unmatched_requester: str = "describe",
        identity_refresh: float = 3600.0,
        queued_after: float = 2.5,
        retry_base: float = 0.5,
        retry_max: float = 300.0,
        give_up_after: float = 86400.0,
        max_active: int = 64,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        owner: str | None = None,
        retention_seconds: float = 90 * 86400.0,
        purge_every: float = 3600.0,
        router: Any = None,
        may_file_for_others: Callable[[str], Awaitable[bool]] | None = None,
        is_admin: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        """`slack` should not sleep on rate limits itself (no rate-limit retry handler): a 429
        becomes a journal retry that frees the submission's slot."""
        if default_backend not in backends:
            raise ValueError(f"default back end {default_backend!r} is not configured")
        self.storage = storage
        self.backends = backends
        self.default_backend = default_backend
        self.slack = slack
        self.people = people
        self.unmatched_requester = unmatched_requester
        self.identity_refresh = identity_refresh
        self.queued_after = queued_after
        self.router = router  # bot.routing.Router: where a ticket from a conversation goes
        self.may_file_for_others = may_file_for_others  # ON_BEHALF_OF, for tickets from a conversation
        self.is_admin = is_admin  # may edit any ticket's details
        self._timers: dict[str, asyncio.Task[None]] = {}
        # At most `max_active` submissions move through their steps at once in this process; the
        # rest wait in the journal (with the "queued" notice after queued_after).
        self.worker = Worker(
            storage,
            [
                Step(CREATE, self._step_create, self._create_failed),
                Step(NOTIFY, self._step_notify, self._notify_failed),
                Step(COMPLETE, self._step_complete, self._complete_failed),
                Step(REPLY, self._step_reply, self._reply_failed),
                Step(HISTORY, self._step_history, self._history_failed),
                Step(CONNECT, self._step_connect, self._connect_failed),
                Step(FOLLOWUP, self._step_followup, self._notify_failed),
            ],
            owner=owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            classify=failure,
            gave_up=self._gave_up,
            outcome=lambda sub: "done" if sub.ticket else "failed",
            max_active=max_active,
            lease_seconds=lease_seconds,
            poll_seconds=poll_seconds,
            retry_base=retry_base,
            retry_max=retry_max,
            give_up_after=give_up_after,
            retention_seconds=retention_seconds,
            purge_every=purge_every,
        )
        self._hold = self.worker.hold

    # --- what handlers call ------------------------------------------------------------------

    def backend(self, name: str | None = None) -> TicketBackend:
        """The named back end; the default one for None or a name no longer configured."""
        return self.backends.get(name or self.default_backend) or self.backends[self.default_backend]

    async def form_fields(self, backend: str | None = None) -> list[FormField]:
        """The extra fields the back end's form needs (back ends cache these themselves)."""
        return await self.backend(backend).form_fields()

    async def thread_ticket(self, channel_id: str, thread_ts: str) -> tuple[bool, str | None]:
        """(taken, display id): is this thread linked to a ticket, or about to be?"""
        link = await self.storage.link_for_thread(channel_id, thread_ts)
        if link:
            return True, link.display_id
        pending = await self.storage.pending_display_for_thread(channel_id, thread_ts)
        return (True, None) if pending else (False, None)

    async def submit(
        self,
        *,
        dedupe_key: str,
        origin: Origin,
        form: Form,
        user_id: str,
        view_id: str | None,
        requester_id: str | None = None,
        add_to: CreatedTicket | None = None,
    ) -> Submission:
        """Journal a submission and start working on it. A repeat of an earlier submission (same
        dedupe key) returns the earlier one and starts nothing. Raises ThreadTaken.
        `add_to`: instead of creating a ticket, add what was typed to this existing one (and link
        the thread to it)."""
        payload = {
            "origin": asdict(origin),
            "user_id": user_id,
            "requester_id": requester_id or origin.requester_id or user_id,
            "view_id": view_id,
            "title": form.title,
            "description": form.description,
            "values": form.values_json(),
            "share": form.share and origin.source == "command" and origin.shareable_channel and not add_to,
            # a ticket made from a reply: the thread's other messages are copied into it
            "copy_history": bool(origin.message_ts and origin.thread_ts and origin.message_ts != origin.thread_ts),
        }
        if add_to:
            payload["add_to"] = asdict(add_to)
        return await self._journal(Submission.new(dedupe_key, payload, self._thread_key(origin)), view_id)

    async def submit_message(
        self,
        *,
        dedupe_key: str,
        source: str,
        channel_id: str,
        channel_name: str | None,
        message_ts: str,
        thread_ts: str | None,
        submitter_id: str,
        title: str | None = None,
    ) -> Submission:
        """Journal a ticket made from a conversation (a reaction, a mention, a request channel) and
        start working on it; returns at once (the message is read when the ticket is created).
        `message_ts`: the message the ticket is made from; `thread_ts`: its thread's root, when it
        is in a thread. A repeat (same dedupe key: the Slack event id) starts nothing. Raises
        ThreadTaken when the thread has a ticket, or one on its way."""
        if source not in MESSAGE_SOURCES:
            raise ValueError(f"unknown source {source!r}")
        route = await self.router.route(channel_id) if self.router else None
        root = thread_ts or message_ts
        origin = Origin(
            source=source,
            channel_id=channel_id,
            channel_name=channel_name,
            thread_ts=root,
            message_ts=message_ts,
            backend=route.backend if route else None,
            team_id=route.values.get("team_id") if route else None,
        )
        payload = {
            "origin": asdict(origin),
            "user_id": submitter_id,
            "requester_id": None,  # the message's author, per ON_BEHALF_OF: decided when it is read
            "view_id": None,
            "title": title or "",
            "description": "",
            "values": dict(route.values) if route else {},
            "share": False,
            "from_message": {"ts": message_ts, "title": title},
            # a mention in a thread: the thread's other messages are copied (whether a reacted or
            # posted message is in a thread is known when it is read: `_read_message`)
            "copy_history": bool(thread_ts and (message_ts != thread_ts or source == "mention")),
        }
        return await self._journal(Submission.new(dedupe_key, payload, self._thread_key(origin)), None)

    @staticmethod
    def _thread_key(origin: Origin) -> str | None:
        if origin.source in THREAD_SOURCES and origin.channel_id and origin.thread_ts:
            return f"{origin.channel_id}:{origin.thread_ts}"
        return None

    async def first_delivery(self, event_id: str) -> bool:
        """Record a Slack event id; False when it was recorded before (a redelivery, here or on
        another replica)."""
        return await self.storage.first_delivery(event_id)

    async def _journal(self, sub: Submission, view_id: str | None) -> Submission:
        stored, new = await self.worker.journal(sub)
        if new and view_id and self.queued_after >= 0:
            self._timers[stored.id] = asyncio.create_task(self._show_queued_later(stored))
        return stored

    async def resume(self) -> int:
        """Start working the journal (see `Worker.resume`). Returns how many submissions wait."""
        return await self.worker.resume()

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until the journal has no unfinished submission (for tests and benchmarks)."""
        await self.worker.idle(timeout)

    def drain(self) -> None:
        """A stop has begun: claim no more submissions (see `Worker.drain`)."""
        self.worker.drain()

    async def close(self, grace: float = 0.0) -> None:
        """Stop: let running submissions finish for up to `grace` seconds, stop the rest (each
        resumes from its last recorded step), and hand every lease back at once."""
        await self.worker.close(grace, also=list(self._timers.values()))

    async def recent_tickets(self, user_id: str, limit: int = 10) -> list[views.HomeTicket]:
        """The person's recent tickets, with current status and thread link where they can be had
        quickly (the Home tab must not hang on a slow ticket system)."""
        subs = await self.storage.tickets_of(user_id, limit)

        async def one(sub: Submission) -> views.HomeTicket:
            ticket = self._ticket(sub)
            origin = journaled(Origin, sub.payload["origin"])
            status = link = None
            try:
                status = await asyncio.wait_for(self.backend(origin.backend).ticket_status(ticket), 2.0)
            except Exception as exc:
                log.debug("status of %s: %s", ticket.display_id, exc)
            if sub.thread_ts and origin.channel_id:
                try:
                    resp = await asyncio.wait_for(
                        self.slack.chat_getPermalink(channel=origin.channel_id, message_ts=sub.thread_ts), 2.0
                    )
                    link = resp.get("permalink")
                except Exception as exc:
                    log.debug("permalink of %s: %s", ticket.display_id, exc)
            created = dt.datetime.fromtimestamp(sub.created_at, dt.timezone.utc).strftime("%Y-%m-%d")
            return views.HomeTicket(ticket.display_id, sub.payload["title"], status, link, created)

        return list(await asyncio.gather(*(one(s) for s in subs)))

    async def _editable(self, sub_id: str, user_id: str) -> Submission | None:
        """The submission whose ticket this person may edit (who asked for it, its requester,
        admins), else None."""
        sub = await self.storage.get_submission(sub_id)
        if sub is None or not sub.ticket:
            return None
        p = sub.payload
        allowed = user_id in (p.get("user_id"), p.get("requester_id")) or bool(self.is_admin and await self.is_admin(user_id))
        return sub if allowed and self.backend(p["origin"].get("backend")).can_edit else None

    async def editable(self, sub_id: str, user_id: str) -> dict[str, Any] | None:
        """What the *Edit details* form needs, when this person may edit the ticket, else None:
        the ticket's details as the ticket system has them now (`current`: True), or, when it
        cannot say within DETAILS_WAIT, as they were journaled when the ticket was made."""
        sub = await self._editable(sub_id, user_id)
        if sub is None:
            return None
        p, ticket = sub.payload, self._ticket(sub)
        values = p.get("values") or {}
        info = {
            "display_id": ticket.display_id,
            "backend": ticket.backend,
            "title": p["title"],
            "priority_id": values.get("priority_id"),
            "due_date": values.get("due_date"),
            "team_id": values.get("team_id") or p["origin"].get("team_id"),
            "current": False,
        }
        try:
            now = await asyncio.wait_for(self.backend(ticket.backend).ticket_details(ticket), DETAILS_WAIT)
        except Exception as exc:
            log.info("details of %s cannot be read (%s); the form shows the journaled ones", ticket.display_id,
                     exc.message if isinstance(exc, BackendError) else type(exc).__name__)
            now = None
        if now is not None:
            info.update(title=now.title or info["title"], priority_id=now.priority_id,
                        due_date=now.due_date.isoformat() if now.due_date else None, current=True)
        return info

    async def edit_ticket(
        self, sub_id: str, user_id: str, *, title: str | None = None, priority_id: str | None = None,
        due_date: dt.date | None = None,
    ) -> str:
        """Change the ticket's title, priority or due date (the *Edit details* form); returns its
        display id. Raises PermissionError, or BackendError with a reason for the person."""
        sub = await self._editable(sub_id, user_id)
        if sub is None:
            raise PermissionError("only the person who asked for the ticket, its requester and admins may edit it")
        ticket = self._ticket(sub)
        await self.backend(sub.payload["origin"].get("backend")).update_ticket(
            ticket, title=title, priority_id=priority_id, due_date=due_date
        )
        log.info("submission %s: %s edited by %s", sub.id, ticket.display_id, user_id)
        return ticket.display_id

    def _gave_up(self, sub: Submission, why: Failure) -> Failure:
        name = self.backend(sub.payload["origin"].get("backend")).display_name
        return Failure(f"{name} has not answered for too long ({why.reason})", False)

    # --- the steps: each returns whether it changed something outside the bot (then its
    # completion is saved at once); raising applies the failure rule -------------------------------

    async def _draft(self, sub: Submission, backend: TicketBackend) -> TicketDraft:
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        requester_slack = p.get("requester_id") or origin.requester_id or p["user_id"]
        submitter = await self._person(p["user_id"])
        requester = submitter if requester_slack == p["user_id"] else await self._person(requester_slack)
        requester_id = await self._user_id(backend, requester_slack, requester, requester=True)
        submitter_id = (
            requester_id
            if requester_slack == p["user_id"]
            else await self._user_id(backend, p["user_id"], submitter, requester=False)
        )
        reference = f"slack-{sub.id}"
        who = requester.name if requester else "an unknown Slack user"
        if requester and requester.email:
            who += f" <{requester.email}>"
        footer = f"Requested in Slack by {who}"
        if requester_slack != p["user_id"] and submitter:
            footer += f", filed by {submitter.name}"
        if origin.channel_name:
            footer += f" in #{origin.channel_name}"
        description = (p["description"] + "\n\n" if p["description"] else "") + f"—\n{footer} · ref {reference}"
        values = values_from_json(await backend.form_fields_for(p["values"]), p["values"])
        if origin.team_id:
            values.setdefault("team_id", origin.team_id)
        return TicketDraft(
            title=p["title"],
            description=description,
            reference=reference,
            requester=requester,
            submitter=submitter,
            source_name=f"Slack #{origin.channel_name}" if origin.channel_name else "Slack",
            values=values,
            requester_id=requester_id,
            submitter_id=submitter_id,
        )

    async def _person(self, slack_id: str) -> Any:
        """The Slack person, or None when their profile cannot be read for good (unknown user,
        another workspace, a missing scope): the ticket is then filed per UNMATCHED_REQUESTER.
        A passing Slack failure is retried like any other."""
        profile = await self._profile(slack_id)
        return profile.person if profile else None

    async def _profile(self, slack_id: str) -> Any:
        """The Slack profile (`people.Profile`), or None, as for `_person`."""
        try:
            return await self.people.profile(slack_id)
        except SlackApiError as exc:
            why = failure(exc)
            if why.transient:
                raise
            log.warning("profile of %s cannot be read (%s); filing without it", slack_id, why.reason)
            return None

    async def _app_author(self, message: dict[str, Any], asker: str) -> str | None:
        """The name of the app that posted `message` (`bot_id`, `subtype: bot_message`, or an
        author whose profile is a bot user's), or None when a person did."""
        name = views.app_name(message)
        if name or not message.get("user") or message["user"] == asker:
            return name
        profile = await self._profile(message["user"])
        return profile.person.name if profile and profile.is_bot else None

    async def _user_id(self, backend: TicketBackend, slack_id: str, person: Any, *, requester: bool) -> str | None:
        """The person's user id in the ticket system, by e-mail (cached); per UNMATCHED_REQUESTER
        an unmatched requester is created there, described in the ticket, or refused."""
        if not backend.can_match_users:  # the system takes people as they are (name, e-mail)
            return None
        email = (person.email or "").strip().lower() if person else ""
        if email:
            cached = await self.storage.identity(backend.name, slack_id, email, self.identity_refresh)
            if cached:
                return cached
            user_id = await backend.find_user(email)
            if user_id is None and requester and self.unmatched_requester == "create":
                user_id = await backend.create_user(person)
            if user_id:
                await self.storage.save_identity(backend.name, slack_id, email, user_id)
                return user_id
        if requester and self.unmatched_requester == "refuse":
            if not email:
                why = "Slack does not show the requester's e-mail address"
            else:
                why = f"{backend.display_name} has no user with the e-mail {email}"
            raise BackendError(f"{why}, and tickets here are only filed for known users. Ask your IT team to add them.")
        return None

    async def _step_create(self, sub: Submission) -> bool:
        backend = self.backend(sub.payload["origin"].get("backend"))
        if sub.payload.get("from_message") and not sub.payload.get("read"):
            await self._read_message(sub, backend)
        self._await_earlier_create(sub, backend)
        draft = await self._draft(sub, backend)
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
            await self.storage.save_submission(sub)
            self._hold(sub)
            try:
                ticket = await backend.create_ticket(draft)
            except BackendError as exc:
                if not exc.ambiguous:
                    sub.maybe_created = earlier
                raise
            finally:  # answered or given up on: nothing of this attempt is on its way any more
                sub.payload.pop("create_sent_at", None)
        return await self._created(sub, backend, draft, ticket)

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
            await self.storage.add_link(
                Link(origin.channel_id, origin.thread_ts, ticket.id, ticket.display_id, ticket.backend), sub.id
            )
        self._stop_queued_notice(sub.id)
        log.info("submission %s: %s %s %s", sub.id, "added to" if sub.payload.get("add_to") else "created", ticket.backend, ticket.display_id)
        return True

    async def _thread(self, channel_id: str, root: str, *, until: str | None = None) -> list[dict[str, Any]]:
        """The thread's messages, root first (conversations.replies, every page; up to `until`)."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            args: dict[str, Any] = {"channel": channel_id, "ts": root, "limit": 200}
            if until:
                args.update(latest=until, inclusive=True)
            if cursor:
                args["cursor"] = cursor
            resp = await self.slack.conversations_replies(**args)
            out += resp.get("messages") or []
            cursor = ((resp.get("response_metadata") or {}).get("next_cursor")) or None
            if not cursor or not resp.get("has_more", True):
                return out

    async def _read_message(self, sub: Submission, backend: TicketBackend) -> None:
        """A ticket from a conversation: its title, description and requester come from the
        message, read when the ticket is made (the event was acknowledged without waiting)."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        ts = p["from_message"]["ts"]
        assert origin.channel_id and origin.thread_ts
        thread = await self._thread(origin.channel_id, origin.thread_ts, until=ts)
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
            info = await self.slack.conversations_info(channel=origin.channel_id)
            origin.channel_name = (info.get("channel") or {}).get("name")
            p["origin"] = {**p["origin"], **asdict(origin)}  # keys a newer replica wrote stay
        text = views.message_text(message)
        files = [f.get("name") or f.get("title") for f in message.get("files") or [] if isinstance(f, dict)]
        if files:
            text += "\n\nFiles: " + ", ".join(filter(None, files))
        author = message.get("user")
        header = None
        requester = p["user_id"]
        app = await self._app_author(message, p["user_id"])
        if app:  # an app's message (an alert): filed for the person who asked, naming the app
            header = views.alert_from(app, origin.channel_id, origin.channel_name)
        elif author and author != p["user_id"]:
            if self.may_file_for_others is None or await self.may_file_for_others(p["user_id"]):
                requester = author
            else:  # ON_BEHALF_OF: the person who asked is the requester; the author is named
                person = await self._person(author)
                header = views.message_from(person.name if person else f"@{author}", origin.channel_id, origin.channel_name)
        permalink = (await self.slack.chat_getPermalink(channel=origin.channel_id, message_ts=ts)).get("permalink")
        description = views.description_from_message(text, permalink, backend.description_max_length, header=header)
        if not backend.can_add_messages and p.get("copy_history"):
            # Systems that take no messages get the thread's other messages in the description.
            whole = await self._thread(origin.channel_id, root)
            own = next((i for i, m in enumerate(whole) if m.get("ts") == ts), len(whole))
            others = ""
            for heading, messages in (("Earlier", whole[:own]), ("Later", whole[own + 1:])):
                lines = "\n".join(f"<@{m.get('user')}>: {views.plain(m.get('text') or '')}"
                                  for m in messages if self._copyable(m))
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
        taken, display_id = await self.thread_ticket(origin.channel_id, root)
        if taken:
            raise BackendError(
                f"this thread already has ticket {display_id}" if display_id else "a ticket is already being created for this thread"
            )
        origin.thread_ts = root
        sub.payload["origin"] = {**sub.payload["origin"], **asdict(origin)}
        sub.thread_key = f"{origin.channel_id}:{root}"
        await self.storage.save_submission(sub)  # the unique thread key decides a race with another

    @staticmethod
    def _copyable(message: dict[str, Any]) -> bool:
        """A person's message in the conversation (not a bot's, the app's, or a join)."""
        return bool(message.get("user")) and not message.get("bot_id") and message.get("subtype") not in SKIPPED_SUBTYPES

    async def _step_history(self, sub: Submission) -> bool:
        """Copy the thread's other messages into the ticket before it is connected, each once;
        the connect then tells the system they are already in the thread."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        backend = self.backend(origin.backend)
        if not (p.get("copy_history") and sub.ticket and backend.can_add_messages and origin.channel_id and sub.thread_ts):
            return False
        ticket = self._ticket(sub)
        own = p.get("from_message", {}).get("ts") or origin.message_ts
        copied: dict[str, str] = p.setdefault("copied", {})
        unsaved = 0
        for message in await self._thread(origin.channel_id, sub.thread_ts):
            ts = message.get("ts")
            if not ts or ts == own or ts in copied or not self._copyable(message):
                continue
            if unsaved >= COPY_BATCH:  # progress in bounded saves: a long thread costs O(n), not O(n²)
                await self.storage.save_submission(sub)
                unsaved = 0
            self._hold(sub)
            person = await self._person(message["user"])
            author_id = await self._user_id(backend, message["user"], person, requester=False)
            # the back end names an author who is no user there in the text
            copied[ts] = await backend.add_message(ticket, ThreadMessage(
                text=views.plain(message.get("text") or ""), author=person or Person(name=f"<@{message['user']}>"),
                author_id=author_id, external_id=f"{origin.channel_id}:{ts}",
            )) or ""
            unsaved += 1
        return bool(copied)  # the last batch is saved with the step

    async def _history_failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The thread's earlier messages could not be copied into the ticket: {views.escape(why.reason)}")

    async def _create_failed(self, sub: Submission, why: Failure) -> None:
        sub.last_error = why.reason
        if why.field_errors:
            sub.payload["field_errors"] = why.field_errors
        sub.thread_key = None  # free the thread for another try
        sub.steps_done.update({COMPLETE, REPLY, HISTORY, CONNECT, FOLLOWUP})
        self._stop_queued_notice(sub.id)
        log.warning("submission %s: ticket not created: %s", sub.id, why.reason)

    def _stop_queued_notice(self, sub_id: str) -> None:
        """The outcome is known: the "queued" screen must not replace it."""
        timer = self._timers.pop(sub_id, None)
        if timer:
            timer.cancel()

    def _ticket(self, sub: Submission) -> CreatedTicket:
        assert sub.ticket is not None
        return journaled(CreatedTicket, sub.ticket)

    async def _step_complete(self, sub: Submission) -> bool:
        if sub.payload.get("add_to"):
            return False  # an existing ticket: its fields are its own
        backend = self.backend(sub.payload["origin"].get("backend"))
        await backend.complete_ticket(self._ticket(sub), await self._draft(sub, backend))
        return False  # safe to repeat: saved with the next step

    async def _complete_failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The ticket was created, but not all its fields could be set: {views.escape(why.reason)}")

    async def _step_reply(self, sub: Submission) -> bool:
        origin = journaled(Origin, sub.payload["origin"])
        ticket = self._ticket(sub)
        user_id = sub.payload["user_id"]
        title = sub.payload["title"]
        if origin.source in MESSAGE_SOURCES:
            return False  # the thread reply was the notice
        if origin.source == "shortcut" and origin.channel_id and origin.thread_ts:
            text = (
                views.linked_reply_text(ticket.display_id, user_id)
                if sub.payload.get("add_to")
                else views.thread_reply_text(ticket.display_id, title, user_id)
            )
            kwargs = dict(channel=origin.channel_id, thread_ts=origin.thread_ts, text=text)
        elif sub.payload.get("share") and origin.channel_id:
            kwargs = dict(channel=origin.channel_id, text=views.shared_ticket_text(ticket.display_id, title, user_id))
        else:
            return False  # nothing to post
        resp = await self.slack.chat_postMessage(**kwargs)
        if origin.source != "shortcut":
            sub.thread_ts = resp["ts"]
            await self.storage.add_link(
                Link(origin.channel_id, resp["ts"], ticket.id, ticket.display_id, ticket.backend), sub.id
            )
        return True

    async def _reply_failed(self, sub: Submission, why: Failure) -> None:
        origin = journaled(Origin, sub.payload["origin"])
        sub.warnings.append(
            f"I could not post in <#{origin.channel_id}> ({views.escape(why.reason)}); invite me to the channel to share tickets there."
        )
        if origin.source != "shortcut":
            sub.steps_done.add(CONNECT)  # no message, no thread to connect

    async def _step_connect(self, sub: Submission) -> bool:
        origin = journaled(Origin, sub.payload["origin"])
        backend = self.backend(origin.backend)
        if not (sub.thread_ts and origin.channel_id and backend.can_connect_threads):
            return False  # nothing to connect
        copied = tuple(i for i in (sub.payload.get("copied") or {}).values() if i)
        await backend.connect_thread(
            self._ticket(sub), origin.channel_id, sub.thread_ts, direct_message=origin.channel_id.startswith("D"),
            **({"accounted_for": copied} if copied else {}),
        )
        return True

    async def _connect_failed(self, sub: Submission, why: Failure) -> None:
        sub.warnings.append(f"The Slack thread could not be linked to the ticket: {views.escape(why.reason)}")

    async def _step_notify(self, sub: Submission) -> bool:
        """Tell the person the outcome as soon as it is known: the ticket id right after create."""
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        if origin.source in MESSAGE_SOURCES:
            await self._notify_in_thread(sub, origin)
            p["told_warnings"] = len(sub.warnings)
            return True
        if sub.ticket:
            ticket = self._ticket(sub)
            if p.get("add_to"):
                text = views.added_text(ticket.display_id, p["title"], sub.warnings)
            else:
                text = views.created_text(ticket.display_id, p["title"], sub.warnings)
        else:
            text = views.failed_text(sub.last_error or "unknown error", p["title"], p["description"])
        if p.get("view_id"):
            modal = await self._outcome_modal(sub)
            # Errors the person can fix: the form comes back with their values and the errors
            # beside the fields; a message follows only if the form is gone.
            if await self._update_view(p["view_id"], modal) and p.get("field_errors") and not sub.ticket:
                return True
        await self._tell(p["user_id"], origin.channel_id, text)
        p["told_warnings"] = len(sub.warnings)
        return True

    async def _outcome_modal(self, sub: Submission) -> dict[str, Any]:
        """What the form shows once the outcome is known: the ticket, or why there is none."""
        p = sub.payload
        if sub.ticket:
            ticket = self._ticket(sub)
            if p.get("add_to"):
                return views.added_modal(ticket.display_id, p["title"])
            return views.created_modal(ticket.display_id, p["title"])
        if p.get("field_errors"):
            return await self._form_with_errors(sub)
        return views.failed_modal(sub.last_error or "unknown error", p["title"], p["description"])

    async def _notify_in_thread(self, sub: Submission, origin: Origin) -> None:
        """A ticket from a conversation: the reply in its thread is the notice (with *Edit details*
        where the ticket can be edited); a failure goes to the person who asked, with the message."""
        p = sub.payload
        if not sub.ticket:
            text = views.failed_from_message_text(sub.last_error or "unknown error", p.get("message_text") or p["title"])
            await self._tell(p["user_id"], origin.channel_id, text)
            return
        ticket = self._ticket(sub)
        backend = self.backend(origin.backend)
        reply = views.ticket_thread_reply(
            ticket.display_id, p["title"], p.get("requester_id") or p["user_id"],
            sub.id if backend.can_edit else None, sub.warnings,
        )
        try:
            await self.slack.chat_postMessage(channel=origin.channel_id, thread_ts=origin.thread_ts, **reply)
        except SlackApiError as exc:
            if exc.response.get("error") not in SLACK_NO_ACCESS:
                raise
            await self.slack.chat_postMessage(channel=p["user_id"], text=reply["text"])

    async def _notify_failed(self, sub: Submission, why: Failure) -> None:
        log.error("submission %s: could not tell <%s> the outcome: %s", sub.id, sub.payload["user_id"], why.reason)
        sub.payload["told_warnings"] = len(sub.warnings)

    async def _step_followup(self, sub: Submission) -> bool:
        """What went wrong after the person was told the ticket id (a reply, the thread link)."""
        told = sub.payload.get("told_warnings", 0)
        if not sub.ticket or len(sub.warnings) <= told:
            return False
        p = sub.payload
        text = views.followup_text(self._ticket(sub).display_id, sub.warnings[told:])
        await self._tell(p["user_id"], journaled(Origin, p["origin"]).channel_id, text)
        p["told_warnings"] = len(sub.warnings)
        return True

    async def _tell(self, user_id: str, channel_id: str | None, text: str) -> None:
        """An ephemeral message where the person is; a DM when the bot cannot post there."""
        if channel_id:
            try:
                await self.slack.chat_postEphemeral(channel=channel_id, user=user_id, text=text)
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in SLACK_NO_ACCESS:
                    raise
        await self.slack.chat_postMessage(channel=user_id, text=text)

    async def _form_with_errors(self, sub: Submission) -> dict[str, Any]:
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        backend = self.backend(origin.backend)
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

    async def _update_view(self, view_id: str, view: dict[str, Any]) -> bool:
        try:
            await self.slack.views_update(view_id=view_id, view=view)
            return True
        except Exception as exc:  # the modal may be closed already; the message still goes out
            log.debug("views.update %s: %s", view_id, slack_error(exc))
            return False

    async def _show_queued_later(self, sub: Submission) -> None:
        """After `queued_after` without a ticket, the form says the ticket is queued. The journal
        is read before and after: the ticket may be created meanwhile (here or by another process)
        and its "created" screen may reach Slack before this one; the outcome is then shown again.
        Once it has begun to send, the notice is no longer cancelled (`_stop_queued_notice`): a
        request already on its way would still land, and only this task can put the outcome back."""
        try:
            await asyncio.sleep(self.queued_after)
            current = await self.storage.get_submission(sub.id)
            if not (current and current.status == "pending" and CREATE not in current.steps_done):
                return
            if self._timers.get(sub.id) is asyncio.current_task():
                del self._timers[sub.id]
            view_id = sub.payload["view_id"]
            name = self.backend(sub.payload["origin"].get("backend")).display_name
            await self._update_view(view_id, views.queued_modal(sub.payload["title"], name))
            current = await self.storage.get_submission(sub.id)
            if current and CREATE in current.steps_done:
                await self._update_view(view_id, await self._outcome_modal(current))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("queued notice for %s: %s", sub.id, exc)
        finally:
            if self._timers.get(sub.id) is asyncio.current_task():
                del self._timers[sub.id]


__all__ = ["TicketService", "ThreadTaken", "Failure", "failure"]
