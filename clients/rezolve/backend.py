"""Rezolve.ai's `TicketBackend`, through its client (see the package's docstring)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any


from .._refresh import KeptFresh
from ..base import BackendError, CreatedTicket, FieldKind, FormField, Option, TicketBackend, TicketDraft, TicketState

from .models import (
    TITLE_KEY, DESCRIPTION_KEY,
    CreateTicketRequest, FIELD_KINDS, Offer, SEARCH_PAGE, SEARCH_PAGES, SYSTEM, TicketTypeField,
    log,
)
from .client import (
    RezolveClient, mentions,
)

# --- the back end -------------------------------------------------------------------------------


def _default(value: Any, kind: FieldKind) -> str | None:
    if value is None or value == "" or isinstance(value, (list, dict)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if kind == "date":
        try:
            return dt.date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError:
            return None
    return str(value)


def form_field(f: TicketTypeField) -> FormField | None:
    """A ticket-type field as a form field; None for a type the form cannot ask for."""
    kind = FIELD_KINDS.get(f.type.lower())
    if kind is None:
        if not f.required:
            return None
        kind = "text"  # a required field of an unknown type: ask for text rather than fail every ticket
    options = tuple(
        Option(str(o.value), str(o.label if o.label is not None else o.value))
        for o in f.options
        if o.value is not None
    )
    if kind == "select" and not options:
        kind = "text"
    default = _default(f.defaultValue, kind)
    if kind == "select" and default not in {o.value for o in options}:
        default = None
    return FormField(id=f.id, label=f.label or f.id, kind=kind, required=f.required, options=options, default=default)


def iso_date(day: dt.date) -> str:
    """A picked day as the ISO-8601 timestamp the API documents (midnight UTC)."""
    if isinstance(day, dt.datetime):
        return day.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return f"{day.isoformat()}T00:00:00.000Z"


def row_state(row: dict[str, Any]) -> TicketState:
    """A ticket row → the card's state: `status_type` is the status ("Open"), `status_category` its
    group ("To-do Category"; one naming done or resolved, or closed, is done); a status or group
    naming cancel is cancelled ("Cancelled" may sit in the "Done Category") [guess: only "Open" /
    "To-do Category" are documented]."""
    category = str(row.get("status_category") or "").lower()
    status = str(row.get("status_type") or "").lower()
    phase = "canceled" if "cancel" in category or "cancel" in status else (
        "done" if any(w in category for w in ("done", "resolved", "closed", "complete")) else "open")
    data = row.get("data") if isinstance(row.get("data"), dict) else {}
    assignee = data.get("assignedTo") or data.get("assignee")
    if isinstance(assignee, dict):
        assignee = assignee.get("name") or assignee.get("username")
    return TicketState(status=str(row.get("status_type") or "") or None, phase=phase,
                       assignee=str(assignee) if isinstance(assignee, (str, int)) and assignee else None)


class RezolveBackend(TicketBackend):
    """Rezolve.ai behind the bot's back-end interface.

    The form is the ticket type's fields (the modal must open within Slack's 3-second trigger window,
    so it is answered from memory): loaded on first use or by `start()`, then refreshed every
    `cache_ttl` seconds in the background (two 304s thanks to ETags); a failed refresh keeps the last
    good form. The fields named by `summary_field_id` / `description_field_id` receive the modal's
    title and description instead of being asked again.
    """

    name = "rezolve"
    display_name = SYSTEM

    def __init__(
        self,
        client: RezolveClient,
        *,
        team_id: str,
        item_type_id: str,
        offer_id: str | None = None,
        summary_field_id: str | None = None,
        description_field_id: str | None = None,
        cache_ttl: float = 300.0,
        first_load_wait: float = 2.0,
    ) -> None:
        self.client = client
        self.request_timeout = client.timeout
        self.team_id = team_id
        self.item_type_id = str(item_type_id)
        self.configured_offer_id = str(offer_id) if offer_id else None
        self.summary_field_id = summary_field_id or None
        self.description_field_id = description_field_id or None
        self._type_fields: dict[str, TicketTypeField] = {}
        self._offer_id: str | None = None
        self._form = KeptFresh(self._load, system=SYSTEM, what="form", every=cache_ttl, first_load_wait=first_load_wait)

    # form ---------------------------------------------------------------------------------------

    @property
    def _fields(self) -> list[FormField] | None:
        return self._form.value

    @property
    def lists_known(self) -> bool:
        return self._fields is not None

    async def start(self) -> None:
        """Load the form in the background and keep it fresh, so a modal never waits on Rezolve.ai."""
        self._form.start()

    async def refresh(self) -> None:
        """Reload the ticket type and the offer (two 304s when nothing changed)."""
        await self._form.refresh()

    async def form_fields(self) -> list[FormField]:
        """From memory once loaded; the first call loads (and raises if it cannot)."""
        return await self._form.get()

    async def _load(self) -> list[FormField]:
        try:
            types, offers = await asyncio.gather(self.client.ticket_types(), self.client.offers())
            ttype = next((t for t in types if str(t.id) == self.item_type_id), None)
            if ttype is None:
                raise BackendError(f"{SYSTEM} has no ticket type '{self.item_type_id}' (check REZOLVE_ITEM_TYPE_ID)")
            offer_id = self._pick_offer(offers)
            skip = {self.summary_field_id, self.description_field_id}
            fields = [ff for f in ttype.fields if f.id not in skip and (ff := form_field(f)) is not None]
        except BackendError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # never a raw error where a form opens
            log.warning("cannot build the %s form from ticket type '%s': %s", SYSTEM, self.item_type_id, exc)
            raise BackendError(f"{SYSTEM}'s ticket type '{self.item_type_id}' could not be turned into a form",
                               transient=True) from exc
        self._offer_id = offer_id
        self._type_fields = {f.id: f for f in ttype.fields}
        return fields

    def _pick_offer(self, offers: list[Offer]) -> str:
        if self.configured_offer_id:
            offer = next((o for o in offers if str(o.id) == self.configured_offer_id), None)
            if offer is None:
                raise BackendError(f"{SYSTEM} has no service catalog offer '{self.configured_offer_id}' "
                                   "(check REZOLVE_OFFER_ID)")
            if offer.item_type is not None and str(offer.item_type) != self.item_type_id:
                raise BackendError(f"{SYSTEM} offer '{offer.id}' is for ticket type '{offer.item_type}', "
                                   f"not '{self.item_type_id}' (check REZOLVE_OFFER_ID)")
            return self.configured_offer_id
        offer = next((o for o in offers if str(o.item_type) == self.item_type_id), None)
        if offer is None:
            raise BackendError(f"{SYSTEM} has no service catalog offer for ticket type '{self.item_type_id}' "
                               "(set REZOLVE_OFFER_ID)")
        return str(offer.id)

    # create -------------------------------------------------------------------------------------

    @property
    def reference_field_id(self) -> str | None:
        """The ticket-type field that carries the submission reference, so that `find_ticket` can find
        it: the description field, else the type's first multi-line text field; None when the type has
        no such field (a lost create answer may then make a duplicate)."""
        if self.description_field_id:
            return self.description_field_id
        for f in self._type_fields.values():
            if f.id != self.summary_field_id and FIELD_KINDS.get(f.type.lower()) == "multiline":
                return f.id
        return None

    def request_for(self, draft: TicketDraft) -> CreateTicketRequest:
        """The create body: the offer, the title/description fields, then every answered form field.
        Empty answers are left out (an empty date is rejected by the API). The submission reference
        goes into the reference field (appended to the person's answer there)."""
        assert self._offer_id is not None
        body: dict[str, Any] = {"offerId": self._offer_id}
        if self.summary_field_id:
            body[self.summary_field_id] = draft.title
        if self.description_field_id and draft.description:
            body[self.description_field_id] = draft.description
        for f in self._fields or []:
            value = draft.value(f.id)
            if value is None:
                continue
            if f.kind == "date":
                if isinstance(value, str):
                    value = dt.date.fromisoformat(value[:10])
                value = iso_date(value)
            elif f.kind == "number" and isinstance(value, str):
                number = float(value)
                value = int(number) if number.is_integer() else number
            body[f.id] = value
        carrier = self.reference_field_id
        if carrier and draft.reference:
            text = body.get(carrier)
            text = text if isinstance(text, str) else ""
            if not mentions({"text": text}, draft.reference):
                body[carrier] = (text + "\n\n" if text.strip() else "") + f"—\nref {draft.reference}"
        return CreateTicketRequest(source="api", summary=draft.title, ticketBody=body)

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        await self.form_fields()  # the offer id and the field kinds
        try:
            answer = await self.client.create_ticket(self.team_id, self.item_type_id, self.request_for(draft))
        except BackendError as exc:
            if exc.field_errors:
                # The server's idea of the ticket type may be newer than the form: reload it first,
                # so the form re-opened for corrections shows every field the errors are about.
                try:
                    await self.refresh()
                except BackendError as again:
                    log.info("could not reload the Rezolve.ai form: %s", again.message)
                raise self._field_errors(exc) from exc
            raise
        ticket = answer.ticket
        assert answer.objectId is not None  # checked when the answer was read
        return CreatedTicket(
            id=answer.objectId,
            display_id=answer.objectId,
            backend=self.name,
            extra={
                "uuid": ticket.id if ticket else None,
                "etag": ticket.etag if ticket else None,
                "teamId": self.team_id,
                "itemTypeId": self.item_type_id,
                "status": ticket.status_type if ticket else None,
            },
        )

    def _field_errors(self, exc: BackendError) -> BackendError:
        """Validation reasons by field uuid -> by form field id (or the modal's title/description);
        reasons about keys the form does not show stay in the message."""
        shown = {f.id for f in self._fields or []}
        mapped: dict[str, str] = {}
        unplaced: list[str] = []
        for key, text in exc.field_errors.items():
            if key in shown:
                mapped[key] = text
            elif key == self.summary_field_id:
                mapped[TITLE_KEY] = text
            elif key == self.description_field_id:
                mapped[DESCRIPTION_KEY] = text
            else:
                label = self._type_fields[key].label if key in self._type_fields else key
                unplaced.append(f"{label}: {text}")
        if unplaced:
            message = f"{SYSTEM} did not accept the ticket: " + "; ".join(unplaced)
        else:
            message = f"{SYSTEM} did not accept some fields; fix them and submit again."
        return BackendError(message, status=exc.status, code=exc.code, field_errors=mapped)

    async def find_ticket(self, draft: TicketDraft, since: dt.datetime) -> CreatedTicket | None:
        """The ticket an earlier, ambiguous create made for `draft.reference`, by a full-text search.

        None when there is none, and when the reference cannot have reached a ticket (the ticket type
        has no text field to carry it) or Rezolve.ai refuses the search: the retry then creates, at the
        risk of a duplicate. A transient failure is raised, so the look-up is tried again later.
        `since` is not used: the reference is unique, and the ticket's clock may differ from the bot's."""
        await self.form_fields()  # which field carries the reference
        if self.reference_field_id is None or not draft.reference:
            return None
        for page in range(SEARCH_PAGES):
            try:
                rows, total = await self.client.search_tickets(draft.reference, top=SEARCH_PAGE,
                                                               offset=page * SEARCH_PAGE)
            except BackendError as exc:
                if exc.transient:
                    raise
                log.warning("cannot search %s for %s (a retry may duplicate the ticket): %s",
                            SYSTEM, draft.reference, exc.message)
                return None
            for row in rows:
                if mentions(row, draft.reference) and (ticket := self._found(row)) is not None:
                    return ticket
            if len(rows) < SEARCH_PAGE or (total is not None and (page + 1) * SEARCH_PAGE >= total):
                break
        return None

    def _found(self, row: dict[str, Any]) -> CreatedTicket | None:
        """A ticket row of the search as the bot's CreatedTicket; None without a display id."""
        object_id = next((row[k] for k in ("object_id", "objectId", "display_id")
                          if isinstance(row.get(k), (str, int)) and str(row[k])), None)
        if object_id is None:
            log.warning("a %s ticket matched the reference but has no object id: %s", SYSTEM, sorted(row))
            return None
        lookup = row.get("lookup_props") if isinstance(row.get("lookup_props"), dict) else {}
        return CreatedTicket(
            id=str(object_id),
            display_id=str(object_id),
            backend=self.name,
            extra={
                "uuid": row.get("id"),
                "etag": row.get("etag"),
                "teamId": lookup.get("teamId", self.team_id),
                "itemTypeId": lookup.get("itemTypeId", self.item_type_id),
                "status": row.get("status_type"),
            },
        )

    # --- following tickets (docs/after-the-ticket.md): polled, 50 a call ------------------------
    # No documented endpoint changes a ticket's status or adds a comment: no such buttons here.

    can_follow = True
    state_batch = 50

    async def ticket_states(self, tickets: list[CreatedTicket]) -> dict[str, TicketState]:
        rows = await self.client.tickets_by_object_id([t.id for t in tickets][: self.state_batch])
        out = {}
        for row in rows:
            object_id = row.get("object_id") or row.get("objectId")
            if isinstance(object_id, (str, int)):
                out[str(object_id)] = row_state(row)
        return out

    async def ticket_state(self, ticket: CreatedTicket) -> TicketState:
        states = await self.ticket_states([ticket])
        if ticket.id not in states:
            raise BackendError(f"{SYSTEM} has no ticket {ticket.id}", status=404)
        return states[ticket.id]

    async def check(self) -> list[str]:
        """Start-up self-check: problems with the configuration, in plain words ([] = all good)."""
        problems: list[str] = []
        try:
            me = await self.client.userinfo()
        except BackendError as exc:
            return [exc.message]
        if not me.can_create_ticket:
            problems.append(f"{SYSTEM} says the bot's account may not create tickets (needs a ticket_user, "
                            "ticket_agent or tenant_admin role and the write scope)")
        if "teams" in me.model_fields_set and self.team_id not in me.team_ids:
            problems.append(f"the bot's {SYSTEM} account is not in team '{self.team_id}'")
        try:
            await self.form_fields()
        except BackendError as exc:
            problems.append(exc.message)
        return problems

    async def aclose(self) -> None:
        await self._form.aclose()
        await self.client.aclose()
