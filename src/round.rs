//! One pool's round as a pure function: the checks, the pool's record, its settings and the
//! time go in ([`Facts`]); the decision of [`rules::decide`] and everything it changes come
//! out as data ([`Effects`]: the new record, the history events, the log lines, and what to
//! start in the background). `commands::tick` gathers the facts and applies the effects in
//! one place; nothing here does I/O. A detection round and each re-check of an outage being
//! confirmed ([`Stage`]) go through the same rules and the same effects.

use std::time::{Duration, Instant};

use crate::config::Pool;
use crate::log::Level;
use crate::model::EventKind;
use crate::model::{Health, PoolServers, PoolState, Role, Status};
use crate::monitor::{Check, Facts as ServerFacts, Replica};
use crate::position::Unit;
use crate::rules::Progress;
use crate::rules::{self, BlockReason, Decision, Input, Next};
use crate::state::{Event, MonitorRow, PoolRecord};
use crate::text::format_time;

/// The actor of every event a round writes.
const ACTOR: &str = "tick";

/// The settings of a pool that a round reads.
#[derive(Debug, Clone)]
pub struct PoolSettings<'a> {
    pub servers: PoolServers<'a>,
    pub never_promote: &'a [Role],
    pub max_promote_lag: Duration,
    pub confirm_from_replicas: bool,
    /// The kind of stream the monitor's positions belong to, for the words of a lag.
    pub unit: Unit,
    pub max_failed_checks: u32,
    pub down_for: Option<Duration>,
    /// When the pool fails over, in words ([`Pool::threshold`]).
    pub threshold: String,
}

impl<'a> PoolSettings<'a> {
    pub fn of(pool: &'a Pool) -> PoolSettings<'a> {
        PoolSettings {
            servers: pool.servers(),
            never_promote: &pool.never_promote,
            max_promote_lag: pool.max_promote_lag,
            confirm_from_replicas: pool.confirm_from_replicas,
            unit: pool.monitor.kind.unit(),
            max_failed_checks: pool.max_failed_checks,
            down_for: pool.down_for,
            threshold: pool.threshold(),
        }
    }

    pub fn address(&self, role: Role) -> &'a str {
        self.servers.address(role)
    }

    /// A new history event of `kind` for this pool, by the tick.
    fn event(&self, kind: EventKind) -> Event {
        kind.of(self.servers.name, ACTOR)
    }
}

/// What one check of a server said, as a round reads it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub role: Role,
    pub health: Health,
    pub message: &'a str,
    /// What a database monitor learned beyond up or down.
    pub facts: Option<&'a ServerFacts>,
}

impl<'a> Seen<'a> {
    pub fn of(role: Role, check: &'a Check) -> Seen<'a> {
        Seen {
            role,
            health: check.health,
            message: &check.message,
            facts: check.facts.as_ref(),
        }
    }

    /// What the server replicates from and how far, when it is a replica.
    pub fn replica(&self) -> Option<&'a Replica> {
        self.facts.and_then(|f| f.replication.as_ref())
    }

    /// Every check but the one of `active`, each with its role (`checks` in role order).
    pub fn standbys(checks: &'a [Check], active: Role) -> Vec<Seen<'a>> {
        (checks.iter().enumerate())
            .map(|(i, c)| Seen::of(Role::at(i), c))
            .filter(|s| s.role != active)
            .collect()
    }
}

/// Which kind of round this is.
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// A detection round: both servers were checked at once.
    Round {
        /// Every standby's check, in role order.
        standbys: &'a [Seen<'a>],
        /// The timer left a gap before this round ([`rules::timer_gap`]).
        gap: bool,
        /// When this round's checks started (the start of an outage to confirm).
        check_started: Instant,
        /// Where an interrupted chain stopped, as words after "was interrupted" (only read
        /// when the record says `failing_over`).
        interrupted: &'a str,
    },
    /// Time-based mode: one re-check of the active server while an outage is confirmed.
    Recheck {
        /// When the first failed check of the outage started.
        since: Instant,
        /// Down time up to this re-check's start (ms, monotonic clock).
        down_ms: i64,
        /// Down time up to this re-check's end, for the log line when it answered.
        checked_ms: i64,
        /// The standbys' checks, taken once the outage is confirmed ([`outage_confirmed`]).
        standbys: Option<&'a [Seen<'a>]>,
    },
}

/// Everything a round decides from.
#[derive(Clone)]
pub struct Facts<'a> {
    pub pool: PoolSettings<'a>,
    pub record: &'a PoolRecord,
    pub active: Seen<'a>,
    pub stage: Stage<'a>,
    /// When the checks ended (ms since the epoch).
    pub now: i64,
    /// Whether two names or addresses are one server (a replica's source against a pool's
    /// server; [`crate::net::same_host`] in a tick).
    pub same_host: &'a (dyn Fn(&str, &str) -> bool + Sync),
}

impl Facts<'_> {
    /// The rules' decision for this round's active server, with the standby a failover
    /// would promote (or why none may be).
    fn decide(
        &self,
        record: &PoolRecord,
        target: &Result<(Role, String), BlockReason>,
        detection: Detection,
    ) -> Decision {
        decide(
            &self.pool,
            record,
            self.active.health,
            target.as_ref().err().cloned(),
            detection,
            self.now,
        )
    }
}

/// What a round starts in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A failover attempt (second opinion, preflights, chain) toward `to`, with why.
    Failover { why: String, to: Role },
    /// Time-based mode: (go on) re-checking the active server, whose first failed check
    /// started at `since`. Down time is measured on the monotonic clock: a step of the wall
    /// clock during the re-checks (NTP, `date -s`) neither confirms an outage early nor
    /// holds the tick until the clock catches up.
    Confirm { since: Instant },
}

/// A line for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub level: Level,
    pub text: String,
}

/// What a round changes, to be applied in one place.
#[derive(Debug, Clone)]
pub struct Effects {
    /// The pool's record as the round leaves it (state, reason, count, check time).
    pub record: PoolRecord,
    pub events: Vec<Event>,
    pub notes: Vec<Note>,
    pub start: Option<Start>,
    /// A person is needed (an interrupted chain).
    pub attention: bool,
}

impl Effects {
    fn new(record: PoolRecord) -> Effects {
        Effects {
            record,
            events: Vec::new(),
            notes: Vec::new(),
            start: None,
            attention: false,
        }
    }

    fn note(&mut self, level: Level, text: String) {
        self.notes.push(Note { level, text });
    }
}

/// How the rules see the outage: a gap restarts the count; `confirmed` (time-based mode)
/// says the active server has been down for `down_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub gap: bool,
    pub confirmed: bool,
}

/// The decision of [`rules::decide`] for a pool's record, the active server's health and
/// why no standby may be promoted (if so).
pub fn decide(
    pool: &PoolSettings,
    rec: &PoolRecord,
    active: Health,
    standby_blocks: Option<BlockReason>,
    detection: Detection,
    now: i64,
) -> Decision {
    rules::decide(Input {
        state: rec.state,
        failures: rec.failures,
        max_failed_checks: pool.max_failed_checks,
        gap: detection.gap,
        active,
        standby_blocks,
        down_for: pool.down_for.map(|_| detection.confirmed),
        paused: rules::paused(rec.pause.as_ref().map(|p| p.until), now),
    })
}

/// Time-based mode: whether an outage down for `down_ms` is confirmed.
pub fn outage_confirmed(pool: &PoolSettings, down_ms: i64) -> bool {
    rules::outage_confirmed(
        0,
        down_ms,
        pool.down_for.unwrap_or_default().as_millis() as i64,
    )
}

/// One round for one pool: the decision and its effects.
pub fn round(facts: &Facts) -> Effects {
    match facts.stage {
        Stage::Round {
            standbys,
            gap,
            check_started,
            interrupted,
        } => detection_round(facts, standbys, gap, check_started, interrupted),
        Stage::Recheck {
            since,
            down_ms,
            checked_ms,
            standbys,
        } => recheck(facts, since, down_ms, checked_ms, standbys),
    }
}

/// What a detection round knows of the outage before it decides: whether the count
/// restarts, and whether it was confirmed already. A check recorded in the future means
/// the clock went back: the count restarts too. A blocked pool's outage was confirmed
/// already (it stays down or it re-arms); after a gap nothing confirmed before counts, and
/// it is confirmed anew, as a count restarts. `tick --dry-run` predicts with the same rule.
pub fn detection_of(record: &PoolRecord, timer_gap: bool, now: i64) -> Detection {
    let gap = timer_gap || record.last_check_at.is_some_and(|t| t > now);
    Detection {
        gap,
        confirmed: record.state == PoolState::Blocked && !gap,
    }
}

fn detection_round(
    facts: &Facts,
    standbys: &[Seen],
    gap: bool,
    check_started: Instant,
    interrupted: &str,
) -> Effects {
    let (pool, now) = (&facts.pool, facts.now);
    let mut fx = Effects::new(facts.record.clone());
    if let Some(ended) = expire_pause(pool, &mut fx.record, now) {
        fx.events.push(ended);
    }
    let detection = detection_of(&fx.record, gap, now);
    let (progress, target) = choice(facts, standbys);
    fx.record.progress = progress;
    let decision = facts.decide(&fx.record, &target, detection);
    fx.record.failures = decision.failures;
    fx.record.last_check_at = Some(now);
    let why = format!(
        "{} failed {} consecutive checks: {}",
        pool.address(fx.record.active),
        fx.record.failures,
        facts.active.message
    );
    follow_decision(
        &mut fx,
        pool,
        decision.next,
        with_choice(why, target.ok()),
        check_started,
        interrupted,
        now,
    );
    fx
}

fn recheck(
    facts: &Facts,
    since: Instant,
    down_ms: i64,
    checked_ms: i64,
    standbys: Option<&[Seen]>,
) -> Effects {
    let (pool, now) = (&facts.pool, facts.now);
    let mut fx = Effects::new(facts.record.clone());
    let role = fx.record.active;
    fx.record.last_check_at = Some(now);
    if facts.active.health.is_alive() {
        fx.record.failures = 0;
        fx.note(
            Level::Info,
            format!(
                "pool {}: {} answers again after {checked_ms} ms: no failover",
                pool.servers.name,
                pool.address(role)
            ),
        );
        return fx;
    }
    fx.record.failures = fx.record.failures.saturating_add(1);
    let Some(standbys) = standbys else {
        fx.start = Some(Start::Confirm { since });
        return fx;
    };
    let detection = Detection {
        gap: false,
        confirmed: true,
    };
    let (progress, target) = choice(facts, standbys);
    fx.record.progress = progress;
    let decision = facts.decide(&fx.record, &target, detection);
    let why = format!(
        "{} down for {:.1}s ({} checks): {}",
        pool.address(role),
        down_ms as f64 / 1000.0,
        fx.record.failures,
        facts.active.message
    );
    follow_decision(
        &mut fx,
        pool,
        decision.next,
        with_choice(why, target.ok()),
        since,
        "",
        now,
    );
    fx
}

/// The effects of what the rules said next; `(why, to)`: why a failover would start, and
/// toward which standby.
fn follow_decision(
    fx: &mut Effects,
    pool: &PoolSettings,
    next: Next,
    (why, to): (String, Option<Role>),
    since: Instant,
    interrupted: &str,
    now: i64,
) {
    match next {
        Next::Watch => {}
        Next::Paused => fx.note(
            Level::Info,
            format!(
                "pool {}: {} failed check(s) in a row ({}), but the pool is paused: no failover",
                pool.servers.name, fx.record.failures, pool.threshold
            ),
        ),
        Next::Rearm => {
            let msg = format!("{} answers again: armed", pool.address(fx.record.active));
            fx.events.push(pool.event(EventKind::Armed).message(msg));
            set_state(&mut fx.record, PoolState::Armed, "", now);
        }
        Next::Block(reason) => block(fx, pool, reason, Vec::new(), now),
        Next::Interrupt => {
            let reason = format!(
                "a failover toward {} ({}) was interrupted{interrupted}; deadpool does not resume a chain",
                fx.record.active.as_str(),
                pool.address(fx.record.active)
            );
            fx.note(
                Level::Error,
                format!("pool {}: {reason}", pool.servers.name),
            );
            fx.events.push(
                pool.event(EventKind::Interrupted)
                    .status(Status::Critical)
                    .message(reason.clone()),
            );
            set_state(&mut fx.record, PoolState::Interrupted, &reason, now);
            fx.attention = true;
        }
        Next::Failover => match to {
            Some(to) => fx.start = Some(Start::Failover { why, to }),
            // The rules block when no standby may be promoted; this keeps that true here.
            None => block(fx, pool, no_standby(), Vec::new(), now),
        },
        Next::Confirm => fx.start = Some(Start::Confirm { since }),
    }
}

/// A failover attempt refused before any change (the second opinion or a preflight): the
/// pool is blocked; `details` (the failed preflights' events) are written with the news.
pub fn refused(
    pool: &PoolSettings,
    record: PoolRecord,
    reason: BlockReason,
    details: Vec<Event>,
    now: i64,
) -> Effects {
    let mut fx = Effects::new(record);
    block(&mut fx, pool, reason, details, now);
    fx
}

fn set_state(rec: &mut PoolRecord, to: PoolState, reason: &str, now: i64) {
    if rec.state != to {
        rec.state_since = now;
    }
    rec.state = to;
    rec.reason = reason.to_string();
    rec.reason_kind = String::new();
}

/// Blocked: nothing changed. History events exist only when the reason is news in kind
/// ([`rules::block_is_news`]), so a pool that stays blocked for days does not grow the
/// database; the reason's text is kept up to date for the report.
fn block(
    fx: &mut Effects,
    pool: &PoolSettings,
    reason: BlockReason,
    details: Vec<Event>,
    now: i64,
) {
    let rec = &mut fx.record;
    if rules::block_is_news(rec.state, &rec.reason_kind, &reason) {
        fx.notes.push(Note {
            level: Level::Error,
            text: format!(
                "pool {}: failover blocked: {}",
                pool.servers.name, reason.text
            ),
        });
        fx.events.push(
            pool.event(EventKind::Blocked)
                .status(Status::Critical)
                .message(reason.text.clone()),
        );
        fx.events.extend(details);
    }
    if rec.state != PoolState::Blocked {
        rec.state_since = now;
    }
    rec.state = PoolState::Blocked;
    rec.reason = reason.text;
    rec.reason_kind = reason.kind;
}

/// A pause whose end has passed: it is dropped from the record, and the returned event
/// records its end.
pub fn expire_pause(pool: &PoolSettings, rec: &mut PoolRecord, now: i64) -> Option<Event> {
    let p = rec.pause.as_ref()?;
    if rules::paused(Some(p.until), now) {
        return None;
    }
    let reason = if p.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", p.reason)
    };
    let message = format!(
        "the pause by {} ended at {}{reason}",
        p.by,
        format_time(p.until)
    );
    rec.pause = None;
    Some(pool.event(EventKind::PauseExpired).message(message))
}

/// The check of the active server, from every server's checks in role order.
pub fn active_check(checks: &[Check], active: Role) -> &Check {
    &checks[active.index()]
}

/// Monitor rows for some servers' checks.
pub fn monitor_rows_for(checks: &[(Role, &Check)], at: i64) -> Vec<MonitorRow> {
    checks
        .iter()
        .map(|(role, c)| MonitorRow {
            role: *role,
            health: c.health,
            message: c.message.clone(),
            checked_at: at,
            duration_ms: c.duration.as_millis() as i64,
            read_only: c.facts.as_ref().and_then(|f| f.read_only),
            replica: c.facts.as_ref().and_then(|f| f.replication.clone()),
            position: c.facts.as_ref().and_then(|f| f.position.clone()),
            durability: c.facts.as_ref().and_then(|f| f.durability.clone()),
            fenced_softly: c.facts.as_ref().is_some_and(|f| f.fenced_softly),
        })
        .collect()
}

/// Monitor rows for every server's checks (in role order).
pub fn monitor_rows(checks: &[Check], at: i64) -> Vec<MonitorRow> {
    let with_roles: Vec<(Role, &Check)> = (checks.iter().enumerate())
        .map(|(i, c)| (Role::at(i), c))
        .collect();
    monitor_rows_for(&with_roles, at)
}

/// The standby a failover would promote, or why none may be (the replicas' vote first,
/// when `confirm_from_replicas` asks for it). `progress`: what the pool knows of the
/// positions, this round's included. Ok carries why each other standby was passed over.
fn target(
    facts: &Facts,
    progress: &Progress,
    standbys: &[Seen],
) -> Result<(Role, String), BlockReason> {
    let pool = &facts.pool;
    let failed = pool.address(facts.record.active);
    let same_host = |a: &str, b: &str| (facts.same_host)(a, b);
    if pool.confirm_from_replicas {
        let links: Vec<(&str, Option<&str>, Option<bool>)> = standbys
            .iter()
            .map(|s| {
                let replica = s.replica();
                (
                    pool.address(s.role),
                    replica.and_then(|r| r.named_source()),
                    replica.map(|r| r.receiving),
                )
            })
            .collect();
        if let Some(vote) = rules::replicas_vote(&links, failed, same_host) {
            return Err(vote);
        }
    }
    let candidates: Vec<rules::Standby> = standbys
        .iter()
        .map(|s| {
            let replica = s.replica();
            rules::Standby {
                label: pool.address(s.role),
                address: pool.address(s.role),
                answers: s.health.is_alive(),
                down_message: s.message,
                source: replica.and_then(|r| r.named_source()),
                is_replica: s.facts.map(|f| f.replication.is_some()),
                never_promote: pool.never_promote.contains(&s.role),
                received: replica.and_then(|r| r.received.as_ref()),
            }
        })
        .collect();
    let lag_ms = pool.max_promote_lag.as_millis() as i64;
    let choice = rules::candidate(&candidates, failed, same_host, progress, lag_ms, pool.unit)?;
    let passed: Vec<&str> = choice.passed_over.iter().map(|(_, w)| w.as_str()).collect();
    Ok((standbys[choice.index].role, passed.join("; ")))
}

/// This round's positions, and the standby a failover would promote (or why none may
/// be). The choice is made only when the active server failed this round: only then can it
/// start a failover.
pub fn choice(facts: &Facts, standbys: &[Seen]) -> (Progress, Result<(Role, String), BlockReason>) {
    let progress = progress_after(facts, standbys);
    let target = if facts.active.health.is_alive() {
        Err(BlockReason::new(
            "active_answers",
            "the active server answers",
        ))
    } else {
        target(facts, &progress, standbys)
    };
    (progress, target)
}

/// Whether a person's `promote` toward `to` keeps the data-safety rule while the active
/// server is down: `to`, checked now (`check`), would be an eligible candidate. `Err`: why
/// it is not (it is passed over for that; `promote --force` goes past it).
pub fn promote_is_safe(
    pool: &PoolSettings,
    rec: &PoolRecord,
    to: Role,
    check: &Check,
    same_host: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<(), BlockReason> {
    let seen = Seen::of(to, check);
    let replica = seen.replica();
    let address = pool.address(to);
    let tracked = [(
        address,
        replica.and_then(|r| r.named_source()),
        replica.and_then(|r| r.received.as_ref()),
    )];
    let failed = pool.address(rec.active);
    let progress = rules::track(
        &rec.progress,
        failed,
        None,
        &tracked,
        rec.last_check_at.unwrap_or(0),
        same_host,
    );
    let standby = rules::Standby {
        label: address,
        address,
        answers: seen.health.is_alive(),
        down_message: seen.message,
        source: replica.and_then(|r| r.named_source()),
        is_replica: seen.facts.map(|f| f.replication.is_some()),
        never_promote: pool.never_promote.contains(&to),
        received: replica.and_then(|r| r.received.as_ref()),
    };
    let lag_ms = pool.max_promote_lag.as_millis() as i64;
    rules::candidate(&[standby], failed, same_host, &progress, lag_ms, pool.unit).map(|_| ())
}

/// The standby a failover would promote were the active server to fail now (for `tick
/// --dry-run`'s plan of a healthy pool), or why none may be.
pub fn would_choose(facts: &Facts, standbys: &[Seen]) -> Result<(Role, String), BlockReason> {
    // As if the active server failed now: its position of this round is no sample, so a
    // streaming standby is measured against the last round's, as at an outage.
    let mut failed = facts.clone();
    failed.active.health = Health::Down;
    target(&failed, &progress_after(&failed, standbys), standbys)
}

/// Why a failover starts, with the standby chosen and why the others were passed over.
fn with_choice(why: String, target: Option<(Role, String)>) -> (String, Option<Role>) {
    match target {
        Some((to, passed)) if !passed.is_empty() => {
            (format!("{why}; passed over: {passed}"), Some(to))
        }
        Some((to, _)) => (why, Some(to)),
        None => (why, None),
    }
}

/// This round's positions added to what the pool knew: the active server's own position
/// when it answers, each standby's received position and source.
fn progress_after(facts: &Facts, standbys: &[Seen]) -> Progress {
    let pool = &facts.pool;
    let active = facts.record.active;
    let primary_position = (facts.active.health.is_alive())
        .then(|| facts.active.facts.and_then(|f| f.position.as_ref()))
        .flatten();
    let seen: Vec<rules::Seen> = standbys
        .iter()
        .map(|s| {
            let replica = s.replica();
            (
                pool.address(s.role),
                replica.and_then(|r| r.named_source()),
                replica.and_then(|r| r.received.as_ref()),
            )
        })
        .collect();
    let mut progress = rules::track(
        &facts.record.progress,
        pool.address(active),
        primary_position,
        &seen,
        facts.now,
        |a, b| (facts.same_host)(a, b),
    );
    rules::note_outage(&mut progress, facts.active.health.is_alive(), facts.now);
    progress
}

/// A pair's one standby is down too.
fn no_standby() -> BlockReason {
    BlockReason::new(
        "standby_down",
        "the active server is down and the standby is down too",
    )
}

/// What a round decided for one pool, for the tick to start in the background.
#[derive(Debug, Default)]
pub struct Plan {
    /// A failover attempt or an outage to confirm, from the record as the round left it.
    pub start: Option<(PoolRecord, Start)>,
    /// The readiness self-checks are due ([`rules::readiness_due`]).
    pub readiness: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Pause;

    const NOW: i64 = 1_000_000;
    static SERVERS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    fn settings(down_for: Option<Duration>) -> PoolSettings<'static> {
        PoolSettings {
            servers: PoolServers {
                name: "db",
                servers: SERVERS.get_or_init(|| vec!["10.0.0.1".into(), "10.0.0.2".into()]),
            },
            never_promote: &[],
            max_promote_lag: Duration::ZERO,
            confirm_from_replicas: false,
            unit: Unit::Binlog,
            max_failed_checks: 3,
            down_for,
            threshold: "after 3 failed checks".to_string(),
        }
    }

    /// A record; a blocked one was blocked because its standby was down.
    fn record(state: PoolState, failures: u32) -> PoolRecord {
        let reason_kind = match state {
            PoolState::Blocked => "standby_down".to_string(),
            _ => String::new(),
        };
        PoolRecord {
            state,
            failures,
            reason_kind,
            ..PoolRecord::new("db", 0)
        }
    }

    fn seen(health: Health) -> Seen<'static> {
        Seen {
            role: Role::PRIMARY,
            health,
            message: "said so",
            facts: None,
        }
    }

    fn standby(health: Health) -> Seen<'static> {
        Seen {
            role: Role::SECONDARY,
            ..seen(health)
        }
    }

    /// A detection round with these healths.
    fn detect(rec: &PoolRecord, active: Health, standby_health: Health, gap: bool) -> Effects {
        let facts = Facts {
            pool: settings(None),
            record: rec,
            active: seen(active),
            stage: Stage::Round {
                standbys: &[standby(standby_health)],
                gap,
                check_started: Instant::now(),
                interrupted: " during step `vip`",
            },
            now: NOW,
            same_host: &|a, b| a == b,
        };
        round(&facts)
    }

    fn kinds(fx: &Effects) -> Vec<&str> {
        fx.events.iter().map(|e| e.event.as_str()).collect()
    }

    fn started(fx: &Effects) -> &'static str {
        match fx.start {
            None => "nothing",
            Some(Start::Failover { .. }) => "failover",
            Some(Start::Confirm { .. }) => "confirm",
        }
    }

    /// One row of [`detection_round_table`]: the record before, both servers' health and
    /// the gap; the record after, the events written and what starts.
    type DetectionRow = (
        (PoolState, u32),
        (Health, Health, bool),
        (PoolState, u32),
        &'static [&'static str],
        &'static str,
        &'static str,
    );

    /// Whether the count restarts and whether a blocked pool's outage still counts as
    /// confirmed, for a tick and for `tick --dry-run` alike.
    #[test]
    fn detection_before_a_round() {
        let blocked = PoolRecord {
            state: PoolState::Blocked,
            last_check_at: Some(1_000),
            ..PoolRecord::new("db", 0)
        };
        // (record, timer gap, now, gap, confirmed)
        let rows = [
            (&blocked, false, 2_000, false, true),
            (&blocked, true, 2_000, true, false),
            // The last check is in the future: the clock went back.
            (&blocked, false, 500, true, false),
        ];
        for (rec, timer_gap, now, gap, confirmed) in rows {
            let d = detection_of(rec, timer_gap, now);
            assert_eq!((d.gap, d.confirmed), (gap, confirmed), "{timer_gap} {now}");
        }
        let armed = PoolRecord::new("db", 0);
        assert!(!detection_of(&armed, false, 2_000).confirmed);
    }

    #[test]
    fn detection_round_table() {
        use Health::{Down, Up};
        use PoolState::{Armed, Blocked, FailedOver, FailingOver, Interrupted};
        #[rustfmt::skip]
        let rows: &[DetectionRow] = &[
            ((Armed, 0), (Up, Up, false), (Armed, 0), &[], "nothing", "all well"),
            ((Armed, 1), (Down, Up, false), (Armed, 2), &[], "nothing", "counting"),
            ((Armed, 2), (Down, Up, false), (Armed, 3), &[], "failover", "failover at threshold"),
            ((Armed, 2), (Down, Down, false), (Blocked, 3), &["blocked"], "nothing", "block on standby down"),
            ((Blocked, 3), (Down, Down, false), (Blocked, 4), &[], "nothing", "still blocked: no news"),
            ((Blocked, 3), (Up, Down, false), (Armed, 0), &["armed"], "nothing", "rearm: answers again"),
            ((Blocked, 3), (Down, Up, true), (Blocked, 1), &[], "nothing", "a gap restarts the count"),
            ((FailingOver, 0), (Up, Up, false), (Interrupted, 0), &["interrupted"], "nothing", "interrupted chain"),
            ((FailedOver, 0), (Down, Down, false), (FailedOver, 1), &[], "nothing", "locked: watch only"),
        ];
        for &((state, failures), (active, standby, gap), after, events, start, why) in rows {
            let rec = record(state, failures);
            let fx = detect(&rec, active, standby, gap);
            assert_eq!((fx.record.state, fx.record.failures), after, "{why}");
            assert_eq!(kinds(&fx), events, "{why}");
            assert_eq!(started(&fx), start, "{why}");
            assert_eq!(fx.record.last_check_at, Some(NOW), "{why}");
            assert_eq!(fx.attention, state == FailingOver, "{why}");
        }
    }

    #[test]
    fn effects_carry_reasons_and_messages() {
        let blocked = detect(
            &record(PoolState::Armed, 2),
            Health::Down,
            Health::Down,
            false,
        );
        assert_eq!(blocked.record.reason_kind, "standby_down");
        assert_eq!(blocked.record.state_since, NOW);
        assert_eq!(blocked.notes[0].level, Level::Error);

        let rearmed = detect(
            &record(PoolState::Blocked, 3),
            Health::Up,
            Health::Down,
            false,
        );
        assert_eq!(rearmed.events[0].message, "10.0.0.1 answers again: armed");
        assert_eq!(rearmed.record.reason, "");

        let failover = detect(
            &record(PoolState::Armed, 2),
            Health::Down,
            Health::Up,
            false,
        );
        let why = "10.0.0.1 failed 3 consecutive checks: said so";
        assert_eq!(
            failover.start,
            Some(Start::Failover {
                why: why.into(),
                to: Role::SECONDARY
            })
        );

        let interrupted = detect(
            &record(PoolState::FailingOver, 0),
            Health::Up,
            Health::Up,
            false,
        );
        assert!(
            interrupted
                .record
                .reason
                .contains("interrupted during step `vip`")
        );
    }

    #[test]
    fn a_pause_that_ended_is_recorded() {
        let mut rec = record(PoolState::Armed, 2);
        rec.pause = Some(Pause {
            until: NOW - 1,
            since: 0,
            by: "alice".into(),
            reason: "upgrade".into(),
        });
        let fx = detect(&rec, Health::Down, Health::Up, false);
        assert_eq!(kinds(&fx), ["pause_expired"]);
        assert!(fx.record.pause.is_none());
        assert_eq!(started(&fx), "failover", "the count reached the threshold");
    }

    #[test]
    fn recheck_table() {
        use Health::{Down, Up};
        let (standby_up, standby_down) = (Some(standby(Up)), Some(standby(Down)));
        // (active, standby once confirmed, state after, failures after, start, why)
        #[rustfmt::skip]
        let rows = [
            (Up, None, PoolState::Armed, 0, "nothing", "answers again: no failover"),
            (Down, None, PoolState::Armed, 2, "confirm", "not down long enough yet"),
            (Down, standby_up, PoolState::Armed, 2, "failover", "confirmed"),
            (Down, standby_down, PoolState::Blocked, 2, "nothing", "confirmed, standby down"),
        ];
        for (active, standby, after, count, start, why) in rows {
            let rec = record(PoolState::Armed, 1);
            let facts = Facts {
                pool: settings(Some(Duration::from_secs(10))),
                record: &rec,
                active: seen(active),
                stage: Stage::Recheck {
                    since: Instant::now(),
                    down_ms: 10_000,
                    checked_ms: 10_100,
                    standbys: standby.as_ref().map(std::slice::from_ref),
                },
                now: NOW,
                same_host: &|a, b| a == b,
            };
            let fx = round(&facts);
            assert_eq!(fx.record.state, after, "{why}");
            assert_eq!(fx.record.failures, count, "{why}");
            assert_eq!(started(&fx), start, "{why}");
        }
    }

    #[test]
    fn outage_confirmed_after_down_for() {
        let pool = settings(Some(Duration::from_secs(10)));
        assert!(!outage_confirmed(&pool, 9_999));
        assert!(outage_confirmed(&pool, 10_000));
    }
}
