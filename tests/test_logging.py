"""No secret in any log line or traceback, at any level (LOG_LEVEL=DEBUG): the configured ones,
those the clients learn at run time (`clients.secrets`), and the password in DATABASE_URL."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import urllib.parse

import pytest

from clients import secrets as run_time_secrets
from server.process import setup_logging
from tests.conftest import eventually, make_settings

SIGNING = "signing-secret-7c1f0e"
BOT = "xoxb-1111-2222-secretbottoken"
DB_PASSWORD = "db-pa$$word/9f3"


LIBRARIES = ("aiosqlite", "httpx", "alembic", "slack_sdk.socket_mode", "slack_sdk.web.async_base_client")


@pytest.fixture
def captured(tmp_path):
    yield from capture(tmp_path, "DEBUG")


@pytest.fixture
def captured_info(tmp_path):
    yield from capture(tmp_path, "INFO")


def capture(tmp_path, log_level: str):
    """Logging set up as app.py does at `log_level`, into a string; restored afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook,
             {name: logging.getLogger(name).level for name in LIBRARIES})
    settings = make_settings(
        tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9", log_level=log_level,
        slack_bot_token=BOT, slack_signing_secret=SIGNING, serval_bearer_token="serval-static-token-55",
    ).model_copy(update={"database_url": f"postgresql://bot:{urllib.parse.quote(DB_PASSWORD, safe='')}@127.0.0.1:5432/tickets"})
    stream = io.StringIO()
    setup_logging(settings)
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:], level, sys.excepthook, levels = saved
    root.setLevel(level)
    for name, lvl in levels.items():
        logging.getLogger(name).setLevel(lvl)


def test_configured_secrets_are_redacted_in_messages_arguments_and_tracebacks(captured):
    log = logging.getLogger("tests.logging")
    log.debug("token %s and secret in the message " + SIGNING, BOT)
    try:
        raise RuntimeError(f"Slack said no to {BOT}")
    except RuntimeError:
        log.exception("call failed")
    try:
        raise ValueError("signature " + SIGNING)
    except ValueError as exc:
        log.debug("quiet failure", exc_info=exc)
    log.debug("form body: token=%s", urllib.parse.quote_plus(BOT))
    text = captured.getvalue()
    assert "Traceback" in text and "RuntimeError: Slack said no to [redacted]" in text
    assert "ValueError: signature [redacted]" in text
    assert BOT not in text and SIGNING not in text and urllib.parse.quote_plus(BOT) not in text
    assert "serval-static-token-55" not in text


def test_secrets_learnt_at_run_time_are_redacted_too(captured):
    log = logging.getLogger("tests.logging")
    rotated = "sb-refresh-token-rotated-4f9d2c"
    run_time_secrets.remember(rotated)  # after logging was set up, as a client does on a refresh
    log.debug("POST /token refresh_token=%s", rotated)
    try:
        raise KeyError(rotated)
    except KeyError:
        log.error("refresh failed", exc_info=True)
    text = captured.getvalue()
    assert rotated not in text and text.count("[redacted]") >= 2


def test_a_token_learnt_after_the_first_log_line_is_redacted_too(captured):
    """A client learns tokens while the bot runs, long after the first line was written (a Socialboards
    refresh token rotates on every refresh): the redaction takes in each new one."""
    log = logging.getLogger("tests.logging")
    log.info("started")  # the formatter has written a line before the token exists
    learnt = "sb-access-token-learnt-later-8e21a7"
    run_time_secrets.remember(learnt)
    log.debug("GET /tickets Authorization: Bearer %s", learnt)
    text = captured.getvalue()
    assert "started" in text and "Bearer [redacted]" in text and learnt not in text


def test_the_database_password_is_redacted_wherever_a_url_carries_it(captured):
    log = logging.getLogger("tests.logging")
    log.info("connecting to %s", f"postgresql://bot:{urllib.parse.quote(DB_PASSWORD, safe='')}@127.0.0.1:5432/tickets")
    log.info("password as typed: %s", DB_PASSWORD)
    log.info("another url: postgresql+asyncpg://svc:other-pass-77@db.internal/x")
    text = captured.getvalue()
    assert DB_PASSWORD not in text and urllib.parse.quote(DB_PASSWORD, safe="") not in text
    assert "other-pass-77" not in text and "svc:[redacted]@db.internal" in text


def test_aiosqlite_debug_lines_are_dropped_at_debug_level(captured):
    logging.getLogger("aiosqlite").debug("executing %s with %s", "UPDATE state SET value = ?", ("refresh-abcdef123",))
    logging.getLogger("tests.logging").debug("the bot's own debug line")
    text = captured.getvalue()
    assert "the bot's own debug line" in text  # DEBUG is on
    assert "refresh-abcdef123" not in text and "executing" not in text


def test_an_uncaught_exception_is_logged_through_the_redaction(captured):
    try:
        raise RuntimeError(f"crash with {BOT}")
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    text = captured.getvalue()
    assert "uncaught exception" in text and "RuntimeError: crash with [redacted]" in text and BOT not in text


async def test_a_failing_request_logs_no_secret_at_debug_level(captured, tmp_path, slack, serval):
    """The real bot at DEBUG: a request whose handling raises logs a traceback, without a secret."""
    from server.http import serve_http
    from tests.conftest import SlackSender

    slack_state, slack_url = slack
    slack_state.token = BOT
    running = await serve_http(make_settings(tmp_path, slack_url, serval[1], log_level="DEBUG", slack_bot_token=BOT,
                                             slack_signing_secret=SIGNING), host="127.0.0.1", port=0)
    sender = SlackSender(running.url, secret=SIGNING)

    async def leaky(values):
        raise RuntimeError(f"cannot load the form with {BOT} / {SIGNING}")

    running.bot.backends["serval"].form_fields_for = leaky
    try:
        await sender.command("Leaky")
        await eventually(lambda: "cannot load the form" in captured.getvalue())
        await asyncio.sleep(0.05)
    finally:
        await sender.aclose()
        await running.close()
    text = captured.getvalue()
    assert "Traceback" in text and "cannot load the form with [redacted] / [redacted]" in text
    assert BOT not in text and SIGNING not in text


async def test_slack_sdk_retry_notes_stay_out_of_the_info_log(captured_info, tmp_path):
    """The bot's Web API client retries a refused connection; slack_sdk's "A retry handler found"
    notes are not for an operator at LOG_LEVEL=INFO."""
    from bot.core import slack_client

    client = slack_client(make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9"))
    with pytest.raises(Exception):
        await client.chat_postMessage(channel="C1", text="hello")
    assert "retry handler" not in captured_info.getvalue()


class Spy(str):
    """A text that counts how often it is formatted with repr(), as a log line formats a dict."""

    formatted = 0

    def __repr__(self) -> str:
        Spy.formatted += 1
        return str.__repr__(self)


async def test_above_debug_a_web_api_call_is_not_formatted_for_a_debug_line(tmp_path, slack):
    """slack_sdk formats each request and answer for its debug log unless the level of the logger its
    clients use is set: at LOG_LEVEL=INFO, a views.open is not formatted (whatever its size)."""
    from bot.core import slack_client

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, sys.excepthook,
             {name: logging.getLogger(name).level for name in LIBRARIES})
    try:
        settings = make_settings(tmp_path, slack[1], "http://127.0.0.1:9", log_level="INFO")
        setup_logging(settings, io.StringIO())
        client = slack_client(settings)
        view = {"type": "modal", "title": {"type": "plain_text", "text": Spy("New ticket")},
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": Spy("Printer")}}]}
        Spy.formatted = 0
        resp = await client.views_open(trigger_id="1.2.3", view=view)
        assert resp["ok"] and slack[0].calls_to("views.open")
        assert Spy.formatted == 0
    finally:
        root.handlers[:], level, sys.excepthook, levels = saved
        root.setLevel(level)
        for name, lvl in levels.items():
            logging.getLogger(name).setLevel(lvl)
