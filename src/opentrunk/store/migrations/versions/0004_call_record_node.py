"""call_records: the edge node that opened each record

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:00:00

With several edge nodes on one database, crash recovery at a node's start must close
only the records that node left open, not the live calls of the others. Each record now
names the node that opened it (`config.node_id_of`, at most 64 characters).
Records written before this revision keep a null node: a node's recovery closes those
too (docs/edge.md "Several edge nodes").
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites no row, on SQLite as on PostgreSQL.
    op.add_column("call_records", sa.Column("node", sa.String(64), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a column that is in no index or constraint in place.
    op.drop_column("call_records", "node")
