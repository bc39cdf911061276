"""Processes for the interop tests: the real mesh-authz binary (`serve --config`, decisions through
`mesh-authz check --explain`), the OpenID Provider in node, and a test CA for its TLS.

Every process listens on a free 127.0.0.1 port, every wait is bounded, and every process is
killed at teardown. Tokens go to `mesh-authz check` on its command line; the server never logs
them.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = Path(__file__).resolve().parent / "node"


def mesh_authz_bin() -> Path:
    """The mesh-authz binary: $MESH_AUTHZ_BIN, else <repo>/target/debug/mesh-authz."""
    env = os.environ.get("MESH_AUTHZ_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "mesh-authz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    """Polls `pred` until it returns a true value; raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


class Process:
    """A child process with its output in files, stopped (SIGTERM, then SIGKILL) by stop()."""

    def __init__(self, argv: list[str], workdir: Path, name: str, env: dict | None = None):
        self.name = name
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            stdout=self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def logs(self) -> str:
        return f"--- {self.name} stdout ---\n{tail(self.stdout_path)}\n--- {self.name} stderr ---\n{tail(self.stderr_path)}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._out.close()
        self._err.close()


@dataclass
class Decision:
    """One answer of mesh-authz, as `mesh-authz check --explain` prints it."""

    exit_code: int
    status: str  # "allow", "401", "403", "503", or "error"
    reason: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    output: str = ""

    def describe(self) -> str:
        return f"{self.status} (reason={self.reason}, exit {self.exit_code})"


_DENY = re.compile(r"^DENY (\d{3}) ")
_WHY = re.compile(r"reason=(\S+)")
_SET = re.compile(r"^\s+set header\s+([^:]+): (.*)$")


def parse_check_output(exit_code: int, stdout: str, stderr: str) -> Decision:
    lines = stdout.splitlines()
    first = lines[0] if lines else ""
    out = f"{stdout}{stderr}"
    if exit_code == 0 and first == "ALLOW":
        headers = {}
        for line in lines[1:]:
            m = _SET.match(line)
            if m:
                headers[m.group(1)] = m.group(2)
        return Decision(0, "allow", None, headers, out)
    m = _DENY.match(first)
    if exit_code == 1 and m:
        why = next((_WHY.search(line) for line in lines if "why" in line), None)
        return Decision(1, m.group(1), why.group(1) if why else None, {}, out)
    return Decision(exit_code, "error", None, {}, out)


class MeshAuthz:
    """`mesh-authz serve --config` on free loopback ports, with the given config (a dict)."""

    def __init__(self, binary: Path, workdir: Path, config: dict, name: str = "mesh-authz"):
        self.binary = binary
        self.workdir = workdir
        self.grpc_port = free_port()
        self.http_port = free_port()
        config = dict(config)
        config["server"] = {
            "grpc_addr": f"127.0.0.1:{self.grpc_port}",
            "http_addr": f"127.0.0.1:{self.http_port}",
            "drain_delay": "0s",
            "shutdown_grace": "1s",
            **config.get("server", {}),
        }
        # JSON lines: no colour codes in the logs the failure messages quote.
        config.setdefault("logging", {"format": "json", "level": "info"})
        self.config_path = workdir / f"{name}.yaml"
        # JSON is YAML.
        self.config_path.write_text(json.dumps(config, indent=1))
        self.process = Process(
            [str(binary), "serve", "--config", str(self.config_path)], workdir, name, env={"RUST_LOG": "info"}
        )
        self.ready = False
        self.start_error: str | None = None
        try:
            wait_until(
                lambda: not self.process.alive() or self._get("/healthz") == 200, 20, f"{name} /healthz"
            )
            if not self.process.alive():
                self.start_error = f"{name} exited with {self.process.proc.returncode}"
                return
            # Ready once every provider holds keys; a provider that never does shows in its rows.
            try:
                wait_until(lambda: self._get("/readyz") == 200, 5, f"{name} /readyz")
                self.ready = True
            except TimeoutError:
                pass
        except TimeoutError as e:
            self.start_error = str(e)

    def _get(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None

    def status(self) -> str:
        """For failure messages: how the server stands, and the tail of its log."""
        state = "ready" if self.ready else "NOT ready (some provider holds no keys)"
        if self.start_error:
            state = f"failed to start: {self.start_error}"
        return f"server {state}\n{self.process.logs()}"

    def check(self, token: str | None, path: str = "/orders/42", method: str = "GET") -> Decision:
        argv = [str(self.binary), "check", "--addr", f"127.0.0.1:{self.grpc_port}", "--path", path]
        argv += ["--method", method, "--explain"]
        if token is not None:
            argv += ["--token", token]
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except subprocess.TimeoutExpired:
            return Decision(124, "error", None, {}, "mesh-authz check timed out after 20 s")
        return parse_check_output(p.returncode, p.stdout, p.stderr)

    def check_many(self, tokens: dict[str, str | None], path: str = "/orders/42",
                   workers: int = 4) -> dict[str, Decision]:
        """Checks many tokens concurrently; {key: token} -> {key: Decision}."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {k: pool.submit(self.check, t, path) for k, t in tokens.items()}
            return {k: f.result() for k, f in futures.items()}

    def stop(self):
        self.process.stop()


# --- a test CA and a certificate for 127.0.0.1 (the OpenID Provider's TLS) --------------------


def make_tls(workdir: Path) -> tuple[Path, Path, Path]:
    """Writes ca.pem, op.pem, op.key; the leaf is valid for IP 127.0.0.1 and `localhost`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh-authz interop test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path, cert_path, key_path = workdir / "ca.pem", workdir / "op.pem", workdir / "op.key"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_path, cert_path, key_path


class OpenIdProvider:
    """node/op.mjs (oidc-provider) over TLS on a fixed port; restart() with other keys rotates."""

    def __init__(self, workdir: Path, port: int, tls: tuple[Path, Path, Path], settings: dict):
        self.workdir = workdir
        self.port = port
        self.issuer = f"https://127.0.0.1:{port}"
        self.ca_path, cert, key = tls
        self.settings = {**settings, "issuer": self.issuer, "port": port, "tls_cert": str(cert), "tls_key": str(key)}
        self.ssl = ssl.create_default_context(cafile=str(self.ca_path))
        self.starts = 0
        self.process: Process | None = None

    def start(self, keys: list[dict]):
        self.starts += 1
        cfg_path = self.workdir / f"op-{self.starts}.json"
        cfg_path.write_text(json.dumps({**self.settings, "keys": keys}))
        self.process = Process(["node", str(NODE_DIR / "op.mjs"), str(cfg_path)], self.workdir, f"op-{self.starts}")
        try:
            wait_until(
                lambda: not self.process.alive() or "READY" in tail(self.process.stdout_path),
                30,
                "the OpenID Provider to listen",
            )
        except TimeoutError as e:
            raise RuntimeError(f"{e}\n{self.process.logs()}") from e
        if not self.process.alive():
            raise RuntimeError(f"the OpenID Provider exited\n{self.process.logs()}")

    def stop(self):
        if self.process:
            self.process.stop()

    def restart(self, keys: list[dict]):
        self.stop()
        self.start(keys)

    def request(self, path: str, data: dict | None = None, headers: dict | None = None,
                method: str | None = None):
        """One HTTPS request to the OP (redirects not followed): (status, headers, body)."""
        import urllib.parse

        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(self.issuer + path if path.startswith("/") else path, data=body,
                                     headers=headers or {}, method=method)
        opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=self.ssl), _NoRedirect())
        try:
            with opener.open(req, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path: str) -> dict:
        status, _, body = self.request(path)
        assert status == 200, f"GET {path}: {status} {body[:300]!r}"
        return json.loads(body)

    def client_credentials(self, client_id: str, secret: str, resource: str, scope: str) -> str:
        """An access token from the token endpoint (client_secret_basic, RFC 8707 resource)."""
        import base64

        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        status, _, body = self.request(
            "/token",
            {"grant_type": "client_credentials", "resource": resource, "scope": scope},
            {"authorization": f"Basic {basic}"},
        )
        assert status == 200, f"token endpoint: {status} {body[:500]!r}"
        return json.loads(body)["access_token"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def authorization_code_id_token(op: OpenIdProvider, client_id: str, secret: str, redirect_uri: str,
                                login: str) -> str:
    """An id_token through the OP's real authorization-code flow, driving oidc-provider's
    development login and consent pages as a browser would (cookies kept by hand)."""
    import base64
    import urllib.parse

    jar: dict[str, str] = {}

    def go(url: str, data: dict | None = None):
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items() if v)} if jar else {}
        status, hdrs, body = op.request(url, data, headers)
        for cookie in hdrs.get_all("set-cookie") or []:
            name, _, rest = cookie.partition("=")
            jar[name.strip()] = rest.split(";", 1)[0]
        return status, hdrs.get("location"), body

    query = urllib.parse.urlencode({
        "client_id": client_id, "response_type": "code", "scope": "openid",
        "redirect_uri": redirect_uri, "state": "interop-state", "nonce": "interop-nonce",
    })
    status, location, body = go(f"/auth?{query}")
    for step in range(8):
        assert status in (302, 303), f"authorization step {step}: {status} {body[:300]!r}"
        if location.startswith(redirect_uri):
            params = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)
            assert "code" in params, f"no code in the redirect: {location}"
            break
        path = urllib.parse.urlsplit(location).path
        if path.startswith("/interaction/"):
            status, _, page = go(path)
            assert status == 200, f"interaction page: {status}"
            prompt = "login" if b'name="login"' in page else "consent"
            status, location, body = go(path, {"prompt": prompt, "login": login, "password": "any"})
        else:
            status, location, body = go(path)
    else:
        raise AssertionError("the authorization flow did not reach the redirect_uri")
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    status, _, body = op.request(
        "/token",
        {"grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": redirect_uri},
        {"authorization": f"Basic {basic}"},
    )
    assert status == 200, f"token endpoint (code): {status} {body[:500]!r}"
    return json.loads(body)["id_token"]
