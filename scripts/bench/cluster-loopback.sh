#!/usr/bin/env bash
# Several watcher hosts without the namespace lab: one etcd member on loopback and three
# deadpool members (three config dirs, each its own tick loop: tick; sleep 1), a pool whose
# monitor and two steps are plugins steered by flag files (no databases). tick_interval 1 s,
# lease_ttl 3 s, max_failed_checks 3. Measures, per run:
#   - primary "down" (flag) -> pool failed_over in etcd, the leader alive;
#   - the same, the leader's tick loop killed (kill -9) at the same moment;
#   - leader loss (kill -9 of its loop) -> a new leader ticking.
# Needs etcd and etcdctl. Usage: bash scripts/bench/cluster-loopback.sh [RUNS] (default 3)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin="$top/target/release/deadpool"
runs=${1:-3}
(cd "$top" && cargo build --release --quiet)
work=$(mktemp -d /tmp/deadpool-cluster-bench.XXXXXX)
port=$((23000 + RANDOM % 2000))
endpoint="http://127.0.0.1:$port"
prefix=/deadpool/bench
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 -- "-$p" 2>/dev/null || true; done
    kill -9 "$etcd_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
ctl() { ETCDCTL_API=3 etcdctl --endpoints "$endpoint" --command-timeout=1s "$@" 2>/dev/null || true; }
leader() { ctl get "$prefix/leader" --print-value-only; }
last_tick() { local t; t=$(ctl get "$prefix/members/$1" --print-value-only | sed -n 's/.*"last_tick":\([0-9]*\).*/\1/p'); echo "${t:-0}"; }
pool_is() { ctl get "$prefix/pools/db" --print-value-only | grep -q "\"$1\""; }

etcd --name b1 --data-dir "$work/etcd" --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
    --initial-cluster "b1=http://127.0.0.1:$((port + 1))" </dev/null >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do ctl put /ready 1 | grep -q OK && break; sleep 0.1; done

member_dir() { printf '%s/%s' "$work" "$1"; }
make_member() {
    local m=$1 d
    d=$(member_dir "$m")
    mkdir -p "$d/pools" "$d/plugins" "$d/flags"
    chmod 700 "$d"
    printf 'state_dir = "state"\ntick_interval = "1s"\nsystem_check_interval = "1h"\n\n[cluster]\netcd = ["%s"]\nname = "%s"\nprefix = "%s"\nlease_ttl = "3s"\n' \
        "$endpoint" "$m" "$prefix" >"$d/deadpool.toml"
    cat >"$d/pools/db.toml" <<'TOML'
primary = "db1"
secondary = "db2"
max_failed_checks = 3
[monitor]
type = "nagios"
command = "monitor {host}"
timeout = "1s"
[[protocol]]
type = "plugin"
name = "one"
command = "step"
[[protocol]]
type = "plugin"
name = "two"
command = "step"
TOML
    printf '#!/bin/sh\n[ -e "$(dirname "$0")/../../down-$1" ] && { echo "CRITICAL - down"; exit 2; }\necho OK\n' >"$d/plugins/monitor"
    printf '#!/bin/sh\necho "$DEADPOOL_STEP $1" >> "$(dirname "$0")/../steps.log"\necho ok\n' >"$d/plugins/step"
    chmod 755 "$d/plugins/monitor" "$d/plugins/step"
}
start_member() {
    setsid sh -c 'while :; do "$0" --config "$1" tick 2>/dev/null; sleep 1; done' "$bin" "$(member_dir "$1")" </dev/null >/dev/null 2>&1 &
    pgid[$1]=$!
    pids+=($!)
}
declare -A pgid
kill_member() { if [[ -n ${pgid[$1]:-} ]]; then kill -9 -- "-${pgid[$1]}" 2>/dev/null || true; fi; }

# A fresh prefix, three members ticking, dp1 the leader, a random point of the tick cycle.
setup() {
    local m
    for m in dp1 dp2 dp3; do kill_member "$m"; done
    ctl del --prefix "$prefix" >/dev/null
    rm -rf "$work"/dp? "$work"/down-db1
    for m in dp1 dp2 dp3; do make_member "$m"; done
    start_member dp1
    for _ in $(seq 100); do [[ $(leader) == dp1 ]] && break; sleep 0.1; done
    start_member dp2
    start_member dp3
    sleep "$(printf '2.%03d' $((RANDOM % 1000)))"
}
wait_failed_over() { for _ in $(seq 600); do pool_is failed_over && return 0; sleep 0.05; done; echo "no failover" >&2; exit 1; }
step_runs() { cat "$work"/dp?/steps.log 2>/dev/null | grep -c '^one promote' || true; }

plain=() changed=() takeover=()
for ((run = 1; run <= runs; run++)); do
    setup
    t0=$(now_ms); touch "$work/down-db1"
    wait_failed_over; plain+=($(( $(now_ms) - t0 )))
    [[ $(step_runs) == 1 ]] || { echo "step ran $(step_runs) times" >&2; exit 1; }

    setup
    t0=$(now_ms); kill_member dp1; touch "$work/down-db1"
    wait_failed_over; changed+=($(( $(now_ms) - t0 )))
    [[ $(step_runs) == 1 ]] || { echo "step ran $(step_runs) times" >&2; exit 1; }

    setup
    t0=$(now_ms); kill_member dp1
    for _ in $(seq 400); do
        new=$(leader)
        if [[ -n $new && $new != dp1 ]] && (( $(last_tick "$new") > t0 )) \
            && [[ $(ctl get "$prefix/members/$new" --print-value-only) == *'"role":"leader"'* ]]; then
            break
        fi
        sleep 0.05
    done
    takeover+=($(( $(now_ms) - t0 )))
    echo "run $run: failed over ${plain[-1]} ms, with a leader change ${changed[-1]} ms, new leader ($new) ticking ${takeover[-1]} ms" >&2
done
row() { printf '%s\n' "${@}" | awk '{ print $1 / 1000 }'; }
printf '| primary down -> failed_over, leader alive (%d runs) | %ss | %ss |\n' "$runs" "$(row "${plain[@]}" | median)" "$(row "${plain[@]}" | spread)"
printf '| primary down as the leader dies -> failed_over by the next leader | %ss | %ss |\n' "$(row "${changed[@]}" | median)" "$(row "${changed[@]}" | spread)"
printf '| leader loss -> new leader ticking | %ss | %ss |\n' "$(row "${takeover[@]}" | median)" "$(row "${takeover[@]}" | spread)"
