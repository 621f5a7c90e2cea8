"""Serval: the HTTP client (requests, auth, errors → BackendError)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from pydantic import ValidationError

from .._http import AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from ..base import BackendError

from .models import (
    ConnectTicketRequest, CreateMessageRequest, CreateTicketRequest, CreateUserRequest,
    CreatedMessage, CustomFieldOptions, DEFAULT_BASE_URL, ExternalTicket, LIST_PAGE, M, Priority,
    SearchTicketsRequest, SetCustomFieldValuesRequest, Status, Team, Ticket, UpdateTicketRequest,
    User,
)


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
        self.timeout = timeout  # seconds, for a whole request
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
            raise _error(r, "getting an access token", unsafe=False)
        body = _json_object(r)
        token, lifetime = (body or {}).get("access_token"), (body or {}).get("expires_in") or 3600
        if not isinstance(token, str) or not token or not isinstance(lifetime, (int, float)):
            raise _unreadable(r, "POST /v2/auth/token", unsafe=False, what="without an access token")
        return token, float(lifetime)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        unsafe: bool | None = None,
    ) -> dict[str, Any]:
        """The answer's JSON object. `unsafe` (default: a POST) marks a request that changes something:
        a failure after it may have been carried out is ambiguous."""
        unsafe = method == "POST" if unsafe is None else unsafe
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
                raise _error(r, f"{method} {path}", unsafe=unsafe)
            if not r.content:
                return {}
            body = _json_object(r)
            if body is None:  # a 200 that is not a JSON object (a proxy's page, a cut-off body)
                raise _unreadable(r, f"{method} {path}", unsafe=unsafe)
            return body
        raise AssertionError("unreachable")

    async def _one(self, model: type[M], method: str, path: str, *, json: Any = None) -> M:
        """`data` of the answer as `model`; an answer without it is a transient (and, for a POST,
        ambiguous) BackendError, never a KeyError or ValidationError."""
        body = await self._request(method, path, json=json)
        try:
            return model.model_validate(body.get("data"))
        except ValidationError as exc:
            raise BackendError(
                f"Serval answered {method} {path} without the expected data",
                status=200, transient=True, ambiguous=method == "POST",
            ) from exc

    async def _page(
        self, model: type[M], method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> tuple[list[M], str | None]:
        """One page of a list: its items and the next page's token (None on the last page). Protobuf
        JSON leaves an empty list out, so a page without `data` is an empty page."""
        page = await self._request(method, path, params=params, json=json, unsafe=False)
        items, token = page.get("data") or [], page.get("nextPageToken") or None
        try:
            if not isinstance(items, list) or not (token is None or isinstance(token, str)):
                raise TypeError("data is not a list")
            return [model.model_validate(x) for x in items], token
        except (TypeError, ValidationError) as exc:
            raise BackendError(
                f"Serval answered {method} {path} with a list the bot does not understand",
                status=200, transient=True,
            ) from exc

    async def _pages(self, model: type[M], path: str, params: dict[str, Any]) -> list[M]:
        items: list[M] = []
        token = None
        while True:
            page, token = await self._page(model, "GET", path, params={**params, **({"pageToken": token} if token else {})})
            items.extend(page)
            if not token:
                return items

    async def create_ticket(self, body: CreateTicketRequest) -> Ticket:
        return await self._one(Ticket, "POST", "/v2/tickets", json=body.model_dump(exclude_none=True))

    async def get_ticket(self, ticket_id: str) -> Ticket:
        return await self._one(Ticket, "GET", f"/v2/tickets/{ticket_id}")

    async def search_tickets(self, body: SearchTicketsRequest) -> tuple[list[Ticket], str | None]:
        """One page of `POST /v2/tickets/search`; pass the returned token as `pageToken` for the next."""
        return await self._page(Ticket, "POST", "/v2/tickets/search", json=body.model_dump(exclude_none=True))

    async def list_tickets_page(
        self,
        team_id: str,
        *,
        since: dt.datetime | None = None,
        page_size: int = LIST_PAGE,
        page_token: str | None = None,
    ) -> tuple[list[Ticket], str | None]:
        """One page of `GET /v2/tickets` (tickets created since `since`, when given)."""
        params: dict[str, Any] = {"teamId": team_id, "pageSize": page_size}
        if since is not None:
            params["startTime.seconds"] = int(since.timestamp())
        if page_token:
            params["pageToken"] = page_token
        return await self._page(Ticket, "GET", "/v2/tickets", params=params)

    async def list_tickets(
        self, team_id: str, *, since: dt.datetime | None = None, page_size: int = LIST_PAGE
    ) -> list[Ticket]:
        tickets: list[Ticket] = []
        token = None
        while True:
            page, token = await self.list_tickets_page(team_id, since=since, page_size=page_size, page_token=token)
            tickets.extend(page)
            if not token:
                return tickets

    async def connect_ticket(self, ticket_id: str, body: ConnectTicketRequest) -> None:
        await self._request(
            "POST", f"/v2/tickets/{ticket_id}/connect", json=body.model_dump(exclude_none=True)
        )

    async def list_external_tickets(self, ticket_id: str) -> list[ExternalTicket]:
        return (await self._page(ExternalTicket, "GET", f"/v2/tickets/{ticket_id}/external-tickets"))[0]

    async def list_users(self, *, page_size: int = 1000) -> list[User]:
        return await self._pages(User, "/v2/users", {"pageSize": page_size})

    async def create_user(self, body: CreateUserRequest) -> User:
        return await self._one(User, "POST", "/v2/users", json=body.model_dump(exclude_none=True))

    async def update_ticket(self, ticket_id: str, body: UpdateTicketRequest) -> Ticket:
        return await self._one(Ticket, "PUT", f"/v2/tickets/{ticket_id}", json=body.model_dump(exclude_none=True))

    async def list_custom_fields(self, team_id: str) -> CustomFieldOptions:
        """A team's custom field definitions. The answer is `{customFields, deprecatedFields}` itself
        (docs/custom-fields.yaml); a `data` wrapper, as elsewhere in the API, is accepted too."""
        path = f"/v2/teams/{team_id}/custom-field-options"
        body = await self._request("GET", path)
        inner = body.get("data") if isinstance(body.get("data"), dict) else body
        try:
            return CustomFieldOptions.model_validate(inner)
        except ValidationError as exc:
            raise BackendError(f"Serval answered GET {path} with fields the bot does not understand",
                               status=200, transient=True) from exc

    async def set_custom_field_values(self, ticket_id: str, body: SetCustomFieldValuesRequest) -> None:
        """Safe to repeat: the same values set again change nothing."""
        await self._request("PUT", f"/v2/tickets/{ticket_id}/custom-field-values",
                            json=body.model_dump(exclude_none=True))

    async def create_message(self, ticket_id: str, body: CreateMessageRequest) -> str:
        """The new message's id. Not safe to repeat: a retry after a lost answer adds it twice."""
        created = await self._one(CreatedMessage, "POST", f"/v2/tickets/{ticket_id}/messages",
                                  json=body.model_dump(exclude_none=True))
        return created.messageId

    async def list_teams(self) -> list[Team]:
        return await self._pages(Team, "/v2/teams", {})

    async def list_priorities(self, team_id: str) -> list[Priority]:
        return await self._pages(Priority, "/v2/priorities", {"teamId": team_id})

    async def list_statuses(self, team_id: str) -> list[Status]:
        return await self._pages(Status, "/v2/statuses", {"teamId": team_id})


def _json_object(r: httpx.Response) -> dict[str, Any] | None:
    try:
        body = r.json()
    except ValueError:  # not JSON, or not UTF-8
        return None
    return body if isinstance(body, dict) else None


def _unreadable(r: httpx.Response, doing: str, *, unsafe: bool, what: str = "in a form the bot does not understand") -> BackendError:
    """A success status with a body that is not Serval's: try again later; for a create, look first."""
    return BackendError(
        f"Serval answered {doing} {what} (HTTP {r.status_code}, {r.headers.get('Content-Type') or 'no content type'})",
        status=r.status_code, transient=True, ambiguous=unsafe,
    )


def _error(r: httpx.Response, doing: str, *, unsafe: bool) -> BackendError:
    """A Serval error answer (Connect protocol: {code, message}) as a BackendError."""
    body = _json_object(r) or {}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = body.get("message") if isinstance(body.get("message"), str) else None
    reason = message or r.reason_phrase or "no reason given"
    return BackendError(
        f"Serval refused {doing}: {reason}" if r.status_code < 500 else f"Serval failed {doing}: {reason}",
        status=r.status_code,
        code=code,
        transient=status_is_transient(r.status_code),
        # A 5xx on create may come after the ticket was written; 429 and 4xx never do.
        ambiguous=(r.status_code >= 500 or r.status_code == 409) and unsafe,
        retry_after=retry_after_seconds(r),
    )
