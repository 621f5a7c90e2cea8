"""Tickets from conversations, the Slack side (issue 14): reactions, mentions, request channels and
direct messages, sent as Slack sends them (signed JSON event bodies from tests/payloads/, through
the real HTTP endpoint) to the running bot, against the fake Slack and the Serval sandbox.

What every test here holds to: an event is answered 200 at once; an event that becomes work is in
the journal when that 200 arrives; a redelivery (X-Slack-Retry-Num) is the same work; an event
that triggers nothing writes nothing; nothing from a bot or the app itself triggers anything."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest

from bot.routing import RouteEntry
from tests.conftest import SlackSender, eventually, make_settings, payload, submission, text_value
from tests.test_ticket_flow import block, connects, created

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)


@pytest.fixture
def settings(tmp_path, slack, serval):
    return make_settings(tmp_path, slack[1], serval[1], **FAST)


BOT_USER = "UBOT"  # the fake Slack's bot user (auth.test)


def event(name: str, *, event_id: str | None = None, **changes: Any) -> dict[str, Any]:
    """A documented event body with a fresh event_id (the payloads share placeholders), delivered
    to the fake Slack's app: `authorizations` name its bot user (the anonymised payloads give the
    bot and the person one id)."""
    body = payload(name)
    body["event_id"] = event_id or f"Ev{uuid.uuid4().hex[:10].upper()}"
    for auth in body.get("authorizations") or []:
        if auth.get("is_bot"):
            auth["user_id"] = BOT_USER
    body["event"].update(changes)
    return body


class Journal:
    """Counts what the bot writes for events before acknowledging them."""

    def __init__(self, running: Any) -> None:
        self.submitted: list[dict[str, Any]] = []
        self.delivered: list[str] = []
        tickets = running.bot.tickets
        submit, first = tickets.submit_message, tickets.first_delivery

        async def submit_message(**kwargs: Any) -> Any:
            self.submitted.append(kwargs)
            return await submit(**kwargs)

        async def first_delivery(event_id: str) -> bool:
            self.delivered.append(event_id)
            return await first(event_id)

        tickets.submit_message, tickets.first_delivery = submit_message, first_delivery

    @property
    def writes(self) -> int:
        return len(self.submitted) + len(self.delivered)


@pytest.fixture
def journal(running) -> Journal:
    return Journal(running)


async def deliver(sender: SlackSender, body: dict[str, Any], *, retry: int = 0) -> None:
    started = time.monotonic()
    r = await sender.event(body, retry=retry)
    assert r.status_code == 200 and not r.content, (r.status_code, r.text)
    assert time.monotonic() - started < 1.5


async def thread_replies(slack_state: Any, channel: str, root: str, count: int = 1) -> list[dict[str, Any]]:
    def find():
        found = [c["args"] for c in slack_state.calls_to("chat.postMessage")
                 if not c.get("error") and c["args"].get("channel") == channel and c["args"].get("thread_ts") == root]
        return found if len(found) >= count else None

    return await eventually(find, timeout=10)


def ephemeral(slack_state: Any, user: str) -> list[dict[str, Any]]:
    return [c["args"] for c in slack_state.calls_to("chat.postEphemeral") if c["args"].get("user") == user]


def asking(slack_state: Any, how: str, message: dict[str, Any], user: str = "U111") -> dict[str, Any]:
    """The event of `user` asking for a ticket on a message in C111: a :ticket: reaction on it, or
    a mention of the app in its thread ("mention": the mention is posted first)."""
    if how == "reaction":
        return event("reaction_added.bolt-tests.json", reaction="ticket", user=user, item_user=message.get("user"),
                     item={"type": "message", "channel": "C111", "ts": message["ts"]})
    mention = slack_state.post_user_message("C111", user, f"<@{BOT_USER}>", thread_ts=message["ts"])
    return event("app_mention.DERIVED.thread_reply.json", channel="C111", user=user, text=mention["text"],
                 ts=mention["ts"], thread_ts=message["ts"])


def slack_calls(slack_state: Any) -> list[str]:
    """What the bot asked Slack, other than learning who it is."""
    return [c["method"] for c in slack_state.calls if c["method"] not in ("auth.test",)]


async def quiet(running: Any, slack_state: Any, journal: Journal) -> None:
    """Nothing happened: no journal write, no Slack call, no ticket."""
    await asyncio.sleep(0.3)
    await running.bot.tickets.idle(5)
    assert journal.writes == 0, (journal.submitted, journal.delivered)
    assert slack_calls(slack_state) == []


# --- reactions -------------------------------------------------------------------------------------


async def test_a_ticket_reaction_files_the_message_once_however_often_slack_delivers_it(running, sender, slack, serval, journal):
    slack_state, serval_state = slack[0], serval[0]
    body = event("reaction_added.bolt-tests.json", reaction="ticket")
    item = body["event"]["item"]
    slack_state.post_user_message(item["channel"], "W111", "VPN drops every hour\nSince Monday.", ts=item["ts"])
    await deliver(sender, body)
    # journaled before the 200: the thread is taken the moment the answer arrives
    taken, _ = await running.bot.tickets.thread_ticket(item["channel"], item["ts"])
    assert taken
    for retry in (1, 2, 3):  # Slack's redeliveries of the same event
        await deliver(sender, body, retry=retry)
    reply = (await thread_replies(slack_state, item["channel"], item["ts"]))[0]
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["VPN drops every hour"]
    ticket = next(iter(serval_state.tickets.values()))
    assert ticket["friendlyIdentifier"] in reply["text"]
    assert len(await thread_replies(slack_state, item["channel"], item["ts"])) == 1
    assert {s["dedupe_key"] for s in journal.submitted} == {f"event:{body['event_id']}"}
    sent = journal.submitted[0]
    assert (sent["source"], sent["message_ts"], sent["submitter_id"]) == ("reaction", item["ts"], "W111")


async def test_the_same_event_delivered_concurrently_is_one_ticket(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    body = event("reaction_added.slack-docs.events_api_page.json", reaction="ticket")
    item = body["event"]["item"]
    slack_state.post_user_message(item["channel"], "U222", "Badge reader dead", ts=item["ts"])
    answers = await asyncio.gather(*(sender.event(body, retry=n) for n in range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    await thread_replies(slack_state, item["channel"], item["ts"])
    await running.bot.tickets.idle(5)
    assert len(serval_state.tickets) == 1


async def test_other_reactions_removals_and_the_apps_own_reactions_do_nothing(running, sender, slack, journal):
    slack_state = slack[0]
    await deliver(sender, event("reaction_added.bolt-tests.json"))  # heart_eyes
    await deliver(sender, event("reaction_removed.slack-docs.json", reaction="ticket"))
    await eventually(lambda: running.bot.people.known_workspace)  # the bot knows its own user id now
    await deliver(sender, event("reaction_added.bolt-tests.by_own_bot.json", reaction="ticket",
                                user=slack_state.bot_user_id))
    await deliver(sender, event("reaction_added.bolt-tests.json", reaction="ticket", item_user=slack_state.bot_user_id))
    await quiet(running, slack_state, journal)


async def test_the_apps_own_reaction_is_known_from_the_event_before_auth_test_answers(tmp_path, slack, serval):
    """`authorizations` names the bot user even before auth.test has answered."""
    from server.http import serve_http

    slack_state = slack[0]
    slack_state.rate_limit("auth.test", times=5, retry_after=3)
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1], **FAST), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        journal = Journal(running)
        body = event("reaction_added.slack-docs.events_api_page.json", reaction="ticket")
        body["authorizations"][0].update(user_id="UAPP", is_bot=True)
        body["event"]["user"] = "UAPP"
        await deliver(sender, body)
        assert running.bot.people.known_workspace is None and journal.writes == 0
    finally:
        await sender.aclose()
        await running.close()


async def test_a_reaction_on_a_thread_with_a_ticket_tells_the_reactor_once(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    first = event("reaction_added.bolt-tests.json", reaction="ticket")
    item = first["event"]["item"]
    slack_state.post_user_message(item["channel"], "W111", "Laptop overheats", ts=item["ts"])
    await deliver(sender, first)
    await thread_replies(slack_state, item["channel"], item["ts"])
    await running.bot.tickets.idle(5)
    display_id = next(iter(serval_state.tickets.values()))["friendlyIdentifier"]

    again = event("reaction_added.bolt-tests.json", reaction="ticket", user="U222")
    await deliver(sender, again)
    await deliver(sender, again, retry=1)
    told = await eventually(lambda: ephemeral(slack_state, "U222"))
    await asyncio.sleep(0.3)
    assert len(ephemeral(slack_state, "U222")) == 1
    assert told[0]["channel"] == item["channel"] and display_id in told[0]["text"] and "already" in told[0]["text"]
    assert len(serval_state.tickets) == 1


@pytest.mark.parametrize("how", ["reaction", "mention"])
async def test_a_late_redelivery_of_the_event_that_made_the_ticket_tells_nobody(running, sender, slack, serval, how):
    """Slack delivers again what it saw no acknowledgement for in time, also after the ticket and
    its thread link exist: the same event is the same submission, not someone asking again."""
    slack_state, serval_state = slack[0], serval[0]
    root = slack_state.post_user_message("C111", "W111", "Laptop overheats")
    body = asking(slack_state, how, root)
    await deliver(sender, body)
    await thread_replies(slack_state, "C111", root["ts"])
    await running.bot.tickets.idle(5)
    await deliver(sender, body, retry=1)
    # someone else asks on that thread and is told; the redelivery's answer would have come first
    await deliver(sender, asking(slack_state, "reaction", root, user="U222"))
    await eventually(lambda: ephemeral(slack_state, "U222"))
    assert ephemeral(slack_state, "U111") == []
    assert len(serval_state.tickets) == 1 and len(await thread_replies(slack_state, "C111", root["ts"])) == 1


async def test_a_reaction_on_a_threads_root_copies_the_replies_as_a_mention_does(running, sender, slack, serval):
    """Whichever message of a thread is marked, the thread's other messages go into the ticket."""
    slack_state, serval_state = slack[0], serval[0]
    root = slack_state.post_user_message("C111", "W111", "Shared drive is read-only")
    slack_state.post_user_message("C111", "U222", "Same here since 9:00", thread_ts=root["ts"])
    slack_state.post_user_message("C111", "W111", "Rebooting did not help", thread_ts=root["ts"])
    await deliver(sender, asking(slack_state, "reaction", root))
    await eventually(lambda: connects(serval_state), timeout=10)
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["Shared drive is read-only"]
    copied = [r["body"]["message"] for r in serval_state.requests
              if r["method"] == "POST" and r["path"].endswith("/messages")]
    assert len(copied) == 2 and "Same here since 9:00" in copied[0] and "Rebooting did not help" in copied[1]
    assert len(connects(serval_state)[0]["body"]["accountedForMessageIds"]) == 2


# How apps' messages look (message.bolt-tests.bot_id_with_user.json, .bot_message_classic.json), and
# a bot user's message without a bot_id, known as an app's from the author's profile (is_bot).
APP_MESSAGES = {
    "bot_id and bot_profile": {"bot_id": "BPD", "app_id": "APD", "bot_profile": {"id": "BPD", "name": "PagerDuty",
                                                                                "app_id": "APD", "team_id": "T111"}},
    "classic bot_message": {"subtype": "bot_message", "bot_id": "BPD", "username": "PagerDuty", "user": None},
    "a bot user's profile": {},
}


@pytest.mark.parametrize("how", ["reaction", "mention"])
@pytest.mark.parametrize("shape", list(APP_MESSAGES))
async def test_a_ticket_from_an_apps_message_is_filed_for_the_person_and_names_the_app(running, sender, slack, serval,
                                                                                      shape, how):
    slack_state, serval_state = slack[0], serval[0]
    slack_state.add_user("UPD", email=None, name="pagerduty", real_name="PagerDuty", is_bot=True)
    alert = slack_state.post_user_message("C111", "UPD", "CRITICAL: disk full on db-1")
    alert.update(APP_MESSAGES[shape])
    if alert.get("user") is None:
        del alert["user"]
    await deliver(sender, asking(slack_state, how, alert))
    reply = (await thread_replies(slack_state, "C111", alert["ts"]))[0]
    await running.bot.tickets.idle(5)
    sent = created(serval_state)[0]
    assert sent["requesterUserId"] == serval_state.user_by_email("alice@example.com")["id"]  # U111, who asked
    assert sent["description"].startswith("Alert from PagerDuty in #dev:\nCRITICAL: disk full on db-1")
    assert "<@U111>" in reply["text"] and "UPD" not in reply["text"]


async def test_an_alert_without_text_is_filed_with_what_its_attachments_say(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    alert = slack_state.post_user_message("C111", "UPD", "")
    alert.update(APP_MESSAGES["bot_id and bot_profile"], attachments=[
        {"fallback": "[Triggered] disk full", "title": "CRITICAL: disk full on db-1", "text": "Used: 99%"}])
    await deliver(sender, asking(slack_state, "reaction", alert))
    await thread_replies(slack_state, "C111", alert["ts"])
    await running.bot.tickets.idle(5)
    sent = created(serval_state)[0]
    assert sent["name"] == "CRITICAL: disk full on db-1"
    assert sent["description"].startswith("Alert from PagerDuty in #dev:\nCRITICAL: disk full on db-1\nUsed: 99%")


async def test_the_emoji_is_a_setting_and_a_channel_may_choose_its_own(tmp_path, slack, serval):
    from server.http import serve_http

    slack_state, serval_state = slack[0], serval[0]
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1], reaction_emoji=":fire:", **FAST),
                               host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await running.bot.router.save("C222", RouteEntry(reaction_emoji="sos"), "UADMIN")
        ticket_here = slack_state.post_user_message("C111", "U111", "Wi-Fi down on floor 2")
        sos_there = slack_state.post_user_message("C222", "U111", "Server room too hot")
        journal = Journal(running)
        for channel, ts, name in (("C111", ticket_here["ts"], "ticket"), ("C222", sos_there["ts"], "fire")):
            await deliver(sender, event("reaction_added.bolt-tests.json", reaction=name,
                                        item={"type": "message", "channel": channel, "ts": ts}))
        await asyncio.sleep(0.2)
        assert journal.writes == 0  # :ticket: is not the emoji here, :fire: not in C222
        await deliver(sender, event("reaction_added.bolt-tests.json", reaction="fire::skin-tone-3",
                                    item={"type": "message", "channel": "C111", "ts": ticket_here["ts"]}))
        await deliver(sender, event("reaction_added.bolt-tests.json", reaction="sos",
                                    item={"type": "message", "channel": "C222", "ts": sos_there["ts"]}))
        await thread_replies(slack_state, "C111", ticket_here["ts"])
        await thread_replies(slack_state, "C222", sos_there["ts"])
        await running.bot.tickets.idle(5)
        assert sorted(t["name"] for t in serval_state.tickets.values()) == ["Server room too hot", "Wi-Fi down on floor 2"]
    finally:
        await sender.aclose()
        await running.close()


async def test_a_failed_journal_write_is_a_500_so_slack_delivers_again(running, sender, slack, serval):
    slack_state = slack[0]
    body = event("reaction_added.bolt-tests.json", reaction="ticket")
    item = body["event"]["item"]
    slack_state.post_user_message(item["channel"], "W111", "Printer offline", ts=item["ts"])
    real = running.bot.tickets.submit_message

    async def broken(**kwargs: Any) -> Any:
        raise OSError("database unreachable")

    running.bot.tickets.submit_message = broken
    r = await sender.event(body)
    assert r.status_code == 500
    running.bot.tickets.submit_message = real
    await deliver(sender, body, retry=1)
    await thread_replies(slack_state, item["channel"], item["ts"])
    await running.bot.tickets.idle(5)
    assert len(serval[0].tickets) == 1


# --- mentions --------------------------------------------------------------------------------------


async def test_a_mention_at_top_level_files_that_message_with_its_text_as_title(running, sender, slack, serval, journal):
    slack_state, serval_state = slack[0], serval[0]
    body = event("app_mention.bolt-tests.json", text=f"<@U222> <@{BOT_USER}> Printer on floor 3\nIt says PC LOAD LETTER")
    e = body["event"]
    slack_state.post_user_message(e["channel"], e["user"], e["text"], ts=e["ts"])
    await deliver(sender, body)
    await deliver(sender, body, retry=1)
    await thread_replies(slack_state, e["channel"], e["ts"])
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["@U222 Printer on floor 3"]
    assert len(journal.submitted) == 2 and {s["dedupe_key"] for s in journal.submitted} == {f"event:{body['event_id']}"}
    sent = journal.submitted[0]
    assert (sent["source"], sent["message_ts"], sent["thread_ts"], sent["title"]) == ("mention", e["ts"], None, "@U222 Printer on floor 3")


async def test_a_bare_mention_in_a_thread_files_the_thread_root(running, sender, slack, serval, journal):
    slack_state, serval_state = slack[0], serval[0]
    body = event("app_mention.DERIVED.thread_reply.json", text=f"<@{BOT_USER}>")
    e = body["event"]
    slack_state.post_user_message(e["channel"], "U111", "Laptop will not boot\nTried twice.", ts=e["thread_ts"])
    slack_state.post_user_message(e["channel"], e["user"], e["text"], thread_ts=e["thread_ts"], ts=e["ts"])
    await deliver(sender, body)
    replies = await thread_replies(slack_state, e["channel"], e["thread_ts"])
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["Laptop will not boot"]
    assert connects(serval_state)[0]["body"]["externalTicketId"] == f"{e['channel']}:{e['thread_ts']}"
    assert len(replies) == 1
    sent = journal.submitted[0]
    assert (sent["message_ts"], sent["thread_ts"], sent["title"], sent["submitter_id"]) == (e["thread_ts"], e["thread_ts"], None, "W222")


async def test_a_mention_in_an_org_wide_install_and_one_in_a_thread_with_a_ticket(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    body = event("app_mention.bolt-tests.org_install.json", text=f"<@{BOT_USER}> Projector flickers")
    e = body["event"]
    slack_state.post_user_message(e["channel"], e["user"], e["text"], ts=e["ts"])
    await deliver(sender, body)
    await thread_replies(slack_state, e["channel"], e["ts"])
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["Projector flickers"]
    display_id = next(iter(serval_state.tickets.values()))["friendlyIdentifier"]
    again = event("app_mention.DERIVED.thread_reply.json", thread_ts=e["ts"], ts=slack_state.next_ts(), user="U111",
                  text=f"<@{BOT_USER}> please look")
    await deliver(sender, again)
    told = await eventually(lambda: ephemeral(slack_state, "U111"))
    assert display_id in told[0]["text"]
    assert len(serval_state.tickets) == 1


async def test_mentions_by_bots_and_workflows_do_nothing(running, sender, slack, journal):
    body = event("app_mention.bolt-tests.json", bot_id="B999")
    await deliver(sender, body)
    await quiet(running, slack[0], journal)


# --- request channels --------------------------------------------------------------------------------


IGNORED_MESSAGES = [
    "message.bolt-tests.thread_reply.json",
    "message.bolt-tests.thread_broadcast.json",
    "message.bolt-tests.message_changed.json",
    "message.bolt-tests.message_deleted.json",
    "message.real-capture.channel_join.json",
    "message.bolt-tests.bot_message_own.json",
    "message.bolt-tests.bot_id_with_user.json",
    "message.bolt-tests.bot_message_classic.json",
]


@pytest.mark.parametrize("name", IGNORED_MESSAGES)
async def test_in_a_request_channel_only_new_messages_from_people_count(running, sender, slack, journal, name):
    body = event(name)
    await running.bot.router.save(body["event"].get("channel") or "C111", RouteEntry(intake="auto"), "UADMIN")
    if body["event"].get("channel") != "C111":
        await running.bot.router.save("C111", RouteEntry(intake="auto"), "UADMIN")
    await deliver(sender, body)
    await quiet(running, slack[0], journal)


async def test_without_intake_messages_write_nothing(running, sender, slack, journal):
    await deliver(sender, event("message.bolt-tests.channels_plain.json"))
    await deliver(sender, event("message.slack-docs.groups.json"))
    await quiet(running, slack[0], journal)


@pytest.mark.parametrize("name", ["message.bolt-tests.channels_plain.json", "message.bolt-tests.file_share.json",
                                  "message.bolt-tests.file_share_private_channel.json", "message.slack-docs.groups.json"])
async def test_intake_auto_files_each_new_message_once(running, sender, slack, serval, journal, name):
    slack_state, serval_state = slack[0], serval[0]
    body = event(name)
    e = body["event"]
    await running.bot.router.save(e["channel"], RouteEntry(intake="auto"), "UADMIN")
    stored = slack_state.post_user_message(e["channel"], e["user"], e.get("text") or "", ts=e["ts"])
    if e.get("files"):
        stored.update(subtype="file_share", files=e["files"])
    await deliver(sender, body)
    await deliver(sender, body, retry=1)
    reply = (await thread_replies(slack_state, e["channel"], e["ts"]))[0]
    await running.bot.tickets.idle(5)
    assert len(serval_state.tickets) == 1
    ticket = next(iter(serval_state.tickets.values()))
    assert ticket["friendlyIdentifier"] in reply["text"]
    if e.get("files"):
        assert e["files"][0]["name"] in created(serval_state)[0]["description"]
    sent = journal.submitted[0]
    assert (sent["source"], sent["message_ts"], sent["thread_ts"], sent["submitter_id"]) == ("intake", e["ts"], None, e["user"])


async def test_a_mention_in_a_request_channel_is_one_ticket(running, sender, slack, serval, journal):
    """Slack sends both app_mention and message.channels for it: the mention files it."""
    slack_state, serval_state = slack[0], serval[0]
    await running.bot.router.save("C111", RouteEntry(intake="auto"), "UADMIN")
    await eventually(lambda: running.bot.people.known_workspace)
    text = f"<@{slack_state.bot_user_id}> Keyboard missing keys"
    stored = slack_state.post_user_message("C111", "U111", text)
    await deliver(sender, event("message.bolt-tests.channels_plain.json", user="U111", text=text, ts=stored["ts"],
                                event_ts=stored["ts"]))
    await deliver(sender, event("app_mention.bolt-tests.json", user="U111", text=text, ts=stored["ts"],
                                event_ts=stored["ts"]))
    await thread_replies(slack_state, "C111", stored["ts"])
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["Keyboard missing keys"]
    assert [s["source"] for s in journal.submitted] == ["mention"]
    assert ephemeral(slack_state, "U111") == []


async def test_the_apps_own_messages_never_loop_back(running, sender, slack, serval, journal):
    """The bot's thread reply comes back as a message event (bot_id): nothing happens."""
    slack_state = slack[0]
    await running.bot.router.save("C111", RouteEntry(intake="auto"), "UADMIN")
    stored = slack_state.post_user_message("C111", "U222", "Mouse broken")
    await deliver(sender, event("message.bolt-tests.channels_plain.json", user="U222", text=stored["text"],
                                ts=stored["ts"], event_ts=stored["ts"]))
    reply = (await thread_replies(slack_state, "C111", stored["ts"]))[0]
    await running.bot.tickets.idle(5)
    posted = next(m for m in slack_state.messages["C111"] if m.get("thread_ts") == stored["ts"] and m.get("bot_id"))
    for message in (posted, {**posted, "thread_ts": None, "ts": slack_state.next_ts()}):  # in a thread, and top level
        body = event("message.bolt-tests.channels_plain.json")
        body["event"] = slack_state.message_event("C111", {k: v for k, v in message.items() if v is not None})
        await deliver(sender, body)
    await asyncio.sleep(0.3)
    assert len(journal.submitted) == 1 and len(serval[0].tickets) == 1 and reply


async def test_intake_button_offers_a_prefilled_form_that_links_the_thread(running, sender, slack, serval, journal):
    slack_state, serval_state = slack[0], serval[0]
    body = event("message.bolt-tests.channels_plain.json", text="Need a new monitor\nMine has dead pixels.")
    e = body["event"]
    await running.bot.router.save(e["channel"], RouteEntry(intake="button"), "UADMIN")
    slack_state.post_user_message(e["channel"], e["user"], e["text"], ts=e["ts"])
    await deliver(sender, body)
    await deliver(sender, body, retry=1)
    prompt = (await thread_replies(slack_state, e["channel"], e["ts"]))[0]
    await asyncio.sleep(0.2)
    assert len(await thread_replies(slack_state, e["channel"], e["ts"])) == 1
    assert journal.submitted == []  # no ticket without the person's say
    button = next(el for b in prompt["blocks"] if b["type"] == "actions" for el in b["elements"])
    assert button["text"]["text"] == "Create ticket"

    click = payload("block_actions.bolt-tests.button.json")
    click["user"]["id"] = "U111"
    click["trigger_id"] = f"{time.time_ns()}.btn"
    click["container"] = {"type": "message", "message_ts": "9.9", "channel_id": e["channel"], "is_ephemeral": False}
    click["channel"] = {"id": e["channel"], "name": "dev"}
    click["actions"] = [{**click["actions"][0], "action_id": button["action_id"], "block_id": "create_ticket",
                         "value": button["value"]}]
    r = await sender.interactive(click)
    assert r.status_code == 200
    opened = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == click["trigger_id"]])
    view = opened[0]["args"]["view"]
    assert block(view, "title")["element"]["initial_value"] == "Need a new monitor"
    assert "Mine has dead pixels." in block(view, "description")["element"]["initial_value"]
    origin = json.loads(view["private_metadata"])
    assert (origin["source"], origin["thread_ts"], origin["message_ts"]) == ("shortcut", e["ts"], e["ts"])

    values = {"title": text_value("Need a new monitor"), "description": text_value("Dead pixels"),
              "field:type": {"value": {"type": "static_select", "selected_option": {"value": "TICKET_TYPE_REQUEST"}}}}
    await sender.interactive(submission(opened[0]["response"]["view"], values, user_id="U111"))
    await eventually(lambda: connects(serval_state), timeout=10)
    assert connects(serval_state)[0]["body"]["externalTicketId"] == f"{e['channel']}:{e['ts']}"
    # the button again, on a thread that has its ticket now
    click["trigger_id"] = f"{time.time_ns()}.btn2"
    await sender.interactive(click)
    again = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == click["trigger_id"]])
    assert "already linked" in json.dumps(again[0]["args"]["view"])


async def test_a_long_message_button_carries_its_start_and_the_form_gets_the_rest(running, sender, slack):
    slack_state = slack[0]
    long_text = "Everything is slow today. " + "ÄÖÜ \"quoted\" " * 150 + "THE END"
    body = event("message.bolt-tests.channels_plain.json", text=long_text)
    e = body["event"]
    await running.bot.router.save(e["channel"], RouteEntry(intake="button"), "UADMIN")
    slack_state.post_user_message(e["channel"], e["user"], long_text, ts=e["ts"])
    await deliver(sender, body)
    prompt = (await thread_replies(slack_state, e["channel"], e["ts"]))[0]
    button = next(el for b in prompt["blocks"] if b["type"] == "actions" for el in b["elements"])
    assert len(button["value"]) <= 2000 and json.loads(button["value"])["x"] == 1
    click = payload("block_actions.bolt-tests.button.json")
    click.update(trigger_id=f"{time.time_ns()}.long", channel={"id": e["channel"], "name": "dev"})
    click["user"]["id"] = "U111"
    click["actions"] = [{**click["actions"][0], "action_id": button["action_id"], "value": button["value"]}]
    await sender.interactive(click)
    updated = await eventually(lambda: [c for c in slack_state.calls_to("views.update") if not c.get("error")])
    assert "THE END" in block(updated[0]["args"]["view"], "description")["element"]["initial_value"]


# --- direct messages ---------------------------------------------------------------------------------


async def test_a_direct_message_is_answered_with_a_create_ticket_button_once(running, sender, slack, journal):
    slack_state = slack[0]
    body = event("message.real-capture.im.json", text="my laptop is stolen")
    e = body["event"]
    await deliver(sender, body)
    await deliver(sender, body, retry=2)
    answer = await eventually(lambda: [c["args"] for c in slack_state.calls_to("chat.postMessage")
                                       if c["args"].get("channel") == e["channel"]])
    await asyncio.sleep(0.3)
    assert len([c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == e["channel"]]) == 1
    assert "thread_ts" not in answer[0]
    button = next(el for b in answer[0]["blocks"] if b["type"] == "actions" for el in b["elements"])
    assert json.loads(button["value"]) == {"c": e["channel"], "ts": e["ts"], "u": e["user"], "t": "my laptop is stolen"}
    assert journal.submitted == []


async def test_thread_replies_in_a_direct_message_write_nothing(running, sender, slack, journal):
    await deliver(sender, event("message.bolt-tests.im_thread_reply.json"))
    await quiet(running, slack[0], journal)
