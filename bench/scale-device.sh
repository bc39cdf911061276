#!/usr/bin/env bash
# Multi-core scaling, alone, from prebuilt release binaries (bench/README.md, "Scaling").
#
# For n in SCALE_CORES (1 2 4): mesh-authz with `server.worker_threads: n` and the no-op server
# with `--workers n`, each pinned with taskset to cores 0..n-1; check-load pinned to the cores
# after them (8 HTTP/2 connections, 512 in flight, the hot token), rounds interleaved (odd rounds
# in one order, even rounds reversed). Needs at least 6 usable cores: with fewer it prints a note
# and exits 0 (the load would share the servers' cores and the numbers would mean nothing).
#
#   bench/scale-device.sh                      # writes bench/results/scale-<date>.{md,png,jsonl}
#   BIN=/path/to/release SCALE_SECONDS=5 SCALE_ROUNDS=2 SCALE_TIMEOUT=900 bench/scale-device.sh
#
# Knobs: BIN (default target/release; needs mesh-authz, noop-authz, check-load, bench-tokens),
# SCALE_SECONDS (10), SCALE_ROUNDS (4), SCALE_CORES ("1 2 4"), SCALE_CONNS (8),
# SCALE_CONCURRENCY (512), SCALE_TIMEOUT (whole-run limit in seconds, 1800), BENCH_RESULTS_DIR,
# SCALE_MIN_CPUS (6; lower it only to try the script's mechanics on a small machine),
# SCALE_RAW (append the rows to this .jsonl instead of writing a report: bench/run uses it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# The whole run under one timeout: re-exec under `timeout` once.
if [ -z "${SCALE_UNDER_TIMEOUT:-}" ]; then
  export SCALE_UNDER_TIMEOUT=1
  exec timeout --kill-after=10 "${SCALE_TIMEOUT:-1800}" "$0" "$@"
fi

BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
SECS=${SCALE_SECONDS:-10}
ROUNDS=${SCALE_ROUNDS:-4}
CORES_LIST=${SCALE_CORES:-1 2 4}
CONNS=${SCALE_CONNS:-8}
CONC=${SCALE_CONCURRENCY:-512}
PY=python3
[ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
log() { echo "== scale: $*" >&2; }

# The cores this process may use, in order (taskset pins within them).
mapfile -t CPUS < <($PY -c 'import os; print("\n".join(map(str, sorted(os.sched_getaffinity(0)))))')
max_n=0
for n in $CORES_LIST; do [ "$n" -gt "$max_n" ] && max_n=$n; done
MIN_CPUS=${SCALE_MIN_CPUS:-6}
if [ "${#CPUS[@]}" -lt "$MIN_CPUS" ] || [ "${#CPUS[@]}" -lt $((max_n + 1)) ]; then
  echo "note: scaling section skipped: ${#CPUS[@]} usable cores; it needs at least $MIN_CPUS (servers on up to $max_n, the load on the rest)" >&2
  if [ -n "${SCALE_RAW:-}" ]; then
    echo "{\"kind\":\"scale_skipped\",\"cpus\":${#CPUS[@]}}" >> "$SCALE_RAW"
  fi
  exit 0
fi
for b in mesh-authz noop-authz check-load bench-tokens; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (cargo build --release -p mesh-authz -p mesh-authz-bench)" >&2; exit 2; }
done
command -v taskset >/dev/null || { echo "taskset is needed (util-linux)" >&2; exit 2; }

STAMP=$(date -u +%Y-%m-%d)
OUT=${BENCH_RESULTS_DIR:-$ROOT/bench/results}
mkdir -p "$OUT"
if [ -n "${SCALE_RAW:-}" ]; then
  RAW=$SCALE_RAW
else
  RAW=$OUT/scale-$STAMP.jsonl
  : > "$RAW"
  echo "{\"kind\":\"meta\",\"date\":\"$(date -u +%FT%TZ)\",\"seconds\":$SECS,\"rounds\":$ROUNDS,\"connections\":$CONNS,\"cpus\":${#CPUS[@]},\"cpu_model\":\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)\",\"commit\":\"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\"}" >> "$RAW"
fi
WORK=$(mktemp -d /tmp/mesh-authz-scale.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
wait_tcp() { for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "no listener on $1" >&2; return 1; }
cpuset() { local from=$1 count=$2; local IFS=,; echo "${CPUS[*]:$from:$count}"; }

K=$WORK/keys
"$BIN/bench-tokens" keygen --out "$K" >/dev/null
"$BIN/bench-tokens" mint --dir "$K" --kid rs2048 --count 1 --out "$K/hot.txt" >/dev/null

# start_pair N: mesh-authz (worker_threads N) and the no-op (--workers N) on cores 0..N-1.
start_pair() {
  local n=$1 g h
  local cores
  cores=$(cpuset 0 "$n")
  g=$(port); h=$(port)
  cat > "$WORK/mesh-$n.yaml" <<YAML
server: { grpc_addr: 127.0.0.1:$g, http_addr: 127.0.0.1:$h, worker_threads: $n }
providers:
  - name: bench
    issuer: https://issuer.bench
    audiences: [bench]
    jwks: { file: $K/jwks.json }
    algorithms: [RS256, ES256, EdDSA]
    claims_to_headers: { sub: x-auth-subject, scope: x-auth-scope }
rules:
  - name: api
    match: { path_prefix: / }
    require: { token: true }
default_action: deny
limits: { token_cache_capacity: 100000 }
logging: { format: json, level: info }
YAML
  taskset -c "$cores" "$BIN/mesh-authz" serve --config "$WORK/mesh-$n.yaml" >"$WORK/mesh-$n.log" 2>&1 &
  MESH_PID=$!; PIDS+=("$MESH_PID"); MESH_GRPC=$g
  wait_http "http://127.0.0.1:$h/readyz"
  NOOP_GRPC=$(port)
  taskset -c "$cores" "$BIN/noop-authz" --addr "127.0.0.1:$NOOP_GRPC" --workers "$n" >"$WORK/noop-$n.log" 2>&1 &
  NOOP_PID=$!; PIDS+=("$NOOP_PID")
  wait_tcp "$NOOP_GRPC"
}

stop_pair() {
  kill "$MESH_PID" "$NOOP_PID" 2>/dev/null || true
  wait "$MESH_PID" "$NOOP_PID" 2>/dev/null || true
}

# measure ROUND N LABEL PID PORT
measure() {
  local r=$1 n=$2 label=$3 pid=$4 p=$5 load line
  load=$(cpuset "$n" $(( ${#CPUS[@]} - n )))
  line=$(taskset -c "$load" "$BIN/check-load" --addr "127.0.0.1:$p" --label "$label" --pid "$pid" \
    --duration "$SECS" --warmup 1 --conns "$CONNS" --concurrency "$CONC" --expect allow \
    --tokens "$K/hot.txt")
  echo "{\"kind\":\"scale\",\"round\":$r,\"cores\":$n,\"load_cores\":$(( ${#CPUS[@]} - n )),\"data\":$line}" >> "$RAW"
  log "round $r, $n core(s): $line"
}

order() { if [ $(($1 % 2)) = 1 ]; then echo "${@:2}"; else printf '%s\n' "${@:2}" | tac | xargs; fi; }
for n in $CORES_LIST; do
  start_pair "$n"
  for r in $(seq 1 "$ROUNDS"); do
    for who in $(order "$r" noop mesh); do
      case $who in
        noop) measure "$r" "$n" noop "$NOOP_PID" "$NOOP_GRPC" ;;
        mesh) measure "$r" "$n" mesh "$MESH_PID" "$MESH_GRPC" ;;
      esac
    done
  done
  stop_pair
done

if [ -z "${SCALE_RAW:-}" ]; then
  $PY bench/report.py render "$RAW" "$OUT/scale-$STAMP.md" "$OUT/scale-$STAMP.png"
  log "wrote $OUT/scale-$STAMP.md"
fi
