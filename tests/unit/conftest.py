"""Shared fixtures for the unit tests (no root, no namespaces)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for Unix sockets: AF_UNIX paths are limited to 107 bytes."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(prefix="vb") as d:
        yield Path(d)
