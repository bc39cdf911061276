#!/usr/bin/env python3
"""Helpers for bench/soak: sample the mesh-authz process, render the report, judge the verdicts.

  soak_report.py sample --pid PID --metrics URL --start UNIX --seconds S --every S [--kind final]
  soak_report.py render RAW.jsonl OUT.md OUT.png      (exit 1 when a verdict fails)
  soak_report.py self-test                            (the verdict code on synthetic series)

Verdicts (computed by the functions below, documented in bench/README.md):
  (a) errors: no unexpected outcome, no gRPC error, no timeout in any load process, every load
      process printed its summary, and the server's mesh_authz_checks_total grew by exactly the
      number of answers the clients counted.
  (b) RSS flat: max RSS in the last 25 % of the run minus the mean RSS of the 20–45 % window is at
      most max(5 % of that mean, 4 MiB). The first 20 % is warm-up and is not judged.
  (c) fds and threads flat: the same rule, with an allowance of max(5 %, 4) descriptors/threads.
  (d) rate: every load process and the total achieved within 2 % of their target rate.
  (e) mesh-authz alive at every sample.
Only the standard library is used, except matplotlib for the plot (optional: without it the
report says the plot is missing).
"""
import argparse
import json
import math
import os
import re
import statistics
import sys
import time
import urllib.request

WARMUP_END = 0.20
BASE = (0.20, 0.45)
LAST = (0.75, 1.00)
PHASES = [("warm-up", 0.0, 0.20), ("baseline", 0.20, 0.45), ("middle", 0.45, 0.75), ("end", 0.75, 1.0)]
RSS_REL, RSS_ABS_KIB = 0.05, 4 * 1024
COUNT_REL, COUNT_ABS = 0.05, 4
RATE_TOL = 0.02


# ---------------------------------------------------------------- sampling

def read_proc(pid):
    """RSS/HWM (KiB), CPU seconds, open fds and threads of `pid`, or None when it is gone."""
    try:
        status = open(f"/proc/{pid}/status").read()
        stat = open(f"/proc/{pid}/stat").read()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    f = {}
    for line in status.splitlines():
        k, _, v = line.partition(":")
        f[k] = v.strip()
    rest = stat.rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return {
        "rss_kib": int(f["VmRSS"].split()[0]),
        "hwm_kib": int(f["VmHWM"].split()[0]),
        "threads": int(f["Threads"]),
        "fds": fds,
        "cpu_s": (int(rest[11]) + int(rest[12])) / hz,
    }


METRIC = re.compile(r'^(mesh_authz_[a-z_]+)(?:\{([^}]*)\})?\s+(\S+)$')


def parse_metrics(text):
    """The counters the soak follows, from Prometheus text."""
    checks, cache, in_flight, entries = {}, {}, None, None
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        name, labels, val = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")), float(m.group(3))
        if name == "mesh_authz_checks_total":
            checks[f"{labels.get('decision')}/{labels.get('reason')}"] = int(val)
        elif name == "mesh_authz_checks_in_flight":
            in_flight = int(val)
        elif name == "mesh_authz_token_cache_total":
            cache[labels.get("outcome")] = int(val)
        elif name == "mesh_authz_token_cache_entries":
            entries = int(val)
    return {"checks": checks, "checks_total": sum(checks.values()), "in_flight": in_flight, "token_cache": cache,
            "cache_entries": entries}


def cmd_sample(a):
    k = 0
    while True:
        due = a.start + k * a.every
        if due > a.start + a.seconds + 1e-6:
            # The last sample is exactly at the end when the run is not a multiple of --every.
            if (k - 1) * a.every < a.seconds - 1e-6:
                due = a.start + a.seconds
            else:
                return
        time.sleep(max(0.0, due - time.time()))
        now = time.time()
        row = {"kind": a.kind, "t": now - a.start, "unix": now}
        p = read_proc(a.pid)
        row["alive"] = p is not None
        if p:
            row.update(p)
        try:
            with urllib.request.urlopen(a.metrics, timeout=2) as r:
                row.update(parse_metrics(r.read().decode()))
        except OSError as e:
            row["metrics_error"] = str(e)
        print(json.dumps(row), flush=True)
        if due >= a.start + a.seconds - 1e-6:
            return
        k += 1


# ---------------------------------------------------------------- verdicts

def window(points, duration, lo, hi):
    """Values of (t, v) points whose t lies in [lo, hi] × duration."""
    return [v for t, v in points if lo * duration - 1e-6 <= t <= hi * duration + 1e-6 and v is not None]


def flat_verdict(points, duration, rel, absolute):
    """Is the series flat after warm-up? points: [(t seconds, value)].

    growth = max(last 25 %) - mean(20-45 %); allowed = max(rel × mean, absolute).
    Returns a dict with ok (None when a window holds no sample, which is judged as a failure)."""
    base = window(points, duration, *BASE)
    last = window(points, duration, *LAST)
    if not base or not last:
        return {"ok": False, "reason": "too few samples in the baseline or last window",
                "base_n": len(base), "last_n": len(last)}
    mean = statistics.fmean(base)
    growth = max(last) - mean
    allowed = max(rel * mean, absolute)
    return {"ok": growth <= allowed, "base_mean": mean, "last_max": max(last), "growth": growth,
            "allowed": allowed, "base_n": len(base), "last_n": len(last)}


def slope_per_min(points, duration):
    """Least-squares slope of the series after warm-up, per minute (information, not a verdict)."""
    pts = [(t, v) for t, v in points if t >= WARMUP_END * duration and v is not None]
    if len(pts) < 3:
        return float("nan")
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return 60 * sum((t - mt) * (v - mv) for t, v in pts) / den if den else float("nan")


def server_checks(initial, final):
    """Checks the server counted between the readings before and after the load (None if unread)."""
    if not (initial and final and "checks_total" in initial and "checks_total" in final):
        return None
    return final["checks_total"] - initial["checks_total"]


def error_verdict(summaries, expected_labels, server=None):
    """(a): no unexpected outcome, gRPC error or timeout; every load process printed a summary;
    the server's checks_total grew by exactly the number of answers the clients counted."""
    bad = {}
    for s in summaries:
        for k, v in s["outcomes"].items():
            if k.startswith("unexpected_") or "grpc_error" in k or k.endswith("timeout"):
                bad[f"{s['label']}:{k}"] = bad.get(f"{s['label']}:{k}", 0) + v
    missing = sorted(set(expected_labels) - {s["label"] for s in summaries})
    clients = sum(s.get("requests", sum(s["outcomes"].values())) for s in summaries)
    counted = server == clients
    return {"ok": not bad and not missing and counted, "bad": bad, "missing": missing, "counted": counted}


def rate_verdict(summaries, loads):
    """(d): achieved rate of every load process and of the total within RATE_TOL of the target."""
    per = []
    for ld in loads:
        s = next((x for x in summaries if x["label"] == ld["label"]), None)
        got = s["rps"] if s else 0.0
        per.append({"label": ld["label"], "target": ld["rate"], "achieved": got,
                    "ok": abs(got - ld["rate"]) <= RATE_TOL * ld["rate"]})
    target = sum(p["target"] for p in per)
    got = sum(p["achieved"] for p in per)
    ok_total = target > 0 and abs(got - target) <= RATE_TOL * target
    return {"ok": ok_total and all(p["ok"] for p in per), "target": target, "achieved": got, "per": per}


# ---------------------------------------------------------------- report

def fmt_mib(kib):
    return f"{kib / 1024:.1f}"


def mark(ok):
    return "**pass**" if ok else "**FAIL**"


def cmd_render(a):
    rows = [json.loads(line) for line in open(a.raw) if line.strip()]
    meta = next(r for r in rows if r.get("kind") == "meta")
    t0, dur = meta["start_unix"], float(meta["seconds"])
    samples = sorted((r for r in rows if r.get("kind") == "sample"), key=lambda r: r["t"])
    initial = next((r for r in rows if r.get("kind") == "initial"), None)
    final = next((r for r in rows if r.get("kind") == "final"), None)
    intervals = [r for r in rows if r.get("kind") == "interval"]
    summaries = [r for r in rows if r.get("kind") == "summary" and r.get("label") != "prefill"]
    prefill = next((r for r in rows if r.get("kind") == "summary" and r.get("label") == "prefill"), None)
    loads = meta["loads"]
    labels = [ld["label"] for ld in loads]
    alive = [s for s in samples if s.get("alive")]

    rss = [(s["t"], s["rss_kib"]) for s in alive]
    fds = [(s["t"], s["fds"]) for s in alive]
    thr = [(s["t"], s["threads"]) for s in alive]
    tot_req = sum(s["requests"] for s in summaries)
    server = server_checks(initial, final)
    v_err = error_verdict(summaries, labels, server)
    v_rss = flat_verdict(rss, dur, RSS_REL, RSS_ABS_KIB)
    v_fds = flat_verdict(fds, dur, COUNT_REL, COUNT_ABS)
    v_thr = flat_verdict(thr, dur, COUNT_REL, COUNT_ABS)
    v_rate = rate_verdict(summaries, loads)
    v_alive = {"ok": bool(samples) and len(alive) == len(samples)}
    verdicts = [
        ("(a) no unexpected outcome, gRPC error or timeout; the server counted every Check", v_err["ok"],
         f"none; server {server} = clients {tot_req}" if v_err["ok"] else
         json.dumps({"bad": v_err["bad"], "missing": v_err["missing"], "server": server, "clients": tot_req})),
        ("(b) RSS flat after warm-up", v_rss["ok"],
         f"last-25 % max {fmt_mib(v_rss['last_max'])} MiB − 20–45 % mean {fmt_mib(v_rss['base_mean'])} MiB = "
         f"{v_rss['growth'] / 1024:+.2f} MiB; allowed {v_rss['allowed'] / 1024:.2f} MiB"
         if "growth" in v_rss else v_rss["reason"]),
        ("(c) open fds flat", v_fds["ok"],
         f"{v_fds['last_max']:.0f} vs mean {v_fds['base_mean']:.1f} ({v_fds['growth']:+.1f}; allowed {v_fds['allowed']:.1f})"
         if "growth" in v_fds else v_fds["reason"]),
        ("(c) threads flat", v_thr["ok"],
         f"{v_thr['last_max']:.0f} vs mean {v_thr['base_mean']:.1f} ({v_thr['growth']:+.1f}; allowed {v_thr['allowed']:.1f})"
         if "growth" in v_thr else v_thr["reason"]),
        ("(d) achieved rate within 2 % of target", v_rate["ok"],
         f"{v_rate['achieved']:.1f}/s of {v_rate['target']:.0f}/s ("
         + ", ".join(f"{p['label']} {p['achieved']:.1f}/{p['target']:g}" for p in v_rate["per"]) + ")"),
        ("(e) mesh-authz alive at every sample", v_alive["ok"], f"{len(alive)} of {len(samples)} samples"),
    ]
    all_ok = all(ok for _, ok, _ in verdicts)

    L = [f"# mesh-authz soak — {meta['date']}\n"]
    L.append(f"**{'PASS' if all_ok else 'FAIL'}.** {dur:.0f} s at a fixed {meta['rate']:g} Checks/s, commit "
             f"`{meta['commit']}`, {meta['cpus']} CPUs ({meta['cpu_model']}), shared with the load generators. "
             f"Revocation store `{meta['store']}`, `token_cache_capacity: {meta['cache_capacity']}` (filled with "
             f"{meta['prefill']} fresh tokens before the run). Produced by `bench/soak`; raw samples in the "
             "`.jsonl` beside this file.\n")
    L.append("## Verdicts\n")
    L.append("| check | verdict | measured |")
    L.append("|---|---|---|")
    for name, ok, detail in verdicts:
        L.append(f"| {name} | {mark(ok)} | {detail} |")
    L.append("")
    L.append(f"Windows: warm-up 0–{WARMUP_END:.0%} of the run (not judged), baseline {BASE[0]:.0%}–{BASE[1]:.0%}, "
             f"last {LAST[0]:.0%}–{LAST[1]:.0%}. Flat means max(last) − mean(baseline) ≤ max(5 % of the baseline, "
             "4 MiB) for RSS and max(5 %, 4) for fds and threads. "
             f"RSS trend after warm-up (least squares, information only): {slope_per_min(rss, dur):+.0f} KiB/min.\n")

    L.append("## Load\n")
    L.append("| process | share | target /s | achieved /s | requests | outcomes | late (> {:g} ms) | max lag ms | p50 µs | p99 µs | max µs |"
             .format(summaries[0]["late_ms"] if summaries else 100))
    L.append("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for ld in loads:
        s = next((x for x in summaries if x["label"] == ld["label"]), None)
        if not s:
            L.append(f"| {ld['label']} | {ld['share']:.1%} | {ld['rate']:g} | — | — | no summary (process failed) | | | | | |")
            continue
        L.append(f"| {ld['label']}: {ld['what']} | {ld['share']:.1%} | {ld['rate']:g} | {s['rps']:.1f} | {s['requests']} | "
                 f"`{json.dumps(s['outcomes'])}` | {s['late']} | {s['max_lag_us'] / 1000:.1f} | {s['p50_us']} | "
                 f"{s['p99_us']} | {s['max_us']} |")
    tot_out = {}
    for s in summaries:
        for k, v in s["outcomes"].items():
            tot_out[k] = tot_out.get(k, 0) + v
    L.append(f"| **total** | | {v_rate['target']:.0f} | {v_rate['achieved']:.1f} | {tot_req} | `{json.dumps(dict(sorted(tot_out.items())))}` | "
             f"{sum(s['late'] for s in summaries)} | | | | |")
    L.append("")
    first = initial if initial and "checks" in initial else (alive[0] if alive else None)
    last = final if final and "checks" in final else (alive[-1] if alive else None)
    if first and last and first is not last and "checks" in first and "checks" in last:
        delta = {k: last["checks"].get(k, 0) - first["checks"].get(k, 0) for k in sorted(set(first["checks"]) | set(last["checks"]))}
        delta = {k: v for k, v in delta.items() if v}
        cache = {k: last["token_cache"].get(k, 0) - first["token_cache"].get(k, 0) for k in last.get("token_cache", {})}
        when = ("the readings just before and after the load" if first is initial and last is final
                else "the first and last sample")
        agree = "the same as" if sum(delta.values()) == tot_req else "**not** the same as"
        L.append(f"Server side, between {when}: `mesh_authz_checks_total` by decision/reason "
                 f"`{json.dumps(delta)}`, {sum(delta.values())} in all, {agree} the {tot_req} the clients counted; token cache "
                 f"`{json.dumps(cache)}`, Checks in flight at most {max((s.get('in_flight') or 0) for s in alive)} "
                 f"at a sample; cached tokens (`mesh_authz_token_cache_entries`) at most "
                 f"{max((s.get('cache_entries') or 0) for s in alive)} at a sample.\n")
    if prefill:
        L.append(f"Prefill (not judged): {prefill['requests']} fresh tokens at {prefill['rps']:.0f}/s, outcomes "
                 f"`{json.dumps(prefill['outcomes'])}`.\n")

    L.append("## Latency by phase (client side, service time from send to answer)\n")
    L.append(f"From the {meta['sample_every']:g}-s interval lines of each load process: median of the interval p50s, "
             "median of the interval p99s, and the worst interval p99. Whole-run p50/p99 are in the load table.\n")
    L.append("| process | " + " | ".join(f"{n} ({lo:.0%}–{hi:.0%})" for n, lo, hi in PHASES) + " |")
    L.append("|---|" + "---|" * len(PHASES))
    for lab in labels:
        cells = []
        for _, lo, hi in PHASES:
            xs = [i for i in intervals if i["label"] == lab and i["requests"] > 0
                  and lo * dur <= (i["unix"] - i["seconds"] / 2 - t0) < hi * dur + (1e-6 if hi < 1 else 1e9)]
            if xs:
                cells.append(f"{statistics.median(i['p50_us'] for i in xs):.0f} / "
                             f"{statistics.median(i['p99_us'] for i in xs):.0f} / {max(i['p99_us'] for i in xs)} µs")
            else:
                cells.append("—")
        L.append(f"| {lab} | " + " | ".join(cells) + " |")
    L.append("")

    L.append("## Samples\n")
    every = float(meta["sample_every"])
    step = 30.0 if dur >= 300 else max(every, round(dur / 8 / every) * every)
    L.append(f"mesh-authz every {step:g} s (sampled every {every:g} s; all samples in the `.jsonl`). CPU and Checks/s "
             "are averaged since the previous row; p99 is the client's interval ending nearest the row.\n")
    L.append("| t s | phase | RSS MiB | HWM MiB | fds | threads | CPU % | Checks/s (server) | in flight | "
             + " | ".join(f"{lab} p99 µs" for lab in labels) + " |")
    L.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(labels))
    prev = None
    shown = []
    for s in samples:
        if shown and s is not samples[-1] and s["t"] < shown[-1]["t"] + step - every / 2:
            continue
        shown.append(s)
    for s in shown:
        if not s.get("alive"):
            L.append(f"| {s['t']:.0f} | | process gone | | | | | | |" + " |" * len(labels))
            continue
        ph = next((n for n, lo, hi in PHASES if s["t"] < hi * dur - 1e-6), "end")
        cpu = rate_ = "—"
        if prev is not None and s["t"] > prev["t"]:
            cpu = f"{100 * (s['cpu_s'] - prev['cpu_s']) / (s['t'] - prev['t']):.0f}"
            if "checks_total" in s and "checks_total" in prev:
                rate_ = f"{(s['checks_total'] - prev['checks_total']) / (s['t'] - prev['t']):.0f}"
        p99s = []
        for lab in labels:
            xs = [i for i in intervals if i["label"] == lab]
            near = min(xs, key=lambda i: abs(i["unix"] - s["unix"]), default=None)
            p99s.append(str(near["p99_us"]) if near and abs(near["unix"] - s["unix"]) <= every else "—")
        L.append(f"| {s['t']:.0f} | {ph} | {fmt_mib(s['rss_kib'])} | {fmt_mib(s['hwm_kib'])} | {s['fds']} | {s['threads']} | "
                 f"{cpu} | {rate_} | {s.get('in_flight', '—')} | " + " | ".join(p99s) + " |")
        prev = s
    L.append("")

    png_note = plot(a.png, meta, alive, intervals, labels, dur, v_rss)
    L.append(png_note + "\n")
    open(a.md, "w").write("\n".join(L))
    for name, ok, detail in verdicts:
        print(f"{'pass' if ok else 'FAIL'}: {name}: {detail}", file=sys.stderr)
    return 0 if all_ok else 1


def plot(png, meta, alive, intervals, labels, dur, v_rss):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "(No plot: matplotlib is not installed for this Python.)"
    t0 = meta["start_unix"]
    fig, ax = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    ts = [s["t"] for s in alive]
    ax[0].plot(ts, [s["rss_kib"] / 1024 for s in alive], color="#4477aa", label="RSS")
    ax[0].axvspan(0, WARMUP_END * dur, color="#dddddd", alpha=0.6, label="warm-up (not judged)")
    ax[0].axvspan(BASE[0] * dur, BASE[1] * dur, color="#88ccee", alpha=0.3, label="baseline window")
    ax[0].axvspan(LAST[0] * dur, LAST[1] * dur, color="#ddcc77", alpha=0.3, label="last window")
    if "allowed" in v_rss:
        ax[0].axhline((v_rss["base_mean"] + v_rss["allowed"]) / 1024, color="#cc3311", ls="--",
                      label="flat limit (baseline mean + allowance)")
    ax[0].set_ylabel("RSS MiB (axis not from 0)")
    # Zoomed on the series and the limit: a flat line and a slow climb must look different.
    ys = [s["rss_kib"] / 1024 for s in alive]
    if ys:
        top = max(ys + [(v_rss["base_mean"] + v_rss["allowed"]) / 1024 if "allowed" in v_rss else 0])
        pad = max(1.0, (top - min(ys)) * 0.15)
        ax[0].set_ylim(min(ys) - pad, top + 3 * pad)
    ax[0].legend(fontsize=7, loc="upper left", ncol=3)
    for lab in labels:
        xs = sorted((i for i in intervals if i["label"] == lab and i["requests"] > 0), key=lambda i: i["unix"])
        ax[1].plot([i["unix"] - t0 for i in xs], [i["p99_us"] for i in xs], label=f"{lab} p99")
    ax[1].set_yscale("log")
    ax[1].set_ylabel("client p99 µs (per interval)")
    ax[1].legend(fontsize=7)
    rt = [(b["t"], (b["checks_total"] - a_["checks_total"]) / (b["t"] - a_["t"]))
          for a_, b in zip(alive, alive[1:]) if "checks_total" in a_ and "checks_total" in b and b["t"] > a_["t"]]
    ax[2].plot([t for t, _ in rt], [r for _, r in rt], color="#228833", label="Checks/s (server counter)")
    ax[2].axhline(meta["rate"], color="#999999", ls=":", label="target")
    ax2 = ax[2].twinx()
    ax2.plot(ts, [s["threads"] for s in alive], color="#aa3377", lw=1, label="threads")
    ax2.plot(ts, [s["fds"] for s in alive], color="#ee7733", lw=1, label="open fds")
    ax2.set_ylim(bottom=0)
    ax2.set_ylabel("threads / fds")
    ax[2].set_ylim(0, 1.25 * max([meta["rate"]] + [r for _, r in rt]))
    ax[2].set_ylabel("Checks/s")
    ax[2].set_xlabel("seconds since the start of the soak")
    h1, l1 = ax[2].get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax[2].legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
    fig.suptitle(f"mesh-authz soak {meta['date']}: {meta['rate']:g} Checks/s for {dur:.0f} s "
                 f"({meta['store']} revocation store, cache {meta['cache_capacity']})")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return f"![soak plot]({os.path.basename(png)})"


# ---------------------------------------------------------------- self-test

def cmd_self_test(_a=None):
    """The verdict code against synthetic series: flat ones must pass, growing ones must fail."""
    dur, mib = 600.0, 1024
    ts = [5.0 * k for k in range(121)]
    wobble = lambda t: 0.8 * mib * math.sin(t / 7.0)  # noqa: E731 (±0.8 MiB, no trend)
    cases = [
        ("flat RSS with noise passes",
         flat_verdict([(t, 40 * mib + wobble(t)) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], True),
        ("RSS growing only during warm-up (cache fill) passes",
         flat_verdict([(t, (20 + 20 * min(t, 100) / 100) * mib) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], True),
        ("one 3 MiB spike late in the run passes",
         flat_verdict([(t, 40 * mib + (3 * mib if t == 500 else 0)) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], True),
        ("RSS growing 40 -> 60 MiB fails",
         flat_verdict([(t, (40 + 20 * t / dur) * mib) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], False),
        ("slow leak of 10 MiB over the run fails",
         flat_verdict([(t, (40 + 10 * t / dur) * mib + wobble(t)) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], False),
        ("step of +6 MiB at 60 % fails",
         flat_verdict([(t, (40 + (6 if t > 360 else 0)) * mib) for t in ts], dur, RSS_REL, RSS_ABS_KIB)["ok"], False),
        ("too few samples fails",
         flat_verdict([(0.0, 40 * mib), (600.0, 40 * mib)], dur, RSS_REL, RSS_ABS_KIB)["ok"], False),
        ("flat fds pass", flat_verdict([(t, 23) for t in ts], dur, COUNT_REL, COUNT_ABS)["ok"], True),
        ("fds leaking one per 20 s fail", flat_verdict([(t, 23 + t // 20) for t in ts], dur, COUNT_REL, COUNT_ABS)["ok"], False),
        ("threads +2 pass", flat_verdict([(t, 8 + (2 if t > 400 else 0)) for t in ts], dur, COUNT_REL, COUNT_ABS)["ok"], True),
        ("clean outcomes pass",
         error_verdict([{"label": "hot", "outcomes": {"allow": 10}}, {"label": "bad", "outcomes": {"deny16": 3}}],
                       ["hot", "bad"], 13)["ok"], True),
        ("an unexpected outcome fails",
         error_verdict([{"label": "hot", "outcomes": {"allow": 10, "unexpected_deny16": 1}}], ["hot"], 11)["ok"], False),
        ("a gRPC error fails",
         error_verdict([{"label": "hot", "outcomes": {"allow": 9, "unexpected_grpc_error_Unavailable": 1}}], ["hot"], 9)["ok"], False),
        ("a missing load summary fails",
         error_verdict([{"label": "hot", "outcomes": {"allow": 10}}], ["hot", "bad"], 10)["ok"], False),
        ("server counting fewer Checks than the clients fails",
         error_verdict([{"label": "hot", "outcomes": {"allow": 10}}], ["hot"], 9)["ok"], False),
        ("rate 1990 of 2000 passes",
         rate_verdict([{"label": "x", "rps": 1990.0}], [{"label": "x", "rate": 2000.0}])["ok"], True),
        ("rate 1900 of 2000 fails",
         rate_verdict([{"label": "x", "rps": 1900.0}], [{"label": "x", "rate": 2000.0}])["ok"], False),
        ("one process at 90 % fails even when the total is close",
         rate_verdict([{"label": "x", "rps": 2000.0}, {"label": "y", "rps": 45.0}],
                      [{"label": "x", "rate": 2000.0}, {"label": "y", "rate": 50.0}])["ok"], False),
    ]
    failed = 0
    for name, got, want in cases:
        ok = got == want
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name} (verdict {'pass' if got else 'fail'}, expected {'pass' if want else 'fail'})")
    print(f"self-test: {len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    if "--self-test" in sys.argv[1:]:
        sys.exit(cmd_self_test())
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--pid", type=int, required=True)
    s.add_argument("--metrics", required=True)
    s.add_argument("--start", type=float, required=True)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--every", type=float, default=5.0)
    s.add_argument("--kind", default="sample", help="'final' for the reading after the load ended")
    r = sub.add_parser("render")
    r.add_argument("raw")
    r.add_argument("md")
    r.add_argument("png")
    sub.add_parser("self-test")
    a = p.parse_args()
    if a.cmd == "sample":
        cmd_sample(a)
    elif a.cmd == "render":
        sys.exit(cmd_render(a))
    else:
        sys.exit(cmd_self_test())


if __name__ == "__main__":
    main()
