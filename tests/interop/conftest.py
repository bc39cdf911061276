"""Fixtures for the interop tests; the process helpers are in harness.py, the table in cases.py."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

# The test modules import harness, cases and producers whatever pytest's import mode is.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import NODE_DIR, mesh_authz_bin  # noqa: E402


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
def node_packages() -> Path:
    """node and tests/interop/node/node_modules; fails (never skips) when missing."""
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the interop tests need node (see .ci/run)")
    for pkg in ("jose", "oidc-provider"):
        if not (NODE_DIR / "node_modules" / pkg / "package.json").is_file():
            pytest.fail(f"node package {pkg} missing: run `npm ci --prefix tests/interop/node`")
    return NODE_DIR
