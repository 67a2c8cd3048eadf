//! Configuration: TOML files parsed and validated into a plain [`Config`] that cannot hold
//! invalid values. This module reads the instance file and the pool files and hands each
//! `[monitor]` and `[[protocol]]` table to its registry ([`crate::monitor`],
//! [`crate::protocol`]), whose type files validate their own keys. Every check happens while
//! loading, before any lock, database or network call.

pub mod load;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Error, Problem};
use crate::model::{MAX_SERVERS, Role};
pub use crate::settings::{
    SshAuth, SshSettings, format_duration, host_key, is_safe_name, parse_duration, validate_host,
};
use load::{RawSsh, duration_or, line_of, lines_of, read_file, ssh_settings, toml_error};

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
    /// `[cluster]`: several watcher hosts coordinated through etcd (see [`crate::cluster`]).
    pub cluster: Option<crate::cluster::settings::Settings>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub file: PathBuf,
    /// The configured primary, then its standbys in config order ([`crate::model::Role`]).
    pub servers: Vec<String>,
    /// Standbys that are kept replicating and never promoted.
    pub never_promote: Vec<crate::model::Role>,
    /// How long before the outage a standby may have been last seen caught up and still be
    /// promoted by a tick ([`crate::rules::candidate`]).
    pub max_promote_lag: Duration,
    /// A standby still receiving from the primary is a vote that it is alive.
    pub confirm_from_replicas: bool,
    pub max_failed_checks: u32,
    /// Time-based confirmation of an outage: how long the active server must stay down
    /// (re-checked every `recheck_interval` within one tick) before the failover starts.
    /// Replaces `max_failed_checks` when set.
    pub down_for: Option<Duration>,
    pub recheck_interval: Duration,
    pub monitor: Monitor,
    pub steps: Vec<Step>,
}

pub use crate::monitor::Monitor;

pub use crate::protocol::{OnFailure, Step};
pub use crate::tls::Tls;

/// What a monitor's check needs of a pool.
impl crate::monitor::Watched for Pool {
    fn servers(&self) -> crate::model::PoolServers<'_> {
        Pool::servers(self)
    }

    fn monitor(&self) -> &Monitor {
        &self.monitor
    }
}

impl Pool {
    /// The pool's name and servers, as its monitor, its rounds and its steps see them.
    pub fn servers(&self) -> crate::model::PoolServers<'_> {
        crate::model::PoolServers {
            name: &self.name,
            servers: &self.servers,
        }
    }

    pub fn address(&self, role: crate::model::Role) -> &str {
        &self.servers[role.index()]
    }

    /// The configured primary.
    pub fn primary(&self) -> &str {
        &self.servers[0]
    }

    /// The standbys in words: `secondary X` for a pair, else `standbys X, Y (Y never
    /// promoted)`.
    pub fn describe_standbys(&self) -> String {
        if self.servers.len() == 2 && self.never_promote.is_empty() {
            return format!("secondary {}", self.servers[1]);
        }
        let never: Vec<&str> = self
            .never_promote
            .iter()
            .map(|r| self.address(*r))
            .collect();
        let mut out = format!("standbys {}", self.servers[1..].join(", "));
        if !never.is_empty() {
            out.push_str(&format!(" ({} never promoted)", never.join(", ")));
        }
        out
    }

    /// The standby a failover from `active` would go to when nothing else is known: the
    /// first server in config order, other than `active`, that may be promoted.
    pub fn next_standby(&self, active: crate::model::Role) -> crate::model::Role {
        let others = self.servers().others(active);
        let mut others = others.peekable();
        let first = others.peek().map(|(r, _)| *r).unwrap_or(active);
        others
            .map(|(r, _)| r)
            .find(|r| self.promotable(*r))
            .unwrap_or(first)
    }

    /// The server a person names (`promote POOL SERVER`, `reset --active SERVER`): its label
    /// (`primary`, `secondary`, `standby2`...) or its address as written in the pool, in any
    /// spelling of it ([`host_key`]).
    pub fn server(&self, named: &str) -> Result<crate::model::Role, Error> {
        let servers = self.servers();
        let label = crate::model::Role::parse(named).filter(|r| r.index() < self.servers.len());
        label.or_else(|| servers.role_of(named)).ok_or_else(|| {
            let known: Vec<String> = servers
                .roles()
                .map(|(r, a)| format!("{} ({a})", r.as_str()))
                .collect();
            Error::Usage(format!(
                "pool {} has no server `{named}`; name one as written in the pool, or by its role: {}",
                self.name,
                known.join(", ")
            ))
        })
    }

    /// Whether the server in `role` may be promoted by a tick.
    pub fn promotable(&self, role: crate::model::Role) -> bool {
        !self.never_promote.contains(&role)
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
        // Whoever can write the config dir can name any program as a monitor.
        if dir.is_dir() {
            crate::strict::trusted_dir(dir).map_err(|e| load::untrusted(dir, &e))?;
        }
        let main_file = dir.join("deadpool.toml");
        let text = read_file(
            &main_file,
            "run `deadpool init` to write an example config dir",
        )?;
        let raw: RawInstance = toml::from_str(&text).map_err(|e| toml_error(&main_file, &e))?;
        let err = |p: Problem| Error::Config(ConfigError::in_file(&main_file, p));

        let state_dir = match raw.state_dir.as_deref() {
            None => PathBuf::from("/var/lib/deadpool"),
            Some("") => return Err(err(Problem::at("state_dir", "expected a directory path"))),
            Some(p) => dir.join(p),
        };
        let tick_interval = duration_or(&raw.tick_interval, "5s", "tick_interval").map_err(err)?;
        let system_check_interval =
            duration_or(&raw.system_check_interval, "30s", "system_check_interval").map_err(err)?;
        let stale_warning = match &raw.stale_warning {
            Some(v) => parse_duration(v).map_err(|e| err(Problem::at("stale_warning", e)))?,
            None => tick_interval * 3,
        };
        let stale_critical = match &raw.stale_critical {
            Some(v) => parse_duration(v).map_err(|e| err(Problem::at("stale_critical", e)))?,
            None => tick_interval * 10,
        };
        if stale_critical < stale_warning {
            return Err(err(Problem::new(format!(
                "stale_critical ({}) must not be shorter than stale_warning ({})",
                format_duration(stale_critical),
                format_duration(stale_warning)
            ))));
        }
        let history_retention =
            duration_or(&raw.history_retention, "90d", "history_retention").map_err(err)?;
        let in_table = |table: &str, p: Problem| {
            Error::Config(ConfigError::in_file(&main_file, p).in_table(table, None))
        };
        let ssh = ssh_settings(dir, raw.ssh.unwrap_or_default(), None)
            .map_err(|p| in_table("[ssh]", p))?;

        let cluster = match raw.cluster {
            None => None,
            Some(table) => Some(
                crate::cluster::settings::Settings::parse(dir, table, tick_interval)
                    .map_err(|p| in_table("[cluster]", p))?,
            ),
        };
        let pools = load_pools(dir, &ssh)?;
        let config = Config {
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
                    return Err(err(Problem::at(
                        "prometheus_textfile",
                        format!("`{p}`: node_exporter reads only files ending in .prom"),
                    )));
                }
            },
            ssh,
            pools,
            cluster,
        };
        // Checked where some step or observer logs in, so that no command (tick, a dry
        // run, promote, reset) logs in with a key others could have swapped.
        for (who, ssh) in config.ssh_in_use() {
            load::check_ssh_files(ssh).map_err(|Problem { key, text }| {
                Error::Config(ConfigError {
                    file: None,
                    table: Some(who),
                    line: None,
                    key,
                    problem: text,
                })
            })?;
        }
        Ok(config)
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
                if let Some(ssh) = step.kind.get().ssh_in_use() {
                    used.push((format!("pool {}: step `{}`", pool.name, step.name), ssh));
                }
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
    secondary: Option<String>,
    standbys: Option<Vec<String>>,
    never_promote: Option<Vec<String>>,
    max_promote_lag: Option<String>,
    confirm_from_replicas: Option<bool>,
    max_failed_checks: Option<i64>,
    down_for: Option<String>,
    recheck_interval: Option<String>,
    monitor: toml::Table,
    #[serde(default)]
    protocol: Vec<toml::Table>,
}

fn load_pools(dir: &Path, ssh: &SshSettings) -> Result<Vec<Pool>, Error> {
    let pools_dir = dir.join("pools");
    let mut files = Vec::new();
    match std::fs::read_dir(&pools_dir) {
        Ok(entries) => {
            crate::strict::trusted_dir(&pools_dir).map_err(|e| load::untrusted(&pools_dir, &e))?;
            for entry in entries {
                let entry = entry
                    .map_err(|e| Error::Config(ConfigError::in_file(&pools_dir, e.to_string())))?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::Config(ConfigError::in_file(
                &pools_dir,
                e.to_string(),
            )));
        }
    }
    files.sort();
    let mut pools: Vec<Pool> = Vec::new();
    for file in files {
        let pool = load_pool(dir, &file, ssh)?;
        if let Some(other) = pools.iter().find(|p| p.name == pool.name) {
            return Err(Error::Config(ConfigError::in_file(
                &file,
                format!(
                    "pool name `{}` is already used by {}; pool names must be unique (set `name` in one of them)",
                    pool.name,
                    other.file.display()
                ),
            )));
        }
        pools.push(pool);
    }
    Ok(pools)
}

fn load_pool(dir: &Path, file: &Path, ssh: &SshSettings) -> Result<Pool, Error> {
    let text = read_file(file, "")?;
    let raw: RawPool = toml::from_str(&text).map_err(|e| toml_error(file, &e))?;
    let err = |p: Problem| Error::Config(ConfigError::in_file(file, p));

    let name = match raw.name.clone() {
        Some(n) => n,
        None => file
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    };
    if !is_safe_name(&name) {
        return Err(err(Problem::at(
            "name",
            format!("pool name `{name}`: expected letters, digits, `-`, `_`, `.`"),
        )));
    }
    let servers = pool_servers(&raw).map_err(err)?;
    let never_promote = never_promote(&raw, &servers).map_err(err)?;
    let max_promote_lag = promote_lag(raw.max_promote_lag.as_deref()).map_err(err)?;
    let (max_failed_checks, down_for, recheck_interval) = failover_threshold(&raw).map_err(err)?;
    let monitor_line = line_of(&text, |l| l == "[monitor]");
    let monitor = crate::monitor::load(dir, raw.monitor).map_err(|p| {
        Error::Config(ConfigError::in_file(file, p).in_table("[monitor]", monitor_line))
    })?;
    let steps = load_steps(dir, file, &text, raw.protocol, &monitor, ssh, &servers)?;
    Ok(Pool {
        name,
        file: file.to_path_buf(),
        servers,
        never_promote,
        max_promote_lag,
        confirm_from_replicas: raw.confirm_from_replicas.unwrap_or(false),
        max_failed_checks,
        down_for,
        recheck_interval,
        monitor,
        steps,
    })
}

/// The pool's servers: `primary`, then `secondary` (a pair) or `standbys`, each a valid
/// host and each listed once, however it is spelled ([`host_key`]).
fn pool_servers(raw: &RawPool) -> Result<Vec<String>, Problem> {
    let (key, standbys) = match (&raw.secondary, &raw.standbys) {
        (Some(_), Some(_)) => {
            return Err(Problem::at(
                "standbys",
                "set either `secondary` (one standby) or `standbys` (a list), not both",
            ));
        }
        (None, None) => {
            return Err(Problem::at(
                "secondary",
                "missing: set `secondary = \"HOST\"` (one standby) or `standbys = [\"HOST\", ...]`",
            ));
        }
        (Some(s), None) => ("secondary", vec![s.clone()]),
        (None, Some(list)) => ("standbys", list.clone()),
    };
    if standbys.is_empty() || standbys.len() >= MAX_SERVERS {
        return Err(Problem::at(
            key,
            format!(
                "got {} standbys, expected 1 to {}",
                standbys.len(),
                MAX_SERVERS - 1
            ),
        ));
    }
    validate_host(&raw.primary).map_err(|m| Problem::at("primary", m))?;
    let mut servers = vec![raw.primary.clone()];
    for host in standbys {
        validate_host(&host).map_err(|m| Problem::at(key, m))?;
        if let Some(same) = servers.iter().find(|s| host_key(s) == host_key(&host)) {
            const SPELLINGS: &str = "host names compare without case or a trailing dot, addresses in their canonical form";
            let text = match (*same == raw.primary, *same == host) {
                (true, true) => {
                    format!("`{host}` is also the primary; a pool needs two different servers")
                }
                (true, false) => format!(
                    "`{host}` is the primary `{same}` under another spelling ({SPELLINGS}); a pool needs different servers"
                ),
                (false, true) => format!("`{host}` is listed twice; list each server once"),
                (false, false) => format!(
                    "`{host}` and `{same}` are the same server ({SPELLINGS}); list each server once"
                ),
            };
            return Err(Problem::at(key, text));
        }
        servers.push(host);
    }
    Ok(servers)
}

/// The key a server of a pool is written under: `primary`, `secondary` for a pair's
/// standby, else `standbys`.
fn server_key(index: usize, servers: usize) -> &'static str {
    match index {
        0 => "primary",
        _ if servers == 2 => "secondary",
        _ => "standbys",
    }
}

/// `max_promote_lag`: by default (and written `"0s"`), a standby must hold everything the
/// primary had at its last healthy check.
fn promote_lag(value: Option<&str>) -> Result<Duration, Problem> {
    match value.map(str::trim) {
        None | Some("0" | "0s" | "0ms") => Ok(Duration::ZERO),
        Some(v) => parse_duration(v).map_err(|m| Problem::at("max_promote_lag", m)),
    }
}

/// The standbys that are never promoted (`never_promote`): each one of the pool's standbys,
/// and at least one standby left that may be promoted.
fn never_promote(raw: &RawPool, servers: &[String]) -> Result<Vec<Role>, Problem> {
    let mut roles = Vec::new();
    for host in raw.never_promote.iter().flatten() {
        let role = servers
            .iter()
            .position(|s| host_key(s) == host_key(host))
            .filter(|i| *i > 0)
            .map(Role::at)
            .ok_or_else(|| {
                Problem::at(
                    "never_promote",
                    format!(
                        "`{host}` is not one of this pool's standbys ({}); list standbys only",
                        servers[1..].join(", ")
                    ),
                )
            })?;
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    if roles.len() == servers.len() - 1 {
        return Err(Problem::at(
            "never_promote",
            "no standby may be promoted in this pool: every standby is in `never_promote`; remove one from it",
        ));
    }
    Ok(roles)
}

/// When the pool fails over: after `max_failed_checks` failed checks, or once the active
/// server is down for `down_for` (re-checked every `recheck_interval`). Errors name the key.
fn failover_threshold(raw: &RawPool) -> Result<(u32, Option<Duration>, Duration), Problem> {
    let max_failed_checks = match raw.max_failed_checks {
        None => 3,
        Some(n) if (1..=1_000_000).contains(&n) => n as u32,
        Some(n) => {
            return Err(Problem::at(
                "max_failed_checks",
                format!("got {n}, expected a whole number of at least 1"),
            ));
        }
    };
    if raw.down_for.is_some() && raw.max_failed_checks.is_some() {
        return Err(Problem::at(
            "down_for",
            "set either `max_failed_checks` (a count of ticks) or `down_for` (a time), not both",
        ));
    }
    let down_for = match &raw.down_for {
        None => None,
        Some(d) => Some(parse_duration(d).map_err(|m| Problem::at("down_for", m))?),
    };
    if raw.recheck_interval.is_some() && down_for.is_none() {
        return Err(Problem::at(
            "recheck_interval",
            "re-checks belong to `down_for`; set `down_for` too, or remove `recheck_interval`",
        ));
    }
    let recheck_interval = match &raw.recheck_interval {
        None => Duration::from_millis(250),
        Some(d) => parse_duration(d).map_err(|m| Problem::at("recheck_interval", m))?,
    };
    if let Some(d) = down_for
        && (recheck_interval < Duration::from_millis(50) || recheck_interval > d)
    {
        return Err(Problem::at(
            "recheck_interval",
            format!(
                "got {}, expected at least 50ms and at most `down_for` ({})",
                format_duration(recheck_interval),
                format_duration(d)
            ),
        ));
    }
    Ok((max_failed_checks, down_for, recheck_interval))
}

/// A pool's `[[protocol]]` tables, validated, each error naming the step and its line; and
/// the servers given as IP addresses where a step needs that.
fn load_steps(
    dir: &Path,
    file: &Path,
    text: &str,
    tables: Vec<toml::Table>,
    monitor: &Monitor,
    ssh: &SshSettings,
    servers: &[String],
) -> Result<Vec<Step>, Error> {
    let step_lines = lines_of(text, |l| l.replace(' ', "") == "[[protocol]]");
    let cx = step_load_context(dir, ssh, servers, monitor);
    let mut steps = Vec::new();
    for (i, table) in tables.into_iter().enumerate() {
        let step = crate::protocol::load(table, &cx).map_err(|p| {
            let table = format!("[[protocol]] {}", i + 1);
            Error::Config(ConfigError::in_file(file, p).in_table(table, step_lines.get(i).copied()))
        })?;
        steps.push(step);
    }
    if let Some(why) = steps.iter().find_map(|s| s.kind.get().needs_ip_servers()) {
        for (i, host) in servers.iter().enumerate() {
            let key = server_key(i, servers.len());
            if host.parse::<std::net::IpAddr>().is_err() {
                return Err(Error::Config(ConfigError::in_file(
                    file,
                    Problem::at(
                        key,
                        format!("`{host}`: {why}, so the servers must be given as IP addresses"),
                    ),
                )));
            }
        }
    }
    Ok(steps)
}

/// What a step's loader may take from the pool: the servers, and its monitor.
fn step_load_context<'a>(
    dir: &'a Path,
    ssh: &'a SshSettings,
    servers: &'a [String],
    monitor: &'a Monitor,
) -> crate::protocol::LoadContext<'a> {
    crate::protocol::LoadContext {
        dir,
        ssh,
        servers,
        monitor: &monitor.kind,
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
    for pool in &config.pools {
        let _ = writeln!(
            out,
            "pool {}: {} monitor, primary {}, {}, fail over {}, {} step(s)",
            pool.name,
            pool.monitor.kind.type_name(),
            pool.primary(),
            pool.describe_standbys(),
            pool.threshold(),
            pool.steps.len()
        );
        let tls = pool.monitor.tls();
        if let Some(tls) = tls {
            let _ = writeln!(out, "pool {}: monitor: {}", pool.name, tls.describe());
        }
        for step in &pool.steps {
            let own = step.kind.get().tls();
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
    use load::check_placeholders;

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
        for typo in [
            "{Pool}",
            "{POOL}",
            "{new-primary}",
            "{host2}",
            "x{nwe_primary}y",
        ] {
            let e =
                check_placeholders(&format!("cmd {typo}"), &["pool", "new_primary"]).unwrap_err();
            assert!(
                e.contains(&format!("`{}`", typo.trim_matches(['x', 'y'])))
                    && e.contains("the known ones are {pool}, {new_primary}"),
                "{typo}: {e}"
            );
        }
        for shell in [
            "echo ${HOME} ${pool}",
            "find . -exec ls {} +",
            "cp a{,.bak}",
            "{1..3}",
        ] {
            assert!(check_placeholders(shell, &["pool"]).is_ok(), "{shell}");
        }
    }

    /// Loads `text` as a pool file and returns the error it is refused with.
    fn pool_error(text: &str) -> (PathBuf, ConfigError) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pools/db.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, text).unwrap();
        let ssh = ssh_settings(dir.path(), RawSsh::default(), None).unwrap();
        match load_pool(dir.path(), &file, &ssh) {
            Err(Error::Config(e)) => (file, e),
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    const POOL: &str = "primary = \"db1\"\nsecondary = \"db2\"\n\n[monitor]\ntype = \"tcp\"\nport = 22\n\n[[protocol]]\ntype = \"exec\"\nhosts = [\"local\"]\nexec_command = \"true\"\n";

    /// Several standbys: each server once in any spelling, `never_promote` among the
    /// standbys with one left to promote, `secondary` or `standbys`, not both.
    #[test]
    fn standbys_keys_are_checked() {
        let tail = "\n[monitor]\ntype = \"tcp\"\nport = 22\n";
        #[rustfmt::skip]
        let rows: &[(&str, &str, &str)] = &[
            ("primary = \"db1\"\nsecondary = \"db2\"\nstandbys = [\"db3\"]", "standbys", "not both"),
            ("primary = \"db1\"", "secondary", "standbys = ["),
            ("primary = \"db1\"\nstandbys = []", "standbys", "expected 1 to 15"),
            ("primary = \"db1\"\nstandbys = [\"db2\", \"DB2.\"]", "standbys", "are the same server"),
            ("primary = \"::1\"\nstandbys = [\"0:0:0:0:0:0:0:1\"]", "standbys", "the primary `::1` under another spelling"),
            ("primary = \"db1\"\nstandbys = [\"db2\", \"db2\"]", "standbys", "listed twice"),
            ("primary = \"db1\"\nstandbys = [\"db2\"]\nnever_promote = [\"db3\"]", "never_promote", "not one of this pool's standbys"),
            ("primary = \"db1\"\nstandbys = [\"db2\"]\nnever_promote = [\"db1\"]", "never_promote", "not one of this pool's standbys"),
            ("primary = \"db1\"\nstandbys = [\"db2\", \"db3\"]\nnever_promote = [\"DB2\", \"db3\"]", "never_promote", "no standby may be promoted"),
            ("primary = \"db1\"\nstandbys = [\"db2\"]\nmax_promote_lag = \"soon\"", "max_promote_lag", "expected a duration"),
        ];
        for (head, key, text) in rows {
            let (_, e) = pool_error(&format!("{head}{tail}"));
            assert_eq!(e.key.as_deref(), Some(*key), "{head}");
            assert!(e.to_string().contains(text), "{head}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pools/db.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let text = format!(
            "primary = \"db1\"\nstandbys = [\"db2\", \"db3\"]\nnever_promote = [\"DB3\"]\nmax_promote_lag = \"5s\"\nconfirm_from_replicas = true{tail}"
        );
        std::fs::write(&file, text).unwrap();
        let ssh = ssh_settings(dir.path(), RawSsh::default(), None).unwrap();
        let pool = load_pool(dir.path(), &file, &ssh).unwrap();
        assert_eq!(pool.servers, ["db1", "db2", "db3"]);
        assert_eq!(pool.never_promote, [Role::at(2)]);
        assert_eq!(pool.max_promote_lag, Duration::from_secs(5));
        assert!(pool.confirm_from_replicas);
        assert_eq!(pool.next_standby(Role::PRIMARY), Role::SECONDARY);
        assert_eq!(pool.next_standby(Role::SECONDARY), Role::PRIMARY);
        assert_eq!(pool.server("db3").unwrap(), Role::at(2));
        assert_eq!(pool.server("DB3.").unwrap(), Role::at(2));
        assert_eq!(pool.server("standby2").unwrap(), Role::at(2));
        assert_eq!(pool.server("secondary").unwrap(), Role::SECONDARY);
        assert!(pool.server("standby3").is_err());
        assert!(pool.server("db9").is_err());
        assert_eq!(
            pool.describe_standbys(),
            "standbys db2, db3 (db3 never promoted)"
        );
    }

    #[test]
    fn a_bad_step_key_is_placed_by_file_table_line_and_key() {
        let (file, e) = pool_error(&format!(
            "{POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = []\nexec_command = \"true\"\n"
        ));
        assert_eq!(e.file.as_deref(), Some(file.as_path()));
        assert_eq!(e.table.as_deref(), Some("[[protocol]] 2"));
        assert_eq!(e.line, Some(13));
        assert_eq!(e.key.as_deref(), Some("hosts"));
        assert_eq!(e.problem, "expected at least one host");
        assert_eq!(
            e.to_string(),
            format!(
                "{}: [[protocol]] 2 (line 13): key `hosts`: expected at least one host",
                file.display()
            )
        );
    }

    #[test]
    fn a_step_ssh_key_is_one_dotted_key() {
        let (_, e) = pool_error(&format!(
            "{POOL}\n[[protocol]]\ntype = \"exec\"\nhosts = [\"app1\"]\nexec_command = \"true\"\nssh = {{ user = \"a b\" }}\n"
        ));
        assert_eq!(e.table.as_deref(), Some("[[protocol]] 2"));
        assert_eq!(e.key.as_deref(), Some("ssh.user"));
        assert!(e.problem.starts_with("`a b`: expected a user name"), "{e}");
    }

    #[test]
    fn monitor_and_pool_keys_and_toml_errors() {
        let (_, e) =
            pool_error("primary = \"db1\"\nsecondary = \"db2\"\n\n[monitor]\ntype = \"tcp\"\n");
        assert_eq!(
            (e.table.as_deref(), e.line, e.key.as_deref()),
            (Some("[monitor]"), Some(4), Some("port"))
        );
        assert_eq!(e.problem, "a `tcp` monitor needs a port");
        let (_, e) = pool_error(
            "primary = \"db1\"\nsecondary = \"db1\"\n[monitor]\ntype = \"tcp\"\nport = 1\n",
        );
        assert_eq!((e.table, e.line), (None, None));
        assert_eq!(e.key.as_deref(), Some("secondary"));
        // toml's own message carries its line and column: it is the problem, after the file.
        let (file, e) = pool_error("primary = \"db1\"\ncolour = 1\n");
        assert_eq!((e.table, e.line, e.key), (None, None, None));
        assert!(
            e.problem.starts_with("TOML parse error at line"),
            "{}",
            e.problem
        );
        assert_eq!(e.file.as_deref(), Some(file.as_path()));
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
                Err(Error::Config(e)) => {
                    let m = e.to_string();
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
