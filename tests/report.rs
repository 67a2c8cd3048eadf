//! `report`: Nagios statuses from real situations, perfdata, staleness, the tree and JSON.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Detection, Instance, detection};

/// The perfdata item of pool `db` with `failures`: its threshold is `max_failed_checks`
/// (3), none for a pool with `down_for`.
fn db_perf(failures: u64) -> String {
    match detection() {
        Detection::Count => format!("'db_failures'={failures};;3;0"),
        Detection::Time => format!("'db_failures'={failures};;;0"),
    }
}

fn fast() -> Instance {
    Instance::with(
        "tick_interval = \"200ms\"\nstale_warning = \"700ms\"\nstale_critical = \"1500ms\"\nsystem_check_interval = \"1h\"\n",
        &[("db", common::TWO_STEP_POOL)],
    )
}

/// Checks the line against the Nagios plugin output format and returns (status, perfdata).
fn parse_nagios(stdout: &str) -> (String, String) {
    let first = stdout.lines().next().expect("one line");
    let (message, perf) = first.split_once(" | ").expect("perfdata after ` | `");
    assert!(!message.contains('|'), "no | in the message: {first}");
    assert!(!perf.contains('|'), "{first}");
    let status = message
        .strip_prefix("DEADPOOL ")
        .unwrap()
        .split(" - ")
        .next()
        .unwrap()
        .to_string();
    for item in perf.split(' ') {
        let (label, value) = item
            .split_once('=')
            .unwrap_or_else(|| panic!("perfdata item `{item}`"));
        assert!(!label.is_empty());
        let fields: Vec<&str> = value.split(';').collect();
        assert_eq!(fields.len(), 4, "label=value;warn;crit;min in `{item}`");
        let number = fields[0].trim_end_matches('s');
        assert!(
            number == "U" || number.parse::<f64>().is_ok(),
            "value of `{item}`"
        );
        for f in &fields[1..] {
            assert!(
                f.is_empty() || f.parse::<f64>().is_ok(),
                "threshold of `{item}`"
            );
        }
    }
    (status, perf.to_string())
}

both_modes!(nagios_ok_warning_critical_from_real_situations);
fn nagios_ok_warning_critical_from_real_situations() {
    let inst = fast();
    // No tick ever: CRITICAL.
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("no tick has run yet"), "{r:?}");
    assert_eq!(parse_nagios(&r.stdout).0, "CRITICAL");
    assert!(r.stdout.contains("tick_age=U;"), "{r:?}");

    // Healthy: OK, with the perfdata the SPEC names.
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 0, "{r:?}");
    let (status, perf) = parse_nagios(&r.stdout);
    assert_eq!(status, "OK");
    assert!(
        perf.contains("tick_age=") && perf.contains("tick_duration="),
        "{perf}"
    );
    assert!(perf.contains(&db_perf(0)), "{perf}");
    assert_eq!(
        r.stdout.lines().count(),
        1,
        "no problem lines when OK: {r:?}"
    );

    // Primary failing, counting: WARNING. With `down_for`, while the tick re-checks it (the
    // pool waits an hour to confirm meanwhile), and the count grows within the tick.
    match detection() {
        Detection::Count => {
            inst.flag("down-db1");
            inst.tick();
            let r = inst.run(&["report", "--nagios"]);
            assert_eq!(r.code, 1, "{r:?}");
            assert!(r.stdout.contains("failed 1/3 consecutive checks"), "{r:?}");
            assert!(r.stdout.contains(&db_perf(1)), "{r:?}");
            inst.unflag("down-db1");
        }
        Detection::Time => {
            let slow = common::confirming_for_an_hour(common::TWO_STEP_POOL);
            inst.write("pools/db.toml", &slow);
            let rechecking = inst.rechecking(&["db1"], |inst| inst.state_of("db").2 >= 2);
            let r = inst.run(&["report", "--nagios"]);
            assert_eq!(r.code, 1, "{r:?}");
            let n = failures_in_perf(&r.stdout);
            assert!(n >= 2, "{r:?}");
            assert!(
                r.stdout.contains(&format!("failed {n} check(s) in a row")),
                "{r:?}"
            );
            assert!(r.stdout.contains(&db_perf(n)), "{r:?}");
            assert_eq!(rechecking.end().code, 0);
            assert_eq!(inst.state_of("db").2, 0, "db1 answered: the count restarts");
            inst.write_pool("db", common::TWO_STEP_POOL);
        }
    }

    // Standby down: WARNING, with an extra line for the problem.
    inst.flag("down-db2");
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("WARNING: db: standby secondary (db2) is down"),
        "{r:?}"
    );

    // Both down: CRITICAL.
    inst.flag("down-db1");
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("both servers are down"), "{r:?}");
    inst.unflag("down-db1");
    inst.unflag("down-db2");

    // A server alive but unhappy (Nagios WARNING from the monitor): WARNING, not counted down.
    inst.flag("warn-db1");
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("alive with a problem"), "{r:?}");
    assert!(r.stdout.contains(&db_perf(0)), "{r:?}");
    inst.unflag("warn-db1");

    // Failed over: WARNING (locked, a person should look).
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 0, "the deciding tick");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("failed over to secondary (db2)"), "{r:?}");
}

both_modes!(readiness_problems_reach_nagios);
fn readiness_problems_reach_nagios() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    inst.flag("warn-check-two");
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("step 2 `two` on local: warning from check"),
        "{r:?}"
    );
    inst.unflag("warn-check-two");
    inst.flag("fail-check-one");
    std::thread::sleep(Duration::from_millis(1100));
    inst.tick();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout
            .contains("step 1 `one` on local: failing check on purpose"),
        "{r:?}"
    );
    // Readiness changes are history events; unchanged results are not appended again.
    let history = inst.history();
    assert!(history.contains("readiness WARNING -> OK"), "{history}");
    assert!(history.contains("readiness OK -> CRITICAL"), "{history}");
    // check runs toward the standby: old = active, new = standby.
    assert!(
        inst.calls("check")[0].contains("old=db1 new=db2"),
        "{:?}",
        inst.calls("check")
    );
}

/// A pool of 10.0.0.1 and 10.0.0.2 that fails over at the first failed check, with one
/// `etc_hosts` step named `hosts` for the name `db.service` in `hosts` on `client` (a TOML
/// string), logged in to with `ssh` (a TOML table, or empty for the defaults).
fn hosts_pool(client: &str, hosts: &std::path::Path, ssh: &str) -> String {
    let ssh = if ssh.is_empty() {
        String::new()
    } else {
        format!("ssh = {ssh}\n")
    };
    format!(
        "primary = \"10.0.0.1\"\nsecondary = \"10.0.0.2\"\nmax_failed_checks = 1\n\n[monitor]\ntype = \"nagios\"\ncommand = \"monitor {{host}}\"\ntimeout = \"2s\"\n\n[[protocol]]\ntype = \"etc_hosts\"\nname = \"hosts\"\nservice_host_name = \"db.service\"\nclient_hosts = [{client}]\nhosts_file = {hosts:?}\nhelper = {helper:?}\n{ssh}",
        hosts = hosts.display().to_string(),
        helper = common::BIN,
    )
}

/// Fails pool `db` over from 10.0.0.1 to 10.0.0.2 with the first tick: `hosts` then names
/// the new primary.
fn fail_over_hosts_pool(inst: &Instance, hosts: &std::path::Path) {
    inst.flag("down-10.0.0.1");
    let r = inst.tick();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    assert_eq!(
        std::fs::read_to_string(hosts).unwrap(),
        "127.0.0.1 localhost\n10.0.0.2 db.service\n"
    );
}

/// The problem of `report --json` whose message contains `words`.
fn json_problem(inst: &Instance, words: &str) -> serde_json::Value {
    let r = inst.run(&["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let problems = v["problems"].as_array().unwrap();
    problems
        .iter()
        .find(|p| p["message"].as_str().unwrap().contains(words))
        .cloned()
        .unwrap_or_else(|| panic!("no problem with `{words}` in {problems:?}"))
}

both_modes!(a_client_sent_back_to_the_old_primary_is_critical_in_a_locked_pool);
fn a_client_sent_back_to_the_old_primary_is_critical_in_a_locked_pool() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    let hosts = inst.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.0.1 db.service\n").unwrap();
    inst.write_pool("db", &hosts_pool("\"local\"", &hosts, ""));
    fail_over_hosts_pool(&inst, &hosts);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(
        r.code, 1,
        "failed over, the client on the new primary: {r:?}"
    );
    assert!(!r.stdout.contains("step 1"), "{r:?}");

    // Config management puts the old line back: the client sends its traffic to the old
    // primary now, whatever the pool's state.
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.0.1 db.service\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    let line = (r.stdout.lines().skip(1))
        .find(|l| l.contains("step 1 `hosts`"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        line.starts_with(
            "CRITICAL: db: step 1 `hosts` on local: db.service points at the standby 10.0.0.1, not the active server 10.0.0.2 (checked "
        ),
        "{line}"
    );
    assert!(!line.contains("applies after reset"), "{line}");
    let problem = json_problem(&inst, "step 1 `hosts` on local");
    assert_eq!(problem["status"], "CRITICAL", "{problem}");
    assert!(
        problem["hint"].as_str().unwrap().starts_with(
            "fix it on local now: clients are sent elsewhere than the active server 10.0.0.2"
        ),
        "{problem}"
    );
    // Reported, never repaired behind the person's back: the pool stays locked.
    assert_eq!(inst.state_of("db").0, "failed_over");
    assert_eq!(
        std::fs::read_to_string(&hosts).unwrap(),
        "127.0.0.1 localhost\n10.0.0.1 db.service\n"
    );
}

both_modes!(a_plugin_check_that_reports_direction_is_critical_in_a_locked_pool);
fn a_plugin_check_that_reports_direction_is_critical_in_a_locked_pool() {
    let pool = format!(
        "{}\n[[protocol]]\ntype = \"plugin\"\nname = \"router\"\ncommand = \"router\"\n",
        common::TWO_STEP_POOL
    );
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n",
        &[("db", &pool)],
    );
    inst.script(
        "plugins/router",
        "#!/bin/sh\nif [ \"$1\" = check ] && [ -e \"$(dirname \"$0\")/../flags/misrouted\" ]; then\n    echo \"direction: app1 sends orders to $DEADPOOL_NEW_PRIMARY, not to the active $DEADPOOL_OLD_PRIMARY\"\n    exit 2\nfi\necho \"$1 ok\"\n",
    );
    inst.flag("down-db1");
    inst.ticks_before_threshold("db", 2);
    assert_eq!(inst.tick().code, 0);
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());

    // One check says where clients go, another only that a failover would fail.
    inst.flag("misrouted");
    inst.flag("fail-check-one");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    let line = |words: &str| {
        (r.stdout.lines().skip(1))
            .find(|l| l.contains(words))
            .unwrap_or_else(|| panic!("no `{words}` in {r:?}"))
    };
    let router = line("step 3 `router`");
    assert!(
        router.starts_with(
            "CRITICAL: db: step 3 `router` on local: app1 sends orders to db1, not to the active db2 (exit 2) (checked "
        ),
        "{router}"
    );
    assert!(!router.contains("applies after reset"), "{router}");
    let one = line("step 1 `one`");
    assert!(
        one.starts_with("WARNING: db: step 1 `one` on local: failing check on purpose")
            && one.ends_with("(pool locked: applies after reset)"),
        "{one}"
    );
}

both_modes!(a_locked_pool_whose_ssh_key_is_unreadable_waits_for_reset);
fn a_locked_pool_whose_ssh_key_is_unreadable_waits_for_reset() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    let sshd = common::Sshd::start(&inst.path("sshd"));
    let hosts = inst.path("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n10.0.0.1 db.service\n").unwrap();
    let ssh = format!(
        "{{ user = \"root\", port = {}, identity_file = {:?}, known_hosts = {:?}, connect_timeout = \"2s\" }}",
        sshd.port,
        sshd.key.display().to_string(),
        sshd.known_hosts.display().to_string()
    );
    inst.write_pool("db", &hosts_pool("\"127.0.0.1\"", &hosts, &ssh));
    fail_over_hosts_pool(&inst, &hosts);

    // The key is damaged after the failover: the client still points at the active server,
    // but the next failover could not log in to change it.
    std::fs::write(&sshd.key, "not a key\n").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(inst.tick().code, 0);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    let problem = json_problem(&inst, "step 1 `hosts` on 127.0.0.1");
    let message = problem["message"].as_str().unwrap();
    assert_eq!(problem["status"], "WARNING", "{problem}");
    assert!(
        message.contains(&format!(
            "login as root with key {} failed",
            sshd.key.display()
        )) && message.ends_with("(pool locked: applies after reset)"),
        "{message}"
    );
    assert_eq!(
        problem["hint"],
        "fix it on 127.0.0.1 before `deadpool reset db`: a failover after the reset would fail at this step",
        "{problem}"
    );
}

both_modes!(staleness_after_the_timer_stops);
fn staleness_after_the_timer_stops() {
    let inst = fast();
    inst.tick();
    assert_eq!(inst.run(&["report", "--nagios"]).code, 0);
    std::thread::sleep(Duration::from_millis(900));
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("ticks are late"), "{r:?}");
    std::thread::sleep(Duration::from_millis(800));
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("the timer seems stopped"), "{r:?}");
}

both_modes!(unknown_for_bad_usage_and_unreadable_state);
fn unknown_for_bad_usage_and_unreadable_state() {
    let inst = fast();
    let r = inst.run(&["report", "--nagios", "--bogus"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.starts_with("DEADPOOL UNKNOWN - "), "{r:?}");
    let r = inst.run(&["report", "--nagios", "--pool", "nosuch"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("no pool named `nosuch`"), "{r:?}");

    inst.tick();
    // A database that is not one.
    std::fs::write(inst.path("state/deadpool.db"), vec![0x5a; 8192]).unwrap();
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.starts_with("DEADPOOL UNKNOWN - "), "{r:?}");
    assert_eq!(r.stdout.lines().count(), 1);
    let r = inst.tick();
    assert_ne!(
        r.code, 0,
        "a tick must not work on a corrupt database: {r:?}"
    );
    assert!(r.stderr.contains("deadpool.db"), "{r:?}");
}

both_modes!(a_database_from_a_newer_version_is_refused);
fn a_database_from_a_newer_version_is_refused() {
    let inst = fast();
    inst.tick();
    let status = std::process::Command::new("sqlite3")
        .arg(inst.path("state/deadpool.db"))
        .arg("PRAGMA user_version = 99;")
        .status();
    // sqlite3 is a Debian package the test command installs.
    assert!(status.expect("sqlite3 must be installed").success());
    let before = inst.db_bytes();
    let r = inst.tick();
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("newer deadpool"), "{r:?}");
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("newer deadpool"), "{r:?}");
    assert_eq!(inst.db_bytes(), before);
}

both_modes!(full_and_json_reports_show_the_tree);
fn full_and_json_reports_show_the_tree() {
    let inst = fast();
    inst.tick();
    inst.flag("down-db2");
    inst.tick();
    let r = inst.run(&["report"]);
    assert_eq!(r.code, 0, "{r:?}");
    let text = r.stdout;
    assert!(
        text.starts_with(
            "DEADPOOL WARNING\nproblems (worst first):\n  ! WARNING  db: standby secondary (db2) is down"
        ),
        "{text}"
    );
    assert!(text.contains("pool db\n"), "{text}");
    // Out of `max_failed_checks`; a pool with `down_for` has no count threshold.
    let failures = match detection() {
        Detection::Count => "0/3 failures",
        Detection::Time => "0 failures",
    };
    assert!(
        text.contains(&format!("armed, active primary (db1), {failures}\n")),
        "{text}"
    );
    assert!(text.contains("primary   db1"), "{text}");
    assert!(text.contains("[active]"), "{text}");
    assert!(text.contains("checked "), "{text}");
    assert!(text.contains("1. one (plugin)"), "{text}");
    assert_eq!(
        inst.run(&["report", "--full"]).stdout.lines().next(),
        text.lines().next()
    );

    assert!(
        text.contains("\n             -> bring the standby back"),
        "each problem says what to do: {text}"
    );
    assert!(!text.contains('\x1b'), "no colour when piped: {text}");

    // On a terminal: colour, unless NO_COLOR is set.
    let on_terminal = |no_color: bool| {
        let cmdline = format!("{} --config {} report", common::BIN, inst.dir().display());
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", &cmdline, "/dev/null"])
            .env("TERM", "xterm");
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        String::from_utf8_lossy(&cmd.output().expect("script (util-linux)").stdout).into_owned()
    };
    assert!(
        on_terminal(false).contains("\x1b[33m! WARNING"),
        "{:?}",
        on_terminal(false)
    );
    assert!(!on_terminal(true).contains('\x1b'));

    let r = inst.run(&["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["status"], "WARNING");
    assert_eq!(v["pools"][0]["monitor"]["servers"][1]["health"], "down");
    assert_eq!(v["pools"][0]["steps"][0]["hosts"][0]["status"], "OK");
    assert!(v["instance"]["last_tick_age_s"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["problems"][0]["pool"], "db");
}

both_modes!(history_is_bounded_by_events_not_ticks);
fn history_is_bounded_by_events_not_ticks() {
    let inst = fast();
    for _ in 0..30 {
        inst.tick();
    }
    let r = inst.run(&["history", "--json", "--limit", "1000"]);
    assert_eq!(r.code, 0);
    assert_eq!(
        r.stdout.lines().count(),
        0,
        "healthy ticks append nothing: {}",
        r.stdout
    );
    inst.flag("down-db1");
    inst.flag("down-db2");
    for _ in 0..10 {
        inst.tick();
    }
    let events = inst.run(&["history", "--json", "--limit", "1000"]).stdout;
    assert_eq!(
        events.lines().count(),
        1,
        "a pool that stays blocked is recorded once: {events}"
    );
}

both_modes!(prometheus_metrics_from_the_report_and_a_textfile_on_each_tick);
fn prometheus_metrics_from_the_report_and_a_textfile_on_each_tick() {
    let inst = Instance::with(
        "tick_interval = \"1s\"\nprometheus_textfile = \"metrics/deadpool.prom\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    std::fs::create_dir(inst.path("metrics")).unwrap();
    inst.tick();
    // The primary fails: counting, the next tick sees it; with `down_for`, the metrics are
    // read while that tick re-checks it (the pool waits an hour to confirm meanwhile).
    let rechecking = match detection() {
        Detection::Count => {
            inst.flag("down-db1");
            inst.tick();
            None
        }
        Detection::Time => {
            let slow = common::confirming_for_an_hour(common::TWO_STEP_POOL);
            inst.write("pools/db.toml", &slow);
            Some(inst.rechecking(&["db1"], |inst| inst.state_of("db").2 >= 2))
        }
    };
    let r = inst.run(&["report", "--prometheus"]);
    assert_eq!(r.code, 0, "{r:?}");
    let failures = failures_in_metrics(&r.stdout);
    match detection() {
        Detection::Count => assert_eq!(failures, 1, "{}", r.stdout),
        Detection::Time => assert!(failures >= 2, "re-checks counted: {}", r.stdout),
    }
    for needed in [
        "# TYPE deadpool_status gauge\ndeadpool_status 1\n",
        "deadpool_pool_state{pool=\"db\",state=\"armed\"} 1\n",
        "deadpool_pool_state{pool=\"db\",state=\"failed_over\"} 0\n",
        "deadpool_server_up{pool=\"db\",role=\"primary\",address=\"db1\",active=\"true\"} 0\n",
        "deadpool_readiness_status{pool=\"db\",step=\"one\",host=\"local\"} 0\n",
        "deadpool_tick_age_seconds ",
    ] {
        assert!(
            r.stdout.contains(needed),
            "`{needed}` missing:\n{}",
            r.stdout
        );
    }
    // Every sample line is `name{labels} number`.
    for line in r.stdout.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    let textfile = || std::fs::read_to_string(inst.path("metrics/deadpool.prom")).unwrap();
    let Some(rechecking) = rechecking else {
        let file = textfile();
        assert_eq!(failures_in_metrics(&file), 1, "{file}");
        inst.tick();
        let file = textfile();
        assert_eq!(
            failures_in_metrics(&file),
            2,
            "the file follows each tick: {file}"
        );
        return;
    };
    // The file follows each round of the re-checking tick (one a second), and its end.
    let file = textfile();
    assert!(failures_in_metrics(&file) >= 1, "the first round's: {file}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while failures_in_metrics(&textfile()) < 2 {
        assert!(std::time::Instant::now() < deadline, "{}", textfile());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(rechecking.end().code, 0);
    let file = textfile();
    assert_eq!(failures_in_metrics(&file), 0, "db1 answered again: {file}");
    assert!(file.contains("deadpool_pool_state{pool=\"db\",state=\"armed\"} 1\n"));
}

/// The value of `deadpool_pool_failures` for pool `db`.
fn failures_in_metrics(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("deadpool_pool_failures{pool=\"db\"} "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("deadpool_pool_failures of db in:\n{metrics}"))
}

/// The count of `'db_failures'` in Nagios perfdata.
fn failures_in_perf(nagios: &str) -> u64 {
    nagios
        .split_once("'db_failures'=")
        .and_then(|(_, v)| v.split(';').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("'db_failures' in {nagios}"))
}

/// Everything the escaping step below prints that a terminal would act on: ESC starting a
/// CSI (clear, colour) and an OSC (window title, clipboard write), a C1 CSI, a carriage
/// return, a backspace and a bell.
const TERMINAL_CONTROLS: &[char] = &['\x1b', '\u{9b}', '\r', '\x08', '\x07'];

both_modes!(step_and_monitor_output_reaches_a_person_without_terminal_controls);
fn step_and_monitor_output_reaches_a_person_without_terminal_controls() {
    let inst = fast();
    // A step plugin and a monitor plugin that print terminal escapes around their words.
    let escapes = r"printf '\033]0;owned\007\033]52;c;ZWNobyBoaQ==\007\033[2J\302\233H\r\010'";
    inst.script(
        "plugins/step",
        &format!(
            "#!/bin/sh\n{escapes}\nprintf 'step %s \\033[31mred\\033[0m\\tdone\\n' \"$1\"\nprintf 'second line\\n'\nprintf 'to stderr\\033[5m\\n' >&2\n"
        ),
    );
    inst.script(
        "plugins/monitor",
        &format!("#!/bin/sh\n{escapes}\necho \"OK - $1 \\033[1manswers\"\n"),
    );
    let tick = inst.tick();
    assert_eq!(tick.code, 0, "{tick:?}");
    let promote = inst.run(&["promote", "db", "secondary", "--yes"]);
    assert_eq!(promote.code, 0, "{promote:?}");
    let history = inst.run(&["history"]);
    let report = inst.run(&["report"]);
    for (what, text) in [
        ("promote", &promote.stdout),
        ("promote's log", &promote.stderr),
        ("history", &history.stdout),
        ("report", &report.stdout),
        ("tick's log", &tick.stderr),
    ] {
        assert!(
            !text.contains(TERMINAL_CONTROLS),
            "{what} passes terminal controls on: {text:?}"
        );
    }
    // What the programs said is still there, lines and tabs kept.
    assert!(
        history
            .stdout
            .contains("      | ]0;owned]52;c;ZWNobyBoaQ==[2JH")
            && history.stdout.contains("step promote [31mred[0m\tdone\n")
            && history.stdout.contains("      | second line\n")
            && history.stdout.contains("      | to stderr[5m\n"),
        "{}",
        history.stdout
    );
    assert!(report.stdout.contains("answers"), "{}", report.stdout);
}

both_modes!(tick_duration_is_the_whole_ticks);
/// A tick whose readiness check runs 1.5 s in the background goes on with 200 ms rounds
/// until it is done: its duration, in the report, the perfdata and the metrics file, is the
/// whole tick's, not its last round's; its age counts from its end.
fn tick_duration_is_the_whole_ticks() {
    let inst = Instance::with(
        "tick_interval = \"200ms\"\nstale_warning = \"1s\"\nstale_critical = \"2s\"\nsystem_check_interval = \"1h\"\nprometheus_textfile = \"metrics/deadpool.prom\"\n",
        &[("db", common::TWO_STEP_POOL)],
    );
    std::fs::create_dir(inst.path("metrics")).unwrap();
    inst.script(
        "plugins/step",
        "#!/bin/sh\nif [ \"$1\" = check ]; then sleep 1.5; fi\necho \"$1 ok\"\n",
    );
    let started = std::time::Instant::now();
    let r = inst.tick();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        took >= 1.5,
        "the tick waited for its readiness check: {took}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&inst.run(&["report", "--json"]).stdout).unwrap();
    let duration = v["instance"]["last_tick_duration_s"].as_f64().unwrap();
    assert!(
        (1.5..=took).contains(&duration),
        "the tick took {took}s, the report says {duration}s"
    );
    let age = v["instance"]["last_tick_age_s"].as_f64().unwrap();
    assert!(age < 1.0, "the age counts from the tick's end: {age}");
    assert_eq!(v["instance"]["status"], "OK", "{v}");
    let nagios = inst.run(&["report", "--nagios"]).stdout;
    let perf: f64 = nagios
        .split("tick_duration=")
        .nth(1)
        .and_then(|p| p.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{nagios}"));
    assert!(perf >= 1.5, "{nagios}");
    let file = std::fs::read_to_string(inst.path("metrics/deadpool.prom")).unwrap();
    let metric: f64 = file
        .lines()
        .find_map(|l| l.strip_prefix("deadpool_tick_duration_seconds "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{file}"));
    assert!(
        metric >= 1.5,
        "the metrics file written at the tick's end: {file}"
    );
}
