//! `report --nagios` with many pools: a first line under 1,024 bytes (NRPE v2), the whole
//! output under 8 KB (Nagios Core), and the perfdata, read the way Nagios reads it (the
//! first line's and the long output's after its first `|`), parsed by the Nagios plugin
//! library itself (Monitoring::Plugin::Performance). In the `down_for` half of each test
//! (`both_modes!`) the reports are taken while the tick re-checks the failing primaries.

#[macro_use]
mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::{Detection, Instance, Run, detection};

/// A pool that is blocked after one tick: its primary is down, its only step's preflight
/// fails.
fn blocked_pool(i: usize) -> String {
    format!(
        "primary = \"c{i}p\"\nsecondary = \"c{i}s\"\nmax_failed_checks = 1\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\n[[protocol]]\ntype = \"plugin\"\nname = \"blk\"\ncommand = \"step\"\n"
    )
}

/// A pool whose primary is failing, far from its threshold: WARNING. With `down_for`, an
/// hour from confirming it.
fn counting_pool(i: usize) -> String {
    let pool = format!(
        "primary = \"w{i}p\"\nsecondary = \"w{i}s\"\nmax_failed_checks = 50\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\n"
    );
    match detection() {
        Detection::Count => pool,
        Detection::Time => common::confirming_for_an_hour(&pool),
    }
}

/// A healthy pool: a TCP monitor on listeners of this test.
fn healthy_pool(port: u16) -> String {
    format!(
        "primary = \"127.0.0.1\"\nsecondary = \"127.0.0.2\"\n[monitor]\ntype = \"tcp\"\nport = {port}\n"
    )
}

/// Listeners on 127.0.0.1 and 127.0.0.2 (same port) that accept and drop connections.
fn listeners() -> u16 {
    let first = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = first.local_addr().unwrap().port();
    let second = TcpListener::bind(("127.0.0.2", port)).unwrap();
    for l in [first, second] {
        std::thread::spawn(move || {
            for conn in l.incoming() {
                drop(conn);
            }
        });
    }
    port
}

/// 200 pools: 10 blocked, 20 counting, 2 paused, the rest healthy; names of `width`. The
/// primaries of the 30 fail from the next tick on (see [`nagios_report`]).
fn two_hundred(width: usize) -> (Instance, Vec<String>) {
    let port = listeners();
    let name = |kind: &str, i: usize| {
        let base = format!("{kind}-{i:03}");
        format!("{base:-<width$}")
    };
    let mut pools: Vec<(String, String)> = Vec::new();
    for i in 0..10 {
        pools.push((name("crit", i), blocked_pool(i)));
    }
    for i in 0..20 {
        pools.push((name("warn", i), counting_pool(i)));
    }
    for i in 0..170 {
        pools.push((name("ok", i), healthy_pool(port)));
    }
    let refs: Vec<(&str, &str)> = pools
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_str()))
        .collect();
    let inst = Instance::with(
        "tick_interval = \"10s\"\nsystem_check_interval = \"1h\"\n",
        &refs,
    );
    for i in 0..10 {
        inst.flag(&format!("down-c{i}p"));
    }
    inst.flag("fail-preflight-blk");
    for paused in [name("ok", 5), name("ok", 6)] {
        let r = inst.run(&["pause", &paused, "--for", "1h", "--reason", "patching"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    (inst, pools.into_iter().map(|(n, _)| n).collect())
}

/// `report --nagios` of the 200 pools once a tick has seen their primaries fail. Counting,
/// after that tick. With `down_for`, while the tick re-checks the 20 counting pools' primaries
/// (each has recorded a re-check), once the 10 others are blocked (confirmed in 100 ms); then
/// those primaries answer again and the tick ends.
fn nagios_report(inst: &Instance) -> Run {
    let counting: Vec<String> = (0..20).map(|i| format!("w{i}p")).collect();
    let counting: Vec<&str> = counting.iter().map(String::as_str).collect();
    if detection() == Detection::Count {
        for host in counting {
            inst.flag(&format!("down-{host}"));
        }
        let r = inst.tick();
        assert!(r.code <= 1, "{r:?}");
        return inst.run(&["report", "--nagios"]);
    }
    let rechecking = inst.rechecking(&counting, |inst| {
        let r = inst.run(&["report", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        v["pools"].as_array().unwrap().iter().all(|p| {
            let name = p["name"].as_str().unwrap();
            if name.starts_with("crit") {
                p["state"] == "blocked"
            } else if name.starts_with("warn") {
                p["failures"].as_u64().unwrap() >= 2
            } else {
                true
            }
        })
    });
    let report = inst.run(&["report", "--nagios"]);
    let r = rechecking.end();
    assert!(r.code <= 1, "{r:?}");
    assert!(inst.calls("promote").is_empty(), "no failover: {r:?}");
    report
}

/// The first line's list of the worst pools (`NAME STATE[ COUNT]` each), without the
/// `and N more` that may end it.
fn worst(first: &str) -> Vec<&str> {
    let list = first
        .split_once("; worst: ")
        .expect("a list of the worst")
        .1;
    let list = list.split(" | ").next().unwrap();
    let list = list.split(", and ").next().unwrap();
    list.split(", ").collect()
}

/// Whether `entry` of that list names a pool in `state` whose primary failed as a tick saw
/// it: `1/MAX` (one failed check of `max_failed_checks`) or, with `down_for`, `N failed` with
/// N of at least 2 (the check of the round and a re-check).
fn failing(entry: &str, state: &str, max: u32) -> bool {
    let Some((_, count)) = entry.split_once(&format!(" {state} ")) else {
        return false;
    };
    match detection() {
        Detection::Count => count == format!("1/{max}"),
        Detection::Time => count
            .strip_suffix(" failed")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 2),
    }
}

/// The perfdata as Nagios collects it: after ` | ` on the first line, and everything after
/// the first `|` of the long output.
fn nagios_perfdata(output: &str) -> String {
    let mut lines = output.lines();
    let first = lines.next().unwrap();
    let mut perf = first
        .split_once(" | ")
        .expect("perfdata on the first line")
        .1
        .to_string();
    let rest: Vec<&str> = lines.collect();
    if let Some(start) = rest.iter().position(|l| l.contains('|')) {
        let (_, tail) = rest[start].split_once('|').unwrap();
        perf.push(' ');
        perf.push_str(tail);
        for l in &rest[start + 1..] {
            perf.push(' ');
            perf.push_str(l);
        }
    }
    perf
}

/// Labels and values as Monitoring::Plugin::Performance parses them; it silently drops what
/// it cannot parse, so a broken item shows as a missing label.
fn parse_with_monitoring_plugin(perf: &str) -> Vec<(String, String)> {
    let script = r#"use Monitoring::Plugin::Performance;
local $/; my $s = <STDIN>;
print $_->label, "\t", $_->value, "\n" for Monitoring::Plugin::Performance->parse_perfstring($s);"#;
    let mut child = Command::new("perl")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("perl must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(perf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Monitoring::Plugin::Performance (Debian package libmonitoring-plugin-perl): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (label, value) = l.split_once('\t').unwrap();
            (label.to_string(), value.to_string())
        })
        .collect()
}

fn check_limits(output: &str) {
    let first = output.lines().next().unwrap();
    assert!(
        first.len() < 1024,
        "first line of {} bytes:\n{first}",
        first.len()
    );
    assert!(output.len() < 8192, "{} bytes:\n{output}", output.len());
    assert!(!first.split_once(" | ").unwrap().0.contains('|'), "{first}");
}

both_modes!(two_hundred_pools_fit_nrpe_and_nagios_with_every_pools_perfdata);
fn two_hundred_pools_fit_nrpe_and_nagios_with_every_pools_perfdata() {
    let (inst, names) = two_hundred(0);
    let r = nagios_report(&inst);
    assert_eq!(r.code, 2, "CRITICAL: {r:?}");
    check_limits(&r.stdout);
    let first = r.stdout.lines().next().unwrap();
    assert!(
        first.starts_with("DEADPOOL CRITICAL - 200 pools: 10 CRITICAL, 22 WARNING, 168 OK; worst: crit-000 blocked "),
        "{first}"
    );
    // All 32 pools with problems fit, worst first, then by name.
    let worst = worst(first);
    assert_eq!(worst.len(), 32, "{first}");
    for (i, entry) in worst[..10].iter().enumerate() {
        assert!(entry.starts_with(&format!("crit-{i:03} ")), "{first}");
        assert!(failing(entry, "blocked", 1), "{entry} in {first}");
    }
    assert_eq!(worst[10..12], ["ok-005 paused", "ok-006 paused"], "{first}");
    for (i, entry) in worst[12..].iter().enumerate() {
        assert!(entry.starts_with(&format!("warn-{i:03} ")), "{first}");
        assert!(failing(entry, "armed", 50), "{entry} in {first}");
    }
    assert!(first.contains(" | tick_age="), "{first}");
    // Details on the following lines, worst first.
    let second = r.stdout.lines().nth(1).unwrap();
    assert!(second.starts_with("CRITICAL: crit-"), "{second}");
    assert!(
        r.stdout.contains("WARNING: ok-005: paused until "),
        "{}",
        r.stdout
    );

    let parsed = parse_with_monitoring_plugin(&nagios_perfdata(&r.stdout));
    assert_eq!(parsed.len(), 2 + 200, "{parsed:?}");
    assert_eq!(parsed[0].0, "tick_age");
    assert_eq!(parsed[1].0, "tick_duration");
    for name in &names {
        let label = format!("{name}_failures");
        let value = &parsed
            .iter()
            .find(|(l, _)| *l == label)
            .unwrap_or_else(|| panic!("no perfdata for {name}"))
            .1;
        let failures: u64 = value.parse().unwrap();
        if name.starts_with("warn") || name.starts_with("crit") {
            match detection() {
                Detection::Count => assert_eq!(failures, 1, "{label}"),
                Detection::Time => assert!(failures >= 2, "{label}: {failures}"),
            }
        } else {
            assert_eq!(failures, 0, "{label}");
        }
    }
}

both_modes!(longest_names_cut_whole_perfdata_items_and_say_so);
fn longest_names_cut_whole_perfdata_items_and_say_so() {
    let (inst, _) = two_hundred(64);
    let r = nagios_report(&inst);
    assert_eq!(r.code, 2, "{r:?}");
    check_limits(&r.stdout);
    // Not every pool with a problem fits on the first line: the rest are counted.
    let first = r.stdout.lines().next().unwrap();
    let worst = worst(first);
    let listed = (worst.iter())
        .filter(|e| failing(e, "blocked", 1) || failing(e, "armed", 50))
        .count();
    assert!(listed < 30, "{first}");
    assert_eq!(
        listed + first.matches(" paused").count(),
        worst.len(),
        "each listed pool as it is: {first}"
    );
    let more = first
        .split(", and ")
        .nth(1)
        .and_then(|t| t.split(" more | ").next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("`and N more` in {first}"));
    assert_eq!(
        listed + first.matches(" paused").count() + more,
        32,
        "{first}"
    );
    let perf = nagios_perfdata(&r.stdout);
    let items = perf.split_whitespace().count();
    let parsed = parse_with_monitoring_plugin(&perf);
    assert_eq!(
        parsed.len(),
        items,
        "every item that is there parses: {perf}"
    );
    assert!(parsed.len() < 202, "they cannot all fit");
    let left_out = 202 - parsed.len();
    assert!(
        r.stdout.contains(&format!(
            "perfdata of {left_out} pool(s) left out to stay within Nagios's 8 KB"
        )),
        "{}",
        r.stdout
    );
    // Problems keep about 1 KB of lines before perfdata of healthy pools.
    let details: usize = r
        .stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with('|'))
        .map(|l| l.len() + 1)
        .sum();
    assert!(details >= 900, "{}", r.stdout);
    // The pools with problems keep theirs.
    for i in 0..10 {
        let label = format!("{:-<64}_failures", format!("crit-{i:03}"));
        assert!(parsed.iter().any(|(l, _)| *l == label), "{label}");
    }
}

both_modes!(a_small_instance_keeps_the_one_line_form);
/// One pool whose primary is failing: counting after a tick, or with `down_for` while the
/// tick re-checks it (that pool waits an hour to confirm; db1 comes back meanwhile).
fn a_small_instance_keeps_the_one_line_form() {
    let settings = "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n";
    let r = match detection() {
        Detection::Count => {
            let inst = Instance::new();
            inst.tick();
            inst.flag("down-db1");
            inst.tick();
            inst.run(&["report", "--nagios"])
        }
        Detection::Time => {
            let pool = common::confirming_for_an_hour(common::TWO_STEP_POOL);
            let inst = Instance::exact(settings, &[("db", &pool)]);
            inst.tick();
            let rechecking = inst.rechecking(&["db1"], |inst| inst.state_of("db").2 >= 2);
            let report = inst.run(&["report", "--nagios"]);
            assert_eq!(rechecking.end().code, 0);
            report
        }
    };
    assert_eq!(r.code, 1, "{r:?}");
    let first = r.stdout.lines().next().unwrap();
    let (failed, perf) = match detection() {
        Detection::Count => ("failed 1/3".to_string(), "'db_failures'=1;;3;0".to_string()),
        Detection::Time => {
            // The count of checks, the round's and the re-checks', still growing.
            let n = first
                .split_once("'db_failures'=")
                .and_then(|(_, v)| v.split(';').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("a count in {first}"));
            assert!(n >= 2, "{first}");
            (
                format!("failed {n} check(s) in a row"),
                format!("'db_failures'={n};;;0"),
            )
        }
    };
    assert!(
        first.starts_with(&format!(
            "DEADPOOL WARNING - db armed on primary; db: active primary (db1) {failed}"
        )),
        "{first}"
    );
    assert!(first.ends_with(&perf), "{first}");
    let parsed = parse_with_monitoring_plugin(&nagios_perfdata(&r.stdout));
    assert_eq!(parsed.len(), 3, "{parsed:?}");
}
