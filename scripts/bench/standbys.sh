#!/usr/bin/env bash
# Three servers against two: kill -9 of the primary's mysqld at a random point of the tick
# cycle; the same chain (mysql_promote -> vip -> etc_hosts on 2 clients) for a pair (db1,
# db2) and for a primary with two standbys (db1; db2, db3: every round checks all three and
# records their positions, the promotion repoints db3 to db2). Ticks as the systemd timer
# runs them (OnUnitInactiveSec=1s), max_failed_checks = 3. Times from the kill to the
# replica writable and to every client switched, and the chain's own time (failover_started
# to every client switched, which the kill's random point in the tick cycle does not move),
# read from history.
# Target: three servers no more than 0.1 s slower than two.
# Usage: bash scripts/bench/standbys.sh [RUNS]   (default 5)
source "$(dirname "$0")/common.sh"
runs=${1:-5}
prepare

echo "| servers (runs) | replica writable | every client switched | spread (switched) | chain (failover_started -> switched) |"
echo "|---|---|---|---|---|"
for standbys in 1 2; do
    writable=() switched=() chain=()
    for ((run = 1; run <= runs; run++)); do
        bash "$lab" down >/dev/null 2>&1
        # `lab.sh env` exports LAB_STANDBYS too: set it for every lab command of this run.
        export LAB_STANDBYS=$standbys
        LAB_APPS=2 bash "$lab" up >/dev/null 2>&1
        lab_env
        bash "$lab" vip add db1 10.213.0.100/24 >/dev/null
        dir=$(new_instance)
        if [ "$standbys" = 1 ]; then
            servers="secondary = \"$LAB_DB2_IP\""
        else
            servers="standbys = [\"$LAB_DB2_IP\", \"$LAB_DB3_IP\"]"
        fi
        chain_pool "$servers" "max_failed_checks = 3" 2 >"$dir/pools/db.toml"
        killed=$(kill_and_fail_over "$dir")
        writable+=($(( $(step_end "$dir" promote) - killed )))
        switched+=($(( $(step_end "$dir" clients) - killed )))
        started=$(events "$dir" | awk '$1 == "failover_started" { print $2 }' | tail -n 1)
        chain+=($(( $(step_end "$dir" clients) - started )))
        echo "$((standbys + 1)) servers, run $run: writable ${writable[-1]} ms, clients ${switched[-1]} ms" >&2
        rm -rf "$dir"
    done
    secs() { printf '%s\n' "$@" | awk '{ print $1 / 1000 }'; }
    printf '| %d servers (%d runs) | %ss | %ss | %ss | %ss |\n' "$((standbys + 1))" "$runs" \
        "$(secs "${writable[@]}" | median)" "$(secs "${switched[@]}" | median)" \
        "$(secs "${switched[@]}" | spread)" "$(secs "${chain[@]}" | median)"
done
bash "$lab" down >/dev/null 2>&1
