"""Rezolve.ai ticketing API client and Rezolve.ai's `TicketBackend`.

What the client relies on (seed 003, ../shared/backends/README.md):

* Auth: a Keycloak client-credentials token (`POST {keycloak}/auth/realms/{realm}/protocol/openid-connect/
  token`), cached and renewed before it expires, renewed once more when the API says 401. Every API call
  also carries `x-tenantid` (must equal the token's `tenant_id` claim), `realmname`, `accept:
  application/json` and `issupportrequest: false`, and the query `type` (catalog type) and `module`.
* Create: `POST /api/v2/ticketing/ticket/create/{teamId}/{itemTypeId}?type=template&module=ticketing` with
  all five body keys (`source`, `summary`, `ticketBody` with `offerId` and field-uuid keys, `attachments`,
  `ticketRelation`). The answer's `objectId` ("CTC-0054") is the display id every later call uses;
  `ticket.etag` is needed by the next update, so it is kept.
* Discovery: `GET /api/v2/ticketing/ticket-type` (fields[] of each type: the form), answered OData style
  `{"data": {"value": [...], "@odata.count": n}}` and paged with `$skip` (a bare list under `data`, seen in
  older examples, is accepted too), and `GET /api/v2/ticketing/tenant/sc/offers` (the offer whose item type
  is ours). Both are cached with `ETag` / `If-None-Match`; an ETag is kept only with a body that was read
  successfully, so an answer the bot could not read is never served again from a 304.
* Search: `POST /api/v2/ticketing/ticket/list` with a full-text `search` for the submission reference.
  Its answer is not documented: a list under `data` or OData `data.value` is accepted, and a row matches
  when any text in it contains the reference.
* Errors: 400 `INPUT_VALIDATION_FAILURE` with reasons per field uuid (mapped back to form fields), 401
  `USER_PERMISSION_FAILURE`, 403 without a code, 404 with an HTML page (unknown team or item type), and
  elsewhere the `{success: false, error: {code, message, details}}` envelope. All become `BackendError`s
  with a plain message.

A 200 answer the bot cannot read (not JSON, or without the expected data) is a transient BackendError,
and ambiguous for a create (the ticket may exist).

The submission reference ("ref slack-…") reaches the ticket in the description field when
`description_field_id` is set, otherwise appended to the ticket type's first multi-line text field. After
an ambiguous create, `find_ticket` searches for it, so the retry does not make a second ticket. A ticket
type without any multi-line text field cannot carry the reference: there a lost create answer can still
end in a duplicate (the documented limitation).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from . import secrets
from ._refresh import KeptFresh
from ._http import AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from .base import BackendError, CreatedTicket, FieldKind, FormField, Option, TicketBackend, TicketDraft

log = logging.getLogger(__name__)

SYSTEM = "Rezolve.ai"
DEFAULT_BASE_URL = "https://api.rezolve.ai"
TICKET_TYPES = "/api/v2/ticketing/ticket-type"
OFFERS = "/api/v2/ticketing/tenant/sc/offers"
USERINFO = "/api/v2/ticketing/user/userinfo"
TICKET_LIST = "/api/v2/ticketing/ticket/list"
SEARCH_PAGE = 100  # the documented maximum of `top`
SEARCH_PAGES = 5  # a full-text search may match loosely: look at no more than this many pages
TYPE_PAGES = 50  # ticket-type pages read at most (OData $skip)
T = TypeVar("T")
CatalogType = Literal["template", "agent", "user"]
# Rezolve field type -> form field kind. Other types are left out of the form unless required.
FIELD_KINDS: dict[str, FieldKind] = {
    "text": "text",
    "string": "text",
    "textarea": "multiline",
    "multiline": "multiline",
    "richtext": "multiline",
    "select": "select",
    "dropdown": "select",
    "date": "date",
    "datetime": "date",
    "number": "number",
}
# Block ids the bot uses for its own title and description inputs (bot/slack/views.py).
TITLE_KEY, DESCRIPTION_KEY = "title", "description"


def keycloak_token_url(base_url: str, realm: str) -> str:
    """The standard Keycloak token endpoint of a realm, on the given host."""
    return f"{base_url.rstrip('/')}/auth/realms/{realm}/protocol/openid-connect/token"


# --- the API's shapes (exact field names) ------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may carry more than documented

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, data: Any) -> Any:
        """A null where the bot has a default (`"options": null`, `"required": null`) means unset."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items()
                    if v is not None or (k in cls.model_fields and cls.model_fields[k].is_required())}
        return data


class TokenResponse(_Model):
    access_token: str
    expires_in: float = 300
    token_type: str | None = None
    scope: str | None = None


class FieldOption(_Model):
    label: Any = None
    value: Any = None


class TicketTypeField(_Model):
    id: str
    label: str | None = None
    type: str = "text"
    required: bool = False
    defaultValue: Any = None
    options: list[FieldOption] = []


class TicketType(_Model):
    id: str | int
    name: str | None = None
    fields: list[TicketTypeField] = []
    properties: dict[str, Any] = {}


class Offer(_Model):
    id: str | int
    name: str | None = None
    item_type: str | int | None = None
    team: str | None = None


class CreateTicketRequest(BaseModel):
    """All five keys are required by the API: send `{}` and `null` when unused, never leave them out."""

    source: str = "api"
    summary: str
    ticketBody: dict[str, Any]
    attachments: dict[str, Any] = {}
    ticketRelation: dict[str, Any] | None = None


class Ticket(_Model):
    id: str
    object_id: str | None = None
    etag: str | None = None
    summary: str | None = None
    data: dict[str, Any] = {}
    status_type: str | None = None
    status_category: str | None = None
    created_at: str | None = None
    lookup_props: dict[str, Any] = {}


class CreateTicketResponse(_Model):
    success: bool | None = True
    message: Any = None
    status: Any = None
    objectId: str | None = None
    ticket: Ticket | None = None

    @model_validator(mode="after")
    def _has_object_id(self) -> CreateTicketResponse:
        if not self.objectId and self.ticket is not None and self.ticket.object_id:
            self.objectId = self.ticket.object_id
        if not self.objectId:
            raise ValueError("no objectId")
        return self


class UserInfo(_Model):
    """`{teams: ["operation", "global"], defaultTeam, roles: {realm: [...]}, permissions: {ticketing:
    {canCreateTicket}}, tenant: {id, name, realm}}` (docs); teams as objects `{id, name}` are accepted too."""

    teams: list[Any] = []
    defaultTeam: Any = None
    roles: Any = None
    permissions: dict[str, Any] = {}
    tenant: dict[str, Any] = {}

    @property
    def can_create_ticket(self) -> bool:
        ticketing = self.permissions.get("ticketing")
        return isinstance(ticketing, dict) and ticketing.get("canCreateTicket") is True

    @property
    def team_ids(self) -> set[str]:
        ids: set[str] = set()
        for team in self.teams:
            if isinstance(team, dict):
                ids.update(str(team[k]) for k in ("id", "slug", "name") if team.get(k) is not None)
            elif team is not None:
                ids.add(str(team))
        return ids


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

    async def search_tickets(
        self, search: str, *, top: int = SEARCH_PAGE, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of `POST /ticket/list` with a full-text `search`: (rows, total count if given)."""
        r = await self._request("POST", TICKET_LIST, json={"search": search, "top": top, "offset": offset},
                                unsafe=False)  # a search changes nothing
        if r.status_code != 200:
            raise _error(r, "searching tickets")
        body = _json_body(r)
        if body.get("success") is False:
            raise _error(r, "searching tickets")
        try:
            return _rows(body)
        except ValueError as exc:
            log.warning("%s answered a ticket search with a body the bot cannot read: %s", SYSTEM, exc)
            raise _unreadable("the ticket search") from exc

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
