"""Brute-force lockout end to end: a PBX at 127.0.0.2 fails digest authentication five
times (the edge's threshold: 5 failures within 60 s lock the source for 300 s). Then:

- a call from that address that answers the edge's challenge with the RIGHT password
  (challenged before the lockout, answered after it) is refused 403;
- a call from that address to a trunk whose IP ACL covers it is refused 403 as well: the
  lockout is checked before any credential or ACL, and writes no record;
- the same trunk and password from 127.0.0.1 still get through authentication (the
  lockout is per source address);
- the edge logs the lockout (once) with the address, and `/metrics` counts the failures
  and the lockout.

Only 127.0.0.2 is locked, so the rest of the suite (from 127.0.0.1) is not disturbed.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, describe, pbx_args, unique_number
from e2e.test_outbound_calls import assert_record, refused

pytestmark = pytest.mark.sipp

LOCKED_IP = "127.0.0.2"
USER, PASSWORD = "pbxlockout1", "Corr3ct!staple9"


def metric(api: Api, name: str) -> float:
    text = api.metrics_text()
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


def pbx_from(
    edge: EdgeProcess, workdir: Path, name: str, xml: str, destination: str, **kw: str | int
) -> Sipp:
    args = [*pbx_args(edge, destination, **kw), "-i", LOCKED_IP]  # type: ignore[arg-type]
    return Sipp(xml, args, workdir, name).start()


def answer_after(xml: str, pause_ms: int) -> str:
    """The digest scenario with a pause between the 407 and the answering INVITE."""
    marker = '<send retrans="500"><![CDATA[\nINVITE'
    first = xml.index(marker)
    second = xml.index(marker, first + 1)
    return xml[:second] + f'<pause milliseconds="{pause_ms}"/>\n' + xml[second:]


def test_repeated_failures_lock_the_source_out(edge: EdgeProcess, api: Api, workdir: Path) -> None:
    account = api.account()
    digest_domain = account.trunk(username=USER, password=PASSWORD)
    acl_domain = account.trunk(acl=["127.0.0.0/8"])
    failures_before = metric(api, "opentrunk_auth_failures_total")
    lockouts_before = metric(api, "opentrunk_lockouts_total")
    wrong_to, right_to, acl_to = unique_number(), unique_number(), unique_number()

    # Challenged now, answered with the right password in 4 s, after the lockout.
    patient = pbx_from(
        edge,
        workdir,
        "patient",
        answer_after(scenarios.pbx_refused(digest_domain, account.caller, 403, auth=True), 4000),
        right_to,
        username=USER,
        password=PASSWORD,
    )
    try:
        time.sleep(0.5)
        guesser = pbx_from(
            edge,
            workdir,
            "guesser",
            scenarios.pbx_refused(digest_domain, account.caller, 403, auth=True),
            wrong_to,
            username=USER,
            password="guess-1234",
            calls=5,
            rate=20,
        )
        guessed = guesser.wait(15)
        assert guessed.returncode == 0, describe(guessed, edge=edge)
        waited = patient.wait(15)
        assert waited.returncode == 0, describe(waited, edge=edge)
    finally:
        patient.kill()
    # The right password was sent, and refused.
    assert "Proxy-Authorization:" in (workdir / "patient.msg").read_text(errors="replace")

    # The ACL trunk does not help the locked address either.
    acl_call = pbx_from(
        edge, workdir, "acl", scenarios.pbx_refused(acl_domain, account.caller, 403), acl_to
    )
    acl_run = acl_call.wait(15)
    assert acl_run.returncode == 0, describe(acl_run, edge=edge)

    # The same credentials from another address are authenticated (no carrier: 4090).
    other_to = unique_number()
    refused(
        edge,
        workdir,
        digest_domain,
        account.caller,
        other_to,
        404,
        username=USER,
        password=PASSWORD,
    )
    assert_record(account, other_to, "4090", "zentrunk")

    codes = [r["hangup_cause_code"] for r in account.call_records(wrong_to)]
    assert codes == ["4060"] * 5, codes
    assert_record(account, wrong_to, "4060", "zentrunk")
    assert account.call_records(right_to) == []
    assert account.call_records(acl_to) == []

    logged = [line for line in edge.lines if "source locked out" in line]
    assert len(logged) == 1, logged
    assert LOCKED_IP in logged[0]
    assert PASSWORD not in "\n".join(edge.lines)
    assert metric(api, "opentrunk_auth_failures_total") - failures_before >= 5
    assert metric(api, "opentrunk_lockouts_total") - lockouts_before == 1
