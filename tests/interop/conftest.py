"""Fixtures for interoperability tests against real sipp."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture
def sipp() -> str:
    """Path of the sipp binary; skip without it (a failure under CI=true)."""
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI requires sipp (Debian package sip-tester)")
        pytest.skip("sipp is not installed (Debian package sip-tester)")
    return path
