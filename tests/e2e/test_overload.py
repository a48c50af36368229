"""Overload control end to end (edge/overload.py): a live `opentrunk serve` whose event
loop is made to fall behind, repeatedly, by stopping and continuing its process (the
same lateness a backlog of work causes) refuses new calls with 503, Retry-After and
hangup code 4330, while the call already up goes on; once the loop keeps time again,
calls are taken as before.

A single long stop is one late tick and must not refuse anything (a pause is not a
backlog): that is checked first, with the same edge.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e import scenarios
from e2e.harness import Api, EdgeProcess, Sipp, metrics_text, sipp_binary, unique_number
from e2e.raw_pbx import RawPbx
from e2e.test_outbound_calls import carriers
from opentrunk.sip.message import Response

pytestmark = pytest.mark.sipp

LAG = 0.05  # OPENTRUNK_OVERLOAD_LAG: seconds behind, three ticks in a row


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    sipp_binary()
    with EdgeProcess(
        tmp_path_factory.mktemp("overload-edge"), env={"OPENTRUNK_OVERLOAD_LAG": str(LAG)}
    ) as process:
        yield process


def fall_behind(edge: EdgeProcess, cycles: int, stopped: float, running: float) -> None:
    """Stop the edge for `stopped` seconds, let it run `running`, `cycles` times."""
    assert edge.process is not None
    for _ in range(cycles):
        os.kill(edge.process.pid, signal.SIGSTOP)
        time.sleep(stopped)
        os.kill(edge.process.pid, signal.SIGCONT)
        time.sleep(running)


def first_final(pbx: RawPbx, timeout: float = 5.0) -> Response:
    final = pbx.wait_for(lambda m: isinstance(m, Response) and m.status >= 200, timeout)
    assert isinstance(final, Response)
    return final


class Setup:
    def __init__(self, edge: EdgeProcess, api: Api, workdir: Path) -> None:
        self.edge = edge
        self.account = api.account()
        self.domain = self.account.trunk(acl=["127.0.0.1/32"])
        self.destination = unique_number()
        xmls = [scenarios.carrier_answer() for _ in range(3)]
        self.carriers: list[Sipp] = carriers(api, workdir, self.destination, *xmls)

    def pbx(self) -> RawPbx:
        return RawPbx(self.edge.sip_port, self.domain, self.account.caller, self.destination)

    def close(self) -> None:
        for carrier in self.carriers:
            carrier.kill()


def test_overloaded_edge_refuses_new_calls_4330_and_keeps_the_call_up(
    edge: EdgeProcess, workdir: Path
) -> None:
    with Api(edge.http_port) as api:
        setup = Setup(edge, api, workdir)
        up, refused, later = setup.pbx(), setup.pbx(), setup.pbx()
        try:
            up.invite()
            up.wait_answer()
            up.ack()

            # One pause, however long, is not overload: the next call is taken.
            fall_behind(edge, cycles=1, stopped=1.0, running=0.0)
            assert float(metric(edge, "opentrunk_overloaded")) == 0

            # A backlog: late tick after late tick.
            fall_behind(edge, cycles=6, stopped=0.2, running=0.02)
            refused.invite()
            final = first_final(refused)
            assert final.status == 503, final.start_line()
            assert final.headers.get("Retry-After") == "1"
            assert '"4330 temporary_unavailable"' in (final.headers.get("Reason") or "")
            assert float(metric(edge, "opentrunk_overload_refused_total")) >= 1

            # The call that was up is still up: its BYE is carried to the carrier.
            time.sleep(1.5)  # the hold runs out on a loop that keeps time
            up.bye()
            assert up.wait_response("BYE", 5).status == 200
            record = setup.account.call_record(setup.destination)
            assert record["hangup_cause_code"] == "3010"

            # And new calls are taken again.
            assert float(metric(edge, "opentrunk_overloaded")) == 0
            later.invite()
            later.wait_answer()
            later.ack()
            later.bye()
            assert later.wait_response("BYE", 5).status == 200
            # The refused call never passed trunk identification: no record for it.
            deadline = time.monotonic() + 5
            while len(setup.account.call_records(setup.destination)) < 2:
                assert time.monotonic() < deadline, "the second call's record never came"
                time.sleep(0.2)
            time.sleep(0.5)  # a record for the refused call would have come by now too
            records = setup.account.call_records(setup.destination)
            assert [r["hangup_cause_code"] for r in records] == ["3010", "3010"]
        finally:
            for pbx in (up, refused, later):
                pbx.close()
            setup.close()


def metric(edge: EdgeProcess, name: str) -> str:
    for line in metrics_text(edge.http_port).splitlines():
        if line.startswith(name + " "):
            return line.split()[1]
    raise AssertionError(f"{name} not in /metrics")
