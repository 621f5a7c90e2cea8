"""The Socialboards sandbox, driven over loopback with httpx, checked against seed 004."""
import asyncio
import copy
import sys

import httpx
import pytest

# Every client below talks plain http to loopback: verify=False only skips loading the CA bundle (~0.1 s each).

from sandbox.socialboards import CLIENT_ID, REFRESH_TOKEN, SocialboardsState, start

# Seed 004's example request body, verbatim.
SEED_BODY = {
    "assigneeId": "43b8adc7-755d-2be3-afb1-b6a462631977",
    "attachments": [{"url": "https://your.attachment.url/filename.png", "name": "filename.png"}],
    "categoryId": 15597,
    "cc": ["ann_smith@gmail.com"],
    "creator": {"name": "Bill Smith", "email": "bill_smith@gmail.com", "image": None, "phoneNumber": None},
    "customFields": [{"id": 42623, "value": "Oslo"}],
    "message": "Hello I want to buy a new car, how can I get a price list?",
    "sentiment": "question",
    "tags": [],
    "title": "New car price list.",
}


@pytest.fixture
async def sb():
    state = SocialboardsState()
    runner, base_url = await start(state)
    async with httpx.AsyncClient(base_url=base_url, timeout=5, verify=False) as client:
        yield state, client
    await runner.cleanup()


async def exchange(client, refresh_token: str, client_id: str = CLIENT_ID) -> httpx.Response:
    return await client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                             "client_id": client_id})


async def authed(client, state) -> dict:
    resp = await exchange(client, state.refresh_token)
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def body_with(**changes) -> dict:
    body = copy.deepcopy(SEED_BODY)
    for key, value in changes.items():
        if value is ...:
            del body[key]
        else:
            body[key] = value
    return body


async def test_token_exchange_rotates_the_refresh_token(sb):
    state, client = sb
    first = await exchange(client, REFRESH_TOKEN)
    assert first.status_code == 200
    data = first.json()
    assert set(data) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert data["token_type"] == "bearer" and data["expires_in"] == 3599
    assert data["refresh_token"] != REFRESH_TOKEN and state.refresh_token == data["refresh_token"]
    reused = await exchange(client, REFRESH_TOKEN)
    assert reused.status_code == 400 and reused.json() == {"error": "invalid_grant"}
    second = await exchange(client, data["refresh_token"])
    assert second.status_code == 200 and second.json()["refresh_token"] != data["refresh_token"]
    assert (await exchange(client, data["refresh_token"])).json() == {"error": "invalid_grant"}


async def test_token_request_errors(sb):
    state, client = sb
    assert (await exchange(client, state.refresh_token, client_id="other")).json() == {"error": "invalid_client"}
    wrong_grant = await client.post("/token", data={"grant_type": "password", "refresh_token": state.refresh_token,
                                                    "client_id": CLIENT_ID})
    assert wrong_grant.status_code == 400 and wrong_grant.json() == {"error": "unsupported_grant_type"}
    assert state.refresh_token == REFRESH_TOKEN  # failed exchanges do not rotate


async def test_api_calls_need_a_valid_unexpired_bearer(sb):
    state, client = sb
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": REFRESH_TOKEN}):
        resp = await client.get("/Teammates", headers=headers)
        assert resp.status_code == 401
        body = resp.json()
        assert body["data"] is None and body["errorCode"] != -1 and body["errorText"]
    headers = await authed(client, state)
    assert (await client.get("/Teammates", headers=headers)).status_code == 200
    state.advance(state.token_ttl + 1)
    expired = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert expired.status_code == 401 and expired.json()["errorCode"] != -1
    assert state.tickets == {}
    assert (await client.get("/Teammates", headers=await authed(client, state))).status_code == 200


async def test_create_ticket_with_the_seed_example(sb):
    state, client = sb
    headers = await authed(client, state)
    resp = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert resp.status_code == 200
    assert resp.json() == {"data": 4484636, "errorCode": -1, "errorText": None}
    ticket = state.tickets[4484636]
    assert ticket["title"] == "New car price list." and ticket["sentiment"] == "question"
    assert ticket["category"]["name"] == "Sales" and ticket["customFields"][0]["value"] == "Oslo"
    assert ticket["author"]["email"] == "bill_smith@gmail.com"
    again = await client.post("/tickets", headers=headers,
                              json=body_with(isHtml=False, sourceName="#help-desk", categoryId=None,
                                             assigneeId=None, tags=["slack"]))
    assert again.json() == {"data": 4484637, "errorCode": -1, "errorText": None}
    assert state.tickets[4484637]["category"] is None and state.tickets[4484637]["sourceName"] == "#help-desk"


async def test_minimal_ticket_needs_only_title_message_and_creator_email(sb):
    state, client = sb
    body = {"title": "Hi", "message": "Help", "creator": {"email": "a@example.com"}}
    resp = await client.post("/tickets", json=body, headers=await authed(client, state))
    assert resp.json()["errorCode"] == -1 and isinstance(resp.json()["data"], int)


@pytest.mark.parametrize("changes, needle", [
    ({"sentiment": "angry"}, "sentiment"),
    ({"title": ...}, "title"),
    ({"title": ""}, "title"),
    ({"title": 5}, "title"),
    ({"message": ...}, "message"),
    ({"categoryId": 99999}, "categoryId"),
    ({"categoryId": "15597"}, "categoryId"),
    ({"assigneeId": "00000000-0000-0000-0000-000000000000"}, "assigneeId"),
    ({"creator": {"name": "Bill", "email": "not-an-email"}}, "creator.email"),
    ({"creator": ...}, "creator"),
    ({"creator": {"email": "a@example.com", "avatar": "x"}}, "avatar"),
    ({"priority": "high"}, "priority"),
    ({"cc": ["nobody"]}, "cc"),
    ({"tags": "slack"}, "tags"),
    ({"isHtml": "yes"}, "isHtml"),
    ({"customFields": [{"id": 1, "value": "Oslo"}]}, "custom field"),
    ({"customFields": [{"id": 42623, "value": "Bergen"}]}, "custom field"),
    ({"attachments": [{"url": "file:///etc/passwd", "name": "x"}]}, "attachments"),
])
async def test_invalid_tickets_get_an_error_envelope_and_create_nothing(sb, changes, needle):
    state, client = sb
    resp = await client.post("/tickets", json=body_with(**changes), headers=await authed(client, state))
    assert resp.status_code == 200  # the sandbox keeps HTTP 200 for validation errors (see module docstring)
    body = resp.json()
    assert body["data"] is None and body["errorCode"] not in (-1, None)
    assert needle in body["errorText"]
    assert state.tickets == {}


async def test_non_object_body_is_rejected(sb):
    state, client = sb
    resp = await client.post("/tickets", content=b"[1, 2]", headers=await authed(client, state))
    assert resp.json()["errorCode"] != -1 and state.tickets == {}


async def test_discovery_endpoints(sb):
    state, client = sb
    headers = await authed(client, state)
    teammates = (await client.get("/Teammates", headers=headers)).json()
    assert teammates["errorCode"] == -1
    assert {"id", "name", "email", "role"} <= set(teammates["data"][0])
    assert SEED_BODY["assigneeId"] in [t["id"] for t in teammates["data"]]

    roots = (await client.get("/categories", headers=headers)).json()["data"]
    assert {c["id"]: c["name"] for c in roots} == {15597: "Sales", 15598: "Support"}
    with_hidden = (await client.get("/categories", params={"includeHidden": "true"}, headers=headers)).json()
    assert 15599 in [c["id"] for c in with_hidden["data"]]
    subs = (await client.get("/categories/15597/subcategories", headers=headers)).json()
    assert [c["id"] for c in subs["data"]] == [15600, 15601] and {c["parentId"] for c in subs["data"]} == {15597}
    missing = (await client.get("/categories/1/subcategories", headers=headers)).json()
    assert missing["errorCode"] != -1 and missing["data"] is None

    fields = (await client.get("/customfields", headers=headers)).json()["data"]
    assert {"id", "name", "type", "isRequired", "possibleValues", "defaultValue"} <= set(fields[0])
    assert fields[0]["id"] == 42623 and "Oslo" in [v["value"] for v in fields[0]["possibleValues"]]


async def test_list_tickets_by_ids_caps_at_50(sb):
    state, client = sb
    headers = await authed(client, state)
    first = (await client.post("/tickets", json=SEED_BODY, headers=headers)).json()["data"]
    await client.post("/tickets", json=SEED_BODY, headers=headers)
    listed = (await client.post("/tickets/list", json={"ticketIds": [first]}, headers=headers)).json()
    assert listed["errorCode"] == -1 and [t["id"] for t in listed["data"]] == [first]
    too_many = (await client.post("/tickets/list", json={"ticketIds": list(range(51))}, headers=headers)).json()
    assert too_many["errorCode"] != -1 and too_many["data"] is None
    assert (await client.post("/tickets/list", json={"take": 51}, headers=headers)).json()["errorCode"] != -1


async def test_replies(sb):
    state, client = sb
    headers = await authed(client, state)
    ticket_id = (await client.post("/tickets", json=SEED_BODY, headers=headers)).json()["data"]
    reply = await client.post(f"/tickets/{ticket_id}/replies", headers=headers,
                              json={"message": "Here is the price list", "isHtml": False,
                                    "author": {"email": "robert.baker@example.com"},
                                    "isTicketNeededToBeCompleted": True})
    body = reply.json()
    assert body["errorCode"] == -1 and body["data"]["ticketId"] == ticket_id
    assert body["data"]["author"]["email"] == "robert.baker@example.com"
    assert state.tickets[ticket_id]["replyCount"] == 1 and state.tickets[ticket_id]["status"] == "completed"
    unknown = (await client.post("/tickets/1/replies", json={"message": "x"}, headers=headers)).json()
    assert unknown["errorCode"] != -1
    stranger = (await client.post(f"/tickets/{ticket_id}/replies", headers=headers,
                                  json={"message": "x", "author": {"email": "who@example.com"}})).json()
    assert stranger["errorCode"] != -1 and state.tickets[ticket_id]["replyCount"] == 1


async def test_unknown_route_uses_the_envelope(sb):
    state, client = sb
    resp = await client.get("/nothing", headers=await authed(client, state))
    assert resp.status_code == 404 and resp.json()["errorCode"] == 404 and resp.json()["data"] is None


async def test_scripted_faults_apply_in_order_then_clear(sb):
    state, client = sb
    headers = await authed(client, state)
    state.next_faults = ["500", "429", "drop", "401"]
    first = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert first.status_code == 500 and first.json()["errorCode"] != -1
    limited = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert (await client.post("/tickets", json=SEED_BODY, headers=headers)).status_code == 401
    assert state.tickets == {} and state.next_faults == []
    assert (await client.post("/tickets", json=SEED_BODY, headers=headers)).json()["errorCode"] == -1


async def test_answer_faults_carry_the_request_out_then_answer_wrongly(sb):
    """not_json: 200 with an HTML page; no_data: 200 with the success envelope but no `data`. Both after
    the work is done (the ticket exists), one request each."""
    state, client = sb
    headers = await authed(client, state)
    state.next_faults = ["not_json", "no_data"]
    page = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    bare = await client.post("/tickets", json=SEED_BODY, headers=headers)
    assert bare.status_code == 200 and bare.json() == {"errorCode": -1, "errorText": None}
    assert len(state.tickets) == 2 and state.next_faults == []
    assert (await client.post("/tickets", json=SEED_BODY, headers=headers)).json()["data"] == max(state.tickets)


async def test_request_log_and_control_endpoints(sb):
    state, client = sb
    await client.post("/tickets", json=SEED_BODY, headers=await authed(client, state))
    token_call, create_call = state.requests
    assert token_call["path"] == "/token" and token_call["body"]["grant_type"] == "refresh_token"
    assert create_call["method"] == "POST" and create_call["body"] == SEED_BODY
    assert "authorization" not in {k.lower() for k in create_call["headers"]}
    dump = (await client.get("/_sandbox/state")).json()
    assert list(dump["tickets"]) == ["4484636"] and dump["refresh_token"] == state.refresh_token
    assert (await client.post("/_sandbox/reset")).status_code == 200
    assert state.tickets == {} and state.requests == [] and state.refresh_token == REFRESH_TOKEN


async def test_cli_prints_its_url():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sandbox.socialboards", "--port", "0",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(verify=False) as client:
            assert (await client.get(f"{url}/_sandbox/state")).json()["refresh_token"] == REFRESH_TOKEN
    finally:
        proc.terminate()
        await proc.wait()
