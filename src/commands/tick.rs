//! `deadpool tick`: check every pool, apply the decision rules ([`crate::rules`]), fail over
//! where they say so, run the readiness self-checks when due, and record the tick. Slow work
//! (a failover attempt, a readiness check) runs in the background while detection rounds
//! go on every `tick_interval` until it is done: detection never waits for other work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::chain::{self, EventKind};
use crate::cli::{Role, TickArgs};
use crate::config::{Config, Pool};
use crate::error::Outcome;
use crate::model::{PoolState, Status};
use crate::monitor::{self, Check};
use crate::protocol::{self, Action};
use crate::rules::{self, BlockReason, Decision, Input, Next, Round};
use crate::ssh::Sessions;
use crate::state::{Event, Lock, MonitorRow, PoolRecord, ReadinessRow, State, now_ms};

pub fn run(config: &Config, args: &TickArgs) -> Result<Outcome> {
    if args.dry_run {
        return dry_run(config, args.json);
    }
    let Some(_lock) = Lock::acquire(&config.state_dir, Duration::ZERO)? else {
        crate::info!(
            "{} holds the instance lock; this tick is skipped",
            Lock::holder(&config.state_dir)
        );
        return Ok(Outcome::Done);
    };
    let state = State::open(&config.state_dir)?;
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let watch = Watch {
        config,
        state: &state,
        cluster: member.as_ref(),
        busy: config.pools.iter().map(|_| Busy::default()).collect(),
        attention: AtomicBool::new(false),
    };
    watch.run(state.last_tick()?.map(|t| Round {
        started_at: t.started_at,
        duration_ms: t.duration_ms,
    }));
    Ok(if watch.attention.load(Ordering::SeqCst) {
        Outcome::NeedsAttention
    } else {
        Outcome::Done
    })
}

/// What runs in the background for one pool while the rounds go on.
#[derive(Debug, Default)]
struct Busy {
    /// A failover attempt: second opinion, preflights and the chain.
    failover: AtomicBool,
    /// The readiness self-checks.
    readiness: AtomicBool,
    /// Readiness checks start at most once per tick: one that takes as long as
    /// `system_check_interval` would otherwise fall due again every round, and the tick
    /// would never end.
    readiness_started: AtomicBool,
}

/// One tick: detection rounds every `tick_interval` for as long as anything slow (a
/// failover attempt, a readiness check) is still running, so that detection never waits
/// for other work; each round checks every pool that is not failing over.
struct Watch<'a> {
    config: &'a Config,
    state: &'a State,
    /// With `[cluster]`: this member; only the leader decides and runs chains.
    cluster: Option<&'a crate::cluster::Member>,
    busy: Vec<Busy>,
    attention: AtomicBool,
}

/// What a round decided for one pool, for the tick to start in the background.
#[derive(Debug, Default)]
pub struct Plan {
    pub failover: Option<(PoolRecord, String)>,
    /// Time-based mode: confirm the outage whose first failed check started at this
    /// instant by re-checking. Down time is measured on the monotonic clock: a step of the
    /// wall clock during the re-checks (NTP, `date -s`) neither confirms an outage early nor
    /// holds the tick until the clock catches up.
    pub confirm: Option<(PoolRecord, Instant)>,
    pub readiness: bool,
}

impl Watch<'_> {
    fn run(&self, mut previous: Option<Round>) {
        let interval = self.config.tick_interval;
        std::thread::scope(|background| {
            loop {
                let started_at = now_ms();
                let clock = Instant::now();
                let gap = rules::timer_gap(previous, started_at, interval.as_millis() as i64);
                if gap {
                    crate::info!(
                        "the previous round ended more than {} intervals ago (a suspend, a stopped timer or a clock jump): failure counts restart",
                        rules::GAP_INTERVALS
                    );
                }
                self.sync();
                for (index, plan) in self.round(gap) {
                    let pool = &self.config.pools[index];
                    let busy = &self.busy[index];
                    if let Some((rec, why)) = plan.failover {
                        busy.failover.store(true, Ordering::SeqCst);
                        background.spawn(move || {
                            if self.attempt(pool, rec, &why) {
                                self.attention.store(true, Ordering::SeqCst);
                            }
                            busy.failover.store(false, Ordering::SeqCst);
                        });
                    } else if let Some((rec, since)) = plan.confirm {
                        busy.failover.store(true, Ordering::SeqCst);
                        background.spawn(move || {
                            if self.confirm_outage(pool, rec, since) {
                                self.attention.store(true, Ordering::SeqCst);
                            }
                            busy.failover.store(false, Ordering::SeqCst);
                        });
                    } else if plan.readiness && !busy.readiness_started.swap(true, Ordering::SeqCst)
                    {
                        busy.readiness.store(true, Ordering::SeqCst);
                        background.spawn(move || {
                            if let Err(e) = self.readiness(pool) {
                                crate::warn!("pool {}: readiness checks: {e:#}", pool.name);
                            }
                            busy.readiness.store(false, Ordering::SeqCst);
                        });
                    }
                }
                let took = clock.elapsed();
                if let Err(e) =
                    self.state
                        .record_tick(started_at, took, self.config.history_retention)
                {
                    crate::warn!("cannot record the tick: {e:#}");
                }
                if let Some(member) = self.cluster {
                    super::tick_cluster::after_round(member, self.config, started_at);
                }
                previous = Some(Round {
                    started_at,
                    duration_ms: took.as_millis() as i64,
                });
                self.write_metrics();
                let background_after_round = self.any_busy();
                crate::debug!("round took {:.3}s", took.as_secs_f64());
                // The next round comes one interval after this one started, while anything
                // is still running in the background; without background work, the tick ends.
                let next = clock + interval;
                loop {
                    if !self.any_busy() {
                        // What the background work changed (a chain's end) is in the
                        // metrics before the tick ends, not a tick later.
                        if background_after_round {
                            self.write_metrics();
                        }
                        return;
                    }
                    if Instant::now() >= next {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
    }

    /// With `[cluster]`, at the start of each round: take or renew the leader lease, and
    /// load the state of every pool not failing over here from etcd.
    fn sync(&self) {
        if let Some(member) = self.cluster {
            let idle: Vec<&Pool> = (self.config.pools.iter().enumerate())
                .filter(|(i, _)| !self.busy[*i].failover.load(Ordering::SeqCst))
                .map(|(_, p)| p)
                .collect();
            super::tick_cluster::sync(member, self.state, &idle);
        }
    }

    /// Records a pool's row (fenced in etcd first, with `[cluster]`), events and monitor rows.
    fn store(&self, rec: &PoolRecord, events: &[Event], rows: &[MonitorRow]) -> Result<()> {
        if let Some(member) = self.cluster {
            member.write_pool(rec, None)?;
        }
        self.state.save_tick(rec, events, rows)
    }

    fn write_metrics(&self) {
        if let Some(path) = &self.config.prometheus_textfile
            && let Err(e) = write_textfile(self.config, self.state, path)
        {
            crate::warn!("cannot write the metrics file {}: {e:#}", path.display());
        }
    }

    fn any_busy(&self) -> bool {
        self.busy
            .iter()
            .any(|b| b.failover.load(Ordering::SeqCst) || b.readiness.load(Ordering::SeqCst))
    }

    /// Checks every pool that is not failing over, all at once, and applies the rules.
    fn round(&self, gap: bool) -> Vec<(usize, Plan)> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .config
                .pools
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.busy[*i].failover.load(Ordering::SeqCst))
                .map(|(i, pool)| (i, s.spawn(move || self.check_pool(pool, gap))))
                .collect();
            let mut plans = Vec::new();
            for (index, handle) in handles {
                let pool = &self.config.pools[index];
                let result = handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a pool's thread panicked")));
                match result {
                    Ok(plan) => plans.push((index, plan)),
                    Err(e) => {
                        crate::error!("pool {}: {e:#}", pool.name);
                        self.attention.store(true, Ordering::SeqCst);
                    }
                }
            }
            plans
        })
    }

    /// One pool in one round: check both servers, count, decide, record.
    fn check_pool(&self, pool: &Pool, gap: bool) -> Result<Plan> {
        if self
            .cluster
            .is_some_and(|m| !m.is_leader() || m.chain_elsewhere(&pool.name))
        {
            return super::tick_cluster::follow(self.state, self.config, pool);
        }
        let (config, state) = (self.config, self.state);
        let mut rec = state
            .pool(&pool.name)?
            .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
        let check_started = Instant::now();
        let checks = monitor::check_both(pool);
        let checked_at = now_ms();
        let rows = monitor_rows(&checks, checked_at);
        let (active, standby) = by_role(checks, rec.active);
        // A check recorded in the future: the clock went back, the count restarts too.
        let gap = gap || rec.last_check_at.is_some_and(|t| t > checked_at);
        let mut events: Vec<Event> = Vec::new();
        if let Some(ended) = super::pause::expire(pool, &mut rec, checked_at) {
            events.push(ended);
        }
        // A blocked pool's outage was confirmed already: it stays down or it re-arms. After a
        // gap nothing confirmed before counts: it is confirmed anew, as a count restarts.
        let confirmed = rec.state == PoolState::Blocked && !gap;
        let decision = decide(pool, &rec, &active, &standby, gap, confirmed, checked_at);
        rec.failures = decision.failures;
        rec.last_check_at = Some(checked_at);
        let mut plan = Plan::default();
        match decision.next {
            Next::Watch => {}
            Next::Paused => crate::info!(
                "pool {}: {} failed check(s) in a row ({}), but the pool is paused: no failover",
                pool.name,
                rec.failures,
                pool.threshold()
            ),
            Next::Rearm => {
                let msg = format!("{} answers again: armed", pool.address(rec.active));
                events.push(EventKind::Armed.of(&pool.name, "tick").message(msg));
                set_state(&mut rec, PoolState::Armed, "");
            }
            Next::Block(reason) => events.extend(block(pool, &mut rec, reason, Vec::new())),
            Next::Interrupt => {
                let during = match self.cluster.and_then(|m| m.step_in_progress(&pool.name)) {
                    Some(step) => format!(" during step `{step}` (as etcd recorded it)"),
                    None => last_started_step(state, pool)?,
                };
                let reason = format!(
                    "a failover toward {} ({}) was interrupted{during}; deadpool does not resume a chain",
                    rec.active.as_str(),
                    pool.address(rec.active)
                );
                crate::error!("pool {}: {reason}", pool.name);
                events.push(
                    EventKind::Interrupted
                        .of(&pool.name, "tick")
                        .status(Status::Critical)
                        .message(reason.clone()),
                );
                set_state(&mut rec, PoolState::Interrupted, &reason);
                self.attention.store(true, Ordering::SeqCst);
            }
            Next::Failover => {
                let why = format!(
                    "{} failed {} consecutive checks: {}",
                    pool.address(rec.active),
                    rec.failures,
                    active.message
                );
                plan.failover = Some((rec.clone(), why));
            }
            Next::Confirm => plan.confirm = Some((rec.clone(), check_started)),
        }
        let counting = rec.state == PoolState::Armed && rec.failures > 0;
        plan.readiness = rules::readiness_due(
            rec.last_system_check_at,
            checked_at,
            config.system_check_interval.as_millis() as i64,
            counting,
        );
        self.store(&rec, &events, &rows)?;
        Ok(plan)
    }

    /// Time-based mode, in the background: re-checks the active server every
    /// `recheck_interval` until it answers (the count restarts, no failover) or has been down
    /// for `down_for` since `since` (the failover attempt starts at once). Every re-check is
    /// recorded, so `report` shows the count growing. Returns whether a person is needed.
    fn confirm_outage(&self, pool: &Pool, mut rec: PoolRecord, since: Instant) -> bool {
        let down_for = pool.down_for.unwrap_or_default();
        let role = rec.active;
        // Milliseconds since the first failed check started, on the monotonic clock.
        let down_ms = |t: Instant| t.saturating_duration_since(since).as_millis() as i64;
        loop {
            let left = down_for.saturating_sub(since.elapsed());
            std::thread::sleep(pool.recheck_interval.min(left));
            // A failed check proves the server down when it started (its connection attempt
            // went unanswered from then on); a hung server's check ends only at the timeout,
            // when the server may be back. So down time runs from check start to check start.
            let check_started = Instant::now();
            let check = monitor::check(pool, role);
            let at = now_ms();
            rec.last_check_at = Some(at);
            let mut rows = monitor_rows_for(&[(role, &check)], at);
            if check.health.is_alive() {
                rec.failures = 0;
                crate::info!(
                    "pool {}: {} answers again after {} ms: no failover",
                    pool.name,
                    pool.address(role),
                    down_ms(Instant::now())
                );
                return self.save(&rec, &[], &rows);
            }
            rec.failures = rec.failures.saturating_add(1);
            if rules::outage_confirmed(0, down_ms(check_started), down_for.as_millis() as i64) {
                let standby = monitor::check(pool, role.other());
                rows.extend(monitor_rows_for(&[(role.other(), &standby)], now_ms()));
                let decision = decide(pool, &rec, &check, &standby, false, true, at);
                return match decision.next {
                    Next::Failover => {
                        let why = format!(
                            "{} down for {:.1}s ({} checks): {}",
                            pool.address(role),
                            down_ms(check_started) as f64 / 1000.0,
                            rec.failures,
                            check.message
                        );
                        if self.save(&rec, &[], &rows) {
                            return true;
                        }
                        self.attempt(pool, rec, &why)
                    }
                    Next::Block(reason) => {
                        let events = block(pool, &mut rec, reason, Vec::new());
                        self.save(&rec, &events, &rows)
                    }
                    _ => self.save(&rec, &[], &rows),
                };
            }
            if self.save(&rec, &[], &rows) {
                return true;
            }
        }
    }

    /// Records a pool's row, events and monitor rows; returns whether that failed (logged).
    fn save(&self, rec: &PoolRecord, events: &[Event], rows: &[MonitorRow]) -> bool {
        match self.store(rec, events, rows) {
            Ok(()) => false,
            Err(e) => {
                crate::error!("pool {}: {e:#}", rec.name);
                true
            }
        }
    }

    /// A failover attempt in the background: the second opinion, every preflight, then the
    /// chain. Returns whether a person is needed.
    fn attempt(&self, pool: &Pool, mut rec: PoolRecord, why: &str) -> bool {
        let state = self.state;
        let (from, to) = (rec.active, rec.active.other());
        // Every SSH login the chain needs is opened now, while the observers are asked.
        let sessions = Sessions::default();
        let logins = chain::logins(pool, from, to);
        let opinion = std::thread::scope(|s| {
            s.spawn(|| sessions.open_all(&logins, self.config.ssh.connect_timeout * 2));
            crate::opinion::ask(self.config, pool, from)
        });
        let opts = chain::Options {
            sessions: Some(&sessions),
            ..chain::Options::default()
        };
        let blocked = match opinion.as_ref().and_then(|o| o.blocks()) {
            Some(reason) => Some((reason, Vec::new())),
            None => {
                let (preflights, verdict) = chain::preflight(pool, from, to, opts);
                verdict.map(|r| (r, chain::preflight_events(pool, "tick", &preflights)))
            }
        };
        if let Some((reason, details)) = blocked {
            let events = block(pool, &mut rec, reason, details);
            if let Err(e) = self.store(&rec, &events, &[]) {
                crate::error!("pool {}: cannot record the block: {e:#}", pool.name);
                return true;
            }
            return false;
        }
        let mut why = why.to_string();
        if let Some(o) = &opinion {
            why.push_str(&format!("; second opinion: {}", o.describe()));
        }
        let run = chain::Run {
            actor: "tick",
            why: &why,
            force: false,
            sessions: Some(&sessions),
            progress: &chain::quiet,
            guard: self.cluster.map(|m| m as &(dyn crate::chain::Guard + Sync)),
        };
        let attention = match chain::execute(state, pool, &mut rec, to, &run) {
            Ok(end) => end != PoolState::FailedOver,
            Err(e) => {
                crate::error!("pool {}: {e:#}", pool.name);
                true
            }
        };
        // Right after a chain, the readiness of the new orientation.
        if let Err(e) = self.readiness(pool) {
            crate::warn!(
                "pool {}: readiness checks after the chain: {e:#}",
                pool.name
            );
        }
        attention
    }

    /// The readiness self-checks of one pool, beside detection; results that no longer
    /// describe the pool (its active server changed meanwhile) are dropped.
    fn readiness(&self, pool: &Pool) -> Result<()> {
        let Some(rec) = self.state.pool(&pool.name)? else {
            return Ok(());
        };
        let now = now_ms();
        let results = check_readiness(pool, rec.active);
        let still = self.state.pool(&pool.name)?.map(|r| r.active);
        if still != Some(rec.active) {
            return Ok(());
        }
        let events = save_readiness(self.state, pool, results, now)?;
        self.state.add_events(&events)?;
        self.state.readiness_checked(&pool.name, now)
    }
}

fn by_role(checks: [Check; 2], active: Role) -> (Check, Check) {
    let [primary, secondary] = checks;
    match active {
        Role::Primary => (primary, secondary),
        Role::Secondary => (secondary, primary),
    }
}

fn decide(
    pool: &Pool,
    rec: &PoolRecord,
    active: &Check,
    standby: &Check,
    gap: bool,
    confirmed: bool,
    now: i64,
) -> Decision {
    rules::decide(Input {
        state: rec.state,
        failures: rec.failures,
        max_failed_checks: pool.max_failed_checks,
        gap,
        active: active.health,
        standby: standby.health,
        down_for: pool.down_for.map(|_| confirmed),
        paused: rules::paused(rec.pause.as_ref().map(|p| p.until), now),
    })
}

fn set_state(rec: &mut PoolRecord, to: PoolState, reason: &str) {
    if rec.state != to {
        rec.state_since = now_ms();
    }
    rec.state = to;
    rec.reason = reason.to_string();
    rec.reason_kind = String::new();
}

/// Blocked: nothing changed. Returns the history events, which exist only when the reason
/// is news in kind ([`rules::block_is_news`]), so a pool that stays blocked for days does
/// not grow the database; the reason's text is kept up to date for the report.
fn block(
    pool: &Pool,
    rec: &mut PoolRecord,
    reason: BlockReason,
    details: Vec<Event>,
) -> Vec<Event> {
    let mut events = Vec::new();
    if rules::block_is_news(rec.state, &rec.reason_kind, &reason) {
        crate::error!("pool {}: failover blocked: {}", pool.name, reason.text);
        events.push(
            EventKind::Blocked
                .of(&pool.name, "tick")
                .status(Status::Critical)
                .message(reason.text.clone()),
        );
        events.extend(details);
    }
    if rec.state != PoolState::Blocked {
        rec.state_since = now_ms();
    }
    rec.state = PoolState::Blocked;
    rec.reason = reason.text;
    rec.reason_kind = reason.kind;
    events
}

fn last_started_step(state: &State, pool: &Pool) -> Result<String> {
    let recent = state.history(Some(&pool.name), 200)?;
    let step = recent
        .iter()
        .rev()
        .take_while(|e| e.event != EventKind::FailoverStarted)
        .find(|e| e.event == EventKind::StepStarted);
    Ok(match step {
        Some(e) => format!(" during step `{}`", e.step),
        None => " before its first step".to_string(),
    })
}

/// Monitor rows for some servers' checks.
fn monitor_rows_for(checks: &[(Role, &Check)], at: i64) -> Vec<MonitorRow> {
    checks
        .iter()
        .map(|(role, c)| MonitorRow {
            role: *role,
            health: c.health,
            message: c.message.clone(),
            checked_at: at,
            duration_ms: c.duration.as_millis() as i64,
            read_only: c.facts.as_ref().and_then(|f| f.read_only),
        })
        .collect()
}

pub fn monitor_rows(checks: &[Check; 2], at: i64) -> Vec<MonitorRow> {
    monitor_rows_for(
        &[(Role::Primary, &checks[0]), (Role::Secondary, &checks[1])],
        at,
    )
}

/// Runs every step's readiness check toward the standby, all at once: a hung client costs
/// one timeout, not one per step.
fn check_readiness(pool: &Pool, active: Role) -> Vec<Vec<protocol::HostResult>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..pool.steps.len())
            .map(|index| {
                s.spawn(move || {
                    let ctx = chain::context(pool, index, active, active.other(), false);
                    protocol::run(Action::Check, &ctx)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Runs the readiness checks and stores the results (for `reset`, in the foreground).
/// Returns a history event for each host whose status changed.
pub fn readiness(state: &State, pool: &Pool, active: Role, now: i64) -> Result<Vec<Event>> {
    save_readiness(state, pool, check_readiness(pool, active), now)
}

fn save_readiness(
    state: &State,
    pool: &Pool,
    results: Vec<Vec<protocol::HostResult>>,
    now: i64,
) -> Result<Vec<Event>> {
    let mut rows = Vec::new();
    for (index, hosts) in results.into_iter().enumerate() {
        for h in hosts {
            rows.push(ReadinessRow {
                step_index: index,
                step_name: pool.steps[index].name.clone(),
                host: h.host,
                status: h.status,
                message: h.message,
                checked_at: now,
            });
        }
    }
    let previous = state.save_readiness(&pool.name, &rows)?;
    let mut events = Vec::new();
    for row in &rows {
        let before = previous
            .iter()
            .find(|p| p.step_index == row.step_index && p.host == row.host)
            .map(|p| p.status);
        if before != Some(row.status) && !(before.is_none() && row.status == Status::Ok) {
            let msg = format!(
                "readiness {} -> {}: {}",
                before.map_or("new", Status::as_str),
                row.status.as_str(),
                row.message
            );
            events.push(
                EventKind::Readiness
                    .of(&pool.name, "tick")
                    .step(&row.step_name)
                    .host(&row.host)
                    .status(row.status)
                    .message(msg),
            );
        }
    }
    Ok(events)
}

/// `tick --dry-run`: everything a tick would look at and decide, and the exact chain it
/// would run, with every preflight; nothing is written anywhere. `--json`: the same as one
/// document (schema in the README).
fn dry_run(config: &Config, json: bool) -> Result<Outcome> {
    let state = State::open_read_only(&config.state_dir)?;
    let previous = match &state {
        Some(s) => s.last_tick()?,
        None => None,
    }
    .map(|t| Round {
        started_at: t.started_at,
        duration_ms: t.duration_ms,
    });
    let now = now_ms();
    let gap = rules::timer_gap(previous, now, config.tick_interval.as_millis() as i64);
    let mut pools = Vec::new();
    for pool in &config.pools {
        let rec = match &state {
            Some(s) => s.pool(&pool.name)?,
            None => None,
        }
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now));
        let checks = monitor::check_both(pool);
        let (active, standby) = by_role(checks, rec.active);
        let d = decide(
            pool,
            &rec,
            &active,
            &standby,
            gap,
            rec.state == PoolState::Blocked,
            now,
        );
        let pause = rec
            .pause
            .as_ref()
            .filter(|p| rules::paused(Some(p.until), now));
        let (decision, text) = match &d.next {
            Next::Watch if rec.state.is_locked() => {
                ("locked", "stay locked and keep watching".to_string())
            }
            Next::Watch => ("watch", "keep watching".to_string()),
            Next::Rearm => (
                "rearm",
                "re-arm the pool (the active server answers again)".to_string(),
            ),
            Next::Block(r) => ("block", format!("block the failover: {}", r.text)),
            Next::Interrupt => (
                "interrupt",
                "mark the interrupted failover as `interrupted`".to_string(),
            ),
            Next::Failover => (
                "failover",
                format!(
                    "fail over to {} ({}) if every preflight passes",
                    rec.active.other().as_str(),
                    pool.address(rec.active.other())
                ),
            ),
            Next::Confirm => (
                "confirm",
                format!(
                    "re-check the active server every {} until it answers or has been down for {}",
                    crate::config::format_duration(pool.recheck_interval),
                    crate::config::format_duration(pool.down_for.unwrap_or_default())
                ),
            ),
            Next::Paused => (
                "paused",
                format!(
                    "not fail over: the pool is paused until {}",
                    crate::text::format_time(pause.map_or(now, |p| p.until))
                ),
            ),
        };
        let server = |check: &Check, role: Role| DryServer {
            role: role.as_str(),
            address: pool.address(role).to_string(),
            health: check.health.as_str(),
            message: check.message.clone(),
        };
        pools.push(DryPool {
            name: pool.name.clone(),
            state: rec.state.as_str(),
            active: rec.active.as_str(),
            failures_before: rec.failures,
            failures_after: d.failures,
            max_failed_checks: pool.max_failed_checks,
            down_for_s: pool.down_for.map(|d| d.as_secs_f64()),
            threshold: pool.threshold(),
            pause: pause.cloned(),
            checks: [
                server(&active, rec.active),
                server(&standby, rec.active.other()),
            ],
            decision,
            decision_text: text,
            block_reason: match &d.next {
                Next::Block(r) => Some(r.text.clone()),
                _ => None,
            },
            second_opinion_from: pool
                .monitor
                .confirm_from
                .iter()
                .map(|h| h.name().to_string())
                .collect(),
            plan: plan_steps(pool, rec.active, rec.active.other()),
        });
    }
    if json {
        let doc = serde_json::json!({ "generated_at": now, "gap": gap, "pools": pools });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Outcome::Done);
    }
    let mut out = String::new();
    for p in &pools {
        let [active, standby] = &p.checks;
        let threshold = match p.down_for_s {
            Some(_) => format!(" (fails over {})", p.threshold),
            None => format!("/{}", p.max_failed_checks),
        };
        out.push_str(&format!(
            "pool {}: {}, active {} ({}), failures {} -> {}{threshold}\n",
            p.name, p.state, p.active, active.address, p.failures_before, p.failures_after,
        ));
        if let Some(pause) = &p.pause {
            out.push_str(&format!("  {}\n", crate::report::describe_pause(pause)));
        }
        out.push_str(&format!(
            "  active  {} {}: {}\n",
            active.address, active.health, active.message
        ));
        out.push_str(&format!(
            "  standby {} {}: {}\n",
            standby.address, standby.health, standby.message
        ));
        out.push_str(&format!("  this tick would {}\n", p.decision_text));
        if !p.second_opinion_from.is_empty() {
            out.push_str(&format!(
                "  at the threshold, a second opinion is asked of: {}\n",
                p.second_opinion_from.join(", ")
            ));
        }
        out.push_str(&p.plan.text());
    }
    print!("{out}");
    Ok(Outcome::Done)
}

/// One pool in `tick --dry-run`.
#[derive(Debug, serde::Serialize)]
struct DryPool {
    name: String,
    state: &'static str,
    active: &'static str,
    failures_before: u32,
    failures_after: u32,
    max_failed_checks: u32,
    /// Time-based mode: how long the active server must stay down; `null` when the pool
    /// counts failed checks.
    down_for_s: Option<f64>,
    /// When the pool fails over, in words.
    threshold: String,
    pause: Option<crate::state::Pause>,
    /// The active server's check, then the standby's.
    checks: [DryServer; 2],
    decision: &'static str,
    decision_text: String,
    block_reason: Option<String>,
    second_opinion_from: Vec<String>,
    plan: FailoverPlan,
}

#[derive(Debug, serde::Serialize)]
struct DryServer {
    role: &'static str,
    address: String,
    health: &'static str,
    message: String,
}

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
            let ctx = chain::context(pool, index, from, to, true);
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
                commands: protocol::protocol(step)
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

/// Writes the metrics next to the target and renames them over it, so node_exporter never
/// reads half a file. The file is 0644 whatever the umask (the unit's is 0077), since
/// node_exporter runs as another user; the temporary file is created afresh (never through
/// a symlink someone left in the directory).
fn write_textfile(config: &Config, state: &State, path: &std::path::Path) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let tree = crate::report::build(config, Some(state), None, now_ms())?;
    let text = crate::report::prometheus(&tree, crate::report::Exposition::Textfile);
    let tmp = path.with_extension("prom.tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
