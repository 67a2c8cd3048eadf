//! The `exec` step: `test_command` as its readiness check and preflight, `exec_command` as
//! its action, on each listed host in parallel. `{new_primary}`, `{old_primary}` and `{pool}`
//! are substituted. Local commands run without a shell unless `shell = true`; remote
//! commands always go through the remote user's shell, so there every value is shell-quoted.

use super::{Context, HostResult, Protocol, host_result};
use crate::model::Status;
use crate::remote;
use crate::settings::{Host, SshSettings};
use crate::text::shell_quote;

#[derive(Debug)]
pub struct ExecStep<'a> {
    pub hosts: &'a [Host],
    pub test_command: Option<&'a str>,
    pub exec_command: &'a str,
    pub shell: bool,
    pub ssh: &'a SshSettings,
}

/// How one host runs a command.
enum Invocation {
    Argv(Vec<String>),
    Shell(String),
}

impl ExecStep<'_> {
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
            ("pool", ctx.pool.name.as_str()),
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
                Ok(Invocation::Shell(remote::privileged(self.ssh, &words)))
            }
            Host::Remote(_) => Ok(Invocation::Shell(remote::render(template, &values))),
        }
    }

    fn run_on_hosts(&self, template: &str, ctx: &Context, privileged: bool) -> Vec<HostResult> {
        remote::for_each_host(self.hosts, |host| {
            let out = match self.invocation(host, template, ctx, privileged) {
                Ok(Invocation::Argv(argv)) => remote::run_local(&argv, &[], ctx.left()),
                Ok(Invocation::Shell(line)) => ctx.shell(host, self.ssh, &line),
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
        match self.test_command {
            Some(test) => self.run_on_hosts(test, ctx, true),
            // Without a test, readiness is "can we log in and run something there", as the
            // login user: it needs no sudo rule.
            None => self.run_on_hosts("true", ctx, false),
        }
    }
}

impl Protocol for ExecStep<'_> {
    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.test(ctx)
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.run_on_hosts(self.exec_command, ctx, true)
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
                let line = match self.invocation(host, self.exec_command, ctx, true) {
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
