"""bot/journal/copydb.py: an existing SQLite database copied into an empty PostgreSQL database (a real
server, tests/pg.py), so a team can move to several replicas without losing its thread links."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from bot.journal.copydb import CopyRefused, copy_db
from slack_sdk.oauth.installation_store import Installation
from slack_sdk.oauth.installation_store.sqlalchemy import AsyncSQLAlchemyInstallationStore

from bot.journal.storage import TABLES, Link, Storage, Submission, ThreadTaken, database_url, schema_revision
from tests.test_migrations import check_main_data_survived, main_database

ROOT = Path(__file__).resolve().parent.parent


async def dump(url: str) -> dict[str, list[dict]]:
    engine = create_async_engine(database_url(url))
    try:
        async with engine.connect() as conn:
            return {
                t.name: [dict(r) for r in (await conn.execute(sa.select(t).order_by(*t.primary_key.columns))).mappings()]
                for t in TABLES
            }
    finally:
        await engine.dispose()


def installs(engine) -> AsyncSQLAlchemyInstallationStore:
    return AsyncSQLAlchemyInstallationStore(client_id="1111.2222", engine=engine)


async def filled_sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/tickets.db"
    s = await Storage(url).open()
    try:
        done, _ = await s.add_submission(Submission.new("view-1", {"user_id": "U1", "title": "Printer ü"}, "C1:1.0"))
        done.status, done.ticket, done.steps_done = "done", {"id": "T1", "display_id": "IT-1"}, {"create", "reply"}
        await s.save_submission(done)
        await s.add_link(Link("C1", "1.0", "T1", "IT-1", "serval"), done.id)
        pending, _ = await s.add_submission(Submission.new("view-2", {"user_id": "U2", "title": "VPN"}, "C1:2.0"))
        [held] = await s.claim("old-process", 600, limit=1)  # its lease must not survive the move
        held.steps_done.add("create")
        held.attempts, held.next_attempt_at, held.warnings = 2, time.time() - 1, ["slow"]
        await s.save_submission(held)
        for n in range(1200):  # more than one batch
            await s.add_link(Link("C2", f"{n}.0", f"T{n}", f"IT-{n}", "rezolve"), f"old-{n}")
        await s.save_route("C9", {"backend": "rezolve"}, "U1")
        await s.save_person("U1", {"name": "Ann"})
        await s.save_person("U3", None)
        await s.save_identity("serval", "U1", "ann@x", "srv-1")
        await s.set_state("socialboards.refresh_token", "rt-42")
        async with s.engine.connect() as conn:
            await conn.execute(sa.text("INSERT INTO slack_events VALUES ('Ev1', 5.5, NULL)"))
        await installs(s.engine).async_save(Installation(
            app_id="A1", enterprise_id=None, team_id="T222", user_id="U1", bot_token="xoxb-T222-1", bot_id="B1",
            bot_user_id="UBOT", bot_scopes="commands,chat:write"))
    finally:
        await s.close()
    return url


async def test_everything_is_copied_and_pending_work_carries_on(tmp_path, pg_url):
    source = await filled_sqlite(tmp_path)
    copied = await copy_db(source, pg_url)
    assert copied == {
        "links": 1201, "routes": 1, "people": 2, "identities": 1, "state": 1, "submissions": 2, "slack_events": 1,
        "followed": 0, "leases": 0, "slack_installations": 1, "slack_bots": 1, "slack_oauth_states": 0,
    }
    before, after = await dump(source), await dump(pg_url)
    for row in before["submissions"]:
        row["owner"], row["lease_until"] = None, 0.0
    assert after == before

    s = await Storage(pg_url).open()
    try:
        assert (await s.link_for_thread("C1", "1.0")).display_id == "IT-1"
        assert (await s.link_for_thread("C2", "1199.0")).display_id == "IT-1199"
        assert await s.get_state("socialboards.refresh_token") == "rt-42"
        assert await s.route("C9") == {"backend": "rezolve"}
        assert await s.identity("serval", "U1", "ann@x", 3600) == "srv-1"
        [claimed] = await s.claim("new-replica", 30, limit=10)  # no wait for the old lease
        assert claimed.dedupe_key == "view-2" and claimed.steps_done == {"create"} and claimed.attempts == 2
        with pytest.raises(ThreadTaken):  # the thread links and reservations hold on PostgreSQL
            await s.add_submission(Submission.new("view-3", {"user_id": "U1"}, "C1:1.0"))
        with pytest.raises(ThreadTaken):
            await s.add_submission(Submission.new("view-4", {"user_id": "U1"}, "C1:2.0"))
        assert (await s.add_submission(Submission.new("view-1", {}, None)))[1] is False  # dedupe keys too
        # the installs by OAuth: found, and a new one is stored after them
        store = installs(s.engine)
        assert (await store.async_find_bot(enterprise_id=None, team_id="T222")).bot_token == "xoxb-T222-1"
        await store.async_save(Installation(app_id="A1", enterprise_id=None, team_id="T333", user_id="U1",
                                            bot_token="xoxb-T333-1", bot_id="B1", bot_user_id="UBOT"))
        assert (await store.async_find_bot(enterprise_id=None, team_id="T333")).bot_token == "xoxb-T333-1"
    finally:
        await s.close()


async def test_a_database_made_by_main_before_migrations_is_copied(tmp_path, pg_url):
    main_database(tmp_path / "old.db")
    await copy_db(f"sqlite:///{tmp_path}/old.db", pg_url)
    s = await Storage(pg_url).open()
    try:
        await check_main_data_survived(s)
    finally:
        await s.close()


async def test_a_target_that_is_not_empty_is_refused_and_left_alone(tmp_path, pg_url):
    source = await filled_sqlite(tmp_path)
    s = await Storage(pg_url).open()
    try:
        await s.set_state("already", "here")
    finally:
        await s.close()
    with pytest.raises(CopyRefused, match=r"not empty: state \(1 rows\)"):
        await copy_db(source, pg_url)
    after = await dump(pg_url)
    assert after["state"][0]["name"] == "already" and sum(map(len, after.values())) == 1


async def test_copying_twice_is_refused(tmp_path, pg_url):
    source = await filled_sqlite(tmp_path)
    await copy_db(source, pg_url)
    with pytest.raises(CopyRefused, match="not empty"):
        await copy_db(source, pg_url)
    assert len((await dump(pg_url))["links"]) == 1201


async def test_a_database_a_bot_is_serving_from_is_refused(tmp_path, pg_url):
    source = await filled_sqlite(tmp_path)
    serving = await Storage(source).open(serving=True)
    try:
        with pytest.raises(CopyRefused, match="serving from .*stop it first"):
            await copy_db(source, pg_url)
    finally:
        await serving.close()
    assert await schema_revision(pg_url) is None  # the target was not touched


async def test_wrong_sources_and_targets_are_refused(tmp_path, pg_url):
    with pytest.raises(CopyRefused, match="no SQLite database at"):
        await copy_db(f"sqlite:///{tmp_path}/missing.db", pg_url)
    assert not (tmp_path / "missing.db").exists()  # not created by the attempt
    with pytest.raises(CopyRefused, match="must be a PostgreSQL database"):
        await copy_db(f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db")
    with pytest.raises(CopyRefused, match="must be a SQLite database"):
        await copy_db(pg_url, pg_url)


async def test_the_command_line(tmp_path, pg_url):
    source = await filled_sqlite(tmp_path)
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "bot.journal.copydb", source, pg_url], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    first = run()
    assert first.returncode == 0, first.stderr
    assert "links: 1201" in first.stdout and "submissions: 2" in first.stdout
    second = run()
    assert second.returncode == 2 and "is not empty" in second.stderr
    password = database_url(pg_url).password
    assert password not in second.stderr  # the URL is shown without its password
