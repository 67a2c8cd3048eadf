//! The `redis_promote` step: makes the standby Redis a primary.
//!
//! - preflight: the standby answers, and is a replica of the current primary or already a
//!   primary; the old primary either answers normally or does not answer at all; each other
//!   standby of the pool answers, else a warning: it cannot be repointed.
//! - promote, old primary does not answer at all: `REPLICAOF NO ONE` on the standby, then its
//!   role is read back.
//! - promote, old primary answers with an error reply (NOAUTH, WRONGPASS, max number of
//!   clients, LOADING...): it is alive, so the step fails with nothing changed unless a person
//!   forced the promotion (SPEC 6.3: never a second writable primary by deadpool's hand).
//! - promote, old primary alive (a manual promote): its writes are paused (`CLIENT PAUSE
//!   WRITE`), the replica's offset must reach the old primary's, the replica is promoted, the
//!   old primary becomes a replica of the new one, and both roles are verified. If the replica
//!   cannot catch up in time, the pause is lifted and nothing changes.
//! - promote, once the new primary is verified: every other standby gets `REPLICAOF` the new
//!   primary, all at once, and must be seen with its link up; one that is not is a warning for
//!   a person, never a failed step (the service has moved).
//! - check: every standby is a replica of the active server with the link up and recent I/O;
//!   the active server is a primary.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Context, Held, HostResult, LoadContext, Protocol};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::model::Status;
use crate::monitor::MonitorKind;
use crate::redis::{Client, Failure, RedisAccess, Replication, Target};
use crate::settings::parse_duration;
use crate::tls::Tls;

/// The step's `type`.
pub const TYPE: &str = "redis_promote";

/// The `redis_promote` step's settings.
#[derive(Debug, Clone)]
pub struct RedisPromote {
    pub access: RedisAccess,
    /// How long a manual promote waits for the replica to reach the old primary's offset.
    pub catch_up_timeout: Duration,
    /// Readiness: no replication I/O for longer than this is a warning.
    pub max_lag: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedisPromote {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    catch_up_timeout: Option<String>,
    max_lag: Option<String>,
    tls: Option<RawTls>,
}

/// The `redis_promote` step's keys, validated; by default the step logs in as a `redis`
/// monitor does.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<RedisPromote, Problem> {
    let raw: RawRedisPromote = super::raw(table)?;
    let monitor_access = if let MonitorKind::Redis(r) = cx.monitor {
        Some(&r.access)
    } else {
        None
    };
    let password = match raw.password_file.as_deref() {
        Some(rel) => Some(load_secret(cx.dir, rel).map_err(|e| Problem::at("password_file", e))?),
        None => monitor_access.and_then(|m| m.password.clone()),
    };
    let tls = match raw.tls {
        Some(t) => Some(load_tls(cx.dir, t)?),
        None => monitor_access.and_then(|m| m.tls.clone()),
    };
    let access = RedisAccess {
        port: raw.port.or(monitor_access.map(|m| m.port)).unwrap_or(6379),
        user: raw.user.or(monitor_access.and_then(|m| m.user.clone())),
        password,
        tls,
    };
    Ok(RedisPromote {
        access,
        catch_up_timeout: parse_duration(raw.catch_up_timeout.as_deref().unwrap_or("10s"))
            .map_err(|e| Problem::at("catch_up_timeout", e))?,
        max_lag: parse_duration(raw.max_lag.as_deref().unwrap_or("10s"))
            .map_err(|e| Problem::at("max_lag", e))?,
    })
}

impl RedisPromote {
    fn connect(&self, host: &str, ctx: &Context) -> Result<Client, Failure> {
        Client::connect(&Target {
            host,
            port: self.access.port,
            user: self.access.user.as_deref(),
            password: self.access.password.as_ref(),
            timeout: ctx.bounded(ctx.monitor_timeout),
            tls: self.access.tls.as_ref(),
        })
    }

    /// The old primary, if it answers a PING: an error reply is an answer (it is alive),
    /// only silence is [`Failure::Down`].
    fn reach_old(&self, ctx: &Context) -> Result<Client, Failure> {
        let mut client = self.connect(ctx.old_primary, ctx)?;
        client.ok(&["PING"])?;
        Ok(client)
    }

    /// Pauses writes on the old primary and waits until the new one has its offset; on a
    /// failure, writes resume and the error says so.
    fn pause_and_catch_up(
        &self,
        oc: &mut Client,
        standby: &mut Client,
        ctx: &Context,
        notes: &mut Vec<String>,
    ) -> Result<(), String> {
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let pause_ms = ctx.step.timeout.as_millis().max(1000).to_string();
        if let Err(f) = oc.ok(&["CLIENT", "PAUSE", &pause_ms, "WRITE"]) {
            return Err(format!(
                "could not pause writes on the old primary {old}: {f}; nothing changed"
            ));
        }
        notes.push(format!("writes paused on the old primary {old}"));
        let target = match oc.replication() {
            Ok(r) => r.offset.unwrap_or(0),
            Err(f) => {
                let _ = oc.ok(&["CLIENT", "UNPAUSE"]);
                return Err(format!(
                    "cannot read the old primary's offset: {f}; writes resumed, nothing changed"
                ));
            }
        };
        let limit = self.catch_up_timeout.min(ctx.left());
        let caught = crate::remote::poll(limit, || {
            let r = standby.replication()?;
            Ok::<_, Failure>((r.offset.unwrap_or(0) >= target).then_some(()))
        });
        if !matches!(caught, Ok(Some(()))) {
            let _ = oc.ok(&["CLIENT", "UNPAUSE"]);
            return Err(format!(
                "{new} did not reach the old primary's offset {target} within {}; writes resumed on {old}, nothing changed",
                crate::settings::format_duration(limit)
            ));
        }
        notes.push(format!("{new} reached offset {target}"));
        Ok(())
    }

    fn result(
        &self,
        host: &str,
        status: Status,
        message: String,
        notes: &[String],
        started: Instant,
    ) -> HostResult {
        HostResult::new(host, status, &message, notes.join("\n"), started.elapsed())
    }
}

/// What a promoted server held, from its `INFO replication` right after `REPLICAOF NO
/// ONE` (pure, for tests): it keeps its offset in the old primary's stream as its own
/// `master_repl_offset`.
fn held_offset(r: &Replication) -> Option<Held> {
    let offset = u64::try_from(r.offset?).ok()?;
    Some(Held {
        position: crate::position::Position::redis(offset),
        how: "master_repl_offset after REPLICAOF NO ONE".to_string(),
    })
}

/// Whether the step may go on without an old primary that did not answer normally (pure,
/// for tests). `Ok(note)`: it does not answer at all, or it answers with an error reply and
/// a person forced the promotion. `Err(message)`: it is alive, and promoting around it
/// would make a second writable primary.
fn without_old_primary(f: &Failure, old: &str, force: bool) -> Result<String, String> {
    match f {
        Failure::Down(m) => Ok(format!("old primary {old} unreachable ({m})")),
        Failure::Refused(_) if force => Ok(format!(
            "old primary {old} answers with an error ({f}), promoted around it (forced): it may still take writes"
        )),
        Failure::Refused(_) => Err(format!(
            "old primary {old} answers with an error: {f}; not promoted, nothing changed. Fix the old primary (or stop it); `deadpool promote --force` promotes around it"
        )),
    }
}

/// Whether a replica's `master_host` is `host` (by name or address).
fn follows(r: &Replication, host: &str, timeout: Duration) -> bool {
    crate::net::same_host(&r.master_host, host, timeout)
}

impl RedisPromote {
    /// The preflight of the new primary and of the old one.
    fn preflight_candidate(&self, ctx: &Context) -> Vec<HostResult> {
        let started = Instant::now();
        let new = ctx.new_primary;
        let verdict = match self.connect(new, ctx).and_then(|mut c| c.replication()) {
            Err(f) => (
                Status::Critical,
                format!("cannot reach the new primary {new}: {f}"),
            ),
            Ok(r) if !r.is_replica() => (Status::Ok, format!("{new} is already a primary")),
            Ok(r) if !follows(&r, ctx.old_primary, ctx.monitor_timeout) => (
                Status::Critical,
                format!(
                    "{new} replicates from {}, not from {}",
                    r.master_host, ctx.old_primary
                ),
            ),
            Ok(r) => (
                Status::Ok,
                format!("{new} can be promoted: {}", r.describe()),
            ),
        };
        let old = ctx.old_primary;
        let old_verdict = match self.reach_old(ctx) {
            Ok(_) => (
                Status::Ok,
                format!("old primary {old} answers; its writes will be paused first"),
            ),
            Err(f) => match without_old_primary(&f, old, ctx.force.is_on()) {
                Ok(note) => (Status::Ok, format!("{note}; it will be left alone")),
                Err(why) => (Status::Critical, why),
            },
        };
        vec![
            self.result(new, verdict.0, verdict.1, &[], started),
            self.result(old, old_verdict.0, old_verdict.1, &[], started),
        ]
    }

    /// The promotion of the new primary (and the demotion of a live old one).
    fn promote_new(&self, ctx: &Context) -> HostResult {
        let started = Instant::now();
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let mut notes = Vec::new();
        let fail =
            |notes: &[String], m: String| self.result(new, Status::Critical, m, notes, started);
        let mut standby = match self.connect(new, ctx) {
            Ok(c) => c,
            Err(f) => return fail(&notes, format!("cannot reach {new}: {f}; nothing changed")),
        };
        // A reachable old primary: stop its writes and let the replica catch up first.
        let mut without = String::new();
        let mut old_client = match self.reach_old(ctx) {
            Ok(c) => Some(c),
            Err(f) => match without_old_primary(&f, old, ctx.force.is_on()) {
                Ok(note) => {
                    notes.push(format!("{note}; promoting without it"));
                    without = note;
                    None
                }
                Err(why) => return fail(&notes, why),
            },
        };
        if let Some(oc) = old_client.as_mut()
            && let Err(m) = self.pause_and_catch_up(oc, &mut standby, ctx, &mut notes)
        {
            return fail(&notes, m);
        }
        if let Err(f) = standby.ok(&["REPLICAOF", "NO", "ONE"]) {
            if let Some(oc) = old_client.as_mut() {
                let _ = oc.ok(&["CLIENT", "UNPAUSE"]);
            }
            return fail(&notes, format!("REPLICAOF NO ONE on {new} failed: {f}"));
        }
        let held = match standby.replication() {
            Ok(r) if !r.is_replica() => {
                notes.push(format!("{new} is a primary"));
                held_offset(&r)
            }
            Ok(r) => {
                return fail(
                    &notes,
                    format!(
                        "{new} is still a replica after REPLICAOF NO ONE: {}",
                        r.describe()
                    ),
                );
            }
            Err(f) => return fail(&notes, format!("cannot verify {new}'s role: {f}")),
        };
        // From here on the new primary is writable, whatever becomes of the old one.
        let fail = |notes: &[String], m: String| fail(notes, m).holding(held.clone());
        let Some(oc) = old_client.as_mut() else {
            return self
                .result(
                    new,
                    Status::Ok,
                    format!("{new} promoted; {without}"),
                    &notes,
                    started,
                )
                .holding(held);
        };
        // The old primary follows the new one, then may take (read-only) clients again.
        let port = self.access.port.to_string();
        let demoted = oc
            .ok(&["REPLICAOF", new, &port])
            .and_then(|_| oc.replication());
        let _ = oc.ok(&["CLIENT", "UNPAUSE"]);
        match demoted {
            Ok(r) if r.is_replica() && follows(&r, new, ctx.monitor_timeout) => {
                notes.push(format!("{old} now replicates from {new}"));
                self.result(
                    new,
                    Status::Ok,
                    format!("{new} promoted; {old} is its replica"),
                    &notes,
                    started,
                )
                .holding(held)
            }
            Ok(r) => fail(
                &notes,
                format!(
                    "{new} promoted, but {old} did not become its replica: {}",
                    r.describe()
                ),
            ),
            Err(f) => fail(
                &notes,
                format!("{new} promoted, but making {old} its replica failed: {f}"),
            ),
        }
    }

    fn check_standby(&self, standby: &str, active: &str, ctx: &Context) -> HostResult {
        let started = Instant::now();
        let (status, message) = match self.connect(standby, ctx).and_then(|mut c| c.replication()) {
            Err(f) => (Status::Critical, format!("standby: {f}")),
            Ok(r) => standby_verdict(&r, active, self.max_lag, |h| {
                follows(&r, h, ctx.monitor_timeout)
            }),
        };
        self.result(standby, status, message, &[], started)
    }

    fn check_active(&self, active: &str, ctx: &Context) -> HostResult {
        let started = Instant::now();
        let (status, message) = match self.connect(active, ctx).and_then(|mut c| c.replication()) {
            Err(Failure::Down(f)) => (Status::Warning, format!("active: unreachable: {f}")),
            Err(f) => (Status::Critical, format!("active: {f}")),
            Ok(r) if r.is_replica() => (
                Status::Critical,
                format!(
                    "active {active} is a replica ({}): writes fail",
                    r.describe()
                ),
            ),
            Ok(r) => (Status::Ok, format!("active is a {}", r.describe())),
        };
        self.result(active, status, message, &[], started)
    }

    /// Whether the step can log in to a standby the failover will repoint (read-only); what
    /// it replicates now.
    fn repointable(&self, host: &str, ctx: &Context) -> Result<String, String> {
        match self.connect(host, ctx).and_then(|mut c| c.replication()) {
            Ok(r) => Ok(r.describe()),
            Err(f) => Err(f.to_string()),
        }
    }

    /// Makes a standby replicate from the new primary and waits until its link is up (at
    /// most `catch_up_timeout`, never past the step's deadline).
    fn repoint(
        &self,
        host: &str,
        ctx: &Context,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        let (new, port) = (ctx.new_primary, self.access.port);
        let mut client = self.connect(host, ctx).map_err(|f| f.to_string())?;
        client
            .replicate_from(new, port)
            .map_err(|f| format!("REPLICAOF {new} {port} failed: {f}"))?;
        notes.push(format!("REPLICAOF {new} {port}"));
        let r = client.await_replicating(new, port, ctx.bounded(self.catch_up_timeout))?;
        Ok(r.describe())
    }
}

impl Protocol for RedisPromote {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn tls(&self) -> Option<&Tls> {
        self.access.tls.as_ref()
    }

    fn promotes(&self) -> bool {
        true
    }

    /// Logins and replication toward the standby.
    fn probed_by_check_config(&self) -> bool {
        true
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        super::preflight_with_standbys(
            ctx,
            || self.preflight_candidate(ctx),
            |host| self.repointable(host, ctx),
        )
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let promoted = self.promote_new(ctx);
        super::then_repoint(ctx, promoted, |host, notes| {
            self.repoint(host, ctx, notes)
                .map_err(super::NotRepointed::Failed)
        })
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        let active = ctx.active();
        super::check_standbys(
            ctx,
            |standby| self.check_standby(standby, active, ctx),
            || self.check_active(active, ctx),
        )
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let (new, port) = (ctx.new_primary, self.access.port);
        let mut plan = vec![(
            new.to_string(),
            format!(
                "if {} answers: CLIENT PAUSE WRITE there and wait for its offset; REPLICAOF NO ONE; then REPLICAOF {new} {port} on the old primary",
                ctx.old_primary
            ),
        )];
        plan.extend(ctx.other_standbys().into_iter().map(|standby| {
            (
                standby.to_string(),
                format!("once {new} is a primary: REPLICAOF {new} {port}; verify it replicates from {new}"),
            )
        }));
        plan
    }
}

/// The readiness verdict on a standby (pure, for tests).
fn standby_verdict(
    r: &Replication,
    active: &str,
    max_lag: Duration,
    follows_active: impl Fn(&str) -> bool,
) -> (Status, String) {
    if !r.is_replica() {
        return (
            Status::Critical,
            "standby is a primary, not a replica: writes there would be lost (split-brain risk)"
                .into(),
        );
    }
    if !follows_active(active) {
        return (
            Status::Critical,
            format!(
                "standby replicates from {}, not from the active {active}",
                r.master_host
            ),
        );
    }
    if r.link_status != "up" {
        return (
            Status::Critical,
            format!(
                "standby's replication link is {}: {}",
                r.link_status,
                r.describe()
            ),
        );
    }
    match r.last_io_seconds {
        Some(s) if Duration::from_secs(s.max(0) as u64) > max_lag => (
            Status::Warning,
            format!("standby heard from the primary {s}s ago: {}", r.describe()),
        ),
        _ => (Status::Ok, format!("standby {}", r.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica() -> Replication {
        Replication {
            role: "slave".into(),
            master_host: "10.0.0.1".into(),
            master_port: Some(6379),
            link_status: "up".into(),
            last_io_seconds: Some(0),
            offset: Some(100),
            connected_replicas: 0,
            good_replicas: None,
        }
    }

    /// A promoted replica keeps its offset in the old primary's stream.
    #[test]
    fn what_the_promoted_replica_held() {
        let promoted = Replication::parse("role:master\r\nmaster_repl_offset:1205\r\n");
        let held = held_offset(&promoted).unwrap();
        assert_eq!(held.position, crate::position::Position::redis(1205));
        assert!(held.how.contains("REPLICAOF NO ONE"));
        for none in [
            Replication::parse("role:master\r\n"),
            Replication {
                offset: Some(-1),
                ..replica()
            },
        ] {
            assert_eq!(held_offset(&none), None);
        }
    }

    fn verdict(r: &Replication) -> Status {
        standby_verdict(r, "10.0.0.1", Duration::from_secs(10), |h| {
            h == r.master_host
        })
        .0
    }

    #[test]
    fn only_silence_lets_the_promotion_go_around_the_old_primary() {
        let down = Failure::Down("10.0.0.1:6379: Connection refused".into());
        let errors = [
            "AUTH refused: WRONGPASS invalid username-password pair",
            "PING: NOAUTH Authentication required.",
            "PING: ERR max number of clients reached",
            "PING: LOADING Redis is loading the dataset in memory",
        ];
        // (failure, force, may go on, words)
        let mut table = vec![
            (down.clone(), false, true, "unreachable"),
            (down, true, true, "unreachable"),
        ];
        for e in errors {
            table.push((Failure::Refused(e.into()), false, false, "not promoted"));
            table.push((Failure::Refused(e.into()), true, true, "(forced)"));
        }
        for (f, force, goes_on, words) in table {
            let verdict = without_old_primary(&f, "10.0.0.1", force);
            assert_eq!(verdict.is_ok(), goes_on, "{f:?} force={force}");
            let text = verdict.unwrap_or_else(|e| e);
            assert!(text.contains(words), "{f:?}: {text}");
        }
    }

    #[test]
    fn standby_readiness_rules() {
        assert_eq!(verdict(&replica()), Status::Ok);
        assert_eq!(
            verdict(&Replication {
                role: "master".into(),
                ..replica()
            }),
            Status::Critical
        );
        assert_eq!(
            verdict(&Replication {
                link_status: "down".into(),
                ..replica()
            }),
            Status::Critical
        );
        assert_eq!(
            verdict(&Replication {
                last_io_seconds: Some(11),
                ..replica()
            }),
            Status::Warning
        );
        assert_eq!(
            verdict(&Replication {
                master_host: "10.0.0.9".into(),
                ..replica()
            }),
            Status::Critical
        );
    }
}
