#!/usr/bin/env bash
# Does scraping /metrics disturb delivery? Runs evrelay-bench at full rate
# against a relay serving HTTP, alternately without and with evrelay-scrape
# GETting /metrics 10 times a second, and prints both results side by side.
#
#   scripts/bench-scrape.sh [BUILD_DIR] [-- evrelay-bench options]
#
# Environment: ROUNDS (alternations, default 2), N (events per bench run,
# default 200000), RUNS (bench runs per round, default 3), RATE (scrapes
# per second, default 10), PORT_BASE (bench ingest port, control +1,
# default 27950), HTTP_PORT (default 27980).
# Both variants serve HTTP, so the only difference is the scraping.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build="${1:-$here/../build}"
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
build="$(cd "$build" && pwd)"
rounds="${ROUNDS:-2}"
n="${N:-200000}"
runs="${RUNS:-3}"
rate="${RATE:-10}"
port_base="${PORT_BASE:-27950}"
http_port="${HTTP_PORT:-27980}"

for prog in evrelayd evrelayctl evrelay-bench evrelay-scrape; do
  [ -x "$build/$prog" ] || { echo "bench-scrape: $build/$prog not built" >&2; exit 2; }
done

tmp="$(mktemp -d)"
scraper=""
cleanup() {
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# The bench starts its relay itself; this wrapper adds the HTTP face (and
# keeps the PID: exec).
cat > "$tmp/evrelayd" <<EOF
#!/bin/sh
exec "$build/evrelayd" --http 127.0.0.1:$http_port "\$@"
EOF
chmod +x "$tmp/evrelayd"

bench() {
  "$build/evrelay-bench" --relay "$tmp/evrelayd" --ctl "$build/evrelayctl" \
    -n "$n" --runs "$runs" --port-base "$port_base" "$@" | tee -a "$tmp/log" \
    | grep '^RESULT' | sed 's/^RESULT //'
}

field() { # field NAME "k=v k=v ..."
  tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

declare -a off on scrapes
for ((r = 1; r <= rounds; r++)); do
  echo "round $r/$rounds: without scraping" >&2
  off+=("$(bench "$@")")
  echo "round $r/$rounds: with /metrics scraped ${rate}x/s" >&2
  "$build/evrelay-scrape" --rate "$rate" \
    "http://127.0.0.1:$http_port/metrics" > "$tmp/scrape" &
  scraper=$!
  on+=("$(bench "$@")")
  kill -TERM "$scraper"
  wait "$scraper" || true
  scraper=""
  scrapes+=("$(sed -n 's/^SCRAPE //p' "$tmp/scrape")")
done

echo
echo "evrelay-bench: $n events x $runs runs per round, $rounds round(s)"
printf '%-8s %-10s %12s %12s %8s %8s %8s   %s\n' round scraping relay_eps raw_eps p50_us p99_us lost scrapes
for ((i = 0; i < rounds; i++)); do
  for variant in off on; do
    if [ $variant = off ]; then res="${off[$i]}"; s="-"; else res="${on[$i]}"; s="${scrapes[$i]}"; fi
    printf '%-8s %-10s %12s %12s %8s %8s %8s   %s\n' $((i + 1)) $variant \
      "$(field relay_eps "$res")" "$(field raw_eps "$res")" \
      "$(field p50_us "$res")" "$(field p99_us "$res")" "$(field lost "$res")" "$s"
  done
done
for variant in off on; do
  if [ $variant = off ]; then list=("${off[@]}"); else list=("${on[@]}"); fi
  total=0
  for res in "${list[@]}"; do total=$((total + $(field relay_eps "$res"))); done
  echo "RESULT scraping=$variant mean_relay_eps=$((total / rounds))"
done
