"""From SQLite to PostgreSQL: copy the bot's SQLite database into an empty PostgreSQL database, so a
team that started with one process can run several replicas without losing its thread links.

    python -m bot.journal.copydb sqlite:///./data/tickets.db postgresql://user:password@host:5432/db

Stop the bot first: the copy refuses a SQLite file a bot is serving from (what it journaled after
the copy would be lost). Both databases are brought to the newest schema first (the SQLite file as a
start-up would); the PostgreSQL database must hold no rows, and the copy is one transaction there:
all or nothing. Copied: thread links, channel routes, people, identities, stored state (e.g. the
rotating Socialboards refresh token), submissions (pending ones carry on from their last recorded
step on whichever replica claims them first: their old leases are dropped), Slack event ids, and the
Slack installs by OAuth with their tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from .storage import TABLES, DatabaseInUse, _lock_serving, database_url, migrate, sqlite_file, submissions

BATCH = 500  # rows per INSERT


class CopyRefused(Exception):
    """The copy was not started; the message says why and what to do."""


def _shown(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


async def copy_db(source: str, target: str) -> dict[str, int]:
    """Copy every table of the SQLite database `source` into the empty PostgreSQL database `target`
    (DATABASE_URL forms). Returns the rows copied, by table. Raises CopyRefused."""
    src, dst = database_url(source), database_url(target)
    path = sqlite_file(src)
    if path is None:
        raise CopyRefused(f"the source must be a SQLite database file (sqlite:///path/to/file.db), not {_shown(src)}")
    if dst.get_backend_name() != "postgresql":
        raise CopyRefused(f"the target must be a PostgreSQL database (postgresql://...), not {_shown(dst)}")
    if not os.path.isfile(path):
        raise CopyRefused(f"no SQLite database at {path}")
    try:
        lock = _lock_serving(path)  # no bot may journal into the file while it is copied
    except DatabaseInUse:
        raise CopyRefused(
            f"a bot process is serving from {path}: stop it first, or what it journals after the copy is lost"
        ) from None
    try:
        await migrate(src)
        await migrate(dst)
        rows = await _read_all(src)
        return await _write_all(dst, rows)
    finally:
        os.close(lock)


async def _read_all(url: sa.URL) -> dict[str, list[dict[str, Any]]]:
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:  # one snapshot of every table
            out = {}
            for table in TABLES:
                order = list(table.primary_key.columns)
                result = await conn.execute(sa.select(table).order_by(*order))
                out[table.name] = [dict(row) for row in result.mappings()]
    finally:
        await engine.dispose()
    for row in out[submissions.name]:
        row["owner"], row["lease_until"] = None, 0.0  # the old process's leases mean nothing here
    return out


async def _write_all(url: sa.URL, rows: dict[str, list[dict[str, Any]]]) -> dict[str, int]:
    engine = create_async_engine(url, poolclass=sa.pool.NullPool)
    try:
        async with engine.begin() as conn:
            # Held until the copy commits: no replica writes in between the check and the copy.
            names = ", ".join(table.name for table in TABLES)
            await conn.execute(sa.text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
            held = {}
            for table in TABLES:
                n = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
                if n:
                    held[table.name] = n
            if held:
                listed = ", ".join(f"{name} ({n} rows)" for name, n in held.items())
                raise CopyRefused(f"the PostgreSQL database {_shown(url)} is not empty: {listed}. Copy into a new, empty database.")
            copied = {}
            for table in TABLES:
                batch = rows[table.name]
                for start in range(0, len(batch), BATCH):
                    await conn.execute(sa.insert(table), batch[start : start + BATCH])
                copied[table.name] = (await conn.execute(sa.select(sa.func.count()).select_from(table))).scalar_one()
                if copied[table.name] != len(batch):
                    raise RuntimeError(f"{table.name}: {len(batch)} rows read, {copied[table.name]} written")
                if "id" in table.c and table.c.id.autoincrement is True:  # slack_sdk's tables: numbered rows
                    # rows were copied with their numbers: the next one is numbered after them
                    await conn.execute(sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), COALESCE(MAX(id), 0) + 1, false)"
                        f" FROM {table.name}"))
    finally:
        await engine.dispose()
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.journal.copydb",
        description="Copy the bot's SQLite database into an empty PostgreSQL database (stop the bot first).",
    )
    parser.add_argument("source", help="sqlite:///path/to/tickets.db")
    parser.add_argument("target", help="postgresql://user:password@host:5432/db (empty)")
    args = parser.parse_args(argv)
    try:
        copied = asyncio.run(copy_db(args.source, args.target))
    except (CopyRefused, ValueError) as exc:
        print(f"copy-db: {exc}", file=sys.stderr)
        return 2
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        print(f"copy-db: nothing copied: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("copied " + ", ".join(f"{name}: {n}" for name, n in copied.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
