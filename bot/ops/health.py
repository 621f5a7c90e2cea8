"""Health and readiness of one bot process.

`GET /readyz` answers for this process only, so that one stuck submission or a ticket-system outage
never takes every replica out of a load balancer at once: 200 when the database is reachable and
writable (a small upsert into `state`), Slack is connected (Socket Mode), start-up has finished and
the process is not shutting down; otherwise 503, with the reasons.

`GET /healthz` answers 200 for as long as the process lives (a container health check restarts a
process whose /healthz fails; nothing here is fixed by a restart) and reports, in JSON, what an
operator wants to see: each ticket system's token state (ok, failing with the reason, unreachable
since when), the journal's backlog, and submissions stuck past STUCK_AFTER_SECONDS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any


from clients._http import TokenCache
from clients.base import BackendError

from . import checks

if TYPE_CHECKING:
    from ..core import Bot

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0  # seconds a health query may take before the database counts as not answering
PROBE_EVERY = 30.0  # seconds between two token checks of a ticket system that is not ok
READY_STATE = "health.readyz"  # the `state` row readiness writes


def _iso(at: float | None) -> str | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class TokenState:
    """A ticket system's token, as last seen: `unknown` (not fetched yet), `ok`, `failing` (refused,
    with the reason), `unreachable` (since when), `not_checked` (a check would rotate it)."""

    name: str = ""
    state: str = "unknown"
    reason: str | None = None
    since: float | None = None
    checked_at: float | None = None

    def _set(self, state: str, reason: str | None) -> None:
        now = time.time()
        if state != self.state:
            self.since = now
            if self.state not in ("unknown", "not_checked"):  # start-up logs the first state itself
                if state == "ok":
                    log.info("%s token: ok again", self.name)
                else:
                    log.warning("%s token: %s (%s)", self.name, state, reason)
        self.state, self.reason, self.checked_at = state, reason, now

    def ok(self) -> None:
        self._set("ok", None)

    def failed(self, reason: str, *, transient: bool) -> None:
        self._set("unreachable" if transient else "failing", reason)

    def observe(self, error: BackendError | None) -> None:
        """A token fetch's outcome (clients._http.TokenCache.watch)."""
        if error is None:
            self.ok()
        else:
            self.failed(error.message, transient=error.transient)

    def record(self, check: checks.Check) -> None:
        if check.ok is None:
            if self.state == "unknown":
                self._set("not_checked", check.detail)
        elif check.ok:
            self.ok()
        else:
            self.failed(check.detail, transient=not check.refused)

    def as_json(self, redact: Callable[[str], str]) -> dict[str, Any]:
        out: dict[str, Any] = {"state": self.state}
        if self.reason:
            out["reason"] = redact(self.reason)
        if self.since is not None:
            out["since"] = _iso(self.since)
        if self.checked_at is not None:
            out["checked_at"] = _iso(self.checked_at)
        return out


def watch_token_fetches(backend: Any, state: TokenState) -> None:
    """Record every token fetch the back end's client makes (its `TokenCache`), so the state follows
    what the bot actually sees, not only what start-up saw."""
    tokens = getattr(getattr(backend, "client", None), "_tokens", None)
    if isinstance(tokens, TokenCache):
        tokens.watch(state.observe)


class Health:
    """What /readyz and /healthz answer, for one process."""

    def __init__(
        self,
        bot: "Bot",
        *,
        mode: str,
        version: str = "",
        redact: Callable[[str], str] = lambda text: text,
        stuck_after: float | None = None,
    ) -> None:
        self.bot = bot
        self.mode = mode
        self.version = version
        self.redact = redact
        self.stuck_after = stuck_after if stuck_after is not None else bot.settings.stuck_after_seconds
        self.started = False  # start-up checks done, the journal resumed
        self.stopping = False
        self.started_at = time.time()
        self.slack_state: Callable[[], str] | None = None  # Socket Mode: the connection's state
        self.tokens = {name: TokenState(checks.SYSTEMS.get(name, name)) for name in bot.backends}
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._probe: asyncio.Task[None] | None = None
        for name, backend in bot.backends.items():
            watch_token_fetches(backend, self.tokens[name])

    # --- readiness -------------------------------------------------------------------------

    async def _writable(self) -> str | None:
        """None when a small write succeeds, else why not."""
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                await self.bot.storage.set_state(READY_STATE, f"{self.owner} {time.time():.0f}")
        except TimeoutError:
            return f"the database did not answer a write within {DB_TIMEOUT:g} s"
        except Exception as exc:
            return f"the database refused a write ({type(exc).__name__}: {self.redact(str(exc))[:200]})"
        return None

    async def readiness(self) -> tuple[bool, dict[str, str]]:
        reasons: dict[str, str] = {}
        if self.stopping:
            reasons["process"] = "shutting down"
            return False, reasons
        if not self.started:
            reasons["process"] = "starting"
        if self.mode == "socket" and self.slack_state is not None and (state := self.slack_state()) != "connected":
            reasons["slack"] = f"Socket Mode is {state}"
        if problem := await self._writable():
            reasons["database"] = problem
        return not reasons, reasons

    # --- health ----------------------------------------------------------------------------

    async def report(self) -> dict[str, Any]:
        now = time.time()
        problems: list[str] = []
        ready, reasons = await self.readiness()
        out: dict[str, Any] = {"ok": True, "mode": self.mode, "version": self.version,
                               "uptime_seconds": round(now - self.started_at, 1), "ready": ready}
        if reasons:
            out["not_ready"] = reasons
        if self.mode == "socket" and self.slack_state is not None:
            out["slack"] = {"socket_mode": self.slack_state()}
        out["ticket_systems"] = {name: state.as_json(self.redact) for name, state in self.tokens.items()}
        problems += [f"{name} token {s.state}" for name, s in self.tokens.items() if s.state in ("failing", "unreachable")]
        storage = self.bot.storage
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                count, oldest = await storage.backlog()
            out["journal"] = {"backlog": count, "oldest_pending_age_seconds": None if oldest is None else round(now - oldest, 1)}
        except Exception as exc:
            out["journal"] = {"error": f"could not be read ({type(exc).__name__})"}
            problems.append("journal unreadable")
        try:
            async with asyncio.timeout(DB_TIMEOUT):
                count, oldest = await storage.stuck(self.stuck_after)
            out["stuck"] = {"threshold_seconds": self.stuck_after, "count": count,
                            "oldest_age_seconds": None if oldest is None else round(now - oldest, 1)}
            if count:
                problems.append(f"{count} submission(s) pending for more than {self.stuck_after:g} s")
        except Exception as exc:
            out["stuck"] = {"threshold_seconds": self.stuck_after, "error": f"could not be read ({type(exc).__name__})"}
        if reasons.get("database"):
            problems.append("database")
        if problems:
            out["ok"] = False
            out["problems"] = problems
        return out

    # --- keeping the token states fresh ----------------------------------------------------

    def start_probing(self) -> None:
        """While a ticket system's token is not ok, check it again every PROBE_EVERY seconds (never
        by rotating a Socialboards token: its own refreshes are watched instead)."""
        if self._probe is None:
            self._probe = asyncio.create_task(self._probe_loop(), name="health: token checks")

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(PROBE_EVERY)
            for name, backend in self.bot.backends.items():
                if self.tokens[name].state in ("failing", "unreachable"):
                    try:
                        result = await checks.ticket_system(name, backend, self.bot.settings, may_rotate=False)
                    except Exception as exc:  # never let the loop die
                        log.debug("token check of %s failed: %s", name, exc)
                        continue
                    if result.ok is not None:
                        self.tokens[name].record(result)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None
