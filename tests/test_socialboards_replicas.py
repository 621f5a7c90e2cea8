"""Socialboards rotates its refresh token at every exchange: replicas sharing it must exchange one
at a time through the database and use the access token another stored, or every other replica's
token breaks (issue 12). Two clients stand for two replicas, on one real database."""

from __future__ import annotations

import asyncio

from bot.journal.storage import Storage
from clients.socialboards import SocialboardsClient
from sandbox.socialboards import CLIENT_ID, REFRESH_TOKEN

STATE = "socialboards.refresh_token"


async def replica(url: str, storage: Storage) -> SocialboardsClient:
    client = SocialboardsClient(url, client_id=CLIENT_ID, refresh_token=REFRESH_TOKEN)
    await client.keep_refresh_token(
        lambda: storage.get_state(STATE),
        lambda value: storage.set_state(STATE, value),
        exclusive=lambda: storage.exclusive(STATE),
    )
    return client


def exchanges(state) -> int:
    return len([r for r in state.requests if r["path"].endswith("/token")])


async def test_two_replicas_share_one_token_exchange(socialboards, pg_url):
    db_url = pg_url  # replicas share a PostgreSQL database (on SQLite one process serves)
    state, url = socialboards
    # each replica has its own connection(s) to the database, as separate processes would
    first, second = await Storage(db_url).open(), await Storage(db_url).open()
    a, b = await replica(url, first), await replica(url, second)
    try:
        for _ in range(3):
            await asyncio.gather(a.root_categories(), b.root_categories(), a.custom_fields(), b.custom_fields())
        assert exchanges(state) == 1
        state.advance(state.token_ttl + 1)  # both access tokens expire
        await asyncio.gather(a.root_categories(), b.root_categories())
        await asyncio.gather(a.root_categories(), b.root_categories())
        assert exchanges(state) == 2
        # the newest refresh token is stored, and it is the one Socialboards accepts
        assert state.refresh_token in (await first.get_state(STATE) or "")
    finally:
        for c in (a, b):
            await c.aclose()
        await first.close()
        await second.close()
