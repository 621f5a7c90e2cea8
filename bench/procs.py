"""Child processes of the benchmark: start, wait until serving, read CPU time and memory, stop.

CPU time and memory come from /proc (Linux): utime+stime of the whole process (all threads, e.g.
aiosqlite's worker thread), VmRSS and VmHWM (peak resident set size) from /proc/<pid>/status.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTED: list["Proc"] = []


@atexit.register
def stop_started() -> None:
    """Stop every process this benchmark started and did not stop yet (also after an interrupt)."""
    for proc in reversed(_STARTED):
        proc.stop(timeout=5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    return cpu_seconds_path(Path(f"/proc/{pid}/stat"))  # fields 14 and 15 of proc(5)


def thread_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread and of all other threads together (e.g. aiosqlite's)."""
    out = {"main": 0.0, "other": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out["main" if task.name == str(pid) else "other"] += cpu_seconds_path(task / "stat")
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return out


def cpu_seconds_path(stat: Path) -> float:
    raw = stat.read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle, not waiting for I/O) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def ours_seconds() -> float:
    """CPU seconds used by this process and every process it started and has not stopped."""
    total = cpu_seconds(os.getpid())
    for proc in _STARTED:
        try:
            total += proc.cpu()
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


class Proc:
    """One server process. `cpus`: pin it to these CPUs (sched_setaffinity before exec)."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
                 cwd: str | None = None, cpus: set[int] | None = None, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.popen = subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=self._log, preexec_fn=preexec
        )
        self.pid = self.popen.pid
        self.url = ""
        _STARTED.append(self)

    def read_url(self, timeout: float = 30.0) -> str:
        """Servers started with port 0 print their base URL as their first line."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} did not start; see {self.log_path}")
            ready, _, _ = select.select([self.popen.stdout], [], [], left)
            if ready:
                chunk = os.read(self.popen.stdout.fileno(), 1)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited; see {self.log_path}")
                line += chunk
        self.url = line.decode().strip()
        return self.url

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not answering {url}; see {self.log_path}")
            time.sleep(0.05)

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def threads_cpu(self) -> dict[str, float]:
        return thread_cpu_seconds(self.pid)

    def memory(self) -> dict[str, int]:
        return memory_kb(self.pid)

    def stop(self, timeout: float = 15.0) -> None:
        if self in _STARTED:
            _STARTED.remove(self)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self.popen.stdout and not self.popen.stdout.closed:
            self.popen.stdout.close()
        if not self._log.closed:
            self._log.close()
