"""The schema on main before Alembic (commit d399097): submissions, people, identities, state,
routes, links.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import sqlite

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# SQLite's REAL as it was declared; on PostgreSQL an 8-byte float (its REAL has 4 bytes, too few
# for epoch seconds).
REAL = sa.Double().with_variant(sqlite.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "submissions",
        sa.Column("id", sa.Text, primary_key=True, nullable=True),  # as declared: `id TEXT PRIMARY KEY`
        sa.Column("dedupe_key", sa.Text, nullable=False, unique=True),
        sa.Column("thread_key", sa.Text, unique=True),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'pending'")),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("steps_done", sa.Text, nullable=False, server_default=sa.text("''")),
        sa.Column("ticket", sa.Text),
        sa.Column("thread_ts", sa.Text),
        sa.Column("maybe_created", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", REAL, nullable=False, server_default=sa.text("0")),
        sa.Column("last_error", sa.Text),
        sa.Column("warnings", sa.Text, nullable=False, server_default=sa.text("'[]'")),
        sa.Column("created_at", REAL, nullable=False),
        sa.Column("updated_at", REAL, nullable=False),
    )
    op.create_index(
        "submissions_pending",
        "submissions",
        ["status"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("submissions_user", "submissions", ["user_id", "created_at"])
    op.create_table(
        "people",
        sa.Column("slack_user_id", sa.Text, primary_key=True, nullable=True),
        sa.Column("profile", sa.Text),
        sa.Column("fetched_at", REAL, nullable=False),
    )
    op.create_table(
        "identities",
        sa.Column("backend", sa.Text, nullable=False),
        sa.Column("slack_user_id", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("resolved_at", REAL, nullable=False),
        sa.PrimaryKeyConstraint("backend", "slack_user_id"),
    )
    op.create_table(
        "state",
        sa.Column("name", sa.Text, primary_key=True, nullable=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", REAL, nullable=False),
    )
    op.create_table(
        "routes",
        sa.Column("channel_id", sa.Text, primary_key=True, nullable=True),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("updated_by", sa.Text, nullable=False),
        sa.Column("updated_at", REAL, nullable=False),
    )
    op.create_table(
        "links",
        sa.Column("channel_id", sa.Text, nullable=False),
        sa.Column("thread_ts", sa.Text, nullable=False),
        sa.Column("ticket_id", sa.Text, nullable=False),
        sa.Column("display_id", sa.Text, nullable=False),
        sa.Column("backend", sa.Text, nullable=False),
        sa.Column("submission_id", sa.Text),
        sa.Column("created_at", REAL, nullable=False),
        sa.PrimaryKeyConstraint("channel_id", "thread_ts"),
    )


def downgrade() -> None:
    raise NotImplementedError("the bot's migrations are additive and are not rolled back")
