"""Work no one is waiting for (the similar-ticket look-up after a form opened), kept out of the way
of the people who are.

asyncio has no priorities: a look-up started beside a burst of `/ticket`s takes its turns on the
event loop like their acknowledgements and `views.open` calls, and a Serval search plus a
`views.update` per form costs as much CPU as the form itself. So such work goes into a bounded
queue (`later`), and a few workers start a job only while nobody waits on the bot: no Slack request
is being answered (`server.bolt.InFlight.request`) and no listener is in its work after the ack
(`handlers.common.after_ack`: opening a form, saving), and waits again (`turn`) before each of its
costly steps. A job that could not start within `START_WAIT` seconds is dropped (stale: the person
has been typing for a while), and when the queue is full the oldest job goes.

When the bot is not busy, which is nearly always, a job starts at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

WORKERS = 4  # jobs under way at once, at most (each takes its costly steps one `turn` at a time)
QUEUE_MAX = 500  # jobs waiting, at most: the oldest goes first
START_WAIT = 5.0  # seconds a job may wait for a quiet moment; later it is dropped

Job = Callable[[], Awaitable[None]]

_waiting = 0  # people waiting on this process: requests being answered, listeners after their ack
_on_quiet: list[Callable[[], None]] = []  # called when the last person waiting was answered (`on_quiet`)


class foreground:  # noqa: N801 (used as a context manager, like contextlib's)
    """Around work someone waits for: background jobs do not start meanwhile. (A class rather than
    a generator: it runs twice on every request.)"""

    __slots__ = ()

    def __enter__(self) -> None:
        global _waiting
        _waiting += 1

    def __exit__(self, *exc: object) -> None:
        global _waiting
        _waiting -= 1
        if _waiting == 0:
            for queue in list(_queues.values()):
                queue.quiet.set()
            for hook in _on_quiet:
                hook()


def quiet() -> bool:
    return _waiting == 0


class Queue:
    """The jobs of one event loop, FIFO, each with its deadline to start and what to do if dropped."""

    def __init__(self) -> None:
        self.jobs: collections.deque[tuple[float, Job, Callable[[], None] | None]] = collections.deque()
        self.workers = 0
        self.dropped = 0
        self.quiet = asyncio.Event()  # set when the last person waiting was answered

    def put(self, job: Job, on_drop: Callable[[], None] | None) -> None:
        loop = asyncio.get_running_loop()
        if len(self.jobs) >= QUEUE_MAX:
            self._drop(self.jobs.popleft())
        self.jobs.append((loop.time() + START_WAIT, job, on_drop))
        if self.workers < WORKERS:
            self.workers += 1
            # A context of its own: the worker is nobody's request (not counted in flight, not
            # waited for when the bot stops) and carries no request's log context.
            loop.create_task(self._work(), name="background work", context=contextvars.Context())

    def _drop(self, item: tuple[float, Job, Callable[[], None] | None]) -> None:
        self.dropped += 1
        log.debug("dropped background work that could not start in time (%d so far)", self.dropped)
        if item[2] is not None:
            item[2]()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.jobs:
                deadline, job, on_drop = self.jobs[0]
                if loop.time() >= deadline:  # stale: the person has waited long enough
                    self._drop(self.jobs.popleft())
                    continue
                if not quiet():
                    self.quiet.clear()
                    try:
                        async with asyncio.timeout_at(deadline):
                            await self.quiet.wait()
                    except TimeoutError:
                        pass
                    continue  # quiet now, or the first job is stale: look again
                self.jobs.popleft()
                try:
                    await job()
                except Exception:  # a job's failure is its own; the worker goes on
                    log.exception("background work failed")
        finally:
            self.workers -= 1


_queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Queue] = weakref.WeakKeyDictionary()


async def turn(limit: float = START_WAIT) -> bool:
    """In a job, before its next costly step: wait until nobody waits on the bot (True), for at
    most `limit` seconds (False: still busy; the job had better give up). A job started in a quiet
    moment thus takes one step at a time between other people's requests, never a whole burst."""
    if quiet():
        return True
    queue = _queue()
    queue.quiet.clear()
    try:
        async with asyncio.timeout(limit):
            await queue.quiet.wait()
    except TimeoutError:
        return quiet()
    return True


def _queue() -> Queue:
    loop = asyncio.get_running_loop()
    queue = _queues.get(loop)
    if queue is None:
        queue = _queues[loop] = Queue()
    return queue


def on_quiet(hook: Callable[[], None]) -> None:
    """Call `hook` (quick, synchronous) whenever nobody waits on the bot any more: to decide whether
    some work is worth scheduling (`later`)."""
    if hook not in _on_quiet:
        _on_quiet.append(hook)


def later(job: Job, on_drop: Callable[[], None] | None = None) -> None:
    """Run `job` once nobody waits on the bot, or never (`on_drop` is called then)."""
    _queue().put(job, on_drop)
