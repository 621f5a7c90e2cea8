"""The ticket service: takes a validated form and carries it through
create → link → reply in Slack → connect the thread → notify the person.

Every submission is journaled (see `storage`) before Slack is acknowledged. Each step is recorded as
soon as it is done and never repeated; a step that fails for a passing reason (5xx, 429, timeouts,
dropped connections) is retried with exponential backoff and jitter, and unfinished submissions
resume when the bot starts. A create attempt that may have reached the ticket system is followed, on
the next attempt, by a lookup for the submission's reference, so a retry never makes a duplicate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import time
from dataclasses import asdict
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import BackendError, CreatedTicket, FormField, TicketBackend, TicketDraft

from . import views
from .drafts import Form, values_from_json
from .people import People
from .storage import Link, Storage, Submission, ThreadTaken
from .views import Origin

log = logging.getLogger(__name__)

CREATE, COMPLETE, REPLY, CONNECT, NOTIFY = "create", "complete", "reply", "connect", "notify"
SLACK_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
# Errors that mean "the bot cannot post there"; the person is told in a DM instead.
SLACK_NO_ACCESS = {"not_in_channel", "channel_not_found", "is_archived", "user_not_in_channel", "restricted_action"}


class RetryLater(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def slack_transient(exc: BaseException) -> bool:
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status == 429 or status >= 500 or exc.response.get("error") in SLACK_TRANSIENT
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError))


def slack_error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or "unknown Slack error")
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
    ) -> None:
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
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # At most this many submissions move through their steps at once; the rest wait their turn
        # (journaled, with the "queued" notice after queued_after). Without a bound, a burst puts
        # hundreds of requests into httpx's pool, whose bookkeeping is quadratic in waiting requests.
        self._active = asyncio.Semaphore(max_active)

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
    ) -> Submission:
        """Journal a submission and start working on it. A repeat of an earlier submission (same
        dedupe key) returns the earlier one and starts nothing. Raises ThreadTaken."""
        thread_key = (
            f"{origin.channel_id}:{origin.thread_ts}"
            if origin.source == "shortcut" and origin.channel_id and origin.thread_ts
            else None
        )
        payload = {
            "origin": asdict(origin),
            "user_id": user_id,
            "requester_id": requester_id or origin.requester_id or user_id,
            "view_id": view_id,
            "title": form.title,
            "description": form.description,
            "values": form.values_json(),
            "share": form.share and origin.source == "command" and origin.shareable_channel,
        }
        sub, new = await self.storage.add_submission(Submission.new(dedupe_key, payload, thread_key))
        if new:
            self._schedule(sub.id)
        return sub

    async def resume(self) -> int:
        """Pick up every unfinished submission (after a crash or restart)."""
        pending = await self.storage.pending_submissions()
        for sub in pending:
            self._schedule(sub.id)
        if pending:
            log.info("resuming %d unfinished submission(s)", len(pending))
        return len(pending)

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until no submission is being worked on (for shutdown and benchmarks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return
            await asyncio.wait(list(self._tasks.values()), timeout=remaining)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def recent_tickets(self, user_id: str, limit: int = 10) -> list[views.HomeTicket]:
        """The person's recent tickets, with current status and thread link where they can be had
        quickly (the Home tab must not hang on a slow ticket system)."""
        subs = await self.storage.tickets_of(user_id, limit)

        async def one(sub: Submission) -> views.HomeTicket:
            ticket = self._ticket(sub)
            origin = Origin(**sub.payload["origin"])
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

    # --- the steps -----------------------------------------------------------------------

    def _schedule(self, sub_id: str) -> None:
        if sub_id in self._tasks:
            return
        task = asyncio.create_task(self._process(sub_id), name=f"submission-{sub_id}")
        self._tasks[sub_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(sub_id, None))

    async def _process(self, sub_id: str) -> None:
        sub = await self.storage.get_submission(sub_id)
        if sub is None or sub.status != "pending":
            return
        timer = None
        if CREATE not in sub.steps_done and sub.payload.get("view_id"):
            timer = asyncio.create_task(self._show_queued_later(sub))
        try:
            while sub.status == "pending":
                wait = sub.next_attempt_at - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    async with self._active:
                        await self._advance(sub, timer)
                except RetryLater as again:
                    self._plan_retry(sub, again)
                    await self.storage.save_submission(sub)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug: keep the submission pending so a restart retries it
            log.exception("submission %s stopped unexpectedly; it resumes on restart", sub_id)
        finally:
            if timer:
                timer.cancel()

    def _plan_retry(self, sub: Submission, again: RetryLater) -> None:
        sub.attempts += 1
        sub.last_error = again.reason
        if time.time() - sub.created_at > self.give_up_after:
            # Stop retrying: the step in progress becomes a permanent failure.
            sub.payload["gave_up"] = again.reason
        delay = min(self.retry_max, self.retry_base * 2 ** min(sub.attempts - 1, 20))
        delay *= random.uniform(0.5, 1.0)
        if again.retry_after is not None:
            delay = max(delay, again.retry_after)
        sub.next_attempt_at = time.time() + delay
        log.info("submission %s: attempt %d failed (%s); retrying in %.1fs", sub.id, sub.attempts, again.reason, delay)

    async def _advance(self, sub: Submission, timer: asyncio.Task[None] | None) -> None:
        if CREATE not in sub.steps_done:
            await self._step_create(sub)
            if timer:
                timer.cancel()
        if COMPLETE not in sub.steps_done:
            await self._step_complete(sub)
        if REPLY not in sub.steps_done:
            await self._step_reply(sub)
        if CONNECT not in sub.steps_done:
            await self._step_connect(sub)
        if NOTIFY not in sub.steps_done:
            await self._step_notify(sub, save=False)  # saved with the final status, just below
        sub.status = "done" if sub.ticket else "failed"
        await self.storage.save_submission(sub)

    async def _done(self, sub: Submission, step: str, *, save: bool = True) -> None:
        """Mark a step done. `save=False` for a step that did nothing outside the bot (nothing to
        repeat if it is lost): the next save records it."""
        sub.steps_done.add(step)
        sub.next_attempt_at = 0.0
        if save:
            await self.storage.save_submission(sub)

    def _gave_up(self, sub: Submission) -> str | None:
        return sub.payload.get("gave_up")

    async def _draft(self, sub: Submission, backend: TicketBackend) -> TicketDraft:
        p = sub.payload
        origin = Origin(**p["origin"])
        requester_slack = p.get("requester_id") or origin.requester_id or p["user_id"]
        try:
            submitter = await self.people.get(p["user_id"])
            requester = submitter if requester_slack == p["user_id"] else await self.people.get(requester_slack)
        except Exception as exc:
            if slack_transient(exc):
                raise RetryLater(f"Slack users.info: {slack_error(exc)}") from exc
            raise
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

    async def _step_create(self, sub: Submission) -> None:
        backend = self.backend(sub.payload["origin"].get("backend"))
        try:
            draft = await self._draft(sub, backend)
            ticket = None
            if sub.maybe_created:
                since = dt.datetime.fromtimestamp(sub.created_at, dt.timezone.utc)
                ticket = await backend.find_ticket(draft, since)
                if ticket:
                    log.info("submission %s: found ticket %s from an earlier attempt", sub.id, ticket.display_id)
            if ticket is None:
                earlier = sub.maybe_created
                sub.maybe_created = True  # from here a crash leaves "maybe": the next attempt looks first
                await self.storage.save_submission(sub)
                try:
                    ticket = await backend.create_ticket(draft)
                except BackendError as exc:
                    if not exc.ambiguous:
                        sub.maybe_created = earlier
                    raise
        except BackendError as exc:
            if exc.transient and not self._gave_up(sub):
                raise RetryLater(exc.message, exc.retry_after) from exc
            sub.last_error = exc.message if not self._gave_up(sub) else (
                f"{backend.display_name} has not answered for too long ({exc.message})"
            )
            if exc.field_errors:
                sub.payload["field_errors"] = exc.field_errors
            sub.thread_key = None  # free the thread for another try
            sub.steps_done.update({COMPLETE, REPLY, CONNECT})
            log.warning("submission %s: ticket not created: %s", sub.id, sub.last_error)
            await self._done(sub, CREATE)
            return
        sub.ticket = asdict(ticket)
        origin = Origin(**sub.payload["origin"])
        if sub.thread_key and origin.channel_id and origin.thread_ts:
            sub.thread_ts = origin.thread_ts
            await self.storage.add_link(
                Link(origin.channel_id, origin.thread_ts, ticket.id, ticket.display_id, ticket.backend), sub.id
            )
        log.info("submission %s: created %s %s", sub.id, ticket.backend, ticket.display_id)
        await self._done(sub, CREATE)

    def _ticket(self, sub: Submission) -> CreatedTicket:
        assert sub.ticket is not None
        return CreatedTicket(**sub.ticket)

    async def _step_complete(self, sub: Submission) -> None:
        backend = self.backend(sub.payload["origin"].get("backend"))
        try:
            await backend.complete_ticket(self._ticket(sub), await self._draft(sub, backend))
        except BackendError as exc:
            if exc.transient and not self._gave_up(sub):
                raise RetryLater(exc.message, exc.retry_after) from exc
            sub.warnings.append(f"The ticket was created, but not all its fields could be set: {exc.message}")
        await self._done(sub, COMPLETE)

    async def _step_reply(self, sub: Submission) -> None:
        origin = Origin(**sub.payload["origin"])
        ticket = self._ticket(sub)
        user_id = sub.payload["user_id"]
        title = sub.payload["title"]
        if origin.source == "shortcut" and origin.channel_id and origin.thread_ts:
            kwargs = dict(
                channel=origin.channel_id,
                thread_ts=origin.thread_ts,
                text=views.thread_reply_text(ticket.display_id, title, user_id),
            )
        elif sub.payload.get("share") and origin.channel_id:
            kwargs = dict(channel=origin.channel_id, text=views.shared_ticket_text(ticket.display_id, title, user_id))
        else:
            await self._done(sub, REPLY, save=False)  # nothing to post
            return
        try:
            resp = await self.slack.chat_postMessage(**kwargs)
        except Exception as exc:
            if slack_transient(exc) and not self._gave_up(sub):
                raise RetryLater(f"Slack chat.postMessage: {slack_error(exc)}") from exc
            sub.warnings.append(
                f"I could not post in <#{origin.channel_id}> ({slack_error(exc)}); invite me to the channel to share tickets there."
            )
            if origin.source != "shortcut":
                sub.steps_done.add(CONNECT)  # no message, no thread to connect
        else:
            if origin.source != "shortcut":
                sub.thread_ts = resp["ts"]
                await self.storage.add_link(
                    Link(origin.channel_id, resp["ts"], ticket.id, ticket.display_id, ticket.backend), sub.id
                )
        await self._done(sub, REPLY)

    async def _step_connect(self, sub: Submission) -> None:
        origin = Origin(**sub.payload["origin"])
        backend = self.backend(origin.backend)
        if not (sub.thread_ts and origin.channel_id and backend.can_connect_threads):
            await self._done(sub, CONNECT, save=False)  # nothing to connect
            return
        try:
            await backend.connect_thread(
                self._ticket(sub), origin.channel_id, sub.thread_ts, direct_message=origin.channel_id.startswith("D")
            )
        except BackendError as exc:
            if exc.transient and not self._gave_up(sub):
                raise RetryLater(exc.message, exc.retry_after) from exc
            sub.warnings.append(f"The Slack thread could not be linked to the ticket: {exc.message}")
        await self._done(sub, CONNECT)

    async def _step_notify(self, sub: Submission, *, save: bool = True) -> None:
        p = sub.payload
        origin = Origin(**p["origin"])
        if sub.ticket:
            ticket = self._ticket(sub)
            text = views.created_text(ticket.display_id, p["title"], sub.warnings)
            modal = views.created_modal(ticket.display_id, p["title"])
        else:
            reason = sub.last_error or "unknown error"
            text = views.failed_text(reason, p["title"], p["description"])
            modal = views.failed_modal(reason, p["title"], p["description"])
            if p.get("field_errors") and p.get("view_id"):
                # Errors the person can fix: the form comes back with their values and the errors
                # beside the fields; a message follows only if the form is gone.
                if await self._update_view(p["view_id"], await self._form_with_errors(sub)):
                    await self._done(sub, NOTIFY, save=save)
                    return
        if p.get("view_id"):
            await self._update_view(p["view_id"], modal)
        try:
            await self._tell(p["user_id"], origin.channel_id, text)
        except Exception as exc:
            if slack_transient(exc) and not self._gave_up(sub):
                raise RetryLater(f"Slack: {slack_error(exc)}") from exc
            log.error("submission %s: could not tell <%s> the outcome: %s", sub.id, p["user_id"], slack_error(exc))
        await self._done(sub, NOTIFY, save=save)

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
        origin = Origin(**p["origin"])
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
        await asyncio.sleep(self.queued_after)
        name = self.backend(sub.payload["origin"].get("backend")).display_name
        await self._update_view(sub.payload["view_id"], views.queued_modal(sub.payload["title"], name))


__all__ = ["TicketService", "ThreadTaken"]
