"""The HTTP edge: what reaches the bot before any listener runs, and the limits of the form it opens."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import uuid
from typing import Any

import pytest

from tests.conftest import PAYLOADS, eventually, payload, submission
from tests.test_ticket_flow import block, created, filled, open_modal_with_command

APP_401 = {"error": "invalid request signature"}  # the app's own answer; Bolt's would be {"error": "invalid request"}


# --- signatures and timestamps ---------------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["abc", "", "1.5e9", "-300", "١٧٠٠٠٠٠٠٠٠"])  # the last: Arabic-Indic digits
async def test_a_timestamp_that_is_no_number_is_401_not_500(sender, slack, timestamp):
    body = "command=%2Fticket&text=x&trigger_id=1"
    r = await sender.http.post(sender.url, content=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp.encode(),  # bytes: httpx would refuse non-ASCII text
        "X-Slack-Signature": "v0=" + "0" * 64,
    })
    assert r.status_code == 401 and r.json() == APP_401
    assert slack[0].calls_to("views.open") == []


async def test_a_signature_that_is_no_ascii_is_401_not_500(sender):
    r = await sender.http.post(sender.url, content=b"command=%2Fticket&text=x", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=\u00e9\u00e9".encode(),
    })
    assert r.status_code == 401 and r.json() == APP_401


@pytest.mark.parametrize("signed", [True, False])
async def test_slacks_ssl_check_gets_200(sender, slack, signed):
    """Slack checks the certificate with `ssl_check=1&token=...` (Bolt answers it before verifying)."""
    body = "ssl_check=1&token=verification_token"
    if signed:
        r = await sender.post(body)
    else:
        r = await sender.http.post(sender.url, content=body.encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert slack[0].calls == [c for c in slack[0].calls if c["method"] == "auth.test"]  # nothing else done


MALFORMED = [
    "payload=%7Bnot-json",  # malformed JSON
    "payload=%5B%5D",  # JSON, but not an object
    "payload=" + urllib.parse.quote(json.dumps({"type": "view_submission"})),  # no user, no view
    "",  # empty
    "neither=command",
]


@pytest.mark.parametrize("raw", MALFORMED)
@pytest.mark.parametrize("how", ["unsigned", "stale", "bad signature"])
async def test_an_unsigned_or_stale_malformed_body_is_401_and_never_parsed(sender, slack, caplog, raw, how):
    """The app checks the signature before it parses anything: without that check these bodies
    would be parsed and answered 400 (malformed) or by Bolt's own check."""
    caplog.set_level(logging.DEBUG)
    if how == "unsigned":
        r = await sender.http.post(sender.url, content=raw.encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    elif how == "stale":
        r = await sender.post(raw, timestamp=int(time.time()) - 6 * 60)  # correctly signed, 6 minutes old
    else:
        r = await sender.post(raw, signature="v0=" + "0" * 64)
    assert r.status_code == 401 and r.json() == APP_401
    assert "malformed" not in caplog.text.lower()
    assert not [rec for rec in caplog.records if rec.name.startswith("slack_bolt")]  # Bolt never saw it


# --- the first request does not wait for auth.test ---------------------------------------------


async def test_the_first_request_is_acknowledged_without_waiting_for_auth_test(tmp_path, slack, serval):
    """Bolt asks auth.test on the first request, before any listener can ack; the bot answers it
    from what it asked in the background."""
    from server.http import serve_http
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    slack_state.rate_limit("auth.test", times=2, retry_after=4)
    running = await serve_http(make_settings(tmp_path, slack_url, serval[1]), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        started = time.monotonic()
        r = await sender.command("First one", trigger_id="first.1")
        assert r.status_code == 200 and time.monotonic() - started < 1.0
        await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == "first.1"])
    finally:
        await sender.aclose()
        await running.close()


# --- the title's limits --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [250, 40])
async def test_title_input_allows_what_the_back_end_accepts_and_the_prefill_fits(sender, slack, serval, running, limit):
    backend = running.bot.backends["serval"]
    backend.title_max_length = limit  # what parse_form validates against (set per instance: the class keeps 250)
    long_text = " ".join(f"word{i}" for i in range(200))  # ~1,300 characters after /ticket
    view = await open_modal_with_command(sender, slack[0], long_text)
    title = block(view, "title")["element"]
    assert title["max_length"] == limit
    assert 0 < len(title["initial_value"]) <= limit
    assert [c for c in slack[0].calls_to("views.open") if c.get("error")] == []
    # exactly the maximum is accepted, one more character is refused
    opened = slack[0].calls_to("views.open")[-1]["response"]["view"]
    ok = await sender.interactive(submission(opened, filled("x" * limit), view_id="VMAX"))
    assert ok.json()["response_action"] == "update"
    too_long = await sender.interactive(submission(opened, filled("x" * (limit + 1)), view_id="VOVER"))
    assert too_long.json()["response_action"] == "errors" and str(limit) in too_long.json()["errors"]["title"]


# --- signed bodies whose fields are not what Slack sends (issue 18, item 20) ----------------------


def _set(body: dict, path: str, value: object) -> dict:
    """`body` with the field at `path` ("event.item.channel", "actions.0.block_id") replaced."""
    *parents, last = path.split(".")
    node: Any = body
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[int(last) if isinstance(node, list) else last] = value
    return body


def _event(name: str) -> dict:
    body = payload(name)
    body["event_id"] = f"Ev{uuid.uuid4().hex[:10].upper()}"
    return body


BLOCK_ACTIONS, HOME_ACTIONS = "block_actions.bolt-tests.button.json", "block_actions.slack-docs.home_tab.json"
SUBMISSION, SHORTCUT = "view_submission.DERIVED.ticket_modal.json", "message_shortcut.bolt-tests.json"
REACTION, MESSAGE, CHANGED = ("reaction_added.bolt-tests.json", "message.bolt-tests.channels_plain.json",
                              "message.bolt-tests.message_changed.json")
# (payload file, field, a value of the wrong type, what the answer names): every field Bolt's parsing,
# its matchers and middleware, or the bot's listeners read.
WRONG_FIELDS = [
    (BLOCK_ACTIONS, "actions", "x", "actions is not a non-empty list of objects"),
    (BLOCK_ACTIONS, "actions", [], "actions is an empty list"),
    (BLOCK_ACTIONS, "actions", None, "actions is missing"),
    (BLOCK_ACTIONS, "actions.0", "x", "actions[0] is not an object"),
    (BLOCK_ACTIONS, "actions.0", {}, "actions[0].action_id is missing"),
    (BLOCK_ACTIONS, "actions.0.block_id", 1, "actions[0].block_id is not a string"),
    (BLOCK_ACTIONS, "container", "x", "container is not an object"),
    (BLOCK_ACTIONS, "channel", 5, "channel is not a string or an object"),
    (BLOCK_ACTIONS, "team", [], "team is not a string or an object"),
    (BLOCK_ACTIONS, "user", {"id": ["U1"]}, "user.id is not a string"),
    (HOME_ACTIONS, "view", None, "view is null"),
    (HOME_ACTIONS, "view", "x", "view is not an object"),
    (SUBMISSION, "view.blocks", 1, "view.blocks is not a list of objects"),
    (SUBMISSION, "view.blocks.0.block_id", [], "view.blocks[0].block_id is not a string"),
    (SUBMISSION, "view.id", True, "view.id is not a string"),
    (SUBMISSION, "user.id", [1], "user.id is not a string"),
    (SHORTCUT, "message", [], "message is not an object"),
    (SHORTCUT, "message.ts", 1.5, "message.ts is not a string"),
    (REACTION, "event", "x", "event is not an object"),
    (REACTION, "event", None, "event is missing"),
    (REACTION, "event.user", ["W1"], "event.user is not a string or an object"),
    (REACTION, "event.item", "x", "event.item is not an object"),
    (REACTION, "event.item.channel", ["C1"], "event.item.channel is not a string"),
    (REACTION, "event.reaction", 1, "event.reaction is not a string"),
    (REACTION, "event.item_user", {}, "event.item_user is not a string"),
    (MESSAGE, "event.text", 1, "event.text is not a string"),
    (MESSAGE, "event.channel", ["C1"], "event.channel is not a string or an object"),
    (MESSAGE, "authorizations", "x", "authorizations is not a list of objects"),
    (MESSAGE, "authorizations.0.user_id", ["U1"], "authorizations[0].user_id is not a string"),
    (CHANGED, "event.subtype", [], "event.subtype is not a string"),
    (CHANGED, "event.message", "x", "event.message is not an object"),
    (MESSAGE, "type", ["event_callback"], "type is not a string"),
]


async def _answer_and_log(sender, caplog, send) -> tuple[Any, list[logging.LogRecord]]:
    caplog.set_level(logging.INFO)
    caplog.clear()
    r = await send()
    await asyncio.sleep(0.05)  # anything Bolt would have started in the background logs by now
    return r, [rec for rec in caplog.records if not rec.name.startswith("httpx")]


@pytest.mark.parametrize("name, field, value, named", WRONG_FIELDS,
                         ids=[f"{n.split('.')[0]}:{f}={json.dumps(v)}" for n, f, v, _ in WRONG_FIELDS])
async def test_a_signed_body_with_a_field_of_the_wrong_type_is_400_with_one_log_line(sender, slack, serval, caplog,
                                                                                     name, field, value, named):
    events_api = name.startswith(("reaction", "message."))
    body = _set(_event(name) if events_api else payload(name), field, value)
    send = (lambda: sender.event(body)) if events_api else (lambda: sender.interactive(body))
    r, records = await _answer_and_log(sender, caplog, send)
    assert r.status_code == 400 and r.json() == {"error": f"malformed request: {named}"}, r.text
    assert [rec.getMessage() for rec in records] == [f"rejected a malformed Slack request: {named}"]
    assert records[0].levelno == logging.WARNING and not records[0].exc_info
    assert not [c for c in slack[0].calls if c["method"].startswith(("views.", "chat.", "reactions."))]
    assert created(serval[0]) == []


async def test_a_json_body_of_block_actions_whose_actions_is_no_list_is_400(sender, caplog):
    """The issue's body: JSON (as Socket Mode and a JSON POST carry it), `actions` a string."""
    r, records = await _answer_and_log(sender, caplog, lambda: sender.post(
        json.dumps({"type": "block_actions", "user": {"id": "U111"}, "actions": "x"}), content_type="application/json"))
    assert r.status_code == 400 and "actions is not a non-empty list of objects" in r.json()["error"]
    assert [rec.getMessage() for rec in records] == [
        "rejected a malformed Slack request: actions is not a non-empty list of objects"]


def documented_requests() -> list[tuple[str, object, bool]]:
    """Every request body among the documented payloads: (file, body as Bolt parses it, is a command)."""
    out: list[tuple[str, object, bool]] = []
    for path in sorted(PAYLOADS.iterdir()):
        if path.name.startswith(("view_state_values.", "view_submission_ack.", "event_callback.")) or ".response." in path.name:
            continue
        if path.suffix == ".json":
            out.append((path.name, json.loads(path.read_text()), path.name.startswith("slash_command.")))
        elif path.suffix == ".txt" and not path.name.endswith(".src.txt"):
            text = path.read_text().strip()
            if text.startswith("{"):
                continue  # an excerpt with "..." in it, not a body
            form = dict(urllib.parse.parse_qsl(text, keep_blank_values=True))
            out.append((path.name, json.loads(form["payload"]) if "payload" in form else form, "payload" not in form))
    return out


@pytest.mark.parametrize("name, data, command", documented_requests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_documented_request_passes_the_check(name, data, command):
    from handlers.shapes import problem

    assert problem(data, command=command) is None
