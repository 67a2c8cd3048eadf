#!/usr/bin/env bash
# A pool that stays blocked: its primary is down and a step's preflight fails with a message
# that changes every tick (it prints the time). Runs N real ticks back to back and prints the
# database size and the number of history events along the way, and what a week of 5 s ticks
# (120,960) adds. No lab needed: the monitor and the step are plugins.
# Usage: bash scripts/bench/blocked.sh [TICKS]   (default 3000)
source "$(dirname "$0")/common.sh"
ticks=${1:-3000}
prepare
dir=$(mktemp -d /tmp/deadpool-bench.XXXXXX)
mkdir -p "$dir/pools" "$dir/plugins"
cat >"$dir/deadpool.toml" <<'TOML'
state_dir = "state"
tick_interval = "5s"
system_check_interval = "1h"
TOML
cat >"$dir/plugins/monitor" <<'SH'
#!/bin/sh
if [ "$1" = db1 ]; then echo "CRITICAL - db1 is down"; exit 2; fi
echo "OK - $1 answers"
SH
cat >"$dir/plugins/step" <<'SH'
#!/bin/sh
if [ "$1" = preflight ]; then echo "not ready at $(date +%s%N)"; exit 2; fi
echo ok
SH
chmod 755 "$dir/plugins/monitor" "$dir/plugins/step"
cat >"$dir/pools/db.toml" <<'TOML'
primary = "db1"
secondary = "db2"
max_failed_checks = 1

[monitor]
type = "nagios"
command = "monitor {host}"
timeout = "2s"

[[protocol]]
type = "plugin"
name = "changing preflight"
command = "step"
TOML
size() { du -cb "$dir/state"/deadpool.db* | awk 'END { printf "%.0f KB", $1 / 1024 }'; }
count() { sqlite3 "$dir/state/deadpool.db" 'SELECT count(*) FROM history'; }
sizes=()
for ((i = 1; i <= ticks; i++)); do
    "$bin" --config "$dir" tick 2>/dev/null || true
    # Every tick must stay blocked, each with a new reason text.
    case $i in 1 | 100 | 1000 | "$ticks") sizes+=("$i ticks: $(size), $(count) events") ;; esac
done
state=$(sqlite3 "$dir/state/deadpool.db" "SELECT state FROM pools WHERE name = 'db'")
[[ $state == blocked ]] || { echo "the pool is $state, not blocked" >&2; exit 1; }
events=$(count)
rm -rf "$dir"
printf '| blocked pool, reason text new every tick | %s | bounded |\n' "$(IFS=';'; echo "${sizes[*]}" | sed 's/;/; /g')"
printf '| history events after %d blocked ticks | %d (one per change of kind) | a week of 5 s ticks adds none |\n' "$ticks" "$events"
