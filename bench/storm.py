"""The storm (issue 19 item 3): `/ticket` commands and modal submissions sent open loop, at a fixed
rate, to a bot on its default settings, with a slow Serval; then until every acknowledged submission
has become a ticket and been confirmed.

    .venv/bin/python -m bench.storm [--rate 300] [--commands 3000] [--submissions 3000] [--serval-latency-ms 200]

Open loop: request k is due at t0 + k / rate whatever the earlier ones did (the two kinds
interleaved evenly), so a slow bot faces a growing queue, as it would from Slack. An ack's latency
runs from the time its request was due (a late sender counts against the bot, not for it).

The processes and the requests are the benchmark's own (`bench.runner.Harness`: the fake Slack and
the Serval sandbox with their timing taps, the bot as `make bench` starts it with its default
settings, LOG_LEVEL=INFO; `bench.slackreq` for the signed bodies). Printed: ack p50/p99 per kind and
the non-200s; request → `views.open` per `/ticket`, and how many forms got similar tickets (the look-up
queue sheds what finds no quiet moment); the calls Serval got; tickets created at Serval against submissions
acknowledged, and titles created more than once; confirmations (`chat.postEphemeral`); the time to
drain; the bot's peak RSS (VmHWM) and CPU, and the CPUs the harness and other users' processes kept
busy meanwhile (this machine is shared: read a run with much "other" as contended). Exit status 0 only if the storm was fully served: every
request answered 200, every acknowledged submission exactly one ticket and one confirmation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from . import load, slackreq
from .runner import CREATE, EPHEMERAL, Config, Harness
from .stats import summary


def plan(commands: int, submissions: int) -> list[tuple[str, int]]:
    """(kind, index) in sending order: both kinds spread evenly over the storm."""
    marks = [((i + 0.5) / commands, "command", i) for i in range(commands)]
    marks += [((j + 0.5) / submissions, "submission", j) for j in range(submissions)]
    return [(kind, i) for _f, kind, i in sorted(marks)]


async def send_open_loop(url: str, requests: list[tuple[bytes, dict[str, str]]], rate: float) -> list[tuple[float, load.Sample]]:
    """Send request k at t0 + k / rate without waiting for answers; (due time, sample) per request."""
    async with load._session(10_000) as session:
        t0 = time.monotonic() + 0.2
        pending = []
        for k, (body, headers) in enumerate(requests):
            due = t0 + k / rate
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            pending.append((due, asyncio.create_task(load._send(session, url, body, headers))))
        return [(due, await task) for due, task in pending]


def by_title(calls: list[list[Any]], method: str) -> Counter[str]:
    """How many successful calls of `method` carried each bench title (a ticket's name, a notice's text)."""
    return Counter(m.group(0) for meth, _a, _d, status, _k, text in calls
                   if meth == method and status == 200 and (m := slackreq.TITLE_RE.search(text)))


def updated(s: load.Sample) -> bool:
    """A submission acknowledged as the bot does it: the form becomes "Creating your ticket…"."""
    try:
        return s.status == 200 and json.loads(s.body).get("response_action") == "update"
    except (ValueError, AttributeError):
        return False


async def run(h: Harness, rate: float, n_cmd: int, n_sub: int) -> dict[str, Any]:
    bot = h.start_bot("bot-storm", default_settings=True)
    await h.prime([bot])  # first-use costs out of the way; ends with the fakes' records reset
    tags = {"command": h.tag("sc"), "submission": h.tag("ss")}  # trigger_ids and titles of each kind
    view_ids = await h.open_views(n_sub)  # the modals the submissions come from
    order = plan(n_cmd, n_sub)
    reqs = [h.signer.sign(slackreq.command(tags[kind], i) if kind == "command"
                          else slackreq.submission(tags[kind], i, view_ids[i], h.template)) for kind, i in order]
    cpu0, harness0, t0 = bot.cpu(), h.harness_cpu(), time.monotonic()
    sent = await send_open_loop(bot.url + "/slack/events", reqs, rate)
    last_due = sent[-1][0]
    by_kind: dict[str, list[tuple[float, load.Sample]]] = {"command": [], "submission": []}
    for (kind, _i), x in zip(order, sent):
        by_kind[kind].append(x)
    subs = [s for _due, s in by_kind["submission"]]
    acked = sum(map(updated, subs))
    drained = await h.wait_count(h.slack, EPHEMERAL, acked, timeout=max(60.0, acked / 20))
    await h.wait_idle(bot)
    cpu1, harness1, wall = bot.cpu(), h.harness_cpu(), time.monotonic() - t0
    slack_calls, serval_calls = await h.calls(h.slack), await h.calls(h.serval)
    ends = [a for m, a, *_ in slack_calls if m == EPHEMERAL]
    submitted = set(view_ids)
    titles, notices = by_title(serval_calls, CREATE), by_title(slack_calls, EPHEMERAL)
    commands = [s for _due, s in by_kind["command"]]
    return {
        "bot_dir": str(h.cfg.bot_dir), "rate": rate, "commands": n_cmd, "submissions": n_sub, "serval_latency_ms": h.cfg.serval_latency_ms,
        "send_s": last_due - sent[0][0], "send_lag_ms": summary(s.sent - due for due, s in sent),
        "ack_ms": {kind: summary(s.acked - due for due, s in xs if s.status == 200) for kind, xs in by_kind.items()},
        "ack_from_send_ms": {kind: summary(s.latency for _due, s in xs if s.status == 200) for kind, xs in by_kind.items()},
        "non_200": {kind: Counter(str(s.status) for _due, s in xs if s.status != 200) for kind, xs in by_kind.items()},
        "error_examples": [f"{s.status} {s.body[:200]!r}" for _due, s in sent if s.status != 200][:3],
        "views_open": h.views_open_times(tags["command"], commands, slack_calls),
        "acknowledged": acked, "drained": drained,
        **h.ticket_times(tags["submission"], subs, slack_calls, serval_calls),
        "create_calls": sum(1 for c in serval_calls if c[0] == CREATE),
        "titles_created": len(titles), "titles_duplicated": sum(1 for n in titles.values() if n > 1),
        # views.update on a submitted form (its outcome) and on any other, i.e. a /ticket form (its suggestions)
        "views_update": Counter("submitted" if k in submitted else "forms" for m, _a, _d, _s, k, _t in slack_calls
                                if m == "views.update"),
        "serval_calls": Counter(c[0] for c in serval_calls),  # e.g. the similar-ticket searches
        "notices_duplicated": sum(1 for n in notices.values() if n > 1),
        "drain_s": max(ends) - last_due if ends else float("nan"),
        "peak_rss_mb": bot.memory()["VmHWM"] / 1024, "bot_cpu_s": cpu1 - cpu0, "wall_s": wall,
        # CPUs in use on average, storm to drained: the bot, the harness, and not ours (other users)
        "cpu_util": {"bot": (cpu1 - cpu0) / wall, **{k: (harness1[k] - harness0[k]) / wall for k in harness1}},
    }


def served(r: dict[str, Any]) -> bool:
    return (r["drained"] and not any(r["non_200"].values()) and r["acknowledged"] == r["submissions"]
            and r["tickets_created"] == r["titles_created"] == r["tickets_notified"] == r["acknowledged"]
            and r["titles_duplicated"] == r["notices_duplicated"] == 0 and r["views_open"]["matched"] == r["commands"])


def show(r: dict[str, Any]) -> str:
    lines = [f"storm: {r['bot_dir']}: {r['commands']:,} /ticket + {r['submissions']:,} submissions at {r['rate']:g}/s, open loop,"
             f" Serval latency {r['serval_latency_ms']:g} ms, the bot on its default settings",
             f"sent in {r['send_s']:.1f} s (sender late p99 {r['send_lag_ms']['p99']:.1f} ms, max {r['send_lag_ms']['max']:.1f} ms)"]
    for kind, a in r["ack_ms"].items():
        lines.append(f"{kind:10} ack p50 {a['p50']:6.1f} p99 {a['p99']:6.1f} max {a['max']:6.1f} ms from due"
                     f" (p99 {r['ack_from_send_ms'][kind]['p99']:.1f} ms from sent), non-200: {dict(r['non_200'][kind]) or 'none'}")
    vo = r["views_open"]
    lines.append(f"/ticket → views.open p50 {vo['ms']['p50']:.1f} p99 {vo['ms']['p99']:.1f} ms,"
                 f" {vo['matched']:,}/{r['commands']:,} opened, {vo['over_3s']} past 3 s, {vo['errors']} errors;"
                 f" {r['views_update'].get('forms', 0):,} forms got similar tickets (views.update)")
    lines.append("Serval: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r["serval_calls"].items())))
    lines.append(f"tickets: {r['tickets_created']:,} created for {r['acknowledged']:,} acknowledged submissions"
                 f" ({r['create_calls']:,} create calls, {r['titles_created']:,} distinct titles,"
                 f" {r['titles_duplicated']} created more than once); notices {r['tickets_notified']:,}"
                 f" ({r['notices_duplicated']} tickets told more than once)")
    lines.append(f"submission → ticket created p50 {r['created_ms']['p50']:.0f} p99 {r['created_ms']['p99']:.0f} ms,"
                 f" → notice p99 {r['notified_ms']['p99']:.0f} ms; last notice {r['drain_s']:.1f} s after the last"
                 f" request ({'drained' if r['drained'] else 'NOT drained'})")
    lines.append(f"bot: peak RSS {r['peak_rss_mb']:.0f} MB, {r['bot_cpu_s']:.1f} CPU s from the storm to drained;"
                 f" CPUs busy on average: " + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_util"].items()))
    lines.append("fully served" if served(r) else f"NOT fully served {r['error_examples']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=300.0, help="requests per second, both kinds (default 300)")
    p.add_argument("--commands", type=int, default=3000, help="/ticket commands (default 3000)")
    p.add_argument("--submissions", type=int, default=3000, help="modal submissions (default 3000)")
    p.add_argument("--serval-latency-ms", type=float, default=200.0, help="Serval sandbox latency (default 200)")
    p.add_argument("--bot-dir", type=Path, help="run app.py from this directory (e.g. an older commit's tree)")
    p.add_argument("--json", type=Path, help="also write the results here")
    a = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    cfg = Config(serval_latency_ms=a.serval_latency_ms)
    if a.bot_dir:
        cfg.bot_dir = a.bot_dir.resolve()
    h = Harness(cfg, workdir, log=print)

    async def go() -> dict[str, Any]:
        import aiohttp

        h.http = aiohttp.ClientSession()
        try:
            h.start_fakes()
            return await run(h, a.rate, a.commands, a.submissions)
        finally:
            await h.http.close()
            h.stop_all()

    try:
        results = asyncio.run(go())
    except BaseException:
        print(f"bench.storm: failed; logs kept in {workdir}", flush=True)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print(show(results), flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0 if served(results) else 1


if __name__ == "__main__":
    sys.exit(main())
