#!/usr/bin/env bash
# Detection under load: two pools in one instance. Pool `slow` (Redis on the same servers)
# has a readiness check on app1 that hangs for 30 s; pool `db` (MySQL) has its primary killed
# with kill -9 at a random point while that check hangs. Ticks run the way the systemd timer
# runs them (OnUnitInactiveSec=1s). Prints kill -> chain started and kill -> failed over.
# Target: max_failed_checks x tick_interval + one monitor timeout + about a second (3 + 1 + 1 s).
# Usage: bash scripts/bench/detection.sh [RUNS]   (default 5)
source "$(dirname "$0")/common.sh"
runs=${1:-5}
prepare
detect=() total=()
for ((run = 1; run <= runs; run++)); do
    bash "$lab" down >/dev/null 2>&1
    bash "$lab" up >/dev/null 2>&1
    lab_env
    dir=$(new_instance)
    sed -i 's/^connect_timeout = "2s"$/connect_timeout = "2s"\ncommand_timeout = "40s"/' "$dir/deadpool.toml"
    mysql_pool 3 >"$dir/pools/db.toml"
    cat >"$dir/pools/slow.toml" <<TOML
primary = "$LAB_DB1_IP"
secondary = "$LAB_DB2_IP"
max_failed_checks = 3

[monitor]
type = "redis"
password_file = "$LAB_REDIS_PASSWORD_FILE"
timeout = "1s"

[[protocol]]
type = "exec"
name = "hanging check"
hosts = ["$LAB_APP1_IP"]
test_command = "sleep 30"
exec_command = "true"
timeout = "35s"
TOML
    ( while :; do "$bin" --config "$dir" tick 2>/dev/null || true; sleep 1; done ) &
    ticker=$!
    # The first tick has started the hanging check; kill at a random point after it.
    sleep "$(printf '2.%03d' $((RANDOM % 1000)))"
    killed=$(now_ms)
    bash "$lab" kill db1 mysql
    for _ in $(seq 200); do
        events "$dir" | grep -q '^failed_over ' && break
        sleep 0.1
    done
    kill "$ticker"; wait "$ticker" 2>/dev/null || true
    pkill -f "deadpool --config $dir" 2>/dev/null || true
    started=$(events "$dir" | awk '$1 == "failover_started" { print $2 }')
    done_at=$(events "$dir" | awk '$1 == "failed_over" { print $2 }')
    [[ -n $started && -n $done_at ]] || { echo "run $run: no failover" >&2; "$bin" --config "$dir" history >&2; exit 1; }
    detect+=($(( started - killed ))); total+=($(( done_at - killed )))
    echo "run $run: chain started $((started - killed)) ms after the kill, failed over after $((done_at - killed)) ms" >&2
    rm -rf "$dir"
done
bash "$lab" down >/dev/null 2>&1
row() { printf '%s\n' "${@}" | awk '{ print $1 / 1000 }'; }
printf '| kill -9 -> chain started, another pool'"'"'s check hanging 30 s (%d runs) | %ss | %ss | <= 3 x 1 s + 1 s + ~1 s |\n' "$runs" \
    "$(row "${detect[@]}" | median)" "$(row "${detect[@]}" | spread)"
printf '| kill -9 -> failed over (replica promoted) | %ss | %ss | |\n' "$(row "${total[@]}" | median)" "$(row "${total[@]}" | spread)"
