"""The interop decision table: which tokens each foreign JOSE library makes, and the expected answer.

Every expectation comes from the RFCs and the README's contract ("How a check is decided"), never
from what the current binary does. A row is one (library, algorithm, case); the test asserts the
decision (allow / 401 / 403 / 503), on allow the identity header made from the token's `sub`, and
for a few denials the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

# The audience every provider of the library table accepts, and the path of the one rule.
AUDIENCE = "interop-api"
PATH = "/orders/42"
SUBJECT_HEADER = "x-auth-subject"
SCOPE = "orders:read"

# Token lifetime of the ordinary rows, and max_token_lifetime of the `maxlife` providers.
TTL = 600
MAX_LIFETIME_SECS = 3600

# Algorithms mesh-authz supports (README), and the RFC 9864 fully-specified names.
CLASSIC_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"]
FULLY_SPECIFIED_ALGS = ["Ed25519", "ESP256", "ESP384"]

# Which algorithms each library can sign with (checked against its own registry at run time, so a
# library upgrade that adds one is noticed by test_library_algorithm_support).
#  - jose 6: `Ed25519` (RFC 9864), no `ESP256`/`ESP384`.
#  - jwcrypto 1.6: `Ed25519`, no `ESP256`/`ESP384`.
#  - authlib 1.9 (authlib.jose), pyjwt 2.15: `EdDSA` only.
LIBRARY_ALGS = {
    "jose": CLASSIC_ALGS + ["Ed25519"],
    "jwcrypto": CLASSIC_ALGS + ["Ed25519"],
    "authlib": CLASSIC_ALGS,
    "pyjwt": CLASSIC_ALGS,
}
LIBRARIES = list(LIBRARY_ALGS)


def kty_of(alg: str) -> str:
    """The JWK key type an algorithm signs with."""
    if alg[:2] in ("RS", "PS"):
        return "RSA"
    if alg.startswith("ES"):
        return "EC"
    return "OKP"


def crv_of(alg: str) -> str | None:
    """The curve of an EC/OKP algorithm."""
    return {"ES256": "P-256", "ESP256": "P-256", "ES384": "P-384", "ESP384": "P-384"}.get(
        alg, "Ed25519" if kty_of(alg) == "OKP" else None
    )


@dataclass(frozen=True)
class Case:
    """One kind of token, made by every library for every algorithm it supports."""

    name: str
    expected: str  # "allow" or "401" / "403" / "503"
    why: str
    ed_only: bool = False
    # The deny reason (`mesh_authz_checks_total{reason}`, the log line, --explain), pinned where
    # the status alone could be right for the wrong cause.
    reason: str | None = None


CASES = [
    Case("valid", "allow", "signed by the JWKS key named by kid, every claim good"),
    Case("expired", "401", "RFC 7519 §4.1.4: exp 10 min ago, beyond the 30 s skew",
         reason="token_expired"),
    Case("nbf_future", "401", "RFC 7519 §4.1.5: nbf an hour ahead", reason="token_not_yet_valid"),
    Case("wrong_iss", "401", "README: the provider is chosen by exact iss; this one is unknown"),
    Case("wrong_aud", "401", "RFC 7519 §4.1.3: aud is not an audience of the provider",
         reason="token_wrong_audience"),
    Case("aud_array", "allow", "RFC 7519 §4.1.3: aud as an array holding the audience"),
    Case("tampered_payload", "401", "RFC 7515 §5.2: payload changed after signing"),
    Case("foreign_key_same_kid", "401", "signed by another key under the JWKS key's kid"),
    Case("alg_none", "401", "RFC 8725 §3.1: unsecured JWS never accepted"),
    Case("hs256_public_key", "401", "RFC 8725 §2.1: HS256 keyed with the public key's PEM"),
    Case("no_kid", "allow", "RFC 7515 §4.1.4: kid is optional; try every compatible key"),
    Case("kid_shared_across_kty", "allow", "RFC 7517 §4.5: same kid, different kty; pick by kid+alg"),
    Case("exp_1e20", "allow", "RFC 7519 §2 NumericDate: 1e20 is a far-future time, not malformed"),
    Case("exp_1e20_max_lifetime", "401", "README max_token_lifetime: exp - iat over 1h, so a "
         "lifetime refusal, not a malformed token", reason="token_lifetime_too_long"),
    Case("use_enc_key", "401", "RFC 7517 §4.2: a use=enc key never verifies a signature"),
    Case("crit_unknown", "401", "RFC 7515 §4.1.11: an unknown crit extension must be refused"),
    Case("jti_numeric", "401", "RFC 7519 §4.1.7 jti is a string; README: numeric jti refused"),
    Case("typ_at_jwt", "allow", "RFC 9068 typ at+jwt; typ is not part of the README contract"),
    Case("typ_application_at_jwt", "allow", "RFC 9068 §2.1 long form application/at+jwt"),
    Case("typ_absent", "allow", "RFC 7519 §5.1: typ is optional"),
    Case("small_order_key_valid", "allow", "control: the JWKS with the small-order key still loads", True),
    Case("small_order_key_forged", "401", "RFC 8032 §5.1.7: small-order A with R=identity, S=0", True),
]
CASES_BY_NAME = {c.name: c for c in CASES}


@dataclass(frozen=True)
class Row:
    """One decision of the library table."""

    lib: str
    alg: str
    case: Case

    @property
    def id(self) -> str:
        return f"{self.lib}-{self.alg}-{self.case.name}"


def rows() -> list[Row]:
    """Every row of the library table, in a stable order."""
    out = []
    for lib, algs in LIBRARY_ALGS.items():
        for alg in algs:
            for case in CASES:
                if case.ed_only and kty_of(alg) != "OKP":
                    continue
                out.append(Row(lib, alg, case))
    return out


def issuer(lib: str, alg: str, variant: str | None = None) -> str:
    """The issuer of one (library, algorithm) provider; variants get their own JWKS or limits."""
    base = f"https://{lib}.interop.example/{alg}"
    return f"{base}/{variant}" if variant else base


# The kid of each key role in the JWKS a library writes for one algorithm.
KID_SIGNER = "signer"
KID_OTHER = "other"  # same kty/alg, another key: a no-kid token has two candidates
KID_ENC = "enc-key"  # same kty, use=enc
KID_SHARED = "shared"  # in the kidshare JWKS: a key of another kty and the signer, both this kid
KID_SMALL_ORDER = "small-order"

# RFC 8032 encoding of the Ed25519 identity point (y = 1), a small-order public key; a signature
# R = identity, S = 0 satisfies [S]B = R + [k]A for any message under it.
ED25519_IDENTITY = bytes([1]) + bytes(31)
FORGED_ED25519_SIGNATURE = ED25519_IDENTITY + bytes(32)


def token_specs(lib: str, alg: str, now: int) -> list[dict]:
    """What to sign for one (library, algorithm): header, claims and key role of each case.

    Roles: `signer` (in the JWKS under KID_SIGNER), `forger` (not in any JWKS), `enc` (in the JWKS
    with use=enc), `none` (unsecured JWS), `hs256` (HMAC keyed with the signer's public PEM). The
    test derives `tampered_payload`, `exp_1e20_max_lifetime`, `kid_shared_across_kty` and the
    small-order rows from these (see producers.finish).
    """
    base_claims = {
        "iss": issuer(lib, alg),
        "sub": f"alice-{lib}-{alg}",
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + TTL,
        "jti": f"{lib}-{alg}-jti",
        "scope": SCOPE,
    }

    def spec(case, role="signer", header=None, **claims):
        h = {"typ": "JWT", "kid": KID_SIGNER}
        h.update(header or {})
        h = {k: v for k, v in h.items() if v is not None}
        c = dict(base_claims)
        c.update(claims)
        c = {k: v for k, v in c.items() if v is not None}
        return {"case": case, "role": role, "header": h, "claims": c}

    specs = [
        spec("valid"),
        spec("expired", iat=now - 1200, exp=now - 600),
        spec("nbf_future", nbf=now + 3600),
        spec("wrong_iss", iss=f"https://{lib}.interop.example/unknown"),
        spec("wrong_aud", aud="another-api"),
        spec("aud_array", aud=["another-api", AUDIENCE]),
        spec("foreign_key_same_kid", role="forger"),
        spec("alg_none", role="none", header={"kid": None, "typ": None}),
        spec("hs256_public_key", role="hs256"),
        spec("no_kid", header={"kid": None}),
        spec("kid_shared_across_kty", header={"kid": KID_SHARED}, iss=issuer(lib, alg, "kidshare")),
        spec("exp_1e20", exp=10**20),
        spec("exp_1e20_max_lifetime", exp=10**20, iss=issuer(lib, alg, "maxlife")),
        spec("use_enc_key", role="enc", header={"kid": KID_ENC}),
        spec("crit_unknown", header={"crit": ["urn:interop:unknown"], "urn:interop:unknown": True}),
        spec("jti_numeric", jti=12345),
        spec("typ_at_jwt", header={"typ": "at+jwt"}),
        spec("typ_application_at_jwt", header={"typ": "application/at+jwt"}),
        spec("typ_absent", header={"typ": None}),
    ]
    if kty_of(alg) == "OKP":
        specs.append(spec("small_order_key_valid", iss=issuer(lib, alg, "smallorder")))
    return specs
