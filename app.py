"""Entry point: read settings, check them, build the bot, serve Slack over HTTP or Socket Mode.

    python app.py                       # Socket Mode when SLACK_APP_TOKEN is set, else HTTP
    python app.py --mode http           # POST /slack/events on HOST:PORT
    python app.py --mode socket         # a WebSocket to Slack; HOST:PORT serves health and metrics only
    python app.py check                 # the start-up checks, one line each: ✓ or ✗ with the reason
    python app.py migrate               # bring DATABASE_URL's schema up to date
    python app.py copy-db SQLITE_URL POSTGRES_URL
    python app.py --version

Start-up: settings with placeholder or malformed values stop it (exit 2, every problem named at
once); then Slack's `auth.test` and each ticket system's token: refused credentials stop it (exit 2,
naming them), an unreachable system is reported in /healthz and the bot starts anyway.

Stop: SIGINT or SIGTERM, in every state (starting, connecting, connected, reconnecting). /readyz
answers 503 at once, requests in flight and running submissions get a few seconds to finish, leases
are handed back; the process exits within 5 s when idle and never later than 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from bot.ops import checks
from bot.core import Bot
from bot.ops.health import Health
from bot.ops.logs import TEXT_FORMAT, ContextFilter, formatter
from bot.settings import Settings, SettingsError, load_settings
from server.bolt import InFlight
from server.http import Running, open_http
from server.socket_mode import SocketMode, socket_mode

log = logging.getLogger("app")

LOG_FORMAT = TEXT_FORMAT
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


# --- the process --------------------------------------------------------------------------------


def version() -> str:
    """This checkout's version (pyproject.toml beside app.py), else the installed package's."""
    pyproject = Path(__file__).with_name("pyproject.toml")
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
        found = await asyncio.gather(
            checks.slack_bot_token(bot.people.workspace),
            *(checks.ticket_system(name, backend, settings, may_rotate=True) for name, backend in bot.backends.items()),
        )
        for name, result in zip(bot.backends, found[1:]):
            health.tokens[name].record(result)
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


# --- commands -------------------------------------------------------------------------------------


def check_command() -> int:
    """Exit 0 when every check passed, 1 when one failed, 2 when the settings themselves are wrong."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"✗ settings: {problem}")
        return EXIT_CONFIG
    print(f"✓ settings: read from the environment{' and .env' if Path('.env').exists() else ''}; "
          f"mode {'Socket Mode' if settings.slack_app_token else 'HTTP'}, ticket system {settings.ticket_backend}")
    from bot.ops.logs import formatter as make_formatter

    redactor = make_formatter("text", settings.secrets())
    results = asyncio.run(checks.run_all(settings))
    for result in results:
        print(redactor.redact(result.line()))
    return 1 if any(r.ok is False for r in results) else 0


def migrate_command() -> int:
    from sqlalchemy.engine import make_url

    from bot.settings import ensure_private_dir, load_database_url
    from bot.journal.storage import migrate

    try:
        url = load_database_url()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        if url.startswith("sqlite:///"):
            ensure_private_dir(url.removeprefix("sqlite:///"))
        revision = asyncio.run(migrate(url))
    except Exception as exc:
        print(f"migrate: {shown}: nothing changed: {type(exc).__name__}: {exc}".replace(url, shown), file=sys.stderr)
        return 1
    print(f"migrate: {shown} is at revision {revision}, the newest")
    return 0


def copy_db_command(source: str, target: str) -> int:
    from bot.journal.copydb import main as copydb

    return copydb([source, target])


def setting_names() -> list[str]:
    return [name.upper() for name in Settings.model_fields]


def parser() -> argparse.ArgumentParser:
    names = textwrap.fill(", ".join(setting_names()), width=92, initial_indent="  ", subsequent_indent="  ")
    epilog = f"""\
settings:
  Read from environment variables and from a .env file in the working directory
  (cp .env.example .env); an environment variable wins over .env.
  Required: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, and the default ticket system's
  (TICKET_BACKEND=serval: SERVAL_TEAM_ID, SERVAL_SLACK_INTEGRATION_ID, and SERVAL_BEARER_TOKEN
  or SERVAL_CLIENT_ID with SERVAL_CLIENT_SECRET). SLACK_APP_TOKEN set: Socket Mode; empty: HTTP.
  Every setting:
{names}
  Each is described in docs/configuration.md; health, signals and logs in docs/operations.md.

exit status: 0 stopped cleanly; 2 a configuration problem (settings, refused credentials,
  the port in use): fix it, restarting will not help; 1 anything else.
"""
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="Slack help-desk ticket bot: serves Slack (the default), or runs one of the commands.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"slack-ticket-bot {version()}")
    p.add_argument("--mode", choices=["auto", "socket", "http"], default="auto",
                   help="auto (default): Socket Mode when SLACK_APP_TOKEN is set, else HTTP")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("check", help="run the start-up checks, one line each (✓ or ✗); safe beside a running bot",
                        description="Run the start-up checks and print one line per check: ✓, ✗ with the reason, or – "
                        "when a check was not done. Exit 0 when none failed, 1 when one did, 2 for invalid settings. "
                        "Safe beside a running bot: nothing it relies on changes (no token is rotated).")
    commands.add_parser("migrate", help="bring the schema of DATABASE_URL up to date (needs only DATABASE_URL)",
                        description="Create or upgrade the database schema of DATABASE_URL; the bot also does this at "
                        "start-up. Safe beside running replicas: migrations are additive and run under a lock.")
    copy = commands.add_parser("copy-db", help="copy a SQLite database into an empty PostgreSQL database",
                               description="Copy the bot's SQLite database into an empty PostgreSQL database, in one "
                               "transaction. Stop the bot first.")
    copy.add_argument("source", metavar="SQLITE_URL", help="sqlite:///path/to/tickets.db")
    copy.add_argument("target", metavar="POSTGRES_URL", help="postgresql://user:password@host:5432/db (empty)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "migrate":
        return migrate_command()
    if args.command == "copy-db":
        return copy_db_command(args.source, args.target)
    if args.command == "check":
        return check_command()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    mode = args.mode
    if mode == "auto":
        mode = "socket" if settings.slack_app_token else "http"
    if mode == "socket" and not settings.slack_app_token:
        print("Configuration error: SLACK_APP_TOKEN is not set (needed for --mode socket)", file=sys.stderr)
        return EXIT_CONFIG
    handler = setup_logging(settings)
    if mode == "socket":
        log.info("slack-ticket-bot %s starting in Socket Mode: Slack's requests come over a WebSocket; "
                 "HTTP on %s:%s serves only /healthz, /readyz and /metrics", version(), settings.host, settings.port)
    else:
        log.info("slack-ticket-bot %s starting in HTTP mode: Slack sends its requests to POST /slack/events "
                 "on %s:%s", version(), settings.host, settings.port)
    redact = getattr(handler.formatter, "redact", lambda text: text)
    return asyncio.run(run(settings, mode, redact=redact))


if __name__ == "__main__":
    sys.exit(main())
