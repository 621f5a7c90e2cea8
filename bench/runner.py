"""Runs the whole benchmark and writes the report.

Processes (all on 127.0.0.1, each its own Python process):

* the bot: ``python app.py --mode http``, configured by environment variables, LOG_LEVEL=WARNING;
* the floor: ``python -m bench.floor`` (ack-only AsyncApp on the bot's HTTP stack);
* the fake Slack Web API and the Serval sandbox: ``python -m bench.servers slack|serval``;
* this process: the load generator, and the reader of the others' CPU time and memory (/proc).

No process is pinned by default. With ``--pin`` (and two or more CPUs) the server under test (bot
or floor) runs on CPU 0 and everything else (load generator, fake Slack, Serval sandbox) on the
others; the bot's aiosqlite thread then shares CPU 0 with its event loop, which costs it throughput.

Phase 1, acknowledgements: for each request kind (``/ticket``, the message shortcut, the modal
submission) and each concurrency level, the floor then the bot get a closed-loop run of signed
requests (after an unrecorded warm-up). For the bot, the run also yields the time from sending each
``/ticket``/shortcut to its ``views.open`` reaching the fake Slack, and for each submission the
times at which its ticket reached and left Serval and its confirmation reached the fake Slack.
Each bot run waits until the bot has finished all background work before the next starts.

Phase 2, tickets: a fresh bot process first gets paced runs (``--paced``: c people submitting, each
waiting for their ticket's confirmation before the next, so at most c tickets are in the bot) that
measure the bot's overhead per ticket; then ``--tickets`` submissions from ``--ticket-concurrency``
connections, with at most ``--ticket-window`` tickets unfinished at any time, for sustained tickets
per second, the bot's CPU seconds per 1,000 tickets and its peak RSS (VmHWM).

Phase "floor2" (runs inside phase 1 when both are selected; alone it runs the floor, the second
floor and the bot on ``/ticket``): the second floor, ``python -m bench.floor --views-open``, a bare
Bolt app whose ``/ticket`` listener acknowledges and then calls ``views.open`` with a one-field modal;
the report gives the bot's ratio to both floors. The shortcut → ``views.open`` against ``/ticket`` →
``views.open`` p99 ratio comes from phase 1's cells.

Phase "views_open" (`bench.viewsopen`, issue 19): `/ticket` and the message shortcut, ack and
request → ``views.open``, of a bot on its default settings (LOG_LEVEL=INFO) beside the views.open
floor (``python -m bench.floor --views-open``: both listeners ack, then open a fixed modal), in
alternating rounds at 10, 50 and 100 concurrent; the ratios to the floor are issue 19's targets.

Phase "durability" (`bench.durability`): SQLite synchronous=FULL against NORMAL, through the
Storage API (its own process) and through the whole bot (a sustained run on each setting).

Phase "postgres" (`bench.replicas`, issue 12): sustained runs of the bot on SQLite, on PostgreSQL,
and two replicas on one PostgreSQL database; the server from tests/pg.py, restarted with fsync on.
Skipped, with a note, without PostgreSQL's binaries.

Phase "backlog" (`bench.backlog`): a fresh bot started on a journal of ``--backlog`` unfinished
submissions: peak RSS and the time to drain it.

A sustained run (phases 2, durability, postgres): a warm-up, then N submissions from
``--ticket-concurrency`` connections with at most ``--ticket-window`` unfinished, to one bot or,
round robin, to several (`Harness.sustained`).

Runs of the bot that do not finish their background work in time (a backlog it cannot clear) are
marked ``drained: false`` and the bot is replaced by a fresh process before the next run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import backlog, durability, load, replicas, slackreq, viewsopen
from .procs import Proc, cpu_seconds, free_port, ours_seconds, stop_started, system_busy_seconds
from .stats import summary

REPO = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench-0123456789"
SERVAL_TOKEN = "bench-serval-token"
EPHEMERAL = "chat.postEphemeral"
CREATE = "POST /v2/tickets"


PHASES = ("ack", "floor2", "views_open", "tickets", "durability", "postgres", "backlog")


@dataclass
class Config:
    levels: list[int] = field(default_factory=lambda: [1, 10, 50, 100, 200])
    kinds: list[str] = field(default_factory=lambda: list(slackreq.KINDS))
    requests: int = 0  # per level; 0 = max(300, 5 x concurrency)
    warmup: int = 0  # per level; 0 = max(20, concurrency)
    serval_latency_ms: float = 50.0
    tickets: int = 10_000
    ticket_concurrency: int = 50
    ticket_window: int = 100
    paced_levels: list[int] = field(default_factory=lambda: [1, 10, 50])
    paced_tickets: int = 200  # per paced level (at least 5 x concurrency)
    pin: bool = False
    quick: bool = False
    out: Path = REPO / "docs" / "benchmarks.md"
    json_out: Path | None = None
    keep: bool = False
    profile: Path | None = None  # py-spy the bot processes, collapsed stacks into this directory
    phases: tuple[str, ...] = PHASES
    backlog: int = 20_000  # unfinished submissions in the journal the "backlog" bot starts on
    durability_cycles: int = 2000  # per setting: insert + 3 updates of a submission through Storage
    durability_tickets: int = 2000  # per setting: a sustained run of the bot on FULL, then on NORMAL (0: none)
    pg_tickets: int = 3000  # per row of the "postgres" phase
    from_json: Path | None = None
    bot_dir: Path = REPO  # where app.py is: a patched copy of the repo can be measured the same way
    bot_env: dict[str, str] = field(default_factory=dict)  # settings for the bot (e.g. SUGGEST_SIMILAR=false)
    vo_levels: list[int] = field(default_factory=lambda: [10, 50, 100])  # phase "views_open"
    vo_rounds: int = 6  # alternating rounds per server (bot, floor, bot, floor, ...): on a shared machine one
    # round of either may meet a burst of other work; more turns average it out
    vo_requests: int = 200  # requests per round

    def n_requests(self, c: int) -> int:
        return self.requests or max(300, 5 * c)

    def n_warmup(self, c: int) -> int:
        return self.warmup or max(20, c)


class Harness:
    def __init__(self, cfg: Config, workdir: Path, log: Any = print) -> None:
        self.cfg = cfg
        self.log = log
        self.workdir = workdir
        self.procs: list[Proc] = []
        cpus = sorted(os.sched_getaffinity(0))
        self.pinned = cfg.pin and len(cpus) >= 2
        self.sut_cpus = {cpus[0]} if self.pinned else None
        self.harness_cpus = set(cpus[1:]) if self.pinned else None
        self.signer = slackreq.Signer(SIGNING_SECRET)
        self.http: aiohttp.ClientSession | None = None
        self.slack: Proc | None = None
        self.serval: Proc | None = None
        self.floor: Proc | None = None
        self.floor2: Proc | None = None  # the second floor: /ticket acks, then views.open
        self.bot: Proc | None = None
        self._seq = 0
        self.template: dict[str, Any] | None = None  # the modal the bot opens for /ticket

    # --- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], *, cpus: set[int] | None, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env=env, cwd=str(self.workdir), cpus=cpus, log_dir=self.workdir)
        self.procs.append(proc)
        return proc

    def _module_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    def start_fakes(self) -> None:
        py = sys.executable
        self.slack = self._spawn("fake-slack", [py, "-m", "bench.servers", "slack", "--token", BOT_TOKEN],
                                 cpus=self.harness_cpus, env=self._module_env())
        self.serval = self._spawn("serval", [py, "-m", "bench.servers", "serval", "--token", SERVAL_TOKEN,
                                             "--latency-ms", str(self.cfg.serval_latency_ms)],
                                  cpus=self.harness_cpus, env=self._module_env())
        self.slack.read_url()
        self.serval.read_url()

    def start_floor(self, views_open: bool = False, *, wait: bool = True, modal_file: Path | None = None) -> Proc:
        """The floor (ack only) or, with `views_open`, the second floor (ack, then views.open; of the
        modals in `modal_file`, else of a one-field modal). `wait=False`: return at once;
        `ready(proc)` waits until it serves."""
        assert self.slack is not None
        argv = [sys.executable, "-m", "bench.floor", "--signing-secret", SIGNING_SECRET,
                "--slack-api-url", self.slack.url, "--token", BOT_TOKEN] + (["--views-open"] if views_open else [])
        if modal_file is not None:
            argv += ["--modal-file", str(modal_file)]
        floor = self._spawn("floor2" if views_open else "floor", argv, cpus=self.sut_cpus, env=self._module_env())
        if wait:
            self.ready(floor)
        if views_open:
            self.floor2 = floor
        else:
            self.floor = floor
        return floor

    @staticmethod
    def ready(proc: Proc) -> Proc:
        """Wait until a process started with `wait=False` answers /healthz."""
        if not proc.url:  # servers started on port 0 print their URL first
            proc.read_url()
        proc.wait_http(proc.url + "/healthz")
        return proc

    def start_bot(self, name: str, *, database_url: str | None = None, prefix_argv: list[str] | None = None,
                  current: bool = True, wait: bool = True, default_settings: bool = False) -> Proc:
        """A bot process on its own SQLite journal `<workdir>/<name>.db` unless `database_url` says
        otherwise. `prefix_argv`: run app.py through this (e.g. bench.sqlite_sync). `current`: it
        becomes the bot of the acknowledgement runs (`self.bot`). `wait=False`: return at once
        (start several together), then `ready(proc)`. `default_settings`: LOG_LEVEL as the bot's
        default (INFO) instead of WARNING."""
        assert self.slack is not None and self.serval is not None
        from bot.settings import Settings

        env = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
        if prefix_argv:
            env["PYTHONPATH"] = self._module_env()["PYTHONPATH"]
        port = free_port()
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=self.slack.url,
            SERVAL_BASE_URL=self.serval.url, SERVAL_BEARER_TOKEN=SERVAL_TOKEN, SERVAL_TEAM_ID="team-it",
            SERVAL_SLACK_INTEGRATION_ID="integ-slack-1",
            DATABASE_URL=database_url or f"sqlite:///{self.workdir}/{name}.db",
            HOST="127.0.0.1", PORT=str(port),
        )
        if not default_settings:
            env["LOG_LEVEL"] = "WARNING"
        env.update(self.cfg.bot_env)
        bot = self._spawn(name, [*(prefix_argv or [sys.executable]), str(self.cfg.bot_dir / "app.py"), "--mode", "http"],
                          cpus=self.sut_cpus, env=env)
        bot.url = f"http://127.0.0.1:{port}"
        if wait:
            self.ready(bot)
        if current:
            self.bot = bot
        return bot

    async def prime(self, procs: list[Proc | None] | None = None) -> None:
        """First-use costs out of the way: the Serval sandbox compiles its JSON schemas on its first
        create; the bot calls auth.test, users.info and Serval's user list once, then caches them.
        `procs`: the servers to prime (default: the bot, the floor, the second floor; a bot first)."""
        assert self.serval is not None and self.http is not None
        await self.reset_fakes()
        async with self.http.post(self.serval.url + "/v2/tickets", headers={"Authorization": f"Bearer {SERVAL_TOKEN}"},
                                  json={"teamId": "team-it", "name": "warm-up"}) as r:
            if r.status != 200:
                raise RuntimeError(f"Serval sandbox warm-up failed: {r.status} {await r.text()}")
        floors = {self.floor, self.floor2}
        procs = [p for p in ((self.bot, self.floor, self.floor2) if procs is None else procs) if p is not None]
        for proc in procs:
            tag = self.tag("p")
            view_ids = await self.open_views(1)
            for kind in slackreq.KINDS:
                body = slackreq.build(kind, tag, 0, view_ids[0], self.template)
                sample = (await load.closed_loop(proc.url + "/slack/events", [self.signer.sign(body)], 1))[0]
                if sample.status != 200:
                    raise RuntimeError(f"{proc.name} answered {kind} with {sample.status}: {sample.body[:300]!r}")
                if kind == "command" and proc not in floors:
                    await self.wait_count(self.slack, "views.open", 1, timeout=30)
                    state = await self._get(self._root(self.slack) + "/_sandbox/state")
                    opened = [c for c in state["calls"] if c["method"] == "views.open" and c["status"] == 200]
                    view = opened[0]["args"]["view"] if opened else None
                    self.template = json.loads(view) if isinstance(view, str) else view
        bots = [p for p in procs if p not in floors]
        if bots and not await self.wait_count(self.slack, EPHEMERAL, len(bots), timeout=30):
            raise RuntimeError("the bot did not confirm the warm-up ticket; see its log")
        await asyncio.sleep(0.2)
        await self.reset_fakes()

    def start_profiler(self, proc: Proc, name: str) -> subprocess.Popen[bytes] | None:
        if self.cfg.profile is None:
            return None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.cfg.profile.mkdir(parents=True, exist_ok=True)
        out = self.cfg.profile / f"{name}.txt"
        prof = subprocess.Popen([py_spy, "record", "--pid", str(proc.pid), "--rate", os.environ.get("BENCH_PYSPY_RATE", "200"), "--format", "raw",
                                 "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)  # attached
        return prof

    @staticmethod
    def stop_profiler(prof: subprocess.Popen[bytes] | None) -> None:
        if prof is not None and prof.poll() is None:
            prof.send_signal(signal.SIGINT)
            try:
                prof.wait(30)
            except subprocess.TimeoutExpired:
                prof.kill()
                prof.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    # --- talking to the fakes -------------------------------------------------------------

    async def _get(self, url: str) -> Any:
        assert self.http is not None
        async with self.http.get(url) as r:
            return await r.json()

    async def _post(self, url: str, data: Any = None) -> Any:
        assert self.http is not None
        async with self.http.post(url, json=data or {}) as r:
            return await r.json()

    def _root(self, proc: Proc | None) -> str:
        assert proc is not None
        return proc.url.removesuffix("/api/")

    async def reset_fakes(self) -> None:
        await self._post(self._root(self.slack) + "/_bench/reset")
        await self._post(self._root(self.serval) + "/_bench/reset")

    async def open_views(self, n: int) -> list[str]:
        ids: list[str] = []
        while len(ids) < n:
            ids += (await self._post(self._root(self.slack) + "/_bench/views", {"n": min(1000, n - len(ids))}))["ids"]
        return ids

    async def count(self, proc: Proc | None, method: str) -> int:
        return (await self._get(f"{self._root(proc)}/_bench/count?method={method}"))["count"]

    async def calls(self, proc: Proc | None) -> list[list[Any]]:
        return (await self._get(f"{self._root(proc)}/_bench/calls?since=0"))["calls"]

    async def wait_count(self, proc: Proc | None, method: str, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while await self.count(proc, method) < n:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def harness_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the harness processes, and of everything else on the machine
        ("other": other users' processes, the kernel) — to tell a contended run from a clean one."""
        return {"loadgen": cpu_seconds(os.getpid()), "fake_slack": self.slack.cpu() if self.slack else 0.0,
                "serval": self.serval.cpu() if self.serval else 0.0,
                "other": system_busy_seconds() - ours_seconds()}

    def tag(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}{self._seq}"

    # --- phase 1: acknowledgements ------------------------------------------------------------

    async def ack_cell(self, target: str, kind: str, c: int) -> dict[str, Any]:
        proc = {"bot": self.bot, "floor": self.floor, "floor2": self.floor2}[target]
        assert proc is not None
        n, w = self.cfg.n_requests(c), self.cfg.n_warmup(c)
        tag, wtag = self.tag(target[0] + kind[0]), self.tag("w")
        if target in ("bot", "floor2"):  # what they call at the fake Slack is counted from zero
            await self.reset_fakes()
        if kind == "submission" and target == "bot":
            view_ids = await self.open_views(n + w)
        else:
            view_ids = [f"VFLOOR{tag}{i}" for i in range(n + w)]
        warm = [self.signer.sign(slackreq.build(kind, wtag, i, view_ids[n + i], self.template)) for i in range(w)]
        reqs = [self.signer.sign(slackreq.build(kind, tag, i, view_ids[i], self.template)) for i in range(n)]
        marks: dict[str, Any] = {}

        def mark() -> None:
            marks["cpu"], marks["harness"], marks["t"] = proc.cpu(), self.harness_cpu(), time.monotonic()

        samples = await load.closed_loop(proc.url + "/slack/events", reqs, c, warm, on_measure=mark)
        cpu_end, harness_end, t_end = proc.cpu(), self.harness_cpu(), time.monotonic()
        wall = t_end - marks["t"]
        ok = [s for s in samples if s.status == 200]
        cell: dict[str, Any] = {
            "target": target, "kind": kind, "concurrency": c, "requests": len(samples),
            "errors": len(samples) - len(ok),
            "error_examples": [f"{s.status} {s.body[:200]!r}" for s in samples if s.status != 200][:3],
            "ack_ms": summary(s.latency for s in ok),
            "req_per_s": len(samples) / wall if wall > 0 else 0.0,
            "cpu_util": (cpu_end - marks["cpu"]) / wall if wall > 0 else 0.0,
            "harness_cpu_util": {k: (harness_end[k] - marks["harness"][k]) / wall for k in harness_end},
        }
        if kind == "submission" and target == "bot":
            bad = [s for s in ok if b'"response_action": "update"' not in s.body and b'"response_action":"update"' not in s.body]
            cell["errors"] += len(bad)
        if target == "floor2":  # its views.open calls, after the acknowledgements
            done = await self.wait_count(self.slack, "views.open", n + w, timeout=30 + (n + w) / 25)
            cell["views_open"] = self.views_open_times(tag, samples, await self.calls(self.slack))
            cell["drained"], cell["drain_s"] = done, time.monotonic() - t_end
            return cell
        if target != "bot":
            return cell
        # Background work: wait until it is all done, then correlate with the fakes' records.
        drain_timeout = 30 + (n + w) / 25
        if kind == "submission":
            done = await self.wait_count(self.slack, EPHEMERAL, n + w, timeout=drain_timeout)
            cell.update(self.ticket_times(tag, samples, await self.calls(self.slack), await self.calls(self.serval)))
        else:
            done = await self.wait_count(self.slack, "views.open", n + w, timeout=drain_timeout)
            cell["views_open"] = self.views_open_times(tag, samples, await self.calls(self.slack))
        cell["drained"] = done
        cell["drain_s"] = time.monotonic() - t_end
        if done:
            await self.wait_idle(proc)
        else:  # a bot that cannot catch up would spoil the next runs: start a fresh one
            proc.stop()
            self.start_bot(self.tag("bot"))
            await self.prime()
        return cell

    async def wait_idle(self, proc: Proc, limit: float = 60.0) -> None:
        """Until the process uses < 5% of a CPU over 0.3 s (its last journal writes, timers)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = proc.cpu()
            await asyncio.sleep(0.3)
            if proc.cpu() - before < 0.015:
                return

    def views_open_times(self, tag: str, samples: list[load.Sample], slack_calls: list[list[Any]]) -> dict[str, Any]:
        by_trigger = {slackreq.trigger_id(tag, i): s for i, s in enumerate(samples)}
        delays, errors = [], 0
        for method, arrival, _done, status, key, _text in slack_calls:
            if method == "views.open" and key in by_trigger:
                delays.append(arrival - by_trigger[key].sent)
                errors += status != 200
        return {"ms": summary(delays), "matched": len(delays), "errors": errors,
                "over_3s": sum(d > 3.0 for d in delays)}

    def ticket_times(self, tag: str, samples: list[load.Sample], slack_calls: list[list[Any]],
                     serval_calls: list[list[Any]]) -> dict[str, Any]:
        latency = self.cfg.serval_latency_ms / 1000
        sent = {i: s.sent for i, s in enumerate(samples)}
        reach, created, created_net, service, notified = [], [], [], [], []
        created_ok = notified_ok = 0
        for method, arrival, done, status, _key, name in serval_calls:
            m = slackreq.TITLE_RE.search(name) if method == CREATE else None
            if m and m.group(1) == tag and int(m.group(2)) in sent:
                t0 = sent[int(m.group(2))]
                reach.append(arrival - t0)
                service.append(done - arrival)
                if status == 200:
                    created_ok += 1
                    created.append(done - t0)
                    created_net.append(done - t0 - latency)
        for method, arrival, _done, status, _key, text in slack_calls:
            m = slackreq.TITLE_RE.search(text) if method == EPHEMERAL else None
            if m and m.group(1) == tag and int(m.group(2)) in sent:
                notified.append(arrival - sent[int(m.group(2))])
                notified_ok += status == 200 and text.startswith(":white_check_mark:")
        return {
            "tickets_created": created_ok, "tickets_notified": notified_ok,
            "to_serval_ms": summary(reach),            # submit sent -> create request reaches Serval
            "created_ms": summary(created),            # submit sent -> Serval has answered (ticket exists)
            "created_minus_latency_ms": summary(created_net),
            "serval_service_ms": summary(service),     # inside Serval: configured latency + its own work
            "notified_ms": summary(notified),          # submit sent -> chat.postEphemeral reaches Slack
        }

    # --- phase 2: sustained tickets ---------------------------------------------------------

    async def _finished(self) -> int:
        return await self.count(self.slack, EPHEMERAL)

    async def warm_tickets(self, bots: list[Proc], n_tickets: int) -> int:
        """Unrecorded submissions first (Bolt's and the bot's first-use costs, the caches), sent
        round robin to `bots`; returns how many."""
        cfg = self.cfg
        await self.reset_fakes()  # the counts of the earlier runs must not open the window
        warm_n = min(200, max(10, n_tickets // 50, 2 * len(bots)))
        wtag = self.tag("tw")
        view_ids = await self.open_views(warm_n)
        warm = [self.signer.sign(slackreq.submission(wtag, i, view_ids[i], self.template)) for i in range(warm_n)]
        await load.windowed([b.url + "/slack/events" for b in bots], warm, cfg.ticket_concurrency,
                            cfg.ticket_window, self._finished)
        await self.wait_count(self.slack, EPHEMERAL, warm_n, timeout=60)
        return warm_n

    async def measure_tickets(self, bots: list[Proc], n_tickets: int, prefix: str = "t",
                              profile: str | None = None) -> dict[str, Any]:
        """`n_tickets` submissions over `ticket_concurrency` connections, at most `ticket_window`
        unfinished, sent round robin to `bots` (replicas): rate, CPU (all bots), memory, times."""
        cfg = self.cfg
        await self.reset_fakes()
        tag = self.tag(prefix)
        view_ids = await self.open_views(n_tickets)
        reqs = [self.signer.sign(slackreq.submission(tag, i, view_ids[i], self.template)) for i in range(n_tickets)]
        prof = self.start_profiler(bots[0], profile) if profile else None
        mem0 = [b.memory() for b in bots]
        cpu0, harness0, threads0 = sum(b.cpu() for b in bots), self.harness_cpu(), _threads(bots)
        samples = await load.windowed([b.url + "/slack/events" for b in bots], reqs, cfg.ticket_concurrency,
                                      cfg.ticket_window, self._finished)
        drained = await self.wait_count(self.slack, EPHEMERAL, n_tickets, timeout=max(120.0, n_tickets / 20))
        self.stop_profiler(prof)
        await asyncio.sleep(0.5)  # the last steps after the confirmation: journal writes
        mem1 = [b.memory() for b in bots]
        cpu1, harness1, threads1 = sum(b.cpu() for b in bots), self.harness_cpu(), _threads(bots)
        slack_calls, serval_calls = await self.calls(self.slack), await self.calls(self.serval)
        times = self.ticket_times(tag, samples, slack_calls, serval_calls)
        first = min(s.sent for s in samples)
        ends = sorted(a for m, a, _d, _s, _k, text in slack_calls
                      if m == EPHEMERAL and (mt := slackreq.TITLE_RE.search(text)) and mt.group(1) == tag)
        n = len(ends)
        overall = n / (ends[-1] - first) if n and ends[-1] > first else 0.0
        lo, hi = int(n * 0.1), max(int(n * 0.9) - 1, 0)
        steady = (hi - lo) / (ends[hi] - ends[lo]) if n >= 10 and ends[hi] > ends[lo] else overall
        ok = [s for s in samples if s.status == 200]
        return {
            "tickets": n_tickets, "concurrency": cfg.ticket_concurrency, "window": cfg.ticket_window,
            "acks_ok": len(ok), "drained": drained,
            "ack_ms": summary(s.latency for s in ok),
            "tickets_per_s": overall, "tickets_per_s_steady": steady,
            "wall_s": ends[-1] - first if n else 0.0,
            "cpu_s": cpu1 - cpu0, "cpu_s_per_1000": (cpu1 - cpu0) / max(1, times["tickets_created"]) * 1000,
            "harness_cpu_s": {k: harness1[k] - harness0[k] for k in harness1},
            "bot_threads_cpu_s": {k: threads1[k] - threads0[k] for k in threads1},
            "rss_start_mb": sum(m["VmRSS"] for m in mem0) / 1024, "rss_end_mb": sum(m["VmRSS"] for m in mem1) / 1024,
            "peak_rss_mb": max(m["VmHWM"] for m in mem1) / 1024, **times,
        }

    async def sustained(self, bots: list[Proc], n_tickets: int, prefix: str = "t") -> dict[str, Any]:
        """A warm-up, then the measured run (`measure_tickets`), on bots that just started."""
        warm_n = await self.warm_tickets(bots, n_tickets)
        out = await self.measure_tickets(bots, n_tickets, prefix)
        out["warmup_tickets"] = warm_n
        return out

    async def ticket_run(self) -> dict[str, Any]:
        cfg = self.cfg
        bot = self.start_bot("bot-tickets")
        warm_n = await self.warm_tickets([bot], cfg.tickets)
        paced = []
        for c in cfg.paced_levels:
            paced.append(await self.paced_run(bot, c, self._finished))
            p = paced[-1]
            self.log(f"paced      c={c:<4} bot   ack p50 {p['ack_ms']['p50']:6.1f} p99 {p['ack_ms']['p99']:6.1f} ms"
                     f"  to Serval p50 {p['to_serval_ms']['p50']:.1f} p99 {p['to_serval_ms']['p99']:.1f} ms,"
                     f" {p['tickets_per_s']:.0f} tickets/s, tickets {p['tickets_created']}/{p['requests']}")
        out = await self.measure_tickets([bot], cfg.tickets, "t", profile="bot-tickets")
        bot.stop()
        out.update(warmup_tickets=warm_n, paced=paced,
                   tickets_in_process=warm_n + sum(p["requests"] for p in paced) + cfg.tickets)
        return out

    async def paced_run(self, bot: Proc, c: int, finished: Any) -> dict[str, Any]:
        """c people submitting, each waiting for the confirmation of their ticket before the next:
        at most c tickets in the bot at once, so the times are the bot's work, not a backlog."""
        await self.reset_fakes()
        n = self.cfg.paced_tickets if c == 1 else max(self.cfg.paced_tickets, 5 * c)
        tag = self.tag("pc")
        view_ids = await self.open_views(n)
        reqs = [self.signer.sign(slackreq.submission(tag, i, view_ids[i], self.template)) for i in range(n)]
        t0 = time.monotonic()
        samples = await load.windowed(bot.url + "/slack/events", reqs, c, c, finished, poll=0.002)
        drained = await self.wait_count(self.slack, EPHEMERAL, n, timeout=30 + n / 25)
        wall = time.monotonic() - t0
        times = self.ticket_times(tag, samples, await self.calls(self.slack), await self.calls(self.serval))
        ok = [s for s in samples if s.status == 200]
        return {"concurrency": c, "requests": n, "errors": n - len(ok), "drained": drained,
                "ack_ms": summary(s.latency for s in ok), "tickets_per_s": n / wall, **times}


def _threads(bots: list[Proc]) -> dict[str, float]:
    out = {"main": 0.0, "other": 0.0}
    for b in bots:
        for k, v in b.threads_cpu().items():
            out[k] += v
    return out


async def run(cfg: Config, workdir: Path, log: Any) -> dict[str, Any]:
    h = Harness(cfg, workdir, log)
    started = time.time()
    results: dict[str, Any] = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()},
                               "pinned": h.pinned, "cells": []}
    if h.pinned and h.harness_cpus:
        os.sched_setaffinity(0, h.harness_cpus)
    try:
        h.http = aiohttp.ClientSession()
        h.start_fakes()
        starting = [h.start_floor(wait=False), h.start_bot("bot", wait=False)]
        if "floor2" in cfg.phases:
            starting.append(h.start_floor(views_open=True, wait=False))
        for proc in starting:  # started together, ready one by one
            h.ready(proc)
        await h.prime()
        prof = h.start_profiler(h.bot, "bot-ack-phase") if h.bot else None
        results["sut_cpus"] = sorted(h.sut_cpus or [])
        results["harness_cpus"] = sorted(h.harness_cpus or [])
        # "floor2" alone still measures the floor and the bot on /ticket: its ratios need them.
        ack_kinds = cfg.kinds if "ack" in cfg.phases else (["command"] if "floor2" in cfg.phases else [])
        for kind in ack_kinds:
            for c in cfg.levels:
                targets = ("floor", "floor2", "bot") if kind == "command" and "floor2" in cfg.phases else ("floor", "bot")
                for target in targets:
                    cell = await h.ack_cell(target, kind, c)
                    results["cells"].append(cell)
                    a = cell["ack_ms"]
                    extra = ""
                    if "views_open" in cell:
                        extra = f"  views.open p99 {cell['views_open']['ms']['p99']:.1f} ms"
                    if "to_serval_ms" in cell:
                        extra = (f"  to Serval p50 {cell['to_serval_ms']['p50']:.1f} ms,"
                                 f" tickets {cell['tickets_created']}/{cell['requests']}")
                    log(f"{kind:10} c={c:<4} {target:6} ack p50 {a['p50']:6.1f} p99 {a['p99']:6.1f} ms"
                        f"  {cell['req_per_s']:7.0f} req/s  cpu {cell['cpu_util']:.0%}  errors {cell['errors']}{extra}")
        h.stop_profiler(prof)
        results["bot_ack_phase"] = {"peak_rss_mb": h.bot.memory()["VmHWM"] / 1024} if h.bot else {}
        if h.floor2:
            h.floor2.stop()
        if h.bot:
            h.bot.stop()
        if "views_open" in cfg.phases:
            log(f"views_open: /ticket and the shortcut, the bot on its default settings against the views.open floor,"
                f" {cfg.vo_rounds} alternating rounds of {cfg.vo_requests} requests per server at {cfg.vo_levels}…")
            results["views_open"] = await viewsopen.run(h)
        if "tickets" in cfg.phases:
            log(f"tickets: {cfg.tickets} submissions, {cfg.ticket_concurrency} connections, window {cfg.ticket_window}…")
            results["tickets"] = t = await h.ticket_run()
            log(f"tickets: {t['tickets_created']} created, {t['tickets_per_s']:.0f}/s ({t['tickets_per_s_steady']:.0f}/s"
                f" steady), {t['cpu_s_per_1000']:.1f} CPU s/1000 (threads {t['bot_threads_cpu_s']}), peak RSS"
                f" {t['peak_rss_mb']:.0f} MB, to Serval p50 {t['to_serval_ms']['p50']:.1f} ms, created - latency p50"
                f" {t['created_minus_latency_ms']['p50']:.1f} ms")
        if "durability" in cfg.phases:
            log(f"durability: synchronous=FULL vs NORMAL: {cfg.durability_cycles} submissions through Storage per"
                f" setting, {cfg.durability_tickets} tickets through the bot per setting…")
            results["durability"] = await durability.run(h)
        if "postgres" in cfg.phases:
            log(f"postgres: SQLite, PostgreSQL, PostgreSQL x2: {cfg.pg_tickets} tickets per row…")
            results["postgres"] = await replicas.run(h)
        if "backlog" in cfg.phases:
            log(f"backlog: {cfg.backlog:,} unfinished submissions in a fresh journal…")
            results["backlog"] = b = await backlog.run(h)
            log(f"backlog: {b['tickets_notified']:,}/{b['backlog']:,} drained in {b['drain_s']:.1f} s from the bot's"
                f" start ({b['tickets_per_s']:.0f} tickets/s, {b['tickets_per_s_steady']:.0f} steady), peak RSS"
                f" {b['peak_rss_mb']:.0f} MB, {b['cpu_s_per_1000']:.1f} CPU s/1000")
    finally:
        if h.http:
            await h.http.close()
        h.stop_all()
    results["duration_s"] = time.time() - started
    results["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return results


def parse_args(argv: list[str] | None) -> Config:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: tiny load, 0 ms Serval latency")
    p.add_argument("--concurrency", help="comma-separated levels (default 1,10,50,100,200)")
    p.add_argument("--kinds", help="comma-separated: command,shortcut,submission")
    p.add_argument("--requests", type=int, help="requests per level (default max(300, 5 x concurrency))")
    p.add_argument("--warmup", type=int, help="unrecorded requests per level (default max(20, concurrency))")
    p.add_argument("--serval-latency-ms", type=float, help="Serval sandbox latency (default 50)")
    p.add_argument("--tickets", type=int, help="tickets in the sustained run (default 10000)")
    p.add_argument("--ticket-concurrency", type=int, help="connections in the sustained run (default 50)")
    p.add_argument("--ticket-window", type=int, help="max unfinished tickets in the sustained run (default 100)")
    p.add_argument("--pin", action="store_true",
                   help="pin the bot/floor to CPU 0 and the harness to the other CPUs (default: no pinning)")
    p.add_argument("--out", type=Path, help="Markdown report (default docs/benchmarks.md; --quick: bench/out/quick.md)")
    p.add_argument("--json", dest="json_out", type=Path, help="raw results as JSON (default bench/out/results.json)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    p.add_argument("--profile", type=Path, help="record the bot with py-spy (collapsed stacks) into this directory")
    p.add_argument("--paced", help="comma-separated concurrency of the paced ticket runs (default 1,10,50; '' = none)")
    p.add_argument("--from-json", type=Path, help="do not run: render the report from this results JSON")
    p.add_argument("--phases", help=f"comma-separated: {','.join(PHASES)} (default all)")
    p.add_argument("--backlog", type=int, help="unfinished submissions for the backlog phase (default 20000)")
    p.add_argument("--durability-cycles", type=int,
                   help="submissions through Storage per synchronous setting (default 2000)")
    p.add_argument("--durability-tickets", type=int,
                   help="tickets through the bot per synchronous setting (default 2000; 0 = skip)")
    p.add_argument("--pg-tickets", type=int, help="tickets per row of the postgres phase (default 3000)")
    p.add_argument("--bot-dir", type=Path, help="run app.py from this directory (e.g. a patched copy of the repo)")
    p.add_argument("--bot-env", action="append", default=[], metavar="SETTING=VALUE",
                   help="a setting for the bot processes, e.g. SUGGEST_SIMILAR=false (repeatable)")
    p.add_argument("--vo-concurrency", help="views_open phase: comma-separated levels (default 10,50,100)")
    p.add_argument("--vo-rounds", type=int, help="views_open phase: alternating rounds per server (default 6)")
    p.add_argument("--vo-requests", type=int, help="views_open phase: requests per round (default 200)")
    a = p.parse_args(argv)
    cfg = Config()
    if a.quick:
        cfg = Config(levels=[1, 2], requests=6, warmup=2, serval_latency_ms=0.0, tickets=20,
                     ticket_concurrency=2, ticket_window=4, paced_levels=[1, 2], paced_tickets=5, quick=True,
                     backlog=100, durability_cycles=20, durability_tickets=10, pg_tickets=10,
                     vo_levels=[2], vo_rounds=2, vo_requests=6, out=REPO / "bench" / "out" / "quick.md")
    if a.concurrency:
        cfg.levels = [int(x) for x in a.concurrency.split(",") if x.strip()]
    if a.kinds:
        cfg.kinds = [k for k in slackreq.KINDS if k in a.kinds.split(",")]
    if a.vo_concurrency:
        cfg.vo_levels = [int(x) for x in a.vo_concurrency.split(",") if x.strip()]
    for name in ("requests", "warmup", "serval_latency_ms", "tickets", "ticket_concurrency", "ticket_window",
                 "out", "json_out", "backlog", "durability_cycles", "durability_tickets", "pg_tickets",
                 "vo_rounds", "vo_requests"):
        if getattr(a, name) is not None:
            setattr(cfg, name, getattr(a, name))
    cfg.pin, cfg.keep, cfg.profile = a.pin, a.keep, a.profile
    cfg.from_json = a.from_json
    if a.paced is not None:
        cfg.paced_levels = [int(x) for x in a.paced.split(",") if x.strip()]
    if a.phases:
        wanted = [x.strip() for x in a.phases.split(",") if x.strip()]
        unknown = set(wanted) - set(PHASES)
        if unknown:
            p.error(f"unknown phase(s) {', '.join(sorted(unknown))}; phases: {', '.join(PHASES)}")
        cfg.phases = tuple(x for x in PHASES if x in wanted)
    if a.bot_dir:
        cfg.bot_dir = a.bot_dir.resolve()
    for item in a.bot_env:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--bot-env {item!r}: expected SETTING=VALUE")
        cfg.bot_env[key.strip().upper()] = value
    return cfg


PUBLISHED = REPO / "docs" / "benchmarks.md"  # the committed report: from a full run only
SIZES = ("tickets", "paced_tickets", "backlog", "durability_cycles", "durability_tickets", "pg_tickets",
         "vo_rounds", "vo_requests")  # a run below these defaults is partial


def partial(config: dict[str, Any]) -> str | None:
    """Why a run with this (JSON) config may not become docs/benchmarks.md; None for a full run:
    every phase, the default settings of the bot, every target's level, the default sizes."""
    full = Config()
    if config.get("quick"):
        return "a --quick smoke run"
    missing = [x for x in PHASES if x not in (config.get("phases") or ())]
    if missing:
        return f"a partial run (phases missing: {', '.join(missing)})"
    if config.get("bot_env"):
        return f"a run with settings other than the bot's defaults ({', '.join(sorted(config['bot_env']))})"
    if Path(config.get("bot_dir") or REPO).resolve() != REPO.resolve():
        return f"a run of another checkout ({config.get('bot_dir')})"
    for name, wanted in (("levels", full.levels), ("vo_levels", full.vo_levels), ("paced_levels", full.paced_levels)):
        lacking = sorted(set(wanted) - set(config.get(name) or ()))
        if lacking:
            return f"a partial run ({name} without {', '.join(map(str, lacking))})"
    small = [n for n in SIZES if (config.get(n) if config.get(n) is not None else 0) < getattr(full, n)]
    if config.get("requests") and config["requests"] < 300:
        small.append("requests")
    if small:
        return f"a partial run (smaller than the defaults: {', '.join(small)})"
    return None


def report_path(out: Path, config: dict[str, Any]) -> tuple[Path, str | None]:
    """Where the report goes: `out`, unless that is docs/benchmarks.md and the run is not a full
    one (`partial`): then bench/out/, with the reason."""
    why = partial(config)
    if why is None or out.resolve() != PUBLISHED.resolve():
        return out, None
    other = REPO / "bench" / "out" / ("quick.md" if config.get("quick") else "partial.md")
    return other, f"not writing {PUBLISHED.relative_to(REPO)} from {why}: only a full `make bench` writes it"


def write_report(out: Path, results: dict[str, Any], log: Any) -> Path:
    from . import report

    path, refused = report_path(out, results.get("config") or {})
    if refused:
        log(f"bench: {refused}; the report goes to {path} instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.render(results))
    log(f"bench: wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    from . import report

    cfg = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, flush=True)

    if cfg.from_json:  # only render the report again (e.g. after editing bench/findings.md)
        results = json.loads(cfg.from_json.read_text())
        write_report(cfg.out, results, log)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    log(f"bench: work directory {workdir}")
    why = partial({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(cfg).items()})
    if why and cfg.out.resolve() == PUBLISHED.resolve():
        log(f"bench: {why}, so {PUBLISHED.relative_to(REPO)} stays as it is")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        results = asyncio.run(run(cfg, workdir, log))
    except BaseException:
        log(f"bench: failed; logs kept in {workdir}")
        raise
    finally:
        stop_started()
    results["environment"] = report.environment(results)
    write_report(cfg.out, results, log)
    json_out = cfg.json_out or (REPO / "bench" / "out" / ("quick.json" if cfg.quick else "results.json"))
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(results, indent=1, default=str))
    log(f"bench: wrote {json_out}")
    if not cfg.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
