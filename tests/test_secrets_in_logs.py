"""Every back end at LOG_LEVEL=DEBUG: no token a stand-in issued at run time (Serval access tokens,
Rezolve.ai JWTs and refresh tokens, Socialboards access and rotated refresh tokens), no configured
secret and no database password appears anywhere in the whole log (issue 11, item 16)."""

from __future__ import annotations

from typing import Any

import pytest

from server.http import serve_http
from tests.conftest import eventually, make_settings
from tests.test_backend_rezolve import rezolve_settings
from tests.test_backend_socialboards import socialboards_settings
from tests.test_logging import BOT, SIGNING, captured  # noqa: F401 (fixture)

SERVAL_SECRET = "serval-client-secret-93ab"


def issued(name: str, state: Any) -> set[str]:
    if name == "serval":
        return set(state.issued_tokens)
    if name == "rezolve":
        return set(state.issued_tokens)
    return set(state.access_tokens) | {state.refresh_token}


@pytest.mark.parametrize("name", ["serval", "rezolve", "socialboards"])
async def test_no_token_a_stand_in_issued_reaches_the_log(name, captured, tmp_path, slack, serval,  # noqa: F811
                                                           rezolve, socialboards):
    slack_state, slack_url = slack
    slack_state.token = BOT
    secrets = dict(slack_bot_token=BOT, slack_signing_secret=SIGNING, log_level="DEBUG")
    if name == "serval":
        state, url = serval
        state.clients["test-client"] = SERVAL_SECRET
        settings = make_settings(tmp_path, slack_url, url, serval_bearer_token=None, serval_client_id="test-client",
                                 serval_client_secret=SERVAL_SECRET, **secrets)
    elif name == "rezolve":
        state, url = rezolve
        state.refresh_tokens = True  # the token answer carries a refresh token too
        settings = rezolve_settings(tmp_path, slack_url, url, **secrets)
    else:
        state, url = socialboards
        settings = socialboards_settings(tmp_path, slack_url, url, **secrets)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        message = slack_state.post_user_message("C111", "W111", f"Logged on {name}\nat DEBUG")
        await running.bot.tickets.submit_message(
            dedupe_key=f"event:{name}", source="reaction", channel_id="C111", channel_name="dev",
            message_ts=message["ts"], thread_ts=None, submitter_id="U111",
        )
        await running.bot.tickets.idle(10)
        await eventually(lambda: issued(name, state), timeout=5)
    finally:
        await running.close()
    log = captured.getvalue()
    assert "DEBUG" in log and "slack_sdk" in log and len(log.splitlines()) > 30  # the log really is verbose
    tokens = issued(name, state)
    assert tokens, "the stand-in issued no token: nothing was checked"
    for token in tokens | {BOT, SIGNING, SERVAL_SECRET, "bot-secret"}:
        assert token not in log, f"{token[:6]}… is in the log"
