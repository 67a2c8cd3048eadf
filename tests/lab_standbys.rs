//! The lab with two standbys (`Lab::fresh_with_standbys(2)`: db2 and db3 replicating from
//! db1), and the helpers the standby tests build on, each proven with real queries: MariaDB
//! and Redis replicate to both, db3 takes ssh logins, a stopped IO thread misses writes, a
//! locked replication account refuses a repoint. Then failovers on real servers: a standby
//! that missed acknowledged writes is never promoted, the one that has them is and the
//! others follow it, `never_promote`, a failed repoint, the replicas' second opinion, and
//! Redis. Run by `scripts/test` (they need root); `cargo test` lists them as ignored.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

use common::Instance;
use common::lab::{Lab, mysql_conn, wait};

const STANDBYS: [&str; 2] = ["db2", "db3"];
const LIMIT: Duration = Duration::from_secs(10);

#[test]
#[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
fn two_standbys_replicate_from_db1_and_the_standby_helpers_work() {
    let t0 = Instant::now();
    let lab = Lab::fresh_with_standbys(2);
    eprintln!("three-host lab up in {:?}", t0.elapsed());
    mariadb_replicates_to_both(&lab);
    accounts_reach_db3(&lab);
    redis_replicates_to_both(&lab);
    ssh_logs_in_to_db3(&lab);
    a_stopped_io_thread_misses_writes(&lab);
    a_locked_account_refuses_a_repoint(&lab);
    pools_name_both_standbys(&lab);
}

/// A lab host's address, by its name.
fn ip<'a>(lab: &'a Lab, host: &str) -> &'a str {
    lab.var(&format!("LAB_{}_IP", host.to_uppercase()))
}

/// Whether `host` has applied everything db1 has written.
fn caught_up(lab: &Lab, host: &str) -> bool {
    lab.sql(host, "SELECT @@gtid_slave_pos") == lab.sql("db1", "SELECT @@gtid_binlog_pos")
}

fn has_row(lab: &Lab, host: &str, id: u32) -> bool {
    lab.sql(
        host,
        &format!("SELECT COUNT(*) FROM app.smoke WHERE id = {id}"),
    ) == "1"
}

fn insert_on_db1(lab: &Lab, id: u32) {
    lab.sql(
        "db1",
        &format!("INSERT INTO app.smoke VALUES ({id}, 'row {id} from db1')"),
    );
}

fn mariadb_replicates_to_both(lab: &Lab) {
    lab.sql(
        "db1",
        "CREATE TABLE app.smoke (id INT PRIMARY KEY, note VARCHAR(40))",
    );
    insert_on_db1(lab, 1);
    for (n, host) in STANDBYS.iter().enumerate() {
        let took = wait(LIMIT, &format!("{host} to apply db1's row"), || {
            caught_up(lab, host)
        });
        eprintln!("{host} has db1's row after {took:?}");
        assert_eq!(
            lab.sql(host, "SELECT note FROM app.smoke WHERE id = 1"),
            "row 1 from db1"
        );
        assert_eq!(
            lab.sql(host, "SELECT @@server_id, @@read_only"),
            format!("{}\t1", n + 2),
            "{host}: its own server_id, read-only"
        );
        let s = lab.replica_status(host);
        assert_eq!(s.master_host, ip(lab, "db1"), "{host}: {s:?}");
        assert_eq!(
            (s.slave_io_running.as_str(), s.slave_sql_running.as_str()),
            ("Yes", "Yes"),
            "{host}: {s:?}"
        );
        assert!(s.gtid_io_pos.starts_with("0-1-"), "{host}: {s:?}");
    }
    assert_eq!(
        lab.replica_status("db1").master_host,
        "",
        "db1 is no replica"
    );
}

/// The monitoring and admin accounts came to db3 by replication: both log in over TCP and
/// see db3 replicating from db1 with GTID.
fn accounts_reach_db3(lab: &Lab) {
    for (user, password) in [
        ("LAB_MONITOR_USER", "LAB_MONITOR_PASSWORD_FILE"),
        ("LAB_ADMIN_USER", "LAB_ADMIN_PASSWORD_FILE"),
    ] {
        let mut conn = mysql_conn(lab, lab.db3_ip(), lab.var(user), password)
            .unwrap_or_else(|e| panic!("{user} logs in to db3: {e}"));
        let row: mysql::Row = conn
            .query_first("SHOW SLAVE STATUS")
            .unwrap()
            .expect("db3 is a replica");
        let field = |name: &str| row.get::<String, _>(name).unwrap_or_default();
        assert_eq!(field("Master_Host"), ip(lab, "db1"), "{user}");
        assert_eq!(field("Using_Gtid"), "Slave_Pos", "{user}");
    }
}

fn redis_replicates_to_both(lab: &Lab) {
    lab.sh(&["redis", "db1", "SET", "smoke", "from-db1"]);
    for host in STANDBYS {
        let info = lab.redis_replication(host);
        assert_eq!(
            info.get("role").map(String::as_str),
            Some("slave"),
            "{host}: {info:?}"
        );
        assert_eq!(
            info.get("master_host").map(String::as_str),
            Some(ip(lab, "db1")),
            "{host}: {info:?}"
        );
        assert_eq!(
            info.get("master_link_status").map(String::as_str),
            Some("up"),
            "{host}: {info:?}"
        );
        wait(LIMIT, &format!("db1's key on {host}'s Redis"), || {
            lab.sh(&["redis", host, "GET", "smoke"]).trim() == "from-db1"
        });
    }
}

/// With the lab's key and known_hosts, strict host key checking: what deadpool's steps and
/// `confirm_from` use.
fn ssh_logs_in_to_db3(lab: &Lab) {
    let known = std::fs::read_to_string(lab.var("LAB_SSH_KNOWN_HOSTS")).unwrap();
    assert!(
        known
            .lines()
            .any(|l| l.starts_with(&format!("{},db3 ", lab.db3_ip()))),
        "{known}"
    );
    assert_eq!(lab.ssh(lab.db3_ip(), "hostname"), (true, "db3".to_string()));
    assert_eq!(lab.sh(&["ssh", "db3", "hostname"]).trim(), "db3");
}

/// db3's IO thread stopped: db2 gets a write, db3 does not (its SQL thread still runs), and
/// gets it once the thread runs again.
fn a_stopped_io_thread_misses_writes(lab: &Lab) {
    lab.stop_replica_io("db3");
    let s = lab.replica_status("db3");
    assert_eq!(
        (s.slave_io_running.as_str(), s.slave_sql_running.as_str()),
        ("No", "Yes"),
        "{s:?}"
    );
    insert_on_db1(lab, 2);
    wait(LIMIT, "db2 to apply row 2", || caught_up(lab, "db2"));
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !has_row(lab, "db3", 2),
        "db3 received row 2 with its IO thread stopped"
    );
    assert_ne!(
        lab.replica_status("db3").gtid_io_pos,
        lab.replica_status("db2").gtid_io_pos,
        "db3 is behind db2"
    );
    lab.start_replica_io("db3");
    wait(LIMIT, "db3 to apply row 2 again", || caught_up(lab, "db3"));
    assert!(has_row(lab, "db3", 2));
}

/// The replication account locked on db2 only: db3 repointed to db2 is refused (4151) and
/// keeps retrying, while db1 serves and db2 replicates; unlocked, db3 follows db2.
fn a_locked_account_refuses_a_repoint(lab: &Lab) {
    lab.lock_replication_account("db2");
    lab.repoint("db3", "db2");
    wait(LIMIT, "db2 to refuse db3", || {
        lab.replica_status("db3").last_io_errno == 4151
    });
    let s = lab.replica_status("db3");
    assert_eq!(s.master_host, ip(lab, "db2"), "{s:?}");
    assert_eq!(s.slave_io_running, "Connecting", "{s:?}");
    insert_on_db1(lab, 3);
    wait(LIMIT, "db2 to apply row 3", || caught_up(lab, "db2"));
    assert!(!has_row(lab, "db3", 3));
    lab.unlock_replication_account("db2");
    wait(LIMIT, "db3 to replicate from db2", || {
        lab.replica_status("db3").slave_io_running == "Yes"
    });
    wait(LIMIT, "row 3 on db3 through db2", || has_row(lab, "db3", 3));
    lab.repoint("db3", "db1");
    wait(LIMIT, "db3 back on db1", || {
        let s = lab.replica_status("db3");
        s.master_host == ip(lab, "db1") && s.slave_io_running == "Yes"
    });
    // Nothing of the lock reached another server's binary log.
    assert_eq!(
        lab.sql("db2", "SELECT @@gtid_binlog_pos"),
        lab.sql("db1", "SELECT @@gtid_binlog_pos")
    );
}

/// The three-server pool files: `standbys` instead of `secondary`, the extra keys among
/// the pool's own (before `[monitor]`), the steps after the promote step.
fn pools_name_both_standbys(lab: &Lab) {
    let keys = format!(
        "never_promote = [\"{}\"]\nmax_promote_lag = \"5s\"\nconfirm_from_replicas = true",
        lab.db3_ip()
    );
    let step =
        "\n[[protocol]]\ntype = \"exec\"\nhosts = [\"10.213.0.21\"]\nexec_command = \"true\"\n";
    for (text, promote) in [
        (lab.mysql_pool3(3, &keys, step), "mysql_promote"),
        (lab.redis_pool3(3, &keys, step), "redis_promote"),
    ] {
        let pool: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let standbys = toml::Value::Array(vec![ip(lab, "db2").into(), lab.db3_ip().into()]);
        assert_eq!(pool.get("standbys"), Some(&standbys), "{text}");
        assert!(pool.get("secondary").is_none(), "{text}");
        assert_eq!(pool["never_promote"][0].as_str(), Some(lab.db3_ip()));
        assert_eq!(pool["max_promote_lag"].as_str(), Some("5s"));
        assert_eq!(pool["confirm_from_replicas"].as_bool(), Some(true));
        let steps = pool["protocol"].as_array().unwrap();
        assert_eq!(steps[0]["type"].as_str(), Some(promote), "{text}");
        assert_eq!(steps[1]["type"].as_str(), Some("exec"), "{text}");
    }
}

// ------------------------------------------------------------ failovers with several standbys

const SETTINGS: &str = "tick_interval = \"1s\"\nsystem_check_interval = \"1s\"\n";
const APPS: [&str; 2] = ["LAB_APP1_NS", "LAB_APP2_NS"];

/// Inserts `n` rows into `app.acked` on db1 as the application, one statement each; returns
/// the ids, every one acknowledged.
fn write_acked(lab: &Lab, first: u32, n: u32) -> Vec<u32> {
    let mut conn = mysql_conn(
        lab,
        ip(lab, "db1"),
        lab.var("LAB_WRITER_USER"),
        "LAB_WRITER_PASSWORD_FILE",
    )
    .expect("the application connects to db1");
    conn.query_drop("CREATE TABLE IF NOT EXISTS app.acked (id INT PRIMARY KEY)")
        .unwrap();
    let ids: Vec<u32> = (first..first + n).collect();
    for id in &ids {
        conn.exec_drop("INSERT INTO app.acked (id) VALUES (?)", (id,))
            .unwrap_or_else(|e| panic!("insert {id} on db1: {e}"));
    }
    ids
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

fn read_only(lab: &Lab, host: &str) -> String {
    lab.sql(host, "SELECT @@global.read_only")
}

/// The message of the pool's `failover_started` event.
fn failover_started(inst: &Instance) -> String {
    inst.events("db")
        .iter()
        .find(|e| e["event"] == "failover_started")
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no failover_started event: {}", inst.history()))
}

/// `host` replicates from `source` with its IO thread running (a repoint done by the
/// promoting step), within 15 s.
fn wait_replicating_from(lab: &Lab, host: &str, source: &str) {
    let limit = Duration::from_secs(15);
    let what = format!("{host} to replicate from {source}");
    let start = Instant::now();
    loop {
        let s = lab.replica_status(host);
        if s.master_host == ip(lab, source) && s.slave_io_running == "Yes" {
            return;
        }
        assert!(start.elapsed() < limit, "timed out: {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every row of `acked` reaches `host` within 15 s.
fn wait_rows_on(lab: &Lab, host: &str, acked: &[u32]) {
    let newest = acked.iter().max().expect("rows");
    wait(
        Duration::from_secs(15),
        &format!("row {newest} on {host}"),
        || {
            lab.sql(
                host,
                &format!("SELECT COUNT(*) FROM app.acked WHERE id = {newest}"),
            ) == "1"
        },
    );
    lab.assert_rows_on(host, acked);
}

/// 50 acknowledged rows on db1 that both standbys apply, a tick that records them, then
/// db1's mysqld killed and the ticks up to the decision: the pool is failed over to the
/// server in role `to`. Returns the rows.
fn kill_after_acked_writes(lab: &Lab, inst: &Instance, to: &str) -> Vec<u32> {
    let acked = write_acked(lab, 1, 50);
    wait(LIMIT, "db2 and db3 to apply db1's rows", || {
        caught_up(lab, "db2") && caught_up(lab, "db3")
    });
    tick_ok(inst);
    lab.sh(&["kill", "db1", "mysql"]);
    ticks_to_decide(inst);
    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), to.into(), 0),
        "{}",
        inst.history()
    );
    acked
}

/// The pool's state and reason, as `report --json` gives them.
fn state_and_reason(inst: &Instance) -> (String, String) {
    let p = inst.pool_json("db");
    (
        p["state"].as_str().unwrap_or("none").to_string(),
        p["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// The message of the report's CRITICAL problem that names `address`.
fn critical_problem_of(inst: &Instance, address: &str) -> String {
    let r = inst.run(&["report", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    v["problems"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["status"] == "CRITICAL")
        .filter_map(|p| p["message"].as_str())
        .find(|m| m.contains(address))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no CRITICAL problem names {address}: {}", r.stdout))
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_pair_whose_standby_missed_acknowledged_writes_is_blocked
);
/// The case that lost writes: db2's IO thread stopped, db1 goes on alone (semi-sync falls
/// back after its timeout) and acknowledges 50 rows db2 never received, then dies. No tick
/// may promote db2: the pool is blocked, naming db2 and how far behind it is.
fn a_pair_whose_standby_missed_acknowledged_writes_is_blocked() {
    let lab = Lab::fresh();
    lab.map_on_apps("db.service");
    let steps = lab.etc_hosts_step(common::BIN, "");
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool(3, &steps))],
    );
    tick_ok(&inst);
    lab.stop_replica_io("db2");
    tick_ok(&inst);
    let acked = write_acked(&lab, 1, 50);
    assert_eq!(acked.len(), 50);
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "mysql"]);
    ticks_to_decide(&inst);

    let (state, reason) = state_and_reason(&inst);
    assert_eq!(state, "blocked", "{reason}\n{}", inst.history());
    assert!(reason.contains(ip(&lab, "db2")), "{reason}");
    assert!(
        reason.contains("behind") || reason.contains("caught up"),
        "{reason}"
    );
    eprintln!("blocked: {reason}");
    assert_eq!(read_only(&lab, "db2"), "1", "db2 must not be promoted");
    for ns in APPS {
        assert_eq!(
            lab.app_maps(ns, "db.service").as_deref(),
            Some(ip(&lab, "db1")),
            "{ns}: the apps must not be switched"
        );
    }
    assert!(!inst.history().contains("failover_started"));
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    the_standby_that_has_every_acknowledged_write_is_promoted_and_the_other_follows_it
);
/// db3's IO thread stopped, db2 acknowledges db1's writes: a failover promotes db2 and
/// passes db3 over, and db3, repointed to db2, gets every acknowledged row from it.
fn the_standby_that_has_every_acknowledged_write_is_promoted_and_the_other_follows_it() {
    let lab = Lab::fresh_with_standbys(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool3(3, "", ""))]);
    tick_ok(&inst);
    lab.stop_replica_io("db3");
    tick_ok(&inst);
    let acked = write_acked(&lab, 1, 50);
    tick_ok(&inst);
    lab.sh(&["kill", "db1", "mysql"]);
    ticks_to_decide(&inst);

    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "secondary".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(read_only(&lab, "db2"), "0");
    lab.assert_rows_on("db2", &acked);
    let started = failover_started(&inst);
    assert!(
        started.contains("passed over") && started.contains(lab.db3_ip()),
        "{started}"
    );
    assert_eq!(read_only(&lab, "db3"), "1");
    // The promoting step repoints the other standby to the new primary.
    wait_replicating_from(&lab, "db3", "db2");
    wait_rows_on(&lab, "db3", &acked);
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_standby_in_never_promote_is_passed_over_and_follows_the_new_primary
);
/// Both standbys have everything; db2, first in the config, is in `never_promote`: db3 is
/// promoted and db2 follows it.
fn a_standby_in_never_promote_is_passed_over_and_follows_the_new_primary() {
    let lab = Lab::fresh_with_standbys(2);
    let keys = format!("never_promote = [\"{}\"]", ip(&lab, "db2"));
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool3(3, &keys, ""))]);
    tick_ok(&inst);
    let acked = kill_after_acked_writes(&lab, &inst, "standby2");
    assert_eq!(read_only(&lab, "db3"), "0");
    assert_eq!(read_only(&lab, "db2"), "1");
    lab.assert_rows_on("db3", &acked);
    let started = failover_started(&inst);
    assert!(started.contains("never_promote"), "{started}");
    wait_replicating_from(&lab, "db2", "db3");
    let more = write_acked_on(&lab, "db3", 1000, 20);
    wait_rows_on(&lab, "db2", &[acked, more].concat());
}

/// [`write_acked`] on any host.
fn write_acked_on(lab: &Lab, host: &str, first: u32, n: u32) -> Vec<u32> {
    let mut conn = mysql_conn(
        lab,
        ip(lab, host),
        lab.var("LAB_WRITER_USER"),
        "LAB_WRITER_PASSWORD_FILE",
    )
    .unwrap_or_else(|e| panic!("the application connects to {host}: {e}"));
    let ids: Vec<u32> = (first..first + n).collect();
    for id in &ids {
        conn.exec_drop("INSERT INTO app.acked (id) VALUES (?)", (id,))
            .unwrap_or_else(|e| panic!("insert {id} on {host}: {e}"));
    }
    ids
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_repoint_that_fails_is_a_warning_and_the_failover_goes_on
);
/// The replication account locked on db2, the new primary: db3 cannot follow it. The
/// failover still succeeds and switches the apps; db3's repoint is a WARNING of the
/// promoting step, and the report shows db3 CRITICAL.
fn a_repoint_that_fails_is_a_warning_and_the_failover_goes_on() {
    let lab = Lab::fresh_with_standbys(2);
    lab.map_on_apps("db.service");
    let steps = lab.etc_hosts_step(common::BIN, "");
    let inst = Instance::with(
        &lab.settings_with_ssh(None),
        &[("db", &lab.mysql_pool3(3, "", &steps))],
    );
    tick_ok(&inst);
    lab.lock_replication_account("db2");
    let acked = kill_after_acked_writes(&lab, &inst, "secondary");
    assert_eq!(read_only(&lab, "db2"), "0");
    lab.assert_rows_on("db2", &acked);
    for ns in APPS {
        assert_eq!(
            lab.app_maps(ns, "db.service").as_deref(),
            Some(ip(&lab, "db2")),
            "{ns}: the apps follow the new primary"
        );
    }
    std::thread::sleep(Duration::from_millis(1100));
    tick_ok(&inst);
    let problem = critical_problem_of(&inst, lab.db3_ip());
    eprintln!("db3 in the report: {problem}");
    assert!(
        problem.contains("does not receive from the active server")
            && problem.contains("Access denied"),
        "{problem}"
    );

    let events = inst.events("db");
    let repoint = events.iter().find(|e| {
        e["event"] == "step" && e["step"] == "promote replica" && e["host"] == lab.db3_ip()
    });
    let repoint = repoint.unwrap_or_else(|| {
        panic!(
            "no result of the promoting step for db3 (its repoint): {}",
            inst.history()
        )
    });
    assert_eq!(repoint["status"], "WARNING", "{repoint}");
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    a_primary_cut_off_from_deadpool_only_is_kept_by_its_replicas_word
);
/// db1 drops deadpool's traffic (the bridge address) but not its replicas': with
/// `confirm_from_replicas` the standbys, still receiving from it, block the failover.
fn a_primary_cut_off_from_deadpool_only_is_kept_by_its_replicas_word() {
    let lab = Lab::fresh_with_standbys(2);
    let keys = "confirm_from_replicas = true";
    let inst = Instance::with(SETTINGS, &[("db", &lab.mysql_pool3(3, keys, ""))]);
    tick_ok(&inst);
    write_acked(&lab, 1, 20);
    tick_ok(&inst);
    lab.sh(&["cutoff", "db1", lab.var("LAB_BRIDGE_IP")]);
    ticks_to_decide(&inst);

    let (state, reason) = state_and_reason(&inst);
    assert_eq!(state, "blocked", "{reason}\n{}", inst.history());
    eprintln!("blocked: {reason}");
    assert!(
        reason.contains("second opinion") && reason.contains("still receive"),
        "{reason}"
    );
    assert!(reason.contains(ip(&lab, "db1")), "{reason}");
    for host in STANDBYS {
        assert_eq!(read_only(&lab, host), "1", "{host} must not be promoted");
        assert_eq!(lab.replica_status(host).slave_io_running, "Yes", "{host}");
    }
    assert_eq!(read_only(&lab, "db1"), "0", "db1 still serves its replicas");
    assert!(!inst.history().contains("failover_started"));
}

fn redis_info(lab: &Lab, host: &str, key: &str) -> String {
    lab.redis_replication(host)
        .get(key)
        .cloned()
        .unwrap_or_default()
}

both_modes!(
    #[ignore = "lab test: needs root and the namespace lab; run by scripts/test"]
    redis_promotes_the_replica_that_received_most_and_repoints_the_other
);
/// db2 cut off from db1 alone (deadpool still reaches it) while db1 takes writes that db3
/// receives, then db1 is killed: db3 is promoted and db2 follows it with
/// `master_link_status:up` and the keys it had missed. (A SIGSTOPped replica would not do:
/// resumed, it reads what its socket had buffered, everything.)
fn redis_promotes_the_replica_that_received_most_and_repoints_the_other() {
    let lab = Lab::fresh_with_standbys(2);
    let inst = Instance::with(SETTINGS, &[("db", &lab.redis_pool3(3, "", ""))]);
    tick_ok(&inst);
    lab.sh(&["redis", "db1", "SET", "early", "1"]);
    tick_ok(&inst);
    lab.sh(&["cutoff", "db2", ip(&lab, "db1")]);
    let script = "for i = 1, 200 do redis.call('SET', 'k' .. i, i) end return 1";
    lab.sh(&["redis", "db1", "EVAL", script, "0"]);
    wait(LIMIT, "db3 to receive k200", || {
        lab.sh(&["redis", "db3", "GET", "k200"]).trim() == "200"
    });
    tick_ok(&inst);
    assert_eq!(
        lab.sh(&["redis", "db2", "GET", "k200"]).trim(),
        "",
        "db2 is behind when db1 dies"
    );
    lab.sh(&["kill", "db1", "redis"]);
    ticks_to_decide(&inst);

    assert_eq!(
        inst.state_of("db"),
        ("failed_over".into(), "standby2".into(), 0),
        "{}",
        inst.history()
    );
    assert_eq!(redis_info(&lab, "db3", "role"), "master");
    // The promoting step repoints the other replica to the new primary.
    let start = Instant::now();
    loop {
        let info = lab.redis_replication("db2");
        let field = |k: &str| info.get(k).map(String::as_str).unwrap_or("");
        if field("master_host") == lab.db3_ip() && field("master_link_status") == "up" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: db2 to follow db3: role:{} master_host:{} master_link_status:{}",
            field("role"),
            field("master_host"),
            field("master_link_status")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait(LIMIT, "db2 to get k200 from db3", || {
        lab.sh(&["redis", "db2", "GET", "k200"]).trim() == "200"
    });
}
