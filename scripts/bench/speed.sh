#!/usr/bin/env bash
# Detection and chain speed, count-based against time-based, and false failovers on blips.
#
# 1. kill -9 of the primary's mysqld at a random point of the tick cycle; chain
#    mysql_promote -> vip -> etc_hosts on N clients; ticks as the systemd timer runs them
#    (OnUnitInactiveSec=1s). Times from the kill to: the replica writable (the promote
#    step's end), the VIP moved (the vip step's end), every client switched (the etc_hosts
#    step's end), read from history. For `max_failed_checks = 3` and for `down_for = "1.5s"`,
#    with 2 clients and with 50.
# 2. Network blips (iptables DROP in and out of the primary) of 0.5, 1.0, 1.5 and 2.0 s at a
#    random point of the cycle, BLIPS each, in both modes: how many led to a failover.
# 3. CPU and peak memory of healthy ticks, per hour of 1 s ticks.
# Usage: bash scripts/bench/speed.sh [RUNS] [BLIPS]   (defaults 5 and 10)
# SPEED_MODES="0 1" (0: max_failed_checks = 3, 1: down_for) and SPEED_CLIENTS="2 50" choose
# the rows.
source "$(dirname "$0")/common.sh"
runs=${1:-5}
blips=${2:-10}
prepare

# The chain of the measurement, for a pool with the given detection line.
speed_pool() { chain_pool "secondary = \"$LAB_DB2_IP\"" "$1" "$2"; }

fresh_lab() {
    bash "$lab" down >/dev/null 2>&1
    LAB_APPS=${1:-2} bash "$lab" up >/dev/null 2>&1
    lab_env
    bash "$lab" vip add db1 10.213.0.100/24 >/dev/null
}

modes=("max_failed_checks = 3" 'down_for = "1.5s"')
labels=("1 s x 3" "down_for 1.5s")
vip_rows=""
for clients in ${SPEED_CLIENTS:-2 50}; do
    for m in ${SPEED_MODES:-0 1}; do
        writable=() vip=() switched=() released=() added=()
        for ((run = 1; run <= runs; run++)); do
            fresh_lab "$clients"
            dir=$(new_instance)
            speed_pool "${modes[$m]}" "$clients" >"$dir/pools/db.toml"
            killed=$(kill_and_fail_over "$dir")
            writable+=($(( $(step_end "$dir" promote) - killed )))
            vip+=($(( $(step_end "$dir" vip) - killed )))
            switched+=($(( $(step_end "$dir" clients) - killed )))
            released+=($(host_ms "$dir" vip "$LAB_DB1_IP"))
            added+=($(host_ms "$dir" vip "$LAB_DB2_IP"))
            echo "${labels[$m]}, $clients clients, run $run: writable ${writable[-1]} ms, vip ${vip[-1]} ms, clients ${switched[-1]} ms" >&2
            rm -rf "$dir"
        done
        row() { printf '%s\n' "$@" | awk '{ print $1 / 1000 }' | median; }
        printf '| %s, %d clients (%d runs) | %ss | %ss | %ss |\n' "${labels[$m]}" "$clients" "$runs" \
            "$(row "${writable[@]}")" "$(row "${vip[@]}")" "$(row "${switched[@]}")"
        vip_rows+=$(printf '| %s, %d clients | %s ms | %s ms |' "${labels[$m]}" "$clients" \
            "$(printf '%s\n' "${released[@]}" | median)" "$(printf '%s\n' "${added[@]}" | median)")$'\n'
    done
done
echo
echo "| vip step, from history (medians) | release on the old primary | add on the new primary |"
echo "|---|---|---|"
printf '%s' "$vip_rows"
echo

# False failovers on blips.
for m in ${SPEED_MODES:-0 1}; do
    line="| ${labels[$m]} |"
    for blip in 0.5 1.0 1.5 2.0; do
        failovers=0
        fresh_lab 2
        for ((b = 1; b <= blips; b++)); do
            dir=$(new_instance)
            speed_pool "${modes[$m]}" 2 >"$dir/pools/db.toml"
            "$bin" --config "$dir" tick 2>/dev/null || true
            ticker "$dir" &
            pid=$!
            sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
            bash "$lab" hang db1
            sleep "$blip"
            bash "$lab" unhang db1
            sleep 4
            kill "$pid"; wait "$pid" 2>/dev/null || true
            if events "$dir" | grep -q '^failover_started '; then
                failovers=$((failovers + 1))
                fresh_lab 2
            fi
            for i in 1 2; do sed -i '/db.service/d' "/etc/netns/dp-app$i/hosts"; done
            rm -rf "$dir"
        done
        echo "${labels[$m]}: blip ${blip}s: $failovers of $blips failed over" >&2
        line+=" $failovers / $blips |"
    done
    echo "$line"
done

# CPU and memory of healthy ticks.
fresh_lab 2
dir=$(new_instance)
speed_pool "${modes[1]}" 2 >"$dir/pools/db.toml"
n=120
cpu=0 peak=0
tf=$(mktemp)
for ((i = 0; i < n; i++)); do
    /usr/bin/time -o "$tf" -f '%U %S %M' "$bin" --config "$dir" tick >/dev/null 2>&1 || true
    read -r u s m <"$tf"
    cpu=$(awk -v c="$cpu" -v u="$u" -v s="$s" 'BEGIN { print c + u + s }')
    ((m > peak)) && peak=$m
done
printf '| healthy ticks (1 s, both modes) | %s s CPU per hour | %s MB peak |\n' \
    "$(awk -v c="$cpu" -v n="$n" 'BEGIN { printf "%.0f", c / n * 3600 }')" \
    "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')"
rm -rf "$dir" "$tf"
bash "$lab" down >/dev/null 2>&1
