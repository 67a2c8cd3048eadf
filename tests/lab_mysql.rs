//! MySQL pools against real MariaDB servers in the namespace lab: failover on process death,
//! hangs and stops, no failover on a blip, manual promotion, readiness, and clear messages
//! for broken setups. Run by `scripts/test` (they need root); `cargo test` lists them as
//! ignored.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::lab::{Lab, Writer};
use common::{Detection, Instance, detection};
use mysql::prelude::Queryable;

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";

/// The application's account on `host`.
fn writer_conn(lab: &Lab, host: &str) -> mysql::Conn {
    let user = lab.var("LAB_WRITER_USER");
    common::lab::mysql_conn(lab, host, user, "LAB_WRITER_PASSWORD_FILE").expect("writer connects")
}

fn tick_timed(inst: &Instance) -> Duration {
    let started = Instant::now();
    let r = inst.tick();
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    started.elapsed()
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    kill_9_of_the_primary_promotes_the_replica_without_losing_acknowledged_writes
);
fn kill_9_of_the_primary_promotes_the_replica_without_losing_acknowledged_writes() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    assert_eq!(inst.tick().code, 0);
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );

    let writer = Writer::start(&lab, lab.var("LAB_DB1_IP"));
    std::thread::sleep(Duration::from_millis(1500));
    lab.sh(&["kill", "db1", "mysql"]);
    let (acked, why) = writer.finish();
    assert_ne!(why, "stopped", "the writer should have lost its server");

    // Counting, two ticks only count and the third fails over; with `down_for`, the first
    // tick that sees the dead primary confirms the outage and fails over.
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "failover on exactly the deciding tick: {}",
        inst.history()
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
    lab.assert_rows_on("db2", &acked);
    // The new primary takes writes from the application account.
    writer_conn(&lab, lab.var("LAB_DB2_IP"))
        .query_drop("INSERT INTO app.acked (id) VALUES (999999)")
        .unwrap();
    let history = inst.history();
    assert!(
        history.contains("promoted: writable, replication stopped"),
        "{history}"
    );

    // The old primary comes back writable while the pool is failed over: CRITICAL.
    lab.sh(&["start", "db1", "mysql"]);
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("split-brain risk"), "{r:?}");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_hung_primary_never_hangs_a_tick_and_fails_over_after_the_threshold
);
fn a_hung_primary_never_hangs_a_tick_and_fails_over_after_the_threshold() {
    for fault in [["hang", "db1", ""], ["stop", "db1", "mysql"]] {
        let lab = Lab::fresh();
        let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
        assert_eq!(inst.tick().code, 0);
        let args: Vec<&str> = fault.iter().copied().filter(|a| !a.is_empty()).collect();
        lab.sh(&args);
        // Monitor timeout 1s: a tick that only counts must end within it plus a margin.
        // With `down_for` no tick only counts: the first one decides.
        let counting = match detection() {
            Detection::Count => 2,
            Detection::Time => 0,
        };
        for n in 1..=counting {
            let took = tick_timed(&inst);
            assert!(
                took < Duration::from_millis(2500),
                "{fault:?}: tick {n} took {took:?}"
            );
            assert_eq!(
                inst.state_of("db"),
                ("armed".into(), "primary".into(), n),
                "{fault:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // The failover tick also waits out the dead primary in preflight and promote,
        // each bounded by the same timeout; with `down_for` it first re-checks the primary
        // for that long, plus the last re-check's timeout.
        let confirming = match detection() {
            Detection::Count => Duration::ZERO,
            Detection::Time => common::down_for(3) + Duration::from_secs(1),
        };
        let took = tick_timed(&inst);
        assert!(
            took < Duration::from_secs(8) + confirming,
            "{fault:?}: failover tick took {took:?}"
        );
        assert_eq!(
            inst.state_of("db"),
            ("failed_over".into(), "secondary".into(), 0),
            "{fault:?}"
        );
        assert_eq!(
            lab.sql("db2", "SELECT @@global.read_only"),
            "0",
            "{fault:?}"
        );
        let history = inst.history();
        assert!(history.contains("unreachable"), "{fault:?}: {history}");
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_blip_shorter_than_the_threshold_causes_no_failover
);
fn a_blip_shorter_than_the_threshold_causes_no_failover() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    inst.tick();
    match detection() {
        // One failed tick of three, then the primary is back for the next.
        Detection::Count => {
            lab.sh(&["kill", "db1", "mysql"]);
            inst.tick();
            assert_eq!(inst.state_of("db").2, 1);
            lab.sh(&["start", "db1", "mysql"]);
            inst.tick();
        }
        // The primary dies and is back within one tick, well before `down_for`: that tick
        // sees it fail, re-checks it until it answers, and does not fail over.
        Detection::Time => {
            let killed = Instant::now();
            lab.sh(&["kill", "db1", "mysql"]);
            let tick = inst
                .command(&["-v", "tick"])
                .spawn()
                .expect("start deadpool tick");
            lab.sh(&["start", "db1", "mysql"]);
            let down = killed.elapsed();
            let r = common::Run::from(tick.wait_with_output().expect("wait for the tick"));
            assert!(
                down < common::down_for(3),
                "the outage must be shorter than down_for for the test to mean anything: {down:?}"
            );
            assert_eq!(r.code, 0, "{r:?}");
            assert!(
                r.stderr.contains("10.213.0.11 answers again after"),
                "the tick saw the primary fail and answer again: {r:?}"
            );
        }
    }
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        inst.tick();
    }
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    assert_eq!(
        lab.sql("db2", "SELECT @@global.read_only"),
        "1",
        "the replica must stay read-only"
    );
    assert!(!inst.history().contains("failover_started"));
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    manual_promote_with_both_alive_swaps_roles_without_losing_a_write
);
fn manual_promote_with_both_alive_swaps_roles_without_losing_a_write() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    inst.tick();
    let writer = Writer::start(&lab, lab.var("LAB_DB1_IP"));
    std::thread::sleep(Duration::from_millis(1000));
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::thread::sleep(Duration::from_millis(200));
    let (acked, why) = writer.finish();
    // The fence turns read_only on and then ends the client sessions: the writer stops at
    // the first refused insert, or, when it had none in between (a busy machine), where its
    // session was ended.
    let history = inst.history();
    let refused = why.contains("read-only") || why.contains("read_only") || why.contains("1290");
    let ended = why.contains("disconnected") && history.contains(" writer@");
    assert!(
        refused || ended,
        "writes must stop on the old primary: {why}\n{history}"
    );
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    assert_eq!(
        lab.sql("db1", "SELECT @@global.read_only"),
        "1",
        "the old primary ends read-only"
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
    lab.assert_rows_on("db2", &acked);
    assert!(
        history.contains("old primary 10.213.0.11 is read-only"),
        "{history}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    readiness_problems_show_within_one_system_check
);
fn readiness_problems_show_within_one_system_check() {
    let lab = Lab::fresh();
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool(3, ""))]);
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );

    lab.sql("db2", "STOP SLAVE SQL_THREAD");
    std::thread::sleep(Duration::from_millis(1100));
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("standby replication is broken") && r.stdout.contains("SQL No"),
        "{r:?}"
    );

    lab.sql("db2", "START SLAVE SQL_THREAD");
    lab.sql("db2", "SET GLOBAL read_only = OFF");
    std::thread::sleep(Duration::from_millis(1100));
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("standby is writable"), "{r:?}");
    assert!(r.stdout.contains("split-brain risk"), "{r:?}");

    lab.sql("db2", "SET GLOBAL read_only = ON");
    std::thread::sleep(Duration::from_millis(1100));
    inst.tick();
    assert_eq!(
        inst.run(&["report", "--nagios"]).code,
        0,
        "{}",
        inst.run(&["report"]).stdout
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    broken_setups_give_clear_messages_never_a_hang
);
fn broken_setups_give_clear_messages_never_a_hang() {
    let lab = Lab::fresh();
    let good = lab.mysql_pool(3, "");
    mysql_wrong_password_is_alive(&lab, &good);
    mysql_unknown_host_and_closed_port_are_down(&lab, &good);
    mysql_standby_not_a_replica_blocks(&lab, &good);
}

/// A wrong password: the server is alive, never counted as down.
fn mysql_wrong_password_is_alive(lab: &Lab, good: &str) {
    // Wrong password: the server is alive, so it is a problem, not a failure count.
    // In a directory of its own: deadpool refuses a secret that sits in /tmp itself.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let pool = good.replacen(
        lab.var("LAB_MONITOR_PASSWORD_FILE"),
        &wrong.display().to_string(),
        1,
    );
    let inst = Instance::with(SETTINGS, &[("db", &pool)]);
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("Access denied"), "{r:?}");
    assert_eq!(
        inst.state_of("db").2,
        0,
        "access denied is never counted as down"
    );
    let c = inst.run(&["check-config"]);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(
        c.stdout.contains(
            "warning: pool db: primary 10.213.0.11: alive but refused the login: Access denied"
        ),
        "{c:?}"
    );
}

/// An unknown host and a closed port: down, with the reason.
fn mysql_unknown_host_and_closed_port_are_down(lab: &Lab, good: &str) {
    // Unknown host and closed port: down, with the reason. deadpool runs inside app1's
    // namespace here, whose resolver is the lab's own: no name query leaves the lab.
    let in_app1 = |inst: &Instance, args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                lab.var("LAB_APP1_NS"),
                common::BIN,
                "--config",
            ])
            .arg(inst.dir())
            .args(args)
            .output()
            .unwrap();
        common::Run::from(out)
    };
    for (from, to, words) in [
        (
            format!("primary = \"{}\"", lab.var("LAB_DB1_IP")),
            "primary = \"db-nosuch.invalid\"".to_string(),
            "resolve",
        ),
        (
            "timeout = \"1s\"".to_string(),
            "timeout = \"1s\"\nport = 3307".to_string(),
            "refused",
        ),
    ] {
        let pool = good.replacen(&from, &to, 1);
        let inst = Instance::with(SETTINGS, &[("db", &pool)]);
        let started = Instant::now();
        in_app1(&inst, &["tick"]);
        assert!(started.elapsed() < Duration::from_secs(15), "{to}");
        let r = inst.run(&["report", "--nagios"]);
        assert!(r.code >= 1 && r.code <= 2, "{to}: {r:?}");
        let primary = inst.pool_json("db")["monitor"]["servers"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_lowercase();
        assert!(primary.contains(words), "{to}: {primary}");
        match detection() {
            // One failed check of three: Nagios shows why it failed.
            Detection::Count => {
                assert!(r.stdout.to_lowercase().contains(words), "{to}: {r:?}")
            }
            // The tick confirmed the outage, and the preflight found that the standby
            // does not replicate from that server: blocked, and Nagios says so.
            Detection::Time => {
                assert_eq!(inst.state_of("db").0, "blocked", "{to}: {}", inst.history());
                assert!(r.stdout.contains("blocked"), "{to}: {r:?}");
                assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "1", "{to}");
            }
        }
        let c = in_app1(&inst, &["check-config"]);
        assert!(c.stdout.to_lowercase().contains(words), "{to}: {c:?}");
    }
}

/// A standby that is not a replica: readiness says so, and a failover is blocked.
fn mysql_standby_not_a_replica_blocks(lab: &Lab, good: &str) {
    // A standby that is not a replica: readiness says so, and a failover is blocked.
    lab.sql("db2", "STOP SLAVE");
    lab.sql("db2", "RESET SLAVE ALL");
    let inst = Instance::with(SETTINGS, &[("db", good)]);
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("standby 10.213.0.12 is not a replica"),
        "{r:?}"
    );
    let c = inst.run(&["check-config"]);
    assert!(
        c.stdout
            .contains("10.213.0.12 is not a replica of 10.213.0.11"),
        "{c:?}"
    );
    lab.sh(&["kill", "db1", "mysql"]);
    for _ in 0..3 {
        inst.tick();
    }
    assert_eq!(inst.state_of("db").0, "blocked");
    let reason = inst.pool_json("db")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("not a replica"), "{reason}");
    assert_eq!(
        lab.sql("db2", "SELECT @@global.read_only"),
        "1",
        "nothing changed"
    );
}
