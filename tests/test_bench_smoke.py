"""The benchmark still runs end to end (`python -m bench --quick`): a tiny load, 0 ms Serval latency.

Benchmarks are not tests: nothing here looks at how fast anything was, only that every measurement
is there and the counts add up (N submissions -> N tickets created and confirmed).
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = {"n", "p50", "p95", "p99", "mean", "max"}


def _summary_ok(summary: dict, n: int) -> None:
    assert set(summary) == SUMMARY_KEYS
    assert summary["n"] == n
    for key in SUMMARY_KEYS - {"n"}:
        assert math.isfinite(summary[key]) and summary[key] >= 0, (key, summary)


@pytest.mark.timeout(90)
def test_quick_benchmark_run_produces_complete_results(tmp_path: Path) -> None:
    out, raw = tmp_path / "bench.md", tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out), "--json", str(raw)],
        cwd=REPO, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(raw.read_text())
    cfg = results["config"]
    levels, n = cfg["levels"], cfg["requests"]
    assert cfg["quick"] and levels == [1, 2] and n > 0

    cells = {(c["target"], c["kind"], c["concurrency"]): c for c in results["cells"]}
    assert set(cells) == {(t, k, c) for t in ("floor", "bot") for k in ("command", "shortcut", "submission") for c in levels}
    for (target, kind, _c), cell in cells.items():
        assert cell["requests"] == n and cell["errors"] == 0, cell
        _summary_ok(cell["ack_ms"], n)
        assert cell["req_per_s"] > 0 and cell["cpu_util"] >= 0
        if target == "bot" and kind in ("command", "shortcut"):
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

    report = out.read_text()
    for heading in ("## Machine and versions", "## Settings", "## Targets", "## Acknowledgement latency",
                    "## `trigger_id` budget", "## Submission → ticket created", "## Sustained tickets"):
        assert heading in report, heading
    assert not re.search(r"\bnan\b", report, re.IGNORECASE)  # every number was measured
