#!/usr/bin/env bash
# deadpool against repmgr (Debian's postgresql-15-repmgr: repmgrd on every node) on the same
# three PostgreSQL 15 servers, a primary and two streaming standbys: kill -9 of the primary
# (its postmaster and every child at once, then wait until all are gone) until one standby
# accepts a write (an INSERT tried on both standbys every 50 ms). Each run starts from the same
# data directories (copied from templates made once), at a random point of the watcher's 1 s
# cycle (deadpool: once it has seen both standbys caught up, without which it promotes none;
# repmgr: once repmgrd on both standbys monitors the primary). Per run it also records when the
# new primary's server log shows the promote request (the end of detection and decision) and
# when the other standby streams from the new primary. repmgrd on the old primary's host keeps
# running (only PostgreSQL is killed).
#
#   deadpool: a `postgres` monitor (timeout 1 s) and a `postgres_promote` step, ticks as the
#             systemd timer runs them (tick; sleep 1), max_failed_checks = 3.
#   repmgr:   monitor_interval_secs=1, reconnect_attempts=3, reconnect_interval=1 (the same
#             window as deadpool: the primary must fail for 2 s after the first failed check),
#             failover=automatic, `repmgr standby promote` / `repmgr standby follow`.
#
# Where the servers run: by default on the namespace lab's database hosts db1, db2 and db3
# (`LAB_STANDBYS=2 lab.sh up`, brought up here and taken down at the end). PostgreSQL is the
# script's own, one server in each host's namespace on its lab address, not `lab.sh pg-up`'s,
# so that every run starts from the same repmgr-registered data directories. repmgrd runs on
# each db host, in its namespace; deadpool, the kill and the measuring loop run in the root
# namespace and reach the servers over the lab's bridge. PG_LAB=0 runs the three servers in
# this namespace on loopback addresses 127.0.3.1-3 instead, without the lab. Only the
# functions in "Hosts" know how a command reaches a host.
#
# Needs root and Debian's postgresql-15 and postgresql-15-repmgr (installed when missing).
# Usage: bash scripts/bench/postgres.sh [RUNS]   (default 5). PG_TOOLS="deadpool repmgr" picks
# and orders the tools; PG_DEADPOOL_DETECTION (default "max_failed_checks = 3") and
# PG_REPMGR_RECONNECT (default "3 1": reconnect_attempts, reconnect_interval) change detection;
# PG_KEEP=1 keeps the work directory with the servers' and repmgrd's logs.
source "$(dirname "$0")/common.sh"
runs=${1:-5}
tools=${PG_TOOLS:-deadpool repmgr}
pgbin=/usr/lib/postgresql/15/bin
password=bench-secret
# Detection: deadpool's pool line, repmgr's "reconnect_attempts reconnect_interval".
deadpool_detection=${PG_DEADPOOL_DETECTION:-max_failed_checks = 3}
read -r reconnect_attempts reconnect_interval <<<"${PG_REPMGR_RECONNECT:-3 1}"
[[ $reconnect_attempts =~ ^[0-9]+$ && ${reconnect_interval:-} =~ ^[0-9]+$ ]] \
    || { echo "PG_REPMGR_RECONNECT takes two whole numbers, e.g. \"3 1\" (attempts, seconds)" >&2; exit 2; }
in_lab=${PG_LAB:-1}
[[ $in_lab == [01] ]] || { echo "PG_LAB is 1 (the namespace lab, the default) or 0 (loopback)" >&2; exit 2; }

# ---- Hosts --------------------------------------------------------------------------------
declare -A ip netns
if ((in_lab)); then
    hosts=(db1 db2 db3)
    # Addresses and namespaces from `lab.sh env`, once the lab is up (see "Setup").
    lab_hosts() {
        local h v
        lab_env
        for h in "${hosts[@]}"; do
            v=LAB_${h^^}_IP && ip[$h]=${!v}
            v=LAB_${h^^}_NS && netns[$h]=${!v}
        done
        hba_net=${LAB_BRIDGE_IP%.*}.0/24
    }
else
    hosts=(pg1 pg2 pg3)
    ip=([pg1]=127.0.3.1 [pg2]=127.0.3.2 [pg3]=127.0.3.3)
    hba_net=127.0.0.0/8
fi
primary=${hosts[0]} standbys=("${hosts[1]}" "${hosts[2]}")

# Runs a command on a host: in its lab namespace, or here on loopback.
on_host() {
    local host=$1
    shift
    if [[ -n ${netns[$host]:-} ]]; then ip netns exec "${netns[$host]}" "$@"; else "$@"; fi
}
# Runs a command on a host as postgres, at most 60 s.
as_pg() {
    local host=$1
    shift
    on_host "$host" timeout 60 runuser -u postgres -- env PGPASSFILE="$work/pgpass" "$@"
}
# One SQL statement at a host's server over TCP as the superuser; its output.
psql_at() {
    PGPASSFILE="$work/pgpass" timeout 5 "$pgbin/psql" -XAtq \
        "host=${ip[$1]} port=5432 user=postgres dbname=postgres connect_timeout=2" -c "$2"
}
# A process that has exited (a zombie not yet reaped counts as gone).
gone() { local st; st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0; [[ $st == Z* ]]; }
# The postmaster and every child of a host's server, killed at once; returns when all are gone.
pg_crash() {
    local host=$1 pm pids p
    pm=$(head -n 1 "$work/$host/data/postmaster.pid")
    mapfile -t pids < <(pgrep -P "$pm")
    # A child may have exited since pgrep listed it.
    on_host "$host" kill -9 "$pm" "${pids[@]}" 2>/dev/null || true
    for p in "$pm" "${pids[@]}"; do
        for _ in $(seq 100); do gone "$p" && break; sleep 0.01; done
        gone "$p" || { echo "$host: process $p survived kill -9" >&2; exit 1; }
    done
}

# ---- Setup: servers, repmgr metadata, templates -------------------------------------------
prepare_pg() {
    local p
    for p in postgresql-15 postgresql-15-repmgr; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
    done
    (cd "$top" && cargo build --release --quiet)
    work=$(mktemp -d /tmp/deadpool-pgbench.XXXXXX)
    chown postgres: "$work"
    if ((in_lab)); then
        bash "$lab" install >/dev/null
        bash "$lab" down >/dev/null 2>&1
        # `lab.sh env` exports LAB_STANDBYS too; every lab command here sees db3.
        export LAB_STANDBYS=2
        bash "$lab" up >"$work/lab-up.log" 2>&1 || { cat "$work/lab-up.log" >&2; exit 1; }
        lab_hosts
    fi
    printf '*:5432:*:postgres:%s\n*:5432:*:repmgr:%s\n*:5432:*:deadpool:%s\n' \
        "$password" "$password" "$password" >"$work/pgpass"
    chown postgres: "$work/pgpass"
    chmod 600 "$work/pgpass"
    for p in "${hosts[@]}"; do
        mkdir -p "$work/$p/sock"
        chown -R postgres: "$work/$p"
    done
}

# The settings that differ per host, in data/host.conf (base backups copy the file: rewrite it).
host_conf() {
    local host=$1
    cat >"$work/$host/data/host.conf" <<CONF
listen_addresses = '${ip[$host]}'
port = 5432
unix_socket_directories = '$work/$host/sock'
cluster_name = '$host'
CONF
    chown postgres: "$work/$host/data/host.conf"
}

repmgr_conf() {
    local host=$1 id=$2 conf="$work/$1/repmgr.conf"
    cat >"$conf" <<CONF
node_id=$id
node_name='$host'
conninfo='host=${ip[$host]} port=5432 user=repmgr dbname=repmgr connect_timeout=2'
data_directory='$work/$host/data'
pg_bindir='$pgbin'
location='default'
priority=100
failover=automatic
promote_command='/usr/bin/repmgr standby promote -f $conf --log-to-file'
follow_command='/usr/bin/repmgr standby follow -f $conf --log-to-file --upstream-node-id=%n'
monitor_interval_secs=1
connection_check_type='ping'
reconnect_attempts=$reconnect_attempts
reconnect_interval=$reconnect_interval
promote_check_interval=1
log_level='INFO'
log_file='$work/$host/repmgrd.log'
repmgrd_pid_file='$work/$host/repmgrd.pid'
CONF
    chown postgres: "$conf"
}

pg_start() { as_pg "$1" "$pgbin/pg_ctl" -D "$work/$1/data" -l "$work/$1/postgres.log" -w -t 30 start >/dev/null; }
pg_stop() {
    [[ -e $work/$1/data/postmaster.pid ]] || return 0
    as_pg "$1" "$pgbin/pg_ctl" -D "$work/$1/data" -m "${2:-fast}" -w -t 30 stop >/dev/null 2>&1 || true
}

# Waits (at most 10 s) until both standbys stream from the primary.
wait_streaming() {
    local s
    for s in "${standbys[@]}"; do
        for _ in $(seq 100); do
            [[ $(psql_at "$s" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null) == streaming ]] && continue 2
            sleep 0.1
        done
        echo "$s does not stream from $primary" >&2
        exit 1
    done
}

# One cluster, registered with repmgr, stopped and saved as templates in $work/tpl.
build_templates() {
    local init="$work/init" s sql id=1
    mkdir -p "$init" && chown postgres: "$init"
    printf '%s\n' "$password" >"$work/pwfile" && chown postgres: "$work/pwfile"
    as_pg "$primary" "$pgbin/initdb" -D "$init/data" -U postgres -A scram-sha-256 --auth-local=trust \
        --pwfile="$work/pwfile" -E UTF8 --no-sync --no-instructions >/dev/null
    cat >>"$init/data/postgresql.conf" <<CONF
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
wal_keep_size = '256MB'
wal_log_hints = on
shared_preload_libraries = 'repmgr'
include_if_exists = 'host.conf'
CONF
    printf 'local all all trust\nhost all all %s scram-sha-256\nhost replication all %s scram-sha-256\n' \
        "$hba_net" "$hba_net" >"$init/data/pg_hba.conf"
    mv "$init/data" "$work/$primary/data"
    host_conf "$primary"
    for s in "${hosts[@]}"; do repmgr_conf "$s" $((id++)); done
    pg_start "$primary"
    for sql in "CREATE ROLE repmgr SUPERUSER LOGIN PASSWORD '$password'" \
        "CREATE DATABASE repmgr OWNER repmgr" \
        "CREATE ROLE deadpool LOGIN PASSWORD '$password' IN ROLE pg_monitor" \
        "CREATE TABLE bench_write (at timestamptz, host text)"; do
        psql_at "$primary" "$sql" >/dev/null
    done
    as_pg "$primary" /usr/bin/repmgr -f "$work/$primary/repmgr.conf" primary register >/dev/null 2>&1 \
        || { as_pg "$primary" /usr/bin/repmgr -f "$work/$primary/repmgr.conf" primary register; exit 1; }
    for s in "${standbys[@]}"; do
        as_pg "$s" /usr/bin/repmgr -h "${ip[$primary]}" -U repmgr -d repmgr -f "$work/$s/repmgr.conf" \
            standby clone --fast-checkpoint >"$work/$s/clone.log" 2>&1 \
            || { cat "$work/$s/clone.log" >&2; exit 1; }
        host_conf "$s"
        pg_start "$s"
        as_pg "$s" /usr/bin/repmgr -f "$work/$s/repmgr.conf" standby register --wait-sync=10 >/dev/null 2>&1 \
            || { as_pg "$s" /usr/bin/repmgr -f "$work/$s/repmgr.conf" standby register; exit 1; }
    done
    wait_streaming
    for s in "${standbys[@]}" "$primary"; do pg_stop "$s"; done
    mkdir -p "$work/tpl"
    for s in "${hosts[@]}"; do cp -a "$work/$s/data" "$work/tpl/$s"; done
}

# The three servers from the templates, started, the standbys streaming.
restore_cluster() {
    local s
    for s in "${hosts[@]}"; do
        pg_stop "$s" immediate
        rm -rf "$work/$s/data" "$work/$s/postgres.log" "$work/$s/repmgrd.log" "$work/$s/repmgrd.pid"
        cp -a "$work/tpl/$s" "$work/$s/data"
    done
    for s in "$primary" "${standbys[@]}"; do pg_start "$s"; done
    wait_streaming
}

declare -A repmgrd_pid
repmgrd_start() {
    local s
    for s in "${hosts[@]}"; do
        on_host "$s" setsid setpriv --reuid=postgres --regid=postgres --init-groups \
            env PGPASSFILE="$work/pgpass" HOME="$work" /usr/bin/repmgrd -f "$work/$s/repmgr.conf" --daemonize=false \
            </dev/null >>"$work/$s/repmgrd.out" 2>&1 &
        repmgrd_pid[$s]=$!
    done
    # Ready when each standby's repmgrd monitors the primary.
    for s in "${standbys[@]}"; do
        for _ in $(seq 100); do
            grep -q 'monitoring connection to upstream node' "$work/$s/repmgrd.log" 2>/dev/null && continue 2
            sleep 0.1
        done
        echo "repmgrd on $s does not monitor its upstream:" >&2
        cat "$work/$s/repmgrd.log" "$work/$s/repmgrd.out" >&2
        exit 1
    done
}
# Each repmgrd by the PID it writes to its pid file, with the process group it leads (setsid):
# a follow or promote command it runs goes too. Then the subshell that started it.
repmgrd_stop() {
    local s pid
    for s in "${!repmgrd_pid[@]}"; do
        pid=$(cat "$work/$s/repmgrd.pid" 2>/dev/null) || pid=
        if [[ -n $pid ]]; then
            on_host "$s" kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 50); do gone "$pid" && break; sleep 0.1; done
            on_host "$s" kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        kill -KILL "${repmgrd_pid[$s]}" 2>/dev/null || true
        wait "${repmgrd_pid[$s]}" 2>/dev/null || true
        unset "repmgrd_pid[$s]"
    done
}

# A deadpool instance watching the three servers.
deadpool_instance() {
    local dir
    dir=$(mktemp -d /tmp/deadpool-pgbench-instance.XXXXXX)
    mkdir -p "$dir/pools"
    printf 'state_dir = "state"\ntick_interval = "1s"\nsystem_check_interval = "1h"\n' >"$dir/deadpool.toml"
    printf '%s\n' "$password" >"$dir/monitor.pw"
    printf '%s\n' "$password" >"$dir/admin.pw"
    chmod 600 "$dir/monitor.pw" "$dir/admin.pw"
    cat >"$dir/pools/db.toml" <<TOML
primary = "${ip[$primary]}"
standbys = ["${ip[${standbys[0]}]}", "${ip[${standbys[1]}]}"]
$deadpool_detection

[monitor]
type = "postgres"
user = "deadpool"
password_file = "monitor.pw"
timeout = "1s"

[[protocol]]
type = "postgres_promote"
user = "postgres"
password_file = "admin.pw"
catch_up_timeout = "10s"
timeout = "20s"
TOML
    echo "$dir"
}

cleanup() {
    local s
    [[ -n ${ticker:-} ]] && { kill "$ticker" 2>/dev/null || true; }
    repmgrd_stop
    if [[ -n ${work:-} ]]; then
        for s in "${hosts[@]}"; do pg_stop "$s" immediate; done
        if ((in_lab)); then bash "$lab" down >/dev/null 2>&1 || echo "lab.sh down failed" >&2; fi
        if [[ -n ${PG_KEEP:-} ]]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
    fi
    [[ -n ${dir:-} ]] && rm -rf "$dir"
    return 0
}
trap cleanup EXIT

# ---- Measurement --------------------------------------------------------------------------
# Tries an INSERT on each standby every 50 ms (at most 30 s); prints "HOST MS" for the first
# that accepts it, MS counted from $1.
first_writable() {
    local since=$1 s
    for _ in $(seq 600); do
        for s in "${standbys[@]}"; do
            if PGCONNECT_TIMEOUT=1 psql_at "$s" "INSERT INTO bench_write VALUES (now(), '$s')" >/dev/null 2>&1; then
                echo "$s $(($(now_ms) - since))"
                return 0
            fi
        done
        sleep 0.05
    done
    return 1
}

# Whether deadpool's report shows both standbys seen caught up with the primary.
caught_up_seen() {
    local n
    n=$("$bin" --config "$1" report --json 2>/dev/null | grep -c '"caught_up_age_s": *[0-9]') || true
    ((n == 2))
}

# When host $1's server got the promote request (pg_promote), in ms, from its log.
promote_requested() {
    local line
    line=$(grep -m 1 'received promote request' "$work/$1/postgres.log") || { echo -; return; }
    date -d "$(awk '{ print $1, $2, $3 }' <<<"$line")" +%s%3N
}

# Waits (at most 30 s) until host $1 streams from host $2; prints MS counted from $3, or "-".
following() {
    local s=$1 from=$2 since=$3
    for _ in $(seq 300); do
        if [[ $(psql_at "$s" "SELECT sender_host FROM pg_stat_wal_receiver WHERE status = 'streaming'" 2>/dev/null) == "${ip[$from]}" ]]; then
            echo $(($(now_ms) - since))
            return 0
        fi
        sleep 0.1
    done
    echo -
}

# One run: crash the primary at a random point of the watcher's cycle; sets m_ms (kill to a
# standby writable), m_new (that standby), m_promote (kill to the promote request in that
# server's log) and m_follow (kill to the other standby streaming from it, or "-").
measure() {
    local tool=$1 killed other s
    restore_cluster
    if [[ $tool == deadpool ]]; then
        dir=$(deadpool_instance)
        "$bin" --config "$dir" tick >/dev/null 2>&1 || true
        ticker "$dir" >/dev/null &
        ticker=$!
        # deadpool promotes only a standby it has seen caught up with the primary: wait until
        # it has seen both, as it would have in a cluster running for a while.
        for _ in $(seq 100); do caught_up_seen "$dir" && break; sleep 0.1; done
        caught_up_seen "$dir" || { echo "deadpool never saw both standbys caught up:" >&2; "$bin" --config "$dir" report >&2; exit 1; }
    else
        repmgrd_start
    fi
    sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
    killed=$(now_ms)
    pg_crash "$primary"
    read -r m_new m_ms < <(first_writable "$killed") || true
    if [[ -z ${m_ms:-} ]]; then
        echo "$tool: no standby became writable within 30 s" >&2
        if [[ $tool == deadpool ]]; then "$bin" --config "$dir" history >&2; else tail -n 30 "$work/${standbys[0]}/repmgrd.log" >&2; fi
        exit 1
    fi
    other=${standbys[0]}
    [[ $other == "$m_new" ]] && other=${standbys[1]}
    m_follow=$(following "$other" "$m_new" "$killed")
    m_promote=$(promote_requested "$m_new")
    mkdir -p "$work/logs"
    cp "$work/$m_new/postgres.log" "$work/logs/$tool-run-$run-$m_new-postgres.log"
    [[ $m_promote == - ]] || m_promote=$((m_promote - killed))
    if [[ $tool == deadpool ]]; then
        for _ in $(seq 150); do events "$dir" | grep -q '^failed_over ' && break; sleep 0.1; done
        local started ended
        started=$(events "$dir" | awk '$1 == "failover_started" { print $2 }' | tail -n 1)
        ended=$(events "$dir" | awk '$1 == "failed_over" { print $2 }' | tail -n 1)
        echo "deadpool, run $run: failover_started $((started - killed)) ms after the kill, failed_over $((ended - killed)) ms" >&2
        kill "$ticker"; wait "$ticker" 2>/dev/null || true
        ticker=
        rm -rf "$dir"
        dir=
    else
        repmgrd_stop
        for s in "${hosts[@]}"; do cp "$work/$s/repmgrd.log" "$work/logs/$tool-run-$run-$s-repmgrd.log" 2>/dev/null || true; done
    fi
}

secs() { printf '%s\n' "$@" | grep -v '^-$' | awk '{ print $1 / 1000 }'; }

prepare_pg
build_templates
echo "| tool, detection (runs) | kill -9 -> promote requested | kill -9 -> a standby writable | spread (min-max) | kill -9 -> other standby streaming from it |"
echo "|---|---|---|---|---|"
declare -A median_of
for tool in $tools; do
    writable=() follows=() promotes=()
    for ((run = 1; run <= runs; run++)); do
        m_ms='' m_follow='' m_new='' m_promote=''
        measure "$tool"
        writable+=("$m_ms") follows+=("$m_follow") promotes+=("$m_promote")
        echo "$tool, run $run: $m_new asked to promote after $m_promote ms, writable after $m_ms ms, the other standby following after $m_follow ms" >&2
    done
    median_of[$tool]=$(secs "${writable[@]}" | median)
    if [[ $tool == deadpool ]]; then label="deadpool, $deadpool_detection"; else
        label="repmgr, reconnect_attempts=$reconnect_attempts reconnect_interval=$reconnect_interval"; fi
    printf '| %s (%d runs) | %ss | %ss | %ss | %ss |\n' "$label" "$runs" "$(secs "${promotes[@]}" | median)" "${median_of[$tool]}" \
        "$(secs "${writable[@]}" | spread)" "$(secs "${follows[@]}" | median)"
done
if [[ -n ${median_of[deadpool]:-} && -n ${median_of[repmgr]:-} ]]; then
    echo
    awk -v d="${median_of[deadpool]}" -v r="${median_of[repmgr]}" \
        'BEGIN { printf "repmgr / deadpool (medians): %.2f\n", r / d }'
fi
