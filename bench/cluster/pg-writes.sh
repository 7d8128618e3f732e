#!/usr/bin/env bash
# Measures PostgreSQL writes through one `switchyard serve` (docs/BENCHMARKS.md,
# "concurrent creates in one statement"): serve on the machine's PostgreSQL in
# a schema of its own (memory broker), `bench resources --writers 8 --conns
# 10` against it, and the CPU per write of the server, of every PostgreSQL
# process and of the bench client (from /proc and time(1)), with PostgreSQL's
# commits per write (pg_stat_database). Drops only the schema it created.
#
#   bench/cluster/pg-writes.sh [BINARY [DURATION [BROKER]]]   (default bin/switchyard 8s memory)
#
# BROKER redis uses the Redis broker at $SWITCHYARD_TEST_REDIS (host:port)
# under a key prefix of its own, deleted at the end.
#
# Alternate two binaries to compare builds: the machine is shared and noisy.
set -euo pipefail
BIN=${1:-bin/switchyard}
DUR=${2:-8s}
BROKER=${3:-memory}
PG=${SWITCHYARD_TEST_POSTGRES:?set SWITCHYARD_TEST_POSTGRES (a postgres:// URL)}
case "$PG" in *\?*) sep='&' ;; *) sep='?' ;; esac
REDIS=
case "$BROKER" in
  memory) ;;
  redis) REDIS=${SWITCHYARD_TEST_REDIS:?set SWITCHYARD_TEST_REDIS (host:port)} ;;
  *) echo "pg-writes: BROKER is memory or redis, not $BROKER" >&2; exit 2 ;;
esac
tag="sypg_$(date +%s)_$$"
work=$(mktemp -d)
spid=
cleanup() {
  [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
  psql -q "$PG" -c "DROP SCHEMA IF EXISTS $tag CASCADE" >/dev/null 2>&1 || true
  if [ -n "$REDIS" ]; then
    redis-cli -h "${REDIS%:*}" -p "${REDIS##*:}" --scan --pattern "$tag*" |
      xargs -r redis-cli -h "${REDIS%:*}" -p "${REDIS##*:}" DEL >/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$PG" -c "CREATE SCHEMA $tag" >/dev/null
port=$((20000 + RANDOM % 20000))
broker=(SWITCHYARD_BROKER_DRIVER=memory)
if [ -n "$REDIS" ]; then
  broker=(SWITCHYARD_BROKER_DRIVER=redis "SWITCHYARD_BROKER_URL=redis://$REDIS" "SWITCHYARD_BROKER_PREFIX=$tag")
fi
SWITCHYARD_LISTEN=127.0.0.1:$port SWITCHYARD_DATA_DIR=$work/data \
SWITCHYARD_RESOURCES='{bench_items: {fields: {name: {type: string}, t: {type: int}}, permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}}}' \
SWITCHYARD_STORE_DRIVER=postgres SWITCHYARD_STORE_URL="$PG${sep}search_path=$tag" \
  env "${broker[@]}" "$BIN" serve >"$work/serve.log" 2>&1 &
spid=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  kill -0 $spid 2>/dev/null || { echo "pg-writes: serve exited:" >&2; cat "$work/serve.log" >&2; spid=; exit 1; }
  sleep 0.1
done
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pgticks() { local t=0 p; for p in $(pgrep -x postgres) $(pgrep -f '^postgres:'); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
commits() { psql -qtA "$PG" -c "SELECT sum(xact_commit) FROM pg_stat_database"; }
s0=$(ticks $spid); p0=$(pgticks); c0=$(commits)
start=$(date +%s.%N)
if ! out=$("$BIN" bench resources --target "http://127.0.0.1:$port" --writers 8 --conns 10 --duration "$DUR" --json 2>"$work/bench.err"); then
  echo "pg-writes: the bench failed:" >&2; cat "$work/bench.err" >&2
  echo "pg-writes: the server's log ends:" >&2; tail -n 20 "$work/serve.log" >&2
  exit 1
fi
bench_cpu=$(awk '{print $14+$15+$16+$17}' /proc/$$/stat) # this shell's reaped children: the bench
s1=$(ticks $spid); p1=$(pgticks); c1=$(commits)
python3 - "$out" "$s0" "$s1" "$p0" "$p1" "$c0" "$c1" "$bench_cpu" "$(getconf CLK_TCK)" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import json, sys
o = json.loads(sys.argv[1])
s0, s1, p0, p1, c0, c1, b = map(int, sys.argv[2:9])
hz = int(sys.argv[9])
n = max(1, o["writes"])
e, w = o["latency_ms"], o["write_latency_ms"]
us = lambda t: t / hz / n * 1e6
print(f'writes/s {o["writes_per_sec"]:.0f}  event p50/p99 {e["p50"]:.2f}/{e["p99"]:.2f} ms  write p50/p99 {w["p50"]:.2f}/{w["p99"]:.2f} ms  '
      f'events {o["deliveries"]}/{o["expected_deliveries"]}  CPU per write: server {us(s1-s0):.0f} µs, PostgreSQL {us(p1-p0):.0f} µs, '
      f'bench ≤ {us(b):.0f} µs  commits per write {(c1-c0)/n:.2f}  load {sys.argv[10]}')
PY
