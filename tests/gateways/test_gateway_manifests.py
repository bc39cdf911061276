"""gateways/: every door's manifests are valid for the project that reads them, point at what the
chart deploys, fail closed, and ship a mesh-authz config that `mesh-authz check-config` accepts.

Each custom resource is validated against the openAPIV3Schema of that project's own CRD, vendored
in tests/gateways/schemas/ (provenance in each file's "source" and in schemas/README.md; the Istio
AuthorizationPolicy schema is the one tests/istio uses, in tests/chart/schemas/), made strict the
way `kubectl apply` (server-side field validation: Strict) is: an unknown field is an error.
Validation uses JSON Schema draft 4, whose keywords are OpenAPI 3.0's. jsonschema does not
evaluate the CRDs' x-kubernetes-validations (CEL) rules; the ones these
manifests can hit are re-checked by hand in CEL_RULES, and test_vendored_schemas_name_their_source
fails if a vendored schema loses one of them. Namespaces are checked with kubernetes-validate.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from chart_helpers import check_config

REPO = Path(__file__).resolve().parents[2]
GATEWAYS = REPO / "gateways"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
ISTIO_SCHEMAS = REPO / "tests" / "chart" / "schemas"
CHART_DIR = REPO / "charts" / "mesh-authz"
# ext_authz doors: mesh-authz runs as the chart's server, configured by the door's Helm values.
DOORS = ["istio-ambient", "envoy-gateway", "gateway-api", "kgateway", "contour"]
# In-proxy doors: mesh-authz runs inside the gateway's Envoy (the dynamic module); its config is in
# the manifests (an EnvoyExtensionPolicy's dynamicModule[].config), not in Helm values.
IN_PROXY_DOORS = ["envoy-gateway-in-proxy"]
ALL_DOORS = DOORS + IN_PROXY_DOORS
VALUES = "mesh-authz-values.yaml"

# (group, kind) -> vendored schema file.
SCHEMA_FILES = {
    ("gateway.networking.k8s.io", "Gateway"): SCHEMAS / "gateway.gateway.networking.k8s.io.json",
    ("gateway.networking.k8s.io", "HTTPRoute"): SCHEMAS / "httproute.gateway.networking.k8s.io.json",
    ("gateway.networking.k8s.io", "ReferenceGrant"): SCHEMAS / "referencegrant.gateway.networking.k8s.io.json",
    ("gateway.envoyproxy.io", "SecurityPolicy"): SCHEMAS / "securitypolicy.gateway.envoyproxy.io.json",
    ("gateway.envoyproxy.io", "ClientTrafficPolicy"): SCHEMAS / "clienttrafficpolicy.gateway.envoyproxy.io.json",
    ("gateway.envoyproxy.io", "EnvoyProxy"): SCHEMAS / "envoyproxy.gateway.envoyproxy.io.json",
    ("gateway.envoyproxy.io", "EnvoyExtensionPolicy"): SCHEMAS / "envoyextensionpolicy.gateway.envoyproxy.io.json",
    ("gateway.kgateway.dev", "GatewayExtension"): SCHEMAS / "gatewayextension.gateway.kgateway.dev.json",
    ("gateway.kgateway.dev", "TrafficPolicy"): SCHEMAS / "trafficpolicy.gateway.kgateway.dev.json",
    ("projectcontour.io", "ExtensionService"): SCHEMAS / "extensionservice.projectcontour.io.json",
    ("projectcontour.io", "HTTPProxy"): SCHEMAS / "httpproxy.projectcontour.io.json",
    ("security.istio.io", "AuthorizationPolicy"): ISTIO_SCHEMAS / "authorizationpolicy.security.istio.io.json",
}
# Vendored here (the Istio file is tested by tests/istio).
OWN_SCHEMAS = sorted(p for p in SCHEMA_FILES.values() if p.parent == SCHEMAS)


# ---------------------------------------------------------------------------------------------
# Loading.
def load_schema(group: str, kind: str) -> dict:
    path = SCHEMA_FILES.get((group, kind))
    assert path, f"no vendored schema for {kind}.{group}"
    doc = json.loads(path.read_text())
    assert (doc["group"], doc["kind"]) == (group, kind), path
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


def docs(door: str, name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((GATEWAYS / door / name).read_text()) if d]


def manifests(door: str) -> list[tuple[str, dict]]:
    """(file name, object) for every Kubernetes object a door ships (its Helm values excluded)."""
    out = []
    for path in sorted((GATEWAYS / door).glob("*.yaml")):
        if path.name != VALUES:
            out += [(path.name, obj) for obj in docs(door, path.name)]
    return out


def all_objects() -> list[tuple[str, str, dict]]:
    return [(door, name, obj) for door in ALL_DOORS for name, obj in manifests(door)]


def objects_of(kind: str) -> list[dict]:
    return [obj for _, _, obj in all_objects() if obj["kind"] == kind]


def namespaced_objects() -> list[tuple[str, str, dict]]:
    return [(door, name, obj) for door, name, obj in all_objects() if obj["kind"] != "Namespace"]


# ---------------------------------------------------------------------------------------------
# Hand re-implementations of the CEL rules (x-kubernetes-validations) these manifests can hit.
# Defaults the API server would apply first (kind Service, group "") are applied here too.
def _ref_kind(ref):
    return ref.get("kind", "Service")


def _ref_group(ref):
    return ref.get("group", "")


def _service_ref_has_port(ref):
    if _ref_group(ref) == "" and _ref_kind(ref) == "Service":
        assert "port" in ref, "Must have port for Service reference"


def _target_refs_kinds(allowed, message):
    def rule(spec):
        for ref in spec.get("targetRefs", []):
            assert ref.get("kind") in allowed, message
    return rule


def _target_ref_xor_refs(spec):
    assert ("targetRef" in spec) != ("targetRefs" in spec) or spec.get("targetSelectors"), \
        "either targetRef or targetRefs must be used"


def _gateway_listeners(spec):
    names = [listener["name"] for listener in spec["listeners"]]
    assert len(names) == len(set(names)), "Listener name must be unique within the Gateway"
    for listener in spec["listeners"]:
        if listener["protocol"] in ("HTTP", "TCP", "UDP"):
            assert "tls" not in listener, "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"
        if listener["protocol"] == "HTTPS" and "tls" in listener:
            assert listener["tls"].get("mode", "Terminate") in ("", "Terminate"), \
                "tls mode must be Terminate for protocol HTTPS"


def _httproute_filters(spec):
    for rule in spec.get("rules", []):
        for f in rule.get("filters", []):
            if f["type"] == "ExternalAuth":
                assert "externalAuth" in f, "filter.externalAuth must be specified for ExternalAuth filter.type"
            else:
                assert "externalAuth" not in f, "filter.externalAuth must be nil if the filter.type is not ExternalAuth"
            ext = f.get("externalAuth")
            if ext is None:
                continue
            for proto, key in (("GRPC", "grpc"), ("HTTP", "http")):
                if ext["protocol"] == proto:
                    assert key in ext, f"{key} must be specified when protocol is set to '{proto}'"
                if key in ext:
                    assert ext["protocol"] == proto, f"protocol must be '{proto}' when {key} is set"
            _service_ref_has_port(ext["backendRef"])
        for ref in rule.get("backendRefs", []):
            _service_ref_has_port(ref)


def _security_policy_ext_auth(spec):
    ext = spec.get("extAuth")
    if ext is None:
        return
    assert "grpc" in ext or "http" in ext, "one of grpc or http must be specified"
    assert not ("grpc" in ext and "http" in ext), "only one of grpc or http can be specified"
    for key in ("grpc", "http"):
        if key not in ext:
            continue
        refs = ext[key].get("backendRefs", [])
        assert "backendRef" in ext[key] or refs, "backendRef or backendRefs needs to be set"
        for ref in refs:
            assert _ref_kind(ref) in ("Service", "ServiceImport", "Backend"), \
                "BackendRefs only supports Service, ServiceImport, and Backend kind."
            assert _ref_group(ref) in ("", "multicluster.x-k8s.io", "gateway.envoyproxy.io"), \
                "BackendRefs only supports Core, multicluster.x-k8s.io, and gateway.envoyproxy.io groups."
            _service_ref_has_port(ref)
    if "http" in ext:
        assert not ("path" in ext["http"] and "pathOverride" in ext["http"]), \
            "only one of path or pathOverride can be specified"
    for ce in ext.get("contextExtensions", []):
        ok = (ce.get("type", "Value") == "Value" and "value" in ce and "valueRef" not in ce) or \
             (ce.get("type") == "ValueRef" and "value" not in ce and "valueRef" in ce)
        assert ok, "Exactly one of value or valueRef must be set with correct type."


def _xfcc_cert_details(spec):
    xfcc = spec.get("headers", {}).get("xForwardedClientCert", {})
    if xfcc.get("certDetailsToAdd"):
        assert xfcc.get("mode") in ("AppendForward", "SanitizeSet"), \
            "certDetailsToAdd can only be set when mode is AppendForward or SanitizeSet"


def _target_refs_group(spec):
    for ref in spec.get("targetRefs", []):
        assert ref.get("group") == "gateway.networking.k8s.io", \
            "this policy can only have a targetRefs[*].group of gateway.networking.k8s.io"


def _envoy_proxy(spec):
    assert not (spec.get("mergeGateways") and "mergeBackends" in spec), \
        "mergeGateways and mergeBackends cannot both be enabled"
    container = spec.get("provider", {}).get("kubernetes", {}).get("envoyDeployment", {}).get("container", {})
    assert not ("image" in container and "imageRepository" in container), "Either image or imageRepository can be set."
    if "image" in container:
        assert re.fullmatch(r"[a-zA-Z0-9._-]+(:[0-9]+)?(/[a-zA-Z0-9._/-]+)?(:[a-zA-Z0-9._-]+)?(@sha256:[a-z0-9]+)?",
                            container["image"]), "Image must include a tag and allowed characters only (e.g., 'repo:tag')."
    for module in spec.get("dynamicModules", []):
        source = module["source"]
        kind = source.get("type", "Local")  # the CRD's default
        if kind == "Remote":
            assert "remote" in source, "If type is Remote, remote field needs to be set."
            assert "local" not in source, "If type is Remote, local field must not be set."
        else:
            assert "remote" not in source, "If type is Remote, remote field needs to be set."
        if kind == "Local":
            assert "local" in source, "If type is Local, local field needs to be set."


def _gateway_extension_type(spec):
    for t, key in (("ExtAuth", "extAuth"), ("ExtProc", "extProc"), ("RateLimit", "rateLimit")):
        if spec["type"] == t:
            assert key in spec, f"{t} must be set when type is {t}"
        else:
            assert key not in spec, f"{t} must not be set when type is not {t}"
    grpc = spec.get("extAuth", {}).get("grpcService")
    if grpc:
        _service_ref_has_port(grpc["backendRef"])
        timeout = grpc.get("requestTimeout")
        if timeout is not None:
            assert re.fullmatch(r"([0-9]{1,5}(h|m|s|ms)){1,4}", timeout), "invalid timeout value"


def _traffic_policy_ext_auth(spec):
    ext = spec.get("extAuth")
    if ext is not None:
        assert ("extensionRef" in ext) != ("disable" in ext), \
            "exactly one of the fields in [extensionRef disable] must be set"


def _authorization_policy(spec):
    assert sum(k in spec for k in ("selector", "targetRef", "targetRefs")) <= 1, \
        "only one of targetRefs or selector can be set"
    for ref in spec.get("targetRefs", []):
        assert not ref.get("namespace"), "cross namespace referencing is not currently supported"


CEL_RULES = {
    "Gateway": [_gateway_listeners],
    "HTTPRoute": [_httproute_filters],
    "ReferenceGrant": [],
    "SecurityPolicy": [
        _target_ref_xor_refs, _security_policy_ext_auth,
        _target_refs_kinds({"Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "TCPRoute"},
                           "this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute"),
    ],
    "ClientTrafficPolicy": [
        _target_ref_xor_refs, _xfcc_cert_details,
        _target_refs_kinds({"Gateway", "ListenerSet"},
                           "this policy can only have a targetRefs[*].kind of Gateway or ListenerSet"),
    ],
    "EnvoyProxy": [_envoy_proxy],
    "EnvoyExtensionPolicy": [
        _target_ref_xor_refs, _target_refs_group,
        _target_refs_kinds({"Gateway", "ListenerSet", "HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute"},
                           "this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute"),
    ],
    "GatewayExtension": [_gateway_extension_type],
    "TrafficPolicy": [
        _traffic_policy_ext_auth,
        _target_refs_kinds({"Gateway", "HTTPRoute", "XListenerSet", "Backend"},
                           "targetRefs may only reference Gateway, HTTPRoute, XListenerSet, or Backend resources"),
    ],
    "ExtensionService": [],
    "HTTPProxy": [],
    "AuthorizationPolicy": [_authorization_policy],
}
# The upstream CEL messages the functions above stand for: each must still be in its schema.
CEL_MESSAGES = {
    "Gateway": ["Listener name must be unique within the Gateway",
                "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
                "tls mode must be Terminate for protocol HTTPS"],
    "HTTPRoute": ["filter.externalAuth must be specified for ExternalAuth filter.type",
                  "filter.externalAuth must be nil if the filter.type is not ExternalAuth",
                  "grpc must be specified when protocol is set to 'GRPC'",
                  "protocol must be 'GRPC' when grpc is set",
                  "http must be specified when protocol is set to 'HTTP'",
                  "protocol must be 'HTTP' when http is set",
                  "Must have port for Service reference"],
    "ReferenceGrant": [],
    "SecurityPolicy": ["one of grpc or http must be specified", "only one of grpc or http can be specified",
                       "backendRef or backendRefs needs to be set",
                       "BackendRefs only supports Service, ServiceImport, and Backend kind.",
                       "BackendRefs only supports Core, multicluster.x-k8s.io, and gateway.envoyproxy.io groups.",
                       "only one of path or pathOverride can be specified",
                       "Exactly one of value or valueRef must be set with correct type.",
                       "Must have port for Service reference", "either targetRef or targetRefs must be used",
                       "this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute"],
    "ClientTrafficPolicy": ["certDetailsToAdd can only be set when mode is AppendForward or SanitizeSet",
                            "either targetRef or targetRefs must be used",
                            "this policy can only have a targetRefs[*].kind of Gateway or ListenerSet"],
    "EnvoyProxy": ["mergeGateways and mergeBackends cannot both be enabled",
                   "Either image or imageRepository can be set.",
                   "Image must include a tag and allowed characters only (e.g., 'repo:tag').",
                   "If type is Remote, remote field needs to be set.",
                   "If type is Local, local field needs to be set.",
                   "If type is Remote, local field must not be set."],
    "EnvoyExtensionPolicy": ["either targetRef or targetRefs must be used",
                             "this policy can only have a targetRefs[*].group of gateway.networking.k8s.io",
                             "this policy can only have a targetRefs[*].kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute"],
    "GatewayExtension": ["ExtAuth must be set when type is ExtAuth", "ExtAuth must not be set when type is not ExtAuth",
                         "Must have port for Service reference", "invalid timeout value"],
    "TrafficPolicy": ["exactly one of the fields in [extensionRef disable] must be set",
                      "targetRefs may only reference Gateway, HTTPRoute, XListenerSet, or Backend resources"],
    "ExtensionService": [],
    "HTTPProxy": [],
    "AuthorizationPolicy": ["only one of targetRefs or selector can be set",
                            "cross namespace referencing is not currently supported"],
}


def validate_object(obj: dict) -> None:
    """Validates one object the way the API server would (schema, strict fields, the CEL rules
    above); Namespaces against Kubernetes' own schema."""
    if obj.get("apiVersion") == "v1" and obj.get("kind") == "Namespace":
        kubernetes_validate.validate(obj, "1.30", strict=True)
        return
    group, _, version = obj["apiVersion"].partition("/")
    doc = load_schema(group, obj["kind"])
    assert version in doc["versions"], f"{obj['apiVersion']} {obj['kind']} is not served"
    meta = obj["metadata"]
    assert meta.get("name") and meta.get("namespace"), meta
    schema = doc["openAPIV3Schema"]
    # apiVersion, kind and metadata are checked by the API server itself; they are validated here
    # only where the CRD's schema lists them (Contour's requires metadata).
    listed = schema.get("properties", {})
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata") or k in listed}
    # OpenAPI 3.0 (a CRD's schema language) is JSON Schema draft 4 as far as these keywords go
    # (boolean exclusiveMaximum, for one).
    jsonschema.Draft4Validator(strict(schema)).validate(body)
    for rule in CEL_RULES[obj["kind"]]:
        rule(obj["spec"])


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chart_service():
    """(host, {port name: port}) of the Service the chart deploys as release mesh-authz."""
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render({}, name="mesh-authz", namespace="mesh-authz")
    objs = [d for path, text in rendered.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    [service] = [o for o in objs if o["kind"] == "Service"]
    return service["metadata"], {p["name"]: p["port"] for p in service["spec"]["ports"]}


def is_mesh_authz(ref: dict, meta: dict, own_namespace: str) -> bool:
    return ref["name"] == meta["name"] and ref.get("namespace", own_namespace) == meta["namespace"]


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", OWN_SCHEMAS, ids=lambda p: p.name)
def test_vendored_schemas_name_their_source(path):
    doc = json.loads(path.read_text())
    src = doc["source"]
    assert src["repository"].startswith("https://github.com/")
    assert re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", src["tag"]), "a released tag"
    assert re.fullmatch(r"[0-9a-f]{40}", src["commit"])
    assert src["path"].endswith(".yaml")
    assert "Apache-2.0" in src["license"] and "Apache-2.0" in doc["$comment"]
    assert src["tag"] in doc["$comment"] and src["commit"] in doc["$comment"]
    jsonschema.Draft4Validator.check_schema(doc["openAPIV3Schema"])
    text = json.dumps(doc["openAPIV3Schema"])
    for message in CEL_MESSAGES[doc["kind"]]:
        assert message in text, f"the hand-checked CEL rule {message!r} is gone from the schema"
    readme = (SCHEMAS / "README.md").read_text()
    assert path.name in readme and src["commit"] in readme
    assert "Apache License" in (SCHEMAS / "LICENSE-Apache-2.0").read_text()


def test_istio_schema_has_waypoint_target_refs():
    doc = load_schema("security.istio.io", "AuthorizationPolicy")
    spec = doc["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["targetRefs"]["items"]["required"] == ["kind", "name"]
    text = json.dumps(doc["openAPIV3Schema"])
    for message in CEL_MESSAGES["AuthorizationPolicy"]:
        assert message in text


@pytest.mark.parametrize("door", ALL_DOORS)
def test_every_manifest_validates_against_its_crd(door):
    objs = manifests(door)
    assert objs, f"gateways/{door} ships no manifests"
    for name, obj in objs:
        try:
            validate_object(obj)
        except (jsonschema.ValidationError, AssertionError, kubernetes_validate.ValidationError) as e:
            pytest.fail(f"gateways/{door}/{name}: {obj['kind']} {obj['metadata'].get('name')}: {e}")


def _mutations():
    """(id, expected error, door, file, kind, mutate) — each one breaks a shipped manifest in a way the project's
    API server refuses; the validation must refuse it too."""
    def at(path, value):
        def mutate(obj):
            node = obj
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
        return mutate

    def drop(path):
        def mutate(obj):
            node = obj
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
        return mutate

    def rename(path, new):
        def mutate(obj):
            node = obj
            for key in path[:-1]:
                node = node[key]
            node[new] = node.pop(path[-1])
        return mutate

    grpc_filter = ["spec", "rules", 0, "filters", 0, "externalAuth"]
    return [
        # Istio ambient
        ("waypoint-listener-typo", "'listeners' is a required property", "istio-ambient", "waypoint.yaml", "Gateway",
         rename(["spec", "listeners"], "listener")),
        ("policy-action-typo", "'CUSTUM' is not one of", "istio-ambient", "authorization-policy.yaml", "AuthorizationPolicy",
         at(["spec", "action"], "CUSTUM")),
        ("policy-selector-and-targetrefs", 'only one of targetRefs or selector', "istio-ambient", "authorization-policy.yaml", "AuthorizationPolicy",
         at(["spec", "selector"], {"matchLabels": {"app": "httpbin"}})),
        ("policy-targetref-cross-namespace", 'cross namespace referencing', "istio-ambient", "authorization-policy.yaml", "AuthorizationPolicy",
         at(["spec", "targetRefs", 0, "namespace"], "other")),
        ("namespace-spec-typo", 'lables', "istio-ambient", "namespaces.yaml", "Namespace",
         at(["metadata", "lables"], {"a": "b"})),
        # Envoy Gateway
        ("sp-backendrefs-typo", "'backendRefz' was unexpected", "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         rename(["spec", "extAuth", "grpc", "backendRefs"], "backendRefz")),
        ("sp-headers-typo", "'headersToExtAuthz' was unexpected", "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         rename(["spec", "extAuth", "headersToExtAuth"], "headersToExtAuthz")),
        ("sp-include-peer-certificate", "'includePeerCertificate' was unexpected", "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         at(["spec", "extAuth", "grpc", "includePeerCertificate"], True)),
        ("sp-failopen-string", "is not of type 'boolean'", "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         at(["spec", "extAuth", "failOpen"], "false")),
        ("sp-grpc-and-http", 'only one of grpc or http', "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         at(["spec", "extAuth", "http"], {"backendRefs": [{"name": "mesh-authz", "port": 9002}]})),
        ("sp-context-extension-map", "is not of type 'array'", "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         at(["spec", "extAuth", "contextExtensions"], {"door": "envoy-gateway"})),
        ("sp-backend-without-port", 'Must have port for Service reference', "envoy-gateway", "security-policy-grpc.yaml", "SecurityPolicy",
         drop(["spec", "extAuth", "grpc", "backendRefs", 0, "port"])),
        ("sp-timeout-format", 'does not match', "envoy-gateway", "security-policy-http.yaml", "SecurityPolicy",
         at(["spec", "extAuth", "timeout"], "0.5s")),
        ("ctp-xfcc-mode", "'SANITIZE_SET' is not one of", "envoy-gateway", "client-traffic-policy.yaml", "ClientTrafficPolicy",
         at(["spec", "headers", "xForwardedClientCert", "mode"], "SANITIZE_SET")),
        ("ctp-details-without-set", 'certDetailsToAdd can only be set', "envoy-gateway", "client-traffic-policy.yaml", "ClientTrafficPolicy",
         at(["spec", "headers", "xForwardedClientCert", "mode"], "Sanitize")),
        # Envoy Gateway, in-proxy (dynamic module)
        ("eep-dynamicmodules-plural", "'dynamicModules' was unexpected", "envoy-gateway-in-proxy", "envoy-extension-policy.yaml", "EnvoyExtensionPolicy",
         rename(["spec", "dynamicModule"], "dynamicModules")),
        ("eep-filtername-typo", "'filter_name' was unexpected", "envoy-gateway-in-proxy", "envoy-extension-policy.yaml", "EnvoyExtensionPolicy",
         rename(["spec", "dynamicModule", 0, "filterName"], "filter_name")),
        ("eep-module-name-uppercase", "does not match", "envoy-gateway-in-proxy", "envoy-extension-policy.yaml", "EnvoyExtensionPolicy",
         at(["spec", "dynamicModule", 0, "name"], "Mesh_Authz")),
        ("eep-target-service", "targetRefs\\[\\*\\]\\.kind of Gateway", "envoy-gateway-in-proxy", "envoy-extension-policy.yaml", "EnvoyExtensionPolicy",
         at(["spec", "targetRefs", 0, "kind"], "Service")),
        ("eep-target-group", "targetRefs\\[\\*\\]\\.group", "envoy-gateway-in-proxy", "envoy-extension-policy.yaml", "EnvoyExtensionPolicy",
         at(["spec", "targetRefs", 0, "group"], "gateway.envoyproxy.io")),
        ("ep-dynamicmodule-singular", "'dynamicModule' was unexpected", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         rename(["spec", "dynamicModules"], "dynamicModule")),
        ("ep-do-not-close-snake", "'do_not_close' was unexpected", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         rename(["spec", "dynamicModules", 0, "doNotClose"], "do_not_close")),
        ("ep-do-not-close-string", "is not of type 'boolean'", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         at(["spec", "dynamicModules", 0, "doNotClose"], "true")),
        ("ep-local-filename", "'path' is a required property", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         rename(["spec", "dynamicModules", 0, "source", "local", "path"], "filename")),
        ("ep-source-type-file", "'File' is not one of", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         at(["spec", "dynamicModules", 0, "source", "type"], "File")),
        ("ep-remote-without-remote", "If type is Remote, remote field needs to be set", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         at(["spec", "dynamicModules", 0, "source", "type"], "Remote")),
        ("ep-image-and-repository", "Either image or imageRepository", "envoy-gateway-in-proxy", "envoy-proxy.yaml", "EnvoyProxy",
         at(["spec", "provider", "kubernetes", "envoyDeployment", "container", "imageRepository"], "ghcr.io/mesh-authz/envoy")),
        ("gateway-parametersref-without-group", "'group' is a required property", "envoy-gateway-in-proxy", "gateway.yaml", "Gateway",
         drop(["spec", "infrastructure", "parametersRef", "group"])),
        # Gateway API
        ("route-externalauth-typo", "'extAuth' was unexpected", "gateway-api", "httproute-grpc.yaml", "HTTPRoute",
         rename(["spec", "rules", 0, "filters", 0, "externalAuth"], "extAuth")),
        ("route-protocol-lowercase", "'grpc' is not one of", "gateway-api", "httproute-grpc.yaml", "HTTPRoute",
         at(grpc_filter + ["protocol"], "grpc")),
        ("route-grpc-without-grpc", "grpc must be specified when protocol is set to 'GRPC'", "gateway-api", "httproute-grpc.yaml", "HTTPRoute",
         drop(grpc_filter + ["grpc"])),
        ("route-backendrefs-plural", "'backendRef' is a required property", "gateway-api", "httproute-grpc.yaml", "HTTPRoute",
         rename(grpc_filter + ["backendRef"], "backendRefs")),
        ("route-http-path-relative", 'does not match', "gateway-api", "httproute-http.yaml", "HTTPRoute",
         at(grpc_filter + ["http", "path"], "check with spaces")),
        ("gateway-http-with-tls", 'tls must not be specified', "gateway-api", "gateway.yaml", "Gateway",
         at(["spec", "listeners", 0, "tls"], {"mode": "Terminate"})),
        ("grant-to-typo", "'to' is a required property", "gateway-api", "reference-grant.yaml", "ReferenceGrant",
         rename(["spec", "to"], "too")),
        # kgateway
        ("ge-grpc-typo", "'grpcService' is a required property", "kgateway", "gateway-extension.yaml", "GatewayExtension",
         rename(["spec", "extAuth", "grpcService"], "grpc")),
        ("ge-type-mismatch", 'ExtAuth must not be set when type is not ExtAuth', "kgateway", "gateway-extension.yaml", "GatewayExtension",
         at(["spec", "type"], "ExtProc")),
        ("ge-timeout-format", 'invalid timeout value', "kgateway", "gateway-extension.yaml", "GatewayExtension",
         at(["spec", "extAuth", "grpcService", "requestTimeout"], "0.5s")),
        ("tp-extensionref-typo", "'extensionRefs' was unexpected", "kgateway", "traffic-policy.yaml", "TrafficPolicy",
         rename(["spec", "extAuth", "extensionRef"], "extensionRefs")),
        ("tp-extensionref-and-disable", 'exactly one of the fields', "kgateway", "traffic-policy.yaml", "TrafficPolicy",
         at(["spec", "extAuth", "disable"], {})),
        # Contour
        ("es-protocol", "'grpc' is not one of", "contour", "extension-service.yaml", "ExtensionService",
         at(["spec", "protocol"], "grpc")),
        ("es-no-services", 'non-empty|too short', "contour", "extension-service.yaml", "ExtensionService",
         at(["spec", "services"], [])),
        ("proxy-authorization-typo", "'authorisation' was unexpected", "contour", "httpproxy.yaml", "HTTPProxy",
         rename(["spec", "virtualhost", "authorization"], "authorisation")),
        ("proxy-extensionref-typo", "'extensionServiceRef' was unexpected", "contour", "httpproxy.yaml", "HTTPProxy",
         rename(["spec", "virtualhost", "authorization", "extensionRef"], "extensionServiceRef")),
        ("proxy-failopen-string", "is not of type 'boolean'", "contour", "httpproxy.yaml", "HTTPProxy",
         at(["spec", "virtualhost", "authorization", "failOpen"], "no")),
    ]


MUTATIONS = _mutations()


@pytest.mark.parametrize("expected,door,name,kind,mutate", [m[1:] for m in MUTATIONS], ids=[m[0] for m in MUTATIONS])
def test_validation_refuses_broken_manifests(expected, door, name, kind, mutate):
    [obj] = [o for o in docs(door, name) if o["kind"] == kind][:1]
    validate_object(obj)  # the shipped one passes
    broken = copy.deepcopy(obj)
    mutate(broken)
    with pytest.raises((jsonschema.ValidationError, AssertionError, kubernetes_validate.ValidationError)) as err:
        validate_object(broken)
    message = err.value.message if isinstance(err.value, jsonschema.ValidationError) else str(err.value)
    assert re.search(expected, message), f"refused, but for another reason: {message}"


def test_unknown_kind_is_refused():
    with pytest.raises(AssertionError, match="no vendored schema"):
        validate_object({"apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "SecurityPolicie",
                         "metadata": {"name": "x", "namespace": "demo"}, "spec": {}})


def test_unserved_version_is_refused():
    [obj] = docs("envoy-gateway", "security-policy-grpc.yaml")
    with pytest.raises(AssertionError, match="not served"):
        validate_object({**obj, "apiVersion": "gateway.envoyproxy.io/v1"})


# ---------------------------------------------------------------------------------------------
# Wiring: every door calls the chart's Service, on the right port, and fails closed.
def test_backend_refs_point_at_the_chart_service(chart_service):
    meta, ports = chart_service
    seen = []
    for door, name, obj in namespaced_objects():
        ns, spec = obj["metadata"]["namespace"], obj.get("spec", {})
        kind = obj["kind"]
        refs = []  # (ref, expected port name)
        if kind == "SecurityPolicy":
            for proto, port in (("grpc", "grpc"), ("http", "http")):
                refs += [(r, port) for r in spec["extAuth"].get(proto, {}).get("backendRefs", [])]
        elif kind == "HTTPRoute":
            for rule in spec["rules"]:
                for f in rule.get("filters", []):
                    if f["type"] == "ExternalAuth":
                        ext = f["externalAuth"]
                        refs.append((ext["backendRef"], ext["protocol"].lower()))
        elif kind == "GatewayExtension":
            refs.append((spec["extAuth"]["grpcService"]["backendRef"], "grpc"))
        elif kind == "ExtensionService":
            refs += [(s, "grpc") for s in spec["services"]]
        for ref, port in refs:
            where = f"gateways/{door}/{name}"
            assert is_mesh_authz(ref, meta, ns), f"{where}: {ref} is not the chart's Service {meta}"
            assert ref["port"] == ports[port], f"{where}: {ref} must use the {port} port {ports[port]}"
            seen.append((door, port))
    assert {("envoy-gateway", "grpc"), ("envoy-gateway", "http"), ("gateway-api", "grpc"),
            ("gateway-api", "http"), ("kgateway", "grpc"), ("contour", "grpc")} <= set(seen)


def test_every_door_fails_closed():
    for sp in objects_of("SecurityPolicy"):
        assert sp["spec"]["extAuth"]["failOpen"] is False
    for ge in objects_of("GatewayExtension"):
        assert ge["spec"]["extAuth"]["failOpen"] is False
        assert ge["spec"]["extAuth"].get("statusOnError", 403) >= 400
    for proxy in objects_of("HTTPProxy"):
        assert proxy["spec"]["virtualhost"]["authorization"]["failOpen"] is False
    # In-proxy: Envoy Gateway answers 500 on the targeted routes when the module is not registered
    # (no fail-open switch exists); mesh-authz itself denies what no rule allows and what it
    # cannot check (revocation.on_error, the CRD's default deny).
    eeps = objects_of("EnvoyExtensionPolicy")
    assert eeps
    for eep in eeps:
        for module in eep["spec"]["dynamicModule"]:
            config = module["config"]
            assert config["default_action"] == "deny"
            assert config.get("revocation", {}).get("on_error", "deny") == "deny"


def test_cross_namespace_refs_are_granted(chart_service):
    meta, _ = chart_service
    grants = objects_of("ReferenceGrant")
    for door, name, obj in namespaced_objects():
        ns = obj["metadata"]["namespace"]
        if ns == meta["namespace"]:
            continue
        refs = []
        if obj["kind"] == "SecurityPolicy":
            for proto in ("grpc", "http"):
                refs += obj["spec"]["extAuth"].get(proto, {}).get("backendRefs", [])
        if obj["kind"] == "HTTPRoute":
            refs += [f["externalAuth"]["backendRef"] for rule in obj["spec"]["rules"]
                     for f in rule.get("filters", []) if f["type"] == "ExternalAuth"]
        for ref in refs:
            group = obj["apiVersion"].split("/")[0]
            ok = any(g["metadata"]["namespace"] == ref["namespace"]
                     and any(f == {"group": group, "kind": obj["kind"], "namespace": ns} for f in g["spec"]["from"])
                     and any(t["kind"] == "Service" and t.get("name") in (None, ref["name"]) for t in g["spec"]["to"])
                     for g in grants)
            assert ok, f"gateways/{door}/{name}: no ReferenceGrant lets {obj['kind']} in {ns} reach {ref}"


def test_routes_and_policies_line_up():
    """Every policy targets an object its door ships, and every route hangs off a shipped Gateway."""
    for door in ALL_DOORS:
        objs = [o for _, o in manifests(door) if o["kind"] != "Namespace"]
        names = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objs}
        for o in objs:
            ns = o["metadata"]["namespace"]
            for ref in o.get("spec", {}).get("targetRefs", []):
                if o["kind"] == "AuthorizationPolicy" and ref["kind"] == "Service":
                    continue  # the application's own Service (httpbin sample)
                assert (ref["kind"], ns, ref["name"]) in names, f"{door}: {o['kind']} targets missing {ref}"
            if o["kind"] == "HTTPRoute":
                for parent in o["spec"]["parentRefs"]:
                    assert ("Gateway", ns, parent["name"]) in names, f"{door}: route parent {parent} missing"


# ---------------------------------------------------------------------------------------------
# Istio ambient specifics.
def test_waypoint_gateway_sends_client_identity_in_xfcc():
    [gw] = docs("istio-ambient", "waypoint.yaml")
    assert gw["spec"]["gatewayClassName"] == "istio-waypoint"
    assert gw["metadata"]["annotations"]["ambient.istio.io/xfcc-include-client-identity"] == "true"
    assert gw["spec"]["listeners"] == [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
    [demo] = [n for n in docs("istio-ambient", "namespaces.yaml") if n["metadata"]["name"] == gw["metadata"]["namespace"]]
    assert demo["metadata"]["labels"]["istio.io/use-waypoint"] == gw["metadata"]["name"]
    assert demo["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient"


def test_waypoint_policy_uses_target_refs_and_a_mesh_provider():
    [ap] = docs("istio-ambient", "authorization-policy.yaml")
    spec = ap["spec"]
    assert spec["action"] == "CUSTOM"
    assert "selector" not in spec, "a waypoint ignores selector"
    assert spec["targetRefs"] and all(r["kind"] in ("Service", "Gateway") for r in spec["targetRefs"])
    [operator] = yaml.safe_load_all((REPO / "istio" / "mesh-config.yaml").read_text())
    providers = {p["name"]: p for p in operator["spec"]["meshConfig"]["extensionProviders"]}
    provider = providers[spec["provider"]["name"]]
    # Over HTTP only the listed headers reach mesh-authz; the waypoint's XFCC must be one of them.
    for p in providers.values():
        if "envoyExtAuthzHttp" in p:
            assert "x-forwarded-client-cert" in p["envoyExtAuthzHttp"]["includeRequestHeadersInCheck"]
    assert provider.get("envoyExtAuthzGrpc", provider.get("envoyExtAuthzHttp"))["failOpen"] is False


# ---------------------------------------------------------------------------------------------
# Envoy Gateway in-proxy: the module, registered by the Gateway's EnvoyProxy, runs the mesh-authz
# filter with an inline config.
IN_PROXY = "envoy-gateway-in-proxy"


def in_proxy_policy() -> tuple[dict, dict]:
    """(EnvoyExtensionPolicy, its mesh-authz dynamicModule entry)."""
    [eep] = docs(IN_PROXY, "envoy-extension-policy.yaml")
    [module] = [m for m in eep["spec"]["dynamicModule"] if m.get("filterName") == "mesh-authz"]
    return eep, module


def in_proxy_config_json() -> str:
    """The filter_config Envoy Gateway hands the module: the config as JSON text in a StringValue."""
    _, module = in_proxy_policy()
    return json.dumps(module["config"], separators=(",", ":"))


def test_in_proxy_config_passes_check_config(binary, tmp_path):
    text = in_proxy_config_json()
    config = json.loads(text)
    for p in config["providers"]:
        assert p["audiences"], "every provider names its audiences"
    assert config["identity"]["trust_domains"], "a peer outside the mesh's trust domains is foreign"
    out = check_config(binary, text, tmp_path)
    assert out.returncode == 0, f"gateways/{IN_PROXY}/envoy-extension-policy.yaml config: {out.stdout}{out.stderr}"


def test_in_proxy_check_config_refuses_a_broken_inline_config(binary, tmp_path):
    """The same extraction catches a mistake the CRD cannot (config is free-form there)."""
    config = json.loads(in_proxy_config_json())
    config["default_action"] = "maybe"
    out = check_config(binary, json.dumps(config), tmp_path)
    assert out.returncode != 0 and "default_action" in out.stdout + out.stderr


def test_in_proxy_identity_is_the_connection_certificate():
    identity = json.loads(in_proxy_config_json())["identity"]
    # The module reads the peer certificate from the connection; nothing writes XFCC here.
    assert identity["sources"] == ["certificate"]
    assert identity["trust_xfcc"] is False
    [ctp] = docs(IN_PROXY, "client-traffic-policy.yaml")
    assert ctp["spec"]["tls"]["clientValidation"]["caCertificateRefs"]
    assert "xForwardedClientCert" not in ctp["spec"].get("headers", {})


def test_in_proxy_module_is_registered_on_the_gateways_envoy_proxy():
    eep, module = in_proxy_policy()
    ns = eep["metadata"]["namespace"]
    gateways = {o["metadata"]["name"]: o for o in docs(IN_PROXY, "gateway.yaml") if o["kind"] == "Gateway"}
    [proxy] = docs(IN_PROXY, "envoy-proxy.yaml")
    for ref in eep["spec"]["targetRefs"]:
        # Every route of the Gateway is checked (a route-level target would leave the others open).
        assert ref["kind"] == "Gateway"
        gw = gateways[ref["name"]]
        params = gw["spec"]["infrastructure"]["parametersRef"]
        # Envoy Gateway resolves a Gateway's parametersRef in the Gateway's own namespace.
        assert params == {"group": "gateway.envoyproxy.io", "kind": "EnvoyProxy", "name": proxy["metadata"]["name"]}
        assert gw["metadata"]["namespace"] == proxy["metadata"]["namespace"] == ns
    registry = {m["name"]: m for m in proxy["spec"]["dynamicModules"]}
    entry = registry[module["name"]]
    assert entry["source"].get("type", "Local") == "Local"
    path = entry["source"]["local"]["path"]
    assert path.startswith("/") and path.endswith("/libmesh_authz_envoy.so")
    assert entry["doNotClose"] is True, "the module owns threads: it must never be dlclose()d"
    assert module.get("terminalFilter", False) is False
    # The proxy image is the Dockerfile's envoy-with-mesh-authz target (Envoy 1.40.0 + the .so).
    image = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"]
    assert image.rsplit(":", 1)[0] == "ghcr.io/mesh-authz/envoy-with-mesh-authz"
    assert f"--target envoy-with-mesh-authz -t {image.rsplit(':', 1)[0]}:" in (REPO / "Dockerfile").read_text()


def test_in_proxy_walkthrough_covers_the_steps():
    text = (GATEWAYS / IN_PROXY / "README.md").read_text()
    for needle in ["docker build --target envoy-with-mesh-authz", "helm install", "kubectl apply", "curl",
                   "**401**", "**403**", "**200**", "identity.sources", "trust_xfcc", "Can be enforced",
                   "Cannot be enforced", "doNotClose", "1.40.0", "docs/in-proxy.md"]:
        assert needle in text, f"gateways/{IN_PROXY}/README.md lacks {needle!r}"
    for path in (GATEWAYS / IN_PROXY).glob("*.yaml"):
        assert f"`{path.name}`" in text, f"gateways/{IN_PROXY}/README.md does not describe {path.name}"
    assert not (GATEWAYS / IN_PROXY / VALUES).exists(), "in-proxy: no mesh-authz server, no Helm values"


def test_in_proxy_doc_matches_the_validated_manifests(binary, tmp_path):
    """docs/in-proxy.md's Envoy Gateway example is the door's manifests, field for field (its
    shortened mesh-authz config passes check-config too)."""
    text = (REPO / "docs" / "in-proxy.md").read_text()
    section = text.split("## Envoy Gateway", 1)[1]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    shown = [d for b in blocks for d in yaml.safe_load_all(b) if d]
    assert {d["kind"] for d in shown} >= {"EnvoyProxy", "EnvoyExtensionPolicy"}
    for obj in shown:
        validate_object(obj)
    [proxy] = [d for d in shown if d["kind"] == "EnvoyProxy"]
    [shipped] = docs(IN_PROXY, "envoy-proxy.yaml")
    assert proxy["spec"]["dynamicModules"] == shipped["spec"]["dynamicModules"]
    [eep] = [d for d in shown if d["kind"] == "EnvoyExtensionPolicy"]
    _, module = in_proxy_policy()
    assert {k: v for k, v in eep["spec"]["dynamicModule"][0].items() if k != "config"} == \
        {k: v for k, v in module.items() if k != "config"}
    out = check_config(binary, json.dumps(eep["spec"]["dynamicModule"][0]["config"]), tmp_path)
    assert out.returncode == 0, f"docs/in-proxy.md Envoy Gateway config: {out.stdout}{out.stderr}"
    assert f"gateways/{IN_PROXY}/" in section


# ---------------------------------------------------------------------------------------------
# The mesh-authz side of each door.
def values(door: str) -> dict:
    return yaml.safe_load((GATEWAYS / door / VALUES).read_text())


def rendered_config(door: str) -> str:
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values(door), name="mesh-authz", namespace="mesh-authz", is_install=True)
    [cm] = [d for path, text in rendered.items() if not path.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d and d["kind"] == "ConfigMap"]
    return cm["data"]["config.yaml"]


@pytest.mark.parametrize("door", DOORS)
def test_door_config_passes_check_config(door, binary, tmp_path):
    text = rendered_config(door)
    config = yaml.safe_load(text)
    for p in config["providers"]:
        assert p["audiences"], "every provider names its audiences"
    out = check_config(binary, text, tmp_path)
    assert out.returncode == 0, f"gateways/{door}/{VALUES}: {out.stdout}{out.stderr}"


# What each door's proxy does with x-forwarded-client-cert before ext_authz, which decides
# whether mesh-authz may trust it.
XFCC_WRITTEN_BY_PROXY = {"istio-ambient": True, "envoy-gateway": True, "gateway-api": False,
                         "kgateway": False, "contour": False}


@pytest.mark.parametrize("door", DOORS)
def test_door_config_trusts_xfcc_only_where_the_proxy_writes_it(door):
    identity = values(door)["config"]["identity"]
    assert identity["trust_xfcc"] is XFCC_WRITTEN_BY_PROXY[door]
    assert ("xfcc" in identity["sources"]) is XFCC_WRITTEN_BY_PROXY[door]


def test_ambient_config_reads_only_xfcc():
    identity = values("istio-ambient")["config"]["identity"]
    # source.principal and source.certificate are empty at a waypoint (istio/istio#56379).
    assert identity["sources"] == ["xfcc"]


def test_envoy_gateway_xfcc_is_sanitize_set_on_the_gateway():
    [ctp] = docs("envoy-gateway", "client-traffic-policy.yaml")
    assert ctp["spec"]["headers"]["xForwardedClientCert"]["mode"] == "SanitizeSet"
    [gw] = [o for o in docs("envoy-gateway", "gateway.yaml") if o["kind"] == "Gateway"]
    assert {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw["metadata"]["name"]} \
        in ctp["spec"]["targetRefs"]
    for name in ("security-policy-grpc.yaml", "security-policy-http.yaml"):
        [sp] = docs("envoy-gateway", name)
        assert "x-forwarded-client-cert" in sp["spec"]["extAuth"]["headersToExtAuth"]


def test_contour_authorization_is_on_a_tls_root_with_client_certificates():
    [proxy] = docs("contour", "httpproxy.yaml")
    vh = proxy["spec"]["virtualhost"]
    assert vh["tls"]["secretName"], "Contour allows authorization only on a root that terminates TLS"
    assert vh["tls"]["clientValidation"]["caSecret"]
    [es] = docs("contour", "extension-service.yaml")
    ref = vh["authorization"]["extensionRef"]
    assert (ref["namespace"], ref["name"]) == (es["metadata"]["namespace"], es["metadata"]["name"])
    assert ref["apiVersion"] == es["apiVersion"]


def test_kgateway_policy_refers_to_the_extension():
    [ge] = docs("kgateway", "gateway-extension.yaml")
    [tp] = docs("kgateway", "traffic-policy.yaml")
    ref = tp["spec"]["extAuth"]["extensionRef"]
    assert (ref.get("namespace", tp["metadata"]["namespace"]), ref["name"]) == \
        (ge["metadata"]["namespace"], ge["metadata"]["name"])


# ---------------------------------------------------------------------------------------------
# The walkthroughs.
@pytest.mark.parametrize("door", DOORS)
def test_walkthrough_covers_the_steps(door):
    text = (GATEWAYS / door / "README.md").read_text()
    for needle in ["helm install", "kubectl apply", "curl", "**401**", "**403**", "**200**",
                   "identity.sources", "trust_xfcc", "Can be enforced", "Cannot be enforced", VALUES]:
        assert needle in text, f"gateways/{door}/README.md lacks {needle!r}"
    for path in (GATEWAYS / door).glob("*.yaml"):
        assert f"`{path.name}`" in text, f"gateways/{door}/README.md does not describe {path.name}"


def test_gateways_index_lists_every_door():
    text = (GATEWAYS / "README.md").read_text()
    for door in ALL_DOORS:
        assert f"`{door}/`" in text
    assert sorted(p.name for p in GATEWAYS.iterdir() if p.is_dir()) == sorted(ALL_DOORS), \
        "a folder in gateways/ that no test knows"
    readme = (REPO / "README.md").read_text()
    assert "## Gateways and ambient" in readme
    for door in ALL_DOORS:
        assert f"gateways/{door}/" in readme
