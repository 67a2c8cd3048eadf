#!/usr/bin/env bash
# Time of the dns and haproxy steps in the lab: a manual promote whose chain is a dns step
# (RFC 2136 update at ns1, read back), an haproxy step over TCP to two HAProxy (lb1, lb2)
# and an haproxy step through SSH channels to the same two; each step timed from its
# `step_started` event to the next one (or to `failed_over`) in the history. Promotes go
# back and forth (promote, reset, promote the other way).
# Usage: bash scripts/bench/dns_haproxy.sh [RUNS]   (default 5)
source "$(dirname "$0")/common.sh"
runs=${1:-5}
prepare
bash "$lab" down >/dev/null 2>&1
bash "$lab" up >/dev/null 2>&1
lab_env
dir=$(new_instance)
cat >"$dir/pools/db.toml" <<TOML
primary = "$LAB_DB1_IP"
secondary = "$LAB_DB2_IP"

[monitor]
type = "tcp"
port = 22

[[protocol]]
type = "dns"
server = "$LAB_NS1_IP"
zone = "$LAB_ZONE"
service_host_name = "$LAB_DNS_NAME"
ttl = "${LAB_DNS_TTL}s"
tsig_key = "$LAB_TSIG_KEY"
tsig_secret_file = "$LAB_TSIG_SECRET_FILE"
timeout = "10s"

[[protocol]]
type = "haproxy"
name = "haproxy over TCP"
backend = "$LAB_HAPROXY_BACKEND"
servers = { primary = "db1", secondary = "db2" }
sockets = ["$LAB_LB1_IP:$LAB_HAPROXY_STATS_PORT", "$LAB_LB2_IP:$LAB_HAPROXY_STATS_PORT"]
timeout = "10s"

[[protocol]]
type = "haproxy"
name = "haproxy over SSH"
backend = "$LAB_HAPROXY_BACKEND"
servers = { primary = "db1", secondary = "db2" }
sockets = ["$LAB_LB1_IP:$LAB_LB1_HAPROXY_SOCKET", "$LAB_LB2_IP:$LAB_LB2_HAPROXY_SOCKET"]
timeout = "10s"
TOML
"$bin" --config "$dir" tick 2>/dev/null || true
# "event at_ms step" lines of the history, oldest first (as `history` prints them).
step_events() {
    "$bin" --config "$1" history --json --limit 100000 \
        | sed -n 's/.*"at":\([0-9]*\),.*"event":"\([a-z_]*\)".*"step":"\([^"]*\)".*/\2 \1 \3/p'
}
dns=() tcp=() ssh=()
target=secondary
for ((run = 1; run <= runs; run++)); do
    "$bin" --config "$dir" promote db "$target" --yes >/dev/null \
        || { echo "run $run: promote failed" >&2; "$bin" --config "$dir" history --limit 20 >&2; exit 1; }
    # Each step's time: from its start to the next step's start, or to the end of the chain.
    read -r d t s < <(step_events "$dir" | awk '
        $1 == "failover_started" { n = 0; delete start }
        $1 == "step_started" { start[++n] = $2 }
        $1 == "failed_over" { start[n + 1] = $2 }
        END { printf "%d %d %d\n", start[2] - start[1], start[3] - start[2], start[4] - start[3] }')
    dns+=("$d") tcp+=("$t") ssh+=("$s")
    echo "run $run ($target): dns $d ms, haproxy over TCP $t ms, haproxy over SSH $s ms" >&2
    [[ $(bash "$lab" dig) == "$([[ $target == secondary ]] && echo "$LAB_DB2_IP" || echo "$LAB_DB1_IP")" ]] \
        || { echo "run $run: the record did not follow" >&2; exit 1; }
    "$bin" --config "$dir" reset db --yes >/dev/null
    [[ $target == secondary ]] && target=primary || target=secondary
done
rm -rf "$dir"
bash "$lab" down >/dev/null 2>&1
row() { printf '%s\n' "${@}" | awk '{ print $1 / 1000 }'; }
printf '| dns: nsupdate (TCP, TSIG) + read back with dig (%d runs) | %ss | %ss |\n' "$runs" \
    "$(row "${dns[@]}" | median)" "$(row "${dns[@]}" | spread)"
printf '| haproxy: 2 HAProxy over TCP stats sockets | %ss | %ss |\n' \
    "$(row "${tcp[@]}" | median)" "$(row "${tcp[@]}" | spread)"
printf '| haproxy: 2 HAProxy through SSH channels to their unix sockets | %ss | %ss |\n' \
    "$(row "${ssh[@]}" | median)" "$(row "${ssh[@]}" | spread)"
