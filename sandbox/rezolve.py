"""Local stand-in ("sandbox") for the Rezolve.ai ticketing API (Keycloak-based).

From documents only (seed 003, ../shared/backends/README.md, docs.rezolve.ai Get Ticket Types / Get
Service Catalog Offers / Get User Info); never imports the bot's packages.

Emulated
  POST /auth/realms/{realm}/protocol/openid-connect/token   form grant_type=client_credentials&client_id&
       client_secret -> {access_token, expires_in, refresh_expires_in, token_type: "Bearer", scope, ...};
       access_token is an HS256 JWT (key JWT_KEY) with tenant_id, realm_access.roles, scope, exp, iss, azp.
  GET  /api/v2/ticketing/ticket-type        {data: {value: [ticket type with fields[]], "@odata.count": n}}
       (OData style, as documented), paged with $top / $skip; $select=id,name,... keeps those keys.
  GET  /api/v2/ticketing/tenant/sc/offers   {data: {offers: [{id, name, category, team, item_type, formFields,
       status}], categories: [...]}}
  GET  /api/v2/ticketing/user/userinfo      {data: {teams: [slug, ...], defaultTeam, roles: {realm: [...]},
       permissions: {ticketing: {canCreateTicket}}, tenant: {id, name, realm}}}
  POST /api/v2/ticketing/ticket/create/{teamId}/{itemTypeId}?type=template&module=ticketing  (seed 003)
  POST /api/v2/ticketing/ticket/list?type=template&module=ticketing  {search, top (1..100, default 10),
       offset, sort, searchOrder, sortOrder, filter: {op: AND|OR, operand: [{id, op: EQ|NE|GT|GE|LT|LE|LIKE|IN,
       column, operand}]}} (backends/README.md); every key optional.
  GET  /api/v2/ticketing/user/list?type=...&module=...&top=&offset=   the caller's own tickets (backends/README.md),
       in the ticket list's shape.
  The GETs send an ETag and answer 304 to a matching If-None-Match.
Control (no auth, not Rezolve.ai's): POST /_sandbox/tickets/{objectId}/status {status_type, status_category?}
  changes a ticket as an agent would (status, a new etag, version + 1, updated_at) -> {ticket}; 400 for an
  unknown status_type without a status_category, 404 for an unknown ticket.
Every /api call needs, in order: a valid unexpired Bearer JWT (else 401), `realmname` (missing -> 400,
not the token's realm -> 401), `x-tenantid` == the token's tenant_id (else 404 "Tenant not found"),
`accept` containing application/json (else 406), and query `type` (template|agent|user) and `module`.

Choices where the documents are silent ([guess]):
  * Errors other than the create endpoint's seed cases use {success: false, error: {code, message,
    details}} (UNAUTHORIZED, TENANT_NOT_FOUND, NOT_FOUND for an unknown /api path, ...).
  * Create: bad JSON/query or a missing/ill-typed top-level key -> 400 {error: true, code: "BAD_REQUEST",
    message, status: 400}.  No `required_scope` in the token -> same 401 USER_PERMISSION_FAILURE as no
    write role.  403 body is plain "Forbidden".  Unknown team or item type, or an item type of another
    team -> 404 with an Express-style HTML page.  Teams list the realm roles that may use them ("hr"
    needs ticket_agent/tenant_admin, so the default "bot" client, ticket_user, gets 403 there).
  * Field types: text/textarea/multiline (string), select/dropdown (one of options[].value), date
    (ISO-8601 string, "" rejected), number (JSON number).  null/absent = unset; the server does not
    apply defaultValue.  Unknown ticketBody keys -> 400 with a reason under that key.
  * Type 16910's required "Number" field has the uuid of the seed's error example: the seed's curl body
    alone gets exactly the seed's reason {"93aabbc9-...": ["Field Number is required"]}.
  * objectId = f"{object_prefix}-{n:04d}", n running from 1.
  * Ticket list (its answer is not documented): the rows are whole ticket records as create returns them,
    newest first unless `sort` names a top-level column (`sortOrder` asc|desc); `search` is a
    case-insensitive substring match against the summary, the object id and every text value in the
    ticket's data (a full-text search); `filter` columns are the record's top-level keys; `searchOrder`
    is ignored; a bad key -> 400 envelope INVALID_REQUEST.  Answer shape: state.list_shape "odata"
    (default) {data: {value: [...], "@odata.count": total}} or "list" {data: [...]}.
  * Ticket-type pages hold state.page_size types (default 50) when $top is absent.  Offer `categories`
    are [{name}]; userinfo `defaultTeam` is the first team, `tenant.name` is "Sandbox tenant".
  * Faults, one per request, control endpoints excluded: state.faults_for[path prefix] (first) or
    state.next_faults (any path). "429" (X-RateLimit-Limit/Remaining/Reset (epoch s), Retry-After), "401"
    (UNAUTHORIZED), any other status ("500", "503", "403", ...: the error envelope with that status),
    "drop" (connection closed, no response), "200-not-json" (200 with an HTML page), "200-no-data"
    (200 {"success": true} without data); each answered before any work.
  * user/list (shape not documented): the tickets whose data.submittedBy is the token's preferred_username,
    newest first, as the ticket list answers them; `top` (1..100, default 10) and `offset` in the query.
  * Statuses: status_type and its status_category (STATUS_CATEGORIES) as agents set them: Open / To-do
    Category (new tickets, seen in the create answer), In Progress and Pending / In Progress Category,
    Resolved, Closed and Cancelled / Done Category. "after:<fault>" does the work
    first, then answers <fault> instead; "lost" = "after:drop" (created, but the answer never arrives).
    state.advance(s) moves the sandbox clock (token expiry).
  * state.refresh_tokens: the token answer also carries a refresh_token (Keycloak can be set up so for
    the client credentials grant). state.issued_tokens lists every token handed out (for log checks).

Seeds: tenant TENANT_ID, realm "acme"; clients bot/bot-secret (ticket_user), agent/agent-secret
(ticket_agent), norole/norole-secret (no write role), all with scope tickets:write; team "james" owns
type 16910 (offer 23629), team "hr" owns type 16911 (offer 23630).

Run by hand:  python -m sandbox.rezolve --port 8083   (prints its URL), then e.g.
  curl -s -d grant_type=client_credentials -d client_id=bot -d client_secret=bot-secret \
       http://127.0.0.1:8083/auth/realms/acme/protocol/openid-connect/token
  curl -s -H "authorization: Bearer $TOKEN" -H "x-tenantid: $TENANT_ID" -H "realmname: acme" -H "accept: \
       application/json" "http://127.0.0.1:8083/api/v2/ticketing/ticket-type?type=template&module=ticketing"
  curl -s http://127.0.0.1:8083/_sandbox/state ; curl -s -X POST http://127.0.0.1:8083/_sandbox/reset
"""
from __future__ import annotations

import argparse
import base64
import copy
import hashlib
import hmac
import json
import time
import uuid
import warnings
from datetime import datetime, timezone

from aiohttp import web

from ._server import recorded, serve_forever, start_app

TENANT_ID = "820188ff-2036-4924-b80f-d11610735d86"
REALM = "acme"
JWT_KEY = b"rezolve-sandbox-signing-key"
WRITE_ROLES = {"ticket_user", "ticket_agent", "tenant_admin"}
# status_type -> status_category [guess, except Open / To-do Category, which the create answer shows]
STATUS_CATEGORIES = {"Open": "To-do Category", "In Progress": "In Progress Category",
                     "Pending": "In Progress Category", "Resolved": "Done Category", "Closed": "Done Category",
                     "Cancelled": "Done Category"}
QUERY_TYPES = ("template", "agent", "user")
BODY_KEYS = ("source", "summary", "ticketBody", "attachments", "ticketRelation")

# Field uuids of ticket type 16910 (the first three come from seed 003's example request,
# the last two from its validation-failure example).
F_SUMMARY = "ab13e5d1-9b9d-4c3e-8fc4-e86912c8cb53"
F_DESCRIPTION = "7f111983-1013-41be-a056-989fff018bb5"
F_URGENCY = "711ea9e6-1b73-4070-9eb2-941803f7f5d4"
F_NEEDED_BY = "5b53c791-e047-40e8-9e88-bae13f153cc3"
F_NUMBER = "93aabbc9-fd45-407d-8569-b140bf9cc6a7"
F_SYSTEM = "c3d1f0a2-6b7e-4f5a-9c21-0d8e7b6a5f41"  # ticket type 16911

DEFAULT_CLIENTS = {
    "bot": {"secret": "bot-secret", "roles": ["ticket_user"], "scope": "tickets:write", "username": "bot@example.com"},
    "agent": {"secret": "agent-secret", "roles": ["ticket_agent"], "scope": "tickets:write",
              "username": "agent@example.com"},
    "norole": {"secret": "norole-secret", "roles": ["offline_access", "uma_authorization"],
               "scope": "tickets:write", "username": "service-account-norole"},
}

SEED_TEAMS = {
    "james": {"name": "IT Support", "roles": ["ticket_user", "ticket_agent", "tenant_admin"]},
    "hr": {"name": "Human Resources", "roles": ["ticket_agent", "tenant_admin"]},
}


def _field(fid, label, ftype, required=False, default=None, options=()):
    return {"id": fid, "label": label, "type": ftype, "required": required,
            "defaultValue": default, "options": [dict(o) for o in options]}


URGENCY_OPTIONS = [{"label": "Within 2 days", "value": "<2day"}, {"label": "Within 2 weeks", "value": "<2week"},
                   {"label": "Later", "value": ">2week"}]

SEED_TICKET_TYPES = {
    "16910": {"id": "16910", "name": "Hardware Request", "v1_name": "hardware_request",
              "properties": {"team": "james", "prefix": "CTC"},
              "fields": [_field(F_SUMMARY, "Subject", "text", required=True, default=""),
                         _field(F_DESCRIPTION, "Description", "textarea", default=""),
                         _field(F_URGENCY, "Urgency", "select", required=True, default="<2week",
                                options=URGENCY_OPTIONS),
                         _field(F_NEEDED_BY, "Needed by", "date", default=""),
                         _field(F_NUMBER, "Number", "number", required=True, default=1)]},
    "16911": {"id": "16911", "name": "Access Request", "v1_name": "access_request",
              "properties": {"team": "hr", "prefix": "CTC"},
              "fields": [_field(F_SYSTEM, "System", "text", required=True, default="")]},
}

SEED_OFFERS = [  # the documented offer keys: id, name, category, team, item_type, formFields, status
    {"id": "23629", "name": "New Laptop Request", "category": "Hardware", "team": "james", "item_type": "16910",
     "formFields": [], "status": "active"},
    {"id": "23630", "name": "System Access", "category": "Access", "team": "hr", "item_type": "16911",
     "formFields": [], "status": "active"},
]

HTML_404 = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n'
            '</head>\n<body>\n<pre>Cannot {method} {path}</pre>\n</body>\n</html>\n')


class RezolveState:
    """In-memory tenant. Constructor args are configuration; reset() restores seeds and clears runtime."""

    def __init__(self, *, tenant_id: str = TENANT_ID, realm: str = REALM, clients: dict | None = None,
                 token_ttl: float = 300, required_scope: str = "tickets:write", object_prefix: str = "CTC",
                 teams: dict | None = None, ticket_types: dict | None = None, offers: list | None = None,
                 list_shape: str = "odata", page_size: int = 50, refresh_tokens: bool = False):
        self.tenant_id = tenant_id
        self.realm = realm
        self.clients = copy.deepcopy(clients if clients is not None else DEFAULT_CLIENTS)
        self.token_ttl = token_ttl
        self.required_scope = required_scope
        self.object_prefix = object_prefix
        self.list_shape = list_shape  # the ticket list's answer: "odata" {data: {value, @odata.count}} or "list"
        self.page_size = page_size  # ticket types per page when $top is absent
        self.refresh_tokens = refresh_tokens  # Keycloak's "use refresh tokens for client credentials grant"
        self._seeds = (teams or SEED_TEAMS, ticket_types or SEED_TICKET_TYPES, offers or SEED_OFFERS)
        self.reset()

    def reset(self) -> None:
        self.teams, self.ticket_types, self.offers = copy.deepcopy(self._seeds)
        self.tickets: dict[str, dict] = {}  # objectId -> ticket
        self.requests: list[dict] = []
        self.next_faults: list[str] = []  # for the next requests, whatever their path
        self.faults_for: dict[str, list[str]] = {}  # path prefix -> faults for the next requests under it
        self.issued_tokens: list[str] = []  # every access and refresh token handed out
        self.clock_offset = 0.0
        self.next_serial = 1

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def dump(self) -> dict:
        keys = ("tenant_id", "realm", "clients", "token_ttl", "required_scope", "object_prefix", "teams",
                "ticket_types", "offers", "tickets", "requests", "next_faults", "faults_for", "clock_offset",
                "next_serial", "list_shape", "page_size", "refresh_tokens", "issued_tokens")
        return {k: getattr(self, k) for k in keys}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str) -> bytes:
    return hmac.new(JWT_KEY, signing_input.encode(), hashlib.sha256).digest()


def encode_jwt(payload: dict) -> str:  # HS256, hand-rolled to avoid a dependency
    signing = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(payload).encode())
    return f"{signing}.{_b64(_sign(signing))}"


def decode_jwt(token: str) -> dict | None:
    try:
        head, body, sig = token.split(".")
        if not hmac.compare_digest(_sign(f"{head}.{body}"), _unb64(sig)):
            return None
        claims = json.loads(_unb64(body))
        return claims if isinstance(claims, dict) else None
    except (ValueError, TypeError):
        return None


def _envelope_error(status: int, code: str, message: str, details=None, headers=None) -> web.Response:
    return web.json_response({"success": False, "error": {"code": code, "message": message, "details": details}},
                             status=status, headers=headers)


def _bad_request(message: str) -> web.Response:
    return web.json_response({"error": True, "code": "BAD_REQUEST", "message": message, "status": 400}, status=400)


def _query_problem(request: web.Request) -> str | None:
    if request.query.get("type") not in QUERY_TYPES:
        return "query parameter 'type' is required: template, agent or user"
    return None if request.query.get("module") else "query parameter 'module' is required"


def _json_with_etag(request: web.Request, payload: dict) -> web.Response:
    text = json.dumps(payload)
    etag = '"' + hashlib.sha1(text.encode()).hexdigest() + '"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(text=text, content_type="application/json", headers={"ETag": etag})


def _iso_now(state: RezolveState) -> str:
    return datetime.fromtimestamp(state.now(), timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def _next_fault(request: web.Request, state: RezolveState) -> str | None:
    for prefix, faults in state.faults_for.items():
        if faults and request.path.startswith(prefix):
            return faults.pop(0)
    return state.next_faults.pop(0) if state.next_faults else None


def _drop(request: web.Request) -> web.Response:
    """Cut the connection without answering; the client sees a transport error, not a response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)  # never delivered: the connection is already closed


def _fault_response(fault: str, state: RezolveState, request: web.Request) -> web.Response:
    if fault == "drop":
        return _drop(request)
    if fault == "200-not-json":
        return web.Response(status=200, content_type="text/html",
                            text="<!DOCTYPE html>\n<html><body><h1>Service temporarily degraded</h1></body></html>\n")
    if fault == "200-no-data":
        return web.json_response({"success": True})
    if fault == "429":
        headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0",
                   "X-RateLimit-Reset": str(int(state.now()) + 1), "Retry-After": "1"}
        return _envelope_error(429, "RATE_LIMITED", "Too many requests", headers=headers)
    if fault == "401":
        return _envelope_error(401, "UNAUTHORIZED", "Invalid or expired access token")
    status = int(fault) if fault.isdigit() and 400 <= int(fault) < 600 else 500
    code = "INTERNAL_SERVER_ERROR" if status >= 500 else "INJECTED_FAULT"
    return _envelope_error(status, code, f"Injected fault {fault!r}")


def _claims(request: web.Request) -> dict:  # already verified by _authenticate
    return decode_jwt(request.headers["Authorization"][7:].strip()) or {}


def _authenticate(request: web.Request, state: RezolveState) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    claims = decode_jwt(auth[7:].strip()) if auth[:7].lower() == "bearer " else None
    if claims is None or not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= state.now():
        return _envelope_error(401, "UNAUTHORIZED", "Invalid or expired access token")
    realm = request.headers.get("realmname")
    if not realm:
        return _envelope_error(400, "MISSING_HEADER", "realmname header is required")
    if not str(claims.get("iss", "")).endswith(f"/realms/{realm}"):
        return _envelope_error(401, "UNAUTHORIZED", f"Token was not issued by realm {realm}")
    tenant = request.headers.get("x-tenantid")
    if not tenant or tenant != claims.get("tenant_id") or tenant != state.tenant_id:
        return _envelope_error(404, "TENANT_NOT_FOUND", "Tenant not found")
    if "application/json" not in request.headers.get("Accept", ""):
        return _envelope_error(406, "NOT_ACCEPTABLE", "accept header must be application/json")
    if request.method == "GET" and (problem := _query_problem(request)):
        return _envelope_error(400, "INVALID_QUERY", problem)
    return None


@web.middleware
async def _middleware(request: web.Request, handler):
    state: RezolveState = request.app["state"]
    if request.path.startswith("/_sandbox/"):
        return await handler(request)
    raw = await request.read()
    state.requests.append(recorded(request, raw))
    fault = _next_fault(request, state)
    if fault == "lost":
        fault = "after:drop"
    if fault is not None and not fault.startswith("after:"):
        return _fault_response(fault, state, request)
    response = await _handle(request, state, handler)
    if fault is not None:  # the work is done; the client gets the fault instead of the answer
        return _fault_response(fault[len("after:"):], state, request)
    return response


async def _handle(request: web.Request, state: RezolveState, handler) -> web.Response:
    if request.path.startswith("/api/") and (problem := _authenticate(request, state)) is not None:
        return problem
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api/") or exc.status < 400:
            raise
        return _envelope_error(exc.status, exc.reason.upper().replace(" ", "_"), exc.reason,
                               {"path": request.path, "method": request.method})


async def _token(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    if request.match_info["realm"] != state.realm:
        return web.json_response({"error": "Realm does not exist"}, status=404)
    form = await request.post()
    client_id, secret, grant = (form.get(k) for k in ("client_id", "client_secret", "grant_type"))
    if not grant:
        return web.json_response({"error": "invalid_request",
                                  "error_description": "Missing form parameter: grant_type"}, status=400)
    if grant != "client_credentials":
        return web.json_response({"error": "unsupported_grant_type",
                                  "error_description": "Unsupported grant_type"}, status=400)
    client = state.clients.get(client_id or "")
    if client is None or not hmac.compare_digest(str(client["secret"]), str(secret or "")):
        return web.json_response({"error": "invalid_client",
                                  "error_description": "Invalid client or Invalid client credentials"}, status=401)
    now = int(state.now())
    claims = {"exp": now + int(state.token_ttl), "iat": now, "jti": str(uuid.uuid4()),
              "iss": f"{request.url.origin()}/auth/realms/{state.realm}", "aud": "account",
              "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rezolve-sandbox/{client_id}")), "typ": "Bearer",
              "azp": client_id, "clientId": client_id, "tenant_id": state.tenant_id,
              "realm_access": {"roles": list(client["roles"])}, "scope": client["scope"],
              "preferred_username": client["username"], "email": client["username"]}
    answer = {"access_token": encode_jwt(claims), "expires_in": int(state.token_ttl), "refresh_expires_in": 0,
              "token_type": "Bearer", "not-before-policy": 0, "scope": client["scope"]}
    if state.refresh_tokens:
        refresh = {**claims, "typ": "Refresh", "jti": str(uuid.uuid4()), "exp": now + 1800}
        answer.update(refresh_token=encode_jwt(refresh), refresh_expires_in=1800)
    state.issued_tokens += [answer["access_token"]] + ([answer["refresh_token"]] if state.refresh_tokens else [])
    return web.json_response(answer)


def _non_negative(request: web.Request, name: str, default: int) -> int | None:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        return None
    return value if value >= 0 else None


async def _ticket_types(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    top, skip = _non_negative(request, "$top", state.page_size), _non_negative(request, "$skip", 0)
    if top is None or skip is None:
        return _envelope_error(400, "INVALID_QUERY", "$top and $skip must be non-negative integers")
    types = list(state.ticket_types.values())
    page = types[skip:skip + top]
    if select := [k.strip() for k in request.query.get("$select", "").split(",") if k.strip()]:
        page = [{k: t[k] for k in select if k in t} for t in page]
    return _json_with_etag(request, {"data": {"value": page, "@odata.count": len(types)}})


async def _offers(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    categories = list(dict.fromkeys(o["category"] for o in state.offers if o.get("category")))
    return _json_with_etag(request, {"data": {"offers": state.offers,
                                              "categories": [{"name": c} for c in categories]}})


def _can_create(state: RezolveState, claims: dict) -> bool:
    roles = set(claims.get("realm_access", {}).get("roles", []))
    return bool(roles & WRITE_ROLES) and state.required_scope in str(claims.get("scope", "")).split()


async def _userinfo(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    claims = _claims(request)
    roles = claims.get("realm_access", {}).get("roles", [])
    teams = [slug for slug, team in state.teams.items() if set(roles) & set(team["roles"])]
    data = {"teams": teams, "defaultTeam": teams[0] if teams else None, "roles": {"realm": roles},
            "permissions": {"ticketing": {"canCreateTicket": _can_create(state, claims)}},
            "tenant": {"id": claims["tenant_id"], "name": "Sandbox tenant", "realm": state.realm}}
    return _json_with_etag(request, {"data": data})


def _check_field(field: dict, present: bool, value) -> list[str]:
    label, ftype = field["label"], field["type"]
    if not present or value is None:
        return [f"Field {label} is required"] if field["required"] else []
    if ftype in ("text", "textarea", "multiline"):
        if not isinstance(value, str):
            return [f"Field {label} must be a string"]
        if field["required"] and not value.strip():
            return [f"Field {label} is required"]
    elif ftype in ("select", "dropdown"):
        allowed = [o["value"] for o in field["options"]]
        if not isinstance(value, str) or value not in allowed:
            return [f"Field {label} must be one of: {', '.join(allowed)}"]
    elif ftype == "date":
        try:
            datetime.fromisoformat(value)
        except (TypeError, ValueError):  # "" is rejected too
            return [f"You have entered an invalid date value for {label}, expects a proper date string"]
    elif ftype == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"Field {label} must be a number"]
    return []


def _validate_ticket_body(state: RezolveState, ttype: dict, item_type_id: str, body: dict) -> dict:
    reason: dict[str, list[str]] = {}
    offer_id = body.get("offerId")
    offer = next((o for o in state.offers if o["id"] == offer_id), None)
    if not isinstance(offer_id, str) or not offer_id:
        reason["offerId"] = ["Field offerId is required and must be a string"]
    elif offer is None:
        reason["offerId"] = [f"Offer {offer_id} does not exist"]
    elif str(offer["item_type"]) != item_type_id:
        reason["offerId"] = [f"Offer {offer_id} does not belong to item type {item_type_id}"]
    fields = {f["id"]: f for f in ttype["fields"]}
    for key in body:
        if key != "offerId" and key not in fields:
            reason[key] = [f"Field {key} is not defined for item type {item_type_id}"]
    for fid, field in fields.items():
        if messages := _check_field(field, fid in body, body.get(fid)):
            reason[fid] = messages
    return reason


async def _create_ticket(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    claims = _claims(request)
    team_id, item_type_id = request.match_info["teamId"], request.match_info["itemTypeId"]
    if not _can_create(state, claims):
        return web.json_response({"error": True, "code": "USER_PERMISSION_FAILURE",
                                  "message": "You do not have the required permissions to create ticket",
                                  "status": 401}, status=401)
    team, ttype = state.teams.get(team_id), state.ticket_types.get(item_type_id)
    if team is None or ttype is None or ttype["properties"].get("team") != team_id:
        return web.Response(status=404, content_type="text/html",
                            text=HTML_404.format(method=request.method, path=request.path))
    if not set(claims["realm_access"]["roles"]) & set(team["roles"]):
        return web.Response(status=403, text="Forbidden")
    if problem := _query_problem(request):
        return _bad_request(problem)
    try:
        body = json.loads(await request.text())
    except ValueError:
        return _bad_request("Request body must be valid JSON")
    if not isinstance(body, dict):
        return _bad_request("Request body must be a JSON object")
    if missing := [k for k in BODY_KEYS if k not in body]:
        return _bad_request(f"Missing required key(s): {', '.join(missing)}")
    good = {"source": isinstance(body["source"], str), "ticketBody": isinstance(body["ticketBody"], dict),
            "summary": isinstance(body["summary"], str) and bool(body["summary"].strip()),
            "attachments": isinstance(body["attachments"], dict),
            "ticketRelation": body["ticketRelation"] is None or isinstance(body["ticketRelation"], dict)}
    if bad := [k for k, ok in good.items() if not ok]:
        return _bad_request(f"Wrong type for {', '.join(bad)} (source: string, summary: non-empty string, "
                            "ticketBody/attachments: object, ticketRelation: null or object)")
    if reason := _validate_ticket_body(state, ttype, item_type_id, body["ticketBody"]):
        return web.json_response({"error": True, "code": "INPUT_VALIDATION_FAILURE",
                                  "message": "There occured an error during ticket data validation",
                                  "status": 400, "validationResult": {"result": False, "reason": reason}},
                                 status=400)
    serial = state.next_serial
    state.next_serial += 1
    object_id = f"{state.object_prefix}-{serial:04d}"
    now, username = _iso_now(state), claims.get("preferred_username")
    ticket = {
        "id": str(uuid.uuid4()), "tenant_id": state.tenant_id, "object_id": object_id,
        "etag": str(uuid.uuid4()), "summary": body["summary"],
        "data": {**body["ticketBody"], "ccWatchers": [], "toWatchers": [], "submittedBy": username,
                 "lastUpdatedBy": {"lastName": claims.get("azp"), "username": username, "firstName": "Service"}},
        "lookup_props": {"teamId": team_id, "itemTypeId": item_type_id},
        "moved_to": None, "deleted_seq": -1, "version": 2, "status_type": "Open",
        "status_category": "To-do Category", "created_at": now, "updated_at": now,
        "id_serial": 1458683 + serial, "metrics": [], "slas": []}
    state.tickets[object_id] = ticket
    return web.json_response({"success": True, "message": "ticket created successfully", "status": 200,
                              "objectId": object_id, "ticket": ticket})


LIST_OPS = ("EQ", "NE", "GT", "GE", "LT", "LE", "LIKE", "IN")


def _texts(value) -> list[str]:
    """Every text inside a value (nested dicts and lists included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def _matches_search(ticket: dict, search: str) -> bool:
    needle = search.lower()
    return any(needle in text.lower() for text in [ticket["summary"], ticket["object_id"], *_texts(ticket["data"])])


def _condition_holds(ticket: dict, cond: dict) -> bool:
    column, op, operand = cond["column"], cond["op"], cond.get("operand")
    if column not in ticket:
        return False
    value = ticket[column]
    try:
        if op == "EQ":
            return value == operand
        if op == "NE":
            return value != operand
        if op == "IN":
            return isinstance(operand, list) and value in operand
        if op == "LIKE":
            return str(operand).strip("%").lower() in str(value).lower()
        return {"GT": value > operand, "GE": value >= operand, "LT": value < operand, "LE": value <= operand}[op]
    except TypeError:  # comparing a number with a text
        return False


def _list_problem(body) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("search", ""), str):
        return "search must be a string"
    top, offset = body.get("top", 10), body.get("offset", 0)
    if isinstance(top, bool) or not isinstance(top, int) or not 1 <= top <= 100:
        return "top must be an integer from 1 to 100"
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        return "offset must be a non-negative integer"
    if str(body.get("sortOrder") or "desc").lower() not in ("asc", "desc"):
        return "sortOrder must be asc or desc"
    flt = body.get("filter")
    if flt is not None:
        if not isinstance(flt, dict) or flt.get("op", "AND") not in ("AND", "OR") \
                or not isinstance(flt.get("operand", []), list):
            return "filter must be {op: AND|OR, operand: [...]}"
        for cond in flt.get("operand", []):
            if not isinstance(cond, dict) or cond.get("op") not in LIST_OPS or not isinstance(cond.get("column"), str):
                return f"each filter operand needs a column and an op among {', '.join(LIST_OPS)}"
    return None


async def _list_tickets(request: web.Request) -> web.Response:
    state: RezolveState = request.app["state"]
    if problem := _query_problem(request):
        return _envelope_error(400, "INVALID_QUERY", problem)
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError:
        return _envelope_error(400, "INVALID_REQUEST", "Request body must be valid JSON")
    if problem := _list_problem(body):
        return _envelope_error(400, "INVALID_REQUEST", problem)
    rows = list(reversed(state.tickets.values()))  # newest first
    if search := body.get("search", "").strip():
        rows = [t for t in rows if _matches_search(t, search)]
    if flt := body.get("filter"):
        combine = all if flt.get("op", "AND") == "AND" else any
        conditions = flt.get("operand", [])
        if conditions:
            rows = [t for t in rows if combine(_condition_holds(t, c) for c in conditions)]
    if isinstance(body.get("sort"), str) and body["sort"]:
        column = body["sort"]
        rows.sort(key=lambda t: (column in t, str(t.get(column, ""))),
                  reverse=str(body.get("sortOrder") or "desc").lower() == "desc")
    return _rows_page(state, rows, body.get("top", 10), body.get("offset", 0))


def _rows_page(state: RezolveState, rows: list[dict], top: int, offset: int) -> web.Response:
    """One page of ticket rows, in the list's shape (state.list_shape)."""
    page = rows[offset:offset + top]
    if state.list_shape == "list":
        return web.json_response({"data": page})
    return web.json_response({"data": {"value": page, "@odata.count": len(rows)}})


async def _own_tickets(request: web.Request) -> web.Response:  # GET /api/v2/ticketing/user/list
    state: RezolveState = request.app["state"]
    username = _claims(request).get("preferred_username")
    try:
        top, offset = int(request.query.get("top", "10")), int(request.query.get("offset", "0"))
    except ValueError:
        return _envelope_error(400, "INVALID_QUERY", "top and offset must be integers")
    if not 1 <= top <= 100 or offset < 0:
        return _envelope_error(400, "INVALID_QUERY", "top must be from 1 to 100 and offset non-negative")
    rows = [t for t in reversed(state.tickets.values()) if t["data"].get("submittedBy") == username]
    return _rows_page(state, rows, top, offset)


async def _control_status(request: web.Request) -> web.Response:  # POST /_sandbox/tickets/{objectId}/status
    state: RezolveState = request.app["state"]
    ticket = state.tickets.get(request.match_info["objectId"])
    if ticket is None:
        return web.json_response({"error": f"no ticket {request.match_info['objectId']}"}, status=404)
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError:
        body = None
    status = body.get("status_type") if isinstance(body, dict) else None
    category = (body or {}).get("status_category") if isinstance(body, dict) else None
    category = category or STATUS_CATEGORIES.get(status)
    if not isinstance(status, str) or not status or not isinstance(category, str):
        return web.json_response({"error": "expected {status_type, status_category?}; status_type one of "
                                           + ", ".join(STATUS_CATEGORIES) + " or a status_category"}, status=400)
    ticket.update(status_type=status, status_category=category, etag=str(uuid.uuid4()),
                  version=ticket["version"] + 1, updated_at=_iso_now(state))
    return web.json_response({"ticket": ticket})


async def _sandbox(request: web.Request) -> web.Response:  # GET /_sandbox/state, POST /_sandbox/reset
    if request.method == "POST":
        request.app["state"].reset()
        return web.json_response({"ok": True})
    return web.json_response(request.app["state"].dump())


def create_app(state: RezolveState | None = None) -> web.Application:
    app = web.Application(middlewares=[_middleware])
    with warnings.catch_warnings():  # the documented interface is app["state"]
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["state"] = state if state is not None else RezolveState()
    app.router.add_post("/auth/realms/{realm}/protocol/openid-connect/token", _token)
    app.router.add_get("/api/v2/ticketing/ticket-type", _ticket_types)
    app.router.add_get("/api/v2/ticketing/tenant/sc/offers", _offers)
    app.router.add_get("/api/v2/ticketing/user/userinfo", _userinfo)
    app.router.add_post("/api/v2/ticketing/ticket/create/{teamId}/{itemTypeId}", _create_ticket)
    app.router.add_post("/api/v2/ticketing/ticket/list", _list_tickets)
    app.router.add_get("/api/v2/ticketing/user/list", _own_tickets)
    app.router.add_post("/_sandbox/tickets/{objectId}/status", _control_status)
    app.router.add_get("/_sandbox/state", _sandbox)
    app.router.add_post("/_sandbox/reset", _sandbox)
    return app


async def start(state: RezolveState | None = None, host: str = "127.0.0.1", port: int = 0):
    """Start the sandbox; returns (runner, base_url). Stop it with `await runner.cleanup()`."""
    return await start_app(create_app(state), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rezolve.ai ticketing API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--token-ttl", type=float, default=300)
    args = parser.parse_args(argv)

    serve_forever(lambda: start(RezolveState(token_ttl=args.token_ttl), args.host, args.port))


if __name__ == "__main__":
    main()
