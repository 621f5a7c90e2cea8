"""Request channels and the ticket emoji as route settings (issue 14): `intake: off | button | auto`
and `reaction_emoji` in the routing file and in `/ticket config`, which warns when intake is set in
a channel the bot is not in (conversations.info's `is_member`)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from bot.slack import views
from bot.routing import RoutingError, load_routing_file
from tests.conftest import eventually, select_value, submission, text_value
from tests.test_events import deliver, event, thread_replies
from tests.test_ticket_flow import block


async def open_config(sender: Any, slack_state: Any, channel: str = "C111") -> dict[str, Any]:
    trigger = f"{time.time_ns()}.cfg"
    r = await sender.command("config", user_id="UADMIN", trigger_id=trigger, channel_id=channel)
    assert r.status_code == 200 and not r.content
    call = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
    return call[0]["response"]["view"]


async def save(sender: Any, slack_state: Any, view: dict[str, Any], values: dict[str, Any]) -> str:
    values = {"field:type": select_value("TICKET_TYPE_REQUEST")} | values  # the form's required field
    r = await sender.interactive(submission(view, values, user_id="UADMIN"))
    answer = r.json()
    if answer["response_action"] == "errors":
        return json.dumps(answer["errors"])

    def saved() -> str:
        updates = [c for c in slack_state.calls_to("views.update") if c["args"]["view_id"] == view["id"]]
        text = json.dumps(updates[-1]["args"]["view"]) if updates else ""
        return text if "Saved" in text or "Only" in text else ""

    return await eventually(saved)


def intake(value: str) -> dict[str, Any]:
    return {views.INTAKE_BLOCK: select_value(value)}


async def test_config_sets_intake_and_the_emoji_and_they_apply_at_once(running, sender, slack, serval):
    slack_state, serval_state = slack[0], serval[0]
    view = await open_config(sender, slack_state)
    assert block(view, views.INTAKE_BLOCK)["element"]["initial_option"]["value"] == "off"
    assert [o["value"] for o in block(view, views.INTAKE_BLOCK)["element"]["options"]] == ["off", "button", "auto"]
    assert block(view, views.EMOJI_BLOCK)["element"]["placeholder"]["text"] == "ticket"
    notice = await save(sender, slack_state, view, intake("auto") | {views.EMOJI_BLOCK: text_value(":SOS:")})
    assert "becomes a ticket" in notice and ":sos:" in notice and "not a member" not in notice
    assert [c["args"]["channel"] for c in slack_state.calls_to("conversations.info")] == ["C111"]
    route = await running.bot.router.route("C111")
    assert (route.intake, route.reaction_emoji, route.sources["intake"]) == ("auto", "sos", "slack")

    message = slack_state.post_user_message("C111", "U222", "Coffee machine leaks")
    await deliver(sender, event("message.bolt-tests.channels_plain.json", user="U222", text=message["text"],
                                ts=message["ts"], event_ts=message["ts"]))
    await thread_replies(slack_state, "C111", message["ts"])
    await running.bot.tickets.idle(5)
    assert [t["name"] for t in serval_state.tickets.values()] == ["Coffee machine leaks"]

    view = await open_config(sender, slack_state)  # the form shows what is set
    assert block(view, views.INTAKE_BLOCK)["element"]["initial_option"]["value"] == "auto"
    assert block(view, views.EMOJI_BLOCK)["element"]["initial_value"] == "sos"


@pytest.mark.parametrize("channel, how", [("C999", "is_member false"), ("G999", "channel_not_found")])
async def test_config_warns_when_intake_is_set_where_the_bot_is_not(running, sender, slack, channel, how):
    slack_state = slack[0]
    if how == "is_member false":
        slack_state.add_channel(channel, "help", bot_is_member=False)
    view = await open_config(sender, slack_state, channel)
    if how == "channel_not_found":
        slack_state.fail("conversations.info", "channel_not_found")  # a private channel the bot is not in
    notice = await save(sender, slack_state, view, intake("button"))
    assert "Create ticket* button" in notice and "not a member of" in notice and f"<#{channel}>" in notice
    assert "/invite" in notice


async def test_no_warning_without_intake_and_none_when_slack_cannot_say(running, sender, slack):
    slack_state = slack[0]
    slack_state.add_channel("C998", "quiet", bot_is_member=False)
    view = await open_config(sender, slack_state, "C998")
    assert "not a member" not in await save(sender, slack_state, view, intake("off"))
    assert slack_state.calls_to("conversations.info") == []
    view = await open_config(sender, slack_state, "C111")
    slack_state.fail("conversations.info", "ratelimited")
    assert "not a member" not in await save(sender, slack_state, view, intake("auto"))


async def test_a_bad_emoji_is_shown_beside_the_field(running, sender, slack):
    view = await open_config(sender, slack[0])
    errors = await save(sender, slack[0], view, {views.EMOJI_BLOCK: text_value("two words")})
    assert views.EMOJI_BLOCK in errors


def test_the_routing_file_takes_intake_and_emoji(tmp_path):
    path = tmp_path / "routing.yml"
    path.write_text("channels:\n  C111:\n    intake: auto\n    reaction_emoji: ':Fire:'\n  C222:\n    intake: button\n")
    routes = load_routing_file(str(path), {"serval"})
    assert (routes["C111"].intake, routes["C111"].reaction_emoji, routes["C222"].intake) == ("auto", "fire", "button")
    for bad, words in (("intake: always", "channels.C111.intake"), ("reaction_emoji: 'a b'", "channels.C111.reaction_emoji")):
        path.write_text(f"channels:\n  C111:\n    {bad}\n")
        with pytest.raises(RoutingError, match=words):
            load_routing_file(str(path), {"serval"})


async def test_a_routing_file_request_channel(tmp_path, slack, serval):
    from server.http import serve_http
    from tests.conftest import SlackSender, make_settings

    path = tmp_path / "routing.yml"
    path.write_text("channels:\n  C123:\n    intake: auto\n")
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1], routing_file=str(path),
                                             retry_base_seconds=0.05), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        message = slack[0].post_user_message("C123", "U111", "Need access to the wiki")
        await deliver(sender, event("message.bolt-tests.channels_plain.json", channel="C123", user="U111",
                                    text=message["text"], ts=message["ts"], event_ts=message["ts"]))
        await thread_replies(slack[0], "C123", message["ts"])
        route = await running.bot.router.route("C123")
        assert (route.intake, route.sources["intake"]) == ("auto", "file")
    finally:
        await sender.aclose()
        await running.close()
