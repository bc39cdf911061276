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


def test_multi_stage_build():
    ins = instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 2
    assert froms[0].startswith("rust:") and froms[0].endswith(" AS builder")
    assert froms[1] == "gcr.io/distroless/cc-debian12:nonroot"
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert "cargo build --release --locked" in runs
    assert any(word == "COPY" and rest.startswith("--from=builder") for word, rest in ins)


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
