"""Errors the service layer raises; the API maps each to one HTTP status."""

from __future__ import annotations

from opentrunk.domain.validation import InvalidParameter, MissingParameter


class NotFound(LookupError):
    """The object does not exist in this account (HTTP 404)."""


class Conflict(ValueError):
    """The object already exists (HTTP 409)."""


__all__ = ["Conflict", "InvalidParameter", "MissingParameter", "NotFound"]
