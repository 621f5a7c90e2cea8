"""The front door: parse the command line, read the settings, then serve Slack over HTTP or Socket Mode
or run a command. The work is done in server/ (the process, the HTTP server, Socket Mode, the commands).

    python app.py                       # Socket Mode when SLACK_APP_TOKEN is set, else HTTP
    python app.py --mode http           # POST /slack/events on HOST:PORT
    python app.py --mode socket         # a WebSocket to Slack; HOST:PORT serves health and metrics only
    python app.py check                 # the start-up checks, one line each: ✓ or ✗ with the reason
    python app.py migrate               # bring DATABASE_URL's schema up to date
    python app.py copy-db SQLITE_URL POSTGRES_URL
    python app.py --version

Start-up: settings with placeholder or malformed values stop it (exit 2, every problem named at
once); then Slack's `auth.test` and each ticket system's token: refused credentials stop it (exit 2,
naming them), an unreachable system is reported in /healthz and the bot starts anyway.

Stop: SIGINT or SIGTERM, in every state (starting, connecting, connected, reconnecting). /readyz
answers 503 at once, requests in flight and running submissions get a few seconds to finish, leases
are handed back; the process exits within 5 s when idle and never later than 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap

from bot.settings import Settings, SettingsError, load_settings
from server.commands import check_command, copy_db_command, migrate_command
from server.process import EXIT_CONFIG, run, setup_logging, version

log = logging.getLogger("app")


def setting_names() -> list[str]:
    return [name.upper() for name in Settings.model_fields]


def parser() -> argparse.ArgumentParser:
    names = textwrap.fill(", ".join(setting_names()), width=92, initial_indent="  ", subsequent_indent="  ")
    epilog = f"""\
settings:
  Read from environment variables and from a .env file in the working directory
  (cp .env.example .env); an environment variable wins over .env.
  Required: SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, and the default ticket system's
  (TICKET_BACKEND=serval: SERVAL_TEAM_ID, SERVAL_SLACK_INTEGRATION_ID, and SERVAL_BEARER_TOKEN
  or SERVAL_CLIENT_ID with SERVAL_CLIENT_SECRET). SLACK_APP_TOKEN set: Socket Mode; empty: HTTP.
  Every setting:
{names}
  Each is described in docs/configuration.md; health, signals and logs in docs/operations.md.

exit status: 0 stopped cleanly; 2 a configuration problem (settings, refused credentials,
  the port in use): fix it, restarting will not help; 1 anything else.
"""
    p = argparse.ArgumentParser(
        prog="python app.py",
        description="Slack help-desk ticket bot: serves Slack (the default), or runs one of the commands.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"slack-ticket-bot {version()}")
    p.add_argument("--mode", choices=["auto", "socket", "http"], default="auto",
                   help="auto (default): Socket Mode when SLACK_APP_TOKEN is set, else HTTP")
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("check", help="run the start-up checks, one line each (✓ or ✗); safe beside a running bot",
                        description="Run the start-up checks and print one line per check: ✓, ✗ with the reason, or – "
                        "when a check was not done. Exit 0 when none failed, 1 when one did, 2 for invalid settings. "
                        "Safe beside a running bot: nothing it relies on changes (no token is rotated).")
    commands.add_parser("migrate", help="bring the schema of DATABASE_URL up to date (needs only DATABASE_URL)",
                        description="Create or upgrade the database schema of DATABASE_URL; the bot also does this at "
                        "start-up. Safe beside running replicas: migrations are additive and run under a lock.")
    copy = commands.add_parser("copy-db", help="copy a SQLite database into an empty PostgreSQL database",
                               description="Copy the bot's SQLite database into an empty PostgreSQL database, in one "
                               "transaction. Stop the bot first.")
    copy.add_argument("source", metavar="SQLITE_URL", help="sqlite:///path/to/tickets.db")
    copy.add_argument("target", metavar="POSTGRES_URL", help="postgresql://user:password@host:5432/db (empty)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "migrate":
        return migrate_command()
    if args.command == "copy-db":
        return copy_db_command(args.source, args.target)
    if args.command == "check":
        return check_command()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    mode = args.mode
    if mode == "auto":
        mode = "socket" if settings.slack_app_token else "http"
    if mode == "socket" and not settings.slack_app_token:
        print("Configuration error: SLACK_APP_TOKEN is not set (needed for --mode socket)", file=sys.stderr)
        return EXIT_CONFIG
    handler = setup_logging(settings)
    if mode == "socket":
        log.info("slack-ticket-bot %s starting in Socket Mode: Slack's requests come over a WebSocket; "
                 "HTTP on %s:%s serves only /healthz, /readyz and /metrics", version(), settings.host, settings.port)
    else:
        log.info("slack-ticket-bot %s starting in HTTP mode: Slack sends its requests to POST /slack/events "
                 "on %s:%s", version(), settings.host, settings.port)
    redact = getattr(handler.formatter, "redact", lambda text: text)
    return asyncio.run(run(settings, mode, redact=redact))


if __name__ == "__main__":
    sys.exit(main())
