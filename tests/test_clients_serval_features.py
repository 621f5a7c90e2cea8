"""The Serval back end's newer features against the Serval sandbox on loopback (issue 15): custom
fields (definitions read leniently, cached with the catalog, values set after the create), messages
added to a ticket, editing a ticket, /connect with accounted-for messages, and similar open tickets."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from clients.base import BackendError, CreatedTicket, Person, ThreadMessage, TicketDraft
from clients.serval import CustomField, ServalBackend, ServalClient, custom_form_field, meaningful_words
from sandbox.serval import Fault, ServalState


@pytest.fixture
async def backend(serval) -> AsyncIterator[ServalBackend]:
    b = ServalBackend(ServalClient(serval[1], bearer_token="test-token", timeout=5), team_id="team-it",
                      slack_integration_id="integ-slack-1")
    yield b
    await b.aclose()


def ticket_in(state: ServalState, name: str, *, requester: str = "usr-alice", team: str = "team-it",
              status: str | None = None) -> dict[str, Any]:
    ticket = state.create_ticket({"teamId": team, "name": name, "createdByUserId": requester})
    if status:
        state.update_ticket(ticket["id"], {"statusId": status})
    return ticket


def created(ticket: dict[str, Any]) -> CreatedTicket:
    return CreatedTicket(id=ticket["id"], display_id=ticket["friendlyIdentifier"], backend="serval")


# --- custom fields: definitions ---------------------------------------------------------------------


@pytest.mark.parametrize("data_type, kind", [
    ("DATA_TYPE_STRING", "text"), ("DATA_TYPE_TEXT", "text"), ("DATA_TYPE_LONG_TEXT", "text"),
    ("DATA_TYPE_NUMBER", "number"), ("DATA_TYPE_INT64", "number"), ("DATA_TYPE_DECIMAL", "number"),
    ("DATA_TYPE_FLOAT", "number"), ("DATA_TYPE_DATE", "date"), ("DATA_TYPE_UNSPECIFIED", "text"),
    ("DATA_TYPE_USER_REFERENCE", "text"), ("", "text"), ("something_new", "text"),
])
def test_a_field_type_is_read_leniently(data_type, kind):
    field = custom_form_field(CustomField(key="k", name="K", dataType=data_type), {})
    assert (field.id, field.label, field.kind, field.required) == ("custom:k", "K", kind, False)


def test_options_make_a_select_in_display_order_whatever_the_type():
    field = custom_form_field(CustomField.model_validate({
        "key": "custom-os", "name": "OS", "dataType": "DATA_TYPE_UNSPECIFIED", "description": "Which one?",
        "enumOptions": [{"id": "o3", "value": "linux", "displayName": "Linux", "displayOrder": 3},
                        {"id": "o1", "value": "mac", "displayName": "macOS", "displayOrder": 1},
                        {"id": "ox", "value": "other"},  # no order: last, no display name: its value
                        {"id": "o2", "value": "win", "displayName": "Windows", "displayOrder": 2}],
    }), {"custom:custom-os": "win"})
    assert field.kind == "select" and field.hint == "Which one?" and field.default == "win"
    assert [(o.value, o.label) for o in field.options] == [
        ("mac", "macOS"), ("win", "Windows"), ("linux", "Linux"), ("other", "other")]


def test_a_boolean_is_a_yes_no_choice():
    field = custom_form_field(CustomField(key="remote", name="Remote", dataType="DATA_TYPE_BOOL"), {})
    assert field.kind == "select" and [o.value for o in field.options] == ["true", "false"]


async def test_fields_are_loaded_with_the_catalog_per_team(serval, backend):
    state, _ = serval
    state.add_team("Facilities", "FAC", team_id="team-fac")
    state.add_custom_field("team-it", "custom-device", "Device", "DATA_TYPE_ENUM",
                           options=[("laptop", "Laptop", 2), ("phone", "Phone", 1)])
    state.add_custom_field("team-it", "custom-old", "Old", deprecated=True)
    state.add_custom_field("team-fac", "custom-room", "Room", "DATA_TYPE_STRING")
    await backend.refresh_catalog()
    it = await backend.form_fields_for({})
    fac = await backend.form_fields_for({"team_id": "team-fac"})
    assert [f.id for f in it][-1] == "custom:custom-device" and "custom:custom-old" not in [f.id for f in it]
    assert [o.label for o in it[-1].options] == ["Phone", "Laptop"]
    assert [f.id for f in fac][-1] == "custom:custom-room" and "custom:custom-device" not in [f.id for f in fac]
    assert {r["path"] for r in state.requests if r["method"] == "GET" and r["path"].startswith("/v2/teams/")} == {
        "/v2/teams/team-it/custom-field-options", "/v2/teams/team-fac/custom-field-options"}


async def test_a_failing_field_list_keeps_the_last_one_and_never_the_catalog_from_loading(serval, backend):
    state, _ = serval
    state.add_custom_field("team-it", "custom-tag", "Tag")
    await backend.refresh_catalog()
    state.faults["GET /v2/teams/team-it/custom-field-options"] = Fault(error_rate=1.0, status=503)
    state.add_team("HR", "HR", team_id="team-hr")
    await backend.refresh_catalog()  # no error: the teams and priorities are refreshed all the same
    assert {t.id for t in backend.teams} == {"team-it", "team-hr"}
    assert [f.id for f in await backend.form_fields_for({})][-1] == "custom:custom-tag"
    state.faults["GET /v2/teams/team-it/custom-field-options"] = Fault(error_rate=1.0, status=404)
    await backend.refresh_catalog()  # 404: this Serval has none
    assert not [f for f in await backend.form_fields_for({}) if f.id.startswith("custom:")]


# --- custom fields: values ----------------------------------------------------------------------------


async def test_values_are_set_right_after_the_create_with_their_types(serval, backend):
    state, _ = serval
    state.seed_custom_fields()
    await backend.refresh_catalog()
    draft = TicketDraft(title="Laptop", description="d", reference="r1", values={
        "custom:custom-device": "laptop", "custom:custom-asset-tag": "IT-00123", "custom:custom-people-affected": 3,
        "custom:custom-working-remotely": "true", "custom:custom-gone": "x", "priority_id": "pri-it-high"})
    ticket = await backend.create_ticket(draft)
    assert "custom" not in str(state.requests_to("POST", "/v2/tickets")[0]["body"])
    await backend.complete_ticket(ticket, draft)
    put = state.requests_to("PUT", f"/v2/tickets/{ticket.id}/custom-field-values")
    assert put[0]["body"] == {"fieldValues": [
        {"fieldKey": "custom-device", "value": "laptop"}, {"fieldKey": "custom-asset-tag", "value": "IT-00123"},
        {"fieldKey": "custom-people-affected", "value": 3}, {"fieldKey": "custom-working-remotely", "value": True}]}
    assert {v["fieldKey"]: v["value"] for v in state.field_values[ticket.id].values()} == {
        "custom-device": "laptop", "custom-asset-tag": "IT-00123", "custom-people-affected": 3,
        "custom-working-remotely": True}
    assert state.tickets[ticket.id]["priorityId"] == "pri-it-high"
    await backend.complete_ticket(ticket, draft)  # safe to repeat
    assert len(state.field_values[ticket.id]) == 4


async def test_a_date_is_sent_as_yyyy_mm_dd_and_fields_are_loaded_when_unknown(serval, backend):
    state, _ = serval
    state.add_team("Facilities", "FAC", team_id="team-fac")
    state.seed_custom_fields()
    draft = TicketDraft(title="Room", description="d", reference="r2",
                        values={"team_id": "team-fac", "custom:custom-needed-by": dt.date(2031, 2, 3)})
    ticket = await backend.create_ticket(draft)
    await backend.complete_ticket(ticket, draft)  # no catalog loaded: the team's fields are asked for
    put = state.requests_to("PUT", f"/v2/tickets/{ticket.id}/custom-field-values")[0]["body"]
    assert put == {"fieldValues": [{"fieldKey": "custom-needed-by", "value": "2031-02-03"}]}


async def test_a_refused_value_is_a_permanent_error_and_the_priority_is_still_set(serval, backend):
    state, _ = serval
    state.seed_custom_fields()
    await backend.refresh_catalog()
    state.custom_fields["team-it"][0]["enumOptions"].pop(0)  # "laptop" removed in Serval meanwhile
    draft = TicketDraft(title="x", description="d", reference="r3",
                        values={"custom:custom-device": "laptop", "priority_id": "pri-it-low"})
    ticket = await backend.create_ticket(draft)
    with pytest.raises(BackendError) as caught:
        await backend.complete_ticket(ticket, draft)
    assert caught.value.status == 400 and not caught.value.transient and "laptop" in caught.value.message
    assert state.tickets[ticket.id]["priorityId"] == "pri-it-low"


async def test_no_custom_values_no_call(serval, backend):
    state, _ = serval
    draft = TicketDraft(title="x", description="d", reference="r4", values={"custom:custom-tag": ""})
    ticket = await backend.create_ticket(draft)
    await backend.complete_ticket(ticket, draft)
    assert [r for r in state.requests if "custom-field" in r["path"]] == []


# --- messages, editing, connect -----------------------------------------------------------------------


async def test_add_message_as_the_author_without_waking_the_help_agent(serval, backend):
    state, _ = serval
    ticket = ticket_in(state, "Printer")
    first = await backend.add_message(created(ticket), ThreadMessage(text="Tray 2 is red", author_id="usr-bob"))
    second = await backend.add_message(created(ticket), ThreadMessage(
        text="Same here", author=Person("Dana Doe", "dana@example.com")))
    bodies = [r["body"] for r in state.requests_to("POST", f"/v2/tickets/{ticket['id']}/messages")]
    assert bodies == [{"message": "Tray 2 is red", "authorUserId": "usr-bob", "triggerHelpAgent": False},
                      {"message": "Dana Doe wrote in Slack:\nSame here", "triggerHelpAgent": False}]
    listed = state.ticket_messages[ticket["id"]]
    assert [m["id"] for m in listed] == [first, second]
    assert listed[0]["user"]["id"] == "usr-bob" and not any(state.message_meta[m]["triggerHelpAgent"] for m in (first, second))
    # a text that names its author already is not named twice
    await backend.add_message(created(ticket), ThreadMessage(text="Dana Doe wrote in Slack:\nhi", author=Person("Dana Doe")))
    assert state.ticket_messages[ticket["id"]][-1]["content"] == "Dana Doe wrote in Slack:\nhi"


async def test_connect_names_the_messages_already_in_the_thread(serval, backend):
    state, _ = serval
    ticket = ticket_in(state, "Printer")
    copied = await backend.add_message(created(ticket), ThreadMessage(text="earlier", author_id="usr-bob"))
    await backend.connect_thread(created(ticket), "C111", "1583636382.000300", direct_message=False,
                                 accounted_for=(copied,))
    assert state.connect_requests["C111:1583636382.000300"]["accountedForMessageIds"] == [copied]
    await backend.connect_thread(created(ticket), "C111", "1583636399.000100", direct_message=False)
    assert "accountedForMessageIds" not in state.connect_requests["C111:1583636399.000100"]


async def test_update_ticket_sends_only_what_changes(serval, backend):
    state, _ = serval
    ticket = ticket_in(state, "Printer")
    await backend.update_ticket(created(ticket), title="Printer on floor 3", priority_id="pri-it-high",
                                due_date=dt.date(2031, 1, 2))
    await backend.update_ticket(created(ticket), priority_id="pri-it-low")
    await backend.update_ticket(created(ticket))  # nothing: no call
    bodies = [r["body"] for r in state.requests_to("PUT", f"/v2/tickets/{ticket['id']}")]
    assert bodies == [{"name": "Printer on floor 3", "priorityId": "pri-it-high",
                       "dueDate": {"year": 2031, "month": 1, "day": 2}}, {"priorityId": "pri-it-low"}]
    t = state.tickets[ticket["id"]]
    assert (t["name"], t["priorityId"], t["dueDate"]) == ("Printer on floor 3", "pri-it-low",
                                                          {"year": 2031, "month": 1, "day": 2})
    assert backend.can_edit and backend.can_add_messages


# --- similar open tickets --------------------------------------------------------------------------------


def test_meaningful_words():
    assert meaningful_words("The PRINTER on floor 3 is jammed, again!") == {"printer", "floor", "jammed"}
    assert meaningful_words("Can't log in to VPN") == {"log", "vpn"}
    assert meaningful_words("Drucker im Büro klemmt") == {"drucker", "büro", "klemmt"}
    assert meaningful_words("it is on") == set()


async def test_similar_open_tickets_of_the_requester_most_similar_first(serval, backend):
    state, _ = serval
    state.add_team("Facilities", "FAC", team_id="team-fac")
    one = ticket_in(state, "Printer on floor 3 jams")
    both = ticket_in(state, "Printer jammed on floor 2", status="st-it-in-progress")
    ticket_in(state, "VPN drops every hour")  # nothing in common
    ticket_in(state, "Printer jammed", status="st-it-done")  # closed
    ticket_in(state, "Printer jammed", status="st-it-canceled")
    ticket_in(state, "Printer jammed", requester="usr-bob")  # someone else's
    ticket_in(state, "Printer jammed", team="team-fac")  # another team
    found = await backend.similar_open_tickets("printer JAMMED again", requester_id="usr-alice", values={})
    assert [(s.ticket.id, s.ticket.display_id, s.title, s.status) for s in found] == [
        (both["id"], both["friendlyIdentifier"], "Printer jammed on floor 2", "In Progress"),
        (one["id"], one["friendlyIdentifier"], "Printer on floor 3 jams", "Open")]
    search = state.requests_to("POST", "/v2/tickets/search")[0]["body"]
    assert search["teamIds"] == ["team-it"] and search["requesterUserIds"] == ["usr-alice"]
    assert search["statusIds"] == ["st-it-open", "st-it-in-progress"]
    fac = await backend.similar_open_tickets("printer", requester_id="usr-alice", values={"team_id": "team-fac"})
    assert [s.ticket.display_id for s in fac] == ["FAC-1"]


async def test_at_most_limit_and_nothing_without_a_requester_or_words(serval, backend):
    state, _ = serval
    for i in range(5):
        ticket_in(state, f"Printer {i}")
    assert len(await backend.similar_open_tickets("printer", requester_id="usr-alice", values={})) == 3
    assert len(await backend.similar_open_tickets("printer", requester_id="usr-alice", values={}, limit=1)) == 1
    before = len(state.requests)
    assert await backend.similar_open_tickets("printer", requester_id=None, values={}) == []
    assert await backend.similar_open_tickets("it is on the", requester_id="usr-alice", values={}) == []
    assert len(state.requests) == before  # no search for either


async def test_no_search_no_suggestions_and_other_errors_raise(serval, backend):
    state, _ = serval
    ticket_in(state, "Printer")
    state.faults["POST /v2/tickets/search"] = Fault(next_n=["error"], status=503)
    with pytest.raises(BackendError):
        await backend.similar_open_tickets("printer", requester_id="usr-alice", values={})
    state.faults["POST /v2/tickets/search"] = Fault(error_rate=1.0, status=404)
    assert await backend.similar_open_tickets("printer", requester_id="usr-alice", values={}) == []
    assert [r["path"] for r in state.requests if r["path"] == "/v2/tickets"] == []  # never a full listing
