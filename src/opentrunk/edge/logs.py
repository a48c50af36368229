"""Structured logging for the edge: one line per event, `key=value` (logfmt) or JSON, and
the current call's `call_uuid` on every line logged while that call is being handled.

The call is carried in a `ContextVar`. asyncio copies the context into a task when the
task is created, so a call handled in its own task keeps its call_uuid across awaits;
code that runs in a transport callback (a response arriving for a leg) must enter the
call's context itself with `call_context(call_uuid)` or `set_call_uuid()`.

Extra fields: `log.info("carrier answered", extra={"fields": {"status": 200}})`, or the
shorthand `event(log, logging.INFO, "carrier answered", status=200)`.

Secrets: a field whose name looks like a secret (password, secret, token, ha1,
authorization) is written as `***`, whatever a caller passes, so a careless log call
cannot leak one.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, Final, TextIO

call_uuid_var: ContextVar[str | None] = ContextVar("call_uuid", default=None)

_SECRET_WORDS: Final = ("password", "passwd", "secret", "token", "ha1", "authorization")
REDACTED: Final = "***"


def is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def current_call_uuid() -> str | None:
    return call_uuid_var.get()


def set_call_uuid(call_uuid: str | None) -> Token[str | None]:
    """Set the call for the rest of the current context (a call's own task)."""
    return call_uuid_var.set(call_uuid)


@contextmanager
def call_context(call_uuid: str | None) -> Iterator[None]:
    """Every line logged inside the block carries `call_uuid`."""
    token = call_uuid_var.set(call_uuid)
    try:
        yield
    finally:
        call_uuid_var.reset(token)


def event(logger: logging.Logger, level: int, message: str, **fields: Any) -> None:
    """Log `message` with `fields` as structured key/values."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={"fields": fields}, stacklevel=2)


class CallContextFilter(logging.Filter):
    """Stamps each record with the call_uuid of the context it was logged from."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call_uuid"):
            record.call_uuid = call_uuid_var.get()
        return True


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    extra = getattr(record, "fields", None)
    if isinstance(extra, Mapping):
        for key, value in extra.items():
            out[str(key)] = REDACTED if is_secret_key(str(key)) else value
    return out


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _logfmt_value(value: Any) -> str:
    text = "null" if value is None else str(value)
    if text == "" or any(c in text for c in ' "=\\\n\t'):
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    return text


class LogfmtFormatter(logging.Formatter):
    """`ts=... level=info logger=opentrunk.edge call_uuid=... msg="..." key=value ...`"""

    def format(self, record: logging.LogRecord) -> str:
        pairs: list[tuple[str, Any]] = [
            ("ts", _timestamp(record)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
        ]
        call_uuid = getattr(record, "call_uuid", None)
        if call_uuid is not None:
            pairs.append(("call_uuid", call_uuid))
        pairs.append(("msg", record.getMessage()))
        pairs.extend(_fields_of(record).items())
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in pairs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the same keys as the logfmt form."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        call_uuid = getattr(record, "call_uuid", None)
        if call_uuid is not None:
            data["call_uuid"] = call_uuid
        data["msg"] = record.getMessage()
        data.update(_fields_of(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def make_handler(fmt: str = "logfmt", stream: TextIO | None = None) -> logging.Handler:
    """A stream handler with the call filter and the chosen formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(CallContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    return handler


def configure_logging(
    level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None
) -> None:
    """Replace the root logger's handlers with one structured handler (for `serve`)."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(make_handler(fmt, stream))
    root.setLevel(level.upper())
