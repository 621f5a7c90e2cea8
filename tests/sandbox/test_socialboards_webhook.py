"""The Socialboards sandbox sends its documented webhook (backends/README.md) when a ticket's status
changes: `{CommunityName, EventType: "ticket_status_change", TicketId, Events: [{InboxLink,
PreviousTicketStatus, Ticket}]}`, to a local aiohttp receiver."""
from __future__ import annotations

import httpx
import pytest
from aiohttp import web

from sandbox._server import start_app
from sandbox.socialboards import CLIENT_ID, REFRESH_TOKEN, SocialboardsState, start

SECRET_PATH = "/webhooks/socialboards/s3cret-path"


@pytest.fixture
async def receiver():
    """A stand-in for the bot's webhook endpoint: records (path, JSON body); answers `status[0]`."""
    got: list[tuple[str, dict]] = []
    status = [200]

    async def hook(request: web.Request) -> web.Response:
        got.append((request.path, await request.json()))
        return web.Response(status=status[0])

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner, url = await start_app(app)
    yield url, got, status
    await runner.cleanup()


@pytest.fixture
async def sb():
    state = SocialboardsState()
    runner, base_url = await start(state)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield state, client
    await runner.cleanup()


async def new_ticket(client: httpx.AsyncClient) -> int:
    token = (await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": REFRESH_TOKEN,
                                               "client_id": CLIENT_ID})).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    r = await client.post("/tickets", json={"title": "Printer jammed", "message": "Floor 3",
                                            "creator": {"name": "Alice", "email": "alice@example.com"}})
    assert r.json()["errorCode"] == -1, r.text
    return r.json()["data"]


async def test_a_status_change_posts_the_documented_body_to_the_webhook_url(sb, receiver):
    state, client = sb
    url, got, _ = receiver
    ticket_id = await new_ticket(client)
    r = await client.post("/_sandbox/webhook", json={"url": url + SECRET_PATH})
    assert r.status_code == 200, r.text

    r = await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "completed"})
    assert r.status_code == 200, r.text
    assert r.json()["webhook"]["status"] == 200 and r.json()["ticket"]["status"] == "completed"
    [(path, body)] = got
    assert path == SECRET_PATH
    assert set(body) == {"CommunityName", "EventType", "TicketId", "Events"}
    assert (body["CommunityName"], body["EventType"], body["TicketId"]) == ("sandbox", "ticket_status_change",
                                                                          ticket_id)
    [event] = body["Events"]
    assert set(event) == {"InboxLink", "PreviousTicketStatus", "Ticket"}
    assert event["InboxLink"] == f"https://inbox.socialboards.com/sandbox/tickets?ticketId={ticket_id}"
    assert event["PreviousTicketStatus"] == "open"
    listed = (await client.post("/tickets/list", json={"ticketIds": [ticket_id]})).json()["data"]
    assert event["Ticket"] == listed[0] and listed[0]["status"] == "completed"  # the ticket as the API has it

    # The same status again is no change: nothing is sent. Back to open: sent, from "completed".
    await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "completed"})
    assert len(got) == 1
    await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "open"})
    assert [b["Events"][0]["PreviousTicketStatus"] for _, b in got] == ["open", "completed"]


async def test_a_reply_that_completes_the_ticket_sends_it_too(sb, receiver):
    state, client = sb
    url, got, _ = receiver
    state.webhook_url = url + SECRET_PATH
    ticket_id = await new_ticket(client)
    r = await client.post(f"/tickets/{ticket_id}/replies", json={"message": "Fixed.", "isTicketNeededToBeCompleted": True})
    assert r.json()["errorCode"] == -1, r.text
    assert [(b["TicketId"], b["Events"][0]["Ticket"]["status"]) for _, b in got] == [(ticket_id, "completed")]


async def test_without_a_url_nothing_is_sent_and_failures_are_recorded(sb, receiver):
    state, client = sb
    url, got, status = receiver
    ticket_id = await new_ticket(client)
    r = await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "pending"})
    assert r.status_code == 200 and r.json()["webhook"] is None and got == []

    state.webhook_url = url + "/wrong"
    status[0] = 401  # the receiver refuses (a wrong secret path): recorded, not retried
    r = await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "completed"})
    assert r.json()["webhook"]["status"] == 401 and len(got) == 1
    assert [d["status"] for d in state.webhook_deliveries] == [401]

    await client.post("/_sandbox/webhook", json={"url": "http://127.0.0.1:9/nobody-listens"})
    r = await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "open"})
    delivery = r.json()["webhook"]
    assert delivery["status"] == 0 and delivery["error"]


async def test_bad_control_requests_are_refused(sb):
    state, client = sb
    ticket_id = await new_ticket(client)
    r = await client.post(f"/_sandbox/tickets/{ticket_id}/status", json={"status": "solved"})
    assert r.status_code == 400 and "open, pending, completed" in r.json()["error"]
    assert (await client.post("/_sandbox/tickets/1/status", json={"status": "open"})).status_code == 404
    assert (await client.post("/_sandbox/webhook", json={"url": "ftp://x"})).status_code == 400
    assert state.tickets[ticket_id]["status"] == "open"
    page = await client.get("/agent", headers={"Authorization": ""})
    assert page.status_code == 200 and "Socialboards sandbox" in page.text
