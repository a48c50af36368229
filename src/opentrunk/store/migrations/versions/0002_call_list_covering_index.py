"""call records: covering index for number + direction lists

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:05:00

`GET /Zentrunk/Call/?to_number=PREFIX&call_direction=...` counts every match for
meta.total_count. With only (account_id, to_number, end_time), each candidate cost a table
lookup to check call_direction and state; this index holds every column of that filter
plus end_time and call_uuid, so the count and the page's key query (services.calls) are
answered from the index alone. Measured in docs/perf-api.md.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = ["account_id", "call_direction", "to_number", "end_time", "state", "call_uuid"]


def upgrade() -> None:
    op.create_index("ix_calls_account_dir_to_end", "call_records", COLUMNS, unique=False)


def downgrade() -> None:
    op.drop_index("ix_calls_account_dir_to_end", table_name="call_records")
