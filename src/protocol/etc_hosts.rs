//! The `etc_hosts` step: points `service_host_name` at the new primary in the hosts file of
//! every client, through the `deadpool hosts` helper installed on each of them.
//!
//! - preflight: each client reachable, the helper present and of a compatible version, the
//!   file writable.
//! - promote: switch every client in parallel, then verify that each maps the name to the
//!   new primary.
//! - check: per client, reachable, helper present, file writable, and where the name points:
//!   all at the active server is OK; some unreachable or unwritable is a WARNING; a client
//!   pointing at the standby or elsewhere, or without the name, is CRITICAL and about where
//!   clients are sent now.

use serde::Deserialize;

use super::{Context, HostResult, LoadContext, Protocol};
use crate::config::load::{RawSsh, host_list, step_ssh};
use crate::error::Problem;
use crate::model::{Concern, Status};
use crate::remote::{self, Exit, Output, argv_line};
use crate::settings::{Host, SshSettings};

/// The step's `type`.
pub const TYPE: &str = "etc_hosts";

/// The `etc_hosts` step's settings.
#[derive(Debug, Clone)]
pub struct EtcHosts {
    /// The name the applications use for the service.
    pub service_host_name: String,
    pub client_hosts: Vec<Host>,
    pub hosts_file: String,
    /// Path of `deadpool` on the clients.
    pub helper: String,
    pub ssh: SshSettings,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcHosts {
    service_host_name: String,
    client_hosts: Vec<String>,
    hosts_file: Option<String>,
    helper: Option<String>,
    ssh: Option<RawSsh>,
}

/// The `etc_hosts` step's keys, validated: a name the helper accepts, an absolute hosts
/// file, the helper's path.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<EtcHosts, Problem> {
    let raw: RawEtcHosts = super::raw(table)?;
    crate::hostsfile::validate_name(&raw.service_host_name)
        .map_err(|e| Problem::at("service_host_name", e))?;
    let hosts_file = raw.hosts_file.unwrap_or_else(|| "/etc/hosts".to_string());
    if !hosts_file.starts_with('/') || hosts_file.contains('\0') {
        return Err(Problem::at(
            "hosts_file",
            format!("`{hosts_file}`: expected an absolute path"),
        ));
    }
    let helper = raw.helper.unwrap_or_else(|| "deadpool".to_string());
    if helper.is_empty() || helper.contains(char::is_whitespace) {
        return Err(Problem::at(
            "helper",
            format!("`{helper}`: expected the path of deadpool on the clients"),
        ));
    }
    Ok(EtcHosts {
        service_host_name: raw.service_host_name,
        client_hosts: host_list(&raw.client_hosts, "client_hosts", true)?,
        hosts_file,
        helper,
        ssh: step_ssh(cx.dir, raw.ssh, cx.ssh)?,
    })
}

/// What a client said about itself.
#[derive(Debug, PartialEq, Eq)]
enum Client {
    Unreachable(String),
    /// The helper is missing, too old or too new, or failed to run.
    NoHelper(String),
    /// The helper ran: whether the file is writable and where the name points.
    Seen {
        writable: bool,
        points_at: Option<String>,
        line: String,
    },
}

impl EtcHosts {
    /// The helper's command line: `test` and `switch` through sudo when configured (they
    /// must act as the file's owner), `verify` as the login user (it only reads the file).
    fn helper_line(&self, action: &str, ip: Option<&str>) -> String {
        let mut words = vec![
            self.helper.as_str(),
            "hosts",
            action,
            "--name",
            &self.service_host_name,
        ];
        if let Some(ip) = ip {
            words.extend(["--ip", ip]);
        }
        words.extend(["--file", &self.hosts_file]);
        if action == "verify" {
            argv_line(&words)
        } else {
            remote::privileged(&self.ssh, &words)
        }
    }

    fn run(&self, host: &Host, line: &str, ctx: &Context) -> Output {
        ctx.shell(host, &self.ssh, line)
    }

    /// One round trip per client: the helper's version, then `hosts test`.
    fn look(&self, host: &Host, ctx: &Context) -> (Client, Output) {
        let line = format!(
            "{} --version && {}",
            argv_line(&[&self.helper]),
            self.helper_line("test", None)
        );
        let out = self.run(host, &line, ctx);
        (read_client(&out, &self.helper), out)
    }
}

/// Reads the output of `helper --version && helper hosts test`.
fn read_client(out: &Output, helper: &str) -> Client {
    match &out.exit {
        Exit::Unreachable(e) | Exit::NotStarted(e) => return Client::Unreachable(e.clone()),
        Exit::TimedOut => return Client::Unreachable(out.describe_exit()),
        _ => {}
    }
    let mut lines = out.stdout.lines();
    let version = lines.next().unwrap_or("");
    if matches!(out.exit, Exit::Code(126 | 127)) || !version.starts_with("deadpool ") {
        let why = crate::text::first_line(&out.stderr);
        return Client::NoHelper(format!(
            "helper `{helper}` is missing or not runnable ({}): {why}",
            out.describe_exit()
        ));
    }
    if let Err(e) = compatible(version) {
        return Client::NoHelper(e);
    }
    let line = crate::text::one_line(lines.next().unwrap_or(""));
    let points_at = line
        .rsplit_once(" -> ")
        .map(|(_, ip)| ip.trim().to_string())
        .filter(|ip| ip != "(none)");
    if !line.starts_with("OK - ") && !line.starts_with("ERROR - ") {
        return Client::NoHelper(format!("helper said `{line}` ({})", out.describe_exit()));
    }
    Client::Seen {
        writable: line.starts_with("OK - "),
        points_at,
        line,
    }
}

/// The helper must speak the same `hosts` protocol: same major and minor version.
fn compatible(version_line: &str) -> Result<(), String> {
    let theirs = version_line
        .trim_start_matches("deadpool ")
        .split_whitespace()
        .next()
        .unwrap_or("");
    let ours = env!("CARGO_PKG_VERSION");
    let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
    if major_minor(theirs) == major_minor(ours) {
        Ok(())
    } else {
        Err(format!(
            "helper is deadpool {theirs}, incompatible with this deadpool {ours}; install the same version on the client"
        ))
    }
}

impl EtcHosts {
    /// What a client's hosts file says (pure, for tests). A client whose name points anywhere
    /// but the active server, or is missing, sends its traffic elsewhere now
    /// ([`Concern::Direction`]); one that cannot be reached or written would fail a failover.
    fn check_verdict(
        &self,
        client: Client,
        active: &str,
        standby: &str,
    ) -> (Status, Concern, String) {
        let name = &self.service_host_name;
        let (writable, points_at, line) = match client {
            Client::Unreachable(e) => {
                return (
                    Status::Warning,
                    Concern::Readiness,
                    format!("unreachable: {e}"),
                );
            }
            Client::NoHelper(e) => return (Status::Warning, Concern::Readiness, e),
            Client::Seen {
                writable,
                points_at,
                line,
            } => (writable, points_at, line),
        };
        let unwritable = if writable {
            String::new()
        } else {
            format!("; file not writable: {line}")
        };
        let misdirected = |what: String| (Status::Critical, Concern::Direction, what);
        match points_at.as_deref() {
            Some(ip) if ip == active && writable => (
                Status::Ok,
                Concern::Direction,
                format!("{name} -> {ip} (active)"),
            ),
            Some(ip) if ip == active => (
                Status::Warning,
                Concern::Readiness,
                format!("{name} -> {ip} (active){unwritable}"),
            ),
            Some(ip) if ip == standby => misdirected(format!(
                "{name} points at the standby {standby}, not the active server {active}{unwritable}"
            )),
            Some(ip) => misdirected(format!(
                "{name} points at {ip}, which is neither server (the active one is {active}){unwritable}"
            )),
            None => misdirected(format!(
                "{name} is not in {}, so it does not lead to the active server {active}{unwritable}",
                self.hosts_file
            )),
        }
    }
}

fn result(host: &Host, status: Status, message: String, out: &Output) -> HostResult {
    HostResult::of(host.name(), status, &message, out)
}

impl Protocol for EtcHosts {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn ssh_in_use(&self) -> Option<&SshSettings> {
        self.client_hosts
            .iter()
            .any(|h| *h != Host::Local)
            .then_some(&self.ssh)
    }

    /// The step writes the servers' addresses into hosts files.
    fn needs_ip_servers(&self) -> Option<&'static str> {
        Some("an `etc_hosts` step writes addresses into hosts files")
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        remote::for_each_host(&self.client_hosts, |host| {
            let (client, out) = self.look(host, ctx);
            match client {
                Client::Unreachable(e) => {
                    result(host, Status::Critical, format!("unreachable: {e}"), &out)
                }
                Client::NoHelper(e) => result(host, Status::Critical, e, &out),
                Client::Seen {
                    writable: false,
                    line,
                    ..
                } => result(host, Status::Critical, line, &out),
                Client::Seen { line, .. } => result(host, Status::Ok, line, &out),
            }
        })
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let new = ctx.new_primary;
        // One session per client, all clients at once: switch, then verify by reading the
        // file back through the resolver's rules.
        let line = format!(
            "{} && {}",
            self.helper_line("switch", Some(new)),
            self.helper_line("verify", Some(new))
        );
        let outputs = remote::for_each_host(&self.client_hosts, |host| self.run(host, &line, ctx));
        self.client_hosts
            .iter()
            .zip(&outputs)
            .map(|(host, out)| {
                let mut lines = out.stdout.lines().map(crate::text::one_line);
                let (switched, verified) = (lines.next(), lines.next());
                let (status, message) = match (&out.exit, switched, verified) {
                    (Exit::Code(0), Some(s), Some(v)) if v.starts_with("OK - ") => (Status::Ok, s),
                    (_, Some(s), Some(v)) if s.starts_with("OK - ") => (
                        Status::Critical,
                        format!("switched, but verify failed: {v}"),
                    ),
                    (_, Some(s), _) => (Status::Critical, format!("switch failed: {s}")),
                    _ => (
                        Status::Critical,
                        format!("switch failed: {}", out.describe_exit()),
                    ),
                };
                result(host, status, message, out)
            })
            .collect()
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        let (active, standby) = (ctx.active(), ctx.standby());
        remote::for_each_host(&self.client_hosts, |host| {
            let (client, out) = self.look(host, ctx);
            let (status, concern, message) = self.check_verdict(client, active, standby);
            result(host, status, message, &out).about(concern)
        })
    }

    fn logins(&self, _ctx: &Context) -> Vec<(String, SshSettings)> {
        self.client_hosts
            .iter()
            .filter(|h| **h != Host::Local)
            .map(|h| (h.name().to_string(), self.ssh.clone()))
            .collect()
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let line = self.helper_line("switch", Some(ctx.new_primary));
        self.client_hosts
            .iter()
            .map(|h| (h.name().to_string(), line.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn out(code: i32, stdout: &str) -> Output {
        Output {
            exit: Exit::Code(code),
            stdout: stdout.into(),
            stderr: String::new(),
            duration: Duration::ZERO,
        }
    }

    /// Where a client's name points decides what its result is about: anywhere but the
    /// active server is about now; a client that cannot be reached or written is about the
    /// next failover.
    #[test]
    fn check_verdicts() {
        let step = EtcHosts {
            service_host_name: "db".into(),
            client_hosts: vec![Host::Local],
            hosts_file: "/etc/hosts".into(),
            helper: "deadpool".into(),
            ssh: SshSettings {
                user: "deadpool".into(),
                port: 22,
                auth: crate::settings::SshAuth::Agent,
                known_hosts: "/nonexistent/known_hosts".into(),
                connect_timeout: Duration::from_secs(3),
                command_timeout: Duration::from_secs(30),
                sudo: false,
            },
        };
        let seen = |writable: bool, at: Option<&str>| Client::Seen {
            writable,
            points_at: at.map(str::to_string),
            line: "ERROR - not writable".into(),
        };
        let (ok, warn, crit) = (Status::Ok, Status::Warning, Status::Critical);
        let (ready, now) = (Concern::Readiness, Concern::Direction);
        // (what the client said, status, what it is about, words)
        let table = [
            (
                seen(true, Some("10.0.0.2")),
                ok,
                now,
                "db -> 10.0.0.2 (active)",
            ),
            (
                seen(false, Some("10.0.0.2")),
                warn,
                ready,
                "file not writable",
            ),
            (
                seen(true, Some("10.0.0.1")),
                crit,
                now,
                "db points at the standby 10.0.0.1, not the active server 10.0.0.2",
            ),
            (
                seen(false, Some("10.0.0.1")),
                crit,
                now,
                "not the active server 10.0.0.2; file not writable",
            ),
            (
                seen(true, Some("10.0.0.9")),
                crit,
                now,
                "db points at 10.0.0.9, which is neither server (the active one is 10.0.0.2)",
            ),
            (seen(true, None), crit, now, "db is not in /etc/hosts"),
            (
                Client::Unreachable("app1: refused".into()),
                warn,
                ready,
                "unreachable: app1",
            ),
            (
                Client::NoHelper("helper missing".into()),
                warn,
                ready,
                "helper missing",
            ),
        ];
        for (client, status, concern, words) in table {
            let (s, c, m) = step.check_verdict(client, "10.0.0.2", "10.0.0.1");
            assert_eq!((s, c), (status, concern), "{m}");
            assert!(m.contains(words), "{m}");
        }
    }

    #[test]
    fn reads_what_clients_say() {
        let ours = format!("deadpool {}\n", env!("CARGO_PKG_VERSION"));
        let ok = out(
            0,
            &format!("{ours}OK - /etc/hosts is writable by root; db -> 10.0.0.11\n"),
        );
        assert_eq!(
            read_client(&ok, "deadpool"),
            Client::Seen {
                writable: true,
                points_at: Some("10.0.0.11".into()),
                line: "OK - /etc/hosts is writable by root; db -> 10.0.0.11".into()
            }
        );
        let ro = out(
            1,
            &format!(
                "{ours}ERROR - /etc/hosts is not writable by app: Permission denied; db -> (none)\n"
            ),
        );
        assert!(matches!(
            read_client(&ro, "deadpool"),
            Client::Seen {
                writable: false,
                points_at: None,
                ..
            }
        ));
        let missing = Output {
            stderr: "sh: 1: deadpool: not found\n".into(),
            ..out(127, "")
        };
        assert!(
            matches!(read_client(&missing, "deadpool"), Client::NoHelper(m) if m.contains("not found"))
        );
        let old = out(0, "deadpool 9.9.0\nOK - x; db -> 10.0.0.11\n");
        assert!(
            matches!(read_client(&old, "deadpool"), Client::NoHelper(m) if m.contains("incompatible"))
        );
    }
}
