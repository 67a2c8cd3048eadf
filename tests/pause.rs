//! `deadpool pause` and `resume`: a paused pool is checked, counted and reported but never
//! runs its chain; the pause ends by itself (recorded by the next tick), `resume` ends it
//! early, `reset` keeps it; bad input changes nothing.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Detection, Instance, detection};

fn events_of(inst: &Instance) -> Vec<String> {
    inst.events("db")
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

both_modes!(pause_needs_a_duration_and_refuses_bad_input_with_nothing_changed);
fn pause_needs_a_duration_and_refuses_bad_input_with_nothing_changed() {
    let inst = Instance::new();
    assert_eq!(inst.tick().code, 0);
    let before = inst.db_bytes();
    let cases: &[(&[&str], &str)] = &[
        (&["pause", "db"], "pause needs --for DURATION"),
        (&["pause", "db", "--for", "5"], "has no unit"),
        (&["pause", "db", "--for", "soon"], "expected a duration"),
        (&["pause", "db", "--for", "0s"], "longer than zero"),
        (
            &["pause", "db", "--for", "1h", "--reason", "two\nlines"],
            "one line",
        ),
        (&["pause", "db", "--for", "1h", "--reason", "a|b"], "`|`"),
        (
            &["pause", "nosuch", "--for", "1h"],
            "no pool named `nosuch`",
        ),
        (&["resume", "nosuch"], "no pool named `nosuch`"),
    ];
    for (args, words) in cases {
        let r = inst.run(args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert!(r.stderr.contains(words), "{args:?}: {r:?}");
        assert_eq!(r.stderr.lines().count(), 1, "one line: {r:?}");
    }
    let r = inst.run(&["pause", "--for", "1h"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("<POOL>"), "{r:?}");
    assert_eq!(inst.db_bytes(), before, "nothing changed");
    assert!(events_of(&inst).is_empty());
}

both_modes!(a_paused_pool_is_checked_and_reported_but_never_fails_over);
fn a_paused_pool_is_checked_and_reported_but_never_fails_over() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\nprometheus_textfile = \"deadpool.prom\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    inst.tick();
    let r = inst.run(&["pause", "db", "--for", "1h", "--reason", "patching db1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("paused for 1h until "), "{r:?}");
    inst.flag("down-db1");
    for k in 0..6 {
        if k == 5 && detection() == Detection::Time {
            // With `down_for`, a paused pool does not confirm the outage in its ticks, nor
            // across them: db1 has been down longer than `down_for` by the last one.
            std::thread::sleep(common::down_for(3));
        }
        assert_eq!(inst.tick().code, 0);
    }
    assert!(inst.calls("promote").is_empty(), "no chain ran");
    let (state, active, failures) = inst.state_of("db");
    assert_eq!((state.as_str(), active.as_str()), ("armed", "primary"));
    assert_eq!(failures, 6, "the count goes on while paused");

    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "WARNING: {r:?}");
    assert!(r.stdout.starts_with("DEADPOOL WARNING - "), "{r:?}");
    assert!(
        r.stdout.contains("db: paused until ") && r.stdout.contains("by root: patching db1"),
        "{r:?}"
    );
    let pool = inst.pool_json("db");
    assert_eq!(pool["pause"]["by"], "root");
    assert_eq!(pool["pause"]["reason"], "patching db1");
    let until = pool["pause"]["until"].as_i64().unwrap();
    let in_an_hour = common::now_ms() + 3_600_000;
    assert!((in_an_hour - until).abs() < 60_000, "{until}");

    for metrics in [
        inst.run(&["report", "--prometheus"]).stdout,
        std::fs::read_to_string(inst.path("deadpool.prom")).unwrap(),
    ] {
        for needed in [
            "deadpool_pool_paused{pool=\"db\"} 1\n",
            "deadpool_pool_pause_info{pool=\"db\",by=\"root\",reason=\"patching db1\"} 1\n",
            "deadpool_pool_paused_until_timestamp_seconds{pool=\"db\"} ",
        ] {
            assert!(metrics.contains(needed), "{needed} in:\n{metrics}");
        }
    }
    // Readiness and everything else keep going: a readiness check ran.
    assert!(!inst.calls("check").is_empty());
}

both_modes!(resume_ends_the_pause_and_the_next_tick_fails_over);
fn resume_ends_the_pause_and_the_next_tick_fails_over() {
    let inst = Instance::new();
    inst.tick();
    inst.run(&["pause", "db", "--for", "1h"]);
    inst.flag("down-db1");
    for _ in 0..4 {
        inst.tick();
    }
    assert_eq!(inst.state_of("db").0, "armed");
    let r = inst.run(&["resume", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("resumed"), "{r:?}");
    assert_eq!(inst.pool_json("db")["pause"], serde_json::Value::Null);
    inst.tick();
    assert_eq!(
        inst.state_of("db").0,
        "failed_over",
        "the count was past the threshold; with `down_for`, the tick confirmed the outage"
    );
    assert_eq!(
        events_of(&inst)[..3],
        ["paused", "resumed", "failover_started"].map(String::from)
    );
    if detection() == Detection::Time {
        // Confirmed by the re-checks of that tick, after the pause, not during it.
        let started = &inst.events("db")[2];
        let why = started["message"].as_str().unwrap();
        assert!(why.contains("db1 down for "), "{why}");
    }
    // Resuming a pool that is not paused changes nothing.
    let before = inst.db_bytes();
    let r = inst.run(&["resume", "db"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("not paused; nothing changed"), "{r:?}");
    assert_eq!(inst.db_bytes(), before);
}

both_modes!(a_pause_ends_by_itself_and_the_tick_records_it);
fn a_pause_ends_by_itself_and_the_tick_records_it() {
    let inst = Instance::new();
    inst.tick();
    assert_eq!(inst.run(&["pause", "db", "--for", "1500ms"]).code, 0);
    inst.flag("down-db1");
    for _ in 0..3 {
        inst.tick();
    }
    assert_eq!(inst.state_of("db").0, "armed", "paused at the threshold");
    std::thread::sleep(Duration::from_millis(1600));
    // Ended but not yet recorded: reports already say it is over.
    assert_eq!(inst.pool_json("db")["pause"], serde_json::Value::Null);
    let r = inst.run(&["resume", "db"]);
    assert!(
        r.stdout.contains("not paused (the pause by root ended at"),
        "{r:?}"
    );
    // The next tick records the end, and fails over: the active server is still down.
    inst.tick();
    let events = events_of(&inst);
    assert_eq!(
        events[..2],
        ["paused".to_string(), "pause_expired".to_string()]
    );
    assert_eq!(inst.state_of("db").0, "failed_over");
    let expired = &inst.events("db")[1];
    assert_eq!(expired["actor"], "tick");
    assert!(
        expired["message"]
            .as_str()
            .unwrap()
            .starts_with("the pause by root ended at "),
        "{expired}"
    );
}

both_modes!(reset_and_promote_keep_a_pause_and_a_new_pause_replaces_the_old);
fn reset_and_promote_keep_a_pause_and_a_new_pause_replaces_the_old() {
    let inst = Instance::new();
    inst.tick();
    inst.flag("down-db1");
    for _ in 0..3 {
        inst.tick();
    }
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(
        inst.run(&["pause", "db", "--for", "2h", "--reason", "rebuild db1"])
            .code,
        0
    );
    inst.unflag("down-db1");
    let r = inst.run(&["reset", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let pool = inst.pool_json("db");
    assert_eq!(pool["state"], "armed");
    assert_eq!(
        pool["pause"]["reason"], "rebuild db1",
        "reset keeps the pause"
    );

    // A person may still promote by hand while paused; the pause stays.
    let r = inst.run(&["promote", "db", "primary", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let pool = inst.pool_json("db");
    assert_eq!(
        (pool["state"].as_str(), pool["active"].as_str()),
        (Some("failed_over"), Some("primary"))
    );
    assert_eq!(pool["pause"]["reason"], "rebuild db1");

    let r = inst.run(&["pause", "db", "--for", "10min", "--reason", "longer"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("replaces the pause by root until "),
        "{r:?}"
    );
    assert_eq!(inst.pool_json("db")["pause"]["reason"], "longer");
    let failovers = inst.run(&["report", "--prometheus"]).stdout;
    assert!(
        failovers.contains("deadpool_failovers_total{pool=\"db\"} 2\n"),
        "an automatic failover and a promote: {failovers}"
    );
}
