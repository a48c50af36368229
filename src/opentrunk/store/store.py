"""The Store handle: the engine, the hot-path row reader, the secret box and the
per-process account cache that every service function receives."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Engine

from opentrunk.config import Settings
from opentrunk.store.db import make_engine
from opentrunk.store.migrate import upgrade
from opentrunk.store.reader import RowReader
from opentrunk.store.secrets import SecretBox, load_or_create_key

# How long a verified account stays cached when nothing in this process changed it.
# Another process (the CLI) that disables an account or rotates its token is seen by the
# API within this many seconds; changes made through this process are seen at once.
AUTH_CACHE_TTL_S = 5.0


@dataclass(frozen=True)
class CachedAccount:
    account_id: int
    auth_id: str
    token_hash: str
    enabled: bool
    expires_at: float


@dataclass
class Store:
    engine: Engine
    box: SecretBox
    sip_domain: str
    auth_cache: dict[str, CachedAccount] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    reader: RowReader = field(init=False)

    def __post_init__(self) -> None:
        self.reader = RowReader(self.engine)

    @classmethod
    def open(cls, settings: Settings, *, schema: str | None = None, migrate: bool = True) -> Store:
        engine = make_engine(settings.effective_database_url, schema=schema)
        if migrate:
            upgrade(engine)
        key = load_or_create_key(settings.secret_key, settings.data_dir)
        return cls(engine=engine, box=SecretBox(key), sip_domain=settings.sip_domain)

    def cache_account(self, account_id: int, auth_id: str, token_hash: str, enabled: bool) -> None:
        entry = CachedAccount(
            account_id, auth_id, token_hash, enabled, time.monotonic() + AUTH_CACHE_TTL_S
        )
        with self._lock:
            self.auth_cache[auth_id] = entry

    def cached_account(self, auth_id: str) -> CachedAccount | None:
        # Runs on every API request, on the event loop: a dict lookup and a clock read.
        entry = self.auth_cache.get(auth_id)
        if entry is None or entry.expires_at < time.monotonic():
            return None
        return entry

    def invalidate_account(self, auth_id: str) -> None:
        with self._lock:
            self.auth_cache.pop(auth_id, None)

    def close(self) -> None:
        self.reader.close()
        self.engine.dispose()
