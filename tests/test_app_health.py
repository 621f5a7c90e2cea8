"""What /readyz and /healthz answer, JSON log lines (LOG_FORMAT=json) with their context and without
secrets, and the form's reading order. In-process, through the real HTTP server."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import time

import httpx
import pytest

from bot.slack import views
from bot.ops.logs import log_context, set_log_context
from bot.journal.storage import Submission
from bot.slack.views import Origin
from clients.base import FormField
from server.http import serve_http
from server.process import setup_logging
from tests.conftest import make_settings


async def get(running, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5) as http:
        return await http.get(running.url + path)


# --- /readyz ---------------------------------------------------------------------------------------


async def test_readyz_is_200_when_the_database_takes_a_write(running):
    r = await get(running, "/readyz")
    assert r.status_code == 200 and r.json() == {"ready": True}
    assert await running.bot.storage.get_state("health.readyz")  # it really wrote


async def test_readyz_is_503_with_the_reason_when_the_database_refuses_writes_and_healthz_stays_200(running, monkeypatch):
    async def read_only(name: str, value: str) -> None:
        raise RuntimeError("attempt to write a readonly database")

    monkeypatch.setattr(running.bot.storage, "set_state", read_only)
    r = await get(running, "/readyz")
    assert r.status_code == 503
    assert r.json()["ready"] is False and "readonly database" in r.json()["reasons"]["database"]
    health = await get(running, "/healthz")
    assert health.status_code == 200 and health.json()["ok"] is False and health.json()["ready"] is False


async def test_readyz_is_503_at_once_when_stopping(running):
    running.health.stopping = True
    r = await get(running, "/readyz")
    assert r.status_code == 503 and r.json() == {"ready": False, "reasons": {"process": "shutting down"}}


# --- /healthz --------------------------------------------------------------------------------------


async def test_healthz_reports_backlog_and_stuck_submissions(running):
    storage = running.bot.storage
    old = Submission.new("stuck-1", {"title": "old", "user_id": "U1"}, None)
    old.created_at = time.time() - 20 * 60
    old.owner, old.lease_until = "another-replica", time.time() + 3600  # held elsewhere: not touched here
    await storage.add_submission(old)
    fresh = Submission.new("fresh-1", {"title": "new", "user_id": "U1"}, None)
    fresh.owner, fresh.lease_until = "another-replica", time.time() + 3600
    await storage.add_submission(fresh)

    r = await get(running, "/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["journal"]["backlog"] == 2 and body["journal"]["oldest_pending_age_seconds"] >= 20 * 60 - 5
    assert body["stuck"]["threshold_seconds"] == 900 and body["stuck"]["count"] == 1
    assert body["stuck"]["oldest_age_seconds"] >= 20 * 60 - 5
    assert body["ok"] is False and "1 submission(s) pending for more than 900 s" in body["problems"]
    assert body["mode"] == "http" and body["ready"] is True


async def test_healthz_follows_the_ticket_systems_token(tmp_path, slack, serval):
    serval_state, serval_url = serval
    settings = make_settings(tmp_path, slack[1], serval_url, serval_bearer_token=None, serval_client_id="test-client",
                             serval_client_secret="test-secret")
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        backend = running.bot.backends["serval"]
        await backend.refresh_catalog()  # fetches a token
        serval_json = (await get(running, "/healthz")).json()["ticket_systems"]["serval"]
        assert serval_json["state"] == "ok" and serval_json["since"]

        serval_state.clients["test-client"] = "rotated-by-an-admin"
        backend.client._tokens.invalidate()
        with pytest.raises(Exception):
            await backend.refresh_catalog()
        body = (await get(running, "/healthz")).json()
        serval_json = body["ticket_systems"]["serval"]
        assert serval_json["state"] == "failing" and "Serval refused" in serval_json["reason"]
        assert "serval token failing" in body["problems"]
        assert (await get(running, "/readyz")).status_code == 200  # this replica still takes requests
    finally:
        await running.close()


# --- JSON logs -------------------------------------------------------------------------------------

BOT = "xoxb-1111-2222-secretbottoken"
SIGNING = "signing-secret-7c1f0e"


@pytest.fixture
def json_log(tmp_path):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook)
    settings = make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9", log_level="DEBUG",
                             log_format="json", slack_bot_token=BOT, slack_signing_secret=SIGNING)
    stream = io.StringIO()
    setup_logging(settings, stream)
    yield stream
    root.handlers[:], level, sys.excepthook = saved
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_time_level_logger_message_and_the_context(json_log):
    log = logging.getLogger("tests.json")
    log.info("outside")
    with log_context(user="U1", channel="C1"):
        log.info("in a request")
        with log_context(submission_id="s-42"):
            log.warning("in a submission")
    out = lines(json_log)
    assert [line["message"] for line in out] == ["outside", "in a request", "in a submission"]
    assert set(out[0]) == {"time", "level", "logger", "message"} and out[0]["logger"] == "tests.json"
    assert out[0]["time"].endswith("Z") and out[0]["level"] == "INFO"
    assert (out[1]["user"], out[1]["channel"]) == ("U1", "C1") and "submission_id" not in out[1]
    assert (out[2]["submission_id"], out[2]["user"], out[2]["level"]) == ("s-42", "U1", "WARNING")


async def test_json_context_follows_tasks_and_stays_in_its_own(json_log):
    log = logging.getLogger("tests.json")

    async def submission(sub_id: str) -> None:
        set_log_context(submission_id=sub_id)
        await asyncio.sleep(0)
        log.info("working on %s", sub_id)

    with log_context(user="U9"):
        await asyncio.gather(asyncio.create_task(submission("a")), asyncio.create_task(submission("b")))
    log.info("after")
    out = {line["message"]: line for line in lines(json_log)}
    assert out["working on a"]["submission_id"] == "a" and out["working on b"]["submission_id"] == "b"
    assert out["working on a"]["user"] == "U9"
    assert "submission_id" not in out["after"] and "user" not in out["after"]


def test_json_lines_are_redacted_tracebacks_included(json_log):
    log = logging.getLogger("tests.json")
    try:
        raise RuntimeError(f'Slack said "no" to {BOT}')
    except RuntimeError:
        log.exception("call failed with %s", SIGNING)
    log.info("db at postgresql://bot:pa55word-9@db.internal/x")
    text = json_log.getvalue()
    assert BOT not in text and SIGNING not in text and "pa55word-9" not in text
    out = lines(json_log)
    assert out[0]["message"] == "call failed with [redacted]"
    assert "RuntimeError: Slack said \"no\" to [redacted]" in out[0]["traceback"]
    assert out[1]["message"] == "db at postgresql://bot:[redacted]@db.internal/x"


def test_text_stays_the_default(tmp_path):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook)
    stream = io.StringIO()
    try:
        setup_logging(make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9"), stream)
        logging.getLogger("tests.text").warning("plain")
    finally:
        root.handlers[:], level, sys.excepthook = saved
        root.setLevel(level)
    assert stream.getvalue().rstrip().endswith(" WARNING tests.text: plain")


# --- the form reads top-down -----------------------------------------------------------------------


@pytest.mark.parametrize("on_behalf", [True, False])
def test_the_form_starts_with_title_then_description_then_the_rest(on_behalf):
    origin = Origin(source="command", channel_id="C1111", channel_name="it-help", requester_id="U2")
    assert origin.shareable_channel
    fields = [FormField(id="priority", label="Priority", kind="text")]
    view = views.ticket_modal(origin, fields, on_behalf=on_behalf)
    order = [b.get("block_id") or b["type"] for b in view["blocks"]]
    assert order[:2] == ["title", "description"]
    who = "on_behalf" if on_behalf else "context"
    assert order.index(who) > order.index("description")
    assert order[2] == "share"  # what to do with the text comes right after it
