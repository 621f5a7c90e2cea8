"""Serval's `TicketBackend`: tickets, people, teams and their custom fields, messages, edits and
similar open tickets, through `ServalClient`."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any


from .._refresh import KeptFresh
from ..base import (
    BackendError,
    CreatedTicket,
    FormField,
    Option,
    Person,
    ThreadMessage,
    TicketBackend,
    TicketCard,
    TicketDetails,
    TicketDraft,
    TicketState,
    TicketSummary,
)

from .models import (
    BOOLEAN_OPTIONS, CUSTOM_FIELD_PREFIX, ChannelSyncTarget, ChannelTarget, ConnectTicketRequest,
    CreateMessageRequest, CreateTicketRequest, CreateUserRequest, CustomField, DueDate, FieldValue,
    MAX_CUSTOM_FIELDS, OPEN_STATUS_GROUPS, Priority, SEARCH_PAGE, SIMILAR_PAGES, STOP_WORDS,
    SearchTicketsRequest, SetCustomFieldValuesRequest, SlackChannelTarget, SlackDmChannelTarget,
    SlackDmSyncTarget, Status, Team, Ticket, UpdateTicketRequest, _WORD, log,
)
from .client import (
    ServalClient,
)


FORMS_KEPT = 256  # forms' fields remembered, by the values they were built for

class ServalBackend(TicketBackend):
    """Serval behind the bot's back-end interface.

    Teams, priorities, statuses and each team's custom fields are cached and refreshed in the
    background, so building a form never waits on Serval; when Serval is unreachable the last known
    lists are used.
    """

    name = "serval"
    display_name = "Serval"
    can_match_users = True
    dm_sync_needs_requester = True  # the slackDm sync target is sent only for a matched requester
    can_add_messages = True
    can_edit = True
    can_follow = True
    can_close = True

    def __init__(
        self,
        client: ServalClient,
        *,
        team_id: str,
        slack_integration_id: str,
        user_cache_ttl: float = 600.0,
        user_miss_reload_after: float = 60.0,
        catalog_ttl: float = 300.0,
    ) -> None:
        self.client = client
        self.request_timeout = client.timeout
        self.team_id = team_id
        self.slack_integration_id = slack_integration_id
        self._user_cache_ttl = user_cache_ttl
        self._user_miss_reload_after = user_miss_reload_after
        self._users_by_email: dict[str, str] = {}
        self._user_names: dict[str, str] = {}  # user id -> a name people read (the live card, unfurls)
        self._users_loaded_at = -1e18
        self._users_loading: asyncio.Task[None] | None = None
        self._search_available = True  # until POST /v2/tickets/search answers 404/405/501
        self.teams: list[Team] = []
        self.priorities: dict[str, list[Priority]] = {}
        self.statuses: dict[str, list[Status]] = {}
        self.custom_fields: dict[str, list[CustomField]] = {}  # team id -> its fields, in Serval's order
        self._forms_of: tuple[Any, ...] = (None, None, None)  # the catalog the forms below were built from
        self._forms: dict[Any, list[FormField]] = {}  # values → the form's fields
        self._catalog = KeptFresh(
            self.refresh_catalog, system="Serval", what="teams, priorities, statuses and custom fields",
            every=catalog_ttl,
        )

    # --- cached lists ------------------------------------------------------------------------

    async def start(self) -> None:
        self._catalog.start()

    @property
    def lists_known(self) -> bool:
        return bool(self.teams or self.priorities)

    async def refresh_catalog(self) -> bool:
        teams = await self.client.list_teams()
        wanted = {t.id for t in teams} | {self.team_id}
        priorities, statuses = {}, {}
        for team_id in wanted:
            priorities[team_id], statuses[team_id] = await asyncio.gather(
                self.client.list_priorities(team_id), self.client.list_statuses(team_id)
            )
        self.teams, self.priorities, self.statuses = teams, priorities, statuses
        # Then the custom fields, all teams at once: a slow answer there never holds back the rest.
        ordered = sorted(wanted)
        fields = await asyncio.gather(*(self._team_custom_fields(team_id) for team_id in ordered))
        self.custom_fields = dict(zip(ordered, fields))
        return True

    async def _team_custom_fields(self, team_id: str) -> list[CustomField]:
        """The team's custom fields; when Serval cannot say now, the last known ones (a failure here
        never holds back the teams and priorities). A 404, 405 or 501 means none."""
        try:
            options = await self.client.list_custom_fields(team_id)
        except BackendError as exc:
            if exc.status in (404, 405, 501):
                log.info("no custom fields for Serval team %s: %s", team_id, exc.message)
                return []
            log.warning("could not refresh the custom fields of Serval team %s (keeping the last ones): %s",
                        team_id, exc.message)
            return self.custom_fields.get(team_id, [])
        return [f.field for f in options.customFields or [] if f.field.key or f.field.id]

    def _fields_of(self, team_id: str) -> list[CustomField]:
        return self.custom_fields.get(team_id, [])

    async def form_fields(self) -> list[FormField]:
        return await self.form_fields_for({})

    async def form_fields_for(self, values: dict[str, Any]) -> list[FormField]:
        """The form's fields for these values (a team: its priorities and custom fields), the same
        objects for the same values until the catalog is refreshed (every form asks)."""
        catalog = (self.teams, self.priorities, self.custom_fields)  # replaced, never changed, by a refresh
        if any(a is not b for a, b in zip(catalog, self._forms_of)):
            self._forms_of, self._forms = catalog, {}
        key = tuple(sorted(values.items()))
        try:
            fields = self._forms.get(key)
        except TypeError:  # a value that is a list: not remembered
            return self._form_fields(values)
        if fields is None:
            if len(self._forms) >= FORMS_KEPT:
                self._forms.clear()
            fields = self._forms[key] = self._form_fields(values)
        return list(fields)

    def _form_fields(self, values: dict[str, Any]) -> list[FormField]:
        team_id = values.get("team_id") or self.team_id
        fields: list[FormField] = []
        if len(self.teams) > 1:
            fields.append(
                FormField(
                    id="team_id",
                    label="Team",
                    kind="select",
                    required=True,
                    options=tuple(Option(t.id, t.name or t.id) for t in self.teams),
                    default=team_id,
                    refreshes_form=True,
                )
            )
        fields.append(
            FormField(
                id="type",
                label="Type",
                kind="select",
                required=True,
                options=(
                    Option("TICKET_TYPE_REQUEST", "Request"),
                    Option("TICKET_TYPE_INCIDENT", "Incident"),
                ),
                default=values.get("type") or "TICKET_TYPE_REQUEST",
            )
        )
        priorities = [p for p in self.priorities.get(team_id, []) if p.priority != "NONE"]
        if priorities:
            fields.append(
                FormField(
                    id="priority_id",
                    label="Priority",
                    kind="select",
                    options=tuple(Option(p.id, (p.priority or p.id).capitalize()) for p in priorities),
                    default=values.get("priority_id"),
                )
            )
        fields.append(FormField(id="due_date", label="Due date", kind="date", future_only=True))
        custom = [custom_form_field(f, values) for f in self._fields_of(team_id)]
        if len(custom) > MAX_CUSTOM_FIELDS:
            log.warning("Serval team %s has %d custom fields; the form shows the first %d",
                        team_id, len(custom), MAX_CUSTOM_FIELDS)
        return fields + custom[:MAX_CUSTOM_FIELDS]

    # --- people ------------------------------------------------------------------------------

    async def find_user(self, email: str) -> str | None:
        """Serval user id for an e-mail address (case-insensitive), from the whole user list,
        paged through completely and cached for `user_cache_ttl` seconds. An address not in the list
        reloads it only if the list is older than `user_miss_reload_after` seconds (someone may have
        been added since), so unmatched people do not cost a full load each."""
        key = email.strip().lower()
        age = time.monotonic() - self._users_loaded_at
        if age > self._user_cache_ttl or (key not in self._users_by_email and age > self._user_miss_reload_after):
            await self._load_users()
        return self._users_by_email.get(key)

    async def _load_users(self) -> None:
        """Load the user list; callers arriving while a load runs wait for that one (and share its
        failure) instead of starting their own."""
        if self._users_loading is None or self._users_loading.done():
            self._users_loading = asyncio.create_task(self._fetch_users(), name="load Serval users")
            self._users_loading.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
        # shielded: one caller giving up (its submission cancelled) does not cancel the others' load
        await asyncio.shield(self._users_loading)

    async def _fetch_users(self) -> None:
        users = await self.client.list_users()
        self._users_by_email = {u.email.strip().lower(): u.id for u in users if u.email and not u.deactivatedAt}
        self._user_names = {u.id: u.name or " ".join(filter(None, (u.firstName, u.lastName))) or u.email or u.id
                            for u in users}
        self._users_loaded_at = time.monotonic()

    async def create_user(self, person: Person) -> str | None:
        if not person.email:
            return None
        first, _, last = person.name.partition(" ")
        try:
            user = await self.client.create_user(
                CreateUserRequest(email=person.email, firstName=first or None, lastName=last or None)
            )
        except BackendError as exc:
            if exc.code == "already_exists":  # created meanwhile (or deactivated): look again
                self._users_loaded_at = -1e18
                return await self.find_user(person.email)
            raise
        self._users_by_email[person.email.strip().lower()] = user.id
        return user.id

    # --- tickets -----------------------------------------------------------------------------

    def _request_for(self, draft: TicketDraft) -> CreateTicketRequest:
        due = draft.value("due_date")
        return CreateTicketRequest(
            teamId=draft.value("team_id", self.team_id),
            name=draft.title,
            description=draft.description,
            createdByUserId=draft.submitter_id,
            requesterUserId=draft.requester_id,
            type=draft.value("type", "TICKET_TYPE_REQUEST"),
            dueDate=DueDate(year=due.year, month=due.month, day=due.day) if due else None,
            # Serval DMs the ticket's requester. Without a matched requester, Serval makes the creator
            # (the submitter, else the API client's own account) the requester: a DM would go to the
            # wrong person, so none is asked for (the service tells the person).
            channelSyncTargets=[ChannelSyncTarget(slackDm=SlackDmSyncTarget())] if draft.requester_id else None,
        )

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        return _created(await self.client.create_ticket(self._request_for(draft)))

    async def complete_ticket(self, ticket: CreatedTicket, draft: TicketDraft) -> None:
        """Create has neither a priority nor custom fields: the priority is set right after with
        `PUT /v2/tickets/{id}`, the custom fields with `PUT /v2/tickets/{id}/custom-field-values`.
        Both are safe to repeat; both are tried, and the first failure is raised after them."""
        errors: list[BackendError] = []
        priority = draft.value("priority_id")
        if priority:
            try:
                await self.client.update_ticket(ticket.id, UpdateTicketRequest(priorityId=priority))
            except BackendError as exc:
                errors.append(exc)
        try:
            values = await self._custom_values(draft)
            if values:
                await self.client.set_custom_field_values(ticket.id, SetCustomFieldValuesRequest(fieldValues=values))
        except BackendError as exc:
            errors.append(exc)
        if errors:
            first = errors[0]
            if len(errors) > 1 and any(e.transient for e in errors) and not first.transient:
                first = next(e for e in errors if e.transient)  # retrying may still help the other
            raise first

    async def _custom_values(self, draft: TicketDraft) -> list[FieldValue]:
        """The draft's custom field answers, as Serval takes them: the field's key and a JSON value
        of its type (a number, "YYYY-MM-DD", true/false, an option's `value`, text)."""
        answers = {k.removeprefix(CUSTOM_FIELD_PREFIX): v for k, v in draft.values.items()
                   if k.startswith(CUSTOM_FIELD_PREFIX) and v not in (None, "", [])}
        if not answers:
            return []
        team_id = draft.value("team_id", self.team_id)
        if team_id not in self.custom_fields:  # not loaded yet in this process (a restart): ask now
            self.custom_fields[team_id] = await self._team_custom_fields(team_id)
        defined = {f.key or f.id: f for f in self._fields_of(team_id)}
        out = []
        for key, value in answers.items():
            definition = defined.get(key)
            if definition is None:  # removed from the team since the form was shown
                log.info("Serval team %s has no custom field %r any more; its value is not set", team_id, key)
                continue
            out.append(FieldValue(fieldKey=key, value=custom_value(definition, value)))
        return out

    async def ticket_status(self, ticket: CreatedTicket) -> str | None:
        current = await self.client.get_ticket(ticket.id)
        team_id = current.teamId or self.team_id
        if team_id not in self.statuses:
            self.statuses[team_id] = await self.client.list_statuses(team_id)
        return next((s.name for s in self.statuses[team_id] if s.id == current.statusId), None)

    async def _team_statuses(self, team_id: str, status_id: str | None = None) -> list[Status]:
        """The team's statuses from the catalog; asked again when it lacks `status_id` (a status
        added in Serval since the last refresh)."""
        known = self.statuses.get(team_id)
        if known is None or (status_id and all(s.id != status_id for s in known)):
            known = self.statuses[team_id] = await self.client.list_statuses(team_id)
        return known

    async def _user_name(self, user_id: str | None) -> str | None:
        """A Serval user's name for people to read (the live card, unfurls): from the cached user
        list, asked again for an id it lacks (at most every `user_miss_reload_after`); the id itself
        until the list can be had."""
        if not user_id:
            return None
        if user_id not in self._user_names and time.monotonic() - self._users_loaded_at > self._user_miss_reload_after:
            try:
                await self._load_users()
            except BackendError as exc:
                log.info("Serval users cannot be listed now: %s", exc.message)
        return self._user_names.get(user_id, user_id)

    async def _described(self, current: Ticket, team_id: str) -> tuple[Status | None, str | None]:
        """The ticket's status (from the team's catalog, asked again for a status it lacks) and its
        priority in words (None for `NONE`)."""
        status = next((s for s in await self._team_statuses(team_id, current.statusId) if s.id == current.statusId), None)
        priority = next((p.priority for p in self.priorities.get(team_id, []) if p.id == current.priorityId), None)
        return status, (priority.capitalize() if priority and priority != "NONE" else None)

    async def ticket_state(self, ticket: CreatedTicket) -> TicketState:
        """`GET /v2/tickets/{id}`: its status (and the status's group: `DONE` is done, `CANCELED`
        canceled, any other open), assignee, priority, due date and SLA breach time."""
        current = await self.client.get_ticket(ticket.id)
        status, priority = await self._described(current, current.teamId or ticket.extra.get("teamId") or self.team_id)
        due = None
        if current.dueDate and current.dueDate.year:
            due = f"{current.dueDate.year:04d}-{current.dueDate.month:02d}-{current.dueDate.day:02d}"
        return TicketState(
            status=status.name if status else None,
            phase={"DONE": "done", "CANCELED": "canceled"}.get((status.statusGroup or "") if status else "", "open"),
            assignee=await self._user_name(current.assignedToUserId),
            priority=priority,
            due_date=due,
            sla_breach_at=current.slaBreachesAt or None,
            completed_at=current.completedAt or None,
        )

    async def set_closed(self, ticket: CreatedTicket, closed: bool) -> None:
        """`PUT /v2/tickets/{id}` with the team's first status of the `DONE` group (closed) or of
        the `TODO` group (reopened)."""
        team_id = ticket.extra.get("teamId") or self.team_id
        group = "DONE" if closed else "TODO"
        status = next((s for s in await self._team_statuses(team_id) if s.statusGroup == group), None)
        if status is None:
            raise BackendError(f"the Serval team has no status in the {group} group", status=400)
        await self.client.update_ticket(ticket.id, UpdateTicketRequest(statusId=status.id))

    async def find_ticket(self, draft: TicketDraft, since: dt.datetime) -> CreatedTicket | None:
        """The ticket whose description carries the draft's reference, among the team's tickets created
        since `since` (minus 5 minutes of clock skew), page by page until the first match: with
        `POST /v2/tickets/search` (teamIds, createdAfter), or `GET /v2/tickets` (teamId, startTime)
        where search is not available (404, 405 or 501)."""
        team = draft.value("team_id", self.team_id)
        after = since.astimezone(dt.timezone.utc) - dt.timedelta(minutes=5)
        if self._search_available:
            query = SearchTicketsRequest(
                teamIds=[team], createdAfter=after.isoformat(timespec="seconds").replace("+00:00", "Z"),
                pageSize=SEARCH_PAGE,
            )
            try:
                return await self._first_match(draft, lambda token: self.client.search_tickets(
                    query.model_copy(update={"pageToken": token})))
            except BackendError as exc:
                if exc.status not in (404, 405, 501):
                    raise
                log.info("Serval has no ticket search here (%s); looking tickets up by listing them", exc.message)
                self._search_available = False
        return await self._first_match(draft, lambda token: self.client.list_tickets_page(
            team, since=after, page_token=token))

    async def _first_match(
        self, draft: TicketDraft, page: Callable[[str | None], Awaitable[tuple[list[Ticket], str | None]]]
    ) -> CreatedTicket | None:
        """Read `page(token)` after page until a ticket carries the draft's reference."""
        token = None
        while True:
            tickets, token = await page(token)
            for ticket in tickets:
                if draft.reference in (ticket.description or ""):
                    return _created(ticket)
            if not token:
                return None

    @property
    def can_connect_threads(self) -> bool:
        return True

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
        """`accounted_for`: Serval message ids already in the thread (`accountedForMessageIds`), so
        Serval does not post them there again. `integration_id`: Serval's Slack integration of the
        thread's workspace (None: SERVAL_SLACK_INTEGRATION_ID)."""
        integration = integration_id or self.slack_integration_id
        target = (
            ChannelTarget(slackDm=SlackDmChannelTarget(integrationId=integration))
            if direct_message
            else ChannelTarget(slackChannel=SlackChannelTarget(integrationId=integration))
        )
        body = ConnectTicketRequest(
            channelTarget=target,
            externalTicketId=f"{channel_id}:{thread_ts}",
            accountedForMessageIds=list(accounted_for) or None,
        )
        try:
            await self.client.connect_ticket(ticket.id, body)
        except BackendError as exc:
            if exc.code == "already_exists":  # connected by an earlier attempt whose answer was lost
                linked = await self.client.list_external_tickets(ticket.id)
                if any(x.externalTicketId == body.externalTicketId for x in linked):
                    return
            raise

    async def add_message(self, ticket: CreatedTicket, message: ThreadMessage) -> str | None:
        """`POST /v2/tickets/{id}/messages` with `triggerHelpAgent: false`: as its author when they
        are a Serval user, else with their name in the text."""
        text = message.text
        if not message.author_id and message.author and message.author.name:
            intro = f"{message.author.name} wrote in Slack:"
            if not text.startswith(intro):
                text = f"{intro}\n{text}"
        return await self.client.create_message(
            ticket.id, CreateMessageRequest(message=text, authorUserId=message.author_id or None)
        )

    async def ticket_card(self, ref: dict[str, str]) -> TicketCard | None:
        """`GET /v2/tickets/{id}`, described as for the live card. Only links with the ticket's id can
        be looked up (Serval finds no ticket by its friendly id)."""
        if not ref.get("id"):
            return None
        try:
            t = await self.client.get_ticket(ref["id"])
        except BackendError as exc:
            if exc.status in (400, 404):  # no such ticket (or no ticket id at all)
                return None
            raise
        status, priority = await self._described(t, t.teamId or self.team_id)
        return TicketCard(
            ticket=_created(t), title=t.name or t.friendlyIdentifier or t.id, status=status.name if status else None,
            assignee=await self._user_name(t.assignedToUserId), priority=priority,
            requester=await self._user_name(t.requesterUserId),
        )

    async def ticket_details(self, ticket: CreatedTicket) -> TicketDetails:
        """`GET /v2/tickets/{id}`: its `name`, `priorityId` and `dueDate` now (changed in Serval, or
        by an earlier *Edit details*)."""
        current = await self.client.get_ticket(ticket.id)
        due = None
        if current.dueDate:
            try:
                due = dt.date(current.dueDate.year, current.dueDate.month, current.dueDate.day)
            except ValueError:  # {year: 0, ...}: no date
                due = None
        return TicketDetails(title=current.name, priority_id=current.priorityId or None, due_date=due)

    async def update_ticket(
        self,
        ticket: CreatedTicket,
        *,
        title: str | None = None,
        priority_id: str | None = None,
        due_date: dt.date | None = None,
    ) -> None:
        """`PUT /v2/tickets/{id}` with what changes (`name`, `priorityId`, `dueDate`)."""
        body = UpdateTicketRequest(
            name=title,
            priorityId=priority_id,
            dueDate=DueDate(year=due_date.year, month=due_date.month, day=due_date.day) if due_date else None,
        )
        if body.model_dump(exclude_none=True):
            await self.client.update_ticket(ticket.id, body)

    async def similar_open_tickets(
        self, title: str, *, requester_id: str | None, values: dict[str, Any], limit: int = 3
    ) -> list[TicketSummary]:
        """The requester's open tickets in the team (`POST /v2/tickets/search` with `teamIds`,
        `requesterUserIds` and the team's statuses in the TODO and IN_PROGRESS groups) whose titles
        share a meaningful word with `title`: most shared words first, then the closer match
        (shared words among all words), then the newer ticket."""
        words = meaningful_words(title)
        if not requester_id or not words or limit <= 0 or not self._search_available:
            return []
        team_id = values.get("team_id") or self.team_id
        if team_id not in self.statuses:
            self.statuses[team_id] = await self.client.list_statuses(team_id)
        status_names = {s.id: s.name for s in self.statuses[team_id] if s.statusGroup in OPEN_STATUS_GROUPS}
        if not status_names:
            return []
        query = SearchTicketsRequest(
            teamIds=[team_id], requesterUserIds=[requester_id], statusIds=list(status_names), pageSize=SEARCH_PAGE
        )
        found: list[tuple[int, float, str, Ticket]] = []
        token: str | None = None
        for _ in range(SIMILAR_PAGES):
            try:
                tickets, token = await self.client.search_tickets(query.model_copy(update={"pageToken": token}))
            except BackendError as exc:
                if exc.status in (404, 405, 501):  # no search here: no suggestions (never a full listing)
                    log.info("Serval has no ticket search here (%s); no similar tickets are suggested", exc.message)
                    self._search_available = False
                    return []
                raise
            for ticket in tickets:
                if ticket.statusId not in status_names or ticket.requesterUserId not in (None, requester_id):
                    continue
                theirs = meaningful_words(ticket.name or "")
                shared = len(words & theirs)
                if shared:
                    found.append((shared, shared / len(words | theirs), ticket.createdAt or "", ticket))
            if not token:
                break
        found.sort(key=lambda x: x[:3], reverse=True)
        return [
            TicketSummary(ticket=_created(t), title=t.name or "", status=status_names.get(t.statusId or ""))
            for *_, t in found[:limit]
        ]

    async def aclose(self) -> None:
        await self._catalog.aclose()
        if self._users_loading is not None and not self._users_loading.done():
            self._users_loading.cancel()
            await asyncio.gather(self._users_loading, return_exceptions=True)
        await self.client.aclose()


def meaningful_words(text: str) -> set[str]:
    """The case-folded words of three or more letters in `text`, stop words left out."""
    return {w for w in _WORD.findall(text.casefold()) if w not in STOP_WORDS}


def _kind(data_type: str) -> str:
    """A custom field's form kind from its `dataType`, whose names Serval does not publish
    (shared/serval/README.md): BOOL a yes/no choice, DATE a date, NUMBER/INT/DECIMAL/FLOAT a
    number, anything else (STRING, TEXT, unknown) text."""
    t = data_type.upper()
    if "BOOL" in t:
        return "boolean"
    if "DATE" in t:
        return "date"
    if any(n in t for n in ("NUMBER", "INT", "DECIMAL", "FLOAT", "DOUBLE")):
        return "number"
    return "text"


def custom_form_field(field: CustomField, values: dict[str, Any]) -> FormField:
    """A custom field as a form field: with options, a select (in `displayOrder`) whatever its type;
    a boolean a Yes/No select; a date, a number or text as such; anything else a text input."""
    key = field.key or field.id or ""
    field_id = CUSTOM_FIELD_PREFIX + key
    label = field.name or key
    hint = (field.description or "").strip()[:2000] or None
    current = values.get(field_id)
    default = str(current) if current not in (None, "") else None
    options = [o for o in field.enumOptions or [] if o.value or o.id]
    if options:
        ordered = sorted(enumerate(options), key=lambda io: (io[1].displayOrder is None, io[1].displayOrder or 0, io[0]))
        return FormField(
            id=field_id, label=label, kind="select", hint=hint, default=default,
            options=tuple(Option(o.value or o.id or "", o.displayName or o.value or o.id or "") for _, o in ordered),
        )
    kind = _kind(field.dataType or "")
    if kind == "boolean":
        return FormField(id=field_id, label=label, kind="select", options=BOOLEAN_OPTIONS, hint=hint, default=default)
    return FormField(id=field_id, label=label, kind=kind, hint=hint, default=default)  # type: ignore[arg-type]


def custom_value(field: CustomField, value: Any) -> Any:
    """A form answer as the JSON value Serval stores for the field."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if not field.enumOptions and _kind(field.dataType or "") == "boolean" and isinstance(value, str):
        return value == "true"
    return value


def _created(ticket: Ticket) -> CreatedTicket:
    return CreatedTicket(
        id=ticket.id,
        display_id=ticket.friendlyIdentifier or ticket.id,
        backend="serval",
        extra={"teamId": ticket.teamId},
    )
