"""Local stand-in ("sandbox") for the Socialboards Ticket API v2.

Written from documents only: seed 004 (Create Ticket), ../shared/backends/README.md and the public pages
at developers.socialboards.com (Access tokens v2, Get All Teammates, Get Subcategories by Parent Id,
Custom Field object, List Tickets, Create Reply, Ticket and Reply objects).  It never imports the bot's
own packages.

Emulated
  POST /token   form grant_type=refresh_token&refresh_token&client_id
                -> {access_token, token_type: "bearer", expires_in, refresh_token}.  The refresh token is
                rotated on every exchange (state.refresh_token holds the only valid one); errors are 400
                {"error": "invalid_grant" | "invalid_client" | "unsupported_grant_type" | "invalid_request"}.
  Every other call needs `Authorization: Bearer <access token>` (opaque string, expires after token_ttl).
  GET  /Teammates (also /teammates)           data: [{id, name, email, role}]
  GET  /categories                            data: root categories (?includeHidden=true adds hidden ones)
  GET  /categories/{id}                       data: category
  GET  /categories/{parentId}/subcategories   data: [category]
  GET  /customfields (also /customFields)     data: [custom field]
  POST /tickets                               data: <int ticket id>               (seed 004)
  POST /tickets/list                          data: [ticket]   (ticketIds/take max 50; skip, status, categoryId)
  POST /tickets/{id}/replies                  data: reply
  Every response uses the envelope {"data": ..., "errorCode": -1, "errorText": null}; errorCode -1 = success.

Webhook (backends/README.md): when a ticket's status changes and a webhook URL is set (``webhook_url=``,
``--webhook-url``, env SOCIALBOARDS_SANDBOX_WEBHOOK_URL, or POST /_sandbox/webhook), the sandbox POSTs
  {CommunityName, EventType: "ticket_status_change", TicketId,
   Events: [{InboxLink, PreviousTicketStatus, Ticket}]}
as JSON to that URL, once, and records the outcome in ``state.webhook_deliveries`` ({url, body, status,
error}). No signature or secret header is documented: the secret is the URL's own path, as the receiver
configures it (e.g. http://127.0.0.1:3000/webhooks/socialboards/<secret>).
Control (no auth, not Socialboards'):
  POST /_sandbox/tickets/{id}/status  {status}   change the status as an agent would in the inbox ->
                                                 {ticket, webhook: delivery or null}; 400 unknown status,
                                                 404 unknown ticket; the same status again sends nothing
  POST /_sandbox/webhook  {url | null}           set or clear the webhook URL
  GET  /agent                                    a small page to change statuses by hand

Choices where the documents are silent (all [guess]):
  * errorCode values: 400 validation, 401 auth, 404 unknown ticket/category/route, 429 rate limit,
    500 server error.  Validation and not-found errors on a known route keep HTTP 200 (the docs say every
    response uses the envelope); auth failures are HTTP 401, unknown routes HTTP 404, faults their status.
  * POST /tickets is strict: unknown top-level (or creator) keys are rejected; title/message are required
    non-empty strings; creator with an e-mail-like `email` is required; optional fields may be omitted or
    null; isHtml must be a boolean (default true); categoryId an existing category id; assigneeId a known
    teammate id; cc a list of e-mails; customFields [{id: known int, value: string among possibleValues
    when the field has any}] and every isRequired field present; sentiment one of question, praise,
    suggestion, complaint; tags a list of non-empty strings; attachments [{url: http(s), name}].
    All problems are joined with "; " in errorText.
  * Paths /categories (root list) and /customfields were not seen in the docs (only their page titles).
  * Teammates carry an `id` (uuid; the docs' example omits it, seed 004's assigneeId needs it).
  * Ticket ids count up from 4484636 (the seed's example id).  Reply author.email, when given, must be a
    teammate's e-mail.  Unknown keys in /tickets/list are rejected; from/to/orderBy/source/customFields
    are accepted but do not filter.
  * Ticket statuses: "open" (new tickets), "pending", "completed" (STATUSES; a reply with
    isTicketNeededToBeCompleted completes the ticket and sends the webhook too).  Webhook: one attempt,
    no retries, 5 s timeout; Ticket in the body is the ticket as /tickets/list answers it, after the change.
  * Faults: state.next_faults items "500", "429" (Retry-After: 1), "401", "drop" (connection closed with
    no response), "not_json" (the request is carried out, then answered 200 with an HTML page) and
    "no_data" (carried out, then answered 200 with the success envelope lacking `data`) are consumed one
    per request (control endpoints excluded).  state.advance(seconds)
    moves the sandbox clock (token expiry).

Seeds: client_id "sandbox-client", refresh token "sb-refresh-0"; categories 15597 Sales (subcategories
15600, 15601), 15598 Support (15602), 15599 Archive (hidden); teammates 43b8adc7-755d-2be3-afb1-b6a462631977
(admin) and 0da5a9e8-90ef-403f-873c-e20e4d298558 (read_only_user); custom field 42623 "Shop region".

Run by hand:
  python -m sandbox.socialboards --port 8084
  curl -s -d grant_type=refresh_token -d refresh_token=sb-refresh-0 -d client_id=sandbox-client \
       http://127.0.0.1:8084/token
  curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8084/categories
  curl -s http://127.0.0.1:8084/_sandbox/state ; curl -s -X POST http://127.0.0.1:8084/_sandbox/reset
"""
from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import secrets
import time
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from ._server import recorded, serve_forever, start_app

CLIENT_ID = "sandbox-client"
REFRESH_TOKEN = "sb-refresh-0"
FIRST_TICKET_ID = 4484636
SENTIMENTS = ("question", "praise", "suggestion", "complaint")
TICKET_KEYS = {"title", "message", "isHtml", "creator", "assigneeId", "categoryId", "cc", "customFields",
               "sentiment", "sourceName", "tags", "attachments"}
CREATOR_KEYS = {"name", "email", "image", "phoneNumber"}
LIST_KEYS = {"categoryId", "customFields", "from", "orderBy", "skip", "source", "status", "take", "ticketIds", "to"}
STATUSES = ("open", "pending", "completed")  # [guess] the docs name no list; "open" and "completed" are seen
WEBHOOK_ENV = "SOCIALBOARDS_SANDBOX_WEBHOOK_URL"
AGENT_PAGE = Path(__file__).with_name("socialboards_agent.html")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _category(cid, name, parent=None, hidden=False):
    return {"autoArchive": False, "canBeChosen": True, "isHidden": hidden, "isMuted": False,
            "parentId": parent, "id": cid, "name": name}


SEED_CATEGORIES = [_category(15597, "Sales"), _category(15598, "Support"), _category(15599, "Archive", hidden=True),
                   _category(15600, "New cars", 15597), _category(15601, "Used cars", 15597),
                   _category(15602, "Technical", 15598)]
SEED_TEAMMATES = [
    {"id": "43b8adc7-755d-2be3-afb1-b6a462631977", "name": "Robert Baker", "email": "robert.baker@example.com",
     "role": "admin"},
    {"id": "0da5a9e8-90ef-403f-873c-e20e4d298558", "name": "William Shakespeare",
     "email": "william.shakespeare@example.com", "role": "read_only_user"},
]
SEED_CUSTOM_FIELDS = [
    {"assignedCategoryIds": [], "defaultValue": None, "id": 42623, "isHidden": False, "isRequired": False,
     "isSensitiveData": False, "name": "Shop region", "order": 1, "placeholder": "region",
     "possibleValues": [{"order": 1, "value": "Østfold"}, {"order": 2, "value": "Akershus"},
                        {"order": 3, "value": "Oslo"}],
     "type": "region", "value": None},
]


class SocialboardsState:
    """In-memory community. Constructor args are configuration; reset() restores seeds and clears runtime."""

    def __init__(self, *, client_id: str = CLIENT_ID, refresh_token: str = REFRESH_TOKEN, token_ttl: float = 3599,
                 community: str = "sandbox", categories: list | None = None, teammates: list | None = None,
                 custom_fields: list | None = None, webhook_url: str | None = None):
        self.client_id = client_id
        self.webhook_url = webhook_url  # where ticket_status_change goes; None: nowhere
        self.initial_refresh_token = refresh_token
        self.token_ttl = token_ttl
        self.community = community
        self._seeds = (categories or SEED_CATEGORIES, teammates or SEED_TEAMMATES, custom_fields or SEED_CUSTOM_FIELDS)
        self.reset()

    def reset(self) -> None:
        self.categories, self.teammates, self.custom_fields = copy.deepcopy(self._seeds)
        self.refresh_token = self.initial_refresh_token  # the only refresh token that currently works
        self.access_tokens: dict[str, float] = {}        # token -> expiry (sandbox clock)
        self.tickets: dict[int, dict] = {}
        self.replies: dict[int, list[dict]] = {}
        self.requests: list[dict] = []
        self.next_faults: list[str] = []
        self.clock_offset = 0.0
        self.next_ticket_id = FIRST_TICKET_ID
        self.next_reply_id = 156372820
        self.webhook_deliveries: list[dict] = []  # {url, body, status (0: no answer), error}

    def inbox_link(self, ticket_id: int) -> str:
        return f"https://inbox.socialboards.com/{self.community}/tickets?ticketId={ticket_id}"

    def status_change_body(self, ticket: dict, previous: str) -> dict:
        """The documented webhook body for one ticket whose status went from ``previous`` to its own."""
        return {"CommunityName": self.community, "EventType": "ticket_status_change", "TicketId": ticket["id"],
                "Events": [{"InboxLink": self.inbox_link(ticket["id"]), "PreviousTicketStatus": previous,
                            "Ticket": copy.deepcopy(ticket)}]}

    async def set_status(self, ticket_id: int, status: str) -> dict | None:
        """Change a ticket's status as an agent in the inbox does; sends the webhook when one is set.
        Returns the delivery (or None: no change, or no webhook URL). KeyError / ValueError for bad input."""
        ticket = self.tickets[ticket_id]
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        previous = ticket["status"]
        if status == previous:
            return None
        ticket["status"] = status
        return await self.send_webhook(self.status_change_body(ticket, previous))

    async def send_webhook(self, body: dict) -> dict | None:
        if not self.webhook_url:
            return None
        delivery = {"url": self.webhook_url, "body": body, "status": 0, "error": None}
        self.webhook_deliveries.append(delivery)
        try:
            async with aiohttp.ClientSession() as http, http.post(
                    self.webhook_url, json=body, timeout=aiohttp.ClientTimeout(total=5)) as r:
                delivery["status"] = r.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            delivery["error"] = f"{type(exc).__name__}: {exc}"
        return delivery

    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def category(self, cid) -> dict | None:
        return next((c for c in self.categories if c["id"] == cid), None)

    def dump(self) -> dict:
        keys = ("client_id", "refresh_token", "token_ttl", "community", "categories", "teammates",
                "custom_fields", "access_tokens", "requests", "next_faults", "clock_offset", "webhook_url",
                "webhook_deliveries")
        out = {k: getattr(self, k) for k in keys}
        out["tickets"] = {str(k): v for k, v in self.tickets.items()}
        out["replies"] = {str(k): v for k, v in self.replies.items()}
        return out


def ok(data, status: int = 200) -> web.Response:
    return web.json_response({"data": data, "errorCode": -1, "errorText": None}, status=status)


def fail(code: int, text: str, status: int = 200, headers=None) -> web.Response:
    return web.json_response({"data": None, "errorCode": code, "errorText": text}, status=status, headers=headers)


def _iso_now(state: SocialboardsState) -> str:
    return datetime.fromtimestamp(state.now(), timezone.utc).isoformat()


@web.middleware
async def _middleware(request: web.Request, handler):
    state: SocialboardsState = request.app["state"]
    if request.path.startswith("/_sandbox/") or request.path == "/agent":  # the sandbox's own, not Socialboards'
        return await handler(request)
    raw = await request.read()
    state.requests.append(recorded(request, raw))
    after = None  # a fault that replaces the answer once the work is done
    if state.next_faults:
        fault = state.next_faults.pop(0)
        if fault in ("not_json", "no_data"):
            after = fault
        elif fault == "drop":
            request.transport.close()
            return web.Response(status=500)  # never delivered: the connection is already closed
        elif fault == "429":
            return fail(429, "Too many requests", 429, {"Retry-After": "1"})
        elif fault == "401":
            return fail(401, "Unauthorized", 401)
        else:
            return fail(500, f"Injected fault {fault!r}", 500)
    if request.path != "/token":
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        expiry = state.access_tokens.get(token)
        if expiry is None or expiry <= state.now():
            return fail(401, "Authorization has been denied for this request.", 401)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return fail(exc.status, f"{exc.reason}: {request.method} {request.path}", exc.status)
    if after == "not_json":
        return web.Response(text="<html><body>Service temporarily unavailable</body></html>", content_type="text/html")
    if after == "no_data":
        return web.json_response({"errorCode": -1, "errorText": None})
    return response


async def _json_body(request: web.Request):
    try:
        return json.loads(await request.text())
    except ValueError:
        return None


# --- handlers --------------------------------------------------------------------------------------

async def _token(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    form = await request.post()
    grant = form.get("grant_type")
    if not grant or not form.get("refresh_token") or not form.get("client_id"):
        return web.json_response({"error": "invalid_request"}, status=400)
    if grant != "refresh_token":
        return web.json_response({"error": "unsupported_grant_type"}, status=400)
    if form["client_id"] != state.client_id:
        return web.json_response({"error": "invalid_client"}, status=400)
    if form["refresh_token"] != state.refresh_token:
        return web.json_response({"error": "invalid_grant"}, status=400)
    state.refresh_token = "sb-refresh-" + secrets.token_urlsafe(24)
    access = "sb-access-" + secrets.token_urlsafe(32)
    state.access_tokens[access] = state.now() + state.token_ttl
    return web.json_response({"access_token": access, "token_type": "bearer", "expires_in": int(state.token_ttl),
                              "refresh_token": state.refresh_token})


async def _teammates(request: web.Request) -> web.Response:
    return ok(request.app["state"].teammates)


def _visible(request: web.Request, cats: list[dict]) -> list[dict]:
    if request.query.get("includeHidden", "false").lower() == "true":
        return cats
    return [c for c in cats if not c["isHidden"]]


def _int_or_none(text: str):
    return int(text) if text.lstrip("-").isdigit() else None


async def _root_categories(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    return ok(_visible(request, [c for c in state.categories if c["parentId"] is None]))


async def _category_by_id(request: web.Request) -> web.Response:
    category = request.app["state"].category(_int_or_none(request.match_info["id"]))
    return ok(category) if category else fail(404, "Category not found")


async def _subcategories(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    parent = _int_or_none(request.match_info["parentId"])
    if state.category(parent) is None:
        return fail(404, "Category not found")
    return ok(_visible(request, [c for c in state.categories if c["parentId"] == parent]))


async def _custom_fields(request: web.Request) -> web.Response:
    return ok(request.app["state"].custom_fields)


def _is_email(value) -> bool:
    return isinstance(value, str) and bool(EMAIL_RE.match(value))


def _opt_str(body: dict, key: str, errors: list[str]) -> None:
    if body.get(key) is not None and not isinstance(body[key], str):
        errors.append(f"{key} must be a string")


def _validate_ticket(state: SocialboardsState, body: dict) -> list[str]:
    errors = [f"Unknown field '{k}'" for k in body if k not in TICKET_KEYS]
    for key in ("title", "message"):
        if not isinstance(body.get(key), str) or not body[key].strip():
            errors.append(f"{key} is required and must be a non-empty string")
    if body.get("isHtml") is not None and not isinstance(body["isHtml"], bool):
        errors.append("isHtml must be a boolean")
    creator = body.get("creator")
    if not isinstance(creator, dict):
        errors.append("creator is required and must be an object")
    else:
        errors += [f"Unknown creator field '{k}'" for k in creator if k not in CREATOR_KEYS]
        if not _is_email(creator.get("email")):
            errors.append("creator.email is required and must be a valid e-mail address")
        for key in ("name", "image", "phoneNumber"):
            _opt_str(creator, key, errors)
    assignee = body.get("assigneeId")
    if assignee is not None and not any(t["id"] == assignee for t in state.teammates):
        errors.append(f"assigneeId {assignee!r} is not a teammate")
    category = body.get("categoryId")
    if category is not None and (isinstance(category, bool) or not isinstance(category, int)
                                 or state.category(category) is None):
        errors.append(f"categoryId {category!r} does not exist")
    cc = body.get("cc")
    if cc is not None and (not isinstance(cc, list) or not all(_is_email(e) for e in cc)):
        errors.append("cc must be a list of e-mail addresses")
    sentiment = body.get("sentiment")
    if sentiment is not None and sentiment not in SENTIMENTS:
        errors.append(f"sentiment must be one of {', '.join(SENTIMENTS)}")
    _opt_str(body, "sourceName", errors)
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags)):
        errors.append("tags must be a list of non-empty strings")
    attachments = body.get("attachments")
    if attachments is not None and (not isinstance(attachments, list) or not all(
            isinstance(a, dict) and set(a) <= {"url", "name"} and isinstance(a.get("name"), str)
            and isinstance(a.get("url"), str) and a["url"].startswith(("http://", "https://")) for a in attachments)):
        errors.append("attachments must be a list of {url, name} with http(s) urls")
    errors += _validate_custom_fields(state, body.get("customFields"))
    return errors


def _validate_custom_fields(state: SocialboardsState, values) -> list[str]:
    if values is None:
        values = []
    if not isinstance(values, list) or not all(isinstance(v, dict) and set(v) == {"id", "value"} for v in values):
        return ["customFields must be a list of {id, value}"]
    errors, given = [], set()
    defs = {f["id"]: f for f in state.custom_fields}
    for item in values:
        fid, value = item["id"], item["value"]
        field = defs.get(fid) if isinstance(fid, int) and not isinstance(fid, bool) else None
        if field is None:
            errors.append(f"custom field {fid!r} does not exist")
            continue
        given.add(fid)
        allowed = [p["value"] for p in field["possibleValues"]]
        if not isinstance(value, str) or (allowed and value not in allowed):
            among = f" among {', '.join(allowed)}" if allowed else ""
            errors.append(f"custom field {fid} value must be a string{among}")
    errors += [f"custom field {f['id']} ({f['name']}) is required" for f in state.custom_fields
               if f["isRequired"] and f["id"] not in given]
    return errors


async def _create_ticket(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    body = await _json_body(request)
    if not isinstance(body, dict):
        return fail(400, "Request body must be a JSON object")
    if errors := _validate_ticket(state, body):
        return fail(400, "; ".join(errors))
    ticket_id = state.next_ticket_id
    state.next_ticket_id += 1
    creator, now = body["creator"], _iso_now(state)
    html = body.get("isHtml") is not False
    defs = {f["id"]: f for f in state.custom_fields}
    state.tickets[ticket_id] = {
        "id": ticket_id, "title": body["title"], "message": body["message"],
        "htmlMessage": body["message"] if html else f"<div>{body['message']}</div>",
        "author": {"customIdentifier": None, "email": creator["email"], "id": str(uuid.uuid4()),
                   "image": creator.get("image"), "isBot": False, "name": creator.get("name"), "status": "client"},
        "assigneeId": body.get("assigneeId"), "category": state.category(body.get("categoryId")),
        "cc": body.get("cc") or [], "creationTime": now,
        "customFields": [{**defs[c["id"]], "value": c["value"]} for c in body.get("customFields") or []],
        "lastThreadElementCreationTime": now, "lockedBy": None, "originalLink": None,
        "properties": {"isAnonymized": False, "isMuted": False, "hasAttachments": bool(body.get("attachments")),
                       "hasDraft": False, "isAssignedToBot": False, "isDeleted": False, "isExpired": False,
                       "isHidden": False, "isLocked": False, "isSpam": False, "isSensitive": False},
        "replyCount": 0, "isMuted": False, "sentiment": body.get("sentiment"), "source": "api",
        "detailedSource": "api", "sourceName": body.get("sourceName"), "status": "open",
        "tags": body.get("tags") or [],
        "attachments": [{"isContentPart": False, **a} for a in body.get("attachments") or []]}
    state.replies[ticket_id] = []
    return ok(ticket_id)


async def _list_tickets(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    body = await _json_body(request)
    if not isinstance(body, dict):
        return fail(400, "Request body must be a JSON object")
    if unknown := [k for k in body if k not in LIST_KEYS]:
        return fail(400, f"Unknown field(s): {', '.join(unknown)}")
    ids, take, skip = body.get("ticketIds"), body.get("take", 25), body.get("skip", 0)
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
        return fail(400, "ticketIds must be a list of integers")
    if ids is not None and len(ids) > 50:
        return fail(400, "ticketIds accepts at most 50 ids")
    if not isinstance(take, int) or not isinstance(skip, int) or not 0 < take <= 50 or skip < 0:
        return fail(400, "take must be 1..50 and skip >= 0")
    tickets = list(state.tickets.values())
    if ids is not None:
        tickets = [t for t in tickets if t["id"] in ids]
    if body.get("status"):
        tickets = [t for t in tickets if t["status"] == body["status"]]
    if "categoryId" in body:
        tickets = [t for t in tickets if (t["category"] or {}).get("id") == body["categoryId"]]
    return ok(tickets[skip:skip + take])


async def _create_reply(request: web.Request) -> web.Response:
    state: SocialboardsState = request.app["state"]
    ticket = state.tickets.get(_int_or_none(request.match_info["ticketId"]))
    if ticket is None:
        return fail(404, "Ticket not found")
    body = await _json_body(request)
    if not isinstance(body, dict):
        return fail(400, "Request body must be a JSON object")
    if not isinstance(body.get("message"), str) or not body["message"].strip():
        return fail(400, "message is required and must be a non-empty string")
    email = (body.get("author") or {}).get("email")
    teammate = next((t for t in state.teammates if t["email"] == email), None)
    if email is not None and teammate is None:
        return fail(400, f"author.email {email!r} is not a teammate")
    reply_id = state.next_reply_id
    state.next_reply_id += 1
    author = teammate or state.teammates[0]
    reply = {"attachments": [{"isContentPart": False, **a} for a in body.get("attachments") or []],
             "author": {"customIdentifier": None, "id": author["id"], "name": author["name"], "image": "",
                        "email": author["email"], "status": "team", "isBot": False},
             "ccEmails": [], "creationTime": _iso_now(state), "htmlMessage": body["message"], "id": reply_id,
             "level": 0 if body.get("parentReplyId") is None else 1, "message": body["message"],
             "parentReplyId": body.get("parentReplyId"),
             "properties": {"isByTeam": True, "isDraft": bool(body.get("isDraft")), "isHidden": False},
             "tags": [], "ticketId": ticket["id"], "toEmails": []}
    state.replies[ticket["id"]].append(reply)
    ticket["replyCount"] += 1
    if body.get("isTicketNeededToBeCompleted"):
        await state.set_status(ticket["id"], "completed")
    return ok(reply)


async def _sandbox(request: web.Request) -> web.Response:  # GET /_sandbox/state, POST /_sandbox/reset
    if request.method == "POST":
        request.app["state"].reset()
        return web.json_response({"ok": True})
    return web.json_response(request.app["state"].dump())


async def _control_status(request: web.Request) -> web.Response:  # POST /_sandbox/tickets/{id}/status
    state: SocialboardsState = request.app["state"]
    body = await _json_body(request)
    ticket_id = _int_or_none(request.match_info["ticketId"])
    if ticket_id not in state.tickets:
        return web.json_response({"error": f"no ticket {request.match_info['ticketId']}"}, status=404)
    try:
        delivery = await state.set_status(ticket_id, (body or {}).get("status") if isinstance(body, dict) else None)
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"ticket": state.tickets[ticket_id], "webhook": delivery})


async def _control_webhook(request: web.Request) -> web.Response:  # POST /_sandbox/webhook {url | null}
    body = await _json_body(request)
    url = body.get("url") if isinstance(body, dict) else None
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        return web.json_response({"error": "url must be an http(s) URL or null"}, status=400)
    request.app["state"].webhook_url = url
    return web.json_response({"url": url})


async def _agent_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(AGENT_PAGE, headers={"Cache-Control": "no-cache"})


def create_app(state: SocialboardsState | None = None) -> web.Application:
    app = web.Application(middlewares=[_middleware])
    with warnings.catch_warnings():  # the documented interface is app["state"]
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["state"] = state if state is not None else SocialboardsState()
    r = app.router
    r.add_post("/token", _token)
    r.add_get("/Teammates", _teammates)
    r.add_get("/teammates", _teammates)
    r.add_get("/categories", _root_categories)
    r.add_get("/categories/{id}", _category_by_id)
    r.add_get("/categories/{parentId}/subcategories", _subcategories)
    r.add_get("/customfields", _custom_fields)
    r.add_get("/customFields", _custom_fields)
    r.add_post("/tickets", _create_ticket)
    r.add_post("/tickets/list", _list_tickets)
    r.add_post("/tickets/{ticketId}/replies", _create_reply)
    r.add_get("/_sandbox/state", _sandbox)
    r.add_post("/_sandbox/reset", _sandbox)
    r.add_post("/_sandbox/tickets/{ticketId}/status", _control_status)
    r.add_post("/_sandbox/webhook", _control_webhook)
    r.add_get("/agent", _agent_page)
    return app


async def start(state: SocialboardsState | None = None, host: str = "127.0.0.1", port: int = 0):
    """Start the sandbox; returns (runner, base_url). Stop it with `await runner.cleanup()`."""
    return await start_app(create_app(state), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Socialboards Ticket API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--token-ttl", type=float, default=3599)
    parser.add_argument("--refresh-token", default=REFRESH_TOKEN)
    parser.add_argument("--webhook-url", default=os.environ.get(WEBHOOK_ENV) or None,
                        help=f"where to POST ticket_status_change (default: ${WEBHOOK_ENV}, else nowhere)")
    args = parser.parse_args(argv)

    state = SocialboardsState(token_ttl=args.token_ttl, refresh_token=args.refresh_token,
                              webhook_url=args.webhook_url)
    serve_forever(lambda: start(state, args.host, args.port))


if __name__ == "__main__":
    main()
