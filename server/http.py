"""The HTTP server on HOST:PORT: `POST /slack/events` (HTTP mode), `GET /healthz`, `GET /readyz` and
`GET /metrics`; `open_http` opens the bot and listens, `Running` is what is then running."""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot.core import Bot
from bot.ops import metrics
from bot.ops.health import Health
from bot.ops.logs import log_context
from bot.settings import Settings, SettingsError
from server.bolt import (
    InFlight, bolt_request_for, build_bolt_app, is_ssl_check, malformed, signed, slack_context, unreadable,
)

log = logging.getLogger("app")  # the process's own lines keep the logger name operators know


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
            except Exception:  # invalid JSON, or JSON Bolt cannot read (a list, a string, a team that is a number)
                problem: str | None = unreadable(body)
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

    webhook_secret = bot.settings.socialboards_webhook_secret
    expected = webhook_secret.get_secret_value().encode() if webhook_secret else b""

    async def socialboards_webhook(request: web.Request) -> web.Response:
        """Socialboards' webhook: the secret path checked (401, nothing stored), the state it tells
        journaled on the followed ticket before the 200 (bot/follow), each event once."""
        with inflight.request():
            if not expected or not hmac.compare_digest(request.match_info["secret"].encode(), expected):
                log.warning("refused a Socialboards webhook with a wrong secret path")
                return web.json_response({"error": "unknown webhook"}, status=401)
            raw = await request.read()
            try:
                body = json.loads(raw)
                if bot.follower is None:
                    raise KeyError("socialboards")
                found = await bot.follower.pushed("socialboards", body, hashlib.sha256(raw).hexdigest())
            except (ValueError, KeyError) as exc:  # unreadable, or Socialboards is not configured here
                log.warning("rejected a Socialboards webhook: %s", exc)
                return web.json_response({"error": f"unreadable webhook: {exc}"}, status=400)
            return web.json_response({"ok": True, "tickets": found})

    async def oauth(request: web.Request) -> web.Response:
        """Bolt's OAuth flow (installs by OAuth): the *Add to Slack* page, and Slack's redirect back with
        the code, exchanged by `oauth.v2.access` once its state is checked (issued here, not expired,
        not used before, and from this browser's cookie)."""
        with inflight.request():
            flow = bolt.oauth_flow
            assert flow is not None
            bolt_request = await to_bolt_request(request)
            if request.path == flow.install_path:
                return await to_aiohttp_response(await flow.handle_installation(bolt_request))
            return await to_aiohttp_response(await flow.handle_callback(bolt_request))

    web_app = web.Application(client_max_size=1024 * 1024)
    if slack_events and bolt.oauth_flow is not None:
        web_app.router.add_get(bolt.oauth_flow.install_path, oauth)
        web_app.router.add_get(bolt.oauth_flow.redirect_uri_path, oauth)
    if slack_events:
        web_app.router.add_post("/slack/events", metrics.slack_endpoint(events))
        web_app.router.add_post("/webhooks/socialboards/{secret}", socialboards_webhook)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    # --- /metrics: bot/ops/metrics.py (the metrics module owns what it serves) ---------------------
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
        if self.bot.installations is None:  # one workspace: its auth.test, in the background
            self.bot.people.warm_workspace()
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
