"""Table definitions (SQLAlchemy Core). The Alembic migrations create exactly these.

Repositories query these tables with Core statements rather than ORM objects: the API's
hot path is one indexed lookup, and Core keeps it at a few tens of microseconds.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    true,
)

metadata = MetaData()


def _digits(length: int) -> String:
    # Numbers are compared by prefix with a range (`>= p AND < p || ':'`); PostgreSQL must
    # use byte order for that, whatever the database's default collation is.
    return String(length).with_variant(String(length, collation="C"), "postgresql")


accounts = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("auth_id", String(20), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False),
    # The effective state every reader checks: own_enabled AND, for a subaccount, the
    # parent's own_enabled (migration 0003; services.accounts keeps them in step).
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", DateTime, nullable=False),
    # Limits and policy used by the SIP edge.
    Column("cps", Float, nullable=False, default=2.0),
    Column("max_calls", Integer, nullable=True),  # None: unlimited
    Column("countries", Text, nullable=True),  # comma-separated ISO2; None: all
    Column("caller_id_policy", Boolean, nullable=False, default=True),
    Column("billing_increment", Integer, nullable=False, default=60),
    Column("barred_prefixes", Text, nullable=False, default=""),  # comma-separated digits
    # Subaccounts (auth_id SA...): the main account they belong to; None for a main account.
    Column(
        "parent_id",
        Integer,
        ForeignKey("accounts.id", name="fk_accounts_parent_id"),
        nullable=True,
    ),
    # What the operator set on this account itself (enable / disable).
    Column("own_enabled", Boolean, nullable=False, default=True, server_default=true()),
    Index("ix_accounts_parent", "parent_id"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("credential_uuid", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("username", String(20), nullable=False),
    Column("realm", String(255), nullable=False),
    Column("ha1_md5", String(32), nullable=False),
    Column("ha1_sha256", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    UniqueConstraint("account_id", "username", name="uq_credentials_account_username"),
    Index("ix_credentials_account_created", "account_id", "created_at"),
)

ip_acls = Table(
    "ip_acls",
    metadata,
    Column("ipacl_uuid", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("ip_addresses", Text, nullable=False),  # JSON array, entries as sent
    Column("created_at", DateTime, nullable=False),
    Index("ix_ip_acls_account_created", "account_id", "created_at"),
)

origination_uris = Table(
    "origination_uris",
    metadata,
    Column("uri_uuid", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("uri", String(255), nullable=False),
    Column("authentication_needed", Boolean, nullable=False, default=False),
    Column("username", String(255), nullable=True),
    Column("password_enc", Text, nullable=True),  # Fernet token
    Column("created_at", DateTime, nullable=False),
    Index("ix_origination_uris_account_created", "account_id", "created_at"),
)

trunks = Table(
    "trunks",
    metadata,
    Column("trunk_id", String(18), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(100), nullable=False, default=""),
    Column("trunk_status", String(8), nullable=False),
    Column("trunk_direction", String(8), nullable=False),
    Column("secure", Boolean, nullable=False, default=False),
    Column(
        "ipacl_uuid",
        String(36),
        ForeignKey("ip_acls.ipacl_uuid", ondelete="SET NULL"),
        nullable=True,
    ),
    Column(
        "credential_uuid",
        String(36),
        ForeignKey("credentials.credential_uuid", ondelete="SET NULL"),
        nullable=True,
    ),
    Column(
        "primary_uri_uuid",
        String(36),
        ForeignKey("origination_uris.uri_uuid", ondelete="SET NULL"),
        nullable=True,
    ),
    Column(
        "fallback_uri_uuid",
        String(36),
        ForeignKey("origination_uris.uri_uuid", ondelete="SET NULL"),
        nullable=True,
    ),
    Column("created_at", DateTime, nullable=False),
    Index("ix_trunks_account_created", "account_id", "created_at"),
)

numbers = Table(
    "numbers",
    metadata,
    Column("number", _digits(15), primary_key=True),  # E.164 digits, no '+'
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("alias", String(100), nullable=True),
    Column(
        "trunk_id", String(18), ForeignKey("trunks.trunk_id", ondelete="SET NULL"), nullable=True
    ),
    Column("country", String(2), nullable=True),
    Column("number_type", String(16), nullable=False),
    Column("voice_enabled", Boolean, nullable=False, default=True),
    Column("added_on", DateTime, nullable=False),
    Index("ix_numbers_account_number", "account_id", "number"),
)

carriers = Table(
    "carriers",
    metadata,
    Column("carrier_id", String(36), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("address", String(255), nullable=False),  # HOST[:PORT]
    Column("transport", String(3), nullable=False, default="udp"),
    Column("prefix", String(15), nullable=False, default=""),  # "" matches every number
    Column("priority", Integer, nullable=False, default=10),
    Column("weight", Integer, nullable=False, default=100),
    Column("username", String(255), nullable=True),
    Column("password_enc", Text, nullable=True),  # Fernet token
    Column("rate", String(20), nullable=False, default="0.00000"),  # per minute, decimal
    Column("inbound_sources", Text, nullable=False, default="[]"),  # JSON array of CIDRs
    Column("created_at", DateTime, nullable=False),
)

call_records = Table(
    "call_records",
    metadata,
    Column("call_uuid", String(36), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    Column("trunk_id", String(18), nullable=True),  # no FK: a record outlives its trunk
    Column("state", String(6), nullable=False),  # open | closed
    Column("from_number", _digits(32), nullable=False),
    Column("to_number", _digits(32), nullable=False),
    Column("call_direction", String(8), nullable=False),
    Column("call_duration", Integer, nullable=False, default=0),
    Column("bill_duration", Integer, nullable=False, default=0),
    Column("initiation_time", DateTime, nullable=False),
    Column("answer_time", DateTime, nullable=True),
    Column("end_time", DateTime, nullable=True),  # null while open
    Column("hangup_cause_name", String(64), nullable=True),
    Column("hangup_cause_code", Integer, nullable=True),
    Column("hangup_source", String(8), nullable=True),
    Column("total_rate", String(20), nullable=False, default="0.00000"),
    Column("total_amount", String(20), nullable=False, default="0.00000"),
    Column("trunk_domain", String(255), nullable=False, default=""),
    Column("from_country", String(2), nullable=True),
    Column("to_country", String(2), nullable=True),
    Column("transport_protocol", String(3), nullable=False, default="udp"),
    Column("srtp", Boolean, nullable=False, default=False),
    Column("secure_trunking", Boolean, nullable=False, default=False),
    Column("secure_trunking_rate", String(20), nullable=False, default="0.00000"),
    Column("stir_verification", String(32), nullable=False, default="Not Applicable"),
    Column("attestation_indicator", String(8), nullable=True),
    # Insights: filled by the edge and the media relay; null when not measured.
    Column("from_region", String(100), nullable=True),
    Column("from_carrier", String(100), nullable=True),
    Column("to_region", String(100), nullable=True),
    Column("to_carrier", String(100), nullable=True),
    Column("rtt", Float, nullable=True),
    Column("jitter", Float, nullable=True),
    Column("packet_loss", Float, nullable=True),
    Column("post_dial_delay", Float, nullable=True),
    Column("quality_score", Float, nullable=True),
    # The edge node that opened the record (config.node_id_of; migration 0004):
    # crash recovery closes only its own node's open records. Null: written before 0004.
    # Internal, never in the API's JSON. No index: recovery reads the few open records
    # through ix_calls_state and filters those.
    Column("node", String(64), nullable=True),
    # Index choice: see docs/api.md ("Call record indexes"). Every list query is
    # "account_id = ? [AND filter] AND end_time in window ORDER BY end_time DESC".
    Index("ix_calls_account_end", "account_id", "end_time"),
    Index("ix_calls_account_to_end", "account_id", "to_number", "end_time"),
    Index("ix_calls_account_from_end", "account_id", "from_number", "end_time"),
    Index("ix_calls_account_cause_end", "account_id", "hangup_cause_code", "end_time"),
    Index("ix_calls_account_dir_end", "account_id", "call_direction", "end_time"),
    # Covering for a number (prefix) + direction list: its count and its page's key query
    # never visit the table (migration 0002).
    Index(
        "ix_calls_account_dir_to_end",
        "account_id",
        "call_direction",
        "to_number",
        "end_time",
        "state",
        "call_uuid",
    ),
    Index("ix_calls_state", "state"),
)
