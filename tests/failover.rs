//! SPEC section 6 end to end: the real binary, real plugin processes, a real database.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Detection, Instance, detection, is_running, wait_for};

both_modes!(fails_over_at_exactly_the_threshold_then_locks_until_reset);
/// Counting: fails over on exactly the third failing tick. With `down_for`: within the tick
/// that saw the failure, once it lasted `down_for`.
fn fails_over_at_exactly_the_threshold_then_locks_until_reset() {
    let inst = Instance::new();
    assert_eq!(inst.tick().code, 0);
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));

    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    let started = std::time::Instant::now();
    let r = inst.tick();
    if detection() == Detection::Time {
        assert!(
            started.elapsed() >= common::down_for(3),
            "the tick re-checked for down_for before failing over"
        );
    }
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(inst.state_of("db").1, "secondary");

    // Every preflight before any action, then the actions in file order, with SPEC 7's environment.
    let log = inst.steps_log();
    let first_promote = log.iter().position(|l| l.contains(" promote ")).unwrap();
    let last_preflight = log.iter().rposition(|l| l.contains(" preflight ")).unwrap();
    assert!(last_preflight < first_promote, "{log:#?}");
    let promotes = inst.calls("promote");
    assert_eq!(promotes.len(), 2, "{promotes:#?}");
    assert_eq!(
        promotes[0],
        "one promote pool=db action=promote primary=db1 secondary=db2 old=db1 new=db2 dry=0 color=blue"
    );
    assert!(promotes[1].starts_with("two promote "), "{promotes:#?}");
    assert!(
        promotes[1].ends_with("color="),
        "options belong to their own step: {promotes:#?}"
    );

    // Locked: more failing ticks never run the chain again.
    inst.flag("down-db2");
    for _ in 0..4 {
        inst.tick();
    }
    assert_eq!(inst.calls("promote").len(), 2);
    assert_eq!(inst.state_of("db").0, "failed_over");

    // reset re-arms with the former standby active; it refuses while that server is down.
    let r = inst.run(&["reset", "db", "--yes"]);
    assert_eq!(
        r.code, 1,
        "reset must refuse while the active server is down: {r:?}"
    );
    assert!(r.stderr.contains("is down"), "{r:?}");
    assert_eq!(inst.state_of("db").0, "failed_over");
    inst.unflag("down-db2");
    let r = inst.run(&["reset", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(inst.state_of("db"), ("armed".into(), "secondary".into(), 0));
    assert!(
        inst.history().contains("re-armed from failed_over"),
        "{}",
        inst.history()
    );
    assert!(
        inst.history().contains("by root"),
        "the person is recorded: the real user, whatever $USER says"
    );

    // The former standby is now the one checked as active: db1 being down does not count,
    // and an outage of db2 fails over back to db1.
    inst.tick();
    assert_eq!(inst.state_of("db"), ("armed".into(), "secondary".into(), 0));
    inst.unflag("down-db1");
    inst.flag("down-db2");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(inst.state_of("db").1, "primary");
    let promotes = inst.calls("promote");
    assert_eq!(promotes.len(), 4, "{promotes:#?}");
    assert!(promotes[2].contains("old=db2 new=db1"), "{promotes:#?}");
}

both_modes!(a_flapping_primary_never_fails_over);
fn a_flapping_primary_never_fails_over() {
    let inst = Instance::new();
    for _ in 0..3 {
        // Counting: two failed ticks, then a good one. With `down_for`: down for a third of
        // it within one tick, then answering.
        inst.blip("db1", 2);
        assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    }
    assert!(inst.calls("promote").is_empty());
}

both_modes!(a_gap_between_ticks_restarts_the_count);
/// The gap rule: after more than 3 intervals without a tick (a stopped timer, a suspend),
/// nothing counted or confirmed before counts. Counting: the count restarts. With
/// `down_for`, where one tick confirms an outage, what outlives a tick is a `blocked` pool's
/// confirmed outage: after a gap it is confirmed anew, for the whole `down_for`.
fn a_gap_between_ticks_restarts_the_count() {
    let inst = Instance::with(
        "tick_interval = \"200ms\"\nsystem_check_interval = \"1h\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    inst.flag("down-db1");
    if detection() == Detection::Count {
        inst.tick();
        inst.tick();
        assert_eq!(inst.state_of("db").2, 2);
        std::thread::sleep(Duration::from_millis(900));
        inst.tick();
        assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 1));
        assert!(inst.calls("promote").is_empty());
        inst.unflag("down-db1");
        inst.tick();
        inst.flag("down-db1");
    }

    // A blocked pool (the standby down too) after a gap, the standby back: counting, it
    // stays blocked and counts from 1 again; with `down_for`, the tick re-checks for all of
    // `down_for` before it fails over.
    inst.flag("down-db2");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "blocked");
    std::thread::sleep(Duration::from_millis(900));
    inst.unflag("down-db2");
    let started = std::time::Instant::now();
    inst.tick();
    match detection() {
        Detection::Count => {
            assert_eq!(inst.state_of("db"), ("blocked".into(), "primary".into(), 1));
            assert!(inst.calls("promote").is_empty());
            inst.tick();
            assert_eq!(inst.state_of("db"), ("blocked".into(), "primary".into(), 2));
            inst.tick();
        }
        Detection::Time => assert!(
            started.elapsed() >= common::down_for(3),
            "confirmed anew: {:?}",
            started.elapsed()
        ),
    }
    assert_eq!(inst.state_of("db").0, "failed_over");
}

both_modes!(a_failing_preflight_blocks_with_nothing_changed_until_it_passes);
fn a_failing_preflight_blocks_with_nothing_changed_until_it_passes() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.flag("fail-preflight-two");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    let (state, active, failures) = inst.state_of("db");
    assert_eq!((state.as_str(), active.as_str()), ("blocked", "primary"));
    assert!(failures >= 3, "{failures} failed checks");
    assert!(inst.calls("promote").is_empty());
    let report = inst.run(&["report", "--nagios"]);
    assert_eq!(report.code, 2, "{report:?}");
    assert!(
        report.stdout.contains("preflight of step 2 `two` failed"),
        "{report:?}"
    );

    // Re-evaluated every tick, not locked: still blocked, then failover once it passes.
    inst.tick();
    assert_eq!(inst.state_of("db").0, "blocked");
    inst.unflag("fail-preflight-two");
    inst.tick();
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    assert_eq!(inst.calls("promote").len(), 2);
}

both_modes!(standby_down_at_the_threshold_blocks_and_recovery_rearms);
fn standby_down_at_the_threshold_blocks_and_recovery_rearms() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.flag("down-db2");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "blocked");
    assert!(
        inst.pool_json("db")["reason"]
            .as_str()
            .unwrap()
            .contains("standby is down too")
    );
    assert!(
        inst.calls("preflight").is_empty(),
        "nothing runs when the standby is down"
    );
    inst.unflag("down-db1");
    inst.tick();
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    assert!(inst.calls("promote").is_empty());
}

both_modes!(an_aborting_step_skips_the_rest_and_locks_as_failover_failed);
fn an_aborting_step_skips_the_rest_and_locks_as_failover_failed() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.flag("fail-promote-one");
    inst.ticks_before_threshold("db", 2);
    let r = inst.tick();
    assert_eq!(r.code, 1, "a failed step needs a person: {r:?}");
    assert_eq!(inst.state_of("db").0, "failover_failed");
    let promotes = inst.calls("promote");
    assert_eq!(promotes.len(), 1, "step two must be skipped: {promotes:#?}");
    let history = inst.history();
    assert!(history.contains("failing promote on purpose"), "{history}");
    assert!(history.contains("skipped: step `one` failed"), "{history}");
    // Locked.
    inst.unflag("fail-promote-one");
    inst.tick();
    assert_eq!(inst.calls("promote").len(), 1);
    assert_eq!(inst.run(&["report", "--nagios"]).code, 2);
}

both_modes!(on_failure_continue_runs_the_rest_but_still_reports_failure);
fn on_failure_continue_runs_the_rest_but_still_reports_failure() {
    let pool = common::TWO_STEP_POOL.replacen(
        "color = \"blue\"",
        "color = \"blue\"\non_failure = \"continue\"",
        1,
    );
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool)]);
    inst.flag("down-db1");
    inst.flag("fail-promote-one");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.calls("promote").len(), 2);
    assert_eq!(inst.state_of("db").0, "failover_failed");
}

both_modes!(a_step_that_outlives_its_timeout_is_killed_with_its_children);
fn a_step_that_outlives_its_timeout_is_killed_with_its_children() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.flag("hang-promote-one");
    inst.ticks_before_threshold("db", 2);
    let started = std::time::Instant::now();
    let r = inst.tick();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the 3s step timeout bounds the tick"
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(inst.state_of("db").0, "failover_failed");
    let pid: i32 = std::fs::read_to_string(inst.path("bgpid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !is_running(pid),
        "the step's background sleep {pid} survived"
    );
    assert!(
        inst.history().contains("timed out after"),
        "{}",
        inst.history()
    );
}

both_modes!(sigkill_in_the_middle_of_a_chain_leaves_interrupted_and_no_step_runs_twice);
fn sigkill_in_the_middle_of_a_chain_leaves_interrupted_and_no_step_runs_twice() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.flag("hang-promote-one");
    inst.ticks_before_threshold("db", 2);
    let mut child = inst.command(&["tick"]).spawn().unwrap();
    assert!(
        wait_for(&inst.path("hanging"), Duration::from_secs(10)),
        "the step never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let bg: i32 = std::fs::read_to_string(inst.path("bgpid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    inst.unflag("hang-promote-one");

    let r = inst.tick();
    assert_eq!(r.code, 1, "an interrupted failover needs a person: {r:?}");
    assert_eq!(inst.state_of("db").0, "interrupted");
    // What the step left in its group was ended by this tick.
    assert!(!is_running(bg), "the step's background sleep {bg} survived");
    assert!(
        r.stderr.contains("left running when it was killed"),
        "{r:?}"
    );
    let report = inst.run(&["report", "--nagios"]);
    assert_eq!(report.code, 2, "{report:?}");
    assert!(
        report.stdout.contains("interrupted during step `one`"),
        "{report:?}"
    );
    for _ in 0..2 {
        inst.tick();
    }
    let promotes = inst.calls("promote");
    assert_eq!(promotes.len(), 1, "no step runs twice: {promotes:#?}");
}

both_modes!(a_step_stops_acting_when_deadpool_is_killed);
/// SIGKILL outside systemd: nobody kills the step's group for deadpool. The step's program
/// dies with it, and what it started in the background is ended by the next tick, before
/// either writes its marker.
fn a_step_stops_acting_when_deadpool_is_killed() {
    let inst = Instance::new();
    inst.script(
        "plugins/late",
        r#"#!/bin/sh
top="$(dirname "$0")/.."
if [ "$1" = promote ]; then
    (sleep 2; touch "$top/marker-background") &
    touch "$top/in-step"
    sleep 2
    touch "$top/marker-foreground"
fi
echo "$1 ok"
"#,
    );
    inst.write_pool(
        "db",
        &common::TWO_STEP_POOL.replacen(
            "command = \"step\"\ncolor = \"blue\"\ntimeout = \"3s\"",
            "command = \"late\"\ntimeout = \"20s\"",
            1,
        ),
    );
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    let mut child = inst.command(&["tick"]).spawn().unwrap();
    assert!(
        wait_for(&inst.path("in-step"), Duration::from_secs(10)),
        "the step never started"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let r = inst.tick();
    assert_eq!(inst.state_of("db").0, "interrupted", "{r:?}");
    std::thread::sleep(Duration::from_secs(3));
    for marker in ["marker-foreground", "marker-background"] {
        assert!(
            !inst.path(marker).exists(),
            "the killed tick's step still acted: {marker}"
        );
    }
    assert!(
        std::fs::read_dir(inst.path("state/children"))
            .unwrap()
            .next()
            .is_none(),
        "no group is left recorded"
    );
}

both_modes!(two_ticks_at_once_run_the_chain_at_most_once);
fn two_ticks_at_once_run_the_chain_at_most_once() {
    for _ in 0..3 {
        let inst = Instance::new();
        inst.flag("down-db1");
        inst.ticks_before_threshold("db", 2);
        let a = inst.command(&["tick"]).spawn().unwrap();
        let b = inst.command(&["tick"]).spawn().unwrap();
        a.wait_with_output().unwrap();
        b.wait_with_output().unwrap();
        inst.tick();
        assert_eq!(inst.state_of("db").0, "failed_over");
        let promotes = inst.calls("promote");
        assert_eq!(promotes.len(), 2, "each step exactly once: {promotes:#?}");
    }
}

both_modes!(promote_waits_for_a_running_tick);
fn promote_waits_for_a_running_tick() {
    let slow = common::TWO_STEP_POOL.replace("max_failed_checks = 3", "max_failed_checks = 1");
    let other = common::TWO_STEP_POOL
        .replace("db1", "db3")
        .replace("db2", "db4");
    let inst = Instance::with(
        "tick_interval = \"1s\"\n",
        &[("db", &slow), ("other", &other)],
    );
    inst.tick();
    inst.flag("down-db1");
    // The first step of pool db sleeps until we remove the flag: the tick holds the lock.
    inst.write("plugins/step", &std::fs::read_to_string(inst.path("plugins/step")).unwrap().replace(
        "echo \"$1 of $DEADPOOL_STEP ok\"",
        "if [ \"$1\" = promote ] && [ \"$DEADPOOL_POOL\" = db ] && [ \"$DEADPOOL_STEP\" = one ]; then touch \"$top/in-chain\"; sleep 1.5; fi\necho \"$1 of $DEADPOOL_STEP ok\"",
    ));
    let tick = inst.command(&["tick"]).spawn().unwrap();
    assert!(wait_for(&inst.path("in-chain"), Duration::from_secs(10)));
    let promote = inst.run(&["promote", "other", "secondary", "--yes"]);
    assert_eq!(promote.code, 0, "{promote:?}");
    tick.wait_with_output().unwrap();
    // The promotion of `other` began only after the tick's failover of `db` had ended.
    let history = inst.run(&["history", "--json", "--limit", "1000"]).stdout;
    let events: Vec<serde_json::Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let id_of = |pool: &str, event: &str| {
        events
            .iter()
            .find(|e| e["pool"] == pool && e["event"] == event)
            .map(|e| e["id"].as_i64().unwrap())
            .unwrap()
    };
    assert!(
        id_of("db", "failed_over") < id_of("other", "failover_started"),
        "{history}"
    );
    assert_eq!(
        inst.state_of("other"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    assert!(
        history.contains("a manual promote") && history.contains("\"actor\":\"root\""),
        "{history}"
    );
}

both_modes!(promote_and_reset_need_yes_without_a_terminal_and_change_nothing_otherwise);
fn promote_and_reset_need_yes_without_a_terminal_and_change_nothing_otherwise() {
    let inst = Instance::new();
    inst.tick();
    let before = inst.db_bytes();
    let r = inst.run(&["promote", "db", "secondary"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--yes"), "{r:?}");
    let r = inst.run(&["reset", "db"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(inst.db_bytes(), before);
    assert!(inst.calls("promote").is_empty());
    let r = inst.run(&["promote", "nosuch", "secondary", "--yes"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no pool named `nosuch`"), "{r:?}");
}

both_modes!(promote_refuses_a_down_target_and_a_failing_preflight);
fn promote_refuses_a_down_target_and_a_failing_preflight() {
    let inst = Instance::new();
    inst.tick();
    inst.flag("down-db2");
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("is down"), "{r:?}");
    inst.unflag("down-db2");
    inst.flag("fail-preflight-one");
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("nothing changed"), "{r:?}");
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    assert!(inst.calls("promote").is_empty());
    inst.unflag("fail-preflight-one");
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    // old/new name the servers the promotion moves between.
    assert!(inst.calls("promote")[0].contains("old=db1 new=db2"));
}

both_modes!(dry_run_prints_the_plan_runs_preflights_and_changes_nothing);
fn dry_run_prints_the_plan_runs_preflights_and_changes_nothing() {
    let inst = Instance::new();
    inst.tick();
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    let before = inst.db_bytes();
    let r = inst.run(&["tick", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Counting, the next tick would fail over; with `down_for`, it would re-check first.
    let next = match detection() {
        Detection::Count => "fail over to secondary (db2)",
        Detection::Time => "would re-check the active server every 100ms",
    };
    assert!(r.stdout.contains(next), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("failover plan primary (db1) -> secondary (db2)"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1. one (plugin)"), "{}", r.stdout);
    assert!(
        r.stdout.contains("step") && r.stdout.contains("promote"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("preflight on local: OK"), "{}", r.stdout);
    let preflights = inst.calls("preflight");
    assert_eq!(preflights.len(), 2);
    assert!(
        preflights.iter().all(|l| l.contains("dry=1")),
        "{preflights:#?}"
    );
    assert!(inst.calls("promote").is_empty());
    assert_eq!(
        inst.db_bytes(),
        before,
        "the database must be byte-identical"
    );
    let counted = if detection() == Detection::Count {
        2
    } else {
        0
    };
    assert_eq!(inst.state_of("db").2, counted);

    let r = inst.run(&["promote", "db", "secondary", "--dry-run"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("would promote secondary (db2)"),
        "{}",
        r.stdout
    );
    assert!(inst.calls("promote").is_empty());
    assert_eq!(inst.db_bytes(), before);

    // Without any database at all, a dry run creates none.
    let fresh = Instance::new();
    assert_eq!(fresh.run(&["tick", "--dry-run"]).code, 0);
    assert!(!fresh.path("state").exists());
}

both_modes!(exec_local_steps_run_without_a_shell_and_substitute_values_as_data);
fn exec_local_steps_run_without_a_shell_and_substitute_values_as_data() {
    let pool = r#"
primary = "db1"
secondary = "db2"
max_failed_checks = 1
[monitor]
type = "nagios"
command = "monitor {host}"
[[protocol]]
type = "exec"
hosts = ["local"]
test_command = "test -d {pool}-dir"
exec_command = "touch {pool}-dir/moved-to-{new_primary}"
[[protocol]]
type = "exec"
name = "shell"
hosts = ["local"]
shell = true
exec_command = "echo {old_primary} > {pool}-dir/old; echo done"
"#;
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("x", pool)]);
    // Commands run in deadpool's working directory; run it from the instance dir.
    std::fs::create_dir(inst.path("x-dir")).unwrap();
    inst.flag("down-db1");
    let r = std::process::Command::new(common::BIN)
        .current_dir(inst.dir())
        .args(["--config", ".", "tick"])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    assert!(inst.path("x-dir/moved-to-db2").exists());
    assert_eq!(
        std::fs::read_to_string(inst.path("x-dir/old")).unwrap(),
        "db1\n"
    );
    assert_eq!(inst.state_of("x").0, "failed_over");
}

/// Runs deadpool under a real pseudo-terminal (util-linux `script`), typing `answer`.
fn on_terminal(inst: &Instance, args: &str, answer: &str) -> common::Run {
    use std::io::Write;
    let cmdline = format!("{} --config {} {args}", common::BIN, inst.dir().display());
    let mut child = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .env("USER", "tester")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script (util-linux) must be installed");
    // Give the prompt a moment to appear, as a person would.
    std::thread::sleep(Duration::from_millis(300));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{answer}\n").as_bytes())
        .unwrap();
    common::Run::from(child.wait_with_output().unwrap())
}

both_modes!(promote_and_reset_ask_on_a_terminal);
fn promote_and_reset_ask_on_a_terminal() {
    let inst = Instance::new();
    inst.tick();
    let r = on_terminal(&inst, "promote db secondary", "no");
    assert!(r.stdout.contains("Type `yes` to go on"), "{r:?}");
    assert!(r.stdout.contains("nothing changed"), "{r:?}");
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(inst.state_of("db").0, "armed");
    assert!(inst.calls("promote").is_empty());

    let r = on_terminal(&inst, "promote db secondary", "yes");
    assert_eq!(r.code, 0, "{r:?}");
    // On a terminal, each step shows as it runs.
    assert!(
        r.stdout.contains("[1/2] one (plugin) ... OK")
            && r.stdout.contains("[2/2] two (plugin) ... OK"),
        "{r:?}"
    );
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );

    let r = on_terminal(&inst, "reset db", "yes");
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(inst.state_of("db"), ("armed".into(), "secondary".into(), 0));
}

both_modes!(the_recorded_actor_is_the_real_user_and_sudo_only_when_sudo_ran_it);
fn the_recorded_actor_is_the_real_user_and_sudo_only_when_sudo_ran_it() {
    let inst = Instance::new();
    inst.tick();
    // Environment variables name nobody: anyone can set them.
    let mut cmd = inst.command(&["reset", "db", "--yes"]);
    cmd.env("SUDO_USER", "mallory").env("USER", "mallory");
    let r = common::Run::from(cmd.output().unwrap());
    assert_eq!(r.code, 0, "{r:?}");
    // Through the real sudo, the person behind it is added.
    let mut cmd = std::process::Command::new("sudo");
    cmd.args(["-n", "-E", common::BIN, "--config"])
        .arg(inst.dir())
        .args(["reset", "db", "--yes"])
        .env("SUDO_USER", "ignored")
        .stdin(std::process::Stdio::null());
    let r = common::Run::from(cmd.output().expect("sudo is installed by the test command"));
    assert_eq!(r.code, 0, "{r:?}");
    let resets: Vec<String> = inst
        .events("db")
        .iter()
        .filter(|e| e["event"] == "reset")
        .map(|e| e["actor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(resets, ["root", "root via sudo by root"]);
}

/// A pool that fails over once its primary has been down for `down_for`.
fn time_based() -> Instance {
    let pool = common::TWO_STEP_POOL.replace(
        "max_failed_checks = 3",
        "down_for = \"1s\"\nrecheck_interval = \"200ms\"",
    );
    Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    )
}

both_modes!(down_for_fails_over_within_the_tick_that_saw_the_failure);
fn down_for_fails_over_within_the_tick_that_saw_the_failure() {
    let inst = time_based();
    assert_eq!(inst.tick().code, 0);
    inst.flag("down-db1");
    let started = std::time::Instant::now();
    let r = inst.tick();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "re-checked for down_for"
    );
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    let history = inst.history();
    assert!(history.contains("db1 down for 1."), "{history}");
    assert_eq!(inst.calls("promote").len(), 2);
}

both_modes!(down_for_a_blip_shorter_than_it_never_fails_over);
fn down_for_a_blip_shorter_than_it_never_fails_over() {
    let inst = time_based();
    assert_eq!(inst.tick().code, 0);
    inst.flag("down-db1");
    // The primary answers again 400 ms into the re-checks.
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(std::time::Duration::from_millis(400));
            inst.unflag("down-db1");
        });
        assert_eq!(inst.tick().code, 0);
    });
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
    assert!(inst.calls("promote").is_empty());
    assert!(inst.calls("preflight").is_empty(), "not even a preflight");
}

both_modes!(down_for_while_re_checking_the_report_shows_the_count);
fn down_for_while_re_checking_the_report_shows_the_count() {
    let pool = common::TWO_STEP_POOL.replace(
        "max_failed_checks = 3",
        "down_for = \"3s\"\nrecheck_interval = \"250ms\"",
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    );
    inst.tick();
    inst.flag("down-db1");
    let mut tick = inst.command(&["tick"]).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("check(s) in a row"), "{r:?}");
    // Perfdata: a count, and no count threshold in the time-based mode.
    let failures = r
        .stdout
        .split_whitespace()
        .find(|w| w.starts_with("'db_failures'="))
        .unwrap_or_default();
    assert!(failures.ends_with(";;;0"), "{r:?}");
    let full = inst.run(&["report"]).stdout;
    assert!(
        full.contains("fails over once the active server is down for 3s"),
        "{full}"
    );
    inst.unflag("down-db1");
    assert!(tick.wait().unwrap().success());
    assert_eq!(inst.state_of("db").0, "armed");
}

both_modes!(a_readiness_check_slower_than_its_interval_does_not_keep_the_tick_running);
fn a_readiness_check_slower_than_its_interval_does_not_keep_the_tick_running() {
    // The check hangs until its step's 3 s timeout; readiness is due every second.
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    inst.flag("hang-check-one");
    let mut tick = inst.command(&["tick"]).spawn().unwrap();
    let started = std::time::Instant::now();
    let ended = loop {
        if let Some(status) = tick.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            let _ = tick.kill();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        ended.is_some(),
        "the tick kept starting readiness checks and never ended"
    );
    assert_eq!(inst.state_of("db").0, "armed");
}

/// A pool of three servers with a plugin monitor (which knows no positions): the first
/// standby that answers is promoted, in config order; `never_promote` is passed over; the
/// reason names each standby when none may be promoted.
const THREE_SERVERS: &str = r#"
primary = "db1"
standbys = ["db2", "db3"]
max_failed_checks = 3

[monitor]
type = "nagios"
command = "monitor {host}"
timeout = "2s"

[[protocol]]
type = "plugin"
name = "one"
command = "step"
"#;

both_modes!(several_standbys_promote_the_first_that_may_be_promoted);
fn several_standbys_promote_the_first_that_may_be_promoted() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", THREE_SERVERS)],
    );
    assert_eq!(inst.tick().code, 0);
    inst.flag("down-db2");
    let dry = inst.run(&["tick", "--dry-run"]);
    assert!(
        dry.stdout
            .contains("a failover now would promote db3, passing over: db2 does not answer"),
        "the dry run of a healthy pool names the standby a failover would promote: {dry:?}"
    );
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    assert_eq!(inst.state_of("db").1, "standby2");
    let promotes = inst.calls("promote");
    assert_eq!(promotes.len(), 1, "{promotes:#?}");
    assert!(promotes[0].contains("old=db1 new=db3"), "{promotes:#?}");
    let history = inst.history();
    assert!(
        history.contains("passed over: db2"),
        "the failover says why db2 was passed over: {history}"
    );
}

both_modes!(never_promote_and_no_candidate_block_naming_each_standby);
fn never_promote_and_no_candidate_block_naming_each_standby() {
    let pool = THREE_SERVERS.replace(
        "max_failed_checks = 3",
        "never_promote = [\"db3\"]\nmax_failed_checks = 3",
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", &pool)],
    );
    inst.flag("down-db1");
    inst.flag("down-db2");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "blocked");
    let reason = inst.pool_json("db")["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("no standby may be promoted"), "{reason}");
    assert!(reason.contains("db2"), "{reason}");
    assert!(
        reason.contains("db3") && reason.contains("never_promote"),
        "{reason}"
    );
    assert!(inst.calls("preflight").is_empty());

    // A person may promote a never_promote standby only with --force; by address.
    let r = inst.run(&["promote", "db", "db3", "--yes"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("never_promote"), "{r:?}");
    assert!(inst.calls("promote").is_empty());
    let r = inst.run(&["promote", "db", "DB3.", "--yes", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "standby2".into(), 0)
    );
    let r = inst.run(&["promote", "db", "db9", "--yes"]);
    assert_eq!(r.code, 2, "an unknown server is a usage error: {r:?}");
    assert!(r.stderr.contains("has no server `db9`"), "{r:?}");
}

/// The step plugin of `inst`, made to hold the chain of pool `db` in its first step for
/// 2.5 s (`in-chain` appears when it starts), so that other commands meet it running.
fn slow_first_step(inst: &Instance) {
    let step = std::fs::read_to_string(inst.path("plugins/step")).unwrap();
    inst.script(
        "plugins/step",
        &step.replace(
            "echo \"$1 of $DEADPOOL_STEP ok\"",
            "if [ \"$1\" = promote ] && [ \"$DEADPOOL_POOL\" = db ] && [ \"$DEADPOOL_STEP\" = one ]; then touch \"$top/in-chain\"; sleep 2.5; fi\necho \"$1 of $DEADPOOL_STEP ok\"",
        ),
    );
}

both_modes!(reset_and_promote_refuse_when_the_pool_changed_while_they_waited_for_the_lock);
/// A person confirms a reset or a promote against the pool as it is; a command that then
/// waits for the instance lock must not act on what the pool has become meanwhile. A reset
/// issued during a chain must not clear the `failover_failed` the chain ends in, and
/// promotes queued behind a running promote must not run chains of their own.
fn reset_and_promote_refuse_when_the_pool_changed_while_they_waited_for_the_lock() {
    let pool = common::TWO_STEP_POOL.replace("max_failed_checks = 3", "max_failed_checks = 1");
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool)]);
    assert_eq!(inst.tick().code, 0);
    slow_first_step(&inst);
    inst.flag("fail-promote-two");
    inst.flag("down-db1");
    let tick = inst.command(&["tick"]).spawn().unwrap();
    assert!(wait_for(&inst.path("in-chain"), Duration::from_secs(10)));
    let reset = inst.run(&["reset", "db", "--yes"]);
    tick.wait_with_output().unwrap();
    assert_eq!(reset.code, 1, "{reset:?}");
    assert!(
        reset.stderr.contains("changed while this command waited")
            && reset.stderr.contains("it was failing_over since")
            && reset.stderr.contains("it is now failover_failed since"),
        "{reset:?}"
    );
    assert_eq!(inst.state_of("db").0, "failover_failed");
    assert!(!inst.history().contains("re-armed"), "{}", inst.history());

    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", THREE_SERVERS)]);
    assert_eq!(inst.tick().code, 0);
    slow_first_step(&inst);
    let first = inst
        .command(&["promote", "db", "secondary", "--yes"])
        .spawn()
        .unwrap();
    assert!(wait_for(&inst.path("in-chain"), Duration::from_secs(10)));
    let queued: Vec<_> = ["standby2", "primary"]
        .iter()
        .map(|to| {
            inst.command(&["promote", "db", to, "--yes"])
                .spawn()
                .unwrap()
        })
        .collect();
    let first = common::Run::from(first.wait_with_output().unwrap());
    assert_eq!(first.code, 0, "{first:?}");
    for promote in queued {
        let r = common::Run::from(promote.wait_with_output().unwrap());
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.contains("changed while this command waited")
                && r.stderr.contains("it is now failed_over since"),
            "{r:?}"
        );
    }
    let started = inst
        .events("db")
        .iter()
        .filter(|e| e["event"] == "failover_started")
        .count();
    assert_eq!(started, 1, "one chain: {}", inst.history());
    assert_eq!(inst.calls("promote").len(), 1);
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(inst.state_of("db").1, "secondary");
}

both_modes!(a_locked_pool_renamed_keeps_its_lock_until_adopted_or_forgotten);
/// Renaming a locked pool's file must not forget its lock. The pool under its new name has
/// the servers of a locked pool that is no longer configured: it is held back (checked,
/// never failed over, by a tick or by hand), and every report says what happened and what
/// to do; `reset NEW --adopt OLD` carries the lock over. A locked pool removed for good is
/// reported until `reset OLD --forget` drops it.
fn a_locked_pool_renamed_keeps_its_lock_until_adopted_or_forgotten() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0)
    );

    std::fs::rename(inst.path("pools/db.toml"), inst.path("pools/orders.toml")).unwrap();
    for _ in 0..4 {
        let r = inst.tick();
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr
                .contains("pool orders: not armed: it has the servers of pool db"),
            "{r:?}"
        );
    }
    assert_eq!(inst.calls("promote").len(), 2, "the chain never ran again");
    let pool = inst.pool_json("orders");
    assert_eq!(pool["held_by"], "db", "{pool}");
    assert_eq!(pool["status"], "CRITICAL", "{pool}");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("orders held on primary")
            && r.stdout.contains(
                "pool db is failed_over, active secondary (db2), but no longer configured: its lock is kept and holds back orders"
            ),
        "{r:?}"
    );
    let r = inst.run(&["report"]);
    assert!(
        r.stdout.contains("held back by the lock of pool db")
            && r.stdout
                .contains("`deadpool reset orders --adopt db` carries its lock over")
            && r.stdout.contains("`deadpool reset db --forget` drops it"),
        "{r:?}"
    );
    let r = inst.run(&["tick", "--dry-run"]);
    assert!(
        r.stdout
            .contains("this tick would not fail over, only check: not armed"),
        "{r:?}"
    );
    for args in [
        &["promote", "orders", "secondary", "--yes"][..],
        &["reset", "orders", "--yes"],
        &["pause", "orders", "--for", "1h"],
    ] {
        let r = inst.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(r.stderr.contains("not armed"), "{args:?}: {r:?}");
    }
    assert_eq!(inst.calls("promote").len(), 2);

    // Carried over: orders is db renamed, locked as db was, with db's history.
    let r = inst.run(&["reset", "orders", "--adopt", "db", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        inst.state_of("orders"),
        ("failed_over".into(), "secondary".into(), 0)
    );
    let events = inst.events("orders");
    assert!(
        events.iter().any(|e| e["event"] == "failover_started")
            && events
                .iter()
                .any(|e| e["event"] == "adopted" && e["actor"] == "root"),
        "{events:#?}"
    );
    assert_eq!(inst.tick().code, 0);
    assert_eq!(inst.state_of("orders").0, "failed_over");
    assert!(
        !inst
            .run(&["report"])
            .stdout
            .contains("no longer configured")
    );

    // Removed for good: reported, not forgotten, until a person drops it.
    inst.write_pool(
        "other",
        &common::TWO_STEP_POOL
            .replace("db1", "db3")
            .replace("db2", "db4"),
    );
    std::fs::remove_file(inst.path("pools/orders.toml")).unwrap();
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(
            "pool orders is failed_over, active secondary (db2), but no longer configured"
        ),
        "{r:?}"
    );
    assert_eq!(inst.run(&["reset", "other", "--forget", "--yes"]).code, 2);
    assert_eq!(inst.run(&["reset", "nosuch", "--forget", "--yes"]).code, 2);
    let r = inst.run(&["reset", "--forget", "orders", "--yes"]);
    assert_eq!(r.code, 0, "{r:?}");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(inst.history().contains("forgotten"), "{}", inst.history());
}

both_modes!(secret_looking_plugin_options_are_masked_in_plans_but_reach_the_plugin);
fn secret_looking_plugin_options_are_masked_in_plans_but_reach_the_plugin() {
    let inst = Instance::new();
    let options = [
        ("apitoken", "\"tok-4711\""),
        ("secretkey", "\"sk-4712\""),
        ("accesskey", "\"ak-4713\""),
        ("bearer", "\"br-4714\""),
        ("dsn", "\"postgres://app:pw-4715@db1/orders\""),
        ("conninfo", "\"host=db1 user=app password=pw-4716\""),
    ];
    let extra: String = options
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    inst.write_pool(
        "db",
        &common::TWO_STEP_POOL.replacen(
            "color = \"blue\"\n",
            &format!("color = \"blue\"\n{extra}"),
            1,
        ),
    );
    inst.script(
        "plugins/step",
        "#!/bin/sh\nenv | grep '^DEADPOOL_OPT_' >> \"$(dirname \"$0\")/../env.log\"\necho \"$1 ok\"\n",
    );
    let plan = inst.run(&["tick", "--dry-run"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let promote = inst.run(&["promote", "db", "secondary", "--dry-run"]);
    assert_eq!(promote.code, 0, "{promote:?}");
    for secret in ["4711", "4712", "4713", "4714", "4715", "4716"] {
        for (what, out) in [("tick --dry-run", &plan), ("promote --dry-run", &promote)] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "{what} shows {secret}: {out:?}"
            );
        }
    }
    for shown in [
        "DEADPOOL_OPT_APITOKEN='<secret>'",
        "DEADPOOL_OPT_BEARER='<secret>'",
        "DEADPOOL_OPT_DSN='postgres://app:<secret>@db1/orders'",
        "DEADPOOL_OPT_CONNINFO='host=db1 user=app password=<secret>'",
        "DEADPOOL_OPT_COLOR=blue",
    ] {
        assert!(plan.stdout.contains(shown), "{shown}: {}", plan.stdout);
    }
    // The plugin itself gets every value as written.
    let env = std::fs::read_to_string(inst.path("env.log")).unwrap();
    for line in [
        "DEADPOOL_OPT_APITOKEN=tok-4711",
        "DEADPOOL_OPT_ACCESSKEY=ak-4713",
        "DEADPOOL_OPT_DSN=postgres://app:pw-4715@db1/orders",
        "DEADPOOL_OPT_CONNINFO=host=db1 user=app password=pw-4716",
    ] {
        assert!(env.lines().any(|l| l == line), "{line}: {env}");
    }
}
