"""The image, checked without a container engine: the binary's dynamic dependencies are what the
Dockerfile's runtime base provides, and the binary started the way the rendered Deployment starts
it (its args and env, the ConfigMap's config.yaml and the Secret's files at their mount paths under
a temp root, the chart's non-root user, nothing writable but the emptyDir /tmp) answers the chart's
liveness and readiness probes on the chart's ports and paths."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chart_helpers import objects, one, render
from test_dockerfile import instructions

# What gcr.io/distroless/cc-debian12 ships: glibc (libc, libm, the dynamic loader, and the
# libraries glibc 2.34+ folded into libc) and libgcc_s. Anything else (libssl, libstdc++, libz)
# would be missing at run time in the image.
DISTROLESS_CC_LIBS = {
    "libc.so.6",
    "libm.so.6",
    "libgcc_s.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
}
DISTROLESS_CC_INTERPRETERS = {"/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"}


def readelf(binary: Path, flag: str) -> str:
    tool = shutil.which("readelf")
    assert tool, "readelf (binutils) is needed to list the binary's dynamic dependencies"
    return subprocess.run([tool, flag, str(binary)], capture_output=True, text=True,
                          check=True).stdout


def test_the_binary_needs_only_what_the_runtime_base_image_provides(binary):
    froms = [rest for word, rest in instructions() if word == "FROM"]
    runtime = froms[-1]
    needed = {line.split("[", 1)[1].rstrip("]").strip()
              for line in readelf(binary, "-d").splitlines() if "(NEEDED)" in line}
    interp = [line.split(":", 1)[1].strip(" ]")
              for line in readelf(binary, "-l").splitlines()
              if "Requesting program interpreter" in line]
    if runtime.startswith("gcr.io/distroless/static"):
        # A static base has no libc: the binary must be static.
        assert not needed and not interp, f"{runtime} needs a static binary; NEEDED {needed}"
        return
    assert runtime.startswith("gcr.io/distroless/cc-debian12"), runtime
    assert "libc.so.6" in needed, f"expected a glibc binary, NEEDED {sorted(needed)}"
    assert needed <= DISTROLESS_CC_LIBS, \
        f"not in {runtime}: {sorted(needed - DISTROLESS_CC_LIBS)}"
    assert len(interp) == 1 and interp[0] in DISTROLESS_CC_INTERPRETERS, interp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class Pod:
    """The rendered Deployment's container, run as a plain process under `root`."""

    def __init__(self, binary: Path, objs: list[dict], secrets: dict[str, dict[str, bytes]]):
        self.objs = objs
        dep = one(objs, "Deployment")
        self.pod = dep["spec"]["template"]["spec"]
        self.container = self.pod["containers"][0]
        self.root = Path(tempfile.mkdtemp(prefix="mesh-authz-pod-", dir="/tmp"))
        self.root.chmod(0o755)
        self.sc = {**self.pod.get("securityContext", {}),
                   **self.container.get("securityContext", {})}
        self.uid = self.sc["runAsUser"]
        self.gid = self.sc["runAsGroup"]
        self.as_root = os.geteuid() == 0
        self.writable: list[Path] = []
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        for m in self.container["volumeMounts"]:
            self.mount(volumes[m["name"]], m, secrets)
        self.args = [self.host_arg(a) for a in self.container["args"]]
        env = {"PATH": "/usr/bin:/bin"}
        for e in self.container.get("env", []):
            assert "value" in e, f"env {e['name']} comes from a Secret this test does not model"
            env[e["name"]] = e["value"]
        # The emptyDir is the only writable place, as with readOnlyRootFilesystem.
        env["TMPDIR"] = str(self.host("/tmp"))
        self.env = env
        self.binary = binary
        self.proc = None

    def host(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def host_arg(self, arg: str) -> str:
        return str(self.host(arg)) if arg.startswith("/") else arg

    def mount(self, volume: dict, m: dict, secrets):
        target = self.host(m["mountPath"])
        if "configMap" in volume:
            cm = one(self.objs, "ConfigMap")
            assert cm["metadata"]["name"] == volume["configMap"]["name"]
            files = {k: v.encode() for k, v in cm["data"].items()}
            # The config names container paths (JWKS files, TLS); map them under the root, and
            # listen on loopback only (the chart binds 0.0.0.0; same ports).
            for k, v in files.items():
                text = v.decode().replace("0.0.0.0:", "127.0.0.1:")
                for other in self.container["volumeMounts"]:
                    text = text.replace(other["mountPath"] + "/", str(self.host(other["mountPath"])) + "/")
                files[k] = text.encode()
            mode = 0o444
        elif "secret" in volume:
            files = secrets[volume["secret"]["secretName"]]
            mode = volume["secret"].get("defaultMode", 0o644)
        elif "emptyDir" in volume:
            target.mkdir(parents=True)
            self.writable.append(target)
            if os.geteuid() == 0:
                os.chown(target, self.uid, self.gid)
            return
        else:
            pytest.fail(f"volume kind not modelled: {volume}")
        if m.get("subPath"):
            files = {target.name: files[m["subPath"]]}
            target = target.parent
        target.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            p = target / name
            p.write_bytes(data)
            p.chmod(mode)
            if os.geteuid() == 0:
                # The kubelet gives volume files the pod's fsGroup.
                os.chown(p, 0, self.pod["securityContext"]["fsGroup"])

    def start(self):
        # Read-only root: every directory but the emptyDir is not writable by the process.
        for d in [self.root, *[p for p in self.root.rglob("*") if p.is_dir()]]:
            if not any(d == w or w in d.parents for w in self.writable) and d not in self.writable:
                d.chmod(0o555)

        def drop():
            if self.as_root:
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)

        self.proc = subprocess.Popen([str(self.binary), *self.args], env=self.env,
                                     cwd=self.root, preexec_fn=drop,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def port(self, name: str) -> int:
        return next(p["containerPort"] for p in self.container["ports"] if p["name"] == name)

    def probe(self, kind: str) -> int:
        http = self.container[kind]["httpGet"]
        port = http["port"] if isinstance(http["port"], int) else self.port(http["port"])
        try:
            return get(f"http://127.0.0.1:{port}{http['path']}")
        except OSError:
            return 0

    def wait(self, kind: str, want: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.output()}"
            got = self.probe(kind)
            if got == want:
                return
            time.sleep(0.1)
        pytest.fail(f"{kind}: {got}, want {want}; output:\n{self.output()}")

    def output(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.communicate(timeout=10)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()[0].decode(errors="replace")

    def stop(self) -> str:
        out = self.output() if self.proc else ""
        for d in [self.root, *[p for p in self.root.rglob("*") if p.is_dir()]]:
            d.chmod(0o755)
        shutil.rmtree(self.root, ignore_errors=True)
        return out


def pod_values(**extra) -> dict:
    return {"ports": {"grpc": free_port(), "http": free_port()}, **extra}


def test_the_default_chart_is_live_and_not_ready_until_its_example_issuer_serves_keys(chart, binary):
    pod = Pod(binary, objects(render(chart, pod_values())), {})
    try:
        pod.start()
        pod.wait("livenessProbe", 200)
        # The example issuer's JWKS cannot load: not ready, and it stays so.
        for _ in range(5):
            assert pod.probe("readinessProbe") == 503
            time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", pod.port("grpc")), timeout=2):
            pass
        assert pod.proc.poll() is None
    finally:
        out = pod.stop()
    assert "mesh-authz serving" in out, out


def test_a_jwks_secret_mounted_as_the_chart_mounts_it_makes_the_pod_ready(chart, binary):
    keys = Path(tempfile.mkdtemp(prefix="mesh-authz-keys-"))
    try:
        subprocess.run([str(binary), "keygen", "--alg", "ES256", "--kid", "k1", "--out", str(keys)],
                       check=True, capture_output=True, timeout=60)
        jwks = (keys / "jwks.json").read_bytes()
    finally:
        shutil.rmtree(keys)
    values = pod_values(jwks={"existingSecret": "corp-jwks"})
    objs = objects(render(chart, values))
    mount = one(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    jwks_path = next(m["mountPath"] for m in mount if m["name"] == "jwks") + "/jwks.json"
    values["config"] = {
        "providers": [{
            "name": "corp", "issuer": "https://issuer.test", "audiences": ["my-api"],
            "algorithms": ["ES256"],
            "jwks": {"file": jwks_path, "refresh_interval": "5m"},
        }],
        "rules": [{"name": "all", "match": {"path_prefix": "/"}, "require": {"token": True}}],
    }
    pod = Pod(binary, objects(render(chart, values)), {"corp-jwks": {"jwks.json": jwks}})
    try:
        pod.start()
        pod.wait("livenessProbe", 200)
        pod.wait("readinessProbe", 200)
        # Running as the chart's user, not root.
        status = Path(f"/proc/{pod.proc.pid}/status").read_text()
        uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
        want = str(pod.uid) if pod.as_root else str(os.geteuid())
        assert uid_line.split()[1:] == [want] * 4, uid_line
        assert want != "0"
    finally:
        out = pod.stop()
    assert "mesh-authz serving" in out, out
