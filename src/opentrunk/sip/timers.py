"""RFC 3261 transaction timer values (section 17, table 4) and RFC 6026 timers L and M.

`TimerConfig` holds T1 (RTT estimate), T2 (maximum retransmit interval for non-INVITE
requests and INVITE responses) and T4 (maximum time a message stays in the network),
and derives every timer from them. Reliable transports (TCP, TLS) get no
retransmission timers (A, E, G) and zero for D, I, J and K, as the RFC prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_TIMERS", "TimerConfig"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Base timer values in seconds; the properties are the RFC timers."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # RFC 3261 17.2.1: send 100 Trying unless the TU answers within 200 ms.
    trying_delay: float = 0.2

    @property
    def timeout(self) -> float:
        """64*T1: timers B, F, H, J (unreliable), L and M."""
        return 64 * self.t1

    def a(self) -> float:
        """Initial INVITE retransmit interval (doubles each time)."""
        return self.t1

    def b(self) -> float:
        return self.timeout

    def d(self, reliable: bool) -> float:
        """Wait for response retransmissions after a non-2xx final: > 32 s or 0."""
        return 0.0 if reliable else max(32.0, self.timeout)

    def e(self, interval: float) -> float:
        """Next non-INVITE retransmit interval: doubling, capped at T2."""
        return min(2 * interval, self.t2)

    def f(self) -> float:
        return self.timeout

    def g(self, interval: float) -> float:
        """Next INVITE final-response retransmit interval: doubling, capped at T2."""
        return min(2 * interval, self.t2)

    def h(self) -> float:
        return self.timeout

    def i(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def j(self, reliable: bool) -> float:
        return 0.0 if reliable else self.timeout

    def k(self, reliable: bool) -> float:
        return 0.0 if reliable else self.t4

    def l(self) -> float:  # noqa: E743 - the RFC's name for it
        """RFC 6026 Timer L: INVITE server transaction stays in Accepted."""
        return self.timeout

    def m(self) -> float:
        """RFC 6026 Timer M: INVITE client transaction stays in Accepted."""
        return self.timeout


DEFAULT_TIMERS = TimerConfig()
