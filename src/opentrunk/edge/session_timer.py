"""Session timers (RFC 4028) as the B2BUA honours them.

The edge relays `Session-Expires`, `Min-SE` and `Supported: timer` end to end, so the
two user agents negotiate the interval and the refresher between themselves; the edge
watches the outcome. `SessionTimers.call_answered` reads the interval and refresher from
the 2xx that set the call up; every re-INVITE or UPDATE relayed between the legs and
answered 2xx restarts the clock (with the interval of its own answer, when it carries
one). When the interval passes without a successful refresh, the session is dead
(RFC 4028 10): the edge sends BYE on both legs and closes the record:

- if the last refresh attempt was refused (the refresher's peer answered a 4xx/5xx/6xx),
  the code is that side's mid-call failure (5220 / 5230 for the customer, 5310 / 5320
  for the carrier, via `hangup_codes.midcall_failure`);
- otherwise the refresher went silent: its side's server_timeout (5340 customer, 5330
  carrier).

`refresher=uac` names the side that sent the request the answer belongs to (the caller
for the initial INVITE, the sender for a refresh), `uas` the other side.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentrunk.domain.hangup_codes import TIMEOUT, CallEnd, FinalStatus, Side, midcall_failure
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.sip.extensions import passed_supported

if TYPE_CHECKING:
    from opentrunk.edge.b2bua import Call
    from opentrunk.sip.message import Request, Response

log = logging.getLogger(__name__)

# RFC 4028 4: Session-Expires is at least 90 s between compliant agents, but the edge
# is not one of the negotiating agents: it honours whatever the answer says, down to
# this floor (a zero or absurdly small interval would end calls at once).
MIN_INTERVAL = 1.0


def session_timer_headers(request: Request) -> tuple[tuple[str, str], ...]:
    """A request's session-timer headers (RFC 4028) for the edge's other leg, in a new
    leg's INVITE or a relayed re-INVITE/UPDATE: the timer is negotiated end to end
    between the two user agents. Of Supported only what the edge supports end to end is
    passed (`sip.extensions`: an extension such as 100rel would bind the edge, which
    does not do it)."""
    found = [
        (name, value)
        for name in ("Session-Expires", "Min-SE")
        for value in request.headers.get_all(name)
    ]
    supported = passed_supported(request)
    if supported is not None:
        found.append(("Supported", supported))
    return tuple(found)


def parse_session_expires(value: str | None) -> tuple[float, str | None] | None:
    """`"1800;refresher=uac"` -> (1800.0, "uac"); None when absent or not a number."""
    if not value:
        return None
    delta, *params = [part.strip() for part in value.split(";")]
    if not delta.isdigit():
        return None
    refresher = None
    for param in params:
        name, _, param_value = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = param_value.strip().lower() or None
    return max(MIN_INTERVAL, float(delta)), refresher


@dataclass(eq=False)
class _Session:
    call: Call
    interval: float
    refresher: Side
    handle: asyncio.TimerHandle | None = None
    refused: tuple[Side, FinalStatus] | None = None


class SessionTimers:
    """The running session timers of the edge's calls, by call_uuid."""

    def __init__(self, hang_up: Callable[[Call, CallEnd], None]) -> None:
        self._hang_up = hang_up
        self._sessions: dict[str, _Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def interval_of(self, call_uuid: str) -> float | None:
        session = self._sessions.get(call_uuid)
        return None if session is None else session.interval

    def call_answered(self, call: Call, caller: Side, answer: Response) -> None:
        """Start the timer when the 2xx to the initial INVITE (sent by `caller`'s side)
        carries Session-Expires."""
        parsed = parse_session_expires(answer.headers.get("Session-Expires"))
        if parsed is None:
            return
        interval, refresher = parsed
        side = caller.other if refresher == "uas" else caller
        session = _Session(call, interval, side)
        self._sessions[call.call_uuid] = session
        self._arm(session)

    def request_answered(self, call: Call, sender: Side, method: str, answer: Response) -> None:
        """A re-INVITE or UPDATE from `sender` was relayed and the other side answered."""
        session = self._sessions.get(call.call_uuid)
        if session is None or method not in ("INVITE", "UPDATE"):
            return
        if 200 <= answer.status < 300:
            parsed = parse_session_expires(answer.headers.get("Session-Expires"))
            if parsed is not None:
                session.interval, refresher = parsed
                session.refresher = sender.other if refresher == "uas" else sender
            session.refused = None
            self._arm(session)
        elif answer.status >= 300:
            session.refused = (sender.other, answer.status)

    def call_ended(self, call_uuid: str) -> None:
        session = self._sessions.pop(call_uuid, None)
        if session is not None and session.handle is not None:
            session.handle.cancel()

    def _arm(self, session: _Session) -> None:
        if session.handle is not None:
            session.handle.cancel()
        loop = asyncio.get_running_loop()
        session.handle = loop.call_later(session.interval, self._expired, session)

    def _expired(self, session: _Session) -> None:
        call = session.call
        if self._sessions.get(call.call_uuid) is not session:
            return
        del self._sessions[call.call_uuid]
        set_call_uuid(call.call_uuid)
        if session.refused is not None:
            end = midcall_failure(*session.refused)
        else:
            end = midcall_failure(session.refresher, TIMEOUT)
        event(log, logging.INFO, "session expired", interval=session.interval, code=end.code)
        self._hang_up(call, end)
