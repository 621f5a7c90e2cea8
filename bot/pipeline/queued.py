"""The "queued" screen: a form whose ticket is not made within `after` seconds says so, and never
stays over the outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..slack import views
from ..journal.storage import Submission
from .context import CREATE, Context

log = logging.getLogger(__name__)


class QueuedNotices:
    def __init__(self, ctx: Context, outcome_modal: Callable[[Submission], Awaitable[dict[str, Any]]], after: float) -> None:
        self.ctx, self.outcome_modal, self.after = ctx, outcome_modal, after
        self._timers: dict[str, asyncio.Task[None]] = {}

    def start(self, sub: Submission) -> None:
        if self.after >= 0:
            self._timers[sub.id] = asyncio.create_task(self._show_later(sub))

    def stop(self, sub_id: str) -> None:
        """The outcome is known: the "queued" screen must not replace it."""
        timer = self._timers.pop(sub_id, None)
        if timer:
            timer.cancel()

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._timers.values())

    async def _show_later(self, sub: Submission) -> None:
        """After `after` seconds without a ticket, the form says the ticket is queued. The journal
        is read before and after: the ticket may be created meanwhile (here or by another process)
        and its "created" screen may reach Slack before this one; the outcome is then shown again.
        Once it has begun to send, the notice is no longer cancelled (`stop`): a
        request already on its way would still land, and only this task can put the outcome back."""
        try:
            await asyncio.sleep(self.after)
            current = await self.ctx.storage.get_submission(sub.id)
            if not (current and current.status == "pending" and CREATE not in current.steps_done):
                return
            if self._timers.get(sub.id) is asyncio.current_task():
                del self._timers[sub.id]
            view_id = sub.payload["view_id"]
            name = self.ctx.backend(sub.payload["origin"].get("backend")).display_name
            await self.ctx.update_view(view_id, views.queued_modal(sub.payload["title"], name))
            current = await self.ctx.storage.get_submission(sub.id)
            if current and CREATE in current.steps_done:
                await self.ctx.update_view(view_id, await self.outcome_modal(current))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("queued notice for %s: %s", sub.id, exc)
        finally:
            if self._timers.get(sub.id) is asyncio.current_task():
                del self._timers[sub.id]
