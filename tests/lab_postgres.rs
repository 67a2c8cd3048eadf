//! PostgreSQL 15 pools in the namespace lab (`lab.sh pg-up`: db1 the primary, db2 and db3
//! standbys streaming from it, roles that are not superusers): the roles' grants, each one
//! needed; failovers by `postgres_promote` after kill -9, with the clients' hosts files and
//! the VIP; standbys passed over for what they lack, or a failover blocked; a repoint onto a
//! timeline that forked off; the fenced manual promote under a writer; an old primary back
//! writable; TLS; a frozen primary with observers. Run by `scripts/test` (they need root);
//! `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Instance;
use common::lab::{Lab, PgWriter, VIP, wait};

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";
const STANDBYS: [&str; 2] = ["db2", "db3"];
const APPS: [&str; 2] = ["LAB_APP1_NS", "LAB_APP2_NS"];
const LIMIT: Duration = Duration::from_secs(10);

/// A lab host's address, by its name.
fn ip<'a>(lab: &'a Lab, host: &str) -> &'a str {
    lab.var(&format!("LAB_{}_IP", host.to_uppercase()))
}

/// SQL as the admin account of `postgres_promote`, over TCP.
fn as_admin(lab: &Lab, host: &str, sql: &str) -> Result<String, String> {
    lab.psql_as(
        ip(lab, host),
        lab.var("LAB_ADMIN_USER"),
        "LAB_ADMIN_PASSWORD_FILE",
        "postgres",
        sql,
    )
}

/// SQL as the application (`writer`, database `app`), over TCP.
fn as_writer(lab: &Lab, host: &str, sql: &str) -> Result<String, String> {
    lab.psql_as(
        ip(lab, host),
        lab.var("LAB_WRITER_USER"),
        "LAB_WRITER_PASSWORD_FILE",
        "app",
        sql,
    )
}

/// `n` rows inserted on db1 by the application, once both standbys have replayed them.
fn replicated_rows(lab: &Lab, ids: std::ops::Range<u32>) -> Vec<u32> {
    let acked = lab.pg_insert("db1", ids);
    let lsn = lab.pg_wal_lsn("db1");
    wait(LIMIT, "db2 and db3 to replay db1's rows", || {
        STANDBYS.iter().all(|h| lab.pg_replayed(h, &lsn))
    });
    acked
}

/// Waits until `host` has replayed everything `primary` wrote so far.
fn wait_replayed(lab: &Lab, host: &str, primary: &str) {
    let lsn = lab.pg_wal_lsn(primary);
    wait(
        LIMIT,
        &format!("{host} to replay {primary}'s {lsn}"),
        || lab.pg_replayed(host, &lsn),
    );
}

/// The standby receives nothing more: its `primary_conninfo` emptied and the configuration
/// reloaded, once its WAL receiver is gone. It stays in recovery, serving reads.
fn stop_receiving(lab: &Lab, host: &str) {
    lab.psql(host, "ALTER SYSTEM SET primary_conninfo = ''");
    lab.psql(host, "SELECT pg_reload_conf()");
    wait(LIMIT, &format!("{host}'s WAL receiver to stop"), || {
        lab.pg_receiver(host).status.is_empty()
    });
}

/// A tick that must end without an error of its own (0, or 1 for a warning).
fn tick_ok(inst: &Instance) {
    let r = inst.tick();
    assert!(r.code == 0 || r.code == 1, "{r:?}");
}

/// The ticks from a dead primary to the deciding one, in this test's detection mode.
fn ticks_to_decide(inst: &Instance) {
    inst.ticks_before_threshold("db", 2);
    let r = inst.tick();
    eprintln!("deciding tick: {r:?}");
}

/// The pool's state and reason, as `report --json` gives them.
fn state_and_reason(inst: &Instance) -> (String, String) {
    let p = inst.pool_json("db");
    (
        p["state"].as_str().unwrap_or("none").to_string(),
        p["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// The message of the pool's `failover_started` event.
fn failover_started(inst: &Instance) -> String {
    inst.events("db")
        .iter()
        .find(|e| e["event"] == "failover_started")
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no failover_started event: {}", inst.history()))
}

/// The result of the promoting step for one host (the promotion itself, or a repoint).
fn promote_result(inst: &Instance, address: &str) -> (String, String) {
    let events = inst.events("db");
    let e = events
        .iter()
        .find(|e| e["event"] == "step" && e["step"] == "promote standby" && e["host"] == address)
        .unwrap_or_else(|| {
            panic!(
                "no result of the promoting step for {address}: {}",
                inst.history()
            )
        });
    (
        e["status"].as_str().unwrap_or("").to_string(),
        e["message"].as_str().unwrap_or("").to_string(),
    )
}

/// The report's problems, as (status, message).
fn problems(inst: &Instance) -> Vec<(String, String)> {
    let r = inst.run(&["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["status"].as_str().unwrap_or("").to_string(),
                p["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A tick after the readiness checks are due again (`system_check_interval` is 1 s).
fn tick_with_readiness(inst: &Instance) {
    std::thread::sleep(Duration::from_millis(1100));
    tick_ok(inst);
}

// ------------------------------------------------------------ the lab and its roles

#[test]
#[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
fn the_postgres_lab_streams_and_each_role_has_exactly_the_grants_it_needs() {
    let started = Instant::now();
    let lab = Lab::fresh_postgres(2);
    eprintln!("lab with PostgreSQL up in {:?}", started.elapsed());
    for host in STANDBYS {
        assert_eq!(
            lab.wait_pg_streaming_from(host, ip(&lab, "db1")),
            1,
            "{host}"
        );
        assert_eq!(lab.psql(host, "SHOW cluster_name"), host);
        assert_eq!(lab.psql(host, "SHOW listen_addresses"), ip(&lab, host));
    }
    assert_eq!(lab.psql("db1", "SELECT pg_is_in_recovery()"), "f");
    let acked = replicated_rows(&lab, 1..21);
    for host in STANDBYS {
        lab.assert_pg_rows_on(host, &acked);
    }

    // No role but the built-in one is a superuser; only repl may replicate.
    assert_eq!(
        lab.psql(
            "db1",
            "SELECT string_agg(rolname || ':' || rolsuper || rolreplication, ',' ORDER BY rolname) \
             FROM pg_roles WHERE rolcanlogin"
        ),
        "deadpool:falsefalse,dpadmin:falsefalse,postgres:truetrue,repl:falsetrue,writer:falsefalse"
    );
    assert_eq!(
        lab.psql(
            "db1",
            "SELECT string_agg(m.rolname || '>' || r.rolname, ',' ORDER BY m.rolname, r.rolname) \
             FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member \
             WHERE m.rolname NOT LIKE 'pg\\_%'"
        ),
        "deadpool>pg_monitor,dpadmin>pg_read_all_settings,dpadmin>pg_read_all_stats,dpadmin>pg_signal_backend"
    );
    for function in ["pg_promote(boolean, integer)", "pg_reload_conf()"] {
        assert_eq!(
            lab.psql(
                "db1",
                &format!("SELECT has_function_privilege('dpadmin', '{function}', 'EXECUTE'), has_function_privilege('deadpool', '{function}', 'EXECUTE')")
            ),
            "t|f",
            "{function}"
        );
    }
    assert_eq!(
        lab.psql(
            "db1",
            "SELECT string_agg(parname || '=' || array_to_string(paracl, ' '), ',' ORDER BY parname) FROM pg_parameter_acl"
        ),
        "default_transaction_read_only=postgres=sA/postgres dpadmin=A/postgres,primary_conninfo=postgres=sA/postgres dpadmin=A/postgres"
    );
    assert_eq!(
        lab.psql(
            "db1",
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'"
        ),
        "writer"
    );
    let hba = lab.psql(
        "db1",
        "SELECT string_agg(type || ' ' || array_to_string(database, ',') || ' ' || array_to_string(user_name, ',') || ' ' || coalesce(address || '/' || netmask, '-') || ' ' || auth_method, E'\\n' ORDER BY line_number) FROM pg_hba_file_rules",
    );
    assert_eq!(
        hba,
        "local all postgres - trust\n\
         host replication repl 10.213.0.0/255.255.255.0 scram-sha-256\n\
         host all deadpool,dpadmin,writer 10.213.0.0/255.255.255.0 scram-sha-256"
    );
    let superuser = lab.psql_as(
        ip(&lab, "db1"),
        "postgres",
        "LAB_ADMIN_PASSWORD_FILE",
        "postgres",
        "SELECT 1",
    );
    assert!(
        superuser
            .as_ref()
            .is_err_and(|e| e.contains("no pg_hba.conf entry")),
        "the superuser logs in over the socket only: {superuser:?}"
    );

    every_admin_grant_is_needed(&lab);
    the_monitor_needs_pg_monitor(&lab);
    // What pg_signal_backend cannot do: end a superuser's session.
    let mut session = superuser_session(&lab, "db1");
    let ended = as_admin(
        &lab,
        "db1",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'postgres' AND backend_type = 'client backend'",
    );
    let _ = session.kill();
    let _ = session.wait();
    assert!(
        ended
            .as_ref()
            .is_err_and(|e| e.contains("must be a superuser to terminate superuser process")),
        "{ended:?}"
    );
}

/// A superuser's session on `host`, waiting in `pg_sleep` (an administrator's psql).
fn superuser_session(lab: &Lab, host: &str) -> Child {
    let socket_dir = lab.var(&format!("LAB_{}_PG_SOCKET_DIR", host.to_uppercase()));
    let child = Command::new("timeout")
        .arg("60")
        .arg(format!("{}/psql", lab.var("LAB_PG_BIN")))
        .args([
            "-X", "-q", "-h", socket_dir, "-U", "postgres", "-d", "postgres",
        ])
        .args(["-c", "SELECT pg_sleep(55)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    wait(LIMIT, &format!("a superuser session on {host}"), || {
        lab.psql(
            host,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'postgres' AND query LIKE 'SELECT pg_sleep%'",
        ) == "1"
    });
    child
}

/// Revoked one at a time on db1 (replication carries the change to the standbys), each of
/// the admin's grants makes one of `postgres_promote`'s statements fail; granted again, it
/// passes.
fn every_admin_grant_is_needed(lab: &Lab) {
    let writer = Command::new("timeout")
        .arg("60")
        .arg(format!("{}/psql", lab.var("LAB_PG_BIN")))
        .args([
            "-X",
            "-q",
            "-h",
            ip(lab, "db1"),
            "-U",
            "writer",
            "-d",
            "app",
        ])
        .args(["-c", "SELECT pg_sleep(55)"])
        .env("PGPASSWORD", lab.secret("LAB_WRITER_PASSWORD_FILE"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start psql");
    let mut writer = writer;
    wait(LIMIT, "the writer's session on db1", || {
        lab.psql(
            "db1",
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'writer'",
        ) == "1"
    });
    // (grant, host, the step's statement, what fails without the grant, what it gives with)
    let table: &[(&str, &str, &str, &str, &str)] = &[
        (
            "pg_read_all_settings",
            "db3",
            "SHOW primary_conninfo",
            "privileges of pg_read_all_settings",
            "user=repl",
        ),
        (
            "pg_read_all_stats",
            "db3",
            "SELECT coalesce(status, 'hidden') || ' ' || coalesce(sender_host, 'hidden') FROM pg_stat_wal_receiver",
            "",
            "streaming 10.213.0.11",
        ),
        (
            "EXECUTE ON FUNCTION pg_promote(boolean, integer)",
            "db1",
            "SELECT pg_promote(wait => false)",
            "permission denied for function pg_promote",
            "recovery is not in progress",
        ),
        (
            "EXECUTE ON FUNCTION pg_reload_conf()",
            "db1",
            "SELECT pg_reload_conf()",
            "permission denied for function pg_reload_conf",
            "t",
        ),
        (
            "ALTER SYSTEM ON PARAMETER default_transaction_read_only",
            "db1",
            "ALTER SYSTEM RESET default_transaction_read_only",
            "permission denied to set parameter \"default_transaction_read_only\"",
            "",
        ),
        (
            "ALTER SYSTEM ON PARAMETER primary_conninfo",
            "db1",
            "ALTER SYSTEM RESET primary_conninfo",
            "permission denied to set parameter \"primary_conninfo\"",
            "",
        ),
        (
            "pg_signal_backend",
            "db1",
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'writer'",
            "member of pg_signal_backend",
            "t",
        ),
    ];
    let outcome = |r: Result<String, String>| r.unwrap_or_else(|e| e);
    for (grant, host, sql, without, with) in table {
        let replayed = || {
            if *host != "db1" {
                wait_replayed(lab, host, "db1");
            }
        };
        lab.psql("db1", &format!("REVOKE {grant} FROM dpadmin"));
        replayed();
        let denied = outcome(as_admin(lab, host, sql));
        lab.psql("db1", &format!("GRANT {grant} TO dpadmin"));
        replayed();
        let allowed = outcome(as_admin(lab, host, sql));
        // primary_conninfo holds the replication password: only its start is shown.
        let shown: String = allowed.chars().take(30).collect();
        eprintln!("without {grant}: {denied:?}; with it: {shown:?}");
        if without.is_empty() {
            assert!(denied.contains("hidden"), "{grant}: {denied}");
        } else {
            assert!(denied.contains(without), "without {grant}: {denied}");
        }
        assert!(allowed.contains(with), "with {grant}: {allowed}");
        assert!(
            !allowed.contains("permission denied"),
            "with {grant}: {allowed}"
        );
    }
    let _ = writer.kill();
    let _ = writer.wait();
}

/// Without pg_monitor the monitor's account sees a standby's WAL receiver but not whom it
/// streams from.
fn the_monitor_needs_pg_monitor(lab: &Lab) {
    let sql = "SELECT coalesce(status, 'hidden') FROM pg_stat_wal_receiver";
    let as_monitor = || {
        lab.psql_as(
            ip(lab, "db2"),
            lab.var("LAB_MONITOR_USER"),
            "LAB_MONITOR_PASSWORD_FILE",
            "postgres",
            sql,
        )
    };
    lab.psql("db1", "REVOKE pg_monitor FROM deadpool");
    wait_replayed(lab, "db2", "db1");
    assert_eq!(as_monitor(), Ok("hidden".to_string()));
    lab.psql("db1", "GRANT pg_monitor TO deadpool");
    wait_replayed(lab, "db2", "db1");
    assert_eq!(as_monitor(), Ok("streaming".to_string()));
}

// ------------------------------------------------------------ failovers

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    kill_9_of_the_primary_fails_over_moves_the_clients_and_repoints_the_other_standby
);
/// db1's postgres killed: db2 (first in the config, both standbys have everything) is
/// promoted, the app hosts' files and the VIP follow it, and db3 streams from it on the new
/// timeline and gets what is written there.
fn kill_9_of_the_primary_fails_over_moves_the_clients_and_repoints_the_other_standby() {
    let lab = Lab::fresh_postgres(2);
    lab.map_on_apps("db.service");
    lab.sh(&["vip", "add", "db1", &format!("{VIP}/24")]);
    let steps = format!(
        "{}{}",
        lab.etc_hosts_step(common::BIN, ""),
        lab.vip_step("")
    );
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.postgres_pool3(3, "", &steps))],
    );
    tick_ok(&inst);
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 0, "{}", inst.run(&["report"]).stdout);
    let acked = replicated_rows(&lab, 1..51);
    tick_ok(&inst);
    let killed = Instant::now();
    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);
    eprintln!("failed over {:?} after the kill", killed.elapsed());

    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    lab.assert_pg_rows_on("db2", &acked);
    let more = lab.pg_insert("db2", 1000..1020);
    for ns in APPS {
        assert_eq!(
            lab.app_maps(ns, "db.service").as_deref(),
            Some(ip(&lab, "db2")),
            "{ns}: the apps follow the new primary"
        );
    }
    assert!(lab.sh(&["vip", "show", "db2"]).contains(VIP));
    assert!(!lab.sh(&["vip", "show", "db1"]).contains(VIP));

    assert_eq!(
        lab.wait_pg_streaming_from("db3", ip(&lab, "db2")),
        2,
        "db3 follows db2 on the timeline its promotion began"
    );
    wait_replayed(&lab, "db3", "db2");
    lab.assert_pg_rows_on("db3", &[acked, more].concat());
    let (status, message) = promote_result(&inst, ip(&lab, "db3"));
    assert_eq!(status, "OK", "{message}");
    assert!(message.contains("repointed to 10.213.0.12"), "{message}");
    let (status, message) = promote_result(&inst, ip(&lab, "db2"));
    assert_eq!(status, "OK", "{message}");

    tick_with_readiness(&inst);
    let full = inst.run(&["report", "--full"]).stdout;
    eprintln!("{full}");
    assert!(
        !problems(&inst)
            .iter()
            .any(|(s, m)| s == "CRITICAL" && m.contains(ip(&lab, "db3"))),
        "db3 streams from the active server: {full}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_standby_that_stopped_receiving_is_passed_over
);
/// db3 receives nothing more while db1 takes 50 rows that db2 has: db2 is promoted, db3 is
/// passed over for what it lacks, and the failover says so.
fn a_standby_that_stopped_receiving_is_passed_over() {
    let lab = Lab::fresh_postgres(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.postgres_pool3(3, "", ""))]);
    tick_ok(&inst);
    stop_receiving(&lab, "db3");
    tick_ok(&inst);
    let acked = lab.pg_insert("db1", 1..51);
    wait_replayed(&lab, "db2", "db1");
    assert!(
        !lab.pg_replayed("db3", &lab.pg_wal_lsn("db1")),
        "db3 lacks the rows"
    );
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);

    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    lab.assert_pg_rows_on("db2", &acked);
    let started = failover_started(&inst);
    eprintln!("failover_started: {started}");
    assert!(
        started.contains("passed over")
            && started.contains(lab.db3_ip())
            && started.contains("lacks writes"),
        "{started}"
    );
    assert_eq!(lab.psql("db3", "SELECT pg_is_in_recovery()"), "t");
    // Its primary_conninfo is empty: there is nothing the step could point at db2.
    let (status, message) = promote_result(&inst, lab.db3_ip());
    eprintln!("db3's repoint: {status}: {message}");
    assert_eq!(status, "WARNING", "{message}");
    assert!(message.contains("no primary_conninfo"), "{message}");
    tick_with_readiness(&inst);
    let full = inst.run(&["report", "--full"]).stdout;
    eprintln!("{full}");
    assert!(full.contains(lab.db3_ip()), "{full}");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    two_standbys_that_stopped_receiving_block_the_failover
);
/// Both standbys receive nothing more while db1 takes rows: neither is promoted; the pool is
/// blocked, naming both and what they lack.
fn two_standbys_that_stopped_receiving_block_the_failover() {
    let lab = Lab::fresh_postgres(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.postgres_pool3(3, "", ""))]);
    tick_ok(&inst);
    for host in STANDBYS {
        stop_receiving(&lab, host);
    }
    tick_ok(&inst);
    lab.pg_insert("db1", 1..51);
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);

    let (state, reason) = state_and_reason(&inst);
    eprintln!("blocked: {reason}");
    assert_eq!(state, "blocked", "{reason}\n{}", inst.history());
    for host in STANDBYS {
        assert!(reason.contains(ip(&lab, host)), "{host}: {reason}");
        assert_eq!(lab.psql(host, "SELECT pg_is_in_recovery()"), "t", "{host}");
    }
    assert!(reason.contains("lacks writes"), "{reason}");
    assert!(!inst.history().contains("failover_started"));
    let r = inst.run(&["report", "--nagios"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.contains("blocked"), "{r:?}");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_standby_ahead_of_the_promoted_one_forks_off_on_its_repoint
);
/// db2 stops receiving; db3 (never_promote) gets db1's rows; with a lax max_promote_lag, db2
/// is promoted behind db3. db3, repointed to db2, finds db2's new timeline forked off
/// before its own recovery point: it cannot follow. The step's result for db3 is CRITICAL,
/// FORKED OFF, and the report names it forked off.
fn a_standby_ahead_of_the_promoted_one_forks_off_on_its_repoint() {
    let lab = Lab::fresh_postgres(2);
    let keys = format!(
        "never_promote = [\"{}\"]\nmax_promote_lag = \"1h\"",
        lab.db3_ip()
    );
    let inst = Instance::with(SETTINGS, &[("db", &lab.postgres_pool3(3, &keys, ""))]);
    tick_ok(&inst);
    stop_receiving(&lab, "db2");
    tick_ok(&inst);
    lab.pg_insert("db1", 1..51);
    wait_replayed(&lab, "db3", "db1");
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);

    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        lab.psql_app(
            "db2",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'acked'"
        ),
        "0",
        "db2 was promoted without db1's last writes"
    );
    let (status, message) = promote_result(&inst, lab.db3_ip());
    assert_eq!(status, "CRITICAL", "{message}");
    assert!(
        message.starts_with("FORKED OFF, it cannot follow 10.213.0.12: replayed to ")
            && message.contains("past the promotion point"),
        "{message}"
    );
    let log =
        std::fs::read_to_string(format!("{}/db3/postgres/stdout.log", lab.var("LAB_DIR"))).unwrap();
    assert!(
        log.contains("forked off current database system timeline 1 before current recovery point"),
        "db3's log says why it cannot follow: {log}"
    );
    let r = lab.pg_receiver("db3");
    assert!(r.in_recovery && r.status != "streaming", "{r:?}");
    assert_eq!(
        lab.psql_app("db3", "SELECT count(*) FROM acked"),
        "50",
        "db3 serves diverged data"
    );

    tick_with_readiness(&inst);
    let found = problems(&inst);
    assert!(
        found.iter().any(|(s, m)| s == "CRITICAL"
            && m.contains(&format!("({}) forked off: on timeline 1 while the active server 10.213.0.12 is on timeline 2", lab.db3_ip()))),
        "{found:?}"
    );
}

/// `deadpool promote` of db2 while a writer commits rows on db1: the promotion succeeds,
/// the pool is failed over to db2, out of recovery and holding every row the writer got a
/// commit for, and db3 streams from it. What made the writer stop.
fn promote_under_a_writer(lab: &Lab, inst: &Instance) -> String {
    let writer = PgWriter::start(lab, ip(lab, "db1"));
    wait(LIMIT, "the writer to write", || writer.acked_so_far() > 200);
    let r = inst.run(&["promote", "db", "secondary", "--yes"]);
    let (acked, why) = writer.finish();
    eprintln!(
        "promote: {r:?}\nthe writer stopped: {why}; {} rows acknowledged",
        acked.len()
    );
    assert_eq!(r.code, 0, "{r:?}\n{}", inst.history());
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    lab.assert_pg_rows_on("db2", &acked);
    lab.pg_insert("db2", 1_000_000..1_000_020);
    assert_eq!(lab.wait_pg_streaming_from("db3", ip(lab, "db2")), 2);
    why
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_manual_promote_under_a_writer_loses_no_acknowledged_row_and_leaves_one_writable_primary
);
/// `deadpool promote` while an application writes to db1 and an administrator's superuser
/// session sits on it: db1 is fenced (default_transaction_read_only, its sessions ended),
/// db2 catches up and is promoted, db3 follows it. Every row the writer got a commit for is
/// on db2, and db1 refuses the application's writes.
fn a_manual_promote_under_a_writer_loses_no_acknowledged_row_and_leaves_one_writable_primary() {
    let lab = Lab::fresh_postgres(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.postgres_pool3(3, "", ""))]);
    tick_ok(&inst);
    let mut admin_session = superuser_session(&lab, "db1");
    let why = promote_under_a_writer(&lab, &inst);
    let _ = admin_session.kill();
    let _ = admin_session.wait();
    assert!(
        why.contains("terminating connection due to administrator command")
            || why.contains("read-only transaction"),
        "writes must stop on the old primary: {why}"
    );
    // One writable primary: db1 refuses the application's writes.
    assert_eq!(lab.psql("db1", "SHOW default_transaction_read_only"), "on");
    let refused = as_writer(&lab, "db1", "INSERT INTO acked (id) VALUES (999999)");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("read-only transaction")),
        "{refused:?}"
    );
    let history = inst.history();
    assert!(history.contains("client session(s) ended"), "{history}");
    tick_with_readiness(&inst);
    // The old primary is writable still, only softly fenced: a warning that says so, not a
    // split brain.
    let found = problems(&inst);
    assert!(
        found.iter().any(|(s, m)| s == "WARNING"
            && m.contains(
                "(10.213.0.11) is out of recovery while the pool is failed over, fenced only softly"
            )),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(_, m)| m.contains("split-brain")),
        "{found:?}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_manual_promote_with_the_hard_fence_stops_the_old_primary_and_loses_no_acknowledged_row
);
/// `fence = "stop"`: the same manual promote under a writer, but db1 is stopped over SSH
/// with the one fixed `pg_ctl stop -m fast` command, through sudo as `postgres`. Every row
/// the writer got a commit for is on db2, db1 accepts no connection at all (a real fence),
/// db3 follows db2, and the step says the old primary is stopped. The lab's hosts share one
/// file system, so each has its own data directory: the pool's `data_dir` is db1's, the
/// only one this test stops.
fn a_manual_promote_with_the_hard_fence_stops_the_old_primary_and_loses_no_acknowledged_row() {
    let lab = Lab::fresh_postgres(2);
    let data_dir = format!("{}/db1/postgres/data", lab.var("LAB_DIR"));
    let pool = lab.postgres_pool3(3, "", "").replacen(
        "timeout = \"20s\"\n",
        &format!("timeout = \"20s\"\nfence = \"stop\"\ndata_dir = \"{data_dir}\"\n"),
        1,
    );
    assert!(pool.contains("fence = \"stop\""), "{pool}");
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &pool)]);
    tick_ok(&inst);
    let dry = inst.run(&["promote", "db", "secondary", "--dry-run"]);
    let stop = format!(
        "-u postgres {}/pg_ctl stop -D {data_dir} -m fast -w -t 10",
        lab.var("LAB_PG_BIN")
    );
    assert!(dry.stdout.contains(&stop), "{dry:?}");

    promote_under_a_writer(&lab, &inst);
    // A real fence: db1 is not running, and accepts no connection.
    let refused = as_writer(&lab, "db1", "SELECT 1");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("Connection refused")),
        "{refused:?}"
    );
    let history = inst.history();
    assert!(
        history.contains("is stopped (pg_ctl stop -m fast: a real fence)"),
        "{history}"
    );
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_killed_old_primary_started_again_is_a_split_brain
);
/// After a failover, db1 started again by hand comes back from crash recovery as a writable
/// primary on the old timeline: the report is CRITICAL, naming it.
fn a_killed_old_primary_started_again_is_a_split_brain() {
    let lab = Lab::fresh_postgres(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.postgres_pool3(3, "", ""))]);
    tick_ok(&inst);
    replicated_rows(&lab, 1..21);
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());

    lab.sh(&["start", "db1", "postgres"]);
    assert_eq!(lab.psql("db1", "SELECT pg_is_in_recovery()"), "f");
    lab.pg_insert("db1", 5000..5020);
    tick_ok(&inst);
    let r = inst.run(&["report", "--nagios"]);
    eprintln!("{r:?}");
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stdout.contains("split-brain risk") && r.stdout.contains(ip(&lab, "db1")),
        "{r:?}"
    );
}

/// A CA of the test's own, which signed none of the lab's certificates.
fn wrong_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let (key, cert) = (dir.join("wrong-ca.key"), dir.join("wrong-ca.pem"));
    let out = Command::new("timeout")
        .args(["30", "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the lab's CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    cert
}

/// The pool's file with a line added to its `[monitor]`.
fn with_monitor_line(pool: &str, line: &str) -> String {
    pool.replacen("[monitor]\n", &format!("[monitor]\n{line}\n"), 1)
}

/// Each server's (health, message) in the pool's monitor.
fn servers(inst: &Instance, pool: &str) -> Vec<(String, String)> {
    inst.pool_json(pool)["monitor"]["servers"]
        .as_array()
        .expect("servers in the report")
        .iter()
        .map(|s| {
            (
                s["health"].as_str().unwrap_or("").to_string(),
                s["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    tls_verified_against_the_lab_ca_fails_over_and_a_wrong_ca_is_a_clear_problem
);
/// PostgreSQL on TLS only (`lab.sh pg-tls`): a pool verifying the servers against the lab's
/// CA (verify full) watches and fails over through TLS; one with another CA sees live
/// servers it cannot trust, says so, and never counts them down; one without TLS is refused.
fn tls_verified_against_the_lab_ca_fails_over_and_a_wrong_ca_is_a_clear_problem() {
    let lab = Lab::fresh_postgres(2);
    lab.sh(&["pg-tls"]);
    let scratch = tempfile::tempdir().unwrap();
    let wrong = wrong_ca(scratch.path());
    // Three pools log in to three servers at once over TLS with SCRAM: more time per check
    // than the lab's 1 s on a busy machine, and a tick as long.
    let pool =
        lab.postgres_pool3(3, "", "")
            .replacen("timeout = \"1s\"\n", "timeout = \"2s\"\n", 1);
    let settings = SETTINGS.replace("tick_interval = \"1s\"", "tick_interval = \"2s\"");
    let tls = |ca: &str| format!("tls = {{ ca_file = \"{ca}\", verify = \"full\" }}");
    let inst = Instance::with(
        &settings,
        &[
            ("db", &with_monitor_line(&pool, &tls(lab.var("LAB_TLS_CA")))),
            (
                "wrong",
                &with_monitor_line(&pool, &tls(&wrong.to_string_lossy())),
            ),
            ("plain", &pool),
        ],
    );
    tick_ok(&inst);
    for (health, message) in servers(&inst, "db") {
        assert_eq!(health, "up", "{message}");
        assert!(message.contains("up over TLS"), "{message}");
    }
    let check = inst.run(&["check-config"]);
    eprintln!("{}", check.stdout);
    assert!(!check.stdout.contains("warning: pool db:"), "{check:?}");
    for _ in 0..3 {
        tick_ok(&inst);
    }
    for (pool, expect) in [
        (
            "wrong",
            format!("is not signed by the CA in ca_file {}", wrong.display()),
        ),
        ("plain", "no pg_hba.conf entry".to_string()),
    ] {
        let seen = servers(&inst, pool);
        eprintln!("{pool}: {seen:?}");
        for (health, message) in &seen {
            assert_eq!(health, "degraded", "{pool}: {seen:?}");
            assert!(
                message.contains(&expect),
                "{pool}: {expect:?} in {message:?}"
            );
        }
        assert_eq!(
            inst.state_of(pool),
            ("armed".into(), "primary".into(), 0),
            "{pool}"
        );
    }
    let r = inst.run(&["report", "--nagios"]);
    assert!(
        r.stdout.contains("is not signed by the CA in ca_file"),
        "{r:?}"
    );

    lab.sh(&["kill", "db1", "postgres"]);
    ticks_to_decide(&inst);
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    lab.wait_pg_streaming_from("db3", ip(&lab, "db2"));
    assert_eq!(
        lab.psql("db2", "SELECT string_agg(s.ssl::text, ',') FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"),
        "true",
        "db3 streams from db2 over TLS"
    );
    for pool in ["wrong", "plain"] {
        assert_ne!(
            inst.state_of(pool).0,
            "failed_over",
            "{pool}: {}",
            inst.history()
        );
    }
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_frozen_primary_is_failed_over_and_observers_probe_it_with_an_ssl_request
);
/// db1 cut off from deadpool only: the app hosts, asked for a second opinion, get an answer
/// to their SSLRequest, and the pool is blocked. Then every process of db1 is frozen: the
/// observers connect but get no answer, and the pool fails over to db2; db3 follows it.
fn a_frozen_primary_is_failed_over_and_observers_probe_it_with_an_ssl_request() {
    let lab = Lab::fresh_postgres(2);
    let pool = lab.postgres_pool3(3, "", "").replacen(
        "timeout = \"1s\"\n",
        &format!(
            "timeout = \"1s\"\nconfirm_from = [\"{}\", \"{}\"]\n",
            lab.var("LAB_APP1_IP"),
            lab.var("LAB_APP2_IP")
        ),
        1,
    );
    let inst = Instance::with(&lab.settings_with_ssh(None), &[("db", &pool)]);
    tick_ok(&inst);
    lab.pg_insert("db1", 1..21);
    tick_ok(&inst);
    lab.sh(&["cutoff", "db1", lab.var("LAB_BRIDGE_IP")]);
    ticks_to_decide(&inst);
    let (state, reason) = state_and_reason(&inst);
    eprintln!("cut off from deadpool only: {state}: {reason}");
    assert_eq!(state, "blocked", "{reason}\n{}", inst.history());
    let history = inst.history();
    for app in ["10.213.0.21", "10.213.0.22"] {
        assert!(
            history.contains(&format!(
                "{app} reaches 10.213.0.11:5432 (SSLRequest answered N)"
            )),
            "{app}: {history}"
        );
    }

    let frozen = Instant::now();
    lab.sh(&["freeze", "db1"]);
    tick_ok(&inst);
    eprintln!("decided {:?} after the freeze", frozen.elapsed());
    assert_eq!(inst.state_of("db").0, "failed_over", "{}", inst.history());
    let history = inst.history();
    for app in ["10.213.0.21", "10.213.0.22"] {
        assert!(
            history.contains(&format!(
                "{app} cannot reach 10.213.0.11:5432 (connected, but no answer"
            )),
            "{app}: {history}"
        );
    }
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(lab.wait_pg_streaming_from("db3", ip(&lab, "db2")), 2);
    eprintln!("{history}");
    lab.sh(&["thaw", "db1"]);
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_primary_its_standbys_still_stream_from_is_kept_by_their_word_until_it_freezes
);
/// `confirm_from_replicas`: db1 drops deadpool's traffic (the bridge address) only, and its
/// standbys' WAL receivers still stream from it: their word blocks the failover. Frozen
/// whole, db1 sends them nothing; after `wal_receiver_timeout` (5 s in the lab) they leave
/// `streaming`, their word is gone, and db2 is promoted.
fn a_primary_its_standbys_still_stream_from_is_kept_by_their_word_until_it_freezes() {
    let lab = Lab::fresh_postgres(2);
    let pool = lab.postgres_pool3(3, "confirm_from_replicas = true", "");
    let inst = Instance::with(SETTINGS, &[("db", &pool)]);
    tick_ok(&inst);
    lab.pg_insert("db1", 1..21);
    tick_ok(&inst);
    lab.sh(&["cutoff", "db1", lab.var("LAB_BRIDGE_IP")]);
    ticks_to_decide(&inst);
    let (state, reason) = state_and_reason(&inst);
    assert_eq!(state, "blocked", "{reason}\n{}", inst.history());
    assert!(
        reason.contains("second opinion")
            && reason.contains("still receive")
            && reason.contains(ip(&lab, "db1")),
        "{reason}"
    );
    for host in ["db2", "db3"] {
        assert_eq!(lab.psql(host, "SELECT pg_is_in_recovery()"), "t", "{host}");
    }
    assert!(!inst.history().contains("failover_started"));

    lab.sh(&["freeze", "db1"]);
    let frozen = Instant::now();
    while inst.state_of("db").0 != "failed_over" {
        assert!(
            frozen.elapsed() < Duration::from_secs(40),
            "no failover {:?} after the freeze: {}",
            frozen.elapsed(),
            inst.history()
        );
        inst.tick();
    }
    eprintln!("failed over {:?} after the freeze", frozen.elapsed());
    assert_eq!(lab.psql("db2", "SELECT pg_is_in_recovery()"), "f");
    assert_eq!(lab.wait_pg_streaming_from("db3", ip(&lab, "db2")), 2);
    lab.sh(&["thaw", "db1"]);
}
