"""`SipEdge`: the SIP side of `opentrunk serve`, wiring the endpoint (UDP and TCP, TLS
when configured) to the store's configuration, the call recorder, the metrics, the
limits and the B2BUA, and dispatching every request that reaches it.

Dispatch (`_on_request`):
- a request with a To tag belongs to a dialog: `b2bua.dispatch_in_dialog` (481 when no
  call has it); ACKs end there too;
- Max-Forwards 0 on an INVITE: 483 (4380); an INVITE carrying one of the edge's own Via
  sent-by addresses came back to us: 482 (4370) (`hop_refusal`). For a trunk domain the
  `OutboundCall` applies it once the trunk is known and the PBX authenticated, so the
  refusal is recorded in the trunk's account; otherwise no record is written;
- INVITE for a trunk domain (`{trunk_id}.{sip domain}`): `outbound.take_invite` (a new
  `outbound.OutboundCall`, or the 407 challenge at once);
  any other INVITE: a new `inbound.InboundCall` (403 unless its source is a carrier's);
- OPTIONS: 200 with Allow (keep-alive), at most `options_rate` per second per source
  (`keepalive.OptionsLimiter`, 503 beyond); CANCEL is answered by the endpoint itself;
- REFER inside a call goes to `refer.handle_refer` (transfers, via the registry's
  `on_refer`); outside a call it gets 481;
- any other method: 405 with Allow.

Lifecycle: `start()` recovers records left open by a crash, starts the recorder, the
media backend (`opentrunk.media`, chosen by `OPENTRUNK_MEDIA_BACKEND`) and the listeners
(TLS on `sip_tls`, default port 5061 on the SIP host, whenever a certificate and key are
configured); `stop()` ends live calls (BYE both legs, code 5250: the edge is going away),
closes the media backend (every port freed), flushes the recorder and closes the
listeners. A stream the media backend reports silent past `rtp_timeout` ends its call
with 3020 rtp_timeout (`_on_rtp_timeout`). `run_edge` is the `serve` service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from opentrunk.config import Settings, node_id_of, split_host_port
from opentrunk.domain.hangup_codes import crash_recovery, refusal, rtp_timeout
from opentrunk.domain.limits import CallAdmission, LimitStore, MemoryLimitStore, RedisLimitStore
from opentrunk.edge.auth import TrunkAuthenticator
from opentrunk.edge.b2bua import CallRegistry, dispatch_in_dialog, hang_up
from opentrunk.edge.bridge import reason_header
from opentrunk.edge.config import EdgeConfig, trunk_id_of_host
from opentrunk.edge.gc_policy import RollingFreeze, apply_serving_policy
from opentrunk.edge.inbound import InboundCall
from opentrunk.edge.keepalive import OptionsLimiter
from opentrunk.edge.lockout import SourceLockout
from opentrunk.edge.logs import event, set_call_uuid
from opentrunk.edge.metrics import EdgeMetrics, set_current
from opentrunk.edge.outbound import ALLOW, take_invite
from opentrunk.edge.overload import RETRY_AFTER, OverloadGuard
from opentrunk.edge.records import CallRecorder
from opentrunk.edge.refer import handle_refer
from opentrunk.edge.session_timer import SessionTimers
from opentrunk.media import MediaBackend, MediaTimeout, create_media_backend
from opentrunk.sip.errors import SipParseError
from opentrunk.sip.extensions import unsupported_required
from opentrunk.sip.message import Request
from opentrunk.sip.timers import TimerConfig
from opentrunk.sip.uri import SipURI
from opentrunk.store.store import Store
from opentrunk.transport.base import same_host
from opentrunk.transport.dns import SipLocator
from opentrunk.transport.endpoint import IncomingRequest, SipEndpoint
from opentrunk.transport.udp import UdpTransport

log = logging.getLogger(__name__)

# Concurrent-call slots are leases (domain/limits.py); live calls renew theirs this often.
LEASE_RENEW_EVERY = 600.0
# At stop, how long the hung-up calls' closing work may take before it is cancelled.
STOP_GRACE = 2.0


class SipEdge:
    """One edge process: see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        limit_store: LimitStore | None = None,
        config: EdgeConfig | None = None,
        media: MediaBackend | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.endpoint = SipEndpoint(
            handler=self._on_request,
            advertised=settings.advertised_address or None,
            timers=TimerConfig(t1=settings.sip_t1),
        )
        self.config = config or EdgeConfig(store, settings)
        self.node = node_id_of(settings)
        self.recorder = CallRecorder(store, node=self.node)
        self.metrics = EdgeMetrics()
        self.metrics.bind(
            endpoint=self.endpoint,
            recorder=self.recorder,
            transactions=lambda: len(self.endpoint.layer),
        )
        if limit_store is None:
            limit_store = self._limit_store(settings, self.node)
        self.admission = CallAdmission(limit_store)
        self.authenticator = TrunkAuthenticator()
        self.lockout = SourceLockout(
            max_failures=settings.lockout_failures,
            window=settings.lockout_window,
            duration=settings.lockout_duration,
        )
        self.overload = OverloadGuard(settings.overload_lag)
        self.metrics.bind_overload(self.overload)
        self.registry = CallRegistry()
        self.locator = SipLocator()
        self.carrier_timeout = settings.carrier_timeout
        self.ring_timeout = settings.ring_timeout
        self.origination_timeout = settings.origination_timeout
        self.origination_provisional_timeout = settings.origination_provisional_timeout
        self.options_limiter = OptionsLimiter(settings.options_rate)
        self.session_timers = SessionTimers(
            lambda call, end: hang_up(self.endpoint, call, None, end)
        )
        self.registry.on_relayed = self.session_timers.request_answered
        self.registry.on_refer = lambda call, side, incoming: handle_refer(
            self, call, side, incoming
        )
        # Every call's media is anchored here (docs/media.md "Media anchoring in calls").
        self.media: MediaBackend = media or create_media_backend(settings)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renewer: asyncio.Task[None] | None = None

    @staticmethod
    def _limit_store(settings: Settings, node: str) -> LimitStore:
        if settings.redis_url:
            from redis.asyncio import Redis

            return RedisLimitStore(Redis.from_url(settings.redis_url), node=node)
        return MemoryLimitStore()

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        await self.recorder.recover_open_calls()
        # The previous process's shared concurrent-call slots go with its records.
        await self.admission.release_node(self.node)
        await self.recorder.start()
        await self.media.start()
        self.media.set_timeout_handler(self._on_rtp_timeout)
        host, port = self.settings.sip_host_port
        udp = await self.endpoint.listen("udp", host, port)
        if isinstance(udp, UdpTransport):
            self.overload.watch_queue(udp.queue_fill)
        # TCP on the same port as UDP (RFC 3261 18): with port 0, the one UDP got.
        await self.endpoint.listen("tcp", host, port or udp.local_address.port)
        if self.settings.tls_cert and self.settings.tls_key:
            tls_host, tls_port = split_host_port(self.settings.sip_tls or host, 5061)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
            await self.endpoint.listen("tls", tls_host, tls_port, server_ssl=context)
        set_current(self.metrics)
        self.overload.start()
        self._renewer = asyncio.create_task(self._renew_leases(), name="edge-leases")

    async def stop(self) -> None:
        self.overload.stop()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        for call in list(self.registry.calls.values()):
            hang_up(self.endpoint, call, None, crash_recovery())
        # The calls' closing work runs in spawned tasks (media released, then the record
        # closed with the stream figures): let it finish, bounded, before cancelling
        # what is left, or the records of the calls just hung up would stay open. It
        # also gives the BYEs a moment on the wire before the sockets close.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=STOP_GRACE)
        for task in list(self._tasks):
            task.cancel()
        self.media.set_timeout_handler(None)
        with contextlib.suppress(Exception):
            await self.media.close()
        await self.recorder.stop()
        await self.endpoint.close()
        set_current(None)

    def address(self, transport: str = "udp") -> tuple[str, int]:
        local = self.endpoint.local_address(transport)
        return local.host, local.port

    # -- media ----------------------------------------------------------------------

    def _on_rtp_timeout(self, timeout: MediaTimeout) -> None:
        """A stream went silent past `rtp_timeout`: end its call, 3020 by the edge."""
        call = self.registry.calls.get(timeout.call_id)
        if call is None:
            return
        set_call_uuid(timeout.call_id)
        event(log, logging.INFO, "rtp timeout", leg=timeout.leg, silent_for=timeout.silent_for)
        self.metrics.rtp_timed_out()
        hang_up(self.endpoint, call, None, rtp_timeout())

    # -- limits ----------------------------------------------------------------------

    def release_slot(self, account_id: str, call_uuid: str) -> None:
        self._spawn(self.admission.release(account_id, call_uuid))

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_RENEW_EVERY)
            for call_uuid, call in list(self.registry.calls.items()):
                if call.account_id is not None:
                    with contextlib.suppress(Exception):
                        await self.admission.renew(call.account_id, call_uuid)

    def spawn(self, work: Any) -> None:
        """Run `work` in the background, kept until done (cancelled at stop)."""
        self._spawn(work)

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- dispatch --------------------------------------------------------------------

    def _on_request(self, incoming: IncomingRequest) -> Any:
        request = incoming.request
        method = request.method
        self.metrics.request_received(method)
        try:
            in_dialog = method == "ACK" or bool(request.to.tag)
        except SipParseError:
            return None
        bad_extensions = unsupported_required(request)
        if bad_extensions:
            # RFC 3261 8.2.2.3 (e.g. Require: 100rel): nothing else is looked at, and no
            # call or record is made, as for a request the parser refuses.
            return self._answer(incoming, 420, (("Unsupported", ", ".join(bad_extensions)),))
        if in_dialog:
            return dispatch_in_dialog(self.endpoint, self.registry, incoming)
        if method == "INVITE":
            if self.overload.overloaded():
                return self._refuse_overloaded(incoming)
            if self._for_trunk_domain(request):
                return take_invite(self, incoming)
            hops = self.hop_refusal(incoming)
            if hops is not None:
                return self._answer(incoming, hops)
            # Not for a trunk domain: an inbound call, if the source is a carrier's.
            return InboundCall(self, incoming).run()
        if method == "OPTIONS":
            if not self.options_limiter.allow(incoming.source.host):
                return self._answer(incoming, 503, (("Retry-After", "1"),))
            return self._answer(incoming, 200, (("Allow", ALLOW), ("Accept", "application/sdp")))
        if method == "REFER":  # a transfer needs a call; outside one there is none
            return self._answer(incoming, 481)
        return self._answer(incoming, 405, (("Allow", ALLOW),))

    def _refuse_overloaded(self, incoming: IncomingRequest) -> None:
        """503 with Retry-After for a new call while the edge is overloaded (4330): no
        trunk lookup, no record, as little work as an answer can be (edge/overload.py)."""
        self.overload.refuse()
        end = refusal(4330, "edge overloaded")
        headers = (("Retry-After", str(RETRY_AFTER)), ("Reason", reason_header(end)))
        self._answer(incoming, end.sip_status or 503, headers)

    def _answer(
        self, incoming: IncomingRequest, status: int, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        if incoming.respond(status, headers=headers) is not None:
            self.metrics.response_sent(status)

    def _for_trunk_domain(self, request: Request) -> bool:
        """Is the Request-URI host `{trunk_id}.{sip domain}` (an outbound call)?"""
        uri = request.uri
        if not isinstance(uri, SipURI):
            return False
        return trunk_id_of_host(uri.host_bare, self.config.sip_domain) is not None

    def hop_refusal(self, incoming: IncomingRequest) -> int | None:
        """483 for an INVITE out of hops (Max-Forwards 0), 482 for one that came back
        to the edge (a loop), None when it may go on."""
        if incoming.request.max_forwards == 0:
            return 483
        if self._looped(incoming):
            return 482
        return None

    def _looped(self, incoming: IncomingRequest) -> bool:
        """Does the INVITE carry a Via the edge itself added (it went round to us)?"""
        ours = [t.sent_by for t in self.endpoint.transports.values()]
        for via in incoming.request.vias:
            host, port = via.sent_by
            for our_host, our_port in ours:
                if (port or 5060) == our_port and same_host(host, our_host):
                    return True
        return False


async def run_edge(settings: Settings, store: Store) -> None:
    """The `serve` service: run the SIP edge until cancelled."""
    from opentrunk.cli.serve import announce

    edge = SipEdge(settings, store)
    await edge.start()
    # Startup is done: freeze its heap, tune the collector for serving, and keep live
    # call state out of its scans from now on (gc_policy).
    apply_serving_policy()
    freezer = asyncio.create_task(
        RollingFreeze(
            busy=edge.overload.overloaded,
            load=lambda: len(edge.endpoint.layer) + len(edge.registry),
        ).run(),
        name="gc-rolling-freeze",
    )
    for name, transport in edge.endpoint.transports.items():
        local = transport.local_address
        announce(f"SIP edge on {name} {local.host}:{local.port}")
    try:
        await asyncio.Event().wait()
    finally:
        freezer.cancel()
        await edge.stop()
