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


# --- placeholders and malformed values, every problem at once -------------------------------------


def test_the_example_file_as_is_is_refused_naming_every_placeholder(env, tmp_path):
    for key in GOOD:
        env.delenv(key)
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "SERVAL_CLIENT_ID", "SERVAL_CLIENT_SECRET",
                 "SERVAL_TEAM_ID", "SERVAL_SLACK_INTEGRATION_ID"):
        assert f"{name} still holds the example value" in message, name
    assert len(info.value.problems) == 7


@pytest.mark.parametrize("value", ["xoxb-...", "...", "xoxb-replace-me", "<your bot token>", "xoxb-1234-…"])
def test_placeholder_tokens_are_refused(env, value):
    message = error_for(env, SLACK_BOT_TOKEN=value)
    assert "SLACK_BOT_TOKEN" in message and ("placeholder" in message or "example value" in message)
    assert value not in message or value in ("xoxb-...", "...", "xoxb-replace-me")  # only the example's own values shown


def test_every_problem_is_listed_at_once_including_what_the_ticket_system_needs(env):
    env.setenv("SLACK_BOT_TOKEN", "xoxp-a-user-token")
    env.setenv("SLACK_APP_TOKEN", "not-an-app-token")
    env.setenv("SERVAL_BASE_URL", "https://")
    env.setenv("SLACK_API_URL", "http://[::1")
    env.delenv("SERVAL_TEAM_ID")
    env.setenv("SERVAL_SLACK_INTEGRATION_ID", "replace-me")
    with pytest.raises(SettingsError) as info:
        load_settings()
    problems = info.value.problems
    assert len(problems) == 6, problems
    message = str(info.value)
    assert message.startswith("Configuration error: 6 problems")
    for expected in (
        "SLACK_BOT_TOKEN must be a bot token starting with xoxb-",
        "SLACK_APP_TOKEN must be an app-level token starting with xapp-",
        "SERVAL_BASE_URL must be an http(s) URL with a host name",
        "SLACK_API_URL must be an http(s) URL; it does not parse",
        "SERVAL_SLACK_INTEGRATION_ID still holds the example value 'replace-me'",
        "SERVAL_TEAM_ID must be set for the Serval back end",  # the check across fields ran too
    ):
        assert any(p.startswith(expected) for p in problems), expected


def test_app_lists_every_problem_at_once_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SERVAL_"))}
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    r = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("Configuration error: 7 problems") and len(lines) == 8
    assert all(line.startswith("  - ") for line in lines[1:])


def test_log_format_is_text_or_json(env):
    assert load_settings().log_format == "text"
    env.setenv("LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    assert "LOG_FORMAT" in error_for(env, LOG_FORMAT="yaml")


@pytest.mark.parametrize("value", ["notaport", "70000", "-1", "3.5"])
def test_a_port_that_is_no_port_number_is_one_clear_line(env, value):
    assert error_for(env, PORT=value) == f"Configuration error: PORT must be a port number from 0 to 65535 (got '{value}')"


def test_number_settings_say_what_they_expect(env):
    assert error_for(env, MAX_TICKETS_IN_FLIGHT="0") == (
        "Configuration error: MAX_TICKETS_IN_FLIGHT must be a whole number of at least 1 (got '0')")
    assert error_for(env, MAX_TICKETS_IN_FLIGHT=None, RETRY_BASE_SECONDS="soon") == (
        "Configuration error: RETRY_BASE_SECONDS must be a number greater than 0 (got 'soon')")
