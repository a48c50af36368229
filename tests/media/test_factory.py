"""Backend selection from settings; both backends satisfy the MediaBackend protocol."""

from __future__ import annotations

import pytest

from opentrunk.config import load_settings
from opentrunk.media import MediaBackend, create_media_backend
from opentrunk.media.relay import RtpRelay
from opentrunk.media.relay_process import RelayProcess
from opentrunk.media.rtpengine import RtpengineBackend


def test_relay_process_is_the_default() -> None:
    settings = load_settings(env={"OPENTRUNK_SIP": "127.0.0.1:5070"})
    backend = create_media_backend(settings)
    assert isinstance(backend, RelayProcess)
    assert (backend.config.port_min, backend.config.port_max) == (10000, 20000)
    assert backend.config.rtp_timeout == 60.0
    assert backend.config.sdp_address == "127.0.0.1"


def test_settings_from_environment() -> None:
    settings = load_settings(
        env={
            "OPENTRUNK_MEDIA_BACKEND": "relay",
            "OPENTRUNK_MEDIA_PORTS": "30000-30100",
            "OPENTRUNK_MEDIA_ADDRESS": "0.0.0.0",
            "OPENTRUNK_ADVERTISED_ADDRESS": "203.0.113.5",
            "OPENTRUNK_RTP_TIMEOUT": "15",
        }
    )
    relay = create_media_backend(settings)
    assert isinstance(relay, RtpRelay)
    assert relay.config.bind_address == "0.0.0.0"
    assert relay.config.sdp_address == "203.0.113.5"
    assert relay.config.rtp_timeout == 15.0
    assert relay.pool.capacity == 50
    wildcard = create_media_backend(
        load_settings(env={"OPENTRUNK_MEDIA_BACKEND": "relay", "OPENTRUNK_SIP": "0.0.0.0:5060"})
    )
    assert isinstance(wildcard, RtpRelay)
    assert wildcard.config.sdp_address not in ("0.0.0.0", "")


def test_rtpengine_selected_by_configuration() -> None:
    settings = load_settings(
        env={"OPENTRUNK_MEDIA_BACKEND": "rtpengine", "OPENTRUNK_RTPENGINE_NG": "127.0.0.1:2299"}
    )
    backend = create_media_backend(settings)
    assert isinstance(backend, RtpengineBackend)
    assert backend.ng.address == ("127.0.0.1", 2299)
    with pytest.raises(ValueError):
        create_media_backend(load_settings(env={"OPENTRUNK_MEDIA_BACKEND": "nope"}))


def test_both_backends_fit_the_interface() -> None:
    relay: MediaBackend = RtpRelay()
    engine: MediaBackend = RtpengineBackend("127.0.0.1", 2223)
    for backend in (relay, engine):
        for name in ("start", "close", "offer", "answer", "delete", "stats"):
            assert callable(getattr(backend, name))
