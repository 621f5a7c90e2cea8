"""No ticket lost, none duplicated: under injected faults, crashes, replays and bad input."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.serval import Fault
from server.http import serve_http
from tests.conftest import (
    BOT_TOKEN,
    SERVAL_TOKEN,
    SIGNING_SECRET,
    SlackSender,
    eventually,
    make_settings,
    payload,
    submission,
)
from tests.test_ticket_flow import created, filled, open_modal_with_command, open_modal_with_shortcut, shortcut

ROOT = Path(__file__).parent.parent
N = int(os.environ.get("RELIABILITY_N", "500"))


def told(slack_state: Any) -> Counter[str]:
    """How many times each ticket title was successfully announced to its submitter."""
    seen: Counter[str] = Counter()
    for call in slack_state.calls:
        if call["method"] in ("chat.postEphemeral", "chat.postMessage") and not call.get("error"):
            found = re.search(r"Your ticket \*[^*]+\* was created: ([^\n]+)", call["args"].get("text", ""))
            if found:
                seen[found.group(1)] += 1
    return seen


def shortcut_on_new_message(slack_state: Any, i: int) -> dict[str, Any]:
    message = slack_state.post_user_message("C111", "U222", f"Problem number {i}\nDetails {i}")
    body = shortcut()
    body["message"] = {**body["message"], "ts": message["ts"], "text": message["text"], "user": "U222"}
    body["message_ts"] = message["ts"]
    body["trigger_id"] = f"{i}.{time.time_ns()}"
    return body


async def test_500_submissions_under_faults_make_exactly_500_tickets(tmp_path, slack, serval, db_url):
    """On both engines: SQLite (one process) and PostgreSQL (what replicas share)."""
    slack_state, slack_url = slack
    serval_state, serval_url = serval
    settings = make_settings(tmp_path, slack_url, serval_url, database_url=db_url, retry_base_seconds=0.02, retry_max_seconds=0.2,
                             queued_after_seconds=0.5, serval_timeout=1.0)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        command_view = await open_modal_with_command(sender, slack_state, "")
        serval_state.set_faults({
            # ~20% of calls misbehave, every kind of fault
            "POST /v2/tickets": Fault(error_rate=0.05, status=500, rate_limit_rate=0.04, retry_after=0,
                                      drop_rate=0.04, lost_response_rate=0.05, latency=0.002),
            "POST /v2/tickets/{ticket_id}/connect": Fault(error_rate=0.08, status=503, drop_rate=0.05,
                                                          lost_response_rate=0.05),
            "GET /v2/tickets": Fault(error_rate=0.1, status=502),
            "GET /v2/users": Fault(error_rate=0.2, status=500),
        })
        slack_state.rate_limit("chat.postMessage", times=5, retry_after=0)
        slack_state.fail("chat.postEphemeral", "internal_error", times=5)
        gate = asyncio.Semaphore(25)
        late: list[str] = []  # not acknowledged within Slack's 3 s (a machine too busy): Slack shows an error

        async def one(i: int) -> None:
            async with gate:
                title = f"Ticket {i:03d}"
                if i % 2:
                    view = await open_modal_with_shortcut(sender, slack_state, shortcut_on_new_message(slack_state, i))
                    body = submission(view, filled(title), view_id=f"VS{i}")
                else:
                    body = submission(command_view, filled(title, share=True), view_id=f"VC{i}")
                r = await sender.interactive(body)
                if r.status_code == 404 and "unhandled" in r.text:  # Bolt gave up waiting for the ack
                    late.append(title)
                    return
                assert r.status_code == 200 and r.json()["response_action"] == "update", r.text

        await asyncio.gather(*(one(i) for i in range(N)))
        # Under heavy CPU contention a few acknowledgements can miss Slack's 3 s; the journal may
        # still have taken those submissions. Everything acknowledged is a ticket, nothing twice.
        assert len(late) <= N // 20, f"{len(late)} submissions not acknowledged in time"
        await eventually(lambda: sum(told(slack_state).values()) >= N - len(late), timeout=120)
        await running.bot.tickets.idle(timeout=30)

        names = Counter(t["name"] for t in serval_state.tickets.values())
        acked = {f"Ticket {i:03d}" for i in range(N)} - set(late)
        assert acked <= set(names) <= acked | set(late) and max(names.values()) == 1, f"{len(names)} tickets"
        made = len(names)
        for ticket_id, ticket in serval_state.tickets.items():
            assert len(serval_state.connections.get(ticket_id, [])) == 1, ticket["name"]
        announced = told(slack_state)
        assert set(announced) == set(names) and max(announced.values()) == 1
        assert await running.bot.storage.counts() == {"done": made}
        faults = Counter(r["path"] for r in serval_state.requests)
        assert faults["/v2/tickets"] > N  # the faults really happened and were retried
    finally:
        await sender.aclose()
        await running.close()


async def test_lost_response_on_create_does_not_duplicate(tmp_path, slack, serval, db_url):
    slack_state, slack_url = slack
    serval_state, serval_url = serval
    serval_state.faults["POST /v2/tickets"] = Fault(next_n=["lost", "drop", "lost"])
    settings = make_settings(tmp_path, slack_url, serval_url, database_url=db_url, retry_base_seconds=0.01)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        view = await open_modal_with_command(sender, slack_state, "")
        await sender.interactive(submission(view, filled("Only once")))
        message = (await slack_state.wait_for("chat.postEphemeral"))[0]["args"]["text"]
        assert len(serval_state.tickets) == 1
        ticket = next(iter(serval_state.tickets.values()))
        assert ticket["friendlyIdentifier"] in message
        # the first (lost) attempt created it; the retry looked it up instead of creating again
        assert len(created(serval_state)) == 1
        assert any(r["method"] == "POST" and r["path"] == "/v2/tickets/search" for r in serval_state.requests)
    finally:
        await sender.aclose()
        await running.close()


@pytest.mark.parametrize("limit", [1, 3])
async def test_tickets_in_flight_are_bounded_and_the_rest_wait_their_turn(tmp_path, slack, serval, limit):
    slack_state, slack_url = slack
    serval_state, serval_url = serval
    serval_state.latency = 0.1
    settings = make_settings(tmp_path, slack_url, serval_url, max_tickets_in_flight=limit)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        views = [await open_modal_with_command(sender, slack_state, "") for _ in range(8)]
        answers = await asyncio.gather(*(sender.interactive(submission(v, filled(f"Burst {i}"))) for i, v in enumerate(views)))
        assert all(a.status_code == 200 for a in answers)
        await eventually(lambda: len(told(slack_state)) == 8, timeout=10)
        assert len(serval_state.tickets) == 8
        assert serval_state.peak_in_flight["POST /v2/tickets"] == limit
    finally:
        await sender.aclose()
        await running.close()


async def test_replayed_slack_request_makes_one_ticket(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "")
    body = json.dumps(submission(view, filled("Replayed"), view_id="VREPLAY"))
    import urllib.parse

    raw = urllib.parse.urlencode({"payload": body})
    ts = int(time.time())
    first = await sender.post(raw, timestamp=ts)
    replay = await sender.post(raw, timestamp=ts)  # byte-identical, same signature
    assert first.status_code == replay.status_code == 200
    await slack_state.wait_for("chat.postEphemeral")
    await asyncio.sleep(0.2)
    assert len(serval[0].tickets) == 1
    assert len(slack_state.calls_to("chat.postEphemeral")) == 1


async def test_slack_rate_limit_is_honoured(sender, slack, serval):
    slack_state, _ = slack
    slack_state.rate_limit("chat.postEphemeral", times=1, retry_after=0)
    view = await open_modal_with_command(sender, slack_state, "")
    await sender.interactive(submission(view, filled("Rate limited")))
    calls = await eventually(lambda: [c for c in slack_state.calls_to("chat.postEphemeral") if not c.get("error")])
    assert len(calls) == 1
    assert slack_state.calls_to("chat.postEphemeral")[0]["status"] == 429


# --- bad input --------------------------------------------------------------------------------


async def test_oversize_description_is_an_inline_error(sender, slack, serval):
    view = await open_modal_with_command(sender, slack[0], "")
    r = await sender.interactive(submission(view, filled("Fine", description="x" * 3001)))
    assert r.json() == {"response_action": "errors",
                        "errors": {"description": "Keep the description under 3000 characters (it has 3001)."}}
    assert created(serval[0]) == []


async def test_select_value_not_offered_is_an_inline_error(sender, slack, serval):
    view = await open_modal_with_command(sender, slack[0], "")
    r = await sender.interactive(submission(view, filled("Fine", kind="TICKET_TYPE_JOURNEY")))
    assert r.json()["errors"] == {"field:type": "Pick one of the listed options."}


async def test_long_message_prefill_fits_slacks_limits(sender, slack):
    body = shortcut()
    body["message"]["text"] = "word " * 2000  # 10,000 characters
    view = await open_modal_with_shortcut(sender, slack[0], body)
    description = next(b for b in view["blocks"] if b.get("block_id") == "description")["element"]
    assert len(description["initial_value"]) <= description["max_length"] == 3000
    assert [c for c in slack[0].calls_to("views.open") if c.get("error")] == []


@pytest.mark.parametrize(
    "requester, expect_requester, note",
    [
        ("UNOEMAIL", False, "Requested in Slack by"),  # no visible e-mail
        ("UDELETED", False, "deactivated in Slack"),  # deactivated Slack user
        ("UNKNOWN9", False, "an unknown Slack user"),  # users.info: user_not_found
        ("U222", True, "bob@example.com"),  # matched by e-mail
    ],
)
async def test_requesters_that_cannot_be_matched_still_get_a_ticket(sender, slack, serval, requester, expect_requester, note):
    slack_state, _ = slack
    body = shortcut()
    body["message"]["user"] = requester
    view = await open_modal_with_shortcut(sender, slack_state, body)
    await sender.interactive(submission(view, filled("Who asked?")))
    await slack_state.wait_for("chat.postEphemeral")
    ticket = created(serval[0])[0]
    assert ("requesterUserId" in ticket) is expect_requester
    assert note in ticket["description"]


async def test_unknown_submitter_still_gets_a_ticket(sender, slack, serval):
    slack_state, _ = slack
    view = await open_modal_with_command(sender, slack_state, "")
    await sender.interactive(submission(view, filled("Ghost"), user_id="UGHOST1"))
    await eventually(lambda: created(serval[0]))
    assert "createdByUserId" not in created(serval[0])[0]


@pytest.mark.parametrize(
    "raw",
    [
        "payload=%7Bnot-json",  # malformed JSON
        "payload=" + json.dumps({"type": "view_submission"})[:20],  # truncated
        "payload=%5B%5D",  # JSON, but not an object
        "",  # empty body
        "payload=" + json.dumps({"type": "view_submission", "view": {"callback_id": "ticket_modal"}}),  # no state, no user
        "payload=" + json.dumps({"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": "ticket_modal", "state": "x"}}),
    ],
)
async def test_malformed_payloads_get_a_clear_http_answer(sender, slack, serval, raw):
    r = await sender.post(raw)
    assert r.status_code in (200, 400, 404)
    if r.status_code == 200 and r.content:
        assert r.json()["response_action"] == "errors"
    assert created(serval[0]) == []
    health = await sender.http.get(sender.url.replace("/slack/events", "/healthz"))
    assert health.status_code == 200  # the bot is still up


async def test_unknown_callback_id_is_answered_404_without_side_effects(sender, slack, serval):
    body = payload("view_submission.bolt-tests.basic.json")  # callback_id "view-id"
    r = await sender.interactive(body)
    assert r.status_code == 404
    other = shortcut()
    other["callback_id"] = "someone_elses_shortcut"
    assert (await sender.interactive(other)).status_code == 404
    assert slack[0].calls_to("views.open") == [] and created(serval[0]) == []


async def test_missing_signature_headers_are_rejected(sender):
    r = await sender.http.post(sender.url, content=b"command=%2Fticket", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 401


async def test_database_file_is_private(running, settings):
    mode = stat.S_IMODE(os.stat(settings.database_path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(Path(settings.database_path).parent).st_mode) & 0o077 == 0


# --- the bot as a real process: crashes and logs ---------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotProcess:
    SECRETS = {
        "SLACK_BOT_TOKEN": "xoxb-1111-2222-secretbottoken",
        "SLACK_SIGNING_SECRET": "signing-secret-7c1f0e",
        "SERVAL_CLIENT_SECRET": "serval-client-secret-93ab",
    }

    def __init__(self, tmp_path: Path, slack_url: str, serval_url: str, *, args: tuple[str, ...] = ("--mode", "http"), **env: str) -> None:
        self.args = args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "bot.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
        self.env.update(
            SLACK_API_URL=slack_url,
            SERVAL_BASE_URL=serval_url,
            SERVAL_CLIENT_ID="test-client",
            SERVAL_TEAM_ID="team-it",
            SERVAL_SLACK_INTEGRATION_ID="integ-slack-1",
            DATABASE_URL=f"sqlite:///{tmp_path}/bot.db",
            HOST="127.0.0.1",
            PORT=str(self.port),
            RETRY_BASE_SECONDS="0.05",
            LOG_LEVEL="DEBUG",
            **self.SECRETS,
            **env,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *self.args], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(self.url + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, timeout=20, interval=0.1)

    def kill(self) -> None:
        assert self.proc
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def serval_clients(serval, slack):
    serval[0].clients["test-client"] = BotProcess.SECRETS["SERVAL_CLIENT_SECRET"]
    slack[0].token = BotProcess.SECRETS["SLACK_BOT_TOKEN"]
    return serval


async def test_sigkill_mid_flight_then_restart_loses_and_duplicates_nothing(tmp_path, slack, serval_clients, db_url):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    serval_state.latency = 0.3  # keep creates in flight when the bot dies
    bot = BotProcess(tmp_path, slack_url, serval_url)
    bot.env["DATABASE_URL"] = db_url
    await bot.start()
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    acked: list[str] = []
    try:
        view = await open_modal_with_command(sender, slack_state, "")

        async def submit(i: int) -> None:
            try:
                r = await sender.interactive(submission(view, filled(f"Crash {i:02d}", share=True), view_id=f"VK{i}"))
                if r.status_code == 200 and r.json().get("response_action") == "update":
                    acked.append(f"Crash {i:02d}")
            except httpx.TransportError:
                pass  # not acknowledged: Slack would show the person an error and keep the form

        first = [asyncio.create_task(submit(i)) for i in range(30)]
        await eventually(lambda: len(acked) >= 20, timeout=10)
        await asyncio.sleep(0.35)  # some creates have reached Serval, others not
        bot.kill()
        await asyncio.gather(*first)
        assert len(serval_state.tickets) < len(acked), "the kill came too late to test anything"

        await bot.start()  # same database: unfinished submissions resume
        await eventually(lambda: set(acked) <= {t["name"] for t in serval_state.tickets.values()}, timeout=30)
        await asyncio.sleep(1.0)  # let any duplicate show up
        names = Counter(t["name"] for t in serval_state.tickets.values())
        assert max(names.values()) == 1, [n for n, c in names.items() if c > 1]
        await eventually(lambda: set(acked) <= set(told(slack_state)), timeout=30)
        for ticket_id in serval_state.tickets:
            assert len(serval_state.connections.get(ticket_id, [])) == 1
    finally:
        bot.stop()
        await sender.aclose()

    logs = bot.log_path.read_text()
    assert "DEBUG" in logs and "resuming" in logs
    for secret in BotProcess.SECRETS.values():
        assert secret not in logs


async def test_debug_logs_never_contain_secrets(tmp_path, slack, serval_clients):
    slack_state, slack_url = slack
    bot = BotProcess(tmp_path, slack_url, serval_clients[1])
    await bot.start()
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    try:
        view = await open_modal_with_command(sender, slack_state, "Logged")
        await sender.interactive(submission(view, filled("Logged", share=True)))
        view = await open_modal_with_shortcut(sender, slack_state, shortcut())
        await sender.interactive(submission(view, filled("Logged too")))
        await eventually(lambda: len(told(slack_state)) == 2, timeout=10)
        assert (await sender.post("command=%2Fticket", signature="v0=bad")).status_code == 401
    finally:
        bot.stop()
        await sender.aclose()
    logs = bot.log_path.read_text()
    assert "DEBUG" in logs and "chat.postMessage" in logs  # the logs really are verbose
    token = [r for r in serval_clients[0].requests if r["path"] == "/v2/auth/token"]
    assert token, "the bot used client credentials"
    for secret in BotProcess.SECRETS.values():
        assert secret not in logs
    for issued in getattr(serval_clients[0], "issued_tokens", {}) or {}:
        assert issued not in logs
