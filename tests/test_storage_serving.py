"""One serving process per SQLite file: a second one is refused at start-up, with a message naming
the file and pointing to PostgreSQL; commands that do not serve (check, migrate, a backup) keep
working beside it. PostgreSQL takes any number of replicas."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.core import Bot
from bot.settings import SettingsError
from bot.journal.storage import DatabaseInUse, Storage, migrate, schema_revision

ROOT = Path(__file__).resolve().parent.parent

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    from bot.journal.storage import Storage

    async def main():
        s = await Storage(sys.argv[1]).open(serving=True)
        print("serving", flush=True)
        await asyncio.sleep(120)

    asyncio.run(main())
    """
)


async def test_a_second_serving_open_on_one_file_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/tickets.db"
    first = await Storage(url).open(serving=True)
    try:
        with pytest.raises(DatabaseInUse) as refused:
            await Storage(url).open(serving=True)
        message = str(refused.value)
        assert f"{tmp_path}/tickets.db" in message and "PostgreSQL" in message and "postgresql://" in message
        assert isinstance(refused.value, SettingsError)  # app.py prints it and exits 2, no traceback
        # Not serving: a check, a migration, a backup.
        checker = await Storage(url).open()
        assert await checker.ping()
        await checker.close()
        assert await migrate(url) == await schema_revision(url)
        with sqlite3.connect(tmp_path / "tickets.db") as db, sqlite3.connect(tmp_path / "backup.db") as backup:
            db.backup(backup)
        assert await first.ping()
    finally:
        await first.close()
    again = await Storage(url).open(serving=True)  # released by close
    await again.close()


async def test_a_second_serving_process_is_refused_until_the_first_is_gone(tmp_path):
    url = f"sqlite:///{tmp_path}/tickets.db"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "serving"
        with pytest.raises(DatabaseInUse, match=rf"process {proc.pid}\) is already serving from the SQLite database"):
            await Storage(url).open(serving=True)
        s = await Storage(url).open()  # not serving: fine beside it
        await s.set_state("k", "v")
        await s.close()
    finally:
        proc.send_signal(signal.SIGKILL)  # a crash: the kernel lets go of the lock
        proc.wait(10)
    s = await Storage(url).open(serving=True)
    try:
        assert await s.get_state("k") == "v"
    finally:
        await s.close()
    assert oct(os.stat(f"{tmp_path}/tickets.db.lock").st_mode & 0o777) == "0o600"


async def test_the_bot_takes_the_lock_when_it_opens(settings):
    first = await Bot.open(settings)
    try:
        with pytest.raises(DatabaseInUse, match="PostgreSQL"):
            await Bot.open(settings)
    finally:
        await first.close()


async def test_postgresql_takes_several_serving_replicas(pg_url):
    replicas = [await Storage(pg_url).open(serving=True) for _ in range(2)]
    try:
        assert [await r.ping() for r in replicas] == [True, True]
    finally:
        for r in replicas:
            await r.close()
