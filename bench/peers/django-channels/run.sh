#!/bin/sh
# Start the Django Channels peer: one daphne process on loopback.
#   PEER_API_KEY=secret ./run.sh [PORT]        (default port 8001)
# exec keeps this script's PID as daphne's, so `switchyard bench idle
# --target-pid $!` measures daphne itself.
set -eu
cd "$(dirname "$0")"
: "${PEER_API_KEY:?set PEER_API_KEY: the key POST /api/server/publish expects}"
export PEER_API_KEY
export DJANGO_SETTINGS_MODULE=project.settings
PORT="${1:-8001}"
# Debian's interpreter and packages, not a pyenv or venv one on PATH.
exec /usr/bin/python3 -m daphne --verbosity "${PEER_VERBOSITY:-0}" -b 127.0.0.1 -p "$PORT" project.asgi:application
