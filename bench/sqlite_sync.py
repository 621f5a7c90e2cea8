"""SQLite's `PRAGMA synchronous` set to another value than the bot's, below the bot (benchmark only).

The bot has no setting for it: bot/journal/storage.py sets synchronous=FULL on every SQLite connection it
opens. `install()` wraps `sqlite3.connect` (which aiosqlite, and so SQLAlchemy's aiosqlite driver,
calls in its thread): every new connection to a chosen database file (or to any) is of a
`sqlite3.Connection` subclass that sets the wanted value as soon as it is open and rewrites every
later `PRAGMA synchronous=...` statement (the Storage's own) to it, then reads the value back. The
value read back is kept in `SEEN` and, with `announce`, printed to stderr as
`bench.sqlite_sync: synchronous=<n> on <file>` for the harness to confirm. Nothing else changes, so
whatever the Storage does (SQLAlchemy's engine, aiosqlite directly), it runs on the wanted setting.

As a wrapper around the bot:

    python -m bench.sqlite_sync NORMAL /path/to/app.py --mode http
"""

from __future__ import annotations

import os
import re
import runpy
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

VALUES = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
_PRAGMA = re.compile(r"^\s*PRAGMA\s+(?:main\.)?synchronous\s*=\s*[\w']+\s*;?\s*$", re.IGNORECASE)
SEEN: dict[str, int] = {}  # database file (real path) -> the value last read back on a connection to it
_lock = threading.Lock()
_original_connect = sqlite3.connect


def install(wanted: dict[str, str] | str, *, announce: bool = False) -> None:
    """`wanted`: a setting for every file, or {database file: setting} (others untouched)."""

    def setting_for(database: Any) -> str | None:
        if isinstance(wanted, str):
            return wanted.upper()
        try:
            key = os.path.realpath(os.fspath(database))
        except TypeError:
            return None
        for path, value in wanted.items():
            if os.path.realpath(path) == key:
                return value.upper()
        return None

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        setting = setting_for(database)
        if setting is None or kwargs.get("factory") is not None:
            return _original_connect(database, *args, **kwargs)
        if setting not in VALUES:
            raise ValueError(f"PRAGMA synchronous has no value {setting!r}")
        conn = _original_connect(database, *args, factory=_Connection, **kwargs)
        conn._bench_setup(os.path.realpath(os.fspath(database)), setting, announce)  # type: ignore[attr-defined]
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]


class _Connection(sqlite3.Connection):
    _bench_file = ""
    _bench_setting = "FULL"
    _bench_announce = False

    def _bench_setup(self, file: str, setting: str, announce: bool) -> None:
        self._bench_file, self._bench_setting, self._bench_announce = file, setting, announce
        self._bench_apply()

    def _bench_apply(self) -> None:
        sqlite3.Connection.execute(self, f"PRAGMA synchronous={self._bench_setting}")
        got = sqlite3.Connection.execute(self, "PRAGMA synchronous").fetchone()[0]
        with _lock:
            SEEN[self._bench_file] = got
        if self._bench_announce:
            print(f"bench.sqlite_sync: synchronous={got} on {self._bench_file}", file=sys.stderr, flush=True)

    def _bench_sql(self, sql: Any) -> tuple[Any, bool]:
        if isinstance(sql, str) and _PRAGMA.match(sql):
            return f"PRAGMA synchronous={self._bench_setting}", True
        return sql, False

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or _Cursor)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        sql, pragma = self._bench_sql(sql)
        cursor = super().execute(sql, *args)
        if pragma:
            self._bench_apply()
        return cursor

    def executescript(self, script: str) -> sqlite3.Cursor:  # type: ignore[override]
        cursor = super().executescript(script)
        if re.search(r"PRAGMA\s+(?:main\.)?synchronous\s*=", script, re.IGNORECASE):
            self._bench_apply()
        return cursor


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
        conn = self.connection
        if isinstance(conn, _Connection):
            sql, pragma = conn._bench_sql(sql)
            out = super().execute(sql, *args)
            if pragma:
                conn._bench_apply()
            return out
        return super().execute(sql, *args)


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit("usage: python -m bench.sqlite_sync OFF|NORMAL|FULL|EXTRA /path/to/app.py [args]")
    setting, app = sys.argv[1].upper(), Path(sys.argv[2]).resolve()
    if setting not in VALUES:
        raise SystemExit(f"PRAGMA synchronous has no value {setting!r}")
    sys.argv = [str(app), *sys.argv[3:]]
    sys.path.insert(0, str(app.parent))  # the bot's checkout first, as `python app.py` has it
    install(setting, announce=True)
    runpy.run_path(str(app), run_name="__main__")


if __name__ == "__main__":
    main()
