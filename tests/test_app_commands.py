"""`python app.py check | migrate | copy-db | --version | --help`, as an operator runs them: what they
print and their exit status. `check` runs against the Slack and Serval stand-ins, also beside a bot
serving from the same SQLite file."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

from sandbox.slack_socket import APP_TOKEN
from tests.conftest import eventually
from tests.test_reliability import BotProcess, serval_clients  # noqa: F401  (fixture)

ROOT = Path(__file__).parent.parent


def bot_env(tmp_path: Path, slack_url: str, serval_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_", "SOCIALBOARDS_", "REZOLVE_"))}
    env.update(
        SLACK_API_URL=slack_url, SERVAL_BASE_URL=serval_url, SERVAL_CLIENT_ID="test-client", SERVAL_TEAM_ID="team-it",
        SERVAL_SLACK_INTEGRATION_ID="integ-slack-1", DATABASE_URL=f"sqlite:///{tmp_path}/bot.db", **BotProcess.SECRETS,
    )
    env.update(extra)
    return env


async def app(*args: str, env: dict[str, str], cwd: Path = ROOT) -> tuple[int, str, str]:
    """Run `python app.py ARGS` without blocking the stand-ins' event loop; (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(sys.executable, str(ROOT / "app.py"), *args, cwd=cwd, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


# --- check -----------------------------------------------------------------------------------------


async def test_check_passes_with_one_line_per_check(tmp_path, slack, serval_clients):  # noqa: F811
    code, out, err = await app("check", env=bot_env(tmp_path, slack[1], serval_clients[1]))
    lines = out.splitlines()
    assert code == 0, out + err
    assert all(line[:2] in ("✓ ", "– ") for line in lines), out
    names = [line.split(":", 1)[0][2:] for line in lines]
    assert names[:3] == ["settings", "database", "routing file"]
    assert "Slack bot token (auth.test)" in names and "Serval token" in names and "Serval team" in names
    assert "– Slack app-level token: SLACK_APP_TOKEN is empty: the bot runs in HTTP mode" in lines
    for secret in BotProcess.SECRETS.values():
        assert secret not in out + err


async def test_check_names_what_is_refused_and_exits_non_zero(tmp_path, slack, serval_clients):  # noqa: F811
    slack[0].token = "xoxb-another-bot"  # Slack refuses the configured one
    serval_clients[0].clients["test-client"] = "another-secret"
    code, out, _ = await app("check", env=bot_env(tmp_path, slack[1], serval_clients[1], SLACK_APP_TOKEN=APP_TOKEN))
    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("✗ Slack bot token") and "SLACK_BOT_TOKEN" in line and "invalid_auth" in line for line in lines)
    assert any(line.startswith("✗ Slack app-level token") and "SLACK_APP_TOKEN" in line for line in lines)
    assert any(line.startswith("✗ Serval token") and "SERVAL_CLIENT_ID and SERVAL_CLIENT_SECRET" in line for line in lines)
    assert any(line.startswith("✓ database") for line in lines)  # the rest still ran


async def test_check_with_placeholder_settings_lists_every_one_and_exits_2(tmp_path):
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_", "DATABASE_"))}
    code, out, _ = await app("check", env=env, cwd=tmp_path)
    assert code == 2
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SERVAL_TEAM_ID"):
        assert any(line.startswith(f"✗ settings: {name} still holds the example value") for line in out.splitlines()), out


async def test_check_runs_beside_a_serving_bot_on_the_same_sqlite_file(tmp_path, slack, serval_clients):  # noqa: F811
    bot = BotProcess(tmp_path, slack[1], serval_clients[1])
    await bot.start()
    try:
        code, out, err = await app("check", env=bot_env(tmp_path, slack[1], serval_clients[1]))
        assert code == 0, out + err
        assert "✓ database: sqlite:///" in out
        await bot_still_serving(bot)
    finally:
        bot.stop()


async def bot_still_serving(bot: BotProcess) -> None:
    import httpx

    async with httpx.AsyncClient() as http:
        assert (await http.get(bot.url + "/readyz")).status_code == 200
    assert bot.proc is not None and bot.proc.poll() is None


async def test_check_never_exchanges_the_socialboards_refresh_token(tmp_path, slack, serval_clients, socialboards):  # noqa: F811
    state, url = socialboards
    env = bot_env(tmp_path, slack[1], serval_clients[1], SOCIALBOARDS_BASE_URL=url, SOCIALBOARDS_CLIENT_ID=state.client_id,
                  SOCIALBOARDS_REFRESH_TOKEN=state.refresh_token)
    before = len([r for r in state.requests if r["path"] == "/token"])
    code, out, err = await app("check", env=env)
    assert code == 0, out + err
    line = next(line for line in out.splitlines() if "Socialboards token" in line)
    assert line.startswith("– ") and "would rotate" in line
    assert len([r for r in state.requests if r["path"] == "/token"]) == before  # not exchanged


# --- migrate, copy-db ---------------------------------------------------------------------------------


async def test_migrate_needs_only_the_database_url_and_says_where_it_is(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path}/data/tickets.db"
    code, out, err = await app("migrate", env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"migrate: sqlite:///{tmp_path}/data/tickets.db is at revision ")
    with sqlite3.connect(tmp_path / "data" / "tickets.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"submissions", "links", "state", "alembic_version"} <= tables
    again = await app("migrate", env=env, cwd=tmp_path)
    assert again[0] == 0 and again[1] == out  # nothing more to do


async def test_migrate_names_a_malformed_database_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    env["DATABASE_URL"] = "mysql://x"
    code, _, err = await app("migrate", env=env, cwd=tmp_path)
    assert code == 2 and "DATABASE_URL must be sqlite:///" in err


async def test_copy_db_is_wired_to_bot_copydb(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    code, _, err = await app("copy-db", f"sqlite:///{tmp_path}/t.db", "mysql://x/y", env=env, cwd=tmp_path)
    assert code == 2 and err.startswith("copy-db: ")
    code, out, _ = await app("copy-db", "--help", env=env, cwd=tmp_path)
    assert code == 0 and "SQLITE_URL" in out and "POSTGRES_URL" in out


# --- --version, --help ------------------------------------------------------------------------------


async def test_version_and_help(tmp_path):
    import tomllib

    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    code, out, _ = await app("--version", env=env, cwd=tmp_path)
    assert code == 0 and out.strip() == f"slack-ticket-bot {expected}"
    code, out, _ = await app("--help", env=env, cwd=tmp_path)
    assert code == 0
    for word in (".env", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "DATABASE_URL", "LOG_FORMAT", "docs/configuration.md",
                 "check", "migrate", "copy-db"):
        assert word in out, word


async def test_check_uses_the_socialboards_access_token_the_bot_stored(tmp_path, slack, serval_clients, socialboards):  # noqa: F811
    state, url = socialboards
    extra = dict(SOCIALBOARDS_BASE_URL=url, SOCIALBOARDS_CLIENT_ID=state.client_id, SOCIALBOARDS_REFRESH_TOKEN=state.refresh_token)
    bot = BotProcess(tmp_path, slack[1], serval_clients[1], **extra)
    await bot.start()  # its start-up check exchanges the refresh token once, and stores both tokens
    try:
        await eventually(lambda: [r for r in state.requests if r["path"] == "/token"], timeout=10)
        exchanges = len([r for r in state.requests if r["path"] == "/token"])
        code, out, err = await app("check", env=bot_env(tmp_path, slack[1], serval_clients[1], **extra))
        assert code == 0, out + err
        line = next(line for line in out.splitlines() if "Socialboards token" in line)
        assert line.startswith("✓ ") and "the access token the bot stored works" in line
        assert len([r for r in state.requests if r["path"] == "/token"]) == exchanges  # nothing rotated
        await bot_still_serving(bot)
    finally:
        bot.stop()
