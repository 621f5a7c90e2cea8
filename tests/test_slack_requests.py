"""The HTTP edge: what reaches the bot before any listener runs, and the limits of the form it opens."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse

import pytest

from tests.conftest import eventually, submission
from tests.test_ticket_flow import block, filled, open_modal_with_command

APP_401 = {"error": "invalid request signature"}  # the app's own answer; Bolt's would be {"error": "invalid request"}


# --- signatures and timestamps ---------------------------------------------------------------


@pytest.mark.parametrize("timestamp", ["abc", "", "1.5e9", "-300", "١٧٠٠٠٠٠٠٠٠"])  # the last: Arabic-Indic digits
async def test_a_timestamp_that_is_no_number_is_401_not_500(sender, slack, timestamp):
    body = "command=%2Fticket&text=x&trigger_id=1"
    r = await sender.http.post(sender.url, content=body.encode(), headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp.encode(),  # bytes: httpx would refuse non-ASCII text
        "X-Slack-Signature": "v0=" + "0" * 64,
    })
    assert r.status_code == 401 and r.json() == APP_401
    assert slack[0].calls_to("views.open") == []


async def test_a_signature_that_is_no_ascii_is_401_not_500(sender):
    r = await sender.http.post(sender.url, content=b"command=%2Fticket&text=x", headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": str(int(time.time())),
        "X-Slack-Signature": "v0=\u00e9\u00e9".encode(),
    })
    assert r.status_code == 401 and r.json() == APP_401


@pytest.mark.parametrize("signed", [True, False])
async def test_slacks_ssl_check_gets_200(sender, slack, signed):
    """Slack checks the certificate with `ssl_check=1&token=...` (Bolt answers it before verifying)."""
    body = "ssl_check=1&token=verification_token"
    if signed:
        r = await sender.post(body)
    else:
        r = await sender.http.post(sender.url, content=body.encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200
    assert slack[0].calls == [c for c in slack[0].calls if c["method"] == "auth.test"]  # nothing else done


MALFORMED = [
    "payload=%7Bnot-json",  # malformed JSON
    "payload=%5B%5D",  # JSON, but not an object
    "payload=" + urllib.parse.quote(json.dumps({"type": "view_submission"})),  # no user, no view
    "",  # empty
    "neither=command",
]


@pytest.mark.parametrize("raw", MALFORMED)
@pytest.mark.parametrize("how", ["unsigned", "stale", "bad signature"])
async def test_an_unsigned_or_stale_malformed_body_is_401_and_never_parsed(sender, slack, caplog, raw, how):
    """The app checks the signature before it parses anything: without that check these bodies
    would be parsed and answered 400 (malformed) or by Bolt's own check."""
    caplog.set_level(logging.DEBUG)
    if how == "unsigned":
        r = await sender.http.post(sender.url, content=raw.encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    elif how == "stale":
        r = await sender.post(raw, timestamp=int(time.time()) - 6 * 60)  # correctly signed, 6 minutes old
    else:
        r = await sender.post(raw, signature="v0=" + "0" * 64)
    assert r.status_code == 401 and r.json() == APP_401
    assert "malformed" not in caplog.text.lower()
    assert not [rec for rec in caplog.records if rec.name.startswith("slack_bolt")]  # Bolt never saw it


# --- the first request does not wait for auth.test ---------------------------------------------


async def test_the_first_request_is_acknowledged_without_waiting_for_auth_test(tmp_path, slack, serval):
    """Bolt asks auth.test on the first request, before any listener can ack; the bot answers it
    from what it asked in the background."""
    from app import serve_http
    from tests.conftest import SlackSender, make_settings

    slack_state, slack_url = slack
    slack_state.rate_limit("auth.test", times=2, retry_after=4)
    running = await serve_http(make_settings(tmp_path, slack_url, serval[1]), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        started = time.monotonic()
        r = await sender.command("First one", trigger_id="first.1")
        assert r.status_code == 200 and time.monotonic() - started < 1.0
        await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == "first.1"])
    finally:
        await sender.aclose()
        await running.close()


# --- the title's limits --------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [250, 40])
async def test_title_input_allows_what_the_back_end_accepts_and_the_prefill_fits(sender, slack, serval, running, limit):
    backend = running.bot.backends["serval"]
    backend.title_max_length = limit  # what parse_form validates against (set per instance: the class keeps 250)
    long_text = " ".join(f"word{i}" for i in range(200))  # ~1,300 characters after /ticket
    view = await open_modal_with_command(sender, slack[0], long_text)
    title = block(view, "title")["element"]
    assert title["max_length"] == limit
    assert 0 < len(title["initial_value"]) <= limit
    assert [c for c in slack[0].calls_to("views.open") if c.get("error")] == []
    # exactly the maximum is accepted, one more character is refused
    opened = slack[0].calls_to("views.open")[-1]["response"]["view"]
    ok = await sender.interactive(submission(opened, filled("x" * limit), view_id="VMAX"))
    assert ok.json()["response_action"] == "update"
    too_long = await sender.interactive(submission(opened, filled("x" * (limit + 1)), view_id="VOVER"))
    assert too_long.json()["response_action"] == "errors" and str(limit) in too_long.json()["errors"]["title"]
