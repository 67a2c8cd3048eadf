#!/usr/bin/env bash
# A healthy tick against the number of MySQL pools (each pool: both lab servers checked
# over TCP with a login and three queries; readiness checks not due), wall and CPU time and
# peak memory over TICKS ticks, and the CPU cost of a day of 1 s ticks.
# Usage: bash scripts/bench/tick.sh [TICKS]   (default 30)
source "$(dirname "$0")/common.sh"
ticks=${1:-30}
prepare
bash "$lab" down >/dev/null 2>&1
bash "$lab" up >/dev/null 2>&1
lab_env
for n in 1 10 50; do
    dir=$(new_instance)
    for ((i = 1; i <= n; i++)); do mysql_pool 3 >"$dir/pools/db$i.toml"; done
    "$bin" --config "$dir" tick   # the first tick also runs the readiness checks
    : >"$dir/wall"
    : >"$dir/rss"
    for ((t = 0; t < ticks; t++)); do
        s=$(date +%s%N)
        "$bin" --config "$dir" tick
        e=$(date +%s%N)
        echo $(( (e - s) / 1000 )) >>"$dir/wall"
        /usr/bin/time -a -o "$dir/rss" -f '%M' "$bin" --config "$dir" tick
    done
    wall=$(awk '{ printf "%.1f\n", $1 / 1000 }' "$dir/wall" | median)
    # CPU: user + system time of a run of ticks (GNU time counts in 10 ms steps, so one
    # tick alone is below its resolution), per tick.
    /usr/bin/time -o "$dir/cpu" -f '%U %S' bash -c "for i in \$(seq $ticks); do '$bin' --config '$dir' tick; done"
    cpu=$(awk -v n="$ticks" '{ printf "%.1f", ($1 + $2) * 1000 / n }' "$dir/cpu")
    rss=$(awk '{ print $1 / 1024 }' "$dir/rss" | sort -g | tail -1)
    day=$(awk -v c="$cpu" 'BEGIN { printf "%.0f", c * 86400 / 1000 / 60 }')
    printf '| %d pool(s) | %s ms | %s ms | %s min | %.1f MB |\n' "$n" "$wall" "$cpu" "$day" "$rss"
    rm -rf "$dir"
done
bash "$lab" down >/dev/null 2>&1
