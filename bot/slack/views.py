"""Block Kit builders: the ticket modal, its progress/result screens, and the bot's messages.

Every function returns plain dicts ready for the Web API. The per-request builders (the ticket modal
and the notices) write the dicts out directly: slack_sdk's Block Kit models cost ~3.5 ms of CPU per
ticket modal (each `to_dict()` validates every nested object through `dir()`/`getattr`), most of
the work of answering /ticket. The rarer views (channel settings, Home tab) still use the models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    CheckboxesElement,
    InputBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    ActionsBlock,
    ButtonElement,
    DividerBlock,
    HeaderBlock,
    StaticSelectElement,
)
from slack_sdk.models.metadata import (
    EntityAttributes, EntityCustomField, EntityMetadata, EntityPayload, EntityStringField, EntityTitle,
    EntityTypedField, ExternalRef, TaskEntityFields,
)
from slack_sdk.models.views import View

from clients.base import CreatedTicket, FormField, TicketCard, TicketSummary

from ..journal.storage import journaled
from .text import (  # noqa: F401 (the bot's words, also used through `views`)
    SLACK_TEXT_LIMIT, TITLE_PREFILL_LENGTH,
    escape, escape_warning, plain, shorten, title_from_message, message_from, app_name, message_text, alert_from, description_from_message, quoted, typed_back, help_text, thread_reply_text, shared_ticket_text, created_text, failed_text, not_member_warning, already_ticket_text, followup_text, added_text, linked_reply_text, failed_from_message_text, ticket_ref,
)

MODAL_CALLBACK_ID = "ticket_modal"
CONFIG_CALLBACK_ID = "channel_config"
SHORTCUT_CALLBACK_ID = "create_ticket"
HOME_NEW_TICKET = "home_new_ticket"
TITLE_BLOCK, DESCRIPTION_BLOCK, SHARE_BLOCK, ON_BEHALF_BLOCK = "title", "description", "share", "on_behalf"
BACKEND_BLOCK = "backend"
FIELD_BLOCK_PREFIX = "field:"
VALUE = "value"  # action_id of every input
MAX_OPTIONS = 100


@dataclass
class Origin:
    """Where a modal was opened from; travels in the modal's private_metadata."""

    source: str  # "command" | "shortcut"
    channel_id: str | None = None
    channel_name: str | None = None
    thread_ts: str | None = None  # shortcut: the thread root to reply in and connect
    message_ts: str | None = None  # shortcut: the message itself (its thread's history is copied, not it)
    requester_id: str | None = None  # shortcut: the message's author
    backend: str | None = None  # the ticket system this form was built for; None = default
    team_id: str | None = None  # the channel's team when the form has no team field

    def dump(self) -> str:
        # vars(), not asdict(): every field is a plain string and asdict() deep-copies (slow, per modal)
        return json.dumps({k: v for k, v in vars(self).items() if v is not None}, separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> "Origin":
        try:
            return journaled(cls, json.loads(raw or "{}"))
        except (ValueError, TypeError):
            return cls(source="command")

    @property
    def shareable_channel(self) -> bool:
        """A channel the bot could post in: public/private channels, not DMs."""
        return bool(self.channel_id) and self.channel_id[0] in "CG"


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool | None = None,
           hint: str | None = None, dispatch_action: bool | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": _plain(label), "element": element}
    if optional is not None:
        block["optional"] = optional
    if hint:
        block["hint"] = _plain(hint)
    if dispatch_action is not None:
        block["dispatch_action"] = dispatch_action
    return block


def _text_input(*, initial_value: str | None, max_length: int, multiline: bool | None = None,
                placeholder: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": VALUE}
    if multiline is not None:
        element["multiline"] = multiline
    if initial_value:
        element["initial_value"] = initial_value
    element["max_length"] = max_length
    if placeholder:
        element["placeholder"] = _plain(placeholder)
    return element


_FIELD_BLOCKS: dict[tuple[int, Any], tuple[FormField, dict[str, Any]]] = {}
FIELD_BLOCKS_KEPT = 1024


def _field_block(f: FormField, value: Any = None) -> dict[str, Any]:
    """The field's input block. The same field (a back end gives the same objects until its catalog
    changes) with the same value gives the same block, built once: every form has these blocks, and
    nothing changes a view once built (Slack's answers are parsed anew)."""
    try:
        key = (id(f), value)
        kept = _FIELD_BLOCKS.get(key)
    except TypeError:  # an unhashable value
        return _build_field_block(f, value)
    if kept is not None and kept[0] is f:
        return kept[1]
    if len(_FIELD_BLOCKS) >= FIELD_BLOCKS_KEPT:
        _FIELD_BLOCKS.clear()
    block = _build_field_block(f, value)
    _FIELD_BLOCKS[key] = (f, block)  # the field kept with it: its id is not reused meanwhile
    return block


def _build_field_block(f: FormField, value: Any = None) -> dict[str, Any]:
    element: dict[str, Any]
    initial = f.default if value in (None, "") else str(value)
    if f.kind in ("text", "multiline", "number"):
        element = _text_input(
            multiline=f.kind == "multiline",
            initial_value=initial or None,
            max_length=min(f.max_length or SLACK_TEXT_LIMIT, SLACK_TEXT_LIMIT),
        )
    elif f.kind == "select":
        options = [{"text": _plain(o.label[:75]), "value": o.value[:150]} for o in f.options[:MAX_OPTIONS]]
        element = {"type": "static_select", "action_id": VALUE, "options": options}
        chosen = next((o for o in options if o["value"] == initial), None)
        if chosen:
            element["initial_option"] = dict(chosen)
    elif f.kind == "date":
        element = {"type": "datepicker", "action_id": VALUE}
        if initial:
            element["initial_date"] = initial
    else:  # pragma: no cover - FieldKind is closed
        raise ValueError(f"unknown field kind {f.kind}")
    return _input(
        FIELD_BLOCK_PREFIX + f.id,
        f.label[:2000],
        element,
        optional=not f.required,
        hint=f.hint,
        dispatch_action=True if f.refreshes_form else None,
    )


def ticket_modal(
    origin: Origin,
    fields: list[FormField],
    *,
    title: str = "",
    description: str = "",
    share_default: bool = False,
    title_max_length: int = 250,
    description_max_length: int = SLACK_TEXT_LIMIT,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    on_behalf: bool = False,
    requester_id: str | None = None,
) -> dict[str, Any]:
    """The ticket form. `values`: earlier answers by field id; `errors`: messages to show beside
    fields (by field id, or "title"/"description"), and under "" one for the whole form."""
    values, errors = values or {}, errors or {}
    blocks: list[dict[str, Any]] = []

    def error_note(key: str) -> None:
        if errors.get(key):
            blocks.append(_context(f":warning: {escape(errors[key])}"))

    if errors.get(""):
        blocks.append(_section(f":x: {escape(errors[''])}"))
    # Read top-down: what the ticket is about first (title, description), then who and the rest.
    title_max = min(title_max_length, SLACK_TEXT_LIMIT)
    description_max = min(description_max_length, SLACK_TEXT_LIMIT)
    blocks.append(_input(TITLE_BLOCK, "Title", _text_input(
        initial_value=shorten(title, title_max) or None, max_length=title_max,
        placeholder="What do you need help with?",
    )))
    error_note("title")
    blocks.append(_input(DESCRIPTION_BLOCK, "Description", _text_input(
        multiline=True, initial_value=description[:description_max] or None, max_length=description_max,
    ), optional=True))
    error_note("description")
    # Share right under what the person writes: a choice about this text, and visible in a
    # 1440×900 window whatever fields follow
    if origin.source == "command" and origin.shareable_channel:
        share = {"text": _mrkdwn(f"Share in <#{origin.channel_id}> and sync the thread"), "value": "share"}
        checkboxes: dict[str, Any] = {"type": "checkboxes", "action_id": VALUE, "options": [share]}
        if share_default:
            checkboxes["initial_options"] = [dict(share)]
        blocks.append(_input(SHARE_BLOCK, "Channel", checkboxes, optional=True))
    requester_id = requester_id or origin.requester_id
    if on_behalf:
        element: dict[str, Any] = {"type": "users_select", "action_id": VALUE}
        if requester_id:
            element["initial_user"] = requester_id
        blocks.append(_input(ON_BEHALF_BLOCK, "Requester", element, optional=True,
                             hint="Filing for someone else? Pick them; leave empty to file for yourself."))
        error_note("on_behalf")
    elif requester_id:
        blocks.append(_context(f"Requester: <@{requester_id}>"))
    for f in fields:
        blocks.append(_field_block(f, values.get(f.id)))
        error_note(f.id)
    return {
        "type": "modal",
        "callback_id": MODAL_CALLBACK_ID,
        "title": _plain("New ticket"),
        "submit": _plain("Create"),
        "close": _plain("Cancel"),
        "private_metadata": origin.dump(),
        "blocks": blocks,
    }


# "You already have a ticket about this": a section under the title, one block per suggestion.
SUGGESTIONS_BLOCK = "suggestions"
SUGGESTION_BLOCK_PREFIX = "suggestion:"
ADD_TO_TICKET_ACTION = "add_to_ticket"
# What views.update takes of a view Slack returned (the rest is Slack's: id, hash, state, ...).
VIEW_KEYS = ("type", "title", "blocks", "close", "submit", "private_metadata", "callback_id", "clear_on_close",
             "notify_on_close", "external_id", "submit_disabled")


def suggestion_value(summary: TicketSummary) -> str:
    """The button's value: the chosen ticket, as the service needs it (at most 2000 characters)."""
    t = summary.ticket
    data = {"id": t.id, "display_id": t.display_id, "backend": t.backend, "title": shorten(summary.title, 150)}
    if t.url and len(t.url) < 1000:
        data["url"] = t.url
    return json.dumps(data, separators=(",", ":"))[:2000]


def chosen_ticket(value: Any) -> tuple[CreatedTicket, str] | None:
    """The ticket (and its title) behind an *Add to this ticket instead* button; None if unreadable."""
    try:
        data = json.loads(value)
        ticket = CreatedTicket(id=str(data["id"]), display_id=str(data["display_id"]), backend=str(data["backend"]),
                               url=data.get("url"))
        return ticket, str(data.get("title") or "")
    except (TypeError, ValueError, KeyError):
        return None


def suggestion_blocks(summaries: list[TicketSummary]) -> list[dict[str, Any]]:
    """Up to three of the requester's open tickets that look like this one, each with a button."""
    if not summaries:
        return []
    blocks: list[dict[str, Any]] = [{
        "type": "context", "block_id": SUGGESTIONS_BLOCK,
        "elements": [_mrkdwn(":bulb: *You may already have a ticket about this.* Add to it instead of opening a new one?")],
    }]
    for i, s in enumerate(summaries[:3]):
        line = f"*{escape(s.ticket.display_id)}* {escape(shorten(s.title, 200))}"
        if s.status:
            line += f"\n_{escape(s.status)}_"
        blocks.append({
            "type": "section", "block_id": f"{SUGGESTION_BLOCK_PREFIX}{i}", "text": _mrkdwn(line),
            "accessory": {"type": "button", "action_id": ADD_TO_TICKET_ACTION, "text": _plain("Add to this ticket instead"),
                          "value": suggestion_value(s)},
        })
    return blocks


def with_suggestions(view: dict[str, Any], summaries: list[TicketSummary]) -> dict[str, Any]:
    """The open form `view` (as Slack returned it) with the suggestions under the title: every other
    block as it was, with its block_id and action_id, so Slack keeps what the person typed."""
    blocks = [b for b in view.get("blocks") or []
              if not str(b.get("block_id") or "").startswith((SUGGESTIONS_BLOCK, SUGGESTION_BLOCK_PREFIX))]
    at = next((i + 1 for i, b in enumerate(blocks) if b.get("block_id") == TITLE_BLOCK), 0)
    while at < len(blocks) and blocks[at].get("type") == "context" and blocks[at].get("block_id") != SUGGESTIONS_BLOCK \
            and ":warning:" in json.dumps(blocks[at]):  # the title's error note stays with it
        at += 1
    extra = suggestion_blocks(summaries)[: max(0, 100 - len(blocks))]
    out = {k: view[k] for k in VIEW_KEYS if view.get(k) not in (None, "")}
    out["blocks"] = blocks[:at] + extra + blocks[at:]
    return out


def adding_modal(display_id: str) -> dict[str, Any]:
    return notice_modal(f":hourglass_flowing_sand: Adding to ticket *{escape(display_id)}*…")


def notice_modal(text: str, *, title: str = "New ticket", extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A modal that only says something (progress, result, failure)."""
    return {"type": "modal", "title": _plain(title), "close": _plain("Close"),
            "blocks": [_section(text[:3000])] + (extra or [])}


def progress_modal(title: str) -> dict[str, Any]:
    return notice_modal(f":hourglass_flowing_sand: Creating your ticket…\n*{escape(title)}*")


def queued_modal(title: str, system: str) -> dict[str, Any]:
    return notice_modal(
        f":inbox_tray: {system} is slow to answer, so your ticket *{escape(title)}* is queued.\n"
        "You will get a message when it is created. You can close this window."
    )


def created_modal(display_id: str, title: str, url: str | None = None) -> dict[str, Any]:
    return notice_modal(f":white_check_mark: Ticket {ticket_ref(display_id, url)} created\n{escape(title)}")


def failed_modal(reason: str, title: str, description: str) -> dict[str, Any]:
    return notice_modal(
        f":x: The ticket could not be created: {escape_warning(reason)}\n\n{typed_back(title, description)}"
    )


def already_linked_modal(display_id: str | None) -> dict[str, Any]:
    if display_id:
        return notice_modal(f"This thread is already linked to ticket *{escape(display_id)}*.")
    return notice_modal("A ticket is already being created for this thread.")


def config_modal(
    channel_id: str,
    backends: list[tuple[str, str]],
    current_backend: str,
    fields: list[FormField],
    *,
    values: dict[str, Any],
    share: bool,
    intake: str = "off",
    reaction_emoji: str | None = None,
    default_emoji: str = "ticket",
    workspace: str | None = None,
) -> dict[str, Any]:
    """`/ticket config`: where tickets from this channel go, the form's defaults there, whether it
    is a request channel (`intake`) and which reaction files a ticket. `workspace`: with installs by
    OAuth, a line saying which workspace (and org) the channel's settings belong to."""
    blocks: list[Any] = [
        SectionBlock(text=MarkdownTextObject(text=f"Ticket settings for <#{channel_id}>. They apply to `/ticket` and *Create ticket* here."))
    ]
    if workspace:
        blocks.append({"type": "context", "block_id": "workspace", "elements": [{"type": "mrkdwn", "text": workspace}]})
    if len(backends) > 1:
        options = [Option(value=name, label=label) for name, label in backends]
        blocks.append(
            InputBlock(
                block_id=BACKEND_BLOCK,
                label="Ticket system",
                element=StaticSelectElement(
                    action_id=VALUE,
                    options=options,
                    initial_option=next((o for o in options if o.value == current_backend), None),
                ),
            )
        )
    for f in fields:
        blocks.append(_field_block(f, values.get(f.id)))
    option = Option(value="share", label="Share new tickets in the channel by default")
    blocks.append(
        InputBlock(
            block_id=SHARE_BLOCK,
            label="Sharing",
            optional=True,
            element=CheckboxesElement(action_id=VALUE, options=[option], initial_options=[option] if share else None),
        )
    )
    intake_options = [Option(value=value, label=label) for value, label in INTAKE_LABELS.items()]
    blocks.append(
        InputBlock(
            block_id=INTAKE_BLOCK,
            label="New messages in the channel",
            hint="A request channel: each new message gets a Create ticket button, or becomes a ticket. "
            "I must be a member of the channel.",
            element=StaticSelectElement(
                action_id=VALUE,
                options=intake_options,
                initial_option=next((o for o in intake_options if o.value == intake), intake_options[0]),
            ),
        )
    )
    blocks.append(_input(
        EMOJI_BLOCK, "Ticket reaction",
        _text_input(initial_value=reaction_emoji, max_length=100, placeholder=default_emoji),
        optional=True,
        hint=f"Adding this emoji to a message files it as a ticket. Empty: :{default_emoji}:.",
    ))
    return View(
        type="modal",
        callback_id=CONFIG_CALLBACK_ID,
        title="Channel tickets",
        submit="Save",
        close="Cancel",
        private_metadata=json.dumps({"channel_id": channel_id}),
        blocks=blocks,
    ).to_dict()


INTAKE_BLOCK, EMOJI_BLOCK = "intake", "reaction_emoji"
INTAKE_LABELS = {"off": "Nothing (people use /ticket, reactions, mentions)",
                 "button": "Offer a Create ticket button",
                 "auto": "File each one as a ticket"}
CREATE_FROM_MESSAGE = "create_ticket_from_message"  # the Create ticket button under a message
EDIT_CALLBACK_ID = "edit_ticket_modal"
EDIT_TITLE_BLOCK, EDIT_PRIORITY_BLOCK, EDIT_DUE_BLOCK = "edit_title", "edit_priority", "edit_due"
BUTTON_VALUE_LIMIT = 2000  # a button's value


def create_ticket_prompt(value: str, *, user_id: str | None, direct: bool) -> dict[str, Any]:
    """The answer to a message in a request channel (`intake: button`) or a direct message: a
    *Create ticket* button that opens the form prefilled from it. `value`: the button's value."""
    if direct:
        text = "Want me to file this as a help-desk ticket? The form opens with your message in it."
    else:
        who = f"<@{user_id}>, w" if user_id else "W"
        text = f"{who}ant a ticket for this? The form opens with the message in it."
    button = {"type": "button", "action_id": CREATE_FROM_MESSAGE, "style": "primary",
              "text": _plain("Create ticket"), "value": value[:BUTTON_VALUE_LIMIT]}
    return {"text": text, "blocks": [_section(text), {"type": "actions", "block_id": "create_ticket", "elements": [button]}]}


def edit_ticket_modal(sub_id: str, display_id: str, *, title: str, title_max_length: int = 250,
                      priority: FormField | None = None, priority_id: str | None = None,
                      due_date: str | None = None, channel_id: str | None = None,
                      errors: dict[str, str] | None = None, note: str | None = None) -> dict[str, Any]:
    """*Edit details* of a ticket made from a conversation: title, priority, due date (the type is
    fixed at creation). `priority`: the ticket system's priority field, if it has one. What the
    form shows travels in its private_metadata (`shown`): saving sends only what was changed."""
    errors = errors or {}
    title_max = min(title_max_length, SLACK_TEXT_LIMIT)
    shown_title = shorten(title, title_max)
    due_date = str(due_date)[:10] if due_date else None
    blocks: list[dict[str, Any]] = []
    if note:
        blocks.append(_context(note))
    if errors.get(""):
        blocks.append(_section(f":x: {escape(errors[''])}"))
    blocks.append(_input(EDIT_TITLE_BLOCK, "Title", _text_input(initial_value=shown_title or None,
                                                                max_length=title_max)))
    if priority is not None and priority.options:
        options = [{"text": _plain(o.label[:75]), "value": o.value[:150]} for o in priority.options[:MAX_OPTIONS]]
        element: dict[str, Any] = {"type": "static_select", "action_id": VALUE, "options": options}
        chosen = next((o for o in options if o["value"] == priority_id), None)
        if chosen:
            element["initial_option"] = dict(chosen)
        blocks.append(_input(EDIT_PRIORITY_BLOCK, priority.label[:2000] or "Priority", element, optional=True))
    due: dict[str, Any] = {"type": "datepicker", "action_id": VALUE}
    if due_date:
        due["initial_date"] = due_date
    blocks.append(_input(EDIT_DUE_BLOCK, "Due date", due, optional=True,
                         hint="Leave it as it is to keep the ticket's due date."))
    for key, message in errors.items():
        if key:
            index = next((i for i, b in enumerate(blocks) if b.get("block_id") == key), len(blocks) - 1)
            blocks.insert(index + 1, _context(f":warning: {escape(message)}"))
    return {
        "type": "modal",
        "callback_id": EDIT_CALLBACK_ID,
        "title": _plain(shorten(f"Edit {display_id}", 24)),
        "submit": _plain("Save"),
        "close": _plain("Cancel"),
        "private_metadata": json.dumps({"sub": sub_id, "display_id": display_id, "channel_id": channel_id,
                                        "shown": {"title": shown_title, "priority_id": priority_id,
                                                  "due_date": due_date}},
                                       ensure_ascii=False, separators=(",", ":")),
        "blocks": blocks,
    }


def edited_modal(display_id: str, title: str) -> dict[str, Any]:
    return notice_modal(f":white_check_mark: Ticket *{escape(display_id)}* updated\n{escape(title)}",
                        title="Edit ticket")


def edit_failed_modal(display_id: str, reason: str, title: str) -> dict[str, Any]:
    return notice_modal(f":x: Ticket *{escape(display_id)}* was not changed: {escape_warning(reason)}\n\n"
                        f"*Title:* {escape(title)}", title="Edit ticket")


@dataclass
class HomeTicket:
    display_id: str
    title: str
    status: str | None
    thread_link: str | None
    created_at: str
    url: str | None = None  # the ticket's page, when known


def home_view(tickets: list[HomeTicket]) -> dict[str, Any]:
    blocks: list[Any] = [
        HeaderBlock(text="My tickets"),
        ActionsBlock(
            elements=[ButtonElement(text="New ticket", action_id=HOME_NEW_TICKET, style="primary", value="new")]
        ),
        DividerBlock(),
    ]
    if not tickets:
        blocks.append(
            SectionBlock(
                text=MarkdownTextObject(
                    text="You have no tickets from Slack yet. Use *New ticket*, type `/ticket`, "
                    "or choose *Create ticket* on any message."
                )
            )
        )
    for t in tickets:
        line = f"{ticket_ref(t.display_id, t.url)} {escape(t.title)}"
        details = [f"Status: {escape(t.status)}" if t.status else "Status: unknown", f"opened {t.created_at}"]
        if t.thread_link:
            details.append(f"<{t.thread_link}|Slack thread>")
        blocks.append(SectionBlock(text=MarkdownTextObject(text=line + "\n" + " · ".join(details))))
    return View(type="home", blocks=blocks[:100]).to_dict()


EDIT_TICKET_ACTION = "edit_ticket"


def added_modal(display_id: str, title: str, url: str | None = None) -> dict[str, Any]:
    return notice_modal(f":white_check_mark: Added to ticket {ticket_ref(display_id, url)}\n{escape(title)}")


def ticket_thread_reply(display_id: str, title: str, user_id: str, edit_value: str | None,
                        warnings: list[str] = (), url: str | None = None) -> dict[str, Any]:
    """The reply in a conversation a ticket was made from (reaction, mention, request channel):
    text and blocks, with an *Edit details* button when the ticket can be edited from Slack."""
    text = (
        f":ticket: Ticket {ticket_ref(display_id, url)} created for <@{user_id}>: {escape(title)}\n"
        "Replies in this thread are synced with the ticket."
    )
    for w in warnings:
        text += f"\n:warning: {escape_warning(w)}"
    blocks: list[dict[str, Any]] = [_section(text[:3000])]
    if edit_value:
        blocks.append({
            "type": "actions",
            "block_id": "ticket_actions",
            "elements": [{
                "type": "button", "action_id": EDIT_TICKET_ACTION, "value": edit_value,
                "text": _plain("Edit details"),
            }],
        })
    return {"text": text, "blocks": blocks}




VIEW_TICKET_ACTION = "view_ticket"  # the unfolded link's *View in …* button (a link: nothing to do)


def ticket_unfurl(card: TicketCard, url: str, system: str) -> dict[str, Any]:
    """A ticket link, unfolded: its id and title, status, assignee, priority, requester, and a
    button to the ticket's page."""
    head = f"*{escape(card.ticket.display_id)}* {escape(shorten(card.title, 200))}"
    details = [("Status", card.status), ("Assignee", card.assignee or ("Unassigned" if card.status else None)),
               ("Priority", card.priority), ("Requester", card.requester)]
    section: dict[str, Any] = {"type": "section", "text": _mrkdwn(head)}
    fields = [_mrkdwn(f"*{name}*\n{escape(shorten(value, 150))}") for name, value in details if value]
    if fields:
        section["fields"] = fields
    button = {"type": "button", "action_id": VIEW_TICKET_ACTION, "text": _plain(shorten(f"View in {system}", 75)),
              "url": url[:3000], "value": card.ticket.display_id[:2000]}
    return {"blocks": [section, {"type": "actions", "block_id": "ticket_link", "elements": [button]}]}


# --- *Add to ticket*: a message into one of the person's tickets --------------------------------

ADD_SHORTCUT_CALLBACK_ID = "add_to_ticket"  # manifest.yml: the message shortcut
ADD_MODAL_CALLBACK_ID = "add_to_ticket_modal"
ADD_PICK_BLOCK, ADD_ID_BLOCK = "add_pick", "add_id"


def add_option_value(ticket: CreatedTicket) -> str | None:
    """A ticket as a select option's value (at most 150 characters), or None when it does not fit."""
    value = json.dumps({"i": ticket.id, "d": ticket.display_id, "b": ticket.backend}, separators=(",", ":"))
    return value if len(value) <= 150 else None


def picked_ticket(value: Any) -> CreatedTicket | None:
    try:
        data = json.loads(value)
        return CreatedTicket(id=str(data["i"]), display_id=str(data["d"]), backend=str(data["b"]))
    except (TypeError, ValueError, KeyError):
        return None


def add_message_modal(metadata: str, tickets: list[tuple[CreatedTicket, str]] | None) -> dict[str, Any]:
    """Pick one of your open tickets, or type a ticket's id or paste its link. `tickets`: the
    person's open tickets and their titles; None while they are being looked up."""
    blocks: list[dict[str, Any]] = []
    options = [{"text": _plain(shorten(f"{t.display_id} {title}", 75)), "value": v}
               for t, title in tickets or [] if (v := add_option_value(t))][:100]
    if options:
        blocks.append(_input(ADD_PICK_BLOCK, "One of your open tickets",
                             {"type": "static_select", "action_id": VALUE, "options": options,
                              "placeholder": _plain("Choose a ticket")}, optional=True))
    elif tickets is None:
        blocks.append(_context(":hourglass_flowing_sand: Looking up your open tickets…"))
    else:
        blocks.append(_context("You have no open tickets from Slack: type the ticket's id or paste its link."))
    blocks.append(_input(ADD_ID_BLOCK, "Or its id or link", _text_input(
        initial_value=None, max_length=500, placeholder="IT-42, or the ticket's link"), optional=True))
    blocks.append(_context("The message is added with its author, its link and the names of its files. "
                           "A thread without a ticket is connected to it."))
    return {"type": "modal", "callback_id": ADD_MODAL_CALLBACK_ID, "title": _plain("Add to ticket"),
            "submit": _plain("Add"), "close": _plain("Cancel"), "private_metadata": metadata[:3000], "blocks": blocks}


def not_found_modal(typed: str) -> dict[str, Any]:
    return notice_modal(f":x: I found no ticket *{escape(shorten(typed, 200))}*. Use *Add to ticket* again and "
                        "pick one of your tickets, or paste the ticket's link.", title="Add to ticket")


def ticket_entity(card: TicketCard, url: str, system: str, posted_url: str | None = None) -> dict[str, Any]:
    """The ticket as a Work Object (a `task` entity, slack_sdk's models): what Slack shows in the
    unfurl and its flexpane where the app has Work Objects on. `posted_url`: the link as posted
    (`app_unfurl_url`, required in `chat.unfurl`)."""
    fields = TaskEntityFields(
        status=EntityStringField(value=card.status) if card.status else None,
        priority=EntityStringField(value=card.priority) if card.priority else None,
        assignee=EntityTypedField(type="string", value=card.assignee) if card.assignee else None,
    )
    custom = ([EntityCustomField(label="Requester", key="requester", type="string", value=card.requester)]
              if card.requester else None)
    payload = EntityPayload(
        attributes=EntityAttributes(title=EntityTitle(text=shorten(card.title, 200)), display_id=card.ticket.display_id,
                                    product_name=system),
        fields=fields, custom_fields=custom,
    )
    return EntityMetadata(entity_type="slack#/entities/task", entity_payload=payload,
                          external_ref=ExternalRef(id=card.ticket.id, type=card.ticket.backend), url=url,
                          app_unfurl_url=posted_url).to_dict()
