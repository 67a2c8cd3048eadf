//! The shipped systemd units: `systemd-analyze verify` accepts them without a single
//! warning, `systemd-analyze security` rates the services OK, the timer settings that
//! matter for second-scale ticks are there, and what deadpool and its local steps do under
//! the hardening stays inside its system call filter and address families (strace).

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

fn unit(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("systemd")
            .join(name),
    )
    .unwrap()
}

#[test]
fn systemd_analyze_verify_accepts_the_units() {
    let tmp = tempfile::tempdir().unwrap();
    // verify checks that ExecStart exists: point it at the binary under test. Templates are
    // verified through an instance name, as systemd would load them.
    for (source, target) in [
        ("deadpool.service", "deadpool.service"),
        ("deadpool.timer", "deadpool.timer"),
        ("deadpool@.service", "deadpool@main.service"),
        ("deadpool@.timer", "deadpool@main.timer"),
    ] {
        let text = unit(source).replace("/usr/bin/deadpool", common::BIN);
        std::fs::write(tmp.path().join(target), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .current_dir(tmp.path())
        .args([
            "verify",
            "--man=no",
            "deadpool.service",
            "deadpool.timer",
            "deadpool@main.service",
            "deadpool@main.timer",
        ])
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys are only warnings to systemd-analyze; for us they are failures.
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze complained:\n{stderr}"
    );
}

#[test]
fn units_have_the_settings_second_scale_ticks_need() {
    for service in ["deadpool.service", "deadpool@.service"] {
        let text = unit(service);
        for needed in [
            "Type=oneshot",
            "TimeoutStartSec=",
            "StartLimitIntervalSec=0",
            "ProtectSystem=strict",
            "StateDirectory=",
            "PrivateTmp=yes",
        ] {
            assert!(text.contains(needed), "{service} lacks {needed}");
        }
    }
    for timer in ["deadpool.timer", "deadpool@.timer"] {
        let text = unit(timer);
        assert!(text.contains("OnBootSec="), "{timer}");
        assert!(text.contains("\nOnUnitInactiveSec="), "{timer}");
        assert!(
            !text.contains("\nOnUnitActiveSec="),
            "{timer}: does not re-arm for oneshot services"
        );
        assert!(text.contains("\nAccuracySec=100ms"), "{timer}");
    }
}

/// The exposure score `systemd-analyze security --offline` gives a unit (0 safest, 10 worst).
fn exposure(dir: &Path, unit: &str) -> (f64, String) {
    let out = Command::new("systemd-analyze")
        .current_dir(dir)
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let last = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure for {unit}: {text}"));
    let score: f64 = last
        .rsplit(": ")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{last}"));
    (score, last.to_string())
}

#[test]
fn systemd_analyze_security_rates_the_services_ok() {
    let tmp = tempfile::tempdir().unwrap();
    for (source, target) in [
        ("deadpool.service", "deadpool.service"),
        ("deadpool@.service", "deadpool@main.service"),
    ] {
        std::fs::write(tmp.path().join(target), unit(source)).unwrap();
        let (score, line) = exposure(tmp.path(), target);
        assert!(score < 4.0 && line.contains(" OK"), "{target}: {line}");
    }
}

#[test]
fn services_start_only_from_their_timers_and_may_write_the_textfile_dir() {
    for service in ["deadpool.service", "deadpool@.service"] {
        let text = unit(service);
        assert!(
            !text.lines().any(|l| l.trim() == "[Install]"),
            "{service} has an [Install] section"
        );
        assert!(!text.contains("\nWantedBy="), "{service}");
        for needed in [
            "ReadWritePaths=-/var/lib/prometheus/node-exporter\n",
            "NoNewPrivileges=yes\n",
            "PrivateDevices=yes\n",
            "ProtectKernelModules=yes\n",
            "ProtectKernelLogs=yes\n",
            "ProtectClock=yes\n",
            "ProtectHostname=yes\n",
            "RestrictSUIDSGID=yes\n",
            "LockPersonality=yes\n",
            "RestrictRealtime=yes\n",
            "SystemCallArchitectures=native\n",
            "SystemCallFilter=@system-service\n",
            "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW\n",
        ] {
            assert!(text.contains(needed), "{service} lacks {needed}");
        }
    }
    for timer in ["deadpool.timer", "deadpool@.timer"] {
        assert!(unit(timer).contains("WantedBy=timers.target"), "{timer}");
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(
        readme.contains("ReadWritePaths=-/var/lib/prometheus/node-exporter"),
        "the README names the textfile directory's ReadWritePaths="
    );
}

/// A unit setting's value, e.g. the list of `RestrictAddressFamilies=`.
fn setting(text: &str, key: &str) -> Vec<String> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}="));
    line.split_whitespace().map(str::to_string).collect()
}

/// Every system call in a `systemd-analyze syscall-filter` group, nested groups expanded.
fn syscall_set(group: &str) -> BTreeSet<String> {
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager"])
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd)");
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with('@') {
            current = Some(line.trim().to_string());
            groups.insert(line.trim().to_string(), Vec::new());
        } else if let Some(g) = &current {
            let member = line.trim();
            if !member.is_empty() && !member.starts_with('#') {
                groups.get_mut(g).unwrap().push(member.to_string());
            }
        }
    }
    fn expand(groups: &BTreeMap<String, Vec<String>>, g: &str, out: &mut BTreeSet<String>) {
        for m in groups.get(g).map(Vec::as_slice).unwrap_or_default() {
            if m.starts_with('@') {
                expand(groups, m, out);
            } else {
                out.insert(m.clone());
            }
        }
    }
    let mut set = BTreeSet::new();
    expand(&groups, group, &mut set);
    assert!(set.len() > 100, "{group} expanded to {} calls", set.len());
    set
}

both_modes!(a_tick_and_its_local_steps_stay_inside_the_filter);
/// Runs deadpool commands under strace (children followed) and checks that every system
/// call is in the unit's `SystemCallFilter=` and every socket in its
/// `RestrictAddressFamilies=`: ticks with a TCP monitor and a Nagios-plugin monitor, a
/// failover through a plugin step and a local exec step, the metrics textfile, reports,
/// history, pause and resume.
fn a_tick_and_its_local_steps_stay_inside_the_filter() {
    let text = unit("deadpool.service");
    let filter = setting(&text, "SystemCallFilter");
    let families = setting(&text, "RestrictAddressFamilies");
    let mut allowed = BTreeSet::new();
    for group in &filter {
        allowed.extend(syscall_set(group));
    }

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let tcp_pool = format!(
        "primary = \"127.0.0.1\"\nsecondary = \"127.0.0.2\"\n[monitor]\ntype = \"tcp\"\nport = {port}\n"
    );
    let exec_pool = common::TWO_STEP_POOL.replace("max_failed_checks = 3", "max_failed_checks = 2")
        + "\n[[protocol]]\ntype = \"exec\"\nname = \"three\"\nhosts = [\"local\"]\nexec_command = \"echo {new_primary}\"\n";
    let inst = common::Instance::with(
        "tick_interval = \"1s\"\nprometheus_textfile = \"metrics/deadpool.prom\"\n",
        &[("db", &exec_pool), ("tcp", &tcp_pool)],
    );
    std::fs::create_dir(inst.path("metrics")).unwrap();
    let runs: &[&[&str]] = &[
        &["tick"],
        &["tick"],
        &["tick"],
        &["report", "--nagios"],
        &["report", "--json"],
        &["report", "--prometheus"],
        &["history"],
        &["pause", "tcp", "--for", "5min", "--reason", "patching"],
        &["tick"],
        &["resume", "tcp"],
        &["check-config", "--offline"],
    ];
    let mut seen_calls = BTreeSet::new();
    let mut seen_families = BTreeSet::new();
    for (n, args) in runs.iter().enumerate() {
        if n == 1 {
            inst.flag("down-db1");
        }
        let trace = inst.path(&format!("trace.{n}"));
        let cmd = inst.command(args);
        let program = cmd.get_program().to_owned();
        let argv: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let out = Command::new("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&trace)
            .arg(program)
            .args(argv)
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env("USER", "tester")
            .output()
            .expect("strace must be installed (Debian package strace)");
        // Nagios statuses are exit codes; everything else must succeed.
        let nagios = args.contains(&"--nagios");
        assert!(
            out.status
                .code()
                .is_some_and(|c| c == 0 || (nagios && c <= 2)),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::read_to_string(&trace).unwrap();
        for line in log.lines() {
            let call = line
                .split_once(' ')
                .map_or(line, |(_, rest)| rest)
                .trim_start();
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && call[name.len()..].starts_with('(') {
                seen_calls.insert(name);
            }
            if let Some(rest) = call.strip_prefix("socket(") {
                let family: String = rest.chars().take_while(|c| *c != ',').collect();
                seen_families.insert(family);
            }
        }
    }
    assert_eq!(
        inst.state_of("db").0,
        "failed_over",
        "the chain ran under strace"
    );
    let outside: Vec<&String> = seen_calls.difference(&allowed).collect();
    assert!(
        outside.is_empty(),
        "system calls outside {filter:?}: {outside:?}"
    );
    assert!(seen_families.contains("AF_INET"), "{seen_families:?}");
    for family in &seen_families {
        assert!(families.contains(family), "{family} is not in {families:?}");
    }
}

both_modes!(a_timer_slower_than_tick_interval_is_found_by_check_config_and_by_tick);
/// The shipped timer and service, installed in a unit dir of their own
/// (`$SYSTEMD_UNIT_PATH`, which systemd reads too) with a drop-in pointing the service at
/// the test's config dir: check-config compares the timer's period with tick_interval, and
/// a tick that finds a gap says when the timer is the cause.
fn a_timer_slower_than_tick_interval_is_found_by_check_config_and_by_tick() {
    let inst = common::Instance::with(
        "tick_interval = \"200ms\"\nsystem_check_interval = \"1h\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    let units = inst.path("units");
    std::fs::create_dir_all(units.join("deadpool.service.d")).unwrap();
    std::fs::create_dir_all(units.join("deadpool.timer.d")).unwrap();
    std::fs::write(units.join("deadpool.timer"), unit("deadpool.timer")).unwrap();
    std::fs::write(units.join("deadpool.service"), unit("deadpool.service")).unwrap();
    std::fs::write(
        units.join("deadpool.service.d/config.conf"),
        format!(
            "[Service]\nExecStart=\nExecStart=/usr/bin/deadpool --config {} tick\n",
            inst.dir().display()
        ),
    )
    .unwrap();
    let period = |p: &str| {
        std::fs::write(
            units.join("deadpool.timer.d/period.conf"),
            format!("[Timer]\nOnUnitInactiveSec=\nOnUnitInactiveSec={p}\n"),
        )
        .unwrap()
    };
    let run = |args: &[&str]| {
        common::Run::from(
            inst.command(args)
                .env("SYSTEMD_UNIT_PATH", &units)
                .output()
                .unwrap(),
        )
    };

    // The shipped 5s against 200ms: every tick would be a gap.
    let r = run(&["check-config", "--offline"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .contains("deadpool.timer starts a tick every 5s (OnUnitInactiveSec= in ")
            && r.stderr.contains("but tick_interval is 200ms")
            && r.stderr.contains("no pool ever fails over")
            && r.stderr
                .contains("set OnUnitInactiveSec=200ms in a drop-in"),
        "{r:?}"
    );
    period("400ms");
    let r = run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("warning: deadpool.timer starts a tick every 400ms")
            && r.stdout.contains("2.0 times as long as intended"),
        "{r:?}"
    );
    period("200ms");
    let r = run(&["check-config", "--offline"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("deadpool.timer: a tick every 200ms (OnUnitInactiveSec= in ")
            && !r.stdout.contains("warning: deadpool.timer"),
        "{r:?}"
    );

    // A tick after a gap, with the timer slow enough to cause it: said as an error.
    period("1s");
    assert_eq!(run(&["tick"]).code, 0);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let r = run(&["tick"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("deadpool.timer starts a tick every 1s")
            && r.stderr.contains("no pool ever fails over"),
        "{r:?}"
    );
    // Without such a timer, a gap is only the usual note.
    period("200ms");
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let r = run(&["tick"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!r.stderr.contains("fails over"), "{r:?}");
}
