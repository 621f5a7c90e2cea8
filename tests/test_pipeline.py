"""The failure rule of the submission pipeline: every step finishes, is retried from the journal, or
fails with a message to the person. Each test here reproduces a way a submission used to get stuck or
silent (issue 11) through the real HTTP endpoint, the fake Slack and the Serval sandbox."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from bot.journal.storage import Storage, Submission
from clients.base import BackendError, CreatedTicket, TicketBackend, TicketDraft
from sandbox.serval import Fault
from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings, submission
from tests.test_ticket_flow import created, filled, open_modal_with_command, open_modal_with_shortcut, shortcut

FAST_RETRIES = dict(retry_base_seconds=0.05, retry_max_seconds=0.2)


def told_created(slack_state: Any) -> list[str]:
    """The texts that told someone their ticket was created (ephemeral or DM)."""
    return [
        c["args"]["text"]
        for c in slack_state.calls
        if c["method"] in ("chat.postEphemeral", "chat.postMessage")
        and not c.get("error")
        and "was created" in c["args"].get("text", "")
    ]


async def start(tmp_path: Path, slack: Any, serval: Any, **overrides: Any):
    settings = make_settings(tmp_path, slack[1], serval[1], **{**FAST_RETRIES, **overrides})
    running = await serve_http(settings, host="127.0.0.1", port=0)
    return running, SlackSender(running.url)


async def file_ticket(sender: SlackSender, slack_state: Any, title: str, *, share: bool = False) -> None:
    view = await open_modal_with_command(sender, slack_state, title)
    r = await sender.interactive(submission(view, filled(title, share=share)))
    assert r.status_code == 200 and r.json()["response_action"] == "update", r.text


async def test_a_locked_database_is_waited_out_and_the_ticket_is_made_once(tmp_path, slack, serval):
    """The journal locked by another connection for 6 s (longer than the 5 s busy timeout) while a
    create is in flight: the submission resumes from the journal when its lease runs out."""
    slack_state, serval_state = slack[0], serval[0]
    serval_state.faults["POST /v2/tickets"] = Fault(latency=0.3)
    running, sender = await start(tmp_path, slack, serval, lease_seconds=2)
    try:
        await file_ticket(sender, slack_state, "Locked journal")
        await eventually(lambda: serval_state.in_flight["POST /v2/tickets"] > 0)
        lock = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(6)
        lock.execute("COMMIT")
        lock.close()
        texts = await eventually(lambda: told_created(slack_state), timeout=30)
        await running.bot.tickets.idle(10)
        assert len(created(serval_state)) == 1
        assert len(told_created(slack_state)) == 1
        assert "Locked journal" in texts[0]
    finally:
        await sender.aclose()
        await running.close()


@pytest.mark.parametrize("error", ["team_access_not_granted", "missing_scope", "user_not_found"])
async def test_an_unreadable_slack_profile_still_files_the_ticket(tmp_path, slack, serval, error):
    slack_state, serval_state = slack[0], serval[0]
    running, sender = await start(tmp_path, slack, serval)
    try:
        slack_state.fail("users.info", error, times=50)  # from the start: nothing is cached
        view = await open_modal_with_command(sender, slack_state, "Profile hidden")
        await sender.interactive(submission(view, filled("Profile hidden")))
        texts = await eventually(lambda: told_created(slack_state), timeout=10)
        assert "Profile hidden" in texts[0]
        body = created(serval_state)[0]
        assert "requesterUserId" not in body  # filed per UNMATCHED_REQUESTER=describe
        assert "an unknown Slack user" in body["description"]
    finally:
        await sender.aclose()
        await running.close()


async def test_the_ticket_id_is_told_at_once_and_a_later_failure_follows_up(tmp_path, slack, serval):
    """/connect answering 503: the person hears of the ticket right after it is created, not after
    the connect has worked; when the connect finally fails for good, a follow-up says so."""
    slack_state, serval_state = slack[0], serval[0]
    serval_state.faults["POST /v2/tickets/{ticket_id}/connect"] = Fault(error_rate=1.0, status=503)
    running, sender = await start(tmp_path, slack, serval)
    try:
        view = await open_modal_with_shortcut(sender, slack_state, shortcut())
        await sender.interactive(submission(view, filled("Thread sync broken")))
        texts = await eventually(lambda: told_created(slack_state), timeout=5)
        assert re.search(r"Your ticket \*\S+\* was created: Thread sync broken", texts[0])
        sub = (await running.bot.storage.pending_submissions())[0]
        assert "connect" not in sub.steps_done  # still retrying the connect
        serval_state.faults["POST /v2/tickets/{ticket_id}/connect"] = Fault(error_rate=1.0, status=400)

        def followup():
            return [c for c in slack_state.calls if "About your ticket" in c["args"].get("text", "")]

        notes = await eventually(followup, timeout=10)
        assert "could not be linked" in notes[0]["args"]["text"]
        await running.bot.tickets.idle(5)
        assert len(told_created(slack_state)) == 1
        assert len(followup()) == 1
    finally:
        await sender.aclose()
        await running.close()


async def test_a_rate_limited_channel_does_not_hold_up_other_tickets(tmp_path, slack, serval):
    """With one slot, a ticket whose channel post gets 429 (Retry-After: 4) waits in the journal
    instead of in its slot: an unrelated ticket filed after it is announced first."""
    slack_state, serval_state = slack[0], serval[0]
    running, sender = await start(tmp_path, slack, serval, max_tickets_in_flight=1)
    try:
        slack_state.rate_limit("chat.postMessage", retry_after=4, times=1)
        await file_ticket(sender, slack_state, "Busy channel", share=True)
        await slack_state.wait_for("chat.postMessage")  # the 429
        await file_ticket(sender, slack_state, "Unrelated")
        await eventually(lambda: any("Unrelated" in t for t in told_created(slack_state)), timeout=10)
        posted = [c for c in slack_state.calls_to("chat.postMessage") if not c.get("error")]
        assert posted == []  # the busy one is still waiting for its Retry-After
        await eventually(
            lambda: [c for c in slack_state.calls_to("chat.postMessage") if not c.get("error")], timeout=15
        )
        await running.bot.tickets.idle(10)
        assert sorted(t["name"] for t in serval_state.tickets.values()) == ["Busy channel", "Unrelated"]
    finally:
        await sender.aclose()
        await running.close()


@pytest.mark.parametrize("limited", ["slack", "serval"])
async def test_the_next_attempt_waits_for_retry_after(tmp_path, slack, serval, limited):
    """A 429's Retry-After (here 2 s, far longer than the 0.05-0.2 s the retries would otherwise wait)
    is the earliest the journal tries the step again: the API sees no attempt before it has passed.
    Slack's chat.postMessage (the channel post) and Serval's create both plan their retry that way."""
    slack_state, serval_state = slack[0], serval[0]
    wait = 2
    running, sender = await start(tmp_path, slack, serval)
    try:
        if limited == "slack":
            slack_state.rate_limit("chat.postMessage", retry_after=wait, times=1)
            await file_ticket(sender, slack_state, "Busy channel", share=True)
            attempts = await slack_state.wait_for("chat.postMessage", count=2, timeout=15)
        else:
            serval_state.faults["POST /v2/tickets"] = Fault(next_n=["429"], retry_after=wait)
            await file_ticket(sender, slack_state, "Busy Serval")
            await eventually(lambda: len(created(serval_state)) == 2, timeout=15)
            attempts = [r for r in serval_state.requests if (r["method"], r["path"]) == ("POST", "/v2/tickets")]
        assert len(attempts) == 2 and attempts[1]["at"] - attempts[0]["at"] >= wait, attempts
        await running.bot.tickets.idle(10)
        assert len(serval_state.tickets) == 1
    finally:
        await sender.aclose()
        await running.close()


async def test_a_long_backlog_is_worked_in_bounded_batches(tmp_path, slack, serval):
    """300 unfinished submissions in the journal at start-up: never more than MAX_TICKETS_IN_FLIGHT
    are held in memory at once, and every one becomes exactly one ticket."""
    slack_state, serval_state = slack[0], serval[0]
    settings = make_settings(tmp_path, slack[1], serval[1], max_tickets_in_flight=4, **FAST_RETRIES)
    storage = await Storage(settings.database_path).open()
    for i in range(300):
        payload = {
            "origin": {"source": "command", "channel_id": "C111", "channel_name": "dev"},
            "user_id": "U111", "requester_id": "U111", "view_id": None,
            "title": f"Backlog {i}", "description": "", "values": {}, "share": False,
        }
        await storage.add_submission(Submission.new(f"backlog-{i}", payload, None))
    await storage.close()
    peak = 0
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        deadline = time.monotonic() + 60
        while len(serval_state.tickets) < 300 and time.monotonic() < deadline:
            held = [t for t in asyncio.all_tasks() if t.get_name().startswith("submission-")]
            peak = max(peak, len(held))
            await asyncio.sleep(0.005)
        await running.bot.tickets.idle(10)
    finally:
        await running.close()
    assert sorted(t["name"] for t in serval_state.tickets.values()) == sorted(f"Backlog {i}" for i in range(300))
    assert 1 <= peak <= 4
    assert serval_state.peak_in_flight["POST /v2/tickets"] <= 4


async def test_a_payload_journaled_by_a_newer_replica_is_carried_to_the_end(tmp_path, slack, serval):
    """Rolling deploys: a newer version journals keys this one does not know (in the payload, its
    origin, and a ticket it created before it stopped); this one finishes the work and keeps them."""
    slack_state, serval_state = slack[0], serval[0]
    settings = make_settings(tmp_path, slack[1], serval[1], **FAST_RETRIES)
    storage = await Storage(settings.database_path).open()
    base = {"user_id": "U111", "requester_id": "U111", "view_id": None, "description": "", "values": {},
            "share": False, "from_a_newer_version": {"x": 1}}
    fresh, _ = await storage.add_submission(Submission.new("newer-1", {
        **base, "title": "From the future",
        "origin": {"source": "command", "channel_id": "C111", "channel_name": "dev", "workspace_id": "T9"},
    }, None))
    half, _ = await storage.add_submission(Submission.new("newer-2", {
        **base, "title": "Half done by a newer one",
        "origin": {"source": "command", "channel_id": "C111", "channel_name": "dev", "workspace_id": "T9"},
    }, None))
    half.ticket = {"id": "t-77", "display_id": "IT-77", "backend": "serval", "url": "https://example.invalid/77"}
    half.steps_done = {"create"}
    await storage.save_submission(half)
    await storage.close()
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        await running.bot.tickets.idle(15)
        assert await running.bot.storage.counts() == {"done": 2}
        assert [t["name"] for t in serval_state.tickets.values()] == ["From the future"]
        texts = told_created(slack_state)
        assert len(texts) == 2 and any("IT-77" in t for t in texts)
        kept = await running.bot.storage.get_submission(fresh.id)
        assert kept.payload["origin"]["workspace_id"] == "T9" and kept.payload["from_a_newer_version"] == {"x": 1}
    finally:
        await running.close()


async def test_a_late_queued_screen_never_stays_over_the_outcome(tmp_path, slack, serval):
    """The "queued" screen is sent, but reaches Slack only after the "created" screen (another
    replica created the ticket meanwhile, or the network held it): the form still ends showing the
    ticket, not "queued"."""
    slack_state, serval_state = slack[0], serval[0]
    serval_state.faults["POST /v2/tickets"] = Fault(latency=0.6)
    running, sender = await start(tmp_path, slack, serval, queued_after_seconds=0.2)
    try:
        view = await open_modal_with_command(sender, slack_state, "")
        view_id = slack_state.calls_to("views.open")[-1]["response"]["view"]["id"]
        slack_state.delay("views.update", 1.5, times=1)  # the first update: the "queued" screen
        await sender.interactive(submission(view, filled("Slow to land"), view_id=view_id))
        await eventually(lambda: told_created(slack_state), timeout=10)
        await eventually(lambda: len(slack_state.calls_to("views.update")) >= 2, timeout=10)
        await running.bot.tickets.idle(5)
        await asyncio.sleep(0.3)  # anything still on its way to the form
        shown = json.dumps(slack_state.views[view_id])
        assert "Slow to land" in shown and "created" in shown and "queued" not in shown.lower(), shown
    finally:
        await sender.aclose()
        await running.close()


async def test_what_the_service_decided_survives_a_restart(tmp_path):
    """`gave_up` and `field_errors` live in the payload: a restart must not forget them."""
    storage = await Storage(str(tmp_path / "bot.db")).open()
    sub, _ = await storage.add_submission(Submission.new("k", {"user_id": "U1", "title": "T"}, None))
    sub.payload["field_errors"] = {"title": "too long"}
    sub.payload["gave_up"] = "Serval did not answer"
    await storage.save_submission(sub)
    await storage.close()
    storage = await Storage(str(tmp_path / "bot.db")).open()
    again = await storage.get_submission(sub.id)
    await storage.close()
    assert again.payload["field_errors"] == {"title": "too long"}
    assert again.payload["gave_up"] == "Serval did not answer"


class Flaky(TicketBackend):
    """A ticket system whose client raises what no one planned for (a bug, a library surprise)."""

    name = "serval"
    display_name = "Flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.tickets: list[str] = []

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        self.calls += 1
        if self.calls <= self.failures:
            raise KeyError("data")
        self.tickets.append(draft.title)
        return CreatedTicket(id="t1", display_id="FL-1", backend=self.name)


async def test_an_unexpected_error_is_retried_like_a_passing_one(tmp_path, slack, serval):
    from bot.core import Bot

    slack_state = slack[0]
    flaky = Flaky(failures=3)
    settings = make_settings(tmp_path, slack[1], serval[1], **FAST_RETRIES)
    running = await serve_http(settings, host="127.0.0.1", port=0, bot=await Bot.open(settings, backends={"serval": flaky}))
    sender = SlackSender(running.url)
    try:
        await file_ticket(sender, slack_state, "Surprise")
        texts = await eventually(lambda: told_created(slack_state), timeout=10)
        assert "FL-1" in texts[0]
        assert flaky.calls == 4 and flaky.tickets == ["Surprise"]
    finally:
        await sender.aclose()
        await running.close()


async def test_an_error_that_never_heals_ends_with_a_message_and_what_was_typed(tmp_path, slack, serval):
    from bot.core import Bot

    slack_state = slack[0]
    flaky = Flaky(failures=10**6)
    settings = make_settings(tmp_path, slack[1], serval[1], give_up_after_seconds=1.0, **FAST_RETRIES)
    running = await serve_http(settings, host="127.0.0.1", port=0, bot=await Bot.open(settings, backends={"serval": flaky}))
    sender = SlackSender(running.url)
    try:
        await file_ticket(sender, slack_state, "Never works")

        def failed():
            return [c for c in slack_state.calls_to("chat.postEphemeral") if "could not be created" in c["args"]["text"]]

        notes = await eventually(failed, timeout=10)
        assert "Never works" in notes[0]["args"]["text"]  # what the person typed comes back
        assert "It blinks red." in notes[0]["args"]["text"]
        await running.bot.tickets.idle(5)
        assert (await running.bot.storage.backlog())[0] == 0
        # the thread and the dedupe key are free: nothing stays reserved
        assert await running.bot.storage.counts() == {"failed": 1}
    finally:
        await sender.aclose()
        await running.close()


async def test_an_unmatched_requester_is_told_serval_will_not_dm_them(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    slack_state.add_user("U999", email="nobody@elsewhere.example", name="Nobody Known")
    running, sender = await start(tmp_path, slack, serval)
    try:
        view = await open_modal_with_command(sender, slack_state, "Who am I", user_id="U999")
        await sender.interactive(submission(view, filled("Who am I"), user_id="U999"))
        texts = await eventually(lambda: told_created(slack_state), timeout=10)
        assert "will not send direct messages" in texts[0]
        body = created(serval_state)[0]
        assert "requesterUserId" not in body and not body.get("channelSyncTargets")
    finally:
        await sender.aclose()
        await running.close()


async def test_finished_submissions_go_after_the_retention_period_and_links_stay(tmp_path, slack, serval):
    from bot.journal.storage import Link

    settings = make_settings(tmp_path, slack[1], serval[1], journal_retention_days=1)
    storage = await Storage(settings.database_url).open()
    old, _ = await storage.add_submission(Submission.new("old", {"user_id": "U1", "title": "Old"}, None))
    recent, _ = await storage.add_submission(Submission.new("recent", {"user_id": "U1", "title": "Recent"}, None))
    waiting, _ = await storage.add_submission(Submission.new("waiting", {"user_id": "U1", "title": "Waiting"}, None))
    for sub in (old, recent):
        sub.status = "done"
        await storage.save_submission(sub)
    await storage.add_link(Link("C111", "1.0001", "t-old", "IT-1", "serval"), old.id)
    await storage.close()
    # make "old" two days old, as the bot would find it after a long run
    with sqlite3.connect(tmp_path / "bot.db") as db:
        db.execute("UPDATE submissions SET updated_at = updated_at - 2 * 86400 WHERE id = ?", (old.id,))
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        async def purged():
            return await running.bot.storage.get_submission(old.id) is None

        await eventually(purged, timeout=5)
        assert await running.bot.storage.get_submission(recent.id) is not None
        assert await running.bot.storage.get_submission(waiting.id) is not None
        assert (await running.bot.storage.link_for_thread("C111", "1.0001")).display_id == "IT-1"
    finally:
        await running.close()


async def test_a_route_saved_by_another_replica_applies_here_within_two_seconds(tmp_path):
    from bot.routing import RouteEntry, Router

    storage = await Storage(f"sqlite:///{tmp_path}/bot.db").open()
    try:
        here = Router(storage, {}, default_backend="serval", default_share=False, backends={"serval"})
        there = Router(storage, {}, default_backend="serval", default_share=False, backends={"serval"})
        assert (await here.route("C111")).values.get("team_id") is None  # cached: nothing set
        await there.save("C111", RouteEntry(team="team-hr"), "U1")
        started = time.monotonic()

        async def applied():
            return (await here.route("C111")).values.get("team_id") == "team-hr"

        await eventually(applied, timeout=2.0)
        assert time.monotonic() - started < 2.0
    finally:
        await storage.close()
