"""Tickets from conversations, the service's part (issue 14): a journaled submission made from a
message is read, filed, announced in its thread and connected, with the thread's earlier messages
copied into Serval first. The Slack events that start them are tested in tests/test_events*.py; here
the bot's own entry point is called, against the fake Slack and the Serval sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from bot.journal.storage import ThreadTaken
from clients.base import CreatedTicket
from server.http import serve_http
from tests.conftest import eventually, make_settings
from tests.test_ticket_flow import connects, created

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)


def serval_posts(state: Any, suffix: str) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == "POST" and r["path"].endswith(suffix)]


async def thread_reply(slack_state: Any, channel: str, root: str) -> dict[str, Any]:
    def find():
        return next((c for c in slack_state.calls_to("chat.postMessage")
                     if not c.get("error") and c["args"].get("thread_ts") == root
                     and c["args"].get("channel") == channel), None)

    return await eventually(find, timeout=10)


@pytest.fixture
async def bot(tmp_path, slack, serval):
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1], **FAST), host="127.0.0.1", port=0)
    yield running
    await running.close()


async def test_a_reacted_message_becomes_a_ticket_announced_in_its_thread(bot, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    message = slack_state.post_user_message("C111", "W111", "VPN drops every hour\nSince Monday, on Wi-Fi.")
    await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev1", source="reaction", channel_id="C111", channel_name="dev",
        message_ts=message["ts"], thread_ts=None, submitter_id="U111",
    )
    reply = await thread_reply(slack_state, "C111", message["ts"])
    await bot.bot.tickets.idle(5)
    body = created(serval_state)[0]
    assert body["name"] == "VPN drops every hour"
    assert body["description"].startswith("VPN drops every hour\nSince Monday, on Wi-Fi.")
    assert f"/archives/C111/p{message['ts'].replace('.', '')}" in body["description"]
    ticket = next(iter(serval_state.tickets.values()))
    assert ticket["friendlyIdentifier"] in reply["args"]["text"]
    buttons = [e for b in reply["args"].get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]
    # the reply is the ticket's live card (docs/after-the-ticket.md)
    assert [b["action_id"] for b in buttons] == ["edit_ticket", "ticket_close", "ticket_comment"]
    assert connects(serval_state)[0]["body"]["externalTicketId"] == f"C111:{message['ts']}"
    # the message's author is the requester (ON_BEHALF_OF=anyone): the description names no one else
    assert not body["description"].startswith("Message from")
    assert body["requesterUserId"]


async def test_a_redelivered_event_and_a_second_reaction_make_no_second_ticket(bot, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    message = slack_state.post_user_message("C111", "W111", "Printer jammed")
    args = dict(source="reaction", channel_id="C111", channel_name="dev", message_ts=message["ts"],
                thread_ts=None, submitter_id="U111")
    first = await bot.bot.tickets.submit_message(dedupe_key="event:Ev2", **args)
    again = await bot.bot.tickets.submit_message(dedupe_key="event:Ev2", **args)  # Slack's retry
    assert again.id == first.id
    await thread_reply(slack_state, "C111", message["ts"])
    with pytest.raises(ThreadTaken) as taken:
        await bot.bot.tickets.submit_message(dedupe_key="event:Ev3", **{**args, "submitter_id": "U222"})
    assert taken.value.display_id == next(iter(serval_state.tickets.values()))["friendlyIdentifier"]
    await bot.bot.tickets.idle(5)
    assert len(serval_state.tickets) == 1


async def test_a_mention_in_a_thread_copies_the_thread_before_connecting(bot, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    root = slack_state.post_user_message("C111", "W111", "Laptop will not boot")
    slack_state.post_user_message("C111", "U111", "Did you try holding the power button?", thread_ts=root["ts"])
    slack_state.post_user_message("C111", "W111", "Yes, still nothing", thread_ts=root["ts"])
    mention = slack_state.post_user_message("C111", "U111", "<@UBOT> this needs IT", thread_ts=root["ts"])
    await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev4", source="mention", channel_id="C111", channel_name="dev",
        message_ts=root["ts"], thread_ts=root["ts"], submitter_id="U111", title="Laptop dead",
    )
    await thread_reply(slack_state, "C111", root["ts"])
    await eventually(lambda: connects(serval_state), timeout=10)
    await bot.bot.tickets.idle(5)
    assert created(serval_state)[0]["name"] == "Laptop dead"
    posted = serval_posts(serval_state, "/messages")
    texts = [p["body"]["message"] for p in posted]
    # every message of the thread but the ticket's own first one and the bot's reply, in order
    assert len(texts) == 3
    assert "Did you try holding the power button?" in texts[0] and "Yes, still nothing" in texts[1]
    assert "this needs IT" in texts[2]
    assert all(p["body"]["triggerHelpAgent"] is False for p in posted)
    assert mention["ts"]
    accounted = connects(serval_state)[0]["body"]["accountedForMessageIds"]
    assert len(accounted) == 3 and len(set(accounted)) == 3


async def test_a_rate_limited_thread_read_waits_in_the_journal(bot, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    message = slack_state.post_user_message("C111", "W111", "Door badge broken")
    slack_state.rate_limit("conversations.replies", retry_after=1, times=1)
    await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev5", source="intake", channel_id="C111", channel_name="dev",
        message_ts=message["ts"], thread_ts=None, submitter_id="W111",
    )
    await thread_reply(slack_state, "C111", message["ts"])
    assert len(slack_state.calls_to("conversations.replies")) >= 2
    assert [t["name"] for t in serval_state.tickets.values()] == ["Door badge broken"]


async def test_under_on_behalf_of_nobody_the_reactor_is_the_requester(tmp_path, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    settings = make_settings(tmp_path, slack[1], serval[1], on_behalf_of="nobody", **FAST)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        message = slack_state.post_user_message("C111", "W111", "Monitor flickers")
        await running.bot.tickets.submit_message(
            dedupe_key="event:Ev6", source="reaction", channel_id="C111", channel_name="dev",
            message_ts=message["ts"], thread_ts=None, submitter_id="U111",
        )
        await thread_reply(slack_state, "C111", message["ts"])
        body = created(serval_state)[0]
        assert body["requesterUserId"] == body["createdByUserId"]
        assert body["description"].startswith("Message from ")
    finally:
        await running.close()


async def test_add_to_an_existing_ticket_instead_of_creating_one(bot, slack, serval):
    from bot.slack.drafts import Form
    from bot.slack.views import Origin

    slack_state, serval_state = slack[0], serval[0]
    message = slack_state.post_user_message("C111", "W111", "Seed ticket")
    await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev7", source="reaction", channel_id="C111", channel_name="dev",
        message_ts=message["ts"], thread_ts=None, submitter_id="U111",
    )
    await thread_reply(slack_state, "C111", message["ts"])
    await bot.bot.tickets.idle(5)
    existing = next(iter(serval_state.tickets.values()))
    target = CreatedTicket(id=existing["id"], display_id=existing["friendlyIdentifier"], backend="serval")
    form = Form(title="Seed ticket again", description="It happened again today.", values={}, share=False)
    for _ in range(2):  # a double click adds once
        await bot.bot.tickets.submit(
            dedupe_key="add:V1:" + existing["id"], origin=Origin(source="command", channel_id="C111"),
            form=form, user_id="U111", view_id="V1", add_to=target,
        )
    await eventually(lambda: any("Added to ticket" in c["args"].get("text", "")
                                 for c in slack_state.calls_to("chat.postEphemeral")), timeout=10)
    await bot.bot.tickets.idle(5)
    assert len(serval_state.tickets) == 1
    added = serval_posts(serval_state, f"/v2/tickets/{existing['id']}/messages")
    assert len(added) == 1 and added[0]["body"]["message"].startswith("It happened again today.")


async def test_only_the_people_of_a_ticket_and_admins_may_edit_it(bot, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    message = slack_state.post_user_message("C111", "W111", "Old title")
    sub = await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev8", source="reaction", channel_id="C111", channel_name="dev",
        message_ts=message["ts"], thread_ts=None, submitter_id="U111",
    )
    await thread_reply(slack_state, "C111", message["ts"])
    assert await bot.bot.tickets.editable(sub.id, "U222") is None
    with pytest.raises(PermissionError):
        await bot.bot.tickets.edit_ticket(sub.id, "U222", title="Hijacked")
    assert (await bot.bot.tickets.editable(sub.id, "U111"))["title"] == "Old title"
    await bot.bot.tickets.edit_ticket(sub.id, "U111", title="New title")
    assert next(iter(serval_state.tickets.values()))["name"] == "New title"


async def test_a_reaction_on_a_reply_files_its_thread_and_copies_the_rest(bot, slack, serval):
    """A reaction names the message, not its thread: the ticket belongs to the thread root, the
    reply is its first message, the thread's other messages are copied in, and the channel's name
    (which events do not carry) is looked up."""
    slack_state, serval_state = slack[0], serval[0]
    root = slack_state.post_user_message("C111", "W111", "Shared drive is read-only")
    reply = slack_state.post_user_message("C111", "U111", "Same here since 9:00", thread_ts=root["ts"])
    await bot.bot.tickets.submit_message(
        dedupe_key="event:Ev9", source="reaction", channel_id="C111", channel_name=None,
        message_ts=reply["ts"], thread_ts=None, submitter_id="U111",
    )
    await thread_reply(slack_state, "C111", root["ts"])
    await eventually(lambda: connects(serval_state), timeout=10)
    await bot.bot.tickets.idle(5)
    body = created(serval_state)[0]
    assert body["name"] == "Same here since 9:00"
    assert "in #dev" in body["description"]
    assert connects(serval_state)[0]["body"]["externalTicketId"] == f"C111:{root['ts']}"
    copied = [p["body"]["message"] for p in serval_posts(serval_state, "/messages")]
    assert len(copied) == 1 and "Shared drive is read-only" in copied[0]
    link = await bot.bot.storage.link_for_thread("C111", root["ts"])
    assert link and link.display_id == next(iter(serval_state.tickets.values()))["friendlyIdentifier"]


async def test_systems_that_take_no_messages_get_the_thread_in_the_description(tmp_path, slack, socialboards):
    """Socialboards cannot add messages to a ticket: a reaction on a reply puts the thread's earlier
    messages into the description instead (its docs: thread replies are not synced)."""
    from tests.test_backend_socialboards import socialboards_settings

    slack_state, state = slack[0], socialboards[0]
    running = await serve_http(socialboards_settings(tmp_path, slack[1], socialboards[1]), host="127.0.0.1", port=0)
    try:
        root = slack_state.post_user_message("C111", "W111", "Projector in room 4 shows no signal")
        reply = slack_state.post_user_message("C111", "U111", "HDMI and USB-C both fail", thread_ts=root["ts"])
        await running.bot.tickets.submit_message(
            dedupe_key="event:Ev10", source="reaction", channel_id="C111", channel_name="dev",
            message_ts=reply["ts"], thread_ts=None, submitter_id="U111",
        )
        await thread_reply(slack_state, "C111", root["ts"])
        await running.bot.tickets.idle(5)
    finally:
        await running.close()
    ticket = next(iter(state.tickets.values()))
    assert ticket["title"] == "HDMI and USB-C both fail"
    assert "Earlier in the thread" in ticket["message"] and "Projector in room 4 shows no signal" in ticket["message"]


async def test_systems_that_take_no_messages_get_a_roots_replies_in_the_description(tmp_path, slack, socialboards):
    """A reaction on the thread's root: the replies already there go into the description, as the
    thread's other messages do for a reaction on a reply."""
    from tests.test_backend_socialboards import socialboards_settings

    slack_state, state = slack[0], socialboards[0]
    running = await serve_http(socialboards_settings(tmp_path, slack[1], socialboards[1]), host="127.0.0.1", port=0)
    try:
        root = slack_state.post_user_message("C111", "W111", "Projector in room 4 shows no signal")
        slack_state.post_user_message("C111", "U111", "HDMI and USB-C both fail", thread_ts=root["ts"])
        await running.bot.tickets.submit_message(
            dedupe_key="event:Ev11", source="reaction", channel_id="C111", channel_name="dev",
            message_ts=root["ts"], thread_ts=None, submitter_id="U111",
        )
        await thread_reply(slack_state, "C111", root["ts"])
        await running.bot.tickets.idle(5)
    finally:
        await running.close()
    ticket = next(iter(state.tickets.values()))
    assert ticket["title"] == "Projector in room 4 shows no signal"
    assert "Later in the thread:" in ticket["message"] and "HDMI and USB-C both fail" in ticket["message"]
