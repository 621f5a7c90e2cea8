"""Threads this process knows to be taken: a submission was journaled for them here, or the
database said so. The message shortcut asks the database before its form opens only for these (to
show "already linked to ticket …" instead of a form, as always); for any other thread it opens the
form first and asks once nobody waits on the bot (`bot.background`), swapping the notice in when
another process (a replica, or this one before a restart) took the thread. A thread's look-up thus
never delays a form of a thread nobody took, which is nearly every one, nor anyone else's form.

The set is a hint, never the answer: a known thread is checked in the database before the form (a
submission that failed frees its thread again), and the database's unique keys decide in the end.
Bounded: the least recently noted threads are forgotten first.

The look-ups after the forms opened (`check_later`) are gathered: one job of `bot.background` asks
the journal about every thread whose form opened since the last one, in one statement per 50
threads (`Storage.taken_threads`), instead of one job and two statements per form (~0.2 ms of CPU
each, as much as a third of what opening the form costs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .. import background

if TYPE_CHECKING:
    from .storage import Storage

log = logging.getLogger(__name__)

LIMIT = 20_000  # threads remembered (~2 MB)

# What to do once a thread was looked up: called with (taken, display id), taken None when the
# journal could not be asked.
Then = Callable[[bool | None, str | None], Awaitable[None]]


class Threads:
    def __init__(self, storage: "Storage | None" = None, limit: int = LIMIT) -> None:
        self.storage = storage
        self.limit = limit
        self._keys: OrderedDict[str, None] = OrderedDict()
        self._checks: list[tuple[str, Then, float]] = []  # (thread key, then, when asked)
        self._scheduled = False  # a job to look them up waits in bot.background

    @staticmethod
    def key(channel_id: str, thread_ts: str) -> str:
        return f"{channel_id}:{thread_ts}"  # as the journal's thread_key

    def note(self, thread_key: str | None) -> None:
        """A thread with a submission or a ticket (`channel:ts`, the journal's thread_key)."""
        if not thread_key:
            return
        self._keys[thread_key] = None
        self._keys.move_to_end(thread_key)
        while len(self._keys) > self.limit:
            self._keys.popitem(last=False)

    def forget(self, thread_key: str) -> None:
        self._keys.pop(thread_key, None)

    def __contains__(self, thread_key: object) -> bool:
        return thread_key in self._keys

    def check_later(self, thread_key: str, then: Then) -> None:
        """Once nobody waits on the bot, ask the journal whether this thread is taken, then await
        `then(taken, display_id)`; together with every other thread asked about meanwhile. Like any
        background work, a check that could not start within `background.START_WAIT` is dropped
        (`then` is not called: the form's submission is refused all the same)."""
        self._checks.append((thread_key, then, asyncio.get_running_loop().time()))
        self._schedule()

    def _schedule(self) -> None:
        if self._checks and not self._scheduled:
            self._scheduled = True
            background.later(self._check, on_drop=self._dropped)

    def _dropped(self) -> None:
        """The job could not start in time: the checks that waited that long go; newer ones wait on."""
        self._scheduled = False
        expired = asyncio.get_running_loop().time() - background.START_WAIT
        self._checks = [check for check in self._checks if check[2] > expired]
        self._schedule()

    async def _check(self) -> None:
        self._scheduled = False  # checks asked from now on go to the next job
        batch, self._checks = self._checks, []
        taken: dict[str, str | None] | None = None
        try:
            assert self.storage is not None, "Threads(storage) checks threads"
            taken = await self.storage.taken_threads(list(dict.fromkeys(key for key, _, _ in batch)))
        except Exception:
            log.exception("could not look up %d threads in the journal", len(batch))
        for key, then, _ in batch:
            if taken is not None and key in taken:
                self.note(key)
            elif taken is not None:
                self.forget(key)
            try:
                await then(None if taken is None else key in taken, (taken or {}).get(key))
            except Exception:  # one form's trouble is its own
                log.exception("after looking up thread %s", key)
