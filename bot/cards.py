"""Tickets behind links (`link_shared` → `chat.unfurl`): which configured ticket system a link
belongs to (its link template: SERVAL_TICKET_URL, REZOLVE_TICKET_URL, Socialboards' inbox), and the
ticket's card, looked up through the back end.

Links are pasted all day, often the same ones, and a ticket system's rate budget is shared with the
bot's real work: a card is kept for UNFURL_CACHE_SECONDS (an unknown ticket too), look-ups of the
same link at the same moment are made once, and there are never more than UNFURL_LOOKUPS_PER_MINUTE
look-ups (a token bucket); a link over the budget, or whose system fails or is slow, just does not
unfold. Nobody waits for a card: Slack shows the plain link meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

from clients.base import BackendError, CreatedTicket, TicketBackend, TicketCard

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT = 5.0  # seconds one look-up may take before its link is left as it is
MAX_CACHED = 1000  # cards kept (the oldest go first)


class TicketCards:
    def __init__(self, backends: dict[str, TicketBackend], *, ttl: float = 60.0, per_minute: int = 60,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backends = backends
        self.ttl = ttl
        self.per_minute = per_minute
        self.clock = clock
        self._tokens = float(per_minute)
        self._filled_at = clock()
        self._cache: OrderedDict[tuple[str, str], tuple[float, TicketCard | None]] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Task[TicketCard | None]] = {}

    def domains(self) -> list[str]:
        """The host names of the configured ticket links: what the manifest's `unfurl_domains` must
        list for Slack to send such links to the bot."""
        hosts = (urlsplit(b.link_template.replace("{id}", "x").replace("{display_id}", "x")).hostname
                 for b in self.backends.values() if b.link_template)
        return sorted({h for h in hosts if h})

    def link(self, ticket: CreatedTicket) -> str | None:
        """The ticket's page (its canonical link, whatever link was pasted)."""
        backend = self.backends.get(ticket.backend)
        return backend.link(ticket) if backend else ticket.url

    def match(self, url: str) -> tuple[TicketBackend, dict[str, str]] | None:
        """The ticket system whose ticket links look like `url`, and the ticket it names."""
        for backend in self.backends.values():
            ref = backend.ticket_ref(url)
            if ref:
                return backend, ref
        return None

    def _take(self) -> bool:
        """One look-up from the budget, if any is left (refilled continuously, per_minute a minute)."""
        now = self.clock()
        self._tokens = min(float(self.per_minute), self._tokens + (now - self._filled_at) * self.per_minute / 60.0)
        self._filled_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    async def card(self, url: str) -> TicketCard | None:
        """The card of the ticket `url` links to; None when it is no ticket link, there is no such
        ticket, the budget is spent, or the system cannot say now."""
        found = self.match(url)
        if found is None:
            return None
        backend, ref = found
        key = (backend.name, "&".join(f"{k}={v}" for k, v in sorted(ref.items())))
        cached = self._cache.get(key)
        if cached and self.clock() - cached[0] < self.ttl:
            return cached[1]
        task = self._inflight.get(key)
        if task is None:
            if not self._take():
                log.info("link to a %s ticket not unfolded: over UNFURL_LOOKUPS_PER_MINUTE (%d)",
                         backend.display_name, self.per_minute)
                return None
            task = asyncio.create_task(self._lookup(backend, ref, key), name=f"ticket card {key[0]}")
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _lookup(self, backend: TicketBackend, ref: dict[str, str], key: tuple[str, str]) -> TicketCard | None:
        try:
            card = await asyncio.wait_for(backend.ticket_card(ref), LOOKUP_TIMEOUT)
        except (BackendError, asyncio.TimeoutError) as exc:  # not cached: the next paste tries again
            log.info("%s ticket %s not unfolded: %s", backend.display_name, key[1],
                     exc.message if isinstance(exc, BackendError) else "no answer in time")
            return None
        except Exception:
            log.exception("%s ticket %s not unfolded", backend.display_name, key[1])
            return None
        self._cache[key] = (self.clock(), card)
        self._cache.move_to_end(key)
        while len(self._cache) > MAX_CACHED:
            self._cache.popitem(last=False)
        return card
