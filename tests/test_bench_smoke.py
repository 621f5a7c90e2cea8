"""The benchmark still runs end to end (`python -m bench --quick`): a tiny load, 0 ms Serval latency,
every phase (ack, floor2, views_open, tickets, durability, postgres, backlog); and the open-loop storm
(`python -m bench.storm`, issue 19 item 3) at a tiny size.

docs/benchmarks.md is the published report: only a full run writes it (a quick or partial run
writes elsewhere and says so), and the committed one lists every phase.

Benchmarks are not tests: nothing here looks at how fast anything was, only that every measurement
is there and the counts add up (N submissions -> N tickets created and confirmed). The postgres
phase needs PostgreSQL's binaries (tests/pg.py); without them the run must say it skipped it.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import pg

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = {"n", "p50", "p95", "p99", "mean", "max"}


def _summary_ok(summary: dict, n: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["n"] == n
    for key in SUMMARY_KEYS - {"n"}:
        assert math.isfinite(summary[key]) and summary[key] >= 0, (key, summary)


def _run_ok(run: dict, n: int) -> None:
    """A sustained run (`Harness.measure_tickets`) of n tickets: all acknowledged, created, confirmed."""
    assert run["drained"] and run["tickets"] == n and run["acks_ok"] == n, run
    assert run["tickets_created"] == run["tickets_notified"] == n, run
    _summary_ok(run["ack_ms"], n)
    _summary_ok(run["to_serval_ms"], n)
    for key in ("tickets_per_s", "cpu_s_per_1000", "peak_rss_mb"):
        assert math.isfinite(run[key]) and run[key] > 0, (key, run)


PUBLISHED = REPO / "docs" / "benchmarks.md"
PHASES = ["ack", "floor2", "views_open", "tickets", "durability", "postgres", "backlog"]


def _phases_listed(report: str) -> list[str]:
    line = next((x for x in report.splitlines() if x.startswith("Phases in this run: ")), "")
    return [p.strip() for p in line.removeprefix("Phases in this run: ").rstrip(".").split(",") if p.strip()]


def test_committed_report_lists_every_phase() -> None:
    """docs/benchmarks.md comes from a full `make bench`, not from a smoke or partial run."""
    report = PUBLISHED.read_text()
    assert _phases_listed(report) == PHASES
    assert "Quick smoke run" not in report


@pytest.mark.timeout(150)
def test_quick_benchmark_run_produces_complete_results(tmp_path: Path) -> None:
    raw = tmp_path / "bench.json"
    published = PUBLISHED.read_bytes()
    try:  # asked to write the published report, a quick run writes its own instead and says so
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--quick", "--out", str(PUBLISHED), "--json", str(raw)],
            cwd=REPO, capture_output=True, text=True, timeout=140,
        )
        assert PUBLISHED.read_bytes() == published
    finally:
        if PUBLISHED.read_bytes() != published:
            PUBLISHED.write_bytes(published)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = REPO / "bench" / "out" / "quick.md"
    assert "bench: not writing docs/benchmarks.md from a --quick smoke run" in proc.stdout, proc.stdout[-3000:]
    assert f"bench: wrote {out}" in proc.stdout, proc.stdout[-3000:]
    results = json.loads(raw.read_text())
    cfg = results["config"]
    levels, n = cfg["levels"], cfg["requests"]
    assert cfg["quick"] and levels == [1, 2] and n > 0

    assert cfg["phases"] == PHASES

    cells = {(c["target"], c["kind"], c["concurrency"]): c for c in results["cells"]}
    assert set(cells) == {(t, k, c) for t in ("floor", "bot") for k in ("command", "shortcut", "submission")
                          for c in levels} | {("floor2", "command", c) for c in levels}
    for (target, kind, _c), cell in cells.items():
        assert cell["requests"] == n and cell["errors"] == 0, cell
        _summary_ok(cell["ack_ms"], n)
        assert cell["req_per_s"] > 0 and cell["cpu_util"] >= 0
        if target in ("bot", "floor2") and kind in ("command", "shortcut"):
            assert cell["drained"]
            assert cell["views_open"]["matched"] == n and cell["views_open"]["errors"] == 0
            _summary_ok(cell["views_open"]["ms"], n)
        if target == "bot" and kind == "submission":
            assert cell["drained"]
            assert cell["tickets_created"] == n and cell["tickets_notified"] == n  # N submissions -> N tickets
            for key in ("to_serval_ms", "created_ms", "created_minus_latency_ms", "serval_service_ms", "notified_ms"):
                _summary_ok(cell[key], n)

    t = results["tickets"]
    assert t["drained"] and t["acks_ok"] == t["tickets"] == cfg["tickets"]
    assert t["tickets_created"] == t["tickets_notified"] == t["tickets"]
    _summary_ok(t["to_serval_ms"], t["tickets"])
    for key in ("tickets_per_s", "cpu_s_per_1000", "peak_rss_mb", "rss_start_mb", "rss_end_mb"):
        assert math.isfinite(t[key]) and t[key] > 0, key

    # views_open: the bot on its default settings and the views.open floor, alternating rounds
    vo = results["views_open"]
    assert vo["levels"] == cfg["vo_levels"] == [2] and vo["rounds"] == 2 and vo["requests"] == cfg["vo_requests"] > 0
    assert [(x["kind"], x["concurrency"]) for x in vo["cells"]] == [("command", 2), ("shortcut", 2)]
    per_server = vo["rounds"] * vo["requests"]
    for x in vo["cells"]:
        for target in ("bot", "floor"):
            srv = x[target]
            assert srv["requests"] == per_server and srv["errors"] == 0 and srv["drained"], (target, srv)
            assert srv["views_open_matched"] == per_server, (target, srv)
            _summary_ok(srv["ack_ms"], per_server)
            _summary_ok(srv["views_open_ms"], per_server)
            assert len(srv["round_p99_ms"]["ack"]) == vo["rounds"]
        assert x["bot"]["views_update"] > 0 and x["floor"]["views_update"] == 0  # suggestions added to the bot's forms
        for m in ("ack", "views_open"):
            assert math.isfinite(x[f"{m}_ratio"]["p99"]) and len(x[f"{m}_round_ratios"]) == vo["rounds"]
    assert [(t["kind"], t["measure"], t["concurrency"]) for t in vo["targets"]] == [
        ("command", "ack", 50), ("command", "views_open", 100), ("shortcut", "views_open", 50)]

    # durability: N submissions through Storage per setting, and the bot on each setting
    d = results["durability"]
    st = d["storage"]
    assert st["cycles"] == cfg["durability_cycles"] > 0 and st["journal_mode"] == "wal"
    for setting in ("FULL", "NORMAL"):
        _summary_ok(st[setting]["cycle_ms"], st["cycles"])
        _run_ok(d["tickets"][setting], cfg["durability_tickets"])
        assert d["tickets"][setting]["synchronous_confirmed"], setting  # the wrapper's pragma took
    assert math.isfinite(st["ratio"]) and st["ratio"] > 0

    # postgres: SQLite, PostgreSQL x1, PostgreSQL x2 (or a stated skip without the binaries)
    p = results["postgres"]
    if pg.bin_dir() is None and not pg.in_ci():
        assert p["skipped"] and not p["rows"]
    else:
        assert p["skipped"] is None, p["skipped"]
        assert p["server"]["fsync"] == "on" and p["server"]["synchronous_commit"] == "on"
        assert [(r["engine"], r["replicas"]) for r in p["rows"]] == [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)]
        for row in p["rows"]:
            _run_ok(row, cfg["pg_tickets"])
            assert row["database_cpu_s"] >= 0

    # backlog: N unfinished submissions written, then drained by a fresh bot
    b = results["backlog"]
    assert b["written"]["written"] == b["backlog"] == cfg["backlog"] > 0
    assert b["drained"] and b["tickets_notified"] == b["backlog"]
    assert b["final_counts"] == {"done": b["backlog"]}
    for key in ("drain_s", "tickets_per_s", "peak_rss_mb", "startup_s"):
        assert math.isfinite(b[key]) and b[key] > 0, key

    report = out.read_text()
    assert _phases_listed(report) == PHASES and "Quick smoke run" in report
    for row in ("`/ticket` ack p99 at 50 concurrent ≤ 1.3 × the views.open floor's",
                "`/ticket` → `views.open` p99 at 100 concurrent ≤ 1.3 × the views.open floor's",
                "message shortcut → `views.open` p99 at 50 concurrent ≤ 1.3 × the views.open floor's"):
        assert row in report, row
    for heading in ("## Machine and versions", "## Settings", "## Targets", "## Acknowledgement latency",
                    "## What Slack users feel: the bot against the views.open floor",
                    "## `/ticket` against two floors", "## `trigger_id` budget", "### Shortcut against `/ticket`",
                    "## Submission → ticket created", "## Sustained tickets", "## Durability",
                    "## PostgreSQL and replicas", "## Backlog"):
        assert heading in report, heading
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)  # every number was measured

    # Re-rendering the results of a partial run (`--from-json`, whose default report is the
    # published one) writes bench/out/partial.md instead and says why.
    results["config"].update(quick=False, phases=["ack"])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(results))
    try:
        proc = subprocess.run([sys.executable, "-m", "bench", "--from-json", str(partial)],
                              cwd=REPO, capture_output=True, text=True, timeout=60)
        assert PUBLISHED.read_bytes() == published
    finally:
        if PUBLISHED.read_bytes() != published:
            PUBLISHED.write_bytes(published)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert ("bench: not writing docs/benchmarks.md from a partial run (phases missing: floor2, views_open, tickets,"
            " durability, postgres, backlog)") in proc.stdout, proc.stdout
    assert f"bench: wrote {REPO / 'bench' / 'out' / 'partial.md'}" in proc.stdout, proc.stdout
    assert _phases_listed((REPO / "bench" / "out" / "partial.md").read_text()) == ["ack"]


@pytest.mark.timeout(60)
def test_storm_runs_open_loop_and_every_submission_becomes_one_ticket(tmp_path: Path) -> None:
    """`python -m bench.storm` at a tiny size: every request answered, every acknowledged
    submission exactly one ticket at Serval and one confirmation, every /ticket its form."""
    raw = tmp_path / "storm.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.storm", "--rate", "50", "--commands", "20", "--submissions", "20",
         "--serval-latency-ms", "20", "--json", str(raw)],
        cwd=REPO, capture_output=True, text=True, timeout=55,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "fully served" in proc.stdout
    r = json.loads(raw.read_text())
    assert r["commands"] == r["submissions"] == 20 and r["drained"]
    assert r["acknowledged"] == r["tickets_created"] == r["titles_created"] == r["tickets_notified"] == 20
    assert r["titles_duplicated"] == r["notices_duplicated"] == 0 and r["views_open"]["matched"] == 20
    for kind in ("command", "submission"):
        assert not r["non_200"][kind]
        _summary_ok(r["ack_ms"][kind], 20)
    assert math.isfinite(r["drain_s"]) and r["peak_rss_mb"] > 0
