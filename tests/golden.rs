//! Whole outputs of `report` (tree, JSON, Nagios), `history` and `check-config` in each main
//! state of a pool, compared with the reviewed files in `tests/golden/` (see
//! `common::golden`). Times, durations and paths are normalised.

mod common;

use std::process::Command;

use common::Instance;
use common::golden::assert_output;

fn instance() -> Instance {
    Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\nstale_warning = \"1h\"\nstale_critical = \"2h\"\n",
        &[("db", common::TWO_STEP_POOL)],
    )
}

/// Sets a pool's state in the database directly: `failing_over` is what a running chain
/// (or a killed one) leaves, and cannot be caught otherwise between two commands.
fn set_state(inst: &Instance, state: &str, reason: &str) {
    let sql = format!("UPDATE pools SET state = '{state}', reason = '{reason}' WHERE name = 'db'");
    let ok = Command::new("sqlite3")
        .arg(inst.path("state/deadpool.db"))
        .arg(sql)
        .status()
        .expect("sqlite3 must be installed")
        .success();
    assert!(ok);
}

/// Every report format of one state: (full, json, nagios) with their exit codes.
fn reports(inst: &Instance, state: &str, nagios_code: i32) {
    let full_code = 0;
    assert_output(inst, &["report"], full_code, &format!("{state}.report.txt"));
    assert_output(
        inst,
        &["report", "--json"],
        0,
        &format!("{state}.report.json"),
    );
    assert_output(
        inst,
        &["report", "--nagios"],
        nagios_code,
        &format!("{state}.nagios.txt"),
    );
}

#[test]
fn armed() {
    let inst = instance();
    assert_eq!(inst.tick().code, 0);
    reports(&inst, "armed", 0);
}

#[test]
fn counting() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.tick();
    reports(&inst, "counting", 1);
}

#[test]
fn blocked() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.flag("fail-preflight-two");
    for _ in 0..3 {
        inst.tick();
    }
    reports(&inst, "blocked", 2);
    assert_output(&inst, &["history"], 0, "blocked.history.txt");
}

#[test]
fn failing_over_and_interrupted() {
    let inst = instance();
    inst.tick();
    set_state(&inst, "failing_over", "failing over from db1 to db2");
    reports(&inst, "failing_over", 2);
    assert_eq!(inst.tick().code, 1);
    reports(&inst, "interrupted", 2);
}

#[test]
fn failed_over() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    for _ in 0..3 {
        inst.tick();
    }
    reports(&inst, "failed_over", 1);
    assert_output(&inst, &["history"], 0, "failed_over.history.txt");
    assert_output(&inst, &["history", "--json"], 0, "failed_over.history.json");
}

#[test]
fn failover_failed() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.flag("fail-promote-one");
    for _ in 0..3 {
        inst.tick();
    }
    reports(&inst, "failover_failed", 2);
    assert_output(&inst, &["history"], 0, "failover_failed.history.txt");
}

#[test]
fn check_config() {
    let inst = instance();
    assert_output(&inst, &["check-config", "--offline"], 0, "check-config.txt");
    assert_output(
        &inst,
        &["check-config", "--offline", "--json"],
        0,
        "check-config.json",
    );
    inst.write(
        "pools/db.toml",
        "primary = \"db1\"\nsecondary = \"db2\"\ncolour = \"red\"\n",
    );
    let r = assert_output(
        &inst,
        &["check-config", "--offline", "--json"],
        2,
        "check-config.invalid.json",
    );
    assert!(
        r.stderr.contains("colour"),
        "the error on stderr too: {r:?}"
    );
}

#[test]
fn paused() {
    let inst = instance();
    inst.tick();
    let pause = [
        "pause",
        "db",
        "--for",
        "1h 30min",
        "--reason",
        "kernel upgrade",
    ];
    assert_output(&inst, &pause, 0, "paused.pause.txt");
    inst.flag("down-db1");
    for _ in 0..4 {
        assert_eq!(inst.tick().code, 0);
    }
    reports(&inst, "paused", 1);
    assert_output(&inst, &["tick", "--dry-run"], 0, "paused.dry-run.txt");
    assert_output(
        &inst,
        &["tick", "--dry-run", "--json"],
        0,
        "paused.dry-run.json",
    );
    assert_output(&inst, &["resume", "db"], 0, "paused.resume.txt");
    assert_output(&inst, &["history"], 0, "paused.history.txt");
}
