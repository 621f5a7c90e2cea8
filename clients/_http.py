"""What every ticket-system client shares: a cached access token and the mapping of transport
failures to `BackendError` (transient? ambiguous?)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import AsyncIterator

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
