"""Alembic's environment for the bot's schema. The bot runs it programmatically: `bot.journal.storage.migrate`
(at start-up and `python app.py migrate`) opens the connection, takes the migration lock and an
outer transaction, and hands the connection over in `config.attributes["connection"]`; no
alembic.ini is needed at run time.

Migrations stay additive within a release (new tables, new nullable or defaulted columns, new
indexes) so that a replica of the previous version keeps working during a rolling deploy."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the bot's migrations with `python app.py migrate` (bot.journal.storage.migrate)")

context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
