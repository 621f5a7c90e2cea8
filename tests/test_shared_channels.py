"""Slack Connect (issue 22): in a channel shared with another organisation, SHARED_CHANNEL_DETAILS=minimal
(the default) keeps what the bot posts about a ticket to its id, title and status: no link to the ticket
system, no assignee on the card, no agent's name in the notice; `full` posts as in any other channel. A
person of another organisation files a ticket that says so."""

from __future__ import annotations

import json
from typing import Any

from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings, submission
from tests.test_after_ticket import agent_changes, notices
from tests.test_ticket_flow import created, filled, open_modal_with_command

TICKET_URL = "https://acme.serval.example/tickets/{id}"  # links to the ticket system, where allowed


async def file_shared(tmp_path, slack, serval, details: str) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """/ticket with *Share* in C555 (shared with another organisation); an agent takes it, then resolves it.
    (the card as posted, its edits, the resolution notice)"""
    slack_state, serval_state = slack[0], serval[0]
    slack_state.add_channel("C555", "with-vendor", ext_shared=True)
    settings = make_settings(tmp_path, slack[1], serval[1], status_poll_seconds=0.2, shared_channel_details=details,
                             serval_ticket_url=TICKET_URL)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "Invoice portal down", channel_id="C555",
                                             channel_name="with-vendor")
        r = await sender.interactive(submission(view, filled("Invoice portal down", share=True)))
        assert r.status_code == 200
        card = (await eventually(lambda: [c for c in slack_state.calls_to("chat.postMessage")
                                          if c["args"].get("channel") == "C555" and not c["args"].get("thread_ts")],
                                 timeout=10))[0]
        ticket = next(iter(serval_state.tickets.values()))
        await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress", assignedToUserId="usr-bob")
        edits = await eventually(lambda: slack_state.calls_to("chat.update"), timeout=10)
        await agent_changes(serval[1], ticket["id"], statusId="st-it-done")
        notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
        return card, edits, notice
    finally:
        await sender.aclose()
        await running.close()


async def test_a_shared_channel_sees_the_ticket_id_and_status_only(tmp_path, slack, serval):
    card, edits, notice = await file_shared(tmp_path, slack, serval, "minimal")
    posted = json.dumps(card["args"])
    assert "ST-" in posted or "Invoice portal down" in posted
    assert "serval.example" not in posted  # no link to the ticket system
    edited = json.dumps(edits[0]["args"]["blocks"])
    assert "*Status:* In Progress" in edited and "Assignee" not in edited and "Bob" not in edited
    assert "Bob" not in notice["args"]["text"] and "serval.example" not in notice["args"]["text"]
    assert "was resolved" in notice["args"]["text"]


async def test_full_details_in_a_shared_channel_when_set(tmp_path, slack, serval):
    card, edits, notice = await file_shared(tmp_path, slack, serval, "full")
    assert "serval.example" in json.dumps(card["args"])
    assert "*Assignee:* Bob Baker" in json.dumps(edits[0]["args"]["blocks"])
    assert "by Bob Baker" in notice["args"]["text"]


async def test_a_channel_not_shared_is_unchanged(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    settings = make_settings(tmp_path, slack[1], serval[1], serval_ticket_url=TICKET_URL)  # minimal, the default
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "Printer")
        await sender.interactive(submission(view, filled("Printer", share=True)))
        card = (await eventually(lambda: [c for c in slack_state.calls_to("chat.postMessage")
                                          if c["args"].get("channel") == "C111"], timeout=10))[0]
    finally:
        await sender.aclose()
        await running.close()
    assert "serval.example" in json.dumps(card["args"])  # the link, as before


async def test_a_person_of_another_organisation_files_a_ticket_named_as_such(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    slack_state.add_channel("C555", "with-vendor", ext_shared=True)
    slack_state.add_user("UEXT", email="vera@vendor.example", name="vera", team_id="T999", email_visible=False)
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1]), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        for user in ("UEXT", "U111"):
            view = await open_modal_with_command(sender, slack_state, "Invoice portal down", channel_id="C555",
                                                 channel_name="with-vendor", user_id=user, team_id="T111")
            r = await sender.interactive(submission(view, filled(f"From {user}"), user_id=user))
            assert r.status_code == 200
            await running.bot.tickets.idle(10)
    finally:
        await sender.aclose()
        await running.close()
    external, own = [t["description"] for t in created(serval_state)]
    assert "Requested in Slack by Vera (of another organisation, Slack workspace T999)" in external  # UNMATCHED_REQUESTER
    assert "another organisation" not in own
