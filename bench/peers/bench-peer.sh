#!/bin/bash
# bench-peer.sh: the idle and fanout scenarios against Switchyard and
# against the Django Channels peer (django-channels/), one after the other
# on the same machine with the same client, then one table with the
# ratios. `make bench-peer` runs it after installing the Debian packages and
# building bin/switchyard. Each Django scenario gets a fresh daphne process
# (Python does not give memory back, so a reused one would skew idle), on a
# free loopback port, stopped at the end, also on failure or Ctrl-C.
#
# Settings (environment): IDLE_CONNS (2000), FANOUT_CONNS (1000),
# FANOUT_CHANNELS (10), FANOUT_RATE (100), FANOUT_DURATION (10s),
# SWITCHYARD_BIN (bin/switchyard).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${SWITCHYARD_BIN:-$root/bin/switchyard}
idle_args=(--conns "${IDLE_CONNS:-2000}")
fanout_args=(--conns "${FANOUT_CONNS:-1000}" --channels "${FANOUT_CHANNELS:-10}" --rate "${FANOUT_RATE:-100}" --duration "${FANOUT_DURATION:-10s}")

out=$(mktemp -d /tmp/bench-peer.XXXXXX)
peer_pid=
peer_url=
peer_key=

stop_peer() {
	[ -n "$peer_pid" ] || return 0
	kill -TERM "$peer_pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$peer_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$peer_pid" 2>/dev/null || true
	wait "$peer_pid" 2>/dev/null || true
	peer_pid=
}
bench_pid=
stop_bench() {
	[ -n "$bench_pid" ] || return 0
	kill -INT "$bench_pid" 2>/dev/null || true
	wait "$bench_pid" 2>/dev/null || true
	bench_pid=
}
trap 'stop_bench; stop_peer; rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

start_peer() { # start_peer NAME: a fresh daphne; sets peer_pid, peer_url, peer_key
	local port
	port=$(/usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	peer_key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	PEER_API_KEY=$peer_key "$root/bench/peers/django-channels/run.sh" "$port" >"$out/daphne-$1.log" 2>&1 &
	peer_pid=$!
	peer_url=http://127.0.0.1:$port
	for _ in $(seq 150); do
		if ! kill -0 "$peer_pid" 2>/dev/null; then
			echo "bench-peer: daphne exited while starting:" >&2
			cat "$out/daphne-$1.log" >&2
			peer_pid=
			return 1
		fi
		curl -sf "$peer_url/healthz" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "bench-peer: daphne did not answer /healthz in 15 s" >&2
	return 1
}

failed=0
run() { # run NAME ARGS...: one scenario; its JSON (or the error) in $out/NAME.json
	local name=$1
	shift
	echo "== $name: switchyard bench ${*//$peer_key/KEY}" >&2
	# In the background with wait, so a signal to this script is handled at
	# once (bash runs traps only between foreground commands).
	"$bin" bench "$@" --json >"$out/$name.json" 2> >(tee "$out/$name.err" >&2) &
	bench_pid=$!
	if wait "$bench_pid"; then
		bench_pid=
		return 0
	fi
	bench_pid=
	failed=1
	local msg
	msg=$(tail -n 1 "$out/$name.err")
	/usr/bin/python3 -c 'import json, sys; print(json.dumps({"error": sys.argv[1]}))' "$msg" >"$out/$name.json"
}

run switchyard-idle idle "${idle_args[@]}"
start_peer idle
run django-idle idle --target "$peer_url" --target-pid "$peer_pid" "${idle_args[@]}"
stop_peer
run switchyard-fanout fanout "${fanout_args[@]}"
start_peer fanout
run django-fanout fanout --target "$peer_url" --api-key "$peer_key" "${fanout_args[@]}"
stop_peer
wait # the tee processes

echo
/usr/bin/python3 "$root/bench/peers/compare.py" --switchyard-version "$("$bin" version)" "$out"
exit $failed
