"""The chaos test (issue 18): three replicas of the real bot (`python app.py`) on one real PostgreSQL
database, a lease of a few seconds, Slack and Serval answering at random around it and beyond it,
injected faults, and replicas killed (SIGKILL) or stopped (SIGTERM) and started again while
`/ticket` and message-shortcut submissions arrive. At the end, what docs/reliability.md promises:
one ticket per acknowledged submission, every person told, no thread linked twice.

Seeded: every random choice (the plan of submissions, signals and Slack faults, and the seeds of
the stand-ins' latency and fault draws) comes from one `random.Random(CHAOS_SEED)`. A seed replays
the same plan; the processes' timing still varies from run to run. Size from the environment:
CHAOS_SUBMISSIONS, CHAOS_SECONDS (how long submissions and signals go on), CHAOS_LEASE_SECONDS.
`make test` runs a small one with the default seed; `make chaos` a long one with a random seed.
A failure names its seed and the command that replays it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.journal.storage import Storage
from sandbox.serval import Fault
from tests.conftest import SlackSender, eventually, submission
from tests.test_reliability import BotProcess, serval_clients, told  # noqa: F401 (fixture)
from tests.test_replicas import running_replicas
from tests.test_ticket_flow import filled, open_modal_with_command, open_modal_with_shortcut, shortcut

SEED = int(os.environ.get("CHAOS_SEED") or 1818)
SUBMISSIONS = int(os.environ.get("CHAOS_SUBMISSIONS") or 40)
SECONDS = float(os.environ.get("CHAOS_SECONDS") or 25)
LEASE = float(os.environ.get("CHAOS_LEASE_SECONDS") or 3)
REPLICAS = 3
CHANNEL = "C111"
REPLAY = (f"make chaos CHAOS_SEED={SEED} CHAOS_SUBMISSIONS={SUBMISSIONS} CHAOS_SECONDS={SECONDS:g}"
          f" CHAOS_LEASE_SECONDS={LEASE:g}")


# --- the plan: a pure function of the seed ------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One submission: `at` seconds after the start, through `/ticket` (with or without *Share*)
    or the message shortcut, to the live replica `pick` (modulo how many are up then)."""

    i: int
    at: float
    shortcut: bool
    share: bool
    pick: int

    @property
    def title(self) -> str:
        return f"Chaos {self.i:04d}"

    @property
    def user(self) -> str:
        return f"UCHAOS{self.i:04d}"  # a new person each: their users.info is asked (slowly) once


@dataclass(frozen=True)
class Blow:
    """Replica `replica` gets `sig` at `at`, and is started again `down` seconds after it exits."""

    at: float
    replica: int
    sig: signal.Signals
    down: float


@dataclass(frozen=True)
class Glitch:
    """Slack answers the next `times` calls of `method` with an error (`internal_error`) or a 429."""

    at: float
    method: str
    kind: str
    times: int


@dataclass(frozen=True)
class Plan:
    sent: list[Sent]
    blows: list[Blow]
    glitches: list[Glitch]
    slack_seed: int
    serval_seed: int
    serval_users: frozenset[int]  # submissions whose person Serval knows by e-mail

    @classmethod
    def draw(cls, rng: random.Random, n: int, seconds: float) -> "Plan":
        sent = sorted(
            (Sent(i, rng.uniform(0, seconds), rng.random() < 0.5, rng.random() < 0.6, rng.randrange(REPLICAS))
             for i in range(n)),
            key=lambda s: s.at,
        )
        sent = [Sent(i, s.at, s.shortcut, s.share, s.pick) for i, s in enumerate(sent)]  # numbered in order
        blows, at = [], rng.uniform(2, 4)
        while at < seconds:
            sig = signal.SIGKILL if rng.random() < 0.6 else signal.SIGTERM
            blows.append(Blow(at, rng.randrange(REPLICAS), sig, rng.uniform(0.3, 2.5)))
            at += rng.uniform(2.5, 6)
        methods = ["users.info", "chat.postEphemeral", "chat.postMessage", "conversations.replies", "views.update"]
        glitches = sorted(
            (Glitch(rng.uniform(0, seconds), rng.choice(methods), rng.choice(["fail", "rate_limit"]), rng.randint(1, 3))
             for _ in range(max(1, int(seconds / 3)))),
            key=lambda g: g.at,
        )
        return cls(sent, blows, glitches, rng.getrandbits(32), rng.getrandbits(32),
                   frozenset(i for i in range(n) if rng.random() < 0.5))

    def summary(self) -> str:
        kills = Counter(b.sig.name for b in self.blows)
        shortcuts = sum(s.shortcut for s in self.sent)
        return (f"{len(self.sent)} submissions ({shortcuts} by shortcut) over {SECONDS:g}s, "
                f"{dict(kills)} planned, {len(self.glitches)} Slack faults, lease {LEASE:g}s")


def set_weather(slack_state: Any, serval_state: Any, plan: Plan) -> None:
    """Latencies around the lease, some longer, and faults; each drawn per call from the seeded RNGs."""
    slack_state.rng = random.Random(plan.slack_seed)
    serval_state.rng = random.Random(plan.serval_seed)
    # a person's profile is read once (then cached in the journal): at times slower than the lease
    slack_state.delay("users.info", 0.1, up_to=LEASE * 1.8)
    for method in ("chat.postEphemeral", "chat.postMessage", "conversations.replies", "views.update",
                   "chat.getPermalink", "conversations.info"):
        slack_state.delay(method, 0.0, up_to=LEASE / 4)
    serval_state.set_faults({
        "POST /v2/tickets": Fault(latency=LEASE / 3, latency_max=LEASE * 4 / 3, error_rate=0.05, status=503,
                                  drop_rate=0.03, lost_response_rate=0.06),
        "POST /v2/tickets/search": Fault(latency=0.0, latency_max=LEASE / 3, error_rate=0.05, status=500),
        "POST /v2/tickets/{ticket_id}/connect": Fault(latency=0.0, latency_max=LEASE / 2, error_rate=0.08,
                                                      status=502, lost_response_rate=0.05),
        "GET /v2/users": Fault(latency=0.0, latency_max=LEASE, error_rate=0.1, status=500),
    })


# --- running it ---------------------------------------------------------------------------------


async def exited(bot: BotProcess, sig: signal.Signals | None = None, timeout: float = 15.0) -> None:
    """Send `sig` (if any) and wait for the process to end, without blocking the event loop: the
    stand-ins it is talking to run in it."""
    assert bot.proc
    if sig is not None and bot.proc.poll() is None:
        bot.proc.send_signal(sig)
    await eventually(lambda: bot.proc.poll() is not None, timeout=timeout, interval=0.05)


@dataclass
class Outcome:
    acked: dict[str, Sent] = field(default_factory=dict)  # title -> submission answered "Creating your ticket…"
    threads: dict[str, str] = field(default_factory=dict)  # title -> "channel:ts" a shortcut was used on
    unacked: int = 0
    events: list[tuple[float, str]] = field(default_factory=list)  # (time.time(), signal or restart)

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    @property
    def signals(self) -> Counter[str]:
        return Counter(what.split()[0] for _, what in self.events if what.startswith("SIG"))


async def run(plan: Plan, bots: list[BotProcess], senders: list[SlackSender], slack_state: Any, out: Outcome) -> None:
    loop = asyncio.get_running_loop()
    up = set(range(len(bots)))
    command_view = await open_modal_with_command(senders[0], slack_state, "")
    start = loop.time()

    async def until(at: float) -> None:
        await asyncio.sleep(max(0.0, start + at - loop.time()))  # pacing of the plan, never ordering

    async def send(s: Sent) -> None:
        await until(s.at)
        sender = senders[sorted(up)[s.pick % len(up)]]
        try:
            if s.shortcut:
                message = slack_state.post_user_message(CHANNEL, s.user, f"{s.title}: it is broken\nsince this morning")
                body = shortcut()
                body["user"] = {**body["user"], "id": s.user}
                body["message"] = {**body["message"], "ts": message["ts"], "text": message["text"], "user": s.user}
                body["message_ts"] = message["ts"]
                view = await open_modal_with_shortcut(sender, slack_state, body)
                out.threads[s.title] = f"{CHANNEL}:{message['ts']}"
            else:
                view = command_view
            answer = await sender.interactive(submission(view, filled(s.title, share=s.share), user_id=s.user,
                                                         view_id=f"VCHAOS{s.i}"))
        except (httpx.TransportError, AssertionError):
            out.unacked += 1  # the replica died under it: Slack shows an error, nothing was promised
            return
        if answer.status_code == 200 and answer.json().get("response_action") == "update":
            out.acked[s.title] = s
        else:
            out.unacked += 1

    async def blow(b: Blow) -> None:
        await until(b.at)
        if b.replica not in up or len(up) == 1:  # always one replica to take Slack's requests
            return
        up.discard(b.replica)
        out.note(f"{b.sig.name} replica-{b.replica}")
        await exited(bots[b.replica], b.sig)
        out.note(f"replica-{b.replica} exited")
        await asyncio.sleep(b.down)
        await bots[b.replica].start()
        out.note(f"replica-{b.replica} started again")
        up.add(b.replica)

    async def glitch(g: Glitch) -> None:
        await until(g.at)
        if g.kind == "fail":
            slack_state.fail(g.method, "internal_error", times=g.times)
        else:
            slack_state.rate_limit(g.method, times=g.times, retry_after=1)

    await asyncio.gather(*(send(s) for s in plan.sent), *(blow(b) for b in plan.blows),
                         *(glitch(g) for g in plan.glitches))


# --- when it fails: what to replay, and what happened -------------------------------------------

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def history(title: str, serval_state: Any, logs: list[Path], out: Outcome) -> list[str]:
    """One submission's story, in time order: its creates as Serval saw them, every log line of
    every replica about it, and the signals meanwhile."""
    wall = time.time() - time.monotonic()  # Serval's request log keeps monotonic times
    creates = [r for r in serval_state.requests if r["method"] == "POST" and r["path"] == "/v2/tickets"
               and (r["body"] or {}).get("name") == title]
    refs = {m.group(1) for r in creates for m in [re.search(r"ref slack-(\w+)", r["body"].get("description") or "")] if m}
    entries = []
    for r in creates:
        entries.append((wall + r["at"], "Serval: POST /v2/tickets arrives"))
        if r.get("answered_at"):
            entries.append((wall + r["answered_at"], "Serval: POST /v2/tickets done (answered, dropped or lost)"))
    for path in logs:
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            found = LOG_TIME.match(line)
            if found and any(ref in line for ref in refs):
                at = dt.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                entries.append((at, f"{path.stem}: {line[len(found.group(0)):][:200]}"))
    if not entries:
        return [f"{title}: no create request seen"]
    first, last = min(e[0] for e in entries), max(e[0] for e in entries)
    entries += [e for e in out.events if first - 1 <= e[0] <= last + 1]
    return [f"{title} (submission {', '.join(sorted(refs))}):"] + [
        f"  {at - first:+7.2f}s {what}" for at, what in sorted(entries)
    ]


@contextlib.contextmanager
def replayable(plan: Plan, logs: list[Path], out: Outcome, serval_state: Any) -> Iterator[None]:
    """Any assertion inside names the seed, the command that replays it, where the logs are, and
    the story of the first duplicated submissions."""
    __tracebackhide__ = True
    try:
        yield
    except AssertionError as exc:
        took_over = {p.name: p.read_text(errors="replace").count("another process took it over") for p in logs
                     if p.exists()}
        names = Counter(t["name"] for t in serval_state.tickets.values())
        stories = [line for title in sorted(n for n, c in names.items() if c > 1)[:3]
                   for line in history(title, serval_state, logs, out)]
        raise AssertionError("\n".join([
            str(exc), "",
            f"chaos seed {SEED} ({plan.summary()}); replay with: {REPLAY}",
            f"signals sent: {dict(out.signals)}; replica logs: {logs[0].parent}"
            f" ('another process took it over': {took_over})",
            *stories,
        ])) from None


def ticket_ids_in_thread(slack_state: Any, thread: str) -> set[str]:
    channel, ts = thread.split(":")
    return {found.group(1) for m in slack_state.messages[channel]
            if m.get("thread_ts") == ts and m.get("bot_id")
            for found in [re.search(r"created ticket \*([^*]+)\*", m.get("text") or "")] if found}


async def test_chaos_one_ticket_per_acknowledged_submission_everyone_told_no_thread_linked_twice(
    tmp_path, slack, serval_clients, pg_url
):
    slack_state, slack_url = slack
    serval_state, serval_url = serval_clients
    plan = Plan.draw(random.Random(SEED), SUBMISSIONS, SECONDS)
    print(f"chaos seed {SEED}: {plan.summary()}")
    for s in plan.sent:
        slack_state.add_user(s.user, email=f"chaos{s.i}@example.com", name=f"chaos{s.i}")
        if s.i in plan.serval_users:
            serval_state.add_user(f"chaos{s.i}@example.com", "Chaos", f"Person {s.i}")
    env = dict(LEASE_SECONDS=f"{LEASE:g}", SERVAL_TIMEOUT=f"{LEASE * 2:g}")
    logs = [tmp_path / f"replica-{i}.log" for i in range(REPLICAS)]
    out = Outcome()
    async with running_replicas(tmp_path, REPLICAS, slack_url, serval_url, pg_url, **env) as (bots, senders):
        journal = await Storage(pg_url).open()
        try:
            with replayable(plan, logs, out, serval_state):
                set_weather(slack_state, serval_state, plan)
                await run(plan, bots, senders, slack_state, out)
                print(f"acknowledged {len(out.acked)}, not acknowledged {out.unacked}, signals {dict(out.signals)}")
                await check(plan, out, bots, slack_state, serval_state, journal)
        finally:
            await journal.close()
            # a graceful stop, without blocking the stand-ins the replicas may still be talking to
            await asyncio.gather(*(exited(b, signal.SIGTERM) for b in bots), return_exceptions=True)


async def waited(what: str, check: Any, missing: Any, timeout: float) -> None:
    try:
        await eventually(check, timeout=timeout, interval=0.1)
    except AssertionError:
        raise AssertionError(f"{what} within {timeout:g}s after the chaos; still missing: {missing()}") from None


async def check(plan: Plan, out: Outcome, bots: list[BotProcess], slack_state: Any, serval_state: Any,
                journal: Storage) -> None:
    acked = out.acked
    assert len(acked) >= SUBMISSIONS // 2, f"only {len(acked)} of {SUBMISSIONS} acknowledged"

    # Settle: everything acknowledged gets its ticket and its notice, the journal empties, and no
    # request to Serval is still on its way (a late duplicate would be).
    settle = 30 + SECONDS
    names = lambda: Counter(t["name"] for t in serval_state.tickets.values())  # noqa: E731
    await waited("a ticket for every acknowledged submission", lambda: set(acked) <= set(names()),
                 lambda: sorted(set(acked) - set(names())), settle)
    await waited("every person told", lambda: set(acked) <= set(told(slack_state)),
                 lambda: sorted(set(acked) - set(told(slack_state))), settle)

    async def quiet() -> bool:
        counts = await journal.counts()
        return not counts.get("pending") and not any(serval_state.in_flight.values())

    await waited("the journal done and Serval idle", quiet, lambda: serval_state.in_flight, settle)
    assert all(bot.proc and bot.proc.poll() is None for bot in bots), "a replica exited on its own"

    duplicated = sorted(n for n, c in names().items() if c > 1)
    assert not duplicated, f"{len(duplicated)} submissions became more than one ticket: {duplicated}"
    assert set(names()) <= {s.title for s in plan.sent}
    announced = told(slack_state)
    # At least once. Again only when a replica was killed between Slack taking the notice and the
    # journal recording it (docs/reliability.md, known limitations): never without a SIGKILL, and
    # no more repeats than kills (each interrupts the few notices on their way at that moment; a
    # long run can hit one submission twice).
    repeats = {t: announced[t] - 1 for t in acked if announced[t] > 1}
    assert all(announced[t] >= 1 for t in acked), [t for t in acked if not announced[t]]
    assert sum(repeats.values()) <= out.signals.get("SIGKILL", 0), repeats
    by_name = {t["name"]: (i, t) for i, t in serval_state.tickets.items()}
    linked = Counter(c["externalTicketId"] for cs in serval_state.connections.values() for c in cs)
    assert max(linked.values(), default=1) == 1, [e for e, n in linked.items() if n > 1]
    for title, s in acked.items():
        ticket_id, ticket = by_name[title]
        connections = serval_state.connections.get(ticket_id, [])
        assert len(connections) == (1 if s.shortcut or s.share else 0), (title, connections)
        if s.shortcut:
            thread = out.threads[title]
            assert connections[0]["externalTicketId"] == thread, (title, connections)
            ids = ticket_ids_in_thread(slack_state, thread)
            assert ids == {ticket["friendlyIdentifier"]}, (title, thread, ids)
