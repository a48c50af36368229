"""Every RFC 4475 torture message against LIVE endpoints (UDP and TCP), in a namespace.

The messages name 192.0.2.x and example.com, so server and sender run inside a throw-away
network namespace with only loopback up (tests/netns.py): an answer sent to an address
written in a message cannot leave the machine, and fails with "network unreachable",
which the transport counts (`send_errors` must stay 0). Answers are received on
127.0.0.1, which shows they went to the packet's real source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from netns import run_in_netns

pytestmark = pytest.mark.netns

HERE = Path(__file__).parent
DATA = HERE.parent / "data" / "rfc4475"
REPO = HERE.parent.parent

# What a UAS behind our transport answers (the script's handler: 200, or 416 for a
# Request-URI scheme it cannot serve). None: no answer (responses are dropped).
EXPECTED = {
    # valid
    "wsinv": 200,
    "intmeth": 200,
    "esc01": 200,
    "escnull": 200,
    "esc02": 200,
    "lwsdisp": 200,
    "longreq": 200,
    "dblreq": 200,
    "semiuri": 200,
    "transports": 200,
    "mpart01": 200,
    "unreason": None,
    "noreason": None,
    # invalid: 400 unless noted
    "badinv01": 400,
    "clerr": 400,
    "ncl": 400,
    "scalar02": 400,
    "scalarlg": None,
    "quotbal": 400,
    "ltgtruri": 400,
    "lwsruri": 400,
    "escruri": 400,
    "regbadct": 400,
    "badaspec": 400,
    "baddn": 400,
    "badvers": 505,
    "mismatch01": 400,
    "mismatch02": 400,  # 501 preferred by the RFC, 400 acceptable
    "bigcode": None,
    # tolerated (the RFC allows either)
    "lwsstart": 200,
    "trws": 200,
    "baddate": 200,
    # section 3.2 - 3.4
    "badbranch": 200,
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 200,
    "bext01": 200,
    "invut": 200,
    "regaut01": 200,
    "multi01": 400,
    "mcl01": 400,
    "bcast": None,
    "zeromf": 200,
    "cparam01": 200,
    "cparam02": 200,
    "regescrt": 200,
    "sdp01": 200,
    "inv2543": 200,
}
# On a stream these never complete (no blank line / Content-Length past the data): the
# server waits for more octets, as RFC 4475 says for clerr.
STREAM_INCOMPLETE = {"clerr", "baddn"}
# On a stream the framing is lost: answer, then close the connection.
STREAM_CLOSED = {"ncl", "mcl01"}


@pytest.fixture(scope="module")
def live_results(request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    from netns import network_namespace

    with network_namespace("ot4475") as name:
        proc = run_in_netns(
            name,
            [sys.executable, str(HERE / "rfc4475_live.py"), str(DATA)],
            timeout=60,
            capture_output=True,
            cwd=REPO,
        )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    results: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return results


def test_every_index_entry_has_an_expectation() -> None:
    names = {
        line.split("\t", 1)[0]
        for line in (DATA / "INDEX.tsv").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert names == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_udp(live_results: dict[str, dict[str, object]], name: str) -> None:
    udp = live_results[name]["udp"]
    assert isinstance(udp, dict)
    expected = EXPECTED[name]
    if expected is None:
        assert udp["statuses"] == []
    else:
        assert udp["statuses"][:1] == [expected]
        if expected >= 400 and expected != 416:
            # The transport itself answered: a Warning 399 says what was wrong.
            assert udp["warnings"][0] is not None and udp["warnings"][0].startswith("399")
    assert udp["stats"]["send_errors"] == 0  # nothing was sent to an address in the message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tcp(live_results: dict[str, dict[str, object]], name: str) -> None:
    tcp = live_results[name]["tcp"]
    assert isinstance(tcp, dict)
    expected = EXPECTED[name]
    if expected is None or name in STREAM_INCOMPLETE:
        assert tcp["statuses"] == []
    else:
        assert tcp["statuses"][:1] == [expected]
    assert tcp["closed"] is (name in STREAM_CLOSED)
    assert tcp["stats"]["send_errors"] == 0


def test_dblreq_on_a_stream_is_two_requests(live_results: dict[str, dict[str, object]]) -> None:
    # Over UDP octets past Content-Length are ignored; on a stream they are the next message.
    tcp = live_results["dblreq"]["tcp"]
    assert isinstance(tcp, dict) and tcp["statuses"] == [200, 200]


def test_namespace_has_only_loopback() -> None:
    from netns import interfaces, network_namespace

    with network_namespace() as name:
        assert interfaces(name) == ["lo"]
