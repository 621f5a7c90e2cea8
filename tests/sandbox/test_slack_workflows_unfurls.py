"""The Slack stand-in's side of issue 23 (sandbox/slack.py, sandbox/slack_ui.py): a Workflow Builder run
(`function_executed` with its own `bot_access_token`, ended by `functions.completeSuccess` / `.completeError`),
link unfurls (`link_shared` → `chat.unfurl`) and Work Objects (`entity_details_requested` →
`entity.presentDetails`). Events go to a scripted app that checks Slack's signature with slack_sdk; the app's
calls go through slack_sdk's AsyncWebClient, as the bot's do."""
from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox import slack as slack_sandbox
from sandbox._server import start_app
from sandbox.demo import Demo
from sandbox.slack_socket import SocketModeServer
from sandbox.slack_ui import SlackUI
from tests.conftest import eventually, payload

SECRET = "workflow-test-signing-secret"
TICKET_URL = "https://app.serval.com/tickets/9b2e7c1d-0000-4000-8000-000000000001"
CARD = [{"type": "section", "text": {"type": "mrkdwn", "text": "*IT-1* VPN drops every hour · Open"}}]


@pytest.fixture
async def stack():
    """(state, page client, app's received event bodies, Web API base URL)."""
    received: list[dict] = []
    verifier = SignatureVerifier(SECRET)

    async def events(request: web.Request) -> web.Response:
        body = await request.text()
        assert verifier.is_valid_request(body, dict(request.headers)), "bad signature"
        received.append(json.loads(body))
        return web.Response()

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app_runner, app_url = await start_app(app)
    state = slack_sandbox.SlackState()
    ui = SlackUI(state, request_url=app_url + "/slack/events", signing_secret=SECRET, app_name="Tickets",
                 events=["message.channels", "link_shared", "entity_details_requested"], people=["U111", "U222"],
                 unfurl_domains=["app.serval.com"])
    slack_app = slack_sandbox.create_app(state)
    ui.install(slack_app)
    runner, url = await start_app(slack_app)
    async with httpx.AsyncClient(base_url=url, timeout=10) as page:
        yield state, page, received, url + "/api/"
    await runner.cleanup()
    await app_runner.cleanup()


def of_type(received: list[dict], kind: str) -> list[dict]:
    return [body["event"] for body in received if body["event"]["type"] == kind]


def keys(value) -> set:
    return set(value) if isinstance(value, dict) else set()


async def api_error(call) -> dict:
    with pytest.raises(SlackApiError) as info:
        await call
    return info.value.response.data


# -- workflow steps ---------------------------------------------------------------------------------

async def test_a_workflow_run_sends_function_executed_and_completes_with_the_runs_own_token(stack):
    state, page, received, api = stack
    inputs = {"title": "VPN drops every hour", "description": "Since Monday.", "requester": "U111", "channel": "C111"}
    r = await page.post("/ui/workflow", json={"user": "U111", "callback_id": "create_ticket", "inputs": inputs})
    assert r.status_code == 200, r.text
    execution_id = r.json()["function_execution_id"]
    [event] = await eventually(lambda: of_type(received, "function_executed"), timeout=10)

    documented = payload("function_executed.DERIVED.create_ticket.json")
    assert keys(documented["event"]) <= keys(event)
    assert keys(documented["event"]["function"]) <= keys(event["function"])
    assert event["function"]["callback_id"] == "create_ticket" and event["inputs"] == inputs
    assert event["function"]["input_parameters"] == documented["event"]["function"]["input_parameters"]
    assert event["function_execution_id"] == execution_id
    token = event["bot_access_token"]
    assert token.startswith("xwfp-") and token != state.token

    step = AsyncWebClient(token=token, base_url=api)  # what Bolt gives the listener
    outputs = {"ticket_id": "IT-1", "ticket_url": TICKET_URL, "ticket_system": "serval"}
    assert (await step.functions_completeSuccess(function_execution_id=execution_id, outputs=outputs))["ok"]
    run = state.executions[execution_id]
    assert (run["state"], run["outputs"], run["error"]) == ("completed", outputs, None)
    [call] = state.calls_to("functions.completeSuccess")
    assert call["execution"] == execution_id  # made with the run's own token
    again = await api_error(step.functions_completeError(function_execution_id=execution_id, error="late"))
    assert again["error"] == "execution_not_in_running_state"

    shown = (await page.get("/ui/state", params={"user": "U111"})).json()["workflows"]
    assert [f["callback_id"] for f in shown["functions"]] == ["create_ticket"]
    assert [(x["function_execution_id"], x["state"], x["outputs"]) for x in shown["runs"]] == [
        (execution_id, "completed", outputs)]
    assert "bot_access_token" not in shown["runs"][0]
    other = (await page.get("/ui/state", params={"user": "U222"})).json()["workflows"]
    assert other["runs"] == []  # the run is the person's who started it


async def test_a_step_that_fails_and_the_completions_that_are_refused(stack):
    state, page, received, api = stack
    bot = AsyncWebClient(token=state.token, base_url=api)
    event = state.function_executed_event("create_ticket", {"title": "x", "requester": "U111"})
    execution_id = event["function_execution_id"]

    missing = await api_error(bot.functions_completeSuccess(function_execution_id=execution_id, outputs={"ticket_url": "u"}))
    assert missing["error"] == "parameter_validation_failed" and "ticket_id" in json.dumps(missing)
    no_error = await api_error(bot.api_call("functions.completeError", json={"function_execution_id": execution_id}))
    assert no_error["error"] == "invalid_arguments"
    assert state.executions[execution_id]["state"] == "running"  # nothing refused changed it

    error = "The requester U999 is not a member of this workspace (input: requester)."
    assert (await bot.functions_completeError(function_execution_id=execution_id, error=error))["ok"]
    assert (state.executions[execution_id]["state"], state.executions[execution_id]["error"]) == ("failed", error)
    [call] = state.calls_to("functions.completeError")[-1:]
    assert call["execution"] is None  # the bot token works too

    unknown = await api_error(bot.functions_completeSuccess(function_execution_id="Fx0NOPE", outputs={"ticket_id": "1"}))
    assert unknown["error"] == "function_execution_not_found"
    forged = await api_error(AsyncWebClient(token="xwfp-forged", base_url=api).auth_test())
    assert forged["error"] == "invalid_auth"
    r = await page.post("/ui/workflow", json={"user": "U111", "callback_id": "delete_everything", "inputs": {}})
    assert r.status_code == 404


async def test_the_manifests_own_function_definition_is_what_the_event_carries(stack):
    state, page, received, api = stack
    state.app_functions = {"create_ticket": {  # the manifest JSON schema's form: name -> {type, is_required}
        "title": "Create a ticket", "description": "File a help-desk ticket",
        "input_parameters": {"title": {"type": "string", "title": "Title", "is_required": True},
                             "priority": {"type": "string", "title": "Priority"}},
        "output_parameters": {"ticket_id": {"type": "string", "title": "Ticket id", "is_required": True},
                              "ticket_system": {"type": "string", "title": "Ticket system"}}}}
    r = await page.post("/ui/workflow", json={"user": "U222", "inputs": {"title": "Desk lamp"}})  # default: the first
    assert r.status_code == 200, r.text
    [event] = await eventually(lambda: of_type(received, "function_executed"), timeout=10)
    assert [(p["name"], p["is_required"]) for p in event["function"]["input_parameters"]] == [
        ("title", True), ("priority", False)]
    assert [p["name"] for p in event["function"]["output_parameters"]] == ["ticket_id", "ticket_system"]


# -- unfurls and Work Objects ---------------------------------------------------------------------------

async def test_a_link_in_an_unfurl_domain_sends_link_shared_and_chat_unfurl_shows_under_the_message(stack):
    state, page, received, api = stack
    bot = AsyncWebClient(token=state.token, base_url=api)
    r = await page.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "see https://example.com/x"})
    assert r.status_code == 200  # not an unfurl domain: no link_shared at all
    r = await page.post("/ui/message", json={"user": "U111", "channel": "C111",
                                             "text": f"Any news on {TICKET_URL} ? and https://other.org/y"})
    ts = r.json()["ts"]
    [event] = await eventually(lambda: of_type(received, "link_shared"), timeout=10)
    documented = payload("link_shared.DERIVED.ticket_link.json")["event"]
    assert keys(documented) - {"thread_ts"} <= keys(event)  # thread_ts only for a reply in a thread
    assert (event["channel"], event["user"], event["message_ts"], event["source"]) == ("C111", "U111", ts,
                                                                                    "conversations_history")
    assert event["links"] == [{"domain": "app.serval.com", "url": TICKET_URL}] and event["is_bot_user_member"]

    # By unfurl_id and source (as the event gives them), then again by channel and ts: the second
    # call changes the same unfurl rather than adding one.
    unfurls = {TICKET_URL: {"blocks": CARD}}
    assert (await bot.chat_unfurl(unfurl_id=event["unfurl_id"], source=event["source"], unfurls=unfurls))["ok"]
    assert state.unfurls == {f"C111:{ts}": unfurls}
    closed = {TICKET_URL: {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*IT-1* · Done"}}]}}
    assert (await bot.chat_unfurl(channel="C111", ts=ts, unfurls=closed))["ok"]
    assert state.unfurls == {f"C111:{ts}": closed}
    shown = (await page.get("/ui/state", params={"user": "U222"})).json()["unfurls"]
    assert shown == {f"C111:{ts}": {"unfurls": closed, "entity": False}}

    # A URL the message does not have, blocks Slack would refuse, nothing to unfurl: refused.
    elsewhere = await api_error(bot.chat_unfurl(channel="C111", ts=ts, unfurls={"https://app.serval.com/x": {"blocks": CARD}}))
    assert elsewhere["error"] == "cannot_unfurl_message"
    bad = await api_error(bot.chat_unfurl(channel="C111", ts=ts, unfurls={TICKET_URL: {"blocks": [{"type": "nope"}]}}))
    assert bad["error"] == "invalid_blocks"
    empty = await api_error(bot.api_call("chat.unfurl", json={"channel": "C111", "ts": ts}))
    assert empty["error"] == "invalid_arguments"
    gone = await api_error(bot.chat_unfurl(channel="C111", ts="1.000001", unfurls=unfurls))
    assert gone["error"] == "cannot_unfurl_message"
    assert state.unfurls == {f"C111:{ts}": closed}


async def test_a_link_in_a_thread_names_the_thread_and_links_are_offered_once(stack):
    state, page, received, api = stack
    root = state.post_user_message("C111", "U222", "VPN again")
    r = await page.post("/ui/message", json={"user": "U111", "channel": "C111", "thread_ts": root["ts"],
                                             "text": f"{TICKET_URL} {TICKET_URL} <{TICKET_URL}/history|history>"})
    [event] = await eventually(lambda: of_type(received, "link_shared"), timeout=10)
    assert event["thread_ts"] == root["ts"] and event["message_ts"] == r.json()["ts"]
    assert [link["url"] for link in event["links"]] == [TICKET_URL, TICKET_URL + "/history"]


async def test_work_object_details_are_requested_and_present_details_is_recorded(stack):
    state, page, received, api = stack
    bot = AsyncWebClient(token=state.token, base_url=api)
    r = await page.post("/ui/message", json={"user": "U111", "channel": "C111", "text": TICKET_URL})
    ts = r.json()["ts"]
    [shared] = await eventually(lambda: of_type(received, "link_shared"), timeout=10)
    entity = {"entity_type": "slack#/entities/task", "url": TICKET_URL, "external_ref": {"id": "IT-1"},
              "entity_payload": {"attributes": {"title": {"text": "VPN drops every hour"}}}}
    metadata = {"entities": [{**entity, "app_unfurl_url": TICKET_URL}]}
    assert (await bot.chat_unfurl(unfurl_id=shared["unfurl_id"], source="conversations_history",
                                  metadata=json.dumps(metadata)))["ok"]
    assert state.unfurl_metadata == {f"C111:{ts}": metadata}

    r = await page.post("/ui/entity_details", json={"user": "U222", "channel": "C111", "ts": ts, "url": TICKET_URL})
    trigger_id = r.json()["trigger_id"]
    [event] = await eventually(lambda: of_type(received, "entity_details_requested"), timeout=10)
    assert (event["user"], event["trigger_id"], event["external_ref"], event["message_ts"]) == (
        "U222", trigger_id, {"id": "IT-1"}, ts)
    assert event["link"] == {"url": TICKET_URL, "domain": "app.serval.com"}

    assert (await bot.api_call("entity.presentDetails", json={"trigger_id": trigger_id, "metadata": entity}))["ok"]
    assert state.entity_details[-1]["metadata"] == entity and state.entity_details[-1]["trigger_id"] == trigger_id
    refused = await api_error(bot.api_call("entity.presentDetails", json={"metadata": entity}))
    assert refused["error"] == "invalid_arguments" and len(state.entity_details) == 1


async def test_the_same_events_go_over_socket_mode(stack):
    """Socket Mode: the event built by the state goes in an `events_api` envelope, acknowledged by id."""
    state, page, received, api = stack
    server = await SocketModeServer.start(state)
    try:
        async with aiohttp.ClientSession() as http:
            opened = await AsyncWebClient(token=state.app_token, base_url=api).apps_connections_open(
                app_token=state.app_token)
            async with http.ws_connect(opened["url"]) as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                event = state.function_executed_event("create_ticket", {"title": "x", "requester": "U111"})
                sending = asyncio.create_task(server.send("events_api", state.event_callback(event)))
                envelope = await ws.receive_json(timeout=5)
                assert envelope["type"] == "events_api" and envelope["accepts_response_payload"] is False
                assert envelope["payload"]["event"]["bot_access_token"] == event["bot_access_token"]
                await ws.send_json({"envelope_id": envelope["envelope_id"]})
                assert (await sending) == {"envelope_id": envelope["envelope_id"]}
    finally:
        await server.close()


def test_the_demo_keeps_unfurls_with_its_messages_across_restarts(tmp_path):
    first = Demo(tmp_path)
    first.slack = slack_sandbox.SlackState()
    first._seed_slack(first.slack, "Tickets")
    message = first.slack.post_user_message("C111", "U111", TICKET_URL)
    first.slack.unfurls[f"C111:{message['ts']}"] = {TICKET_URL: {"blocks": CARD}}
    first._save_slack()

    again = slack_sandbox.SlackState()
    Demo(tmp_path)._seed_slack(again, "Tickets")
    assert again.unfurls == {f"C111:{message['ts']}": {TICKET_URL: {"blocks": CARD}}}
