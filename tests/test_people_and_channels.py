"""Channels, teams and people: requester matching policies, routing precedence, /ticket config,
the richer form (teams, priorities, on behalf of), and the Home tab."""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.routing import RoutingError, load_routing_file
from sandbox.serval import Fault
from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings, select_value, submission
from tests.test_ticket_flow import block, created, filled, open_modal_with_command, open_modal_with_shortcut, shortcut


@asynccontextmanager
async def bot_with(tmp_path: Path, slack, serval, **overrides: Any):
    running = await serve_http(make_settings(tmp_path, slack[1], serval[1], **overrides), host="127.0.0.1", port=0)
    sender = SlackSender(running.url)
    try:
        yield running, sender
    finally:
        await sender.aclose()
        await running.close()


async def catalog_loaded(running) -> None:
    await eventually(lambda: running.bot.backends["serval"].teams, timeout=5)


def shortcut_by(author: str) -> dict[str, Any]:
    body = shortcut()
    body["message"]["user"] = author
    return body


# --- requester identity ------------------------------------------------------------------------


async def test_unmatched_requester_is_created_in_serval_under_create_policy(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, unmatched_requester="create") as (_, sender):
        view = await open_modal_with_shortcut(sender, slack[0], shortcut_by("U2147483697"))  # steve@example.com
        await sender.interactive(submission(view, filled("New person")))
        await slack[0].wait_for("chat.postEphemeral")
    profile = slack[0].users["U2147483697"]["profile"]
    posts = [r["body"] for r in serval[0].requests if r["method"] == "POST" and r["path"] == "/v2/users"]
    assert len(posts) == 1 and posts[0]["email"] == profile["email"]
    assert " ".join(filter(None, (posts[0].get("firstName"), posts[0].get("lastName")))) == profile["real_name"]
    new_user = serval[0].user_by_email(profile["email"])
    assert created(serval[0])[0]["requesterUserId"] == new_user["id"]


async def test_unmatched_requester_without_email_is_described_under_create_policy(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, unmatched_requester="create") as (_, sender):
        view = await open_modal_with_shortcut(sender, slack[0], shortcut_by("UNOEMAIL"))
        await sender.interactive(submission(view, filled("No e-mail")))
        await slack[0].wait_for("chat.postEphemeral")
    ticket = created(serval[0])[0]
    assert "requesterUserId" not in ticket and "Requested in Slack by" in ticket["description"]
    assert not [r for r in serval[0].requests if r["method"] == "POST" and r["path"] == "/v2/users"]


async def test_unmatched_requester_is_described_by_default(sender, slack, serval):
    view = await open_modal_with_shortcut(sender, slack[0], shortcut_by("U2147483697"))
    await sender.interactive(submission(view, filled("Described")))
    await slack[0].wait_for("chat.postEphemeral")
    ticket = created(serval[0])[0]
    email = slack[0].users["U2147483697"]["profile"]["email"]
    assert "requesterUserId" not in ticket and email in ticket["description"]


@pytest.mark.parametrize("author, reason", [("U2147483697", "has no user with the e-mail"),
                                            ("UNOEMAIL", "Slack does not show the requester's e-mail")])
async def test_unmatched_requester_is_refused_under_refuse_policy(tmp_path, slack, serval, author, reason):
    async with bot_with(tmp_path, slack, serval, unmatched_requester="refuse") as (_, sender):
        view = await open_modal_with_shortcut(sender, slack[0], shortcut_by(author))
        await sender.interactive(submission(view, filled("Refused", description="My words")))
        message = (await slack[0].wait_for("chat.postEphemeral"))[0]["args"]["text"]
    assert reason in message and "My words" in message
    assert created(serval[0]) == []


async def test_matched_requester_refused_policy_still_files(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, unmatched_requester="refuse") as (_, sender):
        view = await open_modal_with_shortcut(sender, slack[0], shortcut_by("U222"))
        await sender.interactive(submission(view, filled("Bob's")))
        await slack[0].wait_for("chat.postEphemeral")
    assert created(serval[0])[0]["requesterUserId"] == serval[0].user_by_email("bob@example.com")["id"]


async def test_user_list_is_paged_through_completely(sender, slack, serval):
    for i in range(2400):
        serval[0].add_user(f"person{i}@example.com", f"Person{i}", "Example")
    slack[0].add_user("ULATE", email="person2350@example.com", name="late")
    view = await open_modal_with_shortcut(sender, slack[0], shortcut_by("ULATE"))
    await sender.interactive(submission(view, filled("Deep in the list")))
    await slack[0].wait_for("chat.postEphemeral")
    assert created(serval[0])[0]["requesterUserId"] == serval[0].user_by_email("person2350@example.com")["id"]
    pages = [r["query"] for r in serval[0].requests if r["path"] == "/v2/users"]
    assert len(pages) == 3 and "pageToken" not in pages[0] and all("pageToken" in q for q in pages[1:])


async def test_filing_on_behalf_of_someone(sender, slack, serval):
    view = await open_modal_with_command(sender, slack[0], "")
    values = filled("For Bob") | {"on_behalf": {"value": {"type": "users_select", "selected_user": "U222"}}}
    await sender.interactive(submission(view, values))
    await slack[0].wait_for("chat.postEphemeral")
    ticket = created(serval[0])[0]
    assert ticket["requesterUserId"] == serval[0].user_by_email("bob@example.com")["id"]
    assert ticket["createdByUserId"] == serval[0].user_by_email("alice@example.com")["id"]
    assert "filed by" in ticket["description"]


async def test_only_admins_may_file_on_behalf_under_admins_policy(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, on_behalf_of="admins") as (_, sender):
        view = await open_modal_with_command(sender, slack[0], "")
        assert all(b.get("block_id") != "on_behalf" for b in view["blocks"])  # alice is no admin
        values = filled("Forged") | {"on_behalf": {"value": {"type": "users_select", "selected_user": "U222"}}}
        r = await sender.interactive(submission(view, values))
        assert r.json() == {"response_action": "errors", "errors": {"on_behalf": "You can file tickets only for yourself here."}}
        admin_view = await open_modal_with_command(sender, slack[0], "", user_id="UADMIN")
        assert block(admin_view, "on_behalf")
    assert created(serval[0]) == []


# --- routing -----------------------------------------------------------------------------------


def routing_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "routing.yml"
    path.write_text(text)
    return str(path)


async def test_routing_precedence_slack_over_file_over_default(tmp_path, slack, serval):
    serval[0].add_team("HR", "HR", team_id="team-hr")
    serval[0].add_team("Facilities", "FAC", team_id="team-fac")
    path = routing_file(tmp_path, "channels:\n  C111:\n    team: team-hr\n    type: incident\n    share: true\n")
    async with bot_with(tmp_path, slack, serval, routing_file=path) as (running, sender):
        await catalog_loaded(running)
        # the file routes C111 to HR, as incidents, shared
        view = await open_modal_with_command(sender, slack[0], "")
        assert block(view, "field:team_id")["element"]["initial_option"]["value"] == "team-hr"
        assert block(view, "field:type")["element"]["initial_option"]["value"] == "TICKET_TYPE_INCIDENT"
        assert block(view, "share")["element"]["initial_options"]
        # C123 has no route: the global default team
        view = await open_modal_with_command(sender, slack[0], "", channel_id="C123", channel_name="general")
        assert block(view, "field:team_id")["element"]["initial_option"]["value"] == "team-it"
        # an admin sets C111 to Facilities in Slack: that wins over the file for the team only
        await running.bot.router.save("C111", __import__("bot.routing", fromlist=["RouteEntry"]).RouteEntry(team="team-fac"), "UADMIN")
        view = await open_modal_with_command(sender, slack[0], "")
        assert block(view, "field:team_id")["element"]["initial_option"]["value"] == "team-fac"
        assert block(view, "field:type")["element"]["initial_option"]["value"] == "TICKET_TYPE_INCIDENT"
        await sender.interactive(submission(view, filled("Routed", kind="TICKET_TYPE_INCIDENT") | {"field:team_id": select_value("team-fac")}))
        await slack[0].wait_for("chat.postEphemeral")
    assert created(serval[0])[0]["teamId"] == "team-fac"
    assert next(iter(serval[0].tickets.values()))["friendlyIdentifier"].startswith("FAC-")


@pytest.mark.parametrize(
    "text, message",
    [
        ("channels:\n  general:\n    team: x\n", "'general' is not a channel id"),
        ("channels:\n  C111:\n    backend: jira\n", "channels.C111.backend: 'jira' is not configured"),
        ("channels:\n  C111:\n    type: bug\n", "channels.C111.type"),
        ("channels:\n  C111:\n    colour: red\n", "channels.C111.colour"),
        ("channels: [", "is not valid YAML"),
    ],
)
def test_bad_routing_files_are_refused_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(RoutingError) as info:
        load_routing_file(routing_file(tmp_path, text), {"serval"})
    assert message in str(info.value) and "routing.yml" in str(info.value)


async def test_bot_does_not_start_with_a_bad_routing_file(tmp_path, slack, serval):
    from bot.settings import SettingsError

    path = routing_file(tmp_path, "channels:\n  C111:\n    backend: jira\n")
    with pytest.raises(SettingsError, match="'jira' is not configured"):
        await serve_http(make_settings(tmp_path, slack[1], serval[1], routing_file=path), host="127.0.0.1", port=0)


async def test_ticket_config_is_refused_for_non_admins(sender, slack):
    r = await sender.command("config")
    assert r.status_code == 200 and not r.content  # acknowledged before Slack is asked who this is
    told = (await slack[0].wait_for("chat.postEphemeral"))[0]["args"]
    assert told["user"] == "U111" and told["channel"] == "C111"
    assert "Only workspace admins and owners" in told["text"]
    assert slack[0].calls_to("views.open") == []


def saved_notice(slack_state, view_id: str) -> str:
    updates = [c for c in slack_state.calls_to("views.update") if c["args"]["view_id"] == view_id and not c.get("error")]
    return json.dumps(updates[-1]["args"]["view"]) if updates else ""


async def test_ticket_config_by_an_admin_routes_the_channel(tmp_path, slack, serval):
    serval[0].add_team("HR", "HR", team_id="team-hr")
    async with bot_with(tmp_path, slack, serval) as (running, sender):
        await catalog_loaded(running)
        trigger = f"{time.time_ns()}.cfg"
        r = await sender.command("config", user_id="UADMIN", trigger_id=trigger)
        assert r.status_code == 200 and not r.content
        call = await eventually(lambda: [c for c in slack[0].calls_to("views.open") if c["args"]["trigger_id"] == trigger])
        view = call[0]["response"]["view"]  # as Slack stored it, with its id
        assert view["callback_id"] == "channel_config"
        body = submission(view, {"field:team_id": select_value("team-hr"), "field:type": select_value("TICKET_TYPE_INCIDENT"),
                                 "share": {"value": {"type": "checkboxes", "selected_options": [{"value": "share"}]}}},
                          user_id="UADMIN")
        r = await sender.interactive(body)
        assert r.json()["response_action"] == "update" and "Saving" in json.dumps(r.json()["view"])
        assert "Saved" in await eventually(lambda: saved_notice(slack[0], view["id"]))
        # a non-admin replaying the save is refused
        body["user"]["id"] = "U111"
        body["view"]["state"]["values"]["field:team_id"] = select_value("team-it")
        r = await sender.interactive(body)
        assert "Only workspace admins" in await eventually(
            lambda: "Only workspace admins" in saved_notice(slack[0], view["id"]) and saved_notice(slack[0], view["id"]))
        view = await open_modal_with_command(sender, slack[0], "")
        assert block(view, "field:team_id")["element"]["initial_option"]["value"] == "team-hr"
        assert block(view, "share")["element"]["initial_options"]


# --- the richer form -----------------------------------------------------------------------------


async def test_priority_is_applied_after_create(sender, slack, serval, running):
    await catalog_loaded(running)
    view = await open_modal_with_command(sender, slack[0], "")
    options = [o["value"] for o in block(view, "field:priority_id")["element"]["options"]]
    assert options == ["pri-it-low", "pri-it-medium", "pri-it-high", "pri-it-urgent"]
    await sender.interactive(submission(view, filled("Urgent!") | {"field:priority_id": select_value("pri-it-urgent")}))
    await slack[0].wait_for("chat.postEphemeral")
    await running.bot.tickets.idle(5)  # the person is told first; the priority is set after
    ticket = next(iter(serval[0].tickets.values()))
    calls = [(r["method"], r["path"], r["body"]) for r in serval[0].requests if r["path"].startswith("/v2/tickets")]
    put = [c for c in calls if c[0] == "PUT"]
    assert put == [("PUT", f"/v2/tickets/{ticket['id']}", {"priorityId": "pri-it-urgent"})]
    assert calls.index(put[0]) > calls.index(next(c for c in calls if c[0] == "POST"))
    assert ticket["priorityId"] == "pri-it-urgent"


async def test_changing_the_team_updates_the_priorities(tmp_path, slack, serval):
    serval[0].add_team("HR", "HR", team_id="team-hr")
    async with bot_with(tmp_path, slack, serval) as (running, sender):
        await catalog_loaded(running)
        view = await open_modal_with_command(sender, slack[0], "Keep me")
        opened = next(c for c in slack[0].calls_to("views.open"))["response"]["view"]
        action = {
            "type": "block_actions",
            "user": {"id": "U111"},
            "team": {"id": "T111"},
            "trigger_id": "1.2.3",
            "view": {**opened, "state": {"values": {"title": {"value": {"type": "plain_text_input", "value": "Keep me"}},
                                                     "field:team_id": select_value("team-hr")}}},
            "actions": [{"type": "static_select", "block_id": "field:team_id", "action_id": "value",
                         "selected_option": {"value": "team-hr"}}],
        }
        r = await sender.interactive(action)
        assert r.status_code == 200
        update = (await slack[0].wait_for("views.update"))[0]["args"]
        assert update["view_id"] == opened["id"]
        new = update["view"]
        assert [o["value"] for o in block(new, "field:priority_id")["element"]["options"]][0] == "pri-hr-low"
        assert block(new, "title")["element"]["initial_value"] == "Keep me"
        assert block(new, "field:team_id")["element"]["initial_option"]["value"] == "team-hr"


async def test_form_opens_with_last_known_lists_when_serval_is_unreachable(tmp_path, slack, serval):
    serval[0].add_team("HR", "HR", team_id="team-hr")
    async with bot_with(tmp_path, slack, serval) as (running, sender):
        await catalog_loaded(running)
        serval[0].set_faults({"*": Fault(drop_rate=1.0)})  # every Serval call now fails
        started = time.monotonic()
        view = await open_modal_with_command(sender, slack[0], "Offline")
        assert time.monotonic() - started < 3
        assert {o["value"] for o in block(view, "field:team_id")["element"]["options"]} == {"team-it", "team-hr"}
        assert block(view, "field:priority_id")["element"]["options"]


# --- Home tab ------------------------------------------------------------------------------------


async def send_home_opened(sender: SlackSender, user: str):
    event = {"token": "t", "team_id": "T111", "api_app_id": "A111", "type": "event_callback", "event_id": f"Ev{time.time_ns()}",
             "event_time": int(time.time()), "event": {"type": "app_home_opened", "user": user, "channel": "D1", "tab": "home"}}
    return await sender.post(json.dumps(event))


async def test_home_tab_without_tickets(sender, slack):
    r = await send_home_opened(sender, "U222")
    assert r.status_code == 200
    publish = (await slack[0].wait_for("views.publish"))[0]["args"]
    assert publish["user_id"] == "U222"
    text = json.dumps(publish["view"])
    assert "My tickets" in text and "no tickets from Slack yet" in text and "home_new_ticket" in text


async def test_home_tab_lists_tickets_and_opens_a_new_one(sender, slack, serval, running):
    view = await open_modal_with_command(sender, slack[0], "")
    await sender.interactive(submission(view, filled("Shared one", share=True)))
    await sender.interactive(submission(view, filled("Private one"), view_id="VOTHER"))
    await eventually(lambda: len(slack[0].calls_to("chat.postEphemeral")) == 2)
    await running.bot.tickets.idle(10)  # the channel post (the "Slack thread" link) may come after the person is told
    first = next(t for t in serval[0].tickets.values() if t["name"] == "Shared one")
    first["statusId"] = "st-it-in-progress"  # an agent picked it up
    await send_home_opened(sender, "U111")
    home = json.dumps((await slack[0].wait_for("views.publish"))[0]["args"]["view"])
    ids = [t["friendlyIdentifier"] for t in serval[0].tickets.values()]
    assert all(i in home for i in ids) and "Shared one" in home and "Private one" in home
    assert "Status: In Progress" in home and "Status: Open" in home
    assert home.count("Slack thread") == 1 and "/archives/C111/" in home
    action = {"type": "block_actions", "user": {"id": "U111"}, "team": {"id": "T111"}, "trigger_id": "home.1",
              "container": {"type": "view", "view_id": "VH"}, "view": {"id": "VH", "type": "home", "blocks": [], "state": {"values": {}}},
              "actions": [{"type": "button", "action_id": "home_new_ticket", "block_id": "x", "value": "new"}]}
    assert (await sender.interactive(action)).status_code == 200
    opened = await eventually(lambda: [c for c in slack[0].calls_to("views.open") if c["args"]["trigger_id"] == "home.1"])
    assert opened[0]["args"]["view"]["callback_id"] == "ticket_modal"


async def test_home_tab_lists_the_tickets_filed_for_the_person_by_someone_else(sender, slack, serval, running):
    """Alice (U111) files a ticket from Bob's (U222) message with a 🎫 reaction: Bob is its requester,
    so his Home lists it, as Alice's does (she filed it)."""
    from tests.test_events import deliver, event, thread_replies

    slack_state, serval_state = slack[0], serval[0]
    body = event("reaction_added.bolt-tests.json", reaction="ticket", user="U111")
    item = body["event"]["item"]
    slack_state.post_user_message(item["channel"], "U222", "Projector in room 4 is dead", ts=item["ts"])
    await deliver(sender, body)
    await thread_replies(slack_state, item["channel"], item["ts"])
    await running.bot.tickets.idle(10)
    [ticket] = serval_state.tickets.values()
    assert ticket["requesterUserId"] != ticket["createdByUserId"]  # filed for Bob, by Alice
    for person in ("U222", "U111"):
        await send_home_opened(sender, person)
        published = await eventually(lambda: [c["args"] for c in slack_state.calls_to("views.publish")
                                              if c["args"]["user_id"] == person])
        home = json.dumps(published[0]["view"])
        assert ticket["friendlyIdentifier"] in home and "Projector in room 4 is dead" in home, (person, home)


# --- ON_BEHALF_OF holds for the shortcut too ------------------------------------------------------


@pytest.mark.parametrize("policy", ["nobody", "admins"])
async def test_shortcut_on_someone_elses_message_files_for_the_submitter_unless_they_may_file_for_others(
        tmp_path, slack, serval, policy):
    """Alice (U111) uses the shortcut on Bob's (U222) message: under `nobody`, and `admins` for a
    non-admin, Alice is the requester (Serval must not DM Bob a text Alice wrote), and the
    description says whose message it was."""
    async with bot_with(tmp_path, slack, serval, on_behalf_of=policy) as (_, sender):
        body = shortcut_by("U222")
        body["user"]["id"] = "U111"
        view = await open_modal_with_shortcut(sender, slack[0], body)
        assert all(b.get("block_id") != "on_behalf" for b in view["blocks"])
        assert "U222" not in view["private_metadata"]
        description = block(view, "description")["element"]["initial_value"]
        assert description.startswith("Message from Bob in #dev:\n@W222 test")
        await sender.interactive(submission(view, {**filled("Bob's problem", description=description)}))
        await slack[0].wait_for("chat.postEphemeral")
    ticket = created(serval[0])[0]
    alice = serval[0].user_by_email("alice@example.com")["id"]
    assert ticket["requesterUserId"] == alice and ticket["createdByUserId"] == alice
    assert ticket["description"].startswith("Message from Bob in #dev:")


async def test_shortcut_by_an_admin_under_admins_policy_names_the_author_as_requester(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, on_behalf_of="admins") as (_, sender):
        body = shortcut_by("U222")
        body["user"]["id"] = "UADMIN"
        view = await open_modal_with_shortcut(sender, slack[0], body)
        assert block(view, "on_behalf")["element"]["initial_user"] == "U222"
        assert not block(view, "description")["element"]["initial_value"].startswith("Message from")
        await sender.interactive(submission(view, filled("For Bob"), user_id="UADMIN"))
        await slack[0].wait_for("chat.postEphemeral")
    assert created(serval[0])[0]["requesterUserId"] == serval[0].user_by_email("bob@example.com")["id"]


async def test_shortcut_on_your_own_message_under_nobody_policy_needs_no_note(tmp_path, slack, serval):
    async with bot_with(tmp_path, slack, serval, on_behalf_of="nobody") as (_, sender):
        body = shortcut_by("U111")
        body["user"]["id"] = "U111"
        view = await open_modal_with_shortcut(sender, slack[0], body)
        assert block(view, "description")["element"]["initial_value"].startswith("@W222 test")


# --- admins of another workspace are not admins here -----------------------------------------------


async def test_an_admin_of_another_workspace_may_not_configure_this_one(sender, slack):
    """Slack Connect: users.info says is_admin for the guest's own workspace, not this one."""
    slack[0].add_user("UEXT", email="admin@partner.example", name="partner-admin", is_admin=True, team_id="T999")
    r = await sender.command("config", user_id="UEXT", team_id="T111")
    assert r.status_code == 200
    told = (await slack[0].wait_for("chat.postEphemeral"))[0]["args"]
    assert told["user"] == "UEXT" and "Only workspace admins and owners" in told["text"]
    assert slack[0].calls_to("views.open") == []


async def test_an_admin_of_another_workspace_may_not_file_for_others_under_admins_policy(tmp_path, slack, serval):
    slack[0].add_user("UEXT", email="admin@partner.example", name="partner-admin", is_admin=True, team_id="T999")
    async with bot_with(tmp_path, slack, serval, on_behalf_of="admins") as (_, sender):
        view = await open_modal_with_command(sender, slack[0], "", user_id="UEXT")
        assert all(b.get("block_id") != "on_behalf" for b in view["blocks"])


async def test_an_admin_of_the_grid_org_may_configure_its_workspaces(tmp_path, slack, serval):
    slack[0].enterprise_id = "E111"  # before the bot asks auth.test
    slack[0].add_user("UORG", email="org@example.com", name="org-admin", team_id="T222", enterprise_id="E111",
                      is_org_admin=True)
    slack[0].add_user("UOTHERORG", email="x@else.example", name="else-admin", is_admin=True, team_id="T999",
                      enterprise_id="E999", is_org_admin=True)
    async with bot_with(tmp_path, slack, serval) as (_, sender):
        trigger = f"{time.time_ns()}.org"
        await sender.command("config", user_id="UORG", trigger_id=trigger)
        await eventually(lambda: [c for c in slack[0].calls_to("views.open") if c["args"]["trigger_id"] == trigger])
        await sender.command("config", user_id="UOTHERORG")
        told = (await slack[0].wait_for("chat.postEphemeral"))[0]["args"]
    assert told["user"] == "UOTHERORG" and "Only workspace admins" in told["text"]
