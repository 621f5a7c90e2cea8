"""What every ticket-system client shares: a cached access token and the mapping of transport
failures to `BackendError` (transient? ambiguous?)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
import httpx

from .base import BackendError

# Renew a token this long before it expires, so a request never leaves with a token about to lapse.
RENEW_MARGIN = 60.0


class TokenCache:
    """Holds one access token and renews it before expiry; concurrent callers share one renewal."""

    def __init__(self, fetch: Callable[[], Awaitable[tuple[str, float]]]) -> None:
        self._fetch = fetch  # returns (token, lifetime in seconds)
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._token and time.monotonic() < self._renew_at:
            return self._token
        async with self._lock:
            if self._token and time.monotonic() < self._renew_at:
                return self._token
            token, lifetime = await self._fetch()
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
    """
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise BackendError(
            f"{system} could not be reached ({type(exc).__name__})", transient=True
        ) from exc
    except httpx.TransportError as exc:  # read/write timeouts, dropped connections, protocol errors
        raise BackendError(
            f"{system} did not answer ({type(exc).__name__})", transient=True, ambiguous=unsafe
        ) from exc


def status_is_transient(status: int) -> bool:
    return status == 429 or status == 408 or status >= 500


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent over one aiohttp connection pool.

    httpcore's pool (httpx's default transport) re-checks every pooled connection on each request
    and response (`has_expired()` polls the socket through anyio; idle-connection pruning is
    quadratic), which made it the largest CPU cost of creating a ticket under load. aiohttp's
    connector keeps idle connections in a per-host deque. Transport failures are raised as the
    httpx exceptions `transport_errors` maps (connect vs. read: ambiguous or not)."""

    def __init__(self, *, limit: int = 100) -> None:
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                auto_decompress=False,  # httpx decodes the body by its Content-Encoding
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
                trust_env=True,  # HTTPS_PROXY / NO_PROXY, as httpx would honour them
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        t = request.extensions.get("timeout") or {}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=t.get("connect"), sock_read=t.get("read"))
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in ("host", "content-length")]
        body = await request.aread()
        try:
            async with self._client().request(
                request.method, str(request.url), headers=headers, data=body or None,
                timeout=timeout, allow_redirects=False,
            ) as r:
                content = await r.read()
                return httpx.Response(r.status, headers=list(r.raw_headers), content=content, request=request)
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc), request=request) from exc
        except (aiohttp.SocketTimeoutError, asyncio.TimeoutError) as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:  # disconnected, reset, bad response
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
