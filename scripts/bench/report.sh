#!/usr/bin/env bash
# `report --nagios` latency and peak memory with a year's worth of history in the database,
# and the database size across many ticks (it must stay bounded: ticks write fixed rows,
# only events append, and events older than history_retention are pruned).
# Usage: bash scripts/bench/report.sh [TICKS]   (default 20000)
source "$(dirname "$0")/common.sh"
ticks=${1:-20000}
prepare
dir=$(mktemp -d /tmp/deadpool-bench.XXXXXX)
mkdir -p "$dir/pools" "$dir/plugins"
printf 'state_dir = "state"\ntick_interval = "1s"\nhistory_retention = "400d"\n' >"$dir/deadpool.toml"
printf '#!/bin/sh\necho "OK - up"\n' >"$dir/plugins/up"
printf '#!/bin/sh\necho ok\n' >"$dir/plugins/step"
chmod +x "$dir/plugins/"*
for p in db cache; do
    printf 'primary = "a.example"\nsecondary = "b.example"\n[monitor]\ntype = "nagios"\ncommand = "up {host}"\n[[protocol]]\ntype = "plugin"\ncommand = "step"\n' >"$dir/pools/$p.toml"
done
"$bin" --config "$dir" tick
# A busy year: 200 events a day (state changes, steps with output, readiness changes).
now=$(now_ms)
sqlite3 "$dir/state/deadpool.db" <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 73000)
INSERT INTO history (at, pool, event, actor, step, host, status, message, output, duration_ms)
SELECT $now - (73000 - i) * 432000, CASE i % 2 WHEN 0 THEN 'db' ELSE 'cache' END, 'step', 'tick', 'promote',
       'app' || (i % 50), 'OK', 'switched db.service to 10.0.0.12', printf('%.400c', 'x'), 120 FROM n;
SQL
rows=$(sqlite3 "$dir/state/deadpool.db" 'SELECT count(*) FROM history')
size=$(du -k "$dir/state/deadpool.db" | cut -f1)
: >"$dir/times"
for _ in $(seq 200); do
    s=$(date +%s%N)
    "$bin" --config "$dir" report --nagios >/dev/null || true
    e=$(date +%s%N)
    echo $(( (e - s) / 1000 )) >>"$dir/times"
done
lat=$(awk '{ print $1 / 1000 }' "$dir/times" | median)
p99=$(awk '{ print $1 / 1000 }' "$dir/times" | sort -g | awk '{ a[NR] = $1 } END { print a[int(NR * 0.99)] }')
rss_report=$(/usr/bin/time -f '%M' "$bin" --config "$dir" report --full 2>&1 >/dev/null | tail -1)
rss_history=$(/usr/bin/time -f '%M' "$bin" --config "$dir" history --limit 1000 2>&1 >/dev/null | tail -1)
printf '| report --nagios, %d history rows (%d KB database) | median %s ms, p99 %s ms | target < 10 ms |\n' "$rows" "$size" "$lat" "$p99"
printf '| peak memory: report --full / history --limit 1000 | %.1f MB / %.1f MB | target < 20 MB |\n' \
    "$(awk -v k="$rss_report" 'BEGIN { print k / 1024 }')" "$(awk -v k="$rss_history" 'BEGIN { print k / 1024 }')"
# Database size over many ticks, history pruned to 90 days.
rm -rf "$dir/state"
printf 'state_dir = "state"\ntick_interval = "1s"\n' >"$dir/deadpool.toml"
sizes=""
for ((t = 1; t <= ticks; t++)); do
    "$bin" --config "$dir" tick
    case $t in 1 | 1000 | 5000 | 10000 | 20000 | 50000 | 100000 | 1000000)
        sizes+="$t ticks: $(( $(stat -c %s "$dir/state/deadpool.db") / 1024 )) KB; " ;;
    esac
done
printf '| database size | %s| bounded |\n' "$sizes"
rm -rf "$dir"
