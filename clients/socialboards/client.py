"""Socialboards: the HTTP client (requests, auth, errors → BackendError)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from pydantic import ValidationError

from .._http import RENEW_MARGIN, AiohttpTransport, TokenCache, retry_after_seconds, status_is_transient, transport_errors
from ..base import BackendError
from ..secrets import remember

from .models import (
    Category, CreateTicketRequest, CustomField, DEFAULT_BASE_URL, ListTicketsRequest, M, SUCCESS,
    SYSTEM, Ticket, TokenResponse, log, pick_refresh_token, refresh_token_fingerprint,
)


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


