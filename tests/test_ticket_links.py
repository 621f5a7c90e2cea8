"""Ticket links (issue 23, item 2): SERVAL_TICKET_URL links the tickets the bot names, and a pasted
ticket link posted on the Slack stand-in (`link_shared` for the app's unfurl domains, in the
envelope of tests/payloads/link_shared.DERIVED.ticket_link.json) unfolds through `chat.unfurl` into
the ticket's card, looked up in the Serval stand-in; an unknown ticket or a link over the rate
budget stays a plain link."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from bot.slack import views
from tests.conftest import eventually, make_settings, payload, submission
from tests.test_ticket_flow import filled, open_modal_with_command
from tests.test_workflow_step import MANIFEST, Runs, deliver, own_token

FAST = dict(retry_base_seconds=0.05, retry_max_seconds=0.3)
TEMPLATE = "https://app.serval.com/tickets/{id}"


@pytest.fixture
def slack_state(slack) -> Any:
    """The Slack stand-in, knowing the app's unfurl domains from manifest.yml."""
    slack[0].unfurl_domains = MANIFEST["features"]["unfurl_domains"]
    return slack[0]


@pytest.fixture
def settings(tmp_path, slack_state, slack, serval):
    return make_settings(tmp_path, slack[1], serval[1], serval_ticket_url=TEMPLATE, unfurl_lookups_per_minute=3, **FAST)


def seeded(serval_state: Any, name: str = "VPN drops every hour", **more: Any) -> dict[str, Any]:
    """A ticket in Serval, requested by Bob and assigned to Alice, priority high."""
    ticket = serval_state.create_ticket({
        "teamId": "team-it", "name": name, "description": "",
        "requesterUserId": serval_state.user_by_email("bob@example.com")["id"],
        "assignedToUserId": serval_state.user_by_email("alice@example.com")["id"], **more,
    })
    ticket["priorityId"] = "pri-it-high"
    return ticket


def shared(slack_state: Any, *urls: str, source: str = "conversations_history") -> tuple[dict[str, Any], str]:
    """Someone posts the links in #general: the `link_shared` delivery, and the message's key in
    the stand-in's unfurls ("<channel>:<ts>")."""
    message = slack_state.post_user_message("C123", "U222", "See " + " and ".join(f"<{u}>" for u in urls))
    body = payload("link_shared.DERIVED.ticket_link.json")
    body["event_id"] = f"Ev{uuid.uuid4().hex[:10].upper()}"
    body["event"] = slack_state.link_shared_event("C123", message, source=source)
    return body, f"C123:{message['ts']}"


def card_text(unfurl: dict[str, Any]) -> str:
    section = unfurl["blocks"][0]
    return section["text"]["text"] + " | " + " | ".join(f["text"] for f in section.get("fields", []))


async def test_a_ticket_link_unfolds_into_its_card(running, sender, slack_state, serval):
    serval_state, _ = serval
    ticket = seeded(serval_state)
    url = TEMPLATE.format(id=ticket["id"])
    body, key = shared(slack_state, url)
    await deliver(sender, body)
    call = (await slack_state.wait_for("chat.unfurl"))[0]
    assert not call["error"], call
    assert f'{call["args"]["channel"]}:{call["args"]["ts"]}' == key
    unfurl = slack_state.unfurls[key][url]
    text = card_text(unfurl)
    for part in (ticket["friendlyIdentifier"], "VPN drops every hour", "*Status*\nOpen", "*Assignee*\nAlice Anderson",
                 "*Priority*\nHigh", "*Requester*\nBob Baker"):
        assert part in text, (part, text)
    button = unfurl["blocks"][1]["elements"][0]
    assert button["text"]["text"] == "View in Serval" and button["url"] == url


async def test_an_unknown_ticket_or_a_foreign_link_stays_a_plain_link(running, sender, slack_state, serval):
    serval_state, _ = serval
    before = len(serval_state.requests)
    body, _key = shared(slack_state, TEMPLATE.format(id=str(uuid.uuid4())), "https://app.serval.com/settings")
    await deliver(sender, body)
    await eventually(lambda: len(serval_state.requests) > before)  # looked up: no such ticket
    await asyncio.sleep(0.3)
    assert slack_state.calls_to("chat.unfurl") == []
    assert not [c for c in slack_state.calls if c["method"].startswith("chat.")]  # nobody is told anything
    # the link typed in the composer, for a ticket that exists: unfurled by its unfurl_id
    ticket = seeded(serval_state, "Printer jam")
    url = TEMPLATE.format(id=ticket["id"])
    body, key = shared(slack_state, url, source="composer")
    await deliver(sender, body)
    call = (await slack_state.wait_for("chat.unfurl"))[0]
    assert call["args"]["unfurl_id"] == body["event"]["unfurl_id"] and call["args"]["source"] == "composer"
    assert not call["error"] and "Printer jam" in card_text(slack_state.unfurls[key][url])


async def test_many_links_at_once_stay_within_the_rate_budget_and_the_cache_answers_repeats(running, sender, slack_state,
                                                                                         serval):
    serval_state, _ = serval
    tickets = [seeded(serval_state, f"Ticket {i}") for i in range(5)]
    urls = [TEMPLATE.format(id=t["id"]) for t in tickets]

    def lookups() -> int:
        return len([r for r in serval_state.requests if r["method"] == "GET" and r["path"].startswith("/v2/tickets/")])

    body, key = shared(slack_state, *urls)
    await deliver(sender, body)
    await slack_state.wait_for("chat.unfurl")
    assert len(slack_state.unfurls[key]) == 3 and lookups() == 3  # UNFURL_LOOKUPS_PER_MINUTE=3
    # the same links again: the cached cards, no more look-ups (and the budget is spent)
    body, again = shared(slack_state, *urls[:3])
    await deliver(sender, body)
    await slack_state.wait_for("chat.unfurl", 2)
    assert sorted(slack_state.unfurls[again]) == sorted(urls[:3]) and lookups() == 3


async def test_the_workflow_step_outputs_the_tickets_link(running, sender, slack_state, serval):
    runs = Runs(slack_state)
    body = runs.execution()
    await deliver(sender, body)
    done = (await runs.wait_for("functions.completeSuccess"))[0]
    ticket = next(iter(serval[0].tickets.values()))
    outputs = done["args"]["outputs"]
    assert outputs["ticket_url"] == TEMPLATE.format(id=ticket["id"]) and outputs["ticket_id"] == ticket["friendlyIdentifier"]
    assert own_token(done, body)


async def test_messages_that_name_a_ticket_link_it(running, sender, slack, serval):
    """/ticket with *Share in #channel*: the form's outcome, the ephemeral notice and the channel
    post each name the ticket as a link to its page."""
    slack_state, _ = slack
    serval_state, _ = serval
    view = await open_modal_with_command(sender, slack_state, "Links")
    await sender.interactive(submission(view, filled("Links", share=True)))
    await eventually(lambda: slack_state.calls_to("chat.postMessage") and slack_state.calls_to("chat.postEphemeral"))
    ticket = next(iter(serval_state.tickets.values()))
    ref = f"<{TEMPLATE.format(id=ticket['id'])}|{ticket['friendlyIdentifier']}>"
    assert ref in slack_state.calls_to("chat.postEphemeral")[0]["args"]["text"]
    assert ref in slack_state.calls_to("chat.postMessage")[0]["args"]["text"]
    outcome = await eventually(lambda: [c for c in slack_state.calls_to("views.update") if ref in str(c["args"]["view"])])
    assert outcome


def details_requested(url: str) -> dict[str, Any]:
    """`entity_details_requested` as Slack's event reference shows it
    (docs.slack.dev/reference/events/entity_details_requested), for a ticket link."""
    return {
        "token": "XXYYZZ", "team_id": "T111", "api_app_id": "A123ABC456", "type": "event_callback",
        "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": 123456789, "authed_users": ["U123ABC456"],
        "event": {
            "type": "entity_details_requested", "user": "U111", "external_ref": {"id": "123", "type": "serval"},
            "entity_url": url, "link": {"url": url, "domain": "app.serval.com"}, "app_unfurl_url": url,
            "event_ts": "123456789.1234566", "trigger_id": "1234567890123.1234567890123.abcdef0123",
            "user_locale": "en-US", "channel": "C123", "message_ts": "1755035323.759739",
        },
    }


async def test_work_objects_carry_the_ticket_and_answer_its_flexpane(tmp_path, slack_state, slack, serval):
    from server.http import serve_http
    from tests.conftest import SlackSender

    url = slack[1]
    serval_state, serval_url = serval
    running = await serve_http(make_settings(tmp_path, url, serval_url, serval_ticket_url=TEMPLATE,
                                             unfurl_work_objects=True, **FAST), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        await eventually(lambda: running.bot.people.known_workspace, timeout=10)
        ticket = seeded(serval_state)
        link = TEMPLATE.format(id=ticket["id"])
        posted = link + "?tab=activity"  # the link as pasted; the entity's url is the ticket's own
        body, key = shared(slack_state, posted)
        await deliver(sender, body)
        call = (await slack_state.wait_for("chat.unfurl"))[0]
        assert not call["error"], call
        entity = slack_state.unfurl_metadata[key]["entities"][0]
        assert entity["entity_type"] == "slack#/entities/task" and entity["app_unfurl_url"] == posted
        assert entity["url"] == link and entity["external_ref"] == {"id": ticket["id"], "type": "serval"}
        payload_ = entity["entity_payload"]
        assert payload_["attributes"]["display_id"] == ticket["friendlyIdentifier"]
        assert payload_["fields"]["status"]["value"] == "Open" and payload_["fields"]["assignee"]["value"] == "Alice Anderson"
        assert payload_["fields"]["priority"]["value"] == "High"
        # the flexpane: the ticket's details, or "not found" for a ticket that is not there
        await deliver(sender, details_requested(link))
        await deliver(sender, details_requested(TEMPLATE.format(id=str(uuid.uuid4()))))
        await slack_state.wait_for("entity.presentDetails", 2)
        answers = slack_state.entity_details  # the calls' arguments, as the stand-in read them
        shown = next(a for a in answers if a.get("metadata"))
        assert shown["metadata"]["external_ref"]["id"] == ticket["id"]
        assert shown["trigger_id"] == "1234567890123.1234567890123.abcdef0123"
        assert any(a.get("error") == {"status": "not_found"} for a in answers)
    finally:
        await sender.aclose()
        await running.close()


def test_link_templates_are_checked_and_read_back(tmp_path):
    from pydantic import ValidationError

    from bot.backends import make_backends
    from clients.base import CreatedTicket

    with pytest.raises(ValidationError, match="serval_ticket_url") as refused:
        make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9", serval_ticket_url="https://acme.serval.com/tickets")
    assert "{id}" in str(refused.value)
    with pytest.raises(ValidationError, match="rezolve_ticket_url"):
        make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9", rezolve_ticket_url="ftp://x/{id}")
    settings = make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9",
                             serval_ticket_url="https://acme.serval.com/t/{display_id}?id={id}")
    serval = make_backends(settings)["serval"]
    ticket = CreatedTicket("9b2e-01", "IT-7", "serval")
    assert serval.link(ticket) == "https://acme.serval.com/t/IT-7?id=9b2e-01"
    assert serval.ticket_ref("https://acme.serval.com/t/IT-7?id=9b2e-01") == {"display_id": "IT-7", "id": "9b2e-01"}
    assert serval.ticket_ref("https://acme.serval.com/other/IT-7") is None
    plain = make_backends(make_settings(tmp_path, "http://127.0.0.1:9/api/", "http://127.0.0.1:9"))["serval"]
    assert plain.link(ticket) is None and plain.ticket_ref("https://acme.serval.com/t/IT-7") is None  # no links


def test_socialboards_inbox_links_are_ticket_links():
    from clients.socialboards import SocialboardsBackend, SocialboardsClient

    backend = SocialboardsBackend(SocialboardsClient("http://127.0.0.1:9", client_id="c", refresh_token="r"),
                                  community="acme")
    url = "https://inbox.socialboards.com/acme/tickets?ticketId=4484636"
    assert backend.ticket_ref(url) == {"id": "4484636"}
    assert backend.link(views.CreatedTicket("4484636", "4484636", "socialboards")) == url
    assert backend.ticket_ref("https://inbox.socialboards.com/other/tickets?ticketId=1") is None
