"""*Edit details* of a ticket made from a conversation: the form with the ticket's current details,
and saving it, in words for the person (handlers/edit.py acks and calls these)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from clients.base import BackendError, FormField

from . import views
from ..core import Bot

log = logging.getLogger(__name__)
TITLE = "Edit ticket"
NOT_YOURS = ("Only the person who asked for this ticket, its requester and admins can change it "
             "here, and only while it is in a ticket system that takes changes from Slack.")


async def edit_form(bot: Bot, sub_id: str, user_id: str, channel_id: str | None) -> dict[str, Any]:
    """The form with the ticket's current details, or a notice saying why not."""
    info = await bot.tickets.editable(sub_id, user_id)
    if info is None:
        return views.notice_modal(NOT_YOURS, title=TITLE)
    backend = bot.tickets.backend(info.get("backend"))
    priority: FormField | None = None
    try:  # the team's priorities (from memory: back ends keep their form's lists)
        values = {"team_id": info["team_id"]} if info.get("team_id") else {}
        priority = next((f for f in await backend.form_fields_for(values) if f.id == "priority_id"), None)
    except Exception as exc:  # the title and due date can still be changed
        log.warning("no priorities for the edit form: %s", exc)
    note = None if info.get("current") else (
        f":warning: {backend.display_name} could not be asked for this ticket's details: they are shown as "
        "they were when it was made. Only what you change is saved.")
    return views.edit_ticket_modal(
        sub_id, info["display_id"], title=info.get("title") or "", title_max_length=backend.title_max_length,
        priority=priority, priority_id=info.get("priority_id"),
        due_date=str(info["due_date"]) if info.get("due_date") else None, channel_id=channel_id, note=note,
    )


def changes(shown: dict[str, Any], *, title: str, priority_id: str | None,
            due_date: dt.date | None) -> dict[str, Any]:
    """What the person changed, compared with what the form showed them (its `shown` metadata): a
    field left as it was is not sent, so a change made meanwhile (in the ticket system, or by
    another *Edit details*) stays. An emptied priority or due date is left as it is."""
    out: dict[str, Any] = {}
    if title != " ".join(str(shown.get("title") or "").split()):
        out["title"] = title
    if priority_id and priority_id != shown.get("priority_id"):
        out["priority_id"] = priority_id
    if due_date and due_date.isoformat() != shown.get("due_date"):
        out["due_date"] = due_date
    return out


async def save_edit(bot: Bot, sub_id: str, display_id: str, user_id: str, *, shown: dict[str, Any], title: str,
                    priority_id: str | None, due_date: dt.date | None) -> tuple[dict[str, Any], str]:
    """Change what the person changed; the form's outcome, and the same as a message (for a
    closed form)."""
    changed = changes(shown, title=title, priority_id=priority_id, due_date=due_date)
    try:
        done = await bot.tickets.edit_ticket(sub_id, user_id, **changed)
    except PermissionError:
        return views.notice_modal(NOT_YOURS, title=TITLE), NOT_YOURS
    except BackendError as exc:
        return (views.edit_failed_modal(display_id, exc.message, title),
                f":x: Ticket *{views.escape(display_id)}* was not changed: {views.escape_warning(exc.message)}")
    if not changed:
        text = f"Nothing was changed on ticket *{views.escape(done)}*."
        return views.notice_modal(text, title=TITLE), text
    return views.edited_modal(done, title), f":white_check_mark: Ticket *{views.escape(done)}* updated."
