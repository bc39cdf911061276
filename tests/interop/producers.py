"""Keys, JWKS and tokens made by the foreign JOSE libraries: authlib, jwcrypto, pyjwt (here) and
panva's jose (node/jose_tokens.mjs, run by `make_jose`).

Each library generates its own keys, writes the public JWKS its own way (`kid`, `alg`, `use` added
through its own API where it has one) and signs every token spec of cases.token_specs. Only what a
library refuses to do by design is assembled around it, and then with that library's primitive:
pyjwt and authlib refuse a PEM public key as an HMAC secret, so their HS256 signature comes from
their HMAC algorithm object directly.
"""

from __future__ import annotations

import base64
import json
import subprocess
import warnings
from pathlib import Path

from cases import (
    ED25519_IDENTITY,
    FORGED_ED25519_SIGNATURE,
    KID_ENC,
    KID_OTHER,
    KID_SHARED,
    KID_SIGNER,
    KID_SMALL_ORDER,
    crv_of,
    issuer,
    kty_of,
    token_specs,
)

NODE_DIR = Path(__file__).resolve().parent / "node"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact_json(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def foreign_kty_alg(alg: str) -> str:
    """An algorithm of another key type, for the key sharing the signer's kid."""
    return "ES256" if kty_of(alg) == "RSA" else "RS256"


# --- pyjwt ---------------------------------------------------------------------------------


class PyJwt:
    name = "pyjwt"

    def __init__(self):
        import jwt
        from jwt import algorithms

        self.jwt = jwt
        self.algorithms = algorithms

    def supports(self, alg):
        return alg in self.algorithms.get_default_algorithms()

    def generate(self, alg):
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

        kty = kty_of(alg)
        if kty == "RSA":
            return rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kty == "EC":
            return ec.generate_private_key(ec.SECP256R1() if crv_of(alg) == "P-256" else ec.SECP384R1())
        return ed25519.Ed25519PrivateKey.generate()

    def _alg_obj(self, alg):
        return self.algorithms.get_default_algorithms()[alg]

    def public_jwk(self, key, kid, alg, use="sig"):
        jwk = self._alg_obj(alg).to_jwk(key.public_key(), as_dict=True)
        jwk.update({"kid": kid, "alg": alg, "use": use})
        return jwk

    def public_pem(self, key):
        from cryptography.hazmat.primitives import serialization

        return key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, key, alg, header, claims):
        extra = {k: v for k, v in header.items() if k != "alg"}
        # pyjwt writes typ JWT unless told; an explicit None drops it.
        if "typ" not in extra:
            extra["typ"] = None
        return self.jwt.encode(claims, key, algorithm=alg, headers=extra)

    def sign_none(self, header, claims):
        return self.jwt.encode(claims, None, algorithm="none", headers={"typ": None, **header})

    def sign_hs256(self, secret, header, claims):
        # pyjwt's HMAC refuses PEM keys in prepare_key; its HS256 primitive signs them.
        hmac = self.algorithms.HMACAlgorithm(self.algorithms.HMACAlgorithm.SHA256)
        h = {"alg": "HS256", **header}
        signing_input = b64url(compact_json(h)) + "." + b64url(compact_json(claims))
        return signing_input + "." + b64url(hmac.sign(signing_input.encode(), secret))


# --- authlib -------------------------------------------------------------------------------


class Authlib:
    name = "authlib"

    def __init__(self):
        with warnings.catch_warnings():
            # authlib.jose is deprecated in favour of joserfc but still what deployed code runs;
            # authlib forces its own warning to "always" on import, so ignore it after that.
            from authlib.deprecate import AuthlibDeprecationWarning

            warnings.simplefilter("ignore", AuthlibDeprecationWarning)
            from authlib.jose import JsonWebKey, JsonWebSignature

        self.JsonWebKey = JsonWebKey
        self.jws = JsonWebSignature(
            algorithms=list(JsonWebSignature.ALGORITHMS_REGISTRY),
            private_headers=["urn:interop:unknown"],
        )

    def supports(self, alg):
        return alg in self.jws.ALGORITHMS_REGISTRY

    def generate(self, alg):
        kty = kty_of(alg)
        param = 2048 if kty == "RSA" else crv_of(alg)
        return self.JsonWebKey.generate_key(kty, param, is_private=True)

    def public_jwk(self, key, kid, alg, use="sig"):
        jwk = key.as_dict(is_private=False, alg=alg, use=use)
        jwk["kid"] = kid
        return jwk

    def public_pem(self, key):
        return key.as_pem(is_private=False)

    def sign(self, key, alg, header, claims):
        return self.jws.serialize_compact({"alg": alg, **header}, compact_json(claims), key).decode()

    def sign_none(self, header, claims):
        return self.jws.serialize_compact({"alg": "none", **header}, compact_json(claims), None).decode()

    def sign_hs256(self, secret, header, claims):
        # authlib's OctKey.import_key refuses PEM ("may not be safe"); its HS256 primitive signs.
        alg = self.jws.ALGORITHMS_REGISTRY["HS256"]
        h = {"alg": "HS256", **header}
        signing_input = b64url(compact_json(h)) + "." + b64url(compact_json(claims))
        return signing_input + "." + b64url(alg.sign(signing_input.encode(), _RawSecret(secret)))


class _RawSecret:
    """What authlib's HMACAlgorithm.sign reads from a key: get_op_key('sign') -> bytes."""

    def __init__(self, raw):
        self.raw = raw

    def get_op_key(self, _op):
        return self.raw


# --- jwcrypto ------------------------------------------------------------------------------


class Jwcrypto:
    name = "jwcrypto"

    def __init__(self):
        from jwcrypto import common, jwa, jwk, jws

        self.jwk = jwk
        self.jws = jws
        self.jwa = jwa
        self.registry = {
            "urn:interop:unknown": common.JWSEHeaderParameter("interop test extension", False, True, None)
        }

    def supports(self, alg):
        return alg in self.jwa.JWA.algorithms_registry

    def generate(self, alg):
        kty = kty_of(alg)
        if kty == "RSA":
            return self.jwk.JWK.generate(kty="RSA", size=2048)
        return self.jwk.JWK.generate(kty=kty, crv=crv_of(alg))

    def public_jwk(self, key, kid, alg, use="sig"):
        pub = self.jwk.JWK(**key.export_public(as_dict=True), kid=kid, alg=alg, use=use)
        return pub.export_public(as_dict=True)

    def public_pem(self, key):
        return key.export_to_pem(private_key=False)

    def _sign(self, key, alg, header, claims):
        s = self.jws.JWS(compact_json(claims), header_registry=self.registry)
        s.allowed_algs = [alg]
        s.add_signature(key, alg=None, protected=json.dumps({"alg": alg, **header}))
        return s.serialize(compact=True)

    def sign(self, key, alg, header, claims):
        return self._sign(key, alg, header, claims)

    def sign_none(self, header, claims):
        # jwcrypto signs `none` only with a JWK object in hand; the key is not used.
        return self._sign(self.jwk.JWK(kty="oct", k=b64url(b"unused")), "none", header, claims)

    def sign_hs256(self, secret, header, claims):
        return self._sign(self.jwk.JWK(kty="oct", k=b64url(secret)), "HS256", header, claims)


PY_LIBS = {"pyjwt": PyJwt, "authlib": Authlib, "jwcrypto": Jwcrypto}


def key_family(alg: str) -> str:
    """Algorithms whose keys are interchangeable: every RS*/PS* takes an RSA key."""
    return kty_of(alg) if kty_of(alg) == "RSA" else f"{kty_of(alg)}-{crv_of(alg)}"


class KeyPool:
    """One key per (key family, role) for a library: the six RSA algorithms share their RSA keys
    (each provider still gets its own JWKS, with that algorithm's `alg`), which keeps RSA key
    generation, the slow part, to five keys per library."""

    def __init__(self, generate):
        self.generate = generate
        self.keys = {}

    def get(self, alg: str, role: str):
        slot = (key_family(alg), role)
        if slot not in self.keys:
            self.keys[slot] = self.generate(alg)
        return self.keys[slot]


def make_python(lib: str, algs: list[str], now: int) -> dict:
    """Keys, JWKS and tokens of one Python library, in the shape node/jose_tokens.mjs prints."""
    impl = PY_LIBS[lib]()
    pool = KeyPool(impl.generate)
    out = {}
    for alg in algs:
        signer, other, forger, enc = (pool.get(alg, role) for role in ("signer", "other", "forger", "enc"))
        falg = foreign_kty_alg(alg)
        foreign = pool.get(falg, "foreign")
        tokens = {}
        for spec in token_specs(lib, alg, now):
            role, header, claims = spec["role"], spec["header"], spec["claims"]
            if role == "none":
                tok = impl.sign_none(header, claims)
            elif role == "hs256":
                tok = impl.sign_hs256(impl.public_pem(signer), header, claims)
            else:
                key = {"signer": signer, "forger": forger, "enc": enc}[role]
                tok = impl.sign(key, alg, header, claims)
            tokens[spec["case"]] = tok if isinstance(tok, str) else tok.decode()
        out[alg] = {
            "jwks": {
                "keys": [
                    impl.public_jwk(other, KID_OTHER, alg),
                    impl.public_jwk(signer, KID_SIGNER, alg),
                    impl.public_jwk(enc, KID_ENC, alg, use="enc"),
                ]
            },
            "jwks_kidshare": {
                "keys": [
                    impl.public_jwk(foreign, KID_SHARED, falg),
                    impl.public_jwk(signer, KID_SHARED, alg),
                ]
            },
            "tokens": tokens,
        }
    return out


def start_jose(algs: list[str], now: int, workdir: Path) -> subprocess.Popen:
    """Starts the same for panva's jose, in node (one process for every algorithm); it runs while
    the Python libraries make theirs. Collect with `collect_jose`."""
    plan = {alg: {"foreign_alg": foreign_kty_alg(alg), "specs": token_specs("jose", alg, now)} for alg in algs}
    plan_path = workdir / "jose-plan.json"
    plan_path.write_text(json.dumps(plan))
    return subprocess.Popen(
        ["node", str(NODE_DIR / "jose_tokens.mjs"), str(plan_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NODE_DIR,
    )


def collect_jose(proc: subprocess.Popen) -> dict:
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"node jose_tokens.mjs failed (exit {proc.returncode}): {stderr[-2000:]}")
    return json.loads(stdout)


def finish(lib: str, alg: str, made: dict, now: int) -> dict:
    """Adds the rows derived from a library's output: the tampered payload and the small-order
    JWKS with its forged token. Returns {case: token} plus the JWKS per provider variant."""
    tokens = dict(made["tokens"])
    h, _p, s = tokens["valid"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(_p + "=" * (-len(_p) % 4)))
    claims["sub"] = "mallory"
    tokens["tampered_payload"] = f"{h}.{b64url(compact_json(claims))}.{s}"
    jwks = {
        None: made["jwks"],
        "kidshare": made["jwks_kidshare"],
        "maxlife": made["jwks"],
    }
    if kty_of(alg) == "OKP":
        signer_jwk = next(k for k in made["jwks"]["keys"] if k.get("kid") == KID_SIGNER)
        small = {"kty": "OKP", "crv": "Ed25519", "x": b64url(ED25519_IDENTITY)}
        small.update({"kid": KID_SMALL_ORDER, "alg": alg, "use": "sig"})
        jwks["smallorder"] = {"keys": [signer_jwk, small]}
        forged_claims = {
            "iss": issuer(lib, alg, "smallorder"),
            "sub": "mallory",
            "aud": claims["aud"],
            "iat": now,
            "exp": now + 600,
            "jti": f"{lib}-{alg}-forged",
        }
        header = {"alg": alg, "kid": KID_SMALL_ORDER, "typ": "JWT"}
        tokens["small_order_key_forged"] = ".".join(
            [b64url(compact_json(header)), b64url(compact_json(forged_claims)), b64url(FORGED_ED25519_SIGNATURE)]
        )
    return {"tokens": tokens, "jwks": jwks}
