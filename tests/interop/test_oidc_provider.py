"""A real OpenID Provider (npm `oidc-provider`, node/op.mjs) over TLS with a test CA, and mesh-authz
configured against it with `jwks: { discovery: true, ca_file }`.

The OP signs RFC 9068 JWT access tokens (`typ: at+jwt`, client_credentials with an RFC 8707
resource indicator) with RSA (RS256, PS256), EC P-256 and Ed25519 keys, and id_tokens through its
authorization-code flow. Key rotation restarts the OP: its tests come last (pytest keeps file
order).
"""

from __future__ import annotations

import base64
import json
import time

import pytest
from harness import MeshAuthz, OpenIdProvider, authorization_code_id_token, free_port, make_tls, wait_until

CLIENT_ID = "orders-frontend"
CLIENT_SECRET = "interop-client-secret-not-a-real-one"
REDIRECT_URI = "https://client.interop.example/cb"
SCOPE = "orders:read"
API = "https://api.interop.example"
# Resource indicator -> the alg the OP signs its access tokens with.
RESOURCES = {
    f"{API}/rs": "RS256",
    f"{API}/ps": "PS256",
    f"{API}/es": "ES256",
    f"{API}/ed": "EdDSA",
}
SHORT = f"{API}/short"  # 2-second access tokens
OTHER = "https://other-api.interop.example"  # a resource mesh-authz does not accept
KEYS = [{"kid": "rsa-1", "alg": "RS256"}, {"kid": "ps-1", "alg": "PS256"},
        {"kid": "ec-1", "alg": "ES256"}, {"kid": "ed-1", "alg": "EdDSA"}]
ROTATED = [{"kid": "rsa-2", "alg": "RS256"}, {"kid": "ps-2", "alg": "PS256"},
           {"kid": "ec-2", "alg": "ES256"}, {"kid": "ed-2", "alg": "EdDSA"}]
HEADERS = {"sub": "x-auth-subject", "client_id": "x-auth-client", "scope": "x-auth-scope"}


def b64json(segment: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def mesh_config(op: OpenIdProvider, audiences: list[str]) -> dict:
    return {
        "providers": [{
            "name": "oidc-provider",
            "issuer": op.issuer,
            "audiences": audiences,
            "jwks": {
                "discovery": True,
                "ca_file": str(op.ca_path),
                "refresh_interval": "1s",
                "min_refetch_interval": "1s",
            },
            "algorithms": ["RS256", "PS256", "ES256", "EdDSA"],
            "clock_skew": "0s",
            "claims_to_headers": HEADERS,
        }],
        "identity": {"sources": ["principal"], "trust_domains": []},
        "rules": [{"name": "orders", "match": {"path_prefix": "/orders"}, "require": {"token": True}}],
        "default_action": "deny",
    }


@pytest.fixture(scope="module")
def env(binary, node_packages, tmp_path_factory):
    work = tmp_path_factory.mktemp("oidc-provider")
    tls = make_tls(work)
    resources = {r: {"alg": alg, "scope": SCOPE, "ttl": 300} for r, alg in RESOURCES.items()}
    resources[SHORT] = {"alg": "RS256", "scope": SCOPE, "ttl": 2}
    resources[OTHER] = {"alg": "RS256", "scope": SCOPE, "ttl": 300}
    op = OpenIdProvider(work, free_port(), tls, {
        "clients": [{
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_types": ["client_credentials", "authorization_code"],
            "response_types": ["code"],
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "client_secret_basic",
            "scope": f"openid {SCOPE}",
        }],
        "resources": resources,
    })
    servers = []
    try:
        op.start(KEYS)
        # The API's view: its audiences are the resource indicators.
        api = MeshAuthz(binary, work, mesh_config(op, list(RESOURCES) + [SHORT]), name="mesh-authz-api")
        servers.append(api)
        # An operator who accepts the OP's id_tokens: the audience is the client_id.
        idt = MeshAuthz(binary, work, mesh_config(op, [CLIENT_ID]), name="mesh-authz-id-token")
        servers.append(idt)
        yield {"op": op, "api": api, "id_token_server": idt}
    finally:
        for s in servers:
            s.stop()
        op.stop()


def assert_decision(got, want, server, token):
    assert got.status == want, (
        f"expected {want}, got {got.describe()}\ntoken: {token}\n{got.output}\n{server.status()}"
    )


def test_discovery_and_key_types(env):
    """Discovery names the JWKS; it holds RSA, EC P-256 and Ed25519 public keys, and mesh-authz
    loaded them (ready)."""
    op = env["op"]
    doc = op.json("/.well-known/openid-configuration")
    assert doc["issuer"] == op.issuer
    jwks = op.json(doc["jwks_uri"].removeprefix(op.issuer))
    kinds = {(k["kty"], k.get("crv")) for k in jwks["keys"]}
    assert kinds == {("RSA", None), ("EC", "P-256"), ("OKP", "Ed25519")}, kinds
    assert all("d" not in k for k in jwks["keys"])
    assert env["api"].ready, env["api"].status()


@pytest.mark.parametrize("resource", list(RESOURCES))
def test_access_token_allowed(env, resource):
    """An RFC 9068 access token for an accepted resource: allowed, identity headers from it."""
    token = env["op"].client_credentials(CLIENT_ID, CLIENT_SECRET, resource, SCOPE)
    header, claims = b64json(token.split(".")[0]), b64json(token.split(".")[1])
    assert header["typ"] == "at+jwt" and header["alg"] == RESOURCES[resource], header
    assert claims["aud"] == resource and claims["client_id"] == CLIENT_ID, claims
    got = env["api"].check(token)
    assert_decision(got, "allow", env["api"], token)
    assert got.headers.get("x-auth-subject") == CLIENT_ID, got.output
    assert got.headers.get("x-auth-client") == CLIENT_ID, got.output
    assert got.headers.get("x-auth-scope") == SCOPE, got.output


def test_wrong_resource_denied(env):
    """A valid token of the same OP for another resource: aud not accepted, 401."""
    token = env["op"].client_credentials(CLIENT_ID, CLIENT_SECRET, OTHER, SCOPE)
    assert b64json(token.split(".")[1])["aud"] == OTHER
    assert_decision(env["api"].check(token), "401", env["api"], token)


def test_expired_access_token_denied(env):
    """A 2-second access token: allowed while valid, 401 once past exp (clock_skew 0s)."""
    token = env["op"].client_credentials(CLIENT_ID, CLIENT_SECRET, SHORT, SCOPE)
    exp = b64json(token.split(".")[1])["exp"]
    assert_decision(env["api"].check(token), "allow", env["api"], token)
    wait_until(lambda: time.time() >= exp + 1, 10, "the access token to expire")
    assert_decision(env["api"].check(token), "401", env["api"], token)


def test_id_token_only_where_the_operator_accepts_it(env):
    """An id_token (aud = client_id) is not an access token for the API: 401 there; an operator
    whose audiences name the client_id accepts it, with the end user as subject."""
    token = authorization_code_id_token(env["op"], CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, "alice")
    claims = b64json(token.split(".")[1])
    assert claims["aud"] == CLIENT_ID and claims["sub"] == "alice", claims
    assert_decision(env["api"].check(token), "401", env["api"], token)
    got = env["id_token_server"].check(token)
    assert_decision(got, "allow", env["id_token_server"], token)
    assert got.headers.get("x-auth-subject") == "alice", got.output


@pytest.fixture(scope="module")
def rotated(env):
    """The OP rotates (new keys, old ones removed) after mesh-authz has allowed, and so cached,
    one token of an old key; returns once a token of the new key is allowed (mesh-authz has
    fetched the new JWKS)."""
    op, api = env["op"], env["api"]
    seen = op.client_credentials(CLIENT_ID, CLIENT_SECRET, f"{API}/rs", SCOPE)
    unseen = op.client_credentials(CLIENT_ID, CLIENT_SECRET, f"{API}/es", SCOPE)
    assert_decision(api.check(seen), "allow", api, seen)

    op.restart(ROTATED)
    jwks = op.json(op.json("/.well-known/openid-configuration")["jwks_uri"].removeprefix(op.issuer))
    assert {k["kid"] for k in jwks["keys"]} == {k["kid"] for k in ROTATED}
    fresh = op.client_credentials(CLIENT_ID, CLIENT_SECRET, f"{API}/rs", SCOPE)
    assert b64json(fresh.split(".")[0])["kid"] == "rsa-2"
    # Refresh every 1 s, and an unknown kid refetches: a bounded wait for the new key.
    try:
        wait_until(lambda: api.check(fresh).status == "allow", 15, "the rotated key to be accepted")
    except TimeoutError as e:
        pytest.fail(f"{e}\n{api.status()}")
    return {"seen": seen, "unseen": unseen, "fresh": fresh}


def test_key_rotation_new_key_allowed(env, rotated):
    got = env["api"].check(rotated["fresh"])
    assert_decision(got, "allow", env["api"], rotated["fresh"])
    assert got.headers.get("x-auth-subject") == CLIENT_ID, got.output


def test_key_rotation_removed_key_denied(env, rotated):
    """A token of a removed key that mesh-authz never saw: 401."""
    assert_decision(env["api"].check(rotated["unseen"]), "401", env["api"], rotated["unseen"])


def test_key_rotation_removed_key_denied_after_cached_allow(env, rotated):
    """A token of a removed key that mesh-authz allowed before the rotation: the key is no longer
    in the issuer's JWKS, so the token no longer verifies (RFC 7517 §5: the set is the keys to
    use); a verified-token cache must not outlive the key."""
    assert_decision(env["api"].check(rotated["seen"]), "401", env["api"], rotated["seen"])
