"""Ack first, everywhere: every listener answers Slack before it calls Slack or a ticket system,
and whatever fails after the ack is told to the person instead of silence (or Slack's timeout)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from clients.base import BackendError
from tests.conftest import eventually, payload, select_value, submission
from tests.test_ticket_flow import block, open_modal_with_command, shortcut


def told(slack_state: Any, user: str = "U111") -> list[dict[str, Any]]:
    """What reached the person: ephemeral messages and DMs (successful calls only)."""
    return [c["args"] for c in slack_state.calls
            if not c.get("error") and (
                (c["method"] == "chat.postEphemeral" and c["args"].get("user") == user)
                or (c["method"] == "chat.postMessage" and c["args"].get("channel") == user))]


async def timed(coro) -> tuple[Any, float]:
    started = time.monotonic()
    result = await coro
    return result, time.monotonic() - started


# --- /ticket config ----------------------------------------------------------------------------


async def test_ticket_config_acks_before_asking_slack_who_the_person_is(sender, slack):
    """users.info rate-limited with Retry-After: 4 made Slack give up on the command (3 s)."""
    slack_state, _ = slack
    slack_state.rate_limit("users.info", times=1, retry_after=4)
    trigger = slack_state.issue_trigger_id()  # a real one: it expires 3 s after it was issued
    r, elapsed = await timed(sender.command("config", user_id="UADMIN", trigger_id=trigger))
    assert r.status_code == 200 and not r.content
    assert elapsed < 1.0
    # the admin check ends after the trigger expired: the person is told, not left waiting
    message = (await eventually(lambda: told(slack_state, "UADMIN"), timeout=10))[0]
    assert "could not open the channel settings" in message["text"] and "in time" in message["text"]
    assert message["channel"] == "C111"


async def test_saving_channel_settings_acks_before_asking_slack(slack, running, sender):
    slack_state, _ = slack
    trigger = f"{time.time_ns()}.cfg"
    await sender.command("config", user_id="UADMIN", trigger_id=trigger)
    call = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
    view = call[0]["response"]["view"]
    running.bot.people.refresh = 0  # profiles are cached for an hour: make the save ask Slack again
    slack_state.rate_limit("users.info", times=1, retry_after=4)
    body = submission(view, {"field:type": select_value("TICKET_TYPE_INCIDENT")}, user_id="UADMIN")
    r, elapsed = await timed(sender.interactive(body))
    assert elapsed < 1.0
    assert r.json()["response_action"] == "update" and "Saving" in json.dumps(r.json()["view"])
    updates = await eventually(lambda: [c for c in slack_state.calls_to("views.update")
                                        if c["args"]["view_id"] == view["id"] and "Saved" in json.dumps(c["args"]["view"])],
                               timeout=10)
    assert "as incidents by default" in json.dumps(updates[0]["args"]["view"])


# --- views.open failing after the ack ------------------------------------------------------------


@pytest.mark.parametrize("failure, words", [("expired_trigger_id", "in time"), ("ratelimited", "busy"),
                                            ("internal_error", "internal_error")])
async def test_a_form_that_does_not_open_is_told_in_an_ephemeral_message(sender, slack, failure, words):
    slack_state, _ = slack
    if failure == "ratelimited":
        slack_state.rate_limit("views.open", times=4, retry_after=0)  # slack_sdk retries 3 times
    else:
        slack_state.fail("views.open", failure)
    r = await sender.command("Printer")
    assert r.status_code == 200
    message = (await eventually(lambda: told(slack_state)))[0]
    assert message["channel"] == "C111" and "could not open the ticket form" in message["text"] and words in message["text"]


async def test_a_form_that_does_not_open_is_told_in_a_dm_where_the_bot_cannot_post(sender, slack):
    slack_state, _ = slack
    slack_state.add_channel("C999", "private-ish", bot_is_member=False)
    slack_state.fail("views.open", "expired_trigger_id")
    await sender.command("Printer", channel_id="C999", channel_name="private-ish")
    message = (await eventually(lambda: told(slack_state)))[0]
    assert message["channel"] == "U111" and "could not open the ticket form" in message["text"]


async def test_the_shortcut_tells_the_person_when_its_form_does_not_open(sender, slack):
    slack_state, _ = slack
    slack_state.fail("views.open", "expired_trigger_id")
    body = shortcut()
    r = await sender.interactive(body)
    assert r.status_code == 200
    message = (await eventually(lambda: told(slack_state, "W111")))[0]
    assert "could not open the ticket form" in message["text"]


async def test_the_home_button_tells_the_person_when_its_form_does_not_open(sender, slack):
    slack_state, _ = slack
    slack_state.fail("views.open", "expired_trigger_id")
    action = {"type": "block_actions", "user": {"id": "U111"}, "team": {"id": "T111"}, "trigger_id": "home.2",
              "container": {"type": "view", "view_id": "VH"}, "view": {"id": "VH", "type": "home", "blocks": [], "state": {"values": {}}},
              "actions": [{"type": "button", "action_id": "home_new_ticket", "block_id": "x", "value": "new"}]}
    assert (await sender.interactive(action)).status_code == 200
    message = (await eventually(lambda: told(slack_state)))[0]
    assert message["channel"] == "U111" and "could not open the ticket form" in message["text"]  # a DM: no channel here


# --- a form that cannot be loaded -----------------------------------------------------------------


@pytest.mark.parametrize("error", [
    BackendError("Rezolve.ai answered 503 for the ticket types", status=503, transient=True),
    TypeError("list indices must be integers or slices, not str"),  # an answer the client could not read
])
@pytest.mark.parametrize("how", ["command", "shortcut"])
async def test_a_form_that_cannot_be_loaded_is_explained_in_plain_words(sender, slack, running, error, how):
    slack_state, _ = slack

    async def unavailable(values):
        raise error

    running.bot.backends["serval"].form_fields_for = unavailable
    if how == "command":
        r, elapsed = await timed(sender.command("Printer", trigger_id="unavailable.1"))
    else:
        body = shortcut()
        body["trigger_id"] = "unavailable.1"
        r, elapsed = await timed(sender.interactive(body))
    assert r.status_code == 200 and elapsed < 1.0  # not Bolt's 404 after 3 s
    call = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == "unavailable.1"])
    text = json.dumps(call[0]["args"]["view"])
    assert "The ticket form cannot be shown right now" in text and "try again in a minute" in text
    assert "list indices" not in text  # no internals


async def test_an_error_after_the_ack_is_told_not_answered_404(sender, slack, running):
    """Bolt answers a listener that raised right after its ack with nothing (404 after 3 s)."""
    slack_state, _ = slack

    async def broken(thread_keys):
        raise RuntimeError("database is locked")

    running.bot.storage.taken_threads = broken  # the thread's look-up, after the form opened
    r, elapsed = await timed(sender.interactive(shortcut()))
    assert r.status_code == 200 and elapsed < 1.0
    message = (await eventually(lambda: told(slack_state, "W111")))[0]
    assert "Something went wrong" in message["text"] and "database is locked" not in message["text"]


# --- the shortcut opens its form first ------------------------------------------------------------


async def test_the_shortcut_opens_its_form_without_asking_slack_for_the_link(sender, slack):
    slack_state, _ = slack
    body = shortcut()
    body["trigger_id"] = "first.sc"
    r = await sender.interactive(body)
    assert r.status_code == 200
    await eventually(lambda: slack_state.calls_to("views.open"))
    # auth.test (asked once, at start) is the only Slack call before the form: no chat.getPermalink
    # (what follows the open, such as the similar-tickets look-up, cannot delay it)
    methods = [c["method"] for c in slack_state.calls]
    assert methods[: methods.index("views.open") + 1] == ["auth.test", "views.open"]
    for i in range(3):
        body = shortcut()
        body["trigger_id"] = f"again.{i}"
        await sender.interactive(body)
    await eventually(lambda: len(slack_state.calls_to("views.open")) == 4)
    assert len(slack_state.calls_to("auth.test")) == 1 and slack_state.calls_to("chat.getPermalink") == []


async def test_before_auth_test_answers_the_link_is_added_to_the_open_form(tmp_path, slack, serval):
    from server.http import serve_http
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    slack_state.rate_limit("auth.test", times=1, retry_after=1)  # the workspace is not known for a second
    running = await serve_http(make_settings(tmp_path, slack_url, serval[1]), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        body = shortcut()
        body["trigger_id"] = "cold.1"
        r, elapsed = await timed(sender.interactive(body))
        assert r.status_code == 200 and elapsed < 0.5
        opened = (await eventually(lambda: slack_state.calls_to("views.open")))[0]
        description = block(opened["args"]["view"], "description")["element"]["initial_value"]
        assert "Slack message:" not in description  # opened at once, without the link
        update = (await slack_state.wait_for("views.update", timeout=5))[0]["args"]
        assert update["view_id"] == opened["response"]["view"]["id"] and update["hash"] == opened["response"]["view"]["hash"]
        assert block(update["view"], "description")["element"]["initial_value"].endswith(
            "https://example.slack.com/archives/C111/p1583636382000300")
    finally:
        await sender.aclose()
        await running.close()


async def test_documented_shortcut_payloads_open_the_form(sender, slack):
    for name in ("message_shortcut.slack-docs.json", "message_shortcut.DERIVED.thread_reply.json"):
        body = payload(name)
        body["callback_id"] = "create_ticket"
        body["trigger_id"] = f"doc.{name}"
        assert (await sender.interactive(body)).status_code == 200
    await eventually(lambda: len(slack[0].calls_to("views.open")) == 2)
    assert [c for c in slack[0].calls_to("views.open") if c.get("error")] == []
