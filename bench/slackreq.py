"""Requests as Slack sends them: form-encoded, signed with the signing secret (v0 HMAC-SHA256).

Bodies are built and signed before a measurement starts, so the load generator only sends.
Every request carries a unique tag (trigger_id, ticket title) to correlate it with what the bot
later does at the fake Slack and at Serval.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from typing import Any

from slack_sdk.signature import SignatureVerifier

TITLE_RE = re.compile(r"#bench-([A-Za-z0-9]+)-(\d+)")
KINDS = ("command", "shortcut", "submission")


class Signer:
    def __init__(self, secret: str) -> None:
        self.verifier = SignatureVerifier(secret)

    def sign(self, body: str) -> tuple[bytes, dict[str, str]]:
        ts = str(int(time.time()))
        return body.encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": self.verifier.generate_signature(timestamp=ts, body=body),
        }


def trigger_id(tag: str, i: int) -> str:
    return f"{i + 1}.111.bench{tag}"


def title(tag: str, i: int) -> str:
    return f"Printer on floor 3 is jammed #bench-{tag}-{i}"


def command(tag: str, i: int) -> str:
    return urllib.parse.urlencode({
        "token": "verification_token", "team_id": "T111", "team_domain": "bench",
        "channel_id": "C111", "channel_name": "dev", "user_id": "U111", "user_name": "alice",
        "command": "/ticket", "text": "Printer on floor 3 is jammed",
        "api_app_id": "A111", "is_enterprise_install": "false",
        "response_url": "https://hooks.slack.com/commands/T111/1/bench",
        "trigger_id": trigger_id(tag, i),
    })


def shortcut(tag: str, i: int) -> str:
    ts = f"{1_700_000_000 + i}.{i % 1_000_000:06d}"
    payload = {
        "type": "message_action", "token": "verification_token", "action_ts": ts,
        "team": {"id": "T111", "domain": "bench"}, "user": {"id": "U111", "name": "alice"},
        "channel": {"id": "C111", "name": "dev"}, "callback_id": "create_ticket",
        "trigger_id": trigger_id(tag, i), "message_ts": ts,
        "message": {"type": "message", "user": "U222", "ts": ts, "team": "T111",
                    "text": "The printer on floor 3 is jammed again <@U111>, can someone look?\nIt blinks red."},
        "response_url": "https://hooks.slack.com/app/T111/1/bench",
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def _input(block_id: str, label: str, element: dict[str, Any], optional: bool = False) -> dict[str, Any]:
    return {"type": "input", "block_id": block_id, "optional": optional, "dispatch_action": False,
            "label": {"type": "plain_text", "text": label, "emoji": True}, "element": element}


# The blocks of the modal `/ticket` opens (command, channel C111), as Slack echoes them back.
MODAL_BLOCKS = [
    _input("title", "Title", {"type": "plain_text_input", "action_id": "value", "max_length": 250,
                              "initial_value": "Printer on floor 3 is jammed"}),
    _input("description", "Description", {"type": "plain_text_input", "action_id": "value",
                                          "multiline": True, "max_length": 3000}, optional=True),
    _input("field:type", "Type", {"type": "static_select", "action_id": "value", "options": [
        {"text": {"type": "plain_text", "text": "Request"}, "value": "TICKET_TYPE_REQUEST"},
        {"text": {"type": "plain_text", "text": "Incident"}, "value": "TICKET_TYPE_INCIDENT"}]}),
    _input("field:due_date", "Due date", {"type": "datepicker", "action_id": "value"}, optional=True),
    _input("share", "Channel", {"type": "checkboxes", "action_id": "value", "options": [
        {"text": {"type": "mrkdwn", "text": "Share in <#C111> and sync the thread"}, "value": "share"}]},
        optional=True),
]


DESCRIPTION = "It blinks red and shows error E-42.\nTried turning it off and on."
DEFAULT_TEMPLATE = {
    "type": "modal", "callback_id": "ticket_modal", "blocks": MODAL_BLOCKS,
    "private_metadata": '{"source":"command","channel_id":"C111","channel_name":"dev"}',
    "title": {"type": "plain_text", "text": "New ticket"},
    "submit": {"type": "plain_text", "text": "Create"}, "close": {"type": "plain_text", "text": "Cancel"},
}


def state_values(blocks: list[dict[str, Any]], ticket_title: str) -> dict[str, Any]:
    """What a person filling in the form leaves in view.state: the title and description typed,
    every select on its initial option (a required one without: its first option; an optional one:
    left empty), dates and checkboxes ("share") left empty."""
    values: dict[str, Any] = {}
    for block in blocks:
        element = block.get("element") if block.get("type") == "input" else None
        if not isinstance(element, dict) or not block.get("block_id"):
            continue
        kind, action = element.get("type"), element.get("action_id") or "value"
        value: dict[str, Any] = {"type": kind}
        if kind == "plain_text_input":
            value["value"] = {"title": ticket_title, "description": DESCRIPTION}.get(
                block["block_id"], element.get("initial_value"))
        elif kind in ("static_select", "radio_buttons"):
            options = element.get("options") or [o for g in element.get("option_groups") or [] for o in g.get("options", [])]
            first = options[0] if options and not block.get("optional") else None  # required: pick one
            value["selected_option"] = element.get("initial_option") or first
        elif kind == "datepicker":
            value["selected_date"] = element.get("initial_date")
        elif kind in ("checkboxes", "multi_static_select"):
            value["selected_options"] = []
        values[block["block_id"]] = {action: value}
    return values


def submission(tag: str, i: int, view_id: str, template: dict[str, Any] | None = None) -> str:
    """A view_submission of the ticket modal; `template`: the view the bot opened (views.open)."""
    view = dict(template or DEFAULT_TEMPLATE)
    view.update({
        "id": view_id, "team_id": "T111", "state": {"values": state_values(view.get("blocks") or [], title(tag, i))},
        "hash": f"1700000000.{i:08d}", "previous_view_id": None, "root_view_id": view_id, "app_id": "A111",
        "external_id": "", "app_installed_team_id": "T111", "bot_id": "B111",
        "clear_on_close": False, "notify_on_close": False,
    })
    payload = {
        "type": "view_submission", "team": {"id": "T111", "domain": "bench"},
        "user": {"id": "U111", "username": "alice", "name": "alice", "team_id": "T111"},
        "api_app_id": "A111", "token": "verification_token", "trigger_id": trigger_id(tag, i),
        "view": view, "response_urls": [], "is_enterprise_install": False, "enterprise": None,
    }
    return urllib.parse.urlencode({"payload": json.dumps(payload)})


def build(kind: str, tag: str, i: int, view_id: str | None = None, template: dict[str, Any] | None = None) -> str:
    if kind == "command":
        return command(tag, i)
    if kind == "shortcut":
        return shortcut(tag, i)
    return submission(tag, i, view_id or f"VBENCH{tag}{i}", template)
