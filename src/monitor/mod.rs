//! Monitors: each answers one question about one server — is it up?
//!
//! This module is the registry of monitor types. Each type is one file that owns its TOML
//! table (`load`), its type name, its port and TLS, the probe an observer of the second
//! opinion runs, and its `check`. The only code here that names the types is the closed
//! [`MonitorKind`] enum, the one `match` from the `type` string to a file's `load` (in
//! [`load`]), the one `match` from the enum to its [`Kind`] (in [`MonitorKind::get`]) and
//! [`TYPES`]. Adding a type is one new file and one line in each of those four places (a
//! unit test checks that every name in [`TYPES`] loads as its own type).

pub mod mysql;
pub mod nagios;
pub mod postgres;
pub mod redis;
pub mod tcp;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::load::{duration_or, host_list, toml_msg};
use crate::error::Problem;
use crate::model::{PoolServers, Role};
use crate::settings::{Host, SshSettings};
use crate::tls::Tls;

/// What one check of one server found.
pub use crate::model::Health;

/// The monitor types, as the `type` key names them, for the unknown-type message.
pub const TYPES: &[&str] = &[
    mysql::TYPE,
    postgres::TYPE,
    redis::TYPE,
    tcp::TYPE,
    nagios::TYPE,
];

/// A pool's `[monitor]`: the keys every type has, and the type's own settings.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub timeout: Duration,
    pub kind: MonitorKind,
    /// Observers asked over SSH whether they can reach the primary before a failover.
    pub confirm_from: Vec<Host>,
}

/// One monitor type's validated settings: each variant holds one file's struct.
#[derive(Debug, Clone)]
pub enum MonitorKind {
    /// A MySQL or MariaDB login and a few read-only queries.
    Mysql(mysql::Mysql),
    /// A PostgreSQL login and a few read-only queries.
    Postgres(postgres::Postgres),
    /// A Redis PING and `INFO replication`.
    Redis(redis::Redis),
    /// A TCP connect.
    Tcp(tcp::Tcp),
    /// Any Nagios plugin.
    Nagios(nagios::Nagios),
}

/// What every monitor type answers; [`MonitorKind::get`] gives the one of a monitor.
pub trait Kind: std::fmt::Debug + Send + Sync {
    /// The `type` this monitor is written with.
    fn type_name(&self) -> &'static str;

    /// The port it checks, which observers of a second opinion check too.
    fn port(&self) -> Option<u16>;

    /// Its TLS toward both servers, for `check-config` and the summary.
    fn tls(&self) -> Option<&Tls> {
        None
    }

    /// What `check-config` says about it beyond the checks of both servers, which it always
    /// runs through [`Kind::check`]. None of today's types has more to say.
    fn notes(&self) -> Notes {
        Notes::default()
    }

    /// The kind of stream its positions belong to, for the words of a lag.
    fn unit(&self) -> crate::position::Unit {
        crate::position::Unit::Binlog
    }

    /// What the report says of a standby at `address` that is writable beside the active
    /// server (split brain), in this server kind's terms.
    fn split_brain(&self, address: &str) -> SplitBrain {
        SplitBrain {
            state: "is writable".to_string(),
            fix: "make it read-only (SET GLOBAL read_only = ON)".to_string(),
            hint: format!(
                "make {address} read-only now (MySQL: SET GLOBAL read_only = ON; Redis: REPLICAOF the active server), then check which writes went where"
            ),
        }
    }

    /// What the report's replication findings about a standby at `address` advise, in this
    /// server kind's terms, `active` being the active server's address.
    fn replication_hints(&self, address: &str, active: &str) -> ReplicationHints {
        ReplicationHints {
            wrong_source: format!(
                "repoint {address} to {active} (MySQL: CHANGE MASTER TO MASTER_HOST='{active}', MASTER_USE_GTID=slave_pos; Redis: REPLICAOF {active} PORT)"
            ),
            not_receiving: format!(
                "fix {address}'s replication from {active} (SHOW REPLICA STATUS: the replication account, the network; Redis: masterauth): until then it serves stale reads and is no candidate"
            ),
            not_candidate: format!(
                "find out why {address} stopped receiving from {active} (SHOW REPLICA STATUS; INFO replication); a failover now would pass it over"
            ),
        }
    }

    /// The probe an observer runs toward `server` for a second opinion: proof at this
    /// monitor's protocol level that the server answers.
    fn observer_probe(&self, server: &Server) -> ObserverProbe;

    /// One check of `server`, bounded by `server.timeout`: health, what it saw, and what a
    /// database monitor learned beyond up or down.
    fn check(&self, server: &Server) -> (Health, String, Option<Facts>);
}

/// The server a check or a probe is about, and what a plugin's command line may name.
#[derive(Debug, Clone, Copy)]
pub struct Server<'a> {
    pub host: &'a str,
    pub pool: &'a str,
    pub role: Role,
    /// The monitor's timeout.
    pub timeout: Duration,
}

/// The words of a split-brain finding: what the writable standby is (`is writable`), what
/// to do in the message, and the hint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitBrain {
    pub state: String,
    pub fix: String,
    pub hint: String,
}

/// The hints of the report's findings about a standby's replication: it replicates from
/// another server than the active one, it does not receive from the active one, it is too
/// far behind to be promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationHints {
    pub wrong_source: String,
    pub not_receiving: String,
    pub not_candidate: String,
}

/// A monitor's lines for `check-config`, without the pool's prefix.
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// What the config alone does not show.
    pub lines: Vec<String>,
    /// What is missing on this host.
    pub warnings: Vec<String>,
}

/// What an observer runs for a second opinion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObserverProbe {
    /// A bash script, run as `bash -c SCRIPT HOST PORT`: it prints `connected` once the TCP
    /// connection stands, and what it saw last; exit 0 means the server answered.
    Script(&'static str),
    /// A plugin's argv with its placeholders filled in: exit 0 or 1 means the server
    /// answered.
    Plugin(Vec<String>),
}

impl MonitorKind {
    /// The one `match` from a monitor's settings to its behaviour.
    pub fn get(&self) -> &dyn Kind {
        match self {
            MonitorKind::Mysql(k) => k,
            MonitorKind::Postgres(k) => k,
            MonitorKind::Redis(k) => k,
            MonitorKind::Tcp(k) => k,
            MonitorKind::Nagios(k) => k,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.get().type_name()
    }

    pub fn unit(&self) -> crate::position::Unit {
        self.get().unit()
    }
}

impl Monitor {
    pub fn port(&self) -> Option<u16> {
        self.kind.get().port()
    }

    /// TLS toward both servers, when the monitor talks it.
    pub fn tls(&self) -> Option<&Tls> {
        self.kind.get().tls()
    }

    /// How long the second opinion may take: the observers are asked at once, each with
    /// its SSH login and the probe bounded by the monitor's timeout. Zero without observers.
    pub fn confirm_limit(&self, ssh: &SshSettings) -> Duration {
        if self.confirm_from.is_empty() {
            Duration::ZERO
        } else {
            self.timeout + ssh.connect_timeout * 2 + Duration::from_secs(1)
        }
    }
}

/// The keys every monitor has; the rest of the table goes to the type's own `load`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommon {
    #[serde(rename = "type")]
    kind: String,
    timeout: Option<String>,
    confirm_from: Option<Vec<String>>,
}

/// Keys every monitor type takes, named in the unknown-key message after the type's own.
const COMMON_KEYS: &[&str] = &["timeout", "confirm_from"];

/// Validates a pool's `[monitor]` table (`dir` is the config dir, for relative paths).
pub fn load(dir: &Path, mut table: toml::Table) -> Result<Monitor, Problem> {
    let mut common = toml::Table::new();
    for key in ["type", "timeout", "confirm_from"] {
        if let Some(value) = table.remove(key) {
            common.insert(key.to_string(), value);
        }
    }
    let raw: RawCommon = common
        .try_into()
        .map_err(|e: toml::de::Error| toml_msg(&e))?;
    let timeout = duration_or(&raw.timeout, "2s", "timeout")?;
    let confirm_from = match &raw.confirm_from {
        None => Vec::new(),
        Some(hosts) => host_list(hosts, "confirm_from", false)?,
    };
    let kind = match raw.kind.as_str() {
        mysql::TYPE => MonitorKind::Mysql(mysql::load(dir, table)?),
        postgres::TYPE => MonitorKind::Postgres(postgres::load(dir, table)?),
        redis::TYPE => MonitorKind::Redis(redis::load(dir, table)?),
        tcp::TYPE => MonitorKind::Tcp(tcp::load(table)?),
        nagios::TYPE => MonitorKind::Nagios(nagios::load(dir, table)?),
        other => {
            return Err(Problem::at(
                "type",
                format!(
                    "unknown monitor type `{other}`, expected one of {}",
                    TYPES.join(", ")
                ),
            ));
        }
    };
    if !confirm_from.is_empty() && kind.get().port().is_none() {
        return Err(Problem::at(
            "confirm_from",
            "observers check the primary's port, so this monitor needs `port`",
        ));
    }
    Ok(Monitor {
        timeout,
        kind,
        confirm_from,
    })
}

/// Reads a monitor type's own keys (its `deny_unknown_fields` raw struct) from the rest of
/// the table. A key the type does not take is named with the keys it does take.
fn parse<T: DeserializeOwned>(table: toml::Table, type_name: &str) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            let text = toml_msg(&e);
            // Only the monitor's own table: an error inside `tls` says "in `tls`" after it.
            if text == e.message() {
                unknown_key(&text, type_name).unwrap_or(text)
            } else {
                text
            }
        })
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "there are no fields") in the words of the other config messages.
fn unknown_key(message: &str, type_name: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, expected) = rest.split_once('`')?;
    let mut takes: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    takes.extend(COMMON_KEYS);
    Some(format!(
        "key `{key}` does not apply to a `{type_name}` monitor; a `{type_name}` monitor takes: {}",
        takes.join(", ")
    ))
}

#[derive(Debug, Clone)]
pub struct Check {
    pub health: Health,
    pub message: String,
    pub duration: Duration,
    /// What a database monitor learned beyond up or down.
    pub facts: Option<Facts>,
}

/// Server facts from a database monitor: `read_only` for split-brain detection; where a
/// server is in its primary's stream, for choosing a standby and for what a failover lost.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub read_only: Option<bool>,
    /// What a replica says of its replication; `None` for a server that is no replica.
    pub replication: Option<Replica>,
    /// The server's own position, read when it is not replicating (a primary, or a replica
    /// whose replication was stopped cleanly). `None` also when the monitor account may not
    /// read it: a missing privilege is no reason to call a server down.
    pub position: Option<crate::position::Position>,
    /// A primary's: whether the writes it acknowledges are on a standby too.
    pub durability: Option<Durability>,
    /// A writable server whose sessions default to read-only (PostgreSQL's
    /// `default_transaction_read_only = on`, the soft fence): `BEGIN READ WRITE` still writes.
    pub fenced_softly: bool,
}

/// Whether the writes a primary acknowledges are on a standby before it acknowledges them:
/// synchronous replication (PostgreSQL), semi-synchronous (MySQL, MariaDB), or neither.
/// Plain data, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Durability {
    /// `Some(true)`: a standby has every write before the primary acknowledges it;
    /// `Some(false)`: writes are acknowledged before any standby has them (asynchronous);
    /// `None`: the monitor cannot tell.
    pub guaranteed: Option<bool>,
    /// Why, in the server's terms: `synchronous_standby_names = 'FIRST 1 (s2)', 1 standby
    /// sync`, `semi-sync enabled but not active`.
    pub how: String,
}

impl Durability {
    pub fn new(guaranteed: Option<bool>, how: impl Into<String>) -> Durability {
        Durability {
            guaranteed,
            how: how.into(),
        }
    }

    /// In words for the report and check-config.
    pub fn words(&self) -> String {
        match self.guaranteed {
            Some(true) => format!(
                "writes the primary acknowledges are on a standby first ({})",
                self.how
            ),
            Some(false) => format!(
                "asynchronous ({}): writes the primary acknowledged that no standby had received yet are lost at a failover",
                self.how
            ),
            None => format!("unknown ({})", self.how),
        }
    }
}

/// What a replica says of its replication. Positions are in its primary's coordinates
/// (MySQL reports the primary's binary log file names), so they compare with the primary's
/// own [`Facts::position`]. Plain data, stored as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replica {
    /// The host it replicates from, as the replica names it.
    pub source: String,
    /// Whether it is connected to its source and receiving (MySQL: IO thread `Yes`; Redis:
    /// `master_link_status:up`).
    pub receiving: bool,
    /// How far it has received.
    pub received: Option<crate::position::Position>,
    /// How far it has applied (Redis: as far as it received).
    pub applied: Option<crate::position::Position>,
    /// How far behind its source it says it is (MySQL's `Seconds_Behind_Master`); Redis has
    /// no such figure.
    pub lag_seconds: Option<u64>,
    /// What is wrong, in the server's words: a replication error, a link that is down.
    pub problem: Option<String>,
}

impl Replica {
    /// The host it replicates from, when it names one: a PostgreSQL standby whose WAL
    /// receiver is gone (its primary crashed) names none, which says nothing of where it
    /// replicated from until then.
    pub fn named_source(&self) -> Option<&str> {
        Some(self.source.as_str()).filter(|s| !s.is_empty())
    }
}

/// What a check needs of a pool: its name, its servers and its monitor (`config::Pool`).
pub trait Watched: Sync {
    fn servers(&self) -> PoolServers<'_>;
    fn monitor(&self) -> &Monitor;
}

/// Checks one server of a pool, bounded by the monitor's timeout.
pub fn check(pool: &impl Watched, role: Role) -> Check {
    let monitor = pool.monitor();
    let servers = pool.servers();
    let server = Server {
        host: servers.address(role),
        pool: servers.name,
        role,
        timeout: monitor.timeout,
    };
    let started = std::time::Instant::now();
    let (health, message, facts) = monitor.kind.get().check(&server);
    Check {
        health,
        message: crate::text::one_line(&message),
        duration: started.elapsed(),
        facts,
    }
}

/// Checks every server of a pool at once, each bounded by the monitor's timeout; the
/// checks come back in role order (the configured primary's first).
pub fn check_all(pool: &impl Watched) -> Vec<Check> {
    let roles: Vec<Role> = pool.servers().roles().map(|(r, _)| r).collect();
    check_some(pool, &roles)
}

/// Checks the servers in `roles` of a pool at once, in that order.
pub fn check_some(pool: &impl Watched, roles: &[Role]) -> Vec<Check> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (roles.iter())
            .map(|role| s.spawn(move || check(pool, *role)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Check {
                    health: Health::Down,
                    message: "monitor thread panicked".into(),
                    duration: Duration::ZERO,
                    facts: None,
                })
            })
            .collect()
    })
}

/// Runs a database probe on its own thread, bounded by `timeout` plus a small margin: the
/// client's own connect, read and write timeouts bound each call, this bounds them all.
pub fn bounded_probe(
    timeout: Duration,
    probe: impl FnOnce() -> (Health, String, Option<Facts>) + Send + 'static,
) -> (Health, String, Option<Facts>) {
    match crate::remote::with_deadline(timeout + Duration::from_millis(250), probe) {
        Some(result) => result,
        None => (
            Health::Down,
            format!("no answer within {}ms", timeout.as_millis()),
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A standby without a WAL receiver names no source: unknown, never "another server".
    #[test]
    fn an_empty_source_is_no_source() {
        let replica = |source: &str| Replica {
            source: source.to_string(),
            receiving: false,
            received: None,
            applied: None,
            lag_seconds: None,
            problem: None,
        };
        assert_eq!(replica("").named_source(), None);
        assert_eq!(replica("10.0.0.1").named_source(), Some("10.0.0.1"));
    }

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    /// Every name in `TYPES` reaches its own type's `load`: it is never "unknown", and a
    /// table it accepts loads as that type.
    #[test]
    fn every_listed_type_loads_as_itself() {
        let dir = Path::new("/nonexistent");
        for name in TYPES {
            match load(dir, table(&format!("type = \"{name}\"\nport = 1"))) {
                Ok(m) => assert_eq!(m.kind.type_name(), *name),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!e.contains("unknown monitor type"), "{name}: {e}");
                }
            }
        }
    }

    #[test]
    fn unknown_keys_name_what_the_type_takes() {
        let dir = Path::new("/nonexistent");
        let e = load(dir, table("type = \"tcp\"\nport = 1\ncommand = \"x\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "key `command` does not apply to a `tcp` monitor; a `tcp` monitor takes: port, timeout, confirm_from"
        );
        let e = load(
            dir,
            table("type = \"tcp\"\nport = 22\ntls = { ca_file = \"a\" }"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("key `tls` does not apply to a `tcp` monitor"),
            "{e}"
        );
        let e = load(dir, table("type = \"memcached\""))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "key `type`: unknown monitor type `memcached`, expected one of mysql, postgres, redis, tcp, nagios"
        );
        let e = load(dir, table("port = 1")).unwrap_err().to_string();
        assert!(e.contains("missing field `type`"), "{e}");
    }

    #[test]
    fn every_shape_of_the_unknown_field_message() {
        let words = |m: &str| unknown_key(m, "x").unwrap();
        assert!(
            words("unknown field `a`, expected `b`").ends_with("takes: b, timeout, confirm_from")
        );
        assert!(
            words("unknown field `a`, expected `b` or `c`")
                .ends_with("takes: b, c, timeout, confirm_from")
        );
        assert!(
            words("unknown field `a`, expected one of `b`, `c`, `d`")
                .ends_with("takes: b, c, d, timeout, confirm_from")
        );
        assert!(
            words("unknown field `a`, there are no fields")
                .ends_with("takes: timeout, confirm_from")
        );
        assert_eq!(unknown_key("invalid type: string", "x"), None);
    }

    #[test]
    fn nested_tables_keep_their_own_message() {
        let dir = Path::new("/nonexistent");
        let e = load(
            dir,
            table("type = \"redis\"\ntls = { ca_file = \"a\", colour = 1 }"),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("does not apply"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn each_database_has_its_own_observer_probe() {
        let server = Server {
            host: "db1",
            pool: "p",
            role: Role::PRIMARY,
            timeout: Duration::from_secs(1),
        };
        let script = |kind: &dyn Kind| match kind.observer_probe(&server) {
            ObserverProbe::Script(s) => s,
            ObserverProbe::Plugin(argv) => panic!("a plugin: {argv:?}"),
        };
        let mysql = mysql::Mysql {
            port: 3306,
            user: "u".into(),
            password: crate::settings::Secret::new("x".into()),
            tls: None,
        };
        assert!(script(&mysql).contains("server greeting"));
        let postgres = postgres::load(Path::new("/nonexistent"), toml::Table::new()).unwrap();
        assert!(script(&postgres).contains("SSLRequest"));
        let mut redis = redis::Redis {
            access: crate::redis::RedisAccess {
                port: 6379,
                user: None,
                password: None,
                tls: None,
            },
        };
        assert!(script(&redis).contains("PING"));
        let tls = load(
            Path::new("/nonexistent"),
            table("type = \"redis\"\ntls = { verify = \"none\" }"),
        )
        .unwrap();
        redis.access.tls = tls.tls().cloned();
        assert!(script(&redis).contains("TLS alert"));
        assert!(!script(&tcp::Tcp { port: 1 }).contains("greeting"));
        let nagios = nagios::Nagios {
            argv: vec![
                "/p".into(),
                "-H".into(),
                "{host}:{port}".into(),
                "{pool}/{role}".into(),
            ],
            port: Some(5),
        };
        assert_eq!(
            nagios.observer_probe(&server),
            ObserverProbe::Plugin(vec![
                "/p".into(),
                "-H".into(),
                "db1:5".into(),
                "p/primary".into()
            ])
        );
    }

    #[test]
    fn confirm_from_needs_a_port() {
        let dir = Path::new("/nonexistent");
        let e = load(
            dir,
            table("type = \"nagios\"\ncommand = \"/bin/true\"\nconfirm_from = [\"app1\"]"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("so this monitor needs `port`"), "{e}");
        let m = load(
            dir,
            table("type = \"tcp\"\nport = 5\nconfirm_from = [\"app1\"]"),
        )
        .unwrap();
        assert_eq!(m.port(), Some(5));
        assert_eq!(m.kind.type_name(), "tcp");
    }
}
