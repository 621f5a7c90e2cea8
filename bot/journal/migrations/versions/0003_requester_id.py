"""submissions.requester_id: the Slack user a ticket is filed for, beside `user_id` (who filed it), so
that the Home tab lists the tickets where the person is either (indexed like `user_id`).

Filled from what the journal holds: the payload's `requester_id` (older payloads: the origin's).
Additive: a replica of the previous version keeps working beside it; what it journals has no
`requester_id` until the new version saves it, and is listed for its submitter meanwhile.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("submissions", sa.Column("requester_id", sa.Text))
    op.create_index("submissions_requester", "submissions", ["requester_id", "created_at"])
    submissions = sa.table("submissions", sa.column("payload", sa.Text), sa.column("requester_id", sa.Text))
    payload = submissions.c.payload
    if op.get_bind().dialect.name == "postgresql":  # the payload is JSON text
        as_json = sa.cast(payload, postgresql.JSON)
        given = sa.func.json_extract_path_text(as_json, "requester_id")
        in_origin = sa.func.json_extract_path_text(as_json, "origin", "requester_id")
    else:  # SQLite's JSON functions
        given = sa.func.json_extract(payload, "$.requester_id")
        in_origin = sa.func.json_extract(payload, "$.origin.requester_id")
    op.get_bind().execute(
        sa.update(submissions).where(submissions.c.requester_id.is_(None)).values(requester_id=sa.func.coalesce(given, in_origin))
    )


def downgrade() -> None:
    raise NotImplementedError("the bot's migrations are additive and are not rolled back")
