"""`make demo` as a person runs it in a terminal, without a browser: what it prints, and Ctrl-C.
(The page itself is driven in tests/e2e/test_demo_browser.py.)"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.conftest import eventually

ROOT = Path(__file__).resolve().parents[1]


async def test_the_demo_prints_the_bots_addresses_and_ctrl_c_stops_the_bot_with_one_signal(tmp_path):
    # Its own session, as a shell starts a foreground job: Ctrl-C is SIGINT to that whole group.
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.demo", "--data-dir", str(tmp_path)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    try:
        printed = await eventually(lambda: re.search(r"(http://\S+)/healthz\s+\1/readyz\s+\1/metrics", "".join(output))
                                   or proc.poll() is not None, timeout=45)
        assert proc.poll() is None, "".join(output)
        bot = printed.group(1)
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(bot + "/healthz")).status_code == 200
            assert (await http.get(bot + "/readyz")).status_code == 200
            metrics = await http.get(bot + "/metrics")
            assert metrics.status_code == 200 and "# TYPE" in metrics.text
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        await eventually(lambda: proc.poll() is not None, timeout=20)
    finally:
        if proc.poll() is None:  # the test failed early: stop it as Ctrl-C would, then for sure
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == 0, "".join(output)
    log = (tmp_path / "bot.log").read_text(errors="replace")
    # The bot was asked to stop once, and stopped gracefully: no forced exit, SQLite closed cleanly.
    assert len(re.findall(r"SIG\w+ received", log)) == 1, log
    assert re.search(r"stopped in \d+\.\d s", log) and "exiting now" not in log, log
    assert not (tmp_path / "bot.db-wal").exists() and not (tmp_path / "bot.db-shm").exists()
