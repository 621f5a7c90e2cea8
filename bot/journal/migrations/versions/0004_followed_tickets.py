"""`followed`: the tickets the bot follows after filing them (their card in Slack, what was last seen
of them, how often they were announced resolved), and `leases`: named work one process does at a
time (the poller that looks at them).

Additive: a replica of the previous version keeps working beside it and follows nothing.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import sqlite as sqlite_dialect

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_REAL = sa.Double().with_variant(sqlite_dialect.REAL(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "followed",
        sa.Column("backend", sa.Text, primary_key=True),
        sa.Column("ticket_id", sa.Text, primary_key=True),
        sa.Column("ticket", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("submission_id", sa.Text),
        sa.Column("requester_id", sa.Text),
        sa.Column("submitter_id", sa.Text),
        sa.Column("channel_id", sa.Text),
        sa.Column("thread_ts", sa.Text),
        sa.Column("card_ts", sa.Text),
        sa.Column("card", sa.Text),
        sa.Column("card_dead", sa.Integer, nullable=False, server_default="0"),
        sa.Column("seen", sa.Text),
        sa.Column("pushed", sa.Text),
        sa.Column("closures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("closed_by", sa.Text),
        sa.Column("stopped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_poll_at", _REAL, nullable=False, server_default="0"),
        sa.Column("changed_at", _REAL, nullable=False),
        sa.Column("created_at", _REAL, nullable=False),
    )
    op.create_index("followed_due", "followed", ["stopped", "next_poll_at"])
    op.create_index("followed_requester", "followed", ["requester_id"])
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("owner", sa.Text),
        sa.Column("lease_until", _REAL, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    raise NotImplementedError("the bot's migrations are additive and are not rolled back")
