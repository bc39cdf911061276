"""Tokens and JWKS made by four other JOSE implementations (panva's jose, authlib, jwcrypto,
pyjwt), each decision checked through the real mesh-authz binary.

One `mesh-authz serve` holds a provider per (library, algorithm) and per variant (the JWKS with a
kid shared across key types, the one with a small-order Ed25519 key, and one with
max_token_lifetime), each reading the JWKS file the library wrote; a second server holds the
providers of the RFC 9864 fully-specified algorithms, so a config the binary refuses there cannot
hide the classic rows. Every row of cases.py is one test.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest
from cases import (
    AUDIENCE,
    CLASSIC_ALGS,
    FULLY_SPECIFIED_ALGS,
    LIBRARY_ALGS,
    MAX_LIFETIME_SECS,
    PATH,
    SUBJECT_HEADER,
    issuer,
    rows,
)
from harness import NODE_DIR, MeshAuthz
from producers import PY_LIBS, collect_jose, finish, make_python, start_jose

ROWS = rows()


def provider(lib, alg, variant, jwks_path):
    p = {
        "name": f"{lib}-{alg}" + (f"-{variant}" if variant else ""),
        "issuer": issuer(lib, alg, variant),
        "audiences": [AUDIENCE],
        "jwks": {"file": str(jwks_path)},
        "algorithms": [alg],
        "claims_to_headers": {"sub": SUBJECT_HEADER},
    }
    if variant == "maxlife":
        p["max_token_lifetime"] = f"{MAX_LIFETIME_SECS}s"
    return p


def server_config(providers):
    return {
        "providers": providers,
        "identity": {"sources": ["principal"], "trust_domains": []},
        "rules": [{"name": "orders", "match": {"path_prefix": "/orders"}, "require": {"token": True}}],
        "default_action": "deny",
    }


@pytest.fixture(scope="module")
def table(binary, node_packages, tmp_path_factory):
    """Makes every key, JWKS and token, starts the servers, and checks every row once."""
    work = tmp_path_factory.mktemp("library-tokens")
    now = int(time.time())
    jose = start_jose(LIBRARY_ALGS["jose"], now, work)
    made = {lib: make_python(lib, LIBRARY_ALGS[lib], now) for lib in PY_LIBS}
    made["jose"] = collect_jose(jose)

    groups = {"classic": [], "fully-specified": []}
    tokens = {}
    jwks_by_issuer = {}
    for lib, per_alg in made.items():
        for alg, out in per_alg.items():
            done = finish(lib, alg, out, now)
            group = "classic" if alg in CLASSIC_ALGS else "fully-specified"
            for variant, jwks in done["jwks"].items():
                path = work / f"jwks-{lib}-{alg}-{variant or 'main'}.json"
                path.write_text(json.dumps(jwks))
                jwks_by_issuer[issuer(lib, alg, variant)] = jwks
                groups[group].append(provider(lib, alg, variant, path))
            for case, token in done["tokens"].items():
                tokens[f"{lib}-{alg}-{case}"] = (group, token)

    servers = {}
    try:
        for group, providers in groups.items():
            servers[group] = MeshAuthz(binary, work, server_config(providers), name=f"mesh-authz-{group}")
        decisions = {}
        for group, server in servers.items():
            mine = {rid: tok for rid, (g, tok) in tokens.items() if g == group}
            decisions.update(server.check_many(mine, PATH))
        yield {"tokens": tokens, "decisions": decisions, "servers": servers, "jwks": jwks_by_issuer}
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_decision(table, row):
    assert row.id in table["tokens"], f"{row.lib} made no token for {row.case.name} ({row.alg})"
    group, token = table["tokens"][row.id]
    got = table["decisions"][row.id]
    server = table["servers"][group]
    want = row.case.expected
    msg = (
        f"{row.id}: expected {want}, got {got.describe()} — {row.case.why}\n"
        f"token: {token}\ncheck output:\n{got.output}\n{server.status() if got.status in ('error', '503') else ''}"
    )
    assert got.status == want, msg
    if row.case.reason:
        assert got.reason == row.case.reason, f"reason {got.reason!r}, want {row.case.reason!r}\n{msg}"
    if want == "allow":
        sub = f"alice-{row.lib}-{row.alg}"
        assert got.headers.get(SUBJECT_HEADER) == sub, msg


def test_allow_rows_verify_with_jwcrypto(table):
    """The table's own check: every token expected to be allowed verifies, with jwcrypto, against
    the JWKS its issuer's provider reads (key by kid, or every key when there is none), so an
    `allow` row fails only where mesh-authz disagrees with another implementation."""
    from jwcrypto import jwk, jws

    failures = []
    for row in ROWS:
        if row.case.expected != "allow":
            continue
        _group, token = table["tokens"][row.id]
        header = json.loads(base64url_decode(token.split(".")[0]))
        claims = json.loads(base64url_decode(token.split(".")[1]))
        keys = [k for k in table["jwks"][claims["iss"]]["keys"]
                if k.get("use", "sig") == "sig" and k.get("alg") == header["alg"]
                and ("kid" not in header or k.get("kid") == header["kid"])]
        ok = False
        for key in keys:
            obj = jws.JWS()
            obj.allowed_algs = [header["alg"]]
            try:
                obj.deserialize(token, jwk.JWK(**key))
                ok = True
                break
            except jws.InvalidJWSSignature:
                continue
        if not ok:
            failures.append(row.id)
    assert not failures, f"allow rows that jwcrypto does not verify: {failures}"


def base64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_server_logs_hold_no_token(table):
    """Hundreds of denials were logged: no token, nor its signature, appears in them."""
    logs = ""
    for server in table["servers"].values():
        for path in (server.process.stdout_path, server.process.stderr_path):
            logs += path.read_text(errors="replace")
    assert "check denied" in logs, "no denial was logged: the servers did not answer"
    leaked = [rid for rid, (_g, tok) in table["tokens"].items()
              if tok in logs or (tok.rsplit(".", 1)[-1] and tok.rsplit(".", 1)[-1] in logs)]
    assert not leaked, f"tokens in the server logs: {leaked[:10]}"


def test_every_row_was_made(table):
    """Each library made every token of the table (no row silently missing)."""
    missing = [r.id for r in ROWS if r.id not in table["tokens"]]
    assert not missing, f"rows without a token: {missing}"


def test_library_algorithm_support():
    """LIBRARY_ALGS is what each library really signs with: a library upgrade that adds a
    fully-specified algorithm (RFC 9864 ESP256/ESP384/Ed25519) makes this fail, so the row is added."""
    for lib, cls in PY_LIBS.items():
        impl = cls()
        for alg in CLASSIC_ALGS + FULLY_SPECIFIED_ALGS:
            assert impl.supports(alg) == (alg in LIBRARY_ALGS[lib]), f"{lib} {alg}"


JOSE_SUPPORT = """
import { generateKeyPair } from 'jose';
const out = {};
for (const alg of JSON.parse(process.argv[1])) {
  try {
    await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) });
    out[alg] = true;
  } catch { out[alg] = false; }
}
console.log(JSON.stringify(out));
"""


def test_jose_algorithm_support(node_packages):
    """The same for panva's jose, for the algorithms whose support varies (the table itself
    fails if jose stops signing a classic one); no RSA key generation, which is slow."""
    algs = ["ES256", "EdDSA"] + FULLY_SPECIFIED_ALGS
    p = subprocess.run(
        ["node", "--input-type=module", "-e", JOSE_SUPPORT, json.dumps(algs)],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60, check=False,
    )
    assert p.returncode == 0, p.stderr
    support = json.loads(p.stdout)
    for alg in algs:
        assert support[alg] == (alg in LIBRARY_ALGS["jose"]), f"jose {alg}"
