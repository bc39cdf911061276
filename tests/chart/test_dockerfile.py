"""Lint-by-reading of the repository's Dockerfile (no container engine here): the image the chart
points at is built the way the chart expects to run it."""

from __future__ import annotations

import json
import re

from chart_helpers import REPO, CHART_DIR, objects, one, render


def instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)  # join continuation lines
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base, name, instructions) per stage, in order; name is "" for an unnamed stage."""
    out = []
    for word, rest in instructions():
        if word == "FROM":
            base, _, name = rest.partition(" AS ")
            out.append((base.strip(), name.strip(), []))
        elif out:
            out[-1][2].append((word, rest))
    return out


def stage(name: str) -> tuple[str, list[tuple[str, str]]]:
    [(base, ins)] = [(b, i) for b, n, i in stages() if n == name]
    return base, ins


def test_multi_stage_build():
    all_stages = stages()
    names = [n for _, n, _ in all_stages]
    assert names == ["source", "builder", "module-builder", "envoy-with-mesh-authz", ""]
    base, _ = stage("source")
    assert base.startswith("rust:") and base.endswith("-bookworm")
    assert stage("builder")[0] == "source" and stage("module-builder")[0] == "source"
    # The default target (`docker build .` builds the last stage) is the server image.
    assert all_stages[-1][0] == "gcr.io/distroless/cc-debian12:nonroot"
    server_runs = " ".join(rest for word, rest in stage("builder")[1] if word == "RUN")
    assert "cargo build --release --locked --bin mesh-authz" in server_runs
    assert [rest for word, rest in all_stages[-1][2] if word == "COPY"] == ["--from=builder /mesh-authz /mesh-authz"]


def test_module_image_is_envoy_1_40_with_the_module():
    """`--target envoy-with-mesh-authz`: Envoy 1.40.0 (the ABI the module is built for) with the .so
    at the path the Envoy Gateway door's EnvoyProxy names, found by the search path too, nonroot."""
    import yaml

    runs = " ".join(rest for word, rest in stage("module-builder")[1] if word == "RUN")
    assert "cargo build --release --locked -p mesh-authz-envoy" in runs
    assert "target/release/libmesh_authz_envoy.so" in runs
    base, ins = stage("envoy-with-mesh-authz")
    assert base == "envoyproxy/envoy:v1.40.0", "pinned to the Envoy release the module's ABI is built for"
    copies = [rest.split() for word, rest in ins if word == "COPY"]
    assert len(copies) == 1
    flags = [c for c in copies[0] if c.startswith("--")]
    src, dest = [c for c in copies[0] if not c.startswith("--")]
    assert "--from=module-builder" in flags and "--chown=0:0" in flags, flags
    assert "--chmod=0755" in flags, "readable by the proxy's non-root user, writable by no one else"
    assert src == "/libmesh_authz_envoy.so" and dest.endswith("/libmesh_authz_envoy.so")
    envs = dict(rest.split("=", 1) for word, rest in ins if word == "ENV")
    assert envs["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] == dest.rsplit("/", 1)[0]
    users = [rest for word, rest in ins if word == "USER"]
    assert users == ["65532:65532"]
    # The EnvoyProxy of gateways/envoy-gateway-in-proxy/ loads exactly this file.
    [proxy] = yaml.safe_load_all((REPO / "gateways" / "envoy-gateway-in-proxy" / "envoy-proxy.yaml").read_text())
    [entry] = proxy["spec"]["dynamicModules"]
    assert entry["source"]["local"]["path"] == dest
    # No secret goes into the image (no ARG/ENV naming one, no copied key material).
    text = (REPO / "Dockerfile").read_text().lower()
    for word in ("password", "secret", "token=", "_key"):
        assert word not in text, word


def test_dockerfile_documents_both_targets():
    text = (REPO / "Dockerfile").read_text()
    assert "docker build -t ghcr.io/mesh-authz/mesh-authz:" in text
    assert "docker build --target envoy-with-mesh-authz -t ghcr.io/mesh-authz/envoy-with-mesh-authz:" in text


def test_runtime_stage_user_and_command(chart):
    ins = instructions()
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    runtime = ins[last_from:]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] == "65532"
    entry = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in runtime if word == "CMD"]
    assert entry == [["/mesh-authz"]]
    assert cmd == [["serve", "--config", "/etc/mesh-authz/config/config.yaml"]]
    # The chart runs the same command, so the container's default and the chart agree.
    container = one(objects(render(chart)), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == cmd[0]
    assert container["securityContext"]["runAsUser"] == int(users[-1].split(":")[0])


def test_dockerignore_keeps_the_build_inputs():
    ignored = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    assert "target" in ignored and ".git" in ignored
    for needed in ("src", "Cargo.toml", "Cargo.lock"):
        assert needed not in ignored
