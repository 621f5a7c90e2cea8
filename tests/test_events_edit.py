"""*Edit details* (issue 14): the button under the reply to a ticket made from a conversation opens
a form for its title, priority and due date; saving changes the Serval ticket (PUT /v2/tickets/{id}).
Only the person who asked for the ticket, its requester and admins may."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from bot.slack import views
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


def puts(serval_state: Any, ticket: dict[str, Any]) -> list[dict[str, Any]]:
    """The bodies of PUT /v2/tickets/{id} for this ticket, in order."""
    return [r["body"] for r in serval_state.requests if r["method"] == "PUT" and r["path"] == f"/v2/tickets/{ticket['id']}"]


async def save(sender: Any, slack_state: Any, view: dict[str, Any], values: dict[str, Any]) -> None:
    """Submits the form as Slack does (what was left untouched comes back as shown) and waits for its outcome."""
    await sender.interactive(submission(view, values, user_id="U111"))
    await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                              if c["args"].get("view_id") == view["id"] and "updated" in json.dumps(c["args"]["view"])])


def as_shown(view: dict[str, Any]) -> dict[str, Any]:
    """The form's state with every field as the form showed it."""
    priority = block(view, views.EDIT_PRIORITY_BLOCK)["element"].get("initial_option")
    return {views.EDIT_TITLE_BLOCK: text_value(block(view, views.EDIT_TITLE_BLOCK)["element"].get("initial_value")),
            views.EDIT_PRIORITY_BLOCK: select_value(priority["value"] if priority else None),
            views.EDIT_DUE_BLOCK: date_value(block(view, views.EDIT_DUE_BLOCK)["element"].get("initial_date"))}


async def test_a_second_edit_keeps_the_first_and_what_changed_in_serval(running, sender, slack, serval):
    """The form shows the ticket as Serval has it now (GET /v2/tickets/{id}), and saving sends only
    the fields the person changed."""
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    first = await opened_form(sender, slack_state, click(button, "U111"))
    await save(sender, slack_state, first, {**as_shown(first), views.EDIT_TITLE_BLOCK: text_value("Projector blurry")})
    assert puts(serval_state, ticket) == [{"name": "Projector blurry"}]

    urgent = serval_state.priorities["team-it"][-1]["id"]
    serval_state.update_ticket(ticket["id"], {"priorityId": urgent})  # an agent, in Serval
    second = await opened_form(sender, slack_state, click(button, "U111"))
    assert block(second, views.EDIT_TITLE_BLOCK)["element"]["initial_value"] == "Projector blurry"
    assert block(second, views.EDIT_PRIORITY_BLOCK)["element"]["initial_option"]["value"] == urgent
    due = dt.date.today() + dt.timedelta(days=3)
    await save(sender, slack_state, second, {**as_shown(second), views.EDIT_DUE_BLOCK: date_value(due.isoformat())})
    assert puts(serval_state, ticket)[1:] == [{"dueDate": {"year": due.year, "month": due.month, "day": due.day}}]
    now = serval_state.tickets[ticket["id"]]
    assert (now["name"], now["priorityId"]) == ("Projector blurry", urgent)


async def test_when_serval_cannot_tell_the_details_the_form_shows_the_journaled_ones_and_sends_only_changes(
        running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    serval_state.update_ticket(ticket["id"], {"name": "Renamed in Serval"})
    serval_state.set_faults({f"GET /v2/tickets/{ticket['id']}": {"error_rate": 1.0, "status": 503}})
    view = await opened_form(sender, slack_state, click(button, "U111"))
    assert block(view, views.EDIT_TITLE_BLOCK)["element"]["initial_value"] == "Projector in room 4 is blurry"
    low = serval_state.priorities["team-it"][0]["id"]
    await save(sender, slack_state, view, {**as_shown(view), views.EDIT_PRIORITY_BLOCK: select_value(low)})
    assert puts(serval_state, ticket) == [{"priorityId": low}]
    assert serval_state.tickets[ticket["id"]]["name"] == "Renamed in Serval"
    assert "could not be asked for this ticket's details" in json.dumps(view["blocks"])  # and the form said so


async def test_an_overdue_date_left_as_it_is_is_no_error(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    past = dt.date.today() - dt.timedelta(days=2)
    serval_state.update_ticket(ticket["id"], {"dueDate": {"year": past.year, "month": past.month, "day": past.day}})
    view = await opened_form(sender, slack_state, click(button, "U111"))
    assert block(view, views.EDIT_DUE_BLOCK)["element"]["initial_date"] == past.isoformat()
    await save(sender, slack_state, view, {**as_shown(view), views.EDIT_TITLE_BLOCK: text_value("Still blurry")})
    assert puts(serval_state, ticket) == [{"name": "Still blurry"}]


async def test_saving_the_form_unchanged_sends_nothing(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    view = await opened_form(sender, slack_state, click(button, "U111"))
    await sender.interactive(submission(view, as_shown(view), user_id="U111"))
    await eventually(lambda: [c for c in slack_state.calls_to("views.update") if c["args"].get("view_id") == view["id"]
                              and "Nothing was changed" in json.dumps(c["args"]["view"])])
    assert puts(serval_state, ticket) == []


async def test_a_form_that_does_not_say_what_it_showed_is_out_of_date(running, sender, slack, serval):
    """A form opened before the bot kept what it showed (a rolling deploy): no guess, no overwrite."""
    slack_state, serval_state = slack[0], serval[0]
    button, ticket = await reacted_ticket(running, sender, slack_state, serval_state)
    view = await opened_form(sender, slack_state, click(button, "U111"))
    meta = json.loads(view["private_metadata"])
    del meta["shown"]
    r = await sender.interactive(submission({**view, "private_metadata": json.dumps(meta)}, as_shown(view)))
    assert r.json()["response_action"] == "update" and "out of date" in json.dumps(r.json()["view"])
    assert puts(serval_state, ticket) == []
