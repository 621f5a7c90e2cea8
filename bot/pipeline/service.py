"""The ticket service: what the handlers use. Intake journals what people ask for (`intake`), the
durable worker (`worker`: leases, retries, the failure rule) carries each submission through the
ticket steps, in this order:

create → notify the person → complete → end a workflow step's execution → reply in Slack → copy
the thread's history → connect the thread → follow-up notice → follow the ticket (`bot.follow`,
when the back end can)

(`create`, `tell`, `workflow`, `thread`; what they share is in `context`, who a ticket is for in
`requesters`). Home's ticket list and *Edit details* read the journal and the ticket system here.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from clients.base import BackendError, CreatedTicket, FormField, TicketBackend

from ..slack import views
from ..journal.storage import Storage, Submission, ThreadTaken, journaled
from ..slack.people import People
from ..slack.views import Origin
from .context import Context
from .create import Complete, Create
from .failures import SLACK_NO_ACCESS, failure, slack_error
from .intake import Intake
from .queued import QueuedNotices
from .requesters import Requesters
from .tell import Followup, Notify
from .thread import Connect, History, Reply
from .worker import Failure, Step, Worker
from .workflow import Function

log = logging.getLogger(__name__)

DETAILS_WAIT = 5.0  # seconds the *Edit details* form waits for the ticket's current details


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
        follower: Any = None,
    ) -> None:
        """`slack` should not sleep on rate limits itself (no rate-limit retry handler): a 429
        becomes a journal retry that frees the submission's slot."""
        if default_backend not in backends:
            raise ValueError(f"default back end {default_backend!r} is not configured")
        self.storage = storage
        self.slack = slack
        self.is_admin = is_admin  # may edit any ticket's details
        self.worker = Worker(
            storage,
            [],
            owner=owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}",
            classify=failure,
            gave_up=self._gave_up,
            outcome=lambda sub: "done" if sub.ticket else "failed",
            max_active=max_active,  # at once in this process; the rest wait in the journal
            lease_seconds=lease_seconds,
            poll_seconds=poll_seconds,
            retry_base=retry_base,
            retry_max=retry_max,
            give_up_after=give_up_after,
            retention_seconds=retention_seconds,
            purge_every=purge_every,
        )
        self.ctx = ctx = Context(
            storage, backends, default_backend, slack, people, self.worker.hold,
            unmatched_requester=unmatched_requester, identity_refresh=identity_refresh,
            may_file_for_others=may_file_for_others,
        )
        who = Requesters(ctx)
        notify = Notify(ctx)
        self.notices = QueuedNotices(ctx, notify.outcome_modal, queued_after)
        steps = [Create(ctx, who, self.notices), notify, Complete(ctx, who), Function(ctx), Reply(ctx),
                 History(ctx, who), Connect(ctx), Followup(ctx)]
        if follower is not None:  # the ticket is followed after it is filed (bot.follow)
            steps.append(follower)
        self.worker.steps = [Step(s.name, s.run, s.failed) for s in steps]
        self.intake = Intake(storage, self.worker, self.notices, router)

    # --- what handlers call ------------------------------------------------------------------

    @property
    def backends(self) -> dict[str, TicketBackend]:
        return self.ctx.backends

    def backend(self, name: str | None = None) -> TicketBackend:
        """The named back end; the default one for None or a name no longer configured."""
        return self.ctx.backend(name)

    async def form_fields(self, backend: str | None = None) -> list[FormField]:
        """The extra fields the back end's form needs (back ends cache these themselves)."""
        return await self.backend(backend).form_fields()

    def link_of(self, ticket: dict[str, Any]) -> str | None:
        """The page of a journaled ticket (`Submission.ticket`), for a message naming it."""
        return self.ctx.link(journaled(CreatedTicket, ticket))

    async def thread_ticket(self, channel_id: str, thread_ts: str) -> tuple[bool, str | None]:
        """(taken, display id): is this thread linked to a ticket, or about to be?"""
        return await self.ctx.thread_ticket(channel_id, thread_ts)

    async def submit(self, **kwargs: Any) -> Submission:
        """A form: see `Intake.submit`."""
        return await self.intake.submit(**kwargs)

    async def submit_message(self, **kwargs: Any) -> Submission:
        """A message in a conversation: see `Intake.submit_message`."""
        return await self.intake.submit_message(**kwargs)

    async def submit_addition(self, **kwargs: Any) -> Submission:
        """*Add to ticket*: see `Intake.submit_addition`."""
        return await self.intake.submit_addition(**kwargs)

    async def submit_function(self, **kwargs: Any) -> Submission:
        """An execution of the *Create a ticket* workflow step: see `Intake.submit_function`."""
        return await self.intake.submit_function(**kwargs)

    async def first_delivery(self, event_id: str) -> bool:
        """Record a Slack event id; False when it was recorded before (a redelivery)."""
        return await self.intake.first_delivery(event_id)

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
        await self.worker.close(grace, also=self.notices.tasks())

    async def recent_tickets(self, user_id: str, limit: int = 10) -> list[views.HomeTicket]:
        """The person's recent tickets, with current status and thread link where they can be had
        quickly (the Home tab must not hang on a slow ticket system)."""
        subs = await self.storage.tickets_of(user_id, limit)
        # What the poller last saw of followed tickets; the others are asked (briefly)
        seen = {(f.backend, f.ticket_id): f.seen for f in await self.storage.followed_of(user_id) if f.seen}

        async def one(sub: Submission) -> views.HomeTicket:
            ticket = self.ctx.ticket(sub)
            origin = journaled(Origin, sub.payload["origin"])
            status = link = None
            known = seen.get((ticket.backend, ticket.id))
            if known is not None:
                status = known.get("status") or str(known.get("phase") or "").capitalize() or None
            else:
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
            return views.HomeTicket(ticket.display_id, sub.payload["title"], status, link, created,
                                    self.ctx.link(ticket))

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
        p, ticket = sub.payload, self.ctx.ticket(sub)
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
        ticket = self.ctx.ticket(sub)
        await self.backend(sub.payload["origin"].get("backend")).update_ticket(
            ticket, title=title, priority_id=priority_id, due_date=due_date
        )
        log.info("submission %s: %s edited by %s", sub.id, ticket.display_id, user_id)
        return ticket.display_id

    def _gave_up(self, sub: Submission, why: Failure) -> Failure:
        name = self.backend(sub.payload["origin"].get("backend")).display_name
        return Failure(f"{name} has not answered for too long ({why.reason})", False)


__all__ = ["TicketService", "ThreadTaken", "Failure", "failure", "slack_error", "SLACK_NO_ACCESS"]
