"""The benchmark still runs end to end (`python -m bench --quick`): a tiny load, 0 ms Serval latency,
every phase (ack, floor2, tickets, durability, postgres, backlog).

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


@pytest.mark.timeout(120)
def test_quick_benchmark_run_produces_complete_results(tmp_path: Path) -> None:
    out, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--json", str(raw)],
        cwd=REPO, capture_output=True, text=True, timeout=110,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(raw.read_text())
    cfg = results["config"]
    levels, n = cfg["levels"], cfg["requests"]
    assert cfg["quick"] and levels == [1, 2] and n > 0

    assert cfg["phases"] == ["ack", "floor2", "tickets", "durability", "postgres", "backlog"]

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
    for heading in ("## Machine and versions", "## Settings", "## Targets", "## Acknowledgement latency",
                    "## `/ticket` against two floors", "## `trigger_id` budget", "### Shortcut against `/ticket`",
                    "## Submission → ticket created", "## Sustained tickets", "## Durability",
                    "## PostgreSQL and replicas", "## Backlog"):
        assert heading in report, heading
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)  # every number was measured
