"""What mesh-authz decides, with a door's shipped config, on the identity that door delivers.

The real binary serves the config the chart renders from gateways/<door>/mesh-authz-values.yaml
(only the JWKS swapped for a key made here, and the listeners moved to loopback), and answers
`mesh-authz check` (gRPC Check) and HTTP `/check` requests shaped like the door's proxy sends them:

* istio-ambient: the annotated waypoint's x-forwarded-client-cert,
  `By=<waypoint SPIFFE ID>;URI=<caller SPIFFE ID>` (istio/istio#59986), with an empty
  source.principal and source.certificate (istio/istio#56379);
* contour: source.principal and source.certificate (include_peer_certificate), so certificate-bound
  tokens can be enforced;
* envoy-gateway: source.principal from the client certificate and the x-forwarded-client-cert
  Envoy writes with SanitizeSet (`Hash`, `URI`), the only carrier of the certificate's hash there
  (envoyproxy/gateway#7360).
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import helm_python as helm
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "mesh-authz"
ISSUER = "https://auth.example.com"
AUDIENCE = "my-api"
TD = "spiffe://cluster.local"
WAYPOINT = f"{TD}/ns/demo/sa/waypoint"
CURL = f"{TD}/ns/demo/sa/curl"
OPS = f"{TD}/ns/ops/sa/admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60)


class Door:
    """A served door config: gRPC `check` and HTTP `/check` against it."""

    def __init__(self, binary: Path, grpc: int, http: int, key: Path):
        self.binary, self.grpc, self.http, self.key = binary, grpc, http, key

    def mint(self, sub: str, *extra: str) -> str:
        out = run(self.binary, "mint", "--key", str(self.key), "--kid", "k1", "--iss", ISSUER,
                  "--aud", AUDIENCE, "--sub", sub, "--ttl", "5m", *extra)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def check(self, path: str, *args: str) -> str:
        out = run(self.binary, "check", "--addr", f"127.0.0.1:{self.grpc}", "--path", path, "--explain", *args)
        assert out.returncode in (0, 1), out.stderr  # 0 allow, 1 deny; 2 would be an error
        return out.stdout

    def http_check(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http}/check{path}", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}


def serve_door(door: str, binary: Path, tmp_path: Path):
    keys = tmp_path / "keys"
    out = run(binary, "keygen", "--alg", "ES256", "--kid", "k1", "--out", str(keys))
    assert out.returncode == 0, out.stderr
    values = yaml.safe_load((REPO / "gateways" / door / "mesh-authz-values.yaml").read_text())
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render(values, name="mesh-authz", namespace="mesh-authz", is_install=True)
    [cm] = [d for p, text in rendered.items() if not p.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d and d["kind"] == "ConfigMap"]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    [provider] = config["providers"]
    assert (provider["issuer"], provider["audiences"]) == (ISSUER, [AUDIENCE])
    provider["jwks"] = {"file": str(keys / "jwks.json")}
    provider["algorithms"] = ["ES256"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    grpc, http = free_port(), free_port()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([str(binary), "serve", "--config", str(path), "--grpc-addr", f"127.0.0.1:{grpc}",
                             "--http-addr", f"127.0.0.1:{http}"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "mesh-authz did not become ready: " + (tmp_path / "serve.log").read_text()
        time.sleep(0.1)
    return proc, log, Door(binary, grpc, http, keys / "k1.pem")


@pytest.fixture()
def ambient(binary, tmp_path):
    proc, log, door = serve_door("istio-ambient", binary, tmp_path)
    yield door
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture()
def contour(binary, tmp_path):
    proc, log, door = serve_door("contour", binary, tmp_path)
    yield door
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def waypoint_xfcc(caller: str) -> str:
    return f"x-forwarded-client-cert: By={WAYPOINT};URI={caller}"


# ---------------------------------------------------------------------------------------------
def test_ambient_allows_the_caller_the_waypoint_names(ambient):
    token = ambient.mint("alice")
    out = ambient.check("/headers", "--token", token, "--header", waypoint_xfcc(CURL))
    assert out.startswith("ALLOW"), out
    assert f"x-auth-spiffe-id: {CURL}" in out and "x-auth-subject: alice" in out


def test_ambient_without_a_token_is_401(ambient):
    out = ambient.check("/headers", "--header", waypoint_xfcc(CURL))
    assert out.startswith("DENY 401"), out


@pytest.mark.parametrize("xfcc", [
    f"By={WAYPOINT};URI=",              # the waypoint had no peer identity for the caller
    f"By={WAYPOINT};URI=-",
    "",                                  # no header at all
    f"By={WAYPOINT};URI=spiffe://evil.example/ns/demo/sa/curl",  # another trust domain
], ids=["empty-uri", "dash-uri", "absent", "foreign-trust-domain"])
def test_ambient_without_a_mesh_caller_is_403(ambient, xfcc):
    token = ambient.mint("alice")
    args = ["--token", token] + (["--header", f"x-forwarded-client-cert: {xfcc}"] if xfcc else [])
    out = ambient.check("/headers", *args)
    assert out.startswith("DENY 403"), out


def test_ambient_ignores_source_principal(ambient):
    """The config reads only the waypoint's XFCC: a source.principal (which a waypoint never sets,
    istio/istio#56379) is not an identity here."""
    token = ambient.mint("alice")
    out = ambient.check("/headers", "--token", token, "--spiffe-id", CURL)
    assert out.startswith("DENY 403"), out


def test_ambient_admin_needs_the_ops_identity_from_the_waypoint(ambient):
    token = ambient.mint("root", "--scope", "admin")
    out = ambient.check("/admin/users", "--token", token, "--header", waypoint_xfcc(CURL))
    assert out.startswith("DENY 403"), out
    out = ambient.check("/admin/users", "--token", token, "--header", waypoint_xfcc(OPS))
    assert out.startswith("ALLOW"), out


def test_ambient_over_http_ext_authz(ambient):
    """The waypoint's HTTP provider (mesh-authz-http) forwards x-forwarded-client-cert too."""
    token = ambient.mint("alice")
    xfcc = f"By={WAYPOINT};URI={CURL}"
    status, headers = ambient.http_check("/headers", {"authorization": f"Bearer {token}",
                                                      "x-forwarded-client-cert": xfcc})
    assert status == 200 and headers["x-auth-spiffe-id"] == CURL
    status, _ = ambient.http_check("/headers", {"authorization": f"Bearer {token}"})
    assert status == 403
    status, headers = ambient.http_check("/headers", {"x-forwarded-client-cert": xfcc})
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")


# ---------------------------------------------------------------------------------------------
def make_cert(tmp_path: Path, name: str, spiffe_id: str) -> Path:
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
    out = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                          "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
                          "-addext", f"subjectAltName=URI:{spiffe_id}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return cert


def test_contour_enforces_certificate_bound_tokens(contour, tmp_path):
    """Contour always sends the client certificate: a token bound to it passes the admin rule, the
    same token from another certificate with the same SPIFFE ID does not."""
    cert = make_cert(tmp_path, "ops", OPS)
    other = make_cert(tmp_path, "other", OPS)
    token = contour.mint("root", "--scope", "admin", "--bind-cert", str(cert))
    out = contour.check("/admin/users", "--token", token, "--spiffe-id", OPS, "--peer-cert", str(cert))
    assert out.startswith("ALLOW"), out
    # RFC 8705 §3: a bound token from another certificate is an invalid token (401), on every rule.
    out = contour.check("/admin/users", "--token", token, "--spiffe-id", OPS, "--peer-cert", str(other))
    assert out.startswith("DENY 401") and "reason=token_binding_mismatch" in out, out
    unbound = contour.mint("root", "--scope", "admin")
    out = contour.check("/admin/users", "--token", unbound, "--spiffe-id", OPS, "--peer-cert", str(cert))
    assert out.startswith("DENY 403"), out


def test_contour_without_a_client_certificate_is_403(contour):
    token = contour.mint("alice")
    out = contour.check("/api/x", "--token", token)
    assert out.startswith("DENY 403"), out


# ---------------------------------------------------------------------------------------------
@pytest.fixture()
def envoy_gateway(binary, tmp_path):
    proc, log, door = serve_door("envoy-gateway", binary, tmp_path)
    yield door
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def sanitize_set_xfcc(cert: Path) -> str:
    """What Envoy writes with SanitizeSet and certDetailsToAdd [URI]: Hash=<hex SHA-256 of the DER>;URI=…"""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return f"Hash={hashlib.sha256(der).hexdigest()};URI={OPS}"


def test_envoy_gateway_bound_tokens_via_xfcc_hash(envoy_gateway, tmp_path):
    """No source.certificate through Envoy Gateway (envoyproxy/gateway#7360): the certificate's hash
    comes from the SanitizeSet XFCC, over gRPC (with source.principal) and over HTTP."""
    cert = make_cert(tmp_path, "ops", OPS)
    other = make_cert(tmp_path, "other", OPS)
    token = envoy_gateway.mint("root", "--scope", "admin", "--bind-cert", str(cert))
    xfcc = f"x-forwarded-client-cert: {sanitize_set_xfcc(cert)}"
    out = envoy_gateway.check("/admin/users", "--token", token, "--spiffe-id", OPS, "--header", xfcc)
    assert out.startswith("ALLOW"), out
    out = envoy_gateway.check("/admin/users", "--token", token, "--spiffe-id", OPS,
                              "--header", f"x-forwarded-client-cert: {sanitize_set_xfcc(other)}")
    assert out.startswith("DENY 401") and "reason=token_binding_mismatch" in out, out
    # The principal alone (no XFCC) has no hash: the binding cannot be proven, so 401 as well.
    out = envoy_gateway.check("/admin/users", "--token", token, "--spiffe-id", OPS)
    assert out.startswith("DENY 401") and "reason=token_binding_mismatch" in out, out
    status, headers = envoy_gateway.http_check("/admin/users", {"authorization": f"Bearer {token}",
                                                                "x-forwarded-client-cert": sanitize_set_xfcc(cert)})
    assert status == 200 and headers["x-auth-spiffe-id"] == OPS
    status, _ = envoy_gateway.http_check("/admin/users", {"authorization": f"Bearer {token}",
                                                          "x-forwarded-client-cert": sanitize_set_xfcc(other)})
    assert status == 401


def test_envoy_gateway_api_needs_only_a_token(envoy_gateway):
    token = envoy_gateway.mint("alice")
    assert envoy_gateway.check("/api/x", "--token", token).startswith("ALLOW")
    assert envoy_gateway.check("/api/x").startswith("DENY 401")


def test_envoy_gateway_route_context_selects_the_dry_run_rule(envoy_gateway):
    """security-policy-grpc.yaml's contextExtensions reach the rules: the values' dry-run rule
    `api-v2` (scope `api`) applies only on those routes, is reported, and never decides."""
    policy = yaml.safe_load((REPO / "gateways" / "envoy-gateway" / "security-policy-grpc.yaml").read_text())
    context = [f"--context={ce['name']}={ce['value']}" for ce in policy["spec"]["extAuth"]["contextExtensions"]]
    assert context == ["--context=door=envoy-gateway"]
    token = envoy_gateway.mint("alice")
    out = envoy_gateway.check("/api/x", "--token", token, *context)
    assert out.startswith("ALLOW"), out
    assert "dry_run={check_result=denied reason=insufficient_scope rule=api-v2 status=403}" in out, out
    out = envoy_gateway.check("/api/x", *context)
    assert out.startswith("DENY 401") and "reason=token_missing rule=api\n" in out, out
    assert "dry_run={check_result=denied reason=token_missing rule=api-v2 status=401}" in out, out
    # With the scope, or without the route's context (HTTP ext_authz, another route): nothing to report.
    scoped = envoy_gateway.mint("bob", "--scope", "api")
    out = envoy_gateway.check("/api/x", "--token", scoped, *context)
    assert out.startswith("ALLOW") and "dry_run" not in out, out
    out = envoy_gateway.check("/api/x", "--token", token, "--header", "door: envoy-gateway")
    assert out.startswith("ALLOW") and "dry_run" not in out, out
