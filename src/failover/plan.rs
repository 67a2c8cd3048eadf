//! A failover plan: the chain toward a server with each host's resolved command and each
//! step's preflight run for real (preflights change nothing), for `tick --dry-run` and
//! `promote --dry-run`.

use std::time::Duration;

use crate::chain;
use crate::config::Pool;
use crate::model::Role;

/// A failover plan: the chain toward `to`, each step with each host's resolved command
/// and its preflight's result.
#[derive(Debug, serde::Serialize)]
pub struct FailoverPlan {
    from: &'static str,
    from_address: String,
    to: &'static str,
    to_address: String,
    steps: Vec<PlannedStep>,
}

#[derive(Debug, serde::Serialize)]
struct PlannedStep {
    index: usize,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip)]
    timeout: Duration,
    timeout_s: f64,
    on_failure: &'static str,
    commands: Vec<PlannedCommand>,
    preflight: Vec<PlannedCommand>,
}

/// A host and a command line (`commands`), or a host's preflight result (`preflight`).
#[derive(Debug, serde::Serialize)]
struct PlannedCommand {
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// The chain toward `to`, each step with each host's resolved command, and each step's
/// preflight run for real (preflights change nothing).
pub fn plan_steps(pool: &Pool, from: Role, to: Role) -> FailoverPlan {
    let opts = chain::Options {
        dry_run: true,
        ..chain::Options::default()
    };
    let (preflights, _) = chain::preflight(pool, from, to, opts);
    let steps = preflights
        .into_iter()
        .map(|(index, hosts)| {
            let step = &pool.steps[index];
            let ctx = crate::protocol::Context {
                dry_run: true,
                ..chain::context(pool, index, from, to)
            };
            PlannedStep {
                index: index + 1,
                name: step.name.clone(),
                kind: step.type_name(),
                timeout: step.timeout,
                timeout_s: step.timeout.as_secs_f64(),
                on_failure: match step.on_failure {
                    crate::config::OnFailure::Abort => "abort",
                    crate::config::OnFailure::Continue => "continue",
                },
                commands: step
                    .kind
                    .get()
                    .plan(&ctx)
                    .into_iter()
                    .map(|(host, command)| PlannedCommand {
                        host,
                        command: Some(command),
                        status: None,
                        message: None,
                    })
                    .collect(),
                preflight: hosts
                    .into_iter()
                    .map(|h| PlannedCommand {
                        host: h.host,
                        command: None,
                        status: Some(h.status.as_str()),
                        message: Some(h.message),
                    })
                    .collect(),
            }
        })
        .collect();
    FailoverPlan {
        from: from.as_str(),
        from_address: pool.address(from).to_string(),
        to: to.as_str(),
        to_address: pool.address(to).to_string(),
        steps,
    }
}

impl FailoverPlan {
    /// The plan as `tick --dry-run` and `promote --dry-run` print it.
    pub fn text(&self) -> String {
        let mut out = format!(
            "  failover plan {} ({}) -> {} ({}):\n",
            self.from, self.from_address, self.to, self.to_address
        );
        if self.steps.is_empty() {
            out.push_str("    (no steps configured)\n");
        }
        for step in &self.steps {
            out.push_str(&format!(
                "    {}. {} ({}), timeout {}, on failure {}\n",
                step.index,
                step.name,
                step.kind,
                crate::config::format_duration(step.timeout),
                step.on_failure
            ));
            for c in &step.commands {
                out.push_str(&format!(
                    "       on {}: {}\n",
                    c.host,
                    c.command.as_deref().unwrap_or("")
                ));
            }
            for h in &step.preflight {
                out.push_str(&format!(
                    "       preflight on {}: {} {}\n",
                    h.host,
                    h.status.unwrap_or(""),
                    h.message.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }
}

/// The plan as text (for `promote --dry-run`).
pub fn plan(pool: &Pool, from: Role, to: Role) -> String {
    plan_steps(pool, from, to).text()
}
