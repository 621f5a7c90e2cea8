"""Several bot processes on one PostgreSQL database (issue 12): work is shared by lease, the unique
keys hold through the database, and a replica that dies has its submissions carried on by another.
Every process here is the real `python app.py`, against a real PostgreSQL server (tests/pg.py)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.conftest import SlackSender, eventually, submission
from tests.test_reliability import ROOT, BotProcess, free_port, serval_clients, told  # noqa: F401 (fixture)
from tests.test_ticket_flow import filled, open_modal_with_command, open_modal_with_shortcut, shortcut
from sandbox.serval import Fault

REPLICA_ENV = dict(LEASE_SECONDS="5", RETRY_BASE_SECONDS="0.05", RETRY_MAX_SECONDS="0.5", SERVAL_TIMEOUT="2",
                   LOG_LEVEL="INFO")


@contextlib.asynccontextmanager
async def running_replicas(
    tmp_path: Path, n: int, slack_url: str, serval_url: str, db_url: str, **env: str
) -> AsyncIterator[tuple[list[BotProcess], list[SlackSender]]]:
    """`n` bot processes on one database, started, each with a sender of signed Slack requests;
    `env` adds to or overrides REPLICA_ENV."""
    bots = []
    for i in range(n):
        bot = BotProcess(tmp_path, slack_url, serval_url)
        bot.env.update(DATABASE_URL=db_url, **{**REPLICA_ENV, **env})
        bot.log_path = tmp_path / f"replica-{i}.log"
        bots.append(bot)
    senders = [SlackSender(b.url, secret=BotProcess.SECRETS["SLACK_SIGNING_SECRET"]) for b in bots]
    try:
        await asyncio.gather(*(b.start() for b in bots))
        yield bots, senders
    finally:
        for b in bots:
            b.stop()
        for s in senders:
            await s.aclose()


async def test_three_replicas_one_killed_make_one_ticket_per_acknowledged_submission(
    tmp_path, slack, serval_clients, pg_url
):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    serval_state.set_faults({
        "POST /v2/tickets": Fault(error_rate=0.05, status=500, rate_limit_rate=0.04, retry_after=0,
                                  drop_rate=0.04, lost_response_rate=0.05, latency=0.05),
        "POST /v2/tickets/{ticket_id}/connect": Fault(error_rate=0.1, status=503, lost_response_rate=0.05),
        "GET /v2/users": Fault(error_rate=0.1, status=500),
    })
    acked: list[str] = []
    async with running_replicas(tmp_path, 3, slack_url, serval_url, pg_url) as (bots, senders):
        view = await open_modal_with_command(senders[0], slack_state, "")
        gate = asyncio.Semaphore(20)

        async def one(i: int) -> None:
            title = f"Replica {i:03d}"
            async with gate:
                try:
                    r = await senders[i % 3].interactive(submission(view, filled(title, share=True), view_id=f"VR{i}"))
                except httpx.TransportError:
                    return  # not acknowledged (the replica died): Slack keeps the form open
                if r.status_code == 200 and r.json().get("response_action") == "update":
                    acked.append(title)

        tasks = [asyncio.create_task(one(i)) for i in range(300)]
        await eventually(lambda: len(acked) >= 120, timeout=60)
        bots[1].kill()
        await asyncio.gather(*tasks)
        assert len(acked) >= 200

        await eventually(lambda: set(acked) <= {t["name"] for t in serval_state.tickets.values()}, timeout=90)
        await eventually(lambda: set(acked) <= set(told(slack_state)), timeout=60)
        await asyncio.sleep(1.0)  # let any duplicate show up
        names = Counter(t["name"] for t in serval_state.tickets.values())
        assert max(names.values()) == 1, [n for n, c in names.items() if c > 1]
        announced = told(slack_state)
        # At least once, never silent. A notice repeats only when a replica dies between Slack
        # taking it and the journal recording it: at most the submissions the killed replica was
        # carrying at that moment (MAX_TICKETS_IN_FLIGHT), and in practice a few.
        repeated = [t for t in acked if announced[t] > 1]
        assert max(announced[t] for t in acked) <= 2 and len(repeated) <= 64, repeated
        for ticket_id, ticket in serval_state.tickets.items():
            if ticket["name"] in acked:
                assert len(serval_state.connections.get(ticket_id, [])) == 1, ticket["name"]


async def test_the_same_view_submitted_to_two_replicas_at_once_is_one_ticket(tmp_path, slack, serval_clients, pg_url):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    async with running_replicas(tmp_path, 2, slack_url, serval_url, pg_url) as (bots, senders):
        view = await open_modal_with_command(senders[0], slack_state, "")
        for i in range(10):
            body = submission(view, filled(f"Twice {i}"), view_id=f"VT{i}")
            answers = await asyncio.gather(*(s.interactive(body) for s in senders))
            assert all(a.status_code == 200 for a in answers)
        await eventually(lambda: len(told(slack_state)) == 10, timeout=30)
        await asyncio.sleep(1.0)
        names = Counter(t["name"] for t in serval_state.tickets.values())
        assert names == Counter({f"Twice {i}": 1 for i in range(10)})
        assert max(told(slack_state).values()) == 1


async def test_one_thread_through_two_replicas_is_one_ticket_and_the_other_person_is_told_which(
    tmp_path, slack, serval_clients, pg_url
):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    async with running_replicas(tmp_path, 2, slack_url, serval_url, pg_url) as (bots, senders):
        views = [await open_modal_with_shortcut(s, slack_state, shortcut()) for s in senders]
        bodies = [submission(v, filled(f"Thread via {i}"), view_id=f"VH{i}") for i, v in enumerate(views)]
        answers = await asyncio.gather(*(s.interactive(b) for s, b in zip(senders, bodies)))
        assert all(a.status_code == 200 for a in answers)
        await eventually(lambda: len(serval_state.tickets) == 1 and told(slack_state), timeout=20)
        await asyncio.sleep(1.0)
        assert len(serval_state.tickets) == 1
        ticket = next(iter(serval_state.tickets.values()))
        # the submission that lost the race: its form says the thread is taken, naming the ticket
        # when it is known, or that one is being created
        texts = [a.text for a in answers] + [
            c["args"]["text"] for c in slack_state.calls if c["method"] in ("chat.postEphemeral", "views.update")
            and isinstance(c["args"].get("text"), str)
        ]
        assert any("already" in t for t in texts), texts
        assert sum(told(slack_state).values()) == 1
        assert ticket["name"] in ("Thread via 0", "Thread via 1")


async def test_every_replica_stopped_mid_outage_then_one_restarted_finishes_each_once(
    tmp_path, slack, serval_clients, pg_url
):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    serval_state.set_faults({"POST /v2/tickets": Fault(error_rate=1.0, status=503)})
    async with running_replicas(tmp_path, 2, slack_url, serval_url, pg_url) as (bots, senders):
        view = await open_modal_with_command(senders[0], slack_state, "")
        for i in range(20):
            r = await senders[i % 2].interactive(submission(view, filled(f"Outage {i:02d}"), view_id=f"VO{i}"))
            assert r.status_code == 200
        await asyncio.sleep(1.0)
        assert serval_state.tickets == {}
        bots[0].kill()
        bots[1].stop()  # SIGTERM: leases released
        serval_state.set_faults({})
        await bots[0].start()
        await eventually(lambda: len(serval_state.tickets) == 20, timeout=60)
        await eventually(lambda: len(told(slack_state)) == 20, timeout=30)
        await asyncio.sleep(1.0)
        names = Counter(t["name"] for t in serval_state.tickets.values())
        assert max(names.values()) == 1 and len(names) == 20
        assert max(told(slack_state).values()) == 1


async def test_a_second_serving_process_on_one_sqlite_file_is_refused(tmp_path, slack, serval_clients):
    """On SQLite the second process exits at start-up with a message that says why, instead of
    duplicating tickets; PostgreSQL is the way to run several."""
    first = BotProcess(tmp_path, slack[1], serval_clients[1])
    await first.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "app.py"), "--mode", "http", cwd=ROOT, env=dict(first.env, PORT=str(free_port())),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        first.stop()
    assert proc.returncode == 2, err
    assert "already serving" in err.decode() and "PostgreSQL" in err.decode()
