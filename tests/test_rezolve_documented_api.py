"""Rezolve.ai as its documents describe it (../shared/backends/README.md), against the sandbox on loopback:
the OData ticket-type list, answers the bot cannot read, the ticket search that finds a ticket whose create
answer was lost, and the tokens kept out of the logs."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from clients import secrets
from clients.base import BackendError
from clients.rezolve import CreateTicketRequest, mentions
from sandbox.rezolve import F_DESCRIPTION, F_NUMBER, F_SUMMARY, F_SYSTEM, F_URGENCY
from tests.test_clients_rezolve import CREATE_PATH, backend, calls, client, draft, make_backend, make_client  # noqa: F401 (fixtures)

TYPES_PATH = "/api/v2/ticketing/ticket-type"
LIST_PATH = "/api/v2/ticketing/ticket/list"
SINCE = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)



def with_reference(reference: str, title: str = "New laptop", **values: Any):
    d = draft(title, **values)
    d.reference = reference
    d.description = f"Battery is dead.\n\n—\nRequested in Slack by Alice · ref {reference}"
    return d


# --- item 17: the ticket-type list is OData style ----------------------------------------------------


async def test_the_documented_odata_ticket_type_list_builds_the_form(rezolve, backend):
    assert [f.id for f in await backend.form_fields()] == [F_URGENCY, "5b53c791-e047-40e8-9e88-bae13f153cc3", F_NUMBER]
    gets = calls(rezolve[0], "GET", TYPES_PATH)
    assert len(gets) == 1 and "$skip" not in gets[0]["query"]  # "@odata.count": 2, both on the page


async def test_ticket_types_on_later_pages_are_found(rezolve, client):
    state, _ = rezolve
    state.page_size = 1  # 16911 is on the second page
    backend = make_backend(client, team_id="hr", item_type_id="16911", summary_field_id=None,
                           description_field_id=None)
    assert [f.id for f in await backend.form_fields()] == [F_SYSTEM]
    assert [g["query"].get("$skip") for g in calls(state, "GET", TYPES_PATH)] == [None, "1"]
    await backend.refresh()  # both pages revalidated with their own ETags: nothing re-sent
    again = calls(state, "GET", TYPES_PATH)[2:]
    assert [g["query"].get("$skip") for g in again] == [None, "1"]
    assert all(g["headers"].get("If-None-Match") for g in again)


async def test_an_unreadable_ticket_type_list_is_a_plain_error_and_leaves_no_etag(rezolve, backend):
    state, _ = rezolve
    good_fields = state.ticket_types["16910"]["fields"]
    state.ticket_types["16910"]["fields"] = "Subject, Urgency"  # not a list of fields
    with pytest.raises(BackendError) as info:
        await backend.form_fields()
    assert info.value.message == "Rezolve.ai sent the list of ticket types in a form the bot cannot read"
    assert info.value.transient
    with pytest.raises(BackendError):
        await backend.form_fields()
    gets = calls(state, "GET", TYPES_PATH)
    assert len(gets) == 2 and "If-None-Match" not in gets[1]["headers"]  # the unread body's ETag was not kept
    state.ticket_types["16910"]["fields"] = good_fields  # Rezolve.ai's answer is right again: the bot recovers
    assert [f.id for f in await backend.form_fields()][0] == F_URGENCY


async def test_nulls_in_the_ticket_type_are_read_as_unset(rezolve, backend):
    urgency = next(f for f in rezolve[0].ticket_types["16910"]["fields"] if f["id"] == F_URGENCY)
    urgency.update(options=None, required=None, defaultValue=None)
    fields = {f.id: f for f in await backend.form_fields()}
    assert (fields[F_URGENCY].kind, fields[F_URGENCY].required) == ("text", False)  # a select without options


# --- item 1: a 200 the bot cannot read ------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["200-not-json", "200-no-data"])
@pytest.mark.parametrize("call, what", [
    ("ticket_types", "the list of ticket types"),
    ("offers", "the list of service catalog offers"),
    ("userinfo", "the bot's user info"),
])
async def test_a_200_without_the_expected_data_is_transient(rezolve, client, fault, call, what):
    await client._tokens.get()
    rezolve[0].next_faults = [fault]
    with pytest.raises(BackendError) as info:
        await getattr(client, call)()
    assert info.value.message == f"Rezolve.ai sent {what} in a form the bot cannot read"
    assert info.value.transient and not info.value.ambiguous
    await getattr(client, call)()  # the next answer is read


@pytest.mark.parametrize("fault", ["200-not-json", "200-no-data"])
async def test_a_create_answered_200_without_a_ticket_id_is_transient_and_ambiguous(rezolve, backend, fault):
    await backend.form_fields()
    await backend.client._tokens.get()
    rezolve[0].faults_for = {CREATE_PATH: [fault]}
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(draft())
    exc = info.value
    assert (exc.transient, exc.ambiguous, exc.status) == (True, True, 200)
    assert exc.message == "Rezolve.ai answered the ticket creation without the ticket's id (HTTP 200)"


async def test_a_create_answer_without_objectid_uses_the_tickets_object_id():
    """`objectId` missing but `ticket.object_id` present: the ticket is known, nothing is ambiguous."""
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t" * 20, "expires_in": 300})
        return httpx.Response(200, json={"success": True, "ticket": {"id": "u-1", "object_id": "CTC-0099"}})

    c = make_client("http://rezolve.test", transport=httpx.MockTransport(handler))
    try:
        answer = await c.create_ticket("james", "16910", CreateTicketRequest(summary="x", ticketBody={"offerId": "1"}))
    finally:
        await c.aclose()
    assert answer.objectId == "CTC-0099"


async def test_a_search_answered_200_without_a_list_is_transient(rezolve, backend):
    await backend.form_fields()
    rezolve[0].faults_for = {LIST_PATH: ["200-no-data"]}
    with pytest.raises(BackendError) as info:
        await backend.find_ticket(draft(), SINCE)
    assert info.value.transient
    assert info.value.message == "Rezolve.ai sent the ticket search in a form the bot cannot read"


# --- item 18: the submission reference and the ticket search --------------------------------------------


async def test_a_ticket_whose_create_answer_was_lost_is_found_by_its_reference(rezolve, backend):
    state, _ = rezolve
    await backend.form_fields()
    await backend.client._tokens.get()
    state.faults_for = {CREATE_PATH: ["lost"]}
    with pytest.raises(BackendError) as info:
        await backend.create_ticket(with_reference("slack-0f1e"))
    assert info.value.ambiguous and list(state.tickets) == ["CTC-0001"]  # created, answer lost
    found = await backend.find_ticket(with_reference("slack-0f1e"), SINCE)
    stored = state.tickets["CTC-0001"]
    assert found is not None and found.id == found.display_id == "CTC-0001" and found.backend == "rezolve"
    assert found.extra == {"uuid": stored["id"], "etag": stored["etag"], "teamId": "james", "itemTypeId": "16910",
                           "status": "Open"}
    search = calls(state, "POST", LIST_PATH)[-1]
    assert search["body"] == {"search": "slack-0f1e", "top": 100, "offset": 0}
    assert search["query"] == {"type": "template", "module": "ticketing"}


async def test_no_ticket_or_another_reference_is_not_found(rezolve, backend):
    await backend.create_ticket(with_reference("slack-abc1"))
    assert await backend.find_ticket(with_reference("slack-abc"), SINCE) is None  # a prefix is not the reference
    assert await backend.find_ticket(with_reference("slack-zzz"), SINCE) is None
    assert (await backend.find_ticket(with_reference("slack-abc1"), SINCE)).display_id == "CTC-0001"


async def test_a_bare_list_under_data_is_read_too(rezolve, backend):
    rezolve[0].list_shape = "list"
    await backend.create_ticket(with_reference("slack-0001"))
    assert (await backend.find_ticket(with_reference("slack-0001"), SINCE)).display_id == "CTC-0001"


async def test_the_search_pages_past_loose_matches_and_stops_at_the_first_match(rezolve, backend):
    state, _ = rezolve
    await backend.create_ticket(with_reference("slack-77"))  # the oldest: listed last
    template = state.tickets["CTC-0001"]
    for n in range(2, 152):  # 150 newer tickets that a loose search also returns ("slack-77x")
        object_id = f"CTC-{n:04d}"
        data = {**template["data"], F_DESCRIPTION: f"ref slack-77x{n}"}
        state.tickets[object_id] = {**template, "object_id": object_id, "data": data}
    found = await backend.find_ticket(with_reference("slack-77"), SINCE)
    assert found is not None and found.display_id == "CTC-0001"
    assert [c["body"]["offset"] for c in calls(state, "POST", LIST_PATH)] == [0, 100]


@pytest.mark.parametrize("fault, raised", [("500", True), ("429", True), ("403", False), ("404", False)])
async def test_a_failed_search_is_retried_later_or_falls_back(rezolve, backend, fault, raised):
    await backend.form_fields()
    rezolve[0].faults_for = {LIST_PATH: [fault]}
    if raised:  # transient: the look-up is tried again later
        with pytest.raises(BackendError) as info:
            await backend.find_ticket(draft(), SINCE)
        assert info.value.transient
    else:  # refused: the documented limitation (a retry may duplicate) rather than a stuck submission
        assert await backend.find_ticket(draft(), SINCE) is None


async def test_the_reference_rides_in_the_first_multiline_field_without_a_description_field(rezolve, client):
    state, _ = rezolve
    backend = make_backend(client, description_field_id=None)
    assert backend.reference_field_id is None  # the form is not loaded yet
    await backend.create_ticket(with_reference("slack-m1", **{F_DESCRIPTION: "Screen flickers."}))
    await backend.create_ticket(with_reference("slack-m2"))
    assert backend.reference_field_id == F_DESCRIPTION
    first, second = (c["body"]["ticketBody"] for c in calls(state, "POST", CREATE_PATH))
    assert first[F_DESCRIPTION] == "Screen flickers.\n\n—\nref slack-m1"  # the person's answer, then the reference
    assert second[F_DESCRIPTION] == "—\nref slack-m2"
    assert first[F_SUMMARY] == "New laptop"  # the title is left alone
    assert (await backend.find_ticket(with_reference("slack-m2"), SINCE)).display_id == "CTC-0002"


async def test_without_a_text_field_for_the_reference_nothing_is_searched(rezolve, client):
    state, _ = rezolve
    backend = make_backend(client, team_id="hr", item_type_id="16911", summary_field_id=None, description_field_id=None)
    assert await backend.find_ticket(draft(**{F_SYSTEM: "VPN", F_URGENCY: None, F_NUMBER: None}), SINCE) is None
    assert backend.reference_field_id is None
    assert calls(state, "POST", LIST_PATH) == []


def test_the_reference_matches_as_a_whole_word_in_any_text():
    row = {"summary": "x", "data": {"a": 1, "b": ["—\nRequested by Al · ref SLACK-ab12</p>"]}}
    assert mentions(row, "slack-ab12")
    assert not mentions(row, "slack-ab1") and not mentions(row, "slack-b12")
    assert not mentions({"data": {"n": 12}}, "12")


# --- item 16: tokens never reach a log -------------------------------------------------------------------


async def test_every_token_rezolve_issues_is_remembered_as_a_secret(rezolve, client):
    state, _ = rezolve
    state.refresh_tokens = True
    await client.ticket_types()
    assert len(state.issued_tokens) == 2  # the access token and the refresh token
    _, known = secrets.known()
    assert set(state.issued_tokens) <= known
