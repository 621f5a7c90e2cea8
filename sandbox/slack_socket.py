"""A stand-in for Slack's Socket Mode endpoint, beside the fake Web API in `sandbox/slack.py`.

Slack's documented protocol: the app calls `apps.connections.open` with its app-level token (`xapp-`),
gets a `wss://` URL, connects, and receives `{"type": "hello", ...}`. Slack then sends envelopes
`{"envelope_id", "type": "slash_commands" | "interactive" | "events_api", "payload",
"accepts_response_payload"}`, and the app acknowledges each by sending back `{"envelope_id"}` with,
where allowed, a `payload` (what it would have put in the HTTP response body).

    server = await SocketModeServer.start(slack_state)   # slack_state.app_token = "xapp-..."
    ack = await server.send("slash_commands", {"command": "/ticket", ...})
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from aiohttp import WSMsgType, web

APP_TOKEN = "xapp-1-A111-1-sandbox"


class SocketModeServer:
    def __init__(self, slack_state: Any) -> None:
        self.state = slack_state
        self.sockets: list[web.WebSocketResponse] = []
        self.connected = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.runner: web.AppRunner | None = None

    @classmethod
    async def start(cls, slack_state: Any, app_token: str = APP_TOKEN, host: str = "127.0.0.1") -> "SocketModeServer":
        server = cls(slack_state)
        app = web.Application()
        app.router.add_get("/link", server._link)
        server.runner = web.AppRunner(app, access_log=None)
        await server.runner.setup()
        site = web.TCPSite(server.runner, host, 0)
        await site.start()
        port = server.runner.addresses[0][1]
        slack_state.app_token = app_token
        slack_state.socket_url = f"ws://{host}:{port}/link"
        return server

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "debug_info": {"host": "sandbox"}, "connection_info": {"app_id": "A111"}})
        self.connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                future = self._acks.pop(data.get("envelope_id", ""), None)
                if future and not future.done():
                    future.set_result(data)
        self.sockets.remove(ws)
        if not self.sockets:
            self.connected.clear()
        return ws

    async def send(self, kind: str, payload: dict[str, Any], *, timeout: float = 5.0, retry_attempt: int = 0,
                   retry_reason: str = "") -> dict[str, Any]:
        """Send one envelope to the connected app and return its acknowledgement. `retry_attempt`:
        an event's redelivery (Slack's `retry_attempt` / `retry_reason`, e.g. 1 / "timeout")."""
        await asyncio.wait_for(self.connected.wait(), timeout)
        envelope_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = future
        await self.sockets[-1].send_json({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                          "accepts_response_payload": kind != "events_api",
                                          "retry_attempt": retry_attempt, "retry_reason": retry_reason})
        return await asyncio.wait_for(future, timeout)

    async def close(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self.runner:
            await self.runner.cleanup()
