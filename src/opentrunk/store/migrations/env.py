"""Alembic environment: runs migrations on the connection the caller hands over.

`opentrunk.store.migrate.upgrade` passes its connection in `config.attributes`, so no
alembic.ini and no URL in the working directory are needed.
"""

from __future__ import annotations

from alembic import context

from opentrunk.store.models import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through opentrunk.store.migrate.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
