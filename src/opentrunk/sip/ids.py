"""Random identifiers for branches and tags, from the OS's random source in batches.

Branch parameters (RFC 3261 8.1.1.7) and From/To tags (19.3) must be unique, and
unguessable ones keep an off-path attacker from matching forged responses to our
transactions. `os.urandom` gives that, but one system call per identifier costs more
than the identifier's other work; reading 4 KiB at a time and slicing costs the same
randomness with one call per few hundred identifiers. Not thread-safe (one event loop).
"""

from __future__ import annotations

import os

_BATCH = 4096
_pool = b""
_at = 0


def random_hex(nbytes: int) -> str:
    """`nbytes` random octets as lower-case hex (2 * nbytes characters)."""
    global _pool, _at
    end = _at + nbytes
    if end > len(_pool):
        _pool = os.urandom(_BATCH)
        _at, end = 0, nbytes
    chunk = _pool[_at:end]
    _at = end
    return chunk.hex()
