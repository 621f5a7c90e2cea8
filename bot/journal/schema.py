"""The schema as the queries see it; its history is `bot/journal/migrations` (Alembic)."""

from __future__ import annotations

import sqlalchemy as sa
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy.dialects import sqlite as sqlite_dialect

metadata = sa.MetaData()
_REAL = sa.Double().with_variant(sqlite_dialect.REAL(), "sqlite")

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
    sa.Column("thread_key", sa.Text, unique=True),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),  # pending | done | failed
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("steps_done", sa.Text, nullable=False, server_default=""),
    sa.Column("ticket", sa.Text),  # JSON of the created ticket
    sa.Column("thread_ts", sa.Text),  # thread connected to the ticket
    sa.Column("maybe_created", sa.Integer, nullable=False, server_default="0"),  # an attempt may have created it
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", _REAL, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Column("warnings", sa.Text, nullable=False, server_default="[]"),
    sa.Column("created_at", _REAL, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
    sa.Column("owner", sa.Text),  # the process working on it, while its lease lasts
    sa.Column("lease_until", _REAL, nullable=False, server_default="0"),
    sa.Column("requester_id", sa.Text),  # the Slack user it is filed for (payload's), once known: Home lists it
)
people = sa.Table(  # Slack profiles (users.info), refreshed after a while
    "people",
    metadata,
    sa.Column("slack_user_id", sa.Text, primary_key=True),
    sa.Column("profile", sa.Text),  # JSON, NULL when Slack does not know the user
    sa.Column("fetched_at", _REAL, nullable=False),
)
identities = sa.Table(  # Slack user → user id in a ticket system
    "identities",
    metadata,
    sa.Column("backend", sa.Text, primary_key=True),
    sa.Column("slack_user_id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text, nullable=False),
    sa.Column("resolved_at", _REAL, nullable=False),
)
state = sa.Table(  # small named values, e.g. a rotating refresh token
    "state",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
)
routes = sa.Table(  # what admins set in Slack with /ticket config
    "routes",
    metadata,
    sa.Column("channel_id", sa.Text, primary_key=True),
    sa.Column("route", sa.Text, nullable=False),  # JSON
    sa.Column("updated_by", sa.Text, nullable=False),
    sa.Column("updated_at", _REAL, nullable=False),
)
links = sa.Table(
    "links",
    metadata,
    sa.Column("channel_id", sa.Text, primary_key=True),
    sa.Column("thread_ts", sa.Text, primary_key=True),
    sa.Column("ticket_id", sa.Text, nullable=False),
    sa.Column("display_id", sa.Text, nullable=False),
    sa.Column("backend", sa.Text, nullable=False),
    sa.Column("submission_id", sa.Text),
    sa.Column("created_at", _REAL, nullable=False),
)
slack_events = sa.Table(  # Slack event ids already handled (a redelivery is recognised)
    "slack_events",
    metadata,
    sa.Column("event_id", sa.Text, primary_key=True),
    sa.Column("received_at", _REAL, nullable=False),
    sa.Column("submission_id", sa.Text),
)
followed = sa.Table(  # tickets the bot follows after filing them: where their card is, what was last seen
    "followed",
    metadata,
    sa.Column("backend", sa.Text, primary_key=True),
    sa.Column("ticket_id", sa.Text, primary_key=True),
    sa.Column("ticket", sa.Text, nullable=False),  # JSON of the created ticket (id, display id, url, extra)
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("submission_id", sa.Text),
    sa.Column("requester_id", sa.Text),  # Slack user ids: who may close, reopen and comment; whose Home shows it
    sa.Column("submitter_id", sa.Text),
    sa.Column("channel_id", sa.Text),  # where notices go: the thread, else a DM
    sa.Column("thread_ts", sa.Text),
    sa.Column("card_ts", sa.Text),  # the card, edited with chat.update
    sa.Column("card", sa.Text),  # JSON: what the card's first lines say and its buttons beside the live ones
    sa.Column("card_dead", sa.Integer, nullable=False, server_default="0"),  # cannot be edited any more
    sa.Column("workspace", sa.Text),  # JSON: the Slack workspace (or org) whose token edits the card (0005)
    sa.Column("seen", sa.Text),  # JSON of the TicketState last seen (NULL: not looked at yet)
    sa.Column("pushed", sa.Text),  # JSON of a TicketState a webhook brought, not applied yet
    sa.Column("closures", sa.Integer, nullable=False, server_default="0"),  # times announced resolved/cancelled
    sa.Column("closed_by", sa.Text),  # the Slack user who closed it from Slack, named in the notice
    sa.Column("stopped", sa.Integer, nullable=False, server_default="0"),  # no longer followed
    sa.Column("next_poll_at", _REAL, nullable=False, server_default="0"),
    sa.Column("changed_at", _REAL, nullable=False),  # its last change seen (or when followed)
    sa.Column("created_at", _REAL, nullable=False),
    sa.Index("followed_due", "stopped", "next_poll_at"),
    sa.Index("followed_requester", "requester_id"),
)
leases = sa.Table(  # named work only one process does at a time (the ticket poller)
    "leases",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("owner", sa.Text),
    sa.Column("lease_until", _REAL, nullable=False, server_default="0"),
)
# Installs by OAuth, in slack_sdk's own layout (its SQLAlchemy stores read and write them: bot/installations.py).
slack_installations = SQLAlchemyInstallationStore.build_installations_table(metadata, "slack_installations")
slack_bots = SQLAlchemyInstallationStore.build_bots_table(metadata, "slack_bots")
slack_oauth_states = SQLAlchemyOAuthStateStore.build_oauth_states_table(metadata, "slack_oauth_states")
# Every table, in the order `bot.journal.copydb` copies them.
TABLES = (links, routes, people, identities, state, submissions, slack_events, followed, leases,
          slack_installations, slack_bots, slack_oauth_states)
