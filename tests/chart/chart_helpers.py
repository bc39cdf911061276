"""Helpers for the Helm chart tests: render with Helm's own engine, parse, run check-config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "mesh-authz"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RELEASE = "mesh-authz"
NAMESPACE = "mesh-authz"
# Kubernetes versions whose API schemas every rendered object must satisfy (1.30 is the chart's
# kubeVersion floor; the newest is what kubernetes-validate ships).
K8S_VERSIONS = ("1.30", "1.37")
# Kinds that are not part of Kubernetes itself, checked against a schema in schemas/ instead.
CRD_KINDS = {"ServiceMonitor": SCHEMAS / "servicemonitor.monitoring.coreos.com.v1.json"}


def mesh_authz_bin() -> Path:
    """The mesh-authz binary: $MESH_AUTHZ_BIN, else <repo>/target/debug/mesh-authz."""
    env = os.environ.get("MESH_AUTHZ_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "mesh-authz"


def render(chart, values: dict | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce."""
    return chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def objects(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object in the rendered manifests (NOTES.txt excluded)."""
    out = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append(doc)
    return out


def by_kind(objs: list[dict]) -> dict[str, list[dict]]:
    kinds: dict[str, list[dict]] = {}
    for o in objs:
        kinds.setdefault(o["kind"], []).append(o)
    return kinds


def one(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def config_of(objs: list[dict]) -> dict:
    """The mesh-authz config.yaml carried by the rendered ConfigMap, parsed."""
    return yaml.safe_load(one(objs, "ConfigMap")["data"]["config.yaml"])


def check_config(binary: Path, config_text: str, tmp_path: Path, env: dict | None = None):
    """Runs `mesh-authz check-config` on config_text; returns the CompletedProcess."""
    path = tmp_path / "config.yaml"
    path.write_text(config_text)
    # Only the variables we pass: a stray MESH_AUTHZ_* in the caller's environment must not leak in.
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESH_AUTHZ_")}
    clean.update(env or {})
    return subprocess.run(
        [str(binary), "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
    )
