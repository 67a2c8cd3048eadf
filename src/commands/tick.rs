//! `deadpool tick`: check every pool once, apply the decision rules, fail over where they
//! say so, run the readiness self-checks when due, and record the tick.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::chain;
use crate::cli::{Role, TickArgs};
use crate::config::{Config, Pool};
use crate::error::Outcome;
use crate::monitor::{self, Check};
use crate::protocol::{self, Action};
use crate::report::Status;
use crate::state::{Event, Lock, MonitorRow, PoolRecord, PoolState, ReadinessRow, State, now_ms};
use crate::tick::{self, Decision, Input, Next};

pub fn run(config: &Config, args: &TickArgs) -> Result<Outcome> {
    if args.dry_run {
        return dry_run(config);
    }
    let started = Instant::now();
    let started_at = now_ms();
    let Some(_lock) = Lock::acquire(&config.state_dir, Duration::ZERO)? else {
        crate::info!(
            "{} holds the instance lock; this tick is skipped",
            Lock::holder(&config.state_dir)
        );
        return Ok(Outcome::Done);
    };
    let state = State::open(&config.state_dir)?;
    let results: Vec<Result<bool>> = std::thread::scope(|s| {
        let handles: Vec<_> = config
            .pools
            .iter()
            .map(|pool| s.spawn(|| tick_pool(config, &state, pool)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a pool's thread panicked")))
            })
            .collect()
    });
    let mut attention = false;
    for (pool, result) in config.pools.iter().zip(results) {
        match result {
            Ok(needs) => attention |= needs,
            Err(e) => {
                crate::error!("pool {}: {e:#}", pool.name);
                attention = true;
            }
        }
    }
    state.record_tick(started_at, started.elapsed(), config.history_retention)?;
    if let Some(path) = &config.prometheus_textfile
        && let Err(e) = write_textfile(config, &state, path)
    {
        crate::warn!("cannot write the metrics file {}: {e:#}", path.display());
    }
    crate::debug!("tick took {:.3}s", started.elapsed().as_secs_f64());
    Ok(if attention {
        Outcome::NeedsAttention
    } else {
        Outcome::Done
    })
}

fn by_role(checks: [Check; 2], active: Role) -> (Check, Check) {
    let [primary, secondary] = checks;
    match active {
        Role::Primary => (primary, secondary),
        Role::Secondary => (secondary, primary),
    }
}

/// One pool's tick. Returns whether something happened that needs a person.
fn tick_pool(config: &Config, state: &State, pool: &Pool) -> Result<bool> {
    let mut rec = state
        .pool(&pool.name)?
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
    let checks = monitor::check_both(pool);
    let checked_at = now_ms();
    let rows = monitor_rows(&checks, checked_at);
    let (active, standby) = by_role(checks, rec.active);
    let decision = decide(config, pool, &rec, &active, &standby, checked_at);
    if decision.gap {
        crate::info!(
            "pool {}: the previous check was too long ago; the failure count restarts",
            pool.name
        );
    }
    rec.failures = decision.failures;
    rec.last_check_at = Some(checked_at);
    let mut events: Vec<Event> = Vec::new();
    let mut attention = false;
    let mut chain_ran = false;
    match decision.next {
        Next::Watch => {}
        Next::Rearm => {
            let msg = format!("{} answers again: armed", pool.address(rec.active));
            events.push(chain::event(
                pool,
                "armed",
                "tick",
                "",
                "",
                Status::Ok,
                &msg,
                "",
            ));
            set_state(&mut rec, PoolState::Armed, "");
        }
        Next::Block(reason) => block(pool, &mut rec, reason, Vec::new(), &mut events),
        Next::Interrupt => {
            let during = last_started_step(state, pool)?;
            let reason = format!(
                "a failover toward {} ({}) was interrupted{during}; deadpool does not resume a chain",
                rec.active.as_str(),
                pool.address(rec.active)
            );
            crate::error!("pool {}: {reason}", pool.name);
            events.push(chain::event(
                pool,
                "interrupted",
                "tick",
                "",
                "",
                Status::Critical,
                &reason,
                "",
            ));
            set_state(&mut rec, PoolState::Interrupted, &reason);
            attention = true;
        }
        Next::Failover => {
            let (from, to) = (rec.active, rec.active.other());
            let target = format!(
                "{}:{}",
                pool.address(from),
                pool.monitor.port().unwrap_or(0)
            );
            let opinion = crate::confirm::ask(config, pool, pool.address(from));
            let votes = opinion.as_ref().map(|o| o.describe(&target));
            if let Some(o) = opinion.as_ref().filter(|o| o.primary_alive()) {
                let reason = format!(
                    "second opinion: the primary is cut off from deadpool only; {}",
                    o.describe(&target)
                );
                block(pool, &mut rec, reason, Vec::new(), &mut events);
            } else {
                let (preflights, failure) = chain::preflight(pool, from, to, false);
                match failure {
                    Some(reason) => block(
                        pool,
                        &mut rec,
                        reason,
                        chain::preflight_events(pool, "tick", &preflights),
                        &mut events,
                    ),
                    None => {
                        let mut why = format!(
                            "{} failed {} consecutive checks: {}",
                            pool.address(from),
                            rec.failures,
                            active.message
                        );
                        if let Some(v) = votes {
                            why.push_str(&format!("; second opinion: {v}"));
                        }
                        state.save_tick(&rec, &events, &rows)?;
                        events.clear();
                        let end = chain::execute(state, pool, &mut rec, to, "tick", &why, false)?;
                        attention = end != PoolState::FailedOver;
                        chain_ran = true;
                    }
                }
            }
        }
    }
    let now = now_ms();
    // While an armed pool's active server is failing, readiness waits: the next checks of
    // the server come sooner, and detection is what matters then.
    let counting = rec.state == PoolState::Armed && rec.failures > 0;
    let due = tick::system_check_due(
        rec.last_system_check_at,
        now,
        config.system_check_interval.as_millis() as i64,
    );
    if chain_ran || (due && !counting) {
        events.extend(readiness(state, pool, rec.active, now)?);
        rec.last_system_check_at = Some(now);
    }
    // "Consecutive" counts from the end of this pool's tick: the timer waits an interval
    // after a tick ends, so a slow tick (hung clients, a long chain) is no gap.
    rec.last_check_at = Some(now_ms());
    state.save_tick(&rec, &events, &rows)?;
    Ok(attention)
}

fn decide(
    config: &Config,
    pool: &Pool,
    rec: &PoolRecord,
    active: &Check,
    standby: &Check,
    now: i64,
) -> Decision {
    tick::decide(Input {
        state: rec.state,
        failures: rec.failures,
        max_failed_checks: pool.max_failed_checks,
        last_check_at: rec.last_check_at,
        now,
        tick_interval_ms: config.tick_interval.as_millis() as i64,
        active: active.health,
        standby: standby.health,
    })
}

fn set_state(rec: &mut PoolRecord, to: PoolState, reason: &str) {
    if rec.state != to {
        rec.state_since = now_ms();
    }
    rec.state = to;
    rec.reason = reason.to_string();
}

/// Blocked: nothing changed. History gets an entry only when the reason is new, so a pool
/// that stays blocked for days does not grow the database.
fn block(
    pool: &Pool,
    rec: &mut PoolRecord,
    reason: String,
    details: Vec<Event>,
    events: &mut Vec<Event>,
) {
    if rec.state != PoolState::Blocked || rec.reason != reason {
        crate::error!("pool {}: failover blocked: {reason}", pool.name);
        events.push(chain::event(
            pool,
            "blocked",
            "tick",
            "",
            "",
            Status::Critical,
            &reason,
            "",
        ));
        events.extend(details);
    }
    set_state(rec, PoolState::Blocked, &reason);
}

fn last_started_step(state: &State, pool: &Pool) -> Result<String> {
    let recent = state.history(Some(&pool.name), 200)?;
    let step = recent
        .iter()
        .rev()
        .take_while(|e| e.event != "failover_started")
        .find(|e| e.event == "step_started");
    Ok(match step {
        Some(e) => format!(" during step `{}`", e.step),
        None => " before its first step".to_string(),
    })
}

pub fn monitor_rows(checks: &[Check; 2], at: i64) -> Vec<MonitorRow> {
    [Role::Primary, Role::Secondary]
        .into_iter()
        .zip(checks)
        .map(|(role, c)| MonitorRow {
            role,
            health: c.health,
            message: c.message.clone(),
            checked_at: at,
            duration_ms: c.duration.as_millis() as i64,
            read_only: c.facts.as_ref().and_then(|f| f.read_only),
        })
        .collect()
}

/// Runs every step's readiness check toward the standby and stores the results. Returns a
/// history event for each host whose status changed.
pub fn readiness(state: &State, pool: &Pool, active: Role, now: i64) -> Result<Vec<Event>> {
    // Every step's check at once: a hung client costs one timeout, not one per step.
    let results: Vec<Vec<protocol::HostResult>> = std::thread::scope(|s| {
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
    });
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
            events.push(chain::event(
                pool,
                "readiness",
                "tick",
                &row.step_name,
                &row.host,
                row.status,
                &msg,
                "",
            ));
        }
    }
    Ok(events)
}

/// `tick --dry-run`: everything a tick would look at and decide, and the exact chain it
/// would run, with every preflight; nothing is written anywhere.
fn dry_run(config: &Config) -> Result<Outcome> {
    let state = State::open_read_only(&config.state_dir)?;
    let mut out = String::new();
    for pool in &config.pools {
        let rec = match &state {
            Some(s) => s.pool(&pool.name)?,
            None => None,
        }
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
        let checks = monitor::check_both(pool);
        let (active, standby) = by_role(checks, rec.active);
        let d = decide(config, pool, &rec, &active, &standby, now_ms());
        out.push_str(&format!(
            "pool {}: {}, active {} ({}), failures {} -> {}/{}\n",
            pool.name,
            rec.state.as_str(),
            rec.active.as_str(),
            pool.address(rec.active),
            rec.failures,
            d.failures,
            pool.max_failed_checks
        ));
        out.push_str(&format!(
            "  active  {} {}: {}\n",
            pool.address(rec.active),
            active.health.as_str(),
            active.message
        ));
        out.push_str(&format!(
            "  standby {} {}: {}\n",
            pool.address(rec.active.other()),
            standby.health.as_str(),
            standby.message
        ));
        let would = match &d.next {
            Next::Watch if rec.state.is_locked() => "stay locked and keep watching".to_string(),
            Next::Watch => "keep watching".to_string(),
            Next::Rearm => "re-arm the pool (the active server answers again)".to_string(),
            Next::Block(r) => format!("block the failover: {r}"),
            Next::Interrupt => "mark the interrupted failover as `interrupted`".to_string(),
            Next::Failover => format!(
                "fail over to {} ({}) if every preflight passes",
                rec.active.other().as_str(),
                pool.address(rec.active.other())
            ),
        };
        out.push_str(&format!("  this tick would {would}\n"));
        if !pool.monitor.confirm_from.is_empty() {
            let observers: Vec<&str> = pool.monitor.confirm_from.iter().map(|h| h.name()).collect();
            out.push_str(&format!(
                "  at the threshold, a second opinion is asked of: {}\n",
                observers.join(", ")
            ));
        }
        out.push_str(&plan(pool, rec.active, rec.active.other()));
    }
    print!("{out}");
    Ok(Outcome::Done)
}

/// The chain toward `to`, each step with each host's resolved command, and each step's
/// preflight run for real (preflights change nothing).
pub fn plan(pool: &Pool, from: Role, to: Role) -> String {
    let mut out = format!(
        "  failover plan {} ({}) -> {} ({}):\n",
        from.as_str(),
        pool.address(from),
        to.as_str(),
        pool.address(to)
    );
    if pool.steps.is_empty() {
        out.push_str("    (no steps configured)\n");
    }
    let (preflights, _) = chain::preflight(pool, from, to, true);
    for (index, hosts) in preflights {
        let step = &pool.steps[index];
        let ctx = chain::context(pool, index, from, to, true);
        out.push_str(&format!(
            "    {}. {} ({}), timeout {}, on failure {}\n",
            index + 1,
            step.name,
            step.type_name(),
            crate::config::format_duration(step.timeout),
            match step.on_failure {
                crate::config::OnFailure::Abort => "abort",
                crate::config::OnFailure::Continue => "continue",
            }
        ));
        for (host, command) in protocol::protocol(step).plan(&ctx) {
            out.push_str(&format!("       on {host}: {command}\n"));
        }
        for h in hosts {
            out.push_str(&format!(
                "       preflight on {}: {} {}\n",
                h.host,
                h.status.as_str(),
                h.message
            ));
        }
    }
    out
}

/// Writes the metrics next to the target and renames them over it, so node_exporter never
/// reads half a file.
fn write_textfile(config: &Config, state: &State, path: &std::path::Path) -> Result<()> {
    let tree = crate::report::build(config, Some(state), None, now_ms())?;
    let tmp = path.with_extension("prom.tmp");
    std::fs::write(&tmp, crate::report::prometheus(&tree))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
