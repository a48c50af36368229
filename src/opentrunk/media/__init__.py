"""Media anchoring: the embedded RTP relay, the rtpengine client, and stream quality.

The edge uses `create_media_backend(settings)` and the `MediaBackend` interface only.
"""

from opentrunk.media.backend import (
    CallQuality,
    Leg,
    MediaBackend,
    MediaError,
    MediaSdpError,
    MediaTimeout,
    PortsExhausted,
    StreamQuality,
)
from opentrunk.media.factory import create_media_backend

__all__ = [
    "CallQuality",
    "Leg",
    "MediaBackend",
    "MediaError",
    "MediaSdpError",
    "MediaTimeout",
    "PortsExhausted",
    "StreamQuality",
    "create_media_backend",
]
