"""Fixtures for the Helm chart tests; the helpers are in chart_helpers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import helm_python as helm
import pytest

# The test modules import chart_helpers whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from chart_helpers import CHART_DIR, mesh_authz_bin  # noqa: E402


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


@pytest.fixture(scope="session")
def chart():
    """The chart, loaded by Helm's own loader."""
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded
