"""The store: SQLAlchemy 2 table definitions, repositories and Alembic migrations.

Everything here is synchronous (stdlib sqlite3 / psycopg 3); async callers run it in a
worker thread. See docs/api.md ("Database drivers") for why.
"""
