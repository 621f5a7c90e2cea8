"""Load generator: signed requests over keep-alive HTTP/1.1 connections, fixed concurrency.

`closed_loop`: C workers, each sends its next request as soon as the previous one is answered.
Latency = time.monotonic() just before the request is written to the time its whole answer has
been read, as the sender (Slack) sees it.

`windowed`: the same, but a request is sent only while fewer than `window` tickets are unfinished
(sent minus notified, as counted by the fake Slack), so the bot is driven at its sustainable rate
instead of growing an unbounded backlog. Given several URLs (replicas of the bot), request i goes to
URL i mod len(urls): round robin, as a load balancer would split them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import aiohttp


@dataclass
class Sample:
    sent: float
    acked: float
    status: int
    body: bytes = b""

    @property
    def latency(self) -> float:
        return self.acked - self.sent


def _session(concurrency: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
        timeout=aiohttp.ClientTimeout(total=30),
    )


async def _send(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> Sample:
    sent = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers) as r:
            data = await r.read()
            return Sample(sent, time.monotonic(), r.status, data)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return Sample(sent, time.monotonic(), 0, repr(exc).encode())


async def closed_loop(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int,
                      warmup: list[tuple[bytes, dict[str, str]]] | None = None,
                      on_measure: Callable[[], None] | None = None) -> list[Sample]:
    """Send `warmup` (not recorded) then `requests` on the same connections; `on_measure` is called
    between the two. Returns one Sample per request, in order."""
    out: list[Sample | None] = [None] * len(requests)
    async with _session(concurrency) as session:
        for batch, record in ((warmup or [], False), (requests, True)):
            if record and on_measure:
                on_measure()
            todo = iter(enumerate(batch))

            async def worker() -> None:
                for i, (body, headers) in todo:
                    sample = await _send(session, url, body, headers)
                    if record:
                        out[i] = sample

            await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(batch))))))
    return [s for s in out if s is not None]


async def windowed(url: str | list[str], requests: list[tuple[bytes, dict[str, str]]], concurrency: int, window: int,
                   finished: Callable[[], Awaitable[int]], poll: float = 0.02) -> list[Sample]:
    """Closed loop with at most `window` unfinished tickets; `finished()` counts finished ones.
    `url`: one URL, or a list of them taken in turn (request i → urls[i % len(urls)])."""
    urls = [url] if isinstance(url, str) else list(url)
    out: list[Sample | None] = [None] * len(requests)
    state = {"sent": 0, "done": 0}
    changed = asyncio.Condition()
    stop = asyncio.Event()

    async def poller() -> None:
        while not stop.is_set():
            n = await finished()
            if n != state["done"]:
                async with changed:
                    state["done"] = n
                    changed.notify_all()
            await asyncio.sleep(poll)

    async with _session(concurrency * len(urls)) as session:
        todo = iter(enumerate(requests))

        async def worker() -> None:
            for i, (body, headers) in todo:
                async with changed:
                    await changed.wait_for(lambda: state["sent"] - state["done"] < window)
                    state["sent"] += 1
                out[i] = await _send(session, urls[i % len(urls)], body, headers)

        poll_task = asyncio.create_task(poller())
        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            stop.set()
            await poll_task
    return [s for s in out if s is not None]
