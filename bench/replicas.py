"""Phase "postgres" (issue 12): the bot on PostgreSQL beside SQLite, with one and with two replicas.

Rows, each a fresh database and fresh bot process(es), the same sustained run as the "tickets"
phase (`Harness.sustained`: a warm-up, then `--pg-tickets` submissions over `--ticket-concurrency`
connections with at most `--ticket-window` unfinished):

* SQLite, 1 replica: the journal as deployed (WAL, synchronous=FULL, set by bot/journal/storage.py);
* PostgreSQL, 1 replica;
* PostgreSQL, 2 replicas: two bot processes on the same database, requests split round robin
  (request i to replica i mod 2), as a load balancer would; each works the journal by lease.

The PostgreSQL server is a throwaway cluster made with `tests/pg.py` (initdb + pg_ctl in a temp
dir, 127.0.0.1, a free port; as `nobody` when run as root), then restarted durable: fsync=on,
synchronous_commit=on, full_page_writes=on (the test helper runs it with all three off); the values
are read back with SHOW and reported. Without PostgreSQL binaries (/usr/lib/postgresql/*/bin) the
phase is skipped with a printed note.

CPU per 1,000 tickets is the bot processes' (all replicas); the PostgreSQL server's own CPU (the
postmaster and its backends, from /proc) is reported beside it: SQLite's work is inside the bot.
Target: one replica on PostgreSQL ≥ 80% of SQLite's tickets/s; the two-replica row has no target.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .procs import CLK_TCK

if TYPE_CHECKING:
    from .runner import Harness

DURABLE = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
ROWS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2))


PG_HELPER = Path(__file__).resolve().parent.parent / "tests" / "pg.py"


def pg_helper() -> ModuleType:
    """tests/pg.py, loaded by its path (the benchmark does not need the tests on sys.path)."""
    name = "bench_tests_pg"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, PG_HELPER)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PG_HELPER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2:].split()


def server_cpu_seconds(postmaster: int) -> float:
    """CPU seconds of a PostgreSQL server: the postmaster (with its reaped children: cutime,
    cstime) and its live children (backends, checkpointer, WAL writer, ...)."""
    fields = _stat(postmaster)
    total = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            f = _stat(int(entry.name))
        except (OSError, ValueError):
            continue
        if f[1] == str(postmaster):  # ppid
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def postmaster_pid(server: Any) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def make_durable(server: Any) -> dict[str, str]:
    """Restart the test helper's server with fsync, synchronous_commit and full_page_writes on."""
    options = (
        f"-c listen_addresses=127.0.0.1 -p {server.port} -c unix_socket_directories='{server.root}'"
        " -c fsync=on -c synchronous_commit=on -c full_page_writes=on -c max_connections=200"
    )
    done = server._run(server.bin / "pg_ctl", "-D", server.data, "-l", server.log, "-w", "-t", "60",
                       "-m", "fast", "-o", options, "restart", check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pg_ctl restart failed: {done.stderr.strip()[-1000:]}")
    shown = {}
    for name in DURABLE:
        shown[name] = server._psql(f"SHOW {name}").strip()
    if shown != DURABLE:
        raise RuntimeError(f"PostgreSQL is not durable after the restart: {shown}")
    shown["server_version"] = server._psql("SHOW server_version").strip()
    shown["shared_buffers"] = server._psql("SHOW shared_buffers").strip()
    shown["wal_sync_method"] = server._psql("SHOW wal_sync_method").strip()
    return shown


async def run(h: "Harness") -> dict[str, Any]:
    cfg = h.cfg
    res: dict[str, Any] = {"tickets": cfg.pg_tickets, "rows": [], "skipped": None}
    try:
        pg = pg_helper()
    except (ImportError, OSError) as exc:
        res["skipped"] = f"tests/pg.py (the PostgreSQL test helper) cannot be imported: {exc}"
        h.log(f"postgres: skipped: {res['skipped']}")
        return res
    if pg.bin_dir() is None:
        res["skipped"] = "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        h.log(f"postgres: skipped: {res['skipped']}")
        return res
    try:
        server = await asyncio.to_thread(pg.start_server)
    except pg.Unavailable as exc:
        res["skipped"] = f"PostgreSQL could not be started: {exc}"
        h.log(f"postgres: skipped: {res['skipped']}")
        return res
    try:
        res["server"] = await asyncio.to_thread(make_durable, server)
        h.log(f"postgres: PostgreSQL {res['server']['server_version']} on 127.0.0.1:{server.port},"
              f" fsync={res['server']['fsync']} synchronous_commit={res['server']['synchronous_commit']}")
        postmaster = postmaster_pid(server)
        for engine, replicas in ROWS:
            if engine == "sqlite":
                url = f"sqlite:///{h.workdir}/bot-rows-sqlite.db"
            else:
                url = await asyncio.to_thread(server.create_database)
            name = f"bot-{engine[:2]}{replicas}"
            bots = []
            try:
                for r in range(replicas):  # started together: their migrations meet at PostgreSQL's lock
                    bots.append(h.start_bot(f"{name}{'ab'[r]}", database_url=url, current=False, wait=False))
                for bot in bots:
                    h.ready(bot)
                pg0 = server_cpu_seconds(postmaster)
                row = await h.sustained(bots, cfg.pg_tickets, f"{engine[:2]}{replicas}")
                row["database_cpu_s"] = server_cpu_seconds(postmaster) - pg0 if engine == "postgresql" else 0.0
            finally:
                for bot in bots:
                    bot.stop()
            created = max(1, row["tickets_created"])
            row.update(engine=engine, replicas=replicas,
                       database_cpu_s_per_1000=row["database_cpu_s"] / created * 1000,
                       total_cpu_s_per_1000=(row["cpu_s"] + row["database_cpu_s"]) / created * 1000)
            res["rows"].append(row)
            h.log(f"postgres: {engine:10} x{replicas}: {row['tickets_per_s']:.0f} tickets/s"
                  f" ({row['tickets_per_s_steady']:.0f} steady), ack p99 {row['ack_ms']['p99']:.1f} ms,"
                  f" bot CPU {row['cpu_s_per_1000']:.1f} s/1000, database server {row['database_cpu_s_per_1000']:.1f} s/1000,"
                  f" tickets {row['tickets_created']}/{row['tickets']}")
    finally:
        await asyncio.to_thread(pg.stop_server, server)
    return res
