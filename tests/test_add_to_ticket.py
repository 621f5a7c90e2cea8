"""*Add to ticket* (issue 23, item 3): the message shortcut on any message, the person picks one of
their open tickets (or types its id), and the message (its author, link and files' names) is added
to it in Serval (`POST /v2/tickets/{id}/messages`, `triggerHelpAgent: false`), once; a thread
without a ticket is connected to it, a thread with one is left as it is."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from bot.journal.storage import Link
from bot.slack import views
from clients.base import CreatedTicket
from tests.conftest import eventually, make_settings, payload, submission
from tests.test_ticket_flow import connects, filled, open_modal_with_command, opened_view, serval_calls

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)


@pytest.fixture
def settings(tmp_path, slack, serval):
    return make_settings(tmp_path, slack[1], serval[1], **FAST)


def messages_added(serval_state: Any) -> list[dict[str, Any]]:
    return [r for r in serval_calls(serval_state, "POST", "/v2/tickets/") if r["path"].endswith("/messages")]


async def a_ticket(running, sender, slack_state, serval_state, title: str) -> dict[str, Any]:
    """A ticket filed by U111 with /ticket: the one to add to."""
    before = set(serval_state.tickets)
    view = await open_modal_with_command(sender, slack_state, title, user_id="U111")
    await sender.interactive(submission(view, filled(title)))
    await eventually(lambda: set(serval_state.tickets) - before)
    await running.bot.tickets.idle(10)
    return serval_state.tickets[next(iter(set(serval_state.tickets) - before))]


async def shortcut_form(sender, slack_state, message: dict[str, Any], channel: str = "C123") -> dict[str, Any]:
    body = payload("message_shortcut.DERIVED.thread_reply.json")
    body.update(callback_id=views.ADD_SHORTCUT_CALLBACK_ID, trigger_id=f"{time.time_ns()}.add",
                channel={"id": channel, "name": "general"}, message=message, message_ts=message["ts"])
    body["user"] = {"id": "U111", "name": "alice"}
    r = await sender.interactive(body)
    assert r.status_code == 200, r.text
    await opened_view(slack_state, body["trigger_id"])
    return next(c for c in slack_state.calls_to("views.open") if c["args"].get("trigger_id") == body["trigger_id"])["response"]["view"]


def pick(ticket: dict[str, Any]) -> dict[str, Any]:
    value = views.add_option_value(CreatedTicket(ticket["id"], ticket["friendlyIdentifier"], "serval"))
    option = {"text": {"type": "plain_text", "text": ticket["friendlyIdentifier"]}, "value": value}
    return {views.ADD_PICK_BLOCK: {views.VALUE: {"type": "static_select", "selected_option": option}}}


def typed(text: str) -> dict[str, Any]:
    return {views.ADD_ID_BLOCK: {views.VALUE: {"type": "plain_text_input", "value": text}}}


async def test_a_message_in_a_thread_without_a_ticket_is_added_once_and_connects_the_thread(running, sender, slack, serval):
    slack_state, _ = slack
    serval_state, _ = serval
    ticket = await a_ticket(running, sender, slack_state, serval_state, "VPN drops")
    root = slack_state.post_user_message("C123", "U222", "Anyone else losing VPN?")
    reply = slack_state.post_user_message("C123", "U222", "Here is what I see", thread_ts=root["ts"])
    reply["files"] = [{"id": "F1", "name": "vpn-log.txt"}]
    form = await shortcut_form(sender, slack_state, dict(reply))
    # the form opened at once; the person's open tickets are added to it
    listed = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                       if c["args"].get("view_id") == form["id"] and ticket["friendlyIdentifier"] in str(c["args"]["view"])])
    filled_form = {**form, "blocks": listed[-1]["args"]["view"]["blocks"]}
    body = submission(filled_form, pick(ticket), view_id=form["id"])
    await sender.interactive(body)
    await sender.interactive(body)  # a double click: the same form, added once
    added = await eventually(lambda: messages_added(serval_state))
    await running.bot.tickets.idle(10)
    await asyncio.sleep(0.2)
    # once, and the thread's other message with it (the thread is connected: its history is copied)
    assert sorted("Here is what I see" in r["body"]["message"] for r in messages_added(serval_state)) == [False, True], \
        [r["body"]["message"] for r in messages_added(serval_state)]
    assert any("Anyone else losing VPN?" in r["body"]["message"] for r in messages_added(serval_state))
    call = next(r for r in messages_added(serval_state) if "Here is what I see" in r["body"]["message"])
    assert call["path"] == f"/v2/tickets/{ticket['id']}/messages"
    text = call["body"]["message"]
    assert "Here is what I see" in text and "vpn-log.txt" in text and f"/archives/C123/p{reply['ts'].replace('.', '')}" in text
    assert call["body"].get("triggerHelpAgent") is False
    # U222 wrote it: named as the author (bob is a Serval user: the message is his)
    assert call["body"].get("authorUserId") == serval_state.user_by_email("bob@example.com")["id"] or "bob" in text
    # the thread had no ticket: it is connected now, and says so
    assert [c["path"] for c in connects(serval_state)][-1] == f"/v2/tickets/{ticket['id']}/connect"
    link = await running.bot.storage.link_for_thread("C123", root["ts"])
    assert link and link.display_id == ticket["friendlyIdentifier"]
    posted = [c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("thread_ts") == root["ts"]]
    assert len(posted) == 1 and "added this thread to ticket" in posted[0]["args"]["text"]
    assert await eventually(lambda: [c for c in slack_state.calls_to("views.update") if c["args"].get("view_id") == form["id"]
                                     and "Added to ticket" in str(c["args"]["view"])])


async def test_a_typed_id_adds_to_that_ticket_and_a_thread_with_a_ticket_stays_as_it_is(running, sender, slack, serval):
    slack_state, _ = slack
    serval_state, _ = serval
    first = await a_ticket(running, sender, slack_state, serval_state, "First")
    second = await a_ticket(running, sender, slack_state, serval_state, "Second")
    root = slack_state.post_user_message("C123", "U111", "Thread of the first ticket")
    await running.bot.storage.add_link(Link("C123", root["ts"], first["id"], first["friendlyIdentifier"], "serval"),
                                       "s-first")
    connected_before = len(connects(serval_state))
    reply = slack_state.post_user_message("C123", "U111", "This belongs to the second one", thread_ts=root["ts"])
    form = await shortcut_form(sender, slack_state, dict(reply))
    await sender.interactive(submission(form, typed(second["friendlyIdentifier"].lower()), view_id=form["id"]))
    added = await eventually(lambda: messages_added(serval_state))
    await running.bot.tickets.idle(10)
    assert added[0]["path"] == f"/v2/tickets/{second['id']}/messages"
    assert "This belongs to the second one" in added[0]["body"]["message"]
    assert len(connects(serval_state)) == connected_before  # the thread keeps its ticket
    assert (await running.bot.storage.link_for_thread("C123", root["ts"])).display_id == first["friendlyIdentifier"]
    assert not [c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("thread_ts") == root["ts"]]


async def test_nothing_picked_is_an_inline_error_and_an_unknown_id_is_said(running, sender, slack, serval):
    slack_state, _ = slack
    serval_state, _ = serval
    message = slack_state.post_user_message("C123", "U111", "Lost message")
    form = await shortcut_form(sender, slack_state, dict(message))
    r = await sender.interactive(submission(form, {}, view_id=form["id"]))
    assert r.json()["response_action"] == "errors" and views.ADD_ID_BLOCK in r.json()["errors"]
    r = await sender.interactive(submission(form, typed("IT-999"), view_id=form["id"]))
    assert r.json()["response_action"] == "update"
    await eventually(lambda: [c for c in slack_state.calls_to("views.update") if c["args"].get("view_id") == form["id"]
                              and "I found no ticket" in str(c["args"]["view"])])
    assert messages_added(serval_state) == []
