"""`opentrunk calls tail` as a real process following records a CallRecorder writes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from opentrunk.config import Settings
from opentrunk.domain.hangup_codes import Side, bye_from, refusal
from opentrunk.edge.records import CallRecorder
from opentrunk.edge.views import CallFinish, CallStart
from opentrunk.services.accounts import account_id_of, create_account
from opentrunk.store.store import Store


def _start(account_id: int, to: str) -> CallStart:
    return CallStart(
        call_uuid=str(uuid.uuid4()),
        account_id=account_id,
        trunk_id="123456789012345",
        from_number="+14155550100",
        to_number=to,
        initiation_time=datetime.now(UTC),
    )


def _tail(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opentrunk.cli",
            "calls",
            "tail",
            "--data-dir",
            str(data_dir),
            "--interval",
            "0.1",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_tail_follows_new_records(tmp_path: Path) -> None:
    store = Store.open(Settings(data_dir=str(tmp_path)))
    try:
        mine = create_account(store, "tailed")
        other = create_account(store, "not tailed")
        mine_id = account_id_of(store, mine["auth_id"])
        other_id = account_id_of(store, other["auth_id"])
        recorder = CallRecorder(store)

        async def write_old() -> str:
            await recorder.start()
            old = _start(mine_id, "+33123456789")
            recorder.open(old)
            recorder.close(old.call_uuid, CallFinish(end=refusal(4560), end_time=datetime.now(UTC)))
            await recorder.stop()
            return old.call_uuid

        old_uuid = asyncio.run(write_old())
        proc = _tail(
            tmp_path,
            "--account",
            mine["auth_id"],
            "--json",
            "--last",
            "1",
            "--count",
            "3",
            "--timeout",
            "20",
        )
        try:
            # The --last record is printed once the tail runs; only then write new ones.
            # (readline is bounded: the tail exits by itself after --timeout.)
            assert proc.stdout is not None
            first = proc.stdout.readline()

            async def write_new() -> list[str]:
                await recorder.start()
                ids = []
                for account_id, to in (
                    (other_id, "+14155550111"),
                    (mine_id, "+442071234567"),
                    (mine_id, "+14155550199"),
                ):
                    start = _start(account_id, to)
                    recorder.open(start)
                    answer = datetime.now(UTC)
                    recorder.close(
                        start.call_uuid,
                        CallFinish(
                            end=bye_from(Side.CARRIER),
                            end_time=answer + timedelta(seconds=5),
                            answer_time=answer,
                            rate=Decimal("0.01"),
                        ),
                    )
                    ids.append(start.call_uuid)
                    await asyncio.sleep(0.3)
                await recorder.stop()
                return ids

            new_ids = asyncio.run(write_new())
            out, err = proc.communicate(timeout=25)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert proc.returncode == 0, err
        lines = [json.loads(line) for line in [first, *out.splitlines()]]
        assert [line["call_uuid"] for line in lines] == [old_uuid, new_ids[1], new_ids[2]]
        assert all(line["auth_id"] == mine["auth_id"] for line in lines)
        assert lines[1]["hangup_cause_code"] == "3000" and lines[1]["call_duration"] == 5
        assert lines[0]["hangup_cause_name"] == "barred_country"
    finally:
        store.close()


def test_tail_text_lines_and_timeout(tmp_path: Path) -> None:
    store = Store.open(Settings(data_dir=str(tmp_path)))
    try:
        account = create_account(store, "text")
        account_id = account_id_of(store, account["auth_id"])
        recorder = CallRecorder(store)

        async def write() -> str:
            await recorder.start()
            start = _start(account_id, "+442071234567")
            recorder.open(start)
            recorder.close(
                start.call_uuid, CallFinish(end=refusal(5180), end_time=datetime.now(UTC))
            )
            await recorder.stop()
            return start.call_uuid

        call_uuid = asyncio.run(write())
        began = time.monotonic()
        proc = _tail(tmp_path, "-n", "5", "--timeout", "1.5")
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert time.monotonic() - began < 15
        (line,) = out.splitlines()
        assert call_uuid in line and account["auth_id"] in line
        assert "+14155550100 -> +442071234567" in line
        assert "5180 cps_limit_reached (zentrunk)" in line and "unanswered" in line
    finally:
        store.close()
