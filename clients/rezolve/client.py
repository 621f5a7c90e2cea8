"""Rezolve.ai: the HTTP client (requests, auth, errors → BackendError)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import ValidationError

from .. import secrets
from .._http import AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from ..base import BackendError

from .models import (
    CatalogType, CreateTicketRequest, CreateTicketResponse, DEFAULT_BASE_URL, OFFERS, Offer,
    SEARCH_PAGE, SYSTEM, T, TICKET_LIST, TICKET_TYPES, TYPE_PAGES, TicketType, TokenResponse,
    USERINFO, UserInfo, keycloak_token_url, log,
)


# --- the client --------------------------------------------------------------------------------


class RezolveClient:
    """Small async client for the endpoints the bot uses."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        client_id: str,
        client_secret: str,
        tenant_id: str,
        realm: str,
        token_url: str | None = None,
        scope: str | None = None,
        catalog_type: CatalogType = "template",
        module: str = "ticketing",
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (client_id and client_secret and tenant_id and realm):
            raise ValueError("Rezolve.ai needs a client id and secret, a tenant id and a realm")
        self.timeout = timeout  # seconds, for a whole request
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport or AiohttpTransport())
        self.token_url = token_url or keycloak_token_url(base_url, realm)
        self._credentials = {"client_id": client_id, "client_secret": client_secret}
        if scope:  # an optional client scope to ask for, e.g. tickets:write (seed) or ticketing:write (docs)
            self._credentials["scope"] = scope
        self.tenant_id = tenant_id
        self.realm = realm
        self.catalog_type = catalog_type
        self.module = module
        self._tokens = TokenCache(self._fetch_token)
        self._etags: dict[str, tuple[str, Any]] = {}  # path and query -> (ETag, what was read from that 200)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fetch_token(self) -> tuple[str, float]:
        async with transport_errors(SYSTEM, unsafe=False):
            r = await self._http.post(
                self.token_url,
                data={"grant_type": "client_credentials", **self._credentials},
                headers={"Accept": "application/json"},
            )
        if r.status_code != 200:
            raise _token_error(r)
        body = _json_body(r)
        # TokenCache remembers the access token; Keycloak may also send a refresh and an ID token (the
        # client credentials grant can be set up to): never log them either.
        for key in ("refresh_token", "id_token"):
            if isinstance(body.get(key), str):
                secrets.remember(body[key])
        try:
            token = TokenResponse.model_validate(body)
        except ValidationError as exc:
            raise BackendError(
                f"{SYSTEM}'s sign-in answered without an access token (HTTP {r.status_code})",
                status=r.status_code,
                transient=True,
            ) from exc
        return token.access_token, float(token.expires_in or 300)

    def _headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "accept": "application/json",
            "x-tenantid": self.tenant_id,
            "realmname": self.realm,
            "issupportrequest": "false",
        }

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        unsafe: bool | None = None,
    ) -> httpx.Response:
        """One API call with a valid token; a 401 that is not a permission refusal renews it once.
        `unsafe` (default: a POST) marks a call that changes something, so a lost answer is ambiguous."""
        params = {"type": self.catalog_type, "module": self.module, **(params or {})}
        unsafe = method == "POST" if unsafe is None else unsafe
        for attempt in (1, 2):
            token = await self._tokens.get()
            async with transport_errors(SYSTEM, unsafe=unsafe):
                r = await self._http.request(
                    method, path, params=params, json=json, headers={**self._headers(token), **(headers or {})}
                )
            if r.status_code == 401 and attempt == 1 and _json_body(r).get("code") != "USER_PERMISSION_FAILURE":
                self._tokens.invalidate(token)  # expired or revoked early: renew once
                continue
            return r
        raise AssertionError("unreachable")

    async def _get(
        self, path: str, doing: str, what: str, read: Callable[[dict[str, Any]], T], *,
        params: dict[str, str] | None = None,
    ) -> T:
        """GET with If-None-Match: a 304 answers from what was read from the last 200 for this path.
        `read` turns the answer into the result (raising ValueError, TypeError, KeyError or a
        ValidationError when it cannot); an ETag is kept only once its body has been read."""
        key = path + "".join(f"&{k}={v}" for k, v in sorted((params or {}).items()))
        cached = self._etags.get(key)
        r = await self._request("GET", path, params=params,
                                headers={"If-None-Match": cached[0]} if cached else None)
        if r.status_code == 304 and cached:
            return cached[1]
        if r.status_code != 200:
            raise _error(r, doing)
        body = _json_body(r)
        if body.get("success") is False:
            raise _error(r, doing)
        try:
            if not body:
                raise ValueError("not a JSON object")
            value = read(body)
        except (ValueError, TypeError, KeyError, ValidationError) as exc:
            self._etags.pop(key, None)
            log.warning("%s answered %s with a body the bot cannot read: %s", SYSTEM, doing, _short(exc))
            raise _unreadable(what) from exc
        if r.headers.get("ETag"):
            self._etags[key] = (r.headers["ETag"], value)
        else:
            self._etags.pop(key, None)
        return value

    async def ticket_types(self) -> list[TicketType]:
        """Every ticket type, page after page while `@odata.count` says there are more."""
        types, total = await self._get(TICKET_TYPES, "listing ticket types", "the list of ticket types", _type_page)
        for _ in range(TYPE_PAGES):
            if total is None or len(types) >= total:
                break
            page, total = await self._get(TICKET_TYPES, "listing ticket types", "the list of ticket types",
                                          _type_page, params={"$skip": str(len(types))})
            if not page:
                break
            types = types + page
        return types

    async def offers(self) -> list[Offer]:
        return await self._get(OFFERS, "listing service catalog offers", "the list of service catalog offers",
                               _offers)

    async def userinfo(self) -> UserInfo:
        return await self._get(USERINFO, "reading the bot's user info", "the bot's user info", _userinfo)

    async def _ticket_list(self, body: dict[str, Any], doing: str, what: str) -> tuple[list[dict[str, Any]], int | None]:
        """`POST /ticket/list` (it changes nothing): (rows, total count if given)."""
        r = await self._request("POST", TICKET_LIST, json=body, unsafe=False)
        answer = _json_body(r) if r.status_code == 200 else {}
        if r.status_code != 200 or answer.get("success") is False:
            raise _error(r, doing)
        try:
            return _rows(answer)
        except ValueError as exc:
            log.warning("%s answered %s with a body the bot cannot read: %s", SYSTEM, what.replace("the ", "a ", 1), exc)
            raise _unreadable(what) from exc

    async def search_tickets(
        self, search: str, *, top: int = SEARCH_PAGE, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of `POST /ticket/list` with a full-text `search`: (rows, total count if given)."""
        return await self._ticket_list({"search": search, "top": top, "offset": offset}, "searching tickets",
                                       "the ticket search")

    async def tickets_by_object_id(self, object_ids: list[str]) -> list[dict[str, Any]]:
        """`POST /ticket/list` filtered on `object_id IN [...]` (at most SEARCH_PAGE): the rows found
        [guess: the filter's column names are not documented; `object_id` is the record's key]."""
        body = {"top": min(len(object_ids), SEARCH_PAGE), "offset": 0,
                "filter": {"op": "AND", "operand": [{"id": "followed", "column": "object_id", "op": "IN",
                                                     "operand": list(object_ids)}]}}
        return (await self._ticket_list(body, "listing tickets", "the ticket list"))[0]

    async def create_ticket(self, team_id: str, item_type_id: str, body: CreateTicketRequest) -> CreateTicketResponse:
        path = f"/api/v2/ticketing/ticket/create/{team_id}/{item_type_id}"
        r = await self._request("POST", path, json=body.model_dump())
        answer = _json_body(r)
        if not 200 <= r.status_code < 300 or answer.get("success") is False:
            raise _error(r, "the ticket", team_id=team_id, item_type_id=item_type_id)
        try:
            return CreateTicketResponse.model_validate(answer)
        except ValidationError as exc:
            # It probably exists, but its id did not come back: look for it before trying again.
            log.warning("%s answered a ticket creation with HTTP %s and no ticket id: %s", SYSTEM, r.status_code,
                        _short(exc))
            raise BackendError(
                f"{SYSTEM} answered the ticket creation without the ticket's id (HTTP {r.status_code})",
                status=r.status_code,
                transient=True,
                ambiguous=True,
            ) from exc


# --- reading answers ----------------------------------------------------------------------------


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _unreadable(what: str) -> BackendError:
    return BackendError(f"{SYSTEM} sent {what} in a form the bot cannot read", status=200, transient=True)


def _listed(body: dict[str, Any], *names: str) -> tuple[list[Any], int | None]:
    """The list in an answer: `data` itself, OData `data.value` (with `@odata.count`) or `data.<name>`;
    a top-level OData `value` too. ValueError when there is none."""
    data = body.get("data") if "data" in body else body
    if isinstance(data, list):
        return data, None
    if isinstance(data, dict):
        for name in ("value", *names):
            if isinstance(data.get(name), list):
                count = data.get("@odata.count")
                total = count if isinstance(count, int) and not isinstance(count, bool) else None
                return data[name], total
    raise ValueError("no list under data")


def _type_page(body: dict[str, Any]) -> tuple[list[TicketType], int | None]:
    items, total = _listed(body)
    return [TicketType.model_validate(t) for t in items], total


def _offers(body: dict[str, Any]) -> list[Offer]:
    items, _ = _listed(body, "offers")
    return [Offer.model_validate(o) for o in items]


def _userinfo(body: dict[str, Any]) -> UserInfo:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ValueError("no user info under data")
    return UserInfo.model_validate(data)


def _rows(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int | None]:
    items, total = _listed(body, "tickets", "items", "rows", "results")
    return [row for row in items if isinstance(row, dict)], total


def _texts(value: Any) -> list[str]:
    """Every text in a value, nested dicts and lists included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def mentions(row: dict[str, Any], reference: str) -> bool:
    """Whether any text of a ticket row holds `reference` as a whole word ("slack-ab" is not in "slack-abc")."""
    pattern = re.compile(r"(?<![\w-])" + re.escape(reference) + r"(?![\w-])", re.IGNORECASE)
    return any(pattern.search(text) for text in _texts(row))


# --- errors -------------------------------------------------------------------------------------


def _json_body(r: httpx.Response) -> dict[str, Any]:
    """The JSON object in an answer, or {} (HTML error pages, plain text, empty bodies)."""
    if "json" not in r.headers.get("content-type", "") and not r.content.lstrip().startswith(b"{"):
        return {}
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_after(r: httpx.Response) -> float | None:
    seconds = retry_after_seconds(r)
    if seconds is None and r.headers.get("X-RateLimit-Reset"):
        try:  # epoch seconds when the window resets
            seconds = min(300.0, max(0.0, float(r.headers["X-RateLimit-Reset"]) - time.time()))
        except ValueError:
            seconds = None
    return seconds


def _token_error(r: httpx.Response) -> BackendError:
    body = _json_body(r)
    code = body.get("error") if isinstance(body.get("error"), str) else None
    detail = body.get("error_description") or code or r.reason_phrase or "no reason given"
    if code == "invalid_client" or r.status_code == 401:
        message = f"{SYSTEM} refused the bot's sign-in: its client id or secret is wrong ({detail})"
    elif r.status_code == 404:
        message = f"{SYSTEM}'s sign-in has no such realm or address ({detail})"
    elif r.status_code >= 500 or r.status_code == 429:
        message = f"{SYSTEM}'s sign-in failed ({detail})"
    else:
        message = f"{SYSTEM} refused the bot's sign-in ({detail})"
    return BackendError(
        message,
        status=r.status_code,
        code=code,
        transient=status_is_transient(r.status_code),
        retry_after=retry_after_seconds(r),
    )


def _error(
    r: httpx.Response, doing: str, *, team_id: str | None = None, item_type_id: str | None = None
) -> BackendError:
    """A Rezolve.ai error answer, whatever its shape, as a BackendError with a plain message."""
    creating = team_id is not None
    status = r.status_code
    body = _json_body(r)
    code: str | None = None
    message: str | None = None
    field_errors: dict[str, str] = {}
    envelope = body.get("error")
    if isinstance(envelope, dict):  # {success: false, error: {code, message, details}}
        code, message = envelope.get("code"), envelope.get("message")
    elif body:  # create's own shape: {error: true, code, message, status, validationResult?}
        code, message = body.get("code"), body.get("message")
        reason = (body.get("validationResult") or {}).get("reason") or {}
        if isinstance(reason, dict):
            for key, messages in reason.items():
                texts = messages if isinstance(messages, list) else [messages]
                field_errors[str(key)] = " ".join(str(t) for t in texts)
    refused = f"{SYSTEM} refused {doing}" if not creating else f"{SYSTEM} refused the ticket"
    if code == "INPUT_VALIDATION_FAILURE":
        detail = "; ".join(field_errors.values()) or message or "invalid field values"
        text = f"{SYSTEM} did not accept the ticket's fields: {detail}"
    elif code == "USER_PERMISSION_FAILURE":
        text = (
            f"{refused}: the bot's Rezolve.ai account is not allowed to create tickets "
            f"(USER_PERMISSION_FAILURE: {message or 'no permission'})"
        )
    elif code == "TENANT_NOT_FOUND" or (status == 404 and "tenant not found" in (message or r.text).lower()):
        text = f"{refused}: it does not know the tenant configured for the bot (Tenant not found)"
    elif status == 403 and creating:
        text = (
            f"{refused}: the bot's roles may not use team '{team_id}' or ticket type '{item_type_id}' (HTTP 403)"
        )
    elif status == 404 and creating and not body:  # the HTML page
        text = f"{refused}: there is no team '{team_id}' with ticket type '{item_type_id}' (HTTP 404)"
    elif status == 429:
        text = f"{SYSTEM} is rate limiting the bot ({message or 'too many requests'})"
    elif status >= 500:
        what = "creating the ticket" if creating else doing
        text = f"{SYSTEM} failed {what} (HTTP {status}{': ' + message if message else ''})"
    else:
        plain_text = r.text.strip() if not body and not r.text.lstrip().startswith("<") else ""
        reason = message or plain_text[:200] or r.reason_phrase or "no reason given"
        text = f"{refused}: {reason}" + (f" ({code})" if code else f" (HTTP {status})")
    return BackendError(
        text,
        status=status,
        code=code,
        transient=status_is_transient(status),
        # A 5xx on create may come after the ticket was written; 4xx and 429 never do.
        ambiguous=creating and (status >= 500 or status == 409),  # a conflict may be the ticket itself
        retry_after=_retry_after(r) if status == 429 or status >= 500 else None,
        field_errors=field_errors,
    )


