#!/usr/bin/env bash
# Median time-to-connect of `scream-ice connect` against a local `scream-ice
# serve`, over N runs on loopback (docs/BENCHMARKS.md).
# Usage: tests/peers/connect_bench.sh PATH/TO/scream-ice [N]
set -euo pipefail
bin=${1:?usage: connect_bench.sh PATH/TO/scream-ice [N]}
runs=${2:-100}
port=$((20000 + RANDOM % 20000))
# One client makes every POST here: its POST rate (limits.sessions,
# 1/s burst 8 by default) is raised so admission does not refuse the runs.
config=$(mktemp)
cat >"$config" <<YAML
limits:
  sessions:
    post_rate: {per_second: 1000, burst: 1000}
YAML
"$bin" serve --config "$config" --http-listen "127.0.0.1:$port" --stun-listen off >/dev/null 2>&1 &
serve=$!
trap 'kill "$serve" 2>/dev/null || true; rm -f "$config"' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done
times=()
for _ in $(seq "$runs"); do
  line=$("$bin" connect "http://127.0.0.1:$port" --bind 127.0.0.1 --count 1 | grep '^connected in ')
  times+=("$(sed -E 's/^connected in ([0-9.]+) ms.*/\1/' <<<"$line")")
done
printf '%s\n' "${times[@]}" | sort -n | awk -v n="$runs" '
  { t[NR] = $1 }
  END {
    med = (n % 2) ? t[(n + 1) / 2] : (t[n / 2] + t[n / 2 + 1]) / 2
    printf "runs %d  median %.2f ms  p10 %.2f  p90 %.2f  min %.2f  max %.2f\n",
      n, med, t[int(n * 0.1) + 1], t[int(n * 0.9)], t[1], t[n]
  }'
