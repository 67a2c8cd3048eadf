//! The `exec` step: `test_command` as its readiness check and preflight, `exec_command` as
//! its action, on each listed host in parallel. `{new_primary}`, `{old_primary}` and `{pool}`
//! are substituted. Local commands run without a shell unless `shell = true`; remote
//! commands always go through the remote user's shell, so there every value is shell-quoted.

use serde::Deserialize;

use super::{Context, HostResult, LoadContext, Protocol, host_result};
use crate::config::load::{RawSsh, check_local_command, check_placeholders, host_list, step_ssh};
use crate::error::Problem;
use crate::model::Status;
use crate::remote;
use crate::settings::{Host, SshSettings};
use crate::text::shell_quote;

/// The step's `type`.
pub const TYPE: &str = "exec";

/// The `exec` step's settings.
#[derive(Debug, Clone)]
pub struct Exec {
    pub hosts: Vec<Host>,
    pub test_command: Option<String>,
    pub exec_command: String,
    pub shell: bool,
    pub ssh: SshSettings,
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

/// The `exec` step's keys, validated: commands that split into words and use only the
/// known placeholders, programs on `local` that only root can change
/// ([`check_local_command`]), and no shell under sudo.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<Exec, Problem> {
    let raw: RawExec = super::raw(table)?;
    let hosts = host_list(&raw.hosts, "hosts", true)?;
    for (key, cmd) in [
        ("exec_command", Some(&raw.exec_command)),
        ("test_command", raw.test_command.as_ref()),
    ] {
        let Some(cmd) = cmd else { continue };
        let words = crate::text::split_words(cmd).map_err(|e| Problem::at(key, e))?;
        if words.is_empty() {
            return Err(Problem::at(key, "expected a command, got an empty string"));
        }
        check_placeholders(cmd, &["new_primary", "old_primary", "pool"])
            .map_err(|e| Problem::at(key, e))?;
    }
    if hosts.contains(&Host::Local) {
        // Without a test, readiness runs `true` the same way.
        let test = raw.test_command.as_deref().unwrap_or("true");
        for (key, cmd) in [
            ("exec_command", raw.exec_command.as_str()),
            ("test_command", test),
        ] {
            check_local_command(cmd, raw.shell).map_err(|e| Problem::at(key, e))?;
        }
    }
    let ssh = step_ssh(cx.dir, raw.ssh, cx.ssh)?;
    if raw.shell && ssh.sudo && hosts.iter().any(|h| *h != Host::Local) {
        return Err(Problem::at(
            "shell",
            "a shell under sudo is a root shell for whoever holds the SSH key; with `sudo = true` remote commands run as fixed words. Put shell logic in a script on the host and allow that script in sudoers",
        ));
    }
    Ok(Exec {
        hosts,
        test_command: raw.test_command,
        exec_command: raw.exec_command,
        shell: raw.shell,
        ssh,
    })
}

/// How one host runs a command.
enum Invocation {
    Argv(Vec<String>),
    Shell(String),
}

impl Exec {
    fn invocation(
        &self,
        host: &Host,
        template: &str,
        ctx: &Context,
        privileged: bool,
    ) -> Result<Invocation, String> {
        let values = [
            ("new_primary", ctx.new_primary),
            ("old_primary", ctx.old_primary),
            ("pool", ctx.pool.name),
        ];
        match host {
            Host::Local if !self.shell => {
                Ok(Invocation::Argv(remote::template_words(template, &values)?))
            }
            Host::Local => Ok(Invocation::Shell(remote::render(template, &values))),
            // Under sudo, the command is a fixed argument vector (config refuses `shell`).
            Host::Remote(_) if self.ssh.sudo && privileged => {
                let words = remote::template_words(template, &values)?;
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                Ok(Invocation::Shell(remote::privileged(&self.ssh, &words)))
            }
            Host::Remote(_) => Ok(Invocation::Shell(remote::render(template, &values))),
        }
    }

    fn run_on_hosts(&self, template: &str, ctx: &Context, privileged: bool) -> Vec<HostResult> {
        remote::for_each_host(&self.hosts, |host| {
            let out = match self.invocation(host, template, ctx, privileged) {
                Ok(Invocation::Argv(argv)) => remote::run_local(&argv, &[], ctx.left()),
                Ok(Invocation::Shell(line)) => ctx.shell(host, &self.ssh, &line),
                Err(e) => {
                    return HostResult::new(
                        host.name(),
                        Status::Critical,
                        &format!("cannot split command: {e}"),
                        String::new(),
                        Default::default(),
                    );
                }
            };
            host_result(host.name(), &out, false)
        })
    }

    fn test(&self, ctx: &Context) -> Vec<HostResult> {
        match self.test_command.as_deref() {
            Some(test) => self.run_on_hosts(test, ctx, true),
            // Without a test, readiness is "can we log in and run something there", as the
            // login user: it needs no sudo rule.
            None => self.run_on_hosts("true", ctx, false),
        }
    }
}

impl Protocol for Exec {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn ssh_in_use(&self) -> Option<&SshSettings> {
        self.hosts
            .iter()
            .any(|h| *h != Host::Local)
            .then_some(&self.ssh)
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.test(ctx)
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.run_on_hosts(&self.exec_command, ctx, true)
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        self.test(ctx)
    }

    fn logins(&self, _ctx: &Context) -> Vec<(String, SshSettings)> {
        self.hosts
            .iter()
            .filter(|h| **h != Host::Local)
            .map(|h| (h.name().to_string(), self.ssh.clone()))
            .collect()
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .map(|host| {
                let line = match self.invocation(host, &self.exec_command, ctx, true) {
                    Ok(Invocation::Argv(argv)) => argv
                        .iter()
                        .map(|a| shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Ok(Invocation::Shell(line)) if *host == Host::Local => {
                        format!("sh -c {}", shell_quote(&line))
                    }
                    Ok(Invocation::Shell(line)) => format!(
                        "ssh {}@{} {}",
                        self.ssh.user,
                        host.name(),
                        shell_quote(&line)
                    ),
                    Err(e) => format!("(cannot split command: {e})"),
                };
                (host.name().to_string(), line)
            })
            .collect()
    }
}
