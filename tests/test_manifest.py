"""manifest.yml validates against Slack's schema and asks for exactly the scopes the bot uses."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from tests.conftest import eventually, payload, submission
from tests.test_ticket_flow import filled, open_modal_with_command, open_modal_with_shortcut, shortcut

ROOT = Path(__file__).parent.parent
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())
# Web API method → the bot scopes it needs (Slack's method reference). Methods not listed need none.
METHOD_SCOPES = {
    "chat.postMessage": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "chat.update": {"chat:write"},
    "users.info": {"users:read", "users:read.email"},  # .email: the profile e-mail used for matching
    "conversations.info": {"channels:read"},
    "conversations.replies": {"channels:history"},
    "users.lookupByEmail": {"users:read.email"},
}


def test_manifest_validates_against_slacks_schema():
    schema = json.loads((Path(__file__).parent / "manifest.schema.json").read_text())
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(MANIFEST)]
    assert errors == []


def test_manifest_declares_the_command_shortcut_and_socket_mode():
    features = MANIFEST["features"]
    assert [c["command"] for c in features["slash_commands"]] == ["/ticket"]
    assert [(s["type"], s["callback_id"]) for s in features["shortcuts"]] == [("message", "create_ticket")]
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["settings"]["socket_mode_enabled"] is True


async def test_manifest_scopes_are_exactly_those_the_bot_uses(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "Scopes")
    await sender.interactive(submission(view, filled("Scopes", share=True)))
    view = await open_modal_with_shortcut(sender, slack_state, shortcut())
    await sender.interactive(submission(view, filled("From a message")))
    await eventually(lambda: len(slack_state.calls_to("chat.postEphemeral")) == 2)
    used = {"commands"}  # slash command and shortcut
    for call in slack_state.calls:
        used |= METHOD_SCOPES.get(call["method"], set())
    assert sorted(MANIFEST["oauth_config"]["scopes"]["bot"]) == sorted(used)
