"""accounts: subaccounts (parent_id) and the account's own enabled flag

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:00:00

A subaccount (auth_id `SA...`) belongs to one main account through `parent_id`.
Disabling a parent disables its subaccounts: `enabled` stays the flag every reader checks
(API authentication, the SIP edge's configuration cache), and is now the *effective*
state, `own_enabled AND parent's own_enabled`; `own_enabled` keeps what the operator set on
the account itself, so enabling the parent again gives back each subaccount's own state.
services.accounts keeps the two in step in one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    # SQLite can neither add a foreign key to an existing table (Alembic would ALTER one
    # in) nor drop a column that has one, and a batch copy of `accounts` is no option (its
    # DROP would cascade to every table that references it). There the column is plain;
    # services.accounts only ever writes the id of an existing main account into it.
    op.add_column("accounts", sa.Column("parent_id", sa.Integer(), nullable=True))
    if not sqlite:
        op.create_foreign_key(
            "fk_accounts_parent_id", "accounts", "accounts", ["parent_id"], ["id"]
        )
    op.add_column(
        "accounts",
        sa.Column("own_enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.execute("UPDATE accounts SET own_enabled = enabled")
    op.create_index("ix_accounts_parent", "accounts", ["parent_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_accounts_parent", table_name="accounts")
    op.drop_column("accounts", "own_enabled")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint("fk_accounts_parent_id", "accounts", type_="foreignkey")
    op.drop_column("accounts", "parent_id")
