//! Steps: the links of a pool's failover chain. Each step type can check that it would work
//! (`check`), make sure it can run now without changing anything (`preflight`), and do its
//! part of the failover (`promote`).
//!
//! This module is the registry of step types: each type is one file (or folder) here that
//! owns its TOML table, its validation (`load`), its type name, what it needs (SSH logins,
//! TLS, `check-config` probes and notes) and its behaviour (the [`Protocol`] trait). The only
//! `match`es over step types are [`load`] (from the `type` string) and [`StepKind::get`].

mod dns;
mod etc_hosts;
mod exec;
mod haproxy;
mod mysql_promote;
mod plugin;
mod redis_promote;
mod vip;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::load::{scalar_text, toml_msg};
use crate::error::Problem;
use crate::model::{PoolServers, Role, Status};
use crate::monitor::MonitorKind;
pub use crate::monitor::Notes;
use crate::settings::{SshSettings, parse_duration};
use crate::tls::Tls;

/// One link of a pool's chain: the keys every step has, and its type's own settings.
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

/// The step types, each the validated settings of one file of this module.
#[derive(Debug, Clone)]
pub enum StepKind {
    MysqlPromote(mysql_promote::MysqlPromote),
    Plugin(plugin::Plugin),
    Exec(exec::Exec),
    EtcHosts(etc_hosts::EtcHosts),
    Vip(vip::Vip),
    RedisPromote(redis_promote::RedisPromote),
    Dns(dns::Dns),
    Haproxy(haproxy::Haproxy),
}

/// The step types, in the order messages list them.
pub const TYPES: &[&str] = &[
    mysql_promote::TYPE,
    etc_hosts::TYPE,
    vip::TYPE,
    dns::TYPE,
    haproxy::TYPE,
    exec::TYPE,
    plugin::TYPE,
    redis_promote::TYPE,
];

impl StepKind {
    /// The step type's behaviour and needs.
    pub fn get(&self) -> &dyn Protocol {
        match self {
            StepKind::MysqlPromote(k) => k,
            StepKind::Plugin(k) => k,
            StepKind::Exec(k) => k,
            StepKind::EtcHosts(k) => k,
            StepKind::Vip(k) => k,
            StepKind::RedisPromote(k) => k,
            StepKind::Dns(k) => k,
            StepKind::Haproxy(k) => k,
        }
    }
}

impl Step {
    pub fn type_name(&self) -> &'static str {
        self.kind.get().type_name()
    }
}

/// What a step type's `load` may use besides its own table: the config dir, the `[ssh]`
/// defaults, the pool's two servers, and what the pool's monitor says about reaching them.
#[derive(Debug, Clone)]
pub struct LoadContext<'a> {
    pub dir: &'a Path,
    pub ssh: &'a SshSettings,
    /// The pool's servers, the configured primary first.
    pub servers: &'a [String],
    /// The pool's monitor: a promoting step reaches the same servers, and may default to
    /// how its monitor reaches them.
    pub monitor: &'a MonitorKind,
}

/// Validates one `[[protocol]]` table: the keys every step has (`type`, `name`, `timeout`,
/// `on_failure`), then the rest by its type's `load`.
pub fn load(mut table: toml::Table, cx: &LoadContext) -> Result<Step, Problem> {
    let kind = match table.remove("type") {
        Some(toml::Value::String(s)) => s,
        Some(_) => return Err(Problem::at("type", "expected a string")),
        None => {
            return Err(Problem::new(format!(
                "key `type` is missing: expected one of {}",
                TYPES.join(", ")
            )));
        }
    };
    let name = match table.remove("name") {
        Some(toml::Value::String(s)) if !s.trim().is_empty() => s,
        Some(_) => return Err(Problem::at("name", "expected a non-empty string")),
        None => kind.clone(),
    };
    let timeout = match table.remove("timeout") {
        Some(toml::Value::String(s)) => {
            parse_duration(&s).map_err(|e| Problem::at("timeout", e))?
        }
        Some(_) => {
            return Err(Problem::at(
                "timeout",
                "expected a duration string like \"60s\"",
            ));
        }
        None => Duration::from_secs(60),
    };
    let on_failure = match table.remove("on_failure") {
        None => OnFailure::Abort,
        Some(toml::Value::String(s)) if s == "abort" => OnFailure::Abort,
        Some(toml::Value::String(s)) if s == "continue" => OnFailure::Continue,
        Some(v) => {
            let got = scalar_text(&v).unwrap_or_else(|| v.type_str().to_string());
            return Err(Problem::at(
                "on_failure",
                format!("got {got}, expected \"abort\" or \"continue\""),
            ));
        }
    };
    let kind = match kind.as_str() {
        mysql_promote::TYPE => StepKind::MysqlPromote(mysql_promote::load(table, cx)?),
        plugin::TYPE => StepKind::Plugin(plugin::load(table, cx)?),
        exec::TYPE => StepKind::Exec(exec::load(table, cx)?),
        etc_hosts::TYPE => StepKind::EtcHosts(etc_hosts::load(table, cx)?),
        vip::TYPE => StepKind::Vip(vip::load(table, cx)?),
        redis_promote::TYPE => StepKind::RedisPromote(redis_promote::load(table, cx)?),
        dns::TYPE => StepKind::Dns(dns::load(table, cx)?),
        haproxy::TYPE => StepKind::Haproxy(haproxy::load(table, cx)?),
        other => {
            return Err(Problem::at(
                "type",
                format!(
                    "unknown step type `{other}`, expected one of {}",
                    TYPES.join(", ")
                ),
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

/// A step's table (without the common keys) as its type's raw struct, which refuses keys
/// it does not know.
fn raw<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, String> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| toml_msg(&e))
}

/// A port number from text: 1 to 65535.
fn port_number(s: &str) -> Option<u16> {
    s.parse().ok().filter(|p| *p > 0)
}

/// What each of a pool's servers is called elsewhere: a DNS record's value, an HAProxy
/// server's name. One name per server, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerServer(Vec<String>);

impl PerServer {
    /// Names given in role order (the primary's first).
    pub fn new(names: Vec<String>) -> PerServer {
        PerServer(names)
    }

    /// The name for the pool server at `address`.
    pub fn of(&self, pool: &PoolServers, address: &str) -> &str {
        pool.role_of(address)
            .and_then(|r| self.0.get(r.index()))
            .map_or("", String::as_str)
    }

    /// `primary -> a, secondary -> b, ...`, for notes.
    pub fn describe(&self) -> String {
        let pairs: Vec<String> = (self.0.iter().enumerate())
            .map(|(i, n)| format!("{} -> {n}", Role::at(i).as_str()))
            .collect();
        pairs.join(", ")
    }

    /// A `{ primary = "...", secondary = "...", standby2 = "..." }` table (`key`): a name for
    /// each of the pool's servers by its role, each made by `value`, all different; without
    /// a table (`None`), each server's address. `why_distinct` says why names must differ.
    pub fn load(
        raw: Option<RawPerServer>,
        servers: &[String],
        key: &str,
        value: impl Fn(&str, Role) -> Result<String, Problem>,
        why_distinct: &str,
    ) -> Result<PerServer, Problem> {
        let labels: Vec<&str> = (0..servers.len()).map(|i| Role::at(i).as_str()).collect();
        let given = match raw {
            Some(mut table) => {
                if let Some(extra) = table.keys().find(|k| !labels.contains(&k.as_str())) {
                    return Err(Problem::at(
                        format!("{key}.{extra}"),
                        format!(
                            "not a server of this pool; expected one key per server: {}",
                            labels.join(", ")
                        ),
                    ));
                }
                let mut names = Vec::new();
                for label in &labels {
                    let name = table.remove(*label).ok_or_else(|| {
                        Problem::at(
                            format!("{key}.{label}"),
                            format!(
                                "missing: give a name for each server: {}",
                                labels.join(", ")
                            ),
                        )
                    })?;
                    names.push(name);
                }
                names
            }
            None => servers.to_vec(),
        };
        let mut names: Vec<String> = Vec::new();
        for (i, name) in given.iter().enumerate() {
            let name = value(name, Role::at(i))?;
            if let Some(j) = names.iter().position(|n| *n == name) {
                return Err(Problem::at(
                    key,
                    format!(
                        "the {} and the {} would both be `{name}`; {why_distinct}",
                        Role::at(j).as_str(),
                        Role::at(i).as_str()
                    ),
                ));
            }
            names.push(name);
        }
        Ok(PerServer::new(names))
    }
}

/// A `{ primary = "...", secondary = "...", ... }` table, by server role.
pub type RawPerServer = std::collections::BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Preflight,
    Promote,
    Check,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Preflight => "preflight",
            Action::Promote => "promote",
            Action::Check => "check",
        }
    }
}

/// Whether a person forces the chain past an old primary that answers with errors
/// (`promote --force`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Force {
    #[default]
    No,
    PastOldPrimaryErrors,
}

impl Force {
    /// `PastOldPrimaryErrors` when `--force` was given.
    pub fn when(forced: bool) -> Force {
        if forced {
            Force::PastOldPrimaryErrors
        } else {
            Force::No
        }
    }

    /// Whether the step may go ahead around an old primary that answers with errors.
    pub fn is_on(self) -> bool {
        self == Force::PastOldPrimaryErrors
    }
}

/// What a step acts on: the pool, and which server is being left and which is taking over.
/// For `check` and `preflight` these describe the failover that would happen next.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub pool: PoolServers<'a>,
    /// The pool's monitor timeout, which bounds each database call of a promoting step.
    pub monitor_timeout: Duration,
    pub step: &'a Step,
    pub old_primary: &'a str,
    pub new_primary: &'a str,
    pub dry_run: bool,
    /// A person asked (`promote --force`) to go ahead around an old primary that answers
    /// with errors; without it such an old primary fails the step (SPEC 6.3).
    pub force: Force,
    /// SSH sessions kept for a failover, reused by every step on the same host.
    pub sessions: Option<&'a crate::ssh::Sessions>,
    /// One deadline for the whole action of this step (SPEC 6, 2d): every call inside it,
    /// on every host and in every batch, gets only what is left of it.
    pub deadline: Instant,
}

impl Context<'_> {
    /// In a readiness check: the server serving now. A check describes the failover that
    /// would come next, so the active server is the one it would leave (`old_primary`).
    pub fn active(&self) -> &str {
        self.old_primary
    }

    /// In a readiness check: the standby, the one a failover would promote.
    pub fn standby(&self) -> &str {
        self.new_primary
    }

    /// Runs a shell command line on `host` within what is left of the step's deadline,
    /// reusing the failover's SSH session for the host.
    pub fn shell(
        &self,
        host: &crate::settings::Host,
        ssh: &crate::settings::SshSettings,
        line: &str,
    ) -> crate::remote::Output {
        crate::remote::run_shell_in(self.sessions, host, ssh, line, self.left())
    }

    /// What is left of the step's deadline (zero once it has passed).
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A limit for one call inside the step: `limit`, or less when the step's deadline is
    /// nearer.
    pub fn bounded(&self, limit: Duration) -> Duration {
        limit.min(self.left())
    }
}

/// The result of one action on one host.
#[derive(Debug, Clone)]
pub struct HostResult {
    pub host: String,
    pub status: Status,
    pub message: String,
    pub output: String,
    pub duration: Duration,
}

impl HostResult {
    /// The one constructor: the message is kept to one line for reports.
    pub fn new(
        host: &str,
        status: Status,
        message: &str,
        output: String,
        duration: Duration,
    ) -> HostResult {
        HostResult {
            host: host.to_string(),
            status,
            message: crate::text::one_line(message),
            output,
            duration,
        }
    }

    /// A result about one command's run: its output and duration come with it.
    pub fn of(
        host: &str,
        status: Status,
        message: &str,
        out: &crate::remote::Output,
    ) -> HostResult {
        HostResult::new(host, status, message, out.combined(), out.duration)
    }
}

/// What a history event records of it ([`crate::state::Event::host_result`]).
impl<'a> From<&'a HostResult> for crate::state::HostOutcome<'a> {
    fn from(h: &'a HostResult) -> Self {
        crate::state::HostOutcome {
            host: &h.host,
            status: h.status,
            message: &h.message,
            output: &h.output,
            duration: h.duration,
        }
    }
}

/// One step type: its behaviour, and what it needs. Implemented by each type's settings.
pub trait Protocol {
    /// The `type` of its `[[protocol]]` tables.
    fn type_name(&self) -> &'static str;
    fn preflight(&self, ctx: &Context) -> Vec<HostResult>;
    fn promote(&self, ctx: &Context) -> Vec<HostResult>;
    fn check(&self, ctx: &Context) -> Vec<HostResult>;
    /// Each host and the exact command `promote` would run there, for `--dry-run`.
    fn plan(&self, ctx: &Context) -> Vec<(String, String)>;
    /// The SSH logins the step's actions will need, opened at once when a failover starts.
    fn logins(&self, _ctx: &Context) -> Vec<(String, SshSettings)> {
        Vec::new()
    }
    /// The SSH settings the step logs in with, when it reaches some host through SSH (their
    /// files are checked by `check-config`).
    fn ssh_in_use(&self) -> Option<&SshSettings> {
        None
    }
    /// The TLS the step talks to the servers with, if any.
    fn tls(&self) -> Option<&Tls> {
        None
    }
    /// Why the pool's servers must be given as IP addresses, when the step needs that.
    fn needs_ip_servers(&self) -> Option<&'static str> {
        None
    }
    /// Whether `check-config` runs the step's preflight as a read-only probe.
    fn probed_by_check_config(&self) -> bool {
        false
    }
    /// `check-config`'s notes about what the step will reach, and warnings about what is
    /// missing for it on this host.
    fn notes(&self) -> Notes {
        Notes::default()
    }
}

/// Runs one action of a step. The step's deadline starts now: `timeout` bounds the action
/// as a whole, whatever it does inside.
pub fn run(action: Action, ctx: &Context) -> Vec<HostResult> {
    let ctx = &Context {
        deadline: Instant::now() + ctx.step.timeout,
        ..*ctx
    };
    let p = ctx.step.kind.get();
    match action {
        Action::Preflight => p.preflight(ctx),
        Action::Promote => p.promote(ctx),
        Action::Check => p.check(ctx),
    }
}

/// The worst status among a step's host results (no results at all is a failure).
pub fn worst(results: &[HostResult]) -> Status {
    results
        .iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(Status::Critical)
}

/// Turns a finished command into a host result: exit 0 is OK, exit 1 is a warning where
/// `warning_allowed` (readiness checks), anything else is a failure.
fn host_result(host: &str, out: &crate::remote::Output, warning_allowed: bool) -> HostResult {
    use crate::remote::Exit;
    let status = match out.exit {
        Exit::Code(0) => Status::Ok,
        Exit::Code(1) if warning_allowed => Status::Warning,
        _ => Status::Critical,
    };
    let first = crate::text::first_line(&out.stdout);
    let message = match (status, first.is_empty()) {
        (Status::Ok, false) => first,
        (Status::Ok, true) => "exit 0".to_string(),
        (_, false) => format!("{first} ({})", out.describe_exit()),
        (_, true) => out.describe_exit(),
    };
    HostResult::of(host, status, &message, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name in `TYPES` reaches its own type's `load`: it is never "unknown", and a
    /// table it accepts loads as that type.
    #[test]
    fn every_listed_type_loads_as_itself() {
        let ssh = SshSettings {
            user: "deadpool".into(),
            port: 22,
            auth: crate::settings::SshAuth::Agent,
            known_hosts: "/nonexistent/known_hosts".into(),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
            sudo: false,
        };
        let monitor = MonitorKind::Tcp(crate::monitor::tcp::Tcp { port: 1 });
        let servers = ["10.0.0.1".to_string(), "10.0.0.2".to_string()];
        let cx = LoadContext {
            dir: Path::new("/nonexistent"),
            ssh: &ssh,
            servers: &servers,
            monitor: &monitor,
        };
        for name in TYPES {
            let table: toml::Table = format!("type = \"{name}\"").parse().unwrap();
            match load(table, &cx) {
                Ok(step) => assert_eq!(step.type_name(), *name),
                Err(e) => {
                    let e = e.to_string();
                    assert!(!e.contains("unknown step type"), "{name}: {e}");
                    assert!(!e.contains("key `type`"), "{name}: {e}");
                }
            }
        }
    }
}
