#!/usr/bin/env bash
# Time from kill -9 of the MySQL primary to every client switched, with a tick every second
# (the timer's OnUnitInactiveSec=1s: the next tick starts 1 s after the previous one ends)
# and max_failed_checks = 3, split into detection (kill -> chain starts) and chain time
# (chain start -> every step done: replica promoted, two clients' /etc/hosts switched).
# Usage: bash scripts/bench/failover.sh [RUNS]   (default 5)
source "$(dirname "$0")/common.sh"
runs=${1:-5}
prepare
total=() detect=() chain=()
for ((run = 1; run <= runs; run++)); do
    bash "$lab" down >/dev/null 2>&1
    bash "$lab" up >/dev/null 2>&1
    lab_env
    dir=$(new_instance)
    { mysql_pool 3; etc_hosts_step 2; } >"$dir/pools/db.toml"
    "$bin" --config "$dir" tick
    # The timer: tick, wait a second, tick...
    ( while :; do "$bin" --config "$dir" tick 2>/dev/null || true; sleep 1; done ) &
    ticker=$!
    # Kill at a random point of the tick cycle.
    sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
    killed=$(now_ms)
    bash "$lab" kill db1 mysql
    for _ in $(seq 100); do
        events "$dir" | grep -q '^failed_over ' && break
        sleep 0.1
    done
    kill "$ticker"; wait "$ticker" 2>/dev/null || true
    started=$(events "$dir" | awk '$1 == "failover_started" { print $2 }')
    done_at=$(events "$dir" | awk '$1 == "failed_over" { print $2 }')
    grep -q "^$LAB_DB2_IP	db.service" /etc/netns/dp-app1/hosts && grep -q "^$LAB_DB2_IP	db.service" /etc/netns/dp-app2/hosts \
        || { echo "run $run: clients not switched" >&2; "$bin" --config "$dir" history >&2; cat /etc/netns/dp-app1/hosts >&2; exit 1; }
    total+=($(( done_at - killed ))); detect+=($(( started - killed ))); chain+=($(( done_at - started )))
    echo "run $run: total $((done_at - killed)) ms, detection $((started - killed)) ms, chain $((done_at - started)) ms" >&2
    rm -rf "$dir"
done
bash "$lab" down >/dev/null 2>&1
row() { printf '%s\n' "${@}" | awk '{ print $1 / 1000 }'; }
printf '| kill -9 -> all clients switched (%d runs) | %ss | %ss | %s |\n' "$runs" \
    "$(row "${total[@]}" | median)" "$(row "${total[@]}" | spread)" "target <= 4s"
printf '| of which detection | %ss | %ss | |\n' "$(row "${detect[@]}" | median)" "$(row "${detect[@]}" | spread)"
printf '| of which chain (promote + 2 clients) | %ss | %ss | |\n' "$(row "${chain[@]}" | median)" "$(row "${chain[@]}" | spread)"
