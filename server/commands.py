"""The commands beside serving: `python app.py check` (the start-up checks, one line each), `migrate`
(DATABASE_URL's schema up to date) and `copy-db` (SQLite into an empty PostgreSQL). Each returns the
exit status."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bot.ops import checks
from bot.settings import SettingsError, load_settings
from server.process import EXIT_CONFIG


def check_command() -> int:
    """Exit 0 when every check passed, 1 when one failed, 2 when the settings themselves are wrong."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"✗ settings: {problem}")
        return EXIT_CONFIG
    print(f"✓ settings: read from the environment{' and .env' if Path('.env').exists() else ''}; "
          f"mode {'Socket Mode' if settings.slack_app_token else 'HTTP'}, ticket system {settings.ticket_backend}")
    from bot.ops.logs import formatter as make_formatter

    redactor = make_formatter("text", settings.secrets())
    results = asyncio.run(checks.run_all(settings))
    for result in results:
        print(redactor.redact(result.line()))
    return 1 if any(r.ok is False for r in results) else 0


def migrate_command() -> int:
    from sqlalchemy.engine import make_url

    from bot.settings import ensure_private_dir, load_database_url
    from bot.journal.storage import migrate

    try:
        url = load_database_url()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        if url.startswith("sqlite:///"):
            ensure_private_dir(url.removeprefix("sqlite:///"))
        revision = asyncio.run(migrate(url))
    except Exception as exc:
        print(f"migrate: {shown}: nothing changed: {type(exc).__name__}: {exc}".replace(url, shown), file=sys.stderr)
        return 1
    print(f"migrate: {shown} is at revision {revision}, the newest")
    return 0


def copy_db_command(source: str, target: str) -> int:
    from bot.journal.copydb import main as copydb

    return copydb([source, target])
