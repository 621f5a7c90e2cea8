"""Tests of the Serval sandbox (sandbox/serval.py), over real loopback HTTP with httpx."""
from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from sandbox.serval import Fault, ServalState, create_app, schema_validator, start

ROOT = Path(__file__).resolve().parents[2]

AUTH = {"Authorization": "Bearer test-token"}
THREAD = "C9DDYQ1B4:1779146751.061339"


@pytest_asyncio.fixture
async def sandbox():
    state = ServalState()
    runner, url = await start(state)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=5, verify=False) as client:  # plain http
        yield state, client
    await runner.cleanup()


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    for fragment in fragments:
        assert fragment in body["message"], body
    return body["message"]


def valid_ticket(**extra) -> dict:
    return {"teamId": "team-it", "name": "VPN is down", "description": "since 9am",
            "createdByUserId": "usr-alice", **extra}


async def make_ticket(client: httpx.AsyncClient, **extra) -> dict:
    response = await client.post("/v2/tickets", json=valid_ticket(**extra))
    assert response.status_code == 200, response.text
    return response.json()["data"]


# -- auth -----------------------------------------------------------------------------------------

async def test_token_issue_and_expiry(sandbox):
    state, client = sandbox
    now = [1_000_000.0]
    state.clock = lambda: now[0]
    response = await client.post("/v2/auth/token", headers={"Authorization": ""},
                                 auth=("test-client", "test-secret"), data={"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    issued = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await client.get("/v2/teams", headers=issued)).status_code == 200
    now[0] += 3599
    assert (await client.get("/v2/teams", headers=issued)).status_code == 200
    now[0] += 1
    assert_error(await client.get("/v2/teams", headers=issued), 401, "unauthenticated", "expired")


async def test_token_rejects_bad_credentials_and_grant(sandbox):
    _, client = sandbox
    form = {"grant_type": "client_credentials"}
    assert_error(await client.post("/v2/auth/token", auth=("test-client", "wrong"), data=form), 401, "unauthenticated")
    assert_error(await client.post("/v2/auth/token", auth=("nobody", "test-secret"), data=form), 401, "unauthenticated")
    assert_error(await client.post("/v2/auth/token", auth=("test-client", "test-secret"),
                                   data={"grant_type": "password"}), 400, "invalid_argument", "grant_type")


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dGVzdC10b2tlbg==", "test-token"])
async def test_v2_requires_bearer_token(sandbox, header):
    _, client = sandbox
    headers = {"Authorization": header} if header else {}
    client.headers.pop("Authorization")
    message = assert_error(await client.get("/v2/users", headers=headers), 401, "unauthenticated")
    assert ("missing" if header in (None, "Basic dGVzdC10b2tlbg==", "test-token") else "invalid") in message
    assert_error(await client.post("/v2/tickets", headers=headers, json=valid_ticket()), 401, "unauthenticated")


# -- create ticket --------------------------------------------------------------------------------

async def test_create_ticket_full_body(sandbox):
    state, client = sandbox
    targets = [{"slackDm": {"targetUserType": "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"}}]
    ticket = await make_ticket(client, requesterUserId="usr-bob", dueDate={"year": 2030, "month": 2, "day": 28},
                               channelSyncTargets=targets, type="TICKET_TYPE_INCIDENT",
                               createdAt="2026-01-15T01:30:15.01Z", nameTranslations={"fr": "VPN en panne"})
    assert ticket["friendlyIdentifier"] == "IT-1"
    assert ticket["requesterUserId"] == "usr-bob" and ticket["createdByUserId"] == "usr-alice"
    assert ticket["dueDate"] == {"year": 2030, "month": 2, "day": 28} and ticket["isOverdue"] is False
    assert ticket["statusId"] == "st-it-open" and ticket["type"] == "TICKET_TYPE_INCIDENT"
    assert "channelSyncTargets" not in ticket
    assert state.sync_targets[ticket["id"]] == targets
    schema_validator("svhelp.pubapimodels.Ticket").validate(ticket)  # the answer fits the (extended) spec
    second = await make_ticket(client)
    assert second["friendlyIdentifier"] == "IT-2"
    assert second["requesterUserId"] == "usr-alice" and second["type"] == "TICKET_TYPE_REQUEST"
    got = await client.get(f"/v2/tickets/{ticket['id']}")
    assert got.json()["data"] == ticket
    listed = (await client.get("/v2/tickets", params={"teamId": "team-it"})).json()
    assert [t["id"] for t in listed["data"]] == [ticket["id"], second["id"]]
    dumped = (await client.get("/_sandbox/state")).json()
    assert dumped["tickets"][0]["channelSyncTargets"] == targets


async def test_friendly_identifier_uses_team_prefix(sandbox):
    state, client = sandbox
    state.add_team("Facilities", "FAC")
    assert (await make_ticket(client, teamId="team-fac"))["friendlyIdentifier"] == "FAC-1"
    assert (await make_ticket(client))["friendlyIdentifier"] == "IT-1"


async def test_unknown_field_rejected_with_its_name(sandbox):
    state, client = sandbox
    message = assert_error(await client.post("/v2/tickets", json=valid_ticket(foo=1)), 400, "invalid_argument")
    assert message == "invalid CreateTicketRequest: 'foo' unexpected at $"
    nested = valid_ticket(channelSyncTargets=[{"slackDm": {"targetUserType": "CHANNEL_SYNC_USER_TYPE_UNSPECIFIED",
                                                           "userId": "U1"}}])
    assert_error(await client.post("/v2/tickets", json=nested), 400, "invalid_argument",
                 "'userId' unexpected", "$.channelSyncTargets[0].slackDm")
    assert state.tickets == {}


@pytest.mark.parametrize("extra, path", [
    ({"type": "TICKET_TYPE_BOGUS"}, "$.type"),
    ({"channelSyncTargets": [{"slackDm": {"targetUserType": "REQUESTER"}}]},
     "$.channelSyncTargets[0].slackDm.targetUserType"),
    ({"dueDate": {"year": "2030", "month": 1, "day": 1}}, "$.dueDate.year"),
    ({"createdAt": "yesterday"}, "$.createdAt"),
    ({"aiActive": "yes"}, "$.aiActive"),
])
async def test_bad_values_rejected_with_path(sandbox, extra, path):
    _, client = sandbox
    assert_error(await client.post("/v2/tickets", json=valid_ticket(**extra)), 400, "invalid_argument", path)


@pytest.mark.parametrize("target", [
    {"email": {}, "slackDm": {}},
    {},
    {"slackChannel": {}},  # a connect target, not a sync target
])
async def test_sync_target_needs_exactly_one_key(sandbox, target):
    _, client = sandbox
    response = await client.post("/v2/tickets", json=valid_ticket(channelSyncTargets=[target]))
    assert_error(response, 400, "invalid_argument", "exactly one of", "$.channelSyncTargets[0]")


async def test_each_sync_target_variant_accepted(sandbox):
    _, client = sandbox
    for key in ("email", "slackDm", "microsoftTeamsDm"):
        await make_ticket(client, channelSyncTargets=[{key: {"targetUserType": "CHANNEL_SYNC_TARGET_USER_TICKET_ASSIGNEE"}}])


@pytest.mark.parametrize("extra, fragment", [
    ({"teamId": "team-nope"}, "teamId"),
    ({"teamId": ""}, "teamId is required"),
    ({"createdByUserId": "usr-nobody"}, "createdByUserId"),
    ({"requesterUserId": "usr-nobody"}, "requesterUserId"),
    ({"assignedToUserId": "usr-nobody"}, "assignedToUserId"),
    ({"name": "  "}, "name is required"),
    ({"dueDate": {"year": 2030, "month": 2, "day": 30}}, "dueDate"),
    ({"parentTicketId": "no-such-ticket"}, "parentTicketId"),
])
async def test_semantic_checks(sandbox, extra, fragment):
    state, client = sandbox
    assert_error(await client.post("/v2/tickets", json=valid_ticket(**extra)), 400, "invalid_argument", fragment)
    assert state.tickets == {}


async def test_malformed_json_and_unknown_path(sandbox):
    _, client = sandbox
    response = await client.post("/v2/tickets", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 400, "invalid_argument", "malformed JSON")
    assert_error(await client.get("/v2/nothing-here"), 404, "not_found")
    assert_error(await client.get("/elsewhere"), 404, "not_found")


async def test_update_ticket(sandbox):
    _, client = sandbox
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}"
    updated = await client.put(url, json={"statusId": "st-it-done", "priorityId": "pri-it-high",
                                          "labelIds": ["lbl-it-access"], "description": None})
    assert updated.status_code == 200, updated.text
    data = updated.json()["data"]
    assert (data["statusId"], data["priorityId"], data["labelIds"]) == ("st-it-done", "pri-it-high", ["lbl-it-access"])
    assert data["description"] == "since 9am" and "completedAt" in data
    assert_error(await client.put(url, json={"statusId": "st-other"}), 400, "invalid_argument", "statusId")
    assert_error(await client.put(url, json={"teamId": "x"}), 400, "invalid_argument", "'teamId' unexpected")
    assert_error(await client.put("/v2/tickets/nope", json={}), 404, "not_found")


# -- connect ----------------------------------------------------------------------------------------

async def test_connect_slack_channel_and_dm(sandbox):
    state, client = sandbox
    ticket = await make_ticket(client)
    posted = await client.post(f"/v2/tickets/{ticket['id']}/messages", json={"message": "copied", "triggerHelpAgent": False})
    message_id = posted.json()["data"]["messageId"]
    channel = {"channelTarget": {"slackChannel": {"integrationId": "int-slack"}}, "externalTicketId": THREAD,
               "accountedForMessageIds": [message_id]}
    dm = {"channelTarget": {"slackDm": {"integrationId": "int-slack",
                                        "targetUserType": "CHANNEL_SYNC_TARGET_USER_TICKET_REQUESTOR"}},
          "externalTicketId": "D0123ABCD:1779146799.000100"}
    for body in (channel, dm):
        response = await client.post(f"/v2/tickets/{ticket['id']}/connect", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {}
    again = await client.post(f"/v2/tickets/{ticket['id']}/connect", json=channel)  # idempotent
    assert again.status_code == 200 and again.json() == {}
    listed = (await client.get(f"/v2/tickets/{ticket['id']}/external-tickets")).json()["data"]
    assert [(x["externalTicketId"], x["sourceType"], x["sourceId"]) for x in listed] == [
        (THREAD, "EXTERNAL_TICKET_SOURCE_TYPE_SLACK", "int-slack"),
        ("D0123ABCD:1779146799.000100", "EXTERNAL_TICKET_SOURCE_TYPE_SLACK", "int-slack")]
    for item in listed:
        schema_validator("svhelp.pubapimodels.ExternalTicket").validate(item)
    assert state.connect_requests[THREAD]["accountedForMessageIds"] == [message_id]
    other = await make_ticket(client)  # docs: each accounted-for message must belong to this ticket
    assert_error(await client.post(f"/v2/tickets/{other['id']}/connect", json={**channel, "externalTicketId": "C9DDYQ1B4:1779146751.000001"}),
                 400, "invalid_argument", "accountedForMessageIds")


@pytest.mark.parametrize("external_id", [
    "C9DDYQ1B4-1779146751.061339", "C9DDYQ1B4:1779146751", "c9ddyq1b4:1779146751.061339",
    "C9DDYQ1B4:1779146751061339", " C9DDYQ1B4:1779146751.061339", "1779146751.061339",
    "https://example.slack.com/archives/C9DDYQ1B4/p1779146751061339", "",
])
async def test_connect_rejects_bad_slack_external_id(sandbox, external_id):
    state, client = sandbox
    ticket = await make_ticket(client)
    body = {"channelTarget": {"slackChannel": {"integrationId": "int-slack"}}, "externalTicketId": external_id}
    assert_error(await client.post(f"/v2/tickets/{ticket['id']}/connect", json=body), 400, "invalid_argument",
                 "externalTicketId")
    assert state.connections == {}


@pytest.mark.parametrize("body, fragment", [
    ({"channelTarget": {"slackChannel": {}}, "externalTicketId": THREAD}, "'integrationId' is a required"),
    ({"channelTarget": {"slackChannel": {"integrationId": ""}}, "externalTicketId": THREAD}, "integrationId"),
    ({"channelTarget": {"slackChannel": {"channelId": "C1"}}, "externalTicketId": THREAD}, "'channelId' unexpected"),
    ({"channelTarget": {"slackDm": {"userId": "U1"}}, "externalTicketId": THREAD}, "'userId' unexpected"),
    ({"channelTarget": {"slackDm": {}, "email": {}}, "externalTicketId": THREAD}, "exactly one of"),
    ({"externalTicketId": THREAD}, "channelTarget is required"),
    ({"channelTarget": {"slackDm": {}}, "externalTicketId": THREAD, "extra": 1}, "'extra' unexpected"),
])
async def test_connect_body_validation(sandbox, body, fragment):
    _, client = sandbox
    ticket = await make_ticket(client)
    assert_error(await client.post(f"/v2/tickets/{ticket['id']}/connect", json=body), 400, "invalid_argument",
                 fragment)


async def test_connect_unknown_ticket_and_conflict(sandbox):
    _, client = sandbox
    body = {"channelTarget": {"slackChannel": {"integrationId": "int-slack"}}, "externalTicketId": THREAD}
    assert_error(await client.post("/v2/tickets/nope/connect", json=body), 404, "not_found")
    assert_error(await client.get("/v2/tickets/nope/external-tickets"), 404, "not_found")
    assert_error(await client.get("/v2/tickets/nope"), 404, "not_found")
    first, second = await make_ticket(client), await make_ticket(client)
    assert (await client.post(f"/v2/tickets/{first['id']}/connect", json=body)).status_code == 200
    assert_error(await client.post(f"/v2/tickets/{second['id']}/connect", json=body), 409, "already_exists",
                 first["id"])


async def test_connect_non_slack_target_takes_any_id(sandbox):
    _, client = sandbox
    ticket = await make_ticket(client)
    body = {"channelTarget": {"ticketSource": {"integrationId": "int-jira"}}, "externalTicketId": "PROJ-123"}
    assert (await client.post(f"/v2/tickets/{ticket['id']}/connect", json=body)).status_code == 200


# -- users, teams, options --------------------------------------------------------------------------

async def test_users_pagination_and_deactivated(sandbox):
    state, client = sandbox
    for i in range(5):
        state.add_user(f"user{i}@example.com", f"User{i}", "Test")
    seen, token, pages = [], None, 0
    while True:
        params = {"pageSize": 2, **({"pageToken": token} if token else {})}
        body = (await client.get("/v2/users", params=params)).json()
        assert len(body["data"]) <= 2
        seen += body["data"]
        pages += 1
        token = body.get("nextPageToken")
        if not token:
            break
    emails = [u["email"] for u in seen]
    assert pages == 4 and len(emails) == 7 == len(set(emails))
    assert "carol@example.com" not in emails
    for user in seen:
        schema_validator("svauth.public.User").validate(user)
    everyone = (await client.get("/v2/users", params={"includeDeactivated": "true"})).json()
    carol = next(u for u in everyone["data"] if u["email"] == "carol@example.com")
    assert carol["deactivatedAt"] and len(everyone["data"]) == 8 and "nextPageToken" not in everyone
    for i in range(1000):  # the spec: default and maximum page size are both 1000
        state.add_user(f"bulk{i}@example.com", "Bulk", str(i))
    default = (await client.get("/v2/users")).json()
    capped = (await client.get("/v2/users", params={"pageSize": 5000})).json()
    assert len(default["data"]) == len(capped["data"]) == 1000 and capped["nextPageToken"]
    assert_error(await client.get("/v2/users", params={"pageToken": "garbage"}), 400, "invalid_argument")
    assert_error(await client.get("/v2/users", params={"pageSize": "ten"}), 400, "invalid_argument")


async def test_create_user(sandbox):
    state, client = sandbox
    response = await client.post("/v2/users", json={"email": "dave@example.com", "firstName": "Dave",
                                                    "lastName": "Doe", "role": "USER_ROLE_ORG_MEMBER"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["name"] == "Dave Doe"
    assert state.user_by_email("dave@example.com")["id"] == response.json()["data"]["id"]
    assert_error(await client.post("/v2/users", json={"email": "ALICE@example.com"}), 409, "already_exists")
    assert_error(await client.post("/v2/users", json={"email": "x@example.com", "nickname": "x"}), 400,
                 "invalid_argument", "'nickname' unexpected")


async def test_teams_statuses_priorities_labels(sandbox):
    _, client = sandbox
    teams = (await client.get("/v2/teams")).json()["data"]
    assert [(t["id"], t["name"], t["prefix"]) for t in teams] == [("team-it", "IT", "IT")]
    schema_validator("svauth.public.Team").validate(teams[0])
    for path, schema in (("statuses", "Status"), ("priorities", "Priority"), ("labels", "Label")):
        data = (await client.get(f"/v2/{path}", params={"teamId": "team-it"})).json()["data"]
        assert data and all(x["teamId"] == "team-it" for x in data)
        for item in data:
            schema_validator(f"svhelp.pubapimodels.{schema}").validate(item)
        assert_error(await client.get(f"/v2/{path}"), 400, "invalid_argument", "teamId")
        assert_error(await client.get(f"/v2/{path}", params={"teamId": "team-x"}), 404, "not_found")


# -- faults ------------------------------------------------------------------------------------------

async def test_fault_error_status(sandbox):
    state, client = sandbox
    state.faults["POST /v2/tickets"] = Fault(error_rate=1.0)
    assert_error(await client.post("/v2/tickets", json=valid_ticket()), 503, "unavailable")
    state.faults["POST /v2/tickets"] = Fault(error_rate=1.0, status=500)
    assert_error(await client.post("/v2/tickets", json=valid_ticket()), 500, "internal")
    assert state.tickets == {}
    assert (await client.get("/v2/users")).status_code == 200  # other endpoints unaffected


async def test_fault_rate_limit_has_retry_after(sandbox):
    state, client = sandbox
    state.faults["GET /v2/users"] = Fault(rate_limit_rate=1.0, retry_after=7)
    response = await client.get("/v2/users")
    assert_error(response, 429, "resource_exhausted")
    assert response.headers["Retry-After"] == "7"


async def test_fault_drop_is_a_transport_error_and_does_no_work(sandbox):
    state, client = sandbox
    state.faults["POST /v2/tickets"] = Fault(drop_rate=1.0)
    with pytest.raises(httpx.TransportError):
        await client.post("/v2/tickets", json=valid_ticket())
    assert state.tickets == {}
    assert len(state.requests_to("POST", "/v2/tickets")) == 1


async def test_fault_lost_response_does_the_work(sandbox):
    state, client = sandbox
    state.faults["POST /v2/tickets"] = Fault(lost_response_rate=1.0)
    with pytest.raises(httpx.TransportError):
        await client.post("/v2/tickets", json=valid_ticket())
    assert [t["name"] for t in state.tickets.values()] == ["VPN is down"]


async def test_fault_latency_and_slow(sandbox):
    state, client = sandbox
    state.faults["GET /v2/teams"] = Fault(latency=0.2)
    started = time.monotonic()
    assert (await client.get("/v2/teams")).status_code == 200
    assert time.monotonic() - started >= 0.2
    state.faults["GET /v2/teams"] = Fault(next_n=["slow"], slow_latency=0.4)
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/v2/teams", timeout=0.1)


async def test_fault_latency_drawn_per_request_from_the_seeded_rng(sandbox):
    state, client = sandbox
    state.faults["GET /v2/teams"] = Fault(latency=0.1, latency_max=0.2)
    started = time.monotonic()
    assert (await client.get("/v2/teams")).status_code == 200
    assert time.monotonic() - started >= 0.1
    fault = Fault(latency=1.0, latency_max=4.0)
    draws = [fault.delay(random.Random(7)) for _ in range(2)] + [fault.delay(rng := random.Random(8)), fault.delay(rng)]
    assert draws[0] == draws[1] and len(set(draws[1:])) == 3 and all(1.0 <= d <= 4.0 for d in draws)
    assert Fault(latency=0.5).delay(random.Random(7)) == 0.5


async def test_global_latency(sandbox):
    state, client = sandbox
    state.latency = 0.15
    started = time.monotonic()
    assert (await client.get("/v2/teams")).status_code == 200
    assert time.monotonic() - started >= 0.15


async def test_fault_script_and_route_pattern_key(sandbox):
    state, client = sandbox
    ticket = await make_ticket(client)
    state.faults["POST /v2/tickets/{ticket_id}/connect"] = Fault(next_n=["error", "429", "drop", "lost", "ok"])
    body = {"channelTarget": {"slackChannel": {"integrationId": "int-slack"}}, "externalTicketId": THREAD}
    url = f"/v2/tickets/{ticket['id']}/connect"
    assert (await client.post(url, json=body)).status_code == 503
    assert (await client.post(url, json=body)).status_code == 429
    with pytest.raises(httpx.TransportError):
        await client.post(url, json=body)
    assert state.connections == {}
    with pytest.raises(httpx.TransportError):
        await client.post(url, json=body)
    assert len(state.connections[ticket["id"]]) == 1  # the lost one was done
    assert (await client.post(url, json=body)).status_code == 200  # the retry is idempotent
    assert len(state.connections[ticket["id"]]) == 1


async def test_fault_rates_are_seeded_and_mixed(sandbox):
    state, client = sandbox

    async def run() -> list[int]:
        state.rng.seed(42)
        state.faults["*"] = Fault(error_rate=0.5)
        return [(await client.get("/v2/teams")).status_code for _ in range(20)]

    first = await run()
    assert set(first) == {200, 503}
    assert await run() == first


async def test_faults_by_control_endpoint_and_reset(sandbox):
    state, client = sandbox
    response = await client.post("/_sandbox/faults", json={"GET /v2/users": {"next_n": ["429"], "retry_after": 3}})
    assert response.status_code == 200, response.text
    assert isinstance(state.faults["GET /v2/users"], Fault)
    limited = await client.get("/v2/users")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    assert (await client.get("/v2/users")).status_code == 200
    assert_error(await client.post("/_sandbox/faults", json={"GET /v2/users": {"typo_rate": 1}}), 400,
                 "invalid_argument")
    assert_error(await client.post("/_sandbox/faults", json={"*": {"next_n": ["explode"]}}), 400, "invalid_argument")
    added = await client.post("/_sandbox/users", json={"email": "erin@example.com", "firstName": "Erin",
                                                       "lastName": "Eve"})
    assert added.status_code == 200 and state.user_by_email("erin@example.com")
    await make_ticket(client)
    dumped = (await client.get("/_sandbox/state")).json()
    assert len(dumped["tickets"]) == 1 and dumped["requestCount"] == len(state.requests) > 0
    assert (await client.post("/_sandbox/reset")).status_code == 200
    assert state.tickets == {} and state.faults == {} and state.user_by_email("erin@example.com") is None


async def test_request_log_hides_authorization(sandbox):
    state, client = sandbox
    await make_ticket(client)
    entry = state.requests[-1]
    assert (entry["method"], entry["path"], entry["body"]["name"]) == ("POST", "/v2/tickets", "VPN is down")
    assert all(k.lower() != "authorization" for k in entry["headers"])
    assert "test-token" not in repr(entry)


async def test_create_app_in_process_state():
    state = ServalState(bearer_tokens={"other"}, clients={"c": "s"}, seed=3)
    app = create_app(state)
    assert app["state"] is state
    assert state.user_by_email("bob@example.com")["id"] == "usr-bob"
    assert state.teams["team-it"]["prefix"] == "IT"


async def test_cli_serves_until_killed():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox.serval", "--port", "0", "--token", "cli-token", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=url, verify=False) as client:
            ok = await client.get("/v2/teams", headers={"Authorization": "Bearer cli-token"})
            assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "team-it"
            assert (await client.get("/v2/teams", headers=AUTH)).status_code == 401
    finally:
        proc.terminate()
        await proc.wait()


# -- requester defaults (seed 000) ------------------------------------------------------------------

async def test_requester_defaults_to_the_creator_then_to_the_api_client(sandbox):
    """Seed 000: requesterUserId defaults to createdByUserId; a body naming neither makes the API
    client's own account creator and requester (so a slackDm REQUESTOR target would DM that account)."""
    state, client = sandbox
    by_alice = await make_ticket(client)
    assert by_alice["requesterUserId"] == by_alice["createdByUserId"] == "usr-alice"
    body = {"teamId": "team-it", "name": "Nobody matched"}
    response = await client.post("/v2/tickets", json=body)
    anonymous = response.json()["data"]
    assert anonymous["requesterUserId"] == anonymous["createdByUserId"] == state.api_client_user_id
    assert state.api_client_user_id not in {u["id"] for u in (await client.get("/v2/users")).json()["data"]}


# -- search and list filters ------------------------------------------------------------------------

def _seed_tickets(state: ServalState) -> dict[str, list[dict]]:
    """Tickets at known times: 3 in IT an hour ago, 4 in IT now, 2 in FAC now."""
    state.add_team("Facilities", "FAC")
    now = time.time()
    clock = [now - 3600]
    state.clock = lambda: clock[0]
    old = [state.create_ticket(valid_ticket(name=f"old {i}")) for i in range(3)]
    clock[0] = now
    new = [state.create_ticket(valid_ticket(name=f"new {i}", requesterUserId="usr-bob" if i == 0 else None))
           for i in range(4)]
    fac = [state.create_ticket(valid_ticket(name=f"fac {i}", teamId="team-fac")) for i in range(2)]
    return {"old": old, "new": new, "fac": fac}


def _iso(seconds: float) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat().replace("+00:00", "Z")


async def test_search_honours_team_time_and_people_filters(sandbox):
    state, client = sandbox
    t = _seed_tickets(state)
    ids = lambda r: [x["id"] for x in r.json()["data"]]  # noqa: E731
    half_hour_ago = _iso(time.time() - 1800)
    recent_it = await client.post("/v2/tickets/search", json={"teamIds": ["team-it"], "createdAfter": half_hour_ago})
    assert recent_it.status_code == 200, recent_it.text
    assert ids(recent_it) == [x["id"] for x in t["new"]] and "nextPageToken" not in recent_it.json()
    both = await client.post("/v2/tickets/search", json={"teamIds": ["team-it", "team-fac"],
                                                         "createdAfter": half_hour_ago})
    assert ids(both) == [x["id"] for x in t["new"] + t["fac"]]
    old = await client.post("/v2/tickets/search", json={"teamIds": ["team-it"], "createdBefore": half_hour_ago})
    assert ids(old) == [x["id"] for x in t["old"]]
    bob = await client.post("/v2/tickets/search", json={"requesterUserIds": ["usr-bob"]})
    assert ids(bob) == [t["new"][0]["id"]]
    everything = await client.post("/v2/tickets/search", json={})
    assert len(ids(everything)) == 9
    for answer in (recent_it, bob):
        for ticket in answer.json()["data"]:
            schema_validator("svhelp.pubapimodels.Ticket").validate(ticket)


async def test_search_pages_and_refuses_what_it_does_not_know(sandbox):
    state, client = sandbox
    t = _seed_tickets(state)
    seen, token, pages = [], None, 0
    while True:
        body = {"teamIds": ["team-it"], "pageSize": 3, **({"pageToken": token} if token else {})}
        page = (await client.post("/v2/tickets/search", json=body)).json()
        seen += [x["id"] for x in page["data"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break
    assert pages == 3 and seen == [x["id"] for x in t["old"] + t["new"]]
    for bad, fragment in [({"teamId": "team-it"}, "'teamId' unexpected"), ({"teamIds": "team-it"}, "teamIds"),
                          ({"createdAfter": "yesterday"}, "createdAfter"), ({"pageSize": "ten"}, "pageSize"),
                          ({"escalationLevels": ["ROBOT"]}, "escalationLevels"), ({"pageToken": "garbage"}, "pageToken")]:
        assert_error(await client.post("/v2/tickets/search", json=bad), 400, "invalid_argument", fragment)


async def test_list_honours_start_time(sandbox):
    state, client = sandbox
    t = _seed_tickets(state)
    since = int(time.time() - 1800)
    listed = (await client.get("/v2/tickets", params={"teamId": "team-it", "startTime.seconds": since})).json()
    assert [x["id"] for x in listed["data"]] == [x["id"] for x in t["new"]]
    assert len((await client.get("/v2/tickets", params={"teamId": "team-it"})).json()["data"]) == 7
    assert_error(await client.get("/v2/tickets", params={"startTime.seconds": "soon"}), 400, "invalid_argument")


# -- answers that are not Serval's, revoked tokens ----------------------------------------------------

async def test_not_json_and_no_data_faults_do_the_work_then_answer_wrongly(sandbox):
    state, client = sandbox
    state.faults["POST /v2/tickets"] = Fault(next_n=["not_json", "no_data"])
    page = await client.post("/v2/tickets", json=valid_ticket())
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    bare = await client.post("/v2/tickets", json=valid_ticket())
    assert bare.status_code == 200 and bare.json() == {}
    assert len(state.tickets) == 2
    assert (await client.post("/v2/tickets", json=valid_ticket())).json()["data"]["friendlyIdentifier"] == "IT-3"


async def test_a_revoked_token_is_refused_before_it_expires(sandbox):
    state, client = sandbox
    form = {"grant_type": "client_credentials"}
    issued = [(await client.post("/v2/auth/token", auth=("test-client", "test-secret"), data=form)).json()["access_token"]
              for _ in range(2)]
    state.revoke(issued[0])
    assert_error(await client.get("/v2/teams", headers={"Authorization": f"Bearer {issued[0]}"}), 401, "unauthenticated")
    assert (await client.get("/v2/teams", headers={"Authorization": f"Bearer {issued[1]}"})).status_code == 200
    state.revoke()
    assert_error(await client.get("/v2/teams", headers={"Authorization": f"Bearer {issued[1]}"}), 401, "unauthenticated")


# -- custom fields, messages, update (issue 15; shared/serval/docs/) -------------------------------------

async def test_custom_field_options_answer_the_documented_shape(sandbox):
    state, client = sandbox
    state.seed_custom_fields()
    state.add_custom_field("team-it", "custom-legacy", "Legacy", deprecated=True)
    response = await client.get("/v2/teams/team-it/custom-field-options")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"customFields", "deprecatedFields"}  # no `data` wrapper on this one
    keys = [f["field"]["key"] for f in body["customFields"]]
    assert keys == ["custom-device", "custom-asset-tag", "custom-people-affected", "custom-working-remotely"]
    device = body["customFields"][0]
    assert set(device["field"]) >= {"id", "key", "name", "dataType", "enumOptions", "isKeyField", "description"}
    assert [(o["value"], o["displayOrder"]) for o in device["field"]["enumOptions"]] == [
        ("laptop", 1), ("monitor", 3), ("phone", 2)]
    assert device["fieldValue"] == {"fieldId": device["field"]["id"], "fieldKey": "custom-device",
                                    "fieldName": "Device", "dataType": "DATA_TYPE_ENUM"}  # empty: no value
    assert [f["field"]["key"] for f in body["deprecatedFields"]] == ["custom-legacy"]
    assert_error(await client.get("/v2/teams/team-nope/custom-field-options"), 404, "not_found")


async def test_set_custom_field_values_by_key_or_id_with_typed_values(sandbox):
    state, client = sandbox
    state.add_team("Facilities", "FAC", team_id="team-fac")
    state.seed_custom_fields()
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}/custom-field-values"
    device_id = state.custom_fields["team-it"][0]["id"]
    response = await client.put(url, json={"fieldValues": [
        {"fieldId": device_id, "value": "phone", "pinned": True}, {"fieldKey": "custom-asset-tag", "value": "IT-1"},
        {"fieldKey": "custom-people-affected", "value": 2.5}, {"fieldKey": "custom-working-remotely", "value": False}]})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(v["fieldKey"], v["value"]) for v in data] == [
        ("custom-device", "phone"), ("custom-asset-tag", "IT-1"), ("custom-people-affected", 2.5),
        ("custom-working-remotely", False)]
    assert data[0]["pinned"] is True and data[0]["entityId"] == ticket["id"] and data[0]["fieldId"] == device_id
    assert set(data[0]) >= {"id", "entityId", "fieldId", "fieldKey", "fieldName", "dataType", "value", "createdAt"}
    listed = (await client.get(url)).json()
    assert [v["fieldValue"]["value"] for v in listed["customFields"]] == ["phone", "IT-1", 2.5, False]
    assert listed["deprecatedFields"] == []
    # null clears a value
    assert (await client.put(url, json={"fieldValues": [{"fieldKey": "custom-asset-tag", "value": None}]})).status_code == 200
    assert [v["field"]["key"] for v in (await client.get(url)).json()["customFields"]] == [
        "custom-device", "custom-people-affected", "custom-working-remotely"]
    # a date field takes YYYY-MM-DD (team-fac's)
    fac = await make_ticket(client, teamId="team-fac")
    fac_url = f"/v2/tickets/{fac['id']}/custom-field-values"
    ok = await client.put(fac_url, json={"fieldValues": [{"fieldKey": "custom-needed-by", "value": "2031-02-03"},
                                                          {"fieldKey": "custom-room", "value": {"any": ["json"]}}]})
    assert ok.status_code == 200, ok.text
    assert_error(await client.put(fac_url, json={"fieldValues": [{"fieldKey": "custom-needed-by", "value": "2031-02-30"}]}),
                 400, "invalid_argument", "YYYY-MM-DD")


@pytest.mark.parametrize("item, fragment", [
    ({"fieldKey": "custom-device", "value": "tablet"}, "not an option"),
    ({"fieldKey": "custom-asset-tag", "value": 7}, "takes a string"),
    ({"fieldKey": "custom-people-affected", "value": "3"}, "takes a number"),
    ({"fieldKey": "custom-people-affected", "value": True}, "takes a number"),
    ({"fieldKey": "custom-working-remotely", "value": "yes"}, "true or false"),
    ({"fieldKey": "custom-room", "value": "x"}, "no custom field"),  # team-fac's, not team-it's
    ({"value": "x"}, "fieldKey or fieldId is required"),
    ({"fieldKey": "custom-device"}, "value is required"),
    ({"fieldKey": "custom-device", "value": "phone", "color": "red"}, "'color' unexpected"),
    ({"fieldKey": "custom-device", "fieldId": "cf-it-custom-asset-tag", "value": "phone"}, "different fields"),
])
async def test_set_custom_field_values_refuses_what_does_not_fit(sandbox, item, fragment):
    state, client = sandbox
    state.add_team("Facilities", "FAC", team_id="team-fac")
    state.seed_custom_fields()
    state.add_custom_field("team-it", "custom-note", "Note")
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}/custom-field-values"
    body = {"fieldValues": [{"fieldKey": "custom-note", "value": "first"}, item]}
    assert_error(await client.put(url, json=body), 400, "invalid_argument", fragment)
    assert state.field_values.get(ticket["id"], {}) == {}  # all or nothing


async def test_set_custom_field_values_body_and_ticket_checks(sandbox):
    state, client = sandbox
    state.seed_custom_fields()
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}/custom-field-values"
    assert_error(await client.put(url, json={"values": []}), 400, "invalid_argument", "'values' unexpected")
    twice = {"fieldValues": [{"fieldKey": "custom-asset-tag", "value": "a"}, {"fieldKey": "custom-asset-tag", "value": "b"}]}
    assert_error(await client.put(url, json=twice), 400, "invalid_argument", "twice")
    assert_error(await client.put("/v2/tickets/nope/custom-field-values", json={"fieldValues": []}), 404, "not_found")


async def test_ticket_messages(sandbox):
    state, client = sandbox
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}/messages"
    first = await client.post(url, json={"message": "Tray 2 is red", "authorUserId": "usr-bob", "triggerHelpAgent": False})
    assert first.status_code == 200, first.text
    first_id = first.json()["data"]["messageId"]
    assert first.json() == {"data": {"messageId": first_id}}
    second = (await client.post(url, json={"message": "from the API"})).json()["data"]["messageId"]
    assert state.message_meta == {first_id: {"triggerHelpAgent": False}, second: {"triggerHelpAgent": True}}
    listed = (await client.get(url)).json()
    assert [(m["id"], m["user"], m["content"]) for m in listed["data"]] == [
        (first_id, {"id": "usr-bob", "email": "bob@example.com"}, "Tray 2 is red"),
        (second, {"id": "usr-api-client"}, "from the API")]
    assert all(set(m) == {"id", "user", "authorRole", "content", "createdAt", "attachments"} for m in listed["data"])
    page = (await client.get(url, params={"pageSize": 1})).json()
    assert len(page["data"]) == 1 and page["nextPageToken"]
    assert_error(await client.post(url, json={"message": "  "}), 400, "invalid_argument", "message is required")
    assert_error(await client.post(url, json={"message": "x", "authorUserId": "usr-nobody"}), 400, "invalid_argument", "no such user")
    assert_error(await client.post(url, json={"message": "x", "createdAt": "2026-01-01T00:00:00Z"}), 400,
                 "invalid_argument", "'createdAt' unexpected")
    assert_error(await client.post(url, json={"message": "x", "triggerHelpAgent": "no"}), 400, "invalid_argument")
    assert_error(await client.post("/v2/tickets/nope/messages", json={"message": "x"}), 404, "not_found")


async def test_update_ticket_name_due_date_and_requester(sandbox):
    _, client = sandbox
    ticket = await make_ticket(client)
    url = f"/v2/tickets/{ticket['id']}"
    response = await client.put(url, json={"name": "VPN down on floor 3", "dueDate": {"year": 2020, "month": 1, "day": 2},
                                           "requesterUserId": "usr-bob"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["name"], data["dueDate"], data["isOverdue"], data["requesterUserId"]) == (
        "VPN down on floor 3", {"year": 2020, "month": 1, "day": 2}, True, "usr-bob")
    assert_error(await client.put(url, json={"dueDate": {"year": 2031, "month": 2, "day": 30}}), 400, "invalid_argument",
                 "calendar date")
    assert_error(await client.put(url, json={"dueDate": {"year": 2031, "month": 2, "day": 3, "hour": 1}}), 400,
                 "invalid_argument", "'hour' unexpected")
    assert_error(await client.put(url, json={"name": " "}), 400, "invalid_argument", "name")


async def test_one_endpoint_can_be_delayed_and_requests_carry_their_times(sandbox):
    state, client = sandbox
    state.delay("POST /v2/tickets/search", 0.3)
    started = time.monotonic()
    assert (await client.get("/v2/teams")).status_code == 200
    assert time.monotonic() - started < 0.25
    assert (await client.post("/v2/tickets/search", json={})).status_code == 200
    assert time.monotonic() - started >= 0.3
    search = state.requests_to("POST", "/v2/tickets/search")[0]
    assert search["answered_at"] - search["at"] >= 0.3


async def test_custom_fields_values_and_messages_survive_a_restart(tmp_path):
    db = str(tmp_path / "serval.db")
    state = ServalState(db_path=db)
    state.seed_custom_fields()
    ticket = state.create_ticket(valid_ticket())
    state.set_custom_field_values(ticket["id"], {"fieldValues": [{"fieldKey": "custom-asset-tag", "value": "IT-9"}]})
    state.create_message(ticket["id"], {"message": "hello"})
    again = ServalState(db_path=db)
    assert [f["key"] for f in again.custom_fields["team-it"]][:1] == ["custom-device"]
    assert [v["value"] for v in again.field_values[ticket["id"]].values()] == ["IT-9"]
    assert [m["content"] for m in again.ticket_messages[ticket["id"]]] == ["hello"]
