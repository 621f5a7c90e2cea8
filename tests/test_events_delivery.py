"""How events arrive (issue 14): over Socket Mode as over HTTP, journaled before the acknowledgement;
and the same event delivered to several replicas (one PostgreSQL database) is one ticket, one answer."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from sandbox.slack_socket import APP_TOKEN, SocketModeServer
from server.http import serve_http
from tests.conftest import SlackSender, eventually, make_settings
from tests.test_events import event, thread_replies
from tests.test_reliability import BotProcess, serval_clients  # noqa: F401  (fixture)


async def test_events_over_socket_mode_are_journaled_before_the_ack(tmp_path, slack, serval_clients):  # noqa: F811
    slack_state, slack_url = slack
    server = await SocketModeServer.start(slack_state)
    bot = BotProcess(tmp_path, slack_url, serval_clients[1], args=(), SLACK_APP_TOKEN=APP_TOKEN)
    try:
        await bot.start()
        await eventually(lambda: server.connected.is_set(), timeout=10)
        body = event("reaction_added.bolt-tests.json", reaction="ticket")
        item = body["event"]["item"]
        slack_state.post_user_message(item["channel"], "W111", "Socket printer jam", ts=item["ts"])
        ack = await server.send("events_api", body)
        assert set(ack) == {"envelope_id"}  # an event's ack carries no payload
        with sqlite3.connect(tmp_path / "bot.db") as db:  # the bot's own journal, read as the ack arrives
            assert db.execute("SELECT count(*) FROM submissions").fetchone()[0] == 1
        for attempt in (1, 2):  # Slack's redeliveries over the socket (retry_attempt → X-Slack-Retry-Num)
            ack = await server.send("events_api", body, retry_attempt=attempt, retry_reason="timeout")
            assert set(ack) == {"envelope_id"}
        await thread_replies(slack_state, item["channel"], item["ts"])
        await eventually(lambda: serval_clients[0].tickets, timeout=10)

        dm = event("message.real-capture.im.json", text="help with VPN")
        assert set(await server.send("events_api", dm)) == {"envelope_id"}
        assert set(await server.send("events_api", dm, retry_attempt=1)) == {"envelope_id"}
        await eventually(lambda: [c for c in slack_state.calls_to("chat.postMessage")
                                  if c["args"].get("channel") == dm["event"]["channel"]], timeout=10)
        await asyncio.sleep(0.5)
        assert len([c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == dm["event"]["channel"]]) == 1
        assert len(serval_clients[0].tickets) == 1
    finally:
        bot.stop()
        await server.close()


async def test_one_event_delivered_to_two_replicas_is_one_ticket_and_one_answer(tmp_path, slack, serval, pg_url):
    slack_state, serval_state = slack[0], serval[0]
    replicas, senders = [], []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            settings = make_settings(tmp_path / name, slack[1], serval[1], database_url=pg_url, retry_base_seconds=0.05)
            replicas.append(await serve_http(settings, host="127.0.0.1", port=0))
            senders.append(SlackSender(replicas[-1].url))
        reaction = event("reaction_added.bolt-tests.json", reaction="ticket")
        item = reaction["event"]["item"]
        slack_state.post_user_message(item["channel"], "W111", "Two replicas, one ticket", ts=item["ts"])
        dm = event("message.real-capture.im.json", text="one answer please")
        started = time.monotonic()
        answers = await asyncio.gather(*(s.event(body, retry=n) for body in (reaction, dm)
                                         for n, s in enumerate(senders + senders)))
        assert [a.status_code for a in answers] == [200] * 8 and time.monotonic() - started < 3
        await thread_replies(slack_state, item["channel"], item["ts"])
        for r in replicas:
            await r.bot.tickets.idle(10)
        await asyncio.sleep(0.3)
        assert [t["name"] for t in serval_state.tickets.values()] == ["Two replicas, one ticket"]
        assert len(await thread_replies(slack_state, item["channel"], item["ts"])) == 1
        assert len([c for c in slack_state.calls_to("chat.postMessage") if c["args"].get("channel") == dm["event"]["channel"]]) == 1
    finally:
        for s in senders:
            await s.aclose()
        for r in replicas:
            await r.close()
