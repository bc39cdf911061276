#!/usr/bin/env python3
"""Helpers for bench/run: parse h2load output, criterion estimates and /metrics; render the report.

  report.py h2load OUT LOG --setup S --round R --hz HZ --envoy-ticks A B --authz-ticks A B
  report.py criterion CRITERION_DIR
  report.py metrics < /metrics text
  report.py render RAW.jsonl OUT.md OUT.png
"""
import argparse
import json
import os
import re
import statistics
import sys

SETUPS = {
    "a": "(a) no authorization",
    "b": "(b) Envoy jwt_authn (local JWKS, JWT cache)",
    "c": "(c) ext_authz gRPC → mesh-authz",
    "d": "(d) ext_authz gRPC → no-op server",
}


def pct(sorted_vals, q):
    if not sorted_vals:
        return 0
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def cmd_h2load(a):
    text = open(a.out).read()
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", text)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and req and st):
        sys.exit("cannot parse h2load output:\n" + text)
    durs = []
    for line in open(a.log):
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("2"):
            durs.append(int(parts[2]))
    durs.sort()
    done = int(req.group(3))
    ok2xx = int(st.group(1))
    secs = float(m.group(1))
    e_cpu = (float(a.envoy_ticks[1]) - float(a.envoy_ticks[0])) / a.hz
    z_cpu = (float(a.authz_ticks[1]) - float(a.authz_ticks[0])) / a.hz
    out = {
        "kind": "e2e", "setup": a.setup, "round": a.round,
        "seconds": secs, "rps": ok2xx / secs if secs else 0,
        "done": done, "ok_2xx": ok2xx, "failed": int(req.group(5)) + int(req.group(6)) + int(req.group(7)),
        "non_2xx": int(st.group(2)) + int(st.group(3)) + int(st.group(4)),
        "p50_us": pct(durs, 0.50), "p99_us": pct(durs, 0.99),
        "envoy_cpu_s": e_cpu, "authz_cpu_s": z_cpu,
        "envoy_cpu_ms_per_1k": e_cpu * 1e6 / ok2xx if ok2xx else 0,
        "authz_cpu_ms_per_1k": z_cpu * 1e6 / ok2xx if ok2xx else 0,
    }
    print(json.dumps(out))


def cmd_criterion(a):
    res = {}
    for group in sorted(os.listdir(a.dir)) if os.path.isdir(a.dir) else []:
        if not group.startswith("verify_"):
            continue
        for fn in ("raw", "mesh_authz", "jsonwebtoken_naive"):
            p = os.path.join(a.dir, group, fn, "new", "estimates.json")
            if os.path.exists(p):
                est = json.load(open(p))
                res.setdefault(group[len("verify_"):], {})[fn] = est["median"]["point_estimate"] / 1000.0
    print(json.dumps({"kind": "criterion", "median_us": res}))


def cmd_metrics(_a):
    out = {}
    for line in sys.stdin:
        if line.startswith("mesh_authz_token_cache_total") or line.startswith("mesh_authz_revocation_lookups_total"):
            name, val = line.rsplit(" ", 1)
            out[name] = float(val)
    print(json.dumps(out))


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def verdict(ok):
    return "**met**" if ok else "**not met**"


def cmd_render(a):
    rows = [json.loads(l) for l in open(a.raw) if l.strip()]
    meta = next((r for r in rows if r["kind"] == "meta"), {})
    e2e = [r for r in rows if r["kind"] == "e2e"]
    direct = [r for r in rows if r["kind"] == "direct"]
    crit = next((r for r in rows if r["kind"] == "criterion"), {"median_us": {}})["median_us"]
    mem = next((r for r in rows if r["kind"] == "mem"), None)
    caches = [r for r in rows if r["kind"] == "cache"]
    rounds = sorted({r["round"] for r in e2e} | {r["round"] for r in direct})
    L = []
    L.append(f"# mesh-authz benchmark — {meta.get('date', '?')}\n")
    L.append(f"Commit `{meta.get('commit')}`, Envoy {meta.get('envoy')} (`--concurrency 1`), "
             f"{meta.get('cpus')} CPUs ({meta.get('cpu_model')}), {meta.get('rounds')} interleaved rounds (odd rounds in one order, even rounds reversed) of "
             f"{meta.get('seconds')} s per setup; h2load `--h1 -c {meta.get('connections')}` on the same machine; "
             "every number is the median over rounds. Produced by `bench/run`; raw data in the `.jsonl` beside this file.\n")
    L.append("## End to end through Envoy\n")
    L.append("| setup | req/s | p50 ms | p99 ms | Envoy CPU ms / 1k req | authz CPU ms / 1k req | non-2xx |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for s in "abcd":
        rs = [r for r in e2e if r["setup"] == s]
        if not rs:
            continue
        d = {k: med([r[k] for r in rs]) for k in ("rps", "p50_us", "p99_us", "envoy_cpu_ms_per_1k", "authz_cpu_ms_per_1k")}
        bad = sum(r["non_2xx"] + r["failed"] for r in rs)
        summary[s] = d
        authz = f"{d['authz_cpu_ms_per_1k']:.1f}" if s in "cd" else "—"
        L.append(f"| {SETUPS[s]} | {d['rps']:.0f} | {d['p50_us']/1000:.2f} | {d['p99_us']/1000:.2f} | "
                 f"{d['envoy_cpu_ms_per_1k']:.1f} | {authz} | {bad} |")
    L.append("")
    L.append("Per-round values are in the targets table below: on a shared 2-CPU machine the spread between "
             "rounds is large, so read the ratios with their per-round values.\n")
    targets = []

    def per_round_ratio(sel_a, sel_b, key, rows_, lab="setup"):
        out = []
        for r in rounds:
            x = [q for q in rows_ if q["round"] == r and sel_a(q)]
            y = [q for q in rows_ if q["round"] == r and sel_b(q)]
            if x and y and key(y[0]):
                out.append(key(x[0]) / key(y[0]))
        return med(out), out

    if "c" in summary and "d" in summary:
        for name, key, goal, ge in (
            ("(c)/(d) req/s", lambda q: q["rps"], 0.95, True),
            ("(c)/(d) p99", lambda q: q["p99_us"], 1.10, False),
            ("(c)/(d) Envoy CPU per request", lambda q: q["envoy_cpu_ms_per_1k"], 1.05, False),
        ):
            m, xs = per_round_ratio(lambda q: q["setup"] == "c", lambda q: q["setup"] == "d", key, e2e)
            targets.append((name, m, ("≥ " if ge else "≤ ") + f"{goal}", (m >= goal) if ge else (m <= goal), xs))
    L.append("## mesh-authz alone (gRPC Check, 4 connections × 32 in flight)\n")
    L.append("| scenario | Checks/s | p50 µs | p99 µs | server CPU µs / Check | response bytes | outcomes (last round) |")
    L.append("|---|---:|---:|---:|---:|---:|---|")
    labels = []
    for r in direct:
        if r["data"]["label"] not in labels:
            labels.append(r["data"]["label"])
    dsum = {}
    for lab in labels:
        rs = [r["data"] for r in direct if r["data"]["label"] == lab]
        d = {"rps": med([x["rps"] for x in rs]), "p50": med([x["p50_us"] for x in rs]),
             "p99": med([x["p99_us"] for x in rs]), "cpu": med([x["cpu_ms_per_1k"][0] for x in rs])}
        dsum[lab] = d
        L.append(f"| {lab} | {d['rps']:.0f} | {d['p50']:.0f} | {d['p99']:.0f} | {d['cpu']:.1f} | "
                 f"{rs[-1].get('response_bytes', '?')} | {json.dumps(rs[-1]['outcomes'])} |")
    L.append("")
    L.append("`noop_hot` is the allow-all server (`bench/src/bin/noop_authz.rs`); `cold_*` run against an "
             "instance with `token_cache_capacity: 1` and a pool of distinct tokens, so every Check verifies a "
             "signature (cache counters below); `redis_hit` uses the Redis revocation store with its local cache "
             "(`cache_ttl: 1s`), `redis_miss` with `cache_ttl: 0s` (one Redis round trip per Check). Deny scenarios "
             "include mesh-authz's one log line per denial (level info, to a file).\n")
    for c in caches:
        L.append(f"- token cache counters, instance `{c['instance']}`: `{json.dumps(c['metrics'])}`")
    L.append("")

    def dratio(x, y):
        return per_round_ratio(lambda q: q["data"]["label"] == x, lambda q: q["data"]["label"] == y,
                               lambda q: q["data"]["cpu_ms_per_1k"][0], [dict(q, round=q["round"]) for q in direct])

    if "hot" in dsum and "noop_hot" in dsum:
        m, xs = dratio("hot", "noop_hot")
        targets.append(("direct CPU per Check, cache hit / no-op", m, "≤ 1.15", m <= 1.15, xs))
    if "redis_hit" in dsum and "hot" in dsum:
        m, xs = dratio("redis_hit", "hot")
        targets.append(("CPU per Check, Redis on (cache hit) / Redis off", m, "≤ 1.10", m <= 1.10, xs))
    raw = crit.get("rs2048", {}).get("raw")
    if "cold_rs2048" in dsum and "hot" in dsum and raw:
        shares = []
        for r in rounds:
            c = [q["data"] for q in direct if q["round"] == r and q["data"]["label"] == "cold_rs2048"]
            h = [q["data"] for q in direct if q["round"] == r and q["data"]["label"] == "hot"]
            if c and h:
                extra = c[0]["cpu_ms_per_1k"][0] - h[0]["cpu_ms_per_1k"][0]
                if extra > 0:
                    shares.append(raw / extra)
        m = med(shares)
        targets.append(("RS256-2048 100% miss: raw verify / extra CPU per Check", m, "≥ 0.6", m >= 0.6, shares))
    L.append("## One signature verification (criterion, median µs)\n")
    L.append("| key | raw aws-lc-rs (pre-parsed key) | mesh-authz `verify_with_keys` | ratio | jsonwebtoken, key rebuilt per call | cold Check CPU µs (server) | cold / raw |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for k in ("rs2048", "rs4096", "es256", "eddsa"):
        c = crit.get(k)
        if not c:
            continue
        cold = dsum.get(f"cold_{k}", {}).get("cpu")
        L.append(f"| {k} | {c.get('raw', 0):.1f} | {c.get('mesh_authz', 0):.1f} | "
                 f"{c.get('mesh_authz', 0)/c['raw']:.2f} | {c.get('jsonwebtoken_naive', 0):.1f} | "
                 f"{cold:.1f} | {cold/c['raw']:.2f} |" if cold else
                 f"| {k} | {c.get('raw', 0):.1f} | {c.get('mesh_authz', 0):.1f} | {c.get('mesh_authz', 0)/c['raw']:.2f} | "
                 f"{c.get('jsonwebtoken_naive', 0):.1f} | — | — |")
        if k == "rs2048" and c.get("raw"):
            r_ = c["mesh_authz"] / c["raw"]
            targets.append(("criterion: mesh-authz path / raw verify (RS256-2048)", r_, "≤ 1.3", r_ <= 1.3, []))
    L.append("")
    if mem:
        L.append("## Memory\n")
        L.append(f"RSS idle: **{mem['idle_kib']/1024:.1f} MiB**; after {mem['tokens']:,} distinct EdDSA tokens "
                 f"checked (token cache capacity {mem['capacity']:,}): **{mem['full_kib']/1024:.1f} MiB** "
                 f"(fill outcomes {json.dumps(mem['fill']['outcomes'])}; counters `{json.dumps(mem['metrics'])}`).\n")
        targets.append(("RSS idle (MiB)", mem["idle_kib"] / 1024, "≤ 32", mem["idle_kib"] / 1024 <= 32, []))
        if mem["tokens"] >= 1_000_000:
            targets.append(("RSS with 1,000,000 cached tokens (MiB)", mem["full_kib"] / 1024, "≤ 400",
                            mem["full_kib"] / 1024 <= 400, []))
        else:
            targets.append((f"RSS with {mem['tokens']:,} cached tokens (MiB; target is for 1,000,000)",
                            mem["full_kib"] / 1024, "≤ 400 at 1M", None, []))
    L.append("## Targets (median of per-round ratios)\n")
    L.append("| target | measured | goal | verdict | per round |")
    L.append("|---|---:|---|---|---|")
    for name, m, goal, ok, xs in targets:
        v = "n/a (short run)" if ok is None else verdict(ok)
        L.append(f"| {name} | {m:.2f} | {goal} | {v} | {', '.join(f'{x:.2f}' for x in xs)} |")
    L.append("")
    L.append(f"![plot]({os.path.basename(a.png)})\n")
    open(a.md, "w").write("\n".join(L))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.5))
    short = {"a": "(a) none", "b": "(b) jwt_authn", "c": "(c) ext_authz\nmesh-authz", "d": "(d) ext_authz\nno-op"}
    names = [short[s] for s in summary]
    ax[0].bar(names, [summary[s]["rps"] for s in summary], color="#4477aa")
    ax[0].set_title("Through Envoy (1 worker): requests/s")
    x = range(len(summary))
    ax[1].bar([i - 0.2 for i in x], [summary[s]["p50_us"] / 1000 for s in summary], 0.4, label="p50")
    ax[1].bar([i + 0.2 for i in x], [summary[s]["p99_us"] / 1000 for s in summary], 0.4, label="p99")
    ax[1].set_xticks(list(x), names)
    ax[1].set_title("Through Envoy: latency (ms)")
    ax[1].legend()
    ax[2].barh(list(dsum.keys()), [d["rps"] for d in dsum.values()], color="#228833")
    ax[2].invert_yaxis()
    ax[2].set_title("mesh-authz alone: Checks/s")
    for a_ in ax[:2]:
        a_.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"mesh-authz benchmark {meta.get('date', '')} (median of {meta.get('rounds')} rounds)")
    fig.tight_layout()
    fig.savefig(a.png, dpi=110)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    h = sub.add_parser("h2load")
    h.add_argument("out"); h.add_argument("log")
    h.add_argument("--setup", required=True); h.add_argument("--round", type=int, required=True)
    h.add_argument("--hz", type=float, required=True)
    h.add_argument("--envoy-ticks", nargs=2, required=True); h.add_argument("--authz-ticks", nargs=2, required=True)
    c = sub.add_parser("criterion"); c.add_argument("dir")
    sub.add_parser("metrics")
    r = sub.add_parser("render"); r.add_argument("raw"); r.add_argument("md"); r.add_argument("png")
    a = p.parse_args()
    {"h2load": cmd_h2load, "criterion": cmd_criterion, "metrics": cmd_metrics, "render": cmd_render}[a.cmd](a)


if __name__ == "__main__":
    main()
