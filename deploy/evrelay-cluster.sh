#!/bin/sh
# evrelay-cluster.sh - run an N-relay evrelay cluster on this machine.
#
#   deploy/evrelay-cluster.sh N [BASE_PORT]   start N relays (default base 7950)
#   deploy/evrelay-cluster.sh status          each relay's `evrelayctl cluster`
#   deploy/evrelay-cluster.sh stop            stop them (SIGTERM by PID)
#
# Relay i (0, 1, ...) listens on loopback:
#   ingest  tcp://127.0.0.1:BASE+10i      (raising nodes, libevrelay)
#   control tcp://127.0.0.1:BASE+10i+1    (evrelayctl)
#   cluster tcp://127.0.0.1:BASE+10i+2    (its peers)
# and keeps its table in DIR/relayI/data (kept across stop/start: a
# restarted cluster keeps its subscriptions). Logs: DIR/relayI/evrelayd.log.
# PIDs: DIR/pids.
#
# Environment:
#   EVR_CLUSTER_DIR   the directory (default ./evrelay-cluster)
#   EVR_CLUSTER_PEERS seed: every relay peers with relay 0 only (the others
#                     are learned); all: with every other relay (default seed)
#   EVRELAYD, EVRELAYCTL  the binaries (default build/ of this checkout,
#                     else $PATH)
#   EVR_CLUSTER_ARGS  more evrelayd flags for every relay
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
dir=${EVR_CLUSTER_DIR:-./evrelay-cluster}
pids="$dir/pids"

pick() { # pick NAME: build/NAME of this checkout, else NAME from $PATH
    if [ -x "$here/build/$1" ]; then echo "$here/build/$1"; else echo "$1"; fi
}
evrelayd=${EVRELAYD:-$(pick evrelayd)}
evrelayctl=${EVRELAYCTL:-$(pick evrelayctl)}

usage() {
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

running() { # running PID
    kill -0 "$1" 2>/dev/null
}

stop() {
    if [ ! -f "$pids" ]; then
        echo "no cluster running from $dir"
        return 0
    fi
    while read -r i pid; do
        if running "$pid"; then
            kill -TERM "$pid"
            echo "relay$i: stopping (pid $pid)"
        fi
    done <"$pids"
    while read -r i pid; do
        n=0
        while running "$pid" && [ $n -lt 100 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        if running "$pid"; then
            echo "relay$i: still running after 10 s (pid $pid)" >&2
        fi
    done <"$pids"
    rm -f "$pids"
}

status() {
    if [ ! -f "$pids" ]; then
        echo "no cluster running from $dir"
        return 1
    fi
    while read -r i pid; do
        control=$(cat "$dir/relay$i/control")
        echo "=== relay$i (pid $pid, control $control)"
        if running "$pid"; then
            "$evrelayctl" -s "$control" -t 2000 cluster || true
        else
            echo "not running"
        fi
        echo
    done <"$pids"
}

start() {
    n=$1
    base=${2:-7950}
    case "$n" in '' | *[!0-9]*) usage ;; esac
    case "$base" in *[!0-9]*) usage ;; esac
    if [ "$n" -lt 1 ] || [ "$n" -gt 50 ]; then
        echo "N: 1 to 50 relays" >&2
        exit 2
    fi
    if [ -f "$pids" ]; then
        while read -r i pid; do
            if running "$pid"; then
                echo "a cluster is running from $dir (relay$i, pid $pid):" \
                    "$0 stop first" >&2
                exit 1
            fi
        done <"$pids"
        rm -f "$pids"
    fi
    mkdir -p "$dir"
    seed="tcp://127.0.0.1:$((base + 2))"
    i=0
    while [ $i -lt "$n" ]; do
        port=$((base + 10 * i))
        rdir="$dir/relay$i"
        mkdir -p "$rdir/data"
        ingest="tcp://127.0.0.1:$port"
        control="tcp://127.0.0.1:$((port + 1))"
        cluster="tcp://127.0.0.1:$((port + 2))"
        set -- --ingest "$ingest" --control "$control" \
            --node-id "relay$i" --cluster "$cluster" --data-dir "$rdir/data"
        if [ "${EVR_CLUSTER_PEERS:-seed}" = all ]; then
            j=0
            while [ $j -lt "$n" ]; do
                [ $j -ne $i ] && set -- "$@" --peer "tcp://127.0.0.1:$((base + 10 * j + 2))"
                j=$((j + 1))
            done
        elif [ $i -gt 0 ]; then
            set -- "$@" --peer "$seed"
        fi
        # shellcheck disable=SC2086
        "$evrelayd" "$@" ${EVR_CLUSTER_ARGS:-} >>"$rdir/evrelayd.log" 2>&1 &
        echo "$i $!" >>"$pids"
        echo "$control" >"$rdir/control"
        echo "$ingest" >"$rdir/ingest"
        i=$((i + 1))
    done
    # wait until every relay is ready (joined)
    echo "relay  ingest                  control                 cluster"
    ingests=""
    while read -r i pid; do
        control=$(cat "$dir/relay$i/control")
        ingest=$(cat "$dir/relay$i/ingest")
        t=0
        until "$evrelayctl" -s "$control" -t 500 --json health 2>/dev/null |
            grep -q '"ready":true'; do
            if ! running "$pid" || [ $t -ge 100 ]; then
                echo "relay$i did not become ready; its log:" >&2
                tail -20 "$dir/relay$i/evrelayd.log" >&2
                stop
                exit 1
            fi
            sleep 0.1
            t=$((t + 1))
        done
        port=$((base + 10 * i))
        echo "relay$i $ingest  $control  tcp://127.0.0.1:$((port + 2))"
        ingests="${ingests:+$ingests,}$ingest"
    done <"$pids"
    echo
    echo "ready: $n relay(s), data and logs in $dir"
    echo "  export EVRELAY_CONTROL=$(cat "$dir/relay0/control")  # any relay's control works"
    echo "  libevrelay endpoints: $ingests"
    echo "  $0 status | stop"
}

case "${1:-}" in
    stop) stop ;;
    status) status ;;
    '' | -h | --help) usage ;;
    *) start "$@" ;;
esac
