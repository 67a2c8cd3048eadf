//! The `dns` step: points a DNS record at the new primary with an RFC 2136 dynamic update,
//! signed with TSIG, sent to the zone's primary server.
//!
//! The DNS work is done by Debian's `nsupdate` and `dig` (package bind9-dnsutils), run as
//! bounded child processes: ISC's own implementation of the update protocol and TSIG, and
//! no DNS library in deadpool's build. The secret never reaches an argument list: it goes
//! into a key file (0600, in a directory only this process can enter) that `nsupdate -k`
//! reads, removed as soon as `nsupdate` has ended.
//!
//! - preflight: the server answers the zone's SOA with authority, and accepts a signed update
//!   that changes nothing: its prerequisite is that the record points at the old primary, its
//!   one change deletes the new primary's value, which is not there.
//! - promote: one atomic update: prerequisite "the record is exactly the old primary's
//!   value", delete that value, add the new one with `ttl`; then read back at the server. A
//!   record that someone else changed fails the prerequisite and is left as it is.
//! - check: the record at the primary server, and at each of `verify_servers`, is the active
//!   server's value; a TTL above `max_ttl` is a warning.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

mod table;

pub use table::{Dns, load};

/// The step's `type`.
pub const TYPE: &str = "dns";

/// Whether `program` is a file in one of the `$PATH` directories.
fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

use super::{Context, HostResult, Notes, Protocol};
use crate::model::{Concern, Status};
use crate::remote::{self, Exit, Output};

/// What a query saw: the response code, whether the answer was authoritative, and the
/// records of the asked name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    rcode: String,
    authoritative: bool,
    records: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// Canonical: addresses as Rust prints them, names absolute and lower case.
    value: String,
    ttl: u32,
}

impl Answer {
    fn values(&self) -> Vec<&str> {
        self.records.iter().map(|r| r.value.as_str()).collect()
    }

    /// `10.0.0.11 (TTL 30s)`, `missing (NXDOMAIN)`, `no A record`.
    fn describe(&self, record: &str) -> String {
        if self.rcode != "NOERROR" {
            return format!("missing ({})", self.rcode);
        }
        if self.records.is_empty() {
            return format!("no {record} record");
        }
        self.records
            .iter()
            .map(|r| format!("{} (TTL {}s)", r.value, r.ttl))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// An address or name in the form the config holds, so that answers compare with it.
fn canonical(rtype: &str, rdata: &str) -> String {
    match rtype {
        "A" => rdata
            .parse::<std::net::Ipv4Addr>()
            .map_or_else(|_| rdata.to_string(), |a| a.to_string()),
        "AAAA" => rdata
            .parse::<std::net::Ipv6Addr>()
            .map_or_else(|_| rdata.to_string(), |a| a.to_string()),
        "CNAME" => {
            let name = rdata.to_ascii_lowercase();
            if name.ends_with('.') {
                name
            } else {
                format!("{name}.")
            }
        }
        _ => rdata.to_string(),
    }
}

/// Reads `dig +nocmd +noall +comments +answer` output: the header's status and flags, then
/// the answer records of `owner` and `rtype`. `Err` when no answer came (dig prints why on a
/// `;;` line).
fn parse_dig(stdout: &str, owner: &str, rtype: &str) -> Result<Answer, String> {
    let Some(header) = stdout.lines().find(|l| l.contains("->>HEADER<<-")) else {
        let why = stdout
            .lines()
            .map(|l| l.trim_start_matches(';').trim())
            .find(|l| !l.is_empty())
            .unwrap_or("no answer");
        return Err(crate::text::truncate(why, 200));
    };
    let rcode = header
        .split_once("status: ")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap_or("")
        .trim()
        .to_string();
    let authoritative = stdout
        .lines()
        .find_map(|l| l.strip_prefix(";; flags:"))
        .and_then(|f| f.split(';').next())
        .is_some_and(|flags| flags.split_whitespace().any(|f| f == "aa"));
    let mut records = Vec::new();
    for line in stdout.lines().filter(|l| !l.starts_with(';')) {
        let words: Vec<&str> = line.split_whitespace().collect();
        // owner TTL class type rdata...
        if words.len() < 5 || !words[0].eq_ignore_ascii_case(owner) || words[3] != rtype {
            continue;
        }
        let Ok(ttl) = words[1].parse() else { continue };
        records.push(Record {
            value: canonical(rtype, &words[4..].join(" ")),
            ttl,
        });
    }
    Ok(Answer {
        rcode,
        authoritative,
        records,
    })
}

/// How an `nsupdate` run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Update {
    Done,
    /// The server checked the prerequisite and it did not hold: nothing was changed.
    PrerequisiteFailed,
    /// Anything else, said so that a person knows what to fix.
    Failed(String),
}

/// Reads how `nsupdate` ended (pure, for tests). `nsupdate` prints `update failed: RCODE`
/// when the server answered, and `; Communication with ... failed` when it did not.
fn update_outcome(exit: &Exit, output: &str, cfg: &Dns) -> Update {
    let (server, key, zone) = (
        format!("{}:{}", cfg.server, cfg.port),
        &cfg.tsig.name,
        &cfg.zone,
    );
    let rcode = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("update failed: "))
        .map(str::trim);
    let line = || {
        output
            .lines()
            .map(|l| l.trim_start_matches(';').trim())
            .find(|l| !l.is_empty())
            .map(|l| crate::text::truncate(l, 200))
            .unwrap_or_default()
    };
    match (exit, rcode) {
        (Exit::Code(0), _) => Update::Done,
        (_, Some("NXRRSET" | "YXRRSET" | "NXDOMAIN" | "YXDOMAIN")) => Update::PrerequisiteFailed,
        (_, Some(r)) if r.contains("BADSIG") => Update::Failed(format!(
            "{server} refused the signature of TSIG key `{key}` ({r}): the secret in {} is not the server's secret for that key",
            cfg.tsig.secret_file.display()
        )),
        (_, Some(r)) if r.contains("BADKEY") => Update::Failed(format!(
            "{server} does not know TSIG key `{key}` with algorithm {} ({r}): check `tsig_key` and `tsig_algorithm` against the server's `key` statement",
            cfg.tsig.algorithm
        )),
        (_, Some(r)) if r.contains("BADTIME") => Update::Failed(format!(
            "{server} refused the signature's time ({r}): the clocks of this host and the server differ by more than 5 minutes"
        )),
        (_, Some(r)) if r.starts_with("NOTAUTH") => Update::Failed(format!(
            "{server} is not authoritative for {zone} ({r}): name the zone's primary server in `server`"
        )),
        (_, Some("REFUSED")) => Update::Failed(format!(
            "{server} refused the update (REFUSED): its allow-update or update-policy does not let key `{key}` change {} {}",
            cfg.service_host_name,
            cfg.record.as_str()
        )),
        (_, Some("NOTZONE")) => Update::Failed(format!(
            "{server} says {} is not in zone {zone} (NOTZONE)",
            cfg.service_host_name
        )),
        (_, Some(r)) => Update::Failed(format!("{server} answered {r}; its log says why")),
        (Exit::TimedOut, None) => Update::Failed(format!(
            "no answer from {server} before the step's deadline: {}",
            line()
        )),
        (Exit::NotStarted(e), None) => Update::Failed(format!(
            "nsupdate could not start ({e}); install bind9-dnsutils"
        )),
        (_, None) if output.contains("Communication with") || output.contains("timed out") => {
            Update::Failed(format!("cannot reach {server}: {}", line()))
        }
        (exit, None) => Update::Failed(format!("nsupdate failed ({exit:?}): {}", line())),
    }
}

/// What the record at the primary server says about the active and standby servers
/// (pure, for tests).
fn primary_verdict(
    answer: &Result<Answer, String>,
    cfg: &Dns,
    active: &str,
    standby: &str,
) -> (Status, Concern, String) {
    let (name, rtype) = (&cfg.service_host_name, cfg.record.as_str());
    let answer = match answer {
        Err(e) => {
            return (
                Status::Warning,
                Concern::Readiness,
                format!("cannot ask {}: {e}", cfg.server),
            );
        }
        Ok(a) => a,
    };
    let shows = answer.describe(rtype);
    let misdirected = |what: String| (Status::Critical, Concern::Direction, what);
    if answer.rcode == "NOERROR" && !answer.authoritative {
        return (
            Status::Warning,
            Concern::Readiness,
            format!(
                "{} answers {name} without authority ({shows}): is it the zone's primary?",
                cfg.server
            ),
        );
    }
    match answer.values().as_slice() {
        [v] if *v == active => {
            let ttl = answer.records[0].ttl;
            if ttl > cfg.max_ttl {
                (
                    Status::Warning,
                    Concern::Readiness,
                    format!(
                        "{name} {rtype} -> {active} (active), but its TTL {ttl}s is above max_ttl {}s: after a failover clients keep the old address for up to {}",
                        cfg.max_ttl,
                        crate::settings::format_duration(std::time::Duration::from_secs(
                            ttl.into()
                        ))
                    ),
                )
            } else {
                (
                    Status::Ok,
                    Concern::Direction,
                    format!("{name} {rtype} -> {active} (active), TTL {ttl}s"),
                )
            }
        }
        values if values.contains(&standby) => {
            misdirected(format!("{name} {rtype} points at the standby: {shows}"))
        }
        [] => misdirected(format!("{name}: {shows}")),
        [_] => misdirected(format!(
            "{name} {rtype} points at {shows}, which is neither server"
        )),
        _ => misdirected(format!("{name} has several {rtype} records: {shows}")),
    }
}

/// What a resolver answers (pure, for tests). A resolver may still hold the standby's
/// value from before a failover for up to the record's TTL: within `max_ttl` that is a
/// warning that passes by itself.
fn resolver_verdict(
    answer: &Result<Answer, String>,
    cfg: &Dns,
    resolver: &str,
    active: &str,
    standby: &str,
) -> (Status, Concern, String) {
    let (name, rtype) = (&cfg.service_host_name, cfg.record.as_str());
    let answer = match answer {
        Err(e) => {
            return (
                Status::Warning,
                Concern::Readiness,
                format!("cannot ask {resolver}: {e}"),
            );
        }
        Ok(a) => a,
    };
    let shows = answer.describe(rtype);
    match answer.records.as_slice() {
        [r] if r.value == active => (
            Status::Ok,
            Concern::Direction,
            format!("{name} -> {active} (active)"),
        ),
        [r] if r.value == standby && r.ttl <= cfg.max_ttl => (
            Status::Warning,
            Concern::Direction,
            format!(
                "{name} still -> {standby} (the standby) from the resolver's cache, for up to {}s more",
                r.ttl
            ),
        ),
        records if records.iter().any(|r| r.value == standby) => (
            Status::Critical,
            Concern::Direction,
            format!("{name} points at the standby here: {shows}"),
        ),
        _ => (
            Status::Critical,
            Concern::Direction,
            format!("{name} is {shows} here, not {active} (active)"),
        ),
    }
}

/// A directory only this process can enter, for the files `nsupdate` reads; removed with
/// everything in it when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> std::io::Result<PrivateDir> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir();
        for _ in 0..16 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!(
                "deadpool-dns.{}.{}.{nanos}",
                std::process::id(),
                COUNT.fetch_add(1, Ordering::Relaxed)
            ));
            // mkdir fails on anything already there, a symlink included.
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(PrivateDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(
            "no free name for a private directory",
        ))
    }

    fn write(&self, name: &str, text: &str) -> std::io::Result<PathBuf> {
        let path = self.0.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?
            .write_all(text.as_bytes())?;
        Ok(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whole seconds for a tool's own timeout option: at least 1.
fn whole_secs(d: std::time::Duration) -> String {
    (d.as_secs_f64().ceil() as u64).max(1).to_string()
}

impl Dns {
    fn value_of(&self, ctx: &Context, server: &str) -> String {
        self.values.of(&ctx.pool, server).to_string()
    }

    /// `dig` for one name and type at one server, within what is left of the step.
    fn dig(
        &self,
        server: &str,
        port: u16,
        owner: &str,
        rtype: &str,
        authoritative: bool,
        ctx: &Context,
    ) -> (Result<Answer, String>, Output) {
        let limit = ctx.left();
        let argv: Vec<String> = [
            "dig",
            &format!("@{server}"),
            "-p",
            &port.to_string(),
            &format!("+time={}", whole_secs(limit)),
            "+tries=1",
            if authoritative {
                "+norecurse"
            } else {
                "+recurse"
            },
            "+nocmd",
            "+noall",
            "+comments",
            "+answer",
            owner,
            rtype,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = remote::run_local(&argv, &[], limit);
        let answer = match &out.exit {
            Exit::NotStarted(e) => {
                Err(format!("dig could not start ({e}); install bind9-dnsutils"))
            }
            Exit::TimedOut => Err(format!("no answer within {:.1}s", limit.as_secs_f64())),
            _ => parse_dig(&out.stdout, owner, rtype),
        };
        (answer, out)
    }

    /// The record at the primary server.
    fn at_primary(&self, ctx: &Context) -> (Result<Answer, String>, Output) {
        let c = self;
        self.dig(
            &c.server,
            c.port,
            &c.service_host_name,
            c.record.as_str(),
            true,
            ctx,
        )
    }

    /// Sends one signed update made of `changes` (prerequisites and updates) and reads how
    /// it ended.
    fn update(&self, changes: &[String], ctx: &Context) -> (Update, Output) {
        let c = self;
        let limit = ctx.left();
        let failed = |why: String| {
            let out = Output {
                exit: Exit::NotStarted(why.clone()),
                stdout: String::new(),
                stderr: String::new(),
                duration: std::time::Duration::ZERO,
            };
            (Update::Failed(why), out)
        };
        let dir = match PrivateDir::new() {
            Ok(d) => d,
            Err(e) => {
                return failed(format!(
                    "cannot make a private directory for the TSIG key: {e}"
                ));
            }
        };
        let key = format!(
            "key \"{}\" {{\n\talgorithm {};\n\tsecret \"{}\";\n}};\n",
            c.tsig.name,
            c.tsig.algorithm,
            c.tsig.secret.expose()
        );
        let commands = format!(
            "server {} {}\nzone {}\n{}\nsend\n",
            c.server,
            c.port,
            c.zone,
            changes.join("\n")
        );
        let (key_file, commands_file) = match (
            dir.write("tsig.key", &key),
            dir.write("update.txt", &commands),
        ) {
            (Ok(k), Ok(u)) => (k, u),
            (Err(e), _) | (_, Err(e)) => {
                return failed(format!("cannot write into {}: {e}", dir.path().display()));
            }
        };
        // TCP (-v): a refused or unreachable server is told apart at once.
        let argv = vec![
            "nsupdate".to_string(),
            "-v".to_string(),
            "-t".to_string(),
            whole_secs(limit),
            "-k".to_string(),
            key_file.to_string_lossy().into_owned(),
            commands_file.to_string_lossy().into_owned(),
        ];
        let mut out = remote::run_local(&argv, &[], limit);
        drop(dir);
        let outcome = update_outcome(&out.exit, &out.combined(), c);
        out.stdout = format!("{commands}{}", out.stdout);
        (outcome, out)
    }

    fn prerequisite(&self, old_value: &str) -> String {
        let c = self;
        format!(
            "prereq yxrrset {} IN {} {old_value}",
            c.service_host_name,
            c.record.as_str()
        )
    }

    fn switch_changes(&self, old_value: &str, new_value: &str) -> Vec<String> {
        let c = self;
        let (name, rtype) = (&c.service_host_name, c.record.as_str());
        vec![
            self.prerequisite(old_value),
            format!("update delete {name} IN {rtype} {old_value}"),
            format!("update add {name} {} IN {rtype} {new_value}", c.ttl),
        ]
    }

    /// After a failed prerequisite: the record as it is, and whether it already holds
    /// exactly `new_value` (a switch made before, by deadpool or by hand).
    fn already(&self, new_value: &str, ctx: &Context) -> (Result<(), String>, Output) {
        let (answer, out) = self.at_primary(ctx);
        let rtype = self.record.as_str();
        let verdict = match answer {
            Ok(a) if a.values() == [new_value] => Ok(()),
            Ok(a) => Err(a.describe(rtype)),
            Err(e) => Err(format!("cannot be read back: {e}")),
        };
        (verdict, out)
    }

    fn result(
        &self,
        host: &str,
        status: Status,
        message: String,
        outputs: &[&Output],
    ) -> HostResult {
        let output = outputs
            .iter()
            .map(|o| o.combined())
            .collect::<Vec<_>>()
            .join("\n");
        let duration = outputs.iter().map(|o| o.duration).sum();
        HostResult::new(host, status, &message, output, duration)
    }

    fn server_label(&self) -> String {
        host_label(&self.server, self.port)
    }
}

fn host_label(host: &str, port: u16) -> String {
    match (port, host.contains(':')) {
        (53, _) => host.to_string(),
        (_, true) => format!("[{host}]:{port}"),
        (_, false) => format!("{host}:{port}"),
    }
}

impl Protocol for Dns {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    /// The zone's SOA, the TSIG key, the record.
    fn probed_by_check_config(&self) -> bool {
        true
    }

    /// What the update will reach, and the tools it needs on this host.
    fn notes(&self) -> Notes {
        let mut notes = Notes::default();
        let verify = if self.verify_servers.is_empty() {
            String::new()
        } else {
            let servers: Vec<String> = self
                .verify_servers
                .iter()
                .map(|(h, p)| format!("{h}:{p}"))
                .collect();
            format!("; readiness also asks {}", servers.join(", "))
        };
        notes.lines.push(format!(
            "{} {} at {}:{} (zone {}), TSIG key {} ({}), TTL {}s (warning above {}s); {}{verify}",
            self.service_host_name,
            self.record.as_str(),
            self.server,
            self.port,
            self.zone,
            self.tsig.name,
            self.tsig.algorithm,
            self.ttl,
            self.max_ttl,
            self.values.describe(),
        ));
        for tool in ["nsupdate", "dig"] {
            if !in_path(tool) {
                notes
                    .warnings
                    .push(format!("`{tool}` is not in $PATH; install bind9-dnsutils"));
            }
        }
        notes
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        let c = self;
        let host = self.server_label();
        let (old, new) = (
            self.value_of(ctx, ctx.old_primary),
            self.value_of(ctx, ctx.new_primary),
        );
        let rtype = c.record.as_str();
        let (soa, soa_out) = self.dig(&c.server, c.port, &c.zone, "SOA", true, ctx);
        let serial = match soa {
            Ok(a) if a.rcode == "NOERROR" && a.authoritative && !a.records.is_empty() => a.records
                [0]
            .value
            .split_whitespace()
            .nth(2)
            .unwrap_or("?")
            .to_string(),
            Ok(a) if a.rcode == "NOERROR" && !a.records.is_empty() => {
                let message = format!(
                    "{host} is not authoritative for {} (its SOA answer has no aa flag): name the zone's primary server in `server`",
                    c.zone
                );
                return vec![self.result(&host, Status::Critical, message, &[&soa_out])];
            }
            Ok(a) => {
                let message = format!(
                    "{host} has no SOA for {} (status {}): is the zone served there?",
                    c.zone, a.rcode
                );
                return vec![self.result(&host, Status::Critical, message, &[&soa_out])];
            }
            Err(e) => {
                let message = format!("cannot reach {host}: {e}");
                return vec![self.result(&host, Status::Critical, message, &[&soa_out])];
            }
        };
        // A signed update that changes nothing: the prerequisite holds exactly when the
        // record is the old primary's, and then the new value is not there to delete.
        let changes = [
            self.prerequisite(&old),
            format!("update delete {} IN {rtype} {new}", c.service_host_name),
        ];
        let (outcome, out) = self.update(&changes, ctx);
        let (status, message, extra) = match outcome {
            Update::Done => (
                Status::Ok,
                format!(
                    "{host} serves {} (serial {serial}) and accepts TSIG key `{}`; {} {rtype} -> {old} (the old primary)",
                    c.zone, c.tsig.name, c.service_host_name
                ),
                None,
            ),
            Update::PrerequisiteFailed => {
                let (now, read) = self.already(&new, ctx);
                let verdict = match now {
                    Ok(()) => (
                        Status::Ok,
                        format!(
                            "{} {rtype} already -> {new} (the new primary); nothing to change",
                            c.service_host_name
                        ),
                    ),
                    Err(shows) => (
                        Status::Critical,
                        format!(
                            "{} {rtype} is {shows} at {host}, not {old} (the old primary): someone else changed it, and the update would not overwrite it; point it at {old} (or {new}) by hand",
                            c.service_host_name
                        ),
                    ),
                };
                (verdict.0, verdict.1, Some(read))
            }
            Update::Failed(why) => (Status::Critical, why, None),
        };
        let mut outputs = vec![&soa_out, &out];
        outputs.extend(extra.as_ref());
        vec![self.result(&host, status, message, &outputs)]
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let c = self;
        let host = self.server_label();
        let (old, new) = (
            self.value_of(ctx, ctx.old_primary),
            self.value_of(ctx, ctx.new_primary),
        );
        let (name, rtype) = (&c.service_host_name, c.record.as_str());
        let (outcome, out) = self.update(&self.switch_changes(&old, &new), ctx);
        let (status, message, read) = match outcome {
            Update::Done => {
                let (now, read) = self.already(&new, ctx);
                match now {
                    Ok(_) => (
                        Status::Ok,
                        format!(
                            "{name} {rtype} -> {new} at {host} (was {old}), TTL {}s",
                            c.ttl
                        ),
                        read,
                    ),
                    Err(shows) => (
                        Status::Critical,
                        format!(
                            "{host} accepted the update, but now answers {name} {rtype} {shows}"
                        ),
                        read,
                    ),
                }
            }
            Update::PrerequisiteFailed => {
                let (now, read) = self.already(&new, ctx);
                match now {
                    Ok(_) => (
                        Status::Ok,
                        format!("{name} {rtype} already -> {new} at {host}; nothing changed"),
                        read,
                    ),
                    Err(shows) => (
                        Status::Critical,
                        format!(
                            "NOT changed: {name} {rtype} is {shows} at {host}, not {old} (the old primary); someone else changed it and deadpool does not overwrite it. Point it at {new} by hand if that is right"
                        ),
                        read,
                    ),
                }
            }
            Update::Failed(why) => {
                return vec![self.result(
                    &host,
                    Status::Critical,
                    format!("NOT changed: {why}"),
                    &[&out],
                )];
            }
        };
        vec![self.result(&host, status, message, &[&out, &read])]
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        let c = self;
        let (active, standby) = (
            self.value_of(ctx, ctx.old_primary),
            self.value_of(ctx, ctx.new_primary),
        );
        let rtype = c.record.as_str();
        std::thread::scope(|s| {
            let primary = s.spawn(|| {
                let (answer, out) = self.at_primary(ctx);
                let (status, concern, message) = primary_verdict(&answer, c, &active, &standby);
                self.result(&self.server_label(), status, message, &[&out])
                    .about(concern)
            });
            let resolvers: Vec<_> = c
                .verify_servers
                .iter()
                .map(|(server, port)| {
                    let (active, standby) = (&active, &standby);
                    s.spawn(move || {
                        let label = host_label(server, *port);
                        let (answer, out) =
                            self.dig(server, *port, &c.service_host_name, rtype, false, ctx);
                        let (status, concern, message) =
                            resolver_verdict(&answer, c, &label, active, standby);
                        self.result(&label, status, message, &[&out]).about(concern)
                    })
                })
                .collect();
            std::iter::once(primary)
                .chain(resolvers)
                .map(|h| h.join().expect("a DNS query's thread panicked"))
                .collect()
        })
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let c = self;
        let (old, new) = (
            self.value_of(ctx, ctx.old_primary),
            self.value_of(ctx, ctx.new_primary),
        );
        vec![(
            self.server_label(),
            format!(
                "nsupdate with TSIG key {} ({}): zone {}; {}; send",
                c.tsig.name,
                c.tsig.algorithm,
                c.zone,
                self.switch_changes(&old, &new).join("; ")
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::table::{DnsRecord, Tsig};
    use super::*;
    use crate::protocol::PerServer;

    fn cfg() -> Dns {
        Dns {
            server: "10.0.0.53".into(),
            port: 53,
            zone: "internal.example.".into(),
            service_host_name: "db.internal.example.".into(),
            record: DnsRecord::A,
            ttl: 30,
            max_ttl: 30,
            values: PerServer::new(vec!["10.0.0.11".into(), "10.0.0.12".into()]),
            tsig: Tsig {
                name: "deadpool-key".into(),
                algorithm: "hmac-sha256".into(),
                secret: secret("c2VjcmV0"),
                secret_file: PathBuf::from("/etc/deadpool/secrets/tsig"),
            },
            verify_servers: Vec::new(),
        }
    }

    /// A secret as the config loader makes it: from a private file.
    fn secret(text: &str) -> crate::settings::Secret {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tsig");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        crate::config::load::load_secret(dir.path(), "tsig").unwrap()
    }

    fn answer(rcode: &str, aa: bool, records: &[(&str, u32)]) -> Result<Answer, String> {
        Ok(Answer {
            rcode: rcode.into(),
            authoritative: aa,
            records: records
                .iter()
                .map(|(v, ttl)| Record {
                    value: v.to_string(),
                    ttl: *ttl,
                })
                .collect(),
        })
    }

    /// What dig 9.18 printed in the lab.
    #[test]
    fn dig_output_parses() {
        let out = ";; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 57362
;; flags: qr aa; QUERY: 1, ANSWER: 2, AUTHORITY: 1, ADDITIONAL: 2

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags:; udp: 1232
;; ANSWER SECTION:
DB.internal.example.\t30\tIN\tA\t10.213.0.12
db.internal.example.\t30\tIN\tAAAA\tfe80::1
other.internal.example.\t30\tIN\tA\t10.213.0.13
";
        assert_eq!(
            parse_dig(out, "db.internal.example.", "A"),
            answer("NOERROR", true, &[("10.213.0.12", 30)])
        );
        let aaaa = parse_dig(out, "db.internal.example.", "AAAA").unwrap();
        assert_eq!(aaaa.values(), vec!["fe80::1"]);
        let nx = ";; ->>HEADER<<- opcode: QUERY, status: NXDOMAIN, id: 1\n;; flags: qr rd ra; QUERY: 1\n";
        let a = parse_dig(nx, "x.", "A").unwrap();
        assert_eq!((a.rcode.as_str(), a.authoritative), ("NXDOMAIN", false));
        assert_eq!(a.describe("A"), "missing (NXDOMAIN)");
        let refused = ";; communications error to 10.0.0.53#53: connection refused\n;; no servers could be reached\n";
        assert_eq!(
            parse_dig(refused, "x.", "A"),
            Err("communications error to 10.0.0.53#53: connection refused".into())
        );
        assert_eq!(canonical("CNAME", "DB2.Example"), "db2.example.");
        assert_eq!(canonical("AAAA", "2001:DB8:0::1"), "2001:db8::1");
    }

    #[test]
    fn nsupdate_outcomes() {
        let cfg = cfg();
        let failed = Exit::Code(2);
        // (exit, output, expected: None = done, Some("") = prerequisite, Some(words) = failed)
        let table: &[(&Exit, &str, Option<&str>)] = &[
            (&Exit::Code(0), "", None),
            (&failed, "update failed: NXRRSET\n", Some("")),
            (&failed, "update failed: YXDOMAIN\n", Some("")),
            (
                &failed,
                "; TSIG error with server: tsig indicates error\nupdate failed: NOTAUTH(BADSIG)\n",
                Some("not the server's secret"),
            ),
            (
                &failed,
                "; TSIG error with server: tsig indicates error\nupdate failed: NOTAUTH(BADKEY)\n",
                Some("does not know TSIG key `deadpool-key`"),
            ),
            (&failed, "update failed: NOTAUTH(BADTIME)\n", Some("clocks")),
            (
                &failed,
                "update failed: NOTAUTH\n",
                Some("not authoritative"),
            ),
            (&failed, "update failed: REFUSED\n", Some("update-policy")),
            (&failed, "update failed: NOTZONE\n", Some("not in zone")),
            (
                &failed,
                "update failed: SERVFAIL\n",
                Some("answered SERVFAIL"),
            ),
            (
                &failed,
                "; Communication with 10.0.0.53#53 failed: timed out\n",
                Some(
                    "cannot reach 10.0.0.53:53: Communication with 10.0.0.53#53 failed: timed out",
                ),
            ),
            (
                &failed,
                "; Communication with 10.0.0.53#53 failed: operation canceled\n",
                Some("cannot reach"),
            ),
            (&Exit::TimedOut, "", Some("before the step's deadline")),
            (
                &Exit::NotStarted("nsupdate: No such file or directory".into()),
                "",
                Some("install bind9-dnsutils"),
            ),
        ];
        for (exit, output, expected) in table {
            let got = update_outcome(exit, output, &cfg);
            match (expected, &got) {
                (None, Update::Done) | (Some(""), Update::PrerequisiteFailed) => {}
                (Some(words), Update::Failed(m)) if !words.is_empty() => {
                    assert!(m.contains(words), "{output:?}: {m}");
                    assert!(!m.contains("c2VjcmV0"), "the secret leaked: {m}");
                }
                _ => panic!("{exit:?} {output:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn primary_verdicts() {
        let cfg = cfg();
        let (active, standby) = ("10.0.0.11", "10.0.0.12");
        // (answer, status, what it is about, words)
        let table: &[(Result<Answer, String>, Status, Concern, &str)] = &[
            (
                answer("NOERROR", true, &[("10.0.0.11", 30)]),
                Status::Ok,
                Concern::Direction,
                "-> 10.0.0.11 (active), TTL 30s",
            ),
            (
                answer("NOERROR", true, &[("10.0.0.11", 3600)]),
                Status::Warning,
                Concern::Readiness,
                "TTL 3600s is above max_ttl 30s",
            ),
            (
                answer("NOERROR", true, &[("10.0.0.12", 30)]),
                Status::Critical,
                Concern::Direction,
                "points at the standby",
            ),
            (
                answer("NOERROR", true, &[("10.0.0.11", 30), ("10.0.0.12", 30)]),
                Status::Critical,
                Concern::Direction,
                "points at the standby",
            ),
            (
                answer("NOERROR", true, &[("10.0.0.11", 30), ("10.0.0.99", 30)]),
                Status::Critical,
                Concern::Direction,
                "several A records",
            ),
            (
                answer("NOERROR", true, &[("10.0.0.99", 30)]),
                Status::Critical,
                Concern::Direction,
                "neither server",
            ),
            (
                answer("NXDOMAIN", true, &[]),
                Status::Critical,
                Concern::Direction,
                "missing (NXDOMAIN)",
            ),
            (
                answer("NOERROR", true, &[]),
                Status::Critical,
                Concern::Direction,
                "no A record",
            ),
            (
                answer("NOERROR", false, &[("10.0.0.11", 30)]),
                Status::Warning,
                Concern::Readiness,
                "without authority",
            ),
            (
                Err("connection timed out".into()),
                Status::Warning,
                Concern::Readiness,
                "cannot ask 10.0.0.53",
            ),
        ];
        for (a, status, concern, words) in table {
            let (s, c, m) = primary_verdict(a, &cfg, active, standby);
            assert_eq!((s, c), (*status, *concern), "{a:?}: {m}");
            assert!(m.contains(words), "{a:?}: {m}");
        }
    }

    #[test]
    fn resolver_verdicts() {
        let cfg = cfg();
        let (active, standby) = ("10.0.0.11", "10.0.0.12");
        let table: &[(Result<Answer, String>, Status, Concern, &str)] = &[
            (
                answer("NOERROR", false, &[("10.0.0.11", 12)]),
                Status::Ok,
                Concern::Direction,
                "-> 10.0.0.11 (active)",
            ),
            (
                answer("NOERROR", false, &[("10.0.0.12", 12)]),
                Status::Warning,
                Concern::Direction,
                "for up to 12s more",
            ),
            (
                answer("NOERROR", false, &[("10.0.0.12", 3600)]),
                Status::Critical,
                Concern::Direction,
                "points at the standby here",
            ),
            (
                answer("NXDOMAIN", false, &[]),
                Status::Critical,
                Concern::Direction,
                "missing (NXDOMAIN) here",
            ),
            (
                answer("NOERROR", false, &[("10.0.0.99", 5)]),
                Status::Critical,
                Concern::Direction,
                "not 10.0.0.11",
            ),
            (
                Err("refused".into()),
                Status::Warning,
                Concern::Readiness,
                "cannot ask r1",
            ),
        ];
        for (a, status, concern, words) in table {
            let (s, c, m) = resolver_verdict(a, &cfg, "r1", active, standby);
            assert_eq!((s, c), (*status, *concern), "{a:?}: {m}");
            assert!(m.contains(words), "{a:?}: {m}");
        }
    }

    #[test]
    fn the_key_file_is_private_and_goes_away() {
        let dir = PrivateDir::new().unwrap();
        let path = dir.write("tsig.key", "secret").unwrap();
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
                & 0o777
        };
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert!(dir.write("tsig.key", "again").is_err(), "never reopened");
        let kept = dir.path().to_path_buf();
        drop(dir);
        assert!(!kept.exists());
    }
}
