"""One serving bot process, from its first log line to its exit status: logging set up (`setup_logging`),
start-up (the bot, the HTTP server, the start-up checks, Socket Mode), SIGINT and SIGTERM in every state,
and the graceful stop within its deadlines (`Process`); the version it reports (`version`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from bot.core import Bot
from bot.ops import checks, heap
from bot.ops.health import Health
from bot.ops.logs import ContextFilter, formatter
from bot.settings import Settings, SettingsError
from server.bolt import InFlight
from server.http import Running, open_http
from server.socket_mode import SocketMode, socket_mode

log = logging.getLogger("app")  # the process's own lines keep the logger name operators know

EXIT_CONFIG = 2  # settings, credentials or the port: fix the configuration, restarting will not help

# Stopping (seconds from the signal): requests in flight get REQUEST_GRACE, then running submissions
# what is left of SUBMISSION_DEADLINE; everything is closed by STOP_DEADLINE; a watchdog ends the
# process at HARD_DEADLINE whatever is still running.
REQUEST_GRACE = 3.0
SUBMISSION_DEADLINE = 6.0
STOP_DEADLINE = 8.5
HARD_DEADLINE = 9.5
# A second signal this soon after the first is the same request: Ctrl-C in a terminal reaches the
# whole process group, and a supervisor (the demo, a shell script) may pass its own signal on. A
# signal after this window means "exit now".
SIGNAL_WINDOW = 2.0


def setup_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """One handler on the root logger, writing to `stream` (stderr) through the redacting formatter:
    text lines, or one JSON object per line with LOG_FORMAT=json."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(settings.log_format, settings.secrets()))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # aiosqlite's DEBUG lines carry SQL parameters (refresh tokens, payloads): never below INFO.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    # Below DEBUG, libraries' routine lines say nothing an operator acts on: a line per HTTP call
    # (httpx), Alembic's plugin set-up, the Socket Mode client's own reconnect notes (the bot logs
    # its own, one per attempt), the Web API client's "A retry handler found" notes (the call's
    # outcome is what counts). That client (every AsyncWebClient's, Bolt's included, logs as
    # `slack_sdk.web.async_base_client`) also decides by its logger's own level (`logger.level <=
    # DEBUG`, true for NOTSET) whether to format each request and response for a debug line and
    # whether to log its retry notes, at INFO.
    quiet = max(logging.WARNING, logging.getLevelName(settings.log_level)) if settings.log_level != "DEBUG" else logging.DEBUG
    for name in ("httpx", "alembic", "slack_sdk.socket_mode", "slack_sdk.web.async_base_client"):
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)

    def log_uncaught(kind, value, tb):  # type: ignore[no-untyped-def]
        logging.getLogger("app").critical("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught  # a crash's traceback goes through the formatter too
    return handler


def version() -> str:
    """This checkout's version (pyproject.toml beside app.py), else the installed package's."""
    pyproject = Path(__file__).parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        with contextlib.suppress(Exception):
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("slack-ticket-bot")
    except PackageNotFoundError:
        return "unknown"


class StartRefused(Exception):
    """Start-up found a configuration problem: the message names the settings (exit 2)."""


class Process:
    """One serving bot process, from the first log line to the exit status."""

    def __init__(self, settings: Settings, mode: str, *, redact: Any = lambda text: text) -> None:
        self.settings = settings
        self.mode = mode
        self.redact = redact
        self.stop_requested = asyncio.Event()
        self.refused: str | None = None  # a problem found while running (Socket Mode): exit 2
        self.inflight = InFlight()
        self.running: Running | None = None
        self.socket: SocketMode | None = None
        self._first_signal: float | None = None  # time.monotonic() of the first SIGINT or SIGTERM
        self._watchdog: threading.Timer | None = None

    # --- signals ---------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._first_signal is not None:
            if time.monotonic() - self._first_signal < SIGNAL_WINDOW:
                log.info("%s received: already stopping", sig.name)
                return
            log.warning("%s again: exiting now", sig.name)
            logging.shutdown()
            os._exit(1)
        self._first_signal = time.monotonic()
        log.info("%s received: stopping", sig.name)
        if self.running is not None:
            self.running.health.stopping = True  # /readyz answers 503 from now on
        self._watchdog = threading.Timer(HARD_DEADLINE, self._hard_exit)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.stop_requested.set()

    @staticmethod
    def _hard_exit() -> None:
        log.error("not stopped within %.1f s of the signal: exiting now (unfinished submissions resume "
                  "after their leases run out)", HARD_DEADLINE)
        logging.shutdown()
        os._exit(1)

    def refuse(self, message: str) -> None:
        """A configuration problem found while running: stop, and exit 2."""
        self.refused = message
        self.stop_requested.set()

    # --- start -----------------------------------------------------------------------------

    async def _start(self) -> None:
        settings = self.settings
        bot = await Bot.open(settings)
        health = Health(bot, mode=self.mode, version=version(), redact=self.redact)
        self.running = running = await open_http(settings, bot=bot, mode=self.mode, health=health, inflight=self.inflight)
        routes = "/healthz, /readyz, /metrics" + (", POST /slack/events" if self.mode == "http" else "")
        log.info("listening on %s (%s)", running.url, routes)

        # auth.test (its answer is what `authorize` uses) and each ticket system's token, at once.
        # Installs by OAuth: the installs as stored (each workspace's token is used as its requests come).
        async def slack_check() -> list[checks.Check]:
            if bot.installations is not None:
                return await checks.slack_installs(bot.installations)
            return [await checks.slack_bot_token(bot.people.workspace)]

        slack_found, *systems = await asyncio.gather(
            slack_check(),
            *(checks.ticket_system(name, backend, settings, may_rotate=True) for name, backend in bot.backends.items()),
        )
        for name, result in zip(bot.backends, systems):
            health.tokens[name].record(result)
        found = [*slack_found, *systems]
        refused = [c for c in found if c.refused]
        for c in found:
            if c.ok:
                log.info("start-up check: %s: %s", c.name, c.detail)
            elif c.ok is None:
                log.info("start-up check: %s: %s", c.name, c.detail)
            elif not c.refused:
                log.warning("start-up check: %s: %s; starting anyway (GET /healthz reports it)", c.name, c.detail)
        if refused:
            lines = [f"{c.name}: {c.detail}" for c in refused]
            raise StartRefused("Start-up refused: " + ("\n  - ".join(["", *lines]) if len(lines) > 1 else lines[0]))

        await bot.start()
        health.start_probing()
        if self.mode == "socket":
            assert settings.slack_app_token is not None
            self.socket = socket_mode(running, settings.slack_app_token.get_secret_value(), on_refused=self.refuse)
            health.slack_state = lambda: self.socket.state if self.socket else "closed"
            self.socket.start()
        heap.settle()  # start-up's objects out of the garbage collector's way (bot/ops/heap.py)
        health.started = True
        if self.mode == "socket":
            log.info("started; connecting to Slack in Socket Mode")
        else:
            log.info("started; Slack's requests go to POST /slack/events on %s", running.url)

    # --- stop ------------------------------------------------------------------------------

    async def _stop(self) -> None:
        """Readiness 503 (already, from the signal), requests in flight finish, the Socket Mode
        connection and the HTTP server close, running submissions finish or stop where they are,
        leases are handed back, everything closes. Within STOP_DEADLINE, whatever happens."""
        began = time.monotonic()
        running = self.running
        try:
            async with asyncio.timeout(STOP_DEADLINE):
                if running is not None:
                    running.health.stopping = True
                    running.bot.tickets.drain()  # nothing new is claimed here: other replicas take it
                    if self.inflight.busy:
                        log.info("stopping: waiting for %d request(s) and task(s) in flight", self.inflight.busy)
                        if not await self.inflight.wait_idle(REQUEST_GRACE):
                            log.warning("stopping: %d request(s) and task(s) still in flight after %.0f s",
                                        self.inflight.busy, REQUEST_GRACE)
                if self.socket is not None:
                    await self.socket.shutdown()
                if running is not None:
                    await running.runner.cleanup()
                    await running.health.close()
                    grace = max(0.0, SUBMISSION_DEADLINE - (time.monotonic() - began))
                    await running.bot.close(grace=grace)
        except TimeoutError:
            log.warning("stopping took longer than %.1f s; exiting with some work unfinished (it resumes "
                        "once its leases run out)", STOP_DEADLINE)
        log.info("stopped in %.1f s", time.monotonic() - began)

    # --- run -------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        self.inflight.install()
        starting = asyncio.create_task(self._start(), name="start")
        stop = asyncio.create_task(self.stop_requested.wait(), name="wait for stop")
        await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if not starting.done():  # a signal (or a refusal) while starting: stop where it is
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        elif starting.cancelled():
            pass
        elif (exc := starting.exception()) is not None:
            if isinstance(exc, (StartRefused, SettingsError)):
                log.error("%s", exc)
                code = EXIT_CONFIG
            else:
                log.critical("start-up failed", exc_info=exc)
                code = 1
        else:
            await stop
        if self.refused:
            log.error("%s", self.refused)
            code = EXIT_CONFIG
        stop.cancel()
        await self._stop()
        if self._watchdog is not None:
            self._watchdog.cancel()
        return code


async def run(settings: Settings, mode: str, *, redact: Any = lambda text: text) -> int:
    return await Process(settings, mode, redact=redact).run()
