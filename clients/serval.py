"""Serval public API client (https://public.api.serval.com) and Serval's `TicketBackend`.

Models use the API's exact field names (lowerCamelCase). Bodies are sent with `exclude_none`,
because every Serval schema is `additionalProperties: false` and a stray `null` is noise.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from ._http import TokenCache, retry_after_seconds, status_is_transient, transport_errors
from .base import BackendError, CreatedTicket, FormField, Option, TicketBackend, TicketDraft

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
            transport=transport,
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

    async def list_teams(self) -> list[Team]:
        return [Team.model_validate(t) for t in await self._pages("/v2/teams", {})]

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
    """Serval behind the bot's back-end interface."""

    name = "serval"
    display_name = "Serval"

    def __init__(
        self,
        client: ServalClient,
        *,
        team_id: str,
        slack_integration_id: str,
        user_cache_ttl: float = 600.0,
    ) -> None:
        self.client = client
        self.team_id = team_id
        self.slack_integration_id = slack_integration_id
        self._user_cache_ttl = user_cache_ttl
        self._users_by_email: dict[str, str] = {}
        self._users_loaded_at = -1e18

    async def form_fields(self) -> list[FormField]:
        return [
            FormField(
                id="type",
                label="Type",
                kind="select",
                required=True,
                options=(
                    Option("TICKET_TYPE_REQUEST", "Request"),
                    Option("TICKET_TYPE_INCIDENT", "Incident"),
                ),
                default="TICKET_TYPE_REQUEST",
            ),
            FormField(id="due_date", label="Due date", kind="date", future_only=True),
        ]

    async def user_id_for(self, email: str | None) -> str | None:
        """Serval user id for an e-mail address (case-insensitive), from a cached user list."""
        if not email:
            return None
        key = email.strip().lower()
        stale = time.monotonic() - self._users_loaded_at > self._user_cache_ttl
        if stale or key not in self._users_by_email:
            # A miss reloads at most once a minute, so a new hire is found without hammering Serval.
            if stale or time.monotonic() - self._users_loaded_at > 60:
                users = await self.client.list_users()
                self._users_by_email = {
                    u.email.strip().lower(): u.id for u in users if u.email and not u.deactivatedAt
                }
                self._users_loaded_at = time.monotonic()
        return self._users_by_email.get(key)

    def _request_for(
        self, draft: TicketDraft, requester_id: str | None, creator_id: str | None
    ) -> CreateTicketRequest:
        due = draft.value("due_date")
        return CreateTicketRequest(
            teamId=draft.value("team_id", self.team_id),
            name=draft.title,
            description=draft.description,
            createdByUserId=creator_id,
            requesterUserId=requester_id,
            type=draft.value("type", "TICKET_TYPE_REQUEST"),
            dueDate=DueDate(year=due.year, month=due.month, day=due.day) if due else None,
            channelSyncTargets=[ChannelSyncTarget(slackDm=SlackDmSyncTarget())],
        )

    async def create_ticket(self, draft: TicketDraft) -> CreatedTicket:
        requester_id = await self.user_id_for(draft.requester.email if draft.requester else None)
        creator_id = await self.user_id_for(draft.submitter.email if draft.submitter else None)
        ticket = await self.client.create_ticket(self._request_for(draft, requester_id, creator_id))
        return _created(ticket)

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
        await self.client.aclose()


def _created(ticket: Ticket) -> CreatedTicket:
    return CreatedTicket(
        id=ticket.id,
        display_id=ticket.friendlyIdentifier or ticket.id,
        backend="serval",
        extra={"teamId": ticket.teamId},
    )
