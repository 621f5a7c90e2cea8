"""Socialboards Ticket API client and Socialboards' `TicketBackend`.

What the client relies on (seed 004, ../shared/backends/README.md, developers.socialboards.com):

* Auth: a refresh token is exchanged at `POST /token` (form `grant_type=refresh_token&refresh_token=...&
  client_id=...`) for an access token living about an hour, sent as `Authorization: Bearer`. Socialboards
  may return a new refresh token with every exchange; the old one then stops working. The client keeps
  the newest in memory and hands it to `on_refresh_token` so the bot can store it: a restart must start
  from the newest one (see `pick_refresh_token`). Exchanges never run concurrently (one would kill the
  other's token).
* Create: `POST /tickets` with `{title, message, isHtml, creator: {name, email, image, phoneNumber},
  categoryId, sentiment, sourceName, tags, customFields, ...}`; the answer is `{"data": <ticket id>,
  "errorCode": -1, "errorText": null}`. Every answer uses this envelope: an `errorCode` other than -1 is a
  failure, whatever the HTTP status.
* Discovery: root categories (`GET /categories`) and `GET /categories/{id}/subcategories` for the category
  select, custom field definitions (`GET /customfields`) for extra inputs.
* Lookup: `POST /tickets/list` with `from` (minimum creation time) finds the ticket of an earlier attempt
  by the submission reference in its message, so a retry after a lost answer makes no duplicate.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._refresh import KeptFresh
from ._http import RENEW_MARGIN, AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from .base import BackendError, CreatedTicket, FormField, Option, TicketBackend, TicketDraft
from .secrets import remember

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

SYSTEM = "Socialboards"
DEFAULT_BASE_URL = "https://api.socialboards.com"
INBOX_URL = "https://inbox.socialboards.com"
SUCCESS = -1
Sentiment = Literal["question", "praise", "suggestion", "complaint"]
SENTIMENTS: tuple[tuple[str, str], ...] = (
    ("question", "Question"),
    ("praise", "Praise"),
    ("suggestion", "Suggestion"),
    ("complaint", "Complaint"),
)
CATEGORY, SENTIMENT, TAGS = "category", "sentiment", "tags"
CUSTOM_PREFIX = "custom:"
LIST_PAGE = 50  # the documented maximum of `take`
LIST_MAX_PAGES = 20
MAX_OPTIONS = 100  # Slack's static select limit


def refresh_token_fingerprint(token: str) -> str:
    """Names a configured refresh token without storing it."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def pick_refresh_token(configured: str, stored: tuple[str, str] | None) -> str:
    """The refresh token to start with.

    `stored` is (the fingerprint of the configured token it descends from, the newest token seen). The
    stored one wins as long as the configuration still holds the token it descends from; a changed
    configuration (an admin pasted a new token) wins over anything stored.
    """
    if stored and stored[1] and stored[0] == refresh_token_fingerprint(configured):
        return stored[1]
    return configured


# --- the API's shapes (exact field names) ------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")  # answers may carry more than documented


class TokenResponse(_Model):
    access_token: str
    token_type: str | None = None
    expires_in: float = 3600
    refresh_token: str | None = None


class Category(_Model):
    id: int
    name: str
    parentId: int | None = None
    isHidden: bool = False
    canBeChosen: bool = True


class PossibleValue(_Model):
    value: str
    order: int | None = None


class CustomField(_Model):
    id: int
    name: str
    type: str | None = None
    isRequired: bool = False
    isHidden: bool = False
    defaultValue: Any = None
    possibleValues: list[PossibleValue] = []


class Creator(BaseModel):
    name: str | None = None
    email: str
    image: str | None = None
    phoneNumber: str | None = None


class CustomFieldValue(BaseModel):
    id: int
    value: str


class Attachment(BaseModel):
    url: str
    name: str


class CreateTicketRequest(BaseModel):
    title: str
    message: str
    isHtml: bool = False  # the bot sends plain text; Socialboards' default (true) would eat newlines
    creator: Creator
    assigneeId: str | None = None
    categoryId: int | None = None
    cc: list[str] | None = None
    customFields: list[CustomFieldValue] | None = None
    sentiment: Sentiment | None = None
    sourceName: str | None = None
    tags: list[str] | None = None
    attachments: list[Attachment] | None = None


class ListTicketsRequest(BaseModel):
    ticketIds: list[int] | None = None
    categoryId: int | None = None
    status: str | None = None
    source: str | None = None
    orderBy: str | None = None
    skip: int | None = None
    take: int | None = None
    # Minimum / maximum creation time: a DateTime with offset, e.g. "2020-02-27T12:28:02.6019432+01:00"
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None

    model_config = ConfigDict(populate_by_name=True)

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, by_alias=True)


class TicketAuthor(_Model):
    name: str | None = None
    email: str | None = None


class Ticket(_Model):
    id: int
    title: str | None = None
    message: str | None = None
    htmlMessage: str | None = None
    creationTime: str | None = None
    status: str | None = None
    sourceName: str | None = None
    author: TicketAuthor | None = None


# --- the client --------------------------------------------------------------------------------


class SocialboardsClient:
    """Small async client for the endpoints the bot uses."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        client_id: str,
        refresh_token: str,
        token_url: str | None = None,
        on_refresh_token: Callable[[str], Awaitable[None]] | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not (client_id and refresh_token):
            raise ValueError("Socialboards needs a client id and a refresh token")
        self.timeout = timeout  # seconds, for a whole request
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport or AiohttpTransport(), headers={"Accept": "application/json"}
        )
        self.token_url = token_url or f"{base_url.rstrip('/')}/token"
        self.client_id = client_id
        self._refresh_token = refresh_token
        self.on_refresh_token = on_refresh_token
        self._tokens = TokenCache(self._fetch_token)
        # Several processes sharing one refresh token (replicas): (load, save, exclusive), see
        # keep_refresh_token; None while this process is the token's only user.
        self._shared: tuple[Callable[[], Awaitable[str | None]], Callable[[str], Awaitable[None]], Callable[[], Any]] | None = None
        self._origin = refresh_token_fingerprint(refresh_token)
        self._rejected: str | None = None  # an access token Socialboards answered 401 to

    @property
    def refresh_token(self) -> str:
        """The newest refresh token (the only one that still works once it has rotated)."""
        return self._refresh_token

    async def keep_refresh_token(
        self,
        load: Callable[[], Awaitable[str | None]],
        save: Callable[[str], Awaitable[None]],
        exclusive: Callable[[], Any] | None = None,
    ) -> None:
        """Persist rotations: start from the stored newest refresh token (unless the configured one has
        changed since) and store every new one. `load` / `save` read and write one opaque string
        (JSON: the configured token's fingerprint and the newest token, which is a secret).

        `exclusive()`: an async context manager held by one process at a time (a database lock),
        for replicas sharing the token. Each exchange then happens under it, after reading what
        another replica stored: a stored access token still valid is used instead of exchanging
        (every exchange rotates the refresh token, and a replica exchanging an old one would break
        the others), and the new access token is stored beside the new refresh token."""
        configured = self._refresh_token
        stored = None
        try:
            data = json.loads(await load() or "null")
            if isinstance(data, dict) and isinstance(data.get("from"), str) and isinstance(data.get("token"), str):
                stored = (data["from"], data["token"])
        except ValueError:
            log.warning("the stored Socialboards refresh token is unreadable; using the configured one")
        self._refresh_token = pick_refresh_token(configured, stored)
        remember(self._refresh_token)  # the stored one is a secret too (the configured one is redacted as such)
        self._tokens.invalidate()
        origin = refresh_token_fingerprint(configured)

        async def store(token: str) -> None:
            await save(json.dumps({"from": origin, "token": token}))

        self.on_refresh_token = store
        self._origin = origin
        if exclusive is not None:
            self._shared = (load, save, exclusive)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _fetch_token(self) -> tuple[str, float]:
        if self._shared is None:
            return await self._exchange()
        load, save, exclusive = self._shared
        async with exclusive():
            try:
                data = json.loads(await load() or "null")
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("from") == self._origin and isinstance(data.get("token"), str):
                self._refresh_token = data["token"]  # another replica may have rotated it
                remember(self._refresh_token)
                access, expires_at = data.get("access"), data.get("expires_at")
                if (
                    isinstance(access, str) and isinstance(expires_at, (int, float))
                    and expires_at - time.time() > 2 * RENEW_MARGIN and access != self._rejected
                ):
                    remember(access)
                    return access, expires_at - time.time()
            on_refresh, self.on_refresh_token = self.on_refresh_token, None  # stored below, with the access token
            try:
                access, lifetime = await self._exchange()
            finally:
                self.on_refresh_token = on_refresh
            try:
                await save(json.dumps({"from": self._origin, "token": self._refresh_token, "access": access,
                                       "expires_at": time.time() + lifetime}))
            except Exception:  # keep working with the tokens in memory
                log.exception("could not store Socialboards' new tokens")
            return access, lifetime

    async def _exchange(self) -> tuple[str, float]:
        async with transport_errors(SYSTEM, unsafe=False):
            r = await self._http.post(
                self.token_url,
                data={"grant_type": "refresh_token", "refresh_token": self._refresh_token, "client_id": self.client_id},
            )
        if r.status_code != 200:
            raise _token_error(r)
        try:
            token = TokenResponse.model_validate(r.json())
        except (ValueError, ValidationError) as exc:
            raise BackendError(
                f"{SYSTEM} answered the token request without an access token (HTTP {r.status_code})",
                status=r.status_code,
                transient=True,
            ) from exc
        # Never logged, from the moment they are known: before on_refresh_token stores the refresh token
        # (a database driver's DEBUG log prints SQL parameters).
        remember(token.access_token)
        remember(token.refresh_token)
        if token.refresh_token and token.refresh_token != self._refresh_token:
            self._refresh_token = token.refresh_token
            if self.on_refresh_token is not None:
                try:
                    await self.on_refresh_token(token.refresh_token)
                except Exception:  # keep working with the token in memory; a restart may need a new one
                    log.exception("could not store Socialboards' new refresh token")
        return token.access_token, float(token.expires_in or 3600)

    async def _call(self, method: str, path: str, *, json: Any = None, doing: str, creating: bool = False) -> Any:
        """One API call: a fresh token (renewed once on 401), the envelope checked; returns `data`."""
        for attempt in (1, 2):
            token = await self._tokens.get()
            async with transport_errors(SYSTEM, unsafe=method == "POST" and creating):
                r = await self._http.request(method, path, json=json, headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 401 and attempt == 1:
                self._rejected = token  # not to be taken again from what replicas share
                self._tokens.invalidate(token)  # expired or revoked early: exchange once more
                continue
            return _data(r, doing, creating=creating)
        raise AssertionError("unreachable")

    async def create_ticket(self, body: CreateTicketRequest) -> int:
        data = await self._call(
            "POST", "/tickets", json=body.model_dump(exclude_none=True), doing="the ticket", creating=True
        )
        if isinstance(data, bool) or not isinstance(data, (int, str)) or not str(data).isdigit():
            # A success envelope without a ticket id: the ticket may exist; look before trying again.
            raise BackendError(f"{SYSTEM} answered the ticket creation without a ticket id", status=200,
                               transient=True, ambiguous=True)
        return int(data)

    async def list_tickets(self, query: ListTicketsRequest) -> list[Ticket]:
        data = await self._call("POST", "/tickets/list", json=query.body(), doing="listing tickets")
        return _items(Ticket, data, "listing tickets")

    async def root_categories(self) -> list[Category]:
        data = await self._call("GET", "/categories", doing="listing categories")
        return _items(Category, data, "listing categories")

    async def subcategories(self, parent_id: int) -> list[Category]:
        data = await self._call("GET", f"/categories/{parent_id}/subcategories", doing="listing subcategories")
        return _items(Category, data, "listing subcategories")

    async def custom_fields(self) -> list[CustomField]:
        data = await self._call("GET", "/customfields", doing="listing custom fields")
        return _items(CustomField, data, "listing custom fields")

    async def teammates(self) -> list[dict[str, Any]]:
        data = await self._call("GET", "/Teammates", doing="listing teammates")
        if data is not None and not (isinstance(data, list) and all(isinstance(t, dict) for t in data)):
            raise _not_understood("listing teammates")
        return list(data or [])


def _items(model: type[M], data: Any, doing: str) -> list[M]:
    """A list answer's items; `null` is an empty list, anything else unexpected a transient BackendError."""
    if data is None:
        return []
    try:
        if not isinstance(data, list):
            raise TypeError("data is not a list")
        return [model.model_validate(item) for item in data]
    except (TypeError, ValidationError) as exc:
        raise _not_understood(doing) from exc


def _not_understood(doing: str) -> BackendError:
    return BackendError(f"{SYSTEM} answered {doing} with data the bot does not understand", status=200, transient=True)


# --- errors -------------------------------------------------------------------------------------


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _token_error(r: httpx.Response) -> BackendError:
    body = _json(r)
    code = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None
    if code == "invalid_grant":
        message = (f"{SYSTEM} refused the bot's refresh token (invalid_grant): it was revoked or replaced; "
                   "an admin must create a new one")
    elif code == "invalid_client":
        message = f"{SYSTEM} does not know the bot's client id (invalid_client)"
    elif r.status_code >= 500 or r.status_code == 429:
        message = f"{SYSTEM} failed to issue an access token (HTTP {r.status_code})"
    else:
        message = f"{SYSTEM} refused the bot's token request ({code or 'HTTP ' + str(r.status_code)})"
    return BackendError(
        message,
        status=r.status_code,
        code=code,
        transient=status_is_transient(r.status_code),
        retry_after=retry_after_seconds(r),
    )


def _data(r: httpx.Response, doing: str, *, creating: bool) -> Any:
    """`data` of a successful envelope; raises BackendError for anything else."""
    body = _json(r)
    envelope = isinstance(body, dict) and "errorCode" in body
    status = r.status_code
    if envelope and body["errorCode"] == SUCCESS and status < 400 and "data" in body:
        return body["data"]
    if status < 400 and (not envelope or body["errorCode"] == SUCCESS):
        # A 2xx that is not the envelope, or a success without `data`: for a create the ticket may
        # exist; look before retrying.
        raise BackendError(
            f"{SYSTEM} gave an answer the bot does not understand (HTTP {status})",
            status=status,
            transient=True,
            ambiguous=creating,
        )
    error_code = body.get("errorCode") if envelope else None
    text = (body.get("errorText") if envelope else None) or None
    # The envelope's errorCode says what went wrong even when HTTP says 200; a failing HTTP status wins.
    kind = status
    if status < 400 and isinstance(error_code, int) and 400 <= error_code <= 599:
        kind = error_code
    if kind == 429:
        message = f"{SYSTEM} is rate limiting the bot ({text or 'too many requests'})"
    elif kind >= 500:
        message = f"{SYSTEM} failed {'creating the ticket' if creating else doing} ({text or 'HTTP ' + str(status)})"
    elif kind == 401:
        message = f"{SYSTEM} refused the bot's access token ({text or 'unauthorized'})"
    else:
        what = "the ticket" if creating else doing
        message = f"{SYSTEM} refused {what}: {text or r.reason_phrase or 'no reason given'}"
        message += f" (error {error_code})" if error_code is not None else f" (HTTP {status})"
    raise BackendError(
        message,
        status=status,
        code=str(error_code) if error_code is not None else None,
        transient=status_is_transient(kind),
        # A server failure (5xx) on create may come after the ticket was written.
        ambiguous=creating and (kind >= 500 or kind == 409),
        retry_after=retry_after_seconds(r),
    )


# --- the back end -------------------------------------------------------------------------------


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
        self.default_sentiment = default_sentiment
        self._form = KeptFresh(self._load, system=SYSTEM, what="form", every=cache_ttl, first_load_wait=first_load_wait)

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

    async def aclose(self) -> None:
        await self._form.aclose()
        await self.client.aclose()
