#!/usr/bin/env bash
# The main job, end to end on one machine: build evrelay if needed, start a
# relay, subscribe a UDP listener and a flatstore file, raise events through
# libevrelay (evrelay-example) and through the control socket (evrelayctl),
# and show what arrived. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -x build/evrelayd ] && [ -x build/evrelay-example ] || ./scripts/build.sh build
cmake --build build -j"$(nproc)" >/dev/null

work=$(mktemp -d)
INGEST=tcp://127.0.0.1:${EVR_DEMO_PORT:-7950}
CONTROL=tcp://127.0.0.1:$(( ${EVR_DEMO_PORT:-7950} + 1 ))
UDP_PORT=$(( ${EVR_DEMO_PORT:-7950} + 50 ))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== starting evrelayd (ingest $INGEST, control $CONTROL)"
build/evrelayd --ingest "$INGEST" --control "$CONTROL" 2>"$work/relay.log" &
pids+=($!)
export EVRELAY_CONTROL=$CONTROL
for _ in $(seq 50); do build/evrelayctl list >/dev/null 2>&1 && break; sleep 0.1; done
if ! kill -0 "${pids[0]}" 2>/dev/null; then
  echo "evrelayd did not start (ports in use? set EVR_DEMO_PORT):" >&2
  cat "$work/relay.log" >&2
  exit 1
fi

echo "== a UDP listener on 127.0.0.1:$UDP_PORT prints what it receives"
python3 -u -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(('127.0.0.1', $UDP_PORT))
while True:
    print('  udp listener got:', s.recv(65535).decode())
" &
pids+=($!)
sleep 0.3

echo "== subscribing"
set -x
build/evrelayctl subscribe E_PIKE_BLOCKED "udp:127.0.0.1:$UDP_PORT" 120
build/evrelayctl subscribe E_DLG_STATE_CHANGED "udp:127.0.0.1:$UDP_PORT"
build/evrelayctl subscribe E_PIKE_BLOCKED "flatstore:$work/events.log"
build/evrelayctl subscribers
{ set +x; } 2>/dev/null

echo "== raising through libevrelay (the evrelay-example program)"
build/evrelay-example -e "$INGEST" E_PIKE_BLOCKED ip=192.168.2.11
build/evrelay-example -e "$INGEST" E_DLG_STATE_CHANGED callid=a84b4c76e66710 old_state=3 new_state=4
echo "== raising through the control socket (OpenSIPS MI raise_event)"
build/evrelayctl raise_event E_PIKE_BLOCKED '{"ip":"10.0.0.7"}'
build/evrelayctl raise E_DLG_STATE_CHANGED '["positional","params"]'
sleep 0.5

echo "== flatstore file $work/events.log"
sed 's/^/  /' "$work/events.log"
echo "== relay stats"
build/evrelayctl stats | sed 's/^/  /'
