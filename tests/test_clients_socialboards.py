"""Socialboards client and back end against the Socialboards sandbox on loopback: refresh-token
rotation, exact bodies, the form, the `{data, errorCode, errorText}` envelope and every error shape."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from typing import Any

import httpx
import pytest

from clients.base import BackendError, CreatedTicket, Person, TicketDraft
from clients.socialboards import (
    CreateTicketRequest,
    Creator,
    ListTicketsRequest,
    SocialboardsBackend,
    SocialboardsClient,
    pick_refresh_token,
    refresh_token_fingerprint,
    split_tags,
)
from sandbox.socialboards import CLIENT_ID, REFRESH_TOKEN


class Rotations:
    """Records every refresh token the client hands over for storage."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def __call__(self, token: str) -> None:
        self.tokens.append(token)


def make_client(url: str, *, refresh_token: str = REFRESH_TOKEN, **kw: Any) -> SocialboardsClient:
    return SocialboardsClient(url, client_id=kw.pop("client_id", CLIENT_ID), refresh_token=refresh_token, **kw)


def draft(title: str = "Checkout broken", *, reference: str = "slack-abc", requester: Person | None = None,
          submitter: Person | None = None, **values: Any) -> TicketDraft:
    alice = Person("Alice Smith", "alice@example.com", "https://example.com/U111_72.png")
    return TicketDraft(
        title=title,
        description=f"It fails on pay.\n\n—\nRequested in Slack by Alice Smith · ref {reference}",
        reference=reference,
        requester=requester if requester is not None else alice,
        submitter=submitter if submitter is not None else alice,
        source_name="Slack #dev",
        values=values,
    )


def calls(state: Any, method: str, path: str) -> list[dict[str, Any]]:
    return [r for r in state.requests if r["method"] == method and r["path"] == path]


@pytest.fixture
async def rotations() -> Rotations:
    return Rotations()


@pytest.fixture
async def client(socialboards, rotations):
    c = make_client(socialboards[1], on_refresh_token=rotations)
    yield c
    await c.aclose()


@pytest.fixture
async def backend(client):
    b = SocialboardsBackend(client, community="acme")
    yield b
    await b.aclose()


# --- tokens ------------------------------------------------------------------------------------


async def test_refresh_token_is_exchanged_and_the_new_one_kept(socialboards, client, rotations):
    state, _ = socialboards
    await client.root_categories()
    await client.teammates()
    exchanges = calls(state, "POST", "/token")
    assert len(exchanges) == 1
    assert exchanges[0]["body"] == {"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN, "client_id": CLIENT_ID}
    assert client.refresh_token == state.refresh_token != REFRESH_TOKEN
    assert rotations.tokens == [state.refresh_token]
    assert len(calls(state, "GET", "/categories")) == 1  # the bearer token was accepted


async def test_expired_access_token_is_renewed_with_the_newest_refresh_token(socialboards, backend, rotations):
    state, _ = socialboards
    first = await backend.create_ticket(draft("One"))
    state.advance(state.token_ttl + 60)  # the access token expires mid-run
    second = await backend.create_ticket(draft("Two"))
    assert (first.id, second.id) == ("4484636", "4484637")
    exchanges = calls(state, "POST", "/token")
    assert len(exchanges) == 2
    assert exchanges[1]["body"]["refresh_token"] == rotations.tokens[0]  # the rotated one, not the seed
    assert rotations.tokens[-1] == state.refresh_token == backend.client.refresh_token
    assert len(calls(state, "POST", "/tickets")) == 3  # one refused with 401, then retried once


async def test_access_token_is_renewed_before_it_expires(socialboards):
    state, url = socialboards
    state.token_ttl = 2
    client = make_client(url)
    try:
        await client.root_categories()
        await asyncio.sleep(1.1)
        await client.root_categories()
    finally:
        await client.aclose()
    assert len(calls(state, "POST", "/token")) == 2
    assert len(calls(state, "GET", "/categories")) == 2  # none refused


async def test_concurrent_calls_make_one_exchange(socialboards, client):
    """Two exchanges at once would each rotate the refresh token and one would be left dead."""
    await asyncio.gather(*(client.root_categories() for _ in range(8)))
    assert len(calls(socialboards[0], "POST", "/token")) == 1


async def test_a_dead_refresh_token_is_a_clear_permanent_error(socialboards):
    client = make_client(socialboards[1], refresh_token="sb-refresh-dead")
    try:
        with pytest.raises(BackendError) as info:
            await client.root_categories()
    finally:
        await client.aclose()
    assert info.value.code == "invalid_grant" and not info.value.transient
    assert "refused the bot's refresh token (invalid_grant)" in info.value.message


async def test_a_failing_store_does_not_stop_the_bot(socialboards):
    async def broken(token: str) -> None:
        raise OSError("disk full")

    client = make_client(socialboards[1], on_refresh_token=broken)
    try:
        assert await client.root_categories()
        assert client.refresh_token == socialboards[0].refresh_token
    finally:
        await client.aclose()


async def test_restart_from_the_stored_refresh_token(socialboards):
    state, url = socialboards
    store: dict[str, str] = {}

    async def load() -> str | None:
        return store.get("sb")

    async def save(value: str) -> None:
        store["sb"] = value

    first = make_client(url)
    await first.keep_refresh_token(load, save)
    await first.root_categories()
    await first.aclose()
    stored = json.loads(store["sb"])["token"]
    assert stored == state.refresh_token and stored != REFRESH_TOKEN  # the rotated one, never the configured one

    restarted = make_client(url)  # configured with the seed token, which was rotated away
    await restarted.keep_refresh_token(load, save)
    seed_again = make_client(url)
    try:
        assert await restarted.root_categories()
        assert state.refresh_token in store["sb"]
        with pytest.raises(BackendError, match="invalid_grant"):
            await seed_again.root_categories()
    finally:
        await restarted.aclose()
        await seed_again.aclose()


async def test_a_newly_configured_refresh_token_wins_over_the_stored_one(socialboards):
    state, url = socialboards
    stored = json.dumps({"from": refresh_token_fingerprint("an-older-configured-token"), "token": "stale"})

    async def load() -> str | None:
        return stored

    async def save(value: str) -> None:
        pass

    client = make_client(url)
    await client.keep_refresh_token(load, save)
    try:
        assert client.refresh_token == REFRESH_TOKEN
        assert await client.root_categories()
    finally:
        await client.aclose()


def test_pick_refresh_token():
    seed = refresh_token_fingerprint("seed")
    assert pick_refresh_token("seed", None) == "seed"
    assert pick_refresh_token("seed", (seed, "newer")) == "newer"
    assert pick_refresh_token("pasted-by-admin", (seed, "newer")) == "pasted-by-admin"
    assert "seed" not in seed


# --- the form ----------------------------------------------------------------------------------


async def test_form_has_categories_sentiment_tags_and_custom_fields(backend):
    fields = {f.id: f for f in await backend.form_fields()}
    assert list(fields) == ["category", "sentiment", "tags", "custom:42623"]
    category = fields["category"]
    assert category.kind == "select" and not category.required
    assert [(o.value, o.label) for o in category.options] == [
        ("15597", "Sales"), ("15600", "Sales › New cars"), ("15601", "Sales › Used cars"),
        ("15598", "Support"), ("15602", "Support › Technical")]  # hidden "Archive" left out
    sentiment = fields["sentiment"]
    assert [o.value for o in sentiment.options] == ["question", "praise", "suggestion", "complaint"]
    assert sentiment.default == "question" and sentiment.required
    assert fields["tags"].kind == "text" and "commas" in fields["tags"].hint
    region = fields["custom:42623"]
    assert (region.label, region.kind, region.required) == ("Shop region", "select", False)
    assert [o.value for o in region.options] == ["Østfold", "Akershus", "Oslo"]


async def test_a_failed_refresh_keeps_the_last_form(socialboards, client):
    backend = SocialboardsBackend(client, cache_ttl=0)
    before = await backend.form_fields()
    socialboards[0].next_faults = ["500"]
    assert await backend.form_fields() == before


async def test_custom_fields_that_cannot_be_listed_are_left_out():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600, "refresh_token": "r2"})
        if request.url.path == "/customfields":
            return httpx.Response(404, json={"data": None, "errorCode": 404, "errorText": "Not Found"})
        return httpx.Response(200, json={"data": [], "errorCode": -1, "errorText": None})

    backend = SocialboardsBackend(make_client("http://sb.test", transport=httpx.MockTransport(handler)))
    try:
        assert [f.id for f in await backend.form_fields()] == ["sentiment", "tags"]
    finally:
        await backend.aclose()


# --- create ------------------------------------------------------------------------------------


async def test_create_sends_the_documented_body(socialboards, backend):
    state, _ = socialboards
    ticket = await backend.create_ticket(
        draft(category="15600", sentiment="complaint", tags="billing, VPN ,, billing", **{"custom:42623": "Oslo"})
    )
    call = calls(state, "POST", "/tickets")[0]
    assert call["headers"]["Content-Type"] == "application/json"
    assert call["body"] == {
        "title": "Checkout broken",
        "message": "It fails on pay.\n\n—\nRequested in Slack by Alice Smith · ref slack-abc",
        "isHtml": False,
        "creator": {"name": "Alice Smith", "email": "alice@example.com", "image": "https://example.com/U111_72.png"},
        "categoryId": 15600,
        "customFields": [{"id": 42623, "value": "Oslo"}],
        "sentiment": "complaint",
        "sourceName": "Slack #dev",
        "tags": ["billing", "VPN"],
    }
    assert ticket == CreatedTicket(
        id="4484636", display_id="4484636", backend="socialboards",
        url="https://inbox.socialboards.com/acme/tickets?ticketId=4484636")
    stored = state.tickets[4484636]
    assert stored["author"]["email"] == "alice@example.com" and stored["category"]["name"] == "New cars"


async def test_empty_answers_are_left_out(socialboards, backend):
    await backend.create_ticket(draft())
    body = calls(socialboards[0], "POST", "/tickets")[0]["body"]
    assert set(body) == {"title", "message", "isHtml", "creator", "sentiment", "sourceName"}
    assert body["sentiment"] == "question"


async def test_creator_falls_back_to_the_submitter_then_fails_clearly(backend):
    nomail = Person("No Mail")
    body = backend.request_for(draft(requester=nomail, submitter=Person("Bob", "bob@example.com")))
    assert body.creator == Creator(name="Bob", email="bob@example.com")
    with pytest.raises(BackendError, match="needs the requester's e-mail address"):
        backend.request_for(draft(requester=nomail, submitter=nomail))


def test_split_tags():
    assert split_tags(" a, b ;c,,a ") == ["a", "b", "c"]
    assert split_tags("") == [] and split_tags(None) == []
    assert split_tags("two  words") == ["two words"]


# --- errors ------------------------------------------------------------------------------------


async def test_an_error_code_other_than_minus_one_is_a_failure_even_with_http_200(socialboards, backend):
    state, _ = socialboards
    state.categories = [c for c in state.categories if c["id"] != 15600]  # deleted meanwhile
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft(category="15600"))
    exc = info.value
    assert exc.status == 200 and exc.code == "400" and not exc.transient and not exc.ambiguous
    assert exc.message == "Socialboards refused the ticket: categoryId 15600 does not exist (error 400)"


async def test_a_missing_required_custom_field_is_reported(socialboards, backend):
    socialboards[0].custom_fields[0]["isRequired"] = True
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft())
    assert "custom field 42623 (Shop region) is required" in info.value.message


async def test_a_body_the_sandbox_finds_wrong_is_refused(client):
    body = CreateTicketRequest(title="x", message="y", creator=Creator(email="not-an-email"))
    with pytest.raises(BackendError) as info:
        await client.create_ticket(body)
    assert "creator.email is required and must be a valid e-mail address" in info.value.message


@pytest.mark.parametrize(
    "fault, transient, ambiguous, retry_after",
    [("429", True, False, 1.0), ("500", True, True, None), ("drop", True, True, None)],
)
async def test_faults_on_create(socialboards, backend, fault, transient, ambiguous, retry_after):
    await backend.client.root_categories()  # a token first, so the fault hits the create
    socialboards[0].next_faults = [fault]
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft())
    exc = info.value
    assert (exc.transient, exc.ambiguous, exc.retry_after) == (transient, ambiguous, retry_after)
    assert (await backend.create_ticket(draft())).id == "4484636"


async def test_one_401_renews_the_token_and_goes_through(socialboards, backend):
    await backend.client.root_categories()
    socialboards[0].next_faults = ["401"]
    assert (await backend.create_ticket(draft())).id == "4484636"
    assert len(calls(socialboards[0], "POST", "/token")) == 2


@pytest.mark.parametrize(
    "status, body, transient, ambiguous, message",
    [
        (502, "<html>Bad gateway</html>", True, True, "Socialboards failed creating the ticket (HTTP 502)"),
        (200, "OK", True, True, "Socialboards gave an answer the bot does not understand (HTTP 200)"),
        (200, '{"data": null, "errorCode": 500, "errorText": "Database timeout"}', True, True,
         "Socialboards failed creating the ticket (Database timeout)"),
        (400, '{"data": null, "errorCode": 400, "errorText": "title is required"}', False, False,
         "Socialboards refused the ticket: title is required (error 400)"),
        (200, '{"data": null, "errorCode": 7, "errorText": "Community is suspended"}', False, False,
         "Socialboards refused the ticket: Community is suspended (error 7)"),
    ],
)
async def test_answers_outside_the_sandbox(status, body, transient, ambiguous, message):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600, "refresh_token": "r2"})
        return httpx.Response(status, content=body.encode())

    client = make_client("http://sb.test", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(BackendError) as info:
            await client.create_ticket(CreateTicketRequest(title="x", message="y", creator=Creator(email="a@b.co")))
    finally:
        await client.aclose()
    assert (info.value.message, info.value.transient, info.value.ambiguous) == (message, transient, ambiguous)


@pytest.mark.parametrize("fault", ["not_json", "no_data"])
async def test_a_create_answered_200_without_the_envelopes_data_is_ambiguous(socialboards, backend, fault):
    """200 with an HTML page, or a success envelope without `data`: the ticket was made, so the error is
    transient and ambiguous (look before retrying), and the look-up finds it: no duplicate."""
    state, _ = socialboards
    await backend.client.root_categories()  # a token first, so the fault hits the create
    state.next_faults = [fault]
    since = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft(reference="slack-once"))
    assert info.value.transient and info.value.ambiguous
    found = await backend.find_ticket(draft(reference="slack-once"), since)
    assert found is not None and list(state.tickets) == [int(found.id)]


@pytest.mark.parametrize("fault", ["not_json", "no_data"])
async def test_a_list_answered_200_without_the_envelopes_data_is_transient(socialboards, client, fault):
    await client.root_categories()
    socialboards[0].next_faults = [fault]
    with pytest.raises(BackendError) as info:
        await client.root_categories()
    assert info.value.transient and not info.value.ambiguous


@pytest.mark.parametrize("data", ['{"id": 1}', '"categories"', '[{"name": "no id"}]', "[1, 2]"])
async def test_a_list_of_the_wrong_shape_is_a_backend_error(data):
    """Never a raw ValidationError or TypeError out of the client."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600, "refresh_token": "r2"})
        return httpx.Response(200, content=f'{{"data": {data}, "errorCode": -1, "errorText": null}}'.encode())

    client = make_client("http://sb.test", transport=httpx.MockTransport(handler))
    try:
        calls_ = [client.root_categories, client.custom_fields, lambda: client.list_tickets(ListTicketsRequest(take=1))]
        if not data.startswith("[{"):  # teammates are plain objects: any object list is one
            calls_.append(client.teammates)
        for call in calls_:
            with pytest.raises(BackendError) as info:
                await call()
            assert info.value.transient, data
    finally:
        await client.aclose()


async def test_every_access_and_refresh_token_is_remembered_as_a_secret(socialboards, backend):
    """Issue 11 item 16: the log formatter redacts what clients.secrets knows; every token the
    Socialboards stand-in issued (access tokens, rotated refresh tokens) is known before it is used."""
    from clients import secrets

    state, _ = socialboards
    issued: list[str] = []
    await backend.create_ticket(draft())
    issued += list(state.access_tokens) + [state.refresh_token]
    state.advance(3600)  # the access token expires: a second exchange, a second rotation
    await backend.create_ticket(draft(reference="slack-second"))
    issued += list(state.access_tokens) + [state.refresh_token]
    _, known = secrets.known()
    assert len(set(issued)) == 4 and set(issued) <= known  # two access tokens, two rotations


async def test_a_stored_refresh_token_is_remembered_as_a_secret(socialboards):
    from clients import secrets

    stored = "sb-refresh-stored-" + os.urandom(12).hex()  # never seen before in this process
    c = make_client(socialboards[1])
    saved: list[str] = []

    async def load() -> str:
        return json.dumps({"from": refresh_token_fingerprint(REFRESH_TOKEN), "token": stored})

    async def save(value: str) -> None:
        saved.append(value)

    try:
        await c.keep_refresh_token(load, save)
    finally:
        await c.aclose()
    assert stored in secrets.known()[1]


# --- lookup ------------------------------------------------------------------------------------


async def test_find_ticket_by_reference(socialboards, backend):
    state, _ = socialboards
    since = dt.datetime.now(dt.timezone.utc)
    await backend.create_ticket(draft("Other", reference="slack-other"))
    mine = await backend.create_ticket(draft("Mine", reference="slack-mine"))
    found = await backend.find_ticket(draft(reference="slack-mine"), since)
    assert found == mine
    assert await backend.find_ticket(draft(reference="slack-nobody"), since) is None
    query = calls(state, "POST", "/tickets/list")[0]["body"]
    assert query["take"] == 50 and query["skip"] == 0
    assert dt.datetime.fromisoformat(query["from"]) <= since - dt.timedelta(minutes=4)


async def test_ticket_status_and_user_identity(backend):
    ticket = await backend.create_ticket(draft())
    assert await backend.ticket_status(ticket) == "Open"
    assert await backend.find_user(" Alice@Example.com ") == "alice@example.com"


async def test_a_slow_first_load_answers_within_the_modal_budget_and_goes_on():
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "a", "expires_in": 3600, "refresh_token": "r2"})
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"data": [], "errorCode": -1, "errorText": None})

    backend = SocialboardsBackend(make_client("http://sb.test", transport=httpx.MockTransport(handler)),
                                  first_load_wait=0.05)
    try:
        with pytest.raises(BackendError, match="slow to answer"):
            await backend.form_fields()
        await asyncio.sleep(0.8)
        assert [f.id for f in await backend.form_fields()] == ["sentiment", "tags"]
    finally:
        await backend.aclose()
