//! Decisions under compound faults, in the namespace lab: a hung primary with observers, a
//! readiness check hanging in another pool while this pool's primary dies, and a primary
//! whose check is slow to fail. Each runs once per detection mode (`scripts/test` runs the
//! suite counting and with `down_for`): the decisions must be exactly as safe in both. Run
//! by `scripts/test` (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::lab::Lab;
use common::{Detection, Instance, detection};

/// `deadpool tick` started in the background, as the timer would.
fn spawn_tick(inst: &Instance) -> Child {
    let mut cmd = inst.command(&["tick"]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().expect("start deadpool tick")
}

/// Runs ticks the way `OnUnitInactiveSec=1s` does (each one a second after the previous
/// one ended) until the pool leaves `armed`/`blocked` or `limit` ticks have run.
fn ticks_like_the_timer(inst: &Instance, pool: &str, limit: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..limit {
        inst.tick();
        let state = inst.state_of(pool).0;
        seen.push(format!("{state}/{}", inst.state_of(pool).2));
        if state != "armed" && state != "blocked" {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    seen
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_hung_primary_is_failed_over_although_observers_can_connect_to_it
);
fn a_hung_primary_is_failed_over_although_observers_can_connect_to_it() {
    let lab = Lab::fresh();
    let pool = lab.mysql_pool_confirmed_by_apps(3);
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &pool)]);
    assert_eq!(inst.tick().code, 0);
    // SIGSTOP: the kernel still accepts connections for mariadbd, which never greets.
    lab.sh(&["stop", "db1", "mysql"]);
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    let history = inst.history();
    assert!(
        history.contains("10.213.0.21 cannot reach 10.213.0.11:3306 (connected, but no answer")
            && history
                .contains("10.213.0.22 cannot reach 10.213.0.11:3306 (connected, but no answer"),
        "each vote says what the observer saw: {history}"
    );
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
    lab.sh(&["cont", "db1", "mysql"]);
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    another_pools_hanging_readiness_check_does_not_delay_detection
);
fn another_pools_hanging_readiness_check_does_not_delay_detection() {
    let lab = Lab::fresh();
    // Pool `slow`: Redis on the same servers, with a readiness check on app1 that hangs
    // for 20 s (it accepts the SSH login and never answers in time).
    let slow = format!(
        "{}\n[[protocol]]\ntype = \"exec\"\nname = \"hanging check\"\nhosts = [\"{}\"]\ntest_command = \"sleep 20\"\nexec_command = \"true\"\ntimeout = \"25s\"\n",
        lab.redis_pool(3),
        lab.var("LAB_APP1_IP")
    );
    let db = lab.mysql_pool(3, "");
    let settings = lab.settings_with_ssh(None).replace(
        "system_check_interval = \"1s\"",
        "system_check_interval = \"1h\"",
    );
    let settings = settings.replace(
        "connect_timeout = \"2s\"\n",
        "connect_timeout = \"2s\"\ncommand_timeout = \"30s\"\n",
    );
    let inst = Instance::with(&settings, &[("db", &db), ("slow", &slow)]);
    // The first tick starts every readiness check: `slow`'s hangs for 20 s.
    let started = Instant::now();
    let mut tick = spawn_tick(&inst);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        tick.try_wait().unwrap().is_none(),
        "the hanging check keeps the tick running"
    );
    lab.sh(&["kill", "db1", "mysql"]);
    let status = tick.wait().unwrap();
    let ended_ms = common::now_ms();
    assert!(
        started.elapsed() >= Duration::from_secs(15),
        "the check hung for 20 s"
    );
    assert_eq!(status.code(), Some(0), "{}", inst.history());
    // Failed over inside the tick that was still waiting for the other pool's check, at the
    // tick's own cadence (a round every interval), long before that check ended.
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    let events = inst.events("db");
    let at = events
        .iter()
        .find(|e| e["event"] == "failover_started")
        .and_then(|e| e["at"].as_i64())
        .expect("a failover_started event");
    assert!(
        at < ended_ms - 5_000,
        "the failover started only {} ms before the hanging check ended",
        ended_ms - at
    );
    assert_eq!(inst.state_of("slow").0, "armed");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_primary_whose_check_is_slow_to_fail_is_failed_over
);
fn a_primary_whose_check_is_slow_to_fail_is_failed_over() {
    let lab = Lab::fresh();
    // Each failing check takes the whole 2.5 s timeout: longer than two tick intervals.
    let db = lab
        .mysql_pool(3, "")
        .replacen("timeout = \"1s\"\n", "timeout = \"2500ms\"\n", 1);
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &db)]);
    assert_eq!(inst.tick().code, 0);
    // Everything to and from db1 is dropped: checks hang until their timeout. The ticks
    // come a second apart, as the timer runs them, so that a tick's own duration plus that
    // second would pass for a gap (and restart the count) if deadpool measured it wrongly.
    lab.sh(&["hang", "db1"]);
    let seen = ticks_like_the_timer(&inst, "db", 6);
    assert_eq!(
        inst.state_of("db").0,
        "failed_over",
        "{seen:?}\n{}",
        inst.history()
    );
    match detection() {
        Detection::Count => assert_eq!(
            &seen[..2],
            ["armed/1", "armed/2"],
            "the count never restarted"
        ),
        Detection::Time => assert_eq!(
            seen.len(),
            1,
            "confirmed within the first failing tick: {seen:?}"
        ),
    }
    assert_eq!(lab.sql("db2", "SELECT @@global.read_only"), "0");
}
