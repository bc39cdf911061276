"""Fixtures for the gateway door tests: the mesh-authz binary and the rendered chart, shared with
tests/chart through its chart_helpers module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))

from chart_helpers import mesh_authz_bin  # noqa: E402


@pytest.fixture(scope="session")
def binary() -> Path:
    """The mesh-authz binary; the test fails (never skips) when it is missing."""
    path = mesh_authz_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"mesh-authz binary not found at {path}: run `cargo build --bin mesh-authz` "
            "or set MESH_AUTHZ_BIN"
        )
    return path
