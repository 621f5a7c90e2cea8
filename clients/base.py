"""The one interface every ticket system implements.

The bot hands a back end a `TicketDraft` (what a person asked for, in plain terms) and gets a
`CreatedTicket` back. A back end also describes the extra form fields it needs (`form_fields`), may
connect a chat thread to a ticket, and may look a ticket up by the bot's submission reference so
that a retry after an ambiguous failure never creates a duplicate.

Nothing here knows about Slack: people are names and e-mail addresses, threads are opaque ids.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

FieldKind = Literal["text", "multiline", "select", "date", "number"]


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class FormField:
    """One input a back end needs beyond title and description."""

    id: str
    label: str
    kind: FieldKind
    required: bool = False
    options: tuple[Option, ...] = ()
    default: str | None = None
    hint: str | None = None
    max_length: int | None = None
    future_only: bool = False  # dates: reject a day before today
    refreshes_form: bool = False  # changing it changes other fields (a team → its priorities)


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None = None
    image_url: str | None = None


@dataclass
class TicketDraft:
    """A validated request for a ticket, independent of any ticket system."""

    title: str
    description: str
    reference: str  # unique per submission; carried into the ticket so a retry can find it
    requester: Person | None = None
    submitter: Person | None = None
    source_name: str | None = None  # where it came from, e.g. "Slack #it-help"
    values: dict[str, Any] = field(default_factory=dict)  # FormField.id -> value
    requester_id: str | None = None  # the requester's user id in the ticket system, when known
    submitter_id: str | None = None  # the submitter's user id in the ticket system, when known

    def value(self, key: str, default: Any = None) -> Any:
        v = self.values.get(key)
        return default if v in (None, "", []) else v


@dataclass(frozen=True)
class ThreadMessage:
    """One earlier message of a chat thread, copied into a ticket."""

    text: str
    author: Person | None = None
    author_id: str | None = None  # the author's user id in the ticket system, when matched
    external_id: str | None = None  # where it came from (for Slack, "<channel>:<ts>")


@dataclass(frozen=True)
class CreatedTicket:
    id: str  # the system's own id, used for later calls
    display_id: str  # what people read: "IT-42", "CTC-0054", "4484636"
    backend: str
    url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketDetails:
    """What *Edit details* can change, as the ticket system has it now."""

    title: str | None = None
    priority_id: str | None = None
    due_date: dt.date | None = None


@dataclass(frozen=True)
class TicketSummary:
    """An existing ticket, as offered to a person ("you already have a ticket about this")."""

    ticket: CreatedTicket
    title: str
    status: str | None = None


@dataclass(frozen=True)
class TicketState:
    """What people see of a ticket after it is filed, as the system has it now (the live card).
    `phase`: "open", "done" (resolved) or "canceled"; `status` is the system's own word for it."""

    status: str | None = None
    phase: str = "open"
    assignee: str | None = None
    priority: str | None = None
    due_date: str | None = None  # ISO date
    sla_breach_at: str | None = None  # RFC 3339
    completed_at: str | None = None

    @property
    def closed(self) -> bool:
        return self.phase in ("done", "canceled")


@dataclass(frozen=True)
class TicketCard:
    """A ticket as a link to it unfolds: who and what, in words."""

    ticket: CreatedTicket
    title: str
    status: str | None = None
    assignee: str | None = None
    priority: str | None = None
    requester: str | None = None


_PLACEHOLDER = re.compile(r"\{(id|display_id)\}")


def link_pattern(template: str) -> re.Pattern[str] | None:
    """What links made from `template` look like: `{id}` and `{display_id}` become named groups.
    None for an empty template, or one with neither placeholder."""
    if not template or not _PLACEHOLDER.search(template):
        return None
    parts, at = [], 0
    for m in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[at:m.start()]))
        parts.append(f"(?P<{m.group(1)}>[^/?#&]+)" if f"(?P<{m.group(1)}>" not in "".join(parts) else "[^/?#&]+")
        at = m.end()
    parts.append(re.escape(template[at:]))
    return re.compile("".join(parts) + r"/?(?:[?#].*)?", re.IGNORECASE)


class BackendError(Exception):
    """A ticket system refused or failed a call.

    `transient`: trying again later may succeed (5xx, 429, timeouts, dropped connections).
    `ambiguous`: the request may have been carried out although no answer arrived.
    `field_errors`: form field id -> message, for errors a person can fix in the form.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        transient: bool = False,
        ambiguous: bool = False,
        retry_after: float | None = None,
        field_errors: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.transient = transient
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        self.field_errors = field_errors or {}


class TicketBackend:
    """Base class: override what the system supports."""

    name: str = "backend"
    display_name: str = "The ticket system"  # shown to people: "Serval is slow to answer"
    title_max_length: int = 250
    description_max_length: int = 3000

    async def start(self) -> None:
        """Begin background work (e.g. refreshing cached lists). Must not fail when offline."""

    @property
    def lists_known(self) -> bool:
        """The cached lists behind `form_fields` (teams, priorities, the form) have been loaded at
        least once: a field missing from the form is then really missing, not just unknown yet."""
        return True

    # The ticket's web page for people, `{id}` and/or `{display_id}` filled in (e.g.
    # SERVAL_TICKET_URL); empty: the system gives no link, or the ticket's own `url` is used.
    link_template: str = ""

    def link(self, ticket: CreatedTicket) -> str | None:
        """The ticket's web page for people, when the system has one (or one is configured)."""
        if ticket.url:
            return ticket.url
        if not link_pattern(self.link_template):
            return None
        return self.link_template.replace("{id}", quote(ticket.id, safe="")).replace(
            "{display_id}", quote(ticket.display_id, safe=""))

    def ticket_ref(self, url: str) -> dict[str, str] | None:
        """The ticket a link names, as `{"id": …}` and/or `{"display_id": …}`; None when the link is
        not one of this system's ticket links."""
        pattern = link_pattern(self.link_template)
        m = pattern.fullmatch(url.strip()) if pattern else None
        return {k: v for k, v in m.groupdict().items() if v} if m else None

    async def ticket_card(self, ref: dict[str, str]) -> TicketCard | None:
        """What a link to the ticket `ref` (see `ticket_ref`) shows; None when there is no such
        ticket, or the system cannot say. Raises BackendError when the system fails."""
        return None

    async def form_fields(self) -> list[FormField]:
        return []

    async def form_fields_for(self, values: dict[str, Any]) -> list[FormField]:
        """The fields for a form whose answers so far are `values` (a team changes the priorities).
        Must answer from memory: a modal has to open within Slack's 3 seconds."""
        return await self.form_fields()

    # The longest one request to the system may take (its client's deadline, `*_TIMEOUT`).
    request_timeout: float = 10.0
    can_match_users: bool = False  # find_user looks people up; False: nobody is ever "unmatched"
    # The system messages the requester directly only when the ticket names them as a user of its
    # own (Serval's slackDm sync): an unmatched requester is told they will get no such messages.
    dm_sync_needs_requester: bool = False

    async def find_user(self, email: str) -> str | None:
        """The system's user id for an e-mail address, or None."""
        return None

    async def create_user(self, person: Person) -> str | None:
        """Create a user for this person; None when the system cannot."""
        return None

    async def complete_ticket(self, ticket: CreatedTicket, draft: TicketDraft) -> None:
        """Work after creation that the create call cannot carry (e.g. setting a priority).
        Must be safe to repeat."""

    async def ticket_status(self, ticket: CreatedTicket) -> str | None:
        """The ticket's current status, in words, or None when unknown."""
        return None

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:  # pragma: no cover
        raise NotImplementedError

    async def find_ticket(self, draft: TicketDraft, since: dt.datetime) -> CreatedTicket | None:
        """Find a ticket created for `draft.reference` after `since`; None if there is none."""
        return None

    @property
    def can_connect_threads(self) -> bool:
        return False

    async def connect_thread(
        self,
        ticket: CreatedTicket,
        channel_id: str,
        thread_ts: str,
        *,
        direct_message: bool,
        accounted_for: tuple[str, ...] = (),
        integration_id: str | None = None,
    ) -> None:
        """Link a chat thread to the ticket so the system keeps both in sync. `accounted_for`: the
        system's ids of messages already in the thread (copied from it), not to be posted back.
        `integration_id`: the system's chat integration the thread is in, where it has one per chat
        workspace (None: the one configured)."""

    can_add_messages: bool = False  # add_message works: a thread's history can be copied in

    async def add_message(self, ticket: CreatedTicket, message: ThreadMessage) -> str | None:
        """Add a message to the ticket without waking any automatic agent; returns the system's
        id of the new message. Not safe to repeat (the caller records what it copied)."""
        raise BackendError(f"{self.display_name} cannot add messages to a ticket")

    can_edit: bool = False  # update_ticket works (the "Edit details" form)

    async def ticket_details(self, ticket: CreatedTicket) -> TicketDetails | None:
        """The ticket's current title, priority and due date; None when the system cannot say."""
        return None

    async def update_ticket(
        self,
        ticket: CreatedTicket,
        *,
        title: str | None = None,
        priority_id: str | None = None,
        due_date: dt.date | None = None,
    ) -> None:
        """Change a created ticket's title, priority or due date (None: leave as it is)."""
        raise BackendError(f"{self.display_name} tickets cannot be edited from Slack")

    can_follow: bool = False  # ticket_state works: the bot follows its tickets after filing them
    can_close: bool = False  # set_closed works: *Close ticket* and *Reopen* from Slack

    async def ticket_state(self, ticket: CreatedTicket) -> TicketState:
        """The ticket as it is now (one bounded call). Raises BackendError (404: it is gone)."""
        raise BackendError(f"{self.display_name} tickets cannot be followed")

    state_batch: int = 1  # ticket_states asks about this many tickets in one call

    async def ticket_states(self, tickets: list[CreatedTicket]) -> dict[str, TicketState]:
        """The state of each ticket (at most `state_batch`) by id, in one call where the system
        allows; a ticket missing from the answer is gone."""
        return {t.id: await self.ticket_state(t) for t in tickets}

    def webhook_states(self, body: Any) -> list[tuple[str, TicketState]]:
        """(ticket id, its state) for each ticket a webhook of the system tells about; [] for an
        event that is not about a ticket's state. Raises ValueError for a body it cannot read."""
        raise ValueError(f"{self.display_name} sends no webhooks the bot reads")

    async def set_closed(self, ticket: CreatedTicket, closed: bool) -> None:
        """Resolve the ticket (`closed`) or open it again."""
        raise BackendError(f"{self.display_name} tickets cannot be closed from Slack")

    async def similar_open_tickets(
        self, title: str, *, requester_id: str | None, values: dict[str, Any], limit: int = 3
    ) -> list[TicketSummary]:
        """The requester's open tickets whose titles resemble `title` (most similar first)."""
        return []

    async def aclose(self) -> None:
        pass
