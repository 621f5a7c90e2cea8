"""Socialboards's `TicketBackend`, through its client (see the package's docstring)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any


from .._refresh import KeptFresh
from ..base import (
    BackendError, CreatedTicket, FormField, Option, TicketBackend, TicketCard, TicketDraft, TicketState,
)

from .models import (
    CATEGORY, SENTIMENT, TAGS,
    CUSTOM_PREFIX, Category, CreateTicketRequest, Creator, CustomFieldValue, INBOX_URL,
    LIST_MAX_PAGES, LIST_PAGE, ListTicketsRequest, MAX_OPTIONS, SENTIMENTS, SYSTEM, Sentiment, log,
)
from .client import (
    SocialboardsClient,
)

# --- the back end -------------------------------------------------------------------------------

# Ticket statuses and what they mean for people in Slack [guess: the documents name "open" and
# "completed" only; the others are the inbox's usual words]. Any other status is open.
DONE_STATUSES = {"completed", "closed", "resolved", "done", "solved"}
CANCELED_STATUSES = {"canceled", "cancelled", "deleted", "spam", "archived"}
STATUS_EVENT = "ticket_status_change"  # the webhook's EventType the bot reads
LIST_IDS = 50  # POST /tickets/list takes at most this many ticketIds


def ticket_state(ticket: dict[str, Any], assignees: dict[str, str] | None = None) -> TicketState:
    """A Socialboards ticket object (as /tickets/list and the webhook's `Ticket` carry it) → the card's state."""
    status = str(ticket.get("status") or ticket.get("Status") or "").strip()
    word = status.lower()
    phase = "done" if word in DONE_STATUSES else "canceled" if word in CANCELED_STATUSES else "open"
    assignee_id = ticket.get("assigneeId") or ticket.get("AssigneeId")
    assignee = (assignees or {}).get(str(assignee_id), str(assignee_id)) if assignee_id else None
    return TicketState(status=status.replace("_", " ").capitalize() or None, phase=phase, assignee=assignee)


def split_tags(text: Any) -> list[str]:
    if isinstance(text, (list, tuple)):
        items = [str(t) for t in text]
    else:
        items = str(text or "").replace(";", ",").split(",")
    seen: list[str] = []
    for item in items:
        tag = " ".join(item.split())
        if tag and tag not in seen:
            seen.append(tag)
    return seen


class SocialboardsBackend(TicketBackend):
    """Socialboards behind the bot's back-end interface.

    The form adds a category select (root categories and their subcategories), a sentiment select and
    tags, plus any visible custom fields. It is answered from memory: loaded on first use or by
    `start()`, refreshed every `cache_ttl` seconds in the background, the last good one kept when a
    refresh fails. The ticket's creator is the requester's Slack profile (name, e-mail, image).
    """

    name = "socialboards"
    display_name = SYSTEM

    def __init__(
        self,
        client: SocialboardsClient,
        *,
        community: str | None = None,
        default_sentiment: str = "question",
        cache_ttl: float = 300.0,
        first_load_wait: float = 2.0,
    ) -> None:
        self.client = client
        self.request_timeout = client.timeout
        self.community = community or None
        if self.community:  # the inbox's page of a ticket (what `_created` gives each ticket as its url)
            self.link_template = f"{INBOX_URL}/{self.community}/tickets?ticketId={{id}}"
        self.default_sentiment = default_sentiment
        self._form = KeptFresh(self._load, system=SYSTEM, what="form", every=cache_ttl, first_load_wait=first_load_wait)
        self.assignee_ttl = cache_ttl
        self._assignees_at = -1e18
        self._assignee_names: dict[str, str] = {}

    async def start(self) -> None:
        """Load the form in the background and keep it fresh, so a modal never waits on Socialboards."""
        self._form.start()

    async def refresh(self) -> None:
        await self._form.refresh()

    async def form_fields(self) -> list[FormField]:
        """From memory once loaded; the first call loads (and raises if it cannot)."""
        return await self._form.get()

    async def _load(self) -> list[FormField]:
        roots = [c for c in await self.client.root_categories() if not c.isHidden]
        children = await asyncio.gather(*(self.client.subcategories(c.id) for c in roots))
        options: list[Option] = []
        for root, subs in zip(roots, children):
            if root.canBeChosen:
                options.append(Option(str(root.id), root.name))
            options += [Option(str(s.id), f"{root.name} › {s.name}") for s in subs if not s.isHidden and s.canBeChosen]
        fields: list[FormField] = []
        if options:
            fields.append(FormField(id=CATEGORY, label="Category", kind="select", options=tuple(options[:MAX_OPTIONS])))
        fields.append(
            FormField(
                id=SENTIMENT,
                label="Sentiment",
                kind="select",
                required=True,
                options=tuple(Option(v, label) for v, label in SENTIMENTS),
                default=self.default_sentiment,
            )
        )
        fields.append(FormField(id=TAGS, label="Tags", kind="text", hint="Separate tags with commas, e.g. billing, vpn",
                                max_length=500))
        fields += await self._custom_form_fields()
        return fields

    async def _custom_form_fields(self) -> list[FormField]:
        try:
            defs = await self.client.custom_fields()
        except BackendError as exc:
            if exc.transient:
                raise
            log.info("Socialboards custom fields are not available (%s); the form leaves them out", exc.message)
            return []
        fields = []
        for d in defs:
            if d.isHidden:
                continue
            default = str(d.defaultValue) if d.defaultValue not in (None, "") else None
            values = [p.value for p in sorted(d.possibleValues, key=lambda p: p.order or 0)]
            if values:
                fields.append(FormField(
                    id=f"{CUSTOM_PREFIX}{d.id}", label=d.name, kind="select", required=d.isRequired,
                    options=tuple(Option(v, v) for v in values[:MAX_OPTIONS]),
                    default=default if default in values else None,
                ))
            else:
                fields.append(FormField(id=f"{CUSTOM_PREFIX}{d.id}", label=d.name, kind="text",
                                        required=d.isRequired, default=default))
        return fields

    def creator_for(self, draft: TicketDraft) -> Creator:
        person = next((p for p in (draft.requester, draft.submitter) if p and p.email), None)
        if person is None:
            raise BackendError(
                f"{SYSTEM} needs the requester's e-mail address, and Slack did not share it "
                "(the bot needs the users:read.email scope, and the person an e-mail in their profile)"
            )
        return Creator(name=person.name or None, email=person.email or "", image=person.image_url or None)

    def request_for(self, draft: TicketDraft) -> CreateTicketRequest:
        custom = [
            CustomFieldValue(id=int(key.removeprefix(CUSTOM_PREFIX)), value=str(value))
            for key, value in draft.values.items()
            if key.startswith(CUSTOM_PREFIX) and key.removeprefix(CUSTOM_PREFIX).isdigit() and value not in (None, "")
        ]
        category = draft.value(CATEGORY)
        category = category if category is not None and str(category).isdigit() else None
        tags = split_tags(draft.value(TAGS, ""))
        return CreateTicketRequest(
            title=draft.title,
            message=draft.description or draft.title,
            isHtml=False,
            creator=self.creator_for(draft),
            categoryId=int(category) if category is not None else None,
            sentiment=draft.value(SENTIMENT, self.default_sentiment),
            sourceName=draft.source_name or "Slack",
            tags=tags or None,
            customFields=custom or None,
        )

    def _created(self, ticket_id: int) -> CreatedTicket:
        url = f"{INBOX_URL}/{self.community}/tickets?ticketId={ticket_id}" if self.community else None
        return CreatedTicket(id=str(ticket_id), display_id=str(ticket_id), backend=self.name, url=url)

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        return self._created(await self.client.create_ticket(self.request_for(draft)))

    async def find_ticket(self, draft: TicketDraft, since: dt.datetime) -> CreatedTicket | None:
        """The ticket whose message carries the draft's reference, created since `since` (minus a margin
        for clock skew), looking at most LIST_PAGE * LIST_MAX_PAGES tickets."""
        start = since.astimezone(dt.timezone.utc) - dt.timedelta(minutes=5)
        for page in range(LIST_MAX_PAGES):
            tickets = await self.client.list_tickets(
                ListTicketsRequest(from_=start.isoformat(), skip=page * LIST_PAGE, take=LIST_PAGE)
            )
            for ticket in tickets:
                if draft.reference in (ticket.message or "") or draft.reference in (ticket.htmlMessage or ""):
                    return self._created(ticket.id)
            if len(tickets) < LIST_PAGE:
                return None
        return None

    async def find_user(self, email: str) -> str | None:
        """Socialboards has no user list to match: a ticket's creator is whoever its e-mail says, and any
        address is accepted. The address itself is the identity."""
        return email.strip().lower() or None

    async def ticket_status(self, ticket: CreatedTicket) -> str | None:
        if not ticket.id.isdigit():
            return None
        found = await self.client.list_tickets(ListTicketsRequest(ticketIds=[int(ticket.id)], take=1))
        status = found[0].status if found else None
        return status.replace("_", " ").capitalize() if status else None

    # --- following tickets (docs/after-the-ticket.md) ------------------------------------------
    # Webhooks (`ticket_status_change`) tell the bot at once; `POST /tickets/list` (50 ids a call)
    # is the fallback, and all there is in Socket Mode. No endpoint closes a ticket or adds a note
    # without e-mailing the customer: no *Close ticket* nor *Add a comment* here.

    can_follow = True
    state_batch = LIST_IDS

    async def _assignees(self) -> dict[str, str]:
        """Teammate id → name, loaded once every `assignee_ttl` (a failure keeps the last)."""
        if time.monotonic() - self._assignees_at > self.assignee_ttl:
            self._assignees_at = time.monotonic()
            try:
                self._assignee_names = {str(t["id"]): str(t.get("name") or t.get("email") or t["id"])
                                        for t in await self.client.teammates() if t.get("id")}
            except BackendError as exc:
                log.info("%s teammates cannot be listed now: %s", SYSTEM, exc.message)
        return self._assignee_names

    async def ticket_states(self, tickets: list[CreatedTicket]) -> dict[str, TicketState]:
        """`POST /tickets/list` with up to 50 `ticketIds`: one call for all of them."""
        ids = [int(t.id) for t in tickets if t.id.isdigit()][:LIST_IDS]
        if not ids:
            return {}
        found = await self.client.list_tickets(ListTicketsRequest(ticketIds=ids, take=len(ids)))
        names = await self._assignees()
        return {str(t.id): ticket_state(t.model_dump(), names) for t in found}

    async def ticket_state(self, ticket: CreatedTicket) -> TicketState:
        states = await self.ticket_states([ticket])
        if ticket.id not in states:
            raise BackendError(f"{SYSTEM} has no ticket {ticket.id}", status=404)
        return states[ticket.id]

    def webhook_states(self, body: Any) -> list[tuple[str, TicketState]]:
        """`{CommunityName, EventType, TicketId, Events: [{InboxLink, PreviousTicketStatus, Ticket}]}`:
        for a `ticket_status_change`, the ticket as its last event has it (its `TicketId`); other
        events are not about a state."""
        if not isinstance(body, dict) or not isinstance(body.get("EventType"), str):
            raise ValueError("a Socialboards webhook is a JSON object with an EventType")
        if body["EventType"] != STATUS_EVENT:
            return []
        events = body.get("Events")
        if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
            raise ValueError("Events must be a non-empty list of objects")
        ticket = events[-1].get("Ticket")
        ticket_id = body.get("TicketId") if body.get("TicketId") is not None else (ticket or {}).get("id")
        if not isinstance(ticket, dict) or not isinstance(ticket_id, (int, str)) or not str(ticket_id).isdigit():
            raise ValueError("the event has no Ticket with an id")
        return [(str(ticket_id), ticket_state(ticket, self._assignee_names))]
    async def ticket_card(self, ref: dict[str, str]) -> TicketCard | None:
        """`POST /tickets/list` with the ticket's id: its title, status and author (the requester)."""
        ticket_id = ref.get("id") or ref.get("display_id") or ""
        if not ticket_id.isdigit():
            return None
        found = await self.client.list_tickets(ListTicketsRequest(ticketIds=[int(ticket_id)], take=1))
        if not found:
            return None
        t = found[0]
        author = t.author.name or t.author.email if t.author else None
        return TicketCard(ticket=self._created(t.id), title=t.title or f"Ticket {t.id}",
                          status=t.status.replace("_", " ").capitalize() if t.status else None, requester=author)

    async def aclose(self) -> None:
        await self._form.aclose()
        await self.client.aclose()
