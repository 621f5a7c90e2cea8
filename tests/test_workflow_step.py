"""The *Create a ticket* workflow step (issue 23, item 1): `function_executed`, as Slack documents it
(tests/payloads/function_executed.DERIVED.create_ticket.json), signed and sent through the real HTTP
endpoint and Bolt app; the ticket goes to the Serval stand-in, and the execution ends with
`functions.completeSuccess` or `functions.completeError`, answered by `tests/slack_extra.py` (the
Slack stand-in does not serve these methods yet), called with the execution's own token."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from sandbox.serval import Fault
from server.http import serve_http
from tests import slack_extra
from tests.conftest import SlackSender, eventually, make_settings, payload
from tests.test_logging import BOT, SIGNING, captured  # noqa: F401 (fixture)
from tests.test_reliability import serval_clients  # noqa: F401 (fixture)
from tests.test_ticket_flow import created

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)
TOKEN = "xwfp-EXAMPLE-just-in-time-token"


@pytest.fixture
async def extra(slack):
    state, runner, url = await slack_extra.start(slack[1])
    yield state, url
    await runner.cleanup()


@pytest.fixture
def settings(tmp_path, extra, serval):
    return make_settings(tmp_path, extra[1], serval[1], **FAST)


def execution(*, event_id: str | None = None, execution_id: str | None = None, **inputs: Any) -> dict[str, Any]:
    body = payload("function_executed.DERIVED.create_ticket.json")
    body["event_id"] = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
    body["event"]["function_execution_id"] = execution_id or f"Fx{uuid.uuid4().hex[:10].upper()}"
    body["event"]["inputs"].update(requester="U111", channel="C111")  # people and channels the stand-in knows
    body["event"]["inputs"].update(inputs)
    return body


async def deliver(sender: SlackSender, body: dict[str, Any], retry: int = 0) -> None:
    r = await sender.event(body, retry=retry)
    assert r.status_code == 200 and not r.content, (r.status_code, r.text)


async def test_the_step_completes_once_with_the_ticket_under_redelivery(running, sender, extra, serval):
    calls, _ = extra
    serval_state, _ = serval
    body = execution(priority="high")
    await deliver(sender, body)
    await deliver(sender, body, retry=1)  # Slack's redelivery: the same event
    again = execution(execution_id=body["event"]["function_execution_id"], priority="high")  # another delivery of it
    await asyncio.gather(deliver(sender, again), deliver(sender, again, retry=2))
    done = await calls.wait_for("functions.completeSuccess")
    await running.bot.tickets.idle(10)
    await asyncio.sleep(0.2)
    assert len(calls.calls_to("functions.completeSuccess")) == 1 and not calls.calls_to("functions.completeError")
    assert len(created(serval_state)) == 1
    ticket = next(iter(serval_state.tickets.values()))
    assert ticket["name"] == "VPN drops every hour"
    assert ticket["priorityId"] == "pri-it-high"  # "high": matched by name
    call = done[0]
    assert call["token"] == TOKEN  # the execution's own token, not the bot's
    assert call["args"]["function_execution_id"] == body["event"]["function_execution_id"]
    sub = (await running.bot.storage.tickets_of("U111"))[0]  # the requester's ticket (Home lists it)
    assert call["args"]["outputs"] == {"ticket_id": sub.ticket["display_id"], "ticket_system": "Serval"}
    assert sub.ticket["display_id"].startswith("IT-") and sub.ticket["id"] == ticket["id"]
    assert ticket["requesterUserId"] == serval_state.user_by_email("alice@example.com")["id"]
    assert sub.payload["function"]["ended"] == "success" and "token" not in sub.payload["function"]


async def test_an_unknown_priority_or_team_ends_the_step_with_an_error_naming_it(running, sender, extra, serval):
    calls, _ = extra
    serval_state, _ = serval
    await deliver(sender, execution(priority="Whenever"))
    await deliver(sender, execution(team="Facilities"))
    await deliver(sender, execution(title="  "))
    errors = await calls.wait_for("functions.completeError", 3)
    texts = sorted(c["args"]["error"] for c in errors)
    assert any('"priority" is "Whenever"' in t and "High" in t for t in texts), texts
    assert any('"team" is "Facilities"' in t for t in texts), texts
    assert any('"title" is empty' in t for t in texts), texts
    assert all(c["token"] == TOKEN for c in errors)
    assert created(serval_state) == [] and not calls.calls_to("functions.completeSuccess")


async def test_the_step_completes_once_serval_is_back(running, sender, extra, serval):
    calls, _ = extra
    serval_state, _ = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    await deliver(sender, execution())
    await eventually(lambda: len([r for r in serval_state.requests if r["path"] == "/v2/tickets"]) >= 3, timeout=10)
    assert not calls.calls_to("functions.completeSuccess") and not calls.calls_to("functions.completeError")
    del serval_state.faults["POST /v2/tickets"]
    done = await calls.wait_for("functions.completeSuccess", timeout=15)
    assert done[0]["args"]["outputs"]["ticket_system"] == "Serval"
    await running.bot.tickets.idle(10)
    assert len(serval_state.tickets) == 1 and not calls.calls_to("functions.completeError")


async def test_the_step_ends_with_an_error_after_give_up(tmp_path, extra, serval):
    calls, url = extra
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    running = await serve_http(make_settings(tmp_path, url, serval_url, give_up_after_seconds=1.0, **FAST),
                               host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        await deliver(sender, execution())
        error = (await calls.wait_for("functions.completeError", timeout=15))[0]["args"]["error"]
        assert error.startswith("The ticket could not be created: Serval has not answered for too long")
        assert not calls.calls_to("functions.completeSuccess")
    finally:
        await sender.aclose()
        await running.close()


async def test_a_step_journaled_before_a_stop_completes_after_the_restart(tmp_path, extra, serval):
    """Slack's delivery is acknowledged once journaled: a process that stops before the ticket is
    made (Serval slow) leaves it to the next one, which completes the step once."""
    calls, url = extra
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    settings = make_settings(tmp_path, url, serval_url, **FAST)
    body = execution()
    first = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(first.url)
    try:
        await eventually(lambda: first.bot.people.known_workspace, timeout=10)
        await deliver(sender, body)
    finally:
        await sender.aclose()
        await first.close()
    del serval_state.faults["POST /v2/tickets"]
    second = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(second.url)
    try:
        await deliver(sender, body, retry=1)  # Slack delivers it again meanwhile: still one
        await calls.wait_for("functions.completeSuccess", timeout=15)
        await second.bot.tickets.idle(10)
        assert len(calls.calls_to("functions.completeSuccess")) == 1 and len(serval_state.tickets) == 1
    finally:
        await sender.aclose()
        await second.close()


async def test_the_executions_token_never_reaches_the_log(captured, tmp_path, slack, extra, serval):  # noqa: F811
    """At LOG_LEVEL=DEBUG (every request and Web API call logged), from the delivery to the end."""
    slack_state, _ = slack
    calls, url = extra
    slack_state.token = BOT
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token=BOT, slack_signing_secret=SIGNING,
                             log_level="DEBUG", **FAST)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url, SIGNING)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        await deliver(sender, execution(priority="Nope"))  # an error: the path that logs most
        await deliver(sender, execution())
        await calls.wait_for("functions.completeError")
        await calls.wait_for("functions.completeSuccess")
        await running.bot.tickets.idle(10)
    finally:
        await sender.aclose()
        await running.close()
    log = captured.getvalue()
    assert "functions.completeSuccess" in log and len(log.splitlines()) > 30  # the log covers the step, verbosely
    assert TOKEN not in log and TOKEN[:12] not in log


async def test_over_socket_mode_a_sigkill_mid_create_still_completes_once(tmp_path, slack, serval_clients):  # noqa: F811
    """The app process killed (SIGKILL) while Serval is creating the ticket; Slack redelivers the
    event over Socket Mode before and after the restart: one ticket, one completion."""
    from sandbox.slack_socket import APP_TOKEN, SocketModeServer
    from tests.test_reliability import BotProcess

    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    calls, runner, url = await slack_extra.start(slack_url)
    server = await SocketModeServer.start(slack_state)
    serval_state.faults["POST /v2/tickets"] = Fault(latency=1.5)  # the create is on its way when the bot dies
    bot = BotProcess(tmp_path, url, serval_url, args=(), SLACK_APP_TOKEN=APP_TOKEN, SERVAL_TIMEOUT="2",
                     RETRY_MAX_SECONDS="0.5")
    body = execution()
    try:
        await bot.start()
        ack = await server.send("events_api", body)
        assert ack.get("payload") in (None, {}, "")
        await eventually(lambda: [r for r in serval_state.requests if r["method"] == "POST" and r["path"] == "/v2/tickets"])
        await server.send("events_api", body, retry_attempt=1, retry_reason="timeout")
        bot.kill()
        await eventually(lambda: serval_state.tickets, timeout=5)  # Serval made it; nobody heard
        assert not calls.calls_to("functions.completeSuccess")
        del serval_state.faults["POST /v2/tickets"]
        await bot.start()
        await server.send("events_api", body, retry_attempt=2, retry_reason="timeout")
        done = await calls.wait_for("functions.completeSuccess", timeout=30)
        await asyncio.sleep(1.0)  # let a second completion or ticket show up
        assert len(calls.calls_to("functions.completeSuccess")) == 1 and len(serval_state.tickets) == 1
        ticket = next(iter(serval_state.tickets.values()))
        assert done[0]["args"]["outputs"]["ticket_id"] == ticket["friendlyIdentifier"]
        assert done[0]["token"] == TOKEN and not calls.calls_to("functions.completeError")
    finally:
        bot.stop()
        await server.close()
        await runner.cleanup()
    logs = bot.log_path.read_text()
    assert TOKEN not in logs and "resuming" in logs
