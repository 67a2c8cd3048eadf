#!/usr/bin/env bash
# Several watcher hosts: three etcd members and three deadpool members (dp1..dp3, each its
# tick loop in its own namespace), a MySQL pool whose chain is `mysql_promote` then
# `etc_hosts` on two app servers, max_failed_checks = 3, tick_interval 1 s, lease_ttl 3 s.
# Measures, per run:
#   - kill -9 of the primary -> both clients switched, the leader alive;
#   - the same with a leader change in the middle (the leader's host dies, then the primary
#     is killed at once);
#   - leader loss (its tick loop killed, its link down) -> a new leader ticking.
# Usage: bash scripts/bench/cluster.sh [RUNS]   (default 3)
source "$(dirname "$0")/common.sh"
runs=${1:-3}
prepare
prefix=/deadpool/bench

etcd_get() { ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --command-timeout=1s get "$1" --print-value-only 2>/dev/null || true; }
leader() { etcd_get "$prefix/leader"; }
last_tick() { local t; t=$(etcd_get "$prefix/members/$1" | sed -n 's/.*"last_tick":\([0-9]*\).*/\1/p'); echo "${t:-0}"; }
switched() { grep -q "^$LAB_DB2_IP	db.service" /etc/netns/dp-app1/hosts && grep -q "^$LAB_DB2_IP	db.service" /etc/netns/dp-app2/hosts; }

# Lab, cluster and three members ticking, dp1 the leader.
setup() {
    bash "$lab" down >/dev/null 2>&1
    bash "$lab" up >/dev/null 2>&1
    bash "$lab" cluster-up >/dev/null 2>&1
    lab_env
    endpoints=$(bash "$lab" etcd-endpoints)
    local m dir etcd
    etcd=$(tr ',' '\n' <<<"$endpoints" | sed 's/.*/"&"/' | paste -sd, -)
    dirs=()
    for m in dp1 dp2 dp3; do
        dir=$(new_instance)
        printf '\n[cluster]\netcd = [%s]\nname = "%s"\nprefix = "%s"\nlease_ttl = "3s"\n' \
            "$etcd" "$m" "$prefix" >>"$dir/deadpool.toml"
        dirs+=("$dir")
    done
    { mysql_pool 3; etc_hosts_step 2; } >"${dirs[0]}/pools/db.toml"
    cp "${dirs[0]}/pools/db.toml" "${dirs[1]}/pools/"
    cp "${dirs[0]}/pools/db.toml" "${dirs[2]}/pools/"
    bash "$lab" member-start dp1 "$bin" "${dirs[0]}"
    for _ in $(seq 100); do [[ $(leader) == dp1 ]] && break; sleep 0.1; done
    [[ $(leader) == dp1 ]] || { echo "dp1 did not lead" >&2; exit 1; }
    bash "$lab" member-start dp2 "$bin" "${dirs[1]}"
    bash "$lab" member-start dp3 "$bin" "${dirs[2]}"
    sleep "$(printf '2.%03d' $((RANDOM % 1000)))"
}

wait_switched() {
    for _ in $(seq 600); do switched && return 0; sleep 0.05; done
    echo "clients not switched" >&2; exit 1
}

plain=() changed=() takeover=()
for ((run = 1; run <= runs; run++)); do
    setup
    killed=$(now_ms)
    bash "$lab" kill db1 mysql
    wait_switched
    plain+=($(( $(now_ms) - killed )))

    setup
    killed=$(now_ms)
    bash "$lab" member-stop dp1
    bash "$lab" link-down dp1
    bash "$lab" kill db1 mysql
    wait_switched
    changed+=($(( $(now_ms) - killed )))

    setup
    lost=$(now_ms)
    bash "$lab" member-stop dp1
    bash "$lab" link-down dp1
    new=""
    for _ in $(seq 400); do
        new=$(leader)
        if [[ -n $new && $new != dp1 ]] && (( $(last_tick "$new") > $(now_ms) - 1000 )); then
            lead_tick=$(last_tick "$new")
            (( lead_tick > lost )) && break
        fi
        sleep 0.05
    done
    takeover+=($(( $(now_ms) - lost )))
    echo "run $run: plain ${plain[-1]} ms, with a leader change ${changed[-1]} ms, new leader ($new) ticking after ${takeover[-1]} ms" >&2
    for d in "${dirs[@]}"; do rm -rf "$d"; done
done
bash "$lab" down >/dev/null 2>&1
row() { printf '%s\n' "${@}" | awk '{ print $1 / 1000 }'; }
printf '| kill -9 -> all clients switched, leader alive (%d runs) | %ss | %ss |\n' "$runs" \
    "$(row "${plain[@]}" | median)" "$(row "${plain[@]}" | spread)"
printf '| the leader'"'"'s host dies, primary killed at once -> all clients switched | %ss | %ss |\n' \
    "$(row "${changed[@]}" | median)" "$(row "${changed[@]}" | spread)"
printf '| leader loss -> new leader ticking | %ss | %ss |\n' \
    "$(row "${takeover[@]}" | median)" "$(row "${takeover[@]}" | spread)"
