//! The `postgres` monitor: a login over TCP (or TLS) and a few read-only queries:
//! `pg_is_in_recovery()`, a primary's WAL location and timeline, a standby's WAL receiver.
//! A server that answers with an error (a refused login, too many connections, starting up
//! or shutting down) is alive: a problem to report, never a reason to fail over.

use std::path::Path;

use serde::Deserialize;

use super::{
    Durability, Facts, Health, Kind, ObserverProbe, Replica, ReplicationHints, Server, SplitBrain,
};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::position::{Position, Unit};
use crate::postgres::{Client, Failure, Rows, Target};
use crate::settings::Secret;
use crate::tls::Tls;

pub const TYPE: &str = "postgres";

/// What an observer runs: an SSLRequest, which every PostgreSQL answers with one byte (`S`
/// or `N`) before any login; a frozen server accepts the connection and stays silent.
const PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo connected
printf '\000\000\000\010\004\322\026\057' >&3
a=$(head -c 1 <&3)
case "$a" in S|N) echo "SSLRequest answered $a"; exit 0;; esac
echo "connection closed without an answer to SSLRequest"; exit 4"#;

/// A primary's WAL location, and its timeline from the name of the WAL file it writes
/// (`pg_control_checkpoint()` shows the old timeline until the first checkpoint after a
/// promotion); whether its commits wait for a standby: the settings, and how many of its
/// standbys are synchronous now (`sync_state` is hidden from an account without
/// `pg_read_all_stats`, in `pg_monitor`).
const PRIMARY_SQL: &str = "SELECT pg_current_wal_lsn() AS lsn, \
    substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS timeline, \
    current_setting('synchronous_standby_names') AS sync_names, \
    current_setting('synchronous_commit') AS sync_commit, \
    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')) AS sync_standbys, \
    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IS NULL) AS hidden_standbys, \
    current_setting('default_transaction_read_only') AS default_read_only";

/// A standby's replication. Without `pg_read_all_stats` (in `pg_monitor`) the receiver's
/// row shows no status nor sender; the LEFT JOIN keeps a row when there is no receiver.
const STANDBY_SQL: &str = "SELECT pg_last_wal_receive_lsn() AS received, \
    pg_last_wal_replay_lsn() AS applied, r.pid AS receiver, r.status, r.sender_host, r.received_tli, \
    floor(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::bigint AS replay_age \
    FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    database: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone)]
pub struct Postgres {
    pub port: u16,
    pub user: String,
    /// `None`: the server trusts the monitor's address (pg_hba.conf `trust`).
    pub password: Option<Secret>,
    pub database: String,
    pub tls: Option<Tls>,
}

/// Validates the keys of a `postgres` monitor beyond the common ones.
pub fn load(dir: &Path, table: toml::Table) -> Result<Postgres, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let tls = raw.tls.map(|t| load_tls(dir, t)).transpose()?;
    let password = match raw.password_file.as_deref() {
        Some(rel) => Some(load_secret(dir, rel).map_err(|e| Problem::at("password_file", e))?),
        None => None,
    };
    Ok(Postgres {
        port: raw.port.unwrap_or(5432),
        user: raw.user.unwrap_or_else(|| "deadpool".to_string()),
        password,
        database: raw.database.unwrap_or_else(|| "postgres".to_string()),
        tls,
    })
}

impl Kind for Postgres {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    fn unit(&self) -> Unit {
        Unit::Wal
    }

    fn observer_probe(&self, _: &Server) -> ObserverProbe {
        ObserverProbe::Script(PROBE)
    }

    /// A second PostgreSQL server out of recovery cannot be made a standby again in place:
    /// its WAL went its own way. Stopped, it takes no more writes; then it is rebuilt.
    fn split_brain(&self, address: &str) -> SplitBrain {
        SplitBrain {
            state: "is out of recovery, writable".to_string(),
            fix: "second server out of recovery (split brain): stop it (pg_ctl stop -m fast) and rebuild it as a standby".to_string(),
            hint: format!(
                "stop {address} now (pg_ctl stop -m fast), check which writes went where, then rebuild it as a standby of the active server (pg_basebackup, or pg_rewind with wal_log_hints/checksums)"
            ),
        }
    }

    /// A standby follows the server its `primary_conninfo` names, and says how in
    /// `pg_stat_wal_receiver`.
    fn replication_hints(&self, address: &str, active: &str) -> ReplicationHints {
        ReplicationHints {
            wrong_source: format!(
                "repoint {address} to {active}: ALTER SYSTEM SET primary_conninfo = 'host={active} ...' and SELECT pg_reload_conf() on {address} (before PostgreSQL 13, restart it), then pg_stat_wal_receiver there shows sender_host {active}"
            ),
            not_receiving: format!(
                "fix {address}'s streaming from {active} (on {address}: SELECT status, sender_host FROM pg_stat_wal_receiver, no row means no WAL receiver and its log says why: primary_conninfo, {active}'s pg_hba.conf replication entry, the network, a replication slot): until then it serves stale reads and is no candidate"
            ),
            not_candidate: format!(
                "find out why {address} stopped receiving from {active} (pg_stat_wal_receiver, and SELECT pg_last_wal_receive_lsn() on {address} against pg_current_wal_lsn() on {active}); a failover now would pass it over"
            ),
        }
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (host, monitor, timeout) = (server.host.to_string(), self.clone(), server.timeout);
        let probe = move || {
            let target = Target {
                host: &host,
                port: monitor.port,
                user: &monitor.user,
                password: monitor.password.as_ref(),
                database: &monitor.database,
                timeout,
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
        Err(f) => {
            let (health, message) = failed(&f);
            return (health, message, None);
        }
    };
    let product = format!(
        "PostgreSQL {}",
        client.version.split_whitespace().next().unwrap_or("?")
    );
    let up = if client.tls { "up over TLS" } else { "up" };
    let recovery = match client.query("SELECT pg_is_in_recovery() AS recovery") {
        Ok(rows) => rows.first("recovery") == Some("t"),
        Err(f) => {
            let (health, message) = failed(&f);
            return (
                health,
                format!("{product}: reading pg_is_in_recovery(): {message}"),
                None,
            );
        }
    };
    let (sql, what) = if recovery {
        (STANDBY_SQL, "the WAL receiver")
    } else {
        (PRIMARY_SQL, "the WAL location")
    };
    match client.query(sql) {
        Ok(rows) => {
            let facts = if recovery {
                standby_facts(&rows)
            } else {
                primary_facts(&rows)
            };
            let message = describe(&format!("{product} {up}"), &facts);
            (Health::Up, message, Some(facts))
        }
        Err(f @ Failure::Down(_)) => (
            Health::Down,
            format!("{product} stopped answering while reading {what}: {f}"),
            None,
        ),
        // A missing privilege is no reason to call the server down: up, position unknown.
        Err(f) => {
            let facts = Facts {
                read_only: Some(recovery),
                ..Facts::default()
            };
            let role = if recovery { "standby" } else { "primary" };
            (
                Health::Up,
                format!("{product} {up}, {role}, but reading {what} failed: {f}"),
                Some(facts),
            )
        }
    }
}

/// A failed login or query: down when nothing answered, alive with a problem when the
/// server did (pure, for tests).
fn failed(f: &Failure) -> (Health, String) {
    match f {
        Failure::Down(m) => (Health::Down, format!("down: {m}")),
        Failure::Refused(m) => (Health::Degraded, format!("alive but refused: {m}")),
        Failure::Server(e) => {
            let what = match e.code.as_str() {
                "28P01" | "28000" => "refused the login",
                "53300" => "has too many connections",
                "57P03" => "cannot take connections now (starting up, shutting down or recovering)",
                "3D000" => "has no such database",
                _ => "answered with an error",
            };
            (Health::Degraded, format!("alive but {what}: {e}"))
        }
    }
}

/// A primary's facts from [`PRIMARY_SQL`] (pure, for tests): writable, its WAL location.
fn primary_facts(rows: &Rows) -> Facts {
    let timeline = rows
        .first("timeline")
        .and_then(|t| u32::from_str_radix(t, 16).ok());
    Facts {
        read_only: Some(false),
        replication: None,
        position: rows.first("lsn").and_then(|l| Position::lsn(l, timeline)),
        durability: Some(durability(rows)),
        fenced_softly: rows.first("default_read_only") == Some("on"),
    }
}

/// Whether a primary's commits are on a standby before they are acknowledged (pure, for
/// tests): `synchronous_standby_names` set, `synchronous_commit` one that waits for it (the
/// server's default; a client may still lower it for its own transactions), and a standby
/// synchronous now.
fn durability(rows: &Rows) -> Durability {
    let names = rows.first("sync_names").unwrap_or("").trim();
    let commit = rows.first("sync_commit").unwrap_or("on");
    let count = |c: &str| rows.first(c).and_then(|n| n.parse::<u64>().ok());
    let (sync, hidden) = (
        count("sync_standbys"),
        count("hidden_standbys").unwrap_or(0),
    );
    if names.is_empty() {
        return Durability::new(Some(false), "synchronous_standby_names is empty");
    }
    let set = format!("synchronous_standby_names = '{names}'");
    match (commit, sync) {
        ("off" | "local", _) => Durability::new(
            Some(false),
            format!("{set}, but synchronous_commit = {commit}: commits do not wait for a standby"),
        ),
        (_, Some(n)) if n > 0 => Durability::new(
            Some(true),
            format!(
                "{set}, synchronous_commit = {commit}, {n} synchronous standby{}",
                if n == 1 { "" } else { "s" }
            ),
        ),
        _ if hidden > 0 => Durability::new(
            None,
            format!(
                "{set}, but the monitor account cannot see which standby is synchronous: grant it pg_monitor"
            ),
        ),
        _ => Durability::new(
            Some(false),
            format!(
                "{set}, but no standby is synchronous now: commits wait for one, and a commit whose wait is cancelled stays on the primary alone"
            ),
        ),
    }
}

/// A standby's facts from [`STANDBY_SQL`] (pure, for tests). Its locations are its
/// primary's (one WAL for the whole cluster), so they compare with the primary's own. The
/// lag is the age of the last transaction it replayed, 0 once it replayed all it received:
/// an idle primary writes no transactions, and its standby is not behind for that.
fn standby_facts(rows: &Rows) -> Facts {
    let status = rows.first("status").unwrap_or("");
    let receiving = status == "streaming";
    let timeline = rows.first("received_tli").and_then(|t| t.parse().ok());
    let received = rows
        .first("received")
        .and_then(|l| Position::lsn(l, timeline));
    let applied = rows.first("applied").and_then(|l| Position::lsn(l, None));
    let replayed_all = matches!((&received, &applied), (Some(r), Some(a)) if a.has(r));
    let age = rows
        .first("replay_age")
        .and_then(|a| a.parse::<i64>().ok())
        .map(|a| a.max(0).unsigned_abs());
    let lag_seconds = match (receiving, replayed_all) {
        (false, _) => None,
        (true, true) => Some(0),
        (true, false) => age,
    };
    let problem = match (status, rows.first("receiver")) {
        ("streaming", _) => None,
        ("", None) => Some("no WAL receiver: not connected to a primary".to_string()),
        ("", Some(_)) => Some(
            "the WAL receiver's status is hidden from the monitor account: grant it pg_monitor"
                .to_string(),
        ),
        (other, _) => Some(format!("WAL receiver {other}, not streaming")),
    };
    Facts {
        read_only: Some(true),
        replication: Some(Replica {
            source: rows.first("sender_host").unwrap_or("").to_string(),
            receiving,
            received,
            applied,
            lag_seconds,
            problem,
        }),
        position: None,
        durability: None,
        fenced_softly: false,
    }
}

/// The check's message after `PostgreSQL 15.10 up`: `, primary at 0/3000148 (timeline 1)`,
/// `, standby streaming from 10.0.0.11, lag 0s`.
fn describe(product: &str, facts: &Facts) -> String {
    match &facts.replication {
        None => match &facts.position {
            Some(p) => format!("{product}, primary at {}", p.text),
            None => format!("{product}, primary"),
        },
        Some(r) if r.receiving => {
            let source = if r.source.is_empty() {
                "its primary (sender hidden: grant pg_monitor)"
            } else {
                r.source.as_str()
            };
            let lag = r.lag_seconds.map_or("-".to_string(), |s| format!("{s}s"));
            format!("{product}, standby streaming from {source}, lag {lag}")
        }
        Some(r) => format!(
            "{product}, standby, {}",
            r.problem.as_deref().unwrap_or("not streaming")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::ServerError;

    fn rows(pairs: &[(&str, Option<&str>)]) -> Rows {
        Rows {
            columns: pairs.iter().map(|(c, _)| c.to_string()).collect(),
            rows: vec![pairs.iter().map(|(_, v)| v.map(str::to_string)).collect()],
        }
    }

    fn server_error(code: &str) -> Failure {
        Failure::Server(ServerError {
            severity: "FATAL".into(),
            code: code.into(),
            message: "m".into(),
        })
    }

    /// Only silence is down: every answer, even a refusal, is a server alive.
    #[test]
    fn failures_sort_into_down_and_alive() {
        let table: &[(Failure, Health, &str)] = &[
            (
                Failure::Down("127.0.0.1:5432: Connection refused (os error 111)".into()),
                Health::Down,
                "down: 127.0.0.1:5432: Connection refused",
            ),
            (
                Failure::Down("no answer in time (timed out)".into()),
                Health::Down,
                "down: no answer in time",
            ),
            (
                server_error("28P01"),
                Health::Degraded,
                "alive but refused the login: FATAL 28P01",
            ),
            (
                server_error("28000"),
                Health::Degraded,
                "alive but refused the login",
            ),
            (
                server_error("53300"),
                Health::Degraded,
                "alive but has too many connections",
            ),
            (
                server_error("57P03"),
                Health::Degraded,
                "alive but cannot take connections now",
            ),
            (
                server_error("3D000"),
                Health::Degraded,
                "alive but has no such database",
            ),
            (
                server_error("XX000"),
                Health::Degraded,
                "alive but answered with an error",
            ),
            (
                Failure::Refused("TLS: the server's certificate is refused".into()),
                Health::Degraded,
                "alive but refused: TLS",
            ),
        ];
        for (failure, health, words) in table {
            let (h, m) = failed(failure);
            assert_eq!(h, *health, "{failure:?}");
            assert!(m.starts_with(words), "{m}");
        }
    }

    #[test]
    fn primary_facts_give_the_wal_location_and_timeline() {
        let f = primary_facts(&rows(&[
            ("lsn", Some("0/3000148")),
            ("timeline", Some("0000000A")),
        ]));
        assert_eq!(f.read_only, Some(false));
        assert!(f.replication.is_none());
        let p = f.position.unwrap();
        assert_eq!((p.offset, p.timeline), (0x300_0148, Some(10)));
        assert_eq!(
            describe(
                "PostgreSQL 15.10 up",
                &primary_facts(&rows(&[
                    ("lsn", Some("0/5")),
                    ("timeline", Some("00000001"))
                ]))
            ),
            "PostgreSQL 15.10 up, primary at 0/5 (timeline 1)"
        );
    }

    /// A primary's settings and standbys into whether its commits wait for a standby.
    #[test]
    fn durability_from_the_sync_settings() {
        // (names, commit, sync standbys, hidden) -> (guaranteed, how starts with)
        type Row<'a> = (
            (&'a str, &'a str, &'a str, &'a str),
            (Option<bool>, &'a str),
        );
        let table: &[Row] = &[
            (
                ("", "on", "0", "0"),
                (Some(false), "synchronous_standby_names is empty"),
            ),
            (
                (" ", "on", "1", "0"),
                (Some(false), "synchronous_standby_names is empty"),
            ),
            (
                ("FIRST 1 (s2)", "on", "1", "0"),
                (
                    Some(true),
                    "synchronous_standby_names = 'FIRST 1 (s2)', synchronous_commit = on, 1 synchronous standby",
                ),
            ),
            (
                ("ANY 2 (s2, s3)", "remote_apply", "2", "0"),
                (
                    Some(true),
                    "synchronous_standby_names = 'ANY 2 (s2, s3)', synchronous_commit = remote_apply, 2 synchronous standbys",
                ),
            ),
            (
                ("s2", "local", "1", "0"),
                (
                    Some(false),
                    "synchronous_standby_names = 's2', but synchronous_commit = local",
                ),
            ),
            (
                ("*", "off", "1", "0"),
                (
                    Some(false),
                    "synchronous_standby_names = '*', but synchronous_commit = off",
                ),
            ),
            (
                ("s2", "on", "0", "0"),
                (
                    Some(false),
                    "synchronous_standby_names = 's2', but no standby is synchronous now",
                ),
            ),
            (
                ("s2", "on", "0", "1"),
                (
                    None,
                    "synchronous_standby_names = 's2', but the monitor account cannot see",
                ),
            ),
        ];
        for ((names, commit, sync, hidden), (guaranteed, how)) in table {
            let d = durability(&rows(&[
                ("sync_names", Some(*names)),
                ("sync_commit", Some(*commit)),
                ("sync_standbys", Some(*sync)),
                ("hidden_standbys", Some(*hidden)),
            ]));
            assert_eq!(d.guaranteed, *guaranteed, "{names} {commit}");
            assert!(d.how.starts_with(how), "{}", d.how);
        }
        assert!(
            durability(&rows(&[("sync_names", Some(""))]))
                .words()
                .starts_with("asynchronous (synchronous_standby_names is empty): writes the primary acknowledged that no standby had received yet are lost at a failover")
        );
    }

    /// Standby rows as PostgreSQL 15 gives them: streaming, caught up or replaying; a
    /// receiver that waits; none at all; a monitor account without pg_monitor.
    #[test]
    fn standby_facts_from_the_wal_receiver() {
        // (status, sender, received, applied, replay age) ->
        // (receiving, lag, problem, message)
        type Row<'a> = (
            (
                Option<&'a str>,
                Option<&'a str>,
                Option<&'a str>,
                Option<&'a str>,
                Option<&'a str>,
            ),
            (bool, Option<u64>, Option<&'a str>, &'a str),
        );
        let table: &[Row] = &[
            (
                (
                    Some("streaming"),
                    Some("10.0.0.11"),
                    Some("0/3000148"),
                    Some("0/3000148"),
                    Some("3600"),
                ),
                (
                    true,
                    Some(0),
                    None,
                    "standby streaming from 10.0.0.11, lag 0s",
                ),
            ),
            (
                (
                    Some("streaming"),
                    Some("10.0.0.11"),
                    Some("0/3000148"),
                    Some("0/3000000"),
                    Some("7"),
                ),
                (
                    true,
                    Some(7),
                    None,
                    "standby streaming from 10.0.0.11, lag 7s",
                ),
            ),
            (
                (
                    Some("streaming"),
                    Some("10.0.0.11"),
                    Some("0/3000148"),
                    Some("0/3000000"),
                    Some("-2"),
                ),
                (true, Some(0), None, "lag 0s"),
            ),
            (
                (
                    Some("waiting"),
                    None,
                    Some("0/3000148"),
                    Some("0/3000148"),
                    None,
                ),
                (
                    false,
                    None,
                    Some("WAL receiver waiting, not streaming"),
                    "standby, WAL receiver waiting",
                ),
            ),
            (
                (None, None, None, Some("0/3000148"), None),
                (
                    false,
                    None,
                    Some("no WAL receiver: not connected to a primary"),
                    "standby, no WAL receiver",
                ),
            ),
        ];
        for ((status, sender, received, applied, age), (receiving, lag, problem, words)) in table {
            let f = standby_facts(&rows(&[
                ("received", *received),
                ("applied", *applied),
                ("status", *status),
                ("sender_host", *sender),
                ("received_tli", Some("1")),
                ("replay_age", *age),
            ]));
            assert_eq!(f.read_only, Some(true));
            assert!(f.position.is_none());
            let r = f.replication.as_ref().unwrap();
            assert_eq!(
                (r.receiving, r.lag_seconds, r.problem.as_deref()),
                (*receiving, *lag, *problem),
                "{status:?}"
            );
            assert_eq!(
                r.received.as_ref().map(|p| p.timeline),
                received.map(|_| Some(1))
            );
            assert_eq!(r.applied.as_ref().map(|p| p.text.as_str()), *applied);
            let m = describe("PostgreSQL 15.10 up", &f);
            assert!(m.contains(words), "{m}");
        }
        // Without pg_read_all_stats the receiver's row hides its status and sender.
        let hidden = standby_facts(&rows(&[
            ("received", Some("0/1")),
            ("applied", Some("0/1")),
            ("receiver", Some("4242")),
        ]));
        let r = hidden.replication.unwrap();
        assert!(!r.receiving);
        assert!(r.problem.unwrap().contains("grant it pg_monitor"));
    }

    #[test]
    fn loads_with_defaults() {
        let m = load(Path::new("/nonexistent"), toml::Table::new()).unwrap();
        assert_eq!(
            (m.port, m.user.as_str(), m.database.as_str()),
            (5432, "deadpool", "postgres")
        );
        assert!(m.password.is_none() && m.tls.is_none());
        assert_eq!(m.unit(), Unit::Wal);
        assert!(matches!(m.observer_probe(&Server {
            host: "db1",
            pool: "p",
            role: crate::model::Role::PRIMARY,
            timeout: std::time::Duration::from_secs(1),
        }), ObserverProbe::Script(s) if s.contains("SSLRequest")));
    }
}
