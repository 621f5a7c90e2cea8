"""Summarise a py-spy collapsed-stack file (``py-spy record --format raw``).

    python -m bench.pyspy_summary bench/out/profile/bot-tickets.txt [--top 40] [--filter SUBSTR]

Prints the functions with the largest inclusive share (on the stack) and self share (top of the
stack) of the main thread's samples, so a profile can be read in a terminal and quoted in a report.

Other threads are left out unless --all-threads: py-spy counts aiosqlite's worker thread as busy
while it waits on its queue (a blocking Queue.get), so its samples say nothing about SQLite work;
per-thread CPU seconds from /proc (the benchmark reports them) do.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (to/file.py)'."""
    frame = _LINE.sub(")", frame.strip())
    m = re.match(r"(.*) \((.*)\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    elif "lib" in parts and any(p.startswith("python3") for p in parts):
        parts = ["stdlib"] + parts[-1:]
    else:
        parts = parts[-2:]
    return f"{func} ({'/'.join(parts)})"


def load(path: Path, all_threads: bool = False) -> tuple[Counter[str], Counter[str], int]:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if not all_threads and stack.startswith("Thread._bootstrap"):
            continue
        n = int(count)
        frames = [frame_name(f) for f in stack.split(";") if "(" in f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        own[frames[-1]] += n
    return inclusive, own, total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pyspy_summary")
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--filter", default="")
    p.add_argument("--all-threads", action="store_true")
    a = p.parse_args(argv)
    inclusive, own, total = load(a.file, a.all_threads)
    print(f"{total} samples")
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n--- {title} ---")
        for name, n in counter.most_common():
            if a.filter and a.filter not in name:
                continue
            print(f"{100 * n / total:5.1f}%  {name}")
            a.top -= 1
            if a.top <= 0:
                break
        a.top = p.parse_args(argv).top
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
