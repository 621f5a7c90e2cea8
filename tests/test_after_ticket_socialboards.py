"""After the ticket with Socialboards (docs/after-the-ticket.md#socialboards): its webhook on a secret
path (a wrong one is refused and nothing is stored; each event is applied once), and polling
`POST /tickets/list` (at most 50 ids a call) as the fallback."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from bot.journal.storage import Followed
from tests.conftest import eventually, submission
from tests.test_after_ticket import buttons, notices, stays, updates
from tests.test_backend_socialboards import filled, socialboards_bot
from tests.test_ticket_flow import open_modal_with_command

SECRET = "sb-hook-4f0c2a9e7d1b"
POLL = 0.2


def webhook(ticket: dict[str, Any], status: str, previous: str = "open") -> dict[str, Any]:
    """What Socialboards posts (../shared/backends/README.md): one event of a ticket_status_change."""
    return {"CommunityName": "acme", "EventType": "ticket_status_change", "TicketId": ticket["id"],
            "Events": [{"InboxLink": f"https://inbox.socialboards.com/acme/tickets?ticketId={ticket['id']}",
                        "PreviousTicketStatus": previous, "Ticket": {**ticket, "status": status}}]}


async def shared_ticket(running, sender, slack_state, sb_state) -> tuple[dict[str, Any], dict[str, Any]]:
    view = await open_modal_with_command(sender, slack_state, "Checkout broken")
    r = await sender.interactive(submission(view, {**filled(), "share": {"value": {
        "type": "checkboxes", "selected_options": [{"text": {"type": "mrkdwn", "text": "Share"}, "value": "share"}]}}}))
    assert r.status_code == 200
    await running.bot.tickets.idle(5)
    card = next(c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == "C111")
    return card, next(iter(sb_state.tickets.values()))


async def test_the_webhook_moves_the_card_once_and_a_wrong_secret_is_refused(tmp_path, slack, socialboards):
    slack_state, sb_state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards, status_poll_seconds=3600,
                                socialboards_webhook_secret=SECRET) as (running, sender):
        card, ticket = await shared_ticket(running, sender, slack_state, sb_state)
        ts = card["response"]["ts"]
        assert buttons(card["args"]) == []  # Socialboards cannot close a ticket or take a note from Slack
        assert "tickets?ticketId=" in card["args"]["text"]  # the inbox link
        storage = running.bot.storage
        async with httpx.AsyncClient() as http:
            wrong = await http.post(f"{running.url}/webhooks/socialboards/not-the-secret", json=webhook(ticket, "completed"))
            assert wrong.status_code == 401
            assert (await storage.followed("socialboards", str(ticket["id"]))).pushed is None  # nothing stored

            body = json.dumps(webhook(ticket, "completed"))
            ok = await http.post(f"{running.url}/webhooks/socialboards/{SECRET}", content=body,
                                 headers={"Content-Type": "application/json"})
            assert ok.status_code == 200 and ok.json() == {"ok": True, "tickets": 1}
            notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
            assert notice["args"]["thread_ts"] == ts and buttons(notice["args"]) == []
            line = json.dumps(updates(slack_state, ts)[-1]["args"]["blocks"])
            assert "*Status:* Completed" in line

            again = await http.post(f"{running.url}/webhooks/socialboards/{SECRET}", content=body,
                                    headers={"Content-Type": "application/json"})  # a redelivery
            assert again.status_code == 200 and again.json()["tickets"] == 0
            bad = await http.post(f"{running.url}/webhooks/socialboards/{SECRET}", content=b"[1, 2",
                                  headers={"Content-Type": "application/json"})
            assert bad.status_code == 400
        await stays(lambda: len(notices(slack_state)) == 1 and len(updates(slack_state, ts)) == 1, 1.0)
        # no call to Socialboards was needed to learn it
        assert [r for r in sb_state.requests if r["path"] == "/tickets/list"] == []


async def test_polling_asks_at_most_50_tickets_a_call(tmp_path, slack, socialboards):
    slack_state, sb_state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards, status_poll_seconds=POLL) as (running, sender):
        card, ticket = await shared_ticket(running, sender, slack_state, sb_state)
        ts = card["response"]["ts"]
        now = time.time()
        for i in range(120):  # more followed tickets of the same inbox
            tid = sb_state.next_ticket_id
            sb_state.next_ticket_id += 1
            sb_state.tickets[tid] = {**ticket, "id": tid, "title": f"Other {i}"}
            await running.bot.storage.follow(Followed(
                "socialboards", str(tid), {"id": str(tid), "display_id": str(tid), "backend": "socialboards"},
                f"Other {i}", requester_id="U222", changed_at=now, created_at=now, next_poll_at=now,
            ))
        sb_state.tickets[ticket["id"]]["status"] = "completed"  # done in the inbox, no webhook
        await eventually(lambda: notices(slack_state), timeout=10)
        assert "*Status:* Completed" in json.dumps(updates(slack_state, ts)[-1]["args"]["blocks"])
        lists = [r["body"] for r in sb_state.requests if r["path"] == "/tickets/list"]
        assert lists and all(1 <= len(b["ticketIds"]) <= 50 for b in lists)
        assert max(len(b["ticketIds"]) for b in lists) == 50  # 121 tickets: full calls, not one each


async def test_the_sandbox_sends_its_webhook_and_the_card_follows(tmp_path, slack, socialboards):
    """The Socialboards stand-in posts ticket_status_change itself when an agent changes a status."""
    slack_state, sb_state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards, status_poll_seconds=3600,
                                socialboards_webhook_secret=SECRET) as (running, sender):
        card, ticket = await shared_ticket(running, sender, slack_state, sb_state)
        ts = card["response"]["ts"]
        sb_state.webhook_url = f"{running.url}/webhooks/socialboards/{SECRET}"
        async with httpx.AsyncClient(base_url=socialboards[1]) as http:
            r = await http.post(f"/_sandbox/tickets/{ticket['id']}/status", json={"status": "pending"})
            assert r.status_code == 200 and r.json()["webhook"]["status"] == 200
            await eventually(lambda: "*Status:* Pending" in json.dumps(updates(slack_state, ts)[-1:]), timeout=10)
            assert notices(slack_state) == []
            r = await http.post(f"/_sandbox/tickets/{ticket['id']}/status", json={"status": "completed"})
            assert r.json()["webhook"]["status"] == 200
            await eventually(lambda: notices(slack_state), timeout=10)
        assert [r for r in sb_state.requests if r["path"] == "/tickets/list"] == []  # all from the webhook


async def test_a_webhooks_change_waits_out_a_slack_429(tmp_path, slack, socialboards):
    slack_state, sb_state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards, status_poll_seconds=3600,
                                socialboards_webhook_secret=SECRET) as (running, sender):
        card, ticket = await shared_ticket(running, sender, slack_state, sb_state)
        ts = card["response"]["ts"]
        slack_state.rate_limit("chat.update", times=1, retry_after=1)
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{running.url}/webhooks/socialboards/{SECRET}", json=webhook(ticket, "pending"))
            assert r.status_code == 200
        await eventually(lambda: "*Status:* Pending" in json.dumps(updates(slack_state, ts)[-1:]), timeout=10)
        assert [c for c in slack_state.calls_to("chat.update") if c.get("error")]  # the 429 first

        async def applied():
            return (await running.bot.storage.followed("socialboards", str(ticket["id"]))).pushed is None

        await eventually(applied)
        assert [r for r in sb_state.requests if r["path"] == "/tickets/list"] == []  # no poll needed
