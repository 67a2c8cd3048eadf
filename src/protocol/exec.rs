//! The `exec` step: `test_command` as its readiness check and preflight, `exec_command` as
//! its action, on each listed host. `{new_primary}`, `{old_primary}` and `{pool}` are
//! substituted; local commands run without a shell unless `shell = true`, in which case
//! substituted values are shell-quoted.

use super::{Context, HostResult, Protocol, host_result};
use crate::config::ExecHost;
use crate::remote;
use crate::report::Status;
use crate::text::{shell_quote, split_words};

#[derive(Debug)]
pub struct Exec<'a> {
    pub hosts: &'a [ExecHost],
    pub test_command: Option<&'a str>,
    pub exec_command: &'a str,
    pub shell: bool,
}

impl Exec<'_> {
    /// The argv that runs `template` with the placeholders filled in.
    fn argv(&self, template: &str, ctx: &Context) -> Result<Vec<String>, String> {
        let values = [
            ("{new_primary}", ctx.new_primary),
            ("{old_primary}", ctx.old_primary),
            ("{pool}", ctx.pool.name.as_str()),
        ];
        if self.shell {
            let mut line = template.to_string();
            for (key, value) in values {
                line = line.replace(key, &shell_quote(value));
            }
            return Ok(vec!["/bin/sh".into(), "-c".into(), line]);
        }
        // Split first, substitute after: a value can never become more than one word.
        let words = split_words(template)?;
        Ok(words
            .into_iter()
            .map(|w| {
                values
                    .iter()
                    .fold(w, |w, (key, value)| w.replace(key, value))
            })
            .collect())
    }

    fn run_on_hosts(&self, template: &str, ctx: &Context) -> Vec<HostResult> {
        self.hosts
            .iter()
            .map(|host| match host {
                ExecHost::Local => match self.argv(template, ctx) {
                    Ok(argv) => host_result(
                        "local",
                        &remote::run_local(&argv, &[], ctx.step.timeout),
                        false,
                    ),
                    Err(e) => HostResult {
                        host: "local".into(),
                        status: Status::Critical,
                        message: format!("cannot split command: {e}"),
                        output: String::new(),
                        duration: Default::default(),
                    },
                },
            })
            .collect()
    }

    fn test(&self, ctx: &Context) -> Vec<HostResult> {
        match self.test_command {
            Some(test) => self.run_on_hosts(test, ctx),
            None => self
                .hosts
                .iter()
                .map(|host| HostResult {
                    host: host_name(host).into(),
                    status: Status::Ok,
                    message: "no test_command configured".into(),
                    output: String::new(),
                    duration: Default::default(),
                })
                .collect(),
        }
    }
}

fn host_name(host: &ExecHost) -> &'static str {
    match host {
        ExecHost::Local => "local",
    }
}

impl Protocol for Exec<'_> {
    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.test(ctx)
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.run_on_hosts(self.exec_command, ctx)
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        self.test(ctx)
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        self.hosts
            .iter()
            .map(|host| {
                let line = match self.argv(self.exec_command, ctx) {
                    Ok(argv) => argv
                        .iter()
                        .map(|a| shell_quote(a))
                        .collect::<Vec<_>>()
                        .join(" "),
                    Err(e) => format!("(cannot split command: {e})"),
                };
                (host_name(host).to_string(), line)
            })
            .collect()
    }
}
