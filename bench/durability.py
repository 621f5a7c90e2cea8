"""Phase "durability": what SQLite's synchronous=FULL (the journal's setting) costs against NORMAL.

1. Storage only (this module as a program, in its own process):

       python -m bench.durability --cycles 2000 --dir /tmp/x

   N cycles of one submission's life through the real `bot.journal.storage.Storage` API, as the ticket
   service writes it: `add_submission` (held by this process, as `submit` journals it), then three
   `save_submission`s (maybe-created before the create call; the ticket and the notify step; the
   final status, releasing the lease). One cycle at a time, so each time is one submission's journal
   cost. Two fresh journals, one per setting, in the same directory, worked in alternating rounds so
   that a change in the machine's speed hits both alike.

   `Storage` has no knob for the setting (bot/journal/storage.py sets `PRAGMA synchronous=FULL` on every
   connection it opens), so `bench.sqlite_sync.install` sets it below the Storage, in the sqlite3
   connections themselves (each journal file its value; the Storage's own pragma is rewritten to
   it), and reads it back; a journal whose value read back is not the wanted one stops the run.
   Everything else is the Storage's code.

2. Whole bot (the harness, `run`): a sustained ticket run of a fresh bot on a FULL journal, then
   one on a NORMAL journal, both started through `python -m bench.sqlite_sync SETTING app.py` (the
   same mechanism in the bot process; for FULL it sets what the Storage sets anyway), which prints
   each value it read back to the bot's log, where the harness checks them.

Prints one JSON object (1.) / returns the phase's results (2.).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import sqlite_sync
from .stats import summary

if TYPE_CHECKING:
    from .runner import Harness

SETTINGS = ("FULL", "NORMAL")
PRAGMA_VALUES = sqlite_sync.VALUES


def filesystem(path: Path) -> dict[str, str]:
    """The mount holding `path` (longest matching mount point in /proc/mounts): device, type."""
    best = ("", "?", "?")
    try:
        target = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            dev, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (target == mnt or target.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                best = (mnt, dev, fstype)
    except OSError:
        pass
    return {"mount": best[0], "device": best[1], "type": best[2]}


def _payload(i: int) -> dict[str, Any]:
    from .backlog import payload

    return payload("dur", i)


async def _open(path: Path, setting: str) -> Any:
    from bot.journal.storage import Storage

    storage = await Storage(f"sqlite:///{path}").open(serving=True)
    await storage.backlog()  # a first statement: the connection exists
    return storage


def _check(path: Path, setting: str) -> None:
    got = sqlite_sync.SEEN.get(os.path.realpath(path))
    if got != PRAGMA_VALUES[setting]:
        raise RuntimeError(f"PRAGMA synchronous read back {got} on {path}, wanted {setting}")


def _journal_mode(path: Path) -> str:
    import sqlite3

    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # a file not in install()'s list
    try:
        return str(con.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        con.close()


async def _cycle(storage: Any, i: int, owner: str) -> float:
    from bot.journal.storage import Submission

    t0 = time.perf_counter()
    sub = Submission.new(f"bench-durability-{i}", _payload(i), None)
    sub.owner, sub.lease_until = owner, time.time() + 30
    await storage.add_submission(sub)
    sub.maybe_created = True  # before the create call
    await storage.save_submission(sub)
    sub.ticket = {"id": f"t-{i}", "display_id": f"IT-{i}", "backend": "serval", "url": None}
    sub.steps_done.update({"create", "notify", "complete", "reply", "connect"})
    await storage.save_submission(sub)  # created; the person told
    sub.steps_done.add("followup")
    sub.status = "done"
    await storage.save_submission(sub, release=True)  # finished
    return time.perf_counter() - t0


async def storage_costs(directory: Path, cycles: int, rounds: int = 4) -> dict[str, Any]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {s: (directory / f"journal-{s.lower()}.db").resolve() for s in SETTINGS}
    sqlite_sync.install({str(p): s for s, p in paths.items()})
    stores = {s: await _open(paths[s], s) for s in SETTINGS}
    times: dict[str, list[float]] = {s: [] for s in SETTINGS}
    try:
        for s in SETTINGS:  # warm-up: first statements compile, the files grow
            for i in range(5):
                await _cycle(stores[s], -1 - i, "bench")
        per_round = max(1, cycles // rounds)
        done = 0
        r = 0
        while done < cycles:
            k = min(per_round, cycles - done)
            order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
            for s in order:
                for i in range(done, done + k):
                    times[s].append(await _cycle(stores[s], i, "bench"))
            done += k
            r += 1
        for s in SETTINGS:  # still the wanted value at the end (every pragma statement is read back)
            _check(paths[s], s)
        journal_mode = _journal_mode(paths["FULL"])
    finally:
        for st in stores.values():
            await st.close()
    out: dict[str, Any] = {"cycles": cycles, "writes_per_cycle": 4, "journal_mode": journal_mode,
                           "filesystem": filesystem(directory),
                           "synchronous_read_back": {s: sqlite_sync.SEEN.get(os.path.realpath(paths[s])) for s in SETTINGS}}
    for s in SETTINGS:
        cycle = summary(times[s])
        out[s] = {"cycle_ms": cycle, "mean_ms": cycle["mean"], "per_write_ms": cycle["mean"] / 4}
    full, normal = out["FULL"]["mean_ms"], out["NORMAL"]["mean_ms"]
    out["ratio"] = full / normal if normal else float("nan")
    out["extra_ms_per_submission"] = full - normal
    return out


# --- the harness side ---------------------------------------------------------------------------


async def run(h: "Harness") -> dict[str, Any]:
    cfg = h.cfg
    res: dict[str, Any] = {}
    if cfg.durability_cycles > 0:
        env = h._module_env()
        argv = [sys.executable, "-m", "bench.durability", "--cycles", str(cfg.durability_cycles),
                "--dir", str(h.workdir / "durability"), "--bot-dir", str(cfg.bot_dir)]
        proc = await asyncio.create_subprocess_exec(*argv, env=env, cwd=str(h.workdir),
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench.durability failed: {err.decode()[-2000:]}")
        res["storage"] = st = json.loads(out.decode().strip().splitlines()[-1])
        h.log(f"durability: {st['cycles']} submissions (insert + 3 updates) per setting on {st['filesystem']['type']}:"
              f" FULL {st['FULL']['mean_ms']:.2f} ms, NORMAL {st['NORMAL']['mean_ms']:.2f} ms per submission,"
              f" ratio {st['ratio']:.2f}")
    if cfg.durability_tickets > 0:
        runs = {}
        for setting in SETTINGS:
            name = f"bot-sync-{setting.lower()}"
            # Both through the wrapper (FULL too: the same code path, and the setting confirmed)
            prefix = [sys.executable, "-m", "bench.sqlite_sync", setting]
            bot = h.start_bot(name, prefix_argv=prefix, current=False)
            try:
                runs[setting] = r = await h.sustained([bot], cfg.durability_tickets, "d" + setting[0].lower())
            finally:
                bot.stop()
            r["synchronous_confirmed"] = _confirmed(bot.log_path, setting)
            h.log(f"durability: bot on synchronous={setting}: {r['tickets_per_s']:.0f} tickets/s"
                  f" ({r['tickets_per_s_steady']:.0f} steady), {r['cpu_s_per_1000']:.1f} CPU s/1000,"
                  f" ack p99 {r['ack_ms']['p99']:.1f} ms")
        res["tickets"] = runs
    return res


def _confirmed(log_path: Path, setting: str) -> bool:
    """The bot's log shows the value read back on its journal's connections, all the wanted one."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return False
    seen = re.findall(r"bench\.sqlite_sync: synchronous=(\d+)", text)
    return bool(seen) and all(int(v) == PRAGMA_VALUES[setting] for v in seen)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.durability")
    p.add_argument("--cycles", type=int, default=2000)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--bot-dir", type=Path, help="import the bot (bot.journal.storage) from this checkout")
    a = p.parse_args(argv)
    if a.bot_dir:
        sys.path.insert(0, str(a.bot_dir))
    print(json.dumps(asyncio.run(storage_costs(a.dir, a.cycles))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
