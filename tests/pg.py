"""A throwaway PostgreSQL server for the tests: `initdb` and `pg_ctl` from Debian's `postgresql`
package, in a temp dir, listening on 127.0.0.1 on a free port, run by an unprivileged user when the
tests run as root (PostgreSQL refuses to run as root). Never a mock: the storage tests run against
this real server.

Without the binaries the PostgreSQL tests are skipped, with the reason; under CI=true they fail
instead, so a CI machine that lost the package cannot pass by skipping them."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

USER = "bot"  # the database superuser the tests connect as (a PostgreSQL role, not a system user)
RUN_AS = "nobody"  # the system user the server runs as when the tests run as root


class Unavailable(Exception):
    """PostgreSQL cannot be started here; the message says why."""


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    found = []
    for path in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(path).parent.name
        if os.access(f"{path}/initdb", os.X_OK) and os.access(f"{path}/pg_ctl", os.X_OK):
            found.append((int(version) if version.isdigit() else 0, Path(path)))
    return max(found)[1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bin: Path
    root: Path  # temp dir holding the cluster, its socket and its log
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    _uid: int | None = None  # run as this user (when we are root)
    _gid: int | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        """The plain form DATABASE_URL takes: postgresql://user:pass@host:port/db."""
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if self._uid is not None:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120, cwd=self.root)

    def start(self) -> None:
        if os.geteuid() == 0:
            try:
                entry = pwd.getpwnam(RUN_AS)
            except KeyError:
                raise Unavailable(f"running as root and there is no user {RUN_AS!r} to run PostgreSQL as") from None
            if not shutil.which("runuser"):
                raise Unavailable("running as root and runuser(1) is missing")
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
            os.chown(self.root, self._uid, self._gid)
        os.chmod(self.root, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self._uid is not None:
            os.chown(pwfile, self._uid, self._gid)  # type: ignore[arg-type]
        try:
            self._run(
                self.bin / "initdb", "-D", self.data, "-U", USER, f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8",
                "--no-sync",
            )
        except subprocess.CalledProcessError as exc:
            raise Unavailable(f"initdb failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
        finally:
            pwfile.unlink(missing_ok=True)
        last = ""
        for _ in range(5):  # the free port may be taken between choosing it and binding it
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.root}'"
                " -c fsync=off -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
            )
            done = self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60",
                             "-o", options, "start", check=False)
            if done.returncode == 0:
                return
            last = (self.log.read_text() if self.log.exists() else "") or done.stderr
        raise Unavailable(f"pg_ctl start failed: {last.strip()[-2000:]}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def create_database(self) -> str:
        """A new, empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _psql(self, sql: str) -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        done = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", USER, "-d", "postgres", "-c", sql],
            capture_output=True, text=True, env=env, timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr.strip()}")
        return done.stdout


def start_server() -> PostgresServer:
    """Start a throwaway cluster; raises Unavailable (with the reason) when it cannot be."""
    path = bin_dir()
    if path is None:
        raise Unavailable(
            "PostgreSQL binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        )
    # As root the server runs as another user, who must reach the folder: /tmp, whatever TMPDIR is.
    root = Path(tempfile.mkdtemp(prefix="bot-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    server = PostgresServer(path, root)
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def server_or_skip() -> PostgresServer:
    """start_server() for a test fixture: without PostgreSQL the test is skipped with the reason,
    except under CI=true, where it fails."""
    import pytest

    try:
        return start_server()
    except Unavailable as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is required under CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL tests need a local server: {exc}")


def stop_server(server: PostgresServer) -> None:
    server.stop()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            shutil.rmtree(server.root)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
