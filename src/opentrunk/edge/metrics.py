"""The edge's operational figures, rendered in the Prometheus text exposition format
(version 0.0.4) for `GET /metrics`.

Written by hand rather than with prometheus_client: the edge needs a handful of counters
and gauges updated from one event loop, and plain integer increments cost less on the
call path than the library's locked metric objects. Everything is updated from the
event loop; `render()` only reads.

Figures:
- `opentrunk_calls_total{code,name,source}`: ended calls by hangup code (the outcome).
- `opentrunk_calls_started_total`, `opentrunk_active_calls`, `opentrunk_calls_per_second`
  (calls started during the last complete second).
- `opentrunk_sip_requests_total{method}`, `opentrunk_sip_responses_total{code}`: what
  the edge received and answered, counted by the B2BUA.
- `opentrunk_sip_transactions_active`: transactions alive in the endpoint's layer.
- `opentrunk_sip_transport_*_total` (received, sent, parse_errors, dropped, oversized...)
  from `SipEndpoint.stats`, read at render time.
- `opentrunk_call_records_*`: the recorder's queue, writes and write errors.
- `opentrunk_overloaded`, `opentrunk_overload_refused_total`, `opentrunk_event_loop_lag_seconds`,
  `opentrunk_sip_receive_queue_fill`: overload control (edge/overload.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from opentrunk.domain.hangup_codes import BY_CODE, CallEnd

if TYPE_CHECKING:
    from opentrunk.edge.overload import OverloadGuard

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _HasAsDict(Protocol):
    def as_dict(self) -> dict[str, int]: ...


class EndpointLike(Protocol):
    """What metrics read from a `SipEndpoint` (duck-typed to keep edge -> transport loose)."""

    @property
    def stats(self) -> _HasAsDict: ...


class RecorderLike(Protocol):
    def stats(self) -> Mapping[str, int]: ...


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


class _Family:
    """One metric family: HELP, TYPE and its samples."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.samples: list[tuple[Mapping[str, str], float]] = []

    def add(self, value: float, **labels: str) -> _Family:
        self.samples.append((labels, value))
        return self

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            if labels:
                inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items())
                yield f"{self.name}{{{inner}}} {_number(value)}"
            else:
                yield f"{self.name} {_number(value)}"


class EdgeMetrics:
    """Counters and gauges of one edge process. Call the `on_*`-style methods from the
    B2BUA; `bind()` the endpoint and recorder so their own counters are included."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.calls_started = 0
        self.active_calls = 0
        self.calls_by_outcome: dict[tuple[int, str], int] = {}
        self.requests_by_method: dict[str, int] = {}
        self.responses_by_code: dict[int, int] = {}
        self.auth_failures = 0
        self.lockouts = 0
        # Media (counted when a call's media is released): packets the relay dropped
        # because SRTP authentication or replay checks failed, or because they came
        # from an address other than the latched peer's.
        self.media_srtp_failures = 0
        self.media_foreign_dropped = 0
        self.media_rtp_timeouts = 0
        self._second = int(clock())
        self._this_second = 0
        self._last_second = 0
        self._endpoint: EndpointLike | None = None
        self._recorder: RecorderLike | None = None
        self._transactions: Callable[[], int] | None = None
        self._overload: OverloadGuard | None = None

    def bind(
        self,
        endpoint: EndpointLike | None = None,
        recorder: RecorderLike | None = None,
        transactions: Callable[[], int] | None = None,
    ) -> None:
        """Read these at render time. `transactions` returns the number of live
        transactions (e.g. `lambda: len(endpoint.layer)`)."""
        if endpoint is not None:
            self._endpoint = endpoint
        if recorder is not None:
            self._recorder = recorder
        if transactions is not None:
            self._transactions = transactions

    # -- calls ---------------------------------------------------------------------

    def _tick(self) -> None:
        second = int(self._clock())
        if second != self._second:
            # The previous second's count is the rate only if that second just ended.
            self._last_second = self._this_second if second == self._second + 1 else 0
            self._this_second = 0
            self._second = second

    def call_started(self) -> None:
        """A call passed trunk identification (its record was opened)."""
        self._tick()
        self._this_second += 1
        self.calls_started += 1
        self.active_calls += 1

    def call_ended(self, end: CallEnd) -> None:
        """A call started with `call_started` ended with `end`."""
        self.active_calls = max(0, self.active_calls - 1)
        key = (end.code, end.source.value)
        self.calls_by_outcome[key] = self.calls_by_outcome.get(key, 0) + 1

    def calls_per_second(self) -> int:
        """Calls started during the last complete second."""
        self._tick()
        return self._last_second

    # -- signalling ------------------------------------------------------------------

    def request_received(self, method: str) -> None:
        self.requests_by_method[method] = self.requests_by_method.get(method, 0) + 1

    def response_sent(self, status: int) -> None:
        self.responses_by_code[status] = self.responses_by_code.get(status, 0) + 1

    def auth_failed(self) -> None:
        self.auth_failures += 1

    def source_locked_out(self) -> None:
        self.lockouts += 1

    def media_released(self, srtp_failures: int, foreign_dropped: int) -> None:
        """A call's media was freed; these are its final drop counts."""
        self.media_srtp_failures += srtp_failures
        self.media_foreign_dropped += foreign_dropped

    def rtp_timed_out(self) -> None:
        self.media_rtp_timeouts += 1

    def bind_overload(self, guard: OverloadGuard) -> None:
        """Read the overload guard's state at render time."""
        self._overload = guard

    # -- rendering -----------------------------------------------------------------

    def families(self) -> list[_Family]:
        out: list[_Family] = []
        outcome = _Family("opentrunk_calls_total", "counter", "Ended calls by hangup cause.")
        for (code, source), count in sorted(self.calls_by_outcome.items()):
            row = BY_CODE.get(code)
            name = row.name if row is not None else "unknown"
            outcome.add(count, code=f"{code:04d}", name=name, source=source)
        out.append(outcome)
        out.append(
            _Family(
                "opentrunk_calls_started_total",
                "counter",
                "Calls that passed trunk identification.",
            ).add(self.calls_started)
        )
        out.append(
            _Family("opentrunk_active_calls", "gauge", "Calls in progress.").add(self.active_calls)
        )
        out.append(
            _Family(
                "opentrunk_calls_per_second", "gauge", "Calls started in the last complete second."
            ).add(self.calls_per_second())
        )
        requests = _Family("opentrunk_sip_requests_total", "counter", "SIP requests received.")
        for method, count in sorted(self.requests_by_method.items()):
            requests.add(count, method=method)
        out.append(requests)
        responses = _Family("opentrunk_sip_responses_total", "counter", "SIP responses sent.")
        for status, count in sorted(self.responses_by_code.items()):
            responses.add(count, code=str(status))
        out.append(responses)
        out.append(
            _Family("opentrunk_auth_failures_total", "counter", "Failed PBX authentications.").add(
                self.auth_failures
            )
        )
        out.append(
            _Family("opentrunk_lockouts_total", "counter", "Source addresses locked out.").add(
                self.lockouts
            )
        )
        for name, help_text, value in (
            (
                "opentrunk_media_srtp_failures_total",
                "SRTP/SRTCP packets dropped (authentication or replay check failed).",
                self.media_srtp_failures,
            ),
            (
                "opentrunk_media_foreign_packets_total",
                "Media packets dropped for coming from an unexpected address.",
                self.media_foreign_dropped,
            ),
            (
                "opentrunk_media_rtp_timeouts_total",
                "Calls ended because a stream went silent (3020).",
                self.media_rtp_timeouts,
            ),
        ):
            out.append(_Family(name, "counter", help_text).add(value))
        guard = self._overload
        if guard is not None:
            overload: tuple[tuple[str, str, str, float], ...] = (
                (
                    "opentrunk_overloaded",
                    "gauge",
                    "1 while new calls are refused (4330).",
                    1 if guard.overloaded() else 0,
                ),
                (
                    "opentrunk_overload_refused_total",
                    "counter",
                    "New calls refused because the edge was overloaded (503, 4330).",
                    guard.refused,
                ),
                (
                    "opentrunk_event_loop_lag_seconds",
                    "gauge",
                    "How late the edge's event loop ran its last overload check.",
                    guard.lag,
                ),
                (
                    "opentrunk_sip_receive_queue_fill",
                    "gauge",
                    "How full the SIP UDP receive queue was at the last overload check (0-1).",
                    guard.queue_fill,
                ),
            )
            for name, kind, help_text, figure in overload:
                out.append(_Family(name, kind, help_text).add(figure))
        if self._transactions is not None:
            out.append(
                _Family("opentrunk_sip_transactions_active", "gauge", "Live SIP transactions.").add(
                    self._transactions()
                )
            )
        if self._endpoint is not None:
            for key, value in sorted(self._endpoint.stats.as_dict().items()):
                out.append(
                    _Family(
                        f"opentrunk_sip_transport_{key}_total",
                        "counter",
                        f"Transport counter {key.replace('_', ' ')}.",
                    ).add(value)
                )
        if self._recorder is not None:
            for key, value in sorted(self._recorder.stats().items()):
                kind = "gauge" if key in ("pending", "open") else "counter"
                name = f"opentrunk_call_records_{key}" + ("_total" if kind == "counter" else "")
                out.append(
                    _Family(name, kind, f"Call recorder {key.replace('_', ' ')}.").add(value)
                )
        return out

    def render(self) -> str:
        """The Prometheus text format of every figure, ending with a newline."""
        lines: list[str] = []
        for family in self.families():
            lines.extend(family.lines())
        return "\n".join(lines) + "\n"


# The edge of this process, for the `/metrics` route (the API app and the SIP edge run in
# one process but are built separately; the edge registers itself when it starts).
_current: EdgeMetrics | None = None


def set_current(metrics: EdgeMetrics | None) -> None:
    global _current
    _current = metrics


def current() -> EdgeMetrics | None:
    return _current


def render_current(extra: Any = None) -> str:
    """What `/metrics` serves: the running edge's figures, or `opentrunk_edge_up 0`."""
    metrics = extra if isinstance(extra, EdgeMetrics) else _current
    up = _Family("opentrunk_edge_up", "gauge", "1 when the SIP edge runs in this process.")
    up.add(0 if metrics is None else 1)
    head = "\n".join(up.lines()) + "\n"
    return head if metrics is None else head + metrics.render()
