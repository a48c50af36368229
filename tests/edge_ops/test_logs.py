"""Structured logs: every line logged while handling a call carries its call_uuid (and
lines of other calls do not), fields are logfmt/JSON, and secrets are never written."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from opentrunk.edge.logs import (
    call_context,
    configure_logging,
    event,
    make_handler,
    set_call_uuid,
)


def _logger(fmt: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.edge_ops.{fmt}")
    logger.handlers = [make_handler(fmt, stream)]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger, stream


def test_each_call_task_logs_its_own_uuid() -> None:
    logger, stream = _logger("json")

    async def handle(call_uuid: str) -> None:
        set_call_uuid(call_uuid)
        logger.info("invite received")
        await asyncio.sleep(0.01)  # other calls run meanwhile
        event(logger, logging.INFO, "carrier answered", status=200)

    async def scenario() -> None:
        await asyncio.gather(*(handle(f"call-{n}") for n in range(5)))
        logger.info("between calls")

    asyncio.run(scenario())
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 11
    per_call: dict[str, list[str]] = {}
    for line in lines[:-1]:
        per_call.setdefault(line["call_uuid"], []).append(line["msg"])
    assert per_call == {f"call-{n}": ["invite received", "carrier answered"] for n in range(5)}
    assert "call_uuid" not in lines[-1]
    answered = [line for line in lines if line["msg"] == "carrier answered"]
    assert all(line["status"] == 200 for line in answered)


def test_call_context_block_for_callbacks() -> None:
    logger, stream = _logger("logfmt")
    with call_context("abc-123"):
        logger.warning("response for a leg", extra={"fields": {"reason": "no answer yet"}})
    logger.warning("outside")
    first, second = stream.getvalue().splitlines()
    assert " level=warning " in first and " call_uuid=abc-123 " in first
    assert 'msg="response for a leg"' in first and 'reason="no answer yet"' in first
    assert "call_uuid" not in second


def test_secrets_are_redacted() -> None:
    for fmt in ("logfmt", "json"):
        logger, stream = _logger(fmt)
        event(
            logger,
            logging.INFO,
            "carrier challenge",
            username="edgeuser",
            password="s3cret-carrier",
            auth_token="T0ken",
            ha1_md5="0123abcd",
            proxy_authorization="Digest response=...",
        )
        text = stream.getvalue()
        for secret in ("s3cret-carrier", "T0ken", "0123abcd", "Digest response"):
            assert secret not in text
        assert "edgeuser" in text and "***" in text


def test_configure_logging_replaces_root_handlers() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("debug", "logfmt", stream)
        with call_context("root-call"):
            logging.getLogger("opentrunk.edge.test").debug("hello")
        assert "call_uuid=root-call" in stream.getvalue()
        assert "level=debug" in stream.getvalue()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
