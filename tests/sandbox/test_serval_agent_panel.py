"""The Serval sandbox's agent panel (issue 21): what an agent changes there is what the documented API
answers afterwards, through GET /v2/tickets/{id} and POST /v2/tickets/search."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest_asyncio

from sandbox.serval import ServalState, schema_validator, start

AUTH = {"Authorization": "Bearer test-token"}


@pytest_asyncio.fixture
async def sandbox():
    state = ServalState()
    runner, url = await start(state)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=5) as api, \
            httpx.AsyncClient(base_url=url, timeout=5) as panel:  # the panel: no credentials, as a browser
        yield state, api, panel
    await runner.cleanup()


async def new_ticket(api: httpx.AsyncClient, name: str = "VPN is down") -> dict:
    r = await api.post("/v2/tickets", json={"teamId": "team-it", "name": name, "createdByUserId": "usr-alice"})
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_the_page_is_served_and_lists_tickets_with_their_options(sandbox):
    state, api, panel = sandbox
    ticket = await new_ticket(api)
    page = await panel.get("/agent")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "agent panel" in page.text
    view = (await panel.get("/_sandbox/agent")).json()
    assert [t["id"] for t in view["tickets"]] == [ticket["id"]]
    assert view["tickets"][0]["updatedAt"] == ticket["createdAt"]
    assert [s["statusGroup"] for s in view["statuses"]["team-it"]] == ["TODO", "IN_PROGRESS", "DONE", "CANCELED"]
    assert {p["priority"] for p in view["priorities"]["team-it"]} >= {"LOW", "HIGH", "URGENT"}
    assert "usr-carol" not in {u["id"] for u in view["users"]}  # deactivated: nobody to assign to


async def test_status_assignee_and_priority_changes_are_what_the_api_answers(sandbox):
    state, api, panel = sandbox
    ticket = await new_ticket(api)
    before = state.updated_at[ticket["id"]]
    state.clock = lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc).timestamp()  # time moves on

    r = await panel.post(f"/_sandbox/agent/tickets/{ticket['friendlyIdentifier']}",
                         json={"statusId": "st-it-in-progress", "assignedToUserId": "usr-bob",
                               "priorityId": "pri-it-high"})
    assert r.status_code == 200, r.text
    got = (await api.get(f"/v2/tickets/{ticket['id']}")).json()["data"]
    assert (got["statusId"], got["assignedToUserId"], got["priorityId"]) == ("st-it-in-progress", "usr-bob",
                                                                             "pri-it-high")
    assert "completedAt" not in got
    schema_validator("svhelp.pubapimodels.Ticket").validate(got)  # still exactly the documented shape
    assert state.updated_at[ticket["id"]] == "2030-01-01T00:00:00.000Z" != before

    # Resolved: a DONE status; search by team and time window finds it changed, completedAt set.
    r = await panel.post(f"/_sandbox/agent/tickets/{ticket['id']}", json={"statusId": "st-it-done"})
    assert r.status_code == 200, r.text
    found = (await api.post("/v2/tickets/search", json={
        "teamIds": ["team-it"], "createdAfter": ticket["createdAt"], "createdBefore": "2031-01-01T00:00:00Z"})).json()
    [hit] = [t for t in found["data"] if t["id"] == ticket["id"]]
    assert hit["statusId"] == "st-it-done" and hit["completedAt"] == "2030-01-01T00:00:00.000Z"
    statuses = (await api.get("/v2/statuses", params={"teamId": "team-it"})).json()["data"]
    assert next(s for s in statuses if s["id"] == hit["statusId"])["statusGroup"] == "DONE"

    # Reopened and unassigned: completedAt goes, the assignee too.
    r = await panel.post(f"/_sandbox/agent/tickets/{ticket['id']}", json={"statusId": "st-it-open",
                                                                       "assignedToUserId": ""})
    assert r.status_code == 200, r.text
    got = (await api.get(f"/v2/tickets/{ticket['id']}")).json()["data"]
    assert got["statusId"] == "st-it-open" and "completedAt" not in got and "assignedToUserId" not in got


async def test_an_agent_change_tells_the_listeners_and_is_saved(sandbox, tmp_path):
    state, api, panel = sandbox
    ticket = await new_ticket(api)
    seen = []
    state.listeners.append(lambda event, data: seen.append((event, data["id"], data.get("statusId"))))
    await panel.post(f"/_sandbox/agent/tickets/{ticket['id']}", json={"statusId": "st-it-canceled"})
    assert seen == [("ticket_updated", ticket["id"], "st-it-canceled")]

    db = tmp_path / "serval.db"
    saved = ServalState(db_path=str(db))
    t = saved.create_ticket({"teamId": "team-it", "name": "Kept"})
    saved.agent_update(t["id"], {"priorityId": "pri-it-urgent"})
    again = ServalState(db_path=str(db))
    assert again.tickets[t["id"]]["priorityId"] == "pri-it-urgent"
    assert again.updated_at[t["id"]] == saved.updated_at[t["id"]]


async def test_bad_changes_are_refused_and_change_nothing(sandbox):
    state, api, panel = sandbox
    ticket = await new_ticket(api)
    for body, fragment in (({"statusId": "st-fac-done"}, "not an option of team team-it"),
                           ({"priorityId": "pri-nope"}, "not an option"),
                           ({"assignedToUserId": "usr-carol"}, "no such active user"),
                           ({"name": "renamed"}, "expected one or more of"),
                           ({}, "expected one or more of")):
        r = await panel.post(f"/_sandbox/agent/tickets/{ticket['id']}", json=body)
        assert r.status_code == 400 and fragment in r.json()["message"], (body, r.text)
    r = await panel.post("/_sandbox/agent/tickets/IT-999", json={"statusId": "st-it-done"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    got = (await api.get(f"/v2/tickets/{ticket['id']}")).json()["data"]
    assert got == ticket
