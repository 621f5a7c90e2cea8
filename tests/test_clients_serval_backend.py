"""The Serval client and back end against the Serval sandbox on loopback: the user list loaded once for
concurrent look-ups, who the requester is when nobody matches, the bounded duplicate look-up, an early
revoked token, answers that are not Serval's, and every token remembered as a secret (issue 11)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients import secrets
from clients.base import BackendError, TicketDraft
from clients.serval import REQUESTER, ServalBackend, ServalClient
from sandbox.serval import Fault, ServalState, start

DM_SYNC = [{"slackDm": {"targetUserType": REQUESTER}}]


def backend_for(url: str, **client_kw: Any) -> ServalBackend:
    if not client_kw:
        client_kw = {"bearer_token": "test-token"}
    return ServalBackend(ServalClient(url, timeout=5, **client_kw), team_id="team-it",
                         slack_integration_id="integ-slack-1")


@pytest.fixture
async def backend(serval) -> AsyncIterator[ServalBackend]:
    b = backend_for(serval[1])
    yield b
    await b.aclose()


def draft(reference: str = "slack-ref-1", **kw: Any) -> TicketDraft:
    return TicketDraft(title="VPN is down", description=f"Since 9am.\n\nref {reference}", reference=reference, **kw)


def calls(state: ServalState, method: str, path: str) -> list[dict[str, Any]]:
    return state.requests_to(method, path)


# --- item 5: one user-list load at a time -----------------------------------------------------------


def add_people(state: ServalState, n: int) -> None:
    """n active users besides the seeded ones (added directly: add_user's duplicate check is quadratic)."""
    for i in range(n):
        state.users[f"usr-p{i}"] = {"id": f"usr-p{i}", "email": f"person{i}@example.com", "firstName": "P",
                                    "lastName": str(i), "name": f"P {i}", "role": "USER_ROLE_ORG_MEMBER",
                                    "createdAt": state.now()}


async def test_concurrent_lookups_on_a_cold_cache_share_one_load(serval, backend):
    state, _ = serval
    add_people(state, 2498)  # with Alice and Bob: 2,500 active users, three pages of 1,000
    emails = [f"person{i * 50}@example.com" for i in range(30)] + [f"stranger{i}@example.com" for i in range(10)]
    found = await asyncio.gather(*(backend.find_user(e) for e in emails))
    assert found == [f"usr-p{i * 50}" for i in range(30)] + [None] * 10
    assert len(calls(state, "GET", "/v2/users")) == 3
    # People Serval does not know, again and again: no reload of the whole list for each of them.
    for email in emails[30:] * 3:
        assert await backend.find_user(email) is None
    assert await backend.find_user("BOB@example.com ") == "usr-bob"
    assert len(calls(state, "GET", "/v2/users")) == 3


async def test_a_failed_shared_load_fails_every_waiter_once_and_the_next_lookup_loads_again(serval, backend):
    state, _ = serval
    state.faults["GET /v2/users"] = Fault(next_n=["error"])
    results = await asyncio.gather(*(backend.find_user("bob@example.com") for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, BackendError) and r.transient for r in results)
    assert len(calls(state, "GET", "/v2/users")) == 1
    assert await backend.find_user("bob@example.com") == "usr-bob"
    assert len(calls(state, "GET", "/v2/users")) == 2


# --- item 9: who is the requester when nobody matches -----------------------------------------------


async def test_a_matched_requester_gets_serval_s_dm_sync(serval, backend):
    state, _ = serval
    ticket = await backend.create_ticket(draft(requester_id="usr-bob", submitter_id="usr-alice"))
    body = calls(state, "POST", "/v2/tickets")[0]["body"]
    assert body["channelSyncTargets"] == DM_SYNC
    assert state.tickets[ticket.id]["requesterUserId"] == "usr-bob"
    assert state.sync_targets[ticket.id] == DM_SYNC


async def test_an_unmatched_requester_asks_for_no_dm_sync_serval_would_send_it_to_the_submitter(serval, backend):
    state, _ = serval
    ticket = await backend.create_ticket(draft(submitter_id="usr-alice"))
    assert "channelSyncTargets" not in calls(state, "POST", "/v2/tickets")[0]["body"]
    assert state.tickets[ticket.id]["requesterUserId"] == "usr-alice"  # Serval's default: the creator
    assert state.sync_targets[ticket.id] == []
    assert backend.dm_sync_needs_requester


async def test_nobody_matched_asks_for_no_dm_sync_serval_would_send_it_to_the_api_client(serval, backend):
    state, _ = serval
    ticket = await backend.create_ticket(draft())
    body = calls(state, "POST", "/v2/tickets")[0]["body"]
    assert "channelSyncTargets" not in body and "requesterUserId" not in body and "createdByUserId" not in body
    assert state.tickets[ticket.id]["requesterUserId"] == state.api_client_user_id
    assert state.sync_targets[ticket.id] == []


# --- item 11: the duplicate look-up is bounded ------------------------------------------------------


def fill(state: ServalState, team: str, count: int, *, at: float, reference: str | None = None) -> list[dict]:
    """`count` tickets in `team` created at clock time `at` (the last one carrying `reference`)."""
    clock = state.clock
    state.clock = lambda: at
    try:
        return [state.create_ticket({"teamId": team, "name": f"t{i}", "description": (
            f"ref {reference}" if reference and i == count - 1 else f"other {i}")}) for i in range(count)]
    finally:
        state.clock = clock


async def test_the_look_up_searches_the_team_since_the_submission_and_stops_at_the_match(serval, backend):
    state, _ = serval
    state.add_team("Facilities", "FAC")
    now = dt.datetime.now(dt.timezone.utc)
    fill(state, "team-it", 300, at=(now - dt.timedelta(hours=2)).timestamp())  # before the submission
    fill(state, "team-fac", 300, at=now.timestamp())  # another team
    mine = fill(state, "team-it", 50, at=now.timestamp(), reference="slack-mine")[-1]
    fill(state, "team-it", 600, at=now.timestamp() + 1)  # after it: three more pages, never read
    found = await backend.find_ticket(draft("slack-mine"), now)
    assert found is not None and found.id == mine["id"] and found.display_id == mine["friendlyIdentifier"]
    searches = calls(state, "POST", "/v2/tickets/search")
    assert len(searches) == 1 and not calls(state, "GET", "/v2/tickets")
    query = searches[0]["body"]
    assert query["teamIds"] == ["team-it"] and query["pageSize"] <= 1000
    after = dt.datetime.fromisoformat(query["createdAfter"].replace("Z", "+00:00"))
    assert now - dt.timedelta(minutes=6) <= after <= now - dt.timedelta(minutes=4)


async def test_a_look_up_without_a_match_reads_only_the_window_page_by_page(serval, backend):
    state, _ = serval
    now = dt.datetime.now(dt.timezone.utc)
    fill(state, "team-it", 2000, at=(now - dt.timedelta(hours=2)).timestamp())
    fill(state, "team-it", 450, at=now.timestamp())
    assert await backend.find_ticket(draft("slack-nobody"), now) is None
    searches = calls(state, "POST", "/v2/tickets/search")
    page = searches[0]["body"]["pageSize"]
    assert len(searches) == -(-450 // page)  # the window's pages, not the team's 2,450 tickets
    assert [s["body"].get("pageToken") is None for s in searches] == [True] + [False] * (len(searches) - 1)


@pytest.mark.parametrize("status", [404, 405])
async def test_without_search_the_look_up_lists_from_the_submission_and_stops_at_the_match(serval, backend, status):
    state, _ = serval
    state.faults["POST /v2/tickets/search"] = Fault(error_rate=1.0, status=status)
    now = dt.datetime.now(dt.timezone.utc)
    fill(state, "team-it", 1500, at=(now - dt.timedelta(hours=2)).timestamp())
    mine = fill(state, "team-it", 10, at=now.timestamp(), reference="slack-mine")[-1]
    fill(state, "team-it", 3000, at=now.timestamp() + 1)
    assert (await backend.find_ticket(draft("slack-mine"), now)).id == mine["id"]
    lists = calls(state, "GET", "/v2/tickets")
    assert len(lists) == 1 and lists[0]["query"]["teamId"] == "team-it"
    start = int(lists[0]["query"]["startTime.seconds"])
    assert now.timestamp() - 360 <= start <= now.timestamp() - 240
    # Search is not asked again once it has said it does not exist.
    assert (await backend.find_ticket(draft("slack-mine"), now)).id == mine["id"]
    assert len(calls(state, "POST", "/v2/tickets/search")) == 1 and len(calls(state, "GET", "/v2/tickets")) == 2


async def test_a_failing_search_is_an_error_not_a_fallback(serval, backend):
    state, _ = serval
    state.faults["POST /v2/tickets/search"] = Fault(next_n=["error"])  # 503
    with pytest.raises(BackendError) as info:
        await backend.find_ticket(draft(), dt.datetime.now(dt.timezone.utc))
    assert info.value.transient and not info.value.ambiguous and not calls(state, "GET", "/v2/tickets")


# --- item 19a: a token revoked early is renewed once ------------------------------------------------


async def test_a_revoked_token_is_renewed_once_and_the_ticket_still_created(serval):
    state, url = serval
    backend = backend_for(url, client_id="test-client", client_secret="test-secret")
    try:
        await backend.create_ticket(draft("slack-one", submitter_id="usr-alice"))
        state.revoke()  # long before it expires
        second = await backend.create_ticket(draft("slack-two", submitter_id="usr-alice"))
    finally:
        await backend.aclose()
    assert second.id in state.tickets and len(state.tickets) == 2
    assert len(calls(state, "POST", "/v2/auth/token")) == 2
    assert len(calls(state, "POST", "/v2/tickets")) == 3  # one, two refused (401), two again


async def test_a_token_refused_twice_is_an_error_after_one_renewal(serval):
    state, url = serval
    state.faults["POST /v2/tickets"] = Fault(next_n=["error", "error"], status=401)
    backend = backend_for(url, client_id="test-client", client_secret="test-secret")
    try:
        with pytest.raises(BackendError) as info:
            await backend.create_ticket(draft())
    finally:
        await backend.aclose()
    assert info.value.status == 401 and not info.value.transient
    assert len(calls(state, "POST", "/v2/auth/token")) == 2 and len(calls(state, "POST", "/v2/tickets")) == 2


# --- item 1: answers that are not Serval's ----------------------------------------------------------


@pytest.mark.parametrize("fault", ["not_json", "no_data"])
async def test_a_create_answered_200_without_data_is_ambiguous_and_found_afterwards(serval, backend, fault):
    state, _ = serval
    state.faults["POST /v2/tickets"] = Fault(next_n=[fault])
    since = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft("slack-once"))
    assert info.value.transient and info.value.ambiguous
    found = await backend.find_ticket(draft("slack-once"), since)
    assert found is not None and list(state.tickets) == [found.id]


@pytest.mark.parametrize("fault", ["not_json", "no_data"])
async def test_a_read_answered_200_without_data_is_transient(serval, backend, fault):
    state, _ = serval
    ticket = await backend.create_ticket(draft())
    state.faults[f"GET /v2/tickets/{ticket.id}"] = Fault(next_n=[fault])
    with pytest.raises(BackendError) as info:
        await backend.ticket_status(ticket)
    assert info.value.transient and not info.value.ambiguous
    assert await backend.ticket_status(ticket) == "Open"


@pytest.mark.parametrize("path", ["GET /v2/users", "GET /v2/teams", "POST /v2/tickets/search"])
async def test_a_list_answered_with_a_page_that_is_not_json_is_transient(serval, backend, path):
    state, _ = serval
    state.faults[path] = Fault(next_n=["not_json"])
    call = {"GET /v2/users": lambda: backend.find_user("bob@example.com"),
            "GET /v2/teams": backend.refresh_catalog,
            "POST /v2/tickets/search": lambda: backend.find_ticket(draft(), dt.datetime.now(dt.timezone.utc))}[path]
    with pytest.raises(BackendError) as info:
        await call()
    assert info.value.transient and not info.value.ambiguous


@pytest.mark.parametrize("fault", ["not_json", "no_data"])
async def test_a_token_answer_without_a_token_is_transient(serval, fault):
    state, url = serval
    state.faults["POST /v2/auth/token"] = Fault(next_n=[fault])
    backend = backend_for(url, client_id="test-client", client_secret="test-secret")
    try:
        with pytest.raises(BackendError) as info:
            await backend.create_ticket(draft())
        assert info.value.transient and not info.value.ambiguous and not state.tickets
        await backend.create_ticket(draft())
    finally:
        await backend.aclose()
    assert len(state.tickets) == 1


# --- item 16: every token obtained at run time is a known secret ------------------------------------


async def test_every_serval_access_token_is_remembered_as_a_secret():
    # A seed of its own: the sandbox's tokens follow its seed, and other tests may have issued the
    # default seed's tokens (and remembered them) in this process already.
    state = ServalState(seed=int.from_bytes(os.urandom(8), "big"))
    runner, url = await start(state)
    backend = backend_for(url, client_id="test-client", client_secret="test-secret")
    try:
        await backend.create_ticket(draft("slack-one"))
        issued = set(state.issued_tokens)
        state.revoke()
        await backend.create_ticket(draft("slack-two"))
        issued |= set(state.issued_tokens)
    finally:
        await backend.aclose()
        await runner.cleanup()
    assert len(issued) == 2 and issued <= secrets.known()[1]

