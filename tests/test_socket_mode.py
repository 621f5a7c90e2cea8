"""Socket Mode: with SLACK_APP_TOKEN set, `python app.py` connects to Slack over a WebSocket instead of
serving requests, and the same listeners answer."""

from __future__ import annotations

import time

import httpx

from sandbox.slack_socket import APP_TOKEN, SocketModeServer
from tests.conftest import eventually, submission
from tests.test_reliability import BotProcess, serval_clients  # noqa: F401  (fixture)
from tests.test_ticket_flow import filled


async def test_socket_mode_end_to_end(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = BotProcess(tmp_path, slack_url, serval_clients[1], args=(), SLACK_APP_TOKEN=APP_TOKEN)
    try:
        await bot.start()  # no --mode: the app token alone selects Socket Mode
        opened = await eventually(lambda: slack_state.calls_to("apps.connections.open"), timeout=10)
        assert opened[0]["status"] == 200 and not opened[0]["error"]
        trigger = f"{time.time_ns()}.sock"
        ack = await server.send("slash_commands", {
            "command": "/ticket", "text": "Over the socket", "user_id": "U111", "user_name": "alice",
            "channel_id": "C111", "channel_name": "dev", "team_id": "T111", "trigger_id": trigger,
            "response_url": "https://hooks.slack.com/commands/T111/1/x", "api_app_id": "A111",
        })
        assert ack.get("payload") in (None, {}, "")
        call = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
        view = call[0]["args"]["view"]
        assert view["blocks"][0]["block_id"] == "title"  # the form reads top-down: the title first
        assert view["blocks"][0]["element"]["initial_value"] == "Over the socket"

        ack = await server.send("interactive", submission(view, filled("Over the socket", share=True)))
        assert ack["payload"]["response_action"] == "update"
        await eventually(lambda: serval_clients[0].tickets, timeout=10)
        ticket = next(iter(serval_clients[0].tickets.values()))
        told = await slack_state.wait_for("chat.postEphemeral", timeout=10)
        assert ticket["friendlyIdentifier"] in told[0]["args"]["text"]
        # requests over the socket are counted like those over HTTP (the port serves /metrics)
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(bot.url + "/metrics")).text
        for surface in ("command", "view_submission"):
            assert f'ticketbot_slack_requests_total{{outcome="2xx",surface="{surface}"}} 1.0' in scraped, surface
        assert 'ticketbot_slack_ack_seconds_count{surface="command"} 1.0' in scraped
    finally:
        bot.stop()
        await server.close()
    assert APP_TOKEN not in bot.log_path.read_text()


async def test_a_malformed_envelope_is_acknowledged_with_one_log_line_and_the_bot_goes_on(tmp_path, slack, serval_clients):  # noqa: F811
    """The same check as over HTTP: a field Bolt would trip over (`actions` a string, `event.item`
    a list, `view` null) is one warning, the envelope is acknowledged (Slack would only send it
    again), and nothing crashes."""
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = BotProcess(tmp_path, slack_url, serval_clients[1], args=(), SLACK_APP_TOKEN=APP_TOKEN)
    bot.env["LOG_LEVEL"] = "INFO"  # what an operator sees
    malformed = [
        ("interactive", {"type": "block_actions", "user": {"id": "U111"}, "actions": "x"},
         "actions is not a non-empty list of objects"),
        ("interactive", {"type": "view_submission", "user": {"id": "U111"}, "view": None}, "view is missing"),
        ("events_api", {"type": "event_callback", "event_id": "EvBAD1",
                        "event": {"type": "reaction_added", "user": "U111", "reaction": "ticket", "item": ["C111"]}},
         "event.item is not an object"),
        ("slash_commands", {"text": "no command"}, "command is missing"),
    ]
    try:
        await bot.start()
        for kind, body, _ in malformed:
            ack = await server.send(kind, body)  # acknowledged: Slack does not send it again
            assert ack.get("payload") in (None, {}, "")
        trigger = f"{time.time_ns()}.after"
        await server.send("slash_commands", {"command": "/ticket", "text": "Still here", "user_id": "U111",
                                             "channel_id": "C111", "team_id": "T111", "trigger_id": trigger})
        await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
    finally:
        bot.stop()
        await server.close()
    log = bot.log_path.read_text()
    rejected = [line for line in log.splitlines() if "malformed" in line]
    assert [line.split("Socket Mode: ", 1)[1] for line in rejected] == [named for _, _, named in malformed], log
    assert all(" WARNING " in line for line in rejected)
    assert "Traceback" not in log and "Unsuccessful Bolt execution" not in log and "ERROR" not in log


async def test_an_org_wide_install_over_socket_mode_serves_every_workspace_of_the_org(tmp_path, slack, serval_clients):  # noqa: F811
    """Enterprise Grid without OAuth: the app installed org-wide, its org token as SLACK_BOT_TOKEN and
    an app-level token. A `/ticket` from either workspace of the org opens the form (the Slack
    stand-in refuses a token outside the workspaces it serves)."""
    slack_state, slack_url = slack
    org_token = "xoxb-org-wide-install"
    for team in ("T333", "T444"):
        slack_state.add_workspace(team, f"Org {team}", enterprise_id="E100")
        slack_state.add_channel(f"C{team}", f"help-{team.lower()}", team_id=team)
        slack_state.add_user(f"U{team}", email=f"{team.lower()}@example.com", team_id=team, enterprise_id="E100")
    slack_state.bot_tokens[org_token] = {"team_id": None, "enterprise_id": "E100", "is_enterprise_install": True}
    server = await SocketModeServer.start(slack_state)
    bot = BotProcess(tmp_path, slack_url, serval_clients[1], args=(), SLACK_APP_TOKEN=APP_TOKEN)
    bot.env["SLACK_BOT_TOKEN"] = org_token
    try:
        await bot.start()
        await eventually(lambda: slack_state.calls_to("apps.connections.open"), timeout=10)
        for team in ("T333", "T444"):
            trigger = f"{time.time_ns()}.{team[1:]}.sock"  # Slack's triggers name their workspace
            await server.send("slash_commands", {
                "command": "/ticket", "text": f"From {team}", "user_id": f"U{team}", "user_name": team.lower(),
                "channel_id": f"C{team}", "channel_name": f"help-{team.lower()}", "team_id": team,
                "enterprise_id": "E100", "is_enterprise_install": "true", "trigger_id": trigger,
                "response_url": f"https://hooks.slack.com/commands/{team}/1/x", "api_app_id": "A111",
            })
            call = await eventually(lambda: [c for c in slack_state.calls_to("views.open") if c["args"]["trigger_id"] == trigger])
            assert call[0]["status"] == 200 and not call[0]["error"], call[0]
            assert call[0]["args"]["view"]["blocks"][0]["element"]["initial_value"] == f"From {team}"
        refused = [c for c in slack_state.calls if c.get("error") in (
            "invalid_auth", "invalid_trigger_id", "user_not_found", "channel_not_found")]
        assert refused == []
    finally:
        bot.stop()
        await server.close()
    assert org_token not in bot.log_path.read_text()
