"""End to end: signed Slack requests → the bot over HTTP → fake Slack Web API + Serval sandbox."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from tests.conftest import (
    SlackSender,
    date_value,
    eventually,
    payload,
    select_value,
    share_value,
    submission,
    text_value,
)


def serval_calls(serval_state: Any, method: str, path_start: str) -> list[dict[str, Any]]:
    return [r for r in serval_state.requests if r["method"] == method and r["path"].startswith(path_start)]


def created(serval_state: Any) -> list[dict[str, Any]]:
    return [r["body"] for r in serval_calls(serval_state, "POST", "/v2/tickets") if r["path"] == "/v2/tickets"]


def connects(serval_state: Any) -> list[dict[str, Any]]:
    return [r for r in serval_calls(serval_state, "POST", "/v2/tickets/") if r["path"].endswith("/connect")]


async def opened_view(slack_state: Any, trigger_id: str) -> dict[str, Any]:
    """The view the bot opened with this trigger id (requests may run concurrently)."""
    def find():
        return next((c for c in slack_state.calls_to("views.open") if c["args"].get("trigger_id") == trigger_id), None)

    call = await eventually(find)
    assert not call.get("error"), call
    return call["args"]["view"]


async def open_modal_with_command(sender: SlackSender, slack_state: Any, text: str = "", **fields: str) -> dict[str, Any]:
    fields.setdefault("trigger_id", f"{time.time_ns()}.{id(fields)}.cmd")
    r = await sender.command(text, **fields)
    assert r.status_code == 200, r.text
    return await opened_view(slack_state, fields["trigger_id"])


def block(view: dict[str, Any], block_id: str) -> dict[str, Any]:
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def filled(title: str = "Printer on floor 3 is jammed", *, description: str | None = "It blinks red.",
           kind: str | None = "TICKET_TYPE_REQUEST", due: str | None = None, share: bool = False) -> dict[str, Any]:
    return {
        "title": text_value(title),
        "description": text_value(description),
        "field:type": select_value(kind),
        "field:due_date": date_value(due),
        "share": share_value(share),
    }


async def test_ticket_command_opens_prefilled_modal(sender, slack):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "Printer on floor 3 is jammed")
    assert view["title"]["text"] == "New ticket"
    assert view["callback_id"] == "ticket_modal"
    assert block(view, "title")["element"]["initial_value"] == "Printer on floor 3 is jammed"
    assert block(view, "description")["element"]["multiline"] is True
    options = [o["value"] for o in block(view, "field:type")["element"]["options"]]
    assert options == ["TICKET_TYPE_REQUEST", "TICKET_TYPE_INCIDENT"]
    assert block(view, "field:due_date")["optional"] is True
    share = block(view, "share")["element"]["options"][0]["text"]["text"]
    assert share == "Share in <#C111> and sync the thread"


async def test_command_text_mentioning_payload_still_opens_the_modal(sender, slack):
    # Bolt alone would take any form body containing "payload" for an interaction and answer 404.
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "payload=export fails for payload uploads")
    assert block(view, "title")["element"]["initial_value"] == "payload=export fails for payload uploads"


async def test_ticket_command_in_a_dm_has_no_share_checkbox(sender, slack):
    view = await open_modal_with_command(sender, slack[0], "", channel_id="D0LFFBKLZ", channel_name="directmessage")
    assert all(b.get("block_id") != "share" for b in view["blocks"])


async def test_ticket_help_answers_with_usage_and_opens_nothing(sender, slack):
    r = await sender.command("help")
    assert r.status_code == 200
    assert r.json()["response_type"] == "ephemeral"
    assert "/ticket Printer on floor 3 is jammed" in r.json()["text"]
    assert slack[0].calls_to("views.open") == []


async def test_command_submission_creates_shares_and_connects(sender, slack, serval, running):
    slack_state, _ = slack
    serval_state, _ = serval
    view = await open_modal_with_command(sender, slack_state, "Printer on floor 3 is jammed")
    due = (dt.date.today() + dt.timedelta(days=7)).isoformat()
    r = await sender.interactive(submission(view, filled(kind="TICKET_TYPE_INCIDENT", due=due, share=True)))
    assert r.status_code == 200
    ack = r.json()
    assert ack["response_action"] == "update"
    assert "Creating your ticket" in json.dumps(ack["view"])

    ephemeral = await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)  # the person is told first; the share and connect follow
    body = created(serval_state)[0]
    assert body["teamId"] == "team-it"
    assert body["name"] == "Printer on floor 3 is jammed"
    assert body["description"].startswith("It blinks red.")
    assert body["type"] == "TICKET_TYPE_INCIDENT"
    y, m, d = map(int, due.split("-"))
    assert body["dueDate"] == {"year": y, "month": m, "day": d}
    assert body["channelSyncTargets"] == [{"slackDm": {"targetUserType": "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"}}]
    alice = next(u for u in serval_state.users.values() if u["email"] == "alice@example.com") \
        if isinstance(serval_state.users, dict) else next(u for u in serval_state.users if u["email"] == "alice@example.com")
    assert body["requesterUserId"] == alice["id"]
    assert body["createdByUserId"] == alice["id"]

    ticket = next(iter(serval_state.tickets.values()))
    friendly = ticket["friendlyIdentifier"]
    shared = slack_state.calls_to("chat.postMessage")
    assert len(shared) == 1
    assert shared[0]["args"]["channel"] == "C111" and not shared[0]["args"].get("thread_ts")
    assert friendly in shared[0]["args"]["text"]

    post_ts = shared[0]["result"]["ts"] if "result" in shared[0] else slack_state.messages["C111"][-1]["ts"]
    connect = connects(serval_state)
    assert len(connect) == 1
    assert connect[0]["path"] == f"/v2/tickets/{ticket['id']}/connect"
    assert connect[0]["body"] == {
        "channelTarget": {"slackChannel": {"integrationId": "integ-slack-1"}},
        "externalTicketId": f"C111:{post_ts}",
    }
    assert friendly in ephemeral[0]["args"]["text"]
    assert ephemeral[0]["args"]["user"] == "U111"
    link = await running.bot.storage.link_for_thread("C111", post_ts)
    assert link and link.display_id == friendly


async def test_command_without_share_posts_nothing_in_channel(sender, slack, serval, running):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "VPN is down")
    r = await sender.interactive(submission(view, filled("VPN is down", share=False)))
    assert r.json()["response_action"] == "update"
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    assert slack_state.calls_to("chat.postMessage") == []
    assert connects(serval[0]) == []
    assert len(created(serval[0])) == 1


async def open_modal_with_shortcut(sender: SlackSender, slack_state: Any, body: dict[str, Any]) -> dict[str, Any]:
    body["trigger_id"] = f"{time.time_ns()}.{id(body)}.sc"
    r = await sender.interactive(body)
    assert r.status_code == 200, r.text
    return await opened_view(slack_state, body["trigger_id"])


def shortcut(name: str = "message_shortcut.bolt-tests.json") -> dict[str, Any]:
    body = payload(name)
    body["callback_id"] = "create_ticket"
    return body


async def test_message_shortcut_prefills_modal_from_message(sender, slack):
    slack_state, _ = slack
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    assert block(view, "title")["element"]["initial_value"] == "@W222 test"
    description = block(view, "description")["element"]["initial_value"]
    assert description.startswith("@W222 test")
    # the link is built from the workspace URL (auth.test), without asking Slack for it
    assert description.endswith("Slack message: https://example.slack.com/archives/C111/p1583636382000300")
    assert slack_state.calls_to("chat.getPermalink") == []
    # the requester: the message's author, in a picker (anyone may file for others by default)
    assert block(view, "on_behalf")["element"] == {"action_id": "value", "initial_user": "W111", "type": "users_select"}
    assert all(b.get("block_id") != "share" for b in view["blocks"])


async def test_the_shortcut_on_an_apps_message_files_for_the_person_and_names_the_app(sender, slack, serval, running):
    slack_state, serval_state = slack[0], serval[0]
    body = shortcut()
    body["message"].update(user="UPD", text="CRITICAL: disk full on db-1", bot_id="BPD", app_id="APD",
                           bot_profile={"id": "BPD", "name": "PagerDuty", "app_id": "APD", "team_id": "T111"})
    view = await open_modal_with_shortcut(sender, slack_state, body)
    description = block(view, "description")["element"]["initial_value"]
    assert description.startswith("Alert from PagerDuty in #dev:\nCRITICAL: disk full on db-1")
    assert "initial_user" not in block(view, "on_behalf")["element"]  # not the app
    await sender.interactive(submission(view, {**filled("Disk full on db-1"), "description": text_value(description)}))
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    sent = created(serval_state)[0]
    assert sent["requesterUserId"] == sent["createdByUserId"] == serval_state.user_by_email("alice@example.com")["id"]


async def test_long_message_title_is_cut_at_a_word_boundary(sender, slack):
    body = shortcut()
    body["message"]["text"] = ("The checkout page returns a server error whenever a customer in the EU region "
                               "tries to pay with a saved card\nsecond line")
    view = await open_modal_with_shortcut(sender, slack[0], body)
    title = block(view, "title")["element"]["initial_value"]
    assert len(title) <= 80 and title.endswith("…")
    assert title.startswith("The checkout page returns a server error") and " saved card" not in title
    assert "second line" in block(view, "description")["element"]["initial_value"]


async def test_shortcut_submission_replies_in_thread_and_connects(sender, slack, serval, running):
    slack_state, _ = slack
    serval_state, _ = serval
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    r = await sender.interactive(submission(view, filled("Checkout broken")))
    assert r.json()["response_action"] == "update"
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    ticket = next(iter(serval_state.tickets.values()))
    reply = slack_state.calls_to("chat.postMessage")
    assert len(reply) == 1
    assert reply[0]["args"]["channel"] == "C111"
    assert reply[0]["args"]["thread_ts"] == "1583636382.000300"
    assert ticket["friendlyIdentifier"] in reply[0]["args"]["text"]
    body = created(serval_state)[0]
    bob = [u for u in (serval_state.users.values() if isinstance(serval_state.users, dict) else serval_state.users)]
    # requester is the message author (W111 = alice in the fake Slack), creator the submitter (U111)
    assert body["requesterUserId"] and body["createdByUserId"]
    connect = connects(serval_state)
    assert connect[0]["body"]["externalTicketId"] == "C111:1583636382.000300"
    assert connect[0]["body"]["channelTarget"] == {"slackChannel": {"integrationId": "integ-slack-1"}}
    link = await running.bot.storage.link_for_thread("C111", "1583636382.000300")
    assert link.display_id == ticket["friendlyIdentifier"]
    assert reply[0]["args"]["text"].index(ticket["friendlyIdentifier"]) >= 0
    # the reply comes before the connect call
    order = [r["path"] for r in serval_state.requests]
    assert any(p.endswith("/connect") for p in order)


async def test_thread_reply_connects_the_thread_root(sender, slack, serval, running):
    slack_state, _ = slack
    body = shortcut("message_shortcut.DERIVED.thread_reply.json")
    view = await open_modal_with_shortcut(sender, slack_state, body)
    await sender.interactive(submission(view, filled("From a reply")))
    await slack_state.wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)
    assert slack_state.calls_to("chat.postMessage")[0]["args"]["thread_ts"] == "1583636382.000300"
    assert connects(serval[0])[0]["body"]["externalTicketId"] == "C111:1583636382.000300"
    # the permalink is for the reply itself, in its thread (as chat.getPermalink builds it)
    description = block(view, "description")["element"]["initial_value"]
    assert description.endswith("https://example.slack.com/archives/C111/p1583636390000400"
                                "?thread_ts=1583636382.000300&cid=C111")


async def test_dm_thread_is_connected_as_slack_dm(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_shortcut(sender, slack_state, shortcut("message_shortcut.slack-docs.json"))
    await sender.interactive(submission(view, filled("Big cat"), user_id="U0D15K92L"))
    await eventually(lambda: connects(serval[0]))
    assert connects(serval[0])[0]["body"] == {
        "channelTarget": {"slackDm": {"integrationId": "integ-slack-1",
                                      "targetUserType": "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"}},
        "externalTicketId": "D0LFFBKLZ:1516229207.000133",
    }


async def test_second_shortcut_on_a_linked_thread_creates_nothing(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    await sender.interactive(submission(view, filled("First")))
    await eventually(lambda: connects(serval[0]))
    friendly = next(iter(serval[0].tickets.values()))["friendlyIdentifier"]

    again = await open_modal_with_shortcut(sender, slack_state, shortcut("message_shortcut.DERIVED.thread_reply.json"))
    assert f"already linked to ticket *{friendly}*" in json.dumps(again)
    assert "callback_id" not in again or again.get("callback_id") != "ticket_modal"
    assert len(created(serval[0])) == 1


async def test_a_thread_taken_before_a_restart_gets_the_notice_in_place_of_the_form(settings, slack, serval):
    """The shortcut asks the database before its form only about threads this process knows are
    taken; any other thread gets the form at once, and when the thread turns out to be taken (by
    another replica, or by this one before a restart), the notice replaces the form."""
    from server.http import serve_http

    slack_state, _ = slack
    first = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(first.url)
    try:
        view = await open_modal_with_shortcut(sender, slack_state, shortcut())
        await sender.interactive(submission(view, filled("First")))
        await eventually(lambda: connects(serval[0]))
        await first.bot.tickets.idle(5)
    finally:
        await sender.aclose()
        await first.close()
    friendly = next(iter(serval[0].tickets.values()))["friendlyIdentifier"]

    again = await serve_http(settings, host="127.0.0.1", port=0)  # the same journal, nothing in memory
    sender = SlackSender(again.url)
    try:
        body = shortcut("message_shortcut.DERIVED.thread_reply.json")
        await open_modal_with_shortcut(sender, slack_state, body)
        opened = next(c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == body["trigger_id"])
        form = opened["response"]["view"]
        assert form["callback_id"] == "ticket_modal"  # the form first
        swapped = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                            if c["args"]["view_id"] == form["id"]])
        assert swapped[0]["args"]["hash"] == form["hash"] and not swapped[0]["error"]
        assert f"already linked to ticket *{friendly}*" in json.dumps(slack_state.views[form["id"]])
        # known now: the next shortcut on the thread gets the notice instead of a form, as always
        third = await open_modal_with_shortcut(sender, slack_state, shortcut())
        assert f"already linked to ticket *{friendly}*" in json.dumps(third)
        assert third.get("callback_id") != "ticket_modal"
        assert len(created(serval[0])) == 1
    finally:
        await sender.aclose()
        await again.close()


def shortcut_on(ts: str) -> dict[str, Any]:
    """The shortcut on another message of the channel, at the top of its own thread."""
    body = shortcut()
    body["message_ts"] = body["message"]["ts"] = ts
    return body


async def test_forms_opened_together_are_each_swapped_or_left_as_their_thread_is(tmp_path, slack, serval):
    """Many shortcuts at once after a restart, on threads taken before it and on free ones: each
    taken thread's form becomes the notice naming its own ticket, every other form stays a form
    and offers similar tickets (the look-ups after the forms opened are made together)."""
    from server.http import serve_http
    from tests.conftest import make_settings

    slack_state, _ = slack
    settings = make_settings(tmp_path, slack[1], serval[1], suggest_similar=True)
    first = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(first.url)
    taken = [f"1700000000.00010{i}" for i in range(3)]
    try:
        for i, ts in enumerate(taken):
            view = await open_modal_with_shortcut(sender, slack_state, shortcut_on(ts))
            # titled like the message, so that a free thread's form offers these tickets (and so shows it was looked at)
            await sender.interactive(submission(view, filled(f"@W222 test {i}"), view_id=f"VTAKEN{i}"))
        await eventually(lambda: len(connects(serval[0])) == 3)
        await first.bot.tickets.idle(5)
    finally:
        await sender.aclose()
        await first.close()
    ticket_of = {t["name"]: t["friendlyIdentifier"] for t in serval[0].tickets.values()}

    again = await serve_http(settings, host="127.0.0.1", port=0)  # the same journal, nothing in memory
    sender = SlackSender(again.url)
    try:
        free = [f"1700000001.00020{i}" for i in range(4)]
        bodies = [shortcut_on(ts) for ts in taken + free]
        for i, body in enumerate(bodies):
            body["trigger_id"] = f"together.{i}"
        assert all(r.status_code == 200 for r in await asyncio.gather(*(sender.interactive(b) for b in bodies)))
        forms = [await opened_view(slack_state, f"together.{i}") for i in range(len(bodies))]
        assert all(form["callback_id"] == "ticket_modal" for form in forms)  # every form first
        opened = {c["args"]["trigger_id"]: c["response"]["view"]["id"] for c in slack_state.calls_to("views.open")
                  if c["args"]["trigger_id"].startswith("together.")}

        def updates() -> list[tuple[str, str]]:
            return [(c["args"]["view_id"], json.dumps(c["args"]["view"])) for c in slack_state.calls_to("views.update")
                    if c["args"]["view_id"] in opened.values()]

        def notices() -> dict[str, str]:
            return {view_id: view for view_id, view in updates() if "already linked" in view}

        def offered() -> set[str]:
            return {view_id for view_id, view in updates() if "already linked" not in view}

        swapped = await eventually(lambda: len(notices()) == 3 and notices())
        for i in range(3):
            assert f"already linked to ticket *{ticket_of[f'@W222 test {i}']}*" in swapped[opened[f"together.{i}"]]
        # the free threads' forms stayed forms, and offered the similar tickets
        assert await eventually(lambda: offered() == {opened[f"together.{i}"] for i in range(3, 7)})
        assert len(notices()) == 3
        assert all(slack_state.views[opened[f"together.{i}"]]["callback_id"] == "ticket_modal" for i in range(3, 7))
        assert all("@W222 test 0" in json.dumps(slack_state.views[opened[f"together.{i}"]]) for i in range(3, 7))
        assert len(created(serval[0])) == 3
    finally:
        await sender.aclose()
        await again.close()


async def test_two_modals_on_one_thread_make_one_ticket(sender, slack, serval):
    slack_state, _ = slack
    first = await open_modal_with_shortcut(sender, slack_state, shortcut())
    second = await open_modal_with_shortcut(sender, slack_state, shortcut())
    r1 = await sender.interactive(submission(first, filled("One"), view_id="VFIRST"))
    r2 = await sender.interactive(submission(second, filled("Two"), view_id="VSECOND"))
    assert r1.json()["response_action"] == "update"
    assert "already" in json.dumps(r2.json()["view"])
    await slack_state.wait_for("chat.postEphemeral")
    assert len(created(serval[0])) == 1


async def test_same_view_submitted_twice_makes_one_ticket(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "Twice")
    body = submission(view, filled("Twice"), view_id="VSAME")
    r1 = await sender.interactive(body)
    r2 = await sender.interactive(body)
    assert r1.status_code == r2.status_code == 200
    await slack_state.wait_for("chat.postEphemeral")
    await eventually(lambda: len(created(serval[0])) >= 1)
    assert len(created(serval[0])) == 1
    assert len(slack_state.calls_to("chat.postEphemeral")) == 1


async def test_the_shortcut_form_submitted_again_after_its_ticket_exists_shows_that_ticket(sender, slack, serval, running):
    """A repeat of the same view submission (Slack's retry, a replay) after the ticket and the
    thread's link exist is the same submission: its ticket, not "already linked"."""
    slack_state, serval_state = slack[0], serval[0]
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    body = submission(view, filled("Checkout broken"), view_id="VREPEAT")
    assert (await sender.interactive(body)).json()["response_action"] == "update"
    await eventually(lambda: connects(serval_state))
    await running.bot.tickets.idle(5)
    again = (await sender.interactive(body)).json()
    friendly = next(iter(serval_state.tickets.values()))["friendlyIdentifier"]
    assert again["response_action"] == "update" and "already" not in json.dumps(again)
    assert f"Ticket *{friendly}* created" in json.dumps(again["view"])
    assert len(created(serval_state)) == 1 and len(slack_state.calls_to("chat.postEphemeral")) == 1


async def test_empty_title_and_past_due_date_are_inline_errors(sender, slack, serval):
    view = await open_modal_with_command(sender, slack[0], "")
    r = await sender.interactive(submission(view, filled("   ", due="2020-01-01")))
    assert r.status_code == 200
    ack = r.json()
    assert ack["response_action"] == "errors"
    assert ack["errors"]["title"] == "Please enter a title."
    assert "past" in ack["errors"]["field:due_date"]
    assert created(serval[0]) == []


async def test_oversize_title_is_an_inline_error(sender, slack, serval):
    view = await open_modal_with_command(sender, slack[0], "")
    r = await sender.interactive(submission(view, filled("x" * 300)))
    assert r.json()["response_action"] == "errors"
    assert "250" in r.json()["errors"]["title"]


async def test_every_optional_field_empty(sender, slack, serval):
    """Slack sends untouched optional inputs as null, [] or leaves them out."""
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "")
    values = filled("Only a title", description=None, due=None, share=False)
    del values["share"]  # missing key
    r = await sender.interactive(submission(view, values))
    assert r.json()["response_action"] == "update"
    await slack_state.wait_for("chat.postEphemeral")
    body = created(serval[0])[0]
    assert body["name"] == "Only a title"
    assert "dueDate" not in body
    assert body["type"] == "TICKET_TYPE_REQUEST"


async def test_documented_submission_fixtures_are_accepted(sender, slack, serval):
    """The fixtures as Slack documents them (other action ids, nulls, [] and unknown blocks)."""
    slack_state, _ = slack
    for name in ("view_submission.DERIVED.ticket_modal.optionals_empty.json", "view_submission.DERIVED.ticket_modal.json"):
        r = await sender.interactive(payload(name) | {})
        assert r.status_code == 200, r.text
    # both carry view id V111: the second is a duplicate of the first
    await slack_state.wait_for("chat.postEphemeral")
    assert [b["name"] for b in created(serval[0])] == ["Checkout page returns 500"]


async def test_serval_refusal_is_reported_with_what_was_typed(tmp_path, slack, serval):
    from server.http import serve_http
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    settings = make_settings(tmp_path, slack_url, serval[1], serval_team_id="no-such-team")
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "Laptop")
        await sender.interactive(submission(view, filled("Laptop", description="Battery dies after an hour")))
        message = (await slack_state.wait_for("chat.postEphemeral"))[0]["args"]["text"]
        assert "could not be created" in message and "Serval refused" in message
        assert "Laptop" in message and "Battery dies after an hour" in message
        updates = slack_state.calls_to("views.update")
        assert any("could not be created" in json.dumps(u["args"]["view"]) for u in updates)
        assert slack_state.calls_to("chat.postMessage") == []
    finally:
        await sender.aclose()
        await running.close()


async def test_serval_outage_is_queued_then_reported(tmp_path, slack, serval):
    from server.http import serve_http
    from sandbox.serval import Fault
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=500)
    settings = make_settings(tmp_path, slack_url, serval_url, queued_after_seconds=0.1, give_up_after_seconds=0.3)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "Laptop")
        await sender.interactive(submission(view, filled("Laptop")))
        message = (await slack_state.wait_for("chat.postEphemeral"))[0]["args"]["text"]
        assert "could not be created" in message and "Serval" in message and "Laptop" in message
        updates = [json.dumps(u["args"]["view"]) for u in slack_state.calls_to("views.update")]
        assert any("queued" in u for u in updates)
    finally:
        await sender.aclose()
        await running.close()


async def test_bad_signature_is_rejected(sender, slack):
    r = await sender.post("command=%2Fticket&text=x&trigger_id=1", signature="v0=" + "0" * 64)
    assert r.status_code == 401
    assert slack[0].calls_to("views.open") == []


async def test_stale_timestamp_is_rejected(sender, slack):
    import time

    r = await sender.post("command=%2Fticket&text=x&trigger_id=1", timestamp=int(time.time()) - 6 * 60)
    assert r.status_code == 401


async def test_slack_signing_test_vector_is_verified():
    """Slack's documented example: the same secret, timestamp and body give the documented signature."""
    from slack_sdk.signature import SignatureVerifier
    from tests.conftest import PAYLOADS

    body = (PAYLOADS / "slash_command.signing-example.form.txt").read_text()
    verifier = SignatureVerifier("8f742231b10e8888abcd99yyyzzz85a5", clock=type("C", (), {"now": lambda self: 1531420618})())
    assert verifier.is_valid(body, "1531420618", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503")


async def test_healthz(running):
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.get(running.url + "/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
