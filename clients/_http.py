"""What every ticket-system client shares: a cached access token, the mapping of transport
failures to `BackendError` (transient? ambiguous?) and a hook that sees every HTTP call
(`observe_calls`: the bot's metrics)."""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.request import proxy_bypass

import aiohttp
import aiohttp.helpers
import httpx

from .base import BackendError
from .secrets import remember

# Renew a token this long before it expires, so a request never leaves with a token about to lapse.
RENEW_MARGIN = 60.0

CallObserver = Callable[[str, str, str, str, float], None]
"""Told of every HTTP call `AiohttpTransport` makes, answered or not: (system, method, path, status,
seconds). `system` is the name given to `transport_errors` around the call (the URL's host without
one); `status` the HTTP status, or the httpx exception's class name (ConnectError, ReadTimeout, ...)
when no answer came, or "cancelled". It runs on the event loop: it must be quick."""

_observer: CallObserver | None = None
_system: contextvars.ContextVar[str | None] = contextvars.ContextVar("ticket_system", default=None)


def observe_calls(observer: CallObserver | None) -> None:
    """Install the one observer of ticket-system calls (None: none)."""
    global _observer
    _observer = observer


class TokenCache:
    """Holds one access token and renews it before expiry; concurrent callers share one renewal."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> None:
        self._fetch = fetch  # returns (token, lifetime in seconds)
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()
        self._watchers: list[Callable[[BackendError | None], None]] = []

    def watch(self, watcher: Callable[[BackendError | None], None]) -> None:
        """Call `watcher` after every fetch: with None when it worked, else with its error (health
        reports what the bot actually sees). Adding the same watcher twice changes nothing."""
        if watcher not in self._watchers:
            self._watchers.append(watcher)

    async def get(self) -> str:
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._renew_at:
                return self._token
            try:
                token, lifetime = await self._fetch()
            except BackendError as exc:
                for watcher in self._watchers:
                    watcher(exc)
                raise
            remember(token)  # never logged, from the moment it is known
            for watcher in self._watchers:
                watcher(None)
            self._token = token
            # Renew a minute early; a token living under two minutes is renewed at half its life.
            self._renew_at = time.monotonic() + lifetime - min(RENEW_MARGIN, lifetime / 2)
            return token

    def invalidate(self, token: str | None = None) -> None:
        if token is None or token == self._token:
            self._token = None
            self._renew_at = 0.0


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@asynccontextmanager
async def transport_errors(system: str, *, unsafe: bool) -> AsyncIterator[None]:
    """Turn httpx transport exceptions into BackendError.

    `unsafe`: the request changes state (a POST that creates something). If it may have reached the
    server before failing, the error is marked ambiguous: the caller must check before retrying.
    Calls made inside are observed as `system`'s (see `observe_calls`).
    """
    named = _system.set(system)
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise BackendError(
            f"{system} could not be reached at {_where(exc)} ({_why(exc)})", transient=True
        ) from exc
    except httpx.TransportError as exc:  # read/write timeouts, dropped connections, protocol errors
        raise BackendError(
            f"{system} at {_where(exc)} did not answer ({_why(exc)})", transient=True, ambiguous=unsafe
        ) from exc
    finally:
        _system.reset(named)


def _where(exc: httpx.TransportError) -> str:
    """The host (and port, when not the scheme's own) the failed request went to."""
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without its request
        return "its address"
    return f"{url.host}:{url.port}" if url.port else url.host


def _why(exc: httpx.TransportError) -> str:
    """The exception's class and what it says: "ConnectError: Connection refused"."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """Why a connection could not be opened, in a few words ("Connection refused", "Name or service
    not known"): aiohttp's own text repeats the address and wraps the OS error."""
    error = exc.os_error
    if isinstance(error, OSError) and error.errno and error.errno > 0:
        return os.strerror(error.errno)
    return (error.strerror if isinstance(error, OSError) else None) or str(exc)


def status_is_transient(status: int) -> bool:
    """408 (timeout), 409 (conflict: e.g. the resource is being changed), 429 and 5xx may pass;
    every other 4xx is a refusal that will not heal by itself."""
    return status in (408, 409, 429) or status >= 500


def total_deadline(timeout: dict[str, float | None]) -> float | None:
    """The whole request's deadline: the largest of httpx's four timeouts (the clients set one number,
    so all four are equal); None when none is set."""
    values = [v for v in (timeout.get(k) for k in ("connect", "read", "write", "pool")) if v is not None]
    return max(values) if values else None


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp connection pool, each within a total deadline.

    httpcore's pool (httpx's default transport) re-checks every pooled connection on each request
    and response (`has_expired()` polls the socket through anyio; idle-connection pruning is
    quadratic), which made it the largest CPU cost of creating a ticket under load. aiohttp's
    connector keeps idle connections in a per-host deque. Transport failures are raised as the
    httpx exceptions `transport_errors` maps (connect vs. read: ambiguous or not).

    Timeouts: the request's timeout is a deadline for the whole request (connect, send, the answer's
    last byte), kept with `asyncio.timeout`, because aiohttp's and httpx's read timeouts both measure
    only the silence between two chunks: a server sending one byte a second would hold the call for
    ever. Within it, httpx's `pool` bounds the wait for a pooled connection (aiohttp's `connect`,
    which also counts opening the connection), `connect` the opening of one (`sock_connect`) and
    `read` the silence between chunks (`sock_read`). aiohttp has no write timeout: the deadline
    bounds sending. A deadline reached is a `ReadTimeout` (ambiguous for a POST: part of the request
    may have been sent)."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], tuple[Any, Any]] = {}

    def _proxy(self, url: httpx.URL) -> tuple[Any, Any]:
        """(proxy URL, proxy auth) from HTTP(S)_PROXY / NO_PROXY for this scheme and host, as
        httpx (and aiohttp's `trust_env`) would take them; looked up once per scheme and host.
        aiohttp's own `trust_env` would also read ~/.netrc before every request (in a thread), and
        a netrc entry for the ticket system's host clashed with the client's Authorization header."""
        key = (url.scheme, url.host)
        found = self._proxies.get(key)
        if found is None:
            info = None if url.host and proxy_bypass(url.host) else aiohttp.helpers.proxies_from_env().get(url.scheme)
            found = self._proxies[key] = (info.proxy, info.proxy_auth) if info else (None, None)
        return found

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                trust_env=False,  # proxies from the environment: `_proxy`, per request
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        deadline = total_deadline(t)
        started, status = time.perf_counter(), "cancelled"
        try:
            async with asyncio.timeout(deadline):
                response = await self._send(request, t)
            status = str(response.status_code)
            return response
        except TimeoutError as exc:  # only the deadline's: _send maps aiohttp's own timeouts
            status = "ReadTimeout"
            raise httpx.ReadTimeout(f"no complete answer within {deadline:g} s", request=request) from exc
        except Exception as exc:
            status = type(exc).__name__
            raise
        finally:
            if _observer is not None:
                try:  # metrics never break a call
                    _observer(_system.get() or request.url.host, request.method, request.url.path, status,
                              time.perf_counter() - started)
                except Exception:
                    pass

    async def _send(self, request: httpx.Request, t: dict[str, float | None]) -> httpx.Response:
        timeout = aiohttp.ClientTimeout(
            total=None, connect=t.get("pool"), sock_connect=t.get("connect"), sock_read=t.get("read")
        )
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("host", "content-length")]
        body = await request.aread()
        proxy, proxy_auth = self._proxy(request.url)
        try:
            async with self._client().request(
                request.method, str(request.url), headers=headers, data=body or None,
                timeout=timeout, allow_redirects=False, proxy=proxy, proxy_auth=proxy_auth,
            ) as r:
                content = await r.read()
                return httpx.Response(r.status, headers=list(r.raw_headers), content=content, request=request)
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(connect_failure(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # opening a connection, or waiting for one (pool)
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:  # disconnected, reset, bad response
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
