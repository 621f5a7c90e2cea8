"""The container and service files, checked without a container daemon (this machine has none).

- The Dockerfile copies only paths that exist and that .dockerignore lets into the build context,
  and everything `pip install .` needs; .env and databases never reach the context.
- Its install command and its start command work: the test builds the build context as Docker
  would (the COPY lines, filtered by .dockerignore) in a temporary folder, runs the Dockerfile's
  `pip install` line there in a new virtual environment (dependencies from the package registry,
  through the pip cache), then the CMD with `--help` and with no settings, which must end with the
  settings error rather than an ImportError.
- Its HEALTHCHECK command passes on a 200 from /healthz and fails on a 503 or no answer.
- compose.yaml and compose.replicas.yaml build from this Dockerfile and have health checks; the
  systemd unit can write where its database is; `make clean` leaves the bot's database alone.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
UNIT = ROOT / "deploy" / "ticket-bot.service"


# -- reading the Dockerfile --------------------------------------------------------------------------
def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if line.strip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            keyword, _, args = full.partition(" ")
            out.append((keyword.upper(), args.strip()))
    return out


def words(args: str) -> list[str]:
    """An instruction's arguments: the JSON (exec) form or shell-like words, without --flags."""
    parts = json.loads(args) if args.startswith("[") else shlex.split(args)
    return [p for p in parts if not p.startswith("--")]


DOCKER = instructions(DOCKERFILE.read_text())


def last(keyword: str) -> str:
    """The arguments of the last such instruction (the one that counts for CMD, USER, WORKDIR...)."""
    found = [args for kw, args in DOCKER if kw == keyword]
    assert found, f"the Dockerfile has no {keyword}"
    return found[-1]


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context."""
    out = []
    for keyword, args in DOCKER:
        if keyword in ("COPY", "ADD"):
            assert "--from" not in args, "a multi-stage COPY: teach this test about stages"
            parts = words(args)
            out.append((parts[:-1], parts[-1]))
    return out


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in DOCKER:
        if keyword == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def pip_install_commands() -> list[str]:
    return [args for keyword, args in DOCKER if keyword == "RUN" and "pip install" in args]


# -- .dockerignore, as Docker reads it: root-anchored patterns, ** for any depth, ! to re-include ------
def _regex(pattern: str) -> re.Pattern[str]:
    rx, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            rx, i = rx + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            rx, i = rx + ".*", i + 2
        else:
            rx += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(rx)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _regex(os.path.normpath(line.lstrip("!")).strip("/"))))
    return rules


RULES = dockerignore_rules()


def ignored(relative: str) -> bool:
    """Whether the path, or a folder it is in, is left out of the build context."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negate, rx in RULES:
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def stage_build_context(dest_root: Path) -> None:
    """Do the Dockerfile's COPY lines into dest_root (the WORKDIR), from the context .dockerignore leaves."""
    workdir = last("WORKDIR")

    def skip(directory: str, names: list[str]) -> set[str]:
        rel = Path(directory).relative_to(ROOT)
        return {n for n in names if ignored(str(rel / n))}

    for sources, dest in copies():
        target = dest_root / os.path.relpath(os.path.join(workdir, dest), workdir)
        for source in sources:
            src = ROOT / source
            if src.is_dir():  # a folder's contents go into the destination
                shutil.copytree(src, target, ignore=skip, dirs_exist_ok=True)
            elif dest.endswith("/") or len(sources) > 1:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


# -- static checks -----------------------------------------------------------------------------------------
def test_every_path_the_dockerfile_copies_exists_and_is_in_the_build_context():
    sources = [s for srcs, _ in copies() for s in srcs]
    assert sources
    assert [s for s in sources if not (ROOT / s).exists()] == []
    assert [s for s in sources if ignored(s.rstrip("/"))] == []


def test_secrets_and_data_stay_out_of_the_build_context():
    for path in (".env", ".env.production", "data/tickets.db", "tickets.db", ".venv/bin/python",
                 ".git/config", "bot/__pycache__/core.cpython-311.pyc", "bench/out/results.json"):
        assert ignored(path), path
    assert not ignored(".env.example")


def test_the_dockerfile_copies_what_the_package_build_needs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    needed = [project["project"]["readme"], *project["project"].get("license-files", [])]
    packages = setuptools["packages"]  # a list, or {"find": {"include": [...]}}
    if isinstance(packages, dict):
        packages = packages["find"]["include"]
    needed += sorted({p.split(".")[0].rstrip("*") for p in packages})  # the top-level folders
    needed += [m + ".py" for m in setuptools.get("py-modules", [])]
    copied = [s.rstrip("/") for srcs, _ in copies() for s in srcs]
    missing = [n for n in needed if not any(n == c or n.startswith(c + "/") for c in copied)]
    assert missing == []


def test_the_image_runs_as_a_user_with_the_database_on_a_volume():
    assert last("FROM").split()[0] == "python:3.11-slim"
    assert last("USER") not in ("root", "0", "")
    env = image_env()
    assert env["DATABASE_URL"] == "sqlite:////data/tickets.db"
    assert "/data" in words(last("VOLUME"))
    assert words(last("EXPOSE")) == [env["PORT"]] == ["3000"]
    assert words(last("CMD")) == ["python", "app.py"]
    [install] = pip_install_commands()
    assert re.search(r"pip install \.(\s|$)", install), "installs the package itself, without extras"


@pytest.mark.timeout(300)
def test_the_package_builds_without_setuptools_warnings(tmp_path):
    """A new folder of modules or data (bot/journal/migrations/versions, sandbox/static) must not bring back
    "Package ... is absent from the packages configuration"; nor an old-style license field."""
    stage_build_context(tmp_path / "app")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"),
                           str(tmp_path / "app")], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    warnings = [line.strip() for line in (done.stdout + done.stderr).splitlines()
                if re.search(r"[A-Z][A-Za-z]*Warning\b|^\s*warning:", line)]
    assert warnings == []


# -- the health check ---------------------------------------------------------------------------------------
class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    cmd = words(last("HEALTHCHECK").split(" CMD ", 1)[1])
    assert cmd[0] == "python", "slim has no curl: the check runs Python"
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin", "PORT": str(port)}
    return subprocess.run(cmd, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_passes_only_while_healthz_answers_200(health_server):
    assert "/healthz" in last("HEALTHCHECK")
    port = health_server.server_address[1]
    _Health.status = 200
    assert run_healthcheck(port) == 0
    _Health.status = 503
    try:
        assert run_healthcheck(port) != 0
    finally:
        _Health.status = 200
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    assert run_healthcheck(closed) != 0


# -- the install and start commands in a clean virtual environment ------------------------------------------
@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """(the WORKDIR with the build context copied in, the venv's bin) after the Dockerfile's pip install."""
    tmp = tmp_path_factory.mktemp("image")
    app_dir, venv = tmp / "app", tmp / "venv"
    stage_build_context(app_dir)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update({k: v for k, v in image_env().items() if k.startswith("PIP_")})
    env.pop("PIP_NO_CACHE_DIR", None)  # the image needs no cache; this test reuses the machine's
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for command in pip_install_commands():
        done = subprocess.run(["sh", "-c", command], cwd=app_dir, env=env, capture_output=True, text=True,
                              timeout=540)
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return app_dir, venv / "bin"


def start(built: tuple[Path, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    """The image's CMD as the container would run it, with only the image's environment."""
    app_dir, bin_dir = built
    env = {**image_env(), "PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": str(app_dir.parent)}
    env["DATABASE_URL"] = f"sqlite:///{app_dir.parent / 'data' / 'tickets.db'}"  # /data is not ours here
    return subprocess.run([*words(last("CMD")), *extra], cwd=app_dir, env=env, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.timeout(600)
def test_start_command_shows_help_in_the_installed_image(built):
    done = start(built, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


@pytest.mark.timeout(600)
def test_start_command_without_settings_names_them_instead_of_failing_to_import(built):
    done = start(built)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "ImportError" not in output and "ModuleNotFoundError" not in output
    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN" in done.stderr


@pytest.mark.timeout(600)
def test_the_image_installs_no_test_or_sandbox_tools(built):
    _, bin_dir = built
    listed = subprocess.run([str(bin_dir / "python"), "-m", "pip", "list", "--format=json"], capture_output=True,
                            text=True, timeout=60, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "slack-ticket-bot" in installed
    assert installed & {"pytest", "playwright", "py-spy", "jsonschema"} == set()


# -- compose ------------------------------------------------------------------------------------------------
def compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def check_bot_service(service: dict) -> None:
    build = service["build"]
    assert (ROOT / build["context"]).resolve() == ROOT.resolve()
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"
    assert service["env_file"] == ".env"
    port = service["environment"]["PORT"]
    assert [p.rsplit(":", 1)[-1] for p in service["ports"]] == [port] == words(last("EXPOSE"))
    check = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in check
    assert service["stop_signal"] == "SIGTERM"


def test_compose_runs_the_bot_from_the_dockerfile_with_its_database_on_a_volume():
    spec = compose("compose.yaml")
    bot = spec["services"]["bot"]
    check_bot_service(bot)
    assert bot["environment"]["DATABASE_URL"] == "sqlite:////data/tickets.db"
    volume, _, target = bot["volumes"][0].partition(":")
    assert target == "/data" and volume in spec["volumes"]


def test_compose_replicas_share_postgres_once_it_is_healthy():
    spec = compose("compose.replicas.yaml")
    bot, postgres = spec["services"]["bot"], spec["services"]["postgres"]
    check_bot_service(bot)
    assert bot["ports"] == ["3000-3001:3000"]  # one host port per replica
    assert bot["deploy"]["replicas"] == 2
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = urllib.parse.urlsplit(bot["environment"]["DATABASE_URL"])
    assert url.geturl() == "postgresql://tickets:tickets@postgres:5432/tickets"
    assert postgres["image"] == "postgres:16"
    env = postgres["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        url.username, url.password, url.path.lstrip("/"))
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert spec["name"] != compose("compose.yaml")["name"], "its own project: its own volumes"


# -- systemd ------------------------------------------------------------------------------------------------
def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_systemd_unit_stops_cleanly_and_writes_only_its_data_directory():
    unit = unit_settings()
    one = {k: v[-1] for k, v in unit.items()}
    assert one["User"] not in ("root", "0")
    assert (one["Restart"], one["KillSignal"], one["TimeoutStopSec"]) == ("on-failure", "SIGTERM", "15")
    assert (one["NoNewPrivileges"], one["ProtectSystem"]) == ("yes", "strict")
    assert "EnvironmentFile" in one and "WorkingDirectory" in one
    assert one["ExecStart"].endswith(" app.py")
    env = dict(e.partition("=")[::2] for e in unit["Environment"])
    db_dir = str(Path(env["DATABASE_URL"].removeprefix("sqlite:///")).parent)
    assert db_dir in one["ReadWritePaths"].split(), "ProtectSystem=strict: the database must be writable"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    text = re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", UNIT.read_text())  # no /opt here
    (tmp_path / UNIT.name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / UNIT.name)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# -- make clean ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_clean_keeps_the_bots_database(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path)
    for path in ("data/tickets.db", "data/tickets.db-wal", "data/demo/bot.db", ".venv/bin/python",
                 ".pytest_cache/x", "bot/__pycache__/core.pyc", "build/lib/app.py", "x.egg-info/PKG-INFO"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x")
    subprocess.run(["make", "clean"], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["Makefile", "data/tickets.db", "data/tickets.db-wal"]
