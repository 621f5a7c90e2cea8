"""manifest.yml validates against Slack's schema, asks for exactly the scopes the bot uses and
subscribes to exactly the events it handles."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.slack import views
from tests.conftest import eventually, make_settings, payload, select_value, submission
from tests.test_events import event, thread_replies
from tests.test_ticket_flow import filled, open_modal_with_command, open_modal_with_shortcut, shortcut

ROOT = Path(__file__).parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
# Web API method → the bot scopes it needs (Slack's method reference). Methods not listed need none.
METHOD_SCOPES = {
    "chat.postMessage": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.update": {"chat:write"},
    "users.info": {"users:read", "users:read.email"},  # .email: the profile e-mail used for matching
    "users.lookupByEmail": {"users:read.email"},
    "chat.unfurl": {"links:write"},
}
# conversations.* need the scope of the conversation's kind (public C…, private G…, DM D…).
CONVERSATION_SCOPES = {
    "conversations.info": {"C": "channels:read", "G": "groups:read", "D": "im:read"},
    "conversations.replies": {"C": "channels:history", "G": "groups:history", "D": "im:history"},
    "conversations.history": {"C": "channels:history", "G": "groups:history", "D": "im:history"},
}
# Bot event subscription → the scope Slack requires for it (the events' reference pages).
EVENT_SCOPES = {
    "app_home_opened": set(),
    "reaction_added": {"reactions:read"},
    "app_mention": {"app_mentions:read"},
    "message.channels": {"channels:history"},
    "message.groups": {"groups:history"},
    "message.im": {"im:history"},
    "function_executed": set(),  # a workflow step of the app's own (manifest `functions`)
    "link_shared": {"links:read"},
}
TICKET_URL = "https://app.serval.com/tickets/{id}"


@pytest.fixture
def settings(tmp_path, slack, serval):
    """Ticket links on, so that a pasted one unfolds (link_shared, chat.unfurl)."""
    return make_settings(tmp_path, slack[1], serval[1], serval_ticket_url=TICKET_URL)


def scopes_of(call: dict) -> set[str]:
    if call["method"] in CONVERSATION_SCOPES:
        return {CONVERSATION_SCOPES[call["method"]][call["args"]["channel"][0]]}
    return METHOD_SCOPES.get(call["method"], set())


def test_manifest_validates_against_slacks_schema():
    schema = json.loads((Path(__file__).parent / "manifest.schema.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(MANIFEST)]
    assert errors == []


def test_manifest_declares_the_command_shortcut_and_socket_mode():
    features = MANIFEST["features"]
    assert [c["command"] for c in features["slash_commands"]] == ["/ticket"]
    assert [(s["type"], s["callback_id"]) for s in features["shortcuts"]] == [("message", "create_ticket"),
                                                                             ("message", "add_to_ticket")]
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["settings"]["socket_mode_enabled"] is True
    # the workflow step: declared, org-ready, run by this app (docs/slack-native.md)
    step = MANIFEST["functions"]["create_ticket"]
    assert {k for k, v in step["input_parameters"].items() if v["is_required"]} == {"title", "requester"}
    assert step["input_parameters"]["requester"]["type"] == "slack#/types/user_id"
    assert step["input_parameters"]["channel"]["type"] == "slack#/types/channel_id"
    assert set(step["output_parameters"]) == {"ticket_id", "ticket_url", "ticket_system"}
    assert MANIFEST["settings"]["org_deploy_enabled"] is True and MANIFEST["settings"]["function_runtime"] == "remote"
    # ticket links: the domain of the example SERVAL_TICKET_URL, and Socialboards' inbox
    assert {"app.serval.com", "inbox.socialboards.com"} <= set(features["unfurl_domains"])
    # people write to the bot in its Messages tab: each message gets a Create ticket button
    home = features["app_home"]
    assert home["messages_tab_enabled"] is True and home["messages_tab_read_only_enabled"] is False


async def handled(slack_state, before: int) -> bool:
    """The bot did something (called Slack) after the `before`-th call."""
    return await eventually(lambda: len(slack_state.calls) > before, timeout=10)


async def test_manifest_scopes_and_events_are_exactly_those_the_bot_uses(running, sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "Scopes")
    await sender.interactive(submission(view, filled("Scopes", share=True)))
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    await sender.interactive(submission(view, filled("From a message")))
    await eventually(lambda: len(slack_state.calls_to("chat.postEphemeral")) == 2)
    used = {"commands"}  # slash command and shortcut

    # /ticket config in a public and a private channel, making them request channels
    for channel, intake in (("C111", "button"), ("G111", "auto")):
        trigger = f"{channel}.cfg"
        await sender.command("config", user_id="UADMIN", trigger_id=trigger, channel_id=channel)
        opened = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
        values = {"field:type": select_value("TICKET_TYPE_REQUEST"), views.INTAKE_BLOCK: select_value(intake)}
        await sender.interactive(submission(opened[0]["response"]["view"], values, user_id="UADMIN"))
        await eventually(lambda: [c for c in slack_state.calls_to("conversations.info") if c["args"]["channel"] == channel])

    # every event subscription, each handled: a reaction, a mention in a thread, a message in a
    # public and a private request channel, a direct message, the Home tab
    root = slack_state.post_user_message("C123", "W111", "Reacted to")
    in_private = slack_state.post_user_message("G111", "U222", "Private request")
    mention_root = slack_state.post_user_message("C123", "U222", "Root of a thread")
    mention = slack_state.post_user_message("C123", "U111", "<@UBOT> file it", thread_ts=mention_root["ts"])
    linked = serval[0].create_ticket({"teamId": "team-it", "name": "Linked"})  # a pasted link to it unfolds
    slack_state.app_functions, slack_state.unfurl_domains = MANIFEST["functions"], MANIFEST["features"]["unfurl_domains"]
    pasted = slack_state.post_user_message("C123", "U222", f"See <{TICKET_URL.format(id=linked['id'])}>")
    deliveries = {
        "reaction_added": event("reaction_added.bolt-tests.json", reaction="ticket",
                                item={"type": "message", "channel": "C123", "ts": root["ts"]}),
        "app_mention": event("app_mention.DERIVED.thread_reply.json", channel="C123", user="U111", ts=mention["ts"],
                             thread_ts=mention_root["ts"], text=mention["text"]),
        "message.channels": event("message.bolt-tests.channels_plain.json", ts=slack_state.next_ts(), user="U111"),
        "message.groups": event("message.slack-docs.groups.json", channel="G111", user="U222", text=in_private["text"],
                                ts=in_private["ts"], event_ts=in_private["ts"]),
        "message.im": event("message.real-capture.im.json"),
        "function_executed": {**payload("function_executed.DERIVED.create_ticket.json"),
                              "event": slack_state.function_executed_event("create_ticket", {
                                  "title": "From a workflow", "requester": "U111"})},
        "link_shared": {**payload("link_shared.DERIVED.ticket_link.json"),
                        "event": slack_state.link_shared_event("C123", pasted)},
        "app_home_opened": {"type": "event_callback", "event_id": "EvHOME", "team_id": "T111", "api_app_id": "A111",
                            "event": {"type": "app_home_opened", "user": "U111", "channel": "D0LFFBKLZ", "tab": "home",
                                      "event_ts": "1.1"}},
    }
    for subscription, body in deliveries.items():
        before = len(slack_state.calls)
        r = await sender.event(body)
        assert r.status_code == 200
        assert await handled(slack_state, before), subscription
        used |= EVENT_SCOPES[subscription]
    await thread_replies(slack_state, "C123", root["ts"])  # read with conversations.replies, then filed
    await thread_replies(slack_state, "G111", in_private["ts"])
    await thread_replies(slack_state, "C123", mention_root["ts"])
    await running.bot.tickets.idle(10)
    assert sorted(MANIFEST["settings"]["event_subscriptions"]["bot_events"]) == sorted(deliveries)

    for call in slack_state.calls:
        used |= scopes_of(call)
    assert sorted(MANIFEST["oauth_config"]["scopes"]["bot"]) == sorted(used)
