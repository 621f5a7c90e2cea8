"""docs/benchmarks.md from the results of one run (plus the hand-written bench/findings.md)."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

FINDINGS = Path(__file__).with_name("findings.md")
LIBRARIES = ("slack-bolt", "slack-sdk", "aiohttp", "httpx", "aiosqlite", "pydantic", "jsonschema")
KIND_NAMES = {"command": "`/ticket`", "shortcut": "message shortcut", "submission": "modal submission"}

# Targets from the issue (for a 2-core machine).
ACK_RATIO, ACK_SLACK_MS, ACK_AT = 1.3, 5.0, 50
VIEWS_OPEN_MS, VIEWS_OPEN_AT = 200.0, 100
OVERHEAD_MS = 10.0
TICKETS_PER_S = 100.0
PEAK_RSS_MB = 150.0


def environment(results: dict[str, Any]) -> dict[str, Any]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "not installed"
    clock = time.get_clock_info("monotonic")
    bot_dir = Path(results.get("config", {}).get("bot_dir") or Path(__file__).resolve().parent.parent)
    code = "unknown"
    try:
        rev = subprocess.run(["git", "-C", str(bot_dir), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        if rev.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(bot_dir), "status", "--porcelain", "--", "app.py", "bot",
                                    "handlers", "clients"], capture_output=True, text=True, timeout=10).stdout.strip()
            code = f"commit {rev.stdout.strip()}" + (" with uncommitted changes to the bot" if dirty else "")
        else:
            code = f"{bot_dir} (not a git checkout)"
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu_model, "memory_gb": mem_gb,
        "kernel": f"{platform.system()} {platform.release()}", "python": sys.version.split()[0],
        "implementation": platform.python_implementation(), "libraries": versions,
        "clock": clock.implementation, "bot_code": code,
    }


def _f(x: float, digits: int = 1) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _cells(results: dict[str, Any], target: str, kind: str) -> dict[int, dict[str, Any]]:
    return {c["concurrency"]: c for c in results["cells"] if c["target"] == target and c["kind"] == kind}


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    cfg = results["config"]
    rows: list[tuple[str, str, bool | None]] = []
    for kind in cfg["kinds"]:
        floor, bot = _cells(results, "floor", kind).get(ACK_AT), _cells(results, "bot", kind).get(ACK_AT)
        if floor and bot:
            limit = ACK_RATIO * floor["ack_ms"]["p99"] + ACK_SLACK_MS
            rows.append((f"{KIND_NAMES[kind]} ack p99 ≤ 1.3 × floor p99 + 5 ms at {ACK_AT} concurrent",
                         f"{_f(bot['ack_ms']['p99'])} ms vs limit {_f(limit)} ms (floor {_f(floor['ack_ms']['p99'])} ms)",
                         bot["ack_ms"]["p99"] <= limit))
        else:
            rows.append((f"{KIND_NAMES[kind]} ack p99 ≤ 1.3 × floor + 5 ms at {ACK_AT} concurrent", "not measured", None))
    for kind in ("command", "shortcut"):
        if kind not in cfg["kinds"]:
            continue
        cell = _cells(results, "bot", kind).get(VIEWS_OPEN_AT)
        if cell:
            p99 = cell["views_open"]["ms"]["p99"]
            rows.append((f"{KIND_NAMES[kind]} → `views.open` p99 < 200 ms at {VIEWS_OPEN_AT} concurrent",
                         f"{_f(p99)} ms", p99 < VIEWS_OPEN_MS))
        else:
            rows.append((f"{KIND_NAMES[kind]} → `views.open` p99 < 200 ms at {VIEWS_OPEN_AT} concurrent", "not measured", None))
    t = results.get("tickets") or {}
    for p in (t.get("paced") or [])[:2]:
        p50 = p["to_serval_ms"]["p50"]
        net = p["created_minus_latency_ms"]["p50"]
        rows.append((f"bot overhead over Serval's latency < 10 ms at p50 ({p['concurrency']} submitting at once)",
                     f"{_f(p50)} ms (submit → ticket created − Serval's own time); "
                     f"{_f(net)} ms with only the configured latency subtracted", p50 < OVERHEAD_MS))
    if t:
        rows.append((f"≥ 100 tickets/s with {_f(cfg['serval_latency_ms'], 0)} ms Serval latency",
                     f"{_f(t['tickets_per_s'], 0)} tickets/s ({_f(t['tickets_per_s_steady'], 0)} steady)",
                     t["tickets_per_s"] >= TICKETS_PER_S))
        rows.append((f"peak RSS < 150 MB after {t['tickets']:,} tickets", f"{_f(t['peak_rss_mb'])} MB",
                     t["peak_rss_mb"] < PEAK_RSS_MB))
    return rows


def render(results: dict[str, Any]) -> str:
    env, cfg, t = results["environment"], results["config"], results.get("tickets") or {}
    out: list[str] = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("How fast the bot acknowledges Slack and turns modal submissions into tickets, side by side with the")
    w("floor: a minimal Bolt `AsyncApp` on the same HTTP stack whose listeners only acknowledge.")
    w("Generated by `make bench` (`.venv/bin/python -m bench`); the section *Findings* comes from")
    w("`bench/findings.md`. Benchmarks are not tests: the test suite only runs a tiny smoke load")
    w("(`tests/test_bench_smoke.py`).")
    w("")
    loads = [c["harness_cpu_util"].get("other", 0.0) for c in results["cells"]]
    if t and t.get("wall_s"):
        loads.append(t["harness_cpu_s"].get("other", 0.0) / t["wall_s"])
    if loads and max(loads) > 0.15:
        w(f"> **Contended machine:** other processes used up to {max(loads):.0%} of a CPU during parts of this run")
        w(f"> (mean {sum(loads) / len(loads):.0%}; see *Harness CPU*). Latencies and rates are pessimistic there.")
        w("")
    if cfg.get("quick"):
        w("> **Quick smoke run** (`--quick`): tiny load, numbers are meaningless.")
        w("")
    w(f"Run finished {results.get('finished_at', '?')} in {_f(results.get('duration_s', 0), 0)} s.")
    w("")
    w("```")
    w("make bench                                   # everything below, ~3-6 min; writes this file")
    w(".venv/bin/python -m bench --quick --out /tmp/b.md   # smoke run (what the test suite runs)")
    w(".venv/bin/python -m bench --concurrency 1,10,50 --serval-latency-ms 50 --tickets 10000 --out docs/benchmarks.md")
    w(".venv/bin/python -m bench --phases tickets --tickets 3000 --profile bench/out/profile  # py-spy the bot")
    w(".venv/bin/python -m bench.pyspy_summary bench/out/profile/bot-tickets.txt")
    w(".venv/bin/python -m bench --bot-dir /tmp/patched-copy ...   # measure a patched copy of the bot")
    w(".venv/bin/python -m bench --from-json bench/out/results.json  # re-render after editing bench/findings.md")
    w("```")
    w("")
    w("## Machine and versions")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPUs (nproc) | {env['nproc']} × {env['cpu_model']} |")
    w(f"| memory | {_f(env['memory_gb'])} GB |")
    w(f"| OS | {env['kernel']} |")
    w(f"| Python | {env['implementation']} {env['python']} (asyncio default loop) |")
    w(f"| libraries | {', '.join(f'{k} {v}' for k, v in env['libraries'].items())} |")
    w(f"| clock | `time.monotonic()` = {env['clock']}, one clock for all processes |")
    w(f"| bot code | {env.get('bot_code', 'unknown')} |")
    w("")
    w("## Settings")
    w("")
    pin = (f"yes: bot/floor on CPU {results.get('sut_cpus')}, load generator + fake Slack + Serval sandbox on CPU "
           f"{results.get('harness_cpus')}") if results.get("pinned") else "no (all processes float over all CPUs)"
    w("| | |")
    w("|---|---|")
    w(f"| concurrency levels | {', '.join(map(str, cfg['levels']))} (closed loop: each connection sends its next request when the previous is answered) |")
    w(f"| requests per level | {'max(300, 5 × concurrency)' if not cfg['requests'] else cfg['requests']}, after an unrecorded warm-up of {'max(20, concurrency)' if not cfg['warmup'] else cfg['warmup']} on the same connections |")
    w(f"| Serval sandbox latency | {_f(cfg['serval_latency_ms'], 0)} ms on every request (plus its own work: JSON-schema validation) |")
    w(f"| sustained run | {cfg['tickets']:,} submissions over {cfg['ticket_concurrency']} connections, at most {cfg['ticket_window']} tickets unfinished, fresh bot process |")
    w(f"| CPU pinning | {pin} |")
    w("| bot | `python app.py --mode http`, LOG_LEVEL=WARNING, SQLite journal in a temp dir, static Serval bearer token |")
    w("| transport | HTTP/1.1 keep-alive on 127.0.0.1, aiohttp client; requests signed (v0 HMAC-SHA256) before timing |")
    w("")
    w("Each server is its own process. Submissions are `/ticket` modals from channel C111 without “share” (the")
    w("common path: create → `views.update` → `chat.postEphemeral`); every submission has a modal that exists in")
    w("the fake Slack, so `views.update` succeeds. The same Slack user files every ticket, so `users.info` and")
    w("Serval's user list are served from the bot's caches after the first ticket.")
    w("")
    w("## Targets")
    w("")
    w("| target | measured | |")
    w("|---|---|---|")
    for name, measured, ok in targets(results):
        w(f"| {name} | {measured} | {_verdict(ok)} |")
    w("")

    w("## Acknowledgement latency")
    w("")
    w("Time from writing the request to reading the whole answer, at the load generator (ms).")
    w("Ratios = bot / floor. CPU = share of one CPU the server used during the run (its event loop and its")
    w("other threads together, so the bot can pass 100%).")
    w("")
    for kind in cfg["kinds"]:
        floor, bot = _cells(results, "floor", kind), _cells(results, "bot", kind)
        w(f"### {KIND_NAMES[kind]}")
        w("")
        w("| concurrency | floor p50 | floor p95 | floor p99 | bot p50 | bot p95 | bot p99 | p50 ratio | p99 ratio | limit 1.3×floor+5 | floor req/s | bot req/s | floor CPU | bot CPU | errors (floor/bot) |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in cfg["levels"]:
            f, b = floor.get(c), bot.get(c)
            if not (f and b):
                continue
            fa, ba = f["ack_ms"], b["ack_ms"]
            ratio = ba["p99"] / fa["p99"] if fa["p99"] else math.nan
            ratio50 = ba["p50"] / fa["p50"] if fa["p50"] else math.nan
            w(f"| {c} | {_f(fa['p50'])} | {_f(fa['p95'])} | {_f(fa['p99'])} | {_f(ba['p50'])} | {_f(ba['p95'])} | "
              f"{_f(ba['p99'])} | {_f(ratio50, 2)} | {_f(ratio, 2)} | {_f(ACK_RATIO * fa['p99'] + ACK_SLACK_MS)} | {_f(f['req_per_s'], 0)} | "
              f"{_f(b['req_per_s'], 0)} | {f['cpu_util']:.0%} | {b['cpu_util']:.0%} | {f['errors']}/{b['errors']} |")
        w("")
    if any(k in cfg["kinds"] for k in ("command", "shortcut")):
        w("## `trigger_id` budget: request sent → `views.open` reaches the fake Slack")
        w("")
        w("Load generator's send time to the fake Slack's arrival time of the `views.open` carrying the same")
        w("`trigger_id` (ms; Slack allows 3,000). The shortcut first calls `chat.getPermalink` (waits ≤ 1 s).")
        w("")
        w("| kind | concurrency | p50 | p95 | p99 | max | matched | > 3 s | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for kind in ("command", "shortcut"):
            if kind not in cfg["kinds"]:
                continue
            for c, b in sorted(_cells(results, "bot", kind).items()):
                v = b["views_open"]
                w(f"| {KIND_NAMES[kind]} | {c} | {_f(v['ms']['p50'])} | {_f(v['ms']['p95'])} | {_f(v['ms']['p99'])} | "
                  f"{_f(v['ms']['max'])} | {v['matched']}/{b['requests']} | {v['over_3s']} | {v['errors']} |")
        w("")
    paced = t.get("paced") or []
    if paced:
        w("## Submission → ticket created")
        w("")
        w("*c* people submit at once, each waiting for the confirmation of their ticket before submitting again")
        w("(at most *c* tickets in the bot), on the fresh bot of the sustained run. From the submission's send")
        w("time (load generator) to: the create request reaching the Serval sandbox (*overhead*: everything the")
        w("bot does before Serval; equal to “submit → ticket created” minus the sandbox's own time); Serval's")
        w("answer leaving the sandbox minus the configured latency (*created − latency*, which also counts the")
        w("sandbox's JSON-schema validation); the confirmation `chat.postEphemeral` reaching the fake Slack")
        w("(*notified*: the whole flow). *Serval service*: time inside the sandbox. ms.")
        w("")
        w("| c | overhead p50 | p95 | p99 | created − latency p50 | p99 | Serval service p50 | notified p50 | p99 | ack p50 | ack p99 | tickets/s | tickets |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for p in paced:
            ts, cr, sv, nt, ak = (p["to_serval_ms"], p["created_minus_latency_ms"], p["serval_service_ms"],
                                  p["notified_ms"], p["ack_ms"])
            w(f"| {p['concurrency']} | {_f(ts['p50'])} | {_f(ts['p95'])} | {_f(ts['p99'])} | {_f(cr['p50'])} | "
              f"{_f(cr['p99'])} | {_f(sv['p50'])} | {_f(nt['p50'])} | {_f(nt['p99'])} | {_f(ak['p50'])} | "
              f"{_f(ak['p99'])} | {_f(p['tickets_per_s'], 0)} | {p['tickets_created']}/{p['requests']} |")
        w("")
    if "submission" in cfg["kinds"]:
        w("### Under the acknowledgement load")
        w("")
        w("The same times for the submissions of the acknowledgement runs above, which send the next submission")
        w("as soon as the previous one is acknowledged: whenever acknowledging is faster than creating tickets,")
        w("tickets queue up inside the bot and *to Serval* is mostly that queue.")
        w("")
        w("| concurrency | to Serval p50 | p95 | p99 | created − latency p50 | p99 | Serval service p50 | notified p50 | p99 | tickets |")
        w("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c, b in sorted(_cells(results, "bot", "submission").items()):
            ts, cr, sv, nt = b["to_serval_ms"], b["created_minus_latency_ms"], b["serval_service_ms"], b["notified_ms"]
            w(f"| {c} | {_f(ts['p50'])} | {_f(ts['p95'])} | {_f(ts['p99'])} | {_f(cr['p50'])} | {_f(cr['p99'])} | "
              f"{_f(sv['p50'])} | {_f(nt['p50'])} | {_f(nt['p99'])} | {b['tickets_created']}/{b['requests']} |")
        w("")
    if t:
        w("## Sustained tickets, CPU and memory")
        w("")
        w("| | |")
        w("|---|---|")
        w(f"| tickets created / confirmed | {t['tickets_created']:,} / {t['tickets_notified']:,} of {t['tickets']:,} (acks OK {t['acks_ok']:,}); {t.get('tickets_in_process', t['tickets']):,} tickets in this bot process counting warm-up and paced runs |")
        w(f"| sustained rate | **{_f(t['tickets_per_s'], 0)} tickets/s** over {_f(t['wall_s'])} s (first send → last confirmation); {_f(t['tickets_per_s_steady'], 0)}/s between the 10th and 90th percentile confirmation |")
        w(f"| bot CPU | {_f(t['cpu_s'])} s total, **{_f(t['cpu_s_per_1000'], 2)} CPU s per 1,000 tickets** (all threads; ack + create + notify) |")
        w(f"| bot memory | RSS {_f(t['rss_start_mb'])} MB after warm-up → {_f(t['rss_end_mb'])} MB after; **peak RSS (VmHWM) {_f(t['peak_rss_mb'])} MB** |")
        names = {"loadgen": "load generator", "fake_slack": "fake Slack", "serval": "Serval sandbox", "other": "not ours"}
        w("| other CPU in that time | " + ", ".join(f"{names.get(k, k)} {_f(max(0.0, v))} s"
                                                   for k, v in t["harness_cpu_s"].items()) + " |")
        if t.get("bot_threads_cpu_s"):
            th = t["bot_threads_cpu_s"]
            w(f"| bot CPU by thread | event loop {_f(th['main'])} s, other threads (aiosqlite) {_f(th['other'])} s |")
        w(f"| ack latency | p50 {_f(t['ack_ms']['p50'])} / p99 {_f(t['ack_ms']['p99'])} ms |")
        w(f"| window | at most {t['window']} tickets unfinished: per-ticket times below are mostly waiting in that window |")
        w(f"| submit → create reaches Serval | p50 {_f(t['to_serval_ms']['p50'])} / p95 {_f(t['to_serval_ms']['p95'])} / p99 {_f(t['to_serval_ms']['p99'])} ms |")
        w(f"| submit → created − configured latency | p50 {_f(t['created_minus_latency_ms']['p50'])} / p99 {_f(t['created_minus_latency_ms']['p99'])} ms (Serval service p50 {_f(t['serval_service_ms']['p50'])} ms) |")
        w(f"| submit → confirmation reaches Slack | p50 {_f(t['notified_ms']['p50'])} / p99 {_f(t['notified_ms']['p99'])} ms |")
        w("")
        if results.get("bot_ack_phase"):
            w(f"Peak RSS of the bot process that served all the acknowledgement runs: "
              f"{_f(results['bot_ack_phase']['peak_rss_mb'])} MB.")
            w("")
    w("## Harness CPU")
    w("")
    w("Share of one CPU used by each process during each run (the machine has "
      f"{results.get('environment', {}).get('nproc', '?')}). The harness (load generator, fake Slack, Serval")
    w("sandbox) runs beside the server under test; when they add up to all the CPUs, the harness shares in")
    w("setting the pace.")
    w("")
    w("| kind | concurrency | load generator | fake Slack | Serval | not ours | bot | floor | not ours (floor run) |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in cfg["kinds"]:
        floors = _cells(results, "floor", kind)
        for c, b in sorted(_cells(results, "bot", kind).items()):
            hc, f = b["harness_cpu_util"], floors.get(c)
            if not f:
                continue
            fo = max(0.0, f["harness_cpu_util"].get("other", 0.0))
            w(f"| {KIND_NAMES[kind]} | {c} | {hc['loadgen']:.0%} | {hc['fake_slack']:.0%} | {hc['serval']:.0%} | "
              f"{max(0.0, hc.get('other', 0.0)):.0%} | {b['cpu_util']:.0%} | {f['cpu_util']:.0%} | {fo:.0%} |")
    w("")
    w("*Not ours*: CPU used by everything else on the machine during the run (other users' processes, the")
    w("kernel's own work), from /proc/stat minus the benchmark's processes (to within a few percent: the")
    w("counters tick every 10 ms). Above that the run was contended and its latencies and rates are")
    w("pessimistic; CPU seconds per request or ticket are much less affected.")
    w("")
    w("## Method and caveats")
    w("")
    w("- **Two cores for everything.** The load generator, the fake Slack and the Serval sandbox are Python")
    w("  processes too and share the CPUs with the server under test (see *Harness CPU*). No process is pinned")
    w("  by default: the bot is one event loop plus aiosqlite's thread, and pinning both to one CPU (`--pin`:")
    w("  server on CPU 0, harness on the others) cost it ~30% of its ticket throughput here. Numbers on a real")
    w("  deployment (bot alone on the machine, Slack's and Serval's latency over the internet) will differ;")
    w("  ratios to the floor travel better than absolute numbers.")
    w("- **Closed loop.** Each level keeps that many requests in flight, whatever the server's speed: once a")
    w("  server's CPU is saturated, latency ≈ concurrency ÷ throughput. The bot saturates from 10 concurrent,")
    w("  the floor from ~50; the ack-latency ratio at those levels is in effect a ratio of CPU per request.")
    w("- **Fakes.** Slack and Serval are local sandboxes without TLS. The fake Slack does not enforce")
    w("  `trigger_id` expiry here, so a late `views.open` is counted (*> 3 s*) rather than failed; in real")
    w("  Slack it fails with `expired_trigger_id` and the person sees nothing.")
    w("- **Clock.** All times are `time.monotonic()` (CLOCK_MONOTONIC), read by different processes on one")
    w("  machine: comparable across processes. Send times are taken just before the request is written, so")
    w("  latencies include loopback transfer and, under load, queueing in the load generator itself.")
    w("- **What the floor includes.** Bolt's async listener runner polls for `ack()` every 10 ms")
    w("  (`asyncio.sleep(0.01)` in `slack_bolt/listener/asyncio_runner.py`), so no Bolt app on this stack")
    w("  acknowledges faster than ~10 ms; the floor shows that cost, and the bot pays it too.")
    w("- **Percentiles** interpolate linearly between ranks; p99 of a 300-request run rests on ~3 samples.")
    w("- Failed requests (non-200, wrong ack) are counted as errors and left out of the latency figures.")
    w("")
    if FINDINGS.exists():
        w(FINDINGS.read_text().rstrip())
        w("")
    return "\n".join(out) + "\n"
