//! The MySQL/MariaDB client deadpool uses: always TCP, every call bounded, and the server
//! facts the monitor, the readiness checks and the promotion need. Replication status is
//! read by column name and accepts both the MariaDB/MySQL 5.7 (`Slave_*`, `Master_*`) and the
//! MySQL 8.0.22+ (`Replica_*`, `Source_*`) spellings.

use std::collections::HashMap;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Value};

use crate::config::Secret;

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub user: &'a str,
    pub password: &'a Secret,
    /// Bounds connecting, the login, and every read and write.
    pub timeout: Duration,
    /// Bounds each read and write instead of `timeout` when longer, for statements that
    /// wait server-side (`STOP REPLICA` while the IO thread is stuck connecting).
    pub statement_timeout: Option<Duration>,
}

/// Why a connection or query failed, sorted by what it says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answered: refused, unreachable, timed out, no greeting.
    Down(String),
    /// The server answered with an error: it is alive (access denied, too many connections).
    Refused { code: u16, message: String },
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::Down(m) => m.clone(),
            Failure::Refused { code, message } => format!("{message} (error {code})"),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

fn classify(err: mysql::Error, target: &Target) -> Failure {
    match err {
        mysql::Error::MySqlError(e) => Failure::Refused {
            code: e.code,
            message: crate::text::one_line(&e.message),
        },
        other => {
            let text = plain_error(&other);
            if text.contains(target.host) {
                Failure::Down(text)
            } else {
                Failure::Down(format!("{}:{}: {text}", target.host, target.port))
            }
        }
    }
}

/// The driver's error in plain words: timeouts say so, debug wrappers go.
fn plain_error(e: &mysql::Error) -> String {
    let text = crate::text::one_line(&e.to_string());
    // EAGAIN (11) is how a read timeout surfaces; ETIMEDOUT (110) a connect timeout.
    if text.contains("(os error 11)")
        || text.contains("(os error 110)")
        || text.contains("timed out")
    {
        return "no answer in time (timed out)".to_string();
    }
    if text.contains("connection timeout") {
        return "could not connect in time (timed out)".to_string();
    }
    let mut t = text.as_str();
    for wrapper in ["DriverError { ", "CodecError { "] {
        if let Some(inner) = t.strip_prefix(wrapper) {
            t = inner.strip_suffix(" }").unwrap_or(inner);
        }
    }
    t.to_string()
}

/// An open admin or monitor connection.
pub struct Client {
    conn: Conn,
    pub host: String,
    pub flavor: Flavor,
    pub version: String,
    target_desc: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target_desc)
            .field("version", &self.version)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    MariaDb,
    MySql,
}

impl Client {
    /// Connects over TCP (never a local socket), with connect, read and write timeouts.
    pub fn connect(target: &Target) -> Result<Client, Failure> {
        let ip = crate::monitor::resolve(target.host, target.port, target.timeout)
            .map_err(Failure::Down)?;
        let addr = ip
            .first()
            .ok_or_else(|| Failure::Down(format!("{} has no address", target.host)))?;
        let io_timeout = target
            .statement_timeout
            .unwrap_or(target.timeout)
            .max(target.timeout);
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(addr.ip().to_string()))
            .tcp_port(target.port)
            .user(Some(target.user))
            .pass(Some(target.password.expose()))
            .prefer_socket(false)
            .tcp_connect_timeout(Some(target.timeout))
            .read_timeout(Some(io_timeout))
            .write_timeout(Some(io_timeout))
            .stmt_cache_size(Some(0));
        let mut conn = Conn::new(opts).map_err(|e| classify(e, target))?;
        let version: String = conn
            .query_first("SELECT @@version")
            .map_err(|e| classify(e, target))?
            .unwrap_or_default();

        let flavor = if version.to_ascii_lowercase().contains("mariadb") {
            Flavor::MariaDb
        } else {
            Flavor::MySql
        };
        Ok(Client {
            conn,
            host: target.host.to_string(),
            flavor,
            version,
            target_desc: format!("{}@{}:{}", target.user, target.host, target.port),
        })
    }

    fn fail(&self, e: mysql::Error) -> Failure {
        match e {
            mysql::Error::MySqlError(e) => Failure::Refused {
                code: e.code,
                message: crate::text::one_line(&e.message),
            },
            other => Failure::Down(format!("{}: {}", self.host, plain_error(&other))),
        }
    }

    pub fn exec(&mut self, sql: &str) -> Result<(), Failure> {
        self.conn.query_drop(sql).map_err(|e| self.fail(e))
    }

    /// Runs the first statement; when the server does not know its syntax (error 1064, an
    /// older server), runs the second. For `STOP REPLICA` / `STOP SLAVE` and friends.
    pub fn exec_either(&mut self, modern: &str, legacy: &str) -> Result<(), Failure> {
        match self.exec(modern) {
            Err(Failure::Refused { code: 1064, .. }) => self.exec(legacy),
            other => other,
        }
    }

    pub fn read_only(&mut self) -> Result<bool, Failure> {
        let v: Option<i64> = self
            .conn
            .query_first("SELECT @@global.read_only")
            .map_err(|e| self.fail(e))?;
        Ok(v.unwrap_or(0) != 0)
    }

    /// `SHOW REPLICA STATUS` (or `SHOW SLAVE STATUS` on older servers); `None` when the server
    /// is not a replica.
    pub fn replica_status(&mut self) -> Result<Option<ReplicaStatus>, Failure> {
        let rows = match self.conn.query::<mysql::Row, _>("SHOW REPLICA STATUS") {
            Err(mysql::Error::MySqlError(e)) if e.code == 1064 => self
                .conn
                .query::<mysql::Row, _>("SHOW SLAVE STATUS")
                .map_err(|e| self.fail(e))?,
            other => other.map_err(|e| self.fail(e))?,
        };
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let mut columns = HashMap::new();
        for (i, column) in row.columns_ref().iter().enumerate() {
            let value = row.as_ref(i).and_then(value_text);
            columns.insert(column.name_str().into_owned(), value);
        }
        Ok(Some(ReplicaStatus::from_columns(&columns)))
    }

    /// What this server has written to its binary log, as a GTID position or set.
    pub fn gtid_position(&mut self) -> Result<String, Failure> {
        let sql = match self.flavor {
            Flavor::MariaDb => "SELECT @@global.gtid_binlog_pos",
            Flavor::MySql => "SELECT @@global.gtid_executed",
        };
        let v: Option<String> = self.conn.query_first(sql).map_err(|e| self.fail(e))?;
        Ok(v.unwrap_or_default())
    }

    /// Waits until this replica has applied `position` (from [`Client::gtid_position`] on
    /// its primary). Returns false on timeout.
    pub fn wait_for_gtid(&mut self, position: &str, timeout: Duration) -> Result<bool, Failure> {
        if position.is_empty() {
            return Ok(true);
        }
        let secs = timeout.as_secs_f64();
        let quoted = quote_literal(position);
        let sql = match self.flavor {
            Flavor::MariaDb => format!("SELECT MASTER_GTID_WAIT({quoted}, {secs:.3})"),
            Flavor::MySql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET({quoted}, {secs:.3})"),
        };
        let v: Option<i64> = self.conn.query_first(sql).map_err(|e| self.fail(e))?;
        Ok(v == Some(0))
    }

    /// The global privileges of the connected account, upper-case.
    pub fn privileges(&mut self) -> Result<Vec<String>, Failure> {
        let grants: Vec<String> = self.conn.query("SHOW GRANTS").map_err(|e| self.fail(e))?;
        Ok(parse_global_privileges(&grants))
    }
}

/// A MySQL value as text (strings, numbers); `NULL` is `None`.
fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// A SQL string literal. Only deadpool's own values (GTID positions read from a server)
/// pass through here; they are quoted all the same.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The replication facts deadpool uses, from one row of `SHOW REPLICA STATUS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub source_host: String,
    pub source_port: Option<u16>,
    pub io_running: String,
    pub sql_running: String,
    pub seconds_behind: Option<u64>,
    pub last_io_error: String,
    pub last_sql_error: String,
    /// Position received from the source (file, pos) and executed (file, pos).
    pub received: (String, u64),
    pub executed: (String, u64),
}

impl ReplicaStatus {
    pub fn from_columns(c: &HashMap<String, Option<String>>) -> ReplicaStatus {
        let get = |names: &[&str]| -> String {
            names
                .iter()
                .find_map(|n| c.get(*n).cloned().flatten())
                .unwrap_or_default()
        };
        let num = |names: &[&str]| get(names).trim().parse::<u64>().ok();
        ReplicaStatus {
            source_host: get(&["Source_Host", "Master_Host"]),
            source_port: num(&["Source_Port", "Master_Port"]).and_then(|p| u16::try_from(p).ok()),
            io_running: get(&["Replica_IO_Running", "Slave_IO_Running"]),
            sql_running: get(&["Replica_SQL_Running", "Slave_SQL_Running"]),
            seconds_behind: num(&["Seconds_Behind_Source", "Seconds_Behind_Master"]),
            last_io_error: get(&["Last_IO_Error"]),
            last_sql_error: get(&["Last_SQL_Error"]),
            received: (
                get(&["Source_Log_File", "Master_Log_File"]),
                num(&["Read_Source_Log_Pos", "Read_Master_Log_Pos"]).unwrap_or(0),
            ),
            executed: (
                get(&["Relay_Source_Log_File", "Relay_Master_Log_File"]),
                num(&["Exec_Source_Log_Pos", "Exec_Master_Log_Pos"]).unwrap_or(0),
            ),
        }
    }

    pub fn io_ok(&self) -> bool {
        self.io_running.eq_ignore_ascii_case("yes")
    }

    pub fn sql_ok(&self) -> bool {
        self.sql_running.eq_ignore_ascii_case("yes")
    }

    /// Everything received from the source has been applied.
    pub fn caught_up(&self) -> bool {
        self.received == self.executed
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let errors = !self.last_io_error.is_empty() || !self.last_sql_error.is_empty();
        let no = |s: &str| s.eq_ignore_ascii_case("no");
        if !errors && no(&self.io_running) && no(&self.sql_running) {
            return crate::text::one_line(&format!(
                "replication stopped (source was {})",
                self.source_host
            ));
        }

        let lag = self
            .seconds_behind
            .map_or("unknown".to_string(), |s| format!("{s}s"));
        let mut out = format!(
            "replica of {}: IO {}, SQL {}, lag {lag}",
            self.source_host,
            or_dash(&self.io_running),
            or_dash(&self.sql_running)
        );
        if !self.last_io_error.is_empty() {
            out.push_str(&format!(", IO error: {}", self.last_io_error));
        }
        if !self.last_sql_error.is_empty() {
            out.push_str(&format!(", SQL error: {}", self.last_sql_error));
        }
        crate::text::one_line(&out)
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Global privileges from `SHOW GRANTS` lines (`GRANT A, B ON *.* TO ...`).
pub fn parse_global_privileges(grants: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for g in grants {
        let upper = g.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, after)) = rest.split_once(" ON ") else {
            continue;
        };
        if !after.trim_start().starts_with("*.*") {
            continue;
        }
        out.extend(
            privs
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty()),
        );
    }
    out
}

/// The leading `major.minor.patch` of a version string like `10.11.6-MariaDB-0+deb12u1`.
pub fn version_triple(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap_or(0));
    (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// What promotion needs: change `read_only` and stop/reset replication. Returns what is
/// missing, in words for the report.
pub fn missing_admin_privileges(
    flavor: Flavor,
    version: &str,
    privileges: &[String],
) -> Vec<&'static str> {
    let has = |p: &str| {
        privileges
            .iter()
            .any(|x| x == p || x == "ALL PRIVILEGES" || x == "ALL")
    };
    let mut missing = Vec::new();
    match flavor {
        // MariaDB 10.5.2 split SUPER: since then read_only needs READ_ONLY ADMIN, while SUPER
        // still covers stopping a replica.
        Flavor::MariaDb => {
            let split = version_triple(version) >= (10, 5, 2);
            if (split && !has("READ_ONLY ADMIN")) || (!split && !has("SUPER")) {
                missing.push(if split { "READ_ONLY ADMIN" } else { "SUPER" });
            }
            if !has("REPLICATION SLAVE ADMIN") && !has("SUPER") {
                missing.push("REPLICATION SLAVE ADMIN");
            }
        }
        Flavor::MySql => {
            if !has("SYSTEM_VARIABLES_ADMIN") && !has("SUPER") {
                missing.push("SYSTEM_VARIABLES_ADMIN");
            }
            if !has("REPLICATION_SLAVE_ADMIN") && !has("SUPER") {
                missing.push("REPLICATION_SLAVE_ADMIN");
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> HashMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    if *v == "NULL" {
                        None
                    } else {
                        Some(v.to_string())
                    },
                )
            })
            .collect()
    }

    /// Recorded from MariaDB 10.11 (`SHOW REPLICA STATUS` keeps the old column names).
    #[test]
    fn reads_mariadb_columns() {
        let s = ReplicaStatus::from_columns(&row(&[
            ("Slave_IO_State", "Waiting for master to send event"),
            ("Master_Host", "10.213.0.11"),
            ("Master_Port", "3306"),
            ("Master_Log_File", "mysql-bin.000002"),
            ("Read_Master_Log_Pos", "1234"),
            ("Relay_Master_Log_File", "mysql-bin.000002"),
            ("Exec_Master_Log_Pos", "1234"),
            ("Slave_IO_Running", "Yes"),
            ("Slave_SQL_Running", "Yes"),
            ("Seconds_Behind_Master", "0"),
            ("Last_IO_Error", ""),
            ("Last_SQL_Error", ""),
            ("Gtid_IO_Pos", "0-1-42"),
        ]));
        assert_eq!(s.source_host, "10.213.0.11");
        assert_eq!(s.source_port, Some(3306));
        assert!(s.io_ok() && s.sql_ok() && s.caught_up());
        assert_eq!(s.seconds_behind, Some(0));
        assert_eq!(
            s.describe(),
            "replica of 10.213.0.11: IO Yes, SQL Yes, lag 0s"
        );
    }

    /// Recorded from MySQL 8.4 (`Replica_*` / `Source_*`).
    #[test]
    fn reads_mysql_8_columns() {
        let s = ReplicaStatus::from_columns(&row(&[
            (
                "Replica_IO_State",
                "Reconnecting after a failed source event read",
            ),
            ("Source_Host", "db1.example"),
            ("Source_Port", "3306"),
            ("Source_Log_File", "binlog.000007"),
            ("Read_Source_Log_Pos", "900"),
            ("Relay_Source_Log_File", "binlog.000007"),
            ("Exec_Source_Log_Pos", "850"),
            ("Replica_IO_Running", "Connecting"),
            ("Replica_SQL_Running", "Yes"),
            ("Seconds_Behind_Source", "NULL"),
            (
                "Last_IO_Error",
                "error reconnecting to source 'repl@db1.example:3306'",
            ),
            ("Last_SQL_Error", ""),
        ]));
        assert_eq!(s.source_host, "db1.example");
        assert!(!s.io_ok());
        assert!(s.sql_ok());
        assert!(!s.caught_up());
        assert_eq!(s.seconds_behind, None);
        assert!(
            s.describe()
                .contains("IO Connecting, SQL Yes, lag unknown, IO error: error reconnecting")
        );
    }

    #[test]
    fn privileges_from_grants() {
        let grants = vec![
            "GRANT SUPER, READ_ONLY ADMIN, REPLICATION SLAVE ADMIN ON *.* TO `dpadmin`@`%` IDENTIFIED BY PASSWORD '*X'".to_string(),
            "GRANT ALL PRIVILEGES ON `app`.* TO `dpadmin`@`%`".to_string(),
        ];
        let p = parse_global_privileges(&grants);
        assert_eq!(
            p,
            vec!["SUPER", "READ_ONLY ADMIN", "REPLICATION SLAVE ADMIN"]
        );
        let maria = "10.11.6-MariaDB-0+deb12u1-log";
        assert!(missing_admin_privileges(Flavor::MariaDb, maria, &p).is_empty());
        let weak =
            parse_global_privileges(&["GRANT REPLICATION CLIENT ON *.* TO `m`@`%`".to_string()]);
        assert_eq!(
            missing_admin_privileges(Flavor::MariaDb, maria, &weak),
            vec!["READ_ONLY ADMIN", "REPLICATION SLAVE ADMIN"]
        );
        assert_eq!(
            missing_admin_privileges(Flavor::MySql, "8.4.2", &weak),
            vec!["SYSTEM_VARIABLES_ADMIN", "REPLICATION_SLAVE_ADMIN"]
        );
        let all = parse_global_privileges(&[
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION".to_string(),
        ]);
        assert!(missing_admin_privileges(Flavor::MySql, "8.0.36", &all).is_empty());
        // Before 10.5.2, SUPER alone could do it all, and READ_ONLY ADMIN did not exist.
        let sup = parse_global_privileges(&["GRANT SUPER ON *.* TO `a`@`%`".to_string()]);
        assert!(missing_admin_privileges(Flavor::MariaDb, "10.4.30-MariaDB", &sup).is_empty());
        assert_eq!(
            missing_admin_privileges(Flavor::MariaDb, maria, &sup),
            vec!["READ_ONLY ADMIN"]
        );
        assert_eq!(version_triple(maria), (10, 11, 6));
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("0-1-42,1-2-3"), "'0-1-42,1-2-3'");
        assert_eq!(quote_literal("a'b\\"), "'a''b\\\\'");
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    #[test]
    fn errors_read_plainly() {
        let refused = mysql::Error::IoError(std::io::Error::from_raw_os_error(111));
        assert!(
            plain_error(&refused).contains("Connection refused"),
            "{}",
            plain_error(&refused)
        );
        let again = mysql::Error::IoError(std::io::Error::from_raw_os_error(11));
        assert_eq!(plain_error(&again), "no answer in time (timed out)");
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::fuzz::{Rng, cases};

    const COLUMNS: &[&str] = &[
        "Slave_IO_Running",
        "Replica_IO_Running",
        "Slave_SQL_Running",
        "Replica_SQL_Running",
        "Master_Host",
        "Source_Host",
        "Master_Port",
        "Source_Port",
        "Seconds_Behind_Master",
        "Seconds_Behind_Source",
        "Last_IO_Error",
        "Last_SQL_Error",
        "Master_Log_File",
        "Read_Master_Log_Pos",
        "Relay_Master_Log_File",
        "Exec_Master_Log_Pos",
        "Gtid_IO_Pos",
    ];
    const VALUES: &[&str] = &[
        "Yes",
        "No",
        "Connecting",
        "",
        "NULL",
        "0",
        "-1",
        "99999999999999999999",
        "10.0.0.1",
        "é|\n",
        "3306",
        "65536",
    ];

    /// Any replication status row (missing columns, odd values, both spellings mixed) reads
    /// without a panic into a status that describes itself on one line.
    #[test]
    fn fuzz_replication_status_parsing() {
        let mut rng = Rng::new(3);
        for case in 0..cases(20000) {
            let mut row = HashMap::new();
            for _ in 0..rng.below(COLUMNS.len() as u64 + 3) {
                let value = if rng.below(5) == 0 {
                    Some(String::from_utf8_lossy(&rng.bytes(30)).into_owned())
                } else {
                    let v = rng.pick(VALUES);
                    (v != "NULL").then(|| v.to_string())
                };
                row.insert(rng.pick(COLUMNS).to_string(), value);
            }
            let status = ReplicaStatus::from_columns(&row);
            let text = status.describe();
            assert!(
                !text.contains('\n') && !text.contains('|'),
                "case {case}: {text:?}"
            );
            let _ = (status.io_ok(), status.sql_ok(), status.caught_up());
        }
        for case in 0..cases(5000) {
            let grants: Vec<String> = (0..rng.below(4))
                .map(|_| String::from_utf8_lossy(&rng.bytes(80)).into_owned())
                .collect();
            let privileges = parse_global_privileges(&grants);
            let _ = missing_admin_privileges(
                Flavor::MariaDb,
                &String::from_utf8_lossy(&rng.bytes(12)),
                &privileges,
            );
            let _ = case;
        }
    }
}
