"""bot/journal/storage.py on both engines: every test here runs once on SQLite and once on a real
PostgreSQL server (tests/pg.py), through the `storage` / `db_url` fixtures in conftest.py."""

from __future__ import annotations

import asyncio
import os
import stat
import time

import pytest
import sqlalchemy as sa

from bot.journal.storage import (
    LeaseLost,
    Link,
    Storage,
    Submission,
    ThreadTaken,
    database_url,
    slack_events,
    submissions,
)


def new(key: str, thread_key: str | None = None, **payload) -> Submission:
    return Submission.new(key, {"user_id": "U1", "title": key, **payload}, thread_key)


async def add(storage: Storage, key: str, thread_key: str | None = None, **fields) -> Submission:
    """A journaled submission; `fields` are then saved directly (bypassing the lease check)."""
    sub, created = await storage.add_submission(new(key, thread_key))
    assert created
    if fields:
        async with storage.engine.connect() as conn:
            await conn.execute(sa.update(submissions).where(submissions.c.id == sub.id).values(**fields))
    return await storage.get_submission(sub.id)


async def other(db_url: str):
    """A second, independent Storage on the same database (as another process would have)."""
    return await Storage(db_url).open()


# --- journal ----------------------------------------------------------------------------------


async def test_a_submission_round_trips_with_its_whole_payload(storage):
    sub = new("view-1", "C1:1.0", form={"fields": ["a", "ü"]}, nested={"x": [1, 2.5, None]})
    stored, created = await storage.add_submission(sub)
    assert created and stored is sub
    sub.steps_done |= {"create", "reply"}
    sub.ticket = {"id": "T1", "display_id": "IT-1"}
    sub.thread_ts, sub.maybe_created, sub.attempts = "2.0", True, 3
    sub.next_attempt_at, sub.last_error, sub.warnings = 1234.5, "boom", ["w1"]
    sub.payload["added_later"] = True
    sub.status = "done"
    await storage.save_submission(sub)
    back = await storage.get_submission(sub.id)
    assert back == sub
    assert back.payload["added_later"] is True and back.payload["nested"] == {"x": [1, 2.5, None]}
    assert await storage.get_submission("nope") is None


async def test_the_same_dedupe_key_returns_the_earlier_submission(storage):
    first, created = await storage.add_submission(new("view-1"))
    again, created_again = await storage.add_submission(new("view-1"))
    assert created and not created_again
    assert again.id == first.id
    assert await storage.counts() == {"pending": 1}


async def test_a_thread_reserved_or_linked_is_taken(storage):
    await storage.add_submission(new("a", "C1:1.0"))
    with pytest.raises(ThreadTaken) as pending:
        await storage.add_submission(new("b", "C1:1.0"))
    assert pending.value.display_id is None
    await storage.add_link(Link("C2", "2.0", "T9", "IT-9", "serval"), "s9")
    with pytest.raises(ThreadTaken) as linked:
        await storage.add_submission(new("c", "C2:2.0"))
    assert linked.value.display_id == "IT-9"
    assert await storage.taken_threads(["C1:1.0", "C2:2.0", "C3:3.0"]) == {"C1:1.0": None, "C2:2.0": "IT-9"}


async def test_taken_threads_answers_for_many_threads_at_once(storage):
    """More threads than one statement takes; a thread both linked and pending reads as linked."""
    await storage.add_submission(new("p", "C1:7.0"))
    await storage.add_link(Link("C1", "7.0", "T7", "IT-7", "serval"), "s7")
    for i in range(0, 120, 3):
        await storage.add_link(Link("C5", f"{i}.0", f"T{i}", f"IT-{i}", "serval"), f"s{i}")
    await storage.add_submission(new("q", "C6:1.0"))
    keys = [f"C5:{i}.0" for i in range(120)] + ["C1:7.0", "C6:1.0", "C6:2.0"]
    taken = await storage.taken_threads(keys)
    assert taken == {**{f"C5:{i}.0": f"IT-{i}" for i in range(0, 120, 3)}, "C1:7.0": "IT-7", "C6:1.0": None}
    assert await storage.taken_threads([]) == {}


async def test_unique_keys_hold_across_processes(db_url, storage):
    """Two processes journaling the same view at the same moment: one submission (a constraint in
    the database, not state in a process)."""
    second = await other(db_url)
    try:
        for n in range(5):
            results = await asyncio.gather(
                storage.add_submission(new(f"view-{n}", f"C1:{n}.0")),
                second.add_submission(new(f"view-{n}", f"C1:{n}.0")),
            )
            assert sorted(created for _, created in results) == [False, True]
            assert results[0][0].id == results[1][0].id
        results = await asyncio.gather(
            storage.add_submission(new("x", "C9:9.0")),
            second.add_submission(new("y", "C9:9.0")),
            return_exceptions=True,
        )
        assert sum(isinstance(r, ThreadTaken) for r in results) == 1
    finally:
        await second.close()
    assert await storage.counts() == {"pending": 6}


# --- leases ----------------------------------------------------------------------------------


async def test_claim_takes_due_unheld_submissions_oldest_due_first(storage):
    now = time.time()
    later = await add(storage, "later", next_attempt_at=now + 3600)
    b = await add(storage, "b", next_attempt_at=now - 5)
    a = await add(storage, "a", next_attempt_at=now - 10)
    held = await add(storage, "held", owner="other", lease_until=now + 60)
    expired = await add(storage, "expired", owner="dead", lease_until=now - 1, next_attempt_at=now - 1)
    done = await add(storage, "done", status="done")
    claimed = await storage.claim("me", 30, limit=2)
    assert [s.id for s in claimed] == [a.id, b.id]
    assert all(s.owner == "me" and now + 29 < s.lease_until < now + 31 for s in claimed)
    rest = await storage.claim("me", 30, limit=10)
    assert [s.id for s in rest] == [expired.id]  # its holder's lease ran out
    assert await storage.claim("me", 30, limit=10) == []
    assert {s.id for s in await storage.pending_submissions()} == {later.id, b.id, a.id, held.id, expired.id}
    assert done.id not in {s.id for s in await storage.pending_submissions()}


async def test_concurrent_claims_never_take_the_same_submission(db_url, storage):
    for n in range(60):
        await storage.add_submission(new(f"s{n}"))
    stores = [storage] + [await other(db_url) for _ in range(2)]
    try:
        rounds = await asyncio.gather(
            *(s.claim(f"owner-{i}", 30, limit=7) for i, s in enumerate(stores) for _ in range(4))
        )
    finally:
        for s in stores[1:]:
            await s.close()
    ids = [sub.id for batch in rounds for sub in batch]
    assert len(ids) == len(set(ids)) == 60


async def test_claim_skips_rows_another_claim_is_holding_on_postgresql(db_url, storage):
    if not storage.postgres:
        pytest.skip("row locks are PostgreSQL's; SQLite runs one writer at a time")
    a = await add(storage, "a", next_attempt_at=1)
    b = await add(storage, "b", next_attempt_at=2)
    engine = sa.ext.asyncio.create_async_engine(database_url(db_url))
    try:
        async with engine.connect() as conn:  # another replica's claim, in the middle of its UPDATE
            await conn.execute(sa.select(submissions.c.id).where(submissions.c.id == a.id).with_for_update())
            claimed = await asyncio.wait_for(storage.claim("me", 30, limit=10), 5)
            assert [s.id for s in claimed] == [b.id]  # not blocked by a, and a is not taken
            await conn.rollback()
    finally:
        await engine.dispose()
    assert [s.id for s in await storage.claim("me", 30, limit=10)] == [a.id]


async def test_renew_extends_only_the_owners_leases(storage):
    mine = await add(storage, "mine")
    theirs = await add(storage, "theirs")
    [m] = await storage.claim("me", 1, limit=1)
    [t] = await storage.claim("them", 1, limit=1)
    assert {m.id, t.id} == {mine.id, theirs.id}
    await storage.renew("me", [m.id, t.id], 600)
    assert (await storage.get_submission(m.id)).lease_until > time.time() + 500
    assert (await storage.get_submission(t.id)).lease_until < time.time() + 2
    await storage.renew("me", [], 600)  # nothing to renew


async def test_a_save_never_moves_the_lease_and_renew_says_which_it_still_holds(storage):
    """The holder's copy of the submission is from its claim; saving it after a renewal must not
    write the claim's expiry back (another replica would take over a live holder's work)."""
    await add(storage, "slow")
    [mine] = await storage.claim("me", 1, limit=1)
    renewed, until = await storage.renew("me", [mine.id, "gone"], 600)
    assert renewed == {mine.id} and until > time.time() + 500
    mine.steps_done.add("create")
    await storage.save_submission(mine)
    stored = await storage.get_submission(mine.id)
    assert stored.lease_until == pytest.approx(until) and stored.owner == "me"
    assert await storage.claim("other", 1, limit=1) == []


async def test_release_all_lets_another_process_carry_on(storage):
    for key in ("a", "b"):
        await storage.add_submission(new(key))
    assert len(await storage.claim("me", 600, limit=10)) == 2
    assert await storage.claim("other", 600, limit=10) == []
    await storage.release_all("me")
    taken = await storage.claim("other", 600, limit=10)
    assert len(taken) == 2 and all(s.owner == "other" for s in taken)


async def test_only_the_holder_saves_and_release_lets_go(storage):
    unclaimed = await add(storage, "free")
    unclaimed.attempts = 1
    await storage.save_submission(unclaimed)  # nobody holds it: NULL IS NOT DISTINCT FROM NULL
    assert (await storage.get_submission(unclaimed.id)).attempts == 1

    [mine] = await storage.claim("me", 600, limit=1)
    stale = await storage.get_submission(mine.id)
    stale.owner = "someone-else"
    with pytest.raises(LeaseLost):
        await storage.save_submission(stale)
    mine.steps_done.add("create")
    await storage.save_submission(mine)  # still held
    assert (await storage.get_submission(mine.id)).owner == "me"
    await storage.save_submission(mine, release=True)
    back = await storage.get_submission(mine.id)
    assert back.owner is None and back.lease_until == 0 and back.steps_done == {"create"}
    assert mine.owner is None
    # Taken over after its lease ran out: the old holder's save is refused.
    [again] = await storage.claim("me", 600, limit=1)
    async with storage.engine.connect() as conn:
        await conn.execute(sa.update(submissions).values(owner="successor"))
    with pytest.raises(LeaseLost):
        await storage.save_submission(again, release=True)
    assert (await storage.get_submission(again.id)).owner == "successor"


async def test_next_due_counts_leases_of_held_submissions(storage):
    assert await storage.next_due() is None
    now = time.time()
    await add(storage, "held", next_attempt_at=now - 100, owner="x", lease_until=now + 50)
    assert await storage.next_due() == pytest.approx(now + 50)
    await add(storage, "waiting", next_attempt_at=now + 20)
    assert await storage.next_due() == pytest.approx(now + 20)
    await add(storage, "held-but-later", next_attempt_at=now + 10, owner="x", lease_until=now + 5)
    assert await storage.next_due() == pytest.approx(now + 10)
    await add(storage, "done", next_attempt_at=0, status="done")
    assert await storage.next_due() == pytest.approx(now + 10)


async def test_backlog_counts_and_tickets_of(storage):
    assert await storage.backlog() == (0, None)
    subs = [await add(storage, f"s{n}", created_at=1000.0 + n) for n in range(4)]
    await add(storage, "done", status="done", created_at=999.0, ticket='{"display_id": "IT-0"}')
    await add(storage, "stranger", user_id="U2", ticket='{"display_id": "IT-X"}')
    for n, sub in enumerate(subs[:3]):
        sub.ticket, sub.status = {"display_id": f"IT-{n + 1}"}, "done" if n else "failed"
        await storage.save_submission(sub)
    assert await storage.backlog() == (2, 1003.0)  # s3 and the stranger's are pending
    assert await storage.counts() == {"pending": 2, "done": 3, "failed": 1}
    mine = await storage.tickets_of("U1", limit=3)
    assert [s.ticket["display_id"] for s in mine] == ["IT-3", "IT-2", "IT-1"]
    assert [s.ticket["display_id"] for s in await storage.tickets_of("U2")] == ["IT-X"]


# --- links, people, identities, state, routes ----------------------------------------------------


async def test_the_first_link_of_a_thread_stays(storage):
    assert await storage.link_for_thread("C1", "1.0") is None
    await storage.add_link(Link("C1", "1.0", "T1", "IT-1", "serval"), "s1")
    await storage.add_link(Link("C1", "1.0", "T2", "IT-2", "serval"), "s2")
    assert await storage.link_for_thread("C1", "1.0") == Link("C1", "1.0", "T1", "IT-1", "serval")


async def test_people_identities_state_and_routes_are_replaced_in_place(storage):
    assert await storage.person("U1") is None
    await storage.save_person("U1", {"name": "Ann"})
    await storage.save_person("U1", {"name": "Ann B"})
    profile, fetched = await storage.person("U1")
    assert profile == {"name": "Ann B"} and fetched == pytest.approx(time.time(), abs=5)
    await storage.save_person("U2", None)
    assert (await storage.person("U2"))[0] is None

    await storage.save_identity("serval", "U1", "a@x", "u-1")
    await storage.save_identity("serval", "U1", "a@x", "u-2")
    assert await storage.identity("serval", "U1", "a@x", 60) == "u-2"
    assert await storage.identity("serval", "U1", "other@x", 60) is None  # e-mail changed
    assert await storage.identity("rezolve", "U1", "a@x", 60) is None
    await asyncio.sleep(0.05)
    assert await storage.identity("serval", "U1", "a@x", 0.01) is None  # too old

    assert await storage.get_state("token") is None
    await storage.set_state("token", "one")
    await storage.set_state("token", "two")
    assert await storage.get_state("token") == "two"

    assert await storage.route("C1") is None
    await storage.save_route("C1", {"backend": "serval"}, "U9")
    await storage.save_route("C1", {"backend": "rezolve"}, "U8")
    assert await storage.route("C1") == {"backend": "rezolve"}
    assert await storage.ping()


# --- retention ---------------------------------------------------------------------------------


async def test_purge_deletes_old_finished_work_and_keeps_links_and_pending(storage):
    old, recent = time.time() - 100 * 86400, time.time() - 3600
    done_old = await add(storage, "done-old", status="done", updated_at=old)
    failed_old = await add(storage, "failed-old", status="failed", updated_at=old)
    pending_old = await add(storage, "pending-old", updated_at=old)
    done_recent = await add(storage, "done-recent", status="done", updated_at=recent)
    await storage.add_link(Link("C1", "1.0", "T1", "IT-1", "serval"), done_old.id)
    async with storage.engine.connect() as conn:
        await conn.execute(
            sa.insert(slack_events),
            [
                {"event_id": "Ev-old", "received_at": old, "submission_id": done_old.id},
                {"event_id": "Ev-new", "received_at": recent, "submission_id": None},
            ],
        )
    assert await storage.purge(90 * 86400) == {"submissions": 2, "slack_events": 1, "followed": 0}
    assert await storage.get_submission(done_old.id) is None
    assert await storage.get_submission(failed_old.id) is None
    assert await storage.get_submission(pending_old.id) is not None  # not finished: kept
    assert await storage.get_submission(done_recent.id) is not None
    assert await storage.link_for_thread("C1", "1.0") is not None  # thread links are kept
    async with storage.engine.connect() as conn:
        left = (await conn.execute(sa.select(slack_events.c.event_id))).scalars().all()
    assert left == ["Ev-new"]
    assert await storage.purge(90 * 86400) == {"submissions": 0, "slack_events": 0, "followed": 0}


# --- engines and URLs ---------------------------------------------------------------------------


def test_database_urls_map_to_the_async_drivers():
    assert database_url("sqlite:///./data/tickets.db").drivername == "sqlite+aiosqlite"
    assert database_url("sqlite:///./data/tickets.db").database == "./data/tickets.db"
    assert database_url("sqlite:////var/lib/bot/t.db").database == "/var/lib/bot/t.db"
    pg = database_url("postgresql://user:p%40ss@db.internal:5432/tickets?sslmode=require")
    assert (pg.drivername, pg.username, pg.password, pg.host, pg.port, pg.database) == (
        "postgresql+asyncpg", "user", "p@ss", "db.internal", 5432, "tickets",
    )
    assert pg.query == {"ssl": "require"}
    assert database_url("postgres://u@h/d").drivername == "postgresql+asyncpg"
    assert database_url("/tmp/x.db").database == "/tmp/x.db"
    with pytest.raises(ValueError):
        database_url("mysql://u@h/d")


async def test_sqlite_file_is_private_in_wal_with_full_sync(tmp_path):
    path = tmp_path / "data" / "deeper" / "bot.db"
    s = await Storage(f"sqlite:///{path}").open()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        async with s.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2  # FULL
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
        await s.add_submission(new("a"))
    finally:
        await s.close()
    s = await Storage(f"sqlite:///{path}").open()  # reopened: the journal is still there
    try:
        assert await s.counts() == {"pending": 1}
    finally:
        await s.close()


async def test_sqlite_in_memory_works(tmp_path):
    s = await Storage("sqlite:///:memory:").open()
    try:
        sub, _ = await s.add_submission(new("a", "C1:1.0"))
        [claimed] = await s.claim("me", 30, limit=5)
        assert claimed.id == sub.id
        await s.save_submission(claimed, release=True)
        assert await s.counts() == {"pending": 1}
    finally:
        await s.close()
    assert list(tmp_path.iterdir()) == []


async def test_statements_cancelled_midway_leave_the_storage_usable(storage):
    """A request's task cancelled while its statement runs (a client gone, a shutdown)."""
    await storage.add_submission(new("a"))
    for _ in range(3):
        tasks = [asyncio.create_task(storage.claim(f"o{n}", 30, limit=1)) for n in range(10)]
        tasks += [asyncio.create_task(storage.set_state(f"k{n}", "v")) for n in range(10)]
        await asyncio.sleep(0.001)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await storage.release_all("o0")
    assert await storage.ping()
    await storage.set_state("after", "ok")
    assert await storage.get_state("after") == "ok"
    sub = (await storage.pending_submissions())[0]
    await storage.release_all(sub.owner or "")
    assert len(await storage.claim("me", 30, limit=5)) == 1


async def test_database_errors_come_out_as_sqlalchemys(storage):
    """One family of errors whatever the engine: the service retries them as transient."""
    async with storage.engine.connect() as conn:
        await conn.execute(sa.text("DROP TABLE state"))
    with pytest.raises(sa.exc.OperationalError) as raised:
        await storage.set_state("k", "secret value typed by someone")
    assert type(raised.value).__module__.startswith("sqlalchemy")
    assert "secret value" not in str(raised.value)


# --- shared between replicas ----------------------------------------------------------------------


async def test_exclusive_lets_one_process_at_a_time_in(db_url, storage):
    """E.g. one Socialboards refresh-token exchange at a time across replicas."""
    second = storage if not storage.postgres else await other(db_url)  # SQLite: one serving process
    inside: list[str] = []
    log: list[tuple[str, str]] = []

    async def hold(s: Storage, who: str, seconds: float) -> None:
        async with s.exclusive("socialboards.token"):
            inside.append(who)
            log.append(("in", who))
            assert len(inside) == 1, inside
            await asyncio.sleep(seconds)
            inside.remove(who)
            log.append(("out", who))

    try:
        await asyncio.gather(hold(storage, "a", 0.2), hold(second, "b", 0.05), hold(storage, "c", 0.05))
        assert [e for e, _ in log] == ["in", "out"] * 3
        # Another name is not held up.
        async with storage.exclusive("x"):
            await asyncio.wait_for(hold(second, "d", 0), 2)
        # One waiting for the lock is cancelled: the lock is not left behind.
        async with storage.exclusive("y"):
            waiter = asyncio.create_task(_enter(second, "y"))
            await asyncio.sleep(0.1)
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.wait_for(_enter(second, "y"), 2)
        await asyncio.wait_for(_enter(storage, "y"), 2)
    finally:
        if second is not storage:
            await second.close()


async def _enter(s: Storage, name: str) -> None:
    async with s.exclusive(name):
        pass


async def test_routes_version_changes_when_any_process_saves_a_route(db_url, storage):
    second = await other(db_url)
    try:
        before = await storage.routes_version()
        assert before == (0, None)
        await second.save_route("C1", {"backend": "serval"}, "U1")
        first_save = await storage.routes_version()
        assert first_save != before and first_save[0] == 1
        await asyncio.sleep(0.01)
        await second.save_route("C1", {"backend": "rezolve"}, "U1")  # replaced in place
        assert (await storage.routes_version()) != first_save
    finally:
        await second.close()


async def test_an_event_id_is_a_first_delivery_once(storage):
    assert await storage.first_delivery("Ev123") is True
    assert await storage.first_delivery("Ev123") is False
    assert await storage.first_delivery("Ev456") is True


async def test_release_others_frees_every_lease_but_ones_own(storage):
    from bot.journal.storage import Submission

    mine, _ = await storage.add_submission(Submission.new("a", {"user_id": "U1"}, None))
    theirs, _ = await storage.add_submission(Submission.new("b", {"user_id": "U1"}, None))
    assert [s.id for s in await storage.claim("me", 60, 1)] == [mine.id]
    assert [s.id for s in await storage.claim("dead", 60, 1)] == [theirs.id]
    assert await storage.claim("me", 60, 5) == []  # both held
    await storage.release_others("me")
    assert [s.id for s in await storage.claim("me", 60, 5)] == [theirs.id]


async def test_stuck_counts_pending_submissions_older_than_the_threshold(storage):
    from bot.journal.storage import Submission

    old = Submission.new("old", {"user_id": "U1"}, None)
    old.created_at -= 3600
    await storage.add_submission(old)
    await storage.add_submission(Submission.new("new", {"user_id": "U1"}, None))
    count, oldest = await storage.stuck(600)
    assert count == 1 and oldest == pytest.approx(old.created_at)
    assert (await storage.stuck(7200))[0] == 0
