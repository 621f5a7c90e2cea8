"""The floor: a minimal Bolt `AsyncApp` whose listeners only acknowledge, served by the same HTTP
stack as the bot (aiohttp `web.AppRunner` without access log, Bolt's aiohttp adapter, the same route
and body limit as `server.http.build_web_app`) — but none of the bot's own code in front of Bolt, so whatever
the bot adds shows up as the difference.

    python -m bench.floor --port 0 --signing-secret S --slack-api-url http://127.0.0.1:N/api/

Same listeners as the bot (the slash command, the `create_ticket` message shortcut, the
`ticket_modal` view submission), same AsyncApp options, same Web API client target (Bolt calls
auth.test once, on the first request). Prints its base URL.

`--views-open`: the views.open floor. Its `/ticket` and message-shortcut listeners acknowledge, then
call `views.open` with a fixed modal: the least any Bolt bot does for these requests. The modal is
a one-field one (`ONE_FIELD_MODAL`), or with `--modal-file` one per listener (JSON: {"command": view,
"shortcut": view}; the bench's views_open phase gives it the forms the bot opens, so that the fake
Slack does the same work for the floor's calls as for the bot's). Its Web API client is set up as
any careful bot's (and as the bot's): one keep-alive aiohttp session for every call, and
slack_sdk's debug formatting off (its loggers at WARNING).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bench.servers import serve  # the same runner as the harness's servers

SHORTCUT_CALLBACK_ID = "create_ticket"  # bot.slack.views.SHORTCUT_CALLBACK_ID
MODAL_CALLBACK_ID = "ticket_modal"  # bot.slack.views.MODAL_CALLBACK_ID
ONE_FIELD_MODAL: dict[str, Any] = {
    "type": "modal", "callback_id": MODAL_CALLBACK_ID,
    "title": {"type": "plain_text", "text": "New ticket"},
    "submit": {"type": "plain_text", "text": "Create"},
    "blocks": [{"type": "input", "block_id": "title", "label": {"type": "plain_text", "text": "Title"},
                "element": {"type": "plain_text_input", "action_id": "value"}}],
}


def build(signing_secret: str, slack_api_url: str, token: str, command: str = "/ticket",
          views_open: bool = False, modals: dict[str, dict[str, Any]] | None = None) -> web.Application:
    command_modal = (modals or {}).get("command") or ONE_FIELD_MODAL
    shortcut_modal = (modals or {}).get("shortcut") or ONE_FIELD_MODAL
    client = AsyncWebClient(token=token, base_url=slack_api_url, timeout=10)
    bolt = AsyncApp(client=client, signing_secret=signing_secret, raise_error_for_unhandled_request=False)

    if views_open:

        @bolt.command(command)
        async def ticket_command_open(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            await client.views_open(trigger_id=body["trigger_id"], view=command_modal)

        @bolt.message_shortcut(SHORTCUT_CALLBACK_ID)
        async def create_ticket_shortcut_open(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
            await ack()
            await client.views_open(trigger_id=body["trigger_id"], view=shortcut_modal)

    else:

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
    if views_open:
        # One keep-alive session for all Web API calls (Bolt's per-request clients copy it from
        # `client`); without one, slack_sdk opens a new connection for every call.
        async def open_session(_app: web.Application) -> None:
            client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

        async def close_session(_app: web.Application) -> None:
            if client.session is not None:
                await client.session.close()

        web_app.on_startup.append(open_session)
        web_app.on_cleanup.append(close_session)
    return web_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--signing-secret", required=True)
    parser.add_argument("--slack-api-url", required=True)
    parser.add_argument("--token", default="xoxb-bench")
    parser.add_argument("--views-open", action="store_true",
                        help="the views.open floor: /ticket and the message shortcut acknowledge, then call views.open"
                             " with a one-field modal")
    parser.add_argument("--modal-file", help='with --views-open: JSON {"command": view, "shortcut": view} to open')
    opts = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # slack_sdk formats every request for its debug log unless its logger's own level is set; its
    # clients log as slack_sdk.web.async_base_client.
    for name in ("slack_sdk.web.async_base_client", "slack_sdk.web.async_client"):
        logging.getLogger(name).setLevel(logging.WARNING)
    modals = json.loads(Path(opts.modal_file).read_text()) if opts.modal_file else None
    app = build(opts.signing_secret, opts.slack_api_url, opts.token, views_open=opts.views_open, modals=modals)
    asyncio.run(serve(app, opts.host, opts.port, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
