"""Prometheus metrics: `GET /metrics` (see docs/operations.md, "Metrics", for every name and label).

One registry per process (`REGISTRY`), filled by cheap hooks, so nothing on a request's path does
more than increment a counter or observe a histogram:

- `slack_endpoint(handler)` wraps `POST /slack/events`: requests by surface and outcome, and the
  acknowledgement latency (arrival → response). `slack_surface(data)`, called by the handler once
  Bolt has parsed the body, names the surface.
- `SlackCalls`, the first retry handler of every Slack Web API client (`bot.core.slack_client`):
  slack_sdk shows its retry handlers every answer and every transport error, so it counts calls and
  errors by method, and observes request → `views.open` (the arrival time travels in a context
  variable into the listener Bolt starts for the request).
- `record_ticket_call`, installed as the observer of `clients._http` (clients know nothing of the
  bot): ticket-system calls by back end, method, endpoint template and status, with latency.
- `retry(step)` and `submission(state)`: one line each in `bot.pipeline`.
- The journal backlog and the oldest pending submission's age are read from storage when scraped.

Values are per process and cumulative (tests compare before and after). Several bots in one process
(tests, benchmarks) share them."""

from __future__ import annotations

import contextvars
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from clients import _http

if TYPE_CHECKING:
    from ..core import Bot

log = logging.getLogger(__name__)

disable_created_metrics()  # no `_created` series beside every counter and histogram
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

PREFIX = "ticketbot_"

SLACK_REQUESTS = Counter(
    PREFIX + "slack_requests_total",
    "Requests from Slack to POST /slack/events, by surface and outcome (HTTP status class, or error).",
    ["surface", "outcome"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    PREFIX + "slack_ack_seconds",
    "Time from a Slack request's arrival to the bot's HTTP answer (its acknowledgement); Slack gives up at 3 s.",
    ["surface"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0),
    registry=REGISTRY,
)
VIEWS_OPEN_SECONDS = Histogram(
    PREFIX + "slack_views_open_seconds",
    "Time from a Slack request's arrival to Slack's answer to the views.open it led to (opened only);"
    " the trigger id expires 3 s after the person acted.",
    ["surface"],
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 5.0),
    registry=REGISTRY,
)
SLACK_API_CALLS = Counter(
    PREFIX + "slack_api_calls_total",
    "Slack Web API calls (each attempt), by method.",
    ["method"],
    registry=REGISTRY,
)
SLACK_API_ERRORS = Counter(
    PREFIX + "slack_api_errors_total",
    "Slack Web API calls (each attempt) that failed, by method and error: Slack's error code,"
    " http_<status> for an answer without one, or the exception's class for a transport failure.",
    ["method", "error"],
    registry=REGISTRY,
)
SUBMISSIONS = Counter(
    PREFIX + "submissions_total",
    "Ticket submissions by state reached: pending (journaled), done (ticket created), failed (none created).",
    ["state"],
    registry=REGISTRY,
)
RETRIES = Counter(
    PREFIX + "retries_total",
    "Journal retries planned, by the step that failed for a reason that may pass.",
    ["step"],
    registry=REGISTRY,
)
JOURNAL_BACKLOG = Gauge(
    PREFIX + "journal_backlog",
    "Unfinished (pending) submissions in the journal, all processes; read when scraped (NaN: unreadable).",
    registry=REGISTRY,
)
JOURNAL_OLDEST_SECONDS = Gauge(
    PREFIX + "journal_oldest_pending_seconds",
    "Age of the oldest pending submission in the journal (0 when none); read when scraped (NaN: unreadable).",
    registry=REGISTRY,
)
TICKET_CALLS = Counter(
    PREFIX + "ticket_system_calls_total",
    "HTTP calls to a ticket system, by back end, method, endpoint template and status"
    " (the HTTP status, or the transport error's class).",
    ["backend", "method", "endpoint", "status"],
    registry=REGISTRY,
)
TICKET_CALL_SECONDS = Histogram(
    PREFIX + "ticket_system_call_seconds",
    "Duration of HTTP calls to a ticket system (answered or not), by back end, method and endpoint template.",
    ["backend", "method", "endpoint"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
FOLLOWED = Gauge(
    PREFIX + "tickets_followed",
    "Tickets the bot follows after filing them (not done for long, not stopped), all processes; read when scraped.",
    registry=REGISTRY,
)
POLL_CALLS = Counter(
    PREFIX + "status_poll_calls_total",
    "Calls to a ticket system to follow tickets, by back end and outcome (ok, gone, rate_limited, error, refused).",
    ["backend", "outcome"],
    registry=REGISTRY,
)
TICKET_CHANGES = Counter(
    PREFIX + "ticket_changes_total",
    "Changes seen in followed tickets (status, assignee, priority, due date, SLA), by back end.",
    ["backend"],
    registry=REGISTRY,
)
STATUS_NOTICES = Counter(
    PREFIX + "status_notices_total",
    "Notices that a ticket was resolved or cancelled, by where they went (thread, dm) or failed.",
    ["where"],
    registry=REGISTRY,
)

# Label children by label values: `labels()` takes a lock and builds a key on every call.
_children: dict[tuple[Any, ...], Any] = {}


def _child(metric: Any, *values: str) -> Any:
    key = (metric, *values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


# --- Slack requests --------------------------------------------------------------------------


class Arrival:
    """A Slack request being handled: when it arrived and its surface once known."""

    __slots__ = ("started", "surface")

    def __init__(self, started: float) -> None:
        self.started = started
        self.surface = "unknown"  # until parsed: unsigned, malformed and ssl_check requests stay so


_ARRIVAL: contextvars.ContextVar[Arrival | None] = contextvars.ContextVar("slack_request_arrival", default=None)

INTERACTIONS = {
    "shortcut": "shortcut",
    "message_action": "shortcut",
    "view_submission": "view_submission",
    "view_closed": "view_closed",
    "block_actions": "block_actions",
    "block_suggestion": "block_suggestion",
    "event_callback": "event",
    "url_verification": "event",
    "app_rate_limited": "event",
}


def surface_of(data: object) -> str:
    """command, shortcut, view_submission, view_closed, block_actions, block_suggestion, event or
    other, from a request's body as Bolt parsed it."""
    if not isinstance(data, dict):
        return "other"
    if "command" in data:
        return "command"
    return INTERACTIONS.get(data.get("type"), "other")  # type: ignore[arg-type]


def slack_surface(data: object) -> None:
    """Name the surface of the Slack request being handled (no-op outside `slack_endpoint`)."""
    arrival = _ARRIVAL.get()
    if arrival is not None:
        arrival.surface = surface_of(data)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class slack_request:  # noqa: N801 (used as a context manager, like contextlib's)
    """One Slack request (over HTTP or Socket Mode), counted by surface and outcome and timed to its
    acknowledgement; call the function `with` yields with the answer's status. The arrival is
    visible, through a context variable, to the listener tasks Bolt starts while dispatching.
    A class rather than a generator: it runs on every request (~2 µs less)."""

    __slots__ = ("arrival", "outcome", "token")

    def __init__(self, surface: str = "unknown") -> None:
        self.arrival = Arrival(time.perf_counter())
        self.arrival.surface = surface
        self.outcome = "error"

    def __enter__(self) -> Callable[[int], None]:
        self.token = _ARRIVAL.set(self.arrival)
        return self.answered

    def answered(self, status: int) -> None:
        self.outcome = f"{status // 100}xx"

    def __exit__(self, *exc: object) -> None:
        _ARRIVAL.reset(self.token)
        arrival = self.arrival
        _child(SLACK_REQUESTS, arrival.surface, self.outcome).inc()
        _child(ACK_SECONDS, arrival.surface).observe(time.perf_counter() - arrival.started)


def slack_endpoint(handler: Handler) -> Handler:
    """`handler` (POST /slack/events), counted and timed (`slack_request`)."""

    async def counted(request: web.Request) -> web.StreamResponse:
        with slack_request() as answered:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # an answer raised, e.g. 413 for a body over the limit
                answered(exc.status)
                raise
            answered(response.status)
            return response

    return counted


# --- Slack Web API ----------------------------------------------------------------------------


class SlackCalls(AsyncRetryHandler):
    """Counts Slack Web API calls and errors; never asks for a retry. It must come first among a
    client's retry handlers: slack_sdk stops asking them at the first that retries, and shows each
    of them every answer (`response`) and every exception (`error`) of every attempt."""

    def __init__(self) -> None:
        super().__init__(max_retry_count=0)

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        try:
            self.observe(request, response, error)
        except Exception:  # metrics never break a call
            log.debug("could not count a Slack Web API call", exc_info=True)
        return False

    @staticmethod
    def observe(request: HttpRequest, response: HttpResponse | None, error: Exception | None) -> None:
        method = request.url.rsplit("/", 1)[-1]
        _child(SLACK_API_CALLS, method).inc()
        failed: str | None = None
        if error is not None:
            failed = type(error).__name__
        elif response is not None:
            body = response.body
            if isinstance(body, dict) and body.get("ok") is False:
                failed = str(body.get("error") or "unknown_error")
            elif response.status_code >= 400:
                failed = f"http_{response.status_code}"
        if failed is not None:
            _child(SLACK_API_ERRORS, method, failed).inc()
        elif method == "views.open":
            arrival = _ARRIVAL.get()
            if arrival is not None:
                _child(VIEWS_OPEN_SECONDS, arrival.surface).observe(time.perf_counter() - arrival.started)


SLACK_CALLS = SlackCalls()  # stateless: every client may share it


# --- the journal ------------------------------------------------------------------------------


def retry(step: str) -> None:
    _child(RETRIES, step).inc()


def submission(state: str) -> None:
    _child(SUBMISSIONS, state).inc()


# --- following tickets ------------------------------------------------------------------------


def poll_call(backend: str, outcome: str) -> None:
    _child(POLL_CALLS, backend, outcome).inc()


def ticket_change(backend: str) -> None:
    _child(TICKET_CHANGES, backend).inc()


def status_notice(where: str) -> None:
    _child(STATUS_NOTICES, where).inc()


# --- ticket systems ---------------------------------------------------------------------------

ID = "{id}"
_ID_SEGMENT = re.compile(r"\d+|.*[%@].*|(?=.*\d).{6,}")  # digits; encoded or e-mail; 6+ chars with a digit


def endpoint_template(path: str) -> str:
    """The path with ids taken out, so each endpoint is one label value:
    /v2/tickets/4f1c…/connect → /v2/tickets/{id}/connect (version segments such as v2 stay)."""
    return "/".join(ID if _ID_SEGMENT.fullmatch(s) else s for s in path.split("/"))


_BACKEND = re.compile(r"[a-z0-9]+")
_backends: dict[str, str] = {}


def backend_name(system: str) -> str:
    """The back end's name as TICKET_BACKEND spells it: "Rezolve.ai" → rezolve, "Serval" → serval."""
    name = _backends.get(system)
    if name is None:
        found = _BACKEND.match(system.lower())
        name = _backends[system] = found.group(0) if found else "unknown"
    return name


def record_ticket_call(system: str, method: str, path: str, status: str, seconds: float) -> None:
    backend, endpoint = backend_name(system), endpoint_template(path)
    _child(TICKET_CALLS, backend, method, endpoint, status).inc()
    _child(TICKET_CALL_SECONDS, backend, method, endpoint).observe(seconds)


_http.observe_calls(record_ticket_call)


# --- GET /metrics -----------------------------------------------------------------------------


async def read_journal(bot: "Bot") -> None:
    """Backlog gauges from storage (one indexed query); NaN when the database cannot be read."""
    try:
        pending, oldest = await bot.storage.backlog()
    except Exception as exc:
        log.debug("metrics: journal backlog unreadable (%s)", type(exc).__name__)
        JOURNAL_BACKLOG.set(math.nan)
        JOURNAL_OLDEST_SECONDS.set(math.nan)
        return
    JOURNAL_BACKLOG.set(pending)
    JOURNAL_OLDEST_SECONDS.set(max(0.0, time.time() - oldest) if pending and oldest else 0.0)


# The classic text format, which `generate_latest` writes and every Prometheus reads (newer
# prometheus-client versions call it 1.0.0 in CONTENT_TYPE_LATEST).
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def endpoint(bot: "Bot") -> Handler:
    """The `GET /metrics` handler, in Prometheus' text format."""

    async def metrics(_request: web.Request) -> web.Response:
        await read_journal(bot)
        try:
            FOLLOWED.set(await bot.storage.following())
        except Exception as exc:
            log.debug("metrics: followed tickets unreadable (%s)", type(exc).__name__)
            FOLLOWED.set(math.nan)
        return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": TEXT_FORMAT})

    return metrics
