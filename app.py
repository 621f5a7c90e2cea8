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
import contextvars
import errno
import logging
import os
import random
import re
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot import background, checks, heap, metrics
from bot.core import Bot
from bot.health import Health
from bot.logs import TEXT_FORMAT, ContextFilter, formatter, log_context
from bot.settings import Settings, SettingsError, load_settings

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


SLACK_SDK_WEB_LOGGERS = ("slack_sdk.web.async_base_client", "slack_sdk.web.async_client")


def setup_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """One handler on the root logger, writing to `stream` (stderr) through the redacting formatter:
    text lines, or one JSON object per line with LOG_FORMAT=json."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(settings.log_format, settings.secrets()))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # slack_sdk decides whether to format each request and response for its debug log by its
    # logger's own level (`logger.level <= DEBUG`), which is NOTSET (0) unless set: without this,
    # every Web API call formats its whole request and response for a debug line nobody reads.
    # The clients log as `slack_sdk.web.async_base_client` (the module that creates the logger).
    for name in SLACK_SDK_WEB_LOGGERS:
        logging.getLogger(name).setLevel(settings.log_level)
    # aiosqlite's DEBUG lines carry SQL parameters (refresh tokens, payloads): never below INFO.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
    # Below DEBUG, libraries' routine lines say nothing an operator acts on: a line per HTTP call
    # (httpx), Alembic's plugin set-up, the Socket Mode client's own reconnect notes (the bot logs
    # its own, one per attempt).
    quiet = max(logging.WARNING, logging.getLevelName(settings.log_level)) if settings.log_level != "DEBUG" else logging.DEBUG
    for name in ("httpx", "alembic", "slack_sdk.socket_mode"):
        logging.getLogger(name).setLevel(quiet)
    logging.captureWarnings(True)

    def log_uncaught(kind, value, tb):  # type: ignore[no-untyped-def]
        logging.getLogger("app").critical("uncaught exception", exc_info=(kind, value, tb))

    sys.excepthook = log_uncaught  # a crash's traceback goes through the formatter too
    return handler


def build_bolt_app(bot: Bot) -> AsyncApp:
    # Bolt warns that the token it could read from SLACK_BOT_TOKEN is unused: true (our client and
    # `authorize` carry it), and nothing to act on.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(
        lambda record: not ("`token`" in record.getMessage() and "will be" in record.getMessage())
    )
    token = bot.settings.slack_bot_token.get_secret_value()

    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
        """Without this, Bolt asks `auth.test` when the first request arrives, before any listener
        can acknowledge it. The bot's workspace comes from `auth.test` asked in the background;
        until it answers, the request's own workspace is taken."""
        workspace = bot.people.known_workspace
        if workspace is None:
            bot.people.warm_workspace()
            return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=token)
        return AuthorizeResult(
            enterprise_id=enterprise_id or workspace.enterprise_id,
            team_id=team_id or workspace.team_id,
            url=workspace.url,
            bot_user_id=workspace.bot_user_id,
            bot_id=workspace.bot_id,
            bot_token=token,
        )

    app = AsyncApp(
        client=bot.slack,
        authorize=authorize,
        signing_secret=bot.settings.slack_signing_secret.get_secret_value(),
        raise_error_for_unhandled_request=False,
        # POST /slack/events checks the signature before Bolt sees the request (unsigned: 401, never
        # parsed), and Socket Mode requests carry none: a second check by Bolt would only repeat it.
        request_verification_enabled=False,
    )
    handlers.register(app, bot)
    return app


def is_interaction(body: str) -> bool:
    """A form body with a `payload` field (interactions), as opposed to a slash command."""
    return body.startswith("payload=") or "&payload=" in body


def bolt_request_for(request: web.Request, body: str) -> AsyncBoltRequest:
    """The Bolt request for a signed HTTP body, parsed once.

    Bolt takes any form body that contains the word "payload" for an interaction, so
    `/ticket payload export fails` would be parsed as an empty interaction and answered 404. For a
    form body without a `payload` field, Bolt parses a copy in which the word is percent-encoded
    (`%70ayload` decodes to the same text); its signature check still sees the body Slack signed."""
    parsed = body
    if not body.startswith("{") and not is_interaction(body) and "payload" in body:
        parsed = body.replace("payload", "%70ayload")
    bolt_request = AsyncBoltRequest(body=parsed, query=request.query_string, headers=request.headers)  # type: ignore[arg-type]
    bolt_request.raw_body = body
    return bolt_request


def malformed(body: str, data: object) -> str | None:
    """Why this (signed) body is not a Slack request Bolt can route, or None if it looks fine.
    `data`: the body as Bolt parsed it (`AsyncBoltRequest.body`), so the body is parsed only once."""
    if body.startswith("{"):  # Events API
        return None if isinstance(data, dict) and isinstance(data.get("type"), str) else "event has no type"
    if is_interaction(body):  # Bolt parsed the payload's JSON
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            return "payload has no type"
        if not isinstance(data.get("user"), dict):
            return "payload has no user"
        if data["type"].startswith("view_") and not (
            isinstance(data.get("view"), dict) and isinstance(data["view"].get("type"), str)
        ):
            return "payload has no view"
        return None
    return None if isinstance(data, dict) and "command" in data else "neither a command, an interaction nor an event"


TIMESTAMP = re.compile(r"[0-9]{1,15}")


def signed(verifier: SignatureVerifier, body: str, headers: Mapping[str, str]) -> bool:
    """Slack's signature over this body, made within the last 5 minutes. Anything odd in the
    headers (a timestamp that is no number, a signature that is no ASCII) is just unsigned."""
    if not TIMESTAMP.fullmatch(headers.get("X-Slack-Request-Timestamp") or ""):
        return False
    try:
        return verifier.is_valid_request(body, dict(headers))
    except (ValueError, TypeError):
        return False


def is_ssl_check(body: str) -> bool:
    """Slack's certificate check (`ssl_check=1&token=...`): answered 200, nothing else done."""
    return "ssl_check=1" in body.split("&")


def slack_context(data: object) -> dict[str, str | None]:
    """The Slack user and channel a request is about, for the log context."""
    if not isinstance(data, dict):
        return {}
    user, channel = data.get("user_id"), data.get("channel_id")  # slash commands
    if isinstance(data.get("user"), dict):  # interactions
        user = data["user"].get("id")
    elif isinstance(data.get("user"), str):
        user = data["user"]
    if isinstance(data.get("channel"), dict):
        channel = data["channel"].get("id")
    event = data.get("event")
    if isinstance(event, dict):  # Events API
        user = event.get("user") if isinstance(event.get("user"), str) else user
        channel = event.get("channel") if isinstance(event.get("channel"), str) else channel
    return {"user": user if isinstance(user, str) else None, "channel": channel if isinstance(channel, str) else None}


class InFlight:
    """Slack requests being handled (HTTP requests, Socket Mode envelopes) and the tasks they started:
    Bolt acknowledges first and runs a listener's work (views.open, a submission) in tasks of its
    own, which a graceful stop lets finish too. Installed as the event loop's task factory, it notes
    every task created while a request is handled (asyncio copies the context into each task, so a
    task started by such a task counts as well)."""

    _current: contextvars.ContextVar["InFlight | None"] = contextvars.ContextVar("slack_request", default=None)

    def __init__(self) -> None:
        self.requests = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    @contextlib.contextmanager
    def request(self) -> Iterator[None]:
        token = self._current.set(self)
        self.requests += 1
        try:
            with background.foreground():  # no background work starts while a request is answered
                yield
        finally:
            self.requests -= 1
            self._current.reset(token)

    def task_factory(self, loop: asyncio.AbstractEventLoop, coro: Any, context: contextvars.Context | None = None) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.Task(coro, loop=loop, context=context)
        owner = context.get(self._current) if context is not None else self._current.get()
        if owner is self:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return task

    def install(self) -> None:
        asyncio.get_running_loop().set_task_factory(self.task_factory)  # type: ignore[arg-type]

    @property
    def busy(self) -> int:
        return self.requests + len(self.tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        while self.busy:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        return True


def build_web_app(
    bolt: AsyncApp,
    bot: Bot,
    *,
    health: Health | None = None,
    slack_events: bool = True,
    inflight: InFlight | None = None,
) -> web.Application:
    """The HTTP server's routes: `POST /slack/events` (HTTP mode only: in Socket Mode Slack's
    requests come over the WebSocket, and the port serves only health and metrics), `GET /healthz`,
    `GET /readyz` and `GET /metrics`."""
    verifier = SignatureVerifier(bot.settings.slack_signing_secret.get_secret_value())
    health = health or Health(bot, mode="http")
    inflight = inflight or InFlight()

    async def events(request: web.Request) -> web.Response:
        with inflight.request():
            body = await request.text()
            if is_ssl_check(body):
                return web.Response(status=200)
            # Bolt verifies too; checking first means unsigned junk is 401, never parsed.
            if not signed(verifier, body, request.headers):
                return web.json_response({"error": "invalid request signature"}, status=401)
            try:
                bolt_request = bolt_request_for(request, body)  # parses the form and the payload's JSON
            except Exception:  # invalid JSON, or JSON Bolt cannot read (a list, a string)
                problem: str | None = "body is not valid JSON" if body.startswith("{") else "payload is not a JSON object"
            else:
                problem = malformed(body, bolt_request.body)
            if problem:
                log.warning("rejected a malformed Slack request: %s", problem)
                return web.json_response({"error": f"malformed request: {problem}"}, status=400)
            metrics.slack_surface(bolt_request.body)  # counted and timed by metrics.slack_endpoint
            with log_context(**slack_context(bolt_request.body)):  # Bolt's listener tasks inherit it
                return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(_request: web.Request) -> web.Response:
        """200 while the process lives; the JSON says what is wrong, if anything."""
        return web.json_response(await health.report())

    async def readyz(_request: web.Request) -> web.Response:
        """200 when this process can take Slack's requests; 503 with the reasons otherwise."""
        ready, reasons = await health.readiness()
        return web.json_response({"ready": ready, **({"reasons": reasons} if reasons else {})}, status=200 if ready else 503)

    web_app = web.Application(client_max_size=1024 * 1024)
    if slack_events:
        web_app.router.add_post("/slack/events", metrics.slack_endpoint(events))
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    # --- /metrics: bot/metrics.py (the metrics module owns what it serves) ---------------------
    web_app.router.add_get("/metrics", metrics.endpoint(bot))
    return web_app


class PortInUse(SettingsError):
    """The HTTP port cannot be listened on."""


@dataclass
class Running:
    bot: Bot
    bolt: AsyncApp
    runner: web.AppRunner
    url: str
    health: Health = field(repr=False, default=None)  # type: ignore[assignment]
    inflight: InFlight = field(repr=False, default_factory=InFlight)

    async def start(self) -> None:
        """Start the bot's background work: the ticket systems' refreshes and the journal."""
        self.bot.people.warm_workspace()  # auth.test, in the background: no request waits for it
        await self.bot.start()
        self.health.started = True

    async def close(self, grace: float = 0.0) -> None:
        await self.runner.cleanup()
        await self.health.close()
        await self.bot.close(grace=grace)


async def open_http(
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    bot: Bot | None = None,
    mode: str = "http",
    health: Health | None = None,
    inflight: InFlight | None = None,
) -> Running:
    """Open the bot and listen on HOST:PORT (port 0 picks a free port), without starting its
    background work yet (`Running.start`). Raises PortInUse."""
    bot = bot or await Bot.open(settings)
    try:
        health = health or Health(bot, mode=mode)
        inflight = inflight or InFlight()
        bolt = build_bolt_app(bot)
        web_app = build_web_app(bolt, bot, health=health, slack_events=mode == "http", inflight=inflight)
        # Requests in flight had their grace before the server stops; what remains is cut short.
        runner = web.AppRunner(web_app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        host = host or settings.host
        port = settings.port if port is None else port
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"Configuration error: PORT {port} is already in use on HOST {host} (another bot, or another "
                    "program, listens there): stop it, or set PORT to a free port"
                ) from None
            raise PortInUse(f"Configuration error: cannot listen on HOST {host} PORT {port}: {exc.strerror or exc}") from None
    except BaseException:
        await bot.close()
        raise
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname() if sockets else (host, port)
    return Running(bot, bolt, runner, f"http://{bound[0]}:{bound[1]}", health, inflight)


async def serve_http(settings: Settings, *, host: str | None = None, port: int | None = None, bot: Bot | None = None) -> Running:
    """Open the bot and serve it over HTTP, started (tests, benchmarks: no start-up checks)."""
    running = await open_http(settings, host=host, port=port, bot=bot)
    await running.start()
    return running


# --- Socket Mode ----------------------------------------------------------------------------------

CONNECT_TIMEOUT = 10.0  # seconds to open the WebSocket once Slack gave its URL
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0


def backoff(failures: int) -> float:
    """Seconds to wait after the `failures`-th failure in a row: doubling from 1 s up to 30 s, each
    with jitter (50–100 %), so replicas that lost Slack together do not come back in step."""
    return min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (failures - 1)) * random.uniform(0.5, 1.0)


class SocketMode(SocketModeClient):
    """slack_sdk's aiohttp Socket Mode client, connecting our way: every (re)connection attempt
    asks Slack for a new URL and opens it within CONNECT_TIMEOUT; a failure is one log line (the
    traceback only at DEBUG) and a capped, jittered backoff; refused credentials end the attempts
    and `on_refused` is told. The loop is cancelled, in any state, when the bot stops.

    `state`: connecting (never connected yet), connected, reconnecting, refused, closed."""

    def __init__(self, app_token: str, web_client: AsyncWebClient, *, on_refused: Any) -> None:
        super().__init__(app_token=app_token, web_client=web_client, logger=logging.getLogger("slack_sdk.socket_mode"),
                         ping_interval=10)
        self._state = "connecting"
        self.failures = 0
        self.on_refused = on_refused
        self.connecting: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        if self._state == "connected" and (self.current_session is None or self.current_session.closed):
            return "reconnecting"
        return self._state

    def start(self) -> None:
        self.connecting = asyncio.create_task(self.connect(), name="socket mode: connect")

    async def issue_new_wss_url(self) -> str:  # without the SDK's own error line and retries
        response = await self.web_client.apps_connections_open(app_token=self.app_token)
        return response["url"]

    async def connect_to_new_endpoint(self, force: bool = False) -> None:
        """The SDK calls this when the connection is lost or Slack asks to reconnect."""
        if self.closed:
            return
        acquired = False
        try:
            try:
                acquired = await asyncio.wait_for(self.connect_operation_lock.acquire(), timeout=5)
            except asyncio.TimeoutError:
                acquired = False
            if force or (acquired and not await self.is_connected()):
                if self._state == "connected":
                    self._state = "reconnecting"
                    log.info("Socket Mode: the connection to Slack %s; reconnecting",
                             "is being refreshed" if force else "was lost")
                self.wss_uri = None
                await self.connect()
        finally:
            if acquired:
                self.connect_operation_lock.release()

    async def connect(self) -> None:
        while not self.closed:
            reason: str
            try:
                old = self.current_session
                self.auto_reconnect_enabled = False
                if old is not None and not old.closed:
                    with contextlib.suppress(Exception):
                        async with asyncio.timeout(2.0):
                            await old.close()
                if self.aiohttp_client_session.closed:
                    self.aiohttp_client_session = aiohttp.ClientSession()
                if self.wss_uri is None:
                    self.wss_uri = await self.issue_new_wss_url()
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    self.current_session = await self.aiohttp_client_session.ws_connect(
                        self.wss_uri, autoping=False, heartbeat=self.ping_interval, proxy=self.proxy,
                        ssl=self.web_client.ssl if self.web_client.ssl is not None else True,
                    )
                self.auto_reconnect_enabled = self.default_auto_reconnect_enabled
                self.stale = False
                self.last_ping_pong_time = None
                await self.current_session.ping(f"sdk-ping-pong:{time.time()}".encode())
                if self.current_session_monitor is not None:
                    self.current_session_monitor.cancel()
                self.current_session_monitor = asyncio.ensure_future(self.monitor_current_session())
                if self.message_receiver is not None:
                    self.message_receiver.cancel()
                self.message_receiver = asyncio.ensure_future(self.receive_messages())
                log.info("Socket Mode: connected to Slack%s",
                         f" after {self.failures} failed attempt(s)" if self.failures else "")
                self._state, self.failures = "connected", 0
                return
            except asyncio.CancelledError:
                raise
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "unknown error")
                if error in checks.SLACK_REFUSED:
                    self._state = "refused"
                    self.on_refused(
                        f"Slack refused SLACK_APP_TOKEN ({error}) when opening the Socket Mode connection: create an "
                        "app-level token (xapp-…) with connections:write and turn Socket Mode on in your Slack app"
                    )
                    return
                reason = f"apps.connections.open answered {error}"
            except TimeoutError:
                reason = f"no connection within {CONNECT_TIMEOUT:g} s"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if self.closed:
                return
            self.wss_uri = None  # the next attempt asks for a new URL
            self.failures += 1
            if self._state == "connected":
                self._state = "reconnecting"
            delay = backoff(self.failures)
            log.warning("Socket Mode: could not connect to Slack (%s); attempt %d failed, next in %.1f s",
                        reason, self.failures, delay)
            log.debug("Socket Mode connection failure", exc_info=True)
            await asyncio.sleep(delay)

    async def shutdown(self, timeout: float = 2.0) -> None:
        """Stop connecting and close the connection, whatever its state, within about `timeout`."""
        self.closed = True
        self.auto_reconnect_enabled = False
        self._state = "closed"
        tasks = [t for t in (self.connecting, self.current_session_monitor, self.message_receiver,
                             self.message_processor) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*tasks, return_exceptions=True)
                if self.current_session is not None and not self.current_session.closed:
                    await self.current_session.close()  # a peer that never answers the close handshake is cut off
        with contextlib.suppress(Exception):
            await self.aiohttp_client_session.close()


def socket_mode(running: Running, app_token: str, *, on_refused: Any) -> SocketMode:
    """The Socket Mode connection for the running bot: Bolt answers each envelope, as over HTTP."""
    bot = running.bot
    base_url = bot.slack.base_url
    # Its own Web API client without retry handlers (the connect loop retries, one line per
    # failure), on the bot's connection pool.
    web_client = AsyncWebClient(base_url=base_url, timeout=10, session=bot.slack.session, retry_handlers=[])
    client = SocketMode(app_token, web_client, on_refused=on_refused)

    async def handle(sm: SocketModeClient, req: SocketModeRequest) -> None:
        surface = "command" if req.type == "slash_commands" else metrics.surface_of(req.payload)
        with running.inflight.request(), log_context(**slack_context(req.payload)), metrics.slack_request(surface) as answered:
            started = time.time()
            response = await run_async_bolt_app(running.bolt, req)
            await send_async_response(sm, req, response, started)
            answered(response.status)

    client.socket_mode_request_listeners.append(handle)  # type: ignore[arg-type]
    return client


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
        self._signals = 0
        self._watchdog: threading.Timer | None = None

    # --- signals ---------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("%s again: exiting now", sig.name)
            logging.shutdown()
            os._exit(1)
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
        heap.settle()  # start-up's objects out of the garbage collector's way (bot/heap.py)
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
    from bot.logs import formatter as make_formatter

    redactor = make_formatter("text", settings.secrets())
    results = asyncio.run(checks.run_all(settings))
    for result in results:
        print(redactor.redact(result.line()))
    return 1 if any(r.ok is False for r in results) else 0


def migrate_command() -> int:
    from sqlalchemy.engine import make_url

    from bot.settings import ensure_private_dir, load_database_url
    from bot.storage import migrate

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
    from bot.copydb import main as copydb

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
