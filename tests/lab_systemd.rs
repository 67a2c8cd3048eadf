//! The Debian package under a real systemd: Debian 12 booted in a container
//! (tests/lab/container.sh), the .deb installed there with apt, and deadpool run only by
//! its own timers and hardened units. A minute of ticks of three instances side by side; a
//! timer-driven failover and a failing step, each in the journal at its priority; the
//! sandbox as the kernel applies it; `report --nagios` through the README's sudo rule; the
//! metrics textfile as another user reads it; a tick stopped in the middle of a step, which
//! the next tick calls interrupted. Then the container on a host of the namespace lab
//! (tests/lab/lab.sh), with a real pool: kill -9 of the MariaDB primary, and the timer's
//! own tick, under the shipped hardening unchanged, promotes the replica, repoints app1's
//! hosts file, moves the VIP and runs a step on app1 over SSH. Run by `scripts/test` (they
//! need root); `cargo test` lists them as ignored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Run;
use common::lab::{Lab, VIP, wait};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/lab/container.sh")
}

/// Runs `container.sh ARGS`; every wait in it is bounded (CONTAINER_TIMEOUT).
fn container_sh(args: &[&str]) -> Run {
    Run::from(
        Command::new("bash")
            .arg(script())
            .args(args)
            .env("CONTAINER_TIMEOUT", "60")
            .output()
            .expect("run tests/lab/container.sh"),
    )
}

/// One journal entry, the fields the test reads.
#[derive(Debug, Clone)]
struct Entry {
    priority: u8,
    /// The unit systemd (PID 1) speaks about, or the unit of the process that logged.
    unit: String,
    message: String,
    job_result: String,
}

/// A Debian 12 machine booted with systemd as PID 1, on a copy of the cached rootfs.
/// Dropping it powers it off and removes the copy, after printing the end of its journal
/// when the test is failing.
struct Container {
    dir: PathBuf,
}

impl Container {
    /// Boots a container named `name`. With `netns` (a lab host's namespace under
    /// /run/netns, e.g. `dp-app1`) it lives on that host's network with CAP_NET_ADMIN.
    fn boot(name: &str, netns: Option<&str>) -> Container {
        let dir = std::env::temp_dir().join(format!("{name}.container"));
        let path = dir.to_str().unwrap().to_string();
        let mut args = vec!["up", path.as_str(), name];
        args.extend(netns);
        let up = container_sh(&args);
        // Removed by `down` whatever `up` left (nothing when it refused to start).
        let container = Container { dir };
        assert_eq!(
            up.code, 0,
            "cannot boot the test container (container.sh says why below; \
             `bash tests/lab/container.sh install` installs its tools): {up:?}"
        );
        container
    }

    /// Where `path` of the container is seen from this machine.
    fn path(&self, path: &str) -> PathBuf {
        self.dir.join("root").join(path.trim_start_matches('/'))
    }

    /// Writes a file of the container as root, with `mode`, making its directories.
    fn write(&self, path: &str, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let target = self.path(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, text).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.path(path)).unwrap_or_default()
    }

    /// Runs `script` with sh inside the container, as root.
    fn sh(&self, script: &str) -> Run {
        let dir = self.dir.to_str().unwrap();
        container_sh(&["exec", dir, "sh", "-c", script])
    }

    /// [`Container::sh`] that must succeed; its stdout.
    fn ok(&self, script: &str) -> String {
        let r = self.sh(script);
        assert_eq!(r.code, 0, "in the container: {script}\n{r:?}");
        r.stdout
    }

    /// The journal entries matching `matches` (journalctl's FIELD=VALUE terms, ANDed).
    fn journal(&self, matches: &[&str]) -> Vec<Entry> {
        let fields = "MESSAGE,PRIORITY,UNIT,_SYSTEMD_UNIT,JOB_RESULT";
        let out = self.ok(&format!(
            "journalctl --no-pager -q -o json --output-fields={fields} {}",
            matches.join(" ")
        ));
        let text = |v: &serde_json::Value, k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            // journald gives a field that is not UTF-8 as an array of bytes.
            serde_json::Value::Array(bytes) => String::from_utf8_lossy(
                &bytes
                    .iter()
                    .filter_map(|b| b.as_u64().map(|b| b as u8))
                    .collect::<Vec<u8>>(),
            )
            .into_owned(),
            _ => String::new(),
        };
        out.lines()
            .map(|line| {
                let v: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                let unit = match text(&v, "UNIT") {
                    u if u.is_empty() => text(&v, "_SYSTEMD_UNIT"),
                    u => u,
                };
                Entry {
                    priority: text(&v, "PRIORITY").parse().unwrap_or(6),
                    unit,
                    message: text(&v, "MESSAGE"),
                    job_result: text(&v, "JOB_RESULT"),
                }
            })
            .collect()
    }

    /// deadpool's own lines (instances `deadpool`, `deadpool-NAME`) at `priority` or more
    /// urgent.
    fn deadpool_lines(&self, identifier: &str, priority: u8) -> Vec<Entry> {
        self.journal(&[&format!("SYSLOG_IDENTIFIER={identifier}")])
            .into_iter()
            .filter(|e| e.priority <= priority)
            .collect()
    }

    /// How many runs of `unit` systemd finished (oneshot: started and exited as success).
    fn runs(&self, unit: &str) -> usize {
        self.journal(&["_PID=1", &format!("UNIT={unit}"), "JOB_TYPE=start"])
            .iter()
            .filter(|e| e.job_result == "done")
            .count()
    }

    /// The kernel's view of a process of the container: `/proc/PID/status` fields.
    fn status_of(&self, pid: &str) -> std::collections::HashMap<String, String> {
        self.ok(&format!("cat /proc/{pid}/status"))
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect()
    }
}

impl Container {
    /// The capability bounding set of the container's PID 1: the most any unit can keep.
    fn bounding_set(&self) -> u64 {
        u64::from_str_radix(&self.status_of("1")["CapBnd"], 16).unwrap()
    }

    /// The PID of the tick running now (0 between ticks).
    fn running_tick(&self) -> String {
        self.ok("systemctl show -p MainPID --value deadpool.service")
            .trim()
            .to_string()
    }
}

const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
/// The shipped units' `CapabilityBoundingSet=`.
const UNIT_CAPABILITIES: u64 = CAP_NET_ADMIN | CAP_NET_RAW;

/// The sandbox of the running tick `main` (and its children) as the kernel applies it: no
/// new privileges, a seccomp filter, the bounding set `bounding`, and `/` read-only.
fn assert_sandboxed(c: &Container, main: &str, bounding: u64) {
    let children = c.ok(&format!("cat /proc/{main}/task/*/children"));
    for pid in std::iter::once(main).chain(children.split_whitespace()) {
        let status = c.status_of(pid);
        assert_eq!(status["NoNewPrivs"], "1", "{pid}: {status:?}");
        assert_eq!(status["Seccomp"], "2", "{pid}: {status:?}");
        let set = u64::from_str_radix(&status["CapBnd"], 16).unwrap();
        assert_eq!(set, bounding, "{pid}: {status:?}");
    }
    let root = c.ok(&format!("cat /proc/{main}/mountinfo"));
    let root = root
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_default();
    assert!(
        root.split_whitespace()
            .nth(5)
            .unwrap_or("")
            .starts_with("ro"),
        "ProtectSystem=strict: / read-only for the tick: {root}"
    );
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let tail = self.sh("journalctl --no-pager -n 120; systemctl --failed --no-pager");
            eprintln!("--- the container's journal, last lines\n{}", tail.stdout);
        }
        let down = container_sh(&["down", self.dir.to_str().unwrap()]);
        if down.code != 0 {
            eprintln!("container.sh down failed: {down:?}");
        }
    }
}

/// The listeners the monitors watch and the instances that watch them, inside the container,
/// with nothing outside it: TCP listeners on loopback addresses (one pair of servers per
/// pool), `tcp` and `nagios` (a plugin) monitors, `etc_hosts` and `exec` steps on `local`.
///
/// The test on a lab host replaces this part with [`real_instance`]: real MariaDB servers
/// and steps over SSH, the container on a lab host's network.
struct Local<'a> {
    container: &'a Container,
}

/// The instances and their units: the default one and two named ones.
const INSTANCES: [(&str, &str, &str); 3] = [
    ("/etc/deadpool", "deadpool", "deadpool.service"),
    (
        "/etc/deadpool-alpha",
        "deadpool-alpha",
        "deadpool@alpha.service",
    ),
    (
        "/etc/deadpool-beta",
        "deadpool-beta",
        "deadpool@beta.service",
    ),
];

/// Each pool's servers: primary and secondary addresses, all listening on this port.
const PORT: u16 = 7000;
const ORDERS: (&str, &str) = ("127.0.0.1", "127.0.0.2");
const SLOW: (&str, &str) = ("127.0.0.3", "127.0.0.4");
const BILLING: (&str, &str) = ("127.0.0.5", "127.0.0.6");
const CACHE: (&str, &str) = ("127.0.0.7", "127.0.0.8");

/// Accepts connections on ADDRESS:PORT and closes them (perl-base is essential in Debian).
const LISTENER: &str = r#"#!/usr/bin/perl
use strict;
use warnings;
use IO::Socket::INET;
my $server = IO::Socket::INET->new(LocalAddr => $ARGV[0], Listen => 16, ReuseAddr => 1)
    or die "cannot listen on $ARGV[0]: $!\n";
while (1) { my $client = $server->accept or next; close $client; }
"#;

/// Killed by the test on purpose: that ends the unit without failing it.
const LISTENER_UNIT: &str = "[Unit]
Description=test listener on %i

[Service]
ExecStart=/usr/local/bin/dp-listen %i
SuccessExitStatus=SIGKILL
";

/// A Nagios plugin in bash alone: OK when HOST:PORT accepts a connection.
const CHECK_LISTENER: &str = r#"#!/bin/bash
if exec 3<>"/dev/tcp/$1/$2"; then echo "OK - $1:$2 accepts"; exit 0; fi
echo "CRITICAL - $1:$2 refuses"; exit 2
"#;

/// The README's drop-in for 1 s ticks (an empty line first: it replaces the shipped 5 s),
/// with the first tick 1 s after boot rather than 30 s: the container has just booted.
const TIMER_DROP_IN: &str = "[Timer]
OnUnitInactiveSec=
OnBootSec=1s
OnUnitInactiveSec=1s
";

/// What the README tells to allow for local steps that write files: the hosts file and its
/// backup for `etc_hosts` on `local`, the directory an `exec` step writes.
const SERVICE_DROP_IN: &str = "[Service]
ReadWritePaths=/etc/hosts /etc/hosts.deadpool-backup /srv/deadpool-test
";

fn settings(instance: &str, extra: &str) -> String {
    format!(
        "state_dir = \"/var/lib/{instance}\"\ntick_interval = \"1s\"\nsystem_check_interval = \"10s\"\n{extra}"
    )
}

fn tcp_pool((primary, secondary): (&str, &str), steps: &str) -> String {
    format!(
        "primary = \"{primary}\"\nsecondary = \"{secondary}\"\nmax_failed_checks = 2\n\n[monitor]\ntype = \"tcp\"\nport = {PORT}\ntimeout = \"1s\"\n{steps}"
    )
}

fn local_exec(name: &str, command: &str, timeout: &str) -> String {
    format!(
        "\n[[protocol]]\ntype = \"exec\"\nname = \"{name}\"\nhosts = [\"local\"]\nshell = true\ntest_command = \"true\"\nexec_command = \"{command}\"\ntimeout = \"{timeout}\"\n"
    )
}

impl Local<'_> {
    /// Writes the listeners, the three instances and the drop-ins, and starts the listeners.
    fn set_up(container: &Container) -> Local<'_> {
        let c = container;
        c.write("/usr/local/bin/dp-listen", LISTENER, 0o755);
        c.write(
            "/etc/systemd/system/dp-listen@.service",
            LISTENER_UNIT,
            0o644,
        );
        // The name the steps switch, and the container's own name (sudo resolves it).
        let hostname = c.read("/etc/hostname");
        c.write(
            "/etc/hosts",
            &format!(
                "127.0.0.1\tlocalhost\n127.0.1.1\t{}\n{}\torders.db\n",
                hostname.trim(),
                ORDERS.0
            ),
            0o644,
        );
        c.ok("cp -p /etc/hosts /etc/hosts.deadpool-backup");
        for timer in ["deadpool.timer", "deadpool@.timer"] {
            c.write(
                &format!("/etc/systemd/system/{timer}.d/interval.conf"),
                TIMER_DROP_IN,
                0o644,
            );
        }
        c.write(
            "/etc/systemd/system/deadpool.service.d/local-steps.conf",
            SERVICE_DROP_IN,
            0o644,
        );
        c.ok("mkdir -p /srv/deadpool-test /var/lib/prometheus/node-exporter");

        // The default instance (the shipped conffile, replaced as an admin would): a pool
        // that fails over through etc_hosts and exec, and one whose step takes two minutes.
        c.write(
            "/etc/deadpool/deadpool.toml",
            &settings(
                "deadpool",
                "prometheus_textfile = \"/var/lib/prometheus/node-exporter/deadpool.prom\"\n",
            ),
            0o644,
        );
        let etc_hosts = "\n[[protocol]]\ntype = \"etc_hosts\"\nname = \"point orders.db at it\"\nservice_host_name = \"orders.db\"\nclient_hosts = [\"local\"]\nhelper = \"/usr/bin/deadpool\"\ntimeout = \"10s\"\n";
        let record = local_exec(
            "record the move",
            "echo {new_primary} > /srv/deadpool-test/orders-moved",
            "10s",
        );
        c.write(
            "/etc/deadpool/pools/orders.toml",
            &tcp_pool(ORDERS, &format!("{etc_hosts}{record}")),
            0o644,
        );
        let drain = local_exec(
            "drain the app",
            "date +%s > /srv/deadpool-test/slow-started; sleep 120",
            "5min",
        );
        c.write(
            "/etc/deadpool/pools/slow.toml",
            &tcp_pool(SLOW, &drain),
            0o644,
        );

        // alpha: a Nagios-plugin monitor, and a step that fails.
        c.write(
            "/etc/deadpool-alpha/deadpool.toml",
            &settings("deadpool-alpha", ""),
            0o644,
        );
        c.write(
            "/etc/deadpool-alpha/plugins/check_listener",
            CHECK_LISTENER,
            0o755,
        );
        let (primary, secondary) = BILLING;
        let restart = local_exec(
            "restart billing",
            "echo billing refuses to restart >&2; exit 3",
            "10s",
        );
        c.write(
            "/etc/deadpool-alpha/pools/billing.toml",
            &format!(
                "primary = \"{primary}\"\nsecondary = \"{secondary}\"\nmax_failed_checks = 2\n\n[monitor]\ntype = \"nagios\"\ncommand = \"check_listener {{host}} {{port}}\"\nport = {PORT}\ntimeout = \"1s\"\n{restart}"
            ),
            0o644,
        );

        // beta: healthy all along.
        c.write(
            "/etc/deadpool-beta/deadpool.toml",
            &settings("deadpool-beta", ""),
            0o644,
        );
        c.write(
            "/etc/deadpool-beta/pools/cache.toml",
            &tcp_pool(CACHE, &local_exec("note it", "true", "10s")),
            0o644,
        );

        c.ok("systemctl daemon-reload");
        let units: Vec<String> = [ORDERS, SLOW, BILLING, CACHE]
            .iter()
            .flat_map(|(p, s)| [p, s])
            .map(|a| Local::listener(a))
            .collect();
        c.ok(&format!("systemctl start {}", units.join(" ")));
        for (dir, _, _) in INSTANCES {
            let check = c.ok(&format!("deadpool --config {dir} check-config"));
            assert!(check.contains("OK - configuration is valid"), "{check}");
        }
        Local { container }
    }

    fn listener(address: &str) -> String {
        format!("dp-listen@{address}:{PORT}.service")
    }

    /// The server at `address` dies (kill -9).
    fn kill(&self, address: &str) {
        self.container.ok(&format!(
            "systemctl kill --signal=KILL {}",
            Local::listener(address)
        ));
    }
}

/// Where apt may take the .deb's dependencies from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Apt {
    /// Debian's mirror, over the host's network.
    Online,
    /// What the container already has: its rootfs and the bind-mounted archive cache
    /// (a container on a lab host has no route to a mirror).
    Offline,
}

/// Copies the .deb in and installs it with apt, which must find every declared dependency.
fn install(c: &Container, deb: &Path, source: Apt) {
    let name = deb.file_name().unwrap().to_str().unwrap();
    std::fs::copy(deb, c.path(&format!("/srv/{name}"))).unwrap();
    let apt_get = "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends";
    if source == Apt::Offline {
        // What apt would download: nothing, or the test fails here rather than in a fetch
        // that has no route.
        let uris = c.ok(&format!("{apt_get} --print-uris -qq /srv/{name}"));
        let fetch: Vec<&str> = uris.lines().filter(|l| l.contains("://")).collect();
        assert!(
            fetch.is_empty(),
            "apt-get cannot install ./{name} offline on the lab host: these dependencies are \
             neither in the container's rootfs nor in the archive cache \
             (CONTAINER_CACHE/apt-archives, /var/cache/deadpool-lab/apt-archives by default). \
             Run `cargo test --test lab_systemd -- --ignored the_package_ticks` once with this \
             machine's network (it downloads them into that cache), then this test again.\n{}",
            fetch.join("\n")
        );
    }
    let apt = c.sh(&format!("{apt_get} /srv/{name}"));
    assert_eq!(apt.code, 0, "apt-get install ./{name}: {apt:?}");
    assert!(
        apt.stdout
            .contains("deadpool.timer is installed but not enabled"),
        "{apt:?}"
    );
    let ldd = c.ok("ldd /usr/bin/deadpool");
    assert!(!ldd.contains("not found"), "{ldd}");
    let version = c.ok("deadpool --version");
    assert!(
        version.starts_with(&format!("deadpool {} (", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    // Installed, not running: no timer is enabled until the admin says so.
    let enabled = c.sh("systemctl is-enabled deadpool.timer");
    assert_eq!(enabled.stdout.trim(), "disabled", "{enabled:?}");
}

/// The README's NRPE set-up: its sudoers rule and its command, run as user `nagios`.
fn nrpe(c: &Container) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let line = |prefix: &str| {
        readme
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("the README has no line starting {prefix:?}"))
            .to_string()
    };
    let rule = line("nagios ALL=(root) NOPASSWD: ");
    let command = line("command[check_deadpool]=");
    let command = command.split_once('=').unwrap().1.to_string();
    c.ok("useradd --system --no-create-home --shell /usr/sbin/nologin nagios");
    c.write("/etc/sudoers.d/deadpool-nrpe", &format!("{rule}\n"), 0o440);
    c.ok("visudo -c -q");
    command
}

fn as_user(c: &Container, user: &str, command: &str) -> Run {
    c.sh(&format!("runuser -u {user} -- sh -c '{command}'"))
}

/// The textfile as node_exporter's own user would read it.
fn metrics_as_nobody(c: &Container) -> String {
    let r = as_user(
        c,
        "nobody",
        "cat /var/lib/prometheus/node-exporter/deadpool.prom",
    );
    assert_eq!(r.code, 0, "nobody cannot read the metrics textfile: {r:?}");
    r.stdout
}

#[test]
#[ignore = "boots Debian 12 with systemd in a container (mmdebstrap, systemd-nspawn); needs root; run by scripts/test"]
fn the_package_ticks_fails_over_and_stays_sandboxed_under_a_real_systemd() {
    let deb = common::deb::build_path();
    let c = Container::boot(&format!("deadpool-{}", std::process::id()), None);
    install(&c, &deb, Apt::Online);
    let servers = Local::set_up(&c);
    let check_deadpool = nrpe(&c);

    c.ok("systemctl enable --now deadpool.timer deadpool@alpha.timer deadpool@beta.timer");
    let started = Instant::now();
    let timers = c.ok("systemctl show -p TimersMonotonic deadpool.timer deadpool@alpha.timer");
    assert!(
        timers.contains("OnUnitInactiveUSec=1s") && !timers.contains("OnUnitInactiveUSec=5s"),
        "the README's drop-in replaces the 5 s interval: {timers}"
    );
    wait(
        Duration::from_secs(30),
        "three ticks of each instance",
        || INSTANCES.iter().all(|(_, _, unit)| c.runs(unit) >= 3),
    );

    // Healthy: Nagios says OK, the metrics say 0, and deadpool logs nothing, not even a
    // warning, in any instance.
    let nagios = as_user(&c, "nagios", &check_deadpool);
    assert_eq!(nagios.code, 0, "{check_deadpool}: {nagios:?}");
    assert!(nagios.stdout.starts_with("DEADPOOL OK"), "{nagios:?}");
    let other = as_user(
        &c,
        "nagios",
        "sudo -n /usr/bin/deadpool --config /etc/deadpool report --full",
    );
    assert_ne!(
        other.code, 0,
        "the rule allows that one command only: {other:?}"
    );
    let metrics = metrics_as_nobody(&c);
    assert!(metrics.contains("\ndeadpool_status 0\n"), "{metrics}");
    for (_, identifier, _) in INSTANCES {
        let said = c.deadpool_lines(identifier, 4);
        assert!(said.is_empty(), "{identifier} while healthy: {said:?}");
    }

    timer_driven_failover_and_a_failing_step(&c, &servers);
    stop_in_the_middle_of_a_step(&c, &servers);

    let nagios = as_user(&c, "nagios", &check_deadpool);
    assert_eq!(nagios.code, 2, "{nagios:?}");
    assert!(
        nagios.stdout.starts_with("DEADPOOL CRITICAL")
            && nagios.stdout.contains("slow interrupted")
            && nagios.stdout.contains("orders failed_over"),
        "{nagios:?}"
    );
    let metrics = metrics_as_nobody(&c);
    assert!(metrics.contains("\ndeadpool_status 2\n"), "{metrics}");

    // A minute of ticks, under the timers alone.
    let minute = Duration::from_secs(62);
    std::thread::sleep(minute.saturating_sub(started.elapsed()));
    let elapsed = started.elapsed().as_secs() as usize;
    for (_, _, unit) in INSTANCES {
        let runs = c.runs(unit);
        eprintln!("{unit}: {runs} runs in {elapsed} s");
        // A 1 s timer after ticks of about a tenth of a second gives nearly one run a
        // second; the default instance also spent a few seconds in its chains.
        assert!(
            runs >= elapsed * 2 / 3,
            "{unit}: {runs} runs in {elapsed} s"
        );
        let active = c.sh(&format!(
            "systemctl is-active {}",
            unit.replace(".service", ".timer")
        ));
        assert_eq!(active.stdout.trim(), "active", "{unit}: {active:?}");
    }
    let everything = c.journal(&[]);
    let limited: Vec<_> = everything
        .iter()
        .filter(|e| e.message.contains("start-limit-hit") || e.message.contains("too quickly"))
        .collect();
    assert!(limited.is_empty(), "{limited:?}");
    // The one failure is the tick the test stopped (killed by SIGTERM, as it was).
    let failed: Vec<_> = everything
        .iter()
        .filter(|e| e.message.contains("Failed with result"))
        .collect();
    assert!(
        failed.len() == 1
            && failed[0].unit == "deadpool.service"
            && failed[0].message.contains("'signal'"),
        "{failed:?}"
    );
    let units = c.ok("systemctl --failed --no-legend --plain");
    assert!(units.trim().is_empty(), "failed units: {units}");
    let beta = c.deadpool_lines("deadpool-beta", 4);
    assert!(beta.is_empty(), "beta stayed healthy: {beta:?}");
}

/// Two primaries die at once: `orders` (default instance) fails over through its steps,
/// `billing` (alpha) fails at its step. Only the timers run the ticks.
fn timer_driven_failover_and_a_failing_step(c: &Container, servers: &Local) {
    servers.kill(ORDERS.0);
    servers.kill(BILLING.0);
    wait(Duration::from_secs(20), "orders failed over", || {
        c.read("/srv/deadpool-test/orders-moved").trim() == ORDERS.1
    });
    let said = |identifier: &str, priority: u8, words: &str| {
        wait(
            Duration::from_secs(20),
            &format!("{identifier} logs {words:?} at priority {priority}"),
            || {
                c.deadpool_lines(identifier, priority)
                    .iter()
                    .any(|e| e.priority == priority && e.message.contains(words))
            },
        );
    };
    said(
        "deadpool",
        4,
        &format!(
            "pool orders: failover started: primary ({}) -> secondary",
            ORDERS.0
        ),
    );
    said(
        "deadpool",
        4,
        &format!("pool orders: failed over to secondary ({})", ORDERS.1),
    );
    let lines = c.deadpool_lines("deadpool", 4);
    assert!(
        lines
            .iter()
            .all(|e| e.priority == 4 && e.unit == "deadpool.service"),
        "a failover at warning, from the timer's own service: {lines:?}"
    );
    let hosts = c.read("/etc/hosts");
    assert!(
        hosts.contains(&format!("{}\torders.db\n", ORDERS.1)),
        "etc_hosts on local, in place under ProtectSystem=strict: {hosts}"
    );
    assert!(
        c.read("/etc/hosts.deadpool-backup")
            .contains(&format!("{}\torders.db\n", ORDERS.0)),
        "the backup holds the old mapping"
    );

    said(
        "deadpool-alpha",
        3,
        "pool billing: failover to secondary (127.0.0.6) failed at step `restart billing`",
    );
    let history = c.ok("deadpool --config /etc/deadpool-alpha history");
    assert!(
        history.contains("billing refuses to restart"),
        "the step's own words: {history}"
    );
}

/// `systemctl stop deadpool.service` while a step runs: the whole tick goes (its cgroup),
/// and the timer's next tick finds the chain interrupted in that step. Before the stop, the
/// running tick shows the sandbox as the kernel applies it.
fn stop_in_the_middle_of_a_step(c: &Container, servers: &Local) {
    servers.kill(SLOW.0);
    wait(Duration::from_secs(20), "the slow step started", || {
        !c.read("/srv/deadpool-test/slow-started").is_empty()
    });
    let main = c.running_tick();
    assert_ne!(main, "0", "the tick runs the step");
    // The container's own bounding set caps what a unit can keep (nspawn gives no
    // CAP_NET_ADMIN without its own network).
    assert_sandboxed(c, &main, UNIT_CAPABILITIES & c.bounding_set());

    c.ok("systemctl stop deadpool.service");
    wait(
        Duration::from_secs(20),
        "the next tick finds it interrupted",
        || {
            c.deadpool_lines("deadpool", 3).iter().any(|e| {
            e.message
                .contains("pool slow: a failover toward secondary (127.0.0.4) was interrupted during step `drain the app`")
        })
        },
    );
    wait(
        Duration::from_secs(10),
        "a tick after the stop ended",
        || {
            c.ok("systemctl show -p Result --value deadpool.service")
                .trim()
                == "success"
        },
    );
}

// ------------------------------------------------------------------- on a lab host

/// The lab host the container lives on (its network namespace): app2, a database client,
/// not a database host. The chain's client steps go to app1.
const LAB_HOST: &str = "LAB_APP2_NS";

/// The MariaDB passwords inside the container; the SSH key and known_hosts go to the
/// `[ssh]` defaults' names beside deadpool.toml.
const SECRETS_INSIDE: &str = "/etc/deadpool/secrets";

/// How long the failover's last step lingers on app1 after it has recorded the move: the
/// time the test has to read the failover tick's sandbox while it runs.
const LINGER_S: u32 = 4;

/// Copies a file of this machine (the lab's) into the container as root, with `mode`.
fn copy_in(c: &Container, from: &str, to: &str, mode: u32) {
    let text = std::fs::read_to_string(from).unwrap_or_else(|e| panic!("{from}: {e}"));
    c.write(to, &text, mode);
}

/// The default instance, as an admin sets it up on a lab host: the lab's SSH key (0600) and
/// known_hosts (0644) and the MariaDB monitor and admin passwords (0600), all root's in
/// root's directories as deadpool demands, and one pool `db`: the `mysql` monitor on db1
/// (primary) and db2 (replica), then `mysql_promote`, `etc_hosts` on app1 through the
/// `deadpool hosts` helper there (the lab tests' own binary, which the lab's hosts see),
/// `vip`, and `exec` on app1 over SSH. The shipped units stay as they are but for the
/// README's 1 s timer drop-in.
fn real_instance(c: &Container, lab: &Lab) {
    copy_in(c, lab.var("LAB_SSH_KEY"), "/etc/deadpool/id_ed25519", 0o600);
    copy_in(
        c,
        lab.var("LAB_SSH_KNOWN_HOSTS"),
        "/etc/deadpool/known_hosts",
        0o644,
    );
    let monitor = format!("{SECRETS_INSIDE}/monitor");
    let admin = format!("{SECRETS_INSIDE}/admin");
    copy_in(c, lab.var("LAB_MONITOR_PASSWORD_FILE"), &monitor, 0o600);
    copy_in(c, lab.var("LAB_ADMIN_PASSWORD_FILE"), &admin, 0o600);
    c.ok(&format!("chmod 700 {SECRETS_INSIDE}"));

    c.write(
        "/etc/deadpool/deadpool.toml",
        &settings(
            "deadpool",
            &format!(
                "\n[ssh]\nuser = \"{}\"\nconnect_timeout = \"2s\"\n",
                lab.var("LAB_SSH_USER")
            ),
        ),
        0o644,
    );
    let app1 = lab.var("LAB_APP1_IP");
    let lab_dir = lab.var("LAB_DIR");
    let steps = format!(
        r#"
[[protocol]]
type = "etc_hosts"
service_host_name = "db.service"
client_hosts = ["{app1}"]
helper = "{helper}"
timeout = "10s"
{vip}
[[protocol]]
type = "exec"
name = "restart app"
hosts = ["{app1}"]
test_command = "test -d {lab_dir}"
exec_command = "echo \"$(hostname) restarted for {{new_primary}}\" >> {lab_dir}/restarts; sleep {LINGER_S}"
timeout = "20s"
"#,
        helper = common::BIN,
        vip = lab.vip_step(""),
    );
    let pool = lab
        .mysql_pool(2, &steps)
        .replace(lab.var("LAB_MONITOR_PASSWORD_FILE"), &monitor)
        .replace(lab.var("LAB_ADMIN_PASSWORD_FILE"), &admin);
    assert!(
        !pool.contains(&format!("{lab_dir}/secrets")),
        "every secret is read inside the container: {pool}"
    );
    c.write("/etc/deadpool/pools/db.toml", &pool, 0o644);
    c.write(
        "/etc/systemd/system/deadpool.timer.d/interval.conf",
        TIMER_DROP_IN,
        0o644,
    );
    c.ok("systemctl daemon-reload");
    let check = c.ok("deadpool --config /etc/deadpool check-config");
    assert!(check.contains("OK - configuration is valid"), "{check}");
}

fn vip_on(lab: &Lab, host: &str) -> bool {
    lab.sh(&["vip", "show", host]).contains(VIP)
}

#[test]
#[ignore = "boots Debian 12 with systemd in a container on a host of the namespace lab; needs root; run by scripts/test"]
fn the_timer_fails_a_real_mysql_pool_over_from_a_lab_host_under_the_full_hardening() {
    let deb = common::deb::build_path();
    let started = Instant::now();
    let lab = Lab::fresh();
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    lab.map_on_apps("db.service");
    let lab_up = started.elapsed();
    // Declared after the lab, so dropped before it: `lab.sh down` would kill every process
    // on the host's network, the container's too, and leave its overlay mounted.
    let c = Container::boot(
        &format!("deadpool-app2-{}", std::process::id()),
        Some(lab.var(LAB_HOST)),
    );
    let booted = started.elapsed();
    install(&c, &deb, Apt::Offline);
    real_instance(&c, &lab);
    let installed = started.elapsed();

    c.ok("systemctl enable --now deadpool.timer");
    wait(Duration::from_secs(30), "three healthy ticks", || {
        c.runs("deadpool.service") >= 3
    });
    let nagios = c.sh("deadpool --config /etc/deadpool report --nagios");
    assert_eq!(nagios.code, 0, "healthy before the fault: {nagios:?}");
    let said = c.deadpool_lines("deadpool", 4);
    assert!(said.is_empty(), "deadpool while healthy: {said:?}");
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1");

    lab.sh(&["kill", "db1", "mysql"]);
    let killed = Instant::now();
    let db2 = lab.var("LAB_DB2_IP");
    let restarts = format!("{}/restarts", lab.var("LAB_DIR"));
    let moved = format!("app1 restarted for {db2}");
    wait(
        Duration::from_secs(30),
        "the chain's last step ran on app1",
        || std::fs::read_to_string(&restarts).is_ok_and(|t| t.contains(&moved)),
    );
    let to_exec = killed.elapsed();

    // The tick running now is the failover's, in its last step: the sandbox the kernel
    // gives it. On a lab host the container has CAP_NET_ADMIN, so the unit keeps both
    // capabilities of its bounding set.
    let main = c.running_tick();
    assert_ne!(main, "0", "the failover's tick runs its last step");
    assert_eq!(c.status_of(&main)["Name"], "deadpool");
    assert_eq!(
        c.bounding_set() & UNIT_CAPABILITIES,
        UNIT_CAPABILITIES,
        "nspawn's --capability=CAP_NET_ADMIN"
    );
    assert_sandboxed(&c, &main, UNIT_CAPABILITIES);

    let ended = format!("pool db: failed over to secondary ({db2})");
    wait(
        Duration::from_secs(10 + u64::from(LINGER_S)),
        "the failover's end in the journal",
        || {
            c.deadpool_lines("deadpool", 4)
                .iter()
                .any(|e| e.message.contains(&ended))
        },
    );
    let to_failed_over = killed.elapsed();
    let lines = c.deadpool_lines("deadpool", 4);
    let end = lines
        .iter()
        .position(|e| e.message.contains(&ended))
        .unwrap();
    assert!(
        lines[..=end]
            .iter()
            .all(|e| e.priority == 4 && e.unit == "deadpool.service"),
        "the failover at warning, from the timer's own service, nothing worse before it: {lines:?}"
    );
    let begun = format!(
        "pool db: failover started: primary ({}) -> secondary",
        lab.var("LAB_DB1_IP")
    );
    assert!(
        lines[..end].iter().any(|e| e.message.contains(&begun)),
        "{lines:?}"
    );

    // What the chain did, seen from the lab.
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
    assert_eq!(
        lab.app_maps("LAB_APP1_NS", "db.service").as_deref(),
        Some(db2),
        "app1's hosts file"
    );
    assert!(vip_on(&lab, "db2") && !vip_on(&lab, "db1"));
    let (ok, server_id) = lab.in_ns(
        "LAB_APP1_NS",
        &format!(
            "MYSQL_PWD=$(cat {}) mariadb --connect-timeout=3 -h {VIP} -u {} -N -e 'SELECT @@server_id'",
            lab.var("LAB_WRITER_PASSWORD_FILE"),
            lab.var("LAB_WRITER_USER"),
        ),
    );
    assert!(
        ok && server_id == "2",
        "the VIP answers from db2: {server_id}"
    );
    let history = c.ok("deadpool --config /etc/deadpool history");
    assert!(
        history.contains("promoted: writable, replication stopped"),
        "{history}"
    );

    // The next ticks keep watching the locked pool, and keep quiet.
    let runs = c.runs("deadpool.service");
    wait(Duration::from_secs(10), "two more ticks", || {
        c.runs("deadpool.service") >= runs + 2
    });
    let nagios = c.sh("deadpool --config /etc/deadpool report --nagios");
    assert_eq!(nagios.code, 1, "{nagios:?}");
    assert!(
        nagios
            .stdout
            .starts_with("DEADPOOL WARNING - db failed_over on secondary"),
        "{nagios:?}"
    );
    let errors = c.deadpool_lines("deadpool", 3);
    assert!(errors.is_empty(), "{errors:?}");
    let units = c.ok("systemctl --failed --no-legend --plain");
    assert!(units.trim().is_empty(), "failed units: {units}");
    eprintln!(
        "lab up {lab_up:?}, container booted {:?} later, package and instance {:?} later; \
         kill -9 to the last step {to_exec:?}, to failed over {to_failed_over:?}",
        booted - lab_up,
        installed - booted
    );
}
