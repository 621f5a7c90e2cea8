"""Following tickets after they are filed (docs/after-the-ticket.md).

Ticket systems that send no webhook are polled: one process at a time (the database lease
`ticket poller`, renewed while it lives; another replica takes over when it lapses) looks at the
followed tickets that are due, one bounded call each (`TicketBackend.ticket_state`), never more than
`STATUS_POLL_MAX_PER_MINUTE` calls a minute. A ticket changed recently is looked at every
`STATUS_POLL_SECONDS`, one quiet for a day five times less often, one quiet for a week fifteen times
less often, and one unchanged for `TRACK_DAYS` no more. A 429 or an outage pauses that ticket
system's polling (its Retry-After, else doubling from `STATUS_POLL_SECONDS` up to 15 minutes).

What was last seen is stored (`followed.seen`): a change edits the card (`chat.update`) and is
then saved, so it is applied once; a closure is announced once (`Storage.claim_closure`). Slack's
answers go through the failure rule (`bot.pipeline.failures`): one that may pass (a 429) waits and
the change is applied at the next look; a card that cannot be edited (deleted, `cant_update_message`)
is left alone from then on."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from clients.base import BackendError, CreatedTicket, Person, ThreadMessage, TicketBackend, TicketState

from ..installations import Workspace
from ..journal.storage import Followed, Storage, Submission, journaled
from ..ops import metrics
from ..slack import cards
from ..slack.people import People
from ..slack.views import Origin
from ..pipeline.failures import SLACK_NO_ACCESS, failure

log = logging.getLogger(__name__)

LEASE = "ticket poller"
DAY = 86400.0
MAX_PAUSE = 900.0  # the longest wait after failures in a row


def _state(seen: dict[str, Any] | None) -> TicketState | None:
    return journaled(TicketState, seen) if seen is not None else None


class Budget:
    """At most `per_minute` calls in any 60 seconds (this process; one process polls at a time)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._calls: collections.deque[float] = collections.deque()

    def left(self) -> int:
        now = time.monotonic()
        while self._calls and self._calls[0] <= now - 60.0:
            self._calls.popleft()
        return self.per_minute - len(self._calls)

    def spend(self) -> None:
        self._calls.append(time.monotonic())


class Follower:
    name = "follow"  # the pipeline step that starts following a new ticket

    def __init__(
        self,
        storage: Storage,
        backends: dict[str, TicketBackend],
        slack: AsyncWebClient,
        people: People,
        *,
        owner: str,
        poll_seconds: float = 60.0,
        track_days: float = 30.0,
        max_per_minute: int = 60,
        notices: str = "thread",
        publish_home: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        """`slack` should not sleep on rate limits itself: a 429 leaves the change for the next look."""
        self.storage, self.backends, self.slack, self.people = storage, backends, slack, people
        self.owner = owner
        self.poll_seconds, self.track_days, self.notices = poll_seconds, track_days, notices
        self.budget = Budget(max_per_minute)
        self.publish_home = publish_home
        self.tick_seconds = min(max(poll_seconds / 4, 0.05), 5.0)
        self.lease_seconds = max(10.0, self.tick_seconds * 4)
        self._paused: dict[str, float] = {}  # back end -> monotonic time its polling resumes
        self._failures: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._homes: dict[str, asyncio.Task[None]] = {}  # Home tabs being published again, by person
        self._home_again: set[str] = set()
        self._wake = asyncio.Event()  # a webhook brought something: the next round now, not at the tick
        self.holds_lease = False

    # --- the pipeline step: a new ticket is followed ------------------------------------------

    async def run(self, sub: Submission) -> bool:
        """Start following the submission's ticket, with its card when the bot posted one."""
        if not sub.ticket:
            return False
        p = sub.payload
        origin = journaled(Origin, p["origin"])
        ticket = journaled(CreatedTicket, sub.ticket)
        backend = self.backends.get(ticket.backend)
        if backend is None or not backend.can_follow:
            return False
        posted = p.get("card") or {}
        now = time.time()
        await self.storage.follow(Followed(
            backend=ticket.backend, ticket_id=ticket.id, ticket=sub.ticket, title=p["title"], submission_id=sub.id,
            requester_id=p.get("requester_id") or origin.requester_id or p["user_id"], submitter_id=p["user_id"],
            channel_id=posted.get("channel"), thread_ts=posted.get("thread_ts"), card_ts=posted.get("ts"),
            card=posted.get("card"), next_poll_at=now + self.poll_seconds, changed_at=now, created_at=now,
            workspace=p.get("workspace"),
        ))
        return True

    async def failed(self, sub: Submission, why: Any) -> None:
        log.warning("submission %s: its ticket is not followed: %s", sub.id, why.reason)

    # --- the poller ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None and any(b.can_follow for b in self.backends.values()):
            self._task = asyncio.create_task(self._loop(), name="ticket poller")

    async def close(self) -> None:
        """Stop polling at once (a look cut short is done again by whoever polls next) and hand
        the lease back, so another replica carries on without waiting for it to lapse."""
        tasks = [t for t in (self._task, *self._homes.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task, self._homes = None, {}
        if self.holds_lease:
            try:
                await self.storage.drop_lease(LEASE, self.owner)
            except Exception as exc:
                log.info("could not hand the poller's lease back (%s); it lapses", type(exc).__name__)
            self.holds_lease = False

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.tick()
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or Slack unreachable: one line per outage
                why = failure(exc)
                if not failing or not why.transient:
                    log.warning("the ticket poller failed (%s); it tries again", why.reason)
                failing = True
            try:
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> int:
        """One round: while this process holds the lease, apply what webhooks brought, then look
        at the due tickets within the budget (a call asks about up to `state_batch` tickets of one
        system). Returns how many tickets were looked at."""
        self.holds_lease = await self.storage.take_lease(LEASE, self.owner, self.lease_seconds)
        if not self.holds_lease:
            return 0
        left = self.budget.left()
        batch = max((b.state_batch for b in self.backends.values() if b.can_follow), default=1)
        due = await self.storage.due_followed(min(max(left, 0) * batch, 5000) + 100)
        looked = 0
        renewed = time.monotonic()
        chunks: dict[str, list[Followed]] = {}
        for f in due:
            if time.monotonic() - renewed > self.lease_seconds / 3:
                if not await self.storage.take_lease(LEASE, self.owner, self.lease_seconds):
                    self.holds_lease = False
                    return looked
                renewed = time.monotonic()
            if f.pushed is not None:  # a webhook told: no call needed
                if await self.apply(f, journaled(TicketState, f.pushed), time.time()):
                    await self.storage.pushed_applied(f.backend, f.ticket_id, f.pushed)
                looked += 1
                continue
            backend = self.backends.get(f.backend)
            if self._paused.get(f.backend, 0.0) > time.monotonic() or self.budget.left() <= 0:
                continue
            chunk = chunks.setdefault(f.backend, [])
            chunk.append(f)
            if backend is None or len(chunk) >= backend.state_batch:
                await self.look(chunks.pop(f.backend))
                looked += len(chunk)
        for chunk in chunks.values():
            if self.budget.left() > 0 and self._paused.get(chunk[0].backend, 0.0) <= time.monotonic():
                await self.look(chunk)
                looked += len(chunk)
        return looked

    def interval(self, changed_at: float, now: float) -> float:
        quiet = now - changed_at
        if quiet < DAY:
            return self.poll_seconds
        return self.poll_seconds * (5 if quiet < 7 * DAY else 15)

    async def look(self, fs: Followed | list[Followed]) -> None:
        """Ask the ticket system how these tickets (of one system) are now, in one call, and act
        on what changed."""
        fs = [fs] if isinstance(fs, Followed) else fs
        backend = self.backends.get(fs[0].backend)
        if backend is None or not backend.can_follow:
            for f in fs:  # its back end is no longer configured
                await self.storage.stop_following(f.backend, f.ticket_id)
            return
        now = time.time()
        self.budget.spend()
        try:
            states = await backend.ticket_states([journaled(CreatedTicket, f.ticket) for f in fs])
        except Exception as exc:
            await self._call_failed(fs, backend, exc, now)
            return
        metrics.poll_call(backend.name, "ok")
        self._failures.pop(backend.name, None)
        for f in fs:
            state = states.get(f.ticket_id)
            if state is None:
                metrics.poll_call(backend.name, "gone")
                log.info("%s ticket %s is gone; no longer followed", backend.display_name, f.ticket.get("display_id"))
                await self.storage.stop_following(f.backend, f.ticket_id)
            else:
                await self.apply(f, state, now)

    async def _call_failed(self, fs: list[Followed], backend: TicketBackend, exc: Exception, now: float) -> None:
        if isinstance(exc, BackendError) and exc.status == 404:
            metrics.poll_call(backend.name, "gone")
            for f in fs:
                log.info("%s ticket %s is gone; no longer followed", backend.display_name, f.ticket.get("display_id"))
                await self.storage.stop_following(f.backend, f.ticket_id)
            return
        why = failure(exc)
        if not why.transient:  # refused: asked again at the ticket's pace, never faster
            metrics.poll_call(backend.name, "refused")
            log.warning("%s refused to tell the state of %s: %s", backend.display_name,
                        ", ".join(str(f.ticket.get("display_id")) for f in fs), why.reason)
            for f in fs:
                await self.storage.poll_later(f.backend, f.ticket_id, now + self.interval(f.changed_at, now) * 5)
            return
        limited = isinstance(exc, BackendError) and exc.status == 429
        metrics.poll_call(backend.name, "rate_limited" if limited else "error")
        failures = self._failures[backend.name] = self._failures.get(backend.name, 0) + 1
        pause = why.retry_after or min(self.poll_seconds * 2 ** (failures - 1), MAX_PAUSE)
        self._paused[backend.name] = time.monotonic() + pause
        log.info("%s: %s; polling it again in %.0f s", backend.display_name, why.reason, pause)
        for f in fs:
            await self.storage.poll_later(f.backend, f.ticket_id, now + pause)

    async def pushed(self, backend_name: str, body: Any, event_id: str) -> int:
        """A webhook of a ticket system: each state it tells is journaled for the poller (before
        the caller answers), once per event id. Returns how many followed tickets it concerned.
        Raises ValueError for a body that cannot be read, KeyError for a system not configured."""
        backend = self.backends[backend_name]
        states = backend.webhook_states(body)
        if not states or not await self.storage.first_delivery(f"{backend_name}:{event_id}"):
            return 0  # nothing about a state, or delivered before
        found = 0
        for ticket_id, state in states:
            found += await self.storage.push_state(backend_name, ticket_id, dataclasses.asdict(state))
        if found:
            self._wake.set()  # applied at once when this process polls; else at the poller's next round
        return found

    async def apply(self, f: Followed, state: TicketState, now: float) -> bool:
        """Act on the ticket's state as now known: edit the card, announce a closure, remember it.
        False when that has to wait (Slack answered 429 or is down): it is done at the next look."""
        Workspace.use(Workspace.of(f.workspace))  # installs by OAuth: its card is edited with its workspace's token
        seen = dataclasses.asdict(state)
        if f.seen == seen:
            if now - f.changed_at > self.track_days * DAY:
                await self.storage.stop_following(f.backend, f.ticket_id)
            else:
                await self.storage.poll_later(f.backend, f.ticket_id, now + self.interval(f.changed_at, now))
            return True
        if f.seen is not None:
            metrics.ticket_change(f.backend)
        card = journaled(cards.Card, f.card) if f.card else None
        # the first look edits the card only where it says more than the card as posted
        shown = _state(f.seen) or cards.NEW
        if card and cards.card_message(card, shown) == cards.card_message(card, state):
            card = None
        if card and f.card_ts and f.channel_id and not f.card_dead:
            try:
                await self.slack.chat_update(channel=f.channel_id, ts=f.card_ts, **cards.card_message(card, state))
            except Exception as exc:
                why = failure(exc)
                if why.transient:  # a 429 waits: the change is applied at the next look
                    await self.storage.poll_later(f.backend, f.ticket_id, now + (why.retry_after or self.poll_seconds))
                    return False
                log.info("the card of %s cannot be edited (%s); it is left as it is", f.ticket.get("display_id"), why.reason)
                await self.storage.card_dead(f.backend, f.ticket_id)
        before = _state(f.seen)
        if state.closed and not (before and before.closed):
            if not await self._announce(f, state):
                await self.storage.poll_later(f.backend, f.ticket_id, now + self.poll_seconds)
                return False
        await self.storage.save_seen(f.backend, f.ticket_id, seen, now, now + self.poll_seconds)
        for user_id in f.people:
            self._republish(user_id)
        return True

    def _republish(self, user_id: str) -> None:
        """Publish the person's Home tab again, beside the poller (it never waits for it); one
        publication per person at a time, and one more when a ticket of theirs changed meanwhile."""
        if self.publish_home is None:
            return
        running = self._homes.get(user_id)
        if running is not None and not running.done():
            self._home_again.add(user_id)
            return
        self._homes[user_id] = asyncio.create_task(self._publish(user_id), name="republish Home")

    async def _publish(self, user_id: str) -> None:
        assert self.publish_home is not None
        while True:
            self._home_again.discard(user_id)
            try:
                await self.publish_home(user_id)
            except Exception as exc:  # the next visit to Home shows it
                log.info("could not republish the Home tab of %s: %s", user_id, type(exc).__name__)
            if user_id not in self._home_again:
                self._homes.pop(user_id, None)
                return

    async def _announce(self, f: Followed, state: TicketState) -> bool:
        """The one notice of this closure. False when it could not be sent for a reason that may
        pass (it is tried again at the next look)."""
        claimed = await self.storage.claim_closure(f.backend, f.ticket_id, f.closures, dataclasses.asdict(state))
        if self.notices == "off" or not claimed:
            return True  # off, or announced already (by another process, or before a restart)
        backend = self.backends[f.backend]
        ticket = journaled(CreatedTicket, f.ticket)
        message = cards.closed_notice(
            ticket.display_id, f.title, state, by=None if f.closed_by else state.assignee, by_user=f.closed_by,
            key_value=cards.key(f.backend, f.ticket_id) if backend.can_close else None, url=backend.link(ticket),
            minimal=bool((f.card or {}).get("minimal")),
        )
        in_thread = self.notices == "thread" and f.channel_id and f.thread_ts
        to = f.requester_id or f.submitter_id
        try:
            try:
                if not in_thread:
                    raise LookupError
                await self.slack.chat_postMessage(channel=f.channel_id, thread_ts=f.thread_ts, **message)
                metrics.status_notice("thread")
            except (LookupError, SlackApiError) as exc:
                if isinstance(exc, SlackApiError) and exc.response.get("error") not in SLACK_NO_ACCESS:
                    raise
                if not to:
                    return True
                await self.slack.chat_postMessage(channel=to, **message)
                metrics.status_notice("dm")
        except Exception as exc:
            why = failure(exc)
            if why.transient:
                await self.storage.unclaim_closure(f.backend, f.ticket_id, f.closures + 1, f.seen)
                return False
            metrics.status_notice("failed")
            log.warning("the notice that %s is %s could not be sent: %s", ticket.display_id, state.phase, why.reason)
        return True

    # --- what people do from the card -----------------------------------------------------------

    async def _theirs(self, user_id: str, backend_name: str, ticket_id: str) -> tuple[Followed, TicketBackend]:
        f = await self.storage.followed(backend_name, ticket_id)
        if f is None or user_id not in f.people:
            raise PermissionError("only the person the ticket is for and the person who filed it can do that")
        backend = self.backends.get(backend_name)
        if backend is None:
            raise BackendError("that ticket system is no longer configured here")
        return f, backend

    async def set_closed(self, user_id: str, backend_name: str, ticket_id: str, closed: bool) -> str:
        """*Close ticket* / *Reopen*: returns the ticket's display id. Raises PermissionError, or
        BackendError with the reason for the person. The card and the notice follow at once."""
        f, backend = await self._theirs(user_id, backend_name, ticket_id)
        if not backend.can_close:
            raise BackendError(f"{backend.display_name} tickets cannot be closed or reopened from Slack")
        await backend.set_closed(journaled(CreatedTicket, f.ticket), closed)
        await self.storage.closed_by(backend_name, ticket_id, user_id if closed else None)
        log.info("%s %s by %s", f.ticket.get("display_id"), "closed" if closed else "reopened", user_id)
        fresh = await self.storage.followed(backend_name, ticket_id)
        if fresh is not None and self.budget.left() > 0:
            try:
                await self.look(fresh)
            except Exception:  # the poller shows it at its next look
                log.exception("could not show the change of %s at once", f.ticket.get("display_id"))
        return str(f.ticket.get("display_id"))

    async def display_id(self, backend_name: str, ticket_id: str) -> str | None:
        f = await self.storage.followed(backend_name, ticket_id)
        return str(f.ticket.get("display_id")) if f else None

    async def comment(self, user_id: str, backend_name: str, ticket_id: str, text: str) -> str:
        """*Add a comment*: the text goes to the ticket as the person's message (their user in
        the ticket system as its author when they have one; else their name in the text)."""
        f, backend = await self._theirs(user_id, backend_name, ticket_id)
        if not backend.can_add_messages:
            raise BackendError(f"{backend.display_name} tickets cannot be commented on from Slack")
        profile = await self.people.profile(user_id)
        person = profile.person if profile else Person(name=f"<@{user_id}>")
        author_id = None
        if backend.can_match_users and person.email:
            author_id = await backend.find_user(person.email)
        await backend.add_message(journaled(CreatedTicket, f.ticket), ThreadMessage(
            text=text, author=person, author_id=author_id,
        ))
        log.info("%s: comment added by %s", f.ticket.get("display_id"), user_id)
        return str(f.ticket.get("display_id"))
