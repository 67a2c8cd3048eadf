//! `deadpool tick`: check every pool, apply the decision rules ([`crate::round`], which
//! calls [`crate::rules`]), fail over where they say so ([`crate::failover`]), run the
//! readiness self-checks when due, and record the tick. Slow work (a failover attempt, a
//! readiness check) runs in the background while detection rounds go on every
//! `tick_interval` until it is done: detection never waits for other work.

mod dry_run;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::chain;
use crate::cli::TickArgs;
use crate::cluster_round;
use crate::config::{Config, Pool};
use crate::error::Outcome;
use crate::failover::{self, Attempt, Ended, Fence, SecondOpinion};
use crate::model::EventKind;
use crate::model::{PoolState, Role};
use crate::monitor;
use crate::orphans;
use crate::protocol::Force;
use crate::round::{self, Effects, Facts, Plan, PoolSettings, Seen, Stage, Start};
use crate::rules::{self, Round};
use crate::state::{Event, Lock, MonitorRow, PoolRecord, Retention, State, now_ms};

pub fn run(config: &Config, args: &TickArgs) -> Result<Outcome> {
    if args.dry_run {
        return dry_run::run(config, args.json);
    }
    let Some(_lock) = Lock::acquire(&config.state_dir, Duration::ZERO)? else {
        crate::info!(
            "{} holds the instance lock; this tick is skipped",
            Lock::holder(&config.state_dir)
        );
        return Ok(Outcome::Done);
    };
    let state = State::open(&config.state_dir)?;
    let configured: Vec<_> = config.pools.iter().map(Pool::servers).collect();
    state.note_servers(&configured)?;
    let orphans = state.orphans(&configured)?;
    for orphan in &orphans {
        crate::warn!("{}", orphan.message());
    }
    crate::children::take_over(&config.state_dir);
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let watch = Watch {
        config,
        state: &state,
        cluster: member.as_ref(),
        busy: config.pools.iter().map(|_| Busy::default()).collect(),
        held: (config.pools.iter())
            .map(|p| orphans::holding(&orphans, &p.name).map(|o| o.held_message(&p.name)))
            .collect(),
        attention: AtomicBool::new(false),
        started: (now_ms(), Instant::now()),
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
    /// Per pool, in config order: why it is held back by the lock of a pool no longer
    /// configured ([`orphans`]), if it is.
    held: Vec<Option<String>>,
    attention: AtomicBool,
    /// When the tick started (wall clock, monotonic): what the state records as the tick,
    /// with how long it has run, after each round and at its end.
    started: (i64, Instant),
}

/// Whether the tick ends after a round, or another round starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRound {
    NextRound,
    EndTick,
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
                    self.gap_found();
                }
                self.sync();
                for (index, plan) in self.round(gap) {
                    self.start(background, index, plan);
                }
                let took = clock.elapsed();
                self.after_round(started_at);
                previous = Some(Round {
                    started_at,
                    duration_ms: took.as_millis() as i64,
                });
                crate::debug!("round took {:.3}s", took.as_secs_f64());
                if self.wait(clock + interval) == AfterRound::EndTick {
                    return;
                }
            }
        });
    }

    /// A gap before this round: failure counts restart. Said louder when the timer's own
    /// period makes every tick a gap ([`crate::timer`]): then no pool ever fails over.
    fn gap_found(&self) {
        let timer = crate::timer::find(&self.config.dir);
        let fit = timer
            .as_ref()
            .map(|t| crate::timer::fit(t, self.config.tick_interval));
        if let Some(crate::timer::Fit::Never(why)) = fit {
            crate::error!("{why}");
            self.attention.store(true, Ordering::SeqCst);
            return;
        }
        crate::info!(
            "the previous round ended more than {} x tick_interval ago (a suspend, a stopped timer, a clock jump, or a timer that runs less often than that): failure counts restart",
            rules::GAP_INTERVALS
        );
    }

    /// Starts what a round planned for one pool in the background.
    fn start<'s>(&'s self, background: &'s std::thread::Scope<'s, '_>, index: usize, plan: Plan) {
        let pool = &self.config.pools[index];
        let busy = &self.busy[index];
        if let Some((rec, start)) = plan.start {
            busy.failover.store(true, Ordering::SeqCst);
            background.spawn(move || {
                let outcome = match start {
                    Start::Failover { why, to } => self.attempt(pool, rec, &why, to),
                    Start::Confirm { since } => self.confirm_outage(pool, rec, since),
                };
                if outcome != Outcome::Done {
                    self.attention.store(true, Ordering::SeqCst);
                }
                busy.failover.store(false, Ordering::SeqCst);
            });
        } else if plan.readiness && !busy.readiness_started.swap(true, Ordering::SeqCst) {
            busy.readiness.store(true, Ordering::SeqCst);
            background.spawn(move || {
                if let Err(e) = self.readiness(pool) {
                    crate::warn!("pool {}: readiness checks: {e:#}", pool.name);
                }
                busy.readiness.store(false, Ordering::SeqCst);
            });
        }
    }

    /// After each round: the tick recorded (its start, and how long it has run so far), the
    /// cluster told, the metrics written.
    fn after_round(&self, started_at: i64) {
        let (tick_started_at, clock) = self.started;
        let retention =
            Retention::per_round(self.config.history_retention, self.config.tick_interval);
        if let Err(e) = self
            .state
            .record_tick(tick_started_at, clock.elapsed(), retention)
        {
            crate::warn!("cannot record the tick: {e:#}");
        }
        if let Some(member) = self.cluster {
            cluster_round::after_round(member, self.config, started_at);
        }
        self.write_metrics();
    }

    /// The next round comes one interval after this one started (`next`), while anything
    /// is still running in the background; without background work, the tick ends.
    fn wait(&self, next: Instant) -> AfterRound {
        let background_after_round = self.any_busy();
        loop {
            if !self.any_busy() {
                let (tick_started_at, clock) = self.started;
                if let Err(e) = self.state.tick_ended(tick_started_at, clock.elapsed()) {
                    crate::warn!("cannot record the end of the tick: {e:#}");
                }
                // What the background work changed (a chain's end) is in the metrics
                // before the tick ends, not a tick later.
                if background_after_round {
                    self.write_metrics();
                }
                return AfterRound::EndTick;
            }
            if Instant::now() >= next {
                return AfterRound::NextRound;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// With `[cluster]`, at the start of each round: take or renew the leader lease, and
    /// load the state of every pool not failing over here from etcd.
    fn sync(&self) {
        if let Some(member) = self.cluster {
            let idle: Vec<&Pool> = (self.config.pools.iter().enumerate())
                .filter(|(i, _)| !self.busy[*i].failover.load(Ordering::SeqCst))
                .map(|(_, p)| p)
                .collect();
            cluster_round::sync(member, self.state, &idle);
        }
    }

    /// Records a pool's row (fenced in etcd first, with `[cluster]`), events and monitor rows.
    fn store(&self, rec: &PoolRecord, events: &[Event], rows: &[MonitorRow]) -> Result<()> {
        if let Some(member) = self.cluster {
            member.write_pool(rec, None)?;
        }
        self.state.save_tick(rec, events, rows)
    }

    /// The one place a round's effects are applied: the log lines, the tick's need of a
    /// person, and the pool's row with its events and monitor rows.
    fn apply(&self, effects: &Effects, rows: &[MonitorRow]) -> Result<()> {
        for note in &effects.notes {
            crate::log::write(note.level, format_args!("{}", note.text));
        }
        if effects.attention {
            self.attention.store(true, Ordering::SeqCst);
        }
        self.store(&effects.record, &effects.events, rows)
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
                .map(|(i, pool)| {
                    let held = self.held[i].as_deref();
                    (i, s.spawn(move || self.check_pool(pool, held, gap)))
                })
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

    /// One pool in one round: check both servers, decide ([`round::round`]), record. A
    /// pool `held` back by an orphaned lock is checked and recorded, never decided on.
    fn check_pool(&self, pool: &Pool, held: Option<&str>, gap: bool) -> Result<Plan> {
        if self
            .cluster
            .is_some_and(|m| !m.is_leader() || m.chain_elsewhere(&pool.name))
        {
            return cluster_round::follow(self.state, self.config, pool);
        }
        if let Some(why) = held {
            let checks = monitor::check_all(pool);
            self.state
                .save_monitor(&pool.name, &round::monitor_rows(&checks, now_ms()))?;
            crate::error!("pool {}: {why}", pool.name);
            self.attention.store(true, Ordering::SeqCst);
            return Ok(Plan::default());
        }
        let rec = self
            .state
            .pool(&pool.name)?
            .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
        let check_started = Instant::now();
        let checks = monitor::check_all(pool);
        let checked_at = now_ms();
        let rows = round::monitor_rows(&checks, checked_at);
        let active = round::active_check(&checks, rec.active);
        let standbys = Seen::standbys(&checks, rec.active);
        let interrupted = if rec.state == PoolState::FailingOver {
            self.interrupted_during(pool)?
        } else {
            String::new()
        };
        let effects = round::round(&Facts {
            pool: PoolSettings::of(pool),
            record: &rec,
            active: Seen::of(rec.active, active),
            stage: Stage::Round {
                standbys: &standbys,
                gap,
                check_started,
                interrupted: &interrupted,
            },
            now: checked_at,
            same_host: &|a, b| crate::net::same_host(a, b, pool.monitor.timeout),
        });
        let after = &effects.record;
        let counting = after.state == PoolState::Armed && after.failures > 0;
        let readiness = rules::readiness_due(
            after.last_system_check_at,
            checked_at,
            self.config.system_check_interval.as_millis() as i64,
            counting,
        );
        self.apply(&effects, &rows)?;
        Ok(Plan {
            start: effects.start.map(|start| (effects.record, start)),
            readiness,
        })
    }

    /// Where the interrupted chain of `pool` stopped, in words after "was interrupted".
    fn interrupted_during(&self, pool: &Pool) -> Result<String> {
        Ok(
            match self.cluster.and_then(|m| m.step_in_progress(&pool.name)) {
                Some(step) => format!(" during step `{step}` (as etcd recorded it)"),
                None => last_started_step(self.state, pool)?,
            },
        )
    }

    /// Time-based mode, in the background: re-checks the active server every
    /// `recheck_interval` until it answers (the count restarts, no failover) or has been down
    /// for `down_for` since `since` (the failover attempt starts at once). Every re-check is
    /// recorded, so `report` shows the count growing.
    fn confirm_outage(&self, pool: &Pool, mut rec: PoolRecord, since: Instant) -> Outcome {
        let settings = PoolSettings::of(pool);
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
            let checked_ms = down_ms(Instant::now());
            let mut rows = round::monitor_rows_for(&[(role, &check)], at);
            let down = down_ms(check_started);
            let confirmed = !check.health.is_alive() && round::outage_confirmed(&settings, down);
            let others: Vec<Role> = pool.servers().others(role).map(|(r, _)| r).collect();
            let standby_checks = confirmed.then(|| monitor::check_some(pool, &others));
            if let Some(checks) = &standby_checks {
                let with_roles: Vec<(Role, &monitor::Check)> =
                    others.iter().copied().zip(checks.iter()).collect();
                rows.extend(round::monitor_rows_for(&with_roles, now_ms()));
            }
            let standbys: Option<Vec<Seen>> = standby_checks.as_ref().map(|checks| {
                (others.iter().zip(checks))
                    .map(|(r, c)| Seen::of(*r, c))
                    .collect()
            });
            let effects = round::round(&Facts {
                pool: settings.clone(),
                record: &rec,
                active: Seen::of(role, &check),
                stage: Stage::Recheck {
                    since,
                    down_ms: down,
                    checked_ms,
                    standbys: standbys.as_deref(),
                },
                now: at,
                same_host: &|a, b| crate::net::same_host(a, b, pool.monitor.timeout),
            });
            if let Err(e) = self.apply(&effects, &rows) {
                crate::error!("pool {}: {e:#}", pool.name);
                return Outcome::NeedsAttention;
            }
            rec = effects.record;
            match effects.start {
                Some(Start::Confirm { .. }) => {}
                Some(Start::Failover { why, to }) => return self.attempt(pool, rec, &why, to),
                None => return Outcome::Done,
            }
        }
    }

    /// A failover attempt in the background ([`failover::run`]); a refusal blocks the pool.
    /// Right after a chain, the readiness checks of the new orientation.
    fn attempt(&self, pool: &Pool, mut rec: PoolRecord, why: &str, to: Role) -> Outcome {
        let attempt = Attempt {
            config: self.config,
            pool,
            actor: "tick",
            why: why.to_string(),
            second_opinion: SecondOpinion::Ask,
            force: Force::No,
            fence: self.cluster.map_or(Fence::Local, Fence::Leader),
            progress: &chain::quiet,
        };
        let outcome = match failover::run(self.state, &attempt, &mut rec, to) {
            Ok(Ended::Refused { reason, details }) => {
                let settings = PoolSettings::of(pool);
                let effects = round::refused(&settings, rec, reason, details, now_ms());
                return match self.apply(&effects, &[]) {
                    Ok(()) => Outcome::Done,
                    Err(e) => {
                        crate::error!("pool {}: cannot record the block: {e:#}", pool.name);
                        Outcome::NeedsAttention
                    }
                };
            }
            // The chain's end in the log (the journal, under the timer), beside its start:
            // a failover at warning, a failed chain at error, naming the step that failed.
            Ok(Ended::Chain(PoolState::FailedOver)) => {
                crate::warn!("pool {}: {}", pool.name, rec.reason);
                Outcome::Done
            }
            Ok(Ended::Chain(_)) => {
                crate::error!("pool {}: {}", pool.name, rec.reason);
                Outcome::NeedsAttention
            }
            Err(e) => {
                crate::error!("pool {}: {e:#}", pool.name);
                Outcome::NeedsAttention
            }
        };
        if let Err(e) = self.readiness(pool) {
            crate::warn!(
                "pool {}: readiness checks after the chain: {e:#}",
                pool.name
            );
        }
        outcome
    }

    /// The readiness self-checks of one pool, beside detection; results that no longer
    /// describe the pool (its active server changed meanwhile) are dropped.
    fn readiness(&self, pool: &Pool) -> Result<()> {
        let Some(rec) = self.state.pool(&pool.name)? else {
            return Ok(());
        };
        let now = now_ms();
        let results = crate::readiness::check(pool, rec.active);
        let still = self.state.pool(&pool.name)?.map(|r| r.active);
        if still != Some(rec.active) {
            return Ok(());
        }
        let events = crate::readiness::save(self.state, pool, results, now)?;
        self.state.add_events(&events)?;
        self.state.readiness_checked(&pool.name, now)
    }
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
