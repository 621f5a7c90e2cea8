"""After the ticket with Rezolve.ai (docs/after-the-ticket.md#rezolveai): the card follows the ticket
by polling `POST /api/v2/ticketing/ticket/list` (filtered on the followed tickets' ids, 50 a call), and
a resolved ticket is announced once."""

from __future__ import annotations

import json

from tests.conftest import eventually, submission
from tests.test_after_ticket import buttons, looked_at, notices, stays, updates
from tests.test_backend_rezolve import filled, rezolve_bot
from tests.test_ticket_flow import open_modal_with_command


async def test_the_card_follows_a_rezolve_ticket(tmp_path, slack, rezolve):
    slack_state, state = slack[0], rezolve[0]
    async with rezolve_bot(tmp_path, slack, rezolve, status_poll_seconds=0.2) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "New laptop")
        share = {"value": {"type": "checkboxes", "selected_options": [
            {"text": {"type": "mrkdwn", "text": "Share"}, "value": "share"}]}}
        r = await sender.interactive(submission(view, {**filled(), "share": share}))
        assert r.status_code == 200
        await running.bot.tickets.idle(5)
        card = next(c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == "C111")
        ts = card["response"]["ts"]
        assert buttons(card["args"]) == []  # no documented endpoint closes or comments
        ticket = next(iter(state.tickets.values()))
        await looked_at(running.bot.storage, "rezolve", ticket["object_id"])
        assert not updates(slack_state, ts)  # open, nobody assigned: as the card was posted

        ticket.update(status_type="In Progress", status_category="In Progress Category")  # an agent works on it
        await eventually(lambda: "*Status:* In Progress" in json.dumps(updates(slack_state, ts)[-1:]), timeout=10)
        ticket.update(status_type="Resolved", status_category="Done Category")
        notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
        assert notice["args"]["thread_ts"] == ts and ticket["object_id"] in notice["args"]["text"]
        await stays(lambda: len(notices(slack_state)) == 1, 1.0)
        lists = [r["body"] for r in state.requests if r["path"].startswith("/api/v2/ticketing/ticket/list")
                 and (r.get("body") or {}).get("filter")]
        assert lists and lists[-1]["filter"]["operand"][0] == {
            "id": "followed", "column": "object_id", "op": "IN", "operand": [ticket["object_id"]]}


def test_statuses_and_their_groups():
    from clients.rezolve.backend import row_state

    assert row_state({"status_type": "Open", "status_category": "To-do Category"}).phase == "open"
    assert row_state({"status_type": "Pending", "status_category": "In Progress Category"}).phase == "open"
    assert row_state({"status_type": "Resolved", "status_category": "Done Category"}).phase == "done"
    assert row_state({"status_type": "Cancelled", "status_category": "Done Category"}).phase == "canceled"
