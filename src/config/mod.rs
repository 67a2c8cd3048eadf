//! Configuration: TOML files parsed and validated into a plain [`Config`] that cannot hold
//! invalid values. Every check happens here, before any lock, database or network call.

pub mod load;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
pub use crate::settings::{
    Host, Secret, SshAuth, SshSettings, format_duration, is_safe_name, parse_duration,
    validate_host,
};
use load::{
    RawSsh, RawTls, check_placeholders, duration_or, host_list, line_of, line_suffix, lines_of,
    load_tls, mysql_tls, read_file, resolve_program, scalar_text, ssh_settings, step_ssh, toml_msg,
};
pub use load::{check_secret_file, load_secret};

pub const DEFAULT_DIR: &str = "/etc/deadpool";

#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub tick_interval: Duration,
    pub system_check_interval: Duration,
    pub stale_warning: Duration,
    pub stale_critical: Duration,
    pub history_retention: Duration,
    /// Where each tick writes its metrics for node_exporter's textfile collector.
    pub prometheus_textfile: Option<PathBuf>,
    /// The `[ssh]` defaults, used by `confirm_from` and by steps that do not override them.
    pub ssh: SshSettings,
    pub pools: Vec<Pool>,
    /// `[cluster]`: several watcher hosts coordinated through etcd (see `src/cluster/`).
    pub cluster: Option<crate::cluster::settings::Settings>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub file: PathBuf,
    pub primary: String,
    pub secondary: String,
    pub max_failed_checks: u32,
    /// Time-based confirmation of an outage: how long the active server must stay down
    /// (re-checked every `recheck_interval` within one tick) before the failover starts.
    /// Replaces `max_failed_checks` when set.
    pub down_for: Option<Duration>,
    pub recheck_interval: Duration,
    pub monitor: Monitor,
    pub steps: Vec<Step>,
}

pub use crate::monitor::{Monitor, RedisAccess};
pub use crate::tls::Tls;

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub timeout: Duration,
    pub on_failure: OnFailure,
    pub kind: StepKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    Abort,
    Continue,
}

#[derive(Debug, Clone)]
pub enum StepKind {
    MysqlPromote(MysqlPromote),
    Plugin {
        program: PathBuf,
        /// Every other key of the `[[protocol]]` table, as `DEADPOOL_OPT_<KEY>` values.
        options: Vec<PluginOption>,
    },
    Exec {
        hosts: Vec<Host>,
        test_command: Option<String>,
        exec_command: String,
        shell: bool,
        ssh: SshSettings,
    },
    EtcHosts(EtcHosts),
    Vip(Vip),
    RedisPromote(RedisPromote),
    Dns(Dns),
    Haproxy(Haproxy),
}

#[derive(Debug, Clone)]
pub struct RedisPromote {
    pub access: RedisAccess,
    /// How long a manual promote waits for the replica to reach the old primary's offset.
    pub catch_up_timeout: Duration,
    /// Readiness: no replication I/O for longer than this is a warning.
    pub max_lag: Duration,
}

#[derive(Debug, Clone)]
pub struct EtcHosts {
    /// The name the applications use for the service.
    pub service_host_name: String,
    pub client_hosts: Vec<Host>,
    pub hosts_file: String,
    /// Path of `deadpool` on the clients.
    pub helper: String,
    pub ssh: SshSettings,
}

#[derive(Debug, Clone)]
pub struct Vip {
    pub address: std::net::IpAddr,
    pub prefix: u8,
    pub interface: String,
    pub arping_count: u32,
    /// How deadpool reaches the two servers.
    pub ssh: SshSettings,
}

/// What each of a pool's two servers is called elsewhere: a DNS record's value, an HAProxy
/// server's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerServer {
    pub primary: String,
    pub secondary: String,
}

impl PerServer {
    /// The name for the pool server at `address` (the pool's `primary` or `secondary`).
    pub fn of(&self, pool: &Pool, address: &str) -> &str {
        if address == pool.primary {
            &self.primary
        } else {
            &self.secondary
        }
    }
}

/// The `dns` step: an RFC 2136 dynamic update of one record at the zone's primary server,
/// signed with TSIG.
#[derive(Debug, Clone)]
pub struct Dns {
    /// The zone's primary server (host name or address), which accepts updates.
    pub server: String,
    pub port: u16,
    /// Absolute, lower case, with the final dot.
    pub zone: String,
    /// The record's owner name: absolute, lower case, inside `zone`.
    pub service_host_name: String,
    pub record: DnsRecord,
    /// The TTL written with the new record, in seconds.
    pub ttl: u32,
    /// Readiness: a record with a longer TTL is a warning, in seconds.
    pub max_ttl: u32,
    /// The record's value for each server: their addresses unless `values` is set.
    pub values: PerServer,
    pub tsig: Tsig,
    /// Resolvers asked by the readiness check what they answer for the name.
    pub verify_servers: Vec<(String, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecord {
    A,
    Aaaa,
    Cname,
}

impl DnsRecord {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecord::A => "A",
            DnsRecord::Aaaa => "AAAA",
            DnsRecord::Cname => "CNAME",
        }
    }
}

/// A TSIG key: its name and algorithm as the server knows them, and the secret.
#[derive(Debug, Clone)]
pub struct Tsig {
    pub name: String,
    pub algorithm: String,
    /// Base64, as in the server's `key` statement.
    pub secret: Secret,
    pub secret_file: PathBuf,
}

/// TSIG algorithms that BIND's `nsupdate` signs with.
pub const TSIG_ALGORITHMS: &[&str] = &[
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
];

/// The `haproxy` step: switches a backend's servers through HAProxy's runtime API.
#[derive(Debug, Clone)]
pub struct Haproxy {
    pub backend: String,
    /// The HAProxy server name of each pool server.
    pub servers: PerServer,
    /// One HAProxy each; every one is switched.
    pub sockets: Vec<HaproxySocket>,
    /// What the server being left becomes.
    pub standby_state: StandbyState,
    /// For sockets reached through SSH.
    pub ssh: SshSettings,
}

/// Where one HAProxy's stats socket is, and how deadpool reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaproxySocket {
    /// `/run/haproxy/admin.sock`: a unix socket on the deadpool host.
    Unix(String),
    /// `10.0.0.9:9999`: a TCP socket, connected from the deadpool host.
    Tcp { host: String, port: u16 },
    /// `lb1:/run/haproxy/admin.sock`: a unix socket on `host`, through an SSH channel.
    SshUnix { host: String, path: String },
    /// `lb1:127.0.0.1:9999`: a TCP socket as `host` sees it, through an SSH channel.
    SshTcp {
        host: String,
        target: String,
        port: u16,
    },
}

impl HaproxySocket {
    /// Parses one `sockets` entry (the forms above; IPv6 addresses in brackets).
    pub fn parse(s: &str) -> Result<HaproxySocket, String> {
        let expected = || {
            format!(
                "`{s}`: expected a unix socket path (/run/haproxy/admin.sock), HOST:PORT, or through SSH HOST:/PATH or HOST:ADDRESS:PORT"
            )
        };
        if s.starts_with('/') {
            return unix_socket_path(s).map(|p| HaproxySocket::Unix(p.to_string()));
        }
        let (host, rest) = split_host(s).ok_or_else(expected)?;
        validate_host(host).map_err(|e| format!("`{s}`: {e}"))?;
        if rest.starts_with('/') {
            let path = unix_socket_path(rest)?;
            return Ok(HaproxySocket::SshUnix {
                host: host.to_string(),
                path: path.to_string(),
            });
        }
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(HaproxySocket::Tcp {
                host: host.to_string(),
                port: port_number(rest).ok_or_else(expected)?,
            });
        }
        let (target, port) = split_host(rest).ok_or_else(expected)?;
        validate_host(target).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(HaproxySocket::SshTcp {
            host: host.to_string(),
            target: target.to_string(),
            port: port_number(port).ok_or_else(expected)?,
        })
    }

    /// The SSH host it is reached through, if any.
    pub fn ssh_host(&self) -> Option<&str> {
        match self {
            HaproxySocket::SshUnix { host, .. } | HaproxySocket::SshTcp { host, .. } => Some(host),
            HaproxySocket::Unix(_) | HaproxySocket::Tcp { .. } => None,
        }
    }
}

impl std::fmt::Display for HaproxySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bracket = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_string()
            }
        };
        match self {
            HaproxySocket::Unix(path) => f.write_str(path),
            HaproxySocket::Tcp { host, port } => write!(f, "{}:{port}", bracket(host)),
            HaproxySocket::SshUnix { host, path } => write!(f, "{}:{path}", bracket(host)),
            HaproxySocket::SshTcp { host, target, port } => {
                write!(f, "{}:{}:{port}", bracket(host), bracket(target))
            }
        }
    }
}

/// `host:rest` or `[v6]:rest`: the host and what follows its colon.
fn split_host(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, rest) = inner.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    s.split_once(':')
}

fn port_number(s: &str) -> Option<u16> {
    s.parse().ok().filter(|p| *p > 0)
}

/// An absolute unix socket path that fits in `sun_path`.
fn unix_socket_path(path: &str) -> Result<&str, String> {
    if !path.starts_with('/') || path.len() > 107 || path.contains('\0') {
        return Err(format!(
            "`{path}`: expected an absolute unix socket path of at most 107 bytes"
        ));
    }
    if path.contains(char::is_whitespace) || path.contains(';') {
        return Err(format!(
            "`{path}`: a socket path with spaces or `;` is not supported"
        ));
    }
    Ok(path)
}

/// What the `haproxy` step makes of the server being left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyState {
    /// No new connections, and its sessions are shut down.
    Maint,
    /// No new connections; its sessions go on until they end.
    Drain,
}

impl StandbyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StandbyState::Maint => "maint",
            StandbyState::Drain => "drain",
        }
    }
}

#[derive(Debug, Clone)]
pub struct MysqlPromote {
    pub user: String,
    pub password: Secret,
    pub port: u16,
    /// How long promotion waits for the replica to apply what it has received.
    pub catch_up_timeout: Duration,
    /// Readiness: replication lag above this is a warning.
    pub max_lag: Duration,
    /// `RESET REPLICA ALL` on the promoted server, so it forgets its old source.
    pub reset_replica: bool,
    /// TLS toward both servers: the step's own `tls` table, else the monitor's.
    pub tls: Option<Tls>,
}

/// What a monitor's check needs of a pool.
impl crate::monitor::Watched for Pool {
    fn pool_name(&self) -> &str {
        &self.name
    }

    fn server(&self, role: crate::model::Role) -> &str {
        self.address(role)
    }

    fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

impl Pool {
    pub fn address(&self, role: crate::model::Role) -> &str {
        match role {
            crate::model::Role::Primary => &self.primary,
            crate::model::Role::Secondary => &self.secondary,
        }
    }

    /// When the pool fails over, in words.
    pub fn threshold(&self) -> String {
        match self.down_for {
            Some(d) => format!(
                "once the active server is down for {} (re-checked every {})",
                format_duration(d),
                format_duration(self.recheck_interval)
            ),
            None => format!("after {} failed checks", self.max_failed_checks),
        }
    }

    /// How long confirming an outage can take within one tick: `down_for`, and the last
    /// re-check, which may start just before it ends.
    pub fn confirm_outage_timeout(&self) -> Duration {
        self.down_for
            .map_or(Duration::ZERO, |d| d + self.monitor.timeout)
    }

    /// The longest one failover of this pool can take in a tick: the round's check of both
    /// servers (in parallel), the second opinion, every preflight and every action one
    /// after another (each bounded by its step's one deadline), then the readiness checks
    /// of the new orientation (in parallel).
    pub fn worst_case(&self, ssh: &SshSettings) -> Duration {
        self.monitor.timeout
            + self.confirm_outage_timeout()
            + self.monitor.confirm_limit(ssh)
            + self.steps_timeout() * 2
            + self.readiness_timeout()
    }

    /// The longest a pool's readiness checks take: they run at the same time, beside
    /// detection.
    pub fn readiness_timeout(&self) -> Duration {
        self.steps
            .iter()
            .map(|s| s.timeout)
            .max()
            .unwrap_or_default()
    }

    /// The longest a tick that does not fail over can spend on this pool: a round's check,
    /// and the readiness checks running beside the rounds.
    pub fn worst_case_watching(&self) -> Duration {
        self.monitor.timeout.max(self.readiness_timeout())
    }

    fn steps_timeout(&self) -> Duration {
        self.steps.iter().map(|s| s.timeout).sum()
    }
}

impl Step {
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            StepKind::MysqlPromote(_) => "mysql_promote",
            StepKind::Plugin { .. } => "plugin",
            StepKind::Exec { .. } => "exec",
            StepKind::EtcHosts(_) => "etc_hosts",
            StepKind::Vip(_) => "vip",
            StepKind::RedisPromote(_) => "redis_promote",
            StepKind::Dns(_) => "dns",
            StepKind::Haproxy(_) => "haproxy",
        }
    }
}

impl Config {
    /// The config dir: `--config`, else `$DEADPOOL_CONFIG`, else `/etc/deadpool`.
    pub fn locate(flag: Option<&Path>) -> PathBuf {
        if let Some(dir) = flag {
            return dir.to_path_buf();
        }
        match std::env::var_os("DEADPOOL_CONFIG") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(DEFAULT_DIR),
        }
    }

    /// Reads and validates the whole config dir. Errors name the file, the key and what was
    /// expected.
    pub fn load(dir: &Path) -> Result<Config, Error> {
        let main_file = dir.join("deadpool.toml");
        let text = read_file(
            &main_file,
            "run `deadpool init` to write an example config dir",
        )?;
        let raw: RawInstance = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", main_file.display(), toml_msg(&e))))?;
        let at = |key: &str| format!("{}: key `{key}`", main_file.display());

        let state_dir = match raw.state_dir.as_deref() {
            None => PathBuf::from("/var/lib/deadpool"),
            Some("") => {
                return Err(Error::Config(format!(
                    "{}: expected a directory path",
                    at("state_dir")
                )));
            }
            Some(p) => dir.join(p),
        };
        let tick_interval = duration_or(&raw.tick_interval, "5s", &at("tick_interval"))?;
        let system_check_interval = duration_or(
            &raw.system_check_interval,
            "30s",
            &at("system_check_interval"),
        )?;
        let stale_warning = match &raw.stale_warning {
            Some(v) => parse_duration(v)
                .map_err(|e| Error::Config(format!("{}: {e}", at("stale_warning"))))?,
            None => tick_interval * 3,
        };
        let stale_critical = match &raw.stale_critical {
            Some(v) => parse_duration(v)
                .map_err(|e| Error::Config(format!("{}: {e}", at("stale_critical"))))?,
            None => tick_interval * 10,
        };
        if stale_critical < stale_warning {
            return Err(Error::Config(format!(
                "{}: stale_critical ({}) must not be shorter than stale_warning ({})",
                main_file.display(),
                format_duration(stale_critical),
                format_duration(stale_warning)
            )));
        }
        let history_retention =
            duration_or(&raw.history_retention, "90d", &at("history_retention"))?;
        let ssh = ssh_settings(dir, raw.ssh.unwrap_or_default(), None)
            .map_err(|e| Error::Config(format!("{}: [ssh]: {e}", main_file.display())))?;

        let cluster = match raw.cluster {
            None => None,
            Some(table) => Some(
                crate::cluster::settings::Settings::parse(dir, table, tick_interval).map_err(
                    |e| Error::Config(format!("{}: [cluster]: {e}", main_file.display())),
                )?,
            ),
        };
        let pools = load_pools(dir, &ssh)?;
        Ok(Config {
            dir: dir.to_path_buf(),
            state_dir,
            tick_interval,
            system_check_interval,
            stale_warning,
            stale_critical,
            history_retention,
            prometheus_textfile: match raw.prometheus_textfile.as_deref() {
                None => None,
                Some(p) if p.ends_with(".prom") => Some(dir.join(p)),
                Some(p) => {
                    return Err(Error::Config(format!(
                        "{}: key `prometheus_textfile`: `{p}`: node_exporter reads only files ending in .prom",
                        main_file.display()
                    )));
                }
            },
            ssh,
            pools,
            cluster,
        })
    }

    pub fn pool(&self, name: &str) -> Result<&Pool, Error> {
        self.pools.iter().find(|p| p.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.pools.iter().map(|p| p.name.as_str()).collect();
            Error::Usage(format!(
                "no pool named `{name}` in {}; configured pools: {}",
                self.dir.join("pools").display(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// The longest one tick can take: pools run in parallel.
    pub fn worst_case_tick(&self) -> Duration {
        self.pools
            .iter()
            .map(|p| p.worst_case(&self.ssh))
            .max()
            .unwrap_or_default()
    }

    /// The longest one tick that fails nothing over can take.
    pub fn worst_case_watching(&self) -> Duration {
        self.pools
            .iter()
            .map(Pool::worst_case_watching)
            .max()
            .unwrap_or_default()
    }

    /// Every SSH setting some step or observer logs in with, named for messages.
    pub fn ssh_in_use(&self) -> Vec<(String, &SshSettings)> {
        let mut used = Vec::new();
        for pool in &self.pools {
            if !pool.monitor.confirm_from.is_empty() {
                used.push((format!("pool {}: confirm_from", pool.name), &self.ssh));
            }
            for step in &pool.steps {
                let ssh = match &step.kind {
                    StepKind::Exec { hosts, ssh, .. }
                        if hosts.iter().any(|h| *h != Host::Local) =>
                    {
                        ssh
                    }
                    StepKind::EtcHosts(e) if e.client_hosts.iter().any(|h| *h != Host::Local) => {
                        &e.ssh
                    }
                    StepKind::Vip(v) => &v.ssh,
                    StepKind::Haproxy(h) if h.sockets.iter().any(|s| s.ssh_host().is_some()) => {
                        &h.ssh
                    }
                    _ => continue,
                };
                used.push((format!("pool {}: step `{}`", pool.name, step.name), ssh));
            }
        }
        used
    }

    /// How long `promote` and `reset` wait for a running tick to release the lock.
    pub fn lock_wait(&self) -> Duration {
        self.worst_case_tick() + Duration::from_secs(5)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    state_dir: Option<String>,
    tick_interval: Option<String>,
    system_check_interval: Option<String>,
    stale_warning: Option<String>,
    stale_critical: Option<String>,
    history_retention: Option<String>,
    prometheus_textfile: Option<String>,
    ssh: Option<RawSsh>,
    cluster: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Option<String>,
    primary: String,
    secondary: String,
    max_failed_checks: Option<i64>,
    down_for: Option<String>,
    recheck_interval: Option<String>,
    monitor: toml::Table,
    #[serde(default)]
    protocol: Vec<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMysqlPromote {
    user: String,
    password_file: String,
    port: Option<u16>,
    catch_up_timeout: Option<String>,
    max_lag: Option<String>,
    #[serde(default)]
    reset_replica: bool,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExec {
    hosts: Vec<String>,
    test_command: Option<String>,
    exec_command: String,
    #[serde(default)]
    shell: bool,
    ssh: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisPromote {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    catch_up_timeout: Option<String>,
    max_lag: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcHosts {
    service_host_name: String,
    client_hosts: Vec<String>,
    hosts_file: Option<String>,
    helper: Option<String>,
    ssh: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVip {
    address: String,
    interface: String,
    arping_count: Option<u32>,
    ssh: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    server: String,
    port: Option<u16>,
    zone: String,
    service_host_name: String,
    record: Option<String>,
    ttl: Option<String>,
    max_ttl: Option<String>,
    values: Option<RawPerServer>,
    tsig_key: String,
    tsig_algorithm: Option<String>,
    tsig_secret_file: String,
    verify_servers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerServer {
    primary: String,
    secondary: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    backend: String,
    servers: RawPerServer,
    sockets: Vec<String>,
    standby_state: Option<String>,
    ssh: Option<RawSsh>,
}

fn load_pools(dir: &Path, ssh: &SshSettings) -> Result<Vec<Pool>, Error> {
    let pools_dir = dir.join("pools");
    let mut files = Vec::new();
    match std::fs::read_dir(&pools_dir) {
        Ok(entries) => {
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::Config(format!("{}: {e}", pools_dir.display())))?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Config(format!("{}: {e}", pools_dir.display()))),
    }
    files.sort();
    let mut pools: Vec<Pool> = Vec::new();
    for file in files {
        let pool = load_pool(dir, &file, ssh)?;
        if let Some(other) = pools.iter().find(|p| p.name == pool.name) {
            return Err(Error::Config(format!(
                "{}: pool name `{}` is already used by {}; pool names must be unique (set `name` in one of them)",
                file.display(),
                pool.name,
                other.file.display()
            )));
        }
        pools.push(pool);
    }
    Ok(pools)
}

fn load_pool(dir: &Path, file: &Path, ssh: &SshSettings) -> Result<Pool, Error> {
    let text = read_file(file, "")?;
    let raw: RawPool = toml::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: {}", file.display(), toml_msg(&e))))?;
    let err =
        |key: &str, msg: String| Error::Config(format!("{}: key `{key}`: {msg}", file.display()));

    let name = match raw.name {
        Some(n) => n,
        None => file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    };
    if !is_safe_name(&name) {
        return Err(err(
            "name",
            format!("pool name `{name}`: expected letters, digits, `-`, `_`, `.`"),
        ));
    }
    for (key, host) in [("primary", &raw.primary), ("secondary", &raw.secondary)] {
        validate_host(host).map_err(|m| err(key, m))?;
    }
    if raw.primary == raw.secondary {
        return Err(err(
            "secondary",
            format!(
                "`{}` is also the primary; a pool needs two different servers",
                raw.secondary
            ),
        ));
    }
    let max_failed_checks = match raw.max_failed_checks {
        None => 3,
        Some(n) if (1..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(err(
                "max_failed_checks",
                format!("got {n}, expected a whole number of at least 1"),
            ));
        }
    };
    if raw.down_for.is_some() && raw.max_failed_checks.is_some() {
        return Err(err(
            "down_for",
            "set either `max_failed_checks` (a count of ticks) or `down_for` (a time), not both"
                .to_string(),
        ));
    }
    let down_for = match &raw.down_for {
        None => None,
        Some(d) => Some(parse_duration(d).map_err(|m| err("down_for", m))?),
    };
    if raw.recheck_interval.is_some() && down_for.is_none() {
        return Err(err(
            "recheck_interval",
            "re-checks belong to `down_for`; set `down_for` too, or remove `recheck_interval`"
                .to_string(),
        ));
    }
    let recheck_interval = match &raw.recheck_interval {
        None => Duration::from_millis(250),
        Some(d) => parse_duration(d).map_err(|m| err("recheck_interval", m))?,
    };
    if let Some(d) = down_for
        && (recheck_interval < Duration::from_millis(50) || recheck_interval > d)
    {
        return Err(err(
            "recheck_interval",
            format!(
                "got {}, expected at least 50ms and at most `down_for` ({})",
                format_duration(recheck_interval),
                format_duration(d)
            ),
        ));
    }
    let monitor_line = line_of(&text, |l| l == "[monitor]");
    let monitor = crate::monitor::load(dir, raw.monitor).map_err(|m| {
        Error::Config(format!(
            "{}: [monitor]{}: {m}",
            file.display(),
            line_suffix(monitor_line)
        ))
    })?;
    let step_lines = lines_of(&text, |l| l.replace(' ', "") == "[[protocol]]");
    let mut steps = Vec::new();
    for (i, table) in raw.protocol.into_iter().enumerate() {
        let servers = (raw.primary.as_str(), raw.secondary.as_str());
        let step = load_step(dir, table, &monitor, ssh, servers).map_err(|m| {
            Error::Config(format!(
                "{}: [[protocol]] {}{}: {m}",
                file.display(),
                i + 1,
                line_suffix(step_lines.get(i).copied())
            ))
        })?;
        steps.push(step);
    }
    if steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::EtcHosts(_)))
    {
        for (key, host) in [("primary", &raw.primary), ("secondary", &raw.secondary)] {
            if host.parse::<std::net::IpAddr>().is_err() {
                return Err(err(
                    key,
                    format!(
                        "`{host}`: an `etc_hosts` step writes addresses into hosts files, so the servers must be given as IP addresses"
                    ),
                ));
            }
        }
    }
    Ok(Pool {
        name,
        file: file.to_path_buf(),
        primary: raw.primary,
        secondary: raw.secondary,
        max_failed_checks,
        down_for,
        recheck_interval,
        monitor,
        steps,
    })
}

fn load_step(
    dir: &Path,
    mut table: toml::Table,
    monitor: &Monitor,
    ssh: &SshSettings,
    servers: (&str, &str),
) -> Result<Step, String> {
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(_) => return Err("key `type`: expected a string".into()),
        None => return Err("key `type` is missing: expected one of mysql_promote, etc_hosts, vip, dns, haproxy, exec, plugin, redis_promote".into()),
    };
    let name = match table.remove("name") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => return Err("key `name`: expected a non-empty string".into()),
        None => kind.clone(),
    };
    let timeout = match table.remove("timeout") {
        Some(toml::Value::String(s)) => {
            parse_duration(&s).map_err(|e| format!("key `timeout`: {e}"))?
        }
        Some(_) => return Err("key `timeout`: expected a duration string like \"60s\"".into()),
        None => Duration::from_secs(60),
    };
    let on_failure = match table.remove("on_failure") {
        None => OnFailure::Abort,
        Some(toml::Value::String(s)) if s == "abort" => OnFailure::Abort,
        Some(toml::Value::String(s)) if s == "continue" => OnFailure::Continue,
        Some(v) => {
            let got = scalar_text(&v).unwrap_or_else(|| v.type_str().to_string());
            return Err(format!(
                "key `on_failure`: got {got}, expected \"abort\" or \"continue\""
            ));
        }
    };
    let kind = match kind.as_str() {
        "plugin" => {
            let command = match table.remove("command") {
                Some(toml::Value::String(s)) if !s.is_empty() => s,
                Some(_) => return Err("key `command`: expected the plugin's path".into()),
                None => return Err("key `command`: a `plugin` step needs a command".into()),
            };
            let program =
                resolve_program(dir, &command, &[]).map_err(|e| format!("key `command`: {e}"))?;
            let mut options = Vec::new();
            for (key, value) in table {
                options.push(plugin_option(dir, &key, &value)?);
            }
            StepKind::Plugin { program, options }
        }
        "exec" => {
            let raw: RawExec = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            let hosts = host_list(&raw.hosts, "hosts", true)?;
            for (key, cmd) in [
                ("exec_command", Some(&raw.exec_command)),
                ("test_command", raw.test_command.as_ref()),
            ] {
                let Some(cmd) = cmd else { continue };
                let words =
                    crate::text::split_words(cmd).map_err(|e| format!("key `{key}`: {e}"))?;
                if words.is_empty() {
                    return Err(format!(
                        "key `{key}`: expected a command, got an empty string"
                    ));
                }
                check_placeholders(cmd, &["new_primary", "old_primary", "pool"])
                    .map_err(|e| format!("key `{key}`: {e}"))?;
            }
            let ssh = step_ssh(dir, raw.ssh, ssh)?;
            if raw.shell && ssh.sudo && hosts.iter().any(|h| *h != Host::Local) {
                return Err("key `shell`: a shell under sudo is a root shell for whoever holds the SSH key; with `sudo = true` remote commands run as fixed words. Put shell logic in a script on the host and allow that script in sudoers".to_string());
            }
            StepKind::Exec {
                hosts,
                test_command: raw.test_command,
                exec_command: raw.exec_command,
                shell: raw.shell,
                ssh,
            }
        }
        "etc_hosts" => {
            let raw: RawEtcHosts = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            crate::hostsfile::validate_name(&raw.service_host_name)
                .map_err(|e| format!("key `service_host_name`: {e}"))?;
            let hosts_file = raw.hosts_file.unwrap_or_else(|| "/etc/hosts".to_string());
            if !hosts_file.starts_with('/') || hosts_file.contains('\0') {
                return Err(format!(
                    "key `hosts_file`: `{hosts_file}`: expected an absolute path"
                ));
            }
            let helper = raw.helper.unwrap_or_else(|| "deadpool".to_string());
            if helper.is_empty() || helper.contains(char::is_whitespace) {
                return Err(format!(
                    "key `helper`: `{helper}`: expected the path of deadpool on the clients"
                ));
            }
            StepKind::EtcHosts(EtcHosts {
                service_host_name: raw.service_host_name,
                client_hosts: host_list(&raw.client_hosts, "client_hosts", true)?,
                hosts_file,
                helper,
                ssh: step_ssh(dir, raw.ssh, ssh)?,
            })
        }
        "vip" => {
            let raw: RawVip = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            let (addr, prefix) = raw.address.split_once('/').ok_or_else(|| {
                format!("key `address`: `{}`: expected an address with its prefix length, like \"10.0.0.100/24\"", raw.address)
            })?;
            let address: std::net::IpAddr = addr
                .parse()
                .map_err(|_| format!("key `address`: `{addr}` is not an IP address"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                format!("key `address`: `/{prefix}`: expected a prefix length from 0 to {max}")
            })?;
            let iface_ok = !raw.interface.is_empty()
                && raw.interface.len() <= 15
                && raw
                    .interface
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b));
            if !iface_ok {
                return Err(format!(
                    "key `interface`: `{}` is not an interface name",
                    raw.interface
                ));
            }
            let arping_count = raw.arping_count.unwrap_or(3);
            if !(1..=20).contains(&arping_count) {
                return Err(format!(
                    "key `arping_count`: got {arping_count}, expected 1 to 20"
                ));
            }
            StepKind::Vip(Vip {
                address,
                prefix,
                interface: raw.interface,
                arping_count,
                ssh: step_ssh(dir, raw.ssh, ssh)?,
            })
        }
        "mysql_promote" => {
            let raw: RawMysqlPromote = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            let password = load_secret(dir, &raw.password_file)
                .map_err(|e| format!("key `password_file`: {e}"))?;
            let (default_port, monitor_tls) = monitor.mysql_defaults().unwrap_or((3306, None));
            // The step reaches the same servers: the monitor's TLS unless it has its own.
            let tls = match raw.tls {
                Some(t) => Some(mysql_tls(load_tls(dir, t)?)?),
                None => monitor_tls,
            };
            StepKind::MysqlPromote(MysqlPromote {
                user: raw.user,
                password,
                port: raw.port.unwrap_or(default_port),
                catch_up_timeout: parse_duration(raw.catch_up_timeout.as_deref().unwrap_or("30s"))
                    .map_err(|e| format!("key `catch_up_timeout`: {e}"))?,
                max_lag: parse_duration(raw.max_lag.as_deref().unwrap_or("30s"))
                    .map_err(|e| format!("key `max_lag`: {e}"))?,
                reset_replica: raw.reset_replica,
                tls,
            })
        }
        "redis_promote" => {
            let raw: RawRedisPromote = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            // By default the step logs in as the monitor does.
            let monitor_access = monitor.redis_access().cloned();
            let password = match raw.password_file.as_deref() {
                Some(rel) => {
                    Some(load_secret(dir, rel).map_err(|e| format!("key `password_file`: {e}"))?)
                }
                None => monitor_access.as_ref().and_then(|m| m.password.clone()),
            };
            let tls = match raw.tls {
                Some(t) => Some(load_tls(dir, t)?),
                None => monitor_access.as_ref().and_then(|m| m.tls.clone()),
            };
            let access = RedisAccess {
                port: raw
                    .port
                    .or(monitor_access.as_ref().map(|m| m.port))
                    .unwrap_or(6379),
                user: raw.user.or(monitor_access.and_then(|m| m.user)),
                password,
                tls,
            };
            StepKind::RedisPromote(RedisPromote {
                access,
                catch_up_timeout: parse_duration(raw.catch_up_timeout.as_deref().unwrap_or("10s"))
                    .map_err(|e| format!("key `catch_up_timeout`: {e}"))?,
                max_lag: parse_duration(raw.max_lag.as_deref().unwrap_or("10s"))
                    .map_err(|e| format!("key `max_lag`: {e}"))?,
            })
        }
        "dns" => {
            let raw: RawDns = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            StepKind::Dns(dns_step(dir, raw, servers)?)
        }
        "haproxy" => {
            let raw: RawHaproxy = toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| toml_msg(&e))?;
            StepKind::Haproxy(haproxy_step(dir, raw, ssh)?)
        }
        other => {
            return Err(format!(
                "key `type`: unknown step type `{other}`, expected one of mysql_promote, etc_hosts, vip, dns, haproxy, exec, plugin, redis_promote"
            ));
        }
    };
    Ok(Step {
        name,
        timeout,
        on_failure,
        kind,
    })
}

/// The `dns` step's keys, validated: names absolute, values of the record's type, the TSIG
/// secret from a private file.
fn dns_step(dir: &Path, raw: RawDns, servers: (&str, &str)) -> Result<Dns, String> {
    validate_host(&raw.server).map_err(|e| format!("key `server`: {e}"))?;
    let zone = dns_name(&raw.zone).map_err(|e| format!("key `zone`: {e}"))?;
    let service_host_name =
        dns_name(&raw.service_host_name).map_err(|e| format!("key `service_host_name`: {e}"))?;
    if service_host_name != zone && !service_host_name.ends_with(&format!(".{zone}")) {
        return Err(format!(
            "key `service_host_name`: `{service_host_name}` is not inside the zone `{zone}`"
        ));
    }
    let record = match raw.record.as_deref().unwrap_or("A") {
        r if r.eq_ignore_ascii_case("A") => DnsRecord::A,
        r if r.eq_ignore_ascii_case("AAAA") => DnsRecord::Aaaa,
        r if r.eq_ignore_ascii_case("CNAME") => DnsRecord::Cname,
        other => {
            return Err(format!(
                "key `record`: got `{other}`, expected \"A\", \"AAAA\" or \"CNAME\""
            ));
        }
    };
    let (values, key) = match raw.values {
        Some(v) => (
            PerServer {
                primary: v.primary,
                secondary: v.secondary,
            },
            "values",
        ),
        None => (
            PerServer {
                primary: servers.0.to_string(),
                secondary: servers.1.to_string(),
            },
            "record",
        ),
    };
    let values = PerServer {
        primary: record_value(record, &values.primary)
            .map_err(|e| format!("key `{key}`: the primary's value {e}"))?,
        secondary: record_value(record, &values.secondary)
            .map_err(|e| format!("key `{key}`: the secondary's value {e}"))?,
    };
    if values.primary == values.secondary {
        return Err(format!(
            "key `{key}`: both servers would have the value `{}`; the record could not tell them apart",
            values.primary
        ));
    }
    let ttl =
        ttl_seconds(raw.ttl.as_deref().unwrap_or("30s")).map_err(|e| format!("key `ttl`: {e}"))?;
    let max_ttl = match raw.max_ttl.as_deref() {
        Some(v) => ttl_seconds(v).map_err(|e| format!("key `max_ttl`: {e}"))?,
        None => ttl,
    };
    if max_ttl < ttl {
        return Err(format!(
            "key `max_ttl`: {max_ttl}s is shorter than `ttl` ({ttl}s): the record deadpool writes would warn"
        ));
    }
    let tsig_name = raw.tsig_key.trim_end_matches('.');
    if tsig_name.is_empty() || dns_name(tsig_name).is_err() {
        return Err(format!(
            "key `tsig_key`: `{}`: expected the key's name as the server knows it, like \"deadpool-key\"",
            raw.tsig_key
        ));
    }
    let algorithm = raw
        .tsig_algorithm
        .unwrap_or_else(|| "hmac-sha256".to_string())
        .to_ascii_lowercase();
    if !TSIG_ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(format!(
            "key `tsig_algorithm`: got `{algorithm}`, expected one of {}",
            TSIG_ALGORITHMS.join(", ")
        ));
    }
    let secret = load_secret(dir, &raw.tsig_secret_file)
        .map_err(|e| format!("key `tsig_secret_file`: {e}"))?;
    let base64 = |b: u8| b.is_ascii_alphanumeric() || b"+/=".contains(&b);
    if !secret.expose().bytes().all(base64) {
        return Err(format!(
            "key `tsig_secret_file`: {}: expected the key's base64 secret on one line, as in the server's `key` statement",
            dir.join(&raw.tsig_secret_file).display()
        ));
    }
    let port = raw.port.filter(|p| *p > 0).unwrap_or(53);
    let mut verify_servers = Vec::new();
    for entry in raw.verify_servers.unwrap_or_default() {
        let server = host_port(&entry, 53).map_err(|e| format!("key `verify_servers`: {e}"))?;
        if server == (raw.server.clone(), port) {
            return Err(format!(
                "key `verify_servers`: `{entry}` is the primary server, which the check always asks"
            ));
        }
        if verify_servers.contains(&server) {
            return Err(format!("key `verify_servers`: `{entry}` is listed twice"));
        }
        verify_servers.push(server);
    }
    Ok(Dns {
        server: raw.server,
        port,
        zone,
        service_host_name,
        record,
        ttl,
        max_ttl,
        values,
        tsig: Tsig {
            name: tsig_name.to_string(),
            algorithm,
            secret,
            secret_file: dir.join(&raw.tsig_secret_file),
        },
        verify_servers,
    })
}

/// `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT` or a bare IPv6 address, with `default` as the
/// port when none is given.
fn host_port(entry: &str, default: u16) -> Result<(String, u16), String> {
    let expected = || format!("`{entry}`: expected HOST or HOST:PORT");
    let (host, port) = if let Some(inner) = entry.strip_prefix('[') {
        match inner.split_once(']') {
            Some((host, "")) => (host, default),
            Some((host, rest)) => (
                host,
                rest.strip_prefix(':')
                    .and_then(port_number)
                    .ok_or_else(expected)?,
            ),
            None => return Err(expected()),
        }
    } else if entry.matches(':').count() == 1 {
        let (host, port) = entry.split_once(':').ok_or_else(expected)?;
        (host, port_number(port).ok_or_else(expected)?)
    } else {
        (entry, default)
    };
    validate_host(host)?;
    Ok((host.to_string(), port))
}

/// A domain name made absolute and lower case: labels of letters, digits, `-` and `_`.
fn dns_name(name: &str) -> Result<String, String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(format!("{}.", bare.to_ascii_lowercase()))
    } else {
        Err(format!("`{name}` is not a domain name"))
    }
}

/// A record value in the form the record type needs, canonical for comparisons.
fn record_value(record: DnsRecord, value: &str) -> Result<String, String> {
    match record {
        DnsRecord::A => value
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("`{value}` is not an IPv4 address (an A record holds one)")),
        DnsRecord::Aaaa => value
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("`{value}` is not an IPv6 address (an AAAA record holds one)")),
        DnsRecord::Cname => {
            if value.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!(
                    "`{value}` is an address; a CNAME record holds a host name"
                ));
            }
            dns_name(value)
        }
    }
}

/// A TTL: whole seconds, at least 1, at most a week.
fn ttl_seconds(value: &str) -> Result<u32, String> {
    let d = parse_duration(value)?;
    if d.subsec_millis() != 0 || d > Duration::from_secs(7 * 86_400) {
        return Err(format!(
            "got \"{value}\", expected whole seconds up to a week, like \"30s\""
        ));
    }
    Ok(d.as_secs() as u32)
}

/// The `haproxy` step's keys, validated: names HAProxy accepts (and that cannot smuggle a
/// second command into the runtime API line), each socket parsed.
fn haproxy_step(dir: &Path, raw: RawHaproxy, ssh: &SshSettings) -> Result<Haproxy, String> {
    let proxy_name = |key: &str, name: &str| {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if ok {
            Ok(name.to_string())
        } else {
            Err(format!(
                "key `{key}`: `{name}`: expected an HAProxy name (letters, digits, `-`, `_`, `.`, `:`)"
            ))
        }
    };
    let backend = proxy_name("backend", &raw.backend)?;
    let servers = PerServer {
        primary: proxy_name("servers.primary", &raw.servers.primary)?,
        secondary: proxy_name("servers.secondary", &raw.servers.secondary)?,
    };
    if servers.primary == servers.secondary {
        return Err(format!(
            "key `servers`: both pool servers are `{}`; name the primary's and the secondary's HAProxy server",
            servers.primary
        ));
    }
    if raw.sockets.is_empty() {
        return Err("key `sockets`: expected at least one stats socket".into());
    }
    let mut sockets: Vec<HaproxySocket> = Vec::new();
    for entry in &raw.sockets {
        let socket = HaproxySocket::parse(entry).map_err(|e| format!("key `sockets`: {e}"))?;
        if sockets.contains(&socket) {
            return Err(format!("key `sockets`: `{entry}` is listed twice"));
        }
        sockets.push(socket);
    }
    let standby_state = match raw.standby_state.as_deref() {
        None | Some("maint") => StandbyState::Maint,
        Some("drain") => StandbyState::Drain,
        Some(other) => {
            return Err(format!(
                "key `standby_state`: got `{other}`, expected \"maint\" or \"drain\""
            ));
        }
    };
    Ok(Haproxy {
        backend,
        servers,
        sockets,
        standby_state,
        ssh: step_ssh(dir, raw.ssh, ssh)?,
    })
}

/// One extra key of a plugin step, as the environment variable the plugin will see.
/// Whether a plugin option's name says it holds a secret: a `_`-separated part such as
/// `password`, `token` or `key` (`api_key`, `db_password`), or the whole name.
pub fn is_secret_name(key: &str) -> bool {
    const WORDS: &[&str] = &[
        "password",
        "passwd",
        "pass",
        "pw",
        "secret",
        "token",
        "key",
        "apikey",
        "credential",
        "credentials",
        "auth",
        "cookie",
        "private",
    ];
    let key = key.to_ascii_lowercase();
    key.split('_').any(|part| WORDS.contains(&part)) || key.ends_with("password")
}

/// A plugin option: `KEY = value` becomes `DEADPOOL_OPT_KEY`. `KEY_file = "path"` reads a
/// secret file (the usual checks) into `DEADPOOL_OPT_KEY`. Secret values are masked in every
/// output; the plugin gets the real value in its environment.
fn plugin_option(dir: &Path, key: &str, value: &toml::Value) -> Result<PluginOption, String> {
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "key `{key}`: plugin option names may hold only letters, digits and `_`"
        ));
    }
    if let Some(name) = key.strip_suffix("_file").filter(|n| !n.is_empty()) {
        let toml::Value::String(rel) = value else {
            return Err(format!("key `{key}`: expected the path of a secret file"));
        };
        let secret = load_secret(dir, rel).map_err(|e| format!("key `{key}`: {e}"))?;
        return Ok(PluginOption {
            env: format!("DEADPOOL_OPT_{}", name.to_ascii_uppercase()),
            value: secret.expose().to_string(),
            secret: true,
        });
    }
    let text = match value {
        toml::Value::Array(items) => {
            let mut parts = Vec::new();
            for item in items {
                let part = scalar_text(item).ok_or_else(|| {
                    format!("key `{key}`: arrays passed to a plugin may hold only plain values")
                })?;
                parts.push(part);
            }
            parts.join(",")
        }
        v => scalar_text(v)
            .ok_or_else(|| format!("key `{key}`: tables and dates cannot be passed to a plugin"))?,
    };
    if text.contains('\0') {
        return Err(format!(
            "key `{key}`: NUL bytes cannot be passed to a plugin"
        ));
    }
    Ok(PluginOption {
        env: format!("DEADPOOL_OPT_{}", key.to_ascii_uppercase()),
        value: text,
        secret: is_secret_name(key),
    })
}

/// One option of a `plugin` step, as it reaches the plugin's environment.
#[derive(Clone, PartialEq, Eq)]
pub struct PluginOption {
    pub env: String,
    pub value: String,
    /// Masked in every output (plans, reports, history, logs).
    pub secret: bool,
}

impl PluginOption {
    /// The value as outputs may show it.
    pub fn shown(&self) -> &str {
        if self.secret { "<secret>" } else { &self.value }
    }
}

impl std::fmt::Debug for PluginOption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.env, self.shown())
    }
}

/// A short description of the validated config, for `check-config`.
pub fn summary(config: &Config) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "config dir  {}", config.dir.display());
    let _ = writeln!(out, "state dir   {}", config.state_dir.display());
    let _ = writeln!(
        out,
        "tick every {}, self-checks every {}, stale after {} (warning) / {} (critical)",
        format_duration(config.tick_interval),
        format_duration(config.system_check_interval),
        format_duration(config.stale_warning),
        format_duration(config.stale_critical)
    );
    let _ = writeln!(
        out,
        "ssh defaults: user {}, port {}, connect timeout {}, command timeout {}, sudo {}",
        config.ssh.user,
        config.ssh.port,
        format_duration(config.ssh.connect_timeout),
        format_duration(config.ssh.command_timeout),
        config.ssh.sudo
    );
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for pool in &config.pools {
        for step in &pool.steps {
            *by_type.entry(step.type_name()).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "pool {}: {} monitor, primary {}, secondary {}, fail over {}, {} step(s)",
            pool.name,
            pool.monitor.kind.type_name(),
            pool.primary,
            pool.secondary,
            pool.threshold(),
            pool.steps.len()
        );
        let tls = pool.monitor.tls();
        if let Some(tls) = tls {
            let _ = writeln!(out, "pool {}: monitor: {}", pool.name, tls.describe());
        }
        for step in &pool.steps {
            let own = match &step.kind {
                StepKind::MysqlPromote(m) => m.tls.as_ref(),
                StepKind::RedisPromote(r) => r.access.tls.as_ref(),
                _ => None,
            };
            match (own, tls) {
                (Some(own), Some(t)) if own.describe() == t.describe() => {}
                (Some(own), _) => {
                    let _ = writeln!(
                        out,
                        "pool {}: step `{}`: {}",
                        pool.name,
                        step.name,
                        own.describe()
                    );
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_refuse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86400)));
        assert_eq!(parse_duration("1min 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in [
            "",
            "5",
            "s",
            "-5s",
            "0s",
            "5S",
            "5secs",
            "1.s",
            "1.5.2s",
            "1h 30",
            "5min5",
            "1,5s",
            "5e3s",
            "infinity",
            "99999999999999999999d",
            "11y",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert!(
            parse_duration("5").unwrap_err().contains("\"5s\""),
            "a bare number says which unit to add"
        );
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_micros(500)), "500us");
    }

    /// Every duration systemd accepts with units means the same here as in a timer unit,
    /// checked against systemd's own parser (`systemd-analyze timespan`); what systemd
    /// refuses is refused here too.
    #[test]
    fn durations_agree_with_systemd() {
        let same = [
            "500ms",
            "5s",
            "2m",
            "1h",
            "90d",
            "1min 30s",
            "5min",
            "5 s",
            "5sec",
            "1.5s",
            ".5s",
            "1h30m",
            "2 weeks",
            "1M",
            "1y",
            "1 h 2 m",
            " 5s ",
            "500us",
            "1d2h",
            "3 hr",
            "2months",
            "5ms500us",
            "1.25min",
            "5 min30s",
            "5s5s",
            "1w",
            "1\u{3bc}s",
            "1\u{b5}s",
            "5msec",
            "5usec",
            "5minutes5s",
            "1y1M",
            "1.0000001s",
            "2  s",
            "5\ts",
        ];
        // Accepted by systemd, refused here on purpose: no unit, zero, infinity.
        let stricter = ["5", "1h 30", "0s", "0.0000001s", "infinity"];
        let refused_by_both = [
            "5S", "5secs", "5mins", "5Min", "5ns", "1.s", "1.5.2s", "1,5s", "5e3s", "-5s",
        ];
        let systemd = |s: &str| -> Option<u128> {
            let out = std::process::Command::new("systemd-analyze")
                .args(["timespan", "--", s])
                .output()
                .expect("systemd-analyze must be installed (Debian package systemd)");
            let text = String::from_utf8_lossy(&out.stdout);
            let us = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("\u{3bc}s:"))
                .map(|v| v.trim().parse().unwrap());
            out.status.success().then_some(us).flatten()
        };
        for s in same {
            let ours = parse_duration(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            assert_eq!(Some(ours.as_micros()), systemd(s), "{s:?}");
        }
        for s in stricter {
            assert!(systemd(s).is_some(), "systemd accepts {s:?}");
            assert!(parse_duration(s).is_err(), "{s:?} is refused here");
        }
        for s in refused_by_both {
            assert_eq!(systemd(s), None, "systemd refuses {s:?}");
            assert!(parse_duration(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn placeholders_are_checked() {
        assert!(check_placeholders("x {pool} {new_primary}", &["pool", "new_primary"]).is_ok());
        assert!(check_placeholders("x {nwe_primary}", &["pool", "new_primary"]).is_err());
        assert!(check_placeholders("awk '{print $1}'", &["pool"]).is_ok());
    }

    #[test]
    fn plugin_options_become_env() {
        let v: toml::Value = toml::Value::Array(vec!["a".into(), 3.into()]);
        let dir = Path::new("/nonexistent");
        let o = plugin_option(dir, "url_list", &v).unwrap();
        assert_eq!(
            (o.env.as_str(), o.value.as_str(), o.secret),
            ("DEADPOOL_OPT_URL_LIST", "a,3", false)
        );
        assert!(plugin_option(dir, "bad-key", &toml::Value::from("x")).is_err());
        let token = plugin_option(dir, "api_token", &toml::Value::from("s3cr3t")).unwrap();
        assert!(
            token.secret && token.shown() == "<secret>" && !format!("{token:?}").contains("s3cr3t")
        );
        for (name, secret) in [
            ("password", true),
            ("db_password", true),
            ("api_key", true),
            ("key", true),
            ("keyspace", false),
            ("service_name", false),
            ("token", true),
            ("passwd", true),
        ] {
            assert_eq!(is_secret_name(name), secret, "{name}");
        }
    }

    #[test]
    fn haproxy_sockets_parse() {
        use HaproxySocket::*;
        let table: &[(&str, HaproxySocket)] = &[
            (
                "/run/haproxy/admin.sock",
                Unix("/run/haproxy/admin.sock".into()),
            ),
            (
                "10.0.0.9:9999",
                Tcp {
                    host: "10.0.0.9".into(),
                    port: 9999,
                },
            ),
            (
                "[fd00::9]:9999",
                Tcp {
                    host: "fd00::9".into(),
                    port: 9999,
                },
            ),
            (
                "lb1:/run/haproxy/admin.sock",
                SshUnix {
                    host: "lb1".into(),
                    path: "/run/haproxy/admin.sock".into(),
                },
            ),
            (
                "lb1:127.0.0.1:9999",
                SshTcp {
                    host: "lb1".into(),
                    target: "127.0.0.1".into(),
                    port: 9999,
                },
            ),
            (
                "[fd00::9]:[::1]:9999",
                SshTcp {
                    host: "fd00::9".into(),
                    target: "::1".into(),
                    port: 9999,
                },
            ),
        ];
        for (text, socket) in table {
            assert_eq!(HaproxySocket::parse(text).as_ref(), Ok(socket), "{text}");
            assert_eq!(socket.to_string(), *text);
        }
        for bad in [
            "",
            "lb1",
            "lb1:",
            "lb1:0",
            "lb1:99999",
            "lb1:x",
            "-oProxyCommand=x:/s",
            "lb1:/a b",
            "/run/x;show",
            "lb1:127.0.0.1:",
            "[fd00::9:9999",
        ] {
            assert!(
                HaproxySocket::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn dns_values_are_checked() {
        assert_eq!(
            dns_name("Orders-DB.internal.example"),
            Ok("orders-db.internal.example.".into())
        );
        assert_eq!(
            dns_name("internal.example."),
            Ok("internal.example.".into())
        );
        for bad in ["", ".", "a..b", "-a.b", "a b.c", "a;b.c", &"x".repeat(64)] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            record_value(DnsRecord::A, "10.0.0.1"),
            Ok("10.0.0.1".into())
        );
        assert!(record_value(DnsRecord::A, "db1").is_err());
        assert!(record_value(DnsRecord::A, "fd00::1").is_err());
        assert_eq!(
            record_value(DnsRecord::Aaaa, "FD00:0::1"),
            Ok("fd00::1".into())
        );
        assert_eq!(
            record_value(DnsRecord::Cname, "DB1.example"),
            Ok("db1.example.".into())
        );
        assert!(record_value(DnsRecord::Cname, "10.0.0.1").is_err());
        assert_eq!(ttl_seconds("30s"), Ok(30));
        assert_eq!(ttl_seconds("5m"), Ok(300));
        for bad in ["1500ms", "8d", "0s"] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(host_port("10.0.0.53", 53), Ok(("10.0.0.53".into(), 53)));
        assert_eq!(host_port("ns1:5353", 53), Ok(("ns1".into(), 5353)));
        assert_eq!(host_port("fd00::53", 53), Ok(("fd00::53".into(), 53)));
        assert_eq!(
            host_port("[fd00::53]:5353", 53),
            Ok(("fd00::53".into(), 5353))
        );
        assert_eq!(host_port("[fd00::53]", 53), Ok(("fd00::53".into(), 53)));
        for bad in ["ns1:", "ns1:x", "[fd00::53", "a b", "[::1]x"] {
            assert!(host_port(bad, 53).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_validated() {
        assert!(validate_host("10.0.0.1").is_ok());
        assert!(validate_host("db-1.example.com").is_ok());
        assert!(validate_host("fe80::1").is_ok());
        for bad in ["", "-oProxyCommand=x", "a b", "a;b", "$(x)"] {
            assert!(validate_host(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::fuzz::{Rng, cases};
    use std::os::unix::fs::PermissionsExt;

    const SEEDS: &[&str] = &[
        include_str!("../../config/deadpool.toml"),
        include_str!("../../config/pools/example_db.toml"),
        include_str!("../../config/pools/orders_mysql.toml.example"),
        include_str!("../../config/pools/cache_redis.toml.example"),
        include_str!("../../config/pools/orders_dns_lb.toml.example"),
    ];

    /// Mutated config files never panic the loader: each is accepted, or refused with a
    /// message that names the file.
    #[test]
    fn fuzz_config_parsing() {
        let dir = tempfile::tempdir().unwrap();
        for (rel, mode) in [
            ("plugins/check_example", 0o755),
            ("plugins/example_step", 0o755),
            ("secrets/mysql-monitor", 0o600),
            ("secrets/mysql-admin", 0o600),
            ("secrets/redis", 0o600),
            ("secrets/tsig", 0o600),
        ] {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            // Secrets: one line that is also a valid TSIG secret (base64).
            let text = if rel.starts_with("secrets/") {
                "c2VjcmV0\n"
            } else {
                "#!/bin/sh\n"
            };
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("pools")).unwrap();
        let mut rng = Rng::new(1);
        let ssh = ssh_settings(dir.path(), RawSsh::default(), None).unwrap();
        let (mut accepted, mut refused) = (0, 0);
        for case in 0..cases(3000) {
            let seed = SEEDS[rng.below(SEEDS.len() as u64) as usize];
            let text = rng.mutate(seed.as_bytes());
            let is_main = std::ptr::eq(seed, SEEDS[0]);
            let file = dir.path().join(if is_main {
                "deadpool.toml"
            } else {
                "pools/p.toml"
            });
            let _ = std::fs::remove_file(dir.path().join("pools/p.toml"));
            std::fs::write(&file, &text).unwrap();
            let result = if is_main {
                Config::load(dir.path()).map(|_| ())
            } else {
                load_pool(dir.path(), &file, &ssh).map(|_| ())
            };
            match result {
                Ok(()) => accepted += 1,
                Err(Error::Config(m)) => {
                    assert!(
                        m.contains(&*file.to_string_lossy()),
                        "case {case}: the message must name the file: {m}"
                    );
                    refused += 1;
                }
                Err(other) => panic!("case {case}: unexpected error kind: {other:?}"),
            }
            if is_main {
                std::fs::write(&file, SEEDS[0]).unwrap();
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "the mutations should both keep and break configs ({accepted}/{refused})"
        );
    }
}
