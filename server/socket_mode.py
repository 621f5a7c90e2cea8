"""Socket Mode: Slack's requests over a WebSocket the bot opens (SLACK_APP_TOKEN), answered by the same
Bolt app as over HTTP. Each (re)connection asks Slack for a new URL; failures back off, capped and
jittered; refused credentials stop the attempts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import aiohttp
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.ops import checks, metrics
from bot.ops.logs import log_context
from handlers import shapes
from server.bolt import slack_context
from server.http import Running

log = logging.getLogger("app")  # the process's own lines keep the logger name operators know


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
        if problem := shapes.problem(req.payload, command=req.type == "slash_commands"):
            with metrics.slack_request() as answered:
                log.warning("rejected a malformed Slack request over Socket Mode: %s", problem)
                # acknowledged all the same: Slack would only send it again
                await sm.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
                answered(400)
            return
        surface = "command" if req.type == "slash_commands" else metrics.surface_of(req.payload)
        with running.inflight.request(), log_context(**slack_context(req.payload)), metrics.slack_request(surface) as answered:
            started = time.time()
            response = await run_async_bolt_app(running.bolt, req)
            await send_async_response(sm, req, response, started)
            answered(response.status)

    client.socket_mode_request_listeners.append(handle)  # type: ignore[arg-type]
    return client
