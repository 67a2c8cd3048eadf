//! The `mysql` monitor: a login over TCP and a few read-only queries. A server that answers
//! with an error (access denied, too many connections) is alive: a problem to report, never
//! a reason to fail over.

use std::path::Path;

use serde::Deserialize;

use super::{Durability, Facts, Health, Kind, ObserverProbe, Replica, Server};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::mysql::{Client, Failure, ReplicaStatus, ServerState, Target};
use crate::position::Position;
use crate::settings::Secret;
use crate::tls::Tls;

pub const TYPE: &str = "mysql";

/// What an observer runs: reads the server greeting, as MySQL and MariaDB speak first.
/// `connected` is printed once the TCP connection stands, so a hung server (connected,
/// silent) is told from one that cannot be connected to.
const PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo connected
n=$(head -c 4 <&3 | wc -c)
if [ "$n" -ge 4 ]; then echo "server greeting"; exit 0; fi
echo "connection closed without a greeting"; exit 4"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone)]
pub struct Mysql {
    pub port: u16,
    pub user: String,
    pub password: Secret,
    /// TLS toward both servers, also used by `mysql_promote` unless it has its own.
    pub tls: Option<Tls>,
}

/// Validates the keys of a `mysql` monitor beyond the common ones.
pub fn load(dir: &Path, table: toml::Table) -> Result<Mysql, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let tls = raw.tls.map(|t| load_tls(dir, t)).transpose()?;
    let rel = raw.password_file.as_deref().ok_or(Problem::at(
        "password_file",
        "a `mysql` monitor needs the monitoring account's password file",
    ))?;
    let password = load_secret(dir, rel).map_err(|e| Problem::at("password_file", e))?;
    Ok(Mysql {
        port: raw.port.unwrap_or(3306),
        user: raw.user.unwrap_or_else(|| "deadpool".to_string()),
        password,
        tls: tls.map(crate::mysql::check_tls).transpose()?,
    })
}

impl Kind for Mysql {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    fn observer_probe(&self, _: &Server) -> ObserverProbe {
        ObserverProbe::Script(PROBE)
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (host, monitor, timeout) = (server.host.to_string(), self.clone(), server.timeout);
        let probe = move || {
            let target = Target {
                host: &host,
                port: monitor.port,
                user: &monitor.user,
                password: &monitor.password,
                timeout,
                statement_timeout: None,
                tls: monitor.tls.as_ref(),
            };
            probe(&target)
        };
        super::bounded_probe(timeout, probe)
    }
}

fn probe(target: &Target) -> (Health, String, Option<Facts>) {
    let mut client = match Client::connect(target) {
        Ok(c) => c,
        Err(Failure::Down(m)) => return (Health::Down, format!("down: {m}"), None),
        Err(f @ Failure::Refused { .. }) => {
            return (
                Health::Degraded,
                format!("alive but refused the login: {f}"),
                None,
            );
        }
    };
    let product = product_name(&client);
    let state = match client.state() {
        Ok(s) => s,
        Err(f) => return failure_after_login(&product, "reading read_only", f),
    };
    let read_only = state.read_only;
    let replica = match client.replica_status() {
        Ok(r) => r,
        Err(f) => return failure_after_login(&product, "reading the replication status", f),
    };
    let mut message = format!(
        "{product} up{}, {}",
        if client.tls { " over TLS" } else { "" },
        if read_only { "read-only" } else { "writable" }
    );
    match &replica {
        Some(r) => message.push_str(&format!(", {}", r.describe())),
        None => message.push_str(", not a replica"),
    }
    let facts = facts(&mut client, &state, replica.as_ref());
    (Health::Up, message, Some(facts))
}

/// What the check learned beyond up or down. The server's own position is asked only of a
/// server that is not replicating (one query more); when that fails (the monitor account
/// may lack `REPLICATION CLIENT`, MariaDB's `BINLOG MONITOR`) the position is unknown and
/// the server still up.
fn facts(client: &mut Client, state: &ServerState, replica: Option<&ReplicaStatus>) -> Facts {
    let replicating = replica.is_some_and(|r| !r.stopped());
    let (position, durability) = if replicating {
        (None, None)
    } else {
        let end = client.binlog_position().ok().flatten();
        let semi_sync = match client.semi_sync() {
            Ok(values) => semi_sync(&values),
            Err(f) => Durability::new(None, format!("reading the semi-sync settings failed: {f}")),
        };
        (
            end.map(|(file, offset)| Position::binlog(&file, offset, &state.gtid_written)),
            Some(semi_sync),
        )
    };
    Facts {
        read_only: Some(state.read_only),
        replication: replica.map(|r| replica_facts(r, &state.gtid_applied)),
        position,
        durability,
        fenced_softly: false,
    }
}

/// Whether a primary's commits wait for a replica, from its semi-sync variables and status
/// (pure, for tests): MariaDB's built-in semi-sync and MySQL's plugin, in the `master` or
/// the `source` spelling. Enabled and active, a commit is acknowledged once a replica has
/// it in its relay log; enabled but not active, the primary gave up waiting (no replica
/// acknowledged within `rpl_semi_sync_master_timeout`) and is asynchronous until one
/// catches up.
fn semi_sync(values: &[(String, String)]) -> Durability {
    let get = |names: &[&str]| {
        values
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.trim())
    };
    let on = |v: Option<&str>| v.is_some_and(|v| v.eq_ignore_ascii_case("ON") || v == "1");
    let enabled = get(&[
        "rpl_semi_sync_master_enabled",
        "rpl_semi_sync_source_enabled",
    ]);
    let active = get(&["Rpl_semi_sync_master_status", "Rpl_semi_sync_source_status"]);
    let clients = get(&[
        "Rpl_semi_sync_master_clients",
        "Rpl_semi_sync_source_clients",
    ]);
    let timeout = get(&[
        "rpl_semi_sync_master_timeout",
        "rpl_semi_sync_source_timeout",
    ]);
    let wait_point = get(&[
        "rpl_semi_sync_master_wait_point",
        "rpl_semi_sync_source_wait_point",
    ]);
    match (enabled, on(enabled), on(active)) {
        (None, _, _) => Durability::new(
            Some(false),
            "semi-sync is not available (no rpl_semi_sync variables)",
        ),
        (Some(_), false, _) => Durability::new(Some(false), "semi-sync is not enabled"),
        (Some(_), true, false) => Durability::new(
            Some(false),
            format!(
                "semi-sync is enabled but not active: no replica acknowledged within {} ms, so commits no longer wait",
                timeout.unwrap_or("?")
            ),
        ),
        (Some(_), true, true) => {
            let n = clients.and_then(|c| c.parse::<u64>().ok());
            Durability::new(
                Some(true),
                format!(
                    "semi-sync enabled and active, {} acknowledging{}",
                    match n {
                        Some(1) => "1 replica".to_string(),
                        Some(n) => format!("{n} replicas"),
                        None => "replicas".to_string(),
                    },
                    wait_point
                        .map(|w| format!(", wait point {w}"))
                        .unwrap_or_default()
                ),
            )
        }
    }
}

/// A replica's facts from its status row and what its replication applied by GTID (MariaDB
/// `gtid_slave_pos`; empty: none) (pure, for tests). The file names are the primary's
/// (`Master_Log_File`, `Relay_Master_Log_File`), so the positions compare with its own.
fn replica_facts(r: &ReplicaStatus, gtid_applied: &str) -> Replica {
    // The IO thread keeps `Gtid_IO_Pos` for GTID positioning: a replica on file and
    // position may show an empty or an old one.
    let gtid_received = match r.uses_gtid {
        Some(false) => "",
        Some(true) | None => r.gtid_io_pos.as_str(),
    };
    let at = |(file, offset): &(String, u64), gtid: &str| {
        (!file.is_empty()).then(|| Position::binlog(file, *offset, gtid))
    };
    Replica {
        source: r.source_host.clone(),
        receiving: r.io_ok(),
        received: at(&r.received, gtid_received),
        applied: at(&r.executed, gtid_applied),
        lag_seconds: r.seconds_behind,
        problem: r.problem(),
    }
}

fn failure_after_login(product: &str, what: &str, f: Failure) -> (Health, String, Option<Facts>) {
    match f {
        Failure::Down(m) => (
            Health::Down,
            format!("{product} stopped answering while {what}: {m}"),
            None,
        ),
        Failure::Refused { .. } => (
            Health::Degraded,
            format!("{product} up, but {what} failed: {f}"),
            None,
        ),
    }
}

fn product_name(client: &Client) -> String {
    let short = client.version.split('-').next().unwrap_or(&client.version);
    match client.flavor {
        crate::mysql::Flavor::MariaDb => format!("MariaDB {short}"),
        crate::mysql::Flavor::MySql => format!("MySQL {short}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn status(pairs: &[(&str, &str)]) -> ReplicaStatus {
        let columns: HashMap<String, Option<String>> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), (*v != "NULL").then(|| v.to_string())))
            .collect();
        ReplicaStatus::from_columns(&columns)
    }

    const MARIADB: &[(&str, &str)] = &[
        ("Master_Host", "10.0.0.11"),
        ("Master_Log_File", "mysql-bin.000003"),
        ("Read_Master_Log_Pos", "900"),
        ("Relay_Master_Log_File", "mysql-bin.000003"),
        ("Exec_Master_Log_Pos", "400"),
        ("Slave_IO_Running", "Yes"),
        ("Slave_SQL_Running", "Yes"),
        ("Seconds_Behind_Master", "3"),
        ("Using_Gtid", "Slave_Pos"),
        ("Gtid_IO_Pos", "0-1-57"),
    ];

    const MYSQL: &[(&str, &str)] = &[
        ("Source_Host", "db1.example"),
        ("Source_Log_File", "binlog.000007"),
        ("Read_Source_Log_Pos", "900"),
        ("Relay_Source_Log_File", "binlog.000006"),
        ("Exec_Source_Log_Pos", "850"),
        ("Replica_IO_Running", "Connecting"),
        ("Replica_SQL_Running", "Yes"),
        ("Seconds_Behind_Source", "NULL"),
        (
            "Last_IO_Error",
            "error connecting to source 'repl@db1.example:3306'",
        ),
        ("Auto_Position", "1"),
    ];

    /// On file and position MariaDB's `Gtid_IO_Pos` is not trusted.
    const BY_FILE: &[(&str, &str)] = &[
        ("Master_Host", "10.0.0.11"),
        ("Master_Log_File", "mysql-bin.000003"),
        ("Read_Master_Log_Pos", "900"),
        ("Using_Gtid", "No"),
        ("Gtid_IO_Pos", "0-1-3"),
        ("Slave_IO_Running", "Yes"),
        ("Slave_SQL_Running", "No"),
    ];

    /// Never connected: no positions.
    const NEVER_CONNECTED: &[(&str, &str)] = &[
        ("Master_Host", "10.0.0.11"),
        ("Master_Log_File", ""),
        ("Read_Master_Log_Pos", "4"),
        ("Slave_IO_Running", "Connecting"),
        ("Slave_SQL_Running", "Yes"),
    ];

    /// Status rows as MariaDB 10.11 and MySQL 8.4 give them, into a replica's facts in the
    /// primary's coordinates.
    #[test]
    fn replica_facts_from_status_rows() {
        type Row<'a> = (
            &'a [(&'a str, &'a str)],
            &'a str,
            (&'a str, bool, Option<u64>),
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        // (columns, gtid_slave_pos, (source, receiving, lag), received, applied, problem)
        let table: &[Row] = &[
            (
                MARIADB,
                "0-1-7",
                ("10.0.0.11", true, Some(3)),
                Some("mysql-bin.000003:900 (GTID 0-1-57)"),
                Some("mysql-bin.000003:400 (GTID 0-1-7)"),
                None,
            ),
            (
                MYSQL,
                "",
                ("db1.example", false, None),
                Some("binlog.000007:900"),
                Some("binlog.000006:850"),
                Some("IO error: error connecting to source 'repl@db1.example:3306'"),
            ),
            (
                BY_FILE,
                "",
                ("10.0.0.11", true, None),
                Some("mysql-bin.000003:900"),
                None,
                Some("not applying (SQL thread No)"),
            ),
            (
                NEVER_CONNECTED,
                "",
                ("10.0.0.11", false, None),
                None,
                None,
                Some("not receiving (IO thread Connecting)"),
            ),
        ];
        for (columns, slave_pos, (source, receiving, lag), received, applied, problem) in table {
            let r = replica_facts(&status(columns), slave_pos);
            let text = |p: &Option<Position>| p.as_ref().map(|p| p.text.clone());
            assert_eq!(
                (r.source.as_str(), r.receiving, r.lag_seconds),
                (*source, *receiving, *lag),
                "{columns:?}"
            );
            assert_eq!(text(&r.received).as_deref(), *received, "{columns:?}");
            assert_eq!(text(&r.applied).as_deref(), *applied, "{columns:?}");
            assert_eq!(r.problem.as_deref(), *problem, "{columns:?}");
        }
    }

    /// What a standby received and applied compares with its primary's own position.
    #[test]
    fn replica_positions_compare_with_the_primary() {
        let r = replica_facts(&status(MARIADB), "0-1-7");
        let (received, applied) = (r.received.unwrap(), r.applied.unwrap());
        let primary = Position::binlog("mysql-bin.000003", 900, "0-1-57");
        assert!(received.has(&primary) && !applied.has(&primary));
        let unit = crate::position::Unit::Binlog;
        assert_eq!(
            applied.behind(&primary, unit).as_deref(),
            Some("50 transactions")
        );
    }

    /// Semi-sync as MariaDB 10.11 (built in, `master` names) and MySQL 8.4 (the plugin,
    /// `source` names) show it; a server without it; one that gave up waiting.
    #[test]
    fn semi_sync_from_variables_and_status() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mariadb_on = [
            ("rpl_semi_sync_master_enabled", "ON"),
            ("rpl_semi_sync_master_timeout", "10000"),
            ("rpl_semi_sync_master_wait_point", "AFTER_SYNC"),
            ("rpl_semi_sync_slave_enabled", "OFF"),
            ("Rpl_semi_sync_master_clients", "1"),
            ("Rpl_semi_sync_master_status", "ON"),
        ];
        let mysql_on = [
            ("rpl_semi_sync_source_enabled", "ON"),
            ("rpl_semi_sync_source_timeout", "10000"),
            ("Rpl_semi_sync_source_clients", "2"),
            ("Rpl_semi_sync_source_status", "ON"),
        ];
        let fell_back = [
            ("rpl_semi_sync_master_enabled", "ON"),
            ("rpl_semi_sync_master_timeout", "500"),
            ("Rpl_semi_sync_master_clients", "0"),
            ("Rpl_semi_sync_master_status", "OFF"),
        ];
        let off = [
            ("rpl_semi_sync_master_enabled", "OFF"),
            ("Rpl_semi_sync_master_status", "OFF"),
        ];
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<bool>, &'a str);
        let rows: &[Row] = &[
            (
                &mariadb_on,
                Some(true),
                "semi-sync enabled and active, 1 replica acknowledging, wait point AFTER_SYNC",
            ),
            (
                &mysql_on,
                Some(true),
                "semi-sync enabled and active, 2 replicas acknowledging",
            ),
            (
                &fell_back,
                Some(false),
                "semi-sync is enabled but not active: no replica acknowledged within 500 ms, so commits no longer wait",
            ),
            (&off, Some(false), "semi-sync is not enabled"),
            (
                &[],
                Some(false),
                "semi-sync is not available (no rpl_semi_sync variables)",
            ),
        ];
        for (values, guaranteed, how) in rows {
            let d = semi_sync(&pairs(values));
            assert_eq!(
                (d.guaranteed, d.how.as_str()),
                (*guaranteed, *how),
                "{values:?}"
            );
        }
    }

    /// The facts survive their JSON form.
    #[test]
    fn replica_facts_store_as_json() {
        let r = replica_facts(&status(MYSQL), "");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Replica>(&json).unwrap(), r);
    }
}
