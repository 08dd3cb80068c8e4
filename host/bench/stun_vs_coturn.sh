#!/usr/bin/env bash
# STUN responder throughput: scream-ice vs coturn, in one run, measured as
# Binding requests answered per CPU-second of the server process
# (utime+stime from /proc/PID/stat). Needs coturn (`apt-get install coturn`).
#
#   host/bench/stun_vs_coturn.sh [SECONDS] [SOCKETS] [WINDOW]
set -euo pipefail
SECONDS_RUN=${1:-10}
SOCKETS=${2:-4}
WINDOW=${3:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
cargo build --release -p scream-ice-host --bin scream-ice --example stun_load >&2
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/scream-ice
LOAD=$TARGET/release/examples/stun_load
TICK=$(getconf CLK_TCK)
TMP=$(mktemp -d)
trap 'kill $OURS $COTURN 2>/dev/null || true; rm -rf "$TMP"' EXIT
OURS=""; COTURN=""

# The responder's rate limits (limits.stun) are raised far above the load:
# this measures the answering path, as coturn runs without limits.
cat >"$TMP/ours.yaml" <<YAML
limits:
  stun:
    per_source: {per_second: 4000000000, burst: 4000000000}
    global: {per_second: 4000000000, burst: 4000000000}
YAML
RUST_LOG=warn $BIN serve --config "$TMP/ours.yaml" --stun-listen 127.0.0.1:34781 --http-listen 127.0.0.1:0 >"$TMP/ours.out" 2>&1 &
OURS=$!
sleep 0.5
echo "== scream-ice $($BIN --version | cut -d' ' -f2) (pid $OURS)"
$LOAD 127.0.0.1:34781 --seconds "$SECONDS_RUN" --sockets "$SOCKETS" --window "$WINDOW" --pid "$OURS" --clk-tck "$TICK" | tee "$TMP/ours.txt"
kill -TERM $OURS; wait $OURS || true; OURS=""

cat >"$TMP/turnserver.conf" <<CONF
listening-ip=127.0.0.1
listening-port=34782
stun-only
no-auth
no-tls
no-dtls
no-cli
no-stdout-log
log-file=$TMP/turnserver.log
pidfile=$TMP/turnserver.pid
CONF
turnserver -c "$TMP/turnserver.conf" >/dev/null 2>&1 &
COTURN=$!
sleep 1
echo "== coturn $(turnserver --version 2>/dev/null | head -1) (pid $COTURN)"
$LOAD 127.0.0.1:34782 --seconds "$SECONDS_RUN" --sockets "$SOCKETS" --window "$WINDOW" --pid "$COTURN" --clk-tck "$TICK" | tee "$TMP/coturn.txt"
kill -TERM $COTURN; wait $COTURN || true; COTURN=""

o=$(awk '/per server CPU-second/ {print $(NF-4)}' "$TMP/ours.txt")
c=$(awk '/per server CPU-second/ {print $(NF-4)}' "$TMP/coturn.txt")
echo "== requests per server CPU-second: scream-ice $o, coturn $c, ratio $(awk -v o="$o" -v c="$c" 'BEGIN {printf "%.2f", o/c}')"
