"""The floor: a minimal Bolt `AsyncApp` whose listeners only acknowledge, served by the same HTTP
stack as the bot (aiohttp `web.AppRunner` without access log, Bolt's aiohttp adapter, the same route
and body limit as `app.build_web_app`) — but none of the bot's own code in front of Bolt, so whatever
the bot adds shows up as the difference.

    python -m bench.floor --port 0 --signing-secret S --slack-api-url http://127.0.0.1:N/api/

Same listeners as the bot (the slash command, the `create_ticket` message shortcut, the
`ticket_modal` view submission), same AsyncApp options, same Web API client target (Bolt calls
auth.test once, on the first request). Prints its base URL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bench.servers import serve  # the same runner as the harness's servers

SHORTCUT_CALLBACK_ID = "create_ticket"  # bot.views.SHORTCUT_CALLBACK_ID
MODAL_CALLBACK_ID = "ticket_modal"  # bot.views.MODAL_CALLBACK_ID


def build(signing_secret: str, slack_api_url: str, token: str, command: str = "/ticket") -> web.Application:
    bolt = AsyncApp(
        client=AsyncWebClient(token=token, base_url=slack_api_url, timeout=10),
        signing_secret=signing_secret,
        raise_error_for_unhandled_request=False,
    )

    @bolt.command(command)
    async def ticket_command(ack: AsyncAck) -> None:
        await ack()

    @bolt.message_shortcut(SHORTCUT_CALLBACK_ID)
    async def create_ticket_shortcut(ack: AsyncAck) -> None:
        await ack()

    @bolt.view_submission(MODAL_CALLBACK_ID)
    async def ticket_modal_submitted(ack: AsyncAck) -> None:
        await ack()

    async def slack_events(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    web_app = web.Application(client_max_size=1024 * 1024)
    web_app.router.add_post("/slack/events", slack_events)
    web_app.router.add_get("/healthz", healthz)
    return web_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--signing-secret", required=True)
    parser.add_argument("--slack-api-url", required=True)
    parser.add_argument("--token", default="xoxb-bench")
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(build(opts.signing_secret, opts.slack_api_url, opts.token), opts.host, opts.port, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
