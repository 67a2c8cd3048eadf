//! The report's severity rules (SPEC section 8): plain facts in, problems out, each with its
//! status, message and hint. No I/O; every rule has a row in the tables below. Changing a
//! severity means changing one function here and one test row.

use crate::config::{Pool, format_duration};
use crate::model::Role;
use crate::model::{Concern, Health, PoolState, Status};
use crate::state::{MonitorRow, Pause, PoolRecord, ReadinessRow, TickRecord};
use crate::text::{format_time, human_secs};

/// A problem before it is attached to a pool: what is wrong and what to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub status: Status,
    pub message: String,
    pub hint: String,
}

fn found(status: Status, message: impl Into<String>, hint: impl Into<String>) -> Found {
    Found {
        status,
        message: message.into(),
        hint: hint.into(),
    }
}

pub fn age_s(now: i64, at: i64) -> f64 {
    (now - at) as f64 / 1000.0
}

/// What the report knows of the instance's ticks.
#[derive(Debug, Clone, Copy)]
pub struct Staleness {
    pub tick_interval_s: f64,
    pub warning: std::time::Duration,
    pub critical: std::time::Duration,
}

/// The instance line: the last tick's age against the staleness limits. Returns its status,
/// its message and, unless OK, a hint.
pub fn instance(
    tick: Option<TickRecord>,
    now: i64,
    limits: Staleness,
) -> (Status, String, Option<String>) {
    let Some(t) = tick else {
        return (
            Status::Critical,
            "no tick has run yet; is the deadpool timer enabled?".to_string(),
            Some("enable the timer: systemctl enable --now deadpool.timer (or run `deadpool tick` from cron)".to_string()),
        );
    };
    let a = age_s(now, t.seen_at());
    let msg = format!(
        "last tick {} ago, took {}",
        human_secs(a.max(0.0)),
        human_secs(t.duration_ms as f64 / 1000.0)
    );
    let (status, message) = if a < -limits.tick_interval_s {
        (
            Status::Warning,
            format!(
                "the last tick started {} in the future: the clock went backwards; counts and ages are unreliable until it catches up",
                human_secs(-a)
            ),
        )
    } else if a > limits.critical.as_secs_f64() {
        (
            Status::Critical,
            format!(
                "{msg}; the timer seems stopped (critical after {})",
                format_duration(limits.critical)
            ),
        )
    } else if a > limits.warning.as_secs_f64() {
        (
            Status::Warning,
            format!(
                "{msg}; ticks are late (warning after {})",
                format_duration(limits.warning)
            ),
        )
    } else {
        (Status::Ok, msg)
    };
    let hint = (status != Status::Ok).then(|| {
        "see `systemctl status deadpool.timer` and `journalctl -u deadpool`; a tick may be failing or hung".to_string()
    });
    (status, message, hint)
}

/// Everything the rules of one pool look at.
#[derive(Debug, Clone, Copy)]
pub struct PoolFacts<'a> {
    pub pool: &'a Pool,
    pub rec: Option<&'a PoolRecord>,
    pub monitor: &'a [MonitorRow],
    pub readiness: &'a [ReadinessRow],
    pub now: i64,
    /// Readiness results older than this are stale (ms).
    pub stale_after_ms: i64,
}

impl PoolFacts<'_> {
    pub fn active(&self) -> Role {
        self.rec.map_or(Role::PRIMARY, |r| r.active)
    }

    pub fn locked(&self) -> bool {
        self.rec.is_some_and(|r| r.state.is_locked())
    }

    /// The pause that is on now (one whose end has passed is none, even before a tick
    /// records its end).
    pub fn pause(&self) -> Option<&Pause> {
        self.rec
            .and_then(|r| r.pause.as_ref())
            .filter(|p| crate::rules::paused(Some(p.until), self.now))
    }

    fn row(&self, role: Role) -> Option<&MonitorRow> {
        self.monitor.iter().find(|m| m.role == role)
    }

    fn health(&self, role: Role) -> Option<Health> {
        self.row(role).map(|m| m.health)
    }
}

/// The pool's own state: counting, failed over, in progress, blocked, failed, interrupted.
pub fn pool_state(f: &PoolFacts) -> Option<Found> {
    let pool = f.pool;
    let name = &pool.name;
    let Some(r) = f.rec else {
        return Some(found(
            Status::Warning,
            "not checked by a tick yet",
            "wait for the next tick (a pool added to the config is picked up by it)",
        ));
    };
    Some(match r.state {
        PoolState::Armed if r.failures > 0 => {
            let (failed, fails_over) = match pool.down_for {
                Some(_) => (
                    format!("failed {} check(s) in a row", r.failures),
                    format!("deadpool fails over {}", pool.threshold()),
                ),
                None => (
                    format!(
                        "failed {}/{} consecutive checks",
                        r.failures, pool.max_failed_checks
                    ),
                    format!("deadpool fails over at {0}/{0}", pool.max_failed_checks),
                ),
            };
            let next = if f.pause().is_some() {
                "the pool is paused, so it does not fail over until the pause ends".to_string()
            } else {
                fails_over
            };
            found(
                Status::Warning,
                format!(
                    "active {} ({}) {failed}: {}",
                    r.active.as_str(),
                    pool.address(r.active),
                    f.row(r.active).map_or("", |m| m.message.as_str())
                ),
                format!("look at {} now: {next}", pool.address(r.active)),
            )
        }
        PoolState::Armed => return None,
        PoolState::FailedOver => found(
            Status::Warning,
            format!(
                "{}; run `deadpool reset {name}` once it is looked at",
                r.reason
            ),
            format!(
                "find out why {} failed, repair or rebuild it as the new standby, then `deadpool reset {name}`",
                former_primary(pool, r.active)
            ),
        ),
        PoolState::FailingOver => found(
            Status::Critical,
            format!("failover in progress: {}", r.reason),
            format!(
                "watch `deadpool history --pool {name}`; a tick that finds no process running it marks it interrupted"
            ),
        ),
        PoolState::Blocked => found(
            Status::Critical,
            format!("blocked: {}", r.reason),
            "fix what the reason names; the failover runs on the next tick once it can (or `deadpool promote` by hand)",
        ),
        PoolState::FailoverFailed | PoolState::Interrupted => found(
            Status::Critical,
            format!(
                "{}: {}; fix it by hand, then `deadpool reset {name}`",
                r.state.as_str(),
                r.reason
            ),
            format!(
                "see which steps ran in `deadpool history --pool {name}`, finish or undo them by hand, then `deadpool reset {name} --active primary|secondary`"
            ),
        ),
    })
}

/// A maintenance pause that is on: a WARNING naming who, why and until when, and whether
/// the pool would fail over as soon as it ends.
pub fn pause(f: &PoolFacts) -> Option<Found> {
    let r = f.rec?;
    let p = f.pause()?;
    let name = &f.pool.name;
    let mut message = format!("{}; no failover until then", describe_pause(p));
    let counting = matches!(r.state, PoolState::Armed | PoolState::Blocked);
    if counting && f.pool.down_for.is_some() && r.failures > 0 {
        // A pool that confirms by time does so once the pause ends, not during it.
        message.push_str(&format!(
            "; the active server has failed {} check(s) in a row: after the pause it fails over {} unless it answers by then",
            r.failures,
            f.pool.threshold()
        ));
    } else if counting && f.pool.down_for.is_none() && r.failures >= f.pool.max_failed_checks {
        message.push_str(&format!(
            "; the active server has failed {}/{} checks: it fails over when the pause ends unless it answers by then",
            r.failures, f.pool.max_failed_checks
        ));
    }
    Some(found(
        Status::Warning,
        message,
        format!(
            "`deadpool resume {name}` once the work is done; the pause ends by itself at {}",
            format_time(p.until)
        ),
    ))
}

/// `paused until TIME by WHO: REASON`.
pub fn describe_pause(p: &Pause) -> String {
    format!(
        "paused until {} by {}{}",
        format_time(p.until),
        p.by,
        reason_suffix(&p.reason)
    )
}

/// `: REASON`, or nothing without a reason.
fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// One server's status in the tree: unknown until checked; a down active server is
/// CRITICAL once the pool is locked (it will not fail over again), a WARNING while counting.
pub fn server_status(health: Option<Health>, is_active: bool, locked: bool) -> Status {
    match health {
        None => Status::Unknown,
        Some(Health::Up) => Status::Ok,
        Some(Health::Degraded) => Status::Warning,
        Some(Health::Down) if is_active && locked => Status::Critical,
        Some(Health::Down) => Status::Warning,
    }
}

/// What the monitor's results say about the servers: all down, a standby down, a locked
/// pool whose active server is down, a server alive with a problem, and split-brain.
pub fn servers(f: &PoolFacts) -> Vec<Found> {
    let mut out = Vec::new();
    let pool = f.pool;
    let name = &pool.name;
    let active = f.active();
    let standbys: Vec<Role> = pool.servers().others(active).map(|(r, _)| r).collect();
    let down = |role: Role| f.health(role) == Some(Health::Down);
    let active_down = down(active);
    let all_standbys_down = standbys.iter().all(|r| down(*r));
    if active_down && all_standbys_down {
        let what = if pool.servers().is_pair() {
            "both servers are down"
        } else {
            "every server is down"
        };
        out.push(found(
            Status::Critical,
            what,
            "restore either server by hand; deadpool cannot fail over to a dead standby",
        ));
    } else {
        for standby in standbys.iter().copied().filter(|r| down(*r)) {
            let msg = f.row(standby).map_or("", |m| m.message.as_str());
            let hint = if all_standbys_down {
                "bring the standby back: until then a failover is not possible"
            } else {
                "bring the standby back: until then it is no candidate for a failover"
            };
            out.push(found(
                Status::Warning,
                format!(
                    "standby {} ({}) is down: {msg}",
                    standby.as_str(),
                    pool.address(standby)
                ),
                hint,
            ));
        }
    }
    if active_down && f.locked() && !all_standbys_down {
        out.push(found(
            Status::Critical,
            format!(
                "active {} ({}) is down and the pool is locked",
                active.as_str(),
                pool.address(active)
            ),
            format!(
                "the locked pool will not fail over again: restore it, or `deadpool reset {name}` and let deadpool act"
            ),
        ));
    }
    for (role, address) in pool.servers().roles() {
        if let Some(m) = f.row(role).filter(|m| m.health == Health::Degraded) {
            out.push(found(
                Status::Warning,
                format!(
                    "{} ({address}) is alive with a problem: {}",
                    role.as_str(),
                    m.message
                ),
                degraded_hint(&m.message),
            ));
        }
    }
    out.extend(split_brain(f, active, &standbys));
    out.extend(replication(f, active, &standbys));
    out
}

/// What the standbys' replication says: one that replicates from another of the pool's
/// servers than the active one, or does not receive from the active one (CRITICAL, in every
/// state: it serves stale reads now and is no standby), and one that could not be promoted
/// were the active server to fail now (WARNING).
fn replication(f: &PoolFacts, active: Role, standbys: &[Role]) -> Vec<Found> {
    let pool = f.pool;
    let servers = pool.servers();
    let active_address = pool.address(active);
    let mut out = Vec::new();
    for role in standbys.iter().copied() {
        let address = pool.address(role);
        let Some(row) = f.row(role).filter(|m| m.health.is_alive()) else {
            continue;
        };
        let hints = pool
            .monitor
            .kind
            .get()
            .replication_hints(address, active_address);
        if let Some(forked) = forked_off(f, active, role, row) {
            out.push(forked);
            continue;
        }
        if let Some(source) = (row.replica.as_ref()).and_then(|r| servers.role_of(&r.source))
            && source != active
        {
            out.push(found(
                Status::Critical,
                format!(
                    "standby {} ({address}) replicates from {}, not from the active server {active_address}",
                    role.as_str(),
                    pool.address(source)
                ),
                hints.wrong_source,
            ));
            continue;
        }
        if let Some(r) = row.replica.as_ref().filter(|r| !r.receiving)
            && servers.role_of(&r.source) == Some(active)
        {
            out.push(found(
                Status::Critical,
                format!(
                    "standby {} ({address}) does not receive from the active server {active_address}: {}",
                    role.as_str(),
                    r.problem.as_deref().unwrap_or("its replication link is down")
                ),
                hints.not_receiving,
            ));
            continue;
        }
        let Some(rec) = f.rec.filter(|r| !r.state.is_locked()) else {
            continue;
        };
        if !pool.promotable(role)
            || !crate::settings::host_key(&rec.progress.primary)
                .eq(&crate::settings::host_key(active_address))
        {
            continue;
        }
        let lag = pool.max_promote_lag.as_millis() as i64;
        if let Some(why) =
            crate::rules::lagging_standby(&rec.progress, address, lag, pool.monitor.kind.unit())
        {
            out.push(found(
                Status::Warning,
                format!(
                    "standby {} ({address}) is not a candidate: {why}",
                    role.as_str()
                ),
                hints.not_candidate,
            ));
        }
    }
    out
}

/// A standby in recovery that does not stream and whose received timeline is older than the
/// active server's (PostgreSQL): it did not follow the promotion. One that had replayed past
/// the point where the new timeline began never can, and serves reads of what the active
/// server does not have: CRITICAL, in every state. Timelines as the monitor saw them this
/// round, else as the rounds recorded them for the active server's stream.
fn forked_off(f: &PoolFacts, active: Role, role: Role, row: &MonitorRow) -> Option<Found> {
    let pool = f.pool;
    let (address, active_address) = (pool.address(role), pool.address(active));
    let replica = row.replica.as_ref().filter(|r| !r.receiving)?;
    if row.read_only != Some(true) {
        return None;
    }
    let progress = (f.rec.map(|r| &r.progress)).filter(|p| {
        crate::settings::host_key(&p.primary) == crate::settings::host_key(active_address)
    });
    let active_timeline = (f.row(active).and_then(|m| m.position.as_ref()?.timeline))
        .or_else(|| progress?.samples.last()?.1.timeline)?;
    let timeline = (replica.received.as_ref().and_then(|p| p.timeline))
        .or_else(|| progress?.standbys.get(address)?.received.as_ref()?.timeline)?;
    if timeline >= active_timeline {
        return None;
    }
    let problem = replica.problem.as_deref().unwrap_or("not streaming");
    Some(found(
        Status::Critical,
        format!(
            "standby {} ({address}) forked off: on timeline {timeline} while the active server {active_address} is on timeline {active_timeline}, and it does not stream ({problem})",
            role.as_str()
        ),
        format!(
            "if its log says \"new timeline {active_timeline} forked off current database system timeline {timeline} before current recovery point\", it replayed WAL {active_address} does not have, serves reads of it and can never follow: rebuild it as a standby of {active_address} (pg_basebackup, or pg_rewind with wal_log_hints/checksums)"
        ),
    ))
}

/// A standby that is writable while the pool is locked, or beside a writable active server.
fn split_brain(f: &PoolFacts, active: Role, standbys: &[Role]) -> Vec<Found> {
    let writable = |role: Role| {
        f.row(role)
            .filter(|m| m.health.is_alive())
            .and_then(|m| m.read_only.map(|ro| !ro))
    };
    let why = if f.locked() {
        "while the pool is failed over"
    } else {
        "as is the active server"
    };
    (standbys.iter().copied())
        .filter(|s| crate::rules::split_brain(f.locked(), writable(active), writable(*s)))
        .map(|s| {
            let address = f.pool.address(s);
            if f.row(s).is_some_and(|m| m.fenced_softly) {
                return found(
                    Status::Warning,
                    format!(
                        "standby {} ({address}) is out of recovery {why}, fenced only softly (default_transaction_read_only = on): BEGIN READ WRITE still writes there",
                        s.as_str()
                    ),
                    format!(
                        "stop {address} (pg_ctl stop -m fast) and rebuild it as a standby; fence = \"stop\" makes a manual promote stop it"
                    ),
                );
            }
            let words = f.pool.monitor.kind.get().split_brain(address);
            found(
                Status::Critical,
                format!(
                    "split-brain risk: standby {} ({address}) {} {why}; {}",
                    s.as_str(),
                    words.state,
                    words.fix
                ),
                words.hint,
            )
        })
        .collect()
}

/// The server a failed-over pool left, in words: a pair's other server, else "the old
/// primary" (history names it).
fn former_primary(pool: &Pool, active: Role) -> String {
    let servers = pool.servers();
    match servers.others(active).collect::<Vec<_>>().as_slice() {
        [(_, only)] => only.to_string(),
        _ => "the old primary (`deadpool history` names it)".to_string(),
    }
}

/// What to look at for a server that is alive with a problem: its TLS set-up when the
/// problem is TLS (the message names the fix), else the monitor's login and the server's
/// connection limits.
fn degraded_hint(message: &str) -> &'static str {
    if message.contains("TLS") {
        "check the pool's `tls` table against the server's TLS set-up (CA, certificate names, client certificate): the problem says which"
    } else {
        "check the monitor's credentials and the server's connection limits"
    }
}

/// One step's readiness: its status in the tree and its problems (each by
/// [`readiness_found`]).
pub fn readiness(f: &PoolFacts, index: usize) -> (Status, Vec<Found>) {
    let step = &f.pool.steps[index];
    let rows: Vec<&ReadinessRow> = f
        .readiness
        .iter()
        .filter(|r| r.step_index == index)
        .collect();
    let mut out = Vec::new();
    if rows.is_empty() {
        if f.rec.is_some() {
            out.push(found(
                Status::Warning,
                format!(
                    "step {} `{}`: readiness not checked yet",
                    index + 1,
                    step.name
                ),
                "the next tick checks it",
            ));
        }
        return (Status::Unknown, out);
    }
    let mut status = rows
        .iter()
        .map(|r| r.status)
        .max()
        .unwrap_or(Status::Unknown);
    out.extend(
        (rows.iter())
            .filter(|r| r.status != Status::Ok)
            .map(|r| readiness_found(f, index, r)),
    );
    let oldest = rows.iter().map(|r| r.checked_at).min().unwrap_or(f.now);
    if f.now - oldest > f.stale_after_ms {
        status = status.max(Status::Warning);
        out.push(found(
            Status::Warning,
            format!(
                "step {} `{}`: readiness last checked {} ago",
                index + 1,
                step.name,
                human_secs(age_s(f.now, oldest))
            ),
            "readiness waits while the active server is failing, or the check hangs; see `journalctl -u deadpool`",
        ));
    }
    (status, out)
}

/// One readiness result that is not OK, as a problem. Where clients are sent is a fact
/// about now: its status stands in every state, locked ones included. Whether a failover
/// would work matters to a locked pool only once it is reset: capped at WARNING, as advice.
fn readiness_found(f: &PoolFacts, index: usize, r: &ReadinessRow) -> Found {
    let step = &f.pool.steps[index];
    let (status, note, hint) = match (r.concern, f.locked()) {
        // A passing state, such as a resolver's cache that expires by itself.
        (Concern::Direction, _) if r.status == Status::Warning => (
            r.status,
            "",
            format!(
                "watch {}: clients there may still be sent elsewhere than the active server {}, as the message says",
                r.host,
                f.pool.address(f.active())
            ),
        ),
        (Concern::Direction, _) => (
            r.status,
            "",
            format!(
                "fix it on {} now: clients are sent elsewhere than the active server {} (if something puts it back, such as config management, fix that too)",
                r.host,
                f.pool.address(f.active())
            ),
        ),
        (Concern::Readiness, false) => (
            r.status,
            "",
            format!(
                "fix it on {}: a failover now would fail at this step",
                r.host
            ),
        ),
        (Concern::Readiness, true) => (
            r.status.min(Status::Warning),
            " (pool locked: applies after reset)",
            format!(
                "fix it on {} before `deadpool reset {}`: a failover after the reset would fail at this step",
                r.host, f.pool.name
            ),
        ),
    };
    found(
        status,
        format!(
            "step {} `{}` on {}: {} (checked {} ago){note}",
            index + 1,
            step.name,
            r.host,
            r.message,
            human_secs(age_s(f.now, r.checked_at).max(0.0))
        ),
        hint,
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;

    const NOW: i64 = 1_000_000_000;

    fn pool() -> Pool {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pools")).unwrap();
        std::fs::write(dir.path().join("deadpool.toml"), "state_dir = \"state\"\n").unwrap();
        std::fs::write(
            dir.path().join("pools/db.toml"),
            "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"tcp\"\nport = 3306\n[[protocol]]\ntype = \"exec\"\nname = \"x\"\nhosts = [\"local\"]\nexec_command = \"true\"\n",
        )
        .unwrap();
        Config::load(dir.path()).unwrap().pools.remove(0)
    }

    fn rec(state: PoolState, failures: u32, active: Role) -> PoolRecord {
        PoolRecord {
            state,
            failures,
            active,
            reason: "why".into(),
            ..PoolRecord::new("db", NOW)
        }
    }

    fn row(role: Role, health: Health, read_only: Option<bool>) -> MonitorRow {
        MonitorRow {
            role,
            health,
            message: format!("{} {}", role.as_str(), health.as_str()),
            checked_at: NOW,
            duration_ms: 1,
            read_only,
            replica: None,
            position: None,
            durability: None,
            fenced_softly: false,
        }
    }

    fn facts<'a>(
        p: &'a Pool,
        r: Option<&'a PoolRecord>,
        m: &'a [MonitorRow],
        rd: &'a [ReadinessRow],
    ) -> PoolFacts<'a> {
        PoolFacts {
            pool: p,
            rec: r,
            monitor: m,
            readiness: rd,
            now: NOW,
            stale_after_ms: 60_000,
        }
    }

    #[test]
    fn instance_table() {
        let limits = Staleness {
            tick_interval_s: 5.0,
            warning: Duration::from_secs(15),
            critical: Duration::from_secs(50),
        };
        let tick = |age_s: i64| {
            Some(TickRecord {
                started_at: NOW - age_s * 1000,
                duration_ms: 10,
            })
        };
        // (last tick, status, words in the message)
        let rows = [
            (None, Status::Critical, "no tick has run yet"),
            (tick(3), Status::Ok, "last tick 3.0s ago"),
            (tick(20), Status::Warning, "ticks are late"),
            (tick(60), Status::Critical, "the timer seems stopped"),
            (tick(-60), Status::Warning, "the clock went backwards"),
        ];
        for (t, status, words) in rows {
            let (s, m, hint) = instance(t, NOW, limits);
            assert_eq!(s, status, "{m}");
            assert!(m.contains(words), "{m}");
            assert_eq!(hint.is_some(), s != Status::Ok);
        }
    }

    #[test]
    fn pool_state_table() {
        let p = pool();
        // (record, status or none, words)
        let rows: Vec<(Option<PoolRecord>, Option<Status>, &str)> = vec![
            (None, Some(Status::Warning), "not checked by a tick yet"),
            (Some(rec(PoolState::Armed, 0, Role::PRIMARY)), None, ""),
            (
                Some(rec(PoolState::Armed, 2, Role::PRIMARY)),
                Some(Status::Warning),
                "failed 2/3",
            ),
            (
                Some(rec(PoolState::FailedOver, 0, Role::SECONDARY)),
                Some(Status::Warning),
                "deadpool reset db",
            ),
            (
                Some(rec(PoolState::FailingOver, 0, Role::SECONDARY)),
                Some(Status::Critical),
                "in progress",
            ),
            (
                Some(rec(PoolState::Blocked, 3, Role::PRIMARY)),
                Some(Status::Critical),
                "blocked: why",
            ),
            (
                Some(rec(PoolState::FailoverFailed, 0, Role::SECONDARY)),
                Some(Status::Critical),
                "failover_failed",
            ),
            (
                Some(rec(PoolState::Interrupted, 0, Role::SECONDARY)),
                Some(Status::Critical),
                "interrupted",
            ),
        ];
        for (r, status, words) in rows {
            let got = pool_state(&facts(&p, r.as_ref(), &[], &[]));
            assert_eq!(got.as_ref().map(|g| g.status), status, "{got:?}");
            if let Some(g) = got {
                assert!(g.message.contains(words), "{}", g.message);
            }
        }
    }

    #[test]
    fn pause_table() {
        let p = pool();
        let paused = |state: PoolState, failures: u32, until: i64| PoolRecord {
            pause: Some(Pause {
                until,
                since: NOW - 60_000,
                by: "alice".into(),
                reason: "kernel upgrade".into(),
            }),
            ..rec(state, failures, Role::PRIMARY)
        };
        // (record, status or none, words)
        let rows: Vec<(PoolRecord, Option<Status>, &str)> = vec![
            (rec(PoolState::Armed, 0, Role::PRIMARY), None, ""),
            (
                paused(PoolState::Armed, 0, NOW + 60_000),
                Some(Status::Warning),
                "by alice: kernel upgrade; no failover until then",
            ),
            (
                paused(PoolState::Armed, 3, NOW + 60_000),
                Some(Status::Warning),
                "it fails over when the pause ends",
            ),
            (
                paused(PoolState::FailedOver, 3, NOW + 60_000),
                Some(Status::Warning),
                "no failover until then",
            ),
            (paused(PoolState::Armed, 0, NOW), None, "ended: none"),
        ];
        for (r, status, words) in rows {
            let got = pause(&facts(&p, Some(&r), &[], &[]));
            assert_eq!(got.as_ref().map(|g| g.status), status, "{words}: {got:?}");
            if let Some(g) = got {
                assert!(g.message.contains(words), "{}", g.message);
                assert!(g.message.starts_with("paused until "), "{}", g.message);
                assert!(g.hint.contains("deadpool resume db"), "{}", g.hint);
            }
        }
        // Failures counting while paused: the hint says it will not fail over.
        let counting = pool_state(&facts(
            &p,
            Some(&paused(PoolState::Armed, 2, NOW + 60_000)),
            &[],
            &[],
        ))
        .unwrap();
        assert!(counting.hint.contains("paused"), "{}", counting.hint);
        // A pool that confirms by time has no count to reach: any failing check means it
        // fails over once the pause ends and the outage is confirmed, and it says so in time.
        let by_time = Pool {
            down_for: Some(Duration::from_secs(2)),
            ..p
        };
        // (failures, words of the pause's message, or none for no note)
        for (failures, note) in [
            (0, None),
            (
                1,
                Some(
                    "failed 1 check(s) in a row: after the pause it fails over once the active server is down for 2s",
                ),
            ),
            (5, Some("failed 5 check(s) in a row")),
        ] {
            let r = paused(PoolState::Armed, failures, NOW + 60_000);
            let got = pause(&facts(&by_time, Some(&r), &[], &[])).unwrap();
            assert_eq!(
                got.message.contains("after the pause"),
                note.is_some(),
                "{}",
                got.message
            );
            assert!(
                !got.message.contains("/3"),
                "no count threshold: {}",
                got.message
            );
            if let Some(words) = note {
                assert!(got.message.contains(words), "{}", got.message);
            }
            let state = pool_state(&facts(&by_time, Some(&r), &[], &[]));
            if failures > 0 {
                let hint = state.unwrap().hint;
                assert!(hint.contains("the pool is paused"), "{hint}");
            }
        }
    }

    #[test]
    fn server_status_table() {
        // (health, active, locked, status)
        let rows = [
            (None, true, false, Status::Unknown),
            (Some(Health::Up), true, false, Status::Ok),
            (Some(Health::Degraded), false, false, Status::Warning),
            (Some(Health::Down), true, false, Status::Warning),
            (Some(Health::Down), true, true, Status::Critical),
            (Some(Health::Down), false, true, Status::Warning),
        ];
        for (h, active, locked, status) in rows {
            assert_eq!(
                server_status(h, active, locked),
                status,
                "{h:?} {active} {locked}"
            );
        }
    }

    type ServerRow<'a> = (&'a PoolRecord, [MonitorRow; 2], Vec<(Status, &'a str)>);

    #[test]
    fn servers_table() {
        use Health::{Degraded, Down, Up};
        let p = pool();
        let armed = rec(PoolState::Armed, 0, Role::PRIMARY);
        let locked = rec(PoolState::FailedOver, 0, Role::SECONDARY);
        // (record, primary, secondary, expected (status, words) in order)
        let rows: Vec<ServerRow> = vec![
            (
                &armed,
                [
                    row(Role::PRIMARY, Up, Some(false)),
                    row(Role::SECONDARY, Up, Some(true)),
                ],
                vec![],
            ),
            (
                &armed,
                [
                    row(Role::PRIMARY, Down, None),
                    row(Role::SECONDARY, Down, None),
                ],
                vec![(Status::Critical, "both servers are down")],
            ),
            (
                &armed,
                [
                    row(Role::PRIMARY, Up, None),
                    row(Role::SECONDARY, Down, None),
                ],
                vec![(Status::Warning, "standby secondary (db2) is down")],
            ),
            (
                &locked,
                [
                    row(Role::PRIMARY, Up, Some(true)),
                    row(Role::SECONDARY, Down, None),
                ],
                vec![(Status::Critical, "is down and the pool is locked")],
            ),
            (
                &armed,
                [
                    row(Role::PRIMARY, Degraded, None),
                    row(Role::SECONDARY, Up, None),
                ],
                vec![(Status::Warning, "alive with a problem")],
            ),
            (
                &armed,
                [
                    row(Role::PRIMARY, Up, Some(false)),
                    row(Role::SECONDARY, Up, Some(false)),
                ],
                vec![(Status::Critical, "writable as is the active server")],
            ),
            (
                &locked,
                [
                    row(Role::PRIMARY, Up, Some(false)),
                    row(Role::SECONDARY, Up, Some(false)),
                ],
                vec![(Status::Critical, "writable while the pool is failed over")],
            ),
        ];
        for (r, m, expected) in rows {
            let got = servers(&facts(&p, Some(r), &m, &[]));
            let got: Vec<(Status, String)> =
                got.into_iter().map(|g| (g.status, g.message)).collect();
            assert_eq!(got.len(), expected.len(), "{got:?}");
            for ((s, msg), (want_s, words)) in got.iter().zip(&expected) {
                assert_eq!(s, want_s, "{msg}");
                assert!(msg.contains(words), "{msg}");
            }
        }
    }

    /// The split-brain finding in the server kind's own terms: PostgreSQL has no read-only
    /// switch that makes a second primary a standby again.
    #[test]
    fn split_brain_words_by_server_kind() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pools")).unwrap();
        std::fs::write(dir.path().join("deadpool.toml"), "state_dir = \"state\"\n").unwrap();
        std::fs::write(
            dir.path().join("pools/pg.toml"),
            "primary = \"db1\"\nsecondary = \"db2\"\n[monitor]\ntype = \"postgres\"\n",
        )
        .unwrap();
        let pg = Config::load(dir.path()).unwrap().pools.remove(0);
        let locked = rec(PoolState::FailedOver, 0, Role::SECONDARY);
        let both = [
            row(Role::PRIMARY, Health::Up, Some(false)),
            row(Role::SECONDARY, Health::Up, Some(false)),
        ];
        let one = |p: &Pool| {
            let got = split_brain(
                &facts(p, Some(&locked), &both, &[]),
                Role::SECONDARY,
                &[Role::PRIMARY],
            );
            assert_eq!(got.len(), 1, "{got:?}");
            (got[0].message.clone(), got[0].hint.clone())
        };
        assert_eq!(
            one(&pg),
            (
                "split-brain risk: standby primary (db1) is out of recovery, writable while the pool is failed over; second server out of recovery (split brain): stop it (pg_ctl stop -m fast) and rebuild it as a standby".to_string(),
                "stop db1 now (pg_ctl stop -m fast), check which writes went where, then rebuild it as a standby of the active server (pg_basebackup, or pg_rewind with wal_log_hints/checksums)".to_string()
            )
        );
        assert_eq!(
            one(&pool()),
            (
                "split-brain risk: standby primary (db1) is writable while the pool is failed over; make it read-only (SET GLOBAL read_only = ON)".to_string(),
                "make db1 read-only now (MySQL: SET GLOBAL read_only = ON; Redis: REPLICAOF the active server), then check which writes went where".to_string()
            )
        );
        // The old primary a manual promote fenced softly: still writable, a warning that
        // says how little the fence holds, not a split brain.
        let mut soft = row(Role::PRIMARY, Health::Up, Some(false));
        soft.fenced_softly = true;
        let rows = [soft, row(Role::SECONDARY, Health::Up, Some(false))];
        let got = split_brain(
            &facts(&pg, Some(&locked), &rows, &[]),
            Role::SECONDARY,
            &[Role::PRIMARY],
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].status, Status::Warning);
        assert_eq!(
            got[0].message,
            "standby primary (db1) is out of recovery while the pool is failed over, fenced only softly (default_transaction_read_only = on): BEGIN READ WRITE still writes there"
        );
    }

    /// The hints of the replication findings in the server kind's own terms: PostgreSQL's
    /// standbys follow `primary_conninfo` and show it in `pg_stat_wal_receiver`; MySQL's and
    /// Redis's words are unchanged.
    #[test]
    fn replication_hints_by_server_kind() {
        use crate::monitor::Replica;
        let pool_of = |monitor: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join("pools")).unwrap();
            std::fs::write(dir.path().join("deadpool.toml"), "state_dir = \"state\"\n").unwrap();
            let pw = dir.path().join("pw");
            std::fs::write(&pw, "secret\n").unwrap();
            std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            std::fs::write(
                dir.path().join("pools/db.toml"),
                format!("primary = \"db1\"\nstandbys = [\"db2\", \"db3\"]\n[monitor]\n{monitor}\n"),
            )
            .unwrap();
            Config::load(dir.path()).unwrap().pools.remove(0)
        };
        let locked = rec(PoolState::FailedOver, 0, Role::SECONDARY);
        let standby = |source: &str, receiving: bool| MonitorRow {
            replica: Some(Replica {
                source: source.into(),
                receiving,
                received: None,
                applied: None,
                lag_seconds: None,
                problem: (!receiving).then(|| "not streaming".to_string()),
            }),
            ..row(Role::at(2), Health::Up, Some(true))
        };
        // The hints for a standby that replicates from db1, then one that does not receive.
        let hints = |p: &Pool| {
            [standby("db1", true), standby("db2", false)].map(|s| {
                let monitor = [row(Role::SECONDARY, Health::Up, Some(false)), s];
                let f = facts(p, Some(&locked), &monitor, &[]);
                let got = replication(&f, Role::SECONDARY, &[Role::PRIMARY, Role::at(2)]);
                assert_eq!(got.len(), 1, "{got:?}");
                got[0].hint.clone()
            })
        };
        let postgres = "type = \"postgres\"";
        let [wrong, silent] = hints(&pool_of(postgres));
        for (hint, words) in [
            (
                &wrong,
                "repoint db3 to db2: ALTER SYSTEM SET primary_conninfo = 'host=db2",
            ),
            (&wrong, "pg_stat_wal_receiver there shows sender_host db2"),
            (
                &silent,
                "SELECT status, sender_host FROM pg_stat_wal_receiver",
            ),
        ] {
            assert!(hint.contains(words), "{hint}");
        }
        let pg = pool_of(postgres)
            .monitor
            .kind
            .get()
            .replication_hints("db3", "db2");
        assert!(
            pg.not_candidate
                .contains("pg_last_wal_receive_lsn() on db3"),
            "{pg:?}"
        );
        for hint in [&wrong, &silent, &pg.not_candidate] {
            assert!(
                !hint.contains("SHOW REPLICA")
                    && !hint.contains("Redis")
                    && !hint.contains("MySQL"),
                "{hint}"
            );
        }
        for kind in [
            "type = \"mysql\"\npassword_file = \"pw\"",
            "type = \"redis\"",
            "type = \"tcp\"\nport = 3306",
        ] {
            let [wrong, silent] = hints(&pool_of(kind));
            assert_eq!(
                wrong,
                "repoint db3 to db2 (MySQL: CHANGE MASTER TO MASTER_HOST='db2', MASTER_USE_GTID=slave_pos; Redis: REPLICAOF db2 PORT)"
            );
            assert_eq!(
                silent,
                "fix db3's replication from db2 (SHOW REPLICA STATUS: the replication account, the network; Redis: masterauth): until then it serves stale reads and is no candidate"
            );
            assert_eq!(
                pool_of(kind)
                    .monitor
                    .kind
                    .get()
                    .replication_hints("db3", "db2")
                    .not_candidate,
                "find out why db3 stopped receiving from db2 (SHOW REPLICA STATUS; INFO replication); a failover now would pass it over"
            );
        }
    }

    #[test]
    fn degraded_hints_name_what_to_look_at() {
        let tls = "TLS: the server's certificate is not signed by ca.pem (unable to get local issuer certificate): put the CA that signed it in ca_file";
        assert!(degraded_hint(tls).contains("`tls` table"));
        assert!(degraded_hint("too many connections (1040)").contains("connection limits"));
        assert!(degraded_hint("access denied for user 'mon'").contains("credentials"));
    }

    #[test]
    fn readiness_table() {
        let p = pool();
        let armed = rec(PoolState::Armed, 0, Role::PRIMARY);
        let locked = [
            PoolState::FailedOver,
            PoolState::FailoverFailed,
            PoolState::Interrupted,
        ]
        .map(|state| rec(state, 0, Role::SECONDARY));
        let r = |status: Status, concern: Concern, age_s: i64| ReadinessRow {
            step_index: 0,
            step_name: "x".into(),
            host: "app1".into(),
            status,
            concern,
            message: "said so".into(),
            checked_at: NOW - age_s * 1000,
        };
        let (ready, direction) = (Concern::Readiness, Concern::Direction);
        // (record, rows, step status, problems' statuses)
        let mut rows: Vec<(&PoolRecord, Vec<ReadinessRow>, Status, Vec<Status>)> = vec![
            (&armed, vec![], Status::Unknown, vec![Status::Warning]),
            (&armed, vec![r(Status::Ok, ready, 1)], Status::Ok, vec![]),
            (
                &armed,
                vec![r(Status::Critical, ready, 1)],
                Status::Critical,
                vec![Status::Critical],
            ),
            (
                &armed,
                vec![r(Status::Critical, direction, 1)],
                Status::Critical,
                vec![Status::Critical],
            ),
            (
                &armed,
                vec![r(Status::Ok, ready, 120)],
                Status::Warning,
                vec![Status::Warning],
            ),
        ];
        for locked in &locked {
            rows.extend([
                (
                    locked,
                    vec![r(Status::Critical, ready, 1)],
                    Status::Critical,
                    vec![Status::Warning],
                ),
                (
                    locked,
                    vec![r(Status::Critical, direction, 1)],
                    Status::Critical,
                    vec![Status::Critical],
                ),
                (
                    locked,
                    vec![r(Status::Warning, direction, 1)],
                    Status::Warning,
                    vec![Status::Warning],
                ),
            ]);
        }
        for (rec, rd, status, problems) in rows {
            let (s, found) = readiness(&facts(&p, Some(rec), &[], &rd), 0);
            assert_eq!(s, status, "{found:?}");
            assert_eq!(
                found.iter().map(|f| f.status).collect::<Vec<_>>(),
                problems,
                "{:?}: {found:?}",
                rec.state
            );
            for (row, f) in rd.iter().zip(&found) {
                let waits = rec.state.is_locked() && row.concern == ready;
                assert_eq!(
                    f.message.ends_with("(pool locked: applies after reset)"),
                    waits,
                    "{f:?}"
                );
                let about_now = row.concern == direction && row.status == Status::Critical;
                assert_eq!(
                    f.hint.starts_with(
                        "fix it on app1 now: clients are sent elsewhere than the active server db"
                    ),
                    about_now,
                    "{f:?}"
                );
            }
        }
    }

    /// Three servers: a standby that replicates from another server than the active one, or
    /// does not receive from it, or forked off its timeline, is CRITICAL in every state; one
    /// that could not be promoted now is a WARNING in an armed pool.
    #[test]
    fn standbys_replication_table() {
        use crate::monitor::Replica;
        use crate::position::Position;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pools")).unwrap();
        std::fs::write(dir.path().join("deadpool.toml"), "state_dir = \"state\"\n").unwrap();
        std::fs::write(
            dir.path().join("pools/db.toml"),
            "primary = \"db1\"\nstandbys = [\"db2\", \"db3\"]\n[monitor]\ntype = \"tcp\"\nport = 3306\n",
        )
        .unwrap();
        let p = Config::load(dir.path()).unwrap().pools.remove(0);
        let replica = |source: &str, receiving: bool| Replica {
            source: source.into(),
            receiving,
            received: Some(Position::binlog("b.000001", 100, "")),
            applied: None,
            lag_seconds: Some(0),
            problem: (!receiving).then(|| "IO error: Access denied".to_string()),
        };
        let with = |role: Role, r: Option<Replica>| MonitorRow {
            replica: r,
            ..row(role, Health::Up, Some(true))
        };
        let mut behind = rec(PoolState::Armed, 0, Role::PRIMARY);
        behind.progress = crate::rules::track(
            &Default::default(),
            "db1",
            Some(&Position::binlog("b.000001", 100, "")),
            &[
                (
                    "db2",
                    Some("db1"),
                    Some(&Position::binlog("b.000001", 100, "")),
                ),
                (
                    "db3",
                    Some("db1"),
                    Some(&Position::binlog("b.000001", 100, "")),
                ),
            ],
            NOW - 3000,
            |a, b| a == b,
        );
        for at in [NOW - 2000, NOW - 1000] {
            let pos = Position::binlog("b.000001", (at - NOW + 4000) as u64 * 10, "");
            behind.progress = crate::rules::track(
                &behind.progress,
                "db1",
                Some(&pos),
                &[("db2", Some("db1"), Some(&pos))],
                at,
                |a, b| a == b,
            );
        }
        let armed = rec(PoolState::Armed, 0, Role::PRIMARY);
        let locked = rec(PoolState::FailedOver, 0, Role::SECONDARY);
        let primary = row(Role::PRIMARY, Health::Up, Some(false));
        let new_primary = row(Role::SECONDARY, Health::Up, Some(false));
        let standby2 = Role::at(2);
        let armed_on_2 = rec(PoolState::Armed, 0, Role::SECONDARY);
        // PostgreSQL after a failover: the new primary on timeline 2; a standby waiting on
        // timeline 1 did not follow it.
        let on_timeline_2 = MonitorRow {
            position: Position::lsn("0/5000000", Some(2)),
            ..new_primary.clone()
        };
        let wal = |timeline: Option<u32>, receiving: bool| Replica {
            source: "db2".into(),
            receiving,
            received: Position::lsn("0/6000000", timeline),
            applied: Position::lsn("0/6000000", None),
            lag_seconds: None,
            problem: (!receiving).then(|| "WAL receiver waiting, not streaming".to_string()),
        };
        // Its receiver gone: the timeline the rounds recorded for it.
        let mut tracked = locked.clone();
        tracked.progress = crate::rules::track(
            &Default::default(),
            "db2",
            Position::lsn("0/5000000", Some(2)).as_ref(),
            &[(
                "db3",
                Some("db2"),
                Position::lsn("0/6000000", Some(1)).as_ref(),
            )],
            NOW - 1000,
            |a, b| a == b,
        );
        let no_receiver = Replica {
            source: String::new(),
            received: Position::lsn("0/6000000", None),
            problem: Some("no WAL receiver: not connected to a primary".into()),
            ..wal(None, false)
        };
        type Row<'a> = (&'a PoolRecord, Vec<MonitorRow>, Option<(Status, &'a str)>);
        #[rustfmt::skip]
        let rows: Vec<Row> = vec![
            (&armed, vec![primary.clone(), with(Role::SECONDARY, Some(replica("db1", true))), with(standby2, Some(replica("db1", true)))], None),
            (&locked, vec![new_primary.clone(), with(standby2, Some(replica("db1", false)))],
                Some((Status::Critical, "standby standby2 (db3) replicates from db1, not from the active server db2"))),
            (&locked, vec![new_primary.clone(), with(standby2, Some(replica("db2", false)))],
                Some((Status::Critical, "does not receive from the active server db2: IO error: Access denied"))),
            (&locked, vec![new_primary.clone(), with(standby2, Some(replica("db2", true)))], None),
            (&behind, vec![primary, with(Role::SECONDARY, Some(replica("db1", true))), with(standby2, Some(replica("db1", true)))],
                Some((Status::Warning, "standby standby2 (db3) is not a candidate: it was last seen caught up 2.0s ago"))),
            (&locked, vec![on_timeline_2.clone(), with(standby2, Some(wal(Some(1), false)))],
                Some((Status::Critical, "standby standby2 (db3) forked off: on timeline 1 while the active server db2 is on timeline 2, and it does not stream (WAL receiver waiting, not streaming)"))),
            (&armed_on_2, vec![on_timeline_2.clone(), with(standby2, Some(wal(Some(1), false)))],
                Some((Status::Critical, "forked off: on timeline 1"))),
            (&locked, vec![on_timeline_2.clone(), with(standby2, Some(wal(Some(2), false)))],
                Some((Status::Critical, "does not receive from the active server db2: WAL receiver waiting"))),
            (&locked, vec![on_timeline_2.clone(), with(standby2, Some(wal(Some(1), true)))], None),
            (&locked, vec![new_primary.clone(), with(standby2, Some(wal(Some(1), false)))],
                Some((Status::Critical, "does not receive from the active server db2"))),
            (&tracked, vec![on_timeline_2.clone(), with(standby2, Some(no_receiver.clone()))],
                Some((Status::Critical, "forked off: on timeline 1 while the active server db2 is on timeline 2, and it does not stream (no WAL receiver"))),
            (&locked, vec![on_timeline_2, with(standby2, Some(no_receiver))], None),
        ];
        for (r, monitor, want) in rows {
            let f = facts(&p, Some(r), &monitor, &[]);
            let found: Vec<(Status, String)> = replication(
                &f,
                f.active(),
                &p.servers()
                    .others(f.active())
                    .map(|(r, _)| r)
                    .collect::<Vec<_>>(),
            )
            .into_iter()
            .map(|x| (x.status, x.message))
            .collect();
            match want {
                None => assert!(found.is_empty(), "{found:?}"),
                Some((status, words)) => {
                    assert_eq!(found.len(), 1, "{found:?}");
                    assert_eq!(found[0].0, status, "{found:?}");
                    assert!(found[0].1.contains(words), "{found:?}");
                }
            }
        }
    }
}
