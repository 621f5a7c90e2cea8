"""The page's server side (sandbox/slack_ui.py) without a browser: what it sends an app, and how it
handles the app's answers, checked against a scripted app that verifies Slack's signature with
slack_sdk (an implementation independent of the stand-in's)."""
from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any

import httpx
import pytest
from aiohttp import web
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from sandbox import slack as slack_sandbox
from sandbox.slack_ui import TROUBLE, SlackUI, element_state
from tests.conftest import eventually

SECRET = "ui-test-signing-secret"
MODAL = {"type": "modal", "callback_id": "form", "title": {"type": "plain_text", "text": "Form"},
         "submit": {"type": "plain_text", "text": "Save"},
         "blocks": [{"type": "input", "block_id": "title", "label": {"type": "plain_text", "text": "Title"},
                     "element": {"type": "plain_text_input", "action_id": "value"}}]}


def notice(text: str) -> dict:
    return {"type": "modal", "title": {"type": "plain_text", "text": "Form"},
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


class FakeApp:
    """Records what Slack sends; answers with `answers` (in order), opening a modal on commands."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, Any]] = []
        self.verifier = SignatureVerifier(SECRET)
        self.client: AsyncWebClient | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        assert self.verifier.is_valid_request(body, dict(request.headers)), "bad signature"
        if request.content_type == "application/json":
            data = json.loads(body)
        else:
            form = dict(urllib.parse.parse_qsl(body))
            data = json.loads(form["payload"]) if "payload" in form else form
        self.requests.append(data)
        if data.get("command") == "/form":
            await self.client.views_open(trigger_id=data["trigger_id"], view=MODAL)
        status, answer = self.answers.pop(0) if self.answers else (200, "")
        if callable(answer):  # does something first (calls Slack), then answers
            answer = await answer()
        if isinstance(answer, web.Response):
            return answer
        if isinstance(answer, dict):
            return web.json_response(answer, status=status)
        return web.Response(status=status, text=answer)


@pytest.fixture
async def stack():
    app = FakeApp()
    app_runner = web.AppRunner(web.Application())
    app_runner.app.router.add_post("/slack/events", app.handle)
    await app_runner.setup()
    await web.TCPSite(app_runner, "127.0.0.1", 0).start()
    state = slack_sandbox.SlackState(strict_triggers=True)
    ui = SlackUI(state, request_url=f"http://127.0.0.1:{app_runner.addresses[0][1]}/slack/events",
                 signing_secret=SECRET, app_name="Forms", commands=[{"command": "/form"}],
                 shortcuts=[{"name": "File it", "type": "message", "callback_id": "file_it"}],
                 home_tab=True, events=["app_home_opened"], people=["U111", "U222"])
    slack_app = slack_sandbox.create_app(state)
    ui.install(slack_app)
    runner = web.AppRunner(slack_app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    app.client = AsyncWebClient(token="xoxb-test", base_url=base + "/api/")
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        yield app, state, ui, http
    await runner.cleanup()
    await app_runner.cleanup()


async def open_form(app: FakeApp, ui: SlackUI, http: httpx.AsyncClient, user: str = "U111") -> dict:
    r = await http.post("/ui/message", json={"user": user, "channel": "C111", "text": "/form hello"})
    assert r.status_code == 200, r.text
    modal = ui.snapshot(user)["modal"]
    assert modal is not None and modal["view"]["callback_id"] == "form"
    return modal


async def submit(http: httpx.AsyncClient, modal: dict, title: str = "Printer", user: str = "U111") -> dict:
    r = await http.post("/ui/submit", json={"user": user, "view_id": modal["id"], "values": {"title": title}})
    assert r.status_code == 200, r.text
    return r.json()


async def test_slash_command_is_signed_with_a_trigger_that_opens_a_modal(stack):
    app, state, ui, http = stack
    await open_form(app, ui, http)
    command = app.requests[0]
    assert command["command"] == "/form" and command["text"] == "hello"
    assert command["channel_id"] == "C111" and command["channel_name"] == "dev" and command["user_id"] == "U111"
    assert command["response_url"].startswith(str(http.base_url))
    assert state.triggers[command["trigger_id"]] is None  # issued by the stand-in, spent by views.open
    assert ui.snapshot("U222")["modal"] is None  # only the person who typed it sees the modal


async def test_submission_sends_state_values_and_handles_each_response_action(stack):
    app, state, ui, http = stack
    modal = await open_form(app, ui, http)

    app.answers.append((200, {"response_action": "errors", "errors": {"title": "Too short"}}))
    assert (await submit(http, modal, "P"))["response_action"] == "errors"
    sent = app.requests[-1]
    assert sent["type"] == "view_submission" and sent["view"]["id"] == modal["id"]
    assert sent["view"]["state"]["values"] == {"title": {"value": {"type": "plain_text_input", "value": "P"}}}
    assert ui.snapshot("U111")["modal"]["errors"] == {"title": "Too short"}

    app.answers.append((200, {"response_action": "update", "view": notice("Working")}))
    await submit(http, modal)
    now = ui.snapshot("U111")["modal"]
    assert now["id"] == modal["id"] and now["hash"] != modal["hash"] and now["errors"] == {}
    assert now["view"]["blocks"][0]["text"]["text"] == "Working"

    app.answers.append((200, {"response_action": "push", "view": MODAL}))
    await submit(http, modal)
    pushed = ui.snapshot("U111")["modal"]
    assert pushed["depth"] == 2 and pushed["view"]["previous_view_id"] == modal["id"]

    app.answers.append((200, ""))  # empty: close the current view, back to the one below
    await submit(http, pushed)
    assert ui.snapshot("U111")["modal"]["id"] == modal["id"]

    app.answers.append((200, {"response_action": "push", "view": MODAL}))
    await submit(http, modal)
    app.answers.append((200, {"response_action": "clear"}))
    await submit(http, ui.snapshot("U111")["modal"])
    assert ui.snapshot("U111")["modal"] is None


async def test_app_failures_show_slacks_own_messages(stack):
    app, state, ui, http = stack
    modal = await open_form(app, ui, http)
    app.answers.append((500, "boom"))
    assert (await submit(http, modal))["response_action"] == "trouble"
    assert ui.snapshot("U111")["modal"]["notice"] == TROUBLE
    app.answers.append((200, {"response_action": "update", "view": {"type": "modal"}}))  # invalid view
    await submit(http, modal)
    assert ui.snapshot("U111")["modal"]["notice"] == TROUBLE

    await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "/nope"})
    app.answers.append((404, ""))
    await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "/form"})
    texts = [e["text"] for e in ui.snapshot("U111")["ephemeral"]]
    assert "`/nope` is not a valid command" in texts[0]
    assert texts[1] == '/form failed with the error "dispatch_failed"'
    assert ui.snapshot("U222")["ephemeral"] == []


async def test_command_answers_and_response_url(stack):
    app, state, ui, http = stack
    app.answers.append((200, {"text": "Usage: /form", "response_type": "ephemeral"}))
    await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "/form help"})
    mine = ui.snapshot("U111")["ephemeral"]
    assert [(e["user"], e["text"]) for e in mine] == [(state.bot_user_id, "Usage: /form")]
    r = await http.post(app.requests[0]["response_url"], json={"text": "Shared", "response_type": "in_channel"})
    assert r.status_code == 200
    assert state.messages["C111"][-1]["text"] == "Shared" and state.messages["C111"][-1]["bot_id"] == state.bot_id


async def test_message_shortcut_payload(stack):
    app, state, ui, http = stack
    root = (await http.post("/ui/message", json={"user": "U222", "channel": "C111", "text": "a <b> & @alice"})).json()
    reply = (await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "me too",
                                                  "thread_ts": root["ts"]})).json()
    assert state.find_message("C111", root["ts"])["text"] == "a &lt;b&gt; &amp; <@U111>"  # escaped as Slack does
    r = await http.post("/ui/shortcut", json={"user": "U111", "channel": "C111", "ts": reply["ts"], "callback_id": "file_it"})
    assert r.status_code == 200
    sent = app.requests[-1]
    assert sent["type"] == "message_action" and sent["callback_id"] == "file_it"
    assert sent["message_ts"] == reply["ts"] and sent["message"]["thread_ts"] == root["ts"]
    assert sent["channel"] == {"id": "C111", "name": "dev"} and sent["user"]["id"] == "U111"
    assert sent["trigger_id"] in state.triggers


async def test_block_actions_and_app_home(stack):
    app, state, ui, http = stack
    await http.post("/ui/home", json={"user": "U111"})
    event = app.requests[-1]
    assert event["type"] == "event_callback" and event["event"]["type"] == "app_home_opened"
    assert event["event"]["user"] == "U111" and event["event"]["tab"] == "home"

    home = {"type": "home", "blocks": [{"type": "actions", "block_id": "b", "elements": [
        {"type": "button", "action_id": "new", "text": {"type": "plain_text", "text": "New"}, "value": "v"}]}]}
    await app.client.views_publish(user_id="U111", view=home)
    view_id = ui.snapshot("U111")["home"]["id"]
    await http.post("/ui/action", json={"user": "U111", "view_id": view_id, "block_id": "b", "action_id": "new"})
    sent = app.requests[-1]
    assert sent["type"] == "block_actions" and sent["container"] == {"type": "view", "view_id": view_id}
    assert sent["actions"][0] | {"action_ts": "x"} == {"type": "button", "block_id": "b", "action_id": "new", "value": "v",
                                                      "text": {"type": "plain_text", "text": "New"}, "action_ts": "x"}
    await app.client.views_open(trigger_id=sent["trigger_id"], view=MODAL)  # a trigger from a button opens a modal
    assert ui.snapshot("U111")["modal"]["view"]["callback_id"] == "form"


def test_element_state_for_each_kind():
    options = [{"text": {"type": "plain_text", "text": "One"}, "value": "1"},
               {"text": {"type": "mrkdwn", "text": "*Two*"}, "value": "2"}]
    assert element_state({"type": "plain_text_input"}, "") == {"type": "plain_text_input", "value": None}
    assert element_state({"type": "datepicker"}, "2030-01-02") == {"type": "datepicker", "selected_date": "2030-01-02"}
    assert element_state({"type": "static_select", "options": options}, "2")["selected_option"] == options[1]
    assert element_state({"type": "static_select", "options": options}, "")["selected_option"] is None
    assert element_state({"type": "static_select", "option_groups": [{"options": options}]}, "1")["selected_option"] == options[0]
    assert element_state({"type": "checkboxes", "options": options}, ["2", "nope"])["selected_options"] == [options[1]]
    assert element_state({"type": "users_select"}, "U222") == {"type": "users_select", "selected_user": "U222"}


async def test_long_poll_waits_for_a_change(stack):
    app, state, ui, http = stack
    first = (await http.get("/ui/state", params={"user": "U111"})).json()
    waiting = asyncio.create_task(http.get("/ui/state", params={"user": "U111", "since": first["version"]}))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    started = time.monotonic()
    await http.post("/ui/message", json={"user": "U222", "channel": "C111", "text": "hi"})
    later = (await waiting).json()
    assert later["version"] > first["version"] and time.monotonic() - started < 2
    assert later["messages"]["C111"][-1]["text"] == "hi"
    assert [c["id"] for c in later["channels"] if c["is_im"]] == []  # nobody's DMs but one's own


# --- events (issue 14) -------------------------------------------------------------------------------


@pytest.fixture
async def events_stack(stack):
    app, state, ui, http = stack
    ui.events = {"reaction_added", "app_mention", "message.channels", "message.groups", "message.im"}
    ui.app_name = "Forms"
    ui.retry_delays = (0.0, 0.05, 0.05)
    return app, state, ui, http


async def settled(ui: SlackUI) -> None:
    await eventually(lambda: not ui._tasks)


def events_of(app: FakeApp, kind: str) -> list[dict]:
    return [r for r in app.requests if r.get("type") == "event_callback" and r["event"]["type"] == kind]


async def test_messages_mentions_and_reactions_are_sent_as_signed_events(events_stack):
    app, state, ui, http = events_stack
    ts = (await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "@Forms help me"})).json()["ts"]
    await http.post("/ui/react", json={"user": "U222", "channel": "C111", "ts": ts, "name": "ticket"})
    await http.post("/ui/react", json={"user": "U222", "channel": "C111", "ts": ts, "name": "ticket"})  # taken back
    await settled(ui)
    message, mention, reaction = events_of(app, "message")[0], events_of(app, "app_mention")[0], events_of(app, "reaction_added")[0]
    assert message["event"]["text"] == f"<@{state.bot_user_id}> help me" and message["event"]["channel_type"] == "channel"
    assert mention["event"]["ts"] == ts and "thread_ts" not in mention["event"]
    assert reaction["event"]["item"] == {"type": "message", "channel": "C111", "ts": ts}
    assert reaction["authorizations"][0]["user_id"] == state.bot_user_id
    assert len({message["event_id"], mention["event_id"], reaction["event_id"]}) == 3
    assert events_of(app, "reaction_removed") == []  # not subscribed
    assert "reactions" not in state.find_message("C111", ts)


async def test_events_only_from_conversations_the_bot_is_in_and_its_own_posts_come_back(events_stack):
    app, state, ui, http = events_stack
    state.add_channel("C999", "elsewhere", bot_is_member=False)
    await http.post("/ui/message", json={"user": "U111", "channel": "C999", "text": "@Forms nobody hears"})
    await settled(ui)
    assert app.requests == []
    await app.client.chat_postMessage(channel="C111", text="from the app")
    await settled(ui)
    echoed = events_of(app, "message")[0]["event"]
    assert echoed["bot_id"] == state.bot_id and echoed["text"] == "from the app"
    dm = state.dm_with("U111")["id"]
    await http.post("/ui/message", json={"user": "U111", "channel": dm, "text": "hi app"})
    await settled(ui)
    assert events_of(app, "message")[-1]["event"]["channel_type"] == "im"


async def test_a_failed_delivery_is_retried_as_slack_does(events_stack):
    app, state, ui, http = events_stack
    app.answers += [(500, ""), (503, "")]
    await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "retry me"})
    await settled(ui)
    assert [(d["retry"], d["status"]) for d in ui.deliveries] == [(0, 500), (1, 503), (2, 200)]
    assert len({r["event_id"] for r in app.requests}) == 1
    app.answers.append((500, web.Response(status=500, headers={"X-Slack-No-Retry": "1"})))
    await http.post("/ui/message", json={"user": "U111", "channel": "C111", "text": "not again"})
    await settled(ui)
    assert [d["status"] for d in ui.deliveries[3:]] == [500]  # x-slack-no-retry: 1 stops the retries


async def test_an_update_the_app_made_after_a_submission_stays(stack):
    """The app's views.update can reach Slack before its ack of the submission: the newer word stays."""
    app, state, ui, http = stack
    modal = await open_form(app, ui, http)

    async def update_then_ack() -> dict:
        await app.client.views_update(view_id=modal["id"], view=notice("Done"))
        return {"response_action": "update", "view": notice("Saving")}

    app.answers.append((200, update_then_ack))
    assert (await submit(http, modal))["response_action"] == "update"
    assert ui.snapshot("U111")["modal"]["view"]["blocks"][0]["text"]["text"] == "Done"
