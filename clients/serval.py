"""Serval public API client (https://public.api.serval.com) and Serval's `TicketBackend`.

Models use the API's exact field names (lowerCamelCase). Bodies are sent with `exclude_none`,
because every Serval schema is `additionalProperties: false` and a stray `null` is noise.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ._refresh import KeptFresh
from ._http import AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from .base import BackendError, CreatedTicket, FormField, Option, Person, TicketBackend, TicketDraft

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://public.api.serval.com"
REQUESTER = "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"
TicketType = Literal[
    "TICKET_TYPE_UNSPECIFIED",
    "TICKET_TYPE_REQUEST",
    "TICKET_TYPE_TASK",
    "TICKET_TYPE_INCIDENT",
    "TICKET_TYPE_CONVERSATION",
    "TICKET_TYPE_JOURNEY",
    "TICKET_TYPE_JOURNEY_CONVERSATION",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # responses may carry newer fields


class DueDate(BaseModel):
    year: int
    month: int
    day: int


class SlackDmSyncTarget(BaseModel):
    targetUserType: str = REQUESTER


class ChannelSyncTarget(BaseModel):
    slackDm: SlackDmSyncTarget | None = None


class CreateTicketRequest(BaseModel):
    teamId: str
    name: str
    description: str | None = None
    createdByUserId: str | None = None
    requesterUserId: str | None = None
    type: TicketType | None = None
    dueDate: DueDate | None = None
    channelSyncTargets: list[ChannelSyncTarget] = []


class Ticket(_Model):
    id: str
    friendlyIdentifier: str | None = None
    teamId: str | None = None
    name: str | None = None
    description: str | None = None
    createdAt: str | None = None
    statusId: str | None = None
    priorityId: str | None = None
    requesterUserId: str | None = None
    createdByUserId: str | None = None
    type: str | None = None
    dueDate: DueDate | None = None


class SlackChannelTarget(BaseModel):
    integrationId: str


class SlackDmChannelTarget(BaseModel):
    integrationId: str
    targetUserType: str = REQUESTER


class ChannelTarget(BaseModel):
    slackChannel: SlackChannelTarget | None = None
    slackDm: SlackDmChannelTarget | None = None


class ConnectTicketRequest(BaseModel):
    channelTarget: ChannelTarget
    externalTicketId: str
    externalTicketData: dict[str, Any] | None = None
    accountedForMessageIds: list[str] | None = None


class ExternalTicket(_Model):
    externalTicketId: str | None = None
    ticketId: str | None = None
    sourceType: str | None = None
    sourceId: str | None = None


class User(_Model):
    id: str
    email: str | None = None
    firstName: str | None = None
    lastName: str | None = None
    name: str | None = None
    deactivatedAt: str | None = None


class Team(_Model):
    id: str
    name: str | None = None
    prefix: str | None = None


class Priority(_Model):
    id: str
    teamId: str | None = None
    priority: str | None = None  # NONE, LOW, MEDIUM, HIGH, URGENT, ...
    description: str | None = None


class Status(_Model):
    id: str
    teamId: str | None = None
    name: str | None = None
    statusGroup: str | None = None
    isDefault: bool | None = None


class CreateUserRequest(BaseModel):
    email: str
    firstName: str | None = None
    lastName: str | None = None


class UpdateTicketRequest(BaseModel):
    priorityId: str | None = None
    statusId: str | None = None
    requesterUserId: str | None = None


class ServalClient:
    """Small async client for the endpoints the bot uses.

    Auth is a static bearer token, or client credentials exchanged at `POST /v2/auth/token` for a
    token that is cached and renewed before it expires (and once more if the server says 401).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        bearer_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not bearer_token and not (client_id and client_secret):
            raise ValueError("Serval needs a bearer token or a client id and secret")
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            transport=transport or AiohttpTransport(),
            headers={"Accept": "application/json"},
        )
        self._static_token = bearer_token
        self._client_auth = (client_id, client_secret) if not bearer_token else None
        self._tokens = TokenCache(self._fetch_token)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fetch_token(self) -> tuple[str, float]:
        assert self._client_auth is not None
        async with transport_errors("Serval", unsafe=False):
            r = await self._http.post(
                "/v2/auth/token",
                data={"grant_type": "client_credentials"},
                auth=self._client_auth,  # type: ignore[arg-type]
            )
        if r.status_code != 200:
            raise _error(r, "getting an access token")
        body = r.json()
        return body["access_token"], float(body.get("expires_in") or 3600)

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        unsafe = method == "POST"
        for attempt in (1, 2):
            token = self._static_token or await self._tokens.get()
            async with transport_errors("Serval", unsafe=unsafe):
                r = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                )
            if r.status_code == 401 and not self._static_token and attempt == 1:
                self._tokens.invalidate(token)  # revoked or expired early: renew once
                continue
            if r.status_code >= 400:
                raise _error(r, f"{method} {path}")
            return r.json() if r.content else {}
        raise AssertionError("unreachable")

    async def create_ticket(self, body: CreateTicketRequest) -> Ticket:
        data = await self._request("POST", "/v2/tickets", json=body.model_dump(exclude_none=True))
        return Ticket.model_validate(data["data"])

    async def get_ticket(self, ticket_id: str) -> Ticket:
        data = await self._request("GET", f"/v2/tickets/{ticket_id}")
        return Ticket.model_validate(data["data"])

    async def list_tickets(
        self, team_id: str, *, since: dt.datetime | None = None, page_size: int = 1000
    ) -> list[Ticket]:
        params: dict[str, Any] = {"teamId": team_id, "pageSize": page_size}
        if since is not None:
            params["startTime.seconds"] = int(since.timestamp())
        return [Ticket.model_validate(t) for t in await self._pages("/v2/tickets", params)]

    async def connect_ticket(self, ticket_id: str, body: ConnectTicketRequest) -> None:
        await self._request(
            "POST", f"/v2/tickets/{ticket_id}/connect", json=body.model_dump(exclude_none=True)
        )

    async def list_external_tickets(self, ticket_id: str) -> list[ExternalTicket]:
        data = await self._request("GET", f"/v2/tickets/{ticket_id}/external-tickets")
        return [ExternalTicket.model_validate(x) for x in data.get("data") or []]

    async def list_users(self, *, page_size: int = 1000) -> list[User]:
        return [User.model_validate(u) for u in await self._pages("/v2/users", {"pageSize": page_size})]

    async def create_user(self, body: CreateUserRequest) -> User:
        data = await self._request("POST", "/v2/users", json=body.model_dump(exclude_none=True))
        return User.model_validate(data["data"])

    async def update_ticket(self, ticket_id: str, body: UpdateTicketRequest) -> Ticket:
        data = await self._request("PUT", f"/v2/tickets/{ticket_id}", json=body.model_dump(exclude_none=True))
        return Ticket.model_validate(data["data"])

    async def list_teams(self) -> list[Team]:
        return [Team.model_validate(t) for t in await self._pages("/v2/teams", {})]

    async def list_priorities(self, team_id: str) -> list[Priority]:
        return [Priority.model_validate(p) for p in await self._pages("/v2/priorities", {"teamId": team_id})]

    async def list_statuses(self, team_id: str) -> list[Status]:
        return [Status.model_validate(p) for p in await self._pages("/v2/statuses", {"teamId": team_id})]

    async def _pages(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = await self._request("GET", path, params={**params, **({"pageToken": token} if token else {})})
            items.extend(page.get("data") or [])
            token = page.get("nextPageToken")
            if not token:
                return items


def _error(r: httpx.Response, doing: str) -> BackendError:
    """A Serval error answer (Connect protocol: {code, message}) as a BackendError."""
    code = message = None
    try:
        body = r.json()
        code, message = body.get("code"), body.get("message")
    except ValueError:
        pass
    reason = message or r.reason_phrase or "no reason given"
    return BackendError(
        f"Serval refused {doing}: {reason}" if r.status_code < 500 else f"Serval failed {doing}: {reason}",
        status=r.status_code,
        code=code,
        transient=status_is_transient(r.status_code),
        # A 5xx on create may come after the ticket was written; 429 and 4xx never do.
        ambiguous=r.status_code >= 500 and doing.startswith("POST"),
        retry_after=retry_after_seconds(r),
    )


class ServalBackend(TicketBackend):
    """Serval behind the bot's back-end interface.

    Teams, priorities and statuses are cached and refreshed in the background, so building a form
    never waits on Serval; when Serval is unreachable the last known lists are used.
    """

    name = "serval"
    display_name = "Serval"
    can_match_users = True

    def __init__(
        self,
        client: ServalClient,
        *,
        team_id: str,
        slack_integration_id: str,
        user_cache_ttl: float = 600.0,
        catalog_ttl: float = 300.0,
    ) -> None:
        self.client = client
        self.team_id = team_id
        self.slack_integration_id = slack_integration_id
        self._user_cache_ttl = user_cache_ttl
        self._users_by_email: dict[str, str] = {}
        self._users_loaded_at = -1e18
        self.teams: list[Team] = []
        self.priorities: dict[str, list[Priority]] = {}
        self.statuses: dict[str, list[Status]] = {}
        self._catalog = KeptFresh(
            self.refresh_catalog, system="Serval", what="teams, priorities and statuses", every=catalog_ttl
        )

    # --- cached lists ------------------------------------------------------------------------

    async def start(self) -> None:
        self._catalog.start()

    async def refresh_catalog(self) -> bool:
        teams = await self.client.list_teams()
        wanted = {t.id for t in teams} | {self.team_id}
        priorities, statuses = {}, {}
        for team_id in wanted:
            priorities[team_id], statuses[team_id] = await asyncio.gather(
                self.client.list_priorities(team_id), self.client.list_statuses(team_id)
            )
        self.teams, self.priorities, self.statuses = teams, priorities, statuses
        return True

    async def form_fields(self) -> list[FormField]:
        return await self.form_fields_for({})

    async def form_fields_for(self, values: dict[str, Any]) -> list[FormField]:
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
        return fields

    # --- people ------------------------------------------------------------------------------

    async def find_user(self, email: str) -> str | None:
        """Serval user id for an e-mail address (case-insensitive), from the whole user list,
        paged through completely and cached; a miss reloads it at most once a minute."""
        key = email.strip().lower()
        age = time.monotonic() - self._users_loaded_at
        if age > self._user_cache_ttl or (key not in self._users_by_email and age > 60):
            users = await self.client.list_users()
            self._users_by_email = {
                u.email.strip().lower(): u.id for u in users if u.email and not u.deactivatedAt
            }
            self._users_loaded_at = time.monotonic()
        return self._users_by_email.get(key)

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
            channelSyncTargets=[ChannelSyncTarget(slackDm=SlackDmSyncTarget())],
        )

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        return _created(await self.client.create_ticket(self._request_for(draft)))

    async def complete_ticket(self, ticket: CreatedTicket, draft: TicketDraft) -> None:
        """Create has no priority field: the priority is set right after, with PUT."""
        priority = draft.value("priority_id")
        if priority:
            await self.client.update_ticket(ticket.id, UpdateTicketRequest(priorityId=priority))

    async def ticket_status(self, ticket: CreatedTicket) -> str | None:
        current = await self.client.get_ticket(ticket.id)
        team_id = current.teamId or self.team_id
        if team_id not in self.statuses:
            self.statuses[team_id] = await self.client.list_statuses(team_id)
        return next((s.name for s in self.statuses[team_id] if s.id == current.statusId), None)

    async def find_ticket(self, draft: TicketDraft, since: dt.datetime) -> CreatedTicket | None:
        team = draft.value("team_id", self.team_id)
        for ticket in await self.client.list_tickets(team, since=since - dt.timedelta(minutes=5)):
            if draft.reference in (ticket.description or ""):
                return _created(ticket)
        return None

    @property
    def can_connect_threads(self) -> bool:
        return True

    async def connect_thread(
        self, ticket: CreatedTicket, channel_id: str, thread_ts: str, *, direct_message: bool
    ) -> None:
        target = (
            ChannelTarget(slackDm=SlackDmChannelTarget(integrationId=self.slack_integration_id))
            if direct_message
            else ChannelTarget(slackChannel=SlackChannelTarget(integrationId=self.slack_integration_id))
        )
        body = ConnectTicketRequest(channelTarget=target, externalTicketId=f"{channel_id}:{thread_ts}")
        try:
            await self.client.connect_ticket(ticket.id, body)
        except BackendError as exc:
            if exc.code == "already_exists":  # connected by an earlier attempt whose answer was lost
                linked = await self.client.list_external_tickets(ticket.id)
                if any(x.externalTicketId == body.externalTicketId for x in linked):
                    return
            raise

    async def aclose(self) -> None:
        await self._catalog.aclose()
        await self.client.aclose()


def _created(ticket: Ticket) -> CreatedTicket:
    return CreatedTicket(
        id=ticket.id,
        display_id=ticket.friendlyIdentifier or ticket.id,
        backend="serval",
        extra={"teamId": ticket.teamId},
    )
