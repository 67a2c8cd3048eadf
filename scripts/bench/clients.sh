#!/usr/bin/env bash
# etc_hosts chain time against the number of client hosts (network namespaces with sshd):
# a manual promote whose chain is only the etc_hosts step, timed from the history.
# Usage: bash scripts/bench/clients.sh [RUNS]   (default 3 per size)
source "$(dirname "$0")/common.sh"
runs=${1:-3}
prepare
bash "$lab" down >/dev/null 2>&1
LAB_APPS=50 bash "$lab" up >/dev/null 2>&1
lab_env
for n in 1 10 50; do
    times=()
    dir=$(new_instance)
    # A tcp monitor on sshd: both servers up, no database work in the chain.
    { printf 'primary = "%s"\nsecondary = "%s"\n[monitor]\ntype = "tcp"\nport = 22\n' "$LAB_DB1_IP" "$LAB_DB2_IP"; etc_hosts_step "$n"; } >"$dir/pools/db.toml"
    "$bin" --config "$dir" tick 2>/dev/null || true
    target=secondary
    for ((run = 1; run <= runs; run++)); do
        "$bin" --config "$dir" promote db "$target" --yes >/dev/null
        ms=$(events "$dir" | awk '$1 == "failover_started" { s = $2 } $1 == "failed_over" { e = $2 } END { print e - s }')
        times+=("$ms")
        "$bin" --config "$dir" reset db --yes >/dev/null
        [[ $target == secondary ]] && target=primary || target=secondary
        echo "$n clients, run $run: $ms ms" >&2
    done
    printf '| %d client(s) | %ss | %ss |\n' "$n" \
        "$(printf '%s\n' "${times[@]}" | awk '{ print $1 / 1000 }' | median)" \
        "$(printf '%s\n' "${times[@]}" | awk '{ print $1 / 1000 }' | spread)"
    for ((i = 1; i <= n; i++)); do sed -i '/db.service/d' "/etc/netns/dp-app$i/hosts"; done
    rm -rf "$dir"
done
bash "$lab" down >/dev/null 2>&1
