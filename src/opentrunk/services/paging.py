"""Paging: a page of rows plus the total, in a stable order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_LIMIT = 20


@dataclass(frozen=True)
class Page:
    total_count: int
    objects: list[dict[str, Any]]
    limit: int
    offset: int
