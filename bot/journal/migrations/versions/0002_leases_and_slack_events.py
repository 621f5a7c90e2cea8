"""Work sharing by lease: submissions.owner and submissions.lease_until; slack_events, the Slack
event ids already handled (so a redelivered event is recognised by every replica).

Additive: a replica of the previous version keeps working beside it. A database made by the code
that added the lease columns before Alembic already has them; they are added only when missing.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import sqlite

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

REAL = sa.Double().with_variant(sqlite.REAL(), "sqlite")


def upgrade() -> None:
    columns = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("submissions")}
    if "owner" not in columns:
        op.add_column("submissions", sa.Column("owner", sa.Text))  # the process working on it
    if "lease_until" not in columns:
        op.add_column("submissions", sa.Column("lease_until", REAL, nullable=False, server_default=sa.text("0")))
    # Claiming takes the due pending submissions, earliest first.
    op.create_index(
        "submissions_due",
        "submissions",
        ["next_attempt_at"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "slack_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("received_at", REAL, nullable=False),
        sa.Column("submission_id", sa.Text),
    )
    op.create_index("slack_events_received", "slack_events", ["received_at"])


def downgrade() -> None:
    raise NotImplementedError("the bot's migrations are additive and are not rolled back")
