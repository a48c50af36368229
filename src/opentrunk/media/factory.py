"""Choose and build the media backend from settings (OPENTRUNK_MEDIA_*)."""

from __future__ import annotations

import socket

from opentrunk.config import Settings, split_host_port
from opentrunk.media.backend import MediaBackend
from opentrunk.media.port_pool import parse_port_range
from opentrunk.media.relay import RelayConfig, RtpRelay
from opentrunk.media.relay_process import RelayProcess
from opentrunk.media.rtpengine import RtpengineBackend

__all__ = ["create_media_backend", "relay_config"]

_WILDCARDS = ("0.0.0.0", "::", "")


def _primary_address(family: int) -> str:
    """The address the host would use towards the outside; loopback if it has no route.

    A UDP connect sends nothing; it only asks the kernel to choose a source address.
    """
    probe, fallback = (
        ("192.0.2.1", "127.0.0.1") if family == socket.AF_INET else ("2001:db8::1", "::1")
    )
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
        except OSError:
            return fallback


def relay_config(settings: Settings) -> RelayConfig:
    low, high = parse_port_range(settings.media_ports)
    bind = settings.media_address or settings.sip_host_port[0]
    advertised = settings.advertised_address
    if not advertised and bind in _WILDCARDS:
        advertised = _primary_address(socket.AF_INET6 if bind == "::" else socket.AF_INET)
    if not 0 <= settings.media_realtime_priority <= 99:
        raise ValueError(
            f"media_realtime_priority {settings.media_realtime_priority}: use 0 (normal) to 99"
        )
    return RelayConfig(
        bind_address=bind or "0.0.0.0",
        advertised_address=advertised,
        port_min=low,
        port_max=high,
        rtp_timeout=settings.rtp_timeout,
        realtime_priority=settings.media_realtime_priority,
    )


def create_media_backend(settings: Settings) -> MediaBackend:
    """The backend `settings.media_backend` names; call `start()` on it before use."""
    if settings.media_backend == "relay":
        return RtpRelay(relay_config(settings))
    if settings.media_backend == "relay-process":
        return RelayProcess(relay_config(settings))
    if settings.media_backend == "rtpengine":
        host, port = split_host_port(settings.rtpengine_ng, 2223)
        return RtpengineBackend(host, port, rtp_timeout=settings.rtp_timeout)
    raise ValueError(
        f"unknown media backend {settings.media_backend!r}: use relay, relay-process or rtpengine"
    )
