#!/usr/bin/env bash
# Checks the nginx configuration of docs/deployment.md ("nginx in front of
# three processes"): three `switchyard serve` on the machine's Redis and
# PostgreSQL behind nginx, on loopback ports of their own. It extracts the
# nginx block from the doc, moves its ports, and checks readiness, a
# publication reaching /live clients through nginx, and the Channelstream
# API pinned to one process. Needs nginx, psql, redis-cli, node (ws from
# tests/dcrf) and the SWITCHYARD_TEST_* variables.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${SWITCHYARD_TEST_REDIS:?}" "${SWITCHYARD_TEST_POSTGRES:?}"
go build -o bin/switchyard ./cmd/switchyard
tag="synginx_$(date +%s)_$$"
work=$(mktemp -d)
pids=()
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$SWITCHYARD_TEST_POSTGRES" -c "DROP SCHEMA IF EXISTS \"$tag\" CASCADE" >/dev/null 2>&1 || true
  redis-cli -h "${SWITCHYARD_TEST_REDIS%:*}" -p "${SWITCHYARD_TEST_REDIS#*:}" --scan --pattern "$tag:*" | xargs -r redis-cli -h "${SWITCHYARD_TEST_REDIS%:*}" -p "${SWITCHYARD_TEST_REDIS#*:}" unlink >/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$SWITCHYARD_TEST_POSTGRES" -c "CREATE SCHEMA \"$tag\"" >/dev/null
sep='?'; [[ "$SWITCHYARD_TEST_POSTGRES" == *\?* ]] && sep='&'
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
key=nginx-check-api-key-0123456789
cat > "$work/switchyard.yaml" <<'YAML'
channelstream: {enabled: true, secret: nginx-check-secret, prefix: /channelstream}
channels:
  namespaces:
    chat: {history_size: 10, history_ttl: 1h, recover: true, permissions: {subscribe: anyone, publish: none, presence: anyone, history: anyone}}
YAML
ports=()
for i in 1 2 3; do
  p=$(free_port); ports+=("$p")
  mkdir -p "$work/p$i"
  SWITCHYARD_STORE_DRIVER=postgres SWITCHYARD_STORE_URL="$SWITCHYARD_TEST_POSTGRES${sep}search_path=$tag" \
  SWITCHYARD_BROKER_DRIVER=redis SWITCHYARD_BROKER_URL="redis://$SWITCHYARD_TEST_REDIS/0" SWITCHYARD_BROKER_PREFIX="$tag" \
  SWITCHYARD_API_KEYS="$key" \
    bin/switchyard serve --config "$work/switchyard.yaml" --listen "127.0.0.1:$p" --data-dir "$work/p$i" --log-level warn 2>"$work/p$i.log" &
  pids+=($!)
done
front=$(free_port)
# The doc's block (the one under "nginx in front of three processes"), with
# its ports moved to this run's.
awk '/^### nginx in front of three processes/{sec=1} sec && /^```nginx$/{on=1; sec=0; next} on && /^```$/{on=0} on' docs/deployment.md |
  sed -e "s/127.0.0.1:8001/127.0.0.1:${ports[0]}/; s/127.0.0.1:8002/127.0.0.1:${ports[1]}/; s/127.0.0.1:8003/127.0.0.1:${ports[2]}/" \
      -e "s/listen 80;/listen 127.0.0.1:$front;/" > "$work/site.conf"
cat > "$work/nginx.conf" <<CONF
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events {}
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  include $work/site.conf;
}
CONF
nginx -t -c "$work/nginx.conf" -p "$work"
nginx -c "$work/nginx.conf" -p "$work"
base="http://127.0.0.1:$front"
for p in "${ports[@]}"; do for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done; done
for i in 1 2 3; do curl -fs "$base/readyz" | grep -q '"ready":true'; done
echo "ok: /readyz through nginx"
# Six /live clients through nginx (spread over the processes by least_conn),
# one publication through nginx: every client receives it.
NODE_PATH=tests/dcrf/node_modules BASE="ws://127.0.0.1:$front/live" node -e '
const WebSocket = require("ws");
let got = 0, ready = 0; const n = 6;
for (let i = 0; i < n; i++) {
  const ws = new WebSocket(process.env.BASE);
  ws.on("open", () => ws.send(JSON.stringify({stream: "$channels", payload: {action: "subscribe", request_id: 1, channel: "chat:nginx"}})));
  ws.on("message", (m) => { const p = JSON.parse(m).payload;
    if (p.action === "subscribe" && p.response_status === 200 && ++ready === n) console.log("READY");
    if (p.action === "message" && ++got === n) { console.log("ALL"); process.exit(0); } });
}
setTimeout(() => { console.log("TIMEOUT " + got); process.exit(1); }, 10000);
' > "$work/clients.out" &
cpid=$!
for _ in $(seq 1 100); do grep -q READY "$work/clients.out" 2>/dev/null && break; sleep 0.1; done
curl -fs "$base/api/server/publish" -H "Authorization: apikey $key" -d '{"channel": "chat:nginx", "data": "through nginx"}' >/dev/null
wait $cpid
grep -q ALL "$work/clients.out"
echo "ok: a publication through nginx reached 6 /live clients spread over 3 processes"
# Channelstream: /connect then /listen through nginx, pinned to one process.
sig=$(go run ./tests/nginx/sign nginx-check-secret)
conn=$(curl -fs "$base/channelstream/connect" -H "x-channelstream-secret: $sig" -H 'Content-Type: application/json' -d '{"username": "u1", "channels": ["lobby"]}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["conn_id"])')
curl -fs "$base/channelstream/message" -H "x-channelstream-secret: $sig" -H 'Content-Type: application/json' -d '[{"channel": "lobby", "user": "u1", "message": {"text": "hi"}}]' >/dev/null
curl -fs --max-time 10 "$base/channelstream/listen?conn_id=$conn" | grep -q '"text"'
echo "ok: Channelstream /connect, /message and /listen through nginx"
