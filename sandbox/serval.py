"""Local stand-in ("sandbox") of the Serval ticketing public API, for tests and manual trials.

Written from the documents only, never from the bot's code (a fake sharing the client's models would
agree with its mistakes): ``serval_openapi.yaml`` here is a verbatim copy of the official spec from
Serval's Go SDK (github.com/ServalHQ/serval-go, Apache-2.0); ``_extend`` adds what the newer live docs
have (requesterUserId, dueDate, waitUntil, workflowRelationship, ticketRelationships, translations,
more ticket types, the microsoftTeamsDm sync target, the slackChannel target, accountedForMessageIds).
Request bodies are validated against that, unknown fields included, plus the semantic checks a real
server would do. Errors are Connect-style ``{"code", "message"}``.

Serval endpoints: POST /v2/auth/token; POST|GET /v2/tickets; POST /v2/tickets/search; GET|PUT /v2/tickets/{id};
POST /v2/tickets/{ticket_id}/connect; GET /v2/tickets/{ticket_id}/external-tickets; GET|POST /v2/users;
GET /v2/teams; GET /v2/statuses|priorities|labels?teamId=; GET /v2/teams/{team_id}/custom-field-options;
GET|PUT /v2/tickets/{ticket_id}/custom-field-values; POST|GET /v2/tickets/{ticket_id}/messages (the last three
from the live docs transcribed in shared/serval/docs/). Control (no auth): GET /_sandbox/state,
POST /_sandbox/faults (see ``Fault``), POST /_sandbox/reset, POST /_sandbox/users.
Agent panel (no auth; what an agent does in Serval's own app): GET /agent (the page), GET /_sandbox/agent
(tickets newest first with ``updatedAt`` and ``teamName``, statuses per team in group order, priorities, users),
POST /_sandbox/agent/tickets/{id or friendly id} ``{statusId?, assignedToUserId? ("" or null: unassign),
priorityId?}`` -> ``{"data": ticket}`` as GET /v2/tickets/{id} then answers it. The documented Ticket has no
``updatedAt``: the sandbox keeps the time of each change aside (``state.updated_at``), never in the API.

By hand::

    python -m sandbox.serval --port 8081 --token test-token --client-id X --client-secret Y --latency-ms 50
    curl -H 'Authorization: Bearer test-token' http://127.0.0.1:8081/v2/users
    curl -X POST http://127.0.0.1:8081/_sandbox/faults -d '{"POST /v2/tickets": {"next_n": ["lost"]}}'

In tests: ``runner, url = await start(state := ServalState())``, then look at ``state.tickets``,
``state.requests`` (and ``state.peak_in_flight``: most requests per endpoint answered at once),
set ``state.faults[...] = Fault(...)``; finally ``await runner.cleanup()``.
``state.listeners`` are called with ``(event, data)`` after each change (ticket_created, ...);
``ServalState(db_path=...)`` (``--db PATH``) keeps the data in a SQLite file across restarts.
Each logged request has ``at`` (``time.monotonic()`` when it arrived) and ``answered_at`` (when its answer
was ready). One endpoint made slow: ``state.delay("POST /v2/tickets/search", 2.0)`` (a ``Fault`` latency).
Custom fields: ``state.add_custom_field(team_id, key, name, data_type, options=[...])``;
``state.seed_custom_fields()`` adds the demo's (the command line and the demo do).

Guesses where the documents are silent: the slackChannel target's inner field (``slack_channel_field``,
default integrationId), microsoftTeamsDm shaped like slackDm, unknown team/user ids in a body ->
invalid_argument, nextPageToken omitted on the last page, escalationLevel HUMAN unless aiActive; the API
client acts as its own user (``api_client_user_id``, not listed in GET /v2/users): a ticket created without
createdByUserId is created by it, and so requested by it (seed 000: requesterUserId defaults to
createdByUserId); search's page size is the list's (default 2,000, maximum 5,000), createdAfter inclusive,
createdBefore exclusive, results oldest first. Custom fields: ``dataType`` names (DATA_TYPE_STRING, _NUMBER,
_DATE, _BOOLEAN, _ENUM; the docs show only DATA_TYPE_UNSPECIFIED, which takes any value), values by type (a
JSON number, "YYYY-MM-DD", true/false, an enum option's ``value``, a string), ``null`` clearing a value, an
"empty" ``fieldValue`` naming the field without ``value``, PUT answering the values it set; a message without
``authorUserId`` is the API client's, ``triggerHelpAgent`` defaults to true as documented and is kept aside
(``state.message_meta``), never answered.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import random
import re
import sqlite3
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import yaml
from aiohttp import web

from ._server import serve_forever, start_app
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).with_name("serval_openapi.yaml")
_URN = "urn:serval-openapi"
_S = "#/components/schemas/"

# Connect protocol: error code -> HTTP status, and the reverse for injected faults.
CODE_STATUS = {
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504, "not_found": 404,
    "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429, "failed_precondition": 400,
    "aborted": 409, "out_of_range": 400, "unimplemented": 501, "internal": 500, "unavailable": 503,
    "data_loss": 500, "unauthenticated": 401,
}
STATUS_CODE = {
    400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied", 404: "not_found",
    405: "unimplemented", 409: "already_exists", 429: "resource_exhausted", 499: "canceled", 500: "internal",
    501: "unimplemented", 502: "unavailable", 503: "unavailable", 504: "deadline_exceeded",
}
# Slack externalTicketId: "<channelId>:<threadTs>", e.g. "C9DDYQ1B4:1779146751.061339".
SLACK_THREAD_ID = re.compile(r"[CGD][A-Z0-9]{2,}:\d{10}\.\d{6}")
SLACK_TARGETS = ("slackChannel", "slackDm")


class ApiError(Exception):
    """An error answered in Connect format."""

    def __init__(self, code: str, message: str, status: int | None = None, headers: dict | None = None):
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or CODE_STATUS.get(code, 500)
        self.headers = headers or {}

    def response(self) -> web.Response:
        return web.json_response({"code": self.code, "message": self.message}, status=self.status,
                                 headers=self.headers)


def _bad(message: str) -> ApiError:
    return ApiError("invalid_argument", message)


# ---------------------------------------------------------------------------------------------------
# Schemas: OpenAPI (nullable, oneOf beside additionalProperties) -> JSON Schema 2020-12, plus newer fields.

def _to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_json_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _to_json_schema(v) for k, v in node.items() if k != "nullable"}
    if "oneOf" in out and out.get("additionalProperties") is False:
        # A protobuf oneof: `additionalProperties: false` must hold inside each branch, not beside oneOf
        # (there it would forbid every key). Each branch then accepts exactly its own key.
        del out["additionalProperties"]
        for branch in out["oneOf"]:
            branch["properties"] = {**out.get("properties", {}), **branch.get("properties", {})}
            branch["additionalProperties"] = False
    if node.get("nullable") is True:
        if "$ref" in out:
            out["anyOf"] = [{"$ref": out.pop("$ref")}, {"type": "null"}]
        elif isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
    return out


def _ref(name: str) -> dict:
    return {"$ref": _S + name}


def _one_key(key: str, inner: dict) -> dict:
    return {"title": key, "properties": {key: inner}, "required": [key], "additionalProperties": False}


def _extend(schemas: dict, paths: dict, slack_channel_field: str) -> None:
    """Add what the live docs (seeds 000-002, serval/README.md) have and the spec lacks."""
    def inline(path: str, method: str) -> dict:
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    date = {"type": ["object", "null"], "title": "Date", "additionalProperties": False,
            "properties": {k: {"type": "integer"} for k in ("year", "month", "day")}}
    translations = {"type": ["object", "null"], "additionalProperties": {"type": "string"}}
    ids = {"type": "array", "items": {"type": "string"}}
    maybe_str = {"type": ["string", "null"]}
    schemas["svhelp.models.TicketType"]["enum"] += [
        "TICKET_TYPE_CONVERSATION", "TICKET_TYPE_JOURNEY", "TICKET_TYPE_JOURNEY_CONVERSATION"]
    schemas["svhelp.publicapi.CreateTicketRequest"]["properties"].update(
        requesterUserId=maybe_str, dueDate=date, nameTranslations=translations,
        descriptionTranslations=translations,
        waitUntil={"anyOf": [_ref("google.protobuf.Timestamp"), {"type": "null"}]},
        workflowRelationship={
            "type": ["object", "null"], "additionalProperties": False, "properties": {
                "workflowId": {"type": "string"},
                "relationshipType": {"type": "string", "pattern": "^WORKFLOW_RELATIONSHIP_TYPE_[A-Z_]+$"},
                "initialInputData": {"type": ["object", "null"]},
                "allowAssigneeRetry": {"type": ["boolean", "null"]},
                "pollingIntervalMs": {"type": ["integer", "string", "null"]},
                "timeoutMs": {"type": ["integer", "string", "null"]}}},
        ticketRelationships={"type": "array", "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "ticketId": {"type": "string"},
                "relationshipType": {"type": "string", "pattern": "^TICKET_RELATIONSHIP_TYPE_[A-Z_]+$"}}}})
    schemas["svhelp.pubapimodels.ChannelSyncTarget"]["oneOf"].append(_one_key("microsoftTeamsDm", {
        "type": "object", "additionalProperties": False,
        "properties": {"targetUserType": _ref("svhelp.pubapimodels.ChannelSyncTargetUserType")}}))
    schemas["svhelp.pubapimodels.ChannelTarget"]["oneOf"].append(_one_key("slackChannel", {
        "type": "object", "additionalProperties": False, "required": [slack_channel_field],
        "properties": {slack_channel_field: {"type": "string"}}}))
    connect = inline("/v2/tickets/{ticket_id}/connect", "post")
    connect["properties"]["accountedForMessageIds"] = ids
    schemas["sandbox.ConnectTicketToExternalTicketRequest"] = connect
    update = inline("/v2/tickets/{id}", "put")
    update["properties"]["dueDate"] = date  # docs/search-and-list-tickets.yaml: the newest Update Ticket
    schemas["sandbox.UpdateTicketRequest"] = update
    # docs/custom-fields.yaml and docs/ticket-messages.yaml (not in the spec); closed like every spec schema.
    schemas["sandbox.SetTicketCustomFieldValuesRequest"] = {
        "type": "object", "title": "SetTicketCustomFieldValuesRequest", "additionalProperties": False,
        "properties": {"fieldValues": {"type": ["array", "null"], "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "fieldId": maybe_str, "fieldKey": maybe_str, "value": {},
                "pinned": {"type": ["boolean", "null"]}}}}}}
    schemas["sandbox.CreateTicketMessageRequest"] = {
        "type": "object", "title": "CreateTicketMessageRequest", "additionalProperties": False,
        "properties": {"message": maybe_str, "authorUserId": maybe_str,
                       "triggerHelpAgent": {"type": ["boolean", "null"]}}}
    schemas["svhelp.pubapimodels.Ticket"]["properties"].update(
        dueDate=date, isOverdue={"type": "boolean"}, parentTicketId=maybe_str,
        conversationThreadParentTicketId=maybe_str, nameTranslations=translations,
        descriptionTranslations=translations,
        **{k: ids for k in ("childTicketIds", "linkedTicketIds", "duplicateTicketIds", "dependsOnTicketIds",
                            "conversationThreadTicketIds")})


_FORMATS = FormatChecker(formats=())
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


@_FORMATS.checks("date-time", raises=ValueError)
def _is_rfc3339(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    dt.datetime.fromisoformat(re.sub(r"\.\d+", "", value))  # range check: month 13 etc. raise
    return True


@functools.lru_cache(maxsize=None)
def _schemas(slack_channel_field: str) -> tuple[Registry, dict]:
    raw = yaml.load(SPEC_PATH.read_text("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    paths = {p: raw["paths"][p] for p in ("/v2/tickets/{ticket_id}/connect", "/v2/tickets/{id}")}
    doc = _to_json_schema({"components": raw["components"], "paths": paths})
    _extend(doc["components"]["schemas"], doc["paths"], slack_channel_field)
    registry = Registry().with_resource(_URN, Resource(contents=doc, specification=DRAFT202012))
    return registry, doc["components"]["schemas"]


@functools.lru_cache(maxsize=None)
def schema_validator(name: str, slack_channel_field: str = "integrationId") -> Draft202012Validator:
    """A validator for components/schemas/<name> of the extended spec (also sandbox.* request schemas)."""
    registry, schemas = _schemas(slack_channel_field)
    title = schemas[name].get("title", name)
    return Draft202012Validator({"$ref": _URN + _S + name, "title": title}, registry=registry,
                                format_checker=_FORMATS)


def _explain(err: ValidationError) -> tuple[str, str]:
    """(JSON path, reason) of the most useful part of a validation error."""
    while err.validator in ("oneOf", "anyOf") and err.context:
        branches = list(err.validator_value)
        keys = [k for b in branches for k in b.get("required", ())]
        inst = err.instance
        if keys and isinstance(inst, dict):
            if len(inst) != 1 or next(iter(inst)) not in keys:
                return err.json_path, f"must have exactly one of {keys}, got {sorted(inst)}"
            index = next(i for i, b in enumerate(branches) if next(iter(inst)) in b.get("required", ()))
            inner = [e for e in err.context if e.relative_schema_path[0] == index]
        else:  # nullable: {anyOf: [X, null]}; the null branch's complaint is noise
            inner = [e for e in err.context if not (e.validator == "type" and e.validator_value == "null")]
        if not inner:
            break
        err = best_match(inner)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        extra = [k for k in err.instance if k not in err.schema.get("properties", {})]
        return err.json_path, ", ".join(repr(k) for k in extra) + " unexpected"
    return err.json_path, err.message


# ---------------------------------------------------------------------------------------------------
# State

@dataclass
class Fault:
    """Misbehaviour for one endpoint key ("POST /v2/tickets", "GET /v2/users", "*", ...).

    Rates are probabilities (0..1) drawn from the state's seeded RNG. `next_n` scripts the next
    requests exactly, one outcome each: ok, error, 429, drop (close before any work), lost (do the
    work, then close without answering), slow (sleep `slow_latency` more), not_json (do the work,
    then answer 200 with an HTML page, as a proxy might), no_data (do the work, then answer 200 with
    `{}`: JSON without `data`). `latency` is added to every matching request; with `latency_max`
    above it, each request's is drawn between the two (from the state's seeded RNG)."""
    error_rate: float = 0.0
    status: int = 503
    latency: float = 0.0
    latency_max: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: int = 1
    drop_rate: float = 0.0
    lost_response_rate: float = 0.0
    slow_latency: float = 2.0
    next_n: list[str] = field(default_factory=list)
    OUTCOMES: ClassVar[tuple[str, ...]] = ("ok", "error", "429", "drop", "lost", "slow", "not_json", "no_data")

    def __post_init__(self) -> None:
        self.next_n = list(self.next_n)
        if set(self.next_n) - set(self.OUTCOMES):
            raise ValueError(f"next_n {self.next_n}: each must be one of {list(self.OUTCOMES)}")

    def decide(self, rng: random.Random) -> str:
        if self.next_n:
            return self.next_n.pop(0)
        for outcome, rate in (("drop", self.drop_rate), ("429", self.rate_limit_rate),
                              ("error", self.error_rate), ("lost", self.lost_response_rate)):
            if rate and rng.random() < rate:
                return outcome
        return "ok"

    def delay(self, rng: random.Random) -> float:
        """This request's added latency."""
        return rng.uniform(self.latency, self.latency_max) if self.latency_max > self.latency else self.latency


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def _page(items: list, query, default: int = 1000, maximum: int = 1000) -> dict:
    """pageSize (default and maximum 1000 unless the endpoint documents others) / pageToken paging;
    nextPageToken only when more remain. `query`: the query string or a search body."""
    try:
        size = query.get("pageSize") or 0
        if isinstance(size, bool) or not isinstance(size, (int, str)):
            raise ValueError
        size = int(size)
    except ValueError:
        raise _bad("pageSize must be an integer") from None
    if size < 0:
        raise _bad("pageSize must not be negative")
    size = min(size or default, maximum)
    start, token = 0, query.get("pageToken") or ""
    if not isinstance(token, str):
        raise _bad("pageToken must be a string")
    if token:
        try:
            prefix, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
            start = int(offset)
            if prefix != "offset" or start < 0:
                raise ValueError
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise _bad(f"invalid pageToken {token!r}") from None
    out: dict = {"data": items[start:start + size]}
    if start + size < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
    return out


# GET /v2/tickets and POST /v2/tickets/search pages: the newest docs give the list default 2,000 and maximum
# 5,000; search documents neither [guess: the same].
TICKET_PAGE, TICKET_PAGE_MAX = 2000, 5000
SEARCH_LISTS = ("teamIds", "requesterUserIds", "assignedToUserIds", "statusIds", "escalationLevels")
SEARCH_KEYS = {*SEARCH_LISTS, "createdAfter", "createdBefore", "pageSize", "pageToken"}


def _instant(value: str, name: str) -> dt.datetime:
    """An RFC 3339 timestamp as an aware datetime; invalid_argument otherwise."""
    try:
        if not isinstance(value, str) or not _RFC3339.fullmatch(value):
            raise ValueError
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _bad(f"{name} {value!r} is not an RFC 3339 timestamp") from None


def _created_at(ticket: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(ticket["createdAt"].replace("Z", "+00:00"))


def _calendar_date(due: dict) -> dt.date:
    try:
        return dt.date(due["year"], due["month"], due["day"])
    except (KeyError, TypeError, ValueError):
        raise _bad(f"dueDate {json.dumps(due)} is not a calendar date") from None


# Custom field data types [guess: the docs show only DATA_TYPE_UNSPECIFIED] and the JSON values they take.
FIELD_TYPES = ("DATA_TYPE_UNSPECIFIED", "DATA_TYPE_STRING", "DATA_TYPE_NUMBER", "DATA_TYPE_DATE",
               "DATA_TYPE_BOOLEAN", "DATA_TYPE_ENUM")
# The demo's custom fields (``seed_custom_fields``): every type, options listed out of display order.
DEMO_CUSTOM_FIELDS: dict[str, list[dict]] = {
    "team-it": [
        {"key": "custom-device", "name": "Device", "data_type": "DATA_TYPE_ENUM",
         "description": "Which device is affected?",
         "options": [("laptop", "Laptop", 1), ("monitor", "Monitor", 3), ("phone", "Phone", 2)]},
        {"key": "custom-asset-tag", "name": "Asset tag", "data_type": "DATA_TYPE_STRING",
         "description": "The sticker on the device, e.g. IT-00123"},
        {"key": "custom-people-affected", "name": "People affected", "data_type": "DATA_TYPE_NUMBER"},
        {"key": "custom-working-remotely", "name": "Working remotely", "data_type": "DATA_TYPE_BOOLEAN"},
    ],
    "team-fac": [
        {"key": "custom-building", "name": "Building", "data_type": "DATA_TYPE_ENUM",
         "options": [("hq", "Headquarters", 1), ("annex", "Annex", 2)]},
        {"key": "custom-room", "name": "Room", "data_type": "DATA_TYPE_UNSPECIFIED"},
        {"key": "custom-needed-by", "name": "Needed by", "data_type": "DATA_TYPE_DATE"},
    ],
}


class ServalState:
    """Everything the sandbox knows. API-shaped dicts, so tests can assert on exactly what was sent."""

    def __init__(self, *, bearer_tokens: set[str] | None = None, clients: dict[str, str] | None = None,
                 token_ttl: int = 3600, latency: float = 0.0, seed: int = 0,
                 slack_channel_field: str = "integrationId", db_path: str | None = None,
                 api_client_user_id: str = "usr-api-client"):
        self.bearer_tokens = set(bearer_tokens) if bearer_tokens is not None else {"test-token"}
        self.clients = dict(clients) if clients is not None else {"test-client": "test-secret"}
        self.token_ttl, self.latency, self.seed = token_ttl, latency, seed
        self.slack_channel_field = slack_channel_field
        # The account Serval acts as for API calls (static token or client credentials) [guess: one id, not
        # in GET /v2/users]: a ticket's createdByUserId when the body names none, and so its requester.
        self.api_client_user_id = api_client_user_id
        self.clock: Callable[[], float] = time.time  # replace to move time (token expiry)
        self.listeners: list[Callable[[str, dict], None]] = []  # (event, data) after each change
        self.reset()
        self.db_path = db_path
        if db_path:  # keep the data in a SQLite file: load it now, save it after each change
            self.load()
            self.listeners.append(lambda _event, _data: self.save())

    def reset(self) -> None:
        """Back to the seeded data; forgets tickets, tokens, faults and the request log."""
        self.rng = random.Random(self.seed)              # faults
        self._id_rng = random.Random(f"ids-{self.seed}")  # ids, independent of fault draws
        self.teams: dict[str, dict] = {}
        self.users: dict[str, dict] = {}
        self.statuses: dict[str, list[dict]] = {}    # team id -> options, same for the next two
        self.priorities: dict[str, list[dict]] = {}
        self.labels: dict[str, list[dict]] = {}
        self.tickets: dict[str, dict] = {}
        self.custom_fields: dict[str, list[dict]] = {}    # team id -> field definitions (`field` of the API)
        self.deprecated_fields: dict[str, list[dict]] = {}  # team id -> deprecated field definitions
        self.field_values: dict[str, dict[str, dict]] = {}  # ticket id -> field id -> EntityFieldValue
        self.ticket_messages: dict[str, list[dict]] = {}  # ticket id -> messages, as GET lists them
        self.message_meta: dict[str, dict] = {}           # message id -> {"triggerHelpAgent": bool} (never answered)
        self.sync_targets: dict[str, list[dict]] = {}     # ticket id -> request's channelSyncTargets
        self.connections: dict[str, list[dict]] = {}      # ticket id -> ExternalTicket dicts
        self.connect_requests: dict[str, dict] = {}       # externalTicketId -> {ticketId, **request body}
        self.updated_at: dict[str, str] = {}              # ticket id -> last change (not in the API's Ticket)
        self.requests: list[dict] = []
        self.in_flight: Counter[str] = Counter()          # "METHOD /path" -> requests being answered now
        self.peak_in_flight: Counter[str] = Counter()     # "METHOD /path" -> most at once so far
        self.issued_tokens: dict[str, float] = {}         # token -> expiry (clock seconds)
        self.faults: dict[str, Fault] = {}
        self._numbers: dict[str, int] = {}
        self.add_team("IT", "IT", team_id="team-it", description="IT help desk")
        self.add_user("alice@example.com", "Alice", "Anderson", role="USER_ROLE_ORG_ADMIN")
        self.add_user("bob@example.com", "Bob", "Baker")
        self.add_user("carol@example.com", "Carol", "Clark", deactivated=True)
        self.teams["team-it"]["userIds"] = ["usr-alice", "usr-bob"]
        self._emit("reset", {})

    # -- seeding and accessors ---------------------------------------------------------------------
    def now(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")

    def new_id(self) -> str:
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    def add_team(self, name: str, prefix: str, *, team_id: str | None = None, description: str = "") -> dict:
        team_id = team_id or f"team-{_slug(prefix)}"
        if team_id in self.teams:
            raise ValueError(f"team {team_id} exists")
        s = team_id.removeprefix("team-")
        team = {"id": team_id, "name": name, "prefix": prefix, "description": description,
                "organizationId": "org-sandbox", "createdAt": self.now(), "userIds": []}
        self.teams[team_id] = team
        self._numbers[team_id] = 0
        self.statuses[team_id] = [
            {"id": f"st-{s}-{_slug(n)}", "teamId": team_id, "statusGroup": g, "name": n, "description": "",
             "isDefault": g == "TODO"}
            for n, g in (("Open", "TODO"), ("In Progress", "IN_PROGRESS"), ("Done", "DONE"),
                         ("Canceled", "CANCELED"))]
        self.priorities[team_id] = [
            {"id": f"pri-{s}-{p.lower()}", "teamId": team_id, "priority": p, "description": ""}
            for p in ("NONE", "LOW", "MEDIUM", "HIGH", "URGENT")]
        self.labels[team_id] = [{"id": f"lbl-{s}-{n}", "teamId": team_id, "name": n, "description": ""}
                                for n in ("access", "hardware")]
        self.custom_fields[team_id], self.deprecated_fields[team_id] = [], []
        return team

    def add_custom_field(self, team_id: str, key: str, name: str, data_type: str = "DATA_TYPE_STRING", *,
                         options: list = (), description: str = "", deprecated: bool = False) -> dict:
        """A custom field of the team. `options`: (value, displayName, displayOrder) tuples (or
        dicts as the API has them); a field with options is an enum whatever its `data_type`."""
        if team_id not in self.teams:
            raise ValueError(f"no team {team_id}")
        active, old = self.custom_fields.setdefault(team_id, []), self.deprecated_fields.setdefault(team_id, [])
        if any(f["key"] == key for f in active + old):
            raise ValueError(f"team {team_id} has a field {key} already")
        now = self.now()
        enum = []
        for i, o in enumerate(options):
            value, display, order = (o["value"], o.get("displayName", o["value"]), o.get("displayOrder", i)) \
                if isinstance(o, dict) else o
            enum.append({"id": f"opt-{_slug(key)}-{_slug(value)}", "value": value, "displayName": display,
                         "displayOrder": order})
        field = {"id": f"cf-{team_id.removeprefix('team-')}-{_slug(key)}", "entityTypeId": "ent-ticket",
                 "key": key, "name": name, "dataType": data_type, "createdAt": now, "updatedAt": now,
                 "createdByUserId": self.api_client_user_id, "updatedByUserId": self.api_client_user_id,
                 "enumOptions": enum, "isKeyField": False, "isNameField": False, "description": description}
        (old if deprecated else active).append(field)
        self._emit("custom_field_added", field)
        return field

    def seed_custom_fields(self) -> None:
        """The demo's custom fields (DEMO_CUSTOM_FIELDS) for the teams that exist and have none yet."""
        for team_id, fields in DEMO_CUSTOM_FIELDS.items():
            if team_id in self.teams and not self.custom_fields.get(team_id):
                for f in fields:
                    self.add_custom_field(team_id, f["key"], f["name"], f["data_type"],
                                          options=f.get("options", ()), description=f.get("description", ""))

    def delay(self, key: str, seconds: float) -> None:
        """Answer requests to `key` ("POST /v2/tickets/search", "GET /v2/teams/{team_id}/...") `seconds` later."""
        fault = self.faults.setdefault(key, Fault())
        fault.latency = seconds

    def add_user(self, email: str, first_name: str, last_name: str, deactivated: bool = False,
                 role: str = "USER_ROLE_ORG_MEMBER") -> dict:
        if self.user_by_email(email) is not None:
            raise ValueError(f"a user with email {email} exists")
        base = user_id = f"usr-{_slug(email.split('@')[0])}"
        n = 1
        while user_id in self.users:
            n += 1
            user_id = f"{base}-{n}"
        now = self.now()
        user = {"id": user_id, "email": email, "firstName": first_name, "lastName": last_name,
                "name": f"{first_name} {last_name}".strip(), "role": role, "createdAt": now}
        if deactivated:
            user["deactivatedAt"] = now
        self.users[user_id] = user
        self._emit("user_added", user)
        return user

    def user_by_email(self, email: str) -> dict | None:
        return next((u for u in self.users.values() if u["email"].lower() == email.lower()), None)

    def tickets_for_team(self, team_id: str | None) -> list[dict]:
        """Oldest first; every ticket when team_id is None."""
        return [t for t in self.tickets.values() if team_id is None or t["teamId"] == team_id]

    def list_tickets(self, query) -> list[dict]:
        """GET /v2/tickets: teamId, startTime.seconds / startTime.nanos (created at or after)."""
        tickets = self.tickets_for_team(query.get("teamId") or None)
        seconds, nanos = query.get("startTime.seconds"), query.get("startTime.nanos")
        if seconds is not None or nanos is not None:
            try:
                start = int(seconds or 0) + int(nanos or 0) / 1e9
            except ValueError:
                raise _bad("startTime.seconds and startTime.nanos must be integers") from None
            since = dt.datetime.fromtimestamp(start, dt.timezone.utc)
            tickets = [t for t in tickets if _created_at(t) >= since]
        return tickets

    def search_tickets(self, body: Any) -> list[dict]:
        """POST /v2/tickets/search: every given filter must hold (a list filter: any of its values);
        createdAfter inclusive, createdBefore exclusive [guess]. Oldest first, like the list."""
        if not isinstance(body, dict):
            raise _bad("the search body must be a JSON object")
        unknown = sorted(set(body) - SEARCH_KEYS)
        if unknown:
            raise _bad(f"invalid SearchTicketsRequest: {', '.join(map(repr, unknown))} unexpected")
        tickets = list(self.tickets.values())
        fields = {"teamIds": "teamId", "requesterUserIds": "requesterUserId",
                  "assignedToUserIds": "assignedToUserId", "statusIds": "statusId",
                  "escalationLevels": "escalationLevel"}
        for key in SEARCH_LISTS:
            wanted = body.get(key)
            if wanted is None:
                continue
            if not isinstance(wanted, list) or not all(isinstance(v, str) for v in wanted):
                raise _bad(f"{key} must be a list of strings")
            if key == "escalationLevels" and set(wanted) - {"AI", "HUMAN"}:
                raise _bad("escalationLevels must be AI or HUMAN")
            if wanted:
                tickets = [t for t in tickets if t.get(fields[key]) in wanted]
        if body.get("createdAfter") is not None:
            after = _instant(body["createdAfter"], "createdAfter")
            tickets = [t for t in tickets if _created_at(t) >= after]
        if body.get("createdBefore") is not None:
            before = _instant(body["createdBefore"], "createdBefore")
            tickets = [t for t in tickets if _created_at(t) < before]
        return tickets

    def list_users(self, include_deactivated: str = "") -> list[dict]:
        flag = include_deactivated.lower()
        if flag not in ("true", "false", "1", "0", ""):
            raise _bad("includeDeactivated must be true or false")
        return [u for u in self.users.values() if flag in ("true", "1") or "deactivatedAt" not in u]

    def team_param(self, query) -> str:
        team_id = query.get("teamId", "")
        if not team_id:
            raise _bad("teamId is required")
        if team_id not in self.teams:
            raise ApiError("not_found", f"team {team_id} not found")
        return team_id

    def requests_to(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]

    def set_faults(self, config: dict) -> None:
        """Replace the fault config: {"POST /v2/tickets": {...Fault fields...} or Fault, "*": ...}."""
        faults = {}
        for key, value in config.items():
            if key != "*" and not re.fullmatch(r"[A-Z]+ /\S*", key):
                raise ValueError(f"fault key {key!r} must be '*' or 'METHOD /path'")
            faults[key] = value if isinstance(value, Fault) else Fault(**value)
        self.faults = faults

    def fault_for(self, method: str, path: str, pattern: str | None) -> Fault | None:
        for key in (f"{method} {path}", f"{method} {pattern or path}", "*"):
            if key in self.faults:
                return self.faults[key]
        return None

    def dump(self) -> dict:
        return {"teams": list(self.teams.values()), "users": list(self.users.values()),
                "statuses": self.statuses, "priorities": self.priorities, "labels": self.labels,
                "customFields": self.custom_fields, "fieldValues": self.field_values,
                "ticketMessages": self.ticket_messages,
                "tickets": [{**t, "channelSyncTargets": self.sync_targets.get(i, [])}
                            for i, t in self.tickets.items()],
                "connections": self.connections, "connectRequests": self.connect_requests,
                "requestCount": len(self.requests),
                "faults": {k: dataclasses.asdict(f) for k, f in self.faults.items()}}

    # -- change hooks and persistence ----------------------------------------------------------------
    PERSISTED = ("teams", "users", "statuses", "priorities", "labels", "tickets", "sync_targets",
                 "connections", "connect_requests", "_numbers", "custom_fields", "deprecated_fields",
                 "field_values", "ticket_messages", "message_meta", "updated_at")  # not tokens, faults or the request log

    def _emit(self, event: str, data: dict) -> None:
        for listener in list(self.listeners):
            listener(event, data)

    def save(self) -> None:
        """Write the data to the SQLite file ``db_path`` (one JSON value per attribute)."""
        rows = [(k, json.dumps(getattr(self, k))) for k in self.PERSISTED]
        rows.append(("_id_rng", json.dumps(self._id_rng.getstate())))
        with contextlib.closing(sqlite3.connect(self.db_path)) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS serval_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.executemany("INSERT OR REPLACE INTO serval_state VALUES (?, ?)", rows)

    def load(self) -> None:
        """Read what ``save`` wrote, if the file has it; the seeded data stays otherwise."""
        with contextlib.closing(sqlite3.connect(self.db_path)) as db:
            try:
                rows = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM serval_state")}
            except sqlite3.OperationalError:  # a new file
                return
        for key in self.PERSISTED:
            if key in rows:
                setattr(self, key, rows[key])
        if "_id_rng" in rows:  # new ids must not repeat the saved ones
            version, internal, gauss = rows["_id_rng"]
            self._id_rng.setstate((version, tuple(internal), gauss))

    # -- auth ----------------------------------------------------------------------------------------
    def issue_token(self) -> str:
        token = f"sbx-{self._id_rng.getrandbits(128):032x}"
        self.issued_tokens[token] = self.clock() + self.token_ttl
        return token

    def revoke(self, token: str | None = None) -> None:
        """Revoke one issued token (default: every one) before it expires: it then answers 401."""
        for t in [token] if token else list(self.issued_tokens):
            self.issued_tokens.pop(t, None)

    def authenticate(self, authorization: str | None) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError("unauthenticated", "missing bearer token")
        if token not in self.bearer_tokens and token not in self.issued_tokens:
            raise ApiError("unauthenticated", "invalid bearer token")
        if token in self.issued_tokens and self.clock() >= self.issued_tokens[token]:
            raise ApiError("unauthenticated", "token expired")

    # -- operations (raise ApiError like the server would) -------------------------------------------
    def validate(self, schema: str, body: Any) -> None:
        validator = schema_validator(schema, self.slack_channel_field)
        errors = sorted(validator.iter_errors(body), key=lambda e: e.json_path)
        if errors:
            path, reason = _explain(errors[0])
            raise _bad(f"invalid {validator.schema['title']}: {reason} at {path}")

    def ticket(self, ticket_id: str) -> dict:
        if ticket_id not in self.tickets:
            raise ApiError("not_found", f"ticket {ticket_id} not found")
        return self.tickets[ticket_id]

    def _need_users(self, body: dict, *fields: str) -> None:
        for f in fields:
            if body.get(f) and body[f] not in self.users:
                raise _bad(f"{f} {body[f]!r}: no such user")

    def create_ticket(self, body: Any) -> dict:
        self.validate("svhelp.publicapi.CreateTicketRequest", body)
        team_id = body.get("teamId") or ""
        if not team_id:
            raise _bad("teamId is required")
        if team_id not in self.teams:
            raise _bad(f"teamId {team_id!r}: no such team")
        if not (body.get("name") or "").strip():
            raise _bad("name is required")
        self._need_users(body, "createdByUserId", "requesterUserId", "assignedToUserId")
        parent = body.get("parentTicketId")
        if parent and parent not in self.tickets:
            raise _bad(f"parentTicketId {parent!r}: no such ticket")
        ticket_type = body.get("type") or "TICKET_TYPE_UNSPECIFIED"
        if ticket_type == "TICKET_TYPE_UNSPECIFIED":
            ticket_type = "TICKET_TYPE_TASK" if parent else "TICKET_TYPE_REQUEST"
        if parent and ticket_type != "TICKET_TYPE_TASK":
            raise _bad("type must be TICKET_TYPE_TASK when parentTicketId is set")
        due = body.get("dueDate")
        due_date = None
        if due is not None:
            due_date = _calendar_date(due)
        for rel in body.get("ticketRelationships") or []:
            if rel.get("ticketId") not in self.tickets:
                raise _bad(f"ticketRelationships: ticketId {rel.get('ticketId')!r}: no such ticket")
        self._numbers[team_id] += 1
        status = next(s for s in self.statuses[team_id] if s["isDefault"])
        # Seed 000: requesterUserId defaults to createdByUserId; without either, both are the API client's.
        created_by = body.get("createdByUserId") or self.api_client_user_id
        ticket = {
            "id": self.new_id(), "friendlyIdentifier": f"{self.teams[team_id]['prefix']}-{self._numbers[team_id]}",
            "teamId": team_id, "name": body["name"], "description": body.get("description", ""),
            "createdAt": body.get("createdAt") or self.now(), "createdByUserId": created_by,
            "assignedToUserId": body.get("assignedToUserId") or None,
            "requesterUserId": body.get("requesterUserId") or created_by, "statusId": status["id"],
            "escalationLevel": "AI" if body.get("aiActive") else "HUMAN", "labelIds": [], "type": ticket_type,
            "dueDate": due, "isOverdue": bool(due_date and due_date < dt.date.today()),
            "parentTicketId": parent, "childTicketIds": [],
            "nameTranslations": body.get("nameTranslations"),
            "descriptionTranslations": body.get("descriptionTranslations"),
        }
        ticket = {k: v for k, v in ticket.items() if v is not None}
        if parent:
            self.tickets[parent]["childTicketIds"].append(ticket["id"])
        self.tickets[ticket["id"]] = ticket
        self.updated_at[ticket["id"]] = ticket["createdAt"]
        self.sync_targets[ticket["id"]] = list(body.get("channelSyncTargets") or [])
        self._emit("ticket_created", ticket)
        return ticket

    def update_ticket(self, ticket_id: str, body: Any) -> dict:
        ticket = self.ticket(ticket_id)
        self.validate("sandbox.UpdateTicketRequest", body)
        changes = {k: v for k, v in body.items() if v is not None}  # null = leave unchanged
        if "name" in changes and not changes["name"].strip():
            raise _bad("name must not be empty")
        team_id = ticket["teamId"]
        self._check_options(team_id, changes)
        unknown = set(changes.get("labelIds", [])) - {o["id"] for o in self.labels[team_id]}
        if unknown:
            raise _bad(f"labelIds {sorted(unknown)}: not labels of team {team_id}")
        self._need_users(changes, "assignedToUserId", "requesterUserId")
        if "dueDate" in changes:
            ticket["isOverdue"] = _calendar_date(changes["dueDate"]) < dt.date.today()
        return self._apply(ticket, changes)

    def _check_options(self, team_id: str, changes: dict) -> None:
        """statusId and priorityId must be options of the ticket's team."""
        for f, options in (("statusId", self.statuses), ("priorityId", self.priorities)):
            if f in changes and changes[f] not in {o["id"] for o in options[team_id]}:
                raise _bad(f"{f} {changes[f]!r}: not an option of team {team_id}")

    def _apply(self, ticket: dict, changes: dict) -> dict:
        team_id = ticket["teamId"]
        ticket.update(changes)
        if "statusId" in changes:
            group = next(s["statusGroup"] for s in self.statuses[team_id] if s["id"] == changes["statusId"])
            if group in ("DONE", "CANCELED"):
                ticket.setdefault("completedAt", self.now())
            else:
                ticket.pop("completedAt", None)
        self.updated_at[ticket["id"]] = self.now()
        self._emit("ticket_updated", ticket)
        return ticket

    def agent_update(self, ticket_id: str, body: Any) -> dict:
        """What an agent does in Serval's own app (the sandbox's agent panel): set the status, the
        assignee (``""`` or null: unassigned) or the priority of a ticket. The API then answers the
        ticket as changed; PUT /v2/tickets/{id} cannot unassign (its null means "leave unchanged")."""
        ticket = self.ticket(ticket_id)
        if not isinstance(body, dict) or not body or set(body) - {"statusId", "assignedToUserId", "priorityId"}:
            raise _bad("expected one or more of statusId, assignedToUserId, priorityId")
        changes = {f: body[f] for f in ("statusId", "priorityId") if f in body}
        self._check_options(ticket["teamId"], changes)
        if "assignedToUserId" in body:
            assignee = body["assignedToUserId"] or None
            if assignee is not None and (assignee not in self.users or "deactivatedAt" in self.users[assignee]):
                raise _bad(f"assignedToUserId {assignee!r}: no such active user")
            if assignee is None:
                ticket.pop("assignedToUserId", None)
            else:
                changes["assignedToUserId"] = assignee
        return self._apply(ticket, changes)

    def agent_view(self) -> dict:
        """What the agent panel shows: every ticket, newest first, with the options it can be set to."""
        tickets = [{**t, "updatedAt": self.updated_at.get(i, t["createdAt"]),
                    "teamName": self.teams.get(t["teamId"], {}).get("name", t["teamId"])}
                   for i, t in reversed(list(self.tickets.items()))]
        groups = ("TODO", "IN_PROGRESS", "DONE", "CANCELED")
        statuses = {team: sorted(options, key=lambda o: groups.index(o["statusGroup"])
                                 if o["statusGroup"] in groups else len(groups))
                    for team, options in self.statuses.items()}
        users = [{"id": u["id"], "name": u.get("name") or u["email"], "email": u["email"]}
                 for u in self.users.values() if "deactivatedAt" not in u]
        return {"tickets": tickets, "statuses": statuses, "priorities": self.priorities, "users": users,
                "statusGroups": list(groups)}

    def connect(self, ticket_id: str, body: Any) -> dict:
        self.ticket(ticket_id)
        self.validate("sandbox.ConnectTicketToExternalTicketRequest", body)
        target = body.get("channelTarget")
        if not target:
            raise _bad("channelTarget is required")
        external_id = body.get("externalTicketId") or ""
        if not external_id:
            raise _bad("externalTicketId is required")
        kind, inner = next(iter(target.items()))
        if kind in SLACK_TARGETS and not SLACK_THREAD_ID.fullmatch(external_id):
            raise _bad(f"externalTicketId {external_id!r}: for {kind} it must be exactly "
                       "'<channelId>:<threadTs>', e.g. 'C9DDYQ1B4:1779146751.061339'")
        if kind == "slackChannel" and not inner.get(self.slack_channel_field):
            raise _bad(f"channelTarget.slackChannel.{self.slack_channel_field} is required")
        own = {m["id"] for m in self.ticket_messages.get(ticket_id, [])}
        foreign = [m for m in body.get("accountedForMessageIds") or [] if m not in own]
        if foreign:  # docs: "Each must belong to this ticket."
            raise _bad(f"accountedForMessageIds {foreign}: not messages of ticket {ticket_id}")
        known = self.connect_requests.get(external_id)
        if known is not None:
            if known["ticketId"] == ticket_id:
                return {}  # idempotent
            raise ApiError("already_exists",
                           f"externalTicketId {external_id!r} is already connected to ticket {known['ticketId']}")
        source_type = {"slackChannel": "SLACK", "slackDm": "SLACK", "email": "EMAIL"}.get(kind, "UNSPECIFIED")
        now = self.now()
        self.connections.setdefault(ticket_id, []).append({
            "id": self.new_id(), "externalTicketId": external_id, "ticketId": ticket_id,
            "sourceType": f"EXTERNAL_TICKET_SOURCE_TYPE_{source_type}",
            "sourceId": (inner or {}).get("integrationId") or (inner or {}).get(self.slack_channel_field) or kind,
            "isOrigin": False, "createdAt": now, "updatedAt": now})
        self.connect_requests[external_id] = {"ticketId": ticket_id, **body}
        self._emit("ticket_connected", self.connections[ticket_id][-1])
        return {}

    # -- custom fields (docs/custom-fields.yaml) ----------------------------------------------------
    def _empty_value(self, field: dict) -> dict:
        return {"fieldId": field["id"], "fieldKey": field["key"], "fieldName": field["name"],
                "dataType": field["dataType"]}

    def custom_field_options(self, team_id: str) -> dict:
        if team_id not in self.teams:
            raise ApiError("not_found", f"team {team_id} not found")
        return {"customFields": [{"field": f, "fieldValue": self._empty_value(f)}
                                 for f in self.custom_fields.get(team_id, [])],
                "deprecatedFields": [{"field": f, "fieldValue": self._empty_value(f)}
                                     for f in self.deprecated_fields.get(team_id, [])]}

    def custom_field_values(self, ticket_id: str) -> dict:
        """Only the values set explicitly, in the same {customFields, deprecatedFields} shape."""
        team_id = self.ticket(ticket_id)["teamId"]
        values = self.field_values.get(ticket_id, {})
        return {key: [{"field": f, "fieldValue": values[f["id"]]} for f in fields if f["id"] in values]
                for key, fields in (("customFields", self.custom_fields.get(team_id, [])),
                                    ("deprecatedFields", self.deprecated_fields.get(team_id, [])))}

    def _check_value(self, field: dict, value: Any, where: str) -> None:
        if value is None:
            return  # clears the value
        kind = field["dataType"]
        if field.get("enumOptions"):
            allowed = [o["value"] for o in field["enumOptions"]]
            if value not in allowed:
                raise _bad(f"{where}: {value!r} is not an option of field {field['key']} (options: {allowed})")
        elif kind == "DATA_TYPE_STRING" and not isinstance(value, str):
            raise _bad(f"{where}: field {field['key']} takes a string")
        elif kind == "DATA_TYPE_NUMBER" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise _bad(f"{where}: field {field['key']} takes a number")
        elif kind == "DATA_TYPE_BOOLEAN" and not isinstance(value, bool):
            raise _bad(f"{where}: field {field['key']} takes true or false")
        elif kind == "DATA_TYPE_DATE":
            try:
                if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise ValueError
                dt.date.fromisoformat(value)
            except ValueError:
                raise _bad(f"{where}: field {field['key']} takes a date as YYYY-MM-DD") from None

    def set_custom_field_values(self, ticket_id: str, body: Any) -> dict:
        """All or nothing: every item is checked before any value is set."""
        ticket = self.ticket(ticket_id)
        self.validate("sandbox.SetTicketCustomFieldValuesRequest", body)
        fields = self.custom_fields.get(ticket["teamId"], []) + self.deprecated_fields.get(ticket["teamId"], [])
        by_id, by_key = {f["id"]: f for f in fields}, {f["key"]: f for f in fields}
        changes, seen = [], set()
        for i, item in enumerate(body.get("fieldValues") or []):
            where = f"fieldValues[{i}]"
            field_id, key = item.get("fieldId"), item.get("fieldKey")
            if not field_id and not key:
                raise _bad(f"{where}: fieldKey or fieldId is required")
            field = by_id.get(field_id) if field_id else by_key.get(key)
            if field is None:
                raise _bad(f"{where}: team {ticket['teamId']} has no custom field {field_id or key!r}")
            if field_id and key and field["key"] != key:
                raise _bad(f"{where}: fieldId {field_id!r} and fieldKey {key!r} name different fields")
            if field["id"] in seen:
                raise _bad(f"{where}: field {field['key']} is set twice")
            seen.add(field["id"])
            if "value" not in item:
                raise _bad(f"{where}: value is required")
            self._check_value(field, item["value"], where)
            changes.append((field, item))
        values, out = self.field_values.setdefault(ticket_id, {}), []
        for field, item in changes:
            if item["value"] is None:
                values.pop(field["id"], None)
                continue
            old = values.get(field["id"])
            value = {"id": old["id"] if old else self.new_id(), "entityId": ticket_id,
                     **self._empty_value(field), "value": item["value"], "setByUserId": self.api_client_user_id,
                     "createdAt": old["createdAt"] if old else self.now(), "pinned": bool(item.get("pinned"))}
            values[field["id"]] = value
            out.append(value)
        self._emit("custom_field_values_set", {"ticketId": ticket_id, "values": out})
        return {"data": out}

    # -- messages (docs/ticket-messages.yaml) --------------------------------------------------------
    def create_message(self, ticket_id: str, body: Any) -> dict:
        self.ticket(ticket_id)
        self.validate("sandbox.CreateTicketMessageRequest", body)
        text = body.get("message") or ""
        if not text.strip():
            raise _bad("message is required")
        author_id = body.get("authorUserId") or None
        self._need_users(body, "authorUserId")
        author = self.users.get(author_id) if author_id else None
        user = {"id": author["id"], "email": author["email"]} if author else {"id": self.api_client_user_id}
        message = {"id": self.new_id(), "user": user, "authorRole": "USER_ROLE", "content": text,
                   "createdAt": self.now(), "attachments": []}
        self.ticket_messages.setdefault(ticket_id, []).append(message)
        self.message_meta[message["id"]] = {"triggerHelpAgent": body.get("triggerHelpAgent") is not False}
        self._emit("message_added", {"ticketId": ticket_id, **message})
        return {"data": {"messageId": message["id"]}}

    def create_user(self, body: Any) -> dict:
        self.validate("svauth.public.CreateUserRequest", body)
        email = (body.get("email") or "").strip()
        if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise _bad(f"email {email!r} is not an email address")
        if self.user_by_email(email) is not None:
            raise ApiError("already_exists", f"a user with email {email} already exists")
        role = body.get("role") or "USER_ROLE_ORG_MEMBER"
        if role == "USER_ROLE_UNSPECIFIED":
            role = "USER_ROLE_ORG_MEMBER"
        return self.add_user(email, body.get("firstName", ""), body.get("lastName", ""), role=role)


# ---------------------------------------------------------------------------------------------------
# HTTP

def _state(request: web.Request) -> ServalState:
    return request.app["state"]


async def _json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise _bad(f"malformed JSON body: {exc}") from None


async def issue_token(request: web.Request) -> web.Response:
    state = _state(request)
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    try:
        client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        client_id = secret = None
    if scheme.lower() != "basic" or client_id not in state.clients or state.clients[client_id] != secret:
        raise ApiError("unauthenticated", "invalid client credentials")
    if (await request.post()).get("grant_type") != "client_credentials":
        raise _bad("grant_type must be client_credentials")
    return web.json_response({"access_token": state.issue_token(), "token_type": "Bearer",
                              "expires_in": state.token_ttl})


def _set_faults(state: ServalState, body: Any) -> dict:
    try:
        state.set_faults(body)
    except (ValueError, TypeError, AttributeError) as exc:
        raise _bad(f"bad fault config: {exc}") from None
    return {"faults": state.dump()["faults"]}


def _sandbox_user(state: ServalState, b: Any) -> dict:
    try:
        return state.add_user(b["email"], b.get("firstName", ""), b.get("lastName", ""),
                              deactivated=bool(b.get("deactivated")), role=b.get("role", "USER_ROLE_ORG_MEMBER"))
    except (KeyError, TypeError, AttributeError):
        raise _bad("expected {email, firstName, lastName, deactivated?, role?}") from None
    except ValueError as exc:
        raise ApiError("already_exists", str(exc)) from None


def _id(r: web.Request) -> str:
    return r.match_info.get("id") or r.match_info["ticket_id"]


def _agent_ticket(s: ServalState, r: web.Request) -> str:
    """The agent panel's ticket: its id, or its friendly identifier (IT-3) as an agent types it."""
    ref = r.match_info["id"]
    return next((i for i, t in s.tickets.items() if t.get("friendlyIdentifier") == ref), ref)


# (method, path, operation(state, request, parsed JSON body or None) -> JSON answer)
ROUTES: list[tuple[str, str, Callable[[ServalState, web.Request, Any], Any]]] = [
    ("POST", "/v2/tickets", lambda s, r, b: {"data": s.create_ticket(b)}),
    ("GET", "/v2/tickets", lambda s, r, b: _page(s.list_tickets(r.query), r.query, TICKET_PAGE, TICKET_PAGE_MAX)),
    ("POST", "/v2/tickets/search", lambda s, r, b: _page(s.search_tickets(b), b, TICKET_PAGE, TICKET_PAGE_MAX)),
    ("GET", "/v2/tickets/{id}", lambda s, r, b: {"data": s.ticket(_id(r))}),
    ("PUT", "/v2/tickets/{id}", lambda s, r, b: {"data": s.update_ticket(_id(r), b)}),
    ("POST", "/v2/tickets/{ticket_id}/connect", lambda s, r, b: s.connect(_id(r), b)),
    ("GET", "/v2/teams/{team_id}/custom-field-options",
     lambda s, r, b: s.custom_field_options(r.match_info["team_id"])),
    ("GET", "/v2/tickets/{ticket_id}/custom-field-values", lambda s, r, b: s.custom_field_values(_id(r))),
    ("PUT", "/v2/tickets/{ticket_id}/custom-field-values", lambda s, r, b: s.set_custom_field_values(_id(r), b)),
    ("POST", "/v2/tickets/{ticket_id}/messages", lambda s, r, b: s.create_message(_id(r), b)),
    ("GET", "/v2/tickets/{ticket_id}/messages",
     lambda s, r, b: _page(s.ticket_messages.get(s.ticket(_id(r))["id"], []), r.query)),
    ("GET", "/v2/tickets/{ticket_id}/external-tickets",
     lambda s, r, b: {"data": s.connections.get(s.ticket(_id(r))["id"], [])}),
    ("GET", "/v2/users", lambda s, r, b: _page(s.list_users(r.query.get("includeDeactivated", "")), r.query)),
    ("POST", "/v2/users", lambda s, r, b: {"data": s.create_user(b)}),
    ("GET", "/v2/teams", lambda s, r, b: _page(list(s.teams.values()), r.query)),
    ("GET", "/v2/statuses", lambda s, r, b: _page(s.statuses[s.team_param(r.query)], r.query)),
    ("GET", "/v2/priorities", lambda s, r, b: _page(s.priorities[s.team_param(r.query)], r.query)),
    ("GET", "/v2/labels", lambda s, r, b: _page(s.labels[s.team_param(r.query)], r.query)),
    ("GET", "/_sandbox/state", lambda s, r, b: s.dump()),
    ("POST", "/_sandbox/faults", lambda s, r, b: _set_faults(s, b)),
    ("POST", "/_sandbox/reset", lambda s, r, b: s.reset() or {}),
    ("POST", "/_sandbox/users", lambda s, r, b: {"data": _sandbox_user(s, b)}),
    ("GET", "/_sandbox/agent", lambda s, r, b: s.agent_view()),
    ("POST", "/_sandbox/agent/tickets/{id}", lambda s, r, b: {"data": s.agent_update(_agent_ticket(s, r), b)}),
]
AGENT_PAGE = Path(__file__).with_name("serval_agent.html")


async def agent_page(request: web.Request) -> web.FileResponse:
    """The agent panel: what an agent does in Serval's own app, for `make demo` (no auth, like /_sandbox/)."""
    return web.FileResponse(AGENT_PAGE, headers={"Cache-Control": "no-cache"})


def _handler(operation: Callable[[ServalState, web.Request, Any], Any]):
    async def handle(request: web.Request) -> web.Response:
        body = await _json(request) if request.method in ("POST", "PUT") else None
        return web.json_response(operation(_state(request), request, body))
    return handle


def _drop(request: web.Request) -> web.Response:
    """Cut the connection without answering; the client sees a transport error, not a response."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response()  # never sent: aiohttp notices the closed transport and moves on


async def _call(handler, request: web.Request) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:  # from the router: unknown path or method
        code = STATUS_CODE.get(exc.status, "unknown")
        return ApiError(code, f"{request.method} {request.path}: {exc.reason}", status=exc.status).response()


@web.middleware
async def _serval_middleware(request: web.Request, handler) -> web.StreamResponse:
    if not request.path.startswith("/v2/"):
        return await _call(handler, request)
    state = _state(request)
    raw = await request.read()
    try:
        body = json.loads(raw) if raw and request.content_type == "application/json" else None
    except ValueError:
        body = None
    logged = {"method": request.method, "path": request.path, "query": dict(request.query), "body": body,
              "headers": {k: v for k, v in request.headers.items() if k.lower() != "authorization"},
              "at": time.monotonic()}
    state.requests.append(logged)
    key = f"{request.method} {request.path}"
    state.in_flight[key] += 1
    state.peak_in_flight[key] = max(state.peak_in_flight[key], state.in_flight[key])
    try:
        return await _answer(request, handler, state)
    finally:
        state.in_flight[key] -= 1
        logged["answered_at"] = time.monotonic()


async def _answer(request: web.Request, handler, state: ServalState) -> web.StreamResponse:
    resource = getattr(request.match_info.route, "resource", None)
    fault = state.fault_for(request.method, request.path, resource.canonical if resource else None)
    outcome = fault.decide(state.rng) if fault else "ok"
    delay = state.latency + (fault.delay(state.rng) if fault else 0) + (fault.slow_latency if outcome == "slow" else 0)
    if delay > 0:
        await asyncio.sleep(delay)
    if outcome == "drop":
        return _drop(request)
    if outcome == "429":
        return ApiError("resource_exhausted", "rate limited (sandbox fault)",
                        headers={"Retry-After": str(fault.retry_after)}).response()
    if outcome == "error":
        return ApiError(STATUS_CODE.get(fault.status, "unknown"), f"injected fault (HTTP {fault.status})",
                        status=fault.status).response()
    if request.path != "/v2/auth/token":
        try:
            state.authenticate(request.headers.get("Authorization"))
        except ApiError as exc:
            return exc.response()
    response = await _call(handler, request)
    if outcome == "lost":
        return _drop(request)  # the work is done; the client never hears of it
    if outcome == "not_json":  # the work is done; the answer is not Serval's
        return web.Response(text="<html><body>Service temporarily unavailable</body></html>",
                            content_type="text/html")
    if outcome == "no_data":
        return web.json_response({})
    return response


def create_app(state: ServalState | None = None) -> web.Application:
    app = web.Application(middlewares=[_serval_middleware])
    with warnings.catch_warnings():  # a plain "state" key is the documented interface
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app["state"] = state or ServalState()
    app.router.add_post("/v2/auth/token", issue_token)
    app.router.add_get("/agent", agent_page)
    for method, path, operation in ROUTES:
        app.router.add_route(method, path, _handler(operation))
    return app


async def start(state: ServalState | None = None, host: str = "127.0.0.1",
                port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve the sandbox; port 0 picks a free port. Returns (runner, base URL); `await runner.cleanup()`."""
    return await start_app(create_app(state), host, port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.serval", description="Serval API sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", action="append", help="static bearer token (repeatable); default test-token")
    parser.add_argument("--client-id", default="test-client")
    parser.add_argument("--client-secret", default="test-secret")
    parser.add_argument("--token-ttl", type=int, default=3600)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slack-channel-field", default="integrationId")
    parser.add_argument("--db", metavar="PATH", help="keep the data in this SQLite file (created if missing)")
    args = parser.parse_args(argv)
    state = ServalState(bearer_tokens=set(args.token) if args.token else None,
                        clients={args.client_id: args.client_secret}, token_ttl=args.token_ttl,
                        latency=args.latency_ms / 1000, seed=args.seed,
                        slack_channel_field=args.slack_channel_field, db_path=args.db)
    state.seed_custom_fields()

    serve_forever(lambda: start(state, args.host, args.port))


if __name__ == "__main__":
    main()
