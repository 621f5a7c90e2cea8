"""*Add to ticket* (a message shortcut): a message, with its author, link and files' names, goes
into one of the person's open tickets, or a ticket they name by id or link; a thread without a
ticket is connected to it. The form opens first; the person's open tickets are added to it once
known (the journal's tickets, their status asked of the ticket system). The addition is journaled
once per form and carried out by the pipeline (`Intake.submit_addition`)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from clients.base import CreatedTicket

from ..core import Bot
from ..journal.storage import Submission, ThreadTaken, journaled
from . import views

log = logging.getLogger(__name__)

STATUS_WAIT = 2.0  # seconds a ticket's status may take before it is listed anyway
CLOSED = {"done", "closed", "resolved", "canceled", "cancelled", "completed", "solved"}
LOOKUP_WAIT = 6.0  # seconds to find a typed ticket


@dataclass(frozen=True)
class Message:
    """The message the shortcut was used on (the form's private_metadata)."""

    channel_id: str
    channel_name: str | None
    ts: str
    thread_ts: str  # its thread's root (the message itself at top level)

    def dump(self) -> str:
        return json.dumps({"c": self.channel_id, "n": self.channel_name, "ts": self.ts, "r": self.thread_ts},
                          separators=(",", ":"))

    @classmethod
    def load(cls, raw: str | None) -> "Message | None":
        try:
            d = json.loads(raw or "")
            return cls(str(d["c"]), d.get("n"), str(d["ts"]), str(d.get("r") or d["ts"]))
        except (TypeError, ValueError, KeyError):
            return None


async def open_tickets(bot: Bot, user_id: str, limit: int = 20) -> list[tuple[CreatedTicket, str]]:
    """The person's tickets (filed by them or for them), newest first, without those the ticket
    system says are closed; a ticket whose status it cannot tell in time is listed."""
    subs = [s for s in await bot.storage.tickets_of(user_id, limit) if not s.payload.get("add_to")]

    async def one(sub: Submission) -> tuple[CreatedTicket, str] | None:
        ticket = journaled(CreatedTicket, sub.ticket or {})
        try:
            status = await asyncio.wait_for(bot.tickets.backend(ticket.backend).ticket_status(ticket), STATUS_WAIT)
        except Exception as exc:
            log.debug("status of %s: %s", ticket.display_id, exc)
            status = None
        if status and status.strip().casefold() in CLOSED:
            return None
        return ticket, str(sub.payload.get("title") or "")

    found = await asyncio.gather(*(one(s) for s in subs))
    seen: set[tuple[str, str]] = set()
    out = []
    for item in found:
        if item and (item[0].backend, item[0].id) not in seen:
            seen.add((item[0].backend, item[0].id))
            out.append(item)
    return out


async def find_ticket(bot: Bot, typed: str, user_id: str) -> CreatedTicket | None:
    """The ticket a person typed: one of theirs by its id (`IT-42`), a pasted ticket link, or an id
    the default ticket system knows."""
    text = typed.strip().strip("<>").split("|", 1)[0].strip()
    if not text:
        return None
    for sub in await bot.storage.tickets_of(user_id, 100):
        ticket = journaled(CreatedTicket, sub.ticket or {})
        if text.casefold() in (ticket.display_id.casefold(), ticket.id.casefold()):
            return ticket
    if text.startswith(("https://", "http://")):
        card = await asyncio.wait_for(bot.cards.card(text), LOOKUP_WAIT)
        return card.ticket if card else None
    backend = bot.tickets.backend()
    try:
        card = await asyncio.wait_for(backend.ticket_card({"id": text, "display_id": text}), LOOKUP_WAIT)
    except Exception as exc:
        log.info("no %s ticket %r: %s", backend.display_name, text, getattr(exc, "message", None) or repr(exc))
        return None
    return card.ticket if card else None


async def add(bot: Bot, *, view_id: str, message: Message, ticket: CreatedTicket, user_id: str) -> Submission:
    """Journal the addition (once per form); the thread is connected when it has no ticket yet."""
    kwargs: dict[str, Any] = dict(
        dedupe_key=f"addmsg:{view_id}", ticket=ticket, channel_id=message.channel_id,
        channel_name=message.channel_name, message_ts=message.ts, thread_ts=message.thread_ts,
        user_id=user_id, view_id=view_id,
    )
    taken, _display_id = await bot.tickets.thread_ticket(message.channel_id, message.thread_ts)
    try:
        sub = await bot.tickets.submit_addition(connect=not taken, **kwargs)
    except ThreadTaken:  # taken meanwhile: the message is added all the same
        sub = await bot.tickets.submit_addition(connect=False, **kwargs)
    bot.threads.note(sub.thread_key)
    return sub


def picked(view: dict[str, Any]) -> tuple[CreatedTicket | None, str]:
    """(the ticket chosen in the list, what was typed) from the form's state."""
    values = ((view.get("state") or {}).get("values")) or {}
    pick = ((values.get(views.ADD_PICK_BLOCK) or {}).get(views.VALUE)) or {}
    option = pick.get("selected_option") if isinstance(pick, dict) else None
    chosen = views.picked_ticket(option.get("value")) if isinstance(option, dict) else None
    typed = ((values.get(views.ADD_ID_BLOCK) or {}).get(views.VALUE)) or {}
    return chosen, str((typed.get("value") if isinstance(typed, dict) else "") or "").strip()
