"""Fixtures that run the real bot over HTTP on loopback, against local stand-ins of Slack's Web API
and Serval, and send it requests signed the way Slack signs them."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.settings import Settings
from sandbox import serval as serval_sandbox
from sandbox import slack as slack_sandbox
from server.http import Running, serve_http

PAYLOADS = Path(__file__).parent / "payloads"
SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test"
SERVAL_TOKEN = "test-token"


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / name).read_text())


async def eventually(check, timeout: float = 5.0, interval: float = 0.02):
    """Wait until check() returns something truthy; return it. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class SlackSender:
    """Sends requests to the bot as Slack does: form-encoded, signed with the signing secret."""

    def __init__(self, url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = url + "/slack/events"
        self.verifier = SignatureVerifier(secret)
        self.http = httpx.AsyncClient(timeout=10)

    async def post(self, body: str, *, timestamp: int | None = None, signature: str | None = None,
                   content_type: str = "application/x-www-form-urlencoded",
                   headers: dict[str, str] | None = None) -> httpx.Response:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature or self.verifier.generate_signature(timestamp=ts, body=body)
        return await self.http.post(
            self.url,
            content=body.encode(),
            headers={
                "Content-Type": content_type,
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": sig,
                **(headers or {}),
            },
        )

    async def event(self, body: dict[str, Any], *, retry: int = 0, reason: str = "http_timeout") -> httpx.Response:
        """An Events API delivery: the JSON body, signed; `retry` > 0 is Slack's redelivery
        (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`)."""
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": reason} if retry else {}
        return await self.post(json.dumps(body), content_type="application/json", headers=headers)

    async def command(self, text: str = "", **fields: str) -> httpx.Response:
        form = {
            "token": "verification_token",
            "team_id": "T111",
            "team_domain": "test",
            "channel_id": "C111",
            "channel_name": "dev",
            "user_id": "U111",
            "user_name": "alice",
            "command": "/ticket",
            "text": text,
            "response_url": "https://hooks.slack.com/commands/T111/1/x",
            "trigger_id": f"{time.time_ns()}.111.abc",
            "api_app_id": "A111",
        }
        form.update(fields)
        return await self.post(urllib.parse.urlencode(form))

    async def interactive(self, data: dict[str, Any]) -> httpx.Response:
        return await self.post(urllib.parse.urlencode({"payload": json.dumps(data)}))

    async def aclose(self) -> None:
        await self.http.aclose()


def submission(view: dict[str, Any], values: dict[str, Any], *, user_id: str = "U111", view_id: str | None = None) -> dict[str, Any]:
    """A view_submission for a modal the bot opened, with the given state values."""
    body = payload("view_submission.DERIVED.ticket_modal.json")
    body["user"]["id"] = user_id
    body["view"] = {
        **body["view"],
        "id": view_id or view.get("id") or f"V{time.time_ns()}",
        "blocks": view["blocks"],
        "private_metadata": view.get("private_metadata", ""),
        "callback_id": view.get("callback_id", "ticket_modal"),
        "state": {"values": values},
    }
    body["response_urls"] = []
    return body


def text_value(value: str | None) -> dict[str, Any]:
    return {"value": {"type": "plain_text_input", "value": value}}


def select_value(value: str | None) -> dict[str, Any]:
    option = None if value is None else {"text": {"type": "plain_text", "text": value}, "value": value}
    return {"value": {"type": "static_select", "selected_option": option}}


def date_value(value: str | None) -> dict[str, Any]:
    return {"value": {"type": "datepicker", "selected_date": value}}


def share_value(checked: bool) -> dict[str, Any]:
    options = [{"text": {"type": "mrkdwn", "text": "Share"}, "value": "share"}] if checked else []
    return {"value": {"type": "checkboxes", "selected_options": options}}


@pytest.fixture
async def serval() -> AsyncIterator[tuple[Any, str]]:
    state = serval_sandbox.ServalState()
    runner, url = await serval_sandbox.start(state)
    yield state, url
    await runner.cleanup()


@pytest.fixture
async def slack() -> AsyncIterator[tuple[Any, str]]:
    state = slack_sandbox.SlackState()
    runner, url = await slack_sandbox.start(state)
    yield state, url
    await runner.cleanup()


def make_settings(tmp_path: Path, slack_url: str, serval_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token=None,
        slack_api_url=slack_url,
        serval_base_url=serval_url,
        serval_bearer_token=SERVAL_TOKEN,
        serval_team_id="team-it",
        serval_slack_integration_id="integ-slack-1",
        database_url=f"sqlite:///{tmp_path}/bot.db",
        host="127.0.0.1",
        port=0,
        queued_after_seconds=2.5,
        _env_file=None,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, slack, serval) -> Settings:
    return make_settings(tmp_path, slack[1], serval[1])


@pytest.fixture
async def running(settings: Settings) -> AsyncIterator[Running]:
    """The bot, started: tests begin once the `auth.test` it asks at start has answered (its own user id,
    the workspace URL for message links). The moments before that have tests of their own."""
    r = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        await eventually(lambda: r.bot.people.known_workspace, timeout=10)
        yield r
    finally:
        await r.close()


@pytest.fixture
async def sender(running: Running) -> AsyncIterator[SlackSender]:
    s = SlackSender(running.url)
    yield s
    await s.aclose()


# --- Rezolve.ai and Socialboards sandboxes -------------------------------------------------------


@pytest.fixture
async def rezolve() -> AsyncIterator[tuple[Any, str]]:
    from sandbox import rezolve as rezolve_sandbox

    state = rezolve_sandbox.RezolveState()
    runner, url = await rezolve_sandbox.start(state)
    yield state, url
    await runner.cleanup()


@pytest.fixture
async def socialboards() -> AsyncIterator[tuple[Any, str]]:
    from sandbox import socialboards as socialboards_sandbox

    state = socialboards_sandbox.SocialboardsState()
    runner, url = await socialboards_sandbox.start(state)
    yield state, url
    await runner.cleanup()


# --- PostgreSQL (tests/pg.py): one throwaway server per test session -------------------------------


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on 127.0.0.1 (initdb + pg_ctl in a temp dir), stopped after the
    session. Skipped, with the reason, where PostgreSQL is not installed; under CI=true that fails."""
    from tests import pg

    server = pg.server_or_skip()
    yield server
    pg.stop_server(server)


@pytest.fixture
def pg_url(pg_server):
    """A new, empty database on the test server, as postgresql://user:pass@127.0.0.1:port/db."""
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """DATABASE_URL of an empty database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/bot.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
async def storage(db_url):
    """bot.journal.storage.Storage open on `db_url` (each engine in turn)."""
    from bot.journal.storage import Storage

    s = await Storage(db_url).open()
    yield s
    await s.close()
