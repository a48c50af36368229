"""Transport tests: make tests/netns.py importable and register its `netns` fixture."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from netns import netns  # noqa: E402,F401  (a fixture, registered by import)
