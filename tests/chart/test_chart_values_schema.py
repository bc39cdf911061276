"""values.schema.json: strict at the top level, and it turns away the mistakes people make.
Helm applies it on every render, so each bad value set must fail to render at all."""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import pytest
import yaml

from chart_helpers import CHART_DIR, RELEASE, NAMESPACE

BAD_VALUES = {
    "unknown top-level key": ({"replicas": 3}, "replicas"),
    "typo inside config": ({"config": {"identity": {"trust_xfc": True}}}, "trust_xfc"),
    "unknown top-level config key": ({"config": {"revocations": {}}}, "revocations"),
    "listener address is the chart's": ({"config": {"server": {"grpc_addr": "0.0.0.0:1"}}}, "grpc_addr"),
    "redis store without redis.enabled": ({"config": {"revocation": {"store": "redis"}}}, "/config/revocation/store"),
    "redis enabled without a Secret": ({"redis": {"enabled": True}}, "/redis/existingSecret"),
    "tls enabled without a Secret": ({"tls": {"enabled": True}}, "/tls"),
    "port out of range": ({"ports": {"grpc": 70000, "http": 9002}}, "/ports/grpc"),
    "pull policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "HMAC algorithm": ({"config": {"providers": [{"name": "a", "issuer": "https://a", "jwks": {"uri": "https://a/k"}, "algorithms": ["HS256"]}]}}, "algorithms"),
    "provider without jwks": ({"config": {"providers": [{"name": "a", "issuer": "https://a"}]}}, "jwks"),
    "relative jwks file": ({"config": {"providers": [{"name": "a", "issuer": "https://a", "jwks": {"file": "keys/jwks.json"}}]}}, "/jwks/file"),
    "duration without unit": ({"config": {"providers": [{"name": "a", "issuer": "https://a", "jwks": {"uri": "https://a/k"}, "clock_skew": "soon"}]}}, "clock_skew"),
    "unknown identity source": ({"config": {"identity": {"sources": ["header"]}}}, "/config/identity/sources/0"),
    "unknown xfcc proxy_mode": ({"config": {"identity": {"xfcc": {"proxy_mode": "forward_only"}}}}, "/config/identity/xfcc/proxy_mode"),
    "typo inside identity.xfcc": ({"config": {"identity": {"xfcc": {"require_certs": True}}}}, "require_certs"),
    "tracing sample_ratio over 1": ({"config": {"tracing": {"otlp_endpoint": "http://collector:4318", "sample_ratio": 2}}}, "/config/tracing/sample_ratio"),
    "tracing without an endpoint": ({"config": {"tracing": {"service_name": "authz"}}}, "otlp_endpoint"),
    "default_action typo": ({"config": {"default_action": "reject"}}, "default_action"),
    "cpu target over 100": ({"autoscaling": {"targetCPUUtilizationPercentage": 150}}, "targetCPUUtilizationPercentage"),
    "zero replicas": ({"replicaCount": 0}, "replicaCount"),
    "servicemonitor interval": ({"serviceMonitor": {"enabled": True, "interval": "often"}}, "interval"),
    "bad digest": ({"image": {"digest": "latest"}}, "digest"),
    "spread without topologyKey": ({"topologySpreadConstraints": [{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}]}, "topologyKey"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(chart, case):
    values, needle = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as err:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert needle in str(err.value), str(err.value)


def test_schema_is_strict_at_the_top_level():
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    assert schema["properties"]["config"]["additionalProperties"] is False
    jsonschema.Draft7Validator.check_schema(schema)


def test_every_default_value_is_described_by_the_schema():
    """values.yaml passes the schema, and every key in it is a declared property (no key is only
    accepted because a sub-object is open)."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    jsonschema.validate(values, schema)
    missing = []
    for key, value in values.items():
        prop = schema["properties"].get(key)
        if prop is None:
            missing.append(key)
        elif isinstance(value, dict) and "properties" in prop and key != "config":
            missing += [f"{key}.{k}" for k in value if k not in prop["properties"]]
    assert not missing, missing


def test_good_values_render(chart):
    chart.render({"config": {"providers": [{"name": "a", "issuer": "https://a", "jwks": {"discovery": True},
                                            "clock_skew": 10, "algorithms": ["ES256"]}],
                             "identity": {"sources": ["xfcc"], "trust_xfcc": True,
                                          "xfcc": {"proxy_mode": "append_forward", "require_cert": True,
                                                   "format": "json"}},
                             "tracing": {"otlp_endpoint": "http://collector:4318", "sample_ratio": 0.1}},
                  "podDisruptionBudget": {"minAvailable": "50%"}},
                 name=RELEASE, namespace=NAMESPACE)


def test_lint_is_clean():
    for values in ({}, {"autoscaling": {"enabled": True}, "serviceMonitor": {"enabled": True},
                        "networkPolicy": {"enabled": True},
                        "redis": {"enabled": True, "existingSecret": "r"}}):
        report = helm.lint(CHART_DIR, values, strict=True, kube_version="v1.30.0", namespace=NAMESPACE)
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not problems and not report["errors"], report


def _value_paths(d: dict, prefix: str = ""):
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("config", "resources"):
            yield from _value_paths(value, path + ".")
        else:
            yield path


def test_readme_documents_every_value():
    """Every key of values.yaml has a row in the chart README's values table."""
    readme = (CHART_DIR / "README.md").read_text()
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    missing = []
    for path in _value_paths(values):
        probe_group = path.split(".")[0] + ".*"
        if f"| `{path}` |" not in readme and f"| `{probe_group}` |" not in readme:
            missing.append(path)
    assert not missing, f"not in charts/mesh-authz/README.md: {missing}"
