//! Steps: the links of a pool's failover chain. Each step type can check that it would work
//! (`check`), make sure it can run now without changing anything (`preflight`), and do its
//! part of the failover (`promote`).

mod dns;
mod etc_hosts;
mod exec;
mod haproxy;
mod mysql_promote;
mod plugin;
mod redis_promote;
mod vip;

use std::time::{Duration, Instant};

use crate::config::{Pool, Step, StepKind};
use crate::model::Status;

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

/// What a step acts on: the pool, and which server is being left and which is taking over.
/// For `check` and `preflight` these describe the failover that would happen next.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub pool: &'a Pool,
    pub step: &'a Step,
    pub old_primary: &'a str,
    pub new_primary: &'a str,
    pub dry_run: bool,
    /// A person asked (`promote --force`) to go ahead around an old primary that answers
    /// with errors; without it such an old primary fails the step (SPEC 6.3).
    pub force: bool,
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

/// One step type. Implementations are chosen by a `match` on the configured type.
pub trait Protocol {
    fn preflight(&self, ctx: &Context) -> Vec<HostResult>;
    fn promote(&self, ctx: &Context) -> Vec<HostResult>;
    fn check(&self, ctx: &Context) -> Vec<HostResult>;
    /// Each host and the exact command `promote` would run there, for `--dry-run`.
    fn plan(&self, ctx: &Context) -> Vec<(String, String)>;
    /// The SSH logins the step's actions will need, opened at once when a failover starts.
    fn logins(&self, _ctx: &Context) -> Vec<(String, crate::settings::SshSettings)> {
        Vec::new()
    }
}

pub fn protocol(step: &Step) -> Box<dyn Protocol + '_> {
    match &step.kind {
        StepKind::MysqlPromote(cfg) => Box::new(mysql_promote::MysqlPromoteStep { cfg }),

        StepKind::Plugin { program, options } => Box::new(plugin::PluginStep { program, options }),
        StepKind::Exec {
            hosts,
            test_command,
            exec_command,
            shell,
            ssh,
        } => Box::new(exec::ExecStep {
            hosts,
            test_command: test_command.as_deref(),
            exec_command,
            shell: *shell,
            ssh,
        }),
        StepKind::EtcHosts(cfg) => Box::new(etc_hosts::EtcHostsStep { cfg }),
        StepKind::Vip(cfg) => Box::new(vip::VipStep { cfg }),
        StepKind::RedisPromote(cfg) => Box::new(redis_promote::RedisPromoteStep { cfg }),
        StepKind::Dns(cfg) => Box::new(dns::DnsStep { cfg }),
        StepKind::Haproxy(cfg) => Box::new(haproxy::HaproxyStep { cfg }),
    }
}

/// Runs one action of a step. The step's deadline starts now: `timeout` bounds the action
/// as a whole, whatever it does inside.
pub fn run(action: Action, ctx: &Context) -> Vec<HostResult> {
    let ctx = &Context {
        deadline: Instant::now() + ctx.step.timeout,
        ..*ctx
    };
    let p = protocol(ctx.step);
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
