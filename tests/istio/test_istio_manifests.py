"""istio/: the extension providers, the CUSTOM AuthorizationPolicy and the STRICT
PeerAuthentication are valid for Istio, and they point at what the chart deploys.

AuthorizationPolicy and PeerAuthentication are validated against the openAPIV3Schema of Istio's own
CRDs (vendored in tests/chart/schemas/, provenance in each file's "$comment"), made strict the way
`kubectl apply` (server-side field validation: Strict) is: an unknown field is an error. The
x-kubernetes-validations (CEL) rules that apply to these manifests are re-checked by hand below.

MeshConfig is not a CRD and Istio publishes no machine-readable schema for it, so the
extensionProviders entries are checked against EXTENSION_PROVIDER_SCHEMA, written here by hand from
the field names of Istio's MeshConfig.ExtensionProvider messages (istio/api,
mesh/v1alpha1/config.proto @ 0040fb30e9c09ad32d76fe59e3bdbb3da7f0aabb, in their JSON camelCase form).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import helm_python as helm
import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ISTIO = REPO / "istio"
SCHEMAS = REPO / "tests" / "chart" / "schemas"
CHART_DIR = REPO / "charts" / "mesh-authz"

# ---------------------------------------------------------------------------------------------
# MeshConfig.ExtensionProvider (hand-written, see the module docstring).
_DURATION = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,9})?s$"}  # protobuf JSON Duration
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_REQUEST_BODY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "maxRequestBytes": {"type": "integer", "minimum": 0},
        "allowPartialMessage": {"type": "boolean"},
        "packAsBytes": {"type": "boolean"},
    },
}
_STRINGS = {"type": "array", "items": {"type": "string", "minLength": 1}}
EXT_AUTHZ_HTTP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["service", "port"],
    "properties": {
        "service": {"type": "string", "minLength": 1},
        "port": _PORT,
        "timeout": _DURATION,
        "pathPrefix": {"type": "string", "pattern": "^/"},
        "failOpen": {"type": "boolean"},
        "statusOnError": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
        "includeHeadersInCheck": _STRINGS,  # deprecated upstream
        "includeRequestHeadersInCheck": _STRINGS,
        "includeAdditionalHeadersInCheck": {"type": "object", "additionalProperties": {"type": "string"}},
        "includeRequestBodyInCheck": _REQUEST_BODY,
        "headersToUpstreamOnAllow": _STRINGS,
        "headersToDownstreamOnDeny": _STRINGS,
        "headersToDownstreamOnAllow": _STRINGS,
    },
}
EXT_AUTHZ_GRPC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["service", "port"],
    "properties": {
        "service": {"type": "string", "minLength": 1},
        "port": _PORT,
        "timeout": _DURATION,
        "failOpen": {"type": "boolean"},
        "statusOnError": {"type": "string", "pattern": "^[1-5][0-9][0-9]$"},
        "includeRequestBodyInCheck": _REQUEST_BODY,
    },
}
# The `provider` oneof of ExtensionProvider: exactly one of these keys besides `name`.
OTHER_PROVIDER_KINDS = [
    "zipkin", "lightstep", "datadog", "stackdriver", "opencensus", "skywalking", "opentelemetry",
    "prometheus", "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls", "envoyOtelAls",
]
EXTENSION_PROVIDER_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "envoyExtAuthzHttp": EXT_AUTHZ_HTTP,
        "envoyExtAuthzGrpc": EXT_AUTHZ_GRPC,
        **{k: {"type": "object"} for k in OTHER_PROVIDER_KINDS},
    },
    "oneOf": [{"required": [k]} for k in ["envoyExtAuthzHttp", "envoyExtAuthzGrpc", *OTHER_PROVIDER_KINDS]],
}


# ---------------------------------------------------------------------------------------------
# Vendored CRD schemas.
def load_crd(kind: str) -> dict:
    doc = json.loads((SCHEMAS / f"{kind.lower()}.security.istio.io.json").read_text())
    assert doc["kind"] == kind
    return doc


def strict(schema):
    """Every object schema that lists its properties refuses others (kubectl's Strict field
    validation), unless the CRD preserves unknown fields there."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return schema


def validate_crd_object(obj: dict) -> None:
    group, _, version = obj["apiVersion"].partition("/")
    crd = load_crd(obj["kind"])
    assert group == crd["group"], obj["apiVersion"]
    assert version in crd["versions"], f"{obj['apiVersion']} is not served"
    meta = obj["metadata"]
    assert meta.get("name") and meta.get("namespace"), meta
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.validate(body, strict(crd["openAPIV3Schema"]))
    for rule in CEL_RULES[obj["kind"]]:
        rule(obj["spec"])


# Hand re-implementations of the CEL rules of the vendored schemas that these manifests can hit.
def _one_target_selector(spec):
    assert sum(k in spec for k in ("selector", "targetRef", "targetRefs")) <= 1, \
        "only one of targetRefs or selector can be set"


def _no_wildcard_labels(spec):
    for key, value in spec.get("selector", {}).get("matchLabels", {}).items():
        assert key and "*" not in key and "*" not in value, "wildcard not allowed in label match"


def _service_accounts_alone(spec):
    for rule in spec.get("rules", []):
        for source in rule.get("from", []):
            src = source.get("source", {})
            if "serviceAccounts" in src or "notServiceAccounts" in src:
                assert not {"principals", "notPrincipals", "namespaces", "notNamespaces"} & set(src), \
                    "Cannot set serviceAccounts with namespaces or principals"


def _port_level_needs_selector(spec):
    if "portLevelMtls" in spec:
        assert spec.get("selector", {}).get("matchLabels"), "portLevelMtls requires selector"


CEL_RULES = {
    "AuthorizationPolicy": [_one_target_selector, _no_wildcard_labels, _service_accounts_alone],
    "PeerAuthentication": [_no_wildcard_labels, _port_level_needs_selector],
}
CEL_MESSAGES = {
    "AuthorizationPolicy": ["only one of targetRefs or selector can be set",
                            "wildcard not allowed in label value match",
                            "Cannot set serviceAccounts with namespaces or principals"],
    "PeerAuthentication": ["portLevelMtls requires selector", "wildcard not allowed in label value match"],
}


def docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ISTIO / name).read_text()) if d]


def providers() -> list[dict]:
    [operator] = docs("mesh-config.yaml")
    return operator["spec"]["meshConfig"]["extensionProviders"]


def provider(kind: str) -> dict:
    [p] = [p for p in providers() if kind in p]
    return p


@pytest.fixture(scope="module")
def chart_objects():
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render({}, name="mesh-authz", namespace="mesh-authz")
    out = []
    for path, text in rendered.items():
        if not path.endswith("NOTES.txt"):
            out += [d for d in yaml.safe_load_all(text) if d]
    return out


# ---------------------------------------------------------------------------------------------
def test_vendored_schemas_name_their_source():
    for kind in ("AuthorizationPolicy", "PeerAuthentication"):
        doc = load_crd(kind)
        assert doc["versions"] == ["v1", "v1beta1"]
        assert doc["source"]["repository"] == "https://github.com/istio/istio"
        assert doc["source"]["path"].endswith("crd-all.gen.yaml")
        assert len(doc["source"]["commit"]) == 40
        assert "Apache-2.0" in doc["source"]["license"] and "Apache-2.0" in doc["$comment"]
        jsonschema.Draft7Validator.check_schema(doc["openAPIV3Schema"])
        text = json.dumps(doc["openAPIV3Schema"])
        for message in CEL_MESSAGES[kind]:
            assert message in text, f"the hand-checked CEL rule {message!r} is gone from the schema"


@pytest.mark.parametrize("name", ["authorization-policy.yaml", "peer-authentication.yaml"])
def test_manifests_validate_against_istio_crds(name):
    objs = docs(name)
    assert objs
    for obj in objs:
        validate_crd_object(obj)
        # Served in both versions: the same spec is valid as v1beta1 for older Istio.
        validate_crd_object({**obj, "apiVersion": "security.istio.io/v1beta1"})


def test_authorization_policy_is_custom_on_a_workload_and_paths():
    [ap] = docs("authorization-policy.yaml")
    spec = ap["spec"]
    assert spec["action"] == "CUSTOM"
    assert spec["provider"]["name"] in {p["name"] for p in providers()}
    assert spec["selector"]["matchLabels"] == {"app": "httpbin"}
    paths = [p for rule in spec["rules"] for to in rule["to"] for p in to["operation"]["paths"]]
    assert "/api/*" in paths and "/admin/*" in paths


def test_peer_authentication_is_strict_where_the_policy_applies():
    [ap] = docs("authorization-policy.yaml")
    pas = docs("peer-authentication.yaml")
    namespaces = {pa["metadata"]["namespace"] for pa in pas}
    assert ap["metadata"]["namespace"] in namespaces
    for pa in pas:
        assert pa["spec"]["mtls"]["mode"] == "STRICT"
        assert "selector" not in pa["spec"], "namespace-wide"


@pytest.mark.parametrize("bad", [
    {"spec": {"action": "CUSTUM", "provider": {"name": "mesh-authz"}}},
    {"spec": {"action": "CUSTOM", "provider": {"name": "mesh-authz"}, "rules": [{"to": [{"operation": {"path": ["/x"]}}]}]}},
    {"spec": {"action": "CUSTOM", "provider": {"name": "mesh-authz"}, "rules": [{"when": [{"values": ["x"]}]}]}},
    {"spec": {"action": "CUSTOM", "providers": {"name": "mesh-authz"}}},
])
def test_crd_schema_catches_broken_policies(bad):
    obj = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": "x", "namespace": "demo"}, **bad}
    with pytest.raises(jsonschema.ValidationError):
        validate_crd_object(obj)


def test_cel_rules_catch_selector_and_target_ref_together():
    obj = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
           "metadata": {"name": "x", "namespace": "demo"},
           "spec": {"action": "CUSTOM", "provider": {"name": "mesh-authz"},
                    "selector": {"matchLabels": {"app": "a"}},
                    "targetRef": {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}}}
    with pytest.raises(AssertionError, match="only one of targetRefs or selector"):
        validate_crd_object(obj)


def test_crd_schema_catches_a_bad_mtls_mode():
    obj = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": "demo"}, "spec": {"mtls": {"mode": "STRICTER"}}}
    with pytest.raises(jsonschema.ValidationError):
        validate_crd_object(obj)


def test_mesh_config_is_an_istio_operator_overlay():
    [operator] = docs("mesh-config.yaml")
    assert operator["apiVersion"] == "install.istio.io/v1alpha1"
    assert operator["kind"] == "IstioOperator"
    assert set(operator["spec"]) == {"meshConfig"}
    assert set(operator["spec"]["meshConfig"]) == {"extensionProviders"}


def test_extension_providers_match_istio_fields():
    ps = providers()
    assert len({p["name"] for p in ps}) == len(ps), "provider names must be unique"
    for p in ps:
        jsonschema.validate(p, EXTENSION_PROVIDER_SCHEMA)
    assert {"envoyExtAuthzGrpc", "envoyExtAuthzHttp"} <= {k for p in ps for k in p if k != "name"}


@pytest.mark.parametrize("bad", [
    {"name": "x", "envoyExtAuthzGrpc": {"service": "s", "port": 9001, "includePeerCertificate": True}},
    {"name": "x", "envoyExtAuthzHttp": {"service": "s", "port": 9002, "includeRequestHeaders": ["a"]}},
    {"name": "x", "envoyExtAuthzGrpc": {"service": "s", "port": 9001}, "envoyExtAuthzHttp": {"service": "s", "port": 9002}},
    {"name": "x", "envoyExtAuthzGrpc": {"service": "s", "port": 9001, "timeout": "500ms"}},
    {"name": "x", "envoyExtAuthzGrpc": {"port": 9001}},
])
def test_extension_provider_schema_catches_mistakes(bad):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, EXTENSION_PROVIDER_SCHEMA)


def test_providers_point_at_the_chart_service(chart_objects):
    [service] = [o for o in chart_objects if o["kind"] == "Service"]
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local"
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    grpc = provider("envoyExtAuthzGrpc")["envoyExtAuthzGrpc"]
    http = provider("envoyExtAuthzHttp")["envoyExtAuthzHttp"]
    assert (grpc["service"], grpc["port"]) == (host, ports["grpc"])
    assert (http["service"], http["port"]) == (host, ports["http"])
    assert grpc.get("failOpen", False) is False and http.get("failOpen", False) is False


def test_http_provider_headers(chart_objects):
    http = provider("envoyExtAuthzHttp")["envoyExtAuthzHttp"]
    assert http["pathPrefix"] == "/check"
    assert {"authorization", "x-forwarded-client-cert"} <= set(http["includeRequestHeadersInCheck"])
    assert set(http["headersToUpstreamOnAllow"]) == {"x-auth-subject", "x-auth-scope", "x-auth-spiffe-id"}
    assert set(http["headersToDownstreamOnDeny"]) == {"www-authenticate", "content-type"}
    # Every header the chart's default config injects is let through to the upstream.
    [cm] = [o for o in chart_objects if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    injected = {config["identity"]["spiffe_id_header"]}
    for p in config["providers"]:
        injected |= set(p.get("claims_to_headers", {}).values())
    assert injected <= set(http["headersToUpstreamOnAllow"])


def test_walkthrough_covers_the_steps():
    text = (ISTIO / "README.md").read_text()
    for needle in ["helm install", "IstioOperator", "istioctl install --set", "configmap istio",
                   "kubectl apply -f istio/peer-authentication.yaml", "sleep", "curl",
                   "**401**", "**403**", "WWW-Authenticate", "source.principal", "include_peer_certificate"]:
        assert needle in text, needle
    for name in ("mesh-config.yaml", "authorization-policy.yaml", "peer-authentication.yaml"):
        assert f"`{name}`" in text
