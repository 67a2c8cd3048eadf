//! The lab with two standbys (`Lab::fresh_with_standbys(2)`: db2 and db3 replicating from
//! db1), and the helpers the standby tests build on, each proven with real queries: MariaDB
//! and Redis replicate to both, db3 takes ssh logins, a stopped IO thread misses writes, a
//! locked replication account refuses a repoint. Run by `scripts/test` (it needs root);
//! `cargo test` lists it as ignored.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;

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
