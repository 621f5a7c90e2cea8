"""What the ticket-system sandboxes share: serving an app on loopback, running it from the command
line, and recording each request the way tests read it back."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

from aiohttp import web


async def start_app(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve `app`; port 0 picks a free port. Returns (runner, base URL); `await runner.cleanup()`."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    real_host, real_port = runner.addresses[0][:2]
    return runner, f"http://[{real_host}]:{real_port}" if ":" in real_host else f"http://{real_host}:{real_port}"


def serve_forever(start: Callable[[], Awaitable[tuple[web.AppRunner, str]]]) -> None:
    """Start a sandbox, print its base URL and serve until Ctrl-C."""

    async def run() -> None:
        runner, url = await start()
        print(url, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


def parse_body(raw: bytes, content_type: str) -> Any:
    """A form as a dict, JSON as its value, anything else as text; None when empty."""
    if not raw:
        return None
    text = raw.decode("utf-8", "replace")
    if content_type == "application/x-www-form-urlencoded":
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        return json.loads(text)
    except ValueError:
        return text


def recorded(request: web.Request, raw: bytes) -> dict[str, Any]:
    """The request as tests read it back: method, path, query, headers (without Authorization), body."""
    return {
        "method": request.method, "path": request.path, "query": dict(request.query),
        "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        "body": parse_body(raw, request.content_type)}
