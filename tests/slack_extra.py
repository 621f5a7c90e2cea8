"""A small fake for the Slack Web API methods `sandbox/slack.py` does not answer yet
(`functions.completeSuccess`, `functions.completeError`, `chat.unfurl`, `entity.presentDetails`),
in front of it: these are answered and recorded here (with the token each call carried, so a test can
tell the execution's own token from the bot's), every other call is passed on to the stand-in as is.

Temporary: once the stand-in answers these methods itself, tests point at it directly."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import web

OWN = ("functions.completeSuccess", "functions.completeError", "chat.unfurl", "entity.presentDetails")
REQUIRED = {
    "functions.completeSuccess": ("function_execution_id", "outputs"),
    "functions.completeError": ("function_execution_id", "error"),
    "chat.unfurl": ("unfurls",),
    "entity.presentDetails": ("trigger_id",),
}


class Extra:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self.calls: list[dict[str, Any]] = []
        self.tokens: set[str] = set()  # tokens taken here besides the upstream's (an execution's token)
        self.fail_next: dict[str, list[str]] = {}

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["method"] == method]

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.calls_to(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} called {len(self.calls_to(method))} times, not {count}, within {timeout}s")
            await asyncio.sleep(0.02)
        return self.calls_to(method)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        body = await request.read()
        if method not in OWN:
            async with aiohttp.ClientSession() as session:
                async with session.request(request.method, self.upstream + method + ("?" + request.query_string if request.query_string else ""),
                                           data=body, headers={k: v for k, v in request.headers.items()
                                                               if k.lower() in ("content-type", "authorization")}) as resp:
                    headers = {k: v for k, v in resp.headers.items() if k.lower() in ("content-type", "retry-after")}
                    return web.Response(status=resp.status, body=await resp.read(), headers=headers)
        args: dict[str, Any] = dict(request.query)  # slack_sdk sends some methods' arguments as query parameters
        if request.content_type == "application/json":
            args.update(json.loads(body or b"{}"))
        else:
            args.update(await request.post())
        for key in ("outputs", "unfurls", "metadata"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else args.pop("token", None)
        self.calls.append({"method": method, "args": args, "token": token})
        if token is None:
            return web.json_response({"ok": False, "error": "not_authed"})
        missing = [k for k in REQUIRED[method] if k not in args]
        if missing:
            return web.json_response({"ok": False, "error": "invalid_arguments", "missing": missing})
        if self.fail_next.get(method):
            return web.json_response({"ok": False, "error": self.fail_next[method].pop(0)})
        return web.json_response({"ok": True})


async def start(upstream: str) -> tuple[Extra, web.AppRunner, str]:
    extra = Extra(upstream)
    app = web.Application()
    app.router.add_route("*", "/api/{method}", extra.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return extra, runner, f"http://127.0.0.1:{port}/api/"
