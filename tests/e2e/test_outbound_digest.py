"""The digest answer must be for the INVITE it comes with (RFC 7616 section 3.4.6): a
right password in an answer whose `uri` names another resource is refused 403 (4060),
end to end with sipp's `-auth_uri`. Sent from 127.0.0.3 so that these failures count
towards that address's lockout, not the rest of the suite's."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, describe, pbx_args, unique_number
from e2e.test_outbound_calls import assert_record

pytestmark = pytest.mark.sipp

USER, PASSWORD = "pbxdigesturi", "Corr3ct!uri42"


@pytest.mark.parametrize("uri_of", ["another_number", "the_edge_address"])
def test_right_password_for_another_uri_is_refused(
    edge: EdgeProcess, api: Api, workdir: Path, uri_of: str
) -> None:
    account = api.account()
    domain = account.trunk(username=USER, password=PASSWORD)
    destination = unique_number()
    if uri_of == "another_number":
        auth_uri = f"{unique_number()}@{domain}"
    else:  # what sipp sends by default: the address the request went to
        auth_uri = f"127.0.0.1:{edge.sip_port}"
    xml = scenarios.pbx_refused(domain, account.caller, 403, auth=True)
    args = pbx_args(edge, destination, username=USER, password=PASSWORD)
    pbx = Sipp(xml, [*args, "-auth_uri", auth_uri, "-i", "127.0.0.3"], workdir, "pbx").start()
    try:
        run = pbx.wait(15)
    finally:
        pbx.kill()
    assert run.returncode == 0, describe(run, edge=edge)
    sent = (workdir / "pbx.msg").read_text(errors="replace")
    assert f'uri="sip:{auth_uri}"' in sent  # the answer really carried that uri
    assert_record(account, destination, "4060", "zentrunk")
