"""Entry point: read settings, build the bot, serve Slack over HTTP or Socket Mode.

    python app.py                 # Socket Mode when SLACK_APP_TOKEN is set, else HTTP
    python app.py --mode http     # POST /slack/events, GET /healthz on HOST:PORT
    python app.py --mode socket
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

import handlers
from bot.core import Bot
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("app")


class RedactSecrets(logging.Filter):
    """Replace every secret value that would reach a log line."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = message
            for secret in self.secrets:
                redacted = redacted.replace(secret, "[redacted]")
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # slack_sdk decides whether to format each request and response for its debug log by its
    # logger's own level (`logger.level <= DEBUG`), which is NOTSET (0) unless set: without this,
    # every Web API call formats its whole request and response for a debug line nobody reads.
    logging.getLogger("slack_sdk.web.async_client").setLevel(settings.log_level)


def build_bolt_app(bot: Bot) -> AsyncApp:
    # Bolt also reads SLACK_BOT_TOKEN from the environment and warns that our client (which carries
    # that same token, plus retry handlers) makes it unused: true, and nothing to act on.
    logging.getLogger("slack_bolt.AsyncApp").addFilter(
        lambda record: "`token` will be unused" not in record.getMessage()
    )
    app = AsyncApp(
        client=bot.slack,
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


def build_web_app(bolt: AsyncApp, bot: Bot) -> web.Application:
    verifier = SignatureVerifier(bot.settings.slack_signing_secret.get_secret_value())

    async def slack_events(request: web.Request) -> web.Response:
        body = await request.text()
        # Bolt verifies too; checking first means unsigned junk is 401, never parsed.
        if not verifier.is_valid_request(body, dict(request.headers)):
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
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(_request: web.Request) -> web.Response:
        if await bot.storage.ping():
            return web.json_response({"ok": True})
        return web.json_response({"ok": False, "error": "database unreachable"}, status=503)

    web_app = web.Application(client_max_size=1024 * 1024)
    web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
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
