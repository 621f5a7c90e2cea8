"""The durable worker: carries journaled work through a list of named steps, on any number of
processes, and knows nothing of what the steps do.

- Work is held by lease. The worker claims due work from the journal (at most `max_active` at
  once in this process, so a long backlog never fills memory), renews the leases of what it runs
  every third of `lease_seconds`, and lets go while a piece of work waits for its next attempt. A
  process that dies loses its leases after `lease_seconds`; any process carries the work on from
  its last recorded step.
- The lease rule: only this module writes `owner` and `lease_until` (through the journal's claim,
  renew and release); a step's save never does. A holder that lost a lease, or could not renew it,
  stops before its next external call (`hold`).
- The failure rule, the same for every step: a step finishes (recorded, never repeated), or fails
  for a reason that may pass and is retried with exponential backoff and jitter, honouring
  Retry-After, until `give_up_after`; or fails for good, and the step's `failed` handler records
  what the person must be told.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..installations import Workspace
from ..ops import metrics
from ..ops.logs import set_log_context
from ..journal.storage import LeaseLost, Storage, Submission

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    """Why a step did not finish, and whether trying again later may help."""

    reason: str
    transient: bool
    retry_after: float | None = None
    field_errors: dict[str, str] | None = None


class Step(NamedTuple):
    """One step of a pipeline. `run` returns whether it changed something outside the bot (its
    completion is then recorded at once); raising applies the failure rule. `failed` records a
    failure for good (what to tell, what to skip)."""

    name: str
    run: Callable[[Submission], Awaitable[bool]]
    failed: Callable[[Submission, Failure], Awaitable[None]]


class Worker:
    def __init__(
        self,
        storage: Storage,
        steps: list[Step],
        *,
        owner: str,
        classify: Callable[[BaseException], Failure],
        gave_up: Callable[[Submission, Failure], Failure],
        outcome: Callable[[Submission], str],
        max_active: int = 64,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        retry_base: float = 0.5,
        retry_max: float = 300.0,
        give_up_after: float = 86400.0,
        retention_seconds: float = 90 * 86400.0,
        purge_every: float = 3600.0,
    ) -> None:
        """`classify`: an exception → a Failure; `gave_up`: the failure for good that ends passing
        failures after `give_up_after`; `outcome`: the status of finished work."""
        self.storage = storage
        self.steps = steps
        self.owner = owner
        self.classify = classify
        self.gave_up = gave_up
        self.outcome = outcome
        self.max_active = max_active
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.give_up_after = give_up_after
        self.retention_seconds = retention_seconds
        self.purge_every = purge_every
        self._running: dict[str, asyncio.Task[None]] = {}
        # When each running submission's lease runs out, as last written by claim or renew (0: lost).
        # Only `_start` and `_renew_loop` write it; steps only read it (`hold`).
        self._leases: dict[str, float] = {}
        self._reserved = 0  # slots taken by work being journaled right now
        self._wake = asyncio.Event()
        self._more_waiting = True  # the journal may hold due work this process has not claimed
        self._background: list[asyncio.Task[None]] = []  # the claim, renewal and retention loops
        self._renewals: asyncio.Task[None] | None = None  # the renewal loop, which a stop keeps to the end
        self._closing = False

    # --- what intake and the process call ------------------------------------------------------

    async def journal(self, sub: Submission) -> tuple[Submission, bool]:
        """Journal new work: (the stored one, True), or (the earlier one, False) for a repeat of its
        dedupe key. With a free slot it is journaled already held by this process and started at
        once; otherwise it waits in the journal for the first free slot of any process."""
        take = self.started and len(self._running) + self._reserved < self.max_active
        if take:
            sub.owner, sub.lease_until = self.owner, time.time() + self.lease_seconds
            self._reserved += 1
        try:
            stored, new = await self.storage.add_submission(sub)
        finally:
            if take:
                self._reserved -= 1
        if new:
            metrics.submission("pending")
            if take:
                self._start(stored)
            else:
                self._more_waiting = True
                self._wake.set()
        return stored, new

    @property
    def started(self) -> bool:
        return bool(self._background) and not self._closing

    async def resume(self) -> int:
        """Start working the journal: unfinished work (after a crash or restart, or left by another
        process) is claimed in bounded batches as slots free up. Returns how much waits."""
        if not self._background:
            if not self.storage.postgres:
                # One serving process per SQLite file (the file lock makes sure): leases left in
                # it belong to a process that died, and are taken over at once, not after expiry.
                await self.storage.release_others(self.owner)
            self._renewals = asyncio.create_task(self._renew_loop(), name="journal-leases")
            self._background = [
                asyncio.create_task(self._claim_loop(), name="journal-claims"),
                self._renewals,
                asyncio.create_task(self._purge_loop(), name="journal-retention"),
            ]
        pending, _oldest = await self.storage.backlog()
        if pending:
            log.info("resuming %d unfinished submission(s) from the journal", pending)
        return pending

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until the journal has no unfinished work (for tests and benchmarks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._running or (await self.storage.backlog())[0]:
            if deadline is not None and time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.02)

    def drain(self) -> None:
        """Take no more work: a stop has begun. What runs goes on (its leases still renewed); what
        is journaled from now on waits in the journal for another process."""
        self._closing = True
        self._wake.set()

    async def close(self, grace: float = 0.0, *, also: list[asyncio.Task[None]] | None = None) -> None:
        """Stop: take no more work, let running work finish for up to `grace` seconds (still
        renewing its leases, so nobody else takes it meanwhile), stop the rest (each resumes from
        its last recorded step), and hand every lease back at once. `also`: other tasks of the
        caller to stop with it."""
        self.drain()
        for task in self._background:
            if task is not self._renewals:
                task.cancel()
        if grace > 0 and self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        for task in [*self._background, *self._running.values(), *(also or [])]:
            task.cancel()
        stopping = [*self._background, *self._running.values(), *(also or [])]
        if stopping:
            _done, stuck = await asyncio.wait(stopping, timeout=5.0)
            if stuck:
                log.warning("%d task(s) did not stop within 5 s", len(stuck))
        self._background, self._renewals = [], None
        try:
            await self.storage.release_all(self.owner)
        except Exception as exc:  # the leases then run out on their own
            log.warning("could not release leases on stop: %s", self.classify(exc).reason)

    def hold(self, sub: Submission) -> None:
        """Raise LeaseLost unless this process surely still holds the submission: its lease lasts
        at least another quarter of `lease_seconds` (one renewal may be missed, not two). Called
        before each step and by a step before a call that changes something outside the bot (what
        already happened is still recorded: a save checks the holder, not the clock)."""
        if self._leases.get(sub.id, 0.0) - time.time() < self.lease_seconds / 4:
            raise LeaseLost(sub.id)

    # --- the loops ------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        """Claim due work while slots are free; sleep until the next is due, a slot frees, or
        `poll_seconds` pass (other processes' leases may run out)."""
        while not self._closing:
            delay = self.poll_seconds
            try:
                free = self.max_active - len(self._running) - self._reserved
                if free > 0 and self._more_waiting:
                    claimed = await self.storage.claim(self.owner, self.lease_seconds, free)
                    for sub in claimed:
                        self._start(sub)
                    self._more_waiting = len(claimed) == free
                    if not self._more_waiting:
                        due = await self.storage.next_due()
                        if due is not None:
                            delay = min(delay, max(0.0, due - time.time()))
                            self._more_waiting = delay <= 0
                    elif free > 0:
                        delay = 0.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not read the journal (%s); trying again", self.classify(exc).reason)
            self._wake.clear()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
                # that arrives as the event is set, and the loop would outlive close().
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                self._more_waiting = True  # time passed: something may be due, or a lease ran out

    async def _renew_loop(self) -> None:
        """Extend the leases of the running work every third of a lease. What this process no
        longer holds is marked lost, and a lease whose renewal failed runs out here when it runs
        out in the journal: either way its task stops before its next external call (`hold`)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            ids = list(self._running)
            try:
                renewed, until = await self.storage.renew(self.owner, ids, self.lease_seconds)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not renew leases (%s)", self.classify(exc).reason)
                continue
            for sub_id in ids:
                if sub_id in self._leases:
                    self._leases[sub_id] = until if sub_id in renewed else 0.0

    async def _purge_loop(self) -> None:
        """Retention: finished work and Slack event ids go after `retention_seconds` (thread links
        stay). Every replica may run it: deleting is idempotent."""
        while True:
            try:
                gone = await self.storage.purge(self.retention_seconds)
                if any(gone.values()):
                    log.info("retention: deleted %s", ", ".join(f"{n} {table}" for table, n in gone.items()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("retention: could not delete old entries (%s)", self.classify(exc).reason)
            await asyncio.sleep(self.purge_every)

    # --- one piece of work -------------------------------------------------------------------------

    def _start(self, sub: Submission) -> None:
        if sub.id in self._running:
            return
        self._leases[sub.id] = sub.lease_until
        task = asyncio.create_task(self._run(sub), name=f"submission-{sub.id}")
        self._running[sub.id] = task

    async def _run(self, sub: Submission) -> None:
        # Every log line of this task names the submission, its person and channel (LOG_FORMAT=json).
        set_log_context(submission_id=sub.id, user=sub.payload.get("user_id"),
                        channel=(sub.payload.get("origin") or {}).get("channel_id"))
        if workspace := Workspace.of(sub.payload.get("workspace")):
            workspace.enter()  # its Slack calls carry that workspace's token (installs by OAuth)
        try:
            await self._advance(sub)
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            if self._leases.get(sub.id):  # the renewal failed: hand it back if nobody took it yet
                log.warning("submission %s: its lease could not be renewed; stopped before the next step", sub.id)
                with contextlib.suppress(Exception):
                    await self.storage.save_submission(sub, release=True)
            else:
                log.warning("submission %s: another process took it over", sub.id)
        except Exception as exc:  # the journal could not record a step: the lease runs out, then a retry
            log.warning(
                "submission %s: progress could not be recorded (%s); retried in %.0fs",
                sub.id, self.classify(exc).reason, self.lease_seconds,
            )
        finally:
            self._running.pop(sub.id, None)
            self._leases.pop(sub.id, None)
            self._more_waiting = True
            self._wake.set()

    async def _advance(self, sub: Submission) -> None:
        """Run the remaining steps, applying the failure rule to each."""
        for name, run, failed in self.steps:
            if name in sub.steps_done:
                continue
            self.hold(sub)
            try:
                wrote = await run(sub)
            except LeaseLost:
                raise
            except Exception as exc:
                why = self.classify(exc)
                if why.transient and time.time() - sub.created_at <= self.give_up_after:
                    self._plan_retry(sub, name, why)
                    await self.storage.save_submission(sub, release=True)
                    return
                if why.transient:  # passing failures for too long: this step fails for good
                    why = self.gave_up(sub, why)
                await failed(sub, why)
                wrote = True
            sub.steps_done.add(name)
            sub.attempts, sub.next_attempt_at = 0, 0.0
            if wrote:
                await self.storage.save_submission(sub)
        sub.status = self.outcome(sub)
        await self.storage.save_submission(sub, release=True)
        metrics.submission(sub.status)

    def _plan_retry(self, sub: Submission, step: str, why: Failure) -> None:
        metrics.retry(step)
        sub.attempts += 1
        sub.last_error = why.reason
        delay = min(self.retry_max, self.retry_base * 2 ** min(sub.attempts - 1, 20))
        delay *= random.uniform(0.5, 1.0)
        if why.retry_after is not None:
            delay = max(delay, why.retry_after)
        sub.next_attempt_at = time.time() + delay
        log.info(
            "submission %s: %s, attempt %d failed (%s); retrying in %.1fs",
            sub.id, step, sub.attempts, why.reason, delay,
        )
