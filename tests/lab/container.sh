#!/usr/bin/env bash
# container.sh - a Debian 12 machine with a real systemd as PID 1, for tests of the
# package and its units (tests/lab_systemd.rs).
#
# The root file system is built once with mmdebstrap from Debian's packages and cached
# under CONTAINER_CACHE (default /var/cache/deadpool-lab); every `up` boots an overlay of
# it (the cache read-only below, the run's changes in DIR/upper), so each run starts from a
# clean system at no copying cost. The copy is booted with systemd-nspawn (not
# registered with machined: the host has no systemd) and driven through nsenter into the
# container's PID 1. Downloaded .debs are kept in CONTAINER_CACHE/apt-archives, bind-mounted
# as the container's /var/cache/apt/archives, so that later runs install offline.
#
# usage: container.sh install             install mmdebstrap and systemd-container
#        container.sh rootfs              build the cached rootfs if missing; print its path
#        container.sh up DIR NAME [NETNS] boot an overlay of the rootfs at DIR/root as NAME;
#                                         with NETNS (a name under /run/netns, e.g. dp-app1)
#                                         the container lives on that lab host's network and
#                                         may configure it (CAP_NET_ADMIN); prints PID 1
#        container.sh exec DIR CMD...     run CMD inside, as root, with a clean environment
#        container.sh down DIR            power it off (killed after CONTAINER_TIMEOUT) and
#                                         remove DIR
# Every wait is bounded by CONTAINER_TIMEOUT seconds (default 60). Needs root.

set -euo pipefail

CACHE=${CONTAINER_CACHE:-/var/cache/deadpool-lab}
TIMEOUT=${CONTAINER_TIMEOUT:-60}
SUITE=bookworm
# What the container has before the test installs deadpool's .deb: a booting systemd, sudo
# (the README's NRPE rule) and nothing deadpool itself depends on, so that apt must bring
# every declared dependency. perl-base (essential) runs the test's TCP listeners.
INCLUDE=systemd,systemd-sysv,dbus,sudo
PACKAGES=(mmdebstrap systemd-container)
MARKER=.deadpool-container      # proves DIR is ours before `down` deletes it
PATH_INSIDE=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'container: %s\n' "$*" >&2; }
die() { printf 'container: error: %s\n' "$*" >&2; exit 1; }
need_root() { [[ $EUID -eq 0 ]] || die "must run as root"; }

usage() {
    sed -n '/^# usage:/,/^# Every wait/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

missing_packages() {
    local p
    for p in "${PACKAGES[@]}"; do
        if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) != installed ]]; then
            echo "$p"
        fi
    done
}

# systemd-container pulls the host's systemd packages to its own version and adds
# `mymachines` to /etc/nsswitch.conf; neither changes what the host runs.
cmd_install() {
    need_root
    local missing
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} > 0)) || return 0
    log "installing ${missing[*]}"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends)
    if ! "${apt[@]}" "${missing[@]}" >/dev/null; then
        log "install failed; running apt-get update and retrying"
        apt-get update -qq
        "${apt[@]}" "${missing[@]}" >/dev/null
    fi
    [[ -z $(missing_packages) ]] || die "still missing: $(missing_packages | tr '\n' ' ')"
}

# The cache entry is named after what goes into it, so changing the recipe builds anew.
rootfs_path() {
    local key
    key=$(printf '%s %s %s\n' "$SUITE" "$INCLUDE" 1 | sha256sum | cut -c1-12)
    printf '%s/rootfs-%s-%s' "$CACHE" "$SUITE" "$key"
}

cmd_rootfs() {
    need_root
    [[ -z $(missing_packages) ]] || die "missing $(missing_packages | tr '\n' ' '); run: $0 install"
    local root
    root=$(rootfs_path)
    mkdir -p "$CACHE"
    exec 9>"$CACHE/rootfs.lock"
    flock -w 900 9 || die "another build of $root holds $CACHE/rootfs.lock"
    if [[ ! -e $root/$MARKER ]]; then
        local tmp=$root.building log=$CACHE/mmdebstrap.log started=$EPOCHREALTIME
        rm -rf "$tmp"
        log "building the $SUITE rootfs in $root (about 30 s to 2 min, from Debian's mirror)"
        # Package lists are kept, so that `apt-get install ./x.deb` works without an update.
        if ! timeout 900 mmdebstrap --variant=minbase --include="$INCLUDE" \
            --skip=cleanup/apt/lists "$SUITE" "$tmp" >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            rm -rf "$tmp"
            die "mmdebstrap could not build the $SUITE rootfs (full log: $log). It downloads
from Debian's package mirror, as this machine's apt sources name it: check that
\`apt-get update\` works here, then run \`$0 rootfs\` again."
        fi
        # A persistent journal, readable from outside with journalctl -D DIR/root/var/log/journal.
        mkdir -p "$tmp/var/log/journal"
        touch "$tmp/$MARKER"
        mv "$tmp" "$root"
        # Entries of older recipes are never used again.
        find "$CACHE" -maxdepth 1 -name "rootfs-*" ! -path "$root" -exec rm -rf {} +
        log "built in $(awk -v t0="$started" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.0f", t1 - t0 }') s ($(du -sh "$root" | cut -f1))"
    fi
    printf '%s\n' "$root"
}

nspawn_pid() { cat "$1/nspawn.pid" 2>/dev/null; }

# The container's PID 1: the child of systemd-nspawn that runs systemd (while it starts,
# nspawn's child is first a helper that exits).
leader() {
    local nspawn pid
    nspawn=$(nspawn_pid "$1") || return 1
    [[ -n $nspawn ]] || return 1
    for pid in $(pgrep -P "$nspawn"); do
        if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd ]]; then
            echo "$pid"
            return 0
        fi
    done
    return 1
}

inside() {
    local pid=$1
    shift
    timeout -k 5 "$TIMEOUT" nsenter -t "$pid" -a env -i PATH="$PATH_INSIDE" HOME=/root \
        LANG=C.UTF-8 TERM=dumb "$@"
}

cmd_up() {
    need_root
    local dir=$1 name=$2 netns=${3:-} root started=$EPOCHREALTIME
    [[ $name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "NAME must be a host name of up to 31 characters: $name"
    [[ ! -e $dir || -z $(ls -A "$dir") ]] || die "$dir exists and is not empty"
    local net=()
    if [[ -n $netns ]]; then
        [[ -e /run/netns/$netns ]] || die "no network namespace /run/netns/$netns (is the lab up?)"
        net=(--network-namespace-path="/run/netns/$netns" --capability=CAP_NET_ADMIN)
    fi
    root=$(cmd_rootfs)
    mkdir -p "$dir/upper" "$dir/work" "$dir/root" "$CACHE/apt-archives/partial"
    touch "$dir/$MARKER"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$dir/upper,workdir=$dir/work" "$dir/root" \
        || die "cannot mount an overlay of $root on $dir/root"
    echo "$name" >"$dir/root/etc/hostname"
    (
        # nspawn must not hold our descriptors (the test harness's pipes) open.
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        setsid systemd-nspawn -D "$dir/root" -b --register=no --keep-unit --console=pipe \
            -M "$name" --bind="$CACHE/apt-archives:/var/cache/apt/archives" "${net[@]}" \
            </dev/null >"$dir/console.log" 2>&1 &
        echo $! >"$dir/nspawn.pid"
    )
    local deadline=$((SECONDS + TIMEOUT)) pid='' state=''
    # `is-system-running --wait` needs the container's systemd and D-Bus up: retry until then.
    until pid=$(leader "$dir") && state=$(inside "$pid" systemctl is-system-running --wait 2>/dev/null) \
        && [[ $state == running || $state == degraded ]]; do
        kill -0 "$(nspawn_pid "$dir")" 2>/dev/null || { cat "$dir/console.log" >&2; die "systemd-nspawn exited"; }
        ((SECONDS < deadline)) || die "the container's systemd is '${state:-not up}' after ${TIMEOUT}s; see $dir/console.log"
        sleep 0.2
    done
    [[ $state == running ]] || die "the container booted degraded: $(inside "$pid" systemctl --failed --no-legend | tr '\n' ' ')"
    log "$name booted in $(awk -v t0="$started" -v t1="$EPOCHREALTIME" 'BEGIN { printf "%.1f", t1 - t0 }') s"
    echo "$pid"
}

cmd_exec() {
    local dir=$1 pid
    shift
    pid=$(leader "$dir") || die "no container is running from $dir"
    inside "$pid" "$@"
}

cmd_down() {
    need_root
    local dir=$1 nspawn pid
    [[ -e $dir ]] || return 0
    [[ -e $dir/$MARKER ]] || die "$dir was not made by $0; not removing it"
    nspawn=$(nspawn_pid "$dir" || true)
    pid=$(leader "$dir" || true)
    if [[ -n $nspawn ]] && kill -0 "$nspawn" 2>/dev/null; then
        # SIGTERM makes nspawn ask the container's systemd to power off.
        kill -TERM "$nspawn" 2>/dev/null || true
        local deadline=$((SECONDS + TIMEOUT))
        while kill -0 "$nspawn" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        if kill -0 "$nspawn" 2>/dev/null; then
            log "the container did not power off in ${TIMEOUT}s; killing it"
            # Killing PID 1 of a PID namespace kills every process in it.
            [[ -z $pid ]] || kill -KILL "$pid" 2>/dev/null || true
            kill -KILL "$nspawn" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    if mountpoint -q "$dir/root"; then
        umount "$dir/root" 2>/dev/null || umount -l "$dir/root"
    fi
    rm -rf "$dir"
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || usage
    shift
    case $cmd in
        install) cmd_install ;;
        rootfs) (($# == 0)) || usage; cmd_rootfs ;;
        up) (($# == 2 || $# == 3)) || usage; cmd_up "$@" ;;
        exec) (($# >= 2)) || usage; cmd_exec "$@" ;;
        down) (($# == 1)) || usage; cmd_down "$1" ;;
        *) usage ;;
    esac
}

main "$@"
