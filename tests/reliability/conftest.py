"""Fixtures for fault-injection tests: a `Cluster` of real processes on loopback, always stopped.

Sizes: the CI runs small counts; `CVCO_FULL_RELIABILITY=1` runs the full-size versions (e.g. 2,000
notifications through worker crashes) with the same code.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.processes import Cluster

FULL = os.environ.get("CVCO_FULL_RELIABILITY") == "1"


def scale(ci: int, full: int) -> int:
    """The count for this run: `full` when CVCO_FULL_RELIABILITY=1, else `ci`."""
    return full if FULL else ci


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """An empty cluster in the test's directory; every process it started is killed at the end."""
    with Cluster(tmp_path) as running:
        yield running
