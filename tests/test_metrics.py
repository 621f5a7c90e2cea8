"""GET /metrics: flows through the real HTTP endpoint (signed requests, the fake Slack, the Serval
sandbox), then the scraped counts. The registry is per process and cumulative, so every check
compares a scrape before with one after."""

from __future__ import annotations

import asyncio
import collections
import math
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.ops import metrics
from clients.base import BackendError
from clients.serval import ServalClient
from sandbox.serval import Fault
from tests.conftest import eventually
from tests.test_pipeline import file_ticket, start

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[Samples, httpx.Response]:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(url + "/metrics")
    assert r.status_code == 200, r.text
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, r


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def changed(before: Samples, after: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of `name` whose value moved, with by how much."""
    keys = {k for k in (*before, *after) if k[0] == name}
    return {k[1]: after.get(k, 0.0) - before.get(k, 0.0) for k in keys if after.get(k, 0.0) != before.get(k, 0.0)}


async def settled(running: Any, slack_state: Any, serval_state: Any) -> None:
    """Wait for the calls the bot makes at start (auth.test, the form's fields) to be answered."""
    await eventually(lambda: running.bot.people.known_workspace)
    seen = -1
    while seen != len(serval_state.requests) or any(serval_state.in_flight.values()):
        seen = len(serval_state.requests)
        await asyncio.sleep(0.2)


def slack_errors(slack_state: Any, since: int) -> dict[frozenset[tuple[str, str]], int]:
    """The errors the fake Slack answered since its `since`th call, as label sets and counts."""
    refused = collections.Counter((c["method"], c["error"]) for c in slack_state.calls[since:] if c.get("error"))
    return {frozenset({("method", method), ("error", error)}): n for (method, error), n in refused.items()}


async def test_a_ticket_flow_is_counted(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    running, sender = await start(tmp_path, slack, serval)
    try:
        await settled(running, slack_state, serval_state)
        before, _ = await scrape(running.url)
        slack_seen, serval_seen = len(slack_state.calls), len(serval_state.requests)
        await file_ticket(sender, slack_state, "Printer on floor 3 is jammed", share=True)
        await running.bot.tickets.idle(10)
        assert (await sender.post("token=x&command=/ticket", signature="v0=nope")).status_code == 401
        after, response = await scrape(running.url)
    finally:
        await sender.aclose()
        await running.close()

    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    requests = "ticketbot_slack_requests_total"
    assert changed(before, after, requests) == {
        frozenset({("surface", "command"), ("outcome", "2xx")}): 1,
        frozenset({("surface", "view_submission"), ("outcome", "2xx")}): 1,
        frozenset({("surface", "unknown"), ("outcome", "4xx")}): 1,
    }
    for surface in ("command", "view_submission", "unknown"):
        assert delta(before, after, "ticketbot_slack_ack_seconds_count", surface=surface) == 1
    assert delta(before, after, "ticketbot_slack_ack_seconds_bucket", surface="command", le="+Inf") == 1
    # the command's views.open, timed from the request's arrival
    assert delta(before, after, "ticketbot_slack_views_open_seconds_count", surface="command") == 1
    assert delta(before, after, "ticketbot_slack_views_open_seconds_sum", surface="command") > 0

    assert changed(before, after, "ticketbot_submissions_total") == {
        frozenset({("state", "pending")}): 1,
        frozenset({("state", "done")}): 1,
    }
    assert changed(before, after, "ticketbot_retries_total") == {}
    assert value(after, "ticketbot_journal_backlog") == 0
    assert value(after, "ticketbot_journal_oldest_pending_seconds") == 0

    calls = "ticketbot_ticket_system_calls_total"
    create = dict(backend="serval", method="POST", endpoint="/v2/tickets")
    connect = dict(backend="serval", method="POST", endpoint="/v2/tickets/{id}/connect")
    assert delta(before, after, calls, **create, status="200") == 1
    assert delta(before, after, calls, **connect, status="200") == 1
    assert delta(before, after, "ticketbot_ticket_system_call_seconds_count", **create) == 1
    assert delta(before, after, "ticketbot_ticket_system_call_seconds_count", **connect) == 1
    # every call the sandbox saw is counted once, under a template without ids
    moved = changed(before, after, calls)
    assert sum(moved.values()) == len(serval_state.requests) - serval_seen
    for labels in moved:
        assert dict(labels)["status"] == "200", labels
        assert metrics.endpoint_template(dict(labels)["endpoint"]) == dict(labels)["endpoint"], labels

    api_calls = changed(before, after, "ticketbot_slack_api_calls_total")
    assert api_calls[frozenset({("method", "views.open")})] == 1
    assert api_calls[frozenset({("method", "chat.postMessage")})] == 1  # the share in the channel
    assert sum(api_calls.values()) == len(slack_state.calls) - slack_seen  # each Web API call, counted once
    # errors as Slack answered them (the test's view id is unknown to the fake Slack: views.update fails)
    assert changed(before, after, "ticketbot_slack_api_errors_total") == slack_errors(slack_state, slack_seen)


async def test_failures_retries_and_the_backlog_are_counted(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    serval_state.faults["POST /v2/tickets"] = Fault(next_n=["error"])  # one 503, then it works
    # the retry waits 1-2 s, long enough to see the submission pending in the journal
    running, sender = await start(tmp_path, slack, serval, retry_base_seconds=2.0, retry_max_seconds=2.0)
    try:
        await settled(running, slack_state, serval_state)
        before, _ = await scrape(running.url)
        slack_seen = len(slack_state.calls)
        slack_state.fail("views.open", "expired_trigger_id")
        assert (await sender.command("Never opens")).status_code == 200
        await eventually(lambda: slack_state.calls_to("chat.postEphemeral"))  # told the form did not open

        created_at = time.time()
        await file_ticket(sender, slack_state, "Second try")
        await eventually(lambda: any(r["method"] == "POST" and r["path"] == "/v2/tickets" for r in serval_state.requests))
        during, _ = await eventually(lambda: _retried(running.url))
        await running.bot.tickets.idle(10)
        after, _ = await scrape(running.url)
    finally:
        await sender.aclose()
        await running.close()

    assert delta(before, during, "ticketbot_retries_total", step="create") == 1
    assert value(during, "ticketbot_journal_backlog") == 1
    assert 0 <= value(during, "ticketbot_journal_oldest_pending_seconds") <= time.time() - created_at + 1
    assert value(after, "ticketbot_journal_backlog") == 0

    calls = "ticketbot_ticket_system_calls_total"
    create = dict(backend="serval", method="POST", endpoint="/v2/tickets")
    assert delta(before, after, calls, **create, status="503") == 1
    assert delta(before, after, calls, **create, status="200") == 1
    assert delta(before, after, "ticketbot_ticket_system_call_seconds_count", **create) == 2
    assert changed(before, after, "ticketbot_submissions_total") == {
        frozenset({("state", "pending")}): 1,
        frozenset({("state", "done")}): 1,
    }

    errors = changed(before, after, "ticketbot_slack_api_errors_total")
    assert errors[frozenset({("method", "views.open"), ("error", "expired_trigger_id")})] == 1
    assert errors == slack_errors(slack_state, slack_seen)
    # the failed open is not timed; the second command's open is
    assert delta(before, after, "ticketbot_slack_views_open_seconds_count", surface="command") == 1
    assert delta(before, after, "ticketbot_slack_api_calls_total", method="views.open") == 2
    assert delta(before, after, "ticketbot_slack_requests_total", surface="command", outcome="2xx") == 2


async def _retried(url: str):
    samples, response = await scrape(url)
    return (samples, response) if value(samples, "ticketbot_retries_total", step="create") else None


async def test_a_ticket_system_that_cannot_be_reached_is_counted_by_transport_error():
    labels = dict(backend="serval", method="GET", endpoint="/v2/tickets/{id}", status="ConnectError")
    name = "ticketbot_ticket_system_calls_total"
    before = metrics.REGISTRY.get_sample_value(name, labels) or 0.0
    client = ServalClient("http://127.0.0.1:9", bearer_token="t", timeout=2)  # port 9: discard, closed
    try:
        with pytest.raises(BackendError):
            await client.get_ticket("0c6e6f7a-8d7e-4b8a-9a53-2f1c3b4d5e6f")
    finally:
        await client.aclose()
    assert metrics.REGISTRY.get_sample_value(name, labels) == before + 1


@pytest.mark.parametrize(
    "path, template",
    [
        ("/v2/tickets", "/v2/tickets"),
        ("/v2/tickets/0c6e6f7a-8d7e-4b8a-9a53-2f1c3b4d5e6f/connect", "/v2/tickets/{id}/connect"),
        ("/v2/auth/token", "/v2/auth/token"),
        ("/tickets/12345", "/tickets/{id}"),
        ("/categories/77/subcategories", "/categories/{id}/subcategories"),
        ("/api/v2/ticketing/ticket/create/team-8f3a21/it-request", "/api/v2/ticketing/ticket/create/{id}/it-request"),
        ("/auth/realms/acme/protocol/openid-connect/token", "/auth/realms/acme/protocol/openid-connect/token"),
        ("/v2/users/ann@example.com", "/v2/users/{id}"),
    ],
)
def test_endpoint_templates_have_no_ids(path, template):
    assert metrics.endpoint_template(path) == template


@pytest.mark.parametrize("system, name", [("Serval", "serval"), ("Rezolve.ai", "rezolve"), ("Socialboards", "socialboards")])
def test_back_ends_are_named_as_ticket_backend_spells_them(system, name):
    assert metrics.backend_name(system) == name


@pytest.mark.parametrize(
    "data, surface",
    [
        ({"command": "/ticket", "text": ""}, "command"),
        ({"type": "shortcut"}, "shortcut"),
        ({"type": "message_action"}, "shortcut"),
        ({"type": "view_submission"}, "view_submission"),
        ({"type": "block_actions"}, "block_actions"),
        ({"type": "event_callback", "event": {"type": "app_home_opened"}}, "event"),
        ({"type": "something_new"}, "other"),
        ("junk", "other"),
    ],
)
def test_surfaces(data: Any, surface: str):
    assert metrics.surface_of(data) == surface


async def test_an_unreadable_journal_reads_as_nan_and_the_scrape_still_answers():
    async def backlog():
        raise OSError("database unreachable")

    bot = SimpleNamespace(storage=SimpleNamespace(backlog=backlog))
    response = await metrics.endpoint(bot)(None)  # type: ignore[arg-type]
    assert response.status == 200
    assert math.isnan(metrics.REGISTRY.get_sample_value("ticketbot_journal_backlog"))
    assert math.isnan(metrics.REGISTRY.get_sample_value("ticketbot_journal_oldest_pending_seconds"))
