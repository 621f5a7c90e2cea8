"""The journal: every submission, thread link, person, route and Slack event id the bot keeps, on
SQLite or PostgreSQL (`storage`), its schema's history (`migrations`, Alembic) and `copydb`."""
