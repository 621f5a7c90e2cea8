"""Start-up settings: a missing or malformed setting stops start-up with one message naming it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import SettingsError, load_settings

ROOT = Path(__file__).parent.parent
GOOD = {
    "SLACK_BOT_TOKEN": "xoxb-1-2-abc",
    "SLACK_SIGNING_SECRET": "s3cret-signing",
    "SERVAL_BEARER_TOKEN": "serval-token-xyz",
    "SERVAL_TEAM_ID": "team-it",
    "SERVAL_SLACK_INTEGRATION_ID": "integ-1",
}


@pytest.fixture
def env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith(("SLACK_", "SERVAL_")) or key in ("DATABASE_URL", "PORT", "HOST"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def error_for(env, **changes: str | None) -> str:
    for key, value in changes.items():
        if value is None:
            env.delenv(key, raising=False)
        else:
            env.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    return str(info.value)


def test_good_settings_load(env):
    s = load_settings()
    assert s.serval_team_id == "team-it" and s.port == 3000
    assert s.database_url == "sqlite:///./data/tickets.db"


def test_missing_bot_token_is_named(env):
    assert error_for(env, SLACK_BOT_TOKEN=None) == "Configuration error: SLACK_BOT_TOKEN is not set"


def test_malformed_values_are_named(env):
    assert "SLACK_BOT_TOKEN must be a bot token starting with xoxb-" in error_for(env, SLACK_BOT_TOKEN="xoxp-user")
    assert "SLACK_APP_TOKEN must be an app-level token" in error_for(env, SLACK_APP_TOKEN="nope")
    assert "SERVAL_BASE_URL must be an http(s) URL" in error_for(env, SERVAL_BASE_URL="public.api.serval.com")
    assert "PORT" in error_for(env, PORT="eighty")
    assert "DATABASE_URL must be sqlite:///path/to/file.db" in error_for(env, DATABASE_URL="postgres://x")
    assert "DATABASE_URL must be sqlite:///path/to/file.db" in error_for(env, DATABASE_URL="mysql://u:p@h/db")


def test_serval_credentials_are_required(env):
    message = error_for(env, SERVAL_BEARER_TOKEN=None)
    assert "SERVAL_BEARER_TOKEN, or SERVAL_CLIENT_ID and SERVAL_CLIENT_SECRET" in message
    env.setenv("SERVAL_CLIENT_ID", "cid")
    env.setenv("SERVAL_CLIENT_SECRET", "csecret")
    assert load_settings().serval_client_id == "cid"


def test_settings_never_print_secrets(env):
    shown = repr(load_settings()) + str(load_settings())
    for secret in ("xoxb-1-2-abc", "s3cret-signing", "serval-token-xyz"):
        assert secret not in shown


def test_app_refuses_to_start_with_one_clear_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    env.update(GOOD)
    del env["SERVAL_TEAM_ID"]
    r = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "Configuration error: SERVAL_TEAM_ID must be set for the Serval back end"
    assert "s3cret-signing" not in r.stderr


# --- every setting documented -----------------------------------------------------------------


def setting_names() -> set[str]:
    from bot.settings import Settings

    return {name.upper() for name in Settings.model_fields}


def test_every_setting_is_documented_in_the_configuration_page():
    """docs/configuration.md has one table row per setting, and no row for a setting that is gone."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, flags=re.MULTILINE)
    assert sorted(setting_names() - set(rows)) == [], "settings without a row in docs/configuration.md"
    assert sorted(set(rows) - setting_names()) == [], "rows in docs/configuration.md for no setting"
    assert sorted(name for name in set(rows) if rows.count(name) > 1) == []


def test_every_setting_is_in_the_env_example():
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, flags=re.MULTILINE))
    assert sorted(setting_names() - listed) == [], "settings missing from .env.example"
    assert sorted(listed - setting_names()) == [], "lines in .env.example for no setting"


def required_settings(env) -> set[str]:
    """What start-up asks for with the default ticket system: each setting GOOD cannot do without,
    and every setting the error then names (e.g. the alternative to a missing token)."""
    required = set()
    for key, value in GOOD.items():
        env.delenv(key)
        try:
            load_settings()
        except SettingsError as exc:
            required.add(key)
            required |= {name for name in setting_names() if re.search(rf"\b{name}\b", str(exc))}
        env.setenv(key, value)
    return required


def test_the_readme_lists_the_required_settings(env):
    required = required_settings(env)
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SERVAL_TEAM_ID"} <= required
    readme = (ROOT / "README.md").read_text()
    assert sorted(name for name in required if f"`{name}`" not in readme) == []
    assert "docs/configuration.md" in readme  # where the others are
