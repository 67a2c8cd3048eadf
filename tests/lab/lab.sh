#!/usr/bin/env bash
# lab.sh - a one-machine test lab for deadpool's integration tests.
#
# Builds four "hosts" as network namespaces on a private bridge:
#
#   db1  10.213.0.11  MariaDB primary, Redis primary, sshd
#   db2  10.213.0.12  MariaDB replica of db1, Redis replica of db1, sshd
#   db3  10.213.0.13  only with LAB_STANDBYS=2: a second standby, configured like db2
#   app1 10.213.0.21  sshd (a client host whose /etc/hosts deadpool rewrites)
#   app2 10.213.0.22  sshd
#   lb1  10.213.0.9   HAProxy in TCP mode before db1/db2 (stats socket, admin level, on a
#                     unix path and on TCP port 9999), sshd
#   lb2  10.213.0.10  the same, a second HAProxy
#   ns1  10.213.0.153 named: primary of the dynamic zone lab.internal (TSIG key), sshd
#
# and, after `lab.sh pg-up`, PostgreSQL 15 on the database hosts: db1 the primary, db2 (and
# db3) standbys streaming from it, each server in its host's namespace on the host's address,
# port 5432, with its own data and socket directories under LAB_DIR.
#
# and, for several watcher hosts (`lab.sh cluster-up`), six more:
#
#   etcd1..etcd3  10.213.0.71-73  one etcd member each (a three-member cluster)
#   dp1..dp3      10.213.0.81-83  one deadpool member each (a tick loop, `member-start`)
#
# and offers fault helpers (kill, hang, SIGSTOP...) so tests can break them.
# Every file the lab uses lives under LAB_DIR (default /tmp/deadpool-lab);
# `down` removes everything, whatever state the lab was left in.
# Lab names are machine-wide: run one lab at a time. Needs root.
# `lab.sh help` lists the commands. Environment: LAB_DIR, LAB_TIMEOUT, LAB_APPS, and
# LAB_STANDBYS (1 or 2, read by `up`): how many standbys replicate from db1. The default, 1,
# builds db2 only; 2 adds db3 (10.213.0.13), a MariaDB and Redis replica of db1 with sshd,
# the same accounts (carried by replication) and its own server_id 3. `up` records the
# number in LAB_DIR, so every later command (kill, hang, sql, status...) knows db3 without
# the variable; `down` removes db3 whatever the number. db3 costs `up` under a second (its
# datadir is a copy of the template db1 and db2 start from; it starts beside them).

set -euo pipefail

LAB_DIR=${LAB_DIR:-/tmp/deadpool-lab}
LAB_TIMEOUT=${LAB_TIMEOUT:-30}     # seconds allowed for each wait in `up`/`start`

BRIDGE=dpbr0
BRIDGE_CIDR=10.213.0.1/24
PREFIX_LEN=24
SUBNET=10.213.0.0/$PREFIX_LEN
HOSTS=(db1 db2 app1 app2 lb1 lb2 ns1)
DB_HOSTS=(db1 db2)
LB_HOSTS=(lb1 lb2)
# Outside 10.213.0.21-90, which LAB_APPS may fill with app hosts.
declare -A IP=([db1]=10.213.0.11 [db2]=10.213.0.12 [app1]=10.213.0.21 [app2]=10.213.0.22
               [lb1]=10.213.0.9 [lb2]=10.213.0.10 [ns1]=10.213.0.153)
# More client hosts for benchmarks: LAB_APPS=50 makes app1..app50 (10.213.0.21-70).
LAB_APPS=${LAB_APPS:-2}
if ! [[ $LAB_APPS =~ ^[0-9]+$ ]] || ((LAB_APPS < 2 || LAB_APPS > 70)); then
    printf 'lab: error: LAB_APPS must be 2 to 70\n' >&2
    exit 2
fi
for ((i = 3; i <= LAB_APPS; i++)); do
    HOSTS+=("app$i")
    IP[app$i]=10.213.0.$((20 + i))
done
# The optional second standby: its address is fixed whether it is built or not, so `down`
# can remove it from any lab. LAB_STANDBYS is read by `up`; later commands read what `up`
# recorded (a different number asked of a built lab is refused: `down` first).
EXTRA_STANDBY=db3
EXTRA_STANDBY_IP=10.213.0.13
STANDBYS_FILE=$LAB_DIR/standbys
if [[ -s $STANDBYS_FILE ]]; then
    LAB_STANDBYS_BUILT=$(<"$STANDBYS_FILE")
else
    LAB_STANDBYS_BUILT=
fi
LAB_STANDBYS=${LAB_STANDBYS:-${LAB_STANDBYS_BUILT:-1}}
if [[ $LAB_STANDBYS != 1 && $LAB_STANDBYS != 2 ]]; then
    printf 'lab: error: LAB_STANDBYS must be 1 or 2\n' >&2
    exit 2
fi
if ((LAB_STANDBYS == 2)); then
    HOSTS=("${HOSTS[@]:0:2}" "$EXTRA_STANDBY" "${HOSTS[@]:2}")
    DB_HOSTS+=("$EXTRA_STANDBY")
    IP[$EXTRA_STANDBY]=$EXTRA_STANDBY_IP
fi
# Several watcher hosts: built by `cluster-up` only, beside the hosts above.
ETCD_HOSTS=(etcd1 etcd2 etcd3)
DP_HOSTS=(dp1 dp2 dp3)
CLUSTER_HOSTS=("${ETCD_HOSTS[@]}" "${DP_HOSTS[@]}")
IP+=([etcd1]=10.213.0.71 [etcd2]=10.213.0.72 [etcd3]=10.213.0.73
     [dp1]=10.213.0.81 [dp2]=10.213.0.82 [dp3]=10.213.0.83)
ETCD_CLIENT_PORT=2379
ETCD_PEER_PORT=2380
PRIMARY=db1
# The first standby: the one HAProxy and `replica-filepos` know about.
REPLICA=db2
# Every standby replicating from the primary (db2, and db3 with LAB_STANDBYS=2).
REPLICAS=("${DB_HOSTS[@]:1}")
MYSQL_PORT=3306
REDIS_PORT=6379
SSH_PORT=22
HAPROXY_STATS_PORT=9999
HAPROXY_BACKEND=mysql
DNS_HOST=ns1
ZONE=lab.internal.
DNS_NAME=db.lab.internal.
DNS_TTL=30
DNS_ALT_PORT=5353
TSIG_KEY=deadpool-lab
# A login HAProxy's mysql-check uses: no password, no privileges. A check that only
# connects and hangs up would count as a connection error and get HAProxy's host blocked.
HAPROXY_CHECK_USER=haproxy_check
# Steps log in as this user: uid 0 like root, but with /bin/sh as its shell, so no shell
# start-up file of this machine's root account (which may run slow tools) runs per login.
SSH_USER=dplab
# An unprivileged user; tests give it exactly the sudo rules they prove (`lab.sh sudoers`).
SUDO_USER_NAME=dpapp
SUDOERS=/etc/sudoers.d/deadpool-lab

MONITOR_USER=deadpool
ADMIN_USER=dpadmin
WRITER_USER=writer
REPL_USER=repl
APP_DB=app
# What dpadmin needs on MariaDB 10.11 to promote a replica: READ_ONLY ADMIN is
# no longer part of SUPER, and SHOW SLAVE STATUS needs SLAVE MONITOR.
ADMIN_GRANTS="SUPER, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, BINLOG ADMIN, BINLOG MONITOR, SLAVE MONITOR, REPLICATION CLIENT, REPLICATION SLAVE, RELOAD, PROCESS, CONNECTION ADMIN"
MONITOR_GRANTS="REPLICATION CLIENT, SLAVE MONITOR"

# PostgreSQL 15 (`pg-up`): Debian's binaries, run as the postgres user; Debian's own
# `main` cluster is left alone.
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5432
PG_SUPERUSER=postgres
PG_USER=postgres
# The roles (none a superuser) and exactly what each is granted. The monitor reads the WAL
# receiver's status and sender (pg_read_all_stats, in pg_monitor). The admin account of
# postgres_promote: SHOW primary_conninfo (pg_read_all_settings), the WAL receiver's status
# and sender (pg_read_all_stats), pg_promote() and pg_reload_conf() (not executable by
# PUBLIC), ALTER SYSTEM of the two settings the step changes, and pg_terminate_backend() of
# other roles' sessions (pg_signal_backend; superusers' sessions stay out of its reach).
PG_MONITOR_GRANTS="GRANT pg_monitor TO $MONITOR_USER;"
PG_ADMIN_GRANTS="GRANT pg_read_all_settings, pg_read_all_stats, pg_signal_backend TO $ADMIN_USER;
    GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO $ADMIN_USER;
    GRANT EXECUTE ON FUNCTION pg_reload_conf() TO $ADMIN_USER;
    GRANT ALTER SYSTEM ON PARAMETER primary_conninfo, default_transaction_read_only TO $ADMIN_USER;"

# What the lab installs, in groups: `install` runs one apt-get per group and prints one
# line for each (apt's own output goes to a log, shown only when apt fails).
# check_mysql is in monitoring-plugins-standard, not -basic.
# bind9 (named) and bind9-dnsutils (nsupdate, dig) for the dns step, haproxy for the
# haproxy step, postgresql-15 for `pg-up`.
PACKAGE_GROUPS=(
    "MariaDB and Redis:mariadb-server redis-server"
    "sshd, sudo and openssl:openssh-server sudo openssl"
    "network tools:iproute2 iputils-arping iptables"
    "Nagios plugins:monitoring-plugins-basic monitoring-plugins-standard"
    "DNS and HAProxy:bind9 bind9-dnsutils haproxy"
    "etcd:etcd-server etcd-client"
    "PostgreSQL 15:postgresql-15"
)
PACKAGES=()
for group in "${PACKAGE_GROUPS[@]}"; do
    read -ra group_packages <<<"${group#*:}"
    PACKAGES+=("${group_packages[@]}")
done
unset group group_packages

MARKER=$LAB_DIR/.deadpool-lab      # proves LAB_DIR is ours before `down` deletes it
SECRETS=$LAB_DIR/secrets
SSH_DIR=$LAB_DIR/ssh
SSH_KEY=$SSH_DIR/id_ed25519
KNOWN_HOSTS=$SSH_DIR/known_hosts
MYSQL_TEMPLATE=$LAB_DIR/mysql-template
PG_TEMPLATE=$LAB_DIR/pg-template
# `lab.sh pg-up` ran: the database hosts run PostgreSQL too.
PG_ON=$LAB_DIR/.pg-on
# `lab.sh tls`: the lab's CA, a client certificate, and the marker that the servers
# speak TLS (the lab's own clients then use it too).
TLS_DIR=$LAB_DIR/tls
TLS_ON=$TLS_DIR/.on
PG_TLS_ON=$TLS_DIR/.pg-on
# Host keys are always checked against the lab's own known_hosts; curve25519
# makes each login noticeably faster than the default key exchange.
SSH_OPTS=(-i "$SSH_KEY" -F /dev/null -o IdentitiesOnly=yes -o BatchMode=yes
          -o UserKnownHostsFile="$KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null
          -o StrictHostKeyChecking=yes -o ConnectTimeout=3 -o LogLevel=ERROR
          -o KexAlgorithms=curve25519-sha256)

# ---------------------------------------------------------------- helpers

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<EOF
usage: lab.sh install              install the Debian packages the lab needs
       lab.sh up                   build the lab, or repair it (idempotent)
       lab.sh down                 remove everything the lab made
       lab.sh status               one line per host and service
       lab.sh env                  shell export lines describing the lab
       lab.sh kill|start HOST SVC  kill -9 / start again a service (mysql|redis|sshd|postgres...)
       lab.sh stop|cont HOST SVC   SIGSTOP / SIGCONT a service
       lab.sh freeze|thaw HOST     SIGSTOP / SIGCONT every process of the host: a hung machine
                                   (connections are accepted by the kernel, nothing answers)
       lab.sh hang|unhang HOST     drop / restore all traffic on the host's eth0
       lab.sh cutoff HOST PEER_IP  drop traffic between the host and one peer only
       lab.sh vip add|del HOST CIDR, lab.sh vip show HOST
                                   a virtual address on the host's eth0
       lab.sh sudo-password HOST   sudo on HOST asks $SUDO_USER_NAME for a password (it may
                                   still log in; \`sudo -n\` fails there only)
       lab.sh replica-filepos      the replica (db2) follows by binlog file/position, not GTID
       lab.sh replica-io stop|start HOST
                                   a standby's IO thread only: stopped, it receives nothing while
                                   its SQL thread runs on
       lab.sh replica-field HOST FIELD...
                                   fields of HOST's SHOW SLAVE STATUS, one line each (Master_Host,
                                   Slave_IO_Running, Gtid_IO_Pos...); empty lines on a primary
       lab.sh repl-lock|repl-unlock HOST
                                   the replication account locked on HOST alone (not binlogged):
                                   a replica repointed to HOST is refused (error 4151)
       lab.sh repoint HOST SOURCE  HOST replicates from SOURCE (same account, GTID slave_pos)
       lab.sh sudoers FILE         install FILE (checked by visudo) as the lab's sudoers rules
       lab.sh sshd-keys HOST PORT  a second sshd on HOST:PORT with RSA, ECDSA and Ed25519 keys
       lab.sh tls                  a CA and certificates; MariaDB with require_secure_transport
                                   (replication over TLS, $ADMIN_USER REQUIRE X509), Redis on TLS
                                   only (client certificates required, replication over TLS)
       lab.sh dns-set IP           set $DNS_NAME's A record (nsupdate with the lab's key)
       lab.sh dns-rekey            give the lab's TSIG key a new secret on $DNS_HOST only
       lab.sh dig [NAME [TYPE]]    what $DNS_HOST answers (default: $DNS_NAME A)
       lab.sh haproxy HOST CMD...  a runtime API command to HOST's HAProxy (lb1, lb2)

       lab.sh pg-up                PostgreSQL 15 on the database hosts (after \`up\`): db1 primary,
                                   the other database hosts standbys streaming from it; roles
                                   $MONITOR_USER, $ADMIN_USER, $WRITER_USER, $REPL_USER (none a superuser)
       lab.sh pg-tls               PostgreSQL with ssl = on (certificates from the lab's CA) and
                                   logins over TLS only (pg_hba.conf hostssl); \`tls\` does it too
       lab.sh psql HOST "SQL" [DB] run SQL as the superuser over the host's own unix socket

       lab.sh sql HOST "SQL"       run SQL as root over the unix socket
       lab.sh redis HOST ARGS...   redis-cli on the host, authenticated
       lab.sh ssh HOST [CMD...]    ssh to the host as root with the lab key

       lab.sh cluster-up           the etcd and deadpool member hosts, three etcd members
                                   running (needs \`up\` first for the databases)
       lab.sh etcd-kill|etcd-start HOST   kill -9 / start again one etcd member
       lab.sh etcd-endpoints       the etcd client URLs, comma-separated
       lab.sh member-start HOST DEADPOOL CONFIG_DIR
                                   a deadpool member's tick loop on HOST (tick; sleep 1)
       lab.sh member-stop HOST     kill everything running on HOST (its host dies)
       lab.sh link-down|link-up HOST   the host's link to the bridge down / up again
hosts: ${HOSTS[*]}; cluster hosts: ${CLUSTER_HOSTS[*]}
LAB_STANDBYS=2 \$0 up adds $EXTRA_STANDBY ($EXTRA_STANDBY_IP), a second standby like db2; later
commands know it from what \`up\` recorded.
EOF
    exit "${1:-2}"
}

need_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

ns_of() { printf 'dp-%s' "$1"; }
host_dir() { printf '%s/%s' "$LAB_DIR" "$1"; }

is_host() { [[ -n ${IP[$1]:-} ]]; }
is_db_host() { [[ " ${DB_HOSTS[*]} " == *" ${1:-} "* ]]; }
is_replica() { [[ " ${REPLICAS[*]} " == *" ${1:-} "* ]]; }
is_lb_host() { [[ $1 == lb1 || $1 == lb2 ]]; }

check_host() { is_host "${1:-}" || die "unknown host '${1:-}' (expected one of: ${HOSTS[*]})"; }
check_replica() { is_replica "${1:-}" || die "'${1:-}' is not a standby (expected one of: ${REPLICAS[*]})"; }

# Which services run where.
host_services() {
    if is_db_host "$1" && pg_on; then echo "mysql redis sshd postgres"
    elif is_db_host "$1"; then echo "mysql redis sshd"
    elif is_lb_host "$1"; then echo "haproxy sshd"
    elif [[ $1 == "$DNS_HOST" ]]; then echo "named sshd"
    else echo "sshd"; fi
}

check_service() {
    local host=$1 svc=${2:-}
    if [[ $svc == postgres ]] && is_db_host "$host" && ! pg_on; then
        die "PostgreSQL is not set up on $host (run: $0 pg-up)"
    fi
    [[ " $(host_services "$host") " == *" $svc "* ]] \
        || die "no service '$svc' on $host (has: $(host_services "$host"))"
}

# Process name (comm) of each service's daemon.
svc_comm() {
    case $1 in
        mysql) echo mariadbd ;;
        redis) echo redis-server ;;
        sshd)  echo sshd ;;
        haproxy) echo haproxy ;;
        named) echo named ;;
        postgres) echo postgres ;;
    esac
}

ns_exists() { [[ -e /run/netns/$(ns_of "$1") ]]; }

# Pids of a service's processes, found by name among the processes of the
# host's namespace: this needs no pid file, so it also works on a half-built
# or crashed lab, and can never match a daemon outside the lab.
svc_pids() {
    local host=$1 comm pid
    comm=$(svc_comm "$2")
    ns_exists "$host" || return 0
    for pid in $(ip netns pids "$(ns_of "$host")" 2>/dev/null); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]]; then
            echo "$pid"
        fi
    done
}

svc_running() { [[ -n $(svc_pids "$1" "$2") ]]; }
svc_gone() { ! svc_running "$1" "$2"; }

# "T" in /proc/PID/stat means stopped by a signal.
pid_stopped() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} == T ]]
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_until() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "timed out after ${limit}s waiting for $what"; return 1; }
        sleep 0.1
    done
}

# Runs a command inside a host: own network namespace (and so own
# /etc/hosts), own hostname, detached from our session, and with all three
# standard streams on a log file so that nobody's pipes are held open.
start_in_host() {
    local host=$1 out=$2
    shift 2
    (
        # A daemon must not inherit our other descriptors: one holding the lock file of
        # `flock LOCK cargo test ...` keeps that lock taken after the test run has ended,
        # and every later lab run waits for ever.
        local fd
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        # shellcheck disable=SC2016  # $0 and $@ are for the inner shell
        setsid ip netns exec "$(ns_of "$host")" \
            unshare --uts sh -c 'hostname "$0" && exec "$@"' "$host" "$@" \
            </dev/null >>"$out" 2>&1 &
    )
}

random_password() { head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9'; }

secret() { cat "$SECRETS/$1"; }

# Writes a file readable by root only; umask makes it private from the start.
write_private() {
    (umask 077 && cat >"$1")
}

elapsed_since() { awk -v t0="$1" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f", t1 - t0 }'; }

# ---------------------------------------------------------------- install

# missing_packages [PACKAGE...]: those not installed, of these or of all the lab's.
missing_packages() {
    local p list=("$@")
    ((${#list[@]} > 0)) || list=("${PACKAGES[@]}")
    for p in "${list[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
            echo "$p"
        fi
    done
}

# apt_install LOG PACKAGE...: apt-get install with all its output in LOG; after a failure,
# the package lists are refreshed once and the install retried. Fails with LOG printed.
apt_install() {
    local log=$1
    shift
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
    if "${apt[@]}" "$@" >>"$log" 2>&1; then return 0; fi
    # Only refresh the package lists when the install cannot work without it.
    if [[ -z ${APT_UPDATED:-} ]]; then
        APT_UPDATED=1
        log "installing $* failed; running apt-get update and retrying"
        if apt-get update >>"$log" 2>&1 && "${apt[@]}" "$@" >>"$log" 2>&1; then return 0; fi
    fi
    cat "$log" >&2
    log "apt-get install $* failed (its output is above, and in $log)"
    return 1
}

# Daemons running in our own (the root) network namespace, not in the lab.
system_daemon_pids() {
    local pid root_net
    root_net=$(readlink /proc/self/ns/net)
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
            mariadbd|mysqld|mysqld_safe|mariadbd-safe|redis-server|sshd|named|haproxy|etcd|postgres)
                if [[ $(readlink "/proc/$pid/ns/net" 2>/dev/null) == "$root_net" ]]; then
                    echo "$pid"
                fi ;;
        esac
    done
}

cmd_install() {
    need_root
    local missing packages before pid policy_added=0
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        log "packages already installed"
        return 0
    fi
    before=" $(system_daemon_pids | tr '\n' ' ') "
    # Tell the packages' scripts not to start their daemons (exit 101 = "not
    # allowed"); the lab starts its own copies in the namespaces.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    local group label started=$EPOCHREALTIME apt_log
    apt_log=$(mktemp /tmp/deadpool-lab-apt.XXXXXX.log)
    for group in "${PACKAGE_GROUPS[@]}"; do
        label=${group%%:*}
        read -ra packages <<<"${group#*:}"
        mapfile -t missing < <(missing_packages "${packages[@]}")
        ((${#missing[@]} > 0)) || continue
        log "installing $label: ${missing[*]}"
        if ! apt_install "$apt_log" "${missing[@]}"; then
            if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
            die "cannot install the lab's packages"
        fi
    done
    rm -f "$apt_log"
    if ((policy_added)); then rm -f /usr/sbin/policy-rc.d; fi
    log "packages installed in $(elapsed_since "$started") s"
    # Stop whatever the packages started anyway (on systemd, or without
    # policy-rc.d support); daemons that were running before stay untouched.
    for pid in $(system_daemon_pids); do
        if [[ $before != *" $pid "* ]]; then
            log "stopping $(cat "/proc/$pid/comm" 2>/dev/null) ($pid) started by the packages"
            kill "$pid" 2>/dev/null || true
        fi
    done
    [[ -z $(missing_packages) ]] || die "packages still missing: $(missing_packages | tr '\n' ' ')"
}

# ---------------------------------------------------------------- network

net_up() {
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
    fi
    if ! ip -br addr show dev "$BRIDGE" | grep -qF " ${BRIDGE_CIDR%/*}/"; then
        ip addr add "$BRIDGE_CIDR" dev "$BRIDGE"
    fi
    no_ipv6 "$BRIDGE"
    ip link set "$BRIDGE" up
    local host
    for host in "${HOSTS[@]}"; do host_net_up "$host"; done
    # Bridged frames cross the FORWARD chain when br_netfilter is loaded,
    # where the policy may be DROP (e.g. on Docker hosts).
    if command -v iptables >/dev/null && ! iptables -w -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; then
        iptables -w -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    fi
}

# Lab links carry IPv4 only: otherwise they chatter IPv6 (router
# solicitations, DAD) outside the lab subnet.
no_ipv6() {
    local knob=/proc/sys/net/ipv6/conf/$1/disable_ipv6
    if [[ -w $knob ]]; then echo 1 >"$knob"; fi
}

# One namespace with a veth pair: "dpv-HOST" on the bridge, "eth0" inside.
# No default route, so nothing can leave the lab subnet.
host_net_up() {
    local host=$1 ns veth
    ns=$(ns_of "$host")
    veth=dpv-$host
    ns_exists "$host" || ip netns add "$ns"
    if ! ip link show "$veth" >/dev/null 2>&1; then
        ip -n "$ns" link del eth0 2>/dev/null || true
        ip link add "$veth" type veth peer name eth0 netns "$ns"
    fi
    no_ipv6 "$veth"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 2>/dev/null || true
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" link set lo up
    if ! ip -n "$ns" -br addr show dev eth0 | grep -qF " ${IP[$host]}/"; then
        ip -n "$ns" addr add "${IP[$host]}/$PREFIX_LEN" dev eth0
    fi
    ip -n "$ns" link set eth0 up
}

# `ip netns exec` bind-mounts /etc/netns/NS/hosts over /etc/hosts. Only
# created when missing: tests edit these files (in place) and `up` keeps that.
write_hosts_files() {
    local host h file
    for host in "${HOSTS[@]}"; do
        file=/etc/netns/$(ns_of "$host")/hosts
        [[ -s $file ]] && continue
        mkdir -p "${file%/*}"
        {
            printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
            for h in "${HOSTS[@]}"; do printf '%s\t%s\n' "${IP[$h]}" "$h"; done
        } >"$file"
        # No name server inside the lab: a name that is not in the hosts file fails at
        # once (glibc falls back to 127.0.0.1), and no query leaves the lab.
        printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"${file%/*}/resolv.conf"
    done
}


# ---------------------------------------------------------------- files

make_lab_dir() {
    if [[ -d $LAB_DIR && ! -e $MARKER ]]; then
        [[ -z $(ls -A "$LAB_DIR") ]] || die "$LAB_DIR exists and is not a lab directory"
    fi
    mkdir -p "$LAB_DIR"
    chmod 755 "$LAB_DIR"          # mysql and redis users must reach their dirs
    touch "$MARKER"
}

make_secrets() {
    mkdir -p "$SECRETS"
    chmod 700 "$SECRETS"
    local name
    for name in repl monitor admin writer redis ssh-dpapp; do
        [[ -s $SECRETS/$name ]] || random_password | write_private "$SECRETS/$name"
    done
    # The TSIG secret: base64, as in named's `key` statement; and that statement, for
    # the lab's own nsupdate (dns-set).
    [[ -s $SECRETS/tsig ]] || head -c 32 /dev/urandom | base64 | write_private "$SECRETS/tsig"
    tsig_key_file "$(secret tsig)" | write_private "$SECRETS/tsig.key.tmp"
    mv "$SECRETS/tsig.key.tmp" "$SECRETS/tsig.key"
    # Client option files, e.g. `mariadb --defaults-file=secrets/monitor.cnf`.
    client_cnf monitor "$MONITOR_USER"
    client_cnf admin "$ADMIN_USER"
    client_cnf writer "$WRITER_USER"
}

client_cnf() {
    [[ -s $SECRETS/$1.cnf ]] && return 0
    printf '[client]\nuser=%s\npassword=%s\nconnect-timeout=2\n' "$2" "$(secret "$1")" \
        | write_private "$SECRETS/$1.cnf"
}

make_ssh_keys() {
    # deadpool refuses a key, a known_hosts file or a directory above them that others
    # could change, whatever the umask: set the modes it checks.
    mkdir -p "$SSH_DIR"
    chmod 755 "$SSH_DIR"
    [[ -s $SSH_KEY ]] || ssh-keygen -q -t ed25519 -N '' -C deadpool-lab -f "$SSH_KEY"
    chmod 600 "$SSH_KEY"
    cp "$SSH_KEY.pub" "$SSH_DIR/authorized_keys"
    local host key
    for host in "${HOSTS[@]}"; do
        key=$(host_dir "$host")/sshd/ssh_host_ed25519_key
        mkdir -p "${key%/*}"
        [[ -s $key ]] || ssh-keygen -q -t ed25519 -N '' -C "$host" -f "$key"
    done
    # Rebuilt from the keys each time, so it always matches them.
    for host in "${HOSTS[@]}"; do
        key=$(host_dir "$host")/sshd/ssh_host_ed25519_key.pub
        printf '%s,%s %s\n' "${IP[$host]}" "$host" "$(cut -d' ' -f1,2 "$key")"
    done >"$KNOWN_HOSTS"
    chmod 644 "$KNOWN_HOSTS"
}

write_sshd_config() {
    local host=$1 dir
    dir=$(host_dir "$host")/sshd
    cat >"$dir/sshd_config" <<EOF
# sshd for lab host $host
ListenAddress ${IP[$host]}
Port $SSH_PORT
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
# Keys live under a world-writable directory (/tmp).
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
# Passwords only for the unprivileged user (to test password logins); root uses keys.
PasswordAuthentication yes
PermitEmptyPasswords no
KbdInteractiveAuthentication no
AuthenticationMethods publickey password
AuthorizedKeysFile $SSH_DIR/authorized_keys
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 100
Subsystem sftp internal-sftp
EOF
}

write_mysql_config() {
    local host=$1 id=$2 dir
    dir=$(host_dir "$host")/mysql
    cat >"$dir/my.cnf" <<EOF
# MariaDB for lab host $host
[mysqld]
user                  = mysql
datadir               = $dir/data
socket                = $dir/mysqld.sock
pid-file              = $dir/mysqld.pid
log-error             = $dir/mysqld.err
port                  = $MYSQL_PORT
bind-address          = 0.0.0.0
# No DNS in the lab: reverse lookups of clients would stall.
skip-name-resolve
server_id             = $id
report_host           = $host
log_bin               = mysql-bin
relay_log             = relay-bin
log_slave_updates     = ON
binlog_format         = ROW
relay_log_recovery    = ON
# Notice a vanished primary in seconds rather than a minute.
slave_net_timeout     = 4
# Semi-synchronous replication: a commit is acknowledged to the client only after the
# replica has the transaction in its relay log, so a failover loses no acknowledged write.
# After 2 s without a replica the primary goes on alone (asynchronous). With two standbys
# one acknowledgement is enough: a standby whose IO thread is stopped misses acknowledged
# writes the other one has.
rpl_semi_sync_slave_enabled     = ON
rpl_semi_sync_master_wait_point = AFTER_SYNC
rpl_semi_sync_master_timeout    = 2000
# Small and fast: this is a test lab.
innodb_buffer_pool_size        = 32M
innodb_log_file_size           = 16M
innodb_flush_log_at_trx_commit = 2
sync_binlog                    = 0
performance_schema             = OFF
EOF
    if is_replica "$host"; then
        echo "read_only             = ON" >>"$dir/my.cnf"
    else
        echo "rpl_semi_sync_master_enabled = ON" >>"$dir/my.cnf"
    fi
}

write_redis_config() {
    local host=$1 dir
    dir=$(host_dir "$host")/redis
    write_private "$dir/redis.conf" <<EOF
# Redis for lab host $host
bind 0.0.0.0
port $REDIS_PORT
daemonize no
dir $dir/data
pidfile $dir/redis.pid
logfile $dir/redis.log
save ""
appendonly no
requirepass $(secret redis)
masterauth $(secret redis)
repl-ping-replica-period 1
repl-timeout 5
# A primary waits 5 s by default before a full sync, for more replicas to join.
repl-diskless-sync-delay 0
EOF
    if is_replica "$host"; then
        echo "replicaof ${IP[$PRIMARY]} $REDIS_PORT" >>"$dir/redis.conf"
    fi
}

haproxy_socket() { echo "$(host_dir "$1")/haproxy/admin.sock"; }

# HAProxy in TCP mode before the MariaDB pair: db1 serving, db2 in maintenance (as a
# failover leaves the old primary). mysql-check logs in as a user without privileges, so a
# hung server (connection accepted, no greeting) is DOWN too.
write_haproxy_config() {
    local host=$1 dir
    dir=$(host_dir "$host")/haproxy
    cat >"$dir/haproxy.cfg" <<EOF
# HAProxy for lab host $host
global
    stats socket $(haproxy_socket "$host") mode 600 level admin
    stats socket ipv4@${IP[$host]}:$HAPROXY_STATS_PORT level admin
    pidfile $dir/haproxy.pid

defaults
    mode tcp
    timeout connect 2s
    timeout client 1m
    timeout server 1m

frontend $HAPROXY_BACKEND
    bind ${IP[$host]}:$MYSQL_PORT
    default_backend $HAPROXY_BACKEND

backend $HAPROXY_BACKEND
    option mysql-check user $HAPROXY_CHECK_USER post-41
    server $PRIMARY ${IP[$PRIMARY]}:$MYSQL_PORT check inter 500ms fall 2 rise 1
    server $REPLICA ${IP[$REPLICA]}:$MYSQL_PORT check inter 500ms fall 2 rise 1 disabled
EOF
}

# A named `key` statement for the lab's TSIG key with the given secret.
tsig_key_file() {
    printf 'key "%s" {\n\talgorithm hmac-sha256;\n\tsecret "%s";\n};\n' "$TSIG_KEY" "$1"
}

# named, primary of the dynamic zone $ZONE: the lab's TSIG key may change the A, AAAA and
# CNAME records of $DNS_NAME and nothing else. No recursion, no rndc.
write_named_config() {
    local dir
    dir=$(host_dir "$DNS_HOST")/named
    {
        cat <<EOF
// named for lab host $DNS_HOST
options {
    directory "$dir";
    pid-file "$dir/named.pid";
    session-keyfile "$dir/session.key";
    listen-on port 53 { ${IP[$DNS_HOST]}; 127.0.0.1; };
    // A second port: a second server to ask (verify_servers) in tests.
    listen-on port $DNS_ALT_PORT { ${IP[$DNS_HOST]}; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
};
controls { };
EOF
        tsig_key_file "$(secret tsig)"
        cat <<EOF
zone "$ZONE" {
    type primary;
    file "$dir/${ZONE%.}.zone";
    update-policy { grant $TSIG_KEY name $DNS_NAME A AAAA CNAME; };
};
EOF
    } | write_private "$dir/named.conf"
    cat >"$dir/${ZONE%.}.zone" <<EOF
\$TTL 300
@    IN SOA $DNS_HOST.$ZONE hostmaster.$ZONE ( 1 3600 600 86400 30 )
     IN NS  $DNS_HOST.$ZONE
$DNS_HOST  IN A ${IP[$DNS_HOST]}
${DNS_NAME%%.*}  $DNS_TTL IN A ${IP[$PRIMARY]}
EOF
}

# Configs are written once; a test may change a running server's config
# (e.g. redis CONFIG REWRITE) and a restart must keep that.
write_configs() {
    local host dir id=0
    for host in "${HOSTS[@]}"; do
        dir=$(host_dir "$host")
        [[ -s $dir/sshd/sshd_config ]] || write_sshd_config "$host"
    done
    for host in "${DB_HOSTS[@]}"; do
        id=$((id + 1))
        dir=$(host_dir "$host")
        mkdir -p "$dir/mysql" "$dir/redis/data"
        [[ -s $dir/mysql/my.cnf ]] || write_mysql_config "$host" "$id"
        [[ -s $dir/redis/redis.conf ]] || write_redis_config "$host"
    done
    for host in "${LB_HOSTS[@]}"; do
        mkdir -p "$(host_dir "$host")/haproxy"
        [[ -s $(host_dir "$host")/haproxy/haproxy.cfg ]] || write_haproxy_config "$host"
    done
    mkdir -p "$(host_dir "$DNS_HOST")/named"
    [[ -s $(host_dir "$DNS_HOST")/named/named.conf ]] || write_named_config
}

# mariadb-install-db runs once, into a template copied for each server
# (copying takes ~0.1 s, installing 1-2 s). It runs inside db1's namespace
# so that `down` also kills it if `up` is interrupted.
prepare_mysql_datadirs() {
    local host data
    if [[ ! -e $MYSQL_TEMPLATE/.complete ]]; then
        rm -rf "$MYSQL_TEMPLATE"
        mkdir -p "$MYSQL_TEMPLATE"
        chown mysql:mysql "$MYSQL_TEMPLATE"
        log "creating MariaDB template datadir"
        ip netns exec "$(ns_of "$PRIMARY")" mariadb-install-db --no-defaults --user=mysql \
            --datadir="$MYSQL_TEMPLATE" --auth-root-authentication-method=socket \
            --skip-test-db --skip-name-resolve --innodb-log-file-size=16M \
            </dev/null >"$LAB_DIR/mysql-template.log" 2>&1 \
            || die "mariadb-install-db failed, see $LAB_DIR/mysql-template.log"
        touch "$MYSQL_TEMPLATE/.complete"
    fi
    for host in "${DB_HOSTS[@]}"; do
        data=$(host_dir "$host")/mysql/data
        if [[ ! -e $data ]]; then
            rm -rf "$data.tmp"            # left by an interrupted `up`
            cp -a "$MYSQL_TEMPLATE" "$data.tmp"
            mv "$data.tmp" "$data"
        fi
        chown -R mysql:mysql "$(host_dir "$host")/mysql"
    done
}

# ---------------------------------------------------------------- services

start_service() {
    local host=$1 svc=$2 dir
    dir=$(host_dir "$host")/$svc
    case $svc in
        mysql)
            # --defaults-file must come first.
            start_in_host "$host" "$dir/stdout.log" mariadbd --defaults-file="$dir/my.cnf" ;;
        redis)
            start_in_host "$host" "$dir/stdout.log" redis-server "$dir/redis.conf" ;;
        sshd)
            mkdir -p /run/sshd           # privilege separation directory
            start_in_host "$host" "$dir/stdout.log" /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log" ;;
        haproxy)
            start_in_host "$host" "$dir/stdout.log" haproxy -db -f "$dir/haproxy.cfg" ;;
        named)
            # -g: in the foreground, logging to stderr (stdout.log); runs as root.
            start_in_host "$host" "$dir/stdout.log" named -g -4 -c "$dir/named.conf" ;;
        postgres)
            pg_remove_stale_locks "$host"
            # setpriv execs: the launcher's pid is the postmaster's. Logs go to stderr. The
            # environment is the postgres user's own: with root's HOME, libpq in the WAL
            # receiver cannot read ~/.postgresql and a TLS connection falls back to plain text.
            start_in_host "$host" "$dir/stdout.log" setpriv --reuid="$PG_USER" --regid="$PG_USER" \
                --init-groups --reset-env "$PG_BIN/postgres" -D "$dir/data" ;;
    esac
}

start_missing_services() {
    local host svc
    for host in "${HOSTS[@]}"; do
        for svc in $(host_services "$host"); do
            svc_running "$host" "$svc" || start_service "$host" "$svc"
        done
    done
}

mysql_socket() { echo "$(host_dir "$1")/mysql/mysqld.sock"; }

# Root over the unix socket: works from the root namespace, even while the
# host's network is cut.
sql_root() {
    mariadb --no-defaults --socket="$(mysql_socket "$1")" --user=root \
        --batch --skip-column-names --execute="$2"
}

mysql_alive() { mariadb-admin --no-defaults --socket="$(mysql_socket "$1")" --user=root ping; }

mysql_tcp_alive() {
    # shellcheck disable=SC2046  # no arguments, or whole words
    mariadb --defaults-file="$SECRETS/monitor.cnf" --protocol=tcp $(mysql_tls_args) \
        --host="${IP[$1]}" --port="$MYSQL_PORT" --execute='SELECT 1'
}

# The lab's own clients speak TLS once `lab.sh tls` switched the servers to it.
mysql_tls_args() {
    if [[ -e $TLS_ON ]]; then echo "--ssl-ca=$TLS_DIR/ca.pem --ssl-verify-server-cert"; fi
}
redis_tls_args() {
    if [[ -e $TLS_ON ]]; then
        echo "--tls --cacert $TLS_DIR/ca.pem --cert $TLS_DIR/client.pem --key $TLS_DIR/client.key"
    fi
}

# One field of SHOW SLAVE STATUS, read by name.
replica_field() { replica_fields "$@"; }

# replica_fields HOST FIELD...: those fields of one SHOW SLAVE STATUS, one line each, in
# the order asked (an empty line for a field it lacks, all empty on a primary).
replica_fields() {
    local host=$1
    shift
    mariadb --no-defaults --socket="$(mysql_socket "$host")" --user=root --vertical \
        --execute='SHOW SLAVE STATUS' | awk -v want="$*" '
        { k = $1; sub(/:$/, "", k); v = $0; sub(/^[^:]*: ?/, "", v); got[k] = v }
        END { n = split(want, w, " "); for (i = 1; i <= n; i++) print got[w[i]] }'
}

replication_running() {
    [[ $(replica_field "$1" Slave_IO_Running) == Yes &&
       $(replica_field "$1" Slave_SQL_Running) == Yes ]]
}

redis_cli() {
    local host=$1
    shift
    # shellcheck disable=SC2046  # no arguments, or whole words
    REDISCLI_AUTH=$(secret redis) ip netns exec "$(ns_of "$host")" \
        redis-cli --no-auth-warning $(redis_tls_args) -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}

redis_alive() { [[ $(redis_cli "$1" PING) == PONG ]]; }

# One runtime API command line to a lab HAProxy's TCP stats socket; prints the answer.
haproxy_cmd() {
    local host=$1
    shift
    # shellcheck disable=SC2016  # for the inner shell
    timeout 5 bash -c 'exec 3<>"/dev/tcp/$0/$1" && printf "%s\n" "$2" >&3 && cat <&3' \
        "${IP[$host]}" "$HAPROXY_STATS_PORT" "$*"
}

haproxy_alive() { [[ $(haproxy_cmd "$1" show cli level) == admin* ]]; }

# HAProxy sees the primary UP (operational state 2 in `show servers state`).
haproxy_primary_up() {
    haproxy_cmd "$1" "show servers state $HAPROXY_BACKEND" \
        | awk -v s="$PRIMARY" '$4 == s && $6 == 2 { found = 1 } END { exit !found }'
}

dig_lab() { dig @"${IP[$DNS_HOST]}" +norecurse +short +time=1 +tries=1 "$@"; }

named_alive() { [[ -n $(dig_lab "$ZONE" SOA) ]]; }

# nsupdate with the lab's key file (or another one): sets $DNS_NAME's A record.
dns_set() {
    local value=$1 key=${2:-$SECRETS/tsig.key}
    printf 'server %s\nzone %s\nupdate delete %s A\nupdate add %s %s A %s\nsend\n' \
        "${IP[$DNS_HOST]}" "$ZONE" "$DNS_NAME" "$DNS_NAME" "$DNS_TTL" "$value" \
        | nsupdate -v -t 3 -k "$key"
}
redis_link_up() { redis_cli "$1" INFO replication | grep -q '^master_link_status:up'; }

ssh_login() { ssh "${SSH_OPTS[@]}" "$SSH_USER@${IP[$1]}" true </dev/null; }

# Users are created on the primary only; replication carries them over.
bootstrap_primary() {
    local marker
    marker=$(host_dir "$PRIMARY")/mysql/.bootstrapped
    [[ -e $marker ]] && return 0
    sql_root "$PRIMARY" "
        CREATE DATABASE IF NOT EXISTS $APP_DB;
        CREATE USER IF NOT EXISTS '$REPL_USER'@'%' IDENTIFIED BY '$(secret repl)';
        GRANT REPLICATION SLAVE ON *.* TO '$REPL_USER'@'%';
        CREATE USER IF NOT EXISTS '$MONITOR_USER'@'%' IDENTIFIED BY '$(secret monitor)';
        GRANT $MONITOR_GRANTS ON *.* TO '$MONITOR_USER'@'%';
        GRANT SELECT ON $APP_DB.* TO '$MONITOR_USER'@'%';
        CREATE USER IF NOT EXISTS '$ADMIN_USER'@'%' IDENTIFIED BY '$(secret admin)';
        GRANT $ADMIN_GRANTS ON *.* TO '$ADMIN_USER'@'%';
        CREATE USER IF NOT EXISTS '$WRITER_USER'@'%' IDENTIFIED BY '$(secret writer)';
        GRANT ALL ON $APP_DB.* TO '$WRITER_USER'@'%';
        CREATE USER IF NOT EXISTS '$HAPROXY_CHECK_USER'@'%';"
    touch "$marker"
}

# Points a replica at the primary unless it already replicates from
# somewhere; START SLAVE is harmless when it already runs.
configure_replica() {
    local host=$1
    if [[ -z $(replica_field "$host" Master_Host) ]]; then
        sql_root "$host" "
            CHANGE MASTER TO MASTER_HOST='${IP[$PRIMARY]}', MASTER_PORT=$MYSQL_PORT,
                MASTER_USER='$REPL_USER', MASTER_PASSWORD='$(secret repl)',
                MASTER_USE_GTID=slave_pos, MASTER_HEARTBEAT_PERIOD=1, MASTER_CONNECT_RETRY=1;"
    fi
    replication_running "$host" || sql_root "$host" "START SLAVE"
}

# Undoes the fault helpers, so `up` always ends with a working lab.
heal_faults() {
    local host svc pid
    for host in "${HOSTS[@]}"; do
        net_unhang "$host"
        if ns_exists "$host"; then freeze_host CONT "$host"; fi
        for svc in $(host_services "$host"); do
            for pid in $(svc_pids "$host" "$svc"); do
                kill -CONT "$pid" 2>/dev/null || true
            done
        done
    done
}

# wait_replication HOST: until HOST's IO and SQL threads both run.
wait_replication() {
    local host=$1
    wait_until "$LAB_TIMEOUT" "replication $PRIMARY -> $host" replication_running "$host" && return 0
    log "$host IO error: $(replica_field "$host" Last_IO_Error)"
    log "$host SQL error: $(replica_field "$host" Last_SQL_Error)"
    return 1
}

# Runs several checks concurrently; fails if any of them did.
wait_all() {
    local pid failed=0
    for pid in "$@"; do wait "$pid" || failed=1; done
    return "$failed"
}

wait_ready() {
    local host pids=()
    for host in "${DB_HOSTS[@]}"; do
        wait_until "$LAB_TIMEOUT" "MariaDB on $host over TCP (log: $(host_dir "$host")/mysql/mysqld.err)" \
            mysql_tcp_alive "$host" &
        pids+=($!)
    done
    for host in "${REPLICAS[@]}"; do
        wait_replication "$host" &
        pids+=($!)
        wait_until "$LAB_TIMEOUT" "Redis replica link on $host (log: $(host_dir "$host")/redis/redis.log)" \
            redis_link_up "$host" &
        pids+=($!)
    done
    for host in "${LB_HOSTS[@]}"; do
        wait_until "$LAB_TIMEOUT" "HAProxy on $host to see $PRIMARY UP (log: $(host_dir "$host")/haproxy/stdout.log)" \
            haproxy_primary_up "$host" &
        pids+=($!)
    done
    wait_until "$LAB_TIMEOUT" "named on $DNS_HOST (log: $(host_dir "$DNS_HOST")/named/stdout.log)" \
        named_alive &
    pids+=($!)
    for host in "${HOSTS[@]}"; do
        wait_until "$LAB_TIMEOUT" "ssh login to $host (log: $(host_dir "$host")/sshd/sshd.log)" \
            ssh_login "$host" &
        pids+=($!)
    done
    wait_all "${pids[@]}"
}

wait_service_ready() {
    local host=$1 svc=$2
    case $svc in
        mysql) wait_until "$LAB_TIMEOUT" "MariaDB on $host" mysql_alive "$host" ;;
        redis) wait_until "$LAB_TIMEOUT" "Redis on $host" redis_alive "$host" ;;
        sshd)  wait_until "$LAB_TIMEOUT" "ssh login to $host" ssh_login "$host" ;;
        haproxy) wait_until "$LAB_TIMEOUT" "HAProxy on $host" haproxy_alive "$host" ;;
        named) wait_until "$LAB_TIMEOUT" "named on $host" named_alive ;;
        postgres) wait_until "$LAB_TIMEOUT" "PostgreSQL on $host (log: $(pg_dir "$host")/stdout.log)" \
            pg_alive "$host" ;;
    esac
}

# ---------------------------------------------------------------- commands

cmd_up() {
    need_root
    local t0=$EPOCHREALTIME host
    [[ -z $(missing_packages) ]] || die "packages missing, run: $0 install"
    if [[ -n $LAB_STANDBYS_BUILT && $LAB_STANDBYS_BUILT != "$LAB_STANDBYS" ]]; then
        die "the lab was built with LAB_STANDBYS=$LAB_STANDBYS_BUILT, not $LAB_STANDBYS (run: $0 down)"
    fi
    make_lab_dir
    echo "$LAB_STANDBYS" >"$STANDBYS_FILE"
    net_up
    write_hosts_files
    make_secrets
    make_ssh_keys
    make_ssh_user
    write_configs
    prepare_mysql_datadirs
    heal_faults
    start_missing_services
    for host in "${DB_HOSTS[@]}"; do
        wait_until "$LAB_TIMEOUT" "MariaDB on $host (log: $(host_dir "$host")/mysql/mysqld.err)" \
            mysql_alive "$host" || die "MariaDB on $host did not start"
    done
    bootstrap_primary
    unlock_repl_accounts
    for host in "${REPLICAS[@]}"; do configure_replica "$host"; done
    wait_ready || die "lab is not up"
    if pg_on; then
        for host in "${DB_HOSTS[@]}"; do
            wait_service_ready "$host" postgres || die "PostgreSQL on $host did not start"
        done
    fi
    log "lab is up in $(elapsed_since "$t0")s (LAB_DIR=$LAB_DIR)"
}

make_ssh_user() {
    # "*" rather than useradd's "!": sshd without PAM treats "!" as a locked account.
    id -u "$SSH_USER" >/dev/null 2>&1 \
        || useradd --non-unique --uid 0 --gid 0 --no-create-home --home-dir "$LAB_DIR" \
            --shell /bin/sh --comment "deadpool lab" --password "*" "$SSH_USER"
    id -u "$SUDO_USER_NAME" >/dev/null 2>&1 \
        || useradd --system --no-create-home --home-dir "$LAB_DIR" --shell /bin/sh \
            --comment "deadpool lab" --password "*" "$SUDO_USER_NAME"
    printf '%s:%s\n' "$SUDO_USER_NAME" "$(secret ssh-dpapp)" | chpasswd
    # No sudo rights until a test installs the rules it means to prove (`lab.sh sudoers`).
    [[ -e $SUDOERS ]] || install -m 440 /dev/null "$SUDOERS"
}

# sshd-keys HOST PORT: a second sshd on HOST, on PORT, with an RSA, an ECDSA and an Ed25519
# host key (the lab's own sshd has Ed25519 only). Prints the directory holding the keys.
cmd_sshd_keys() {
    local host=$1 port=$2 dir t
    dir=$(host_dir "$host")/sshd-keys
    mkdir -p "$dir"
    for t in rsa ecdsa ed25519; do
        [[ -s $dir/key_$t ]] || ssh-keygen -q -t "$t" -N '' -C "$host-$t" -f "$dir/key_$t"
    done
    cat >"$dir/sshd_config" <<EOF
ListenAddress ${IP[$host]}
Port $port
HostKey $dir/key_ed25519
HostKey $dir/key_ecdsa
HostKey $dir/key_rsa
PidFile $dir/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile $SSH_DIR/authorized_keys
UseDNS no
EOF
    mkdir -p /run/sshd
    start_in_host "$host" "$dir/stdout.log" /usr/sbin/sshd -D -f "$dir/sshd_config" -E "$dir/sshd.log"
    wait_until "$LAB_TIMEOUT" "sshd on $host port $port" \
        ssh-keyscan -T 1 -p "$port" -t ed25519 "${IP[$host]}" || die "sshd on $host:$port did not start"
    echo "$dir"
}

# sudoers FILE: installs FILE as the lab's sudoers rules, after visudo accepts it.
cmd_sudoers() {
    local file=$1
    visudo -qcf "$file" || die "visudo refuses $file"
    install -m 440 "$file" "$SUDOERS"
}

# Kills every process of every lab namespace, then removes namespaces,
# links, the firewall rule and all files. Never fails on missing pieces.
cmd_down() {
    need_root
    local t0=$EPOCHREALTIME host ns pids tries extra
    # Every lab namespace, however many client hosts the lab was built with.
    mapfile -t extra < <(ip netns list 2>/dev/null | awk '$1 ~ /^dp-/ { sub(/^dp-/, "", $1); print $1 }')
    HOSTS+=("${CLUSTER_HOSTS[@]}")
    # db3 whatever LAB_STANDBYS says: a veth may outlive its namespace and the record.
    if ! is_host "$EXTRA_STANDBY"; then
        HOSTS+=("$EXTRA_STANDBY")
        IP[$EXTRA_STANDBY]=$EXTRA_STANDBY_IP
    fi
    for host in "${extra[@]}"; do
        is_host "$host" || { HOSTS+=("$host"); IP[$host]=0.0.0.0; }
    done
    for host in "${HOSTS[@]}"; do
        ns=$(ns_of "$host")
        if ns_exists "$host"; then
            # Repeat: a dying parent may still fork (e.g. sshd).
            for ((tries = 0; tries < 50; tries++)); do
                mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
                ((${#pids[@]} > 0)) || break
                kill -9 "${pids[@]}" 2>/dev/null || true
                sleep 0.05
            done
            ((${#pids[@]} == 0)) || log "warning: processes left in $ns: ${pids[*]}"
            ip netns del "$ns" 2>/dev/null || true
        fi
        ip link del "dpv-$host" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
    rmdir /etc/netns 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    if command -v iptables >/dev/null; then
        while iptables -w -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do
            iptables -w -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
        done
    fi
    local user
    for user in "$SSH_USER" "$SUDO_USER_NAME"; do
        if getent passwd "$user" | grep -q ':deadpool lab:'; then
            userdel "$user" 2>/dev/null || sed -i "/^$user:/d" /etc/passwd /etc/shadow
        fi
    done
    rm -f "$SUDOERS"
    if [[ -e $MARKER ]]; then
        rm -rf "$LAB_DIR"
    elif [[ -d $LAB_DIR ]]; then
        log "warning: $LAB_DIR has no lab marker; left in place"
    fi
    log "lab is down in $(elapsed_since "$t0")s"
}

cmd_kill() {
    local host=$1 svc=$2 pids
    mapfile -t pids < <(svc_pids "$host" "$svc")
    ((${#pids[@]} > 0)) || { log "$svc on $host is not running"; return 0; }
    kill -9 "${pids[@]}"
    # Wait until gone, so a following `start` finds the port free.
    wait_until 5 "$svc on $host to die" svc_gone "$host" "$svc"
}

cmd_start() {
    local host=$1 svc=$2
    if svc_running "$host" "$svc"; then
        log "$svc on $host is already running"
        return 0
    fi
    start_service "$host" "$svc"
    wait_service_ready "$host" "$svc" || die "$svc on $host did not come up"
}

cmd_signal() {
    local sig=$1 host=$2 svc=$3 pids
    mapfile -t pids < <(svc_pids "$host" "$svc")
    ((${#pids[@]} > 0)) || die "$svc on $host is not running"
    kill "-$sig" "${pids[@]}"
}

# freeze_host STOP|CONT HOST: every process of the host's namespace stopped or resumed. A
# PostgreSQL server is only hung when all of it is: a SIGSTOPped postmaster alone leaves
# its sessions and WAL senders running (a standby stays streaming).
freeze_host() {
    local sig=$1 host=$2 pids
    mapfile -t pids < <(ip netns pids "$(ns_of "$host")" 2>/dev/null)
    ((${#pids[@]} > 0)) || return 0
    kill "-$sig" "${pids[@]}" 2>/dev/null || true
}

# ---------------------------------------------------------------- PostgreSQL

pg_on() { [[ -e $PG_ON ]]; }
pg_dir() { echo "$(host_dir "$1")/postgres"; }
pg_data() { echo "$(pg_dir "$1")/data"; }
pg_socket_dir() { echo "$(pg_dir "$1")/run"; }

# pg_psql HOST SQL [DB]: SQL as the superuser over the host's own unix socket; unaligned
# tuples only. SQL "-" reads it from stdin (for statements holding passwords).
pg_psql() {
    local host=$1 sql=$2 db=${3:-postgres} args
    args=(-X -q -A -t -v ON_ERROR_STOP=1 -h "$(pg_socket_dir "$host")" -p "$PG_PORT"
          -U "$PG_SUPERUSER" -d "$db")
    if [[ $sql == - ]]; then
        PGCONNECT_TIMEOUT=3 timeout 20 "$PG_BIN/psql" "${args[@]}" -f -
    else
        PGCONNECT_TIMEOUT=3 timeout 20 "$PG_BIN/psql" "${args[@]}" -c "$sql" </dev/null
    fi
}

# A killed postmaster stays a zombie until PID 1 reaps it, which here can take seconds: its
# pid still "exists", and a new postmaster refuses to start over its lock files. Called
# only when no postgres process runs on the host, so whatever locks are left are stale.
pg_remove_stale_locks() {
    local host=$1
    svc_running "$host" postgres && return 0
    rm -f "$(pg_data "$host")/postmaster.pid" "$(pg_socket_dir "$host")/.s.PGSQL.$PG_PORT.lock"
}

pg_alive() { [[ $(pg_psql "$1" 'SELECT 1' 2>/dev/null) == 1 ]]; }

# The WAL receiver streams (from whatever primary its primary_conninfo names).
pg_streaming() {
    [[ $(pg_psql "$1" "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null) == streaming ]]
}

# initdb runs once per lab, into a template the primary is copied from (initdb ~0.8 s).
# Everything every server shares goes in the template's files, which pg_basebackup copies
# to the standbys: the settings, pg_hba.conf, and an include of the host's own settings
# (../host.conf: address, socket directory, name, TLS), so a copy needs no editing.
prepare_pg_template() {
    [[ -e $PG_TEMPLATE/.complete ]] && return 0
    rm -rf "$PG_TEMPLATE"
    mkdir -p "$PG_TEMPLATE"
    chown "$PG_USER:$PG_USER" "$PG_TEMPLATE"
    log "creating the PostgreSQL template cluster"
    # In db1's namespace, so that `down` also kills it if `pg-up` is interrupted.
    ip netns exec "$(ns_of "$PRIMARY")" setpriv --reuid="$PG_USER" --regid="$PG_USER" \
        --init-groups --reset-env "$PG_BIN/initdb" -D "$PG_TEMPLATE/data" -U "$PG_SUPERUSER" \
        --auth-local=trust --auth-host=reject -E UTF8 --locale=C --no-sync --no-instructions \
        </dev/null >"$LAB_DIR/pg-template.log" 2>&1 \
        || die "initdb failed, see $LAB_DIR/pg-template.log"
    cat >>"$PG_TEMPLATE/data/postgresql.conf" <<EOC

# ---- lab.sh: every lab server
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
# Enough for a standby that missed a test's writes to catch up from the primary's pg_wal.
wal_keep_size = '256MB'
# A standby notices a hung primary in seconds (the default is a minute), retries a gone one
# every second (default 5 s), and tells its primary what it has every second.
wal_receiver_timeout = '5s'
wal_retrieve_retry_interval = '1s'
wal_receiver_status_interval = '1s'
# A test lab: small, and no fsync (a killed server loses nothing; only a machine crash would).
shared_buffers = '16MB'
max_connections = 50
fsync = off
# Only root and postgres may use the unix socket, where the superuser logs in without a
# password.
unix_socket_permissions = 0700
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = on
log_disconnections = on
# The host's own settings: listen_addresses, unix_socket_directories, cluster_name, TLS.
include '../host.conf'
EOC
    cat >"$PG_TEMPLATE/data/pg_hba.conf" <<EOC
# lab.sh: the superuser over the unix socket only; every other login by SCRAM password
# from the lab's subnet (\`pg-tls\` makes the host lines hostssl).
local  all          $PG_SUPERUSER                                  trust
host   replication  $REPL_USER                     $SUBNET  scram-sha-256
host   all          $MONITOR_USER,$ADMIN_USER,$WRITER_USER  $SUBNET  scram-sha-256
EOC
    touch "$PG_TEMPLATE/.complete"
}

# The host's own settings, included by the shared postgresql.conf.
write_pg_host_conf() {
    local host=$1
    cat >"$(pg_dir "$host")/host.conf" <<EOC
# lab.sh: PostgreSQL on lab host $host
listen_addresses = '${IP[$host]}'
port = $PG_PORT
unix_socket_directories = '$(pg_socket_dir "$host")'
cluster_name = '$host'
EOC
    if [[ -e $PG_TLS_ON ]]; then pg_host_tls_conf "$host" >>"$(pg_dir "$host")/host.conf"; fi
}

pg_prepare_host() {
    local host=$1 dir
    dir=$(pg_dir "$host")
    mkdir -p "$dir/run"
    chown "$PG_USER:$PG_USER" "$dir" "$dir/run"
    chmod 700 "$dir/run"
    [[ -s $dir/host.conf ]] || write_pg_host_conf "$host"
}

# Roles are created on the primary only; the standbys get them by replication.
pg_bootstrap_primary() {
    local marker
    marker=$(pg_dir "$PRIMARY")/.bootstrapped
    [[ -e $marker ]] && return 0
    pg_psql "$PRIMARY" - <<EOS || die "creating the PostgreSQL roles on $PRIMARY failed"
CREATE ROLE $REPL_USER LOGIN REPLICATION PASSWORD '$(secret repl)';
CREATE ROLE $MONITOR_USER LOGIN PASSWORD '$(secret monitor)';
$PG_MONITOR_GRANTS
CREATE ROLE $ADMIN_USER LOGIN PASSWORD '$(secret admin)';
$PG_ADMIN_GRANTS
CREATE ROLE $WRITER_USER LOGIN PASSWORD '$(secret writer)';
CREATE DATABASE $APP_DB OWNER $WRITER_USER;
EOS
    touch "$marker"
}

# A standby: a base backup of the primary, taken from inside the standby's host (so the
# primary sees it come from the standby's address) as the replication role. -R writes
# standby.signal and primary_conninfo (with connect_timeout=3 and the password read from
# the passfile) into postgresql.auto.conf.
pg_make_standby() {
    local host=$1 data
    data=$(pg_data "$host")
    [[ -e $data/PG_VERSION ]] && return 0
    rm -rf "$data"
    # The password from a file of the postgres user's, never on a command line.
    printf '*:*:*:%s:%s\n' "$REPL_USER" "$(secret repl)" | write_private "$(pg_dir "$host")/repl.pgpass"
    chown "$PG_USER:$PG_USER" "$(pg_dir "$host")/repl.pgpass"
    ip netns exec "$(ns_of "$host")" timeout "$LAB_TIMEOUT" \
        setpriv --reuid="$PG_USER" --regid="$PG_USER" --init-groups --reset-env \
        env PGPASSFILE="$(pg_dir "$host")/repl.pgpass" PGCONNECT_TIMEOUT=3 "$PG_BIN/pg_basebackup" -h "${IP[$PRIMARY]}" -p "$PG_PORT" -U "$REPL_USER" \
        -D "$data" -R -X stream -c fast --no-sync \
        </dev/null >"$(pg_dir "$host")/basebackup.log" 2>&1 \
        || { rm -rf "$data"; log "pg_basebackup for $host failed: $(cat "$(pg_dir "$host")/basebackup.log")"; return 1; }
}

pg_start() {
    local host=$1
    svc_running "$host" postgres && return 0
    start_service "$host" postgres
}

# pg-up: the primary from the template, roles, then the standbys by base backup; waits
# until every standby streams. Idempotent, like `up`.
cmd_pg_up() {
    need_root
    local t0=$EPOCHREALTIME host data pids=()
    [[ -x $PG_BIN/postgres ]] || die "PostgreSQL 15 is not installed, run: $0 install"
    [[ -e $MARKER ]] && ns_exists "$PRIMARY" || die "the lab is not up (run: $0 up)"
    for host in "${DB_HOSTS[@]}"; do pg_prepare_host "$host"; done
    prepare_pg_template
    data=$(pg_data "$PRIMARY")
    if [[ ! -e $data ]]; then
        rm -rf "$data.tmp"
        cp -a "$PG_TEMPLATE/data" "$data.tmp"
        mv "$data.tmp" "$data"
    fi
    pg_start "$PRIMARY"
    wait_service_ready "$PRIMARY" postgres || die "PostgreSQL on $PRIMARY did not start"
    pg_bootstrap_primary
    for host in "${REPLICAS[@]}"; do
        pg_make_standby "$host" &
        pids+=($!)
    done
    wait_all "${pids[@]}" || die "a PostgreSQL standby could not be made"
    for host in "${REPLICAS[@]}"; do pg_start "$host"; done
    pids=()
    for host in "${REPLICAS[@]}"; do
        wait_until "$LAB_TIMEOUT" "PostgreSQL standby $host to stream (log: $(pg_dir "$host")/stdout.log)" \
            pg_streaming "$host" &
        pids+=($!)
    done
    wait_all "${pids[@]}" || die "PostgreSQL replication is not up"
    touch "$PG_ON"
    if [[ -e $TLS_ON ]]; then pg_tls; fi
    log "PostgreSQL is up in $(elapsed_since "$t0")s ($PRIMARY primary; standbys: ${REPLICAS[*]})"
}

# host.conf lines for TLS with the host's certificate from the lab's CA.
pg_host_tls_conf() {
    local dir
    dir=$(pg_dir "$1")/tls
    printf '%s\n' "# lab.sh pg-tls" "ssl = on" \
        "ssl_cert_file = '$dir/$1.pem'" "ssl_key_file = '$dir/$1.key'"
}

# ssl = on (a reload applies it) and every TCP login over TLS only; the standbys'
# primary_conninfo (sslmode=prefer from pg_basebackup) then connects over TLS too.
pg_tls() {
    local host dir
    pg_on || die "PostgreSQL is not up (run: $0 pg-up)"
    if [[ -e $PG_TLS_ON ]]; then log "PostgreSQL already speaks TLS"; return 0; fi
    make_tls_files
    for host in "${DB_HOSTS[@]}"; do
        dir=$(pg_dir "$host")/tls
        mkdir -p "$dir"
        cp "$TLS_DIR/ca.pem" "$TLS_DIR/$host.pem" "$TLS_DIR/$host.key" "$dir/"
        chown -R "$PG_USER:$PG_USER" "$dir"
        chmod 600 "$dir/$host.key"
        pg_host_tls_conf "$host" >>"$(pg_dir "$host")/host.conf"
        sed -i 's/^host\([[:space:]]\)/hostssl\1/' "$(pg_data "$host")/pg_hba.conf"
        pg_psql "$host" "SELECT pg_reload_conf()" >/dev/null || die "PostgreSQL on $host did not reload"
    done
    touch "$PG_TLS_ON"
    local t0=$EPOCHREALTIME
    # Replication connections made before TLS are plain: the WAL senders are ended, and the
    # standbys connect again (within wal_retrieve_retry_interval) over TLS.
    for host in "${DB_HOSTS[@]}"; do
        pg_psql "$host" "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication" >/dev/null \
            || die "could not end the WAL senders on $host"
    done
    for host in "${REPLICAS[@]}"; do
        wait_until "$LAB_TIMEOUT" "$host to stream over TLS (log: $(pg_dir "$host")/stdout.log)" \
            pg_streaming_over_tls "$host" || die "$host does not stream over TLS"
    done
    # Proof: a login verified against the CA works, one without TLS is refused.
    for host in "${DB_HOSTS[@]}"; do
        wait_until "$LAB_TIMEOUT" "a TLS login to PostgreSQL on $host (log: $(pg_dir "$host")/stdout.log)" \
            pg_tcp_login "$host" verify-full || die "no TLS login to PostgreSQL on $host"
        if pg_tcp_login "$host" disable; then
            die "PostgreSQL on $host still accepts logins without TLS"
        fi
    done
    log "PostgreSQL speaks TLS only, verified in $(elapsed_since "$t0")s (CA: $TLS_DIR/ca.pem)"
}

# The standby streams, and its primary sees that connection encrypted.
pg_streaming_over_tls() {
    pg_streaming "$1" || return 1
    [[ $(pg_psql "$PRIMARY" "SELECT s.ssl FROM pg_stat_replication AS r JOIN pg_stat_ssl AS s USING (pid) WHERE r.application_name = '$1'") == t ]]
}

# A login over TCP as the monitor, with this sslmode.
pg_tcp_login() {
    [[ $(PGPASSWORD=$(secret monitor) PGSSLMODE=$2 PGSSLROOTCERT=$TLS_DIR/ca.pem PGCONNECT_TIMEOUT=3 \
        timeout 10 "$PG_BIN/psql" -X -A -t -h "${IP[$1]}" -p "$PG_PORT" -U "$MONITOR_USER" \
        -d postgres -c 'SELECT 1' </dev/null 2>/dev/null) == 1 ]]
}

# What a PostgreSQL server is, in one line: primary, or a standby and its WAL receiver.
pg_summary() {
    local line
    line=$(pg_psql "$1" "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby, receiver ' || coalesce((SELECT status || ' from ' || coalesce(sender_host, '?') FROM pg_stat_wal_receiver), 'none') ELSE 'primary, timeline ' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || CASE WHEN current_setting('default_transaction_read_only') = 'on' THEN ', default_transaction_read_only on' ELSE '' END END" 2>/dev/null) \
        || line="no answer"
    echo "$line"
}

# Drops everything in and out of eth0 inside the host: peers see a hung
# host (timeouts), not a refused connection. Loopback and unix sockets work.
net_hang() {
    local ns rule
    ns=$(ns_of "$1")
    for rule in "INPUT -i eth0 -j DROP" "OUTPUT -o eth0 -j DROP"; do
        # shellcheck disable=SC2086
        ip netns exec "$ns" iptables -w -C $rule 2>/dev/null \
            || ip netns exec "$ns" iptables -w -I $rule
    done
}

net_unhang() {
    local ns rule
    ns=$(ns_of "$1")
    ns_exists "$1" || return 0
    for rule in "INPUT -i eth0 -j DROP" "OUTPUT -o eth0 -j DROP"; do
        # shellcheck disable=SC2086
        while ip netns exec "$ns" iptables -w -C $rule 2>/dev/null; do
            ip netns exec "$ns" iptables -w -D $rule
        done
    done
}

net_hung() { ip netns exec "$(ns_of "$1")" iptables -w -C INPUT -i eth0 -j DROP 2>/dev/null; }

# Cuts the host off from one peer only (e.g. the deadpool host at the bridge address),
# while every other host still reaches it: a partial partition.
net_cutoff() {
    local ns=$(ns_of "$1") peer=$2
    ip netns exec "$ns" iptables -w -I INPUT -i eth0 -s "$peer" -j DROP
    ip netns exec "$ns" iptables -w -I OUTPUT -o eth0 -d "$peer" -j DROP
}

# vip add|del|show HOST [CIDR]: a virtual address on the host's eth0.
cmd_vip() {
    local action=$1 host=$2 cidr=${3:-} ns
    ns=$(ns_of "$host")
    case $action in
        add) ip -n "$ns" addr add "$cidr" dev eth0
             ip netns exec "$ns" arping -U -c 1 -I eth0 "${cidr%/*}" >/dev/null 2>&1 || true ;;
        del) ip -n "$ns" addr del "$cidr" dev eth0 ;;
        show) ip -n "$ns" -o -4 addr show dev eth0 ;;
        *) usage ;;
    esac
}

# sudo-password HOST: on that host only, sudo asks the unprivileged user for a password, so
# `sudo -n` fails there (a host whose sudoers the admin forgot). `ip netns exec` bind-mounts
# every entry of /etc/netns/NS over /etc: a sudoers.d of the host's own, seen by an sshd
# started afterwards, which is why sshd is restarted. `down` removes /etc/netns/NS.
cmd_sudo_password() {
    local host=$1 dir
    dir=/etc/netns/$(ns_of "$host")/sudoers.d
    mkdir -p "$dir"
    chmod 755 "$dir"
    printf '%s ALL=(root) /bin/sh\n' "$SUDO_USER_NAME" >"$dir/deadpool-lab"
    chmod 440 "$dir/deadpool-lab"
    cmd_kill "$host" sshd
    cmd_start "$host" sshd
    # Proof, from inside the host: the login works, sudo without a password does not.
    if ip netns exec "$(ns_of "$host")" su -s /bin/sh "$SUDO_USER_NAME" -c 'sudo -n /bin/sh -c true' 2>/dev/null; then
        die "sudo on $host still needs no password"
    fi
}

# replica-filepos: the replica follows the primary by binary log file and position
# (MASTER_USE_GTID=no), starting where it has applied up to.
cmd_replica_filepos() {
    local file pos
    sql_root "$REPLICA" "STOP SLAVE"
    file=$(replica_field "$REPLICA" Relay_Master_Log_File)
    pos=$(replica_field "$REPLICA" Exec_Master_Log_Pos)
    [[ -n $file && $pos =~ ^[0-9]+$ ]] || die "no applied position on $REPLICA ($file:$pos)"
    sql_root "$REPLICA" "CHANGE MASTER TO MASTER_USE_GTID=no, MASTER_LOG_FILE='$file', MASTER_LOG_POS=$pos;
        START SLAVE"
    wait_replication "$REPLICA" || die "replication by file/position did not start"
    [[ $(replica_field "$REPLICA" Using_Gtid) == No ]] || die "the replica still uses GTID"
}

# ---------------------------------------------------------------- standbys

# replica-io stop|start HOST: the replica's IO thread only. Stopped, HOST receives nothing
# more from its primary while its SQL thread still runs (a check that looks only at the SQL
# thread still calls replication running): writes on the primary then miss HOST.
cmd_replica_io() {
    local action=$1 host=$2
    case $action in
        stop)
            sql_root "$host" "STOP SLAVE IO_THREAD"
            wait_until "$LAB_TIMEOUT" "the IO thread of $host to stop" replica_io_is "$host" No \
                || die "the IO thread of $host still runs" ;;
        start)
            sql_root "$host" "START SLAVE IO_THREAD"
            wait_until "$LAB_TIMEOUT" "the IO thread of $host to run" replica_io_is "$host" Yes \
                || die "the IO thread of $host does not run: $(replica_field "$host" Last_IO_Error)" ;;
        *) usage ;;
    esac
    [[ $(replica_field "$host" Slave_SQL_Running) == Yes ]] || die "the SQL thread of $host is not running"
}

replica_io_is() { [[ $(replica_field "$1" Slave_IO_Running) == "$2" ]]; }

repl_lock_marker() { echo "$(host_dir "$1")/mysql/.repl-locked"; }

# repl-lock|repl-unlock HOST: the replication account locked on HOST alone (sql_log_bin=0,
# so no other server and no GTID sees the change). A replica repointed to HOST is refused
# at login (error 4151, "this account is locked") and its IO thread keeps retrying, while
# HOST goes on replicating from its own primary and every other server still serves the
# account. `up` unlocks it again.
cmd_repl_lock() {
    local action=${1^^} host=$2
    sql_root "$host" "SET SESSION sql_log_bin = 0; ALTER USER '$REPL_USER'@'%' ACCOUNT $action"
    if [[ $action == LOCK ]]; then touch "$(repl_lock_marker "$host")"; else rm -f "$(repl_lock_marker "$host")"; fi
}

unlock_repl_accounts() {
    local host
    for host in "${DB_HOSTS[@]}"; do
        if [[ -e $(repl_lock_marker "$host") ]]; then cmd_repl_lock UNLOCK "$host"; fi
    done
}

# repoint HOST SOURCE: HOST replicates from SOURCE from now on (same account, GTID
# slave_pos). Does not wait: read `replica-field HOST Slave_IO_Running` for the outcome.
cmd_repoint() {
    local host=$1 source=$2
    [[ $host != "$source" ]] || die "$host cannot replicate from itself"
    sql_root "$host" "STOP SLAVE; CHANGE MASTER TO MASTER_HOST='${IP[$source]}'; START SLAVE"
}

# ---------------------------------------------------------------- TLS

# make_cert NAME SUBJECT_CN [SAN]: a key and a certificate signed by the lab's CA, in TLS_DIR.
make_cert() {
    local name=$1 cn=$2 san=${3:-}
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" -subj "/CN=$cn" 2>/dev/null \
        || die "openssl cannot make a key for $name"
    {
        echo "basicConstraints = CA:FALSE"
        echo "keyUsage = digitalSignature, keyEncipherment"
        echo "extendedKeyUsage = serverAuth, clientAuth"
        if [[ -n $san ]]; then echo "subjectAltName = $san"; fi
    } >"$TLS_DIR/$name.ext"
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
        -CAcreateserial -days 2 -extfile "$TLS_DIR/$name.ext" -out "$TLS_DIR/$name.pem" 2>/dev/null \
        || die "openssl cannot sign the certificate of $name"
    chmod 600 "$TLS_DIR/$name.key"
    chmod 644 "$TLS_DIR/$name.pem"
}

# The CA, each database host's server certificate (naming its address, its name and
# 127.0.0.1), and a client certificate for deadpool and the lab's own clients.
make_tls_files() {
    local host svc
    command -v openssl >/dev/null || die "openssl is missing, run: $0 install"
    if [[ ! -s $TLS_DIR/client.pem ]]; then
        mkdir -p "$TLS_DIR"
        chmod 700 "$TLS_DIR"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" -subj "/CN=deadpool lab CA" 2>/dev/null \
            || die "openssl cannot make the lab's CA"
        chmod 644 "$TLS_DIR/ca.pem"
        for host in "${DB_HOSTS[@]}"; do
            make_cert "$host" "$host" "IP:${IP[$host]}, DNS:$host, IP:127.0.0.1"
        done
        make_cert client deadpool
    fi
    # Each server's own copy, readable by the user its daemon runs as (`tls` and `pg-tls`
    # may come in either order).
    for host in "${DB_HOSTS[@]}"; do
        for svc in mysql redis; do
            mkdir -p "$(host_dir "$host")/$svc/tls"
            cp "$TLS_DIR/ca.pem" "$TLS_DIR/$host.pem" "$TLS_DIR/$host.key" "$(host_dir "$host")/$svc/tls/"
        done
        chown -R mysql:mysql "$(host_dir "$host")/mysql/tls"
    done
}

mysql_stop() {
    mariadb-admin --no-defaults --socket="$(mysql_socket "$1")" --user=root shutdown >/dev/null 2>&1 || true
    wait_until "$LAB_TIMEOUT" "MariaDB on $1 to stop" svc_gone "$1" mysql || cmd_kill "$1" mysql
}

# tls: the servers require TLS from now on (a lab that already does is left as it is).
cmd_tls() {
    local host dir t0=$EPOCHREALTIME
    if [[ -e $TLS_ON ]]; then log "the lab already speaks TLS"; return 0; fi
    make_tls_files
    for host in "${DB_HOSTS[@]}"; do
        dir=$(host_dir "$host")
        printf '%s\n' "# lab.sh tls" \
            "ssl-ca                   = $dir/mysql/tls/ca.pem" \
            "ssl-cert                 = $dir/mysql/tls/$host.pem" \
            "ssl-key                  = $dir/mysql/tls/$host.key" \
            "require_secure_transport = ON" >>"$dir/mysql/my.cnf"
        printf '%s\n' "# lab.sh tls: TLS only, client certificates required, replication over TLS" \
            "port 0" \
            "tls-port $REDIS_PORT" \
            "tls-cert-file $dir/redis/tls/$host.pem" \
            "tls-key-file $dir/redis/tls/$host.key" \
            "tls-ca-cert-file $dir/redis/tls/ca.pem" \
            "tls-auth-clients yes" \
            "tls-replication yes" >>"$dir/redis/redis.conf"
    done
    touch "$TLS_ON"
    for host in "${DB_HOSTS[@]}"; do
        mysql_stop "$host"
        start_service "$host" mysql
        wait_until "$LAB_TIMEOUT" "MariaDB on $host with TLS (log: $(host_dir "$host")/mysql/mysqld.err)" \
            mysql_alive "$host" || die "MariaDB on $host did not come back with TLS"
    done
    # Accounts come from the primary; replication carries the change.
    sql_root "$PRIMARY" "ALTER USER '$ADMIN_USER'@'%' REQUIRE X509"
    for host in "${REPLICAS[@]}"; do
        sql_root "$host" "STOP SLAVE;
            CHANGE MASTER TO MASTER_SSL=1, MASTER_SSL_CA='$(host_dir "$host")/mysql/tls/ca.pem',
                MASTER_SSL_VERIFY_SERVER_CERT=1;
            START SLAVE"
        wait_replication "$host" || die "replication over TLS to $host did not start"
    done
    for host in "${DB_HOSTS[@]}"; do
        cmd_kill "$host" redis
        start_service "$host" redis
        wait_until "$LAB_TIMEOUT" "Redis on $host with TLS (log: $(host_dir "$host")/redis/redis.log)" \
            redis_alive "$host" || die "Redis on $host did not come back with TLS"
    done
    for host in "${REPLICAS[@]}"; do
        wait_until "$LAB_TIMEOUT" "the Redis replica link on $host over TLS (log: $(host_dir "$host")/redis/redis.log)" \
            redis_link_up "$host" || die "Redis replication over TLS to $host did not start"
    done
    # Proof: logins over TLS work, plain-text ones are refused.
    for host in "${DB_HOSTS[@]}"; do
        mysql_tcp_alive "$host" >/dev/null 2>&1 || die "no TLS login to MariaDB on $host"
        if mariadb --defaults-file="$SECRETS/monitor.cnf" --protocol=tcp --skip-ssl \
            --host="${IP[$host]}" --port="$MYSQL_PORT" --execute='SELECT 1' >/dev/null 2>&1; then
            die "MariaDB on $host still accepts logins without TLS"
        fi
    done
    if pg_on; then pg_tls; fi
    log "the lab speaks TLS in $(elapsed_since "$t0")s (CA: $TLS_DIR/ca.pem)"
}

# dns-rekey: named gets a new secret for the lab's key, and deadpool's key file
# ($SECRETS/tsig) is now wrong. Waits until named refuses the old secret.
cmd_dns_rekey() {
    local conf secret pids
    conf=$(host_dir "$DNS_HOST")/named/named.conf
    secret=$(head -c 32 /dev/urandom | base64)
    # base64 never holds `|`.
    sed -i "s|secret \".*\";|secret \"$secret\";|" "$conf"
    mapfile -t pids < <(svc_pids "$DNS_HOST" named)
    ((${#pids[@]} > 0)) || die "named on $DNS_HOST is not running"
    kill -HUP "${pids[@]}"
    wait_until 10 "named on $DNS_HOST to refuse the old secret" old_secret_refused \
        || die "named on $DNS_HOST still accepts the old secret"
}

old_secret_refused() {
    local said
    said=$(printf 'server %s\nzone %s\nprereq yxdomain %s\nsend\n' "${IP[$DNS_HOST]}" "$ZONE" "$ZONE" \
        | nsupdate -v -t 2 -k "$SECRETS/tsig.key" 2>&1) || true
    [[ $said == *BADSIG* ]]
}

# "running (pid N)", "stopped (pid N)" (SIGSTOP) or "not running".
svc_state() {
    local pids pid state=running
    mapfile -t pids < <(svc_pids "$1" "$2")
    if ((${#pids[@]} == 0)); then echo "not running"; return 0; fi
    for pid in "${pids[@]}"; do
        if pid_stopped "$pid"; then state=stopped; fi
    done
    echo "$state (pid ${pids[*]})"
}

cmd_status() {
    local host svc state
    for host in "${HOSTS[@]}"; do
        if ! ns_exists "$host"; then
            state="absent"
        elif net_hung "$host"; then
            state="hung"
        else
            state="up"
        fi
        printf '%-5s %-6s %s\n' "$host" net "$state"
        for svc in $(host_services "$host"); do
            printf '%-5s %-6s %s\n' "$host" "$svc" "$(svc_state "$host" "$svc")"
        done
        # A SIGSTOPped server would hang the query, even over its unix socket.
        if is_db_host "$host" && [[ $(svc_state "$host" mysql) == running* ]]; then
            printf '%-5s %-6s %s\n' "$host" repl "$(replication_summary "$host")"
        fi
        if is_db_host "$host" && pg_on && [[ $(svc_state "$host" postgres) == running* ]]; then
            printf '%-5s %-6s %s\n' "$host" pg "$(pg_summary "$host")"
        fi
    done
}

# Where a server replicates from and whether its threads run, in one line.
replication_summary() {
    local from
    if ! from=$(replica_field "$1" Master_Host 2>/dev/null); then echo "no answer"; return 0; fi
    if [[ -z $from ]]; then echo "not a replica"; return 0; fi
    printf 'from %s, io %s, sql %s\n' "$from" "$(replica_field "$1" Slave_IO_Running)" \
        "$(replica_field "$1" Slave_SQL_Running)"
}

cmd_env() {
    local host up
    emit() { printf 'export %s=%q\n' "$1" "$2"; }
    emit LAB_DIR "$LAB_DIR"
    emit LAB_BRIDGE_IP "${BRIDGE_CIDR%/*}"
    emit LAB_STANDBYS "$LAB_STANDBYS"
    for host in "${HOSTS[@]}"; do
        up=${host^^}
        emit "LAB_${up}_IP" "${IP[$host]}"
        emit "LAB_${up}_NS" "$(ns_of "$host")"
    done
    for host in "${DB_HOSTS[@]}"; do
        emit "LAB_${host^^}_MYSQL_SOCKET" "$(mysql_socket "$host")"
    done
    emit LAB_MYSQL_PORT "$MYSQL_PORT"
    # PostgreSQL (`pg-up`): each host's socket directory, for the superuser's logins.
    for host in "${DB_HOSTS[@]}"; do
        emit "LAB_${host^^}_PG_SOCKET_DIR" "$(pg_socket_dir "$host")"
        emit "LAB_${host^^}_PG_DATA" "$(pg_data "$host")"
    done
    emit LAB_PG_PORT "$PG_PORT"
    emit LAB_PG_BIN "$PG_BIN"
    emit LAB_PG_SUPERUSER "$PG_SUPERUSER"
    emit LAB_REDIS_PORT "$REDIS_PORT"
    emit LAB_SSH_PORT "$SSH_PORT"
    emit LAB_MONITOR_USER "$MONITOR_USER"
    emit LAB_MONITOR_PASSWORD_FILE "$SECRETS/monitor"
    emit LAB_ADMIN_USER "$ADMIN_USER"
    emit LAB_ADMIN_PASSWORD_FILE "$SECRETS/admin"
    emit LAB_WRITER_USER "$WRITER_USER"
    emit LAB_WRITER_PASSWORD_FILE "$SECRETS/writer"
    emit LAB_REPL_USER "$REPL_USER"
    emit LAB_REPL_PASSWORD_FILE "$SECRETS/repl"
    emit LAB_REDIS_PASSWORD_FILE "$SECRETS/redis"
    emit LAB_APP_DB "$APP_DB"
    emit LAB_SSH_USER "$SSH_USER"
    emit LAB_SSH_SUDO_USER "$SUDO_USER_NAME"
    emit LAB_SSH_SUDO_USER_PASSWORD_FILE "$SECRETS/ssh-dpapp"
    emit LAB_SSH_KEY "$SSH_KEY"
    emit LAB_SSH_KNOWN_HOSTS "$KNOWN_HOSTS"
    # Made by `lab.sh tls`.
    emit LAB_TLS_CA "$TLS_DIR/ca.pem"
    emit LAB_TLS_CLIENT_CERT "$TLS_DIR/client.pem"
    emit LAB_TLS_CLIENT_KEY "$TLS_DIR/client.key"
    for host in "${LB_HOSTS[@]}"; do
        emit "LAB_${host^^}_HAPROXY_SOCKET" "$(haproxy_socket "$host")"
    done
    emit LAB_HAPROXY_STATS_PORT "$HAPROXY_STATS_PORT"
    emit LAB_HAPROXY_BACKEND "$HAPROXY_BACKEND"
    emit LAB_ZONE "$ZONE"
    emit LAB_DNS_NAME "$DNS_NAME"
    emit LAB_DNS_TTL "$DNS_TTL"
    emit LAB_DNS_ALT_PORT "$DNS_ALT_PORT"
    emit LAB_TSIG_KEY "$TSIG_KEY"
    emit LAB_TSIG_SECRET_FILE "$SECRETS/tsig"
}


# ---------------------------------------------------------------- several watcher hosts

is_cluster_host() { [[ " ${CLUSTER_HOSTS[*]} " == *" ${1:-} "* ]]; }
is_etcd_host() { [[ " ${ETCD_HOSTS[*]} " == *" ${1:-} "* ]]; }
is_dp_host() { [[ " ${DP_HOSTS[*]} " == *" ${1:-} "* ]]; }

etcd_endpoints() {
    local h out=()
    for h in "${ETCD_HOSTS[@]}"; do out+=("http://${IP[$h]}:$ETCD_CLIENT_PORT"); done
    (IFS=,; echo "${out[*]}")
}

etcd_pids() {
    local host=$1 pid
    ns_exists "$host" || return 0
    for pid in $(ip netns pids "$(ns_of "$host")" 2>/dev/null); do
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == etcd ]] && echo "$pid"
    done
    return 0
}

etcd_start() {
    local host=$1 dir peers=() h
    if [[ -n $(etcd_pids "$host") ]]; then log "etcd on $host is already running"; return 0; fi
    dir=$(host_dir "$host")/etcd
    mkdir -p "$dir"
    for h in "${ETCD_HOSTS[@]}"; do peers+=("$h=http://${IP[$h]}:$ETCD_PEER_PORT"); done
    start_in_host "$host" "$dir/etcd.log" etcd --name "$host" --data-dir "$dir/data" \
        --listen-client-urls "http://${IP[$host]}:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://${IP[$host]}:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://${IP[$host]}:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://${IP[$host]}:$ETCD_PEER_PORT" \
        --initial-cluster "$(IFS=,; echo "${peers[*]}")" \
        --initial-cluster-state new --initial-cluster-token deadpool-lab
}

etcd_kill() {
    local host=$1 pids
    mapfile -t pids < <(etcd_pids "$host")
    ((${#pids[@]} > 0)) || { log "etcd on $host is not running"; return 0; }
    kill -9 "${pids[@]}"
    wait_until 5 "etcd on $host to die" etcd_gone "$host"
}

etcd_gone() { [[ -z $(etcd_pids "$1") ]]; }

# A write needs quorum: the cluster is ready when a put succeeds.
etcd_writable() {
    ETCDCTL_API=3 etcdctl --endpoints "$(etcd_endpoints)" --command-timeout=1s \
        put /deadpool-lab/ready 1
}

cmd_cluster_up() {
    need_root
    local t0=$EPOCHREALTIME host file h
    command -v etcd >/dev/null || die "etcd is not installed, run: $0 install"
    make_lab_dir
    net_up
    for host in "${CLUSTER_HOSTS[@]}"; do
        host_net_up "$host"
        file=/etc/netns/$(ns_of "$host")/hosts
        if [[ ! -s $file ]]; then
            mkdir -p "${file%/*}"
            {
                printf '127.0.0.1\tlocalhost\n'
                for h in "${HOSTS[@]}" "${CLUSTER_HOSTS[@]}"; do printf '%s\t%s\n' "${IP[$h]}" "$h"; done
            } >"$file"
            printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"${file%/*}/resolv.conf"
        fi
    done
    for host in "${ETCD_HOSTS[@]}"; do etcd_start "$host"; done
    wait_until "$LAB_TIMEOUT" "etcd quorum" etcd_writable || die "etcd did not form a cluster"
    log "cluster hosts are up in $(elapsed_since "$t0")s (etcd: $(etcd_endpoints))"
}

# A deadpool member: `tick; sleep 1` in a loop inside the host, its log in the host's dir.
member_start() {
    local host=$1 bin=$2 config=$3 dir
    dir=$(host_dir "$host")
    mkdir -p "$dir"
    [[ -x $bin ]] || die "$bin is not an executable"
    [[ -d $config ]] || die "$config is not a config dir"
    # shellcheck disable=SC2016  # for the inner shell
    start_in_host "$host" "$dir/member.log" sh -c \
        'while :; do "$0" --config "$1" tick; sleep 1; done' "$bin" "$config"
}

# Its host dies: every process in the namespace is killed.
member_stop() {
    local ns pids tries
    ns=$(ns_of "$1")
    for ((tries = 0; tries < 50; tries++)); do
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        ((${#pids[@]} > 0)) || return 0
        kill -9 "${pids[@]}" 2>/dev/null || true
        sleep 0.05
    done
    die "processes left in $ns: ${pids[*]}"
}

check_cluster_host() {
    is_cluster_host "${1:-}" || die "unknown cluster host '${1:-}' (expected one of: ${CLUSTER_HOSTS[*]})"
    ns_exists "$1" || die "$1 does not exist (run: $0 cluster-up)"
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || usage
    shift
    case $cmd in
        install) cmd_install ;;
        up)      cmd_up ;;
        down)    cmd_down ;;
        status)  need_root; cmd_status ;;
        env)     cmd_env ;;
        kill|start|stop|cont)
            (($# == 2)) || usage
            need_root; check_host "$1"; check_service "$1" "$2"
            [[ $cmd == kill ]] || ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            case $cmd in
                kill)  cmd_kill "$1" "$2" ;;
                start) cmd_start "$1" "$2" ;;
                stop)  cmd_signal STOP "$1" "$2" ;;
                cont)  cmd_signal CONT "$1" "$2" ;;
            esac ;;
        freeze|thaw)
            (($# == 1)) || usage
            need_root; check_host "$1"
            ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            if [[ $cmd == freeze ]]; then freeze_host STOP "$1"; else freeze_host CONT "$1"; fi ;;
        pg-up)
            (($# == 0)) || usage
            cmd_pg_up ;;
        pg-tls)
            (($# == 0)) || usage
            need_root
            pg_tls ;;
        psql)
            (($# == 2 || $# == 3)) || usage
            need_root; check_host "$1"; is_db_host "$1" || die "$1 has no PostgreSQL"
            pg_on || die "PostgreSQL is not set up (run: $0 pg-up)"
            pg_psql "$@" ;;
        hang|unhang)
            (($# == 1)) || usage
            need_root; check_host "$1"
            ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            if [[ $cmd == hang ]]; then net_hang "$1"; else net_unhang "$1"; fi ;;
        cutoff)
            (($# == 2)) || usage
            need_root; check_host "$1"
            ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            net_cutoff "$1" "$2" ;;
        vip)
            (($# >= 2)) || usage
            need_root; check_host "$2"
            ns_exists "$2" || die "$2 does not exist (run: $0 up)"
            cmd_vip "$@" ;;
        sshd-keys)
            (($# == 2)) || usage
            need_root; check_host "$1"
            ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            cmd_sshd_keys "$1" "$2" ;;
        sudoers)
            (($# == 1)) || usage
            need_root; cmd_sudoers "$1" ;;
        sudo-password)
            (($# == 1)) || usage
            need_root; check_host "$1"
            ns_exists "$1" || die "$1 does not exist (run: $0 up)"
            cmd_sudo_password "$1" ;;
        tls)
            (($# == 0)) || usage
            need_root
            cmd_tls ;;
        replica-filepos)
            (($# == 0)) || usage
            need_root
            cmd_replica_filepos ;;
        replica-io)
            (($# == 2)) || usage
            need_root; check_replica "$2"
            cmd_replica_io "$1" "$2" ;;
        replica-field)
            (($# >= 2)) || usage
            need_root; check_host "$1"; is_db_host "$1" || die "$1 has no MariaDB"
            replica_fields "$@" ;;
        repl-lock|repl-unlock)
            (($# == 1)) || usage
            need_root; check_host "$1"; is_db_host "$1" || die "$1 has no MariaDB"
            cmd_repl_lock "${cmd#repl-}" "$1" ;;
        repoint)
            (($# == 2)) || usage
            need_root; check_host "$1"; check_host "$2"
            if ! is_db_host "$1" || ! is_db_host "$2"; then
                die "repoint needs two database hosts (${DB_HOSTS[*]})"
            fi
            cmd_repoint "$1" "$2" ;;
        dns-set)
            (($# == 1)) || usage
            need_root
            dns_set "$1" ;;
        dns-rekey)
            (($# == 0)) || usage
            need_root
            cmd_dns_rekey ;;
        dig)
            (($# <= 2)) || usage
            dig_lab "${1:-$DNS_NAME}" "${2:-A}" ;;
        haproxy)
            (($# >= 2)) || usage
            check_host "$1"; is_lb_host "$1" || die "$1 runs no HAProxy"
            haproxy_cmd "$@" ;;
        sql)
            (($# == 2)) || usage

            need_root; check_host "$1"; is_db_host "$1" || die "$1 has no MariaDB"
            sql_root "$1" "$2" ;;
        redis)
            (($# >= 2)) || usage
            need_root; check_host "$1"; is_db_host "$1" || die "$1 has no Redis"
            redis_cli "$@" ;;
        ssh)
            (($# >= 1)) || usage
            check_host "$1"
            local host=$1
            shift
            exec ssh "${SSH_OPTS[@]}" "$SSH_USER@${IP[$host]}" "$@" ;;
        cluster-up)
            (($# == 0)) || usage
            cmd_cluster_up ;;
        etcd-endpoints)
            (($# == 0)) || usage
            etcd_endpoints ;;
        etcd-kill|etcd-start)
            (($# == 1)) || usage
            need_root; check_cluster_host "$1"; is_etcd_host "$1" || die "$1 is not an etcd host"
            if [[ $cmd == etcd-kill ]]; then etcd_kill "$1"; else etcd_start "$1"; fi ;;
        member-start)
            (($# == 3)) || usage
            need_root; check_cluster_host "$1"; is_dp_host "$1" || die "$1 is not a deadpool host"
            member_start "$@" ;;
        member-stop)
            (($# == 1)) || usage
            need_root; check_cluster_host "$1"
            member_stop "$1" ;;
        link-down|link-up)
            (($# == 1)) || usage
            need_root; check_cluster_host "$1"
            ip link set "dpv-$1" "${cmd#link-}" ;;
        -h|--help|help) usage 0 ;;
        *) usage ;;
    esac
}

main "$@"
