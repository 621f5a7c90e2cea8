"""Serval custom fields in the ticket form, end to end (issue 15): signed Slack requests → the bot
over HTTP → the fake Slack Web API and the Serval sandbox. The form shows the team's fields by type,
parses them, the values are set right after the create as a journaled step, a refused value is a
warning (the ticket is kept), a team change swaps the fields, and a channel's route can hide them."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.routing import RouteEntry, load_routing_file
from sandbox.serval import Fault, ServalState, start
from tests.conftest import SlackSender, eventually, make_settings, select_value, submission, text_value
from tests.test_ticket_flow import block, created, open_modal_with_command
from tests.test_ticket_flow import filled as filled_without_team

CUSTOM = "field:custom:"


@pytest.fixture
async def serval() -> AsyncIterator[tuple[ServalState, str]]:
    """The sandbox with the demo's custom fields (team-it, team-fac) and one of a type nobody knows."""
    state = ServalState()
    state.add_team("Facilities", "FAC", team_id="team-fac")
    state.seed_custom_fields()
    state.add_custom_field("team-it", "custom-os", "Operating system", "DATA_TYPE_SOMETHING_NEW",
                           description="As in Settings → About")
    runner, url = await start(state)
    yield state, url
    await runner.cleanup()


async def fields_loaded(running) -> None:
    await eventually(lambda: running.bot.backends["serval"].custom_fields.get("team-fac"), timeout=5)


def filled(title: str, team: str = "team-it") -> dict[str, Any]:
    """The form's built-in answers; with two teams, the Team field is required."""
    return {**filled_without_team(title), "field:team_id": select_value(team)}


def custom_blocks(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if str(b.get("block_id", "")).startswith(CUSTOM)]


def put_values(state: ServalState) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == "PUT" and r["path"].endswith("/custom-field-values")]


async def test_the_form_shows_the_teams_fields_by_type(sender, slack, running):
    await fields_loaded(running)
    view = await open_modal_with_command(sender, slack[0], "Laptop is slow")
    assert custom_blocks(view) == [CUSTOM + k for k in (
        "custom-device", "custom-asset-tag", "custom-people-affected", "custom-working-remotely", "custom-os")]
    device = block(view, CUSTOM + "custom-device")
    assert device["label"]["text"] == "Device" and device["optional"] is True
    assert device["hint"]["text"] == "Which device is affected?"
    assert device["element"]["type"] == "static_select" and device["element"]["action_id"] == "value"
    assert [(o["value"], o["text"]["text"]) for o in device["element"]["options"]] == [
        ("laptop", "Laptop"), ("phone", "Phone"), ("monitor", "Monitor")]  # displayOrder 1, 2, 3
    for key in ("custom-asset-tag", "custom-people-affected"):
        assert block(view, CUSTOM + key)["element"]["type"] == "plain_text_input"
    remote = block(view, CUSTOM + "custom-working-remotely")["element"]
    assert [(o["value"], o["text"]["text"]) for o in remote["options"]] == [("true", "Yes"), ("false", "No")]
    unknown = block(view, CUSTOM + "custom-os")  # a type the bot does not know: a text input
    assert unknown["element"]["type"] == "plain_text_input" and unknown["hint"]["text"] == "As in Settings → About"
    # after the share box and the built-in fields
    ids = [b.get("block_id") for b in view["blocks"]]
    assert ids.index("share") < ids.index("field:due_date") < ids.index(CUSTOM + "custom-device")


async def test_values_are_parsed_and_set_right_after_the_create(sender, slack, serval, running):
    slack_state, (state, _) = slack[0], serval
    await fields_loaded(running)
    view = await open_modal_with_command(sender, slack_state, "Laptop is slow")
    values = {**filled("Laptop is slow"), CUSTOM + "custom-device": select_value("phone"),
              CUSTOM + "custom-asset-tag": text_value("  IT-00123 "), CUSTOM + "custom-people-affected": text_value("12"),
              CUSTOM + "custom-working-remotely": select_value("false"), CUSTOM + "custom-os": text_value("")}
    r = await sender.interactive(submission(view, values))
    assert r.json()["response_action"] == "update"
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    ticket = next(iter(state.tickets.values()))
    assert "custom" not in json.dumps(created(state)[0])  # the create has no custom fields
    put = put_values(state)
    assert len(put) == 1 and put[0]["path"] == f"/v2/tickets/{ticket['id']}/custom-field-values"
    assert put[0]["body"] == {"fieldValues": [
        {"fieldKey": "custom-device", "value": "phone"}, {"fieldKey": "custom-asset-tag", "value": "IT-00123"},
        {"fieldKey": "custom-people-affected", "value": 12}, {"fieldKey": "custom-working-remotely", "value": False}]}
    order = [(r["method"], r["path"]) for r in state.requests]
    assert order.index(("POST", "/v2/tickets")) < order.index(("PUT", put[0]["path"]))
    assert {v["fieldKey"]: v["value"] for v in state.field_values[ticket["id"]].values()}["custom-people-affected"] == 12
    texts = [c["args"]["text"] for c in slack_state.calls_to("chat.postEphemeral")]
    assert len(texts) == 1 and ":warning:" not in texts[0]


async def test_a_value_of_the_wrong_form_is_an_inline_error(sender, slack, serval, running):
    await fields_loaded(running)
    view = await open_modal_with_command(sender, slack[0], "Laptop")
    values = {**filled("Laptop"), CUSTOM + "custom-people-affected": text_value("a dozen"),
              CUSTOM + "custom-device": select_value("tablet")}
    r = await sender.interactive(submission(view, values))
    assert r.json() == {"response_action": "errors", "errors": {
        CUSTOM + "custom-device": "Pick one of the listed options.", CUSTOM + "custom-people-affected": "Enter a number."}}
    assert created(serval[0]) == []


@pytest.mark.parametrize("typed", ["nan", "NaN", "inf", "-Infinity", "1e999"])
async def test_a_number_that_is_no_finite_number_is_an_inline_error(sender, slack, serval, running, typed):
    """float() takes these, JSON and Serval do not: the person fixes them in the form."""
    await fields_loaded(running)
    view = await open_modal_with_command(sender, slack[0], "Laptop")
    values = {**filled("Laptop"), CUSTOM + "custom-people-affected": text_value(typed)}
    r = await sender.interactive(submission(view, values))
    assert r.json() == {"response_action": "errors", "errors": {CUSTOM + "custom-people-affected": "Enter a number."}}
    assert created(serval[0]) == []


async def test_a_refused_value_is_a_warning_and_the_ticket_is_kept(sender, slack, serval, running):
    slack_state, (state, _) = slack[0], serval
    await fields_loaded(running)
    state.faults["PUT /v2/tickets/{ticket_id}/custom-field-values"] = Fault(error_rate=1.0, status=400)
    view = await open_modal_with_command(sender, slack_state, "Laptop")
    await sender.interactive(submission(view, {**filled("Laptop"), CUSTOM + "custom-asset-tag": text_value("IT-1")}))
    told = await slack_state.wait_for("chat.postEphemeral", count=2)
    await running.bot.tickets.idle(5)
    ticket = next(iter(state.tickets.values()))
    first, second = (c["args"]["text"] for c in told)
    assert ticket["friendlyIdentifier"] in first and "was created" in first
    assert second.startswith(f"About your ticket *{ticket['friendlyIdentifier']}*")
    assert "not all its fields could be set" in second and "Serval refused" in second
    assert len(created(state)) == 1 and len(put_values(state)) == 1  # a refusal is not retried


async def test_a_passing_failure_is_retried_from_the_journal(tmp_path, slack, serval):
    from server.http import serve_http

    slack_state, (state, url) = slack[0], serval
    state.faults["PUT /v2/tickets/{ticket_id}/custom-field-values"] = Fault(next_n=["error", "error"], status=503)
    running = await serve_http(make_settings(tmp_path, slack[1], url, retry_base_seconds=0.05), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await fields_loaded(running)
        view = await open_modal_with_command(sender, slack_state, "Laptop")
        await sender.interactive(submission(view, {**filled("Laptop"), CUSTOM + "custom-asset-tag": text_value("IT-1")}))
        await eventually(lambda: any(state.field_values.values()), timeout=10)
        await running.bot.tickets.idle(5)
        assert len(put_values(state)) == 3 and len(created(state)) == 1
        assert all(":warning:" not in c["args"]["text"] for c in slack_state.calls_to("chat.postEphemeral"))
    finally:
        await sender.aclose()
        await running.close()


def team_change(opened: dict[str, Any], team: str, title: str = "Keep me") -> dict[str, Any]:
    return {
        "type": "block_actions", "user": {"id": "U111"}, "team": {"id": "T111"}, "trigger_id": f"{time.time_ns()}.tc",
        "view": {**opened, "state": {"values": {"title": text_value(title), "field:team_id": select_value(team)}}},
        "actions": [{"type": "static_select", "block_id": "field:team_id", "action_id": "value",
                     "selected_option": {"value": team}}],
    }


async def test_changing_the_team_swaps_the_fields(sender, slack, serval, running):
    slack_state = slack[0]
    await fields_loaded(running)
    await open_modal_with_command(sender, slack_state, "Keep me")
    opened = slack_state.calls_to("views.open")[0]["response"]["view"]
    assert (await sender.interactive(team_change(opened, "team-fac"))).status_code == 200
    update = (await slack_state.wait_for("views.update"))[0]
    fac = update["args"]["view"]
    assert update["args"]["view_id"] == opened["id"] and not update["error"]
    assert custom_blocks(fac) == [CUSTOM + "custom-building", CUSTOM + "custom-room", CUSTOM + "custom-needed-by"]
    assert block(fac, CUSTOM + "custom-needed-by")["element"]["type"] == "datepicker"
    assert block(fac, CUSTOM + "custom-room")["element"]["type"] == "plain_text_input"  # DATA_TYPE_UNSPECIFIED
    assert block(fac, "title")["element"]["initial_value"] == "Keep me"
    # and the submission sets the new team's values, the date as YYYY-MM-DD
    values = {**filled("Keep me", "team-fac"),
              CUSTOM + "custom-needed-by": {"value": {"type": "datepicker", "selected_date": "2031-02-03"}},
              CUSTOM + "custom-building": select_value("annex")}
    await sender.interactive(submission({**fac, "id": opened["id"]}, values))
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    assert created(serval[0])[0]["teamId"] == "team-fac"
    assert put_values(serval[0])[0]["body"] == {"fieldValues": [
        {"fieldKey": "custom-building", "value": "annex"}, {"fieldKey": "custom-needed-by", "value": "2031-02-03"}]}


async def test_a_route_hides_the_fields_in_its_channel(sender, slack, serval, running):
    slack_state = slack[0]
    await fields_loaded(running)
    await running.bot.router.save("C111", RouteEntry(custom_fields=False), "UADMIN")
    view = await open_modal_with_command(sender, slack_state, "Hidden")
    assert custom_blocks(view) == [] and block(view, "field:priority_id")
    elsewhere = await open_modal_with_command(sender, slack_state, "Shown", channel_id="C123", channel_name="general")
    assert custom_blocks(elsewhere)
    # a team change there keeps them hidden; the submission sets none
    opened = slack_state.calls_to("views.open")[0]["response"]["view"]
    await sender.interactive(team_change(opened, "team-fac", "Hidden"))
    assert custom_blocks((await slack_state.wait_for("views.update"))[0]["args"]["view"]) == []
    await sender.interactive(submission(view, filled("Hidden")))
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    assert put_values(serval[0]) == []


def test_the_routing_file_takes_the_option(tmp_path):
    path = tmp_path / "routing.yml"
    path.write_text("channels:\n  C0123ABCD:\n    custom_fields: false\n")
    assert load_routing_file(str(path), {"serval"})["C0123ABCD"].custom_fields is False
    path.write_text("channels:\n  C0123ABCD:\n    custom_fields: maybe\n")
    with pytest.raises(Exception, match="custom_fields"):
        load_routing_file(str(path), {"serval"})


async def test_the_form_never_waits_for_the_field_list(tmp_path, slack, serval):
    from server.http import serve_http

    slack_state, (state, url) = slack[0], serval
    state.delay("GET /v2/teams/{team_id}/custom-field-options", 3.0)
    running = await serve_http(make_settings(tmp_path, slack[1], url), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.backends["serval"].teams, timeout=5)  # teams and priorities first
        started = time.monotonic()
        view = await open_modal_with_command(sender, slack_state, "Quick")
        assert time.monotonic() - started < 1.5
        assert block(view, "field:priority_id") and custom_blocks(view) == []  # not known yet
        await fields_loaded(running)
        later = await open_modal_with_command(sender, slack_state, "Later")
        assert custom_blocks(later)
    finally:
        await sender.aclose()
        await running.close()
