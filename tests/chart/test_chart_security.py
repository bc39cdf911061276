"""The pod runs locked down: non-root, read-only root filesystem, no capabilities, seccomp
RuntimeDefault, no service-account token, resources set; the image defaults to appVersion."""

from __future__ import annotations

import yaml

from chart_helpers import CHART_DIR, objects, one, render


def pod_spec(chart, values=None):
    return one(objects(render(chart, values)), "Deployment")["spec"]["template"]["spec"]


def test_pod_security(chart):
    spec = pod_spec(chart)
    assert spec["automountServiceAccountToken"] is False
    psc = spec["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = spec["containers"]
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["privileged"] is False
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["runAsNonRoot"] is True
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]


def test_no_secret_material_in_the_configmap(chart):
    objs = objects(render(chart, {"redis": {"enabled": True, "existingSecret": "r"}}))
    text = one(objs, "ConfigMap")["data"]["config.yaml"]
    assert "redis://" not in text and "rediss://" not in text
    assert [o["kind"] for o in objs if o["kind"] == "Secret"] == [], "the chart must not create Secrets"


def test_service_account_token_is_not_mounted(chart):
    objs = objects(render(chart))
    assert one(objs, "ServiceAccount")["automountServiceAccountToken"] is False


def test_image_defaults_to_app_version(chart):
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    container = pod_spec(chart)["containers"][0]
    assert container["image"] == f"ghcr.io/mesh-authz/mesh-authz:{app_version}"
    assert container["args"] == ["serve", "--config", "/etc/mesh-authz/config/config.yaml"]
    tagged = pod_spec(chart, {"image": {"tag": "0.2.0-rc1"}})["containers"][0]["image"]
    assert tagged.endswith(":0.2.0-rc1")


def test_writable_tmp_only(chart):
    spec = pod_spec(chart)
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["/etc/mesh-authz/config"]["readOnly"] is True
    # A directory mount, so ConfigMap edits reach the running pod (a subPath mount is never updated).
    assert "subPath" not in mounts["/etc/mesh-authz/config"]
    writable = [p for p, m in mounts.items() if not m.get("readOnly")]
    assert writable == ["/tmp"]
