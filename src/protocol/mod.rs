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
mod postgres_promote;
mod redis_promote;
mod vip;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::load::{scalar_text, toml_msg};
use crate::error::Problem;
use crate::model::{Concern, PoolServers, Role, Status};
use crate::monitor::MonitorKind;
pub use crate::monitor::Notes;
use crate::settings::{SshSettings, host_key, parse_duration};
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
    PostgresPromote(postgres_promote::PostgresPromote),
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
    postgres_promote::TYPE,
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
            StepKind::PostgresPromote(k) => k,
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
        postgres_promote::TYPE => StepKind::PostgresPromote(postgres_promote::load(table, cx)?),
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

impl<'a> Context<'a> {
    /// In a readiness check: the server serving now. A check describes the failover that
    /// would come next, so the active server is the one it would leave (`old_primary`).
    pub fn active(&self) -> &str {
        self.old_primary
    }

    /// In a readiness check: the standby, the one a failover would promote.
    pub fn standby(&self) -> &str {
        self.new_primary
    }

    /// The standbys a promotion leaves behind: every server of the pool but the old and the
    /// new primary, in config order (`never_promote` ones included). They follow the old
    /// primary until the promoting step repoints them to the new one.
    pub fn other_standbys(&self) -> Vec<&'a str> {
        other_standbys(&self.pool, self.old_primary, self.new_primary)
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

    /// The same context with a nearer deadline: at most `limit` from now, for one bounded
    /// call inside the step.
    pub fn within(&self, limit: Duration) -> Context<'a> {
        Context {
            deadline: self.deadline.min(Instant::now() + limit),
            ..*self
        }
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

/// Every server of `pool` but `old` and `new`, in config order (hosts compared as
/// [`PoolServers::role_of`] compares them).
fn other_standbys<'a>(pool: &PoolServers<'a>, old: &str, new: &str) -> Vec<&'a str> {
    let leaving = [host_key(old), host_key(new)];
    pool.roles()
        .map(|(_, server)| server)
        .filter(|server| !leaving.contains(&host_key(server)))
        .collect()
}

/// A promoting step's preflight: `candidate`'s results (about the new primary and the old
/// one), then one result for each other standby, which `login` shows the step can reach to
/// repoint after the failover. All at once; a standby it cannot reach is a warning, since it
/// need not hold up the failover.
pub fn preflight_with_standbys(
    ctx: &Context,
    candidate: impl FnOnce() -> Vec<HostResult> + Send,
    login: impl Fn(&str) -> Result<String, String> + Sync,
) -> Vec<HostResult> {
    std::thread::scope(|s| {
        let others = s.spawn(|| {
            crate::remote::for_each_host(&ctx.other_standbys(), |host| {
                let started = Instant::now();
                let (status, message) = repointable_verdict(ctx.new_primary, login(host));
                HostResult::new(host, status, &message, String::new(), started.elapsed())
            })
        });
        let mut results = candidate();
        results.extend(others.join().expect("a standby's preflight panicked"));
        results
    })
}

/// The preflight verdict on a standby the failover will repoint (pure, for tests).
fn repointable_verdict(new: &str, login: Result<String, String>) -> (Status, String) {
    match login {
        Ok(seen) => (
            Status::Ok,
            format!("can be repointed to {new} after the failover: {seen}"),
        ),
        Err(why) => (
            Status::Warning,
            format!("cannot be repointed after the failover: {why}"),
        ),
    }
}

/// Why a standby left behind by a promotion does not replicate from the new primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotRepointed {
    /// Repointing it failed (a login, a command, a replication link that does not come
    /// up): a person repoints it by hand.
    Failed(String),
    /// It can never follow the new primary: it already holds changes the new primary does
    /// not have, and serves them. A person rebuilds it.
    Diverged(String),
}

/// A promotion's results: the new primary's first (`promoted`); once that is OK, one for
/// each other standby, all repointed at once by `repoint` (which notes what it did and says
/// how the standby replicates now, or why not). The standbys' results are [`HostResult::aside`]:
/// the service has moved whatever they say, so even a CRITICAL one (a diverged standby)
/// leaves the step succeeded and the chain going on.
pub fn then_repoint(
    ctx: &Context,
    promoted: HostResult,
    repoint: impl Fn(&str, &mut Vec<String>) -> Result<String, NotRepointed> + Sync,
) -> Vec<HostResult> {
    if promoted.status != Status::Ok {
        return vec![promoted];
    }
    let mut results = vec![promoted];
    results.extend(crate::remote::for_each_host(
        &ctx.other_standbys(),
        |host| {
            let started = Instant::now();
            let mut notes = Vec::new();
            let (status, message) = repointed_verdict(ctx.new_primary, repoint(host, &mut notes));
            HostResult::new(host, status, &message, notes.join("\n"), started.elapsed()).aside()
        },
    ));
    results
}

/// The result of repointing a standby to the new primary (pure, for tests): a standby
/// that could not be repointed is a WARNING, one that diverged is CRITICAL.
fn repointed_verdict(new: &str, outcome: Result<String, NotRepointed>) -> (Status, String) {
    match outcome {
        Ok(replicating) => (
            Status::Ok,
            format!("repointed to {new}: replicating ({replicating})"),
        ),
        Err(NotRepointed::Failed(why)) => (
            Status::Warning,
            format!(
                "could not be repointed to {new}: {why}; it is not replicating from the primary: repoint it by hand"
            ),
        ),
        Err(NotRepointed::Diverged(why)) => (
            Status::Critical,
            format!("FORKED OFF, it cannot follow {new}: {why}"),
        ),
    }
}

/// A promoting step's readiness check: every standby by `standby` (the one a failover would
/// promote first, then the others in config order) and the active server by `active`, all
/// at once; the active server's result last.
pub fn check_standbys(
    ctx: &Context,
    standby: impl Fn(&str) -> HostResult + Sync,
    active: impl FnOnce() -> HostResult + Send,
) -> Vec<HostResult> {
    let mut standbys = vec![ctx.standby()];
    standbys.extend(ctx.other_standbys());
    std::thread::scope(|s| {
        let active = s.spawn(active);
        let mut results = crate::remote::for_each_host(&standbys, |host| standby(host));
        results.push(active.join().expect("the active server's check panicked"));
        results
    })
}

/// The result of one action on one host.
#[derive(Debug, Clone)]
pub struct HostResult {
    pub host: String,
    pub status: Status,
    pub message: String,
    pub output: String,
    pub duration: Duration,
    /// About a server beside the step's own action (a standby a promotion leaves behind),
    /// not about the action: recorded with its status, it never fails the step
    /// ([`crate::rules::step_succeeded`]).
    pub aside: bool,
    /// What a readiness check's status is about: where clients are sent now, or whether a
    /// failover would work. Only `check` results set it; the others keep the default.
    pub concern: Concern,
    /// A promoting step's result for the new primary: what it held when it was made
    /// writable, for what the failover lost ([`crate::lost`]).
    pub held: Option<Held>,
}

/// What a promoting step read of the new primary right after making it writable: its
/// position in the old primary's stream, and how it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub position: crate::position::Position,
    /// In the server's terms: `pg_last_wal_replay_lsn() after the promotion`.
    pub how: String,
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
            aside: false,
            concern: Concern::Readiness,
            held: None,
        }
    }

    /// The same result, about `concern` ([`HostResult::concern`]).
    pub fn about(self, concern: Concern) -> HostResult {
        HostResult { concern, ..self }
    }

    /// The same result, about a server beside the step's action ([`HostResult::aside`]).
    pub fn aside(self) -> HostResult {
        HostResult {
            aside: true,
            ..self
        }
    }

    /// The same result, with what the new primary held once writable ([`HostResult::held`]).
    pub fn holding(self, held: Option<Held>) -> HostResult {
        HostResult { held, ..self }
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

/// Collects what happened for the history, and makes the result.
pub struct Log {
    host: String,
    lines: Vec<String>,
    started: Instant,
}

impl Log {
    pub fn new(host: &str) -> Log {
        Log {
            host: host.to_string(),
            lines: Vec::new(),
            started: Instant::now(),
        }
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    pub fn done(self, status: Status, message: impl Into<String>) -> HostResult {
        let output = self.lines.join("\n");
        HostResult::new(
            &self.host,
            status,
            &message.into(),
            output,
            self.started.elapsed(),
        )
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
    /// The readiness check. A result about where the step sends clients now is marked
    /// [`Concern::Direction`] (the report keeps it as it is in every state); the others are
    /// about whether a failover would work.
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
    /// Whether its action promotes the new primary (and so reads what it held once
    /// writable, [`HostResult::held`]).
    fn promotes(&self) -> bool {
        false
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

/// Whether a step's action did its part, by [`crate::rules::step_succeeded`].
pub fn succeeded(results: &[HostResult]) -> bool {
    crate::rules::step_succeeded(results.iter().map(|r| (r.status, r.aside)))
}

/// A command's answer in one line for a message: the first line it printed (stdout, else
/// stderr) and how it ended.
fn describe_output(out: &crate::remote::Output) -> String {
    let stdout = crate::text::first_line(&out.stdout);
    let stderr = crate::text::first_line(&out.stderr);
    match (stdout.is_empty(), stderr.is_empty()) {
        (false, _) => format!("{stdout} ({})", out.describe_exit()),
        (true, false) => format!("{stderr} ({})", out.describe_exit()),
        (true, true) => out.describe_exit(),
    }
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

    /// `[ssh]` defaults for loading steps in tests (nothing is read from them).
    fn test_ssh() -> SshSettings {
        SshSettings {
            user: "deadpool".into(),
            port: 22,
            auth: crate::settings::SshAuth::Agent,
            known_hosts: "/nonexistent/known_hosts".into(),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
            sudo: false,
        }
    }

    fn servers(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    /// A step that loads from its type alone, for contexts.
    fn redis_step() -> Step {
        let ssh = test_ssh();
        let monitor = MonitorKind::Tcp(crate::monitor::tcp::Tcp { port: 1 });
        let cx = LoadContext {
            dir: Path::new("/nonexistent"),
            ssh: &ssh,
            servers: &servers(&["10.0.0.1", "10.0.0.2"]),
            monitor: &monitor,
        };
        load("type = \"redis_promote\"".parse().unwrap(), &cx).unwrap()
    }

    fn context<'a>(step: &'a Step, pool: &'a [String], old: &'a str, new: &'a str) -> Context<'a> {
        Context {
            pool: PoolServers {
                name: "db",
                servers: pool,
            },
            monitor_timeout: Duration::from_secs(1),
            step,
            old_primary: old,
            new_primary: new,
            dry_run: true,
            force: Force::No,
            sessions: None,
            deadline: Instant::now() + Duration::from_secs(5),
        }
    }

    #[test]
    fn the_standbys_to_repoint_are_all_but_the_old_and_the_new_primary() {
        let pair = servers(&["10.0.0.1", "10.0.0.2"]);
        let three = servers(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        let named = servers(&["db1", "db2", "db3", "db4"]);
        // (servers, old, new, the others)
        let table: &[(&[String], &str, &str, &[&str])] = &[
            (&pair, "10.0.0.1", "10.0.0.2", &[]),
            (&pair, "10.0.0.2", "10.0.0.1", &[]),
            (&three, "10.0.0.1", "10.0.0.2", &["10.0.0.3"]),
            (&three, "10.0.0.1", "10.0.0.3", &["10.0.0.2"]),
            (&three, "10.0.0.3", "10.0.0.1", &["10.0.0.2"]),
            (&named, "DB1.", "db3", &["db2", "db4"]),
        ];
        for (pool, old, new, others) in table {
            let pool = PoolServers {
                name: "db",
                servers: pool,
            };
            assert_eq!(other_standbys(&pool, old, new), *others, "{old} -> {new}");
        }
    }

    #[test]
    fn a_standby_that_cannot_be_repointed_is_a_warning() {
        let new = "10.0.0.2";
        let (status, message) =
            repointed_verdict(new, Ok("replica of 10.0.0.2, IO Yes, SQL Yes".into()));
        assert_eq!(status, Status::Ok);
        assert_eq!(
            message,
            "repointed to 10.0.0.2: replicating (replica of 10.0.0.2, IO Yes, SQL Yes)"
        );
        let denied = "10.0.0.3 does not replicate from 10.0.0.2: Access denied for user 'repl'";
        let (status, message) = repointed_verdict(new, Err(NotRepointed::Failed(denied.into())));
        assert_eq!(status, Status::Warning);
        assert_eq!(
            message,
            format!(
                "could not be repointed to 10.0.0.2: {denied}; it is not replicating from the primary: repoint it by hand"
            )
        );
        let diverged = NotRepointed::Diverged("replayed to 0/5000000, past 0/4000000".into());
        assert_eq!(
            repointed_verdict(new, Err(diverged)),
            (
                Status::Critical,
                "FORKED OFF, it cannot follow 10.0.0.2: replayed to 0/5000000, past 0/4000000"
                    .into()
            )
        );
        assert_eq!(
            repointable_verdict(new, Ok("replica of 10.0.0.1".into())),
            (
                Status::Ok,
                "can be repointed to 10.0.0.2 after the failover: replica of 10.0.0.1".into()
            )
        );
        assert_eq!(
            repointable_verdict(new, Err("cannot connect as admin: Access denied".into())),
            (
                Status::Warning,
                "cannot be repointed after the failover: cannot connect as admin: Access denied"
                    .into()
            )
        );
    }

    /// The new primary's result comes first; the other standbys follow only once it is OK,
    /// and a standby that could not be repointed, or diverged, leaves the step succeeded.
    #[test]
    fn promotion_results_then_each_repointed_standby() {
        let step = redis_step();
        let promoted = |status| {
            HostResult::new(
                "10.0.0.2",
                status,
                "promoted",
                String::new(),
                Duration::ZERO,
            )
        };
        let repoint = |host: &str, notes: &mut Vec<String>| {
            notes.push(format!("REPLICAOF on {host}"));
            match host {
                "10.0.0.3" => Ok("replica of 10.0.0.2".to_string()),
                "10.0.0.4" => Err(NotRepointed::Failed("Connection refused".to_string())),
                _ => Err(NotRepointed::Diverged("replayed past it".to_string())),
            }
        };
        let pair = servers(&["10.0.0.1", "10.0.0.2"]);
        let ctx = context(&step, &pair, "10.0.0.1", "10.0.0.2");
        let results = then_repoint(&ctx, promoted(Status::Ok), |_, _| unreachable!());
        assert_eq!(results.len(), 1);

        let five = servers(&["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"]);
        let ctx = context(&step, &five, "10.0.0.1", "10.0.0.2");
        let results = then_repoint(&ctx, promoted(Status::Ok), repoint);
        let seen: Vec<(&str, Status, bool)> = results
            .iter()
            .map(|r| (r.host.as_str(), r.status, r.aside))
            .collect();
        assert_eq!(
            seen,
            [
                ("10.0.0.2", Status::Ok, false),
                ("10.0.0.3", Status::Ok, true),
                ("10.0.0.4", Status::Warning, true),
                ("10.0.0.5", Status::Critical, true)
            ]
        );
        assert_eq!(results[2].output, "REPLICAOF on 10.0.0.4");
        assert_eq!(worst(&results), Status::Critical);
        assert!(
            succeeded(&results),
            "a diverged standby does not fail the step"
        );

        let results = then_repoint(&ctx, promoted(Status::Critical), |_, _| unreachable!());
        assert_eq!(results.len(), 1);
        assert!(!succeeded(&results));
    }

    #[test]
    fn readiness_and_plan_cover_every_standby() {
        let step = redis_step();
        let result =
            |host: &str| HostResult::new(host, Status::Ok, "", String::new(), Duration::ZERO);
        let hosts = |results: Vec<HostResult>| -> Vec<String> {
            results.into_iter().map(|r| r.host).collect()
        };
        let pair = servers(&["10.0.0.1", "10.0.0.2"]);
        let ctx = context(&step, &pair, "10.0.0.1", "10.0.0.2");
        assert_eq!(
            hosts(check_standbys(&ctx, result, || result("10.0.0.1"))),
            ["10.0.0.2", "10.0.0.1"]
        );
        assert_eq!(step.kind.get().plan(&ctx).len(), 1);
        let three = servers(&["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        // Active standby2, a failover would promote the primary.
        let ctx = context(&step, &three, "10.0.0.3", "10.0.0.1");
        assert_eq!(
            hosts(check_standbys(&ctx, result, || result("10.0.0.3"))),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        let plan = step.kind.get().plan(&ctx);
        assert_eq!(plan.len(), 2);
        assert_eq!(
            plan[1],
            (
                "10.0.0.2".to_string(),
                "once 10.0.0.1 is a primary: REPLICAOF 10.0.0.1 6379; verify it replicates from 10.0.0.1"
                    .to_string()
            )
        );
    }

    /// Every name in `TYPES` reaches its own type's `load`: it is never "unknown", and a
    /// table it accepts loads as that type.
    #[test]
    fn every_listed_type_loads_as_itself() {
        let ssh = test_ssh();
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
