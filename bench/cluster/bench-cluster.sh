#!/usr/bin/env bash
# Measures Switchyard across processes (docs/BENCHMARKS.md, "Several
# processes"): two `switchyard serve` on the machine's Redis and PostgreSQL,
# side by side with one process on the memory broker and SQLite, in the
# same run. Needs SWITCHYARD_TEST_REDIS and SWITCHYARD_TEST_POSTGRES (as in
# .ci/run) and psql. Creates a schema and a key prefix of its own and drops
# only those.
#
#   make bench-cluster        (or: bench/cluster/bench-cluster.sh [fanout-args...])
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SWITCHYARD_TEST_REDIS:?set SWITCHYARD_TEST_REDIS (host:port)}"
: "${SWITCHYARD_TEST_POSTGRES:?set SWITCHYARD_TEST_POSTGRES (a postgres:// URL)}"
go build -o bin/switchyard ./cmd/switchyard
SY=bin/switchyard
tag="sybench_$(date +%s)_$$"
key="bench-key-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$SWITCHYARD_TEST_POSTGRES" -c "DROP SCHEMA IF EXISTS \"$tag\" CASCADE" >/dev/null 2>&1 || true
  redis-cli -h "${SWITCHYARD_TEST_REDIS%:*}" -p "${SWITCHYARD_TEST_REDIS#*:}" --scan --pattern "$tag:*" | xargs -r -n 500 redis-cli -h "${SWITCHYARD_TEST_REDIS%:*}" -p "${SWITCHYARD_TEST_REDIS#*:}" unlink >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$SWITCHYARD_TEST_POSTGRES" -c "CREATE SCHEMA \"$tag\"" >/dev/null
sep='?'; [[ "$SWITCHYARD_TEST_POSTGRES" == *\?* ]] && sep='&'
pg="$SWITCHYARD_TEST_POSTGRES${sep}search_path=$tag"
resources='{bench_items: {fields: {name: {type: string}, t: {type: int}}, permissions: {read: anyone, create: anyone, update: anyone, delete: anyone}}}'
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
serve() { # serve NAME ENV... : starts a server; its URL is in $url
  local name=$1; shift
  local port; port=$(free_port)
  mkdir -p "$work/$name"
  env "$@" SWITCHYARD_API_KEYS="$key" SWITCHYARD_RESOURCES="$resources" \
    "$SY" serve --listen "127.0.0.1:$port" --data-dir "$work/$name" --log-level warn 2>"$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  url="http://127.0.0.1:$port"
}
cluster=(SWITCHYARD_BROKER_DRIVER=redis SWITCHYARD_BROKER_URL="redis://$SWITCHYARD_TEST_REDIS/0" SWITCHYARD_BROKER_PREFIX="$tag"
         SWITCHYARD_STORE_DRIVER=postgres SWITCHYARD_STORE_URL="$pg")
serve memory; mem=$url
serve a "${cluster[@]}"; a=$url
serve b "${cluster[@]}"; b=$url
fan=(--conns 1000 --channels 10 --rate 1000 --duration 10s "$@")
echo "== fanout, one process, memory broker"
"$SY" bench fanout --target "$mem" --api-key "$key" "${fan[@]}"
echo "== fanout, subscribers split over two processes through Redis (published on the first)"
"$SY" bench fanout --target "$a,$b" --api-key "$key" "${fan[@]}"
echo "== resources, 8 writers, SQLite"
"$SY" bench resources --target "$mem" --writers 8 --conns 10 --duration 10s
echo "== resources, 8 writers, PostgreSQL (events through Redis)"
"$SY" bench resources --target "$a" --writers 8 --conns 10 --duration 10s
