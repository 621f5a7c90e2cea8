"""How the bot is served: `app.py` (the front door) reads the command line and the settings, and this
package does the rest — the Bolt app and the checks a Slack request passes before it (`bolt`), the
HTTP server (`http`), the Socket Mode connection (`socket_mode`), the process from its first log line
to its exit status (`process`), and the `check`, `migrate` and `copy-db` commands (`commands`).

It may import `handlers`, `bot` and `clients`; none of them imports it (tests/test_architecture.py)."""
