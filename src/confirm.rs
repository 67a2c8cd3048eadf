//! The second opinion (SPEC 6.2b): before a failover, each host in `confirm_from` is asked
//! over SSH whether it can reach the primary's port. If any observer that answers can, the
//! primary is not dead, only cut off from deadpool: the failover is blocked. An observer
//! that cannot be reached abstains.

use std::fmt::Write as _;

use crate::config::{Config, Pool};
use crate::remote::{self, Exit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    Reaches,
    CannotReach(String),
    Abstains(String),
}

#[derive(Debug, Clone)]
pub struct Opinion {
    pub votes: Vec<(String, Vote)>,
}

impl Opinion {
    /// Whether any observer still reaches the primary.
    pub fn primary_alive(&self) -> bool {
        self.votes.iter().any(|(_, v)| *v == Vote::Reaches)
    }

    pub fn describe(&self, target: &str) -> String {
        let mut out = String::new();
        for (i, (host, vote)) in self.votes.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = match vote {
                Vote::Reaches => write!(out, "{host} reaches {target}"),
                Vote::CannotReach(why) => write!(out, "{host} cannot reach {target} ({why})"),
                Vote::Abstains(why) => write!(out, "{host} abstains ({why})"),
            };
        }
        out
    }
}

/// Asks every observer at once. `None` when the pool has no observers.
pub fn ask(config: &Config, pool: &Pool, host: &str) -> Option<Opinion> {
    let observers = &pool.monitor.confirm_from;
    let port = pool.monitor.port()?;
    if observers.is_empty() {
        return None;
    }
    let secs = pool.monitor.timeout.as_secs().max(1).to_string();
    let port_text = port.to_string();
    // A TCP connect from the observer, with bash's /dev/tcp: no tool beyond bash and timeout.
    let line = remote::argv_line(&[
        "timeout",
        &secs,
        "bash",
        "-c",
        "exec 3<>\"/dev/tcp/$0/$1\"",
        host,
        &port_text,
    ]);
    let limit =
        pool.monitor.timeout + config.ssh.connect_timeout * 2 + std::time::Duration::from_secs(2);
    let outputs = remote::for_each_host(observers, |o| {
        remote::run_shell(o, &config.ssh, &line, limit)
    });
    let votes = observers
        .iter()
        .zip(outputs)
        .map(|(o, out)| {
            let vote = match &out.exit {
                Exit::Code(0) => Vote::Reaches,
                Exit::Code(124) | Exit::TimedOut => Vote::CannotReach("timed out".into()),
                Exit::Code(_) => Vote::CannotReach(
                    crate::text::first_line(&out.stderr)
                        .chars()
                        .take(120)
                        .collect(),
                ),
                _ => Vote::Abstains(out.describe_exit()),
            };
            (o.name().to_string(), vote)
        })
        .collect();
    Some(Opinion { votes })
}
