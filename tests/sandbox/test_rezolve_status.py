"""The Rezolve.ai sandbox for following tickets (issue 21): an agent's status change, seen through the
ticket list and the caller's own list (`GET /api/v2/ticketing/user/list`, backends/README.md)."""
from __future__ import annotations

from tests.sandbox.test_rezolve_sandbox import CREATE, Q, get_token, hdrs, rz, seed_body  # noqa: F401 (fixture)

OWN = "/api/v2/ticketing/user/list"


async def create(client, token: str) -> dict:
    resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert resp.status_code == 200, resp.text
    return resp.json()["ticket"]


async def test_an_agents_status_change_is_what_the_lists_answer(rz):
    state, client = rz
    bot = await get_token(client)
    ticket = await create(client, bot)
    assert (ticket["status_type"], ticket["status_category"]) == ("Open", "To-do Category")
    state.advance(60)

    resp = await client.post(f"/_sandbox/tickets/{ticket['object_id']}/status", json={"status_type": "Resolved"})
    assert resp.status_code == 200, resp.text
    changed = resp.json()["ticket"]
    assert (changed["status_type"], changed["status_category"]) == ("Resolved", "Done Category")
    assert changed["etag"] != ticket["etag"] and changed["version"] == ticket["version"] + 1
    assert changed["updated_at"] > ticket["updated_at"]

    listed = (await client.post("/api/v2/ticketing/ticket/list", params=Q, headers=hdrs(bot),
                                json={"search": ticket["object_id"]})).json()["data"]["value"]
    assert [(t["object_id"], t["status_type"]) for t in listed] == [(ticket["object_id"], "Resolved")]
    own = (await client.get(OWN, params=Q, headers=hdrs(bot))).json()["data"]
    assert own["@odata.count"] == 1 and own["value"][0]["status_category"] == "Done Category"

    custom = await client.post(f"/_sandbox/tickets/{ticket['object_id']}/status",
                               json={"status_type": "Waiting on vendor", "status_category": "In Progress Category"})
    assert custom.json()["ticket"]["status_type"] == "Waiting on vendor"


async def test_the_own_list_is_the_callers_tickets_only_and_bad_requests_are_refused(rz):
    state, client = rz
    bot, agent = await get_token(client), await get_token(client, "agent")
    mine = await create(client, bot)
    theirs = await create(client, agent)
    own = (await client.get(OWN, params=Q, headers=hdrs(bot))).json()["data"]["value"]
    assert [t["object_id"] for t in own] == [mine["object_id"]]
    paged = (await client.get(OWN, params={**Q, "top": 1, "offset": 1}, headers=hdrs(agent))).json()["data"]
    assert paged == {"value": [], "@odata.count": 1}
    assert theirs["object_id"] not in {t["object_id"] for t in own}

    assert (await client.get(OWN, params=Q, headers=hdrs("not-a-token"))).status_code == 401
    assert (await client.get(OWN, params={**Q, "top": 0}, headers=hdrs(bot))).status_code == 400
    resp = await client.post(f"/_sandbox/tickets/{mine['object_id']}/status", json={"status_type": "Exploded"})
    assert resp.status_code == 400 and state.tickets[mine["object_id"]]["status_type"] == "Open"
    assert (await client.post("/_sandbox/tickets/CTC-9999/status", json={"status_type": "Closed"})).status_code == 404
