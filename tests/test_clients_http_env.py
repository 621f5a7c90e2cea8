"""The ticket-system clients' transport (clients/_http.py) and the environment: proxies from
HTTP_PROXY / NO_PROXY are used as httpx would use them, and a ~/.netrc entry (NETRC) for the ticket
system's host does not get in the way of the client's own credentials."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from clients.serval import ServalClient


async def test_a_netrc_entry_for_the_ticket_system_does_not_break_its_calls(serval, tmp_path: Path, monkeypatch):
    state, url = serval
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password their-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = ServalClient(url, bearer_token="test-token", timeout=5)
    try:
        teams = await client.list_teams()
    finally:
        await client.aclose()
    assert [t.id for t in teams] == ["team-it"]  # answered with the client's token, not the netrc login


class Proxy:
    """A forward proxy on loopback that answers every request itself and records its request line."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            self.lines.append(head[0])
            body = json.dumps({"data": [{"id": "team-via-proxy", "name": "Proxied"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        finally:
            writer.close()


@pytest.mark.parametrize("bypassed", [False, True])
async def test_the_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(serval, monkeypatch, bypassed):
    state, url = serval
    proxy = Proxy()
    async with proxy as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypassed else "example.com")
        for name in ("http_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        client = ServalClient(url, bearer_token="test-token", timeout=5)
        try:
            teams = await client.list_teams()
        finally:
            await client.aclose()
    if bypassed:
        assert proxy.lines == [] and [t.id for t in teams] == ["team-it"]
    else:
        assert proxy.lines == [f"GET {url}/v2/teams HTTP/1.1"] and [t.id for t in teams] == ["team-via-proxy"]
