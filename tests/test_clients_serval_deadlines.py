"""Each ticket-system call ends within its timeout, whole (connect + send + the answer's last byte).

A read timeout alone (httpx's, aiohttp's `sock_read`) measures the silence between two chunks: a
server sending one byte every half second kept a call with a 1 s timeout pending for ever. The
Serval, Rezolve.ai and Socialboards clients share one transport (clients/_http.py); each is driven
here over real HTTP against a loopback server that drips its answer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest

from clients.base import BackendError
from clients.rezolve import RezolveClient
from clients.serval import CreateTicketRequest, ServalClient
from clients.socialboards import CreateTicketRequest as SocialboardsTicket
from clients.socialboards import Creator, SocialboardsClient

TIMEOUT = 1.0  # the clients' configured timeout in these tests
DRIP = 0.5  # one byte every DRIP seconds: never silent for TIMEOUT, never done
MARGIN = 1.5  # scheduling slack on a shared machine; a per-read timeout never ends at all
TOKEN = json.dumps({"access_token": "drip-access-token", "token_type": "bearer", "expires_in": 3600}).encode()


class DripServer:
    """HTTP/1.1 on loopback: answers `fast` paths at once, every other request one byte at a time
    (the header lines, or a body announced with a large Content-Length)."""

    def __init__(self, *, where: str, fast: dict[str, bytes]) -> None:
        self.where, self.fast = where, fast
        self.requests: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
                await reader.readexactly(length)
                path = target.split("?", 1)[0]
                self.requests.append(f"{method} {path}")
                if path in self.fast:
                    body = self.fast[path]
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
                    continue
                if self.where == "headers":
                    writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                while not writer.is_closing() and not reader.at_eof():
                    writer.write(b"a" if self.where == "headers" else b" ")
                    await writer.drain()
                    await asyncio.sleep(DRIP)
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]


async def ends_in_time(call) -> tuple[BackendError, float]:
    """Run `call`; it must fail with a BackendError within TIMEOUT + MARGIN (the outer wait only keeps
    a regression from hanging the suite)."""
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        try:
            await asyncio.wait_for(call, TIMEOUT + 10)
        except asyncio.TimeoutError:
            pytest.fail(f"the call was still pending after {TIMEOUT + 10:g} s with a {TIMEOUT:g} s timeout")
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + MARGIN, f"the call ended after {elapsed:.2f} s with a {TIMEOUT:g} s timeout"
    assert elapsed >= TIMEOUT * 0.9, f"the call gave up after {elapsed:.2f} s, before its timeout"
    return caught.value, elapsed


@pytest.fixture(params=["body", "headers"])
async def drip(request) -> AsyncIterator[tuple[DripServer, str]]:
    server = DripServer(where=request.param, fast={"/token": TOKEN})
    async with server as url:
        yield server, url


async def test_serval_create_ends_within_its_timeout(drip):
    server, url = drip
    client = ServalClient(url, bearer_token="test-token", timeout=TIMEOUT)
    try:
        error, _ = await ends_in_time(client.create_ticket(CreateTicketRequest(teamId="team-it", name="Slow")))
    finally:
        await client.aclose()
    assert error.transient and error.ambiguous  # a create may have been carried out: look before retrying
    assert server.requests == ["POST /v2/tickets"]


async def test_serval_read_ends_within_its_timeout_and_is_not_ambiguous(drip):
    server, url = drip
    client = ServalClient(url, bearer_token="test-token", timeout=TIMEOUT)
    try:
        error, _ = await ends_in_time(client.list_teams())
    finally:
        await client.aclose()
    assert error.transient and not error.ambiguous


async def test_socialboards_create_ends_within_its_timeout(drip):
    server, url = drip
    client = SocialboardsClient(url, client_id="sandbox-client", refresh_token="sb-refresh-0", timeout=TIMEOUT)
    body = SocialboardsTicket(title="Slow", message="It drips", creator=Creator(email="alice@example.com"))
    try:
        error, _ = await ends_in_time(client.create_ticket(body))
    finally:
        await client.aclose()
    assert error.transient and error.ambiguous
    assert server.requests == ["POST /token", "POST /tickets"]


async def test_rezolve_call_ends_within_its_timeout(drip):
    server, url = drip
    client = RezolveClient(url, client_id="bot", client_secret="bot-secret", tenant_id="tenant-1", realm="acme",
                           token_url=f"{url}/token", timeout=TIMEOUT)
    try:
        error, _ = await ends_in_time(client.ticket_types())
    finally:
        await client.aclose()
    assert error.transient and not error.ambiguous
    assert server.requests[0] == "POST /token" and len(server.requests) == 2


async def test_a_full_pool_gives_up_after_the_pool_timeout():
    """httpx's `pool` timeout (waiting for a free connection) holds on the shared aiohttp transport too:
    with its only connection busy, a second request gives up after `pool`, not after the deadline, and
    is not ambiguous (it was never sent)."""
    import httpx

    from clients._http import AiohttpTransport, transport_errors

    async with DripServer(where="body", fast={}) as url:
        async with httpx.AsyncClient(base_url=url, transport=AiohttpTransport(limit=1),
                                     timeout=httpx.Timeout(5.0, pool=0.3)) as http:
            busy = asyncio.create_task(http.get("/slow"))
            await asyncio.sleep(0.2)  # the only connection is taken
            started = time.monotonic()
            with pytest.raises(BackendError) as caught:
                async with transport_errors("Serval", unsafe=True):
                    await http.post("/v2/tickets", json={})
            waited = time.monotonic() - started
            busy.cancel()
            await asyncio.gather(busy, return_exceptions=True)
    assert 0.25 <= waited < 0.3 + MARGIN and not caught.value.ambiguous and caught.value.transient
