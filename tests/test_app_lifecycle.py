"""The bot as an operator runs it: `python app.py` in a subprocess against the Slack, Socket Mode and
Serval stand-ins. Start-up checks (exit 2 naming the setting), SIGTERM and SIGINT in every state of
Socket Mode and during start-up (exit within the bounds), the reconnect log, the first log line, the
HTTP port in Socket Mode, a port clash, and the graceful stop: /readyz 503 at once, the request in
flight finished, the lease handed back.

The deadlines are behavioural: within 5 s when nothing is in flight, never later than 10 s. The
stand-ins answer in milliseconds, so a bot that does what it should stops in well under a second;
the assertions keep the issue's bounds as the limit."""

from __future__ import annotations

import asyncio
import contextvars
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from sandbox.slack_socket import APP_TOKEN, SocketModeServer
from tests.conftest import SlackSender, eventually, submission
from tests.test_reliability import BotProcess, free_port, serval_clients  # noqa: F401  (fixture)
from tests.test_ticket_flow import created, filled, open_modal_with_command

ROOT = Path(__file__).parent.parent
IDLE_BOUND = 5.0  # seconds: stopped within this when nothing is in flight
HARD_BOUND = 10.0  # never later than this


class Bot(BotProcess):
    """BotProcess with the log at INFO (what an operator sees by default) and timing of the exit."""

    def __init__(self, tmp_path: Path, slack_url: str, serval_url: str, *, args: tuple[str, ...] = ("--mode", "http"),
                 **env: str) -> None:
        super().__init__(tmp_path, slack_url, serval_url, args=args)
        self.env.update({"LOG_LEVEL": "INFO", **env})

    async def start_only(self) -> None:
        """Start without waiting for anything."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), *self.args], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)

    async def listening(self) -> None:
        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(self.url + "/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, timeout=20, interval=0.05)

    async def stop_timed(self, sig: int = signal.SIGTERM, bound: float = HARD_BOUND) -> tuple[int, float]:
        """Send `sig`; (exit status, seconds until the process was gone)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        deadline = started + bound + 5
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        elapsed = time.monotonic() - started
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"still running {elapsed:.1f} s after {signal.Signals(sig).name}:\n{self.log()}")
        return self.proc.returncode, elapsed

    async def exited(self, timeout: float = 20) -> int:
        assert self.proc is not None
        await eventually(lambda: self.proc.poll() is not None, timeout=timeout, interval=0.05)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=5) as http:
            return await http.get(self.url + path)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def silent_server():
    """A TCP server that accepts connections and never answers (a hung peer)."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture
async def hung_slack():
    """A Slack Web API that accepts every request and never answers."""

    async def hang(_request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/api/{method}", hang)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/"
    await runner.cleanup()


def socket_bot(tmp_path: Path, slack_url: str, serval_url: str, **env: str) -> Bot:
    return Bot(tmp_path, slack_url, serval_url, args=(), SLACK_APP_TOKEN=APP_TOKEN, **env)


def warnings_about_connecting(text: str) -> list[str]:
    return [line for line in text.splitlines() if "could not connect to Slack" in line]


# --- Socket Mode: stops in every state ---------------------------------------------------------


async def test_sigterm_while_connecting_to_a_refusing_endpoint(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    slack_state.app_token = APP_TOKEN
    slack_state.socket_url = f"ws://127.0.0.1:{closed_port()}/link"  # connection refused, every time
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    await bot.start_only()
    await bot.listening()
    await eventually(lambda: len(warnings_about_connecting(bot.log())) >= 2, timeout=15)
    ready = await bot.get("/readyz")
    assert ready.status_code == 503 and "Socket Mode is connecting" in ready.json()["reasons"]["slack"]
    code, elapsed = await bot.stop_timed(signal.SIGTERM)
    assert code == 0 and elapsed < IDLE_BOUND, (code, elapsed, bot.log())
    text = bot.log()
    # One line per failed attempt, with the reason and the next wait; no traceback at INFO.
    failures = warnings_about_connecting(text)
    assert re.search(r"attempt 1 failed, next in \d+\.\d s", failures[0]) and "attempt 2 failed" in failures[1]
    assert "Traceback" not in text and "ClientConnectorError" in failures[0]


async def test_sigint_while_connecting_to_an_endpoint_that_never_answers(tmp_path, slack, serval_clients, silent_server):  # noqa: F811
    slack_state, slack_url = slack
    slack_state.app_token = APP_TOKEN
    slack_state.socket_url = f"ws://127.0.0.1:{silent_server}/link"  # accepts, never completes the handshake
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    await bot.start_only()
    await bot.listening()
    await eventually(lambda: slack_state.calls_to("apps.connections.open"), timeout=10)
    await asyncio.sleep(0.5)  # in the middle of the WebSocket handshake
    code, elapsed = await bot.stop_timed(signal.SIGINT)
    assert code == 0 and elapsed < IDLE_BOUND, (code, elapsed, bot.log())


async def test_sigterm_while_connected_and_while_reconnecting(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    try:
        await bot.start_only()
        await bot.listening()
        await asyncio.wait_for(server.connected.wait(), 15)
        await eventually(lambda: "Socket Mode: connected to Slack" in bot.log(), timeout=5)
        assert (await bot.get("/readyz")).status_code == 200
        health = (await bot.get("/healthz")).json()
        assert health["slack"] == {"socket_mode": "connected"} and health["mode"] == "socket"

        # Slack goes away: the connection drops and every new one is refused.
        slack_state.socket_url = f"ws://127.0.0.1:{closed_port()}/link"
        for ws in list(server.sockets):
            await ws.close()
        await eventually(lambda: warnings_about_connecting(bot.log()), timeout=30)
        ready = await bot.get("/readyz")
        assert ready.status_code == 503 and "reconnecting" in ready.json()["reasons"]["slack"]
        code, elapsed = await bot.stop_timed(signal.SIGTERM)
        assert code == 0 and elapsed < IDLE_BOUND, (code, elapsed, bot.log())
    finally:
        bot.stop()
        await server.close()


async def test_sigterm_while_connected(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    try:
        await bot.start_only()
        await asyncio.wait_for(server.connected.wait(), 20)
        await eventually(lambda: "Socket Mode: connected to Slack" in bot.log(), timeout=5)
        code, elapsed = await bot.stop_timed(signal.SIGTERM)
        assert code == 0 and elapsed < IDLE_BOUND, (code, elapsed, bot.log())
        assert "stopped in" in bot.log()
    finally:
        bot.stop()
        await server.close()


async def test_sigterm_during_start_up_checks_while_slack_never_answers(tmp_path, serval_clients, hung_slack):  # noqa: F811
    bot = Bot(tmp_path, hung_slack, serval_clients[1])
    await bot.start_only()
    await bot.listening()  # the port answers while auth.test waits
    ready = await bot.get("/readyz")
    assert ready.status_code == 503 and ready.json()["reasons"]["process"] == "starting"
    code, elapsed = await bot.stop_timed(signal.SIGTERM)
    assert code == 0 and elapsed < IDLE_BOUND, (code, elapsed, bot.log())


# --- Socket Mode: the HTTP port, the first line --------------------------------------------------


async def test_socket_mode_port_serves_only_health_and_metrics_and_says_so_first(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    try:
        await bot.start_only()
        await asyncio.wait_for(server.connected.wait(), 20)
        assert (await bot.get("/healthz")).status_code == 200
        assert (await bot.get("/metrics")).status_code == 200
        async with httpx.AsyncClient() as http:
            assert (await http.post(bot.url + "/slack/events", content=b"x")).status_code == 404
        first = bot.log().splitlines()[0]
        assert "starting in Socket Mode" in first and "/healthz, /readyz and /metrics" in first
    finally:
        bot.stop()
        await server.close()


async def test_http_mode_first_line_names_the_mode(tmp_path, slack, serval_clients):  # noqa: F811
    bot = Bot(tmp_path, slack[1], serval_clients[1])
    await bot.start()
    try:
        assert "starting in HTTP mode" in bot.log().splitlines()[0]
        await eventually(lambda: "started;" in bot.log(), timeout=10)
        assert (await bot.get("/readyz")).json() == {"ready": True}
    finally:
        code, elapsed = await bot.stop_timed(signal.SIGTERM)
    assert code == 0 and elapsed < IDLE_BOUND


# --- start-up checks: exit 2 naming the setting -------------------------------------------------


async def test_a_refused_bot_token_stops_start_up_naming_it(tmp_path, slack, serval_clients):  # noqa: F811
    slack[0].token = "xoxb-some-other-token"  # Slack answers invalid_auth to the bot's
    bot = Bot(tmp_path, slack[1], serval_clients[1])
    await bot.start_only()
    assert await bot.exited() == 2
    text = bot.log()
    assert "SLACK_BOT_TOKEN" in text and "invalid_auth" in text and BotProcess.SECRETS["SLACK_BOT_TOKEN"] not in text


async def test_a_refused_app_token_stops_the_bot_naming_it(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state, app_token="xapp-1-A111-1-another")
    bot = socket_bot(tmp_path, slack_url, serval_clients[1])
    try:
        await bot.start_only()
        assert await bot.exited() == 2
    finally:
        bot.stop()
        await server.close()
    text = bot.log()
    assert "SLACK_APP_TOKEN" in text and "invalid_auth" in text and APP_TOKEN not in text


async def test_refused_ticket_system_credentials_stop_start_up_naming_them(tmp_path, slack, serval_clients):  # noqa: F811
    serval_clients[0].clients["test-client"] = "another-secret"
    bot = Bot(tmp_path, slack[1], serval_clients[1])
    await bot.start_only()
    assert await bot.exited() == 2
    text = bot.log()
    assert "Start-up refused" in text and "SERVAL_CLIENT_ID and SERVAL_CLIENT_SECRET" in text
    assert BotProcess.SECRETS["SERVAL_CLIENT_SECRET"] not in text


async def test_an_unreachable_ticket_system_starts_anyway_and_healthz_says_since_when(tmp_path, slack):
    slack[0].token = BotProcess.SECRETS["SLACK_BOT_TOKEN"]
    port = closed_port()
    bot = Bot(tmp_path, slack[1], f"http://127.0.0.1:{port}")
    await bot.start()
    try:
        await eventually(lambda: "started;" in bot.log(), timeout=15)
        # The line names the host and the cause, as the Slack line does.
        unreachable = f"Serval could not be reached at 127.0.0.1:{port} (ConnectError: Connection refused)"
        assert f"{unreachable}; starting anyway" in bot.log()
        health = await bot.get("/healthz")
        assert health.status_code == 200
        serval = health.json()["ticket_systems"]["serval"]
        assert serval["state"] == "unreachable" and serval["reason"] == unreachable and serval["since"]
        assert health.json()["ok"] is False
        assert (await bot.get("/readyz")).status_code == 200  # an outage never takes the replica out
    finally:
        code, elapsed = await bot.stop_timed(signal.SIGTERM)
    assert code == 0 and elapsed < IDLE_BOUND


async def test_a_port_in_use_is_a_clear_message_and_exit_2(tmp_path, slack, serval_clients):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = Bot(tmp_path, slack[1], serval_clients[1], PORT=str(port))
        await bot.start_only()
        assert await bot.exited() == 2
    assert f"PORT {port} is already in use on HOST 127.0.0.1" in bot.log()
    assert "Traceback" not in bot.log()


# --- graceful stop (issue 12) --------------------------------------------------------------------


async def test_sigterm_readiness_turns_503_at_once_and_the_submission_in_flight_finishes(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    bot = Bot(tmp_path, slack_url, serval_url)
    await bot.start()
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    try:
        await eventually(lambda: "started;" in bot.log(), timeout=10)
        view = await open_modal_with_command(sender, slack_state, "")
        serval_state.latency = 2.0  # the ticket is still being created when the signal comes
        r = await sender.interactive(submission(view, filled("In flight at SIGTERM"), view_id="VSTOP"))
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        assert bot.proc is not None
        started = time.monotonic()
        bot.proc.send_signal(signal.SIGTERM)
        ready = None
        for _ in range(50):  # /readyz says 503 before the process is gone
            try:
                ready = await bot.get("/readyz")
                break
            except httpx.TransportError:
                await asyncio.sleep(0.01)
        assert ready is not None and ready.status_code == 503 and ready.json()["reasons"] == {"process": "shutting down"}
        await eventually(lambda: bot.proc.poll() is not None, timeout=HARD_BOUND + 2, interval=0.05)
        elapsed = time.monotonic() - started
        assert bot.proc.returncode == 0 and elapsed < HARD_BOUND, (elapsed, bot.log())
        assert [t["name"] for t in created(serval_state)] == ["In flight at SIGTERM"], bot.log()
        assert "created serval" in bot.log()  # the submission in flight finished before the exit
    finally:
        await sender.aclose()
        bot.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "bot.db") as db:
        held = db.execute("SELECT count(*) FROM submissions WHERE owner IS NOT NULL").fetchone()[0]
    assert held == 0  # every lease handed back


async def test_idle_http_bot_stops_within_the_bound_on_sigint(tmp_path, slack, serval_clients):  # noqa: F811
    bot = Bot(tmp_path, slack[1], serval_clients[1])
    await bot.start()
    await eventually(lambda: "started;" in bot.log(), timeout=10)
    code, elapsed = await bot.stop_timed(signal.SIGINT)
    assert code == 0 and elapsed < IDLE_BOUND, (elapsed, bot.log())
    assert "SIGINT received: stopping" in bot.log()


async def test_the_task_factory_takes_the_keyword_arguments_newer_pythons_pass():
    """Python 3.13.3 calls a task factory as `factory(loop, coro, **kwargs)` with `name=` and `context=`
    (3.14 adds `eager_start=`); the installed factory takes them, names the task and still counts a
    task started while a Slack request is handled, so the graceful stop waits for it."""
    from server.bolt import InFlight

    inflight = InFlight()
    inflight.install()
    loop = asyncio.get_running_loop()
    factory = loop.get_task_factory()
    assert factory is not None
    done = asyncio.Event()
    try:
        with inflight.request():
            context = contextvars.copy_context()
        task = factory(loop, done.wait(), name="submission VX", context=context)
        assert task.get_name() == "submission VX"
        assert inflight.busy == 1  # the task started for the request is in flight
        done.set()
        await task
        await eventually(lambda: inflight.busy == 0)
    finally:
        loop.set_task_factory(None)


# --- JSON logs from the real process --------------------------------------------------------------


async def test_json_logs_one_object_per_line_with_the_slack_context_and_no_secret(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    bot = Bot(tmp_path, slack_url, serval_clients[1], LOG_FORMAT="json", LOG_LEVEL="DEBUG")
    await bot.start()
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    try:
        await eventually(lambda: "started;" in bot.log(), timeout=10)
        view = await open_modal_with_command(sender, slack_state, "JSON please")
        await sender.interactive(submission(view, filled("JSON please"), view_id="VJSON"))
        await eventually(lambda: "created serval" in bot.log(), timeout=10)
    finally:
        await sender.aclose()
        code, _ = await bot.stop_timed(signal.SIGTERM)
    assert code == 0
    lines = [json.loads(line) for line in bot.log().splitlines() if line.strip()]
    # the ticket service's lines name the submission, its person and channel
    created_line = next(line for line in lines if "created serval" in line["message"])
    assert created_line.get("submission_id") and created_line.get("user") == "U111" and created_line.get("channel") == "C111"
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert "starting in HTTP mode" in lines[0]["message"]
    assert any(line.get("user") == "U111" and line.get("channel") == "C111" for line in lines)
    text = bot.log()
    for secret in BotProcess.SECRETS.values():
        assert secret not in text


async def test_a_submission_that_would_take_longer_never_holds_the_stop_past_10_s(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    bot = Bot(tmp_path, slack_url, serval_url)
    await bot.start()
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    try:
        await eventually(lambda: "started;" in bot.log(), timeout=10)
        view = await open_modal_with_command(sender, slack_state, "")
        serval_state.latency = 12.0  # the create takes longer than the whole stop may
        r = await sender.interactive(submission(view, filled("Stuck at SIGTERM"), view_id="VSLOW"))
        assert r.status_code == 200
        await asyncio.sleep(0.3)
        code, elapsed = await bot.stop_timed(signal.SIGTERM)
        assert code == 0 and elapsed < HARD_BOUND, (elapsed, bot.log())
    finally:
        await sender.aclose()
        bot.stop()
    import sqlite3

    with sqlite3.connect(tmp_path / "bot.db") as db:
        rows = db.execute("SELECT status, owner FROM submissions").fetchall()
    assert rows == [("pending", None)]  # not lost: it resumes at the next start, on any replica


# --- a second signal (issue 18, item 17) --------------------------------------------------------


async def submit_in_flight(bot: Bot, slack_state, serval_state, title: str, latency: float) -> SlackSender:  # noqa: ANN001
    """A submission whose ticket is still being created (Serval answers after `latency` s)."""
    sender = SlackSender(bot.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    await eventually(lambda: "started;" in bot.log(), timeout=10)
    view = await open_modal_with_command(sender, slack_state, "")
    serval_state.delay("POST /v2/tickets", latency)
    r = await sender.interactive(submission(view, filled(title), view_id="V" + title.replace(" ", "")[:8].upper()))
    assert r.status_code == 200
    await eventually(lambda: created(serval_state), timeout=5)  # asked, not answered yet
    return sender


async def test_sigint_then_sigterm_soon_after_is_one_graceful_stop(tmp_path, slack, serval_clients):  # noqa: F811
    """Ctrl-C under a supervisor: the terminal's SIGINT reaches the bot, the supervisor's SIGTERM
    follows a moment later. Both are the same request: the bot stops as for one signal."""
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    bot = Bot(tmp_path, slack_url, serval_url)
    await bot.start()
    sender = await submit_in_flight(bot, slack_state, serval_state, "Twice signalled", latency=2.0)
    try:
        assert bot.proc is not None
        bot.proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.3)  # the supervisor's signal, a moment later
        assert bot.proc.poll() is None  # still stopping: the submission is in flight
        code, _ = await bot.stop_timed(signal.SIGTERM)
    finally:
        await sender.aclose()
        bot.stop()
    text = bot.log()
    assert code == 0, text
    assert "SIGINT received: stopping" in text and re.search(r"stopped in \d+\.\d s", text), text
    assert "exiting now" not in text
    assert [t["name"] for t in created(serval_state)] == ["Twice signalled"]
    assert "created serval" in text  # the submission in flight finished
    assert not (tmp_path / "bot.db-wal").exists() and not (tmp_path / "bot.db-shm").exists()


async def test_a_second_signal_after_the_window_exits_at_once(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    bot = Bot(tmp_path, slack_url, serval_url)
    await bot.start()
    sender = await submit_in_flight(bot, slack_state, serval_state, "Stuck twice", latency=12.0)
    try:
        assert bot.proc is not None
        bot.proc.send_signal(signal.SIGTERM)
        await eventually(lambda: "SIGTERM received: stopping" in bot.log(), timeout=5)
        await asyncio.sleep(2.5)  # past the 2 s in which a second signal is the same request
        assert bot.proc.poll() is None  # still waiting for the submission
        code, elapsed = await bot.stop_timed(signal.SIGTERM, bound=2.0)
    finally:
        await sender.aclose()
        bot.stop()
    assert code == 1 and "SIGTERM again: exiting now" in bot.log(), bot.log()
