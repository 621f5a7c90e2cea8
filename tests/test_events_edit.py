"""*Edit details* (issue 14): the button under the reply to a ticket made from a conversation opens
a form for its title, priority and due date; saving changes the Serval ticket (PUT /v2/tickets/{id}).
Only the person who asked for the ticket, its requester and admins may."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from bot import views
from tests.conftest import date_value, eventually, make_settings, payload, select_value, submission, text_value
from tests.test_events import deliver, event, thread_replies
from tests.test_ticket_flow import block

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)


@pytest.fixture
def settings(tmp_path, slack, serval):
    return make_settings(tmp_path, slack[1], serval[1], **FAST)


async def reacted_ticket(running: Any, sender: Any, slack_state: Any, serval_state: Any) -> tuple[dict, dict]:
    """A ticket from a reaction by U111 on W111's message: (the thread reply's button, the ticket)."""
    message = slack_state.post_user_message("C111", "W111", "Projector in room 4 is blurry")
    await deliver(sender, event("reaction_added.bolt-tests.json", reaction="ticket", user="U111",
                                item={"type": "message", "channel": "C111", "ts": message["ts"]}))
    reply = (await thread_replies(slack_state, "C111", message["ts"]))[0]
    await running.bot.tickets.idle(5)
    button = next(el for b in reply.get("blocks") or [] if b["type"] == "actions" for el in b["elements"])
    assert button["action_id"] == "edit_ticket"
    return button, next(iter(serval_state.tickets.values()))


def click(button: dict[str, Any], user: str) -> dict[str, Any]:
    body = payload("block_actions.bolt-tests.button.json")
    body["user"]["id"] = user
    body["trigger_id"] = f"{time.time_ns()}.{user}.edit"
    body["container"] = {"type": "message", "message_ts": "1.1", "channel_id": "C111", "is_ephemeral": False}
    body["channel"] = {"id": "C111", "name": "dev"}
    body["actions"] = [{**body["actions"][0], "action_id": button["action_id"], "block_id": "ticket_actions",
                        "value": button["value"]}]
    return body


async def opened_form(sender: Any, slack_state: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Clicks, and returns the view the loading form became (views.update), as Slack stores it."""
    r = await sender.interactive(body)
    assert r.status_code == 200 and not r.content
    opened = await eventually(lambda: [c for c in slack_state.calls_to("views.open")
                                       if c["args"]["trigger_id"] == body["trigger_id"]])
    view_id = opened[0]["response"]["view"]["id"]
    assert "Loading" in json.dumps(opened[0]["args"]["view"])
    updated = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                        if c["args"].get("view_id") == view_id and not c.get("error")])
    return updated[-1]["response"]["view"]


async def test_the_submitter_edits_title_priority_and_due_date(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    view = await opened_form(sender, slack_state, click(button, "U111"))
    assert view["callback_id"] == views.EDIT_CALLBACK_ID
    assert block(view, views.EDIT_TITLE_BLOCK)["element"]["initial_value"] == "Projector in room 4 is blurry"
    priorities = [o["value"] for o in block(view, views.EDIT_PRIORITY_BLOCK)["element"]["options"]]
    assert priorities and set(priorities) <= {p["id"] for p in serval_state.priorities["team-it"]}
    assert block(view, views.EDIT_DUE_BLOCK)["element"]["type"] == "datepicker"

    due = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    values = {views.EDIT_TITLE_BLOCK: text_value("  Projector  blurry  "),
              views.EDIT_PRIORITY_BLOCK: select_value(priorities[-1]), views.EDIT_DUE_BLOCK: date_value(due)}
    r = await sender.interactive(submission(view, values, user_id="U111"))
    assert r.json()["response_action"] == "update" and "Saving" in json.dumps(r.json()["view"])
    done = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                     if c["args"].get("view_id") == view["id"] and "updated" in json.dumps(c["args"]["view"])])
    assert ticket["friendlyIdentifier"] in json.dumps(done[0]["args"]["view"])
    put = [r for r in serval_state.requests if r["method"] == "PUT" and r["path"] == f"/v2/tickets/{ticket['id']}"]
    assert put[0]["body"]["name"] == "Projector blurry" and put[0]["body"]["priorityId"] == priorities[-1]
    year, month, day = map(int, due.split("-"))
    assert put[0]["body"]["dueDate"] == {"year": year, "month": month, "day": day}
    assert serval_state.tickets[ticket["id"]]["name"] == "Projector blurry"


async def test_the_requester_may_edit_and_someone_else_may_not(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, _ = await reacted_ticket(running, sender, slack_state, serval_state)
    requester_view = await opened_form(sender, slack_state, click(button, "W111"))  # the message's author
    assert requester_view["callback_id"] == views.EDIT_CALLBACK_ID
    other = await opened_form(sender, slack_state, click(button, "U222"))
    assert other.get("callback_id") != views.EDIT_CALLBACK_ID and "Only the person" in json.dumps(other)
    # a forged submission by someone else changes nothing
    values = {views.EDIT_TITLE_BLOCK: text_value("Hijacked")}
    r = await sender.interactive(submission(requester_view, values, user_id="U222"))
    assert r.json()["response_action"] == "update"
    await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                              if c["args"].get("view_id") == requester_view["id"] and "Only the person" in json.dumps(c["args"]["view"])])
    assert not [r for r in serval_state.requests if r["method"] == "PUT"]


async def test_the_form_checks_what_it_can_before_saving(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, _ = await reacted_ticket(running, sender, slack_state, serval_state)
    view = await opened_form(sender, slack_state, click(button, "U111"))
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    values = {views.EDIT_TITLE_BLOCK: text_value("   "), views.EDIT_DUE_BLOCK: date_value(yesterday)}
    r = await sender.interactive(submission(view, values, user_id="U111"))
    assert r.json() == {"response_action": "errors", "errors": {
        views.EDIT_TITLE_BLOCK: "Please enter a title.", views.EDIT_DUE_BLOCK: "The due date cannot be in the past."}}


async def test_a_refusal_by_serval_is_shown_with_what_was_typed(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    view = await opened_form(sender, slack_state, click(button, "U111"))
    del serval_state.tickets[ticket["id"]]  # gone in Serval meanwhile: PUT answers 404
    await sender.interactive(submission(view, {views.EDIT_TITLE_BLOCK: text_value("Still blurry")}, user_id="U111"))
    failed = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                       if c["args"].get("view_id") == view["id"] and "not changed" in json.dumps(c["args"]["view"])])
    assert "Still blurry" in json.dumps(failed[0]["args"]["view"])
