"""Lists loaded from a ticket system and kept fresh in the background, so forms are built from
memory: a Slack modal must open within 3 seconds, whatever the ticket system is doing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from .base import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_SOON = 30.0  # after a failed refresh, try again this soon (keeping the last good value)


class KeptFresh(Generic[T]):
    """`load()`'s value (`what`, from `system`), reloaded every `every` seconds by a background task once `start()`ed.

    Without the task (tests, scripts) a stale value is reloaded on `get()`. A failed reload keeps
    the last good value. The very first load waits at most `first_load_wait` seconds and otherwise
    goes on in the background for the next call.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        *,
        system: str,
        what: str,
        every: float,
        first_load_wait: float = 2.0,
    ) -> None:
        self._load = load
        self.system = system
        self.what = what
        self.every = every
        self.first_load_wait = first_load_wait
        self.value: T | None = None
        self.loaded_at = -1e18
        self._lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None
        self._loading: asyncio.Task[T] | None = None

    def start(self) -> None:
        if self._refresher is None:
            self._refresher = asyncio.create_task(self._forever(), name=f"refresh {self.system} {self.what}")

    async def _forever(self) -> None:
        while True:
            try:
                await self.refresh()
                await asyncio.sleep(self.every)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not refresh the %s %s (keeping the last one): %s", self.system, self.what, exc)
                await asyncio.sleep(min(RETRY_SOON, self.every))

    async def refresh(self) -> T:
        async with self._lock:
            self.value = await self._load()
            self.loaded_at = time.monotonic()
            return self.value

    async def get(self) -> T:
        if self.value is None:
            await self._first_load()
        elif self._refresher is None and time.monotonic() - self.loaded_at >= self.every:
            try:
                await self.refresh()
            except BackendError as exc:
                log.warning("could not refresh the %s %s (keeping the last one): %s", self.system, self.what, exc.message)
                self.loaded_at = time.monotonic() - self.every + min(RETRY_SOON, self.every)
        assert self.value is not None
        return self.value

    async def _first_load(self) -> None:
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self.refresh())
            self._loading.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
        try:
            await asyncio.wait_for(asyncio.shield(self._loading), self.first_load_wait)
        except asyncio.TimeoutError:
            raise BackendError(f"{self.system} is slow to answer; try again in a moment", transient=True) from None

    async def aclose(self) -> None:
        tasks = [t for t in (self._refresher, self._loading) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
