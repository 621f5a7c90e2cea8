"""One bot for several workspaces (issue 22): installs by OAuth through Bolt's flow against the Slack
stand-in's oauth.v2.access (state checked: a forged or replayed state is refused), two workspaces each
served with its own token (the stand-in refuses a token used for another workspace), the journal's steps
speaking with the token of the workspace the submission came from, uninstall, and a request from a
workspace where the app is not installed."""

from __future__ import annotations

import html
import json
import re
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.installations import BOT_SCOPES, Workspace
from server.http import Running, serve_http
from tests.conftest import SlackSender, eventually, make_settings, select_value, submission
from tests.test_after_ticket import agent_changes
from tests.test_app_commands import app, bot_env
from tests.test_reliability import BotProcess, serval_clients  # noqa: F401  (fixture)
from tests.test_ticket_flow import connects, created, filled, opened_view

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def second(slack) -> Any:
    """A second workspace (T222) with its own channel and person, in the stand-in."""
    state, _ = slack
    state.add_workspace("T222", "Second", domain="second")
    state.add_channel("C222", "ops", team_id="T222")
    state.add_user("U333", email="carol@second.example", name="carol", team_id="T222")
    return state


@pytest.fixture
async def oauth_bot(tmp_path, slack, serval, second) -> AsyncIterator[Running]:
    """The bot with SLACK_CLIENT_ID / SLACK_CLIENT_SECRET instead of SLACK_BOT_TOKEN (HTTP mode)."""
    state, url = slack
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token="", slack_client_id=state.client_id,
                             slack_client_secret=state.client_secret, status_poll_seconds=0.2)
    running = await serve_http(settings, host="127.0.0.1", port=0)
    try:
        yield running
    finally:
        await running.close()


class Browser:
    """A person's browser. Bolt's state cookie is `Secure` (the bot is served over https): this one keeps
    it over the tests' plain http, as the browser would over https."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10)
        self.cookie = ""

    async def start_install(self) -> str:
        """Open the Add to Slack page; the state in its link to Slack's authorize page."""
        page = await self.http.get("/slack/install")
        assert page.status_code == 200, page.text
        link = re.search(r'href="(https://slack\.com/oauth/v2/authorize\?[^"]+)"', page.text)
        assert link, page.text
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(html.unescape(link.group(1))).query)
        assert query["client_id"] == ["1111.2222"]
        self.scopes = query["scope"][0].split(",")
        self.cookie = page.headers["set-cookie"].split(";")[0]
        assert "Secure" in page.headers["set-cookie"] and "HttpOnly" in page.headers["set-cookie"]
        return query["state"][0]

    async def redirect(self, code: str, state: str) -> httpx.Response:
        """Slack sends the browser back with the code and the state."""
        return await self.http.get("/slack/oauth_redirect", params={"code": code, "state": state},
                                   headers={"Cookie": self.cookie} if self.cookie else {})


@pytest.fixture
async def browser(oauth_bot) -> AsyncIterator[Browser]:
    b = Browser(oauth_bot.url)
    yield b
    await b.http.aclose()


async def start_install(browser: Browser) -> str:
    return await browser.start_install()


async def install(browser: Browser, slack_state: Any, team_id: str | None = None, **approve: Any) -> httpx.Response:
    state = await browser.start_install()
    code = slack_state.approve(team_id, **approve)
    return await browser.redirect(code, state)


def tokens_of(slack_state: Any, team: str) -> list[str]:
    return [t for t, info in slack_state.bot_tokens.items() if (info["team_id"] or info["enterprise_id"]) == team]


async def test_the_install_scopes_default_to_the_manifests_bot_scopes():
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert sorted(BOT_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"])


async def test_an_install_exchanges_the_code_and_stores_the_workspaces_token(oauth_bot, browser, slack):
    slack_state, _ = slack
    await browser.start_install()
    assert browser.scopes == list(BOT_SCOPES)
    done = await install(browser, slack_state, "T222")
    assert done.status_code == 200, done.text
    exchange = slack_state.calls_to("oauth.v2.access")
    assert len(exchange) == 1 and exchange[0]["error"] is None
    found = await oauth_bot.bot.installations.bot(Workspace("T222"))
    assert found is not None and found.bot_token in tokens_of(slack_state, "T222")
    assert await oauth_bot.bot.installations.bot(Workspace("T111")) is None


async def test_a_forged_state_is_refused_and_no_code_is_exchanged(oauth_bot, browser, slack):
    slack_state, _ = slack
    await start_install(browser)  # the cookie of a real install under way
    code = slack_state.approve("T222")
    refused = await browser.redirect(code, "forged-state")
    assert refused.status_code == 400
    assert slack_state.calls_to("oauth.v2.access") == []
    assert await oauth_bot.bot.installations.bot(Workspace("T222")) is None


async def test_a_state_from_another_browser_is_refused(oauth_bot, browser, slack):
    slack_state, _ = slack
    state = await start_install(browser)
    other = Browser(oauth_bot.url)  # no cookie: not the browser that started the install
    refused = await other.redirect(slack_state.approve("T222"), state)
    await other.http.aclose()
    assert refused.status_code == 400
    assert slack_state.calls_to("oauth.v2.access") == []


async def test_a_replayed_state_is_refused(oauth_bot, browser, slack):
    slack_state, _ = slack
    state = await start_install(browser)
    first = await browser.redirect(slack_state.approve("T222"), state)
    assert first.status_code == 200, first.text
    again = await browser.redirect(slack_state.approve("T222"), state)  # the same state, cookie kept
    assert again.status_code == 401 and "invalid_state" in again.text
    assert len(slack_state.calls_to("oauth.v2.access")) == 1


async def test_the_single_token_setup_has_no_install_pages(running):
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
        assert (await http.get("/slack/install")).status_code in (404, 405)


# --- two workspaces, each with its own token --------------------------------------------------------


async def command(sender: SlackSender, slack_state: Any, team: str, channel: str, user: str, text: str = "") -> dict[str, Any]:
    trigger = slack_state.issue_trigger_id(team)
    r = await sender.command(text, team_id=team, channel_id=channel, user_id=user, trigger_id=trigger)
    assert r.status_code == 200, r.text
    view = await opened_view(slack_state, trigger)
    call = next(c for c in slack_state.calls_to("views.open") if c["args"].get("trigger_id") == trigger)
    assert call["team"] == team  # opened with that workspace's token
    return view


def team_submission(view: dict[str, Any], values: dict[str, Any], team: str, user: str) -> dict[str, Any]:
    body = submission(view, values, user_id=user)
    body["team"] = {"id": team, "domain": team.lower()}
    body["user"]["team_id"] = team
    body["view"]["team_id"] = body["view"]["app_installed_team_id"] = team
    return body


async def test_two_workspaces_are_each_served_with_their_own_token(oauth_bot, browser, slack, serval):
    slack_state, _ = slack
    assert (await install(browser, slack_state, "T111")).status_code == 200
    assert (await install(browser, slack_state, "T222")).status_code == 200
    sender = SlackSender(oauth_bot.url)
    try:
        first = await command(sender, slack_state, "T111", "C111", "U111", "Printer jammed")
        second = await command(sender, slack_state, "T222", "C222", "U333", "VPN down")
        # The form submitted in the second workspace: the journaled steps speak with its token.
        r = await sender.interactive(team_submission(second, filled("VPN down"), "T222", "U333"))
        assert r.status_code == 200, r.text
        told = await slack_state.wait_for("chat.postEphemeral", timeout=10)
        assert told[0]["team"] == "T222" and told[0]["args"]["user"] == "U333" and told[0]["error"] is None
        await eventually(lambda: created(serval[0]))
        r = await sender.interactive(team_submission(first, filled("Printer jammed"), "T111", "U111"))
        assert r.status_code == 200, r.text
        told = await slack_state.wait_for("chat.postEphemeral", count=2, timeout=10)
        assert [(c["team"], c["args"]["user"]) for c in told] == [("T222", "U333"), ("T111", "U111")]
        # No call refused for a token of the wrong workspace (the forms' views.update: views the stand-in never saw).
        assert [(c["method"], c["team"], c["error"]) for c in slack_state.calls
                if c["error"] and c["method"] != "views.update"] == []
    finally:
        await sender.aclose()
    await oauth_bot.bot.tickets.idle(10)
    assert [s.id for s in await oauth_bot.bot.storage.pending_submissions()] == []  # both done


async def test_the_stand_in_refuses_a_token_used_for_another_workspace(oauth_bot, browser, slack):
    """What the tests above rely on: a token of T111 cannot post in T222's channel."""
    slack_state, url = slack
    await install(browser, slack_state, "T111")
    token = tokens_of(slack_state, "T111")[0]
    async with httpx.AsyncClient(timeout=10) as http:
        answer = (await http.post(url + "chat.postMessage", data={"channel": "C222", "text": "hi"},
                                  headers={"Authorization": f"Bearer {token}"})).json()
    assert answer == {"ok": False, "error": "channel_not_found"}


async def test_a_workspace_without_an_install_is_told_politely(oauth_bot, browser, slack, caplog):
    slack_state, _ = slack
    await install(browser, slack_state, "T111")
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.command("Help", team_id="T222", channel_id="C222", user_id="U333",
                                 trigger_id=slack_state.issue_trigger_id("T222"))
    finally:
        await sender.aclose()
    assert r.status_code == 200
    assert "not installed" in r.text
    assert "Traceback" not in caplog.text
    assert any("not installed" in rec.getMessage() and "T222" in rec.getMessage() for rec in caplog.records)
    assert slack_state.calls_to("views.open") == []


async def test_uninstall_forgets_the_token_and_the_workspace_is_told_politely(oauth_bot, browser, slack):
    slack_state, _ = slack
    await install(browser, slack_state, "T222")
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.event(slack_state.uninstall("T222"))
        assert r.status_code == 200, r.text
        await eventually(lambda: _gone(oauth_bot, "T222"), timeout=10)
        r = await sender.command("Help", team_id="T222", channel_id="C222", user_id="U333",
                                 trigger_id=slack_state.issue_trigger_id("T222"))
        assert "not installed" in r.text
    finally:
        await sender.aclose()


async def _gone(running: Running, team: str) -> bool:
    return await running.bot.installations.store.async_find_bot(enterprise_id=None, team_id=team) is None


async def test_the_followed_tickets_card_is_edited_with_its_workspaces_token(oauth_bot, browser, slack, serval):
    """The poller works for every workspace at once: each card is edited with its own workspace's token."""
    slack_state, serval_state = slack[0], serval[0]
    await install(browser, slack_state, "T111")
    await install(browser, slack_state, "T222")
    sender = SlackSender(oauth_bot.url)
    try:
        view = await command(sender, slack_state, "T222", "C222", "U333", "VPN down")
        r = await sender.interactive(team_submission(view, filled("VPN down", share=True), "T222", "U333"))
        assert r.status_code == 200, r.text
    finally:
        await sender.aclose()
    card = (await eventually(lambda: [c for c in slack_state.calls_to("chat.postMessage")
                                      if c["args"].get("channel") == "C222"], timeout=10))[0]
    assert card["team"] == "T222" and card["error"] is None
    ticket = next(iter(serval_state.tickets.values()))
    await agent_changes(serval[1], ticket["id"], statusId="st-it-in-progress")
    edit = (await eventually(lambda: slack_state.calls_to("chat.update"), timeout=10))[0]
    assert (edit["args"]["channel"], edit["team"], edit["error"]) == ("C222", "T222", None)
    assert "In Progress" in json.dumps(edit["args"]["blocks"])


# --- an Enterprise Grid org-wide install ---------------------------------------------------------------


async def test_an_org_wide_install_serves_every_workspace_of_the_org(oauth_bot, browser, slack):
    slack_state, _ = slack
    for team, channel, user in (("T333", "C333", "U333A"), ("T444", "C444", "U444A")):
        slack_state.add_workspace(team, f"Org {team}", enterprise_id="E100")
        slack_state.add_channel(channel, f"help-{team.lower()}", team_id=team)
        slack_state.add_user(user, email=f"{user.lower()}@org.example", team_id=team, enterprise_id="E100")
    done = await install(browser, slack_state, None, enterprise_id="E100", org=True)
    assert done.status_code < 400, done.text
    stored = await oauth_bot.bot.installations.bot(Workspace("T333", "E100", True))
    assert stored is not None and stored.is_enterprise_install and stored.team_id is None
    sender = SlackSender(oauth_bot.url)
    try:
        for team, channel, user in (("T333", "C333", "U333A"), ("T444", "C444", "U444A")):
            trigger = slack_state.issue_trigger_id(team)
            r = await sender.command("Laptop broken", team_id=team, channel_id=channel, user_id=user, trigger_id=trigger,
                                     enterprise_id="E100", is_enterprise_install="true")
            assert r.status_code == 200, r.text
            await opened_view(slack_state, trigger)
        opened = slack_state.calls_to("views.open")
        assert [(c["team"], c["error"]) for c in opened] == [("E100", None), ("E100", None)]  # the org's token
        # A workspace outside the org is not served by the org's install.
        r = await sender.command("Help", team_id="T222", channel_id="C222", user_id="U333",
                                 trigger_id=slack_state.issue_trigger_id("T222"))
        assert "not installed" in r.text
    finally:
        await sender.aclose()


# --- token rotation ---------------------------------------------------------------------------------


async def test_a_token_about_to_expire_is_renewed_with_its_refresh_token(oauth_bot, browser, slack):
    slack_state, _ = slack
    slack_state.token_rotation, slack_state.token_expires_in = True, 3600  # within the 2 h the bot renews before
    await install(browser, slack_state, "T222")
    first = tokens_of(slack_state, "T222")
    assert len(first) == 1
    oauth_bot.bot.installations._cache.clear()  # as after the 30 s a token is kept in memory
    sender = SlackSender(oauth_bot.url)
    try:
        await command(sender, slack_state, "T222", "C222", "U333", "VPN down")
    finally:
        await sender.aclose()
    refreshed = [c for c in slack_state.calls_to("oauth.v2.access") if c["args"].get("grant_type") == "refresh_token"]
    assert refreshed and all(c["error"] is None for c in refreshed)
    assert first[0] not in slack_state.bot_tokens  # the old token is gone: the form opened with the new one
    stored = await oauth_bot.bot.installations.store.async_find_bot(enterprise_id=None, team_id="T222")
    assert stored is not None and stored.bot_token in slack_state.bot_tokens


# --- replicas on PostgreSQL ---------------------------------------------------------------------------


async def test_a_replica_serves_a_workspace_installed_through_another(tmp_path, slack, serval, second, pg_url):
    slack_state, url = slack
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token="", slack_client_id=slack_state.client_id,
                             slack_client_secret=slack_state.client_secret, database_url=pg_url)
    one = await serve_http(settings, host="127.0.0.1", port=0)
    other = await serve_http(settings, host="127.0.0.1", port=0)
    browser = Browser(one.url)
    sender = SlackSender(other.url)
    try:
        assert (await install(browser, slack_state, "T222")).status_code == 200
        await command(sender, slack_state, "T222", "C222", "U333", "VPN down")  # opened with T222's token
        assert await other.bot.installations.bot(Workspace("T111")) is None
    finally:
        await browser.http.aclose()
        await sender.aclose()
        await other.close()
        await one.close()


async def test_work_journaled_for_a_workspace_that_uninstalls_fails_with_the_reason(oauth_bot, browser, slack, serval, caplog):
    slack_state, serval_state = slack[0], serval[0]
    await install(browser, slack_state, "T222")
    serval_state.delay("POST /v2/tickets", 1.0)  # the ticket is on its way when the app is removed
    sender = SlackSender(oauth_bot.url)
    try:
        view = await command(sender, slack_state, "T222", "C222", "U333", "VPN down")
        r = await sender.interactive(team_submission(view, filled("VPN down"), "T222", "U333"))
        assert r.status_code == 200, r.text
        r = await sender.event(slack_state.uninstall("T222"))
        assert r.status_code == 200
    finally:
        await sender.aclose()
    await eventually(lambda: created(serval_state), timeout=10)
    await oauth_bot.bot.tickets.idle(10)
    assert [s.id for s in await oauth_bot.bot.storage.pending_submissions()] == []  # nothing left to retry
    assert "could not tell <U333> the outcome: the app is not installed in workspace T222" in caplog.text
    assert [c for c in slack_state.calls if c["method"] == "chat.postEphemeral"] == []  # no call with a revoked token
    assert "Traceback" not in caplog.text


# --- python app.py check -------------------------------------------------------------------------------


async def test_check_lists_the_installs_and_the_scopes_each_misses(oauth_bot, browser, slack, serval_clients):  # noqa: F811
    slack_state, url = slack
    await install(browser, slack_state, "T111", scopes=",".join(BOT_SCOPES))
    await install(browser, slack_state, "T222", scopes="commands,chat:write")
    code, out, err = await app("check", env=bot_env(Path(oauth_bot.bot.settings.database_path).parent, url,
                                                    serval_clients[1], SLACK_BOT_TOKEN="",
                                                    SLACK_CLIENT_ID=slack_state.client_id,
                                                    SLACK_CLIENT_SECRET=slack_state.client_secret))
    installs = [line for line in out.splitlines() if "Slack install" in line]
    assert len(installs) == 2, out + err
    assert any(line.startswith("✓ ") and "workspace T111" in line and "no token rotation" in line for line in installs), out
    missing = next(line for line in installs if "workspace T222" in line)
    assert "MISSING" in missing and "users:read" in missing.split("MISSING")[1], missing
    assert slack_state.client_secret not in out + err
    assert not any(t in out + err for t in slack_state.bot_tokens)
    assert code != 0  # a problem to act on


# --- per-workspace ticket-system settings ----------------------------------------------------------------


async def test_each_workspace_has_its_own_serval_integration_and_default_team(tmp_path, slack, serval, second):
    slack_state, url = slack
    serval[0].add_team("Facilities", "FAC", team_id="team-fac")
    routing = tmp_path / "routing.yml"
    routing.write_text("workspaces:\n  T222:\n    serval_slack_integration_id: integ-slack-2\n    team: team-fac\n")
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token="", slack_client_id=slack_state.client_id,
                             slack_client_secret=slack_state.client_secret, routing_file=str(routing))
    running = await serve_http(settings, host="127.0.0.1", port=0)
    browser, sender = Browser(running.url), SlackSender(running.url)
    try:
        await install(browser, slack_state, "T111")
        await install(browser, slack_state, "T222")
        for team, channel, user in (("T222", "C222", "U333"), ("T111", "C111", "U111")):
            view = await command(sender, slack_state, team, channel, user, "Printer jammed")
            # the form's team starts at the workspace's default (as Slack submits an untouched select)
            initial = next(b for b in view["blocks"] if b.get("block_id") == "field:team_id")["element"]["initial_option"]
            values = {**filled("Printer jammed", share=True), "field:team_id": select_value(initial["value"])}
            r = await sender.interactive(team_submission(view, values, team, user))
            assert r.status_code == 200, r.text
            await running.bot.tickets.idle(10)
    finally:
        await browser.http.aclose()
        await sender.aclose()
        await running.close()
    targets = [r["body"]["channelTarget"]["slackChannel"]["integrationId"] for r in connects(serval[0])]
    assert targets == ["integ-slack-2", "integ-slack-1"]  # T222's own; T111 has SERVAL_SLACK_INTEGRATION_ID
    assert [t["teamId"] for t in created(serval[0])] == ["team-fac", "team-it"]  # T111: SERVAL_TEAM_ID


def test_a_workspace_id_in_the_routing_file_is_checked(tmp_path):
    from bot.routing import RoutingError, load_routing_file

    routing = tmp_path / "routing.yml"
    routing.write_text("workspaces:\n  second:\n    serval_slack_integration_id: x\n")
    with pytest.raises(RoutingError, match="'second' is not a workspace or org id"):
        load_routing_file(str(routing), {"serval"})
    routing.write_text("workspaces:\n  T222:\n    backend: rezolve\n")
    with pytest.raises(RoutingError, match="workspaces.T222.backend: 'rezolve' is not configured"):
        load_routing_file(str(routing), {"serval"})


async def test_an_org_wide_install_lets_that_workspaces_admins_and_the_orgs_admins_configure(oauth_bot, browser, slack):
    slack_state, _ = slack
    for team in ("T333", "T444"):
        slack_state.add_workspace(team, f"Org {team}", enterprise_id="E100")
    slack_state.add_channel("C333", "help-t333", team_id="T333")
    slack_state.add_user("UADM3", name="adm3", is_admin=True, team_id="T333", enterprise_id="E100")
    slack_state.add_user("UADM4", name="adm4", is_admin=True, team_id="T444", enterprise_id="E100")
    slack_state.add_user("UORG", name="orgadmin", team_id="T444", enterprise_id="E100", is_org_admin=True)
    await install(browser, slack_state, None, enterprise_id="E100", org=True)
    sender = SlackSender(oauth_bot.url)
    opened = {}
    try:
        for user in ("UADM3", "UADM4", "UORG"):
            trigger = slack_state.issue_trigger_id("T333")
            r = await sender.command("config", team_id="T333", channel_id="C333", user_id=user, trigger_id=trigger,
                                     enterprise_id="E100", is_enterprise_install="true")
            assert r.status_code == 200, r.text
            await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger]
                             or [c for c in slack_state.calls if c["args"].get("user") == user
                                 and c["method"] == "chat.postEphemeral"], timeout=10)
            opened[user] = bool([c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
    finally:
        await sender.aclose()
    # an admin of this workspace, and an admin of the org; not an admin of another workspace of the org
    assert opened == {"UADM3": True, "UADM4": False, "UORG": True}
    # The settings say whose channel this is: a workspace of the org, served by the org-wide install.
    view = slack_state.calls_to("views.open")[0]["args"]["view"]  # UADM3's, the first one opened
    assert workspace_line(view) == "Workspace `T333` of the org `E100`, served by the app's org-wide install."


def workspace_line(view: dict[str, Any]) -> str | None:
    """The small text `/ticket config` shows about the workspace (None: not shown)."""
    if isinstance(view, str):
        view = json.loads(view)
    block = next((b for b in view["blocks"] if b.get("block_id") == "workspace"), None)
    return block["elements"][0]["text"] if block else None


async def test_the_channel_settings_name_the_workspace_and_its_own_defaults(tmp_path, slack, serval, second):
    """Two workspaces, each installed: `/ticket config` says which one the channel is in, and that the
    routing file's `workspaces:` section gives it its own defaults."""
    slack_state, url = slack
    slack_state.add_user("UADM2", name="adm2", is_admin=True, team_id="T222")
    routing = tmp_path / "routing.yml"
    routing.write_text("workspaces:\n  T222:\n    team: team-fac\n")
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token="", slack_client_id=slack_state.client_id,
                             slack_client_secret=slack_state.client_secret, routing_file=str(routing))
    running = await serve_http(settings, host="127.0.0.1", port=0)
    browser, sender = Browser(running.url), SlackSender(running.url)
    try:
        for team in ("T111", "T222"):
            assert (await install(browser, slack_state, team)).status_code == 200
        shown = {}
        for team, channel, user in (("T111", "C111", "UADMIN"), ("T222", "C222", "UADM2")):
            trigger = slack_state.issue_trigger_id(team)
            r = await sender.command("config", team_id=team, channel_id=channel, user_id=user, trigger_id=trigger)
            assert r.status_code == 200, r.text
            shown[team] = workspace_line(await opened_view(slack_state, trigger))
    finally:
        await browser.http.aclose()
        await sender.aclose()
        await running.close()
    assert shown == {"T111": "Workspace `T111`.",
                     "T222": "Workspace `T222`; its defaults: the routing file's `workspaces: T222`."}


async def test_the_single_token_setup_does_not_name_a_workspace_in_the_channel_settings(running, slack):
    from tests.test_events_config import open_config
    sender = SlackSender(running.url)
    try:
        assert workspace_line(await open_config(sender, slack[0])) is None
    finally:
        await sender.aclose()


async def test_a_workspace_told_it_has_no_install_is_served_as_soon_as_it_installs(oauth_bot, browser, slack):
    slack_state, _ = slack
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.command("Help", team_id="T222", channel_id="C222", user_id="U333",
                                 trigger_id=slack_state.issue_trigger_id("T222"))
        assert "not installed" in r.text
        await install(browser, slack_state, "T222")
        await command(sender, slack_state, "T222", "C222", "U333", "VPN down")  # at once, not after a cache expires
    finally:
        await sender.aclose()


async def test_revoked_tokens_are_forgotten(oauth_bot, browser, slack):
    slack_state, _ = slack
    await install(browser, slack_state, "T111")
    await install(browser, slack_state, "T222")
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.event(slack_state.revoke_tokens("T222"))
        assert r.status_code == 200, r.text
        await eventually(lambda: _gone(oauth_bot, "T222"), timeout=10)
        r = await sender.command("VPN down", team_id="T222", channel_id="C222", user_id="U333",
                                 trigger_id=slack_state.issue_trigger_id("T222"))
        assert "not installed" in r.text
        await command(sender, slack_state, "T111", "C111", "U111", "Printer")  # the other workspace is served
    finally:
        await sender.aclose()


async def test_slack_checks_the_request_url_before_any_install(oauth_bot):
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.event({"token": "x", "challenge": "c-123", "type": "url_verification"})
    finally:
        await sender.aclose()
    assert r.status_code == 200 and "c-123" in r.text


async def test_the_process_starts_installs_and_serves_by_oauth(tmp_path, slack, serval_clients):  # noqa: F811
    """`python app.py --mode http` with SLACK_CLIENT_ID / SLACK_CLIENT_SECRET: ready, the Add to Slack page,
    an install, then a request from that workspace served with its token; the secrets never logged."""
    slack_state, url = slack
    bot = BotProcess(tmp_path, url, serval_clients[1], SLACK_CLIENT_ID=slack_state.client_id,
                     SLACK_CLIENT_SECRET=slack_state.client_secret)
    bot.env["SLACK_BOT_TOKEN"] = ""  # installs by OAuth instead
    await bot.start()
    browser, sender = Browser(bot.url), SlackSender(bot.url, BotProcess.SECRETS["SLACK_SIGNING_SECRET"])
    try:
        await eventually(lambda: _ready(bot.url), timeout=20)
        assert (await install(browser, slack_state, "T111")).status_code == 200
        await command(sender, slack_state, "T111", "C111", "U111", "Printer jammed")
    finally:
        await browser.http.aclose()
        await sender.aclose()
        bot.stop()
    logged = bot.log_path.read_text()
    assert "Traceback" not in logged
    assert slack_state.client_secret not in logged and not any(t in logged for t in slack_state.bot_tokens)


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as http:
        return (await http.get(url + "/readyz")).status_code == 200


async def test_an_install_through_the_stand_ins_authorize_page(tmp_path, slack, serval):
    """As a person does it in a browser: the Add to Slack link leads to Slack's authorize page (the
    stand-in's, SLACK_AUTHORIZE_URL), whose Allow sends the browser back with the code."""
    slack_state, url = slack
    settings = make_settings(tmp_path, url, serval[1], slack_bot_token="", slack_client_id=slack_state.client_id,
                             slack_client_secret=slack_state.client_secret,
                             slack_authorize_url=url.removesuffix("api/") + "oauth/v2/authorize")
    running = await serve_http(settings, host="127.0.0.1", port=0)
    slack_state.redirect_uri = running.url + "/slack/oauth_redirect"
    slack_state.enterprise_id, slack_state.org_install_enterprise = "E100", "E100"  # an org-wide install
    browser = Browser(running.url)
    try:
        page = await browser.http.get("/slack/install")
        browser.cookie = page.headers["set-cookie"].split(";")[0]
        link = html.unescape(re.search(r'href="([^"]+/oauth/v2/authorize\?[^"]+)"', page.text).group(1))
        async with httpx.AsyncClient(timeout=10) as slack_site:
            authorize = await slack_site.get(link)
            assert "Install the app in the whole Sandbox Org organisation" in authorize.text
            allow = html.unescape(re.search(r'id="allow" href="([^"]+)"', authorize.text).group(1))
            back = await slack_site.get(url.removesuffix("/api/") + allow)
        assert back.status_code == 302
        done = await browser.http.get(back.headers["location"], headers={"Cookie": browser.cookie})
        assert done.status_code < 400, done.text
        found = await running.bot.installations.bot(Workspace("T111", "E100", True))
        assert found is not None and found.is_enterprise_install
    finally:
        await browser.http.aclose()
        await running.close()


async def test_an_org_wide_app_losing_a_workspace_is_acknowledged_and_logged(oauth_bot, browser, slack, caplog):
    """team_access_revoked (Enterprise Grid): the org-wide app no longer reaches one workspace of the org."""
    slack_state, _ = slack
    slack_state.add_workspace("T333", "Org T333", enterprise_id="E100")
    await install(browser, slack_state, None, enterprise_id="E100", org=True)
    envelope = slack_state.event_callback({"type": "team_access_revoked", "team_ids": ["T333"],
                                           "event_ts": slack_state.next_ts()}, enterprise_id="E100")
    envelope["is_enterprise_install"] = envelope["authorizations"][0]["is_enterprise_install"] = True
    sender = SlackSender(oauth_bot.url)
    try:
        r = await sender.event(envelope)
    finally:
        await sender.aclose()
    assert r.status_code == 200, r.text
    assert any("lost access to workspace T333" in rec.getMessage() for rec in caplog.records), caplog.text
