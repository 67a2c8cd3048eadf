//! Running a pool's failover chain (SPEC 6, 2c-2e): every preflight before any change, then
//! `failing_over` committed, then each step's action in order, then the pool locked.
//! Shared by `tick` (automatic failover) and `promote` (by hand). Once the chain has
//! started, only its own rules stop it: a history or database write that fails is logged
//! and retried, never a reason to skip a step.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::config::{OnFailure, Pool, Step};
use crate::lost::{Input, NewFrom, NewPrimary, OldFrom, OldPrimary};
use crate::model::EventKind;
use crate::model::Role;
use crate::model::{PoolState, Status};
use crate::protocol::{self, Action, Context, Force, Held, HostResult};
use crate::rules::{self, AfterStep, BlockReason, HostVerdict};
use crate::ssh::Sessions;
use crate::state::{Event, PoolRecord, State, now_ms};

/// One step's preflight results, in chain order.
pub type Preflights = Vec<(usize, Vec<HostResult>)>;

/// How a preflight or a chain runs: a dry run (`--dry-run`), forced past an old primary that
/// answers with errors (`promote --force`), and with the failover's kept SSH sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub dry_run: bool,
    pub force: Force,
    pub sessions: Option<&'a Sessions>,
}

/// Runs every step's preflight, all at once and all of them even after a failure (the
/// report shows every problem), all finished before anything changes. Returns the results
/// in chain order and the verdict of [`rules::preflight`].
pub fn preflight(
    pool: &Pool,
    from: Role,
    to: Role,
    opts: Options,
) -> (Preflights, Option<BlockReason>) {
    let results: Preflights = std::thread::scope(|s| {
        let handles: Vec<_> = (0..pool.steps.len())
            .map(|index| {
                s.spawn(move || {
                    let ctx = Context {
                        force: opts.force,
                        sessions: opts.sessions,
                        dry_run: opts.dry_run,
                        ..context(pool, index, from, to)
                    };
                    protocol::run(Action::Preflight, &ctx)
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(index, h)| (index, h.join().unwrap_or_default()))
            .collect()
    });
    let verdicts: Vec<(&str, Vec<HostVerdict>)> = results
        .iter()
        .map(|(index, hosts)| {
            let v = hosts
                .iter()
                .map(|h| HostVerdict {
                    host: h.host.clone(),
                    status: h.status,
                    message: h.message.clone(),
                })
                .collect();
            (pool.steps[*index].name.as_str(), v)
        })
        .collect();
    let verdict = rules::preflight(&verdicts);
    (results, verdict)
}

pub fn context(pool: &Pool, index: usize, from: Role, to: Role) -> Context<'_> {
    Context {
        pool: pool.servers(),
        monitor_timeout: pool.monitor.timeout,
        step: &pool.steps[index],
        old_primary: pool.address(from),
        new_primary: pool.address(to),
        dry_run: false,
        force: Force::No,
        sessions: None,
        deadline: Instant::now() + pool.steps[index].timeout,
    }
}

/// Every SSH login the chain toward `to` will need (each host once per user), for
/// [`Sessions::open_all`] as soon as a failover is decided.
pub fn logins(pool: &Pool, from: Role, to: Role) -> Vec<(String, crate::settings::SshSettings)> {
    let mut all: Vec<(String, crate::settings::SshSettings)> = Vec::new();
    for index in 0..pool.steps.len() {
        let ctx = context(pool, index, from, to);
        for (host, ssh) in ctx.step.kind.get().logins(&ctx) {
            if !all
                .iter()
                .any(|(h, s)| *h == host && s.user == ssh.user && s.port == ssh.port)
            {
                all.push((host, ssh));
            }
        }
    }
    all
}

/// History events for a failed preflight: one per failing host.
pub fn preflight_events(pool: &Pool, actor: &str, preflights: &Preflights) -> Vec<Event> {
    let mut events = Vec::new();
    for (index, hosts) in preflights {
        for h in hosts.iter().filter(|h| h.status != Status::Ok) {
            events.push(
                EventKind::Preflight
                    .of(&pool.name, actor)
                    .step(&pool.steps[*index].name)
                    .host_result(h),
            );
        }
    }
    events
}

/// Writes a running chain's history. A write that fails (a full disk, a damaged file) is
/// logged and kept; every later write tries again with what is pending, and the end state
/// is retried until the disk allows it or [`Recorder::FINAL_RETRY`] has passed.
struct Recorder<'a> {
    state: &'a State,
    pool: &'a str,
    pending: Vec<Event>,
    /// With `[cluster]`: the chain's events also go to etcd.
    guard: Option<&'a (dyn Guard + Sync)>,
}

impl Recorder<'_> {
    const FINAL_RETRY: Duration = Duration::from_secs(120);

    fn add(&mut self, events: Vec<Event>) {
        if let Some(guard) = self.guard {
            guard.record(&events);
        }
        self.pending.extend(events);
        match self.state.add_events(&self.pending) {
            Ok(()) => self.pending.clear(),
            Err(e) => crate::warn!(
                "pool {}: cannot write {} history event(s) now, will retry: {e:#}",
                self.pool,
                self.pending.len()
            ),
        }
    }

    /// Writes the pool's row with everything pending; retried with a pause until it is on
    /// disk or the retry time has passed.
    fn finish(&mut self, rec: &PoolRecord, end: Event) -> Result<()> {
        if let Some(guard) = self.guard {
            guard.record(std::slice::from_ref(&end));
        }
        self.pending.push(end);
        let give_up = Instant::now() + Self::FINAL_RETRY;
        let mut logged = false;
        loop {
            match self.state.save_pool(rec, &self.pending) {
                Ok(()) => {
                    if logged {
                        crate::info!("pool {}: the chain's end state is written now", self.pool);
                    }
                    self.pending.clear();
                    return Ok(());
                }
                Err(e) if Instant::now() < give_up => {
                    if !logged {
                        crate::error!(
                            "pool {}: cannot write the chain's end state ({}), retrying: {e:#}",
                            self.pool,
                            rec.state.as_str()
                        );
                        logged = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// How a chain is being run: who asked and why, whether a person forces it past an old
/// primary that answers with errors, and where progress goes.
pub struct Run<'a> {
    /// The server being left (the active one when the attempt started).
    pub from: Role,
    pub actor: &'a str,
    pub why: &'a str,
    pub force: Force,
    /// The failover's kept SSH sessions (opened with [`Sessions::open_all`]).
    pub sessions: Option<&'a Sessions>,
    /// Called before each step and with each step's results, for a live display.
    pub progress: &'a (dyn Fn(Progress) + Sync),
    /// With `[cluster]`: proves before the commit and before each step that this member
    /// still leads (and records the step in etcd); a refusal stops the chain there.
    pub guard: Option<&'a (dyn Guard + Sync)>,
}

/// What must hold before a chain commits and before each of its steps starts.
pub trait Guard {
    /// `Ok` when the step (`None`: the commit of `failing_over`) may start; it records
    /// `rec` where the pool state lives.
    fn check(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()>;

    /// Keeps the chain's history events where every member sees them too (best effort).
    fn record(&self, _events: &[Event]) {}
}

impl std::fmt::Debug for Run<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("actor", &self.actor)
            .field("force", &self.force)
            .finish()
    }
}

/// What a running chain reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// Every preflight passed: the chain commits `failing_over` next.
    Committing,
    Started {
        index: usize,
        total: usize,
        name: &'a str,
        type_name: &'a str,
    },
    Finished {
        hosts: &'a [HostResult],
    },
}

/// No live display (ticks log to the journal instead).
pub fn quiet(_: Progress) {}

/// Runs the chain toward `to` after the preflights passed (SPEC 6, 2d-2e). `rec` is saved
/// as `failing_over` before the first action and as `failed_over` or `failover_failed` at
/// the end. Returns the end state. The only error before a change is a `failing_over` that
/// cannot be committed: then nothing ran.
pub fn execute(
    state: &State,
    pool: &Pool,
    rec: &mut PoolRecord,
    to: Role,
    run: &Run,
) -> Result<PoolState> {
    let clock = Instant::now();
    let first = commit(state, pool, rec, to, run)?;
    if let Some(guard) = run.guard {
        guard.record(std::slice::from_ref(&first));
    }
    let mut recorder = Recorder {
        state,
        pool: &pool.name,
        pending: Vec::new(),
        guard: run.guard,
    };
    let mut steps = Steps::default();
    for index in 0..pool.steps.len() {
        run_step(pool, rec, to, run, index, &mut steps, &mut recorder);
    }
    finish(pool, rec, to, run, &steps, clock, &mut recorder);
    Ok(rec.state)
}

/// Commits `failing_over` (proved by the guard first) before the first change: a crash
/// from here on is found as `interrupted`. Returns the chain's first event.
fn commit(state: &State, pool: &Pool, rec: &mut PoolRecord, to: Role, run: &Run) -> Result<Event> {
    let from = run.from;
    rec.state = PoolState::FailingOver;
    rec.active = to;
    rec.state_since = now_ms();
    rec.reason = format!(
        "failing over from {} to {}",
        pool.address(from),
        pool.address(to)
    );
    rec.reason_kind = String::new();
    let msg = format!(
        "failover started: {} ({}) -> {} ({}); {}",
        from.as_str(),
        pool.address(from),
        to.as_str(),
        pool.address(to),
        run.why
    );
    let first = EventKind::FailoverStarted
        .of(&pool.name, run.actor)
        .status(Status::Warning)
        .message(msg.clone());
    if let Some(guard) = run.guard {
        guard
            .check(rec, None)
            .map_err(|e| e.context("cannot prove this member leads the cluster; no step ran"))?;
    }
    state
        .save_pool(rec, std::slice::from_ref(&first))
        .map_err(|e| {
            e.context("cannot commit `failing_over` to the state database; no step ran")
        })?;
    crate::warn!("pool {}: {msg}", pool.name);
    Ok(first)
}

/// How the chain's steps went so far.
#[derive(Debug, Default)]
struct Steps<'a> {
    /// The step whose failure stopped the chain.
    aborted_by: Option<&'a str>,
    succeeded: Vec<bool>,
    failed: Vec<&'a str>,
    /// The first promoting step, once it ran or was skipped.
    promotion: Option<Promotion<'a>>,
}

/// What the chain's promoting step did to the new primary.
#[derive(Debug)]
struct Promotion<'a> {
    step: &'a str,
    /// It made the new primary writable.
    promoted: bool,
    /// What the new primary held then, as the step read it.
    held: Option<Held>,
}

impl<'a> Steps<'a> {
    /// Notes a promoting step's outcome (the first one only: it is the one that moved the
    /// service). `hosts`: its results, none when it did not run.
    fn note_promotion(&mut self, step: &'a Step, new_primary: &str, hosts: &[HostResult]) {
        if self.promotion.is_some() || !step.kind.get().promotes() {
            return;
        }
        let result = hosts.iter().find(|h| !h.aside && h.host == new_primary);
        self.promotion = Some(Promotion {
            step: &step.name,
            promoted: result.is_some_and(|h| h.status == Status::Ok || h.held.is_some()),
            held: result.and_then(|h| h.held.clone()),
        });
    }
}

/// One step: skipped after an abort, refused by the guard, or run and recorded.
fn run_step<'a>(
    pool: &'a Pool,
    rec: &PoolRecord,
    to: Role,
    run: &Run,
    index: usize,
    steps: &mut Steps<'a>,
    recorder: &mut Recorder,
) {
    let step = &pool.steps[index];
    let event = || EventKind::Step.of(&pool.name, run.actor).step(&step.name);
    let new_primary = pool.address(to);
    if let Some(failed) = steps.aborted_by {
        recorder.add(vec![event().status(Status::Unknown).message(format!(
            "skipped: step `{failed}` failed and stopped the chain"
        ))]);
        steps.succeeded.push(false);
        steps.note_promotion(step, new_primary, &[]);
        return;
    }
    if let Some(Err(e)) = run.guard.map(|g| g.check(rec, Some(&step.name))) {
        let why = format!("not started: this member cannot prove it still leads: {e:#}");
        crate::error!("pool {}: step `{}` {why}", pool.name, step.name);
        recorder.add(vec![event().status(Status::Critical).message(why)]);
        steps.succeeded.push(false);
        steps.failed.push(&step.name);
        steps.aborted_by = Some(&step.name);
        steps.note_promotion(step, new_primary, &[]);
        return;
    }
    recorder.add(vec![
        EventKind::StepStarted
            .of(&pool.name, run.actor)
            .step(&step.name)
            .message("started"),
    ]);
    (run.progress)(Progress::Started {
        index,
        total: pool.steps.len(),
        name: &step.name,
        type_name: step.type_name(),
    });
    let step_clock = Instant::now();
    let ctx = Context {
        force: run.force,
        sessions: run.sessions,
        ..context(pool, index, run.from, to)
    };
    let hosts = protocol::run(Action::Promote, &ctx);
    let took = step_clock.elapsed();
    steps.note_promotion(step, new_primary, &hosts);
    (run.progress)(Progress::Finished { hosts: &hosts });
    // No result at all is a failure; a result aside from the step's action is recorded
    // with its status but does not fail it.
    let ok = protocol::succeeded(&hosts);
    let mut events: Vec<Event> = hosts.iter().map(|h| event().host_result(h)).collect();
    if hosts.len() != 1 {
        // The whole step's time beside each host's, when it acted on several hosts.
        let beside: Vec<&str> = (hosts.iter())
            .filter(|h| h.aside && rules::fails_step(h.status))
            .map(|h| h.host.as_str())
            .collect();
        let message = if ok && !beside.is_empty() {
            format!(
                "step done on {} host(s): its own part succeeded; {} beside it needs a person",
                hosts.len(),
                beside.join(", ")
            )
        } else {
            format!("step done on {} host(s)", hosts.len())
        };
        let mut whole = event().status(protocol::worst(&hosts)).message(message);
        whole.duration_ms = Some(took.as_millis() as i64);
        events.push(whole);
    }
    recorder.add(events);
    crate::info!(
        "pool {}: step {} `{}`: {} in {:.2}s",
        pool.name,
        index + 1,
        step.name,
        if ok { "ok" } else { "FAILED" },
        took.as_secs_f64()
    );
    steps.succeeded.push(ok);
    if !ok {
        steps.failed.push(&step.name);
    }
    if rules::after_step(ok, step.on_failure == OnFailure::Abort) == AfterStep::Abort {
        steps.aborted_by = Some(&step.name);
    }
}

/// What [`crate::lost::assess`] compares at the chain's end: the old primary's newest
/// position from the rounds (when they tracked that primary), and what the new primary
/// held once writable as its promoting step read it; without a promoting step, what it
/// had received when the failover was decided. `rec` is still as the chain committed it.
fn loss_input(pool: &Pool, rec: &PoolRecord, from: Role, to: Role, steps: &Steps) -> Input {
    let (old, new) = (pool.address(from), pool.address(to));
    let progress = Some(&rec.progress).filter(|p| p.primary == old);
    let sample = progress.and_then(|p| p.samples.last());
    let received = (progress.and_then(|p| p.standbys.get(new))).and_then(|s| s.received.as_ref());
    let decided = |how: String| NewPrimary {
        address: new.to_string(),
        position: received.cloned(),
        from: NewFrom::Decision,
        how,
        timeline_before: received.and_then(|r| r.timeline),
    };
    let new_primary = match &steps.promotion {
        None => decided(String::new()),
        Some(p) if !p.promoted => NewPrimary {
            position: None,
            from: NewFrom::NotPromoted,
            ..decided(format!("step `{}` did not make {new} writable", p.step))
        },
        Some(Promotion {
            held: Some(held), ..
        }) => NewPrimary {
            position: Some(held.position.clone()),
            from: NewFrom::Promotion,
            ..decided(held.how.clone())
        },
        Some(p) => decided(format!(
            "step `{}` could not read it after the promotion",
            p.step
        )),
    };
    Input {
        unit: pool.monitor.kind.unit(),
        old: OldPrimary {
            address: old.to_string(),
            position: sample.map(|(_, p)| p.clone()),
            seen_at: sample.map(|(at, _)| *at),
            from: OldFrom::LastHealthyCheck,
        },
        new: new_primary,
        // Salvage of the old primary's binary log comes here once a step does it.
        salvaged: None,
        outage_at: progress.and_then(|p| p.down_since),
        started_at: rec.state_since,
    }
}

/// The chain's end: the pool locked in its end state, recorded (retried) with its event.
fn finish(
    pool: &Pool,
    rec: &mut PoolRecord,
    to: Role,
    run: &Run,
    steps: &Steps,
    clock: Instant,
    recorder: &mut Recorder,
) {
    let loss = crate::lost::assess(loss_input(pool, rec, run.from, to, steps));
    rec.state = rules::chain_end(&steps.succeeded);
    rec.state_since = now_ms();
    rec.failures = 0;
    let took = clock.elapsed().as_secs_f64();
    let target = format!("{} ({})", to.as_str(), pool.address(to));
    let lost = loss.clause();
    rec.reason = if steps.failed.is_empty() {
        format!("failed over to {target} in {took:.1}s; {lost}; locked until reset")
    } else {
        let failed: Vec<String> = steps.failed.iter().map(|s| format!("`{s}`")).collect();
        format!(
            "failover to {target} failed at step {}; {lost}; locked until reset",
            failed.join(", ")
        )
    };
    recorder.add(vec![EventKind::Lost.of(&pool.name, run.actor).loss(loss)]);
    let status = if steps.failed.is_empty() {
        Status::Warning
    } else {
        Status::Critical
    };
    let mut end = EventKind::End(rec.state)
        .of(&pool.name, run.actor)
        .status(status)
        .message(rec.reason.clone());
    end.duration_ms = Some(clock.elapsed().as_millis() as i64);
    if let Some(Err(e)) = run.guard.map(|g| g.check(rec, None)) {
        crate::error!(
            "pool {}: the chain ended {} but etcd could not record it: {e:#}; the next leader will mark it interrupted",
            pool.name,
            rec.state.as_str()
        );
    }
    if let Err(e) = recorder.finish(rec, end) {
        crate::error!(
            "pool {}: the chain ended {} ({}) but the state database could not record it: {e:#}; the next tick will find it `failing_over` and mark it interrupted",
            pool.name,
            rec.state.as_str(),
            rec.reason
        );
    }
}
