"""`followed.workspace`, and `slack_installations`, `slack_bots` and `slack_oauth_states`: the OAuth installs of the app (one per
workspace or Enterprise Grid org) and the state of installs under way, in slack_sdk's own layout, so
that its SQLAlchemy stores read and write them on the bot's database (bot/installations.py). Every
replica sees an install made through another at once.

Additive: a replica of the previous version keeps working beside it with its single SLACK_BOT_TOKEN.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The tables as slack_sdk builds them (their columns, types and indexes), as they are in this
    # revision: a later slack_sdk that adds a column gets a migration of its own.
    metadata = sa.MetaData()
    SQLAlchemyInstallationStore.build_installations_table(metadata, "slack_installations")
    SQLAlchemyInstallationStore.build_bots_table(metadata, "slack_bots")
    SQLAlchemyOAuthStateStore.build_oauth_states_table(metadata, "slack_oauth_states")
    for table in metadata.sorted_tables:
        op.create_table(table.name, *[column.copy() for column in table.columns])
        for index in table.indexes:
            op.create_index(index.name, table.name, [c.name for c in index.columns])
    # A followed ticket's workspace (JSON: team, enterprise, org-wide install): whose token edits its card.
    op.add_column("followed", sa.Column("workspace", sa.Text))


def downgrade() -> None:
    raise NotImplementedError("the bot's migrations are additive and are not rolled back")
