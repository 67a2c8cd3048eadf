//! The fault matrix (docs/FAULTS.md) for faults that need no database servers: deadpool
//! killed at every step boundary, clock jumps, an unwritable or full state dir, damaged
//! databases, a config broken while failed over, misbehaving plugins, random kills.

#[macro_use]
mod common;

use std::process::Command;
use std::time::Duration;

use common::{Detection, Instance, detection, is_running, wait_for};

/// A chain of three steps whose plugin can kill deadpool itself (its parent) at a chosen
/// place: `flags/kill-at-start-<step>` or `flags/kill-at-end-<step>`.
const KILLING_STEP: &str = r#"#!/bin/sh
top="$(dirname "$0")/.."
echo "$DEADPOOL_STEP $1" >> "$top/steps.log"
if [ "$1" = promote ] && [ -e "$top/flags/kill-at-start-$DEADPOOL_STEP" ]; then kill -9 $PPID; sleep 5; fi
if [ "$1" = promote ] && [ -e "$top/flags/kill-at-end-$DEADPOOL_STEP" ]; then kill -9 $PPID; sleep 5; fi
echo "$1 ok"
"#;

fn three_steps() -> String {
    let mut pool = common::TWO_STEP_POOL.replace("max_failed_checks = 3", "max_failed_checks = 1");
    pool.push_str("\n[[protocol]]\ntype = \"plugin\"\nname = \"three\"\ncommand = \"step\"\n");
    pool
}

both_modes!(sigkill_at_every_step_boundary_leaves_interrupted_and_no_step_runs_twice);
fn sigkill_at_every_step_boundary_leaves_interrupted_and_no_step_runs_twice() {
    // (flag, the step named as interrupted, how many promote calls ran)
    let positions = [
        ("kill-at-start-one", "during step `one`", 1),
        ("kill-at-start-two", "during step `two`", 2),
        ("kill-at-start-three", "during step `three`", 3),
        ("kill-at-end-three", "during step `three`", 3),
    ];
    for (flag, during, calls) in positions {
        let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &three_steps())]);
        inst.script("plugins/step", KILLING_STEP);
        inst.flag(flag);
        inst.flag("down-db1");
        let r = inst.tick();
        assert_eq!(
            r.code, -1,
            "{flag}: deadpool should have been killed: {r:?}"
        );
        let promotes = || {
            inst.steps_log()
                .iter()
                .filter(|l| l.ends_with(" promote"))
                .count()
        };
        assert_eq!(promotes(), calls, "{flag}");
        inst.unflag(flag);

        let r = inst.tick();
        assert_eq!(r.code, 1, "{flag}: {r:?}");
        assert_eq!(inst.state_of("db").0, "interrupted", "{flag}");
        let nagios = inst.run(&["report", "--nagios"]);
        assert_eq!(nagios.code, 2, "{flag}: {nagios:?}");
        assert!(nagios.stdout.contains(during), "{flag}: {nagios:?}");
        for _ in 0..2 {
            inst.tick();
        }
        assert_eq!(promotes(), calls, "{flag}: no step may run again");
        assert!(sqlite_ok(&inst), "{flag}");
    }

    // Killed during the preflights: nothing had changed, so the next tick simply goes on.
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &three_steps())]);
    inst.script(
        "plugins/step",
        &KILLING_STEP.replace(
            "[ \"$1\" = promote ] && [ -e \"$top/flags/kill-at-start-",
            "[ \"$1\" = preflight ] && [ -e \"$top/flags/kill-at-start-",
        ),
    );
    inst.flag("kill-at-start-two");
    inst.flag("down-db1");
    assert_eq!(inst.tick().code, -1);
    assert_eq!(
        inst.state_of("db").0,
        "armed",
        "the round recorded the count; nothing else changed"
    );
    inst.unflag("kill-at-start-two");
    assert_eq!(inst.tick().code, 0);
    assert_eq!(inst.state_of("db").0, "failed_over");
}

/// The states a pool can be in once no deadpool process is running (`failing_over` is found
/// as `interrupted` by the next tick).
const SETTLED_STATES: [&str; 5] = [
    "armed",
    "blocked",
    "failed_over",
    "failover_failed",
    "interrupted",
];

/// `PRAGMA integrity_check` on the instance's database.
/// A tick killed before it created the database leaves none, which is sound: the check must
/// not create an empty file either (`sqlite3` would), since deadpool refuses one.
fn sqlite_ok(inst: &Instance) -> bool {
    let db = inst.path("state/deadpool.db");
    if !db.exists() {
        return true;
    }
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("PRAGMA integrity_check;")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "ok"
}

/// A deadpool command whose wall clock is moved by `offset` (libfaketime) for its process
/// only: changing the machine's clock would disturb everything else running here.
fn faked(inst: &Instance, offset: &str, args: &[&str]) -> common::Run {
    let cmd = inst.command(args);
    let mut wrapped = Command::new("faketime");
    wrapped
        .arg(offset)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .envs(cmd.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))));
    wrapped.stdin(std::process::Stdio::null());
    common::Run::from(wrapped.output().expect("faketime must be installed"))
}

/// `deadpool tick` started with a wall clock that the test moves while it runs: libfaketime
/// reads the offset from the file `clock` at each reading of the clock. Like a real clock
/// step (`date -s`, NTP), it moves the wall clock only: the monotonic clock goes on.
fn tick_on_a_movable_clock(inst: &Instance) -> std::process::Child {
    inst.write("clock", "+0\n");
    let mut cmd = inst.command(&["tick"]);
    cmd.env(
        "LD_PRELOAD",
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    )
    .env("FAKETIME_TIMESTAMP_FILE", inst.path("clock"))
    .env("FAKETIME_NO_CACHE", "1")
    .env("DONT_FAKE_MONOTONIC", "1");
    cmd.spawn().expect("start deadpool tick")
}

/// Waits for a tick to end (it must, whatever its clock does) and returns how it ended.
fn ended(mut tick: std::process::Child, what: &str) -> common::Run {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tick.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = tick.kill();
            let out = tick.wait_with_output().unwrap();
            panic!("{what}: the tick did not end: {:?}", common::Run::from(out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    common::Run::from(tick.wait_with_output().unwrap())
}

/// Waits until the running tick has recorded at least `n` failed checks in a row of the
/// active server (or the pool left `armed`, which the caller's assertions then catch).
fn failed_checks(inst: &Instance, n: u64) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (state, _, failures) = inst.state_of("db");
        if failures >= n || state != "armed" || std::time::Instant::now() > deadline {
            return failures;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

both_modes!(clock_jumps_restart_the_count_and_show_in_the_report);
/// Clock jumps. Counting, a jump between two ticks is a gap and the count restarts: a jump
/// forward makes old failures look recent no more, a jump back makes the last check look
/// in the future. With `down_for`, an outage is confirmed within one tick, by down time
/// measured from the start of the first failed check to the start of the latest: a jump
/// of the wall clock during those re-checks must neither confirm an outage shorter than
/// `down_for` (forward) nor hold the tick until the clock catches up (back). In both modes
/// the report, read with a clock far from the last tick's, says what it sees.
fn clock_jumps_restart_the_count_and_show_in_the_report() {
    let inst = Instance::new();
    match detection() {
        Detection::Count => {
            inst.flag("down-db1");
            inst.tick();
            inst.tick();
            assert_eq!(inst.state_of("db").2, 2);
            // Forward: the previous check is hours old, so the count restarts.
            let r = faked(&inst, "+2 hours", &["tick"]);
            assert_eq!(r.code, 0, "{r:?}");
            assert_eq!(inst.state_of("db").2, 1, "a jump forward is a gap");
            assert!(inst.calls("promote").is_empty());
            // Back to the real clock: the last check is now in the future, also a gap.
            inst.tick();
            assert_eq!(inst.state_of("db").2, 1, "a jump backward is a gap");
        }
        Detection::Time => {
            assert_eq!(inst.tick().code, 0);
            // Forward, two hours, during the re-checks of an outage that then ends before
            // `down_for` (1 s) has passed: no failover.
            inst.flag("down-db1");
            let tick = tick_on_a_movable_clock(&inst);
            let before = failed_checks(&inst, 1);
            inst.write("clock", "+2h\n");
            let after = failed_checks(&inst, before + 2);
            inst.unflag("down-db1");
            let r = ended(tick, "a jump forward");
            assert_eq!(r.code, 0, "{r:?}");
            assert!(
                inst.calls("promote").is_empty() && inst.calls("preflight").is_empty(),
                "a jump forward confirmed an outage shorter than down_for: {r:?}"
            );
            assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
            assert!(after >= before + 2, "re-checks after the jump: {after}");
            // Back, two hours, during the re-checks of an outage that goes on: it is
            // confirmed once it has lasted `down_for`, and the tick fails over and ends.
            inst.flag("down-db1");
            let tick = tick_on_a_movable_clock(&inst);
            failed_checks(&inst, 1);
            inst.write("clock", "-2h\n");
            let r = ended(tick, "a jump backward");
            assert_eq!(r.code, 0, "{r:?}");
            assert_eq!(inst.state_of("db").0, "failed_over", "{r:?}");
            assert_eq!(inst.calls("promote").len(), 2);
            // A tick on the real clock again, for the report below.
            assert_eq!(inst.tick().code, 0);
        }
    }
    // The report, read with a clock two hours behind, says the clock went backwards.
    let r = faked(&inst, "-2 hours", &["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("the clock went backwards"), "{r:?}");
    // And with a clock an hour ahead, the ticks look stopped.
    let r = faked(&inst, "+1 hour", &["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("the timer seems stopped"), "{r:?}");
}

both_modes!(a_clock_jump_past_the_retention_never_prunes_a_locked_pools_failover);
/// A wall clock 100 days ahead, past the 90-day `history_retention`: each round moves the
/// pruning horizon by at most ten tick intervals, not to where that clock says; and the
/// chain that locked a pool, its steps' output included, stays whole whatever the clock
/// says, for as long as the pool is locked.
fn a_clock_jump_past_the_retention_never_prunes_a_locked_pools_failover() {
    let other = common::TWO_STEP_POOL
        .replace("db1", "db3")
        .replace("db2", "db4");
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1h\"\n",
        &[("db", common::TWO_STEP_POOL), ("other", &other)],
    );
    assert_eq!(inst.tick().code, 0);
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 0);
    assert_eq!(inst.state_of("db").0, "failed_over");
    let all = |inst: &Instance| -> Vec<serde_json::Value> {
        let r = inst.run(&["history", "--limit", "100000", "--json"]);
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let before = all(&inst);
    let started = before
        .iter()
        .position(|e| e["pool"] == "db" && e["event"] == "failover_started")
        .expect("the chain's start is recorded");
    let episode: Vec<&serde_json::Value> = before[started..]
        .iter()
        .filter(|e| e["pool"] == "db")
        .collect();
    assert!(
        episode.iter().any(|e| e["output"]
            .as_str()
            .unwrap_or("")
            .contains("promote of one ok")),
        "{episode:#?}"
    );
    let oldest = before
        .iter()
        .map(|e| e["at"].as_i64().unwrap())
        .min()
        .unwrap();
    for _ in 0..3 {
        let r = faked(&inst, "+100 days", &["tick"]);
        assert_eq!(r.code, 0, "{r:?}");
    }
    let after = all(&inst);
    for e in &episode {
        assert!(after.contains(e), "pruned from the locked episode: {e}");
    }
    // The clock says 100 days: pruning by it would put the horizon 10 days past the oldest
    // event; a few rounds moved it by a few times ten seconds.
    let out = Command::new("sqlite3")
        .arg(inst.path("state/deadpool.db"))
        .arg("SELECT horizon FROM pruning;")
        .output()
        .expect("sqlite3 must be installed");
    let horizon: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        (oldest..oldest + 3_600_000).contains(&horizon),
        "horizon {horizon}, oldest event {oldest}"
    );
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(inst.calls("promote").len(), 2);
}

/// `chattr +i` for the life of the guard: even root cannot change the file or directory.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        assert!(
            Command::new("chattr")
                .arg("+i")
                .arg(&path)
                .status()
                .unwrap()
                .success()
        );
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

both_modes!(an_unwritable_state_dir_fails_the_tick_clearly_and_the_report_goes_stale);
fn an_unwritable_state_dir_fails_the_tick_clearly_and_the_report_goes_stale() {
    let inst = Instance::with(
        "tick_interval = \"200ms\"\nstale_warning = \"500ms\"\nstale_critical = \"1s\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    inst.tick();
    let guards = [
        Immutable::set(inst.path("state/deadpool.db")),
        Immutable::set(inst.path("state")),
    ];
    inst.flag("down-db1");
    let r = inst.tick();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("deadpool.db") || r.stderr.contains("state"),
        "{r:?}"
    );
    assert!(!r.stderr.contains("panicked"), "{r:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let report = inst.run(&["report", "--nagios"]);
    assert_eq!(report.code, 2, "{report:?}");
    assert!(
        report.stdout.contains("the timer seems stopped"),
        "{report:?}"
    );
    drop(guards);
    assert_eq!(inst.tick().code, 0);
}

/// Unmounts a test's tmpfs when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A real file system that fills up: a tmpfs of `size` mounted at `dir` (created), private
/// to root as a state dir must be.
fn small_tmpfs(dir: &std::path::Path, size: &str) -> Unmount {
    std::fs::create_dir(dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
        .arg("tmpfs")
        .arg(dir)
        .status()
        .unwrap();
    assert!(mounted.success(), "mounting a tmpfs needs root");
    Unmount(dir.to_path_buf())
}

both_modes!(a_full_disk_while_writing_state_fails_cleanly_and_recovers);
fn a_full_disk_while_writing_state_fails_cleanly_and_recovers() {
    let inst = Instance::new();
    let state = inst.path("state");
    let _unmount = small_tmpfs(&state, "600k");
    assert_eq!(inst.tick().code, 0);
    // Fill what is left, then make history grow: a step with a lot of output.
    let filler = state.join("filler");
    let _ = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", filler.display()))
        .args(["bs=4k", "status=none"])
        .status();
    inst.flag("down-db1");
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = inst.tick();
        assert!(!r.stderr.contains("panicked"), "{r:?}");
        codes.push(r.code);
    }
    assert!(
        codes.contains(&1),
        "a full disk must fail a tick: {codes:?}"
    );
    std::fs::remove_file(&filler).unwrap();
    let r = inst.tick();
    assert!(r.code == 0 || r.code == 1, "{r:?}");
    assert!(sqlite_ok(&inst), "the database must survive a full disk");
    // Whatever the pool went through, it is in a state the rules know and no step ran twice.
    let (state_now, _, _) = inst.state_of("db");
    assert!(SETTLED_STATES.contains(&state_now.as_str()), "{state_now}");
    assert!(inst.calls("promote").len() <= 2);
}

both_modes!(truncated_and_garbage_databases_are_refused_not_misread);
fn truncated_and_garbage_databases_are_refused_not_misread() {
    for damage in ["truncate", "garbage"] {
        let inst = Instance::new();
        inst.tick();
        inst.tick();
        let db = inst.path("state/deadpool.db");
        let bytes = std::fs::read(&db).unwrap();
        match damage {
            "truncate" => std::fs::write(&db, &bytes[..bytes.len() / 3]).unwrap(),
            _ => std::fs::write(&db, vec![0xa5; bytes.len()]).unwrap(),
        }
        let r = inst.tick();
        assert_eq!(r.code, 1, "{damage}: {r:?}");
        assert!(r.stderr.contains("deadpool.db"), "{damage}: {r:?}");
        let r = inst.run(&["report", "--nagios"]);
        assert_eq!(r.code, 3, "{damage}: {r:?}");
        assert!(
            r.stdout.starts_with("DEADPOOL UNKNOWN - "),
            "{damage}: {r:?}"
        );
        assert!(inst.calls("promote").is_empty());
    }
}

both_modes!(an_emptied_database_is_refused_and_the_locked_pool_stays_locked);
/// A `deadpool.db` truncated to nothing is, to SQLite, an empty database: it must be refused
/// like any damaged one by every command, never taken for a new install that would arm the
/// failed-over pool again on its dead primary. Only a missing file is a new install.
fn an_emptied_database_is_refused_and_the_locked_pool_stays_locked() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over");
    let db = inst.path("state/deadpool.db");
    std::fs::write(&db, b"").unwrap();
    let commands: [&[&str]; 6] = [
        &["tick"],
        &["tick", "--dry-run"],
        &["report"],
        &["history"],
        &["promote", "db", "primary", "--yes"],
        &["reset", "db", "--yes"],
    ];
    for args in commands {
        let r = inst.run(args);
        assert_eq!(r.code, 1, "{args:?}: {r:?}");
        assert!(
            r.stderr.contains("deadpool.db is empty (0 bytes)")
                && r.stderr.contains("from a backup"),
            "{args:?}: {r:?}"
        );
    }
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stdout.starts_with("DEADPOOL UNKNOWN - ") && r.stdout.contains("is empty"),
        "{r:?}"
    );
    assert_eq!(std::fs::metadata(&db).unwrap().len(), 0, "nothing written");
    assert_eq!(inst.calls("promote").len(), 2, "the chain never ran again");
    // Moved away on purpose, the file is gone: the next tick is a new install's.
    std::fs::rename(&db, inst.path("state/deadpool.db.lost")).unwrap();
    inst.unflag("down-db1");
    let r = inst.tick();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(inst.state_of("db"), ("armed".into(), "primary".into(), 0));
}

both_modes!(a_config_broken_while_failed_over_is_unknown_and_the_pool_stays_locked);
fn a_config_broken_while_failed_over_is_unknown_and_the_pool_stays_locked() {
    let inst = Instance::new();
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over");
    // The line that says how an outage is confirmed (a count, or a time) becomes invalid.
    let good = std::fs::read_to_string(inst.path("pools/db.toml")).unwrap();
    let (key, broken) = match detection() {
        Detection::Count => (
            "max_failed_checks",
            good.replace("max_failed_checks = 3", "max_failed_checks = \"three\""),
        ),
        Detection::Time => (
            "down_for",
            good.replace(
                &format!("down_for = \"{}ms\"", common::down_for(3).as_millis()),
                "down_for = \"a while\"",
            ),
        ),
    };
    assert_ne!(broken, good, "the pool's {key} line was not found");
    inst.write("pools/db.toml", &broken);
    let r = inst.tick();
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(key), "{r:?}");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains(key), "{r:?}");
    inst.write("pools/db.toml", &good);
    inst.tick();
    assert_eq!(inst.state_of("db").0, "failed_over", "still locked");
    assert_eq!(inst.calls("promote").len(), 2);
}

both_modes!(output_held_open_by_an_escaped_child_is_kept);
/// A monitor plugin whose child leaves its process group (`setsid`) holding stdout, and
/// that then prints and exits: what it printed is its message, and the tick does not wait
/// for the escaped child.
fn output_held_open_by_an_escaped_child_is_kept() {
    let inst = Instance::new();
    inst.script(
        "plugins/monitor",
        "#!/bin/sh\nexport top=\"$(dirname \"$0\")/..\"\nsetsid sh -c 'echo $$ >> \"$top/escaped\"; exec sleep 30' &\nsleep 0.1\necho \"OK - $1 answers despite its child\"\n",
    );
    let started = std::time::Instant::now();
    let r = inst.tick();
    let took = started.elapsed();
    for pid in std::fs::read_to_string(inst.path("escaped"))
        .unwrap()
        .lines()
    {
        let _ = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status();
    }
    assert_eq!(r.code, 0, "{r:?}");
    assert!(took < Duration::from_secs(5), "the tick took {took:?}");
    let p = inst.pool_json("db");
    for server in p["monitor"]["servers"].as_array().unwrap() {
        assert!(
            server["message"]
                .as_str()
                .unwrap()
                .ends_with("answers despite its child"),
            "{server}"
        );
        assert_eq!(server["health"], "up", "{server}");
    }
}

both_modes!(misbehaving_plugins_are_contained);
fn misbehaving_plugins_are_contained() {
    let inst = Instance::new();
    // A monitor that prints megabytes, leaves a child behind, and one that dies by a signal.
    inst.script(
        "plugins/monitor",
        "#!/bin/sh\nsleep 300 &\necho $! >> \"$(dirname \"$0\")/../children\"\nif [ \"$1\" = db2 ]; then kill -9 $$; fi\nhead -c 3000000 /dev/zero | tr '\\0' 'x'\necho\n",
    );
    let r = inst.tick();
    assert!(r.code == 0, "{r:?}");
    let p = inst.pool_json("db");
    let primary = &p["monitor"]["servers"][0];
    assert_eq!(primary["health"], "up");
    assert!(
        primary["message"].as_str().unwrap().len() <= 1000,
        "a huge first line is cut"
    );
    let secondary = &p["monitor"]["servers"][1];
    assert_eq!(secondary["health"], "down");
    assert!(
        secondary["message"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{secondary}"
    );
    std::thread::sleep(Duration::from_millis(200));
    for pid in std::fs::read_to_string(inst.path("children"))
        .unwrap()
        .lines()
    {
        let pid: i32 = pid.trim().parse().unwrap();
        assert!(!is_running(pid), "a plugin's child {pid} survived it");
    }

    // A step that prints megabytes: history keeps a bounded part.
    let inst =
        failover_with_step("#!/bin/sh\necho \"$1 ok\"\nhead -c 5000000 /dev/zero | tr '\\0' 'y'\n");
    assert_eq!(inst.state_of("db").0, "failed_over");
    let history = inst.run(&["history", "--json"]).stdout;
    assert!(
        history.len() < 200_000,
        "history must stay bounded: {} bytes",
        history.len()
    );

    // A step plugin that dies by a signal fails its step.
    let inst =
        failover_with_step("#!/bin/sh\nif [ \"$1\" = promote ]; then kill -9 $$; fi\necho ok\n");
    assert_eq!(inst.state_of("db").0, "failover_failed");
    assert!(
        inst.history().contains("killed by signal 9"),
        "{}",
        inst.history()
    );

    // A plugin that is not executable is a config error, nothing runs.
    let inst = Instance::new();
    std::fs::set_permissions(
        inst.path("plugins/step"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let r = inst.tick();
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("is not executable") && r.stderr.contains("chmod +x"),
        "{r:?}"
    );
}

both_modes!(config_values_reach_commands_as_data);
fn config_values_reach_commands_as_data() {
    // etc_hosts on the local host, with a hosts file path and a helper path full of shell
    // metacharacters: the helper (a script logging its argv) must get each as one argument.
    let inst = Instance::new();
    // The helper path may not hold spaces (it is one word on the client); the hosts file's
    // path may hold anything.
    let weird_dir = inst.path("a;$(touch${IFS}PWNED)`id`'q'");
    let spaced = weird_dir.join("b c;d");
    std::fs::create_dir(&weird_dir).unwrap();
    std::fs::create_dir(&spaced).unwrap();
    let hosts = spaced.join("hosts");
    std::fs::write(&hosts, "10.0.0.1 db.service\n").unwrap();
    let helper = weird_dir.join("helper");
    std::fs::write(&helper, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> \"$(dirname \"$0\")/argv\"; done\nexec \"$REAL_DEADPOOL\" \"$@\"\n").unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let pool = format!(
        "primary = \"10.0.0.1\"\nsecondary = \"10.0.0.2\"\nmax_failed_checks = 1\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\n[[protocol]]\ntype = \"etc_hosts\"\nservice_host_name = \"db.service\"\nclient_hosts = [\"local\"]\nhosts_file = {hosts:?}\nhelper = {helper:?}\n",
        hosts = hosts.display().to_string(),
        helper = helper.display().to_string(),
    );
    let inst2 = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool)]);
    inst2.flag("down-10.0.0.1");
    let r = inst2
        .command(&["tick"])
        .env("REAL_DEADPOOL", common::BIN)
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
    assert_eq!(inst2.state_of("db").0, "failed_over", "{}", inst2.history());
    assert_eq!(
        std::fs::read_to_string(&hosts).unwrap(),
        "10.0.0.2 db.service\n"
    );
    let argv = std::fs::read_to_string(weird_dir.join("argv")).unwrap();
    assert!(
        argv.lines().any(|l| l == hosts.display().to_string()),
        "{argv}"
    );
    assert!(
        !inst.path("PWNED").exists() && !std::path::Path::new("PWNED").exists(),
        "a value ran as code"
    );
    drop(inst);
}

both_modes!(random_kills_across_many_ticks_leave_a_sound_database_and_state);
fn random_kills_across_many_ticks_leave_a_sound_database_and_state() {
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &three_steps())]);
    inst.script("plugins/step", "#!/bin/sh\necho \"$DEADPOOL_STEP $1\" >> \"$(dirname \"$0\")/../steps.log\"\nsleep 0.0$(( $(od -An -N1 -tu1 /dev/urandom) % 5 ))\necho ok\n");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut failovers_started = 0;
    for round in 0..60 {
        // The primary flaps; now and then a person re-arms a locked pool.
        if next() % 3 == 0 {
            inst.flag("down-db1")
        } else {
            inst.unflag("down-db1")
        }
        let mut child = inst.command(&["tick"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(next() % 60));
        let _ = child.kill();
        let _ = child.wait();
        assert!(sqlite_ok(&inst), "round {round}: integrity_check failed");
        let r = inst.tick();
        assert!(r.code == 0 || r.code == 1, "round {round}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "round {round}: {r:?}");
        let (state, _, failures) = inst.state_of("db");
        assert!(
            SETTLED_STATES.contains(&state.as_str()),
            "round {round}: {state}"
        );
        assert!(failures <= 1, "round {round}: failures {failures}");
        if state != "armed" {
            failovers_started += 1;
            inst.unflag("down-db1");
            let r = inst.run(&["reset", "db", "--yes", "--force"]);
            assert_eq!(r.code, 0, "round {round}: {r:?}");
        }
    }
    // Each failover ran each step at most once: count promote calls per step and compare
    // with the failovers the history recorded.
    let history = inst.run(&["history", "--json", "--limit", "100000"]).stdout;
    let started = history.matches("\"event\":\"failover_started\"").count();
    for step in ["one", "two", "three"] {
        let calls = inst
            .steps_log()
            .iter()
            .filter(|l| *l == &format!("{step} promote"))
            .count();
        assert!(
            calls <= started,
            "step {step} ran {calls} times in {started} failovers"
        );
    }
    assert!(failovers_started > 0, "the test should have seen failovers");
    let _ = wait_for;
}

/// An instance whose steps are `script`, ticked through a failover of its primary.
fn failover_with_step(script: &str) -> Instance {
    let inst = Instance::new();
    inst.script("plugins/step", script);
    inst.flag("down-db1");
    for _ in 0..3 {
        inst.tick();
    }
    inst
}

/// Fills the state dir's file system, then prints a lot (so that its history needs room).
const FILLING_STEP: &str = r#"#!/bin/sh
top="$(dirname "$0")/.."
echo "$DEADPOOL_STEP $1" >> "$top/steps.log"
if [ "$1" = promote ]; then
    dd if=/dev/zero of="$top/state/filler" bs=4k status=none 2>/dev/null
    echo "filled the state dir"
    head -c 12000 /dev/zero | tr '\0' x
    echo
fi
exit 0
"#;

/// Frees the state dir's file system again.
const FREEING_STEP: &str = r#"#!/bin/sh
top="$(dirname "$0")/.."
echo "$DEADPOOL_STEP $1" >> "$top/steps.log"
if [ "$1" = promote ]; then rm -f "$top/state/filler"; echo "freed the state dir"; fi
exit 0
"#;

both_modes!(a_disk_that_fills_up_during_the_chain_stops_no_step);
fn a_disk_that_fills_up_during_the_chain_stops_no_step() {
    let pool = format!(
        "{}\n[[protocol]]\ntype = \"plugin\"\nname = \"free\"\ncommand = \"free\"\n",
        common::TWO_STEP_POOL
            .replace("max_failed_checks = 3", "max_failed_checks = 1")
            .replace(
                "name = \"one\"\ncommand = \"step\"",
                "name = \"fill\"\ncommand = \"fill\""
            )
    );
    let inst = Instance::with("tick_interval = \"1s\"\n", &[("db", &pool)]);
    inst.script("plugins/fill", FILLING_STEP);
    inst.script("plugins/free", FREEING_STEP);
    let state = inst.path("state");
    let _unmount = small_tmpfs(&state, "600k");
    assert_eq!(inst.tick().code, 0);
    inst.flag("down-db1");
    let r = inst.tick();
    // The writes really failed while the disk was full...
    assert!(r.stderr.contains("will retry"), "{r:?}");
    // ...and every step ran all the same, in order, once.
    let promotes: Vec<String> = inst
        .steps_log()
        .iter()
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .filter(|l| l.ends_with(" promote"))
        .collect();
    assert_eq!(
        promotes,
        ["fill promote", "two promote", "free promote"],
        "{r:?}"
    );
    assert_eq!(r.code, 0, "{r:?}");
    // Once the disk had room again, the end state and every pending event were written.
    assert_eq!(inst.state_of("db").0, "failed_over");
    let history = inst.history();
    for needle in [
        "filled the state dir",
        "promote of two ok",
        "freed the state dir",
    ] {
        assert!(history.contains(needle), "{needle}: {history}");
    }
    assert!(sqlite_ok(&inst));
}

/// Fills the file system at `dir` (with `dir/filler`) up to `free` bytes left.
fn fill_to(dir: &std::path::Path, free: u64) {
    let filler = dir.join("filler");
    let _ = std::fs::remove_file(&filler);
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut words = text.split_whitespace().map(|w| w.parse::<u64>().unwrap());
    let available = words.next().unwrap() * words.next().unwrap();
    let _ = std::fs::write(&filler, vec![0u8; available.saturating_sub(free) as usize]);
}

both_modes!(a_full_disk_is_named_in_every_write_error);
/// The state dir on a file system that fills up: whichever write meets the full disk (the
/// WAL files at open, a pool's row, the tick's record), its error names the database and
/// says the disk is full; the hosts-file helper names its file too.
fn a_full_disk_is_named_in_every_write_error() {
    let inst = Instance::new();
    let state = inst.path("state");
    let _unmount = small_tmpfs(&state, "256k");
    assert_eq!(inst.tick().code, 0);
    let db = inst.path("state/deadpool.db");
    let mut failures = Vec::new();
    for free_kib in (0..=96).step_by(4) {
        fill_to(&state, free_kib * 1024);
        inst.flag("down-db1");
        for r in [
            inst.tick(),
            inst.run(&["pause", "db", "--for", "1h", "--reason", "x"]),
        ] {
            inst.unflag("down-db1");
            if !r.stderr.contains("full") && !r.stderr.contains("I/O error") {
                continue;
            }
            for line in r.stderr.lines() {
                assert!(
                    line.contains(&format!("cannot write the state database {}", db.display()))
                        && line.contains("free space on its file system"),
                    "{free_kib} KiB free: {line}"
                );
            }
            failures.push(r.stderr);
        }
    }
    let all = failures.join("");
    assert!(
        all.contains("database or disk is full") && all.contains("disk I/O error"),
        "both a write and the WAL files met the full disk: {all}"
    );

    // The hosts-file helper on a full file system.
    let _unmount_etc = small_tmpfs(&inst.path("etc"), "64k");
    std::fs::write(inst.path("etc/hosts"), "10.0.0.1 db\n").unwrap();
    fill_to(&inst.path("etc"), 0);
    let r = inst.run(&[
        "hosts",
        "switch",
        "--file",
        inst.path("etc/hosts").to_str().unwrap(),
        "--name",
        "db",
        "--ip",
        "10.0.0.2",
    ]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "cannot write the backup {}.deadpool-backup: No space left on device",
            inst.path("etc/hosts").display()
        )) && r.stdout.contains("nothing changed"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(inst.path("etc/hosts")).unwrap(),
        "10.0.0.1 db\n"
    );
}
