"""The live ticket card (the bot's reply in a ticket's thread, edited when the ticket changes), the
notice when a ticket is resolved or cancelled, and the small *Add a comment* form.

A card keeps its own first lines (what the reply said when it was posted) and adds what is known of
the ticket now: status, assignee, priority, due date, SLA breach time; its buttons follow the
ticket (*Close ticket* while open, *Reopen* when done) and what the ticket system can do."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clients.base import TicketState

from .text import escape, ticket_ref
from .views import EDIT_TICKET_ACTION as EDIT_ACTION  # *Edit details* stays on the card it was on

CLOSE_ACTION, REOPEN_ACTION, COMMENT_ACTION = "ticket_close", "ticket_reopen", "ticket_comment"
COMMENT_CALLBACK_ID = "ticket_comment_modal"
COMMENT_BLOCK = "comment"
STATE_BLOCK, ACTIONS_BLOCK = "ticket_state", "ticket_actions"


NEW = TicketState()  # what a card says before the ticket is first looked at: open, nobody assigned


@dataclass(frozen=True)
class Card:
    """What a card shows besides the ticket's state; stored with the followed ticket."""

    headline: str  # mrkdwn: the reply as it was posted (it names the ticket, with its link when there is one)
    key: str  # the buttons' value: "<back end>|<ticket id>"
    edit: str | None = None  # *Edit details*' value (the submission id), when the ticket can be edited
    can_close: bool = False
    can_comment: bool = False
    minimal: bool = False  # in a channel shared with another organisation: id and status only (SHARED_CHANNEL_DETAILS)


def key(backend: str, ticket_id: str) -> str:
    return f"{backend}|{ticket_id}"


def parse_key(value: str) -> tuple[str, str] | None:
    backend, sep, ticket_id = (value or "").partition("|")
    return (backend, ticket_id) if sep and backend and ticket_id else None


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "value": value,
                              "text": {"type": "plain_text", "text": text}}
    if style:
        button["style"] = style
    return button


def state_line(state: TicketState, *, minimal: bool = False) -> str:
    """"*Status:* In Progress · *Assignee:* Bob Baker · …": what is known, nothing else (`minimal`: the status)."""
    parts = [f"*Status:* {escape(state.status or state.phase.capitalize())}"]
    if minimal:
        return parts[0]
    parts.append(f"*Assignee:* {escape(state.assignee)}" if state.assignee else "*Assignee:* nobody yet")
    if state.priority:
        parts.append(f"*Priority:* {escape(state.priority)}")
    if state.due_date:
        parts.append(f"*Due:* {escape(state.due_date)}")
    if state.sla_breach_at and not state.closed:
        parts.append(f"*SLA breach:* {escape(state.sla_breach_at)}")
    return " · ".join(parts)


def card_message(card: Card, state: TicketState | None) -> dict[str, Any]:
    """The card's text and blocks (chat.postMessage and chat.update take both)."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": card.headline[:3000]}}]
    text = card.headline
    if state is not None:
        line = state_line(state, minimal=card.minimal)
        blocks.append({"type": "context", "block_id": STATE_BLOCK, "elements": [{"type": "mrkdwn", "text": line}]})
        text += "\n" + line
    buttons = []
    if card.edit:
        buttons.append(_button("Edit details", EDIT_ACTION, card.edit))
    if card.can_close:
        if state is not None and state.closed:
            buttons.append(_button("Reopen", REOPEN_ACTION, card.key))
        else:
            buttons.append(_button("Close ticket", CLOSE_ACTION, card.key))
    if card.can_comment:
        buttons.append(_button("Add a comment", COMMENT_ACTION, card.key))
    if buttons:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK, "elements": buttons})
    return {"text": text, "blocks": blocks}


def closed_notice(display_id: str, title: str, state: TicketState, *, by: str | None, by_user: str | None,
                  key_value: str | None, url: str | None = None, minimal: bool = False) -> dict[str, Any]:
    """The one short notice when a ticket is resolved or cancelled, with *Reopen* where it can be
    (`minimal`: no link and no agent's name, for a channel shared with another organisation)."""
    verb = "was cancelled" if state.phase == "canceled" else "was resolved"
    icon = ":no_entry_sign:" if state.phase == "canceled" else ":white_check_mark:"
    if minimal:
        url, by = None, None
    who = f" by <@{by_user}>" if by_user else (f" by {escape(by)}" if by else "")
    text = f"{icon} Ticket {ticket_ref(display_id, url)} {verb}{who}: {escape(title)}"
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}]
    if key_value:
        blocks.append({"type": "actions", "block_id": ACTIONS_BLOCK,
                       "elements": [_button("Reopen", REOPEN_ACTION, key_value)]})
    return {"text": text, "blocks": blocks}


def comment_modal(key_value: str) -> dict[str, Any]:
    """*Add a comment*: opened at once with the click's trigger (who may comment is checked on submit)."""
    return {
        "type": "modal",
        "callback_id": COMMENT_CALLBACK_ID,
        "private_metadata": key_value,
        "title": {"type": "plain_text", "text": "Add a comment"},
        "submit": {"type": "plain_text", "text": "Add"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [{
            "type": "input",
            "block_id": COMMENT_BLOCK,
            "label": {"type": "plain_text", "text": "Your comment"},
            "hint": {"type": "plain_text", "text": "It is added to the ticket as your message."},
            "element": {"type": "plain_text_input", "action_id": "value", "multiline": True, "max_length": 3000},
        }],
    }
