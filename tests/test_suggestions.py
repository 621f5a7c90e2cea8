""""You already have a ticket about this", end to end (issue 15): signed Slack requests → the bot
over HTTP → the fake Slack Web API and the Serval sandbox. The form opens first; the requester's
similar open tickets are added under the title with views.update (the view's hash, every block and
action id kept); choosing one adds the message to it instead of creating a ticket, once."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from sandbox.serval import ServalState
from tests.conftest import SlackSender, eventually, make_settings, select_value, text_value
from tests.test_ticket_flow import block, created, open_modal_with_command, open_modal_with_shortcut, shortcut


@pytest.fixture
def settings(tmp_path: Path, slack, serval) -> Settings:
    return make_settings(tmp_path, slack[1], serval[1], suggest_similar=True)


def ticket_for(state: ServalState, name: str, *, requester: str = "usr-alice", team: str = "team-it",
               status: str | None = None) -> dict[str, Any]:
    ticket = state.create_ticket({"teamId": team, "name": name, "createdByUserId": requester})
    if status:
        state.update_ticket(ticket["id"], {"statusId": status})
    return ticket


def seed(state: ServalState) -> tuple[dict[str, Any], dict[str, Any]]:
    """Alice's open printer tickets (the closest first), and tickets that must not be offered."""
    one = ticket_for(state, "Printer on floor 3 jams", status="st-it-in-progress")
    both = ticket_for(state, "Printer jammed on floor 2")
    ticket_for(state, "VPN drops every hour")
    ticket_for(state, "Printer jammed", status="st-it-done")
    ticket_for(state, "Printer jammed", requester="usr-bob")
    return both, one


def searches(state: ServalState) -> list[dict[str, Any]]:
    return state.requests_to("POST", "/v2/tickets/search")


def element_ids(view: dict[str, Any]) -> list[tuple[str | None, str | None]]:
    out = []
    for b in view["blocks"]:
        element = b.get("element") or b.get("accessory") or {}
        out.append((b.get("block_id"), element.get("action_id")))
    return out


def click(view: dict[str, Any], block_id: str, values: dict[str, Any], *, user: str = "U111") -> dict[str, Any]:
    button = block(view, block_id)["accessory"]
    return {
        "type": "block_actions", "user": {"id": user}, "team": {"id": "T111"}, "trigger_id": f"{time.time_ns()}.click",
        "container": {"type": "view", "view_id": view["id"]},
        "view": {**view, "state": {"values": values}},
        "actions": [{"type": "button", "block_id": block_id, "action_id": button["action_id"], "value": button["value"],
                     "text": button["text"], "action_ts": f"{time.time():.6f}"}],
    }


async def offered(slack_state: Any) -> dict[str, Any]:
    """The views.update that added the suggestions."""
    calls = await slack_state.wait_for("views.update")
    assert not calls[0]["error"], calls[0]
    return calls[0]


async def test_similar_open_tickets_are_offered_under_the_title(sender, slack, serval):
    slack_state, (state, _) = slack[0], serval
    both, one = seed(state)
    await open_modal_with_command(sender, slack_state, "Printer jammed again")
    opened = slack_state.calls_to("views.open")[0]["response"]["view"]
    update = await offered(slack_state)
    args = update["args"]
    assert args["view_id"] == opened["id"] and args["hash"] == opened["hash"]
    view = args["view"]
    ids = [b.get("block_id") for b in view["blocks"]]
    assert ids[ids.index("title") + 1: ids.index("title") + 4] == ["suggestions", "suggestion:0", "suggestion:1"]
    first, second = block(view, "suggestion:0"), block(view, "suggestion:1")
    assert f"*{both['friendlyIdentifier']}* Printer jammed on floor 2" in first["text"]["text"]  # two words shared
    assert f"*{one['friendlyIdentifier']}* Printer on floor 3 jams" in second["text"]["text"]
    assert "_In Progress_" in second["text"]["text"]
    assert first["accessory"]["text"]["text"] == "Add to this ticket instead"
    assert "suggestion:2" not in ids  # nothing else is similar and open and Alice's
    # every block of the opened form is there, in order, with its block_id and action_id: Slack keeps
    # what the person typed meanwhile
    kept = [x for x in element_ids(view) if not str(x[0]).startswith("suggestion")]
    assert kept == element_ids(opened)
    assert {k: view[k] for k in ("callback_id", "private_metadata", "title", "submit")} == {
        k: opened[k] for k in ("callback_id", "private_metadata", "title", "submit")}
    body = searches(state)[0]["body"]
    assert body["teamIds"] == ["team-it"] and body["requesterUserIds"] == ["usr-alice"]
    assert body["statusIds"] == ["st-it-open", "st-it-in-progress"]


async def test_choosing_one_adds_to_it_instead_of_creating_a_ticket(sender, slack, serval, running, caplog):
    caplog.set_level(logging.INFO, logger="bot.pipeline")
    slack_state, (state, _) = slack[0], serval
    both, _ = seed(state)
    await open_modal_with_command(sender, slack_state, "Printer jammed again")
    view_id = (await offered(slack_state))["args"]["view_id"]
    form = slack_state.views[view_id]
    tickets_before = len(state.tickets)
    values = {"title": text_value("Printer jammed again"), "description": text_value("Tray 2 blinks red."),
              "field:type": select_value("TICKET_TYPE_REQUEST")}
    r1 = await sender.interactive(click(form, "suggestion:0", values))
    r2 = await sender.interactive(click(form, "suggestion:0", values))  # a double click
    assert r1.status_code == r2.status_code == 200
    told = (await slack_state.wait_for("chat.postEphemeral"))[0]["args"]["text"]
    await running.bot.tickets.idle(5)
    assert f"Added to ticket *{both['friendlyIdentifier']}*" in told
    messages = state.requests_to("POST", f"/v2/tickets/{both['id']}/messages")
    assert len(messages) == 1  # once, whatever the clicks
    assert messages[0]["body"]["message"].startswith("Tray 2 blinks red.")
    assert messages[0]["body"]["triggerHelpAgent"] is False and messages[0]["body"]["authorUserId"] == "usr-alice"
    assert len(state.tickets) == tickets_before and created(state) == []  # no new ticket
    assert len(slack_state.calls_to("chat.postEphemeral")) == 1
    screens = [json.dumps(c["args"]["view"]) for c in slack_state.calls_to("views.update")[1:] if not c["error"]]
    assert "Adding to ticket" in screens[0] and "Added to ticket" in screens[-1]
    # the log says what happened: added to the ticket, not created
    assert f"added to serval {both['friendlyIdentifier']}" in caplog.text and "created serval" not in caplog.text


async def test_from_the_shortcut_the_thread_is_linked_to_the_chosen_ticket(sender, slack, serval, running):
    slack_state, (state, _) = slack[0], serval
    both, _ = seed(state)
    body = shortcut()
    body["message"]["text"] = "The printer jammed again"  # by W111: Alice
    await open_modal_with_shortcut(sender, slack_state, body)
    view_id = (await offered(slack_state))["args"]["view_id"]
    form = slack_state.views[view_id]
    values = {"title": text_value("The printer jammed again"), "description": text_value("The printer jammed again"),
              "field:type": select_value("TICKET_TYPE_REQUEST")}
    await sender.interactive(click(form, "suggestion:0", values))
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    assert created(state) == []
    assert len(state.ticket_messages[both["id"]]) == 1
    connect = state.requests_to("POST", f"/v2/tickets/{both['id']}/connect")
    assert connect[0]["body"]["externalTicketId"] == "C111:1583636382.000300"
    reply = slack_state.calls_to("chat.postMessage")[0]["args"]
    assert reply["thread_ts"] == "1583636382.000300" and both["friendlyIdentifier"] in reply["text"]
    link = await running.bot.storage.link_for_thread("C111", "1583636382.000300")
    assert link.display_id == both["friendlyIdentifier"]


async def test_nothing_similar_nothing_shown(sender, slack, serval):
    slack_state, (state, _) = slack[0], serval
    seed(state)
    await open_modal_with_command(sender, slack_state, "Laptop battery dies")
    await eventually(lambda: [s for s in searches(state) if "answered_at" in s])
    await asyncio.sleep(0.3)
    assert slack_state.calls_to("views.update") == []
    await open_modal_with_command(sender, slack_state, "")  # no title: no look-up
    await asyncio.sleep(0.3)
    assert len(searches(state)) == 1 and slack_state.calls_to("views.update") == []


async def test_the_form_opens_before_the_search_answers(sender, slack, serval):
    slack_state, (state, _) = slack[0], serval
    seed(state)
    state.delay("POST /v2/tickets/search", 2.0)
    started = time.monotonic()
    await open_modal_with_command(sender, slack_state, "Printer jammed again")
    opened_at = slack_state.calls_to("views.open")[0]["at"]
    assert opened_at - started < 1.0
    update = (await slack_state.wait_for("views.update", timeout=6))[0]
    search = searches(state)[0]
    assert opened_at < search["answered_at"] < update["at"]
    assert search["answered_at"] - search["at"] >= 2.0
    assert not update["error"] and block(update["args"]["view"], "suggestion:0")


async def test_a_team_change_during_the_look_up_wins_and_the_look_up_runs_again(sender, slack, serval, running):
    slack_state, (state, _) = slack[0], serval
    state.add_team("Facilities", "FAC", team_id="team-fac")
    seed(state)
    fac = ticket_for(state, "Printer room door jammed", team="team-fac")
    await running.bot.backends["serval"].refresh_catalog()  # the new team (the background refresh is every 5 minutes)
    assert len(running.bot.backends["serval"].teams) == 2
    state.delay("POST /v2/tickets/search", 1.0)
    await open_modal_with_command(sender, slack_state, "Printer jammed again")
    opened = slack_state.calls_to("views.open")[0]["response"]["view"]
    action = {
        "type": "block_actions", "user": {"id": "U111"}, "team": {"id": "T111"}, "trigger_id": "1.2.3",
        "view": {**opened, "state": {"values": {"title": text_value("Printer jammed again"),
                                                "field:team_id": select_value("team-fac")}}},
        "actions": [{"type": "static_select", "block_id": "field:team_id", "action_id": "value",
                     "selected_option": {"value": "team-fac"}}],
    }
    await sender.interactive(action)
    calls = await slack_state.wait_for("views.update", count=3, timeout=8)
    team_change, stale, retried = calls[:3]
    assert not team_change["error"] and stale["error"] == "hash_conflict" and not retried["error"]
    assert retried["args"]["hash"] == team_change["response"]["view"]["hash"]
    final = slack_state.views[opened["id"]]
    assert block(final, "field:team_id")["element"]["initial_option"]["value"] == "team-fac"
    assert f"*{fac['friendlyIdentifier']}*" in block(final, "suggestion:0")["text"]["text"]
    assert "suggestion:1" not in [b.get("block_id") for b in final["blocks"]]
    assert [s["body"]["teamIds"] for s in searches(state)] == [["team-it"], ["team-fac"]]


async def test_off_by_setting(tmp_path, slack, serval):
    from server.http import serve_http

    slack_state, (state, url) = slack[0], serval
    seed(state)
    running = await serve_http(make_settings(tmp_path, slack[1], url, suggest_similar=False), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await open_modal_with_command(sender, slack_state, "Printer jammed again")
        await asyncio.sleep(0.5)
        assert searches(state) == [] and slack_state.calls_to("views.update") == []
    finally:
        await sender.aclose()
        await running.close()


async def test_the_look_up_waits_until_nobody_waits_for_a_form(sender, slack, serval):
    """The look-up after one person's form never delays another's: it starts once the bot has
    answered everyone waiting (here Bob, whose form Slack lets open only after a second)."""
    slack_state, (state, _) = slack[0], serval
    seed(state)
    slack_state.rate_limit("views.open", retry_after=1)  # Bob's first views.open: wait 1 s and try again
    r = await sender.command("VPN drops", user_id="U222", trigger_id="bob.1")
    assert r.status_code == 200
    await slack_state.wait_for("views.open")  # refused: Bob waits for his form
    await open_modal_with_command(sender, slack_state, "Printer jammed again", trigger_id="alice.1")
    update = await offered(slack_state)  # Alice's suggestions
    bob = [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == "bob.1" and not c["error"]]
    assert bob and bob[0]["at"] < update["at"]  # Bob's form opened first
    assert update["args"]["view_id"] == next(c for c in slack_state.calls_to("views.open")
                                             if c["args"]["trigger_id"] == "alice.1")["response"]["view"]["id"]


async def test_a_look_up_under_way_waits_before_updating_while_someone_waits_for_a_form(sender, slack, serval):
    """A look-up that started in a quiet moment takes its next step (the form's update) only once
    nobody waits on the bot: Bob's form, asked for while Alice's search ran, opens first."""
    slack_state, (state, _) = slack[0], serval
    seed(state)
    state.delay("POST /v2/tickets/search", 0.5)
    await open_modal_with_command(sender, slack_state, "Printer jammed again", trigger_id="alice.1")
    await eventually(lambda: state.in_flight["POST /v2/tickets/search"] > 0)  # Alice's look-up is searching
    slack_state.rate_limit("views.open", retry_after=1)  # Bob's first views.open: wait 1 s and try again
    r = await sender.command("VPN drops", user_id="U222", trigger_id="bob.1")
    assert r.status_code == 200
    update = await offered(slack_state)  # Alice's suggestions
    bob = [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == "bob.1" and not c["error"]]
    assert bob and bob[0]["at"] < update["at"]  # Bob's form opened first
