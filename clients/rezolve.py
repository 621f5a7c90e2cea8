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
* Discovery: `GET /api/v2/ticketing/ticket-type` (fields[] of each type: the form) and
  `GET /api/v2/ticketing/tenant/sc/offers` (the offer whose item type is ours). Both are cached with
  `ETag` / `If-None-Match`.
* Errors: 400 `INPUT_VALIDATION_FAILURE` with reasons per field uuid (mapped back to form fields), 401
  `USER_PERMISSION_FAILURE`, 403 without a code, 404 with an HTML page (unknown team or item type), and
  elsewhere the `{success: false, error: {code, message, details}}` envelope. All become `BackendError`s
  with a plain message.

No endpoint lists or searches tickets, so `find_ticket` cannot find a ticket whose create answer was lost:
after an ambiguous failure (a timeout or 5xx on create) the retry may make a second ticket.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from ._refresh import KeptFresh
from ._http import AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from .base import BackendError, CreatedTicket, FieldKind, FormField, Option, TicketBackend, TicketDraft

log = logging.getLogger(__name__)

SYSTEM = "Rezolve.ai"
DEFAULT_BASE_URL = "https://api.rezolve.ai"
TICKET_TYPES = "/api/v2/ticketing/ticket-type"
OFFERS = "/api/v2/ticketing/tenant/sc/offers"
USERINFO = "/api/v2/ticketing/user/userinfo"
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
# Block ids the bot uses for its own title and description inputs (bot/views.py).
TITLE_KEY, DESCRIPTION_KEY = "title", "description"


def keycloak_token_url(base_url: str, realm: str) -> str:
    """The standard Keycloak token endpoint of a realm, on the given host."""
    return f"{base_url.rstrip('/')}/auth/realms/{realm}/protocol/openid-connect/token"


# --- the API's shapes (exact field names) ------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may carry more than documented


class TokenResponse(_Model):
    access_token: str
    expires_in: float = 300
    token_type: str | None = None
    scope: str | None = None


class FieldOption(_Model):
    label: str | None = None
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
    success: bool = True
    message: str | None = None
    status: int | None = None
    objectId: str
    ticket: Ticket


class UserInfo(_Model):
    id: str | None = None
    username: str | None = None
    tenantId: str | None = None
    roles: list[str] = []
    teams: list[dict[str, Any]] = []
    permissions: dict[str, Any] = {}

    @property
    def can_create_ticket(self) -> bool:
        return bool((self.permissions.get("ticketing") or {}).get("canCreateTicket"))


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
        self._etags: dict[str, tuple[str, Any]] = {}  # path -> (ETag, body) of the last 200

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
        try:
            token = TokenResponse.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
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
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """One API call with a valid token; a 401 that is not a permission refusal renews it once."""
        params = {"type": self.catalog_type, "module": self.module}
        unsafe = method == "POST"
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

    async def _get(self, path: str, doing: str) -> Any:
        """GET with If-None-Match: a 304 answers from the last body seen for this path."""
        cached = self._etags.get(path)
        r = await self._request("GET", path, headers={"If-None-Match": cached[0]} if cached else None)
        if r.status_code == 304 and cached:
            return cached[1]
        if r.status_code != 200:
            raise _error(r, doing)
        body = _json_body(r)
        if not body:
            raise BackendError(f"{SYSTEM} gave an answer the bot does not understand ({doing}, HTTP 200)",
                               status=200, transient=True)
        if body.get("success") is False:
            raise _error(r, doing)
        if r.headers.get("ETag"):
            self._etags[path] = (r.headers["ETag"], body)
        return body

    async def ticket_types(self) -> list[TicketType]:
        body = await self._get(TICKET_TYPES, "listing ticket types")
        return [TicketType.model_validate(t) for t in body.get("data") or []]

    async def offers(self) -> list[Offer]:
        body = await self._get(OFFERS, "listing service catalog offers")
        data = body.get("data") or {}
        items = data.get("offers") if isinstance(data, dict) else data
        return [Offer.model_validate(o) for o in items or []]

    async def userinfo(self) -> UserInfo:
        body = await self._get(USERINFO, "reading the bot's user info")
        return UserInfo.model_validate(body.get("data") or {})

    async def create_ticket(self, team_id: str, item_type_id: str, body: CreateTicketRequest) -> CreateTicketResponse:
        path = f"/api/v2/ticketing/ticket/create/{team_id}/{item_type_id}"
        r = await self._request("POST", path, json=body.model_dump())
        if not 200 <= r.status_code < 300 or _json_body(r).get("success") is False:
            raise _error(r, "the ticket", team_id=team_id, item_type_id=item_type_id)
        try:
            return CreateTicketResponse.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
            # It probably exists, but without its id nothing can be done with it; do not retry blindly.
            raise BackendError(f"{SYSTEM} answered the ticket creation without a ticket id", status=200) from exc


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
        ambiguous=creating and status >= 500,
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
        types, offers = await asyncio.gather(self.client.ticket_types(), self.client.offers())
        ttype = next((t for t in types if str(t.id) == self.item_type_id), None)
        if ttype is None:
            raise BackendError(f"{SYSTEM} has no ticket type '{self.item_type_id}' (check REZOLVE_ITEM_TYPE_ID)")
        self._offer_id = self._pick_offer(offers)
        self._type_fields = {f.id: f for f in ttype.fields}
        skip = {self.summary_field_id, self.description_field_id}
        return [ff for f in ttype.fields if f.id not in skip and (ff := form_field(f)) is not None]

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

    def request_for(self, draft: TicketDraft) -> CreateTicketRequest:
        """The create body: the offer, the title/description fields, then every answered form field.
        Empty answers are left out (an empty date is rejected by the API)."""
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
        return CreatedTicket(
            id=answer.objectId,
            display_id=answer.objectId,
            backend=self.name,
            extra={
                "uuid": ticket.id,
                "etag": ticket.etag,
                "teamId": self.team_id,
                "itemTypeId": self.item_type_id,
                "status": ticket.status_type,
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
        # Rezolve.ai documents no way to list or search tickets: a lost create answer cannot be found.
        return None

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
        if "teams" in me.model_fields_set and self.team_id not in {str(t.get("id")) for t in me.teams}:
            problems.append(f"the bot's {SYSTEM} account is not in team '{self.team_id}'")
        try:
            await self.form_fields()
        except BackendError as exc:
            problems.append(exc.message)
        return problems

    async def aclose(self) -> None:
        await self._form.aclose()
        await self.client.aclose()
