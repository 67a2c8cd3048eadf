//! The MySQL/MariaDB client deadpool uses: always TCP, every call bounded, and the server
//! facts the monitor, the readiness checks and the promotion need. Replication status is
//! read by column name and accepts both the MariaDB/MySQL 5.7 (`Slave_*`, `Master_*`) and the
//! MySQL 8.0.22+ (`Replica_*`, `Source_*`) spellings. With a pool's `tls` table the
//! connection is upgraded to TLS before the login (the server's greeting is plain text).

use std::collections::HashMap;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder, Value};

use crate::error::Problem;
use crate::settings::Secret;
use crate::tls::Tls;

/// A `tls` table for this client: it checks the name the server is written by, so a
/// `server_name` cannot apply.
pub fn check_tls(tls: Tls) -> Result<Tls, Problem> {
    if let Some(name) = &tls.server_name {
        return Err(Problem::at(
            "tls.server_name",
            format!(
                "the MySQL client checks the certificate against the server's name as written in `primary`/`secondary`, so `{name}` cannot be used: write the servers by the names their certificates carry, or use verify = \"ca\""
            ),
        ));
    }
    Ok(tls)
}

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
    /// TLS before the login, when the pool has a `tls` table.
    pub tls: Option<&'a Tls>,
}

/// The error code of a failed TLS setup: the MySQL client library's own
/// (`CR_SSL_CONNECTION_ERROR`). Such a [`Failure::Refused`] came from a live server.
pub const TLS_ERROR: u16 = 2026;

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
            Failure::Refused {
                code: TLS_ERROR,
                message,
            } => message.clone(),
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
        mysql::Error::MySqlError(e) => {
            let mut message = crate::text::one_line(&e.message);
            if target.tls.is_none()
                && let Some(hint) = tls_hint(e.code, || offers_tls(target))
            {
                message = format!("{message}; {hint}");
            }
            Failure::Refused {
                code: e.code,
                message,
            }
        }
        mysql::Error::DriverError(mysql::DriverError::TlsNotSupported) => Failure::Refused {
            code: TLS_ERROR,
            message: "TLS: the server does not offer TLS: give it a certificate (ssl_cert, ssl_key), or remove tls from the pool".into(),
        },
        mysql::Error::TlsError(e) => {
            let tls = target.tls.expect("a TLS error comes from a TLS connection");
            let name = target.host;
            match crate::tls::explain(&e.to_string(), tls, name) {
                crate::tls::Failed::Refused(message) => Failure::Refused {
                    code: TLS_ERROR,
                    message,
                },
                crate::tls::Failed::Silent(m) => {
                    Failure::Down(format!("{}:{}: {m}", target.host, target.port))
                }
            }
        }
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

/// What to add to a refused login made without TLS, when TLS may be why (pure, for tests):
/// MySQL says so (3159, `require_secure_transport`); MariaDB answers "access denied"
/// (1045), so `offers_tls` is asked whether the server offers TLS at all.
fn tls_hint(code: u16, offers_tls: impl FnOnce() -> bool) -> Option<&'static str> {
    match code {
        3159 => Some(
            "the server requires TLS (require_secure_transport): add tls = { ca_file = \"...\" } to the pool's [monitor]",
        ),
        1045 if offers_tls() => Some(
            "the server offers TLS: if it requires it (require_secure_transport = ON), add tls = { ca_file = \"...\" } to the pool's [monitor]",
        ),
        _ => None,
    }
}

/// Whether the server's greeting offers TLS (one more connection, bounded by the timeout).
fn offers_tls(target: &Target) -> bool {
    use std::io::Read;
    let Ok(addrs) = crate::net::resolve(target.host, target.port, target.timeout) else {
        return false;
    };
    let Some(addr) = addrs.first() else {
        return false;
    };
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(addr, target.timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(target.timeout));
    let mut header = [0u8; 4];
    if stream.read_exact(&mut header).is_err() {
        return false;
    }
    let len = usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
    let mut packet = header.to_vec();
    packet.resize(4 + len.min(512), 0);
    if stream.read_exact(&mut packet[4..]).is_err() {
        return false;
    }
    greeting_offers_tls(&packet).unwrap_or(false)
}

/// Reads the `CLIENT_SSL` capability from a server greeting (protocol 10), or `None` when
/// the bytes are no greeting (pure, for tests).
fn greeting_offers_tls(packet: &[u8]) -> Option<bool> {
    const CLIENT_SSL: u16 = 0x0800;
    // 3 bytes length, 1 byte sequence, then the payload.
    let payload = packet.get(4..)?;
    if payload.first() != Some(&10) {
        return None;
    }
    let version_end = payload.iter().skip(1).position(|b| *b == 0)? + 1;
    // version NUL, thread id (4), scramble part 1 (8), filler (1), capabilities (2).
    let at = version_end + 1 + 4 + 8 + 1;
    let caps = u16::from_le_bytes([*payload.get(at)?, *payload.get(at + 1)?]);
    Some(caps & CLIENT_SSL != 0)
}

/// An open admin or monitor connection.
pub struct Client {
    conn: Conn,
    pub host: String,
    pub flavor: Flavor,
    pub version: String,
    target_desc: String,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target_desc)
            .field("version", &self.version)
            .field("tls", &self.tls)
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
        let ip =
            crate::net::resolve(target.host, target.port, target.timeout).map_err(Failure::Down)?;
        let addr = ip
            .first()
            .ok_or_else(|| Failure::Down(format!("{} has no address", target.host)))?;
        let io_timeout = target
            .statement_timeout
            .unwrap_or(target.timeout)
            .max(target.timeout);
        // The TLS name is the host as written; the address was resolved above, with a
        // deadline, so the client's own look-up of the same name finds it at once.
        let host = match target.tls {
            Some(_) => target.host.to_string(),
            None => addr.ip().to_string(),
        };
        let (ssl, _client_certificate) = match target.tls {
            Some(tls) => {
                let (opts, file) = tls.mysql_opts().map_err(|message| Failure::Refused {
                    code: TLS_ERROR,
                    message,
                })?;
                (Some(opts), file)
            }
            None => (None, None),
        };
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(host))
            .ssl_opts(ssl)
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
            tls: target.tls.is_some(),
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

    /// The rows of the first query; when the server does not know its syntax (error 1064),
    /// of the second, as [`Client::exec_either`] does for statements.
    fn rows_either(&mut self, modern: &str, legacy: &str) -> Result<Vec<mysql::Row>, Failure> {
        match self.conn.query::<mysql::Row, _>(modern) {
            Err(mysql::Error::MySqlError(e)) if e.code == 1064 => self
                .conn
                .query::<mysql::Row, _>(legacy)
                .map_err(|e| self.fail(e)),
            other => other.map_err(|e| self.fail(e)),
        }
    }

    /// `SHOW REPLICA STATUS` (or `SHOW SLAVE STATUS` on older servers); `None` when the server
    /// is not a replica.
    pub fn replica_status(&mut self) -> Result<Option<ReplicaStatus>, Failure> {
        let rows = self.rows_either("SHOW REPLICA STATUS", "SHOW SLAVE STATUS")?;
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
        let sql = format!("SELECT @@global.{}", written_gtid_variable(self.flavor));
        let v: Option<String> = self.conn.query_first(sql).map_err(|e| self.fail(e))?;
        Ok(v.unwrap_or_default())
    }

    /// `read_only` and the GTID positions in one round trip, for the monitor. A server
    /// without GTIDs (error 1193, unknown system variable: before MySQL 5.6 and MariaDB
    /// 10.0) answers `read_only` alone.
    pub fn state(&mut self) -> Result<ServerState, Failure> {
        let applied = match self.flavor {
            Flavor::MariaDb => "@@global.gtid_slave_pos",
            Flavor::MySql => "''",
        };
        let sql = format!(
            "SELECT @@global.read_only, @@global.{}, {applied}",
            written_gtid_variable(self.flavor)
        );
        type Row = (Option<i64>, Option<String>, Option<String>);
        match self.conn.query_first::<Row, _>(sql) {
            Ok(row) => {
                let (read_only, written, applied) = row.unwrap_or_default();
                Ok(ServerState {
                    read_only: read_only.unwrap_or(0) != 0,
                    gtid_written: one_gtid_line(written),
                    gtid_applied: one_gtid_line(applied),
                })
            }
            Err(mysql::Error::MySqlError(e)) if e.code == 1193 => Ok(ServerState {
                read_only: self.read_only()?,
                ..ServerState::default()
            }),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// The semi-synchronous replication variables and status counters (`rpl_semi_sync_*`,
    /// `Rpl_semi_sync_*`, in the `master` or the `source` spelling) as (name, value); none
    /// on a server without semi-sync.
    pub fn semi_sync(&mut self) -> Result<Vec<(String, String)>, Failure> {
        let mut out = Vec::new();
        for sql in [
            "SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync%'",
            "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync%'",
        ] {
            let rows: Vec<(String, Option<String>)> =
                self.conn.query(sql).map_err(|e| self.fail(e))?;
            out.extend(rows.into_iter().map(|(k, v)| (k, v.unwrap_or_default())));
        }
        Ok(out)
    }

    /// The end of this server's binary log as (file, position): `SHOW BINARY LOG STATUS`
    /// (MySQL 8.2+, the only spelling in 8.4), else `SHOW MASTER STATUS`. `None` when the
    /// server writes no binary log.
    pub fn binlog_position(&mut self) -> Result<Option<(String, u64)>, Failure> {
        let rows = self.rows_either("SHOW BINARY LOG STATUS", "SHOW MASTER STATUS")?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let column = |name: &str| {
            row.columns_ref()
                .iter()
                .position(|c| c.name_str().eq_ignore_ascii_case(name))
                .and_then(|i| row.as_ref(i))
                .and_then(value_text)
                .unwrap_or_default()
        };
        let (file, position) = (column("File"), column("Position"));
        match position.trim().parse::<u64>() {
            Ok(pos) if !file.is_empty() => Ok(Some((file, pos))),
            _ => Ok(None),
        }
    }

    /// Makes this replica replicate from another source: stops replication, changes the
    /// source's host and port, and starts it again. The replication account, its password
    /// and TLS settings stay as they are. With `use_gtid` the replica finds its place by GTID
    /// (MariaDB `MASTER_USE_GTID=slave_pos`, MySQL auto-positioning); without, it keeps its
    /// positioning mode, and the server starts a file-and-position replica at the first
    /// binary log of the new source, so callers pass `false` only for a replica that already
    /// replicates by GTID. A failed change leaves replication stopped: better than
    /// following an old primary that comes back.
    pub fn repoint(
        &mut self,
        source_host: &str,
        source_port: u16,
        use_gtid: bool,
    ) -> Result<(), Failure> {
        let (modern, legacy) = change_source_sql(self.flavor, source_host, source_port, use_gtid);
        self.exec_either("STOP REPLICA", "STOP SLAVE")?;
        match modern {
            Some(modern) => self.exec_either(&modern, &legacy)?,
            None => self.exec(&legacy)?,
        }
        self.exec_either("START REPLICA", "START SLAVE")
    }

    /// Waits, at most `timeout`, until this replica's IO and SQL threads run with
    /// `source_host` as their source (after [`Client::repoint`]). The error says why not,
    /// in the server's words (the IO error of a replication account the new source
    /// refuses, say).
    pub fn await_replicating(
        &mut self,
        source_host: &str,
        timeout: Duration,
    ) -> Result<ReplicaStatus, String> {
        let mut last = None;
        let waited = crate::remote::poll(timeout, || -> Result<_, String> {
            let status = self.replica_status().map_err(|f| f.to_string())?;
            if replicating_from(status.as_ref(), source_host)? {
                return Ok(status);
            }
            last = status;
            Ok(None)
        });
        let host = &self.host;
        match waited {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err(format!(
                "{host} did not start replicating from {source_host} within {}: {}",
                crate::settings::format_duration(timeout),
                last.map_or("no replication status".to_string(), |s| s.describe())
            )),
            Err(why) => Err(format!(
                "{host} does not replicate from {source_host}: {why}"
            )),
        }
    }

    /// Waits until this replica has applied `position` (read on its primary). Returns false
    /// on timeout, and while the replica cannot wait yet (its SQL thread is not running: the
    /// wait functions then answer NULL at once).
    pub fn wait_for(&mut self, position: &Position, timeout: Duration) -> Result<bool, Failure> {
        let secs = timeout.as_secs_f64();
        let (sql, fallback) = match (position, self.flavor) {
            (Position::Gtid(set), Flavor::MariaDb) => (
                format!("SELECT MASTER_GTID_WAIT({}, {secs:.3})", quote_literal(set)),
                None,
            ),
            (Position::Gtid(set), Flavor::MySql) => (
                format!(
                    "SELECT WAIT_FOR_EXECUTED_GTID_SET({}, {secs:.3})",
                    quote_literal(set)
                ),
                None,
            ),
            (Position::File(file, pos), Flavor::MariaDb) => (
                format!(
                    "SELECT MASTER_POS_WAIT({}, {pos}, {secs:.3})",
                    quote_literal(file)
                ),
                None,
            ),
            // MySQL 8.0.26 renamed it; older servers only know the old name.
            (Position::File(file, pos), Flavor::MySql) => (
                format!(
                    "SELECT SOURCE_POS_WAIT({}, {pos}, {secs:.3})",
                    quote_literal(file)
                ),
                Some(format!(
                    "SELECT MASTER_POS_WAIT({}, {pos}, {secs:.3})",
                    quote_literal(file)
                )),
            ),
        };
        let answer: Option<i64> = match (self.conn.query_first::<Option<i64>, _>(&sql), fallback) {
            (Err(mysql::Error::MySqlError(e)), Some(legacy))
                if e.code == 1305 || e.code == 1064 =>
            {
                self.conn
                    .query_first::<Option<i64>, _>(legacy)
                    .map_err(|e| self.fail(e))?
                    .flatten()
            }
            (other, _) => other.map_err(|e| self.fail(e))?.flatten(),
        };
        Ok(wait_reached(position, answer))
    }

    /// `@@global.super_read_only`, or `None` where the server has no such variable
    /// (MariaDB; error 1193 "unknown system variable").
    pub fn super_read_only(&mut self) -> Result<Option<bool>, Failure> {
        match self
            .conn
            .query_first::<Option<i64>, _>("SELECT @@global.super_read_only")
        {
            Ok(v) => Ok(Some(v.flatten().unwrap_or(0) != 0)),
            Err(mysql::Error::MySqlError(e)) if e.code == 1193 => Ok(None),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Every session on the server (needs PROCESS to see other accounts' sessions), and
    /// this connection's own id.
    pub fn sessions(&mut self) -> Result<(Vec<Session>, u64), Failure> {
        let own: Option<u64> = self
            .conn
            .query_first("SELECT CONNECTION_ID()")
            .map_err(|e| self.fail(e))?;
        let sessions = self
            .conn
            .query_map(
                "SELECT ID, USER, HOST, COMMAND FROM information_schema.PROCESSLIST",
                |(id, user, host, command): (
                    u64,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                )| {
                    Session {
                        id,
                        user: user.unwrap_or_default(),
                        host: host.unwrap_or_default(),
                        command: command.unwrap_or_default(),
                    }
                },
            )
            .map_err(|e| self.fail(e))?;
        Ok((sessions, own.unwrap_or(0)))
    }

    /// Ends a session. One that ended meanwhile (error 1094, unknown thread) is fine.
    pub fn kill_session(&mut self, id: u64) -> Result<(), Failure> {
        match self.exec(&format!("KILL CONNECTION {id}")) {
            Err(Failure::Refused { code: 1094, .. }) => Ok(()),
            other => other,
        }
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

/// A SQL string literal. Only deadpool's own values (GTID positions read from a server,
/// host names from the configuration) pass through here; they are quoted all the same.
fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The variable that holds what a server has written to its binary log, as a GTID position
/// (MariaDB) or set (MySQL).
fn written_gtid_variable(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::MariaDb => "gtid_binlog_pos",
        Flavor::MySql => "gtid_executed",
    }
}

/// A GTID position on one line: MySQL breaks a long set after its commas.
fn one_gtid_line(gtid: Option<String>) -> String {
    gtid.unwrap_or_default().replace(['\n', '\r'], "")
}

/// What the monitor reads in one query besides the replication status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerState {
    pub read_only: bool,
    /// What the server has written to its binary log (`gtid_binlog_pos`, `gtid_executed`);
    /// empty without GTIDs.
    pub gtid_written: String,
    /// What its replication has applied, in its source's GTIDs (MariaDB `gtid_slave_pos`);
    /// empty on MySQL, whose `gtid_executed` mixes in the replica's own transactions.
    pub gtid_applied: String,
}

/// The statement that changes a replica's source (pure, for tests): the MySQL 8.0.23+
/// spelling where there is one, and the older one (the only one MariaDB knows).
fn change_source_sql(
    flavor: Flavor,
    host: &str,
    port: u16,
    use_gtid: bool,
) -> (Option<String>, String) {
    let host = quote_literal(host);
    let gtid = |clause: &str| {
        if use_gtid {
            format!(", {clause}")
        } else {
            String::new()
        }
    };
    let legacy = |clause: &str| {
        format!(
            "CHANGE MASTER TO MASTER_HOST={host}, MASTER_PORT={port}{}",
            gtid(clause)
        )
    };
    match flavor {
        Flavor::MariaDb => (None, legacy("MASTER_USE_GTID=slave_pos")),
        Flavor::MySql => (
            Some(format!(
                "CHANGE REPLICATION SOURCE TO SOURCE_HOST={host}, SOURCE_PORT={port}{}",
                gtid("SOURCE_AUTO_POSITION=1")
            )),
            legacy("MASTER_AUTO_POSITION=1"),
        ),
    }
}

/// Whether a replica runs with `source` as its source (pure, for tests): `Ok(true)` when
/// both threads run, `Ok(false)` while it may still get there (the IO thread connecting),
/// `Err` when it will not without help (no replication, another source, a thread stopped
/// by an error).
fn replicating_from(status: Option<&ReplicaStatus>, source: &str) -> Result<bool, String> {
    let Some(s) = status else {
        return Err("it has no replication configured".to_string());
    };
    if !s.source_host.eq_ignore_ascii_case(source) {
        return Err(format!("it replicates from {}", s.source_host));
    }
    // Errors from before the repoint were cleared by CHANGE MASTER: an error now is the
    // new source's answer (a refused replication login while the IO thread is still
    // `Connecting` and would retry only a minute later), so waiting longer would only hold
    // the chain.
    if (!s.io_ok() && !s.last_io_error.is_empty()) || (!s.sql_ok() && !s.last_sql_error.is_empty())
    {
        return Err(s.describe());
    }
    Ok(s.io_ok() && s.sql_ok())
}

/// Where a primary stopped writing, in a form its replica can wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A GTID position (MariaDB) or set (MySQL).
    Gtid(String),
    /// A binary log file and offset, for replication without GTID.
    File(String, u64),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Gtid(set) => write!(f, "GTID {set}"),
            Position::File(file, pos) => write!(f, "binlog {file}:{pos}"),
        }
    }
}

/// What to wait for on the replica, from what the old primary says (pure, for tests). GTID
/// only when the replica replicates by GTID; file and position otherwise (MariaDB always
/// writes GTIDs, but a replica on file/position need not track them). `None`: the old
/// primary gives nothing to wait for (no binary log), so catching up cannot be proven.
pub fn position_to_wait_for(
    gtid: &str,
    binlog: Option<(String, u64)>,
    replica_uses_gtid: Option<bool>,
) -> Option<Position> {
    let gtid = gtid.trim();
    match (gtid.is_empty(), binlog, replica_uses_gtid) {
        (false, _, Some(true)) => Some(Position::Gtid(gtid.to_string())),
        (_, Some((file, pos)), _) => Some(Position::File(file, pos)),
        (false, None, _) => Some(Position::Gtid(gtid.to_string())),
        (true, None, _) => None,
    }
}

/// Whether a wait function's answer means the position was reached (pure, for tests).
/// `MASTER_GTID_WAIT` and `WAIT_FOR_EXECUTED_GTID_SET` answer 0 when reached, 1 or -1 on
/// timeout; `MASTER_POS_WAIT` / `SOURCE_POS_WAIT` the number of events waited for (>= 0),
/// -1 on timeout, NULL when the replica cannot wait (SQL thread stopped).
fn wait_reached(position: &Position, answer: Option<i64>) -> bool {
    match (position, answer) {
        (Position::Gtid(_), Some(0)) => true,
        (Position::File(..), Some(n)) => n >= 0,
        _ => false,
    }
}

/// One row of the process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: u64,
    pub user: String,
    pub host: String,
    pub command: String,
}

impl Session {
    pub fn describe(&self) -> String {
        format!("{} {}@{} ({})", self.id, self.user, self.host, self.command)
    }
}

/// The sessions to end on an old primary that was just made read-only (pure, for tests):
/// every client session but our own. Replicas' binlog dump threads stay (the standby must
/// receive the last transactions), and so do the server's own threads (replication
/// threads, the event scheduler, daemons).
pub fn sessions_to_end(sessions: &[Session], own_id: u64) -> Vec<&Session> {
    sessions
        .iter()
        .filter(|s| {
            let command = s.command.to_ascii_lowercase();
            let user = s.user.to_ascii_lowercase();
            s.id != own_id
                && !command.starts_with("binlog dump")
                && command != "daemon"
                && user != "system user"
                && user != "event_scheduler"
        })
        .collect()
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
    /// Whether it replicates by GTID (MariaDB `Using_Gtid`, MySQL `Auto_Position`); `None`
    /// when the server does not say.
    pub uses_gtid: Option<bool>,
    /// The GTID position it has received (MariaDB `Gtid_IO_Pos`); empty elsewhere.
    pub gtid_io_pos: String,
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
            uses_gtid: match get(&["Using_Gtid", "Auto_Position"]).trim() {
                "" => None,
                v => Some(!(v == "0" || v.eq_ignore_ascii_case("no"))),
            },
            gtid_io_pos: get(&["Gtid_IO_Pos"]).trim().to_string(),
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

    /// Replication was stopped without an error: both threads `No`, nothing in the errors.
    pub fn stopped(&self) -> bool {
        let errors = !self.last_io_error.is_empty() || !self.last_sql_error.is_empty();
        let no = |s: &str| s.eq_ignore_ascii_case("no");
        !errors && no(&self.io_running) && no(&self.sql_running)
    }

    /// What is wrong, in the server's words: its errors, else a thread that does not run.
    pub fn problem(&self) -> Option<String> {
        let mut problems = Vec::new();
        if !self.last_io_error.is_empty() {
            problems.push(format!("IO error: {}", self.last_io_error));
        }
        if !self.last_sql_error.is_empty() {
            problems.push(format!("SQL error: {}", self.last_sql_error));
        }
        if problems.is_empty() && !self.io_ok() {
            let io = or_dash(&self.io_running);
            problems.push(format!("not receiving (IO thread {io})"));
        }
        if problems.is_empty() && !self.sql_ok() {
            let sql = or_dash(&self.sql_running);
            problems.push(format!("not applying (SQL thread {sql})"));
        }
        (!problems.is_empty()).then(|| crate::text::one_line(&problems.join("; ")))
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        if self.stopped() {
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

/// Whether the global privileges include `p` (or everything).
fn holds(privileges: &[String], p: &str) -> bool {
    privileges
        .iter()
        .any(|x| x == p || x == "ALL PRIVILEGES" || x == "ALL")
}

/// What promotion needs: change `read_only` and stop/reset replication. Returns what is
/// missing, in words for the report.
pub fn missing_admin_privileges(
    flavor: Flavor,
    version: &str,
    privileges: &[String],
) -> Vec<&'static str> {
    let has = |p: &str| holds(privileges, p);
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

/// What fencing a live old primary needs beyond [`missing_admin_privileges`]: seeing every
/// session (PROCESS) and ending other accounts' sessions. Returns what is missing.
pub fn missing_fence_privileges(
    flavor: Flavor,
    version: &str,
    privileges: &[String],
) -> Vec<&'static str> {
    let has = |p: &str| holds(privileges, p);
    let mut missing = Vec::new();
    if !has("PROCESS") {
        missing.push("PROCESS");
    }
    let connection_admin = match flavor {
        Flavor::MariaDb if version_triple(version) >= (10, 5, 2) => "CONNECTION ADMIN",
        Flavor::MariaDb => "SUPER",
        Flavor::MySql => "CONNECTION_ADMIN",
    };
    if !has(connection_admin) && !has("SUPER") {
        missing.push(connection_admin);
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
        assert_eq!(s.gtid_io_pos, "0-1-42");
        assert_eq!(
            s.describe(),
            "replica of 10.213.0.11: IO Yes, SQL Yes, lag 0s"
        );
        assert_eq!(s.problem(), None);
    }

    /// A replica's problem in the server's words: errors first, else the thread that does
    /// not run; a cleanly stopped replica is `stopped`.
    #[test]
    fn replicas_say_what_is_wrong() {
        // (IO thread, SQL thread, IO error, SQL error, problem, stopped)
        type Row<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>, bool);
        let table: &[Row] = &[
            ("Yes", "Yes", "", "", None, false),
            (
                "Connecting",
                "Yes",
                "",
                "",
                Some("not receiving (IO thread Connecting)"),
                false,
            ),
            (
                "Yes",
                "No",
                "",
                "",
                Some("not applying (SQL thread No)"),
                false,
            ),
            (
                "No",
                "No",
                "",
                "",
                Some("not receiving (IO thread No)"),
                true,
            ),
            ("", "", "", "", Some("not receiving (IO thread -)"), false),
            (
                "Connecting",
                "Yes",
                "error connecting to master 'repl@db2:3306' - Access denied",
                "",
                Some("IO error: error connecting to master 'repl@db2:3306' - Access denied"),
                false,
            ),
            (
                "No",
                "No",
                "fatal 1236",
                "Duplicate entry\n'1'",
                Some("IO error: fatal 1236; SQL error: Duplicate entry '1'"),
                false,
            ),
        ];
        for (io, sql, io_error, sql_error, problem, stopped) in table {
            let s = ReplicaStatus {
                io_running: io.to_string(),
                sql_running: sql.to_string(),
                last_io_error: io_error.to_string(),
                last_sql_error: sql_error.to_string(),
                ..ReplicaStatus::default()
            };
            assert_eq!(s.problem().as_deref(), *problem, "{io} {sql}");
            assert_eq!(s.stopped(), *stopped, "{io} {sql}");
        }
    }

    #[test]
    fn repointing_statements() {
        let mysql = change_source_sql(Flavor::MySql, "db2.example", 3307, true);
        assert_eq!(
            mysql,
            (
                Some(
                    "CHANGE REPLICATION SOURCE TO SOURCE_HOST='db2.example', SOURCE_PORT=3307, SOURCE_AUTO_POSITION=1"
                        .to_string()
                ),
                "CHANGE MASTER TO MASTER_HOST='db2.example', MASTER_PORT=3307, MASTER_AUTO_POSITION=1"
                    .to_string()
            )
        );
        let maria = change_source_sql(Flavor::MariaDb, "10.0.0.12", 3306, true);
        assert_eq!(
            maria,
            (
                None,
                "CHANGE MASTER TO MASTER_HOST='10.0.0.12', MASTER_PORT=3306, MASTER_USE_GTID=slave_pos"
                    .to_string()
            )
        );
        let (_, keep) = change_source_sql(Flavor::MariaDb, "10.0.0.12", 3306, false);
        assert_eq!(
            keep,
            "CHANGE MASTER TO MASTER_HOST='10.0.0.12', MASTER_PORT=3306"
        );
        let (modern, _) = change_source_sql(Flavor::MySql, "a'b", 1, false);
        assert_eq!(
            modern.as_deref(),
            Some("CHANGE REPLICATION SOURCE TO SOURCE_HOST='a''b', SOURCE_PORT=1")
        );
    }

    /// After a repoint: running from the new source, not yet (connecting), or not without
    /// help.
    #[test]
    fn replicating_from_the_new_source() {
        let status =
            |host: &str, io: &str, sql: &str, io_error: &str, sql_error: &str| ReplicaStatus {
                source_host: host.into(),
                io_running: io.into(),
                sql_running: sql.into(),
                last_io_error: io_error.into(),
                last_sql_error: sql_error.into(),
                ..ReplicaStatus::default()
            };
        let denied = "error connecting to master 'repl@db2:3306' - retry-time: 60 message: Access denied for user 'repl'";
        // (status, verdict: Ok(running) or Err(words in it))
        let table: Vec<(Option<ReplicaStatus>, Result<bool, &str>)> = vec![
            (Some(status("db2", "Yes", "Yes", "", "")), Ok(true)),
            (Some(status("DB2", "Yes", "Yes", "", "")), Ok(true)),
            (Some(status("db2", "Connecting", "Yes", "", "")), Ok(false)),
            (
                Some(status("db2", "Connecting", "Yes", denied, "")),
                Err("Access denied"),
            ),
            (Some(status("db2", "No", "Yes", "", "")), Ok(false)),
            (
                Some(status("db2", "No", "Yes", "Got fatal error 1236", "")),
                Err("fatal error 1236"),
            ),
            (
                Some(status("db2", "Yes", "No", "", "Duplicate entry")),
                Err("SQL error: Duplicate entry"),
            ),
            (
                Some(status("db1", "Yes", "Yes", "", "")),
                Err("it replicates from db1"),
            ),
            (None, Err("no replication configured")),
        ];
        for (s, want) in table {
            let got = replicating_from(s.as_ref(), "db2");
            match (&got, want) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b, "{s:?}"),
                (Err(e), Err(words)) => assert!(e.contains(words), "{e}"),
                _ => panic!("{s:?}: {got:?}"),
            }
        }
        let waiting = status("db2", "Connecting", "Yes", denied, "");
        assert!(waiting.describe().contains("Access denied for user 'repl'"));
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

    /// GTID when the replica replicates by GTID, file and position otherwise, and never
    /// "caught up" for want of a position.
    #[test]
    fn what_to_wait_for() {
        let file = || Some(("mysql-bin.000002".to_string(), 1234));
        let gtid = Position::Gtid("0-1-42".into());
        let at_file = Position::File("mysql-bin.000002".into(), 1234);
        // (gtid, binlog, replica uses GTID, expected)
        let table = [
            ("0-1-42", file(), Some(true), Some(gtid.clone())),
            ("0-1-42", file(), Some(false), Some(at_file.clone())),
            ("0-1-42", file(), None, Some(at_file.clone())),
            ("", file(), Some(true), Some(at_file.clone())),
            ("", file(), Some(false), Some(at_file)),
            ("0-1-42", None, Some(false), Some(gtid.clone())),
            ("0-1-42", None, Some(true), Some(gtid)),
            ("", None, Some(true), None),
            ("  ", None, None, None),
        ];
        for (g, binlog, uses, expected) in table {
            assert_eq!(
                position_to_wait_for(g, binlog.clone(), uses),
                expected,
                "{g:?} {binlog:?} {uses:?}"
            );
        }
        assert_eq!(Position::File("b.1".into(), 7).to_string(), "binlog b.1:7");
    }

    #[test]
    fn wait_answers() {
        let gtid = Position::Gtid("0-1-42".into());
        let file = Position::File("b.1".into(), 7);
        // (position, answer of the wait function, reached)
        let table = [
            (&gtid, Some(0), true),
            (&gtid, Some(-1), false),
            (&gtid, Some(1), false),
            (&gtid, None, false),
            (&file, Some(0), true),
            (&file, Some(12), true),
            (&file, Some(-1), false),
            // The SQL thread is not running: not reached, whatever it had applied.
            (&file, None, false),
        ];
        for (position, answer, reached) in table {
            assert_eq!(
                wait_reached(position, answer),
                reached,
                "{position} {answer:?}"
            );
        }
    }

    #[test]
    fn replicas_say_whether_they_use_gtid() {
        for (column, value, expected) in [
            ("Using_Gtid", "No", Some(false)),
            ("Using_Gtid", "Slave_Pos", Some(true)),
            ("Using_Gtid", "Current_Pos", Some(true)),
            ("Auto_Position", "0", Some(false)),
            ("Auto_Position", "1", Some(true)),
            ("Master_Host", "x", None),
        ] {
            let s = ReplicaStatus::from_columns(&row(&[(column, value)]));
            assert_eq!(s.uses_gtid, expected, "{column}={value}");
        }
    }

    /// Recorded from MariaDB 10.11 (`SHOW PROCESSLIST` during a manual promote) and MySQL 8.
    #[test]
    fn sessions_to_end_are_client_sessions_only() {
        let session = |id: u64, user: &str, command: &str| Session {
            id,
            user: user.into(),
            host: "10.213.0.1:40000".into(),
            command: command.into(),
        };
        let list = [
            session(5, "repl", "Binlog Dump"),
            session(6, "repl", "Binlog Dump GTID"),
            session(7, "system user", "Slave_IO"),
            session(8, "system user", "Slave_SQL"),
            session(9, "event_scheduler", "Daemon"),
            session(10, "root", "Daemon"),
            session(11, "dpadmin", "Query"),
            session(12, "writer", "Sleep"),
            session(13, "writer", "Query"),
            session(14, "root", "Sleep"),
            session(15, "unauthenticated user", "Connect"),
        ];
        let ended: Vec<u64> = sessions_to_end(&list, 11).iter().map(|s| s.id).collect();
        assert_eq!(ended, vec![12, 13, 14, 15]);
        assert_eq!(
            list[12 - 5].describe(),
            "12 writer@10.213.0.1:40000 (Sleep)"
        );
    }

    #[test]
    fn fencing_needs_to_see_and_end_sessions() {
        let maria = "10.11.6-MariaDB-0+deb12u1-log";
        let p =
            |grants: &str| parse_global_privileges(&[format!("GRANT {grants} ON *.* TO `a`@`%`")]);
        // (flavor, version, grants, missing)
        let table: &[(Flavor, &str, &str, &[&str])] = &[
            (Flavor::MariaDb, maria, "PROCESS, CONNECTION ADMIN", &[]),
            (Flavor::MariaDb, maria, "PROCESS, SUPER", &[]),
            (
                Flavor::MariaDb,
                maria,
                "READ_ONLY ADMIN",
                &["PROCESS", "CONNECTION ADMIN"],
            ),
            (Flavor::MariaDb, "10.4.30-MariaDB", "PROCESS", &["SUPER"]),
            (Flavor::MySql, "8.4.2", "PROCESS, CONNECTION_ADMIN", &[]),
            (Flavor::MySql, "8.4.2", "CONNECTION_ADMIN", &["PROCESS"]),
            (Flavor::MySql, "8.0.36", "PROCESS", &["CONNECTION_ADMIN"]),
            (Flavor::MySql, "8.0.36", "ALL PRIVILEGES", &[]),
        ];
        for (flavor, version, grants, missing) in table {
            assert_eq!(
                &missing_fence_privileges(*flavor, version, &p(grants)),
                missing,
                "{flavor:?} {version} {grants}"
            );
        }
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("0-1-42,1-2-3"), "'0-1-42,1-2-3'");
        assert_eq!(quote_literal("a'b\\"), "'a''b\\\\'");
        assert_eq!(
            one_gtid_line(Some("3E11:1-5,\n4F22:1-3".into())),
            "3E11:1-5,4F22:1-3"
        );
        assert_eq!(one_gtid_line(None), "");
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    /// Recorded from MariaDB 10.11 with ssl_cert set (capabilities 0xfffe); the same with
    /// the `CLIENT_SSL` bit cleared is a server without TLS.
    #[test]
    fn greetings_say_whether_tls_is_offered() {
        let hex = "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100080000007761603c4a424a2c00feff080200ff81150000000000001d0000003b27503e233624524f747d37006d7973716c5f6e61746976655f70617373776f726400";
        let mut greeting: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(greeting_offers_tls(&greeting), Some(true));
        let caps = 4 + 1 + "5.5.5-10.11.19-MariaDB-0+deb12u1".len() + 1 + 4 + 8 + 1;
        greeting[caps + 1] &= !0x08;
        assert_eq!(greeting_offers_tls(&greeting), Some(false));
        assert_eq!(greeting_offers_tls(b"\x05\x00\x00\x00\xffabc"), None);
        assert_eq!(greeting_offers_tls(&greeting[..20]), None);
        assert_eq!(greeting_offers_tls(b""), None);
    }

    #[test]
    fn refused_logins_without_tls_say_when_tls_may_be_why() {
        assert!(tls_hint(3159, || false).unwrap().contains("requires TLS"));
        assert!(tls_hint(1045, || true).unwrap().contains("offers TLS"));
        assert_eq!(tls_hint(1045, || false), None);
        assert_eq!(tls_hint(1040, || true), None);
        let tls = Failure::Refused {
            code: TLS_ERROR,
            message: "TLS: x".into(),
        };
        assert_eq!(tls.message(), "TLS: x");
    }

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
