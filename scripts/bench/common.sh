# Shared by the benchmark scripts: a release build, the lab, instance configs, timing.
# Every script prints its results as Markdown table rows for BENCHMARKS.md.
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lab="$top/tests/lab/lab.sh"
bin="$top/target/release/deadpool"

prepare() {
    for p in time sqlite3; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
    done
    bash "$lab" install >/dev/null
    (cd "$top" && cargo build --release --quiet)
}

now_ms() { date +%s%3N; }

# median of the numbers on stdin
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
# min and max of the numbers on stdin, as "min-max"
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }

# Lab environment: LAB_DB1_IP etc.
lab_env() { eval "$(bash "$lab" env)"; }

# An instance dir with deadpool.toml; pools are added by the caller.
new_instance() {
    local dir
    dir=$(mktemp -d /tmp/deadpool-bench.XXXXXX)
    mkdir -p "$dir/pools"
    cat >"$dir/deadpool.toml" <<TOML
state_dir = "state"
tick_interval = "1s"
system_check_interval = "${SYSTEM_CHECK_INTERVAL:-1h}"

[ssh]
user = "$LAB_SSH_USER"
identity_file = "$LAB_SSH_KEY"
known_hosts = "$LAB_SSH_KNOWN_HOSTS"
connect_timeout = "2s"
TOML
    echo "$dir"
}

mysql_pool() {
    cat <<TOML
primary = "$LAB_DB1_IP"
secondary = "$LAB_DB2_IP"
max_failed_checks = ${1:-3}

[monitor]
type = "mysql"
user = "$LAB_MONITOR_USER"
password_file = "$LAB_MONITOR_PASSWORD_FILE"
timeout = "1s"

[[protocol]]
type = "mysql_promote"
user = "$LAB_ADMIN_USER"
password_file = "$LAB_ADMIN_PASSWORD_FILE"
timeout = "20s"
TOML
}

# etc_hosts over the first N lab app hosts; maps the name on each of them first.
etc_hosts_step() {
    local n=$1 clients="" i
    for ((i = 1; i <= n; i++)); do
        local ip=10.213.0.$((20 + i))
        clients+="\"$ip\", "
        printf '%s\tdb.service\n' "$LAB_DB1_IP" >>"/etc/netns/dp-app$i/hosts"
    done
    cat <<TOML

[[protocol]]
type = "etc_hosts"
service_host_name = "db.service"
client_hosts = [${clients%, }]
helper = "$bin"
timeout = "30s"
TOML
}

# The history of an instance as "event at_ms" lines.
events() { "$bin" --config "$1" history --json --limit 100000 | sed -n 's/.*"at":\([0-9]*\),.*"event":"\([a-z_]*\)".*/\2 \1/p'; }

# A pool of db1 and the servers in line $1 (`secondary = ...` or `standbys = [...]`), with the
# detection line $2 and the chain of the speed measurements: mysql_promote -> vip ->
# etc_hosts on the first $3 app hosts (steps named promote, vip, clients).
chain_pool() {
    local servers=$1 detection=$2 clients=$3
    cat <<TOML
primary = "$LAB_DB1_IP"
$servers
$detection

[monitor]
type = "mysql"
user = "$LAB_MONITOR_USER"
password_file = "$LAB_MONITOR_PASSWORD_FILE"
timeout = "1s"

[[protocol]]
type = "mysql_promote"
name = "promote"
user = "$LAB_ADMIN_USER"
password_file = "$LAB_ADMIN_PASSWORD_FILE"
catch_up_timeout = "10s"
timeout = "20s"

[[protocol]]
type = "vip"
name = "vip"
address = "10.213.0.100/24"
interface = "eth0"
timeout = "10s"
TOML
    etc_hosts_step "$clients" | sed 's/^type = "etc_hosts"$/type = "etc_hosts"\nname = "clients"/'
}

# When a step ended (ms), from the history.
step_end() {
    "$bin" --config "$1" history --json --limit 100000 | grep '"event":"step"' \
        | grep "\"step\":\"$2\"" | sed -n 's/.*"at":\([0-9]*\),.*/\1/p' | tail -n 1
}

# Ticks the way the systemd timer runs them (OnUnitInactiveSec=1s), until killed.
ticker() { while :; do "$bin" --config "$1" tick 2>/dev/null || true; sleep 1; done; }

# One tick, then ticks as the timer runs them while db1's mysqld is killed at a random point
# of the cycle; waits (at most 15 s) for the pool to fail over. Prints when it was killed
# (ms); without a failover it prints the history and exits.
kill_and_fail_over() {
    local dir=$1 pid killed
    "$bin" --config "$dir" tick 2>/dev/null || true
    ticker "$dir" >/dev/null &
    pid=$!
    sleep "$(printf '1.%03d' $((RANDOM % 1000)))"
    killed=$(now_ms)
    bash "$lab" kill db1 mysql >&2
    for _ in $(seq 150); do
        events "$dir" | grep -q '^failed_over ' && break
        sleep 0.1
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    events "$dir" | grep -q '^failed_over ' \
        || { echo "no failover:" >&2; "$bin" --config "$dir" history >&2; exit 1; }
    echo "$killed"
}
