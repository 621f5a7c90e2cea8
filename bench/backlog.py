"""Phase "backlog": a journal holding N unfinished submissions (20,000 by default), then a fresh bot
process started on it against the Serval sandbox and the fake Slack. Measured: the bot's peak RSS
while it works the backlog off (target < 150 MB) and the time to drain it (tickets/s).

The journal is written before the bot starts, by this module as a program (its own process, the
bot's checkout on its path):

    python -m bench.backlog --database-url sqlite:///tmp/x/backlog.db --n 20000 --tag b1

`bot.journal.storage.Storage` opens (and migrates) the fresh journal; every submission is a
`Submission.new` whose payload is shaped as `TicketService.submit` builds it for a `/ticket` modal
(origin {source: command, channel C111 #dev}, user, requester, view_id None, title, description,
values {}, share False), not held by any process, due now. The first goes in through
`Storage.add_submission`; the rest with sqlite3, 1,000 to a transaction, as the columns that call
writes (20,000 autocommitted inserts at synchronous=FULL would take a minute of set-up). The
journal is then read back through the Storage API (`backlog()`, `get_submission`, `counts()`).
Prints one JSON object.

The bot then finds the backlog when it starts (`TicketService.resume`) and claims it from the journal
in batches of at most MAX_TICKETS_IN_FLIGHT; with view_id None each ticket ends with its
`chat.postEphemeral`, which the fake Slack counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import slackreq
from .stats import summary

if TYPE_CHECKING:
    from .runner import Harness

CHUNK = 1000


def payload(tag: str, i: int) -> dict[str, Any]:
    """What `TicketService.submit` journals for a /ticket modal from #dev, without "share"."""
    from bot.slack.views import Origin

    origin = Origin(source="command", channel_id="C111", channel_name="dev")
    return {
        "origin": asdict(origin),
        "user_id": "U111",
        "requester_id": "U111",
        "view_id": None,
        "title": slackreq.title(tag, i),
        "description": slackreq.DESCRIPTION,
        "values": {},
        "share": False,
    }


def _columns(sub: Any) -> dict[str, Any]:
    """The columns `Storage.add_submission` writes for a submission."""
    return {
        "id": sub.id, "dedupe_key": sub.dedupe_key, "thread_key": sub.thread_key,
        "payload": json.dumps(sub.payload), "user_id": sub.payload.get("user_id"),
        "created_at": sub.created_at, "updated_at": sub.updated_at,
        "owner": sub.owner, "lease_until": sub.lease_until,
    }


async def write(url: str, n: int, tag: str) -> dict[str, Any]:
    import sqlite3

    from bot.journal.storage import Storage, Submission

    t0 = time.monotonic()
    if not url.startswith("sqlite:///"):
        raise ValueError("the backlog writer writes SQLite journals")
    path = Path(url.removeprefix("sqlite:///"))
    subs = [Submission.new(f"bench-backlog-{tag}-{i}", payload(tag, i), None) for i in range(n)]
    storage = await Storage(url).open()  # creates the journal (migrations)
    try:
        if subs:
            _stored, new = await storage.add_submission(subs[0])
            if not new:
                raise RuntimeError("the fresh journal already held the first submission")
    finally:
        await storage.close()
    if n > 1:  # the rest in bulk, on a connection of our own (the Storage keeps its one connection)
        columns = list(_columns(subs[0]))
        sql = f"INSERT INTO submissions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        con = sqlite3.connect(path, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=5000")
            for start in range(1, n, CHUNK):
                con.execute("BEGIN")
                con.executemany(sql, [tuple(_columns(s).values()) for s in subs[start:start + CHUNK]])
                con.execute("COMMIT")
        finally:
            con.close()
    storage = await Storage(url).open()  # read back through the Storage API
    try:
        pending, _oldest = await storage.backlog()
        if pending != n:
            raise RuntimeError(f"the journal holds {pending} pending submissions, not {n}")
        for sub in subs[:1] + subs[-1:]:
            back = await storage.get_submission(sub.id)
            if back is None or back.payload != sub.payload or back.status != "pending" or back.owner is not None:
                raise RuntimeError(f"submission {sub.id} did not read back as written")
        counts = await storage.counts()
    finally:
        await storage.close()
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    return {"written": n, "write_s": time.monotonic() - t0, "journal_mb": size / 1e6, "counts": counts}


# --- the harness side ---------------------------------------------------------------------------


async def run(h: "Harness") -> dict[str, Any]:
    from bot.settings import Settings

    from .runner import EPHEMERAL

    cfg = h.cfg
    n = cfg.backlog
    name = "bot-backlog"
    db = h.workdir / f"{name}.db"
    url = f"sqlite:///{db}"
    tag = h.tag("bl")
    await h.reset_fakes()
    argv = [sys.executable, "-m", "bench.backlog", "--database-url", url, "--n", str(n), "--tag", tag,
            "--bot-dir", str(cfg.bot_dir)]
    proc = await asyncio.create_subprocess_exec(*argv, env=h._module_env(), cwd=str(h.workdir),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bench.backlog could not write the journal: {err.decode()[-2000:]}")
    written = json.loads(out.decode().strip().splitlines()[-1])
    h.log(f"backlog: {n:,} unfinished submissions written in {written['write_s']:.1f} s"
          f" ({written['journal_mb']:.1f} MB journal); starting the bot on it…")

    harness0 = h.harness_cpu()
    t_spawn = time.monotonic()
    bot = h.start_bot(name, database_url=url, current=False)
    t_ready = time.monotonic()
    rss: list[tuple[float, int, float]] = []  # (seconds since spawn, tickets finished, RSS MB)
    done_n = 0
    drained = False
    deadline = t_spawn + max(120.0, n / 20)
    try:
        while time.monotonic() < deadline:
            done_n = await h.count(h.slack, EPHEMERAL)
            mem = bot.memory()
            rss.append((time.monotonic() - t_spawn, done_n, mem["VmRSS"] / 1024))
            if done_n >= n:
                drained = True
                break
            await asyncio.sleep(0.25)
        await asyncio.sleep(0.5)  # the final journal writes after the last confirmation
        mem = bot.memory()
        cpu = bot.cpu()
        threads = bot.threads_cpu()
        harness1 = h.harness_cpu()
    finally:
        bot.stop()
    calls = await h.calls(h.slack)
    ends = sorted(a for m, a, _d, _s, _k, text in calls
                  if m == EPHEMERAL and (mt := slackreq.TITLE_RE.search(text)) and mt.group(1) == tag)
    finished = len(ends)
    last = ends[-1] if ends else time.monotonic()
    first = ends[0] if ends else last
    lo, hi = int(finished * 0.1), max(int(finished * 0.9) - 1, 0)
    steady = (hi - lo) / (ends[hi] - ends[lo]) if finished >= 10 and ends[hi] > ends[lo] else 0.0
    quarters = []
    for q in range(4):
        a, b = finished * q // 4, finished * (q + 1) // 4 - 1
        if b > a and ends[b] > ends[a]:
            quarters.append((b - a) / (ends[b] - ends[a]))
    counts = _final_counts(url)
    return {
        "backlog": n, "written": written, "drained": drained, "tickets_notified": finished,
        "final_counts": counts,
        "startup_s": t_ready - t_spawn,
        "first_ticket_s": first - t_spawn if ends else float("nan"),
        "drain_s": last - t_spawn if ends else float("nan"),
        "tickets_per_s": finished / (last - t_spawn) if ends and last > t_spawn else 0.0,
        "tickets_per_s_after_first": (finished - 1) / (last - first) if finished > 1 and last > first else 0.0,
        "tickets_per_s_steady": steady,
        "tickets_per_s_by_quarter": quarters,
        "peak_rss_mb": mem["VmHWM"] / 1024, "rss_end_mb": mem["VmRSS"] / 1024,
        "rss_samples": rss[:: max(1, len(rss) // 40)] + rss[-1:],
        "cpu_s": cpu, "cpu_s_per_1000": cpu / max(1, finished) * 1000, "bot_threads_cpu_s": threads,
        "harness_cpu_s": {k: harness1[k] - harness0[k] for k in harness1},
        "max_tickets_in_flight": Settings.model_fields["max_tickets_in_flight"].default,
        "serval_latency_ms": cfg.serval_latency_ms,
        "rss_mb": summary((r[2] for r in rss), scale=1.0),
    }


def _final_counts(url: str) -> dict[str, int] | None:
    """Submissions by status after the bot stopped, read with sqlite3 (read-only)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        try:
            return dict(con.execute("SELECT status, count(*) FROM submissions GROUP BY status").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.backlog")
    p.add_argument("--database-url", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--tag", default="bl")
    p.add_argument("--bot-dir", type=Path, help="import the bot (bot.journal.storage) from this checkout")
    a = p.parse_args(argv)
    if a.bot_dir:
        sys.path.insert(0, str(a.bot_dir))
    print(json.dumps(asyncio.run(write(a.database_url, a.n, a.tag))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
