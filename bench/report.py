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
    "e": "(e) mesh-authz in-proxy (Envoy dynamic module)",
    "er": "(er) in-proxy, Redis revocation (cache hit)",
    "e0": "(e0) dynamic-module floor: the module on a route with the check disabled",
    "h": "(h) ext_authz gRPC → one-worker no-op (sets one header)",
    "f": "(f) mTLS listener, ext_authz over mTLS → mesh-authz",
    "g": "(g) as (f), with include_peer_certificate",
}
AUTHZ_SETUPS = ("c", "d", "h", "f", "g")


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
    scale = [r for r in rows if r["kind"] == "scale"]
    scale_skipped = next((r for r in rows if r["kind"] == "scale_skipped"), None)
    rounds = sorted({r["round"] for r in e2e} | {r["round"] for r in direct} | {r["round"] for r in scale})
    L = []
    L.append(f"# mesh-authz benchmark — {meta.get('date', '?')}\n")
    L.append(f"Commit `{meta.get('commit')}`, Envoy {meta.get('envoy')} (`--concurrency 1`), "
             f"{meta.get('cpus')} CPUs ({meta.get('cpu_model')}), {meta.get('rounds')} interleaved rounds (odd rounds in one order, even rounds reversed) of "
             f"{meta.get('seconds')} s per setup; h2load `--h1 -c {meta.get('connections')}` on the same machine; "
             "every number is the median over rounds. Produced by `bench/run`; raw data in the `.jsonl` beside this file.\n")
    if e2e:
        L.append("## End to end through Envoy\n")
        L.append("| setup | req/s | p50 ms | p99 ms | Envoy CPU ms / 1k req | authz CPU ms / 1k req | non-2xx |")
        L.append("|---|---:|---:|---:|---:|---:|---:|")
    summary = {}
    for s in SETUPS:
        rs = [r for r in e2e if r["setup"] == s]
        if not rs:
            continue
        d = {k: med([r[k] for r in rs]) for k in ("rps", "p50_us", "p99_us", "envoy_cpu_ms_per_1k", "authz_cpu_ms_per_1k")}
        bad = sum(r["non_2xx"] + r["failed"] for r in rs)
        summary[s] = d
        authz = f"{d['authz_cpu_ms_per_1k']:.1f}" if s in AUTHZ_SETUPS else "—"
        L.append(f"| {SETUPS[s]} | {d['rps']:.0f} | {d['p50_us']/1000:.2f} | {d['p99_us']/1000:.2f} | "
                 f"{d['envoy_cpu_ms_per_1k']:.1f} | {authz} | {bad} |")
    if e2e:
        L.append("")
        L.append("Per-round values are in the targets table below: on a shared 2-CPU machine the spread between "
                 "rounds is large, so read the ratios with their per-round values. (h) is the floor an outside "
                 "review used: `noop-authz --workers 1 --set-header x-auth-subject=bench`. (f) and (g) are driven "
                 "through a front Envoy that presents a client certificate to the measured Envoy's mTLS listener; "
                 "the Envoy CPU column is the measured (back) Envoy's.\n")
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
    if "c" in summary and "h" in summary:
        m, xs = per_round_ratio(lambda q: q["setup"] == "c", lambda q: q["setup"] == "h", lambda q: q["rps"], e2e)
        targets.append(("(c)/(h) req/s (one-worker no-op with a header)", m, "≥ 0.95", m >= 0.95, xs))
    # In-proxy (e): against jwt_authn and no filter, and Redis (cache hit) against the memory store.
    for name, a_, b_, key, goal, ge in (
        ("(e)/(b) req/s, in-proxy / jwt_authn", "e", "b", "rps", 1.0, True),
        ("(e)/(a) req/s, in-proxy / no filter", "e", "a", "rps", 0.85, True),
        ("(e)/(b) Envoy CPU per request", "e", "b", "envoy_cpu_ms_per_1k", 1.0, False),
        ("(er)/(e) req/s, Redis cache hit / memory store", "er", "e", "rps", 0.95, True),
    ):
        if a_ in summary and b_ in summary:
            m, xs = per_round_ratio(lambda q, a_=a_: q["setup"] == a_, lambda q, b_=b_: q["setup"] == b_,
                                    lambda q, key=key: q[key], e2e)
            targets.append((name, m, ("≥ " if ge else "≤ ") + f"{goal}", (m >= goal) if ge else (m <= goal), xs))
    # The floor (e0): what Envoy's dynamic-module filter costs before any check runs. No goal of
    # its own; it bounds what (e) can reach against (b) and (a).
    for name, a_, b_, key in (
        ("(e0)/(b) req/s, module floor / jwt_authn", "e0", "b", "rps"),
        ("(e0)/(a) req/s, module floor / no filter", "e0", "a", "rps"),
        ("(e0)/(b) Envoy CPU per request", "e0", "b", "envoy_cpu_ms_per_1k"),
        ("(e)/(e0) req/s, in-proxy / module floor", "e", "e0", "rps"),
    ):
        if a_ in summary and b_ in summary:
            m, xs = per_round_ratio(lambda q, a_=a_: q["setup"] == a_, lambda q, b_=b_: q["setup"] == b_,
                                    lambda q, key=key: q[key], e2e)
            targets.append((name, m, "(floor, no goal)", "info", xs))
    rss = {r["setup"]: r["rss_kib"] for r in rows if r["kind"] == "envoy_rss"}
    if "a" in rss and "e" in rss:
        # The module's caches here: a 100,000-token capacity, of which one token is used.
        grown = (rss["e"] - rss["a"]) / 1024
        targets.append(("Envoy RSS growth with the module (MiB)", grown, "≤ 10", grown <= 10, []))
    if "f" in summary and "g" in summary:
        m, xs = per_round_ratio(lambda q: q["setup"] == "g", lambda q: q["setup"] == "f",
                                lambda q: q["authz_cpu_ms_per_1k"], e2e)
        targets.append(("(g)/(f) mesh-authz CPU per request, peer certificate forwarded / not", m, "≤ 1.10",
                        m <= 1.10, xs))
    if direct:
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
    if direct:
        L.append("")
        L.append("`noop_hot` is the allow-all server (`bench/src/bin/noop_authz.rs`), `noop1_hot` the same with one "
                 "worker and one header set; `tls_hot` and `cert_hot` run against an instance with an mTLS listener "
                 "(check-load presents a client certificate), both sending the certificate's SPIFFE ID as "
                 "`source.principal`, and `cert_hot` also the URL-encoded PEM as `source.certificate`, as Envoy's "
                 "`include_peer_certificate` does; ")
        L.append("`cold_*` run against an "
             "instance with `token_cache_capacity: 1` and a pool of distinct tokens, so every Check verifies a "
             "signature (cache counters below); `redis_hit` uses the Redis revocation store with its local cache "
             "(`cache_ttl: 1s`), `redis_miss` with `cache_ttl: 0s` (one Redis round trip per Check). Deny scenarios "
             "include mesh-authz's one log line per denial (level info, to a file).\n")
    for c in caches:
        L.append(f"- token cache counters, instance `{c['instance']}`: `{json.dumps(c['metrics'])}`")
    if caches:
        L.append("")

    def dratio(x, y):
        return per_round_ratio(lambda q: q["data"]["label"] == x, lambda q: q["data"]["label"] == y,
                               lambda q: q["data"]["cpu_ms_per_1k"][0], [dict(q, round=q["round"]) for q in direct])

    if "hot" in dsum and "noop_hot" in dsum:
        m, xs = dratio("hot", "noop_hot")
        targets.append(("direct CPU per Check, cache hit / no-op", m, "≤ 1.15", m <= 1.15, xs))
    if "hot" in dsum and "noop1_hot" in dsum:
        m, xs = dratio("hot", "noop1_hot")
        targets.append(("direct CPU per Check, cache hit / one-worker no-op", m, "≤ 1.15", m <= 1.15, xs))
    if "cert_hot" in dsum and "tls_hot" in dsum:
        m, xs = dratio("cert_hot", "tls_hot")
        targets.append(("direct CPU per Check, peer certificate forwarded / not (mTLS)", m, "≤ 1.10", m <= 1.10, xs))
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
    ssum = {}
    if scale:
        L.append("## Scaling with cores (direct, hot token)\n")
        sm = meta
        L.append("mesh-authz (`server.worker_threads: n`) and the no-op (`--workers n`) pinned with `taskset` to n "
                 "cores; `check-load` (8 HTTP/2 connections, 512 in flight) pinned to the other cores; per n, "
                 "rounds alternate which server goes first. Medians over rounds.\n")
        L.append("| cores | no-op Checks/s | mesh-authz Checks/s | ratio | no-op CPU µs / Check | mesh-authz CPU µs / Check | ratio | load cores |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sorted({r["cores"] for r in scale}):
            rs = [r for r in scale if r["cores"] == n]
            get = lambda lab, k: med([r["data"][k] if k == "rps" else r["data"]["cpu_ms_per_1k"][0]
                                      for r in rs if r["data"]["label"] == lab])
            nr, mr, nc, mc = get("noop", "rps"), get("mesh", "rps"), get("noop", "cpu"), get("mesh", "cpu")
            ssum[n] = (nr, mr, nc, mc)
            L.append(f"| {n} | {nr:.0f} | {mr:.0f} | {mr / nr:.2f} | {nc:.1f} | {mc:.1f} | {mc / nc:.2f} | "
                     f"{rs[0].get('load_cores', '?')} |")
            def ratios(key):
                out = []
                for r in sorted({q["round"] for q in rs}):
                    a = [q["data"] for q in rs if q["round"] == r and q["data"]["label"] == "mesh"]
                    b = [q["data"] for q in rs if q["round"] == r and q["data"]["label"] == "noop"]
                    if a and b and key(b[0]):
                        out.append(key(a[0]) / key(b[0]))
                return med(out), out
            m, xs = ratios(lambda d: d["rps"])
            targets.append((f"scaling, {n} core(s): mesh-authz / no-op Checks/s", m, "≥ 0.90", m >= 0.90, xs))
            m, xs = ratios(lambda d: d["cpu_ms_per_1k"][0])
            targets.append((f"scaling, {n} core(s): mesh-authz / no-op CPU per Check", m, "≤ 1.15", m <= 1.15, xs))
        L.append("")
    elif scale_skipped:
        L.append("## Scaling with cores\n")
        L.append(f"Skipped: this machine has {scale_skipped['cpus']} usable cores; the section needs at least 6 "
                 "(servers on 1, 2, 4 cores, the load on the others). Run `bench/scale-device.sh` on a larger "
                 "machine.\n")
    if crit:
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
        v = "n/a (short run)" if ok is None else "—" if ok == "info" else verdict(ok)
        L.append(f"| {name} | {m:.2f} | {goal} | {v} | {', '.join(f'{x:.2f}' for x in xs)} |")
    L.append("")
    L.append(f"![plot]({os.path.basename(a.png)})\n")
    open(a.md, "w").write("\n".join(L))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 4, figsize=(20, 4.5))
    short = {"a": "(a) none", "b": "(b) jwt_authn", "c": "(c) ext_authz\nmesh-authz", "d": "(d) ext_authz\nno-op",
             "e": "(e) in-proxy", "e0": "(e0) module\nfloor", "er": "(er) in-proxy\nRedis", "h": "(h) no-op\n1 worker",
             "f": "(f) mTLS\nmesh-authz", "g": "(g) mTLS\n+ peer cert"}
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
    if ssum:
        ns = sorted(ssum)
        ax[3].plot(ns, [ssum[n][0] for n in ns], "o-", label="no-op Checks/s")
        ax[3].plot(ns, [ssum[n][1] for n in ns], "s-", label="mesh-authz Checks/s")
        ax[3].set_xticks(ns)
        ax[3].set_xlabel("server cores (= worker threads)")
        t = ax[3].twinx()
        t.plot(ns, [ssum[n][3] / ssum[n][2] for n in ns], "d--", color="#aa3377", label="CPU/Check ratio")
        t.set_ylabel("mesh-authz / no-op CPU per Check")
        ax[3].legend(loc="upper left", fontsize=7)
        ax[3].set_title("Scaling (direct, hot token)")
    else:
        ax[3].text(0.5, 0.5, "scaling section skipped\n(fewer than 6 cores)", ha="center", va="center")
        ax[3].set_axis_off()
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
