"""The Rezolve.ai sandbox, driven over loopback with httpx, checked against seed 003."""
import asyncio
import base64
import json
import sys

import httpx
import pytest

# Every client below talks plain http to loopback: verify=False only skips loading the CA bundle (~0.1 s each).

from sandbox.rezolve import (F_DESCRIPTION, F_NEEDED_BY, F_NUMBER, F_SUMMARY, F_SYSTEM, F_URGENCY, REALM,
                             TENANT_ID, RezolveState, start)

Q = {"type": "template", "module": "ticketing"}
CREATE = "/api/v2/ticketing/ticket/create/james/16910"
TOKEN_PATH = f"/auth/realms/{REALM}/protocol/openid-connect/token"

# Seed 003's success example (values that the sandbox cannot know, like ids and times, are not compared).
SEED_TICKET_KEYS = {"id", "tenant_id", "object_id", "etag", "summary", "data", "lookup_props", "moved_to",
                    "deleted_seq", "version", "status_type", "status_category", "created_at", "updated_at",
                    "id_serial", "metrics", "slas"}


def seed_body(**ticket_body) -> dict:
    """Seed 003's example request, plus the required Number field of the sandbox's type 16910."""
    body = {"source": "api", "summary": "Hardware request - new laptop",
            "ticketBody": {"offerId": "23629", F_SUMMARY: "Need a replacement laptop",
                           F_DESCRIPTION: "<p>Current laptop battery no longer holds charge.</p>",
                           F_URGENCY: "<2week", F_NUMBER: 1},
            "attachments": {}, "ticketRelation": None}
    body["ticketBody"].update(ticket_body)
    return body


@pytest.fixture
async def rz():
    state = RezolveState()
    runner, base_url = await start(state)
    async with httpx.AsyncClient(base_url=base_url, timeout=5, verify=False) as client:
        yield state, client
    await runner.cleanup()


async def get_token(client, client_id="bot", secret=None) -> str:
    resp = await client.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": client_id,
                                               "client_secret": secret or f"{client_id}-secret"})
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def hdrs(token: str, **over) -> dict:
    headers = {"authorization": f"Bearer {token}", "x-tenantid": TENANT_ID, "realmname": REALM,
               "accept": "application/json", "issupportrequest": "false"}
    headers.update(over)
    return {k: v for k, v in headers.items() if v is not None}


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_token_is_a_jwt_with_tenant_roles_scope_and_exp(rz):
    state, client = rz
    resp = await client.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "bot",
                                               "client_secret": "bot-secret"})
    body = resp.json()
    assert resp.status_code == 200 and body["token_type"] == "Bearer" and body["expires_in"] == 300
    claims = claims_of(body["access_token"])
    assert claims["tenant_id"] == TENANT_ID
    assert claims["realm_access"]["roles"] == ["ticket_user"]
    assert claims["scope"] == "tickets:write"
    assert claims["exp"] - claims["iat"] == 300
    assert claims_of(await get_token(client, "norole"))["realm_access"]["roles"] == ["offline_access",
                                                                                      "uma_authorization"]


async def test_token_errors(rz):
    _, client = rz
    bad_secret = await client.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "bot",
                                                     "client_secret": "nope"})
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"
    bad_grant = await client.post(TOKEN_PATH, data={"grant_type": "password", "client_id": "bot",
                                                    "client_secret": "bot-secret"})
    assert bad_grant.status_code == 400 and bad_grant.json()["error"] == "unsupported_grant_type"
    other_realm = await client.post("/auth/realms/other/protocol/openid-connect/token",
                                    data={"grant_type": "client_credentials", "client_id": "bot",
                                          "client_secret": "bot-secret"})
    assert other_realm.status_code == 404


async def test_token_expires_mid_run(rz):
    state, client = rz
    token = await get_token(client)
    assert (await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))).status_code == 200
    state.advance(state.token_ttl + 1)
    resp = await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))
    assert resp.status_code == 401
    assert resp.json() == {"success": False, "error": {"code": "UNAUTHORIZED",
                                                       "message": "Invalid or expired access token", "details": None}}
    fresh = await get_token(client)
    assert (await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(fresh))).status_code == 200


async def test_forged_or_missing_token_is_rejected(rz):
    _, client = rz
    head, payload, sig = (await get_token(client)).split(".")
    claims = claims_of(f"{head}.{payload}.{sig}")
    claims["realm_access"]["roles"] = ["tenant_admin"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    resp = await client.get("/api/v2/ticketing/user/userinfo", params=Q, headers=hdrs(f"{head}.{forged}.{sig}"))
    assert resp.status_code == 401
    resp = await client.get("/api/v2/ticketing/user/userinfo", params=Q, headers=hdrs("x", authorization=None))
    assert resp.status_code == 401


async def test_ticket_type_fields_offers_and_etag(rz):
    _, client = rz
    token = await get_token(client)
    resp = await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))
    assert resp.status_code == 200
    # OData style, as ../shared/backends/README.md documents: {"data": {"value": [...], "@odata.count": n}}
    assert set(resp.json()) == {"data"} and set(resp.json()["data"]) == {"value", "@odata.count"}
    assert resp.json()["data"]["@odata.count"] == 2
    types = {t["id"]: t for t in resp.json()["data"]["value"]}
    assert types["16910"]["properties"]["prefix"] == "CTC"
    fields = {f["id"]: f for f in types["16910"]["fields"]}
    assert {fid: (f["type"], f["required"]) for fid, f in fields.items()} == {
        F_SUMMARY: ("text", True), F_DESCRIPTION: ("textarea", False), F_URGENCY: ("select", True),
        F_NEEDED_BY: ("date", False), F_NUMBER: ("number", True)}
    assert fields[F_URGENCY]["defaultValue"] == "<2week"
    assert "<2week" in [o["value"] for o in fields[F_URGENCY]["options"]]
    again = await client.get("/api/v2/ticketing/ticket-type", params=Q,
                             headers=hdrs(token, **{"if-none-match": resp.headers["etag"]}))
    assert again.status_code == 304

    offers = (await client.get("/api/v2/ticketing/tenant/sc/offers", params=Q, headers=hdrs(token))).json()
    assert set(offers) == {"data"} and set(offers["data"]) == {"offers", "categories"}
    assert {o["id"]: o["item_type"] for o in offers["data"]["offers"]} == {"23629": "16910", "23630": "16911"}
    assert set(offers["data"]["offers"][0]) == {"id", "name", "category", "team", "item_type", "formFields", "status"}


async def test_ticket_types_are_paged_with_top_and_skip_and_select(rz):
    state, client = rz
    token = await get_token(client)
    first = (await client.get("/api/v2/ticketing/ticket-type", params={**Q, "$top": "1"}, headers=hdrs(token))).json()
    second = (await client.get("/api/v2/ticketing/ticket-type", params={**Q, "$top": "1", "$skip": "1"},
                               headers=hdrs(token))).json()
    assert [t["id"] for t in first["data"]["value"]] == ["16910"] and first["data"]["@odata.count"] == 2
    assert [t["id"] for t in second["data"]["value"]] == ["16911"]
    state.page_size = 1  # the default page when $top is absent
    default = (await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))).json()
    assert [t["id"] for t in default["data"]["value"]] == ["16910"]
    selected = (await client.get("/api/v2/ticketing/ticket-type", params={**Q, "$select": "id,name"},
                                 headers=hdrs(token))).json()
    assert selected["data"]["value"] == [{"id": "16910", "name": "Hardware Request"}]
    bad = await client.get("/api/v2/ticketing/ticket-type", params={**Q, "$skip": "-1"}, headers=hdrs(token))
    assert bad.status_code == 400


async def test_userinfo_reports_teams_and_create_permission(rz):
    _, client = rz
    bot = (await client.get("/api/v2/ticketing/user/userinfo", params=Q, headers=hdrs(await get_token(client))))
    assert bot.status_code == 200
    data = bot.json()["data"]
    assert set(bot.json()) == {"data"}
    assert set(data) == {"teams", "defaultTeam", "roles", "permissions", "tenant"}  # the documented keys
    assert data["teams"] == ["james"] and data["defaultTeam"] == "james"
    assert data["roles"] == {"realm": ["ticket_user"]}
    assert data["tenant"]["id"] == TENANT_ID and data["tenant"]["realm"] == REALM
    assert data["permissions"]["ticketing"]["canCreateTicket"] is True
    norole = await client.get("/api/v2/ticketing/user/userinfo", params=Q,
                              headers=hdrs(await get_token(client, "norole")))
    assert norole.json()["data"]["permissions"]["ticketing"]["canCreateTicket"] is False


async def test_create_ticket_success_shape_matches_seed(rz):
    state, client = rz
    token = await get_token(client)
    resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert {k: body[k] for k in ("success", "message", "status", "objectId")} == {
        "success": True, "message": "ticket created successfully", "status": 200, "objectId": "CTC-0001"}
    ticket = body["ticket"]
    assert set(ticket) == SEED_TICKET_KEYS
    assert ticket["object_id"] == "CTC-0001" and ticket["tenant_id"] == TENANT_ID
    assert ticket["summary"] == "Hardware request - new laptop"
    assert ticket["lookup_props"] == {"teamId": "james", "itemTypeId": "16910"}
    assert (ticket["status_type"], ticket["status_category"]) == ("Open", "To-do Category")
    assert ticket["data"][F_URGENCY] == "<2week" and ticket["data"]["offerId"] == "23629"
    assert {"ccWatchers", "toWatchers", "submittedBy", "lastUpdatedBy"} <= set(ticket["data"])
    assert ticket["created_at"].endswith("Z") and len(ticket["etag"]) == 36
    second = await client.post(CREATE, params=Q, json=seed_body(**{F_NEEDED_BY: "2025-07-10T12:34:56.789Z"}),
                               headers=hdrs(token))
    assert second.json()["objectId"] == "CTC-0002"
    assert set(state.tickets) == {"CTC-0001", "CTC-0002"}


async def test_object_id_prefix_is_configurable():
    runner, base_url = await start(RezolveState(object_prefix="REQ"))
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=5, verify=False) as client:
            resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(await get_token(client)))
            assert resp.json()["objectId"] == "REQ-0001"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("key", ["source", "summary", "ticketBody", "attachments", "ticketRelation"])
async def test_each_of_the_five_body_keys_is_required(rz, key):
    _, client = rz
    body = seed_body()
    del body[key]
    resp = await client.post(CREATE, params=Q, json=body, headers=hdrs(await get_token(client)))
    assert resp.status_code == 400
    assert resp.json()["code"] == "BAD_REQUEST" and key in resp.json()["message"]


async def test_seed_validation_failure_example_is_reproduced(rz):
    _, client = rz
    body = seed_body(**{F_NEEDED_BY: ""})
    del body["ticketBody"][F_NUMBER]
    resp = await client.post(CREATE, params=Q, json=body, headers=hdrs(await get_token(client)))
    assert resp.status_code == 400
    assert resp.json() == {
        "error": True, "code": "INPUT_VALIDATION_FAILURE",
        "message": "There occured an error during ticket data validation", "status": 400,
        "validationResult": {"result": False, "reason": {
            F_NUMBER: ["Field Number is required"],
            F_NEEDED_BY: ["You have entered an invalid date value for Needed by, expects a proper date string"]}}}


@pytest.mark.parametrize("change, key", [
    ({F_SUMMARY: 123}, F_SUMMARY),                     # wrong type for text
    ({F_SUMMARY: "  "}, F_SUMMARY),                    # required text left blank
    ({F_URGENCY: "tomorrow"}, F_URGENCY),              # select value not among options
    ({F_NEEDED_BY: "next week"}, F_NEEDED_BY),         # non-ISO date
    ({F_NUMBER: "2"}, F_NUMBER),                       # number sent as a string
    ({"0d3f7a55-0000-4000-8000-000000000000": "x"}, "0d3f7a55-0000-4000-8000-000000000000"),  # unknown uuid
    ({"offerId": "23630"}, "offerId"),                 # offer of item type 16911
    ({"offerId": 23629}, "offerId"),                   # offerId must be a string
    ({"offerId": "99999"}, "offerId"),                 # unknown offer
])
async def test_input_validation_failure_reason_is_keyed_by_field(rz, change, key):
    _, client = rz
    resp = await client.post(CREATE, params=Q, json=seed_body(**change), headers=hdrs(await get_token(client)))
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == "INPUT_VALIDATION_FAILURE" and body["validationResult"]["result"] is False
    assert list(body["validationResult"]["reason"]) == [key]


async def test_missing_offer_id_is_a_validation_failure(rz):
    _, client = rz
    body = seed_body()
    del body["ticketBody"]["offerId"]
    resp = await client.post(CREATE, params=Q, json=body, headers=hdrs(await get_token(client)))
    assert resp.status_code == 400 and list(resp.json()["validationResult"]["reason"]) == ["offerId"]


async def test_token_without_write_role_gets_user_permission_failure(rz):
    state, client = rz
    resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(await get_token(client, "norole")))
    assert resp.status_code == 401
    assert resp.json() == {"error": True, "code": "USER_PERMISSION_FAILURE",
                           "message": "You do not have the required permissions to create ticket", "status": 401}
    state.required_scope = "ticketing:write"  # the docs' scope name: the bot's "tickets:write" token now fails
    resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(await get_token(client)))
    assert resp.status_code == 401 and resp.json()["code"] == "USER_PERMISSION_FAILURE"
    assert not state.tickets


async def test_roles_that_cannot_use_the_team_get_403_without_code(rz):
    state, client = rz
    body = {"source": "api", "summary": "Access to payroll", "attachments": {}, "ticketRelation": None,
            "ticketBody": {"offerId": "23630", F_SYSTEM: "Payroll"}}
    resp = await client.post("/api/v2/ticketing/ticket/create/hr/16911", params=Q, json=body,
                             headers=hdrs(await get_token(client)))
    assert resp.status_code == 403 and "code" not in resp.text
    resp = await client.post("/api/v2/ticketing/ticket/create/hr/16911", params=Q, json=body,
                             headers=hdrs(await get_token(client, "agent")))
    assert resp.status_code == 200 and resp.json()["ticket"]["lookup_props"]["teamId"] == "hr"


@pytest.mark.parametrize("path", ["/api/v2/ticketing/ticket/create/nobody/16910",
                                  "/api/v2/ticketing/ticket/create/james/99999",
                                  "/api/v2/ticketing/ticket/create/james/16911"])
async def test_unknown_team_or_item_type_is_a_404_with_html(rz, path):
    _, client = rz
    resp = await client.post(path, params=Q, json=seed_body(), headers=hdrs(await get_token(client)))
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.text.startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError):
        resp.json()


async def test_tenant_header_must_match_token(rz):
    _, client = rz
    token = await get_token(client)
    for tenant in ("00000000-0000-4000-8000-000000000000", None):
        resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token, **{"x-tenantid": tenant}))
        assert resp.status_code == 404
        assert resp.json()["error"]["message"] == "Tenant not found"


async def test_other_required_headers_and_query(rz):
    _, client = rz
    token = await get_token(client)
    assert (await client.get("/api/v2/ticketing/tenant/sc/offers", params=Q,
                             headers=hdrs(token, realmname=None))).status_code == 400
    assert (await client.get("/api/v2/ticketing/tenant/sc/offers", params=Q,
                             headers=hdrs(token, realmname="other"))).status_code == 401
    assert (await client.get("/api/v2/ticketing/tenant/sc/offers", params=Q,
                             headers=hdrs(token, accept="text/html"))).status_code == 406
    no_query = await client.get("/api/v2/ticketing/tenant/sc/offers", headers=hdrs(token))
    assert no_query.status_code == 400 and no_query.json()["error"]["code"] == "INVALID_QUERY"
    no_module = await client.post(CREATE, params={"type": "template"}, json=seed_body(), headers=hdrs(token))
    assert no_module.status_code == 400 and no_module.json()["code"] == "BAD_REQUEST"


async def test_unknown_api_path_uses_error_envelope(rz):
    _, client = rz
    resp = await client.get("/api/v2/ticketing/nothing-here", params=Q, headers=hdrs(await get_token(client)))
    assert resp.status_code == 404
    assert resp.json()["success"] is False and resp.json()["error"]["code"] == "NOT_FOUND"


async def test_scripted_faults_apply_in_order_then_clear(rz):
    state, client = rz
    token = await get_token(client)
    state.next_faults = ["429", "500", "drop", "401"]
    url = "/api/v2/ticketing/ticket-type"
    limited = await client.get(url, params=Q, headers=hdrs(token))
    assert limited.status_code == 429 and limited.headers["X-RateLimit-Remaining"] == "0"
    assert "X-RateLimit-Limit" in limited.headers and "X-RateLimit-Reset" in limited.headers
    assert (await client.get(url, params=Q, headers=hdrs(token))).status_code == 500
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(url, params=Q, headers=hdrs(token))
    assert (await client.get(url, params=Q, headers=hdrs(token))).status_code == 401
    assert (await client.get(url, params=Q, headers=hdrs(token))).status_code == 200
    assert state.next_faults == []


async def test_request_log_and_control_endpoints(rz):
    state, client = rz
    token = await get_token(client)
    await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    logged = state.requests[-1]
    assert logged["method"] == "POST" and logged["path"] == CREATE and logged["query"] == Q
    assert logged["body"]["ticketBody"]["offerId"] == "23629"
    assert "authorization" not in {k.lower() for k in logged["headers"]}
    assert logged["headers"]["realmname"] == REALM
    dump = (await client.get("/_sandbox/state")).json()
    assert list(dump["tickets"]) == ["CTC-0001"] and len(dump["requests"]) == 2
    assert (await client.post("/_sandbox/reset")).status_code == 200
    assert state.tickets == {} and state.requests == []
    resp = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(await get_token(client)))
    assert resp.json()["objectId"] == "CTC-0001"


async def test_cli_prints_its_url():
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "sandbox.rezolve", "--port", "0",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(verify=False) as client:
            assert (await client.get(f"{url}/_sandbox/state")).json()["realm"] == REALM
    finally:
        proc.terminate()
        await proc.wait()


LIST = "/api/v2/ticketing/ticket/list"


async def test_ticket_list_finds_a_reference_by_full_text_search(rz):
    state, client = rz
    token = await get_token(client)
    for n, ref in enumerate(("slack-aaa", "slack-bbb", "slack-ccc")):
        body = seed_body(**{F_DESCRIPTION: f"Broken {n}\n\n—\nRequested in Slack by Alice · ref {ref}"})
        assert (await client.post(CREATE, params=Q, json=body, headers=hdrs(token))).status_code == 200
    resp = await client.post(LIST, params=Q, json={"search": "SLACK-BBB", "top": 100, "offset": 0},
                             headers=hdrs(token))
    assert resp.status_code == 200
    body = resp.json()
    assert body["data"]["@odata.count"] == 1
    assert [t["object_id"] for t in body["data"]["value"]] == ["CTC-0002"]
    assert body["data"]["value"][0] == state.tickets["CTC-0002"]  # the whole record
    everything = (await client.post(LIST, params=Q, json={"top": 2}, headers=hdrs(token))).json()["data"]
    assert [t["object_id"] for t in everything["value"]] == ["CTC-0003", "CTC-0002"]  # newest first
    assert everything["@odata.count"] == 3
    paged = (await client.post(LIST, params=Q, json={"top": 2, "offset": 2}, headers=hdrs(token))).json()["data"]
    assert [t["object_id"] for t in paged["value"]] == ["CTC-0001"]
    by_summary = (await client.post(LIST, params=Q, json={"search": "new laptop"}, headers=hdrs(token))).json()
    assert by_summary["data"]["@odata.count"] == 3
    state.list_shape = "list"
    bare = (await client.post(LIST, params=Q, json={"search": "slack-ccc"}, headers=hdrs(token))).json()
    assert [t["object_id"] for t in bare["data"]] == ["CTC-0003"]


async def test_ticket_list_filter_and_sort(rz):
    _, client = rz
    token = await get_token(client)
    for summary in ("b", "a", "c"):
        await client.post(CREATE, params=Q, json={**seed_body(), "summary": summary}, headers=hdrs(token))
    flt = {"op": "OR", "operand": [{"id": "1", "op": "EQ", "column": "object_id", "operand": "CTC-0001"},
                                   {"id": "2", "op": "IN", "column": "summary", "operand": ["c"]}]}
    resp = await client.post(LIST, params=Q, json={"filter": flt, "sort": "summary", "sortOrder": "asc"},
                             headers=hdrs(token))
    assert [t["summary"] for t in resp.json()["data"]["value"]] == ["b", "c"]
    none = {"op": "AND", "operand": [{"id": "1", "op": "GT", "column": "no_such_column", "operand": 1}]}
    resp = await client.post(LIST, params=Q, json={"filter": none}, headers=hdrs(token))
    assert resp.json()["data"] == {"value": [], "@odata.count": 0}


@pytest.mark.parametrize("body", [{"top": 101}, {"top": 0}, {"offset": -1}, {"search": 5}, {"sortOrder": "up"},
                                  {"filter": {"op": "XOR", "operand": []}},
                                  {"filter": {"op": "AND", "operand": [{"op": "SOUNDS_LIKE", "column": "x"}]}}, []])
async def test_ticket_list_rejects_bad_requests_with_the_envelope(rz, body):
    _, client = rz
    resp = await client.post(LIST, params=Q, json=body, headers=hdrs(await get_token(client)))
    assert resp.status_code == 400
    assert resp.json()["success"] is False and resp.json()["error"]["code"] == "INVALID_REQUEST"
    no_query = await client.post(LIST, json={}, headers=hdrs(await get_token(client)))
    assert no_query.status_code == 400 and no_query.json()["error"]["code"] == "INVALID_QUERY"


async def test_200_faults_answer_without_doing_the_work(rz):
    state, client = rz
    token = await get_token(client)
    state.next_faults = ["200-not-json", "200-no-data"]
    html = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        html.json()
    no_data = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert no_data.status_code == 200 and no_data.json() == {"success": True}
    assert state.tickets == {}


async def test_after_faults_do_the_work_then_lose_or_spoil_the_answer(rz):
    state, client = rz
    token = await get_token(client)
    state.faults_for = {"/api/v2/ticketing/ticket/create/": ["lost", "after:200-not-json", "after:500"]}
    await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))  # other paths: no fault
    with pytest.raises(httpx.TransportError):
        await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert list(state.tickets) == ["CTC-0001"]  # created, but the answer never arrived
    spoiled = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert spoiled.status_code == 200 and spoiled.text.startswith("<!DOCTYPE html>")
    failed = await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))
    assert failed.status_code == 500
    assert list(state.tickets) == ["CTC-0001", "CTC-0002", "CTC-0003"]
    assert state.faults_for["/api/v2/ticketing/ticket/create/"] == []
    assert (await client.post(CREATE, params=Q, json=seed_body(), headers=hdrs(token))).status_code == 200


async def test_any_status_can_be_injected_with_the_envelope(rz):
    state, client = rz
    token = await get_token(client)
    state.next_faults = ["403", "503"]
    forbidden = await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "INJECTED_FAULT"
    unavailable = await client.get("/api/v2/ticketing/ticket-type", params=Q, headers=hdrs(token))
    assert unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_issued_tokens_are_listed_and_refresh_tokens_are_optional(rz):
    state, client = rz
    plain = (await client.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "bot",
                                                 "client_secret": "bot-secret"})).json()
    assert "refresh_token" not in plain
    state.refresh_tokens = True
    both = (await client.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_id": "bot",
                                                "client_secret": "bot-secret"})).json()
    assert claims_of(both["refresh_token"])["typ"] == "Refresh" and both["refresh_expires_in"] == 1800
    assert state.issued_tokens == [plain["access_token"], both["access_token"], both["refresh_token"]]
