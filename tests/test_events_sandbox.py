"""The fake Slack's conversation methods and events (sandbox/slack.py), checked against the
documented responses and event bodies in tests/payloads/: conversations.replies and .history,
reactions.*, the events Slack sends for messages, mentions and reactions, and injected rate limits."""

from __future__ import annotations

import json

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.conftest import PAYLOADS, payload


@pytest.fixture
def client(slack):
    return slack[0], AsyncWebClient(token="xoxb-test", base_url=slack[1])


def keys(value):
    """The key structure of a JSON value, ignoring the values."""
    if isinstance(value, dict):
        return {k: keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


async def test_replies_are_the_thread_parent_first_as_documented(client):
    state, web = client
    root = state.post_user_message("C111", "U111", "island")
    replies = [state.post_user_message("C111", "U222", f"{n} island", thread_ts=root["ts"]) for n in ("one", "two")]
    answer = (await web.conversations_replies(channel="C111", ts=root["ts"])).data
    documented = payload("conversations_replies.response.slack-docs.json")
    assert set(answer) == set(documented)
    parent, first = answer["messages"][0], answer["messages"][1]
    assert parent["ts"] == parent["thread_ts"] == root["ts"] and parent["reply_count"] == 2
    assert {"type", "user", "text", "thread_ts", "reply_count", "reply_users", "reply_users_count", "latest_reply", "ts"} <= set(parent)
    assert set(documented["messages"][1]) <= set(first) and first["parent_user_id"] == "U111"
    # any message of the thread names it; latest/inclusive cut it; limit pages it
    by_reply = (await web.conversations_replies(channel="C111", ts=replies[1]["ts"])).data
    assert [m["ts"] for m in by_reply["messages"]] == [root["ts"]] + [r["ts"] for r in replies]
    upto = (await web.conversations_replies(channel="C111", ts=root["ts"], latest=replies[0]["ts"], inclusive=True)).data
    assert [m["ts"] for m in upto["messages"]] == [root["ts"], replies[0]["ts"]]
    before = (await web.conversations_replies(channel="C111", ts=root["ts"], latest=replies[0]["ts"])).data
    assert [m["ts"] for m in before["messages"]] == [root["ts"]]
    page = (await web.conversations_replies(channel="C111", ts=root["ts"], limit=2)).data
    assert page["has_more"] and page["response_metadata"]["next_cursor"]
    rest = (await web.conversations_replies(channel="C111", ts=root["ts"], cursor=page["response_metadata"]["next_cursor"])).data
    assert [m["ts"] for m in page["messages"] + rest["messages"]] == [root["ts"]] + [r["ts"] for r in replies]
    assert rest["has_more"] is False


async def test_replies_errors_limits_and_rate_limits(client):
    state, web = client
    root = state.post_user_message("C111", "U111", "thread")
    for n in range(20):
        state.post_user_message("C111", "U222", f"reply {n}", thread_ts=root["ts"])
    with pytest.raises(SlackApiError) as missing:
        await web.conversations_replies(channel="C111", ts="1.000001")
    assert missing.value.response.data == payload("conversations_replies.response.slack-api-specs.thread_not_found.json")
    state.replies_max_limit = 15  # a non-Marketplace app since 2025-05-29
    assert len((await web.conversations_replies(channel="C111", ts=root["ts"], limit=200))["messages"]) == 15
    state.add_channel("C777", "elsewhere", bot_is_member=False)
    state.post_user_message("C777", "U111", "not for the bot")
    with pytest.raises(SlackApiError) as outside:
        await web.conversations_replies(channel="C777", ts=state.messages["C777"][0]["ts"])
    assert outside.value.response["error"] == "not_in_channel"
    state.rate_limit("conversations.replies", retry_after=30)
    with pytest.raises(SlackApiError) as limited:
        await web.conversations_replies(channel="C111", ts=root["ts"])
    assert limited.value.response.status_code == 429 and limited.value.response.headers["Retry-After"] == "30"


async def test_history_is_newest_first_without_thread_replies(client):
    state, web = client
    first = state.post_user_message("C111", "U111", "first")
    state.post_user_message("C111", "U222", "a reply", thread_ts=first["ts"])
    second = state.post_user_message("C111", "U222", "second")
    answer = (await web.conversations_history(channel="C111")).data
    assert [m["text"] for m in answer["messages"]] == ["second", "first"]
    assert answer["messages"][1]["reply_count"] == 1 and answer["has_more"] is False
    one = (await web.conversations_history(channel="C111", latest=second["ts"], inclusive=True, limit=1)).data
    assert [m["ts"] for m in one["messages"]] == [second["ts"]] and one["has_more"] is True
    older = (await web.conversations_history(channel="C111", latest=second["ts"])).data
    assert [m["ts"] for m in older["messages"]] == [first["ts"]]


async def test_reactions_add_get_remove(client):
    state, web = client
    message = state.post_user_message("C111", "U111", "Hello world")
    state.add_reaction("C111", message["ts"], "U222", "ticket")
    await web.reactions_add(channel="C111", timestamp=message["ts"], name="ticket")
    got = (await web.reactions_get(channel="C111", timestamp=message["ts"], full=True)).data
    assert keys(got) == keys(payload("reactions_get.response.DERIVED.message.json")) | {"message": keys(got["message"])}
    assert got["type"] == "message" and got["message"]["reactions"] == [{"name": "ticket", "users": ["U222", "UBOT"], "count": 2}]
    with pytest.raises(SlackApiError, match="already_reacted"):
        await web.reactions_add(channel="C111", timestamp=message["ts"], name="ticket")
    await web.reactions_remove(channel="C111", timestamp=message["ts"], name="ticket")
    with pytest.raises(SlackApiError, match="no_reaction"):
        await web.reactions_remove(channel="C111", timestamp=message["ts"], name="ticket")
    with pytest.raises(SlackApiError, match="message_not_found"):
        await web.reactions_add(channel="C111", timestamp="1.2", name="ticket")


def test_events_have_the_documented_shape(slack):
    state = slack[0]
    envelope = json.loads((PAYLOADS / "event_callback.slack-docs.envelope.txt").read_text()
                          .replace("    ...", "").replace(",}", "}"))
    message = state.post_user_message("C111", "U111", "Live long and prospect.")
    body = state.event_callback(state.message_event("C111", message))
    assert set(body) == set(envelope)
    assert set(body["authorizations"][0]) == set(envelope["authorizations"][0])
    assert set(payload("message.slack-docs.channels.json")["event"]) <= set(body["event"])
    assert body["event"]["channel_type"] == "channel" and "thread_ts" not in body["event"]
    reaction = state.reaction_event("C111", message["ts"], "U222", "ticket")
    assert set(reaction) == set(payload("reaction_added.slack-docs.json")["event"])
    assert reaction["item"] == {"type": "message", "channel": "C111", "ts": message["ts"]} and reaction["item_user"] == "U111"
    reply = state.post_user_message("C111", "U222", "<@UBOT> help", thread_ts=message["ts"])
    mention = state.mention_event("C111", reply)
    assert set(payload("app_mention.DERIVED.thread_reply.json")["event"]) - {"client_msg_id"} <= set(mention)
    assert mention["thread_ts"] == message["ts"]
    assert state.message_event("C111", reply)["thread_ts"] == message["ts"]
    state.add_channel("G222", "private")
    assert state.message_event("G222", state.post_user_message("G222", "U111", "x"))["channel_type"] == "group"
    assert state.message_event("D0LFFBKLZ", state.post_user_message("D0LFFBKLZ", "U0D15K92L", "x"))["channel_type"] == "im"
