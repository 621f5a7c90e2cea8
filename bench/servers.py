"""The fake Slack Web API and the Serval sandbox as benchmark processes, with timing taps.

    python -m bench.servers slack  --port 0 --token xoxb-bench
    python -m bench.servers serval --port 0 --latency-ms 50 --token test-token

Each serves the unmodified sandbox app (`sandbox.slack`, `sandbox.serval`) and prints its base URL.
An outermost middleware records, per request, the CLOCK_MONOTONIC time it reached the server
(`arrival`, once aiohttp has parsed the request head) and the time the sandbox's answer was ready
(`done`), with the few fields the benchmark correlates on (trigger_id, view_id, message text,
ticket name). On Linux, time.monotonic() is CLOCK_MONOTONIC, one clock for every process on the
machine, so these times compare directly with the load generator's.

Bench-only endpoints (not Slack, not Serval):
    GET  /_bench/calls?since=N   records N.. as [method, arrival, done, status, key, text]
    GET  /_bench/count?method=M  how many calls of M (fake Slack) or "POST /v2/tickets" (Serval)
    POST /_bench/reset           forget the records (and the sandbox's own state)
    POST /_bench/views  {"n": N} fake Slack: N open modals (so the bot's views.update finds them)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import urllib.parse
from collections import Counter
from typing import Any

from aiohttp import web

MODAL = {"type": "modal", "title": {"type": "plain_text", "text": "New ticket"},
         "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "bench"}}]}


class Tap:
    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.counts: Counter[str] = Counter()

    def reset(self) -> None:
        self.records.clear()
        self.counts.clear()

    def add(self, method: str, arrival: float, done: float, status: int, key: str, text: str) -> None:
        self.records.append([method, arrival, done, status, key, text])
        self.counts[method] += 1


def _args(raw: bytes, content_type: str, query: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(query)
    if not raw:
        return args
    if content_type == "application/json":
        try:
            body = json.loads(raw)
            args.update(body if isinstance(body, dict) else {})
        except ValueError:
            pass
    else:
        args.update({k: v[0] for k, v in urllib.parse.parse_qs(raw.decode(errors="replace")).items()})
    return args


def slack_app(token: str) -> tuple[web.Application, Tap]:
    from sandbox import slack as fake

    state = fake.SlackState(token)
    tap = Tap()
    app = fake.create_app(state)

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        arrival = time.monotonic()
        response = await handler(request)
        done = time.monotonic()
        raw = await request.read()  # after the sandbox: reading first would hide the body from it
        args = _args(raw, request.content_type, request.query)
        method = request.path.removeprefix("/api/")
        key = str(args.get("trigger_id") or args.get("view_id") or args.get("message_ts") or "")
        status = response.status
        body = getattr(response, "body", None)
        if status == 200 and isinstance(body, (bytes, bytearray)) and b'"ok": false' in body[:40]:
            status = 299  # a Slack error (ok: false) answered with HTTP 200
        tap.add(method, arrival, done, status, key, str(args.get("text") or "")[:300])
        return response

    async def views(request: web.Request) -> web.Response:
        n = int((await request.json()).get("n", 1))
        ids = [fake._save_view(state, MODAL)["id"] for _ in range(n)]
        return web.json_response({"ids": ids})

    async def reset(_request: web.Request) -> web.Response:
        state.reset()
        tap.reset()
        return web.json_response({"ok": True})

    app.middlewares.insert(0, timing)
    app.router.add_post("/_bench/views", views)
    app.router.add_post("/_bench/reset", reset)
    _common_routes(app, tap)
    return app, tap


def serval_app(latency_ms: float, tokens: list[str]) -> tuple[web.Application, Tap]:
    from sandbox import serval as sandbox

    state = sandbox.ServalState(bearer_tokens=set(tokens), latency=latency_ms / 1000)
    tap = Tap()
    app = sandbox.create_app(state)

    @web.middleware
    async def timing(request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v2/"):
            return await handler(request)
        arrival = time.monotonic()
        response = await handler(request)
        done = time.monotonic()
        raw = await request.read()  # cached by the sandbox
        name = ""
        if request.method == "POST" and request.path == "/v2/tickets":
            try:
                name = str(json.loads(raw).get("name", ""))
            except (ValueError, AttributeError):
                pass
        path = "/v2/tickets/{id}/connect" if request.path.endswith("/connect") else request.path
        tap.add(f"{request.method} {path}", arrival, done, response.status, "", name)
        return response

    async def reset(_request: web.Request) -> web.Response:
        state.reset()
        tap.reset()
        return web.json_response({"ok": True})

    app.middlewares.insert(0, timing)
    app.router.add_post("/_bench/reset", reset)
    _common_routes(app, tap)
    return app, tap


def _common_routes(app: web.Application, tap: Tap) -> None:
    async def calls(request: web.Request) -> web.Response:
        since = int(request.query.get("since", 0))
        return web.json_response({"calls": tap.records[since:], "next": len(tap.records)})

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"count": tap.counts[request.query.get("method", "")]})

    app.router.add_get("/_bench/calls", calls)
    app.router.add_get("/_bench/count", count)


async def serve(app: web.Application, host: str, port: int, path: str) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"http://{host}:{bound}{path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("which", choices=["slack", "serval"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    opts = parser.parse_args(argv)
    if opts.which == "slack":
        app, _ = slack_app(opts.token or "xoxb-bench")
        path = "/api/"
    else:
        app, _ = serval_app(opts.latency_ms, [opts.token or "test-token"])
        path = ""
    asyncio.run(serve(app, opts.host, opts.port, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
