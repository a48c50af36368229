"""Fixtures: one live `opentrunk serve` per test session (tests isolate themselves by
account and by a destination number of their own, which their carriers' prefix matches
exactly), and a scratch directory for sipp files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.harness import Api, EdgeProcess, sipp_binary


@pytest.fixture(scope="session")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    sipp_binary()  # skip the whole suite early without sipp
    with EdgeProcess(tmp_path_factory.mktemp("edge-data")) as process:
        yield process


@pytest.fixture(scope="session")
def api(edge: EdgeProcess) -> Iterator[Api]:
    with Api(edge.http_port) as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
