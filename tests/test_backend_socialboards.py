"""End to end with TICKET_BACKEND=socialboards: signed Slack requests → the bot over HTTP → fake Slack
Web API + the Socialboards sandbox. Both entry points, the creator from the Slack profile, the form's
selects, a required field missing, the error envelope told to the person, refresh-token rotation and
access-token expiry mid-run, duplicate submissions and a lost create answer."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import httpx
import pytest

from bot.backends import make_backends
from bot.core import Bot
from bot.settings import SettingsError, load_settings
from clients.socialboards import SocialboardsBackend, SocialboardsClient
from sandbox.socialboards import CLIENT_ID, REFRESH_TOKEN
from server.http import serve_http
from tests.conftest import (
    BOT_TOKEN,
    SIGNING_SECRET,
    SlackSender,
    make_settings,
    select_value,
    submission,
    text_value,
)
from tests.test_ticket_flow import block, open_modal_with_command, open_modal_with_shortcut, shortcut


def socialboards_settings(tmp_path, slack_url: str, sb_url: str, **overrides: Any):
    values: dict[str, Any] = dict(
        serval_team_id="",  # Serval not configured: Socialboards is the only back end
        ticket_backend="socialboards",
        socialboards_base_url=sb_url,
        socialboards_client_id=CLIENT_ID,
        socialboards_refresh_token=REFRESH_TOKEN,
        socialboards_community="acme",
        retry_base_seconds=0.05,
        retry_max_seconds=0.2,
    )
    values.update(overrides)
    return make_settings(tmp_path, slack_url, sb_url, **values)


@asynccontextmanager
async def socialboards_bot(tmp_path, slack, socialboards, *, bot: Bot | None = None,
                           **overrides: Any) -> AsyncIterator[tuple[Any, SlackSender]]:
    settings = socialboards_settings(tmp_path, slack[1], socialboards[1], **overrides)
    running = await serve_http(settings, host="127.0.0.1", port=0, bot=bot)
    sender = SlackSender(running.url)
    try:
        yield running, sender
    finally:
        await sender.aclose()
        await running.close()


def filled(title: str = "Checkout broken", *, description: str | None = "It fails when I pay.",
           category: str | None = "15602", sentiment: str | None = "complaint", tags: str | None = "billing, web",
           region: str | None = None) -> dict[str, Any]:
    return {
        "title": text_value(title),
        "description": text_value(description),
        "field:category": select_value(category),
        "field:sentiment": select_value(sentiment),
        "field:tags": text_value(tags),
        "field:custom:42623": select_value(region),
    }


def created(state: Any) -> list[dict[str, Any]]:
    return [r["body"] for r in state.requests if r["method"] == "POST" and r["path"] == "/tickets"]


async def told(slack_state: Any, count: int = 1) -> str:
    return (await slack_state.wait_for("chat.postEphemeral", count))[count - 1]["args"]["text"]


# --- both entry points ---------------------------------------------------------------------------


async def test_ticket_command_files_a_socialboards_ticket(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "Checkout broken")
        category = block(view, "field:category")
        assert category["optional"] is True
        assert [o["text"]["text"] for o in category["element"]["options"]] == [
            "Sales", "Sales › New cars", "Sales › Used cars", "Support", "Support › Technical"]
        sentiment = block(view, "field:sentiment")["element"]
        assert [o["value"] for o in sentiment["options"]] == ["question", "praise", "suggestion", "complaint"]
        assert sentiment["initial_option"]["value"] == "question"
        assert block(view, "field:tags")["element"]["type"] == "plain_text_input"
        assert block(view, "field:custom:42623")["label"]["text"] == "Shop region"

        r = await sender.interactive(submission(view, filled(region="Oslo")))
        assert r.json()["response_action"] == "update"
        message = await told(slack_state)
        assert "4484636" in message and "Checkout broken" in message
        body = created(state)[0]
        assert body["title"] == "Checkout broken"
        assert body["message"].startswith("It fails when I pay.") and "ref slack-" in body["message"]
        assert body["isHtml"] is False
        assert body["creator"] == {"name": "Alice", "email": "alice@example.com",
                                   "image": "https://example.com/U111_72.png"}
        assert body["sourceName"] == "Slack #dev"
        assert (body["categoryId"], body["sentiment"], body["tags"]) == (15602, "complaint", ["billing", "web"])
        assert body["customFields"] == [{"id": 42623, "value": "Oslo"}]
        ticket = state.tickets[4484636]
        assert ticket["category"]["name"] == "Technical" and ticket["author"]["email"] == "alice@example.com"


async def test_message_shortcut_files_for_the_message_author_and_links_the_thread(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    slack_state.add_user("W111", email="walter@example.com", name="walter")  # the message's author
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_shortcut(sender, slack_state, shortcut())
        await sender.interactive(submission(view, filled("From a message", category=None, tags=None)))
        assert "4484636" in await told(slack_state)
        body = created(state)[0]
        assert body["creator"]["email"] == "walter@example.com"  # the requester, not the submitter
        assert "categoryId" not in body and "tags" not in body
        reply = await slack_state.wait_for("chat.postMessage", 1)  # the person may hear first
        assert len(reply) == 1 and reply[0]["args"]["thread_ts"] == "1583636382.000300"
        link = await running.bot.storage.link_for_thread("C111", "1583636382.000300")
        assert link and link.display_id == "4484636" and link.backend == "socialboards"


# --- errors --------------------------------------------------------------------------------------


async def test_a_required_field_left_empty_is_an_inline_error(tmp_path, slack, socialboards):
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack[0], "")
        r = await sender.interactive(submission(view, filled(sentiment=None)))
        assert r.json() == {"response_action": "errors", "errors": {"field:sentiment": "Sentiment is required."}}
        assert created(socialboards[0]) == []


async def test_an_error_envelope_is_told_to_the_person(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "Refund")
        state.categories = [c for c in state.categories if c["id"] != 15602]  # deleted after the form was built
        await sender.interactive(submission(view, filled("Refund", description="Please refund order 42")))
        message = await told(slack_state)
        assert "could not be created" in message
        assert "Socialboards refused the ticket: categoryId 15602 does not exist (error 400)" in message
        assert "Refund" in message and "Please refund order 42" in message
        assert state.tickets == {}


async def test_a_person_without_an_email_is_told_why(tmp_path, slack, socialboards):
    slack_state = slack[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "", user_id="UNOEMAIL")
        await sender.interactive(submission(view, filled("No mail"), user_id="UNOEMAIL"))
        message = await told(slack_state)
        assert "Socialboards needs the requester's e-mail address" in message
        assert socialboards[0].tickets == {}


async def test_a_server_error_is_retried_after_looking_for_the_ticket(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "")
        state.next_faults = ["500"]
        await sender.interactive(submission(view, filled("Retried")))
        assert "4484636" in await told(slack_state)
        assert [r["path"] for r in state.requests if r["method"] == "POST"][-3:] == ["/tickets", "/tickets/list", "/tickets"]
        assert len(state.tickets) == 1


# --- tokens and duplicates -----------------------------------------------------------------------


async def test_access_token_expiry_mid_run_uses_the_rotated_refresh_token(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "")
        await sender.interactive(submission(view, filled("First")))
        assert "4484636" in await told(slack_state)
        state.advance(state.token_ttl + 60)
        view = await open_modal_with_command(sender, slack_state, "")
        await sender.interactive(submission(view, filled("Second")))
        assert "4484637" in await told(slack_state, 2)
        exchanges = [r["body"] for r in state.requests if r["path"] == "/token"]
        assert len(exchanges) == 2 and exchanges[0]["refresh_token"] == REFRESH_TOKEN
        assert exchanges[1]["refresh_token"] not in (REFRESH_TOKEN, state.refresh_token)  # the first rotation
        assert running.bot.backends["socialboards"].client.refresh_token == state.refresh_token


async def test_the_newest_refresh_token_is_stored_and_survives_a_restart(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    settings = socialboards_settings(tmp_path, slack[1], socialboards[1])
    for n, title in enumerate(["Before restart", "After restart"], start=1):
        bot = await Bot.open(settings)  # the same database both times
        async with socialboards_bot(tmp_path, slack, socialboards, bot=bot) as (running, sender):
            view = await open_modal_with_command(sender, slack_state, "")
            await sender.interactive(submission(view, filled(title)))
            assert str(4484635 + n) in await told(slack_state, n)
            await running.bot.tickets.idle(5)  # finished before the "restart"
            stored = await running.bot.storage.get_state("socialboards.refresh_token")
        assert state.refresh_token in stored  # the rotated token, not the configured (now dead) one
    assert [t["title"] for t in state.tickets.values()] == ["Before restart", "After restart"]


async def test_a_dead_refresh_token_is_told_to_the_person(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "")
        state.refresh_token = "rotated-by-someone-else"  # e.g. a second bot using the same token
        state.access_tokens.clear()
        await sender.interactive(submission(view, filled("Dead token")))
        message = await told(slack_state)
        assert "Socialboards refused the bot's refresh token (invalid_grant)" in message


async def test_the_same_view_submitted_twice_makes_one_ticket(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    async with socialboards_bot(tmp_path, slack, socialboards) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "Twice")
        body = submission(view, filled("Twice"), view_id="VSAME")
        r1 = await sender.interactive(body)
        r2 = await sender.interactive(body)
        assert r1.status_code == r2.status_code == 200
        await told(slack_state)
        await running.bot.tickets.idle(5)
        assert len(created(state)) == 1 and len(state.tickets) == 1
        assert len(slack_state.calls_to("chat.postEphemeral")) == 1


class LoseFirstCreateAnswer(httpx.AsyncHTTPTransport):
    """Lets the first create reach Socialboards, then loses its answer (a read timeout)."""

    lost = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if not self.lost and request.method == "POST" and request.url.path == "/tickets":
            self.lost = True
            await response.aread()
            await response.aclose()
            raise httpx.ReadTimeout("answer lost", request=request)
        return response


async def test_a_lost_create_answer_finds_the_ticket_instead_of_duplicating(tmp_path, slack, socialboards):
    slack_state, state = slack[0], socialboards[0]
    settings = socialboards_settings(tmp_path, slack[1], socialboards[1])
    client = SocialboardsClient(socialboards[1], client_id=CLIENT_ID, refresh_token=REFRESH_TOKEN,
                                transport=LoseFirstCreateAnswer())
    bot = await Bot.open(settings, backends={"socialboards": SocialboardsBackend(client, community="acme")})
    async with socialboards_bot(tmp_path, slack, socialboards, bot=bot) as (running, sender):
        view = await open_modal_with_command(sender, slack_state, "")
        await sender.interactive(submission(view, filled("Lost answer")))
        assert "4484636" in await told(slack_state)
        assert len(created(state)) == 1 and len(state.tickets) == 1
        assert any(r["path"] == "/tickets/list" for r in state.requests)


# --- settings --------------------------------------------------------------------------------------


def test_missing_socialboards_settings_are_named():
    with pytest.raises(SettingsError) as info:
        load_settings(slack_bot_token=BOT_TOKEN, slack_signing_secret=SIGNING_SECRET,
                      ticket_backend="socialboards", _env_file=None)
    assert str(info.value) == (
        "Configuration error: SOCIALBOARDS_CLIENT_ID, SOCIALBOARDS_REFRESH_TOKEN must be set for the Socialboards back end")


async def test_every_configured_back_end_is_built(tmp_path):
    settings = socialboards_settings(
        tmp_path, "http://slack.test/api/", "http://sb.test", serval_team_id="team-it",
        rezolve_client_id="bot", rezolve_client_secret="s", rezolve_tenant_id="t", rezolve_realm="acme",
        rezolve_team_id="james", rezolve_item_type_id="16910")
    assert REFRESH_TOKEN not in repr(settings) and REFRESH_TOKEN in settings.secrets()
    assert json.dumps(settings.model_dump(mode="json")).count(REFRESH_TOKEN) == 0
    backends = make_backends(settings)
    try:
        assert sorted(backends) == ["rezolve", "serval", "socialboards"]
        assert backends["socialboards"].client.token_url == "http://sb.test/token"
        assert backends["socialboards"].community == "acme"
    finally:
        for backend in backends.values():
            await backend.aclose()
