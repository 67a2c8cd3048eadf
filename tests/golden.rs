//! Whole outcomes (exit code, stdout, stderr) of `report` (tree, JSON, Nagios), `history` and
//! `check-config` in each main state of a pool, compared with the reviewed files in
//! `tests/golden/` (see `common::golden`). Times, durations and paths are normalised. Each
//! test runs in both detection modes (`both_modes!`); its `down_for` half compares with
//! `tests/golden/down_for/`: the same states reached by a pool that confirms outages by time.

#[macro_use]
mod common;

use std::process::Command;

use common::golden::{assert_output, assert_output_with};
use common::{Detection, Instance, detection};

/// The instance of each test: one pool `db` of two steps, failing over after 3 failed
/// checks; with `down_for`, once db1 has been down for a second, re-checked every second:
/// the tick that sees db1 fail re-checks it once and decides, so the outputs show the same
/// count of checks (2) on every run.
fn instance() -> Instance {
    match detection() {
        Detection::Count => instance_with("max_failed_checks = 3"),
        Detection::Time => instance_with("down_for = \"1s\"\nrecheck_interval = \"1s\""),
    }
}

/// The instance with `db`'s `max_failed_checks = 3` line replaced by `detection`, as
/// written whatever the mode of this run.
fn instance_with(detection: &str) -> Instance {
    assert!(common::TWO_STEP_POOL.contains("\nmax_failed_checks = 3\n"));
    let pool = common::TWO_STEP_POOL.replace("max_failed_checks = 3", detection);
    Instance::exact(SETTINGS, &[("db", &pool)])
}

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\nstale_warning = \"1h\"\nstale_critical = \"2h\"\n";

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
    reports_with(inst, state, nagios_code, |text| text);
}

/// [`reports`], with `also` applied to each normalised output (see `assert_output_with`).
fn reports_with(inst: &Instance, state: &str, nagios_code: i32, also: impl Fn(String) -> String) {
    let full_code = 0;
    assert_output_with(
        inst,
        &["report"],
        full_code,
        &format!("{state}.report.txt"),
        &also,
    );
    assert_output_with(
        inst,
        &["report", "--json"],
        0,
        &format!("{state}.report.json"),
        &also,
    );
    assert_output_with(
        inst,
        &["report", "--nagios"],
        nagios_code,
        &format!("{state}.nagios.txt"),
        &also,
    );
}

both_modes!(armed);
fn armed() {
    let inst = instance();
    assert_eq!(inst.tick().code, 0);
    reports(&inst, "armed", 0);
}

both_modes!(counting);
/// The active server failed and the pool has not decided yet. Counting, that is the time
/// between two ticks. With `down_for` it is the tick itself, re-checking the server: the
/// reports are taken while it does, once the re-checks have been recorded, and must show the
/// count of failed checks growing and the monitor's latest message. That pool waits an hour
/// to confirm, so it cannot decide meanwhile; then the server answers again and the tick ends
/// without a failover.
fn counting() {
    if detection() == Detection::Count {
        let inst = instance();
        inst.tick();
        inst.flag("down-db1");
        inst.tick();
        reports(&inst, "counting", 1);
        return;
    }
    let inst = Instance::exact(
        SETTINGS,
        &[("db", &common::confirming_for_an_hour(common::TWO_STEP_POOL))],
    );
    assert_eq!(inst.tick().code, 0);
    let rechecking = inst.rechecking(&["db1"], |inst| inst.state_of("db").2 >= 2);
    reports_with(&inst, "counting", 1, count_as_n);
    let r = rechecking.end();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        inst.state_of("db"),
        ("armed".to_string(), "primary".to_string(), 0),
        "db1 answered again: the count restarts"
    );
    assert!(inst.calls("promote").is_empty(), "no failover");
}

/// The count of failed checks becomes `<N>` wherever a report shows it, checking that it is
/// at least 2 (the re-checks within the tick are recorded): it grows while the reports run.
fn count_as_n(text: String) -> String {
    let mut out = String::new();
    let mut rest = text.as_str();
    // What comes just before and just after the count, in the text, JSON and Nagios forms.
    let forms = [
        ("failed ", " check(s) in a row"),
        ("\"failures\": ", ","),
        ("'db_failures'=", ";"),
        ("db armed ", " failed"),
        ("(db1), ", " failures"),
    ];
    'scan: while !rest.is_empty() {
        for (before, after) in forms {
            let Some(tail) = rest.strip_prefix(before) else {
                continue;
            };
            let digits = tail.chars().take_while(char::is_ascii_digit).count();
            if digits > 0 && tail[digits..].starts_with(after) {
                let n: u64 = tail[..digits].parse().unwrap();
                assert!(n >= 2, "a count of {n} in:\n{text}");
                out.push_str(before);
                out.push_str("<N>");
                rest = &tail[digits..];
                continue 'scan;
            }
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

both_modes!(blocked);
fn blocked() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.flag("fail-preflight-two");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 0, "the deciding tick");
    match detection() {
        Detection::Count => reports(&inst, "blocked", 2),
        // The tick goes on with rounds while its failover attempt runs; on a busy machine
        // one more round may count db1 again once the attempt has blocked.
        Detection::Time => reports_with(&inst, "blocked", 2, count_as_n),
    }
    assert_output(&inst, &["history"], 0, "blocked.history.txt");
}

both_modes!(failing_over_and_interrupted);
fn failing_over_and_interrupted() {
    let inst = instance();
    inst.tick();
    set_state(&inst, "failing_over", "failing over from db1 to db2");
    reports(&inst, "failing_over", 2);
    assert_eq!(inst.tick().code, 1);
    reports(&inst, "interrupted", 2);
}

both_modes!(failed_over);
fn failed_over() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 0, "the deciding tick");
    reports(&inst, "failed_over", 1);
    assert_output(&inst, &["history"], 0, "failed_over.history.txt");
    assert_output(&inst, &["history", "--json"], 0, "failed_over.history.json");
}

both_modes!(failover_failed);
fn failover_failed() {
    let inst = instance();
    inst.tick();
    inst.flag("down-db1");
    inst.flag("fail-promote-one");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 1, "the deciding tick");
    reports(&inst, "failover_failed", 2);
    assert_output(&inst, &["history"], 0, "failover_failed.history.txt");
}

both_modes!(check_config);
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

both_modes!(paused);
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
