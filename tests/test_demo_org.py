"""`make demo ARGS=--org`: the bot installs by OAuth, once for the whole Enterprise Grid org, and that
one install serves both workspaces of the demo's Slack page. Driven as a person does it: the Add to Slack
link the page shows, the stand-in's authorize page, Allow, back to the bot; then /ticket typed on the
page as someone of each workspace."""
from __future__ import annotations

import html
import re

import httpx

from sandbox.demo import ENTERPRISE, ORG_CHANNEL, ORG_TEAM, Demo
from tests.conftest import eventually


async def test_one_org_wide_install_serves_both_workspaces_of_the_demo(tmp_path):
    demo = Demo(tmp_path, org=True)
    try:
        page = await demo.start()
        slack = demo.slack
        async with httpx.AsyncClient(timeout=10) as http:
            async def state(user: str) -> dict:
                r = await http.get(page + "ui/state", params={"user": user})
                assert r.status_code == 200, r.text
                return r.json()

            async def ticket(user: str, channel: str) -> None:
                r = await http.post(page + "ui/message", json={"user": user, "channel": channel,
                                                                "text": "/ticket Monitor flickers"})
                assert r.status_code == 200, r.text

            alice, carol = await state("U111"), await state("U0CAROL")
            assert alice["install_url"] == demo.bot_url + "/slack/install"
            assert [(w["id"], w["name"]) for w in alice["workspaces"]] == [("T111", "Sandbox"), (ORG_TEAM, "Sandbox West")]
            # Each workspace shows its own channels and people.
            assert carol["team"] == "Sandbox West" and {p["id"] for p in carol["people"]} == {"U0CAROL", "U0DAN"}
            assert "it-help" in {c["name"] for c in carol["channels"]} - {c["name"] for c in alice["channels"]}
            assert "help" in {c["name"] for c in alice["channels"]} - {c["name"] for c in carol["channels"]}

            # Before anyone installs the app, Slack's requests get a polite answer.
            await ticket("U111", "C111")
            told = await eventually(lambda: [e for e in slack_ephemeral(demo, "U111") if "not installed" in e], timeout=15)
            assert told

            # Add to Slack → Slack's authorize page (the stand-in's) → Allow → back to the bot.
            start = await http.get(alice["install_url"])
            assert start.status_code == 200, start.text
            cookie = start.headers["set-cookie"].split(";")[0]  # Bolt's state cookie (Secure: kept by hand over http)
            link = html.unescape(re.search(r'href="([^"]+/oauth/v2/authorize\?[^"]+)"', start.text).group(1))
            assert link.startswith(page + "oauth/v2/authorize?")
            authorize = await http.get(link)
            assert "Install the app in the whole Sandbox Org organisation" in authorize.text
            allow = html.unescape(re.search(r'id="allow" href="([^"]+)"', authorize.text).group(1))
            back = await http.get(page.rstrip("/") + allow)
            assert back.status_code == 302 and back.headers["location"].startswith(demo.bot_url + "/slack/oauth_redirect?")
            done = await http.get(back.headers["location"], headers={"Cookie": cookie})
            assert done.status_code == 200, done.text
            [(token, info)] = slack.bot_tokens.items()
            assert info["is_enterprise_install"] and info["enterprise_id"] == ENTERPRISE and info["team_id"] is None

            # A /ticket from each workspace opens the form, with the org's token, for that workspace's trigger.
            for user, channel, team in (("U111", "C111", "T111"), ("U0CAROL", ORG_CHANNEL, ORG_TEAM)):
                await ticket(user, channel)
                opened = await eventually(lambda: (st := demo.ui.snapshot(user))["modal"] and st, timeout=20)
                assert opened["modal"]["view"]["callback_id"], opened["modal"]
                [call] = [c for c in slack.calls_to("views.open") if demo.ui.trigger_users.get(c["args"]["trigger_id"]) == user]
                assert call["error"] is None and call["team"] == ENTERPRISE
                assert call["args"]["trigger_id"].split(".")[1] == team[1:]  # a trigger of that workspace
            assert [c for c in slack.calls if c["error"] and c["method"] != "views.update"] == []
    finally:
        await demo.stop()
    log = (tmp_path / "bot.log").read_text(errors="replace")
    assert "Traceback" not in log and token not in log


def slack_ephemeral(demo: Demo, user: str) -> list[str]:
    return [e["text"] for e in demo.ui.snapshot(user)["ephemeral"]]
