"""Entry point: read settings, build the bot, serve Slack over HTTP or Socket Mode.

    python app.py                 # Socket Mode when SLACK_APP_TOKEN is set, else HTTP
    python app.py --mode http     # POST /slack/events, GET /healthz on HOST:PORT
    python app.py --mode socket
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

import handlers
from bot import metrics
from bot.core import Bot
from clients import secrets as run_time_secrets
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("app")


URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")  # scheme://user:password@host
REDACTED = "[redacted]"
MIN_SECRET = 6  # shorter values would redact ordinary words


def secret_forms(value: str) -> set[str]:
    """A secret as it may appear in a log line: as is, and as a form or URL encodes it."""
    return {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe="")}


class RedactingFormatter(logging.Formatter):
    """Formats a record, then removes every secret from the whole line, traceback included:
    the configured ones, those clients learnt at run time (`clients.secrets`), and the password of
    any URL (`DATABASE_URL`)."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self.configured = {form for s in secrets if len(s) >= MIN_SECRET for form in secret_forms(s)}
        self._version: int | None = None
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        version, learnt = run_time_secrets.known()
        if version != self._version:
            values = self.configured | {form for s in learnt if len(s) >= MIN_SECRET for form in secret_forms(s)}
            # longest first, so a secret containing another is removed whole
            ordered = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._version = version
        return self._pattern

    def redact(self, text: str) -> str:
        pattern = self.pattern()
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return URL_PASSWORD.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def formatException(self, ei) -> str:  # type: ignore[no-untyped-def]
        return self.redact(super().formatException(ei))  # also what is cached on the record


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """One handler on the root logger, writing to `stream` (stderr) through the redacting formatter."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # slack_sdk decides whether to format each request and response for its debug log by its
    # logger's own level (`logger.level <= DEBUG`), which is NOTSET (0) unless set: without this,
    # every Web API call formats its whole request and response for a debug line nobody reads.
    logging.getLogger("slack_sdk.web.async_client").setLevel(settings.log_level)
    # aiosqlite's DEBUG lines carry SQL parameters (refresh tokens, payloads): never below INFO.
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))
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


def build_web_app(bolt: AsyncApp, bot: Bot) -> web.Application:
    verifier = SignatureVerifier(bot.settings.slack_signing_secret.get_secret_value())

    async def slack_events(request: web.Request) -> web.Response:
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
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(_request: web.Request) -> web.Response:
        if await bot.storage.ping():
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "error": "database unreachable"}, status=503)

    web_app = web.Application(client_max_size=1024 * 1024)
    web_app.router.add_post("/slack/events", metrics.slack_endpoint(slack_events))
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics.endpoint(bot))
    return web_app


@dataclass
class Running:
    bot: Bot
    bolt: AsyncApp
    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.bot.close()


async def serve_http(settings: Settings, *, host: str | None = None, port: int | None = None, bot: Bot | None = None) -> Running:
    """Open the bot and serve it over HTTP; port 0 picks a free port (tests, benchmarks)."""
    bot = bot or await Bot.open(settings)
    bolt = build_bolt_app(bot)
    runner = web.AppRunner(build_web_app(bolt, bot), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or settings.host, settings.port if port is None else port)
    await site.start()
    sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
    bound = sockets[0].getsockname() if sockets else (host or settings.host, port)
    bot.people.warm_workspace()  # auth.test, in the background: no request waits for it
    await bot.start()
    return Running(bot, bolt, runner, f"http://{bound[0]}:{bound[1]}")


async def run(settings: Settings, mode: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running = await serve_http(settings)
    log.info("HTTP server on %s (POST /slack/events, GET /healthz)", running.url)
    socket_handler = None
    if mode == "socket":
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        assert settings.slack_app_token is not None
        socket_handler = AsyncSocketModeHandler(running.bolt, settings.slack_app_token.get_secret_value())
        await socket_handler.connect_async()
        log.info("connected to Slack in Socket Mode")
    await stop.wait()
    log.info("shutting down; unfinished submissions resume on next start")
    if socket_handler:
        try:  # a peer that never answers the close handshake must not hold up the shutdown
            await asyncio.wait_for(socket_handler.close_async(), 3.0)
        except (asyncio.TimeoutError, Exception) as exc:
            log.info("Socket Mode connection closed without a handshake (%s)", type(exc).__name__)
    await running.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Slack help-desk ticket bot")
    parser.add_argument("--mode", choices=["auto", "socket", "http"], default="auto")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    mode = args.mode
    if mode == "auto":
        mode = "socket" if settings.slack_app_token else "http"
    if mode == "socket" and not settings.slack_app_token:
        print("Configuration error: SLACK_APP_TOKEN is not set (needed for --mode socket)", file=sys.stderr)
        return 2
    setup_logging(settings)
    try:
        asyncio.run(run(settings, mode))
    except SettingsError as exc:  # found while opening the bot, e.g. a bad routing file
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
