"""Copying a long thread into a ticket (issue 18): every message once, in order, and the journal
records the progress in bounded saves (a save per message rewrote the whole payload each time: a
200-message thread cost 200 saves of a growing payload)."""

from __future__ import annotations

import sqlite3

from tests.test_conversation_tickets import bot, serval_posts, thread_reply  # noqa: F401 (fixture)
from tests.test_ticket_flow import connects
from tests.conftest import eventually

COUNT_SAVES = """
CREATE TABLE test_saves (n INTEGER NOT NULL);
INSERT INTO test_saves VALUES (0);
CREATE TRIGGER test_count_saves AFTER UPDATE OF payload ON submissions
BEGIN UPDATE test_saves SET n = n + 1; END;
"""


async def test_a_200_message_thread_is_copied_once_in_bounded_saves(bot, slack, serval, tmp_path):  # noqa: F811
    slack_state, serval_state = slack[0], serval[0]
    with sqlite3.connect(tmp_path / "bot.db") as db:  # counts the journal's saves of a submission
        db.executescript(COUNT_SAVES)
    root = slack_state.post_user_message("C111", "W111", "The build farm is down")
    for i in range(200):
        slack_state.post_user_message("C111", "U111" if i % 2 else "W111", f"note {i:03d}", thread_ts=root["ts"])
    await bot.bot.tickets.submit_message(
        dedupe_key="event:EvLong", source="mention", channel_id="C111", channel_name="dev",
        message_ts=root["ts"], thread_ts=root["ts"], submitter_id="U111", title="Build farm down",
    )
    await thread_reply(slack_state, "C111", root["ts"])
    await eventually(lambda: connects(serval_state), timeout=60)
    await bot.bot.tickets.idle(10)
    texts = [p["body"]["message"] for p in serval_posts(serval_state, "/messages")]
    assert [t[t.index("note "):][:8] for t in texts] == [f"note {i:03d}" for i in range(200)]
    accounted = connects(serval_state)[0]["body"]["accountedForMessageIds"]
    assert len(set(accounted)) == 200
    with sqlite3.connect(tmp_path / "bot.db") as db:
        saves = db.execute("SELECT n FROM test_saves").fetchone()[0]
    assert saves <= 30, f"{saves} journal saves for one submission"
