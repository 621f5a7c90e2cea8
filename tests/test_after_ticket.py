"""After the ticket (docs/after-the-ticket.md), end to end with Serval: the bot's reply is a live card
edited when the ticket changes in Serval, one notice when it is resolved (never again after a
restart or on a second poller), *Close ticket* / *Reopen* / *Add a comment* from Slack, a deleted
card, and the poll budget. Changes are made through the Serval sandbox's own API, as an agent would."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends import make_backends
from bot.core import slack_client
from bot.follow.poller import Follower
from bot.journal.storage import Followed, Storage
from bot.settings import Settings
from clients.base import CreatedTicket
from bot.slack.people import People
from server.http import serve_http
from tests.conftest import SERVAL_TOKEN, SlackSender, eventually, make_settings, payload, submission, text_value
from tests.test_ticket_flow import filled, open_modal_with_command

POLL = 0.2  # STATUS_POLL_SECONDS in these tests: a new ticket is first looked at after this


@pytest.fixture
def settings(tmp_path: Path, slack, serval) -> Settings:
    return make_settings(tmp_path, slack[1], serval[1], status_poll_seconds=POLL)


async def agent_changes(serval_url: str, ticket_id: str, **changes: Any) -> None:
    """What a Serval agent does in Serval: PUT /v2/tickets/{id}."""
    async with httpx.AsyncClient() as http:
        r = await http.put(f"{serval_url}/v2/tickets/{ticket_id}", json=changes,
                           headers={"Authorization": f"Bearer {SERVAL_TOKEN}"})
        assert r.status_code == 200, r.text


async def shared_ticket(sender, slack_state, serval_state, running) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ticket filed with /ticket and shared in #dev: (the card as posted, the Serval ticket)."""
    view = await open_modal_with_command(sender, slack_state, "Printer on floor 3 is jammed")
    r = await sender.interactive(submission(view, filled(share=True)))
    assert r.status_code == 200
    await running.bot.tickets.idle(5)
    posted = [c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == "C111"]
    assert len(posted) == 1
    return posted[0], next(iter(serval_state.tickets.values()))


def updates(slack_state: Any, ts: str) -> list[dict[str, Any]]:
    return [c for c in slack_state.calls_to("chat.update") if c["args"].get("ts") == ts and not c.get("error")]


def buttons(message: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


def notices(slack_state: Any) -> list[dict[str, Any]]:
    return [c for c in slack_state.calls_to("chat.postMessage")
            if "was resolved" in (c["args"].get("text") or "") or "was cancelled" in (c["args"].get("text") or "")]


def click(action_id: str, value: str, user: str, trigger: str = "") -> dict[str, Any]:
    body = payload("block_actions.bolt-tests.button.json")
    body["user"]["id"] = user
    body["trigger_id"] = trigger or f"{time.time_ns()}.{user}.card"
    body["container"] = {"type": "message", "message_ts": "1.1", "channel_id": "C111", "is_ephemeral": False}
    body["channel"] = {"id": "C111", "name": "dev"}
    body["actions"] = [{**body["actions"][0], "action_id": action_id, "block_id": "ticket_actions", "value": value}]
    return body


async def looked_at(storage: Any, backend: str, ticket_id: str) -> None:
    """Wait until the poller has looked at the ticket once."""
    async def seen():
        return (await storage.followed(backend, ticket_id)).seen

    await eventually(seen, timeout=10)


async def stays(check, seconds: float = 1.0) -> None:
    """`check()` holds for `seconds` (a fixed look at something that must not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        await asyncio.sleep(0.05)


async def test_the_card_follows_the_ticket_and_its_resolution_is_announced_once(sender, slack, serval, running, settings):
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    ts = card["response"]["ts"]
    assert ticket["friendlyIdentifier"] in card["args"]["text"]
    assert buttons(card["args"]) == ["ticket_close", "ticket_comment"]
    assert "*Status:* Open" in json.dumps(card["args"]["blocks"])

    await looked_at(running.bot.storage, "serval", ticket["id"])
    await stays(lambda: not updates(slack_state, ts), 3 * POLL)  # as posted: nothing to edit
    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress", assignedToUserId="usr-bob",
                        priorityId="pri-it-high")
    await eventually(lambda: len(updates(slack_state, ts)) == 1, timeout=10)
    await stays(lambda: len(updates(slack_state, ts)) == 1, 5 * POLL)  # one change, one edit
    line = json.dumps(updates(slack_state, ts)[-1]["args"]["blocks"])
    assert "*Status:* In Progress" in line and "*Assignee:* Bob Baker" in line and "*Priority:* High" in line
    assert slack_state.find_message("C111", ts)["text"].count("In Progress") == 1  # the same message, edited

    await agent_changes(serval[1], ticket["id"], statusId="st-it-done")
    notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
    assert notice["args"]["channel"] == "C111" and notice["args"]["thread_ts"] == ts
    assert f"Ticket *{ticket['friendlyIdentifier']}* was resolved by Bob Baker" in notice["args"]["text"]
    assert buttons(notice["args"]) == ["ticket_reopen"]
    await eventually(lambda: buttons(updates(slack_state, ts)[-1]["args"]) == ["ticket_reopen", "ticket_comment"])
    await stays(lambda: len(notices(slack_state)) == 1, 5 * POLL)

    # a restart: the new process looks at the ticket again and says nothing more
    await running.close()
    gets = len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}"))
    again = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        follower = again.bot.follower
        await again.bot.storage.poll_later("serval", ticket["id"], 0)
        await eventually(lambda: len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}")) > gets + 1,
                         timeout=10)
        assert follower is not None and follower.holds_lease
        assert len(notices(slack_state)) == 1
    finally:
        await again.close()


async def test_the_demo_agent_panel_changes_the_card(sender, slack, serval, running):
    """The Serval sandbox's agent panel (`make demo`): an agent assigns, then unassigns, by friendly id."""
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    ts = card["response"]["ts"]
    await looked_at(running.bot.storage, "serval", ticket["id"])
    async with httpx.AsyncClient(base_url=serval[1]) as http:
        r = await http.post(f"/_sandbox/agent/tickets/{ticket['friendlyIdentifier']}",
                            json={"assignedToUserId": "usr-alice", "priorityId": "pri-it-urgent"})
        assert r.status_code == 200, r.text
        await eventually(lambda: "*Assignee:* Alice Anderson · *Priority:* Urgent"
                         in json.dumps(updates(slack_state, ts)[-1:], ensure_ascii=False), timeout=10)
        r = await http.post(f"/_sandbox/agent/tickets/{ticket['friendlyIdentifier']}", json={"assignedToUserId": ""})
        assert r.status_code == 200, r.text
        await eventually(lambda: "*Assignee:* nobody yet" in json.dumps(updates(slack_state, ts)[-1:]), timeout=10)
    assert len(updates(slack_state, ts)) == 2


async def test_close_reopen_and_comment_from_the_card(sender, slack, serval, running):
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    ts = card["response"]["ts"]
    value = next(e["value"] for b in card["args"]["blocks"] if b["type"] == "actions" for e in b["elements"]
                 if e["action_id"] == "ticket_close")

    # someone else may not close it
    r = await sender.interactive(click("ticket_close", value, "U222"))
    assert r.status_code == 200
    refused = await eventually(lambda: [e for e in slack_state.ephemeral if e["user"] == "U222"])
    assert "Only the person" in refused[0]["text"] or "only the person" in refused[0]["text"]
    assert serval_state.requests_to("PUT", f"/v2/tickets/{ticket['id']}") == []

    r = await sender.interactive(click("ticket_close", value, "U111"))
    assert r.status_code == 200
    put = (await eventually(lambda: serval_state.requests_to("PUT", f"/v2/tickets/{ticket['id']}")))[0]
    assert put["body"] == {"statusId": "st-it-done"}  # the team's first status of the DONE group
    notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
    assert "was resolved by <@U111>" in notice["args"]["text"]
    await eventually(lambda: updates(slack_state, ts) and buttons(updates(slack_state, ts)[-1]["args"])[0] == "ticket_reopen")

    reopen = next(e["value"] for b in notice["args"]["blocks"] if b["type"] == "actions" for e in b["elements"])
    r = await sender.interactive(click("ticket_reopen", reopen, "U111"))
    assert r.status_code == 200
    puts = await eventually(lambda: (p := serval_state.requests_to("PUT", f"/v2/tickets/{ticket['id']}"))[1:] and p)
    assert puts[1]["body"] == {"statusId": "st-it-open"}  # the first status of the TODO group
    await eventually(lambda: buttons(updates(slack_state, ts)[-1]["args"])[0] == "ticket_close")

    # Add a comment: the button opens a small form; its text goes to Serval as the person's message
    comment_value = next(e["value"] for b in card["args"]["blocks"] if b["type"] == "actions" for e in b["elements"]
                         if e["action_id"] == "ticket_comment")
    trigger = f"{time.time_ns()}.U111.comment"
    r = await sender.interactive(click("ticket_comment", comment_value, "U111", trigger))
    assert r.status_code == 200
    opened = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
    form = opened[0]["args"]["view"]
    assert form["callback_id"] == "ticket_comment_modal"
    r = await sender.interactive(submission(form, {"comment": text_value("")}, view_id=opened[0]["response"]["view"]["id"]))
    assert r.json()["response_action"] == "errors"
    r = await sender.interactive(submission(form, {"comment": text_value("It jammed again at noon.")},
                                            view_id=opened[0]["response"]["view"]["id"]))
    assert r.json()["response_action"] == "update"
    sent = await eventually(lambda: serval_state.requests_to("POST", f"/v2/tickets/{ticket['id']}/messages"))
    assert sent[0]["body"] == {"message": "It jammed again at noon.", "authorUserId": "usr-alice",
                               "triggerHelpAgent": False}
    done = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                     if "was added to" in json.dumps(c["args"].get("view"))])
    assert ticket["friendlyIdentifier"] in json.dumps(done[0]["args"]["view"])
    # someone else's comment is refused, and says so in the form
    r = await sender.interactive(submission(form, {"comment": text_value("Me too")}, user_id="U222", view_id="VU222"))
    assert r.json()["response_action"] == "update"
    await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                              if c["args"].get("view_id") == "VU222" and "only the person" in json.dumps(c["args"]["view"])])
    assert len(serval_state.requests_to("POST", f"/v2/tickets/{ticket['id']}/messages")) == 1


async def test_a_deleted_card_is_no_longer_edited(sender, slack, serval, running):
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    ts = card["response"]["ts"]
    slack_state.messages["C111"] = [m for m in slack_state.messages["C111"] if m["ts"] != ts]  # deleted in Slack
    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress")
    failed = await eventually(lambda: [c for c in slack_state.calls_to("chat.update") if c.get("error")], timeout=10)
    assert failed[0]["error"] == "message_not_found"
    await agent_changes(serval[1], ticket["id"], priorityId="pri-it-urgent")
    async def dead():
        return (await running.bot.storage.followed("serval", ticket["id"])).card_dead

    await eventually(dead, timeout=10)
    looked = len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}"))
    await eventually(lambda: len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}")) > looked + 2, timeout=10)
    assert len(slack_state.calls_to("chat.update")) == 1  # tried once, never again


async def test_a_429_from_slack_waits_and_the_change_is_shown_once(sender, slack, serval, running):
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    ts = card["response"]["ts"]
    await looked_at(running.bot.storage, "serval", ticket["id"])
    slack_state.rate_limit("chat.update", times=1, retry_after=1)
    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress")
    await eventually(lambda: len(updates(slack_state, ts)) == 1, timeout=10)
    assert [c for c in slack_state.calls_to("chat.update") if c.get("error")]  # the 429, then the edit
    assert "In Progress" in json.dumps(updates(slack_state, ts)[-1]["args"]["blocks"])


async def test_the_home_tab_shows_the_status_last_seen_and_is_republished_when_it_changes(sender, slack, serval, running):
    from tests.test_people_and_channels import send_home_opened

    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    await looked_at(running.bot.storage, "serval", ticket["id"])
    await running.bot.storage.poll_later("serval", ticket["id"], time.time() + 3600)  # the poller leaves it be
    gets = len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}"))
    await send_home_opened(sender, "U111")
    first = await slack_state.wait_for("views.publish")
    assert "Status: Open" in json.dumps(first[0]["args"]["view"])
    # the Home tab took the status from what the poller saw, without asking Serval again
    assert len(serval_state.requests_to("GET", f"/v2/tickets/{ticket['id']}")) == gets

    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress")
    await running.bot.storage.poll_later("serval", ticket["id"], 0)
    published = await eventually(lambda: [c for c in slack_state.calls_to("views.publish")
                                          if "Status: In Progress" in json.dumps(c["args"]["view"])], timeout=10)
    assert published[0]["args"]["user_id"] == "U111"  # nobody had to open Home again


async def test_a_429_from_serval_pauses_polling_for_its_retry_after(sender, slack, serval, running):
    slack_state, serval_state = slack[0], serval[0]
    card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
    path = f"/v2/tickets/{ticket['id']}"
    await looked_at(running.bot.storage, "serval", ticket["id"])
    serval_state.set_faults({"GET /v2/tickets/{id}": {"next_n": ["429"], "retry_after": 2}})
    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress")
    await eventually(lambda: not serval_state.faults["GET /v2/tickets/{id}"].next_n, timeout=10)  # the 429 went out
    limited, limited_at = len(serval_state.requests_to("GET", path)), time.monotonic()
    await stays(lambda: len(serval_state.requests_to("GET", path)) == limited, 1.5)  # 2 s, not every 0.2 s
    await eventually(lambda: updates(slack_state, card["response"]["ts"]), timeout=10)  # then it carries on
    assert time.monotonic() - limited_at >= 1.9
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{running.url}/metrics")).text
    assert 'ticketbot_status_poll_calls_total{backend="serval",outcome="rate_limited"}' in text
    assert 'ticketbot_status_poll_calls_total{backend="serval",outcome="ok"}' in text
    assert "ticketbot_tickets_followed 1.0" in text


# --- two pollers on one database, and the budget ----------------------------------------------------


async def followers(db_url: str, slack_url: str, serval_url: str, tmp_path: Path, n: int, **overrides: Any):
    settings = make_settings(tmp_path, slack_url, serval_url, database_url=db_url, **overrides)
    out = []
    for i in range(n):
        storage = await Storage(db_url).open()
        backends = make_backends(settings)
        slack = slack_client(settings, wait_on_rate_limit=False)
        out.append(Follower(storage, backends, slack, People(slack, storage), owner=f"replica-{i}",
                            poll_seconds=settings.status_poll_seconds,
                            max_per_minute=settings.status_poll_max_per_minute, notices=settings.status_notices))
    return out


async def close_all(fs: list[Follower]) -> None:
    for f in fs:
        await f.close()
        for b in f.backends.values():
            await b.aclose()
        await f.storage.close()


def serval_ticket(serval_state: Any, title: str) -> dict[str, Any]:
    return serval_state.create_ticket({"teamId": "team-it", "name": title, "createdByUserId": "usr-alice"})


async def test_two_pollers_one_lease_one_notice(db_url, slack, serval, tmp_path):
    slack_state, serval_state = slack[0], serval[0]
    ticket = serval_ticket(serval_state, "Laptop will not boot")
    fs = await followers(db_url, slack[1], serval[1], tmp_path, 2, status_poll_seconds=0.1)
    try:
        now = time.time()
        await fs[0].storage.follow(Followed(
            "serval", ticket["id"], {"id": ticket["id"], "display_id": ticket["friendlyIdentifier"], "backend": "serval",
                                     "extra": {"teamId": "team-it"}},
            "Laptop will not boot", requester_id="U111", submitter_id="U111", changed_at=now, created_at=now,
        ))
        ticks = await asyncio.gather(*(f.tick() for f in fs))
        assert sorted(ticks) == [0, 1] and sum(f.holds_lease for f in fs) == 1  # one poller
        serval_state.update_ticket(ticket["id"], {"statusId": "st-it-done"})
        # both look at once (as after a lease handed over mid-look): the closure is announced once
        await asyncio.gather(fs[0].look(await fs[0].storage.followed("serval", ticket["id"])),
                             fs[1].look(await fs[1].storage.followed("serval", ticket["id"])))
        dms = [c for c in slack_state.calls_to("chat.postMessage") if "was resolved" in c["args"].get("text", "")]
        assert len(dms) == 1 and dms[0]["args"]["channel"] == "U111"  # no thread: a DM

        # reopened, then closed again by a process that dies right after claiming its notice: the next
        # look (another process, or this one restarted) sends none rather than a second one
        serval_state.update_ticket(ticket["id"], {"statusId": "st-it-open"})
        await fs[0].look(await fs[0].storage.followed("serval", ticket["id"]))
        serval_state.update_ticket(ticket["id"], {"statusId": "st-it-done"})
        before = await fs[0].storage.followed("serval", ticket["id"])
        closed = await fs[0].backends["serval"].ticket_state(
            CreatedTicket(id=ticket["id"], display_id=ticket["friendlyIdentifier"], backend="serval"))
        assert await fs[0].storage.claim_closure("serval", ticket["id"], before.closures, dataclasses.asdict(closed))
        await fs[1].look(await fs[1].storage.followed("serval", ticket["id"]))
        assert len([c for c in slack_state.calls_to("chat.postMessage") if "was resolved" in c["args"].get("text", "")]) == 1
        # the holder stops: the other takes the lease over at once
        holder = next(f for f in fs if f.holds_lease)
        other = next(f for f in fs if f is not holder)
        await holder.close()
        await other.storage.poll_later("serval", ticket["id"], 0)
        assert await other.tick() == 1 and other.holds_lease
        assert len([c for c in slack_state.calls_to("chat.postMessage") if "was resolved" in c["args"].get("text", "")]) == 1
    finally:
        await close_all(fs)


@pytest.mark.parametrize("setting, where", [("thread", "thread"), ("dm", "dm"), ("off", None)])
async def test_status_notices_setting(setting, where, tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    root = slack_state.post_user_message("C111", "U111", "My laptop will not boot")
    ticket = serval_ticket(serval_state, "Laptop will not boot")
    fs = await followers(f"sqlite:///{tmp_path}/bot.db", slack[1], serval[1], tmp_path, 1, status_notices=setting)
    try:
        now = time.time()
        await fs[0].storage.follow(Followed(
            "serval", ticket["id"], {"id": ticket["id"], "display_id": ticket["friendlyIdentifier"], "backend": "serval"},
            "Laptop will not boot", requester_id="U111", submitter_id="U222", channel_id="C111",
            thread_ts=root["ts"], changed_at=now, created_at=now,
        ))
        await fs[0].tick()
        serval_state.update_ticket(ticket["id"], {"statusId": "st-it-canceled"})
        await fs[0].look(await fs[0].storage.followed("serval", ticket["id"]))
        sent = [c["args"] for c in slack_state.calls_to("chat.postMessage") if "was cancelled" in c["args"].get("text", "")]
        if where is None:
            assert sent == []
        elif where == "thread":
            assert [(a["channel"], a.get("thread_ts")) for a in sent] == [("C111", root["ts"])]
        else:  # to the person the ticket is for
            assert [(a["channel"], a.get("thread_ts")) for a in sent] == [("U111", None)]
        assert (await fs[0].storage.followed("serval", ticket["id"])).seen["phase"] == "canceled"
    finally:
        await close_all(fs)


async def test_the_poll_budget_holds_with_500_open_tickets(tmp_path, slack, serval):
    serval_state = serval[0]
    fs = await followers(f"sqlite:///{tmp_path}/bot.db", slack[1], serval[1], tmp_path, 1,
                         status_poll_seconds=0.05, status_poll_max_per_minute=40)
    follower = fs[0]
    try:
        now = time.time()
        for i in range(500):
            t = serval_ticket(serval_state, f"Ticket {i}")
            await follower.storage.follow(Followed(
                "serval", t["id"], {"id": t["id"], "display_id": t["friendlyIdentifier"], "backend": "serval"},
                t["name"], requester_id="U111", changed_at=now, created_at=now,
            ))
        before = len(serval_state.requests)

        def looks() -> int:
            return len([r for r in serval_state.requests[before:]
                        if r["method"] == "GET" and r["path"].startswith("/v2/tickets/")])

        follower.start()
        await eventually(lambda: looks() == 40, timeout=10)  # the whole minute's budget at once...
        await stays(lambda: looks() == 40, 2.0)  # ...and no more for the next 40 rounds
    finally:
        await close_all(fs)


async def test_retention_forgets_tickets_no_longer_followed(storage):
    old = time.time() - 100 * 86400
    for ticket_id, stopped in (("t-old-stopped", True), ("t-old-followed", False)):
        await storage.follow(Followed("serval", ticket_id, {"id": ticket_id}, "T", changed_at=old, created_at=old))
        if stopped:
            await storage.stop_following("serval", ticket_id)
    assert (await storage.purge(90 * 86400))["followed"] == 1
    assert await storage.followed("serval", "t-old-stopped") is None
    assert await storage.followed("serval", "t-old-followed") is not None  # followed until TRACK_DAYS stops it


async def test_with_ticket_links_the_card_and_the_resolved_notice_link_the_ticket(tmp_path, slack, serval):
    """SERVAL_TICKET_URL set: the card names the ticket with its link (once, not twice), and so does
    the notice when it is resolved."""
    slack_state, serval_state = slack[0], serval[0]
    settings = make_settings(tmp_path, slack[1], serval[1], status_poll_seconds=POLL,
                             serval_ticket_url="https://serval.example/tickets/{id}")
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        card, ticket = await shared_ticket(sender, slack_state, serval_state, running)
        link = f"https://serval.example/tickets/{ticket['id']}"
        assert f"<{link}|{ticket['friendlyIdentifier']}>" in card["args"]["text"]
        assert card["args"]["text"].count(link) == 1
        await looked_at(running.bot.storage, "serval", ticket["id"])
        await agent_changes(serval[1], ticket["id"], statusId="st-it-done")
        notice = (await eventually(lambda: notices(slack_state), timeout=10))[0]
        assert f"Ticket <{link}|{ticket['friendlyIdentifier']}> was resolved" in notice["args"]["text"]
    finally:
        await sender.aclose()
        await running.close()
