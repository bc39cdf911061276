"""The chart renders, for the default values and realistic value sets, into objects that validate
against Kubernetes 1.30+ schemas, with a config.yaml that `mesh-authz check-config` accepts."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from chart_helpers import (
    CRD_KINDS,
    K8S_VERSIONS,
    NAMESPACE,
    RELEASE,
    by_kind,
    check_config,
    config_of,
    objects,
    one,
    render,
)

FULLNAME = "mesh-authz"  # the release name contains the chart name
REDIS_URL_ENV = "MESH_AUTHZ_REVOCATION__REDIS__URL"
# mesh-authz on this branch refuses store: redis ("not available in this version") until the Redis
# store lands; that one message is tolerated for the redis value set, every other error fails.
REDIS_NOT_YET = "revocation.store: redis is not available in this version; use memory"


@pytest.fixture(scope="session")
def files(tmp_path_factory, binary) -> Path:
    """Real files for the paths the TLS and JWKS value sets point the config at."""
    root = tmp_path_factory.mktemp("mounts")
    tls = root / "tls"
    tls.mkdir()
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the TLS test certificate")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=mesh-authz.mesh-authz.svc", "-keyout", str(tls / "tls.key"),
         "-out", str(tls / "tls.crt")],
        check=True, capture_output=True, timeout=60,
    )
    shutil.copy(tls / "tls.crt", tls / "ca.crt")
    jwks = root / "jwks"
    subprocess.run(
        [str(binary), "keygen", "--alg", "RS256", "--bits", "2048", "--kid", "corp-1", "--out", str(jwks)],
        check=True, capture_output=True, timeout=60,
    )
    assert (jwks / "jwks.json").is_file()
    return root


def value_sets(files: Path) -> dict[str, dict]:
    corp = {
        "name": "corp",
        "issuer": "https://login.corp.example",
        "audiences": ["orders-api"],
        "jwks": {"file": f"{files}/jwks/jwks.json", "refresh_interval": "1m", "min_refetch_interval": "10s"},
        "algorithms": ["RS256", "ES256"],
        "claims_to_headers": {"sub": "x-auth-subject", "scope": "x-auth-scope"},
        "max_token_lifetime": "1h",
    }
    rules = [
        {"name": "health", "match": {"path_prefix": "/healthz"}, "allow_anonymous": True},
        {"name": "admin", "match": {"path_prefix": "/admin", "methods": ["POST", "DELETE"]},
         "require": {"spiffe_ids": ["spiffe://cluster.local/ns/ops/sa/admin"], "scopes": ["admin"]}},
        {"name": "api", "match": {"path_prefix": "/"}, "require": {"token": True, "peer": True}},
    ]
    netpol = {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"istio-injection": "enabled"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ],
    }
    return {
        "default": {},
        "redis": {"redis": {"enabled": True, "existingSecret": "mesh-authz-redis", "urlKey": "url"}},
        "tls": {"tls": {"enabled": True, "existingSecret": "mesh-authz-tls", "requireClientCert": True,
                        "mountPath": f"{files}/tls"}},
        "jwks-file": {"jwks": {"existingSecret": "corp-jwks", "mountPath": f"{files}/jwks"},
                      "config": {"providers": [corp], "rules": rules}},
        "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        "ha": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12},
               "podDisruptionBudget": {"maxUnavailable": 1}},
        "netpol": {"networkPolicy": netpol},
        "production": {
            "image": {"digest": "sha256:" + "ab" * 32},
            "config": {"providers": [corp], "rules": rules,
                       "identity": {"trust_domains": ["prod.example"]},
                       "limits": {"max_token_bytes": 4096}},
            "jwks": {"existingSecret": "corp-jwks", "mountPath": f"{files}/jwks"},
            "tls": {"enabled": True, "existingSecret": "mesh-authz-tls", "mountPath": f"{files}/tls"},
            "redis": {"enabled": True, "existingSecret": "mesh-authz-redis"},
            "serviceMonitor": {"enabled": True},
            "autoscaling": {"enabled": True},
            "networkPolicy": netpol,
            "priorityClassName": "system-cluster-critical",
            "extraEnv": [{"name": "MESH_AUTHZ_LOGGING__LEVEL", "value": "info"}],
        },
    }


SET_NAMES = ["default", "redis", "tls", "jwks-file", "monitoring", "ha", "netpol", "production"]


@pytest.fixture(scope="session")
def rendered_sets(chart, files) -> dict[str, tuple[dict, dict[str, str], list[dict]]]:
    out = {}
    for name, values in value_sets(files).items():
        text = render(chart, values)
        out[name] = (values, text, objects(text))
    return out


def test_value_set_list_is_complete(files):
    assert sorted(value_sets(files)) == sorted(SET_NAMES)


@pytest.mark.parametrize("name", SET_NAMES)
def test_objects_validate_against_kubernetes_schemas(rendered_sets, name):
    _, _, objs = rendered_sets[name]
    assert objs, "nothing rendered"
    for obj in objs:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"].get("namespace") == NAMESPACE, where
        if obj["kind"] in CRD_KINDS:
            schema = json.loads(CRD_KINDS[obj["kind"]].read_text())
            jsonschema.validate(obj, schema)
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:  # pragma: no cover - failure path
                pytest.fail(f"{where} is invalid for Kubernetes {version}: {e.message}")


@pytest.mark.parametrize("name", SET_NAMES)
def test_rendered_config_passes_check_config(rendered_sets, binary, tmp_path, name):
    values, _, objs = rendered_sets[name]
    text = one(objs, "ConfigMap")["data"]["config.yaml"]
    env = {}
    if values.get("redis", {}).get("enabled"):
        # In the pod the URL comes from the Secret through this variable (secretKeyRef).
        env[REDIS_URL_ENV] = "redis://redis-master.redis.svc:6379"
    proc = check_config(binary, text, tmp_path, env)
    errors = [line.strip() for line in proc.stderr.splitlines() if line.startswith("  ")]
    if env and proc.returncode != 0 and errors == [REDIS_NOT_YET]:
        return
    assert proc.returncode == 0, f"check-config refused the {name} config:\n{proc.stderr}\n---\n{text}"
    assert "OK" in proc.stderr


def test_redis_url_comes_only_from_the_environment(rendered_sets, binary, tmp_path):
    """Without the Secret's variable the config lacks a URL: the ConfigMap never holds it."""
    _, _, objs = rendered_sets["redis"]
    config = config_of(objs)
    assert config["revocation"]["store"] == "redis"
    assert "url" not in config["revocation"]["redis"]
    assert config["revocation"]["redis"]["key_prefix"] == "mesh-authz:"
    proc = check_config(binary, yaml.safe_dump(config), tmp_path)
    assert proc.returncode != 0
    assert "revocation.redis: one of url, cluster_nodes is required" in proc.stderr
    deployment = one(objs, "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{
        "name": REDIS_URL_ENV,
        "valueFrom": {"secretKeyRef": {"name": "mesh-authz-redis", "key": "url"}},
    }]


def test_defaults_render_the_expected_objects(rendered_sets):
    _, rendered, objs = rendered_sets["default"]
    kinds = by_kind(objs)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    assert all(len(v) == 1 for v in kinds.values())
    assert one(objs, "Deployment")["metadata"]["name"] == FULLNAME
    assert one(objs, "Deployment")["spec"]["replicas"] == 2
    notes = rendered["mesh-authz/templates/NOTES.txt"]
    assert f"{FULLNAME}.{NAMESPACE}.svc.cluster.local:9001" in notes
    assert "WARNING" in notes and "example" in notes


def test_default_config_demands_a_token_and_denies_by_default(rendered_sets):
    config = config_of(rendered_sets["default"][2])
    assert config["server"] == {"grpc_addr": "0.0.0.0:9001", "http_addr": "0.0.0.0:9002"}
    assert config["default_action"] == "deny"
    [provider] = config["providers"]
    assert set(provider["jwks"]) >= {"uri"} and "file" not in provider["jwks"]
    assert provider["jwks"]["uri"].startswith("https://")
    assert config["rules"], "no rules"
    for rule in config["rules"]:
        assert not rule.get("allow_anonymous", False), rule
        assert rule.get("require", {}).get("token", True) is True, rule
    assert config["identity"]["trust_xfcc"] is False
    assert "xfcc" not in config["identity"]["sources"]
    assert config["revocation"] == {"store": "memory", "on_error": "deny"}


def test_server_addresses_follow_the_ports(chart):
    objs = objects(render(chart, {"ports": {"grpc": 7001, "http": 7002}}))
    config = config_of(objs)
    assert config["server"]["grpc_addr"] == "0.0.0.0:7001"
    assert config["server"]["http_addr"] == "0.0.0.0:7002"
    ports = {p["name"]: p["containerPort"] for p in one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports == {"grpc": 7001, "http": 7002}
    svc = {p["name"]: p["port"] for p in one(objs, "Service")["spec"]["ports"]}
    assert svc == {"grpc": 7001, "http": 7002}


def test_user_server_settings_are_kept_but_addresses_are_the_charts(chart):
    config = config_of(objects(render(chart, {"config": {"server": {"shutdown_grace": "20s"}}})))
    assert config["server"] == {"shutdown_grace": "20s", "grpc_addr": "0.0.0.0:9001", "http_addr": "0.0.0.0:9002"}


@pytest.mark.parametrize(
    ("cpu", "threads"),
    [(None, None), ("500m", 1), ("1000m", 1), ("1500m", 2), ("2", 2), (2, 2), (1.5, 2), (4, 4), ("250m", 1)],
)
def test_worker_threads_follow_the_cpu_limit(chart, binary, tmp_path, cpu, threads):
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    if cpu is not None:
        resources["limits"]["cpu"] = cpu
    text = render(chart, {"resources": resources})
    objs = objects(text)
    config = config_of(objs)
    assert config["server"].get("worker_threads") == threads
    limits = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("cpu") == cpu
    config_text = one(objs, "ConfigMap")["data"]["config.yaml"]
    out = check_config(binary, config_text, tmp_path)
    assert out.returncode == 0, out.stderr
    if threads is not None:
        assert f"worker_threads: {threads}" in out.stdout


def test_explicit_worker_threads_win_over_the_cpu_limit(chart):
    values = {"resources": {"limits": {"cpu": "4"}}, "config": {"server": {"worker_threads": 2}}}
    assert config_of(objects(render(chart, values)))["server"]["worker_threads"] == 2


@pytest.mark.parametrize("name", SET_NAMES)
def test_wiring_between_objects(rendered_sets, name):
    """Service, probes, PDB, HPA, ServiceMonitor and NetworkPolicy point at what exists."""
    _, _, objs = rendered_sets[name]
    deployment = one(objs, "Deployment")
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()

    service = one(objs, "Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    assert {p["name"]: p.get("appProtocol") for p in service["spec"]["ports"]} == {"grpc": "grpc", "http": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}

    mounted = {m["name"] for m in container["volumeMounts"]}
    assert mounted == {v["name"] for v in pod["spec"]["volumes"]}
    secret_refs = {v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    config = config_of(objs)
    for spec in pod["spec"].get("topologySpreadConstraints", []):
        assert spec["labelSelector"]["matchLabels"].items() <= pod_labels.items()

    for pdb in by_kind(objs).get("PodDisruptionBudget", []):
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for hpa in by_kind(objs).get("HorizontalPodAutoscaler", []):
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
        assert "replicas" not in deployment["spec"], "the HPA owns replicas"
    for sm in by_kind(objs).get("ServiceMonitor", []):
        assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ["http"]
        assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    for np in by_kind(objs).get("NetworkPolicy", []):
        assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        for rule in np["spec"]["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= port_names

    tls = config["server"].get("tls")
    if tls:
        assert "mesh-authz-tls" in secret_refs
        tls_mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        for f in tls.values():
            assert f.startswith(tls_mount["mountPath"] + "/")
    for provider in config["providers"]:
        jwks_file = provider["jwks"].get("file")
        if jwks_file:
            jwks_mount = next(m for m in container["volumeMounts"] if m["name"] == "jwks")
            assert jwks_file.startswith(jwks_mount["mountPath"] + "/")


def test_set_specific_objects(rendered_sets):
    sm = one(rendered_sets["monitoring"][2], "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}

    ha = rendered_sets["ha"][2]
    hpa = one(ha, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    pdb = one(ha, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]

    np = one(rendered_sets["netpol"][2], "NetworkPolicy")
    assert np["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert len(np["spec"]["ingress"][0]["from"]) == 2
    assert {"port": 53, "protocol": "UDP"} in np["spec"]["egress"][0]["ports"]

    tls_config = config_of(rendered_sets["tls"][2])["server"]["tls"]
    assert sorted(tls_config) == ["cert_file", "client_ca_file", "key_file"]

    prod = one(rendered_sets["production"][2], "Deployment")
    assert prod["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/mesh-authz/mesh-authz@sha256:" + "ab" * 32


def test_config_checksum_rolls_pods(chart, rendered_sets):
    _, rendered, objs = rendered_sets["default"]
    annotation = one(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert annotation == hashlib.sha256(rendered["mesh-authz/templates/configmap.yaml"].encode()).hexdigest()
    changed = objects(render(chart, {"config": {"logging": {"level": "debug"}}}))
    other = one(changed, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert other != annotation
    same = objects(render(chart, {"replicaCount": 3}))
    assert one(same, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == annotation


def test_release_name_and_overrides(chart):
    objs = objects(chart.render({}, name="authz", namespace="edge"))
    assert one(objs, "Deployment")["metadata"]["name"] == "authz-mesh-authz"
    objs = objects(render(chart, {"fullnameOverride": "ext-authz", "commonLabels": {"team": "platform"}}))
    for obj in objs:
        assert obj["metadata"]["name"] == "ext-authz"
        assert obj["metadata"]["labels"]["team"] == "platform"
    assert RELEASE == "mesh-authz"
