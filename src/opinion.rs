//! The second opinion (SPEC 6.2b): before a failover, each host in `confirm_from` is asked
//! over SSH whether it gets an answer from the primary at the monitor's own protocol level,
//! within the monitor's timeout: MySQL's server greeting, a Redis reply (an error reply
//! too; over TLS, a TLS alert), the Nagios plugin's OK or WARNING run on the observer, a TCP
//! connect for `tcp`.
//! A TCP connect alone proves nothing for a database: the kernel accepts connections for a
//! hung server. What the votes decide is [`rules::second_opinion`].

use std::time::Duration;

use crate::config::{Config, Pool};
use crate::model::Role;
use crate::monitor::{ObserverProbe, Server};
use crate::remote::{self, Exit, Output};
use crate::rules::{self, BlockReason, Vote};

/// What the observers said, and the verdict.
#[derive(Debug, Clone)]
pub struct Opinion {
    pub votes: Vec<(String, Vote)>,
    pub target: String,
}

impl Opinion {
    /// `Some` when an observer still gets an answer from the primary: the failover is
    /// blocked.
    pub fn blocks(&self) -> Option<BlockReason> {
        rules::second_opinion(&self.votes, &self.describe())
    }

    /// Every vote with what the observer saw, for reports and history.
    pub fn describe(&self) -> String {
        let target = &self.target;
        self.votes
            .iter()
            .map(|(host, vote)| match vote {
                Vote::Reaches(saw) => format!("{host} reaches {target} ({saw})"),
                Vote::CannotReach(saw) => format!("{host} cannot reach {target} ({saw})"),
                Vote::Abstains(why) => format!("{host} abstains ({why})"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Asks every observer at once. `None` when the pool has no observers.
pub fn ask(config: &Config, pool: &Pool, from: Role) -> Option<Opinion> {
    let observers = &pool.monitor.confirm_from;
    if observers.is_empty() {
        return None;
    }
    let host = pool.address(from);
    let timeout = pool.monitor.timeout;
    let secs = format!("{:.3}", timeout.as_secs_f64());
    let port = pool.monitor.port();
    let port_text = port.map(|p| p.to_string()).unwrap_or_default();
    let server = Server {
        host,
        pool: &pool.name,
        role: from,
        timeout,
    };
    // The monitor's own type says what proves its server alive.
    let probe = pool.monitor.kind.get().observer_probe(&server);
    let line = match &probe {
        ObserverProbe::Plugin(argv) => {
            let mut words = vec!["timeout", &secs];
            words.extend(argv.iter().map(String::as_str));
            remote::argv_line(&words)
        }
        ObserverProbe::Script(script) => {
            remote::argv_line(&["timeout", &secs, "bash", "-c", script, host, &port_text])
        }
    };
    // The probe's own exit code travels on stdout: the SSH runner reads a remote 124 as its
    // own time-out, and the probe's time-out is a vote, not a failure to ask.
    let line = format!("{line}; echo \"probe-exit $?\"");
    let target = match port {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    let nagios = matches!(probe, ObserverProbe::Plugin(_));
    // The observer's own login comes on top of the probe's time.
    let limit = pool.monitor.confirm_limit(&config.ssh);
    let outputs = remote::for_each_host(observers, |o| {
        remote::run_shell(o, &config.ssh, &line, limit)
    });
    let votes = observers
        .iter()
        .zip(outputs)
        .map(|(o, out)| (o.name().to_string(), vote(&out, nagios, timeout)))
        .collect();
    Some(Opinion { votes, target })
}

/// One observer's vote from what its probe printed and how it ended (pure, for tests).
fn vote(out: &Output, nagios: bool, timeout: Duration) -> Vote {
    let said = crate::text::first_line(&out.stdout);
    let mut lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let code = lines
        .last()
        .and_then(|l| l.trim().strip_prefix("probe-exit "))
        .and_then(|c| c.parse::<i32>().ok());
    let exit = match (&out.exit, code) {
        (Exit::Code(0), Some(code)) => {
            lines.pop();
            Exit::Code(code)
        }
        (Exit::Code(0), None) => Exit::NotStarted("the probe did not finish".into()),
        (other, _) => other.clone(),
    };
    let last = lines.last().unwrap_or(&"").trim().to_string();
    let err: String = crate::text::first_line(&out.stderr)
        .chars()
        .take(120)
        .collect();
    let within = format!("{}ms", timeout.as_millis());
    match (&exit, nagios) {
        (Exit::Code(0), false) => Vote::Reaches(last),
        (Exit::Code(code @ (0 | 1)), true) => Vote::Reaches(format!("plugin exit {code}: {said}")),
        (Exit::Code(126 | 127), true) => {
            Vote::Abstains(format!("the plugin cannot run on the observer: {err}"))
        }
        (Exit::Code(124), false) if said == "connected" => Vote::CannotReach(format!(
            "connected, but no answer within {within}: a hung server"
        )),
        (Exit::Code(124), _) => Vote::CannotReach(format!("no answer within {within}")),
        (Exit::Code(code), true) => Vote::CannotReach(format!("plugin exit {code}: {said}")),
        (Exit::Code(_), false) if !last.is_empty() && last != "connected" => {
            Vote::CannotReach(last)
        }
        (Exit::Code(code), false) => Vote::CannotReach(if err.is_empty() {
            format!("exit {code}")
        } else {
            err
        }),
        _ => Vote::Abstains(out.describe_exit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the observer's shell returns for a probe that ended with `exit`.
    fn out(exit: Exit, stdout: &str, stderr: &str) -> Output {
        let (exit, stdout) = match exit {
            Exit::Code(code) => (Exit::Code(0), format!("{stdout}probe-exit {code}\n")),
            other => (other, stdout.to_string()),
        };
        Output {
            exit,
            stdout,
            stderr: stderr.into(),
            duration: Duration::ZERO,
        }
    }

    type Expect = fn(&Vote) -> bool;

    #[test]
    fn votes_table() {
        let t = Duration::from_secs(1);
        let reaches: Expect = |v| matches!(v, Vote::Reaches(_));
        let cannot: Expect = |v| matches!(v, Vote::CannotReach(_));
        let abstains: Expect = |v| matches!(v, Vote::Abstains(_));
        let rows: Vec<(Output, bool, Expect, &str)> = vec![
            (
                out(Exit::Code(0), "connected\nserver greeting\n", ""),
                false,
                reaches,
                "greeting",
            ),
            (
                out(Exit::Code(0), "connected\nreply -NOAUTH x\n", ""),
                false,
                reaches,
                "error reply",
            ),
            (
                out(Exit::Code(124), "connected\n", ""),
                false,
                cannot,
                "hung: connected, silent",
            ),
            (
                out(Exit::Code(124), "", ""),
                false,
                cannot,
                "connect timed out",
            ),
            (
                out(Exit::Code(3), "", "bash: connect: Connection refused"),
                false,
                cannot,
                "refused",
            ),
            (
                out(
                    Exit::Code(4),
                    "connected\nconnection closed without a greeting\n",
                    "",
                ),
                false,
                cannot,
                "closed",
            ),
            (
                out(Exit::Code(1), "WARNING - slow\n", ""),
                true,
                reaches,
                "plugin warning",
            ),
            (
                out(Exit::Code(2), "CRITICAL - down\n", ""),
                true,
                cannot,
                "plugin critical",
            ),
            (
                out(Exit::Code(127), "", "timeout: failed to run command"),
                true,
                abstains,
                "no plugin",
            ),
            (
                out(Exit::Unreachable("x".into()), "", ""),
                false,
                abstains,
                "observer unreachable",
            ),
            (
                out(Exit::NotStarted("login".into()), "", ""),
                false,
                abstains,
                "observer refused us",
            ),
        ];
        for (o, nagios, expect, why) in rows {
            let v = vote(&o, nagios, t);
            assert!(expect(&v), "{why}: {v:?}");
        }
        let unfinished = Output {
            exit: Exit::Code(0),
            stdout: "connected\n".into(),
            stderr: String::new(),
            duration: Duration::ZERO,
        };
        assert!(abstains(&vote(&unfinished, false, t)), "no probe-exit line");
        let v = vote(&out(Exit::Code(124), "connected\n", ""), false, t);
        assert_eq!(
            v,
            Vote::CannotReach("connected, but no answer within 1000ms: a hung server".into())
        );
    }
}
