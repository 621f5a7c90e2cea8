"""The *Create a ticket* workflow step (issue 23, item 1): Workflow Builder runs it on the Slack
stand-in (`SlackState.function_executed_event`: the event as Slack documents it, with a token of the
run's own), signed and sent through the real HTTP endpoint and Bolt app, or over Socket Mode; the
ticket goes to the Serval stand-in, and the run ends with `functions.completeSuccess` or
`functions.completeError`, called with the run's own token."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.serval import Fault
from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings, payload
from tests.test_logging import BOT, SIGNING, captured  # noqa: F401 (fixture)
from tests.test_reliability import serval_clients  # noqa: F401 (fixture)
from tests.test_ticket_flow import created

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)
MANIFEST = yaml.safe_load((Path(__file__).parent.parent / "manifest.yml").read_text())


class Runs:
    """Workflow Builder, on the Slack stand-in: it knows the app's steps from manifest.yml, starts
    runs, and records how each ended (`SlackState.executions`)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        state.app_functions = MANIFEST["functions"]

    def execution(self, **inputs: Any) -> dict[str, Any]:
        """A run of the step, as the Events API delivers it: the documented envelope, the stand-in's
        event (its inputs: the documented ones, for people and channels the stand-in knows)."""
        body = payload("function_executed.DERIVED.create_ticket.json")
        given = {**body["event"]["inputs"], "requester": "U111", "channel": "C111", **inputs}
        body["event"] = self.state.function_executed_event("create_ticket", {k: v for k, v in given.items() if v is not None})
        body["event_id"] = f"Ev{uuid.uuid4().hex[:10].upper()}"
        return body

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return self.state.calls_to(method)

    async def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        return await self.state.wait_for(method, count, timeout)


@pytest.fixture
def runs(slack) -> Runs:
    return Runs(slack[0])


@pytest.fixture
def settings(tmp_path, slack, serval):
    return make_settings(tmp_path, slack[1], serval[1], **FAST)


def own_token(call: dict[str, Any], body: dict[str, Any]) -> bool:
    """The call carried the run's own token (the stand-in notes whose run a token belongs to)."""
    return call["execution"] == body["event"]["function_execution_id"] and not call["error"]


async def deliver(sender: SlackSender, body: dict[str, Any], retry: int = 0) -> None:
    r = await sender.event(body, retry=retry)
    assert r.status_code == 200 and not r.content, (r.status_code, r.text)


async def test_the_step_completes_once_with_the_ticket_under_redelivery(running, sender, runs, serval):
    calls = runs
    serval_state, _ = serval
    body = runs.execution(priority="high")
    await deliver(sender, body)
    await deliver(sender, body, retry=1)  # Slack's redelivery: the same event
    again = {**body, "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}"}  # the same run, delivered under another id
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
    assert own_token(call, body)  # the run's own token, not the bot's
    assert call["args"]["function_execution_id"] == body["event"]["function_execution_id"]
    run = runs.state.executions[body["event"]["function_execution_id"]]
    assert run["state"] == "completed" and run["outputs"] == call["args"]["outputs"]
    sub = (await running.bot.storage.tickets_of("U111"))[0]  # the requester's ticket (Home lists it)
    assert call["args"]["outputs"] == {"ticket_id": sub.ticket["display_id"], "ticket_system": "Serval"}
    assert sub.ticket["display_id"].startswith("IT-") and sub.ticket["id"] == ticket["id"]
    assert ticket["requesterUserId"] == serval_state.user_by_email("alice@example.com")["id"]
    assert sub.payload["function"]["ended"] == "success" and "token" not in sub.payload["function"]


async def test_an_unknown_priority_or_team_ends_the_step_with_an_error_naming_it(running, sender, runs, serval):
    calls = runs
    serval_state, _ = serval
    bodies = [runs.execution(priority="Whenever"), runs.execution(team="Facilities"), runs.execution(title="  ")]
    for body in bodies:
        await deliver(sender, body)
    errors = await calls.wait_for("functions.completeError", 3)
    texts = sorted(c["args"]["error"] for c in errors)
    assert any('"priority" is "Whenever"' in t and "High" in t for t in texts), texts
    assert any('"team" is "Facilities"' in t for t in texts), texts
    assert any('"title" is empty' in t for t in texts), texts
    assert all(any(own_token(c, b) for b in bodies) for c in errors)
    assert all(runs.state.executions[b["event"]["function_execution_id"]]["state"] == "failed" for b in bodies)
    assert created(serval_state) == [] and not calls.calls_to("functions.completeSuccess")


async def test_the_step_completes_once_serval_is_back(running, sender, runs, serval):
    calls = runs
    serval_state, _ = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    await deliver(sender, runs.execution())
    await eventually(lambda: len([r for r in serval_state.requests if r["path"] == "/v2/tickets"]) >= 3, timeout=10)
    assert not calls.calls_to("functions.completeSuccess") and not calls.calls_to("functions.completeError")
    del serval_state.faults["POST /v2/tickets"]
    done = await calls.wait_for("functions.completeSuccess", timeout=15)
    assert done[0]["args"]["outputs"]["ticket_system"] == "Serval"
    await running.bot.tickets.idle(10)
    assert len(serval_state.tickets) == 1 and not calls.calls_to("functions.completeError")


async def test_the_step_ends_with_an_error_after_give_up(tmp_path, slack, runs, serval):
    calls, url = runs, slack[1]
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    running = await serve_http(make_settings(tmp_path, url, serval_url, give_up_after_seconds=1.0, **FAST),
                               host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        await deliver(sender, runs.execution())
        error = (await calls.wait_for("functions.completeError", timeout=15))[0]["args"]["error"]
        assert error.startswith("The ticket could not be created: Serval has not answered for too long")
        assert not calls.calls_to("functions.completeSuccess")
    finally:
        await sender.aclose()
        await running.close()


async def test_a_step_journaled_before_a_stop_completes_after_the_restart(tmp_path, slack, runs, serval):
    """Slack's delivery is acknowledged once journaled: a process that stops before the ticket is
    made (Serval down) leaves it to the next one, which completes the step once."""
    calls, url = runs, slack[1]
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=503)
    settings = make_settings(tmp_path, url, serval_url, **FAST)
    body = runs.execution()
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


async def test_the_executions_token_never_reaches_the_log(captured, tmp_path, slack, runs, serval):  # noqa: F811
    """At LOG_LEVEL=DEBUG (every request and Web API call logged), from the delivery to the end."""
    slack_state, url = slack
    calls = runs
    slack_state.token = BOT
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token=BOT, slack_signing_secret=SIGNING,
                             log_level="DEBUG", **FAST)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url, SIGNING)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        bodies = [runs.execution(priority="Nope"), runs.execution()]  # an error (the path that logs most), a ticket
        for body in bodies:
            await deliver(sender, body)
        await calls.wait_for("functions.completeError")
        await calls.wait_for("functions.completeSuccess")
        await running.bot.tickets.idle(10)
    finally:
        await sender.aclose()
        await running.close()
    log = captured.getvalue()
    assert "functions.completeSuccess" in log and len(log.splitlines()) > 30  # the log covers the step, verbosely
    for body in bodies:
        token = body["event"]["bot_access_token"]
        assert token not in log and token[:14] not in log


async def test_over_socket_mode_a_sigkill_mid_create_still_completes_once(tmp_path, slack, serval_clients):  # noqa: F811
    """The app process killed (SIGKILL) while Serval is creating the ticket; Slack redelivers the
    event over Socket Mode before and after the restart: one ticket, one completion."""
    from sandbox.slack_socket import APP_TOKEN, SocketModeServer
    from tests.test_reliability import BotProcess

    slack_state, url = slack
    serval_state, serval_url = serval_clients
    calls = Runs(slack_state)
    server = await SocketModeServer.start(slack_state)
    serval_state.faults["POST /v2/tickets"] = Fault(latency=1.5)  # the create is on its way when the bot dies
    bot = BotProcess(tmp_path, url, serval_url, args=(), SLACK_APP_TOKEN=APP_TOKEN, SERVAL_TIMEOUT="2",
                     RETRY_MAX_SECONDS="0.5")
    body = calls.execution()
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
        assert own_token(done[0], body) and not calls.calls_to("functions.completeError")
    finally:
        bot.stop()
        await server.close()
    logs = bot.log_path.read_text()
    assert body["event"]["bot_access_token"] not in logs and "resuming" in logs


async def test_team_and_priority_are_matched_by_name_or_id(tmp_path, slack, runs, serval):
    """Two teams: the team by its name (any case), then the priority among that team's."""
    serval_state, serval_url = serval
    serval_state.add_team("Facilities", "FAC", team_id="team-fac")
    running = await serve_http(make_settings(tmp_path, slack[1], serval_url, **FAST), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        await deliver(sender, runs.execution(title="Light out in room 4", team="facilities", priority="URGENT"))
        await deliver(sender, runs.execution(title="By id", team="team-it", priority="pri-it-low"))
        await runs.wait_for("functions.completeSuccess", 2)
        by_name = {t["name"]: t for t in serval_state.tickets.values()}
        assert by_name["Light out in room 4"]["teamId"] == "team-fac"
        assert by_name["Light out in room 4"]["priorityId"] == "pri-fac-urgent"
        assert by_name["By id"]["teamId"] == "team-it" and by_name["By id"]["priorityId"] == "pri-it-low"
        outputs = {c["args"]["outputs"]["ticket_id"][:3] for c in runs.calls_to("functions.completeSuccess")}
        assert outputs == {"FAC", "IT-"}
    finally:
        await sender.aclose()
        await running.close()
