//! Running a pool's failover chain (SPEC 6, 2c-2e): every preflight before any change, then
//! `failing_over` committed, then each step's action in order, then the pool locked.
//! Shared by `tick` (automatic failover) and `promote` (by hand).

use std::time::Duration;

use anyhow::Result;

use crate::cli::Role;
use crate::config::{OnFailure, Pool};
use crate::protocol::{self, Action, Context, HostResult};
use crate::report::Status;
use crate::state::{Event, PoolRecord, PoolState, State, now_ms};

/// One step's preflight results, in chain order.
pub type Preflights = Vec<(usize, Vec<HostResult>)>;

/// Runs every step's preflight, in order, all of them even after a failure so that the
/// report shows every problem at once. Returns the results and the first failure.
pub fn preflight(pool: &Pool, from: Role, to: Role, dry_run: bool) -> (Preflights, Option<String>) {
    let mut results = Vec::new();
    let mut failure = None;
    for (index, step) in pool.steps.iter().enumerate() {
        let ctx = context(pool, index, from, to, dry_run);
        let hosts = protocol::run(Action::Preflight, &ctx);
        if failure.is_none() && protocol::worst(&hosts) != Status::Ok {
            let bad: Vec<String> = hosts
                .iter()
                .filter(|h| h.status != Status::Ok)
                .map(|h| format!("{}: {}", h.host, h.message))
                .collect();
            failure = Some(format!(
                "preflight of step {} `{}` failed: {}",
                index + 1,
                step.name,
                bad.join("; ")
            ));
        }
        results.push((index, hosts));
    }
    (results, failure)
}

pub fn context(pool: &Pool, index: usize, from: Role, to: Role, dry_run: bool) -> Context<'_> {
    Context {
        pool,
        step: &pool.steps[index],
        old_primary: pool.address(from),
        new_primary: pool.address(to),
        dry_run,
        force: false,
        deadline: std::time::Instant::now() + pool.steps[index].timeout,
    }
}

/// History events for a failed preflight: one per failing host.
pub fn preflight_events(pool: &Pool, actor: &str, preflights: &Preflights) -> Vec<Event> {
    let mut events = Vec::new();
    for (index, hosts) in preflights {
        for h in hosts.iter().filter(|h| h.status != Status::Ok) {
            events.push(host_event(
                pool,
                "preflight",
                actor,
                &pool.steps[*index].name,
                h,
            ));
        }
    }
    events
}

/// Runs the chain toward `to` after the preflights passed (SPEC 6, 2d-2e). `rec` is saved
/// as `failing_over` before the first action and as `failed_over` or `failover_failed` at
/// the end; `actor` is who asked (`tick` for automatic failovers). Returns the end state.
pub fn execute(
    state: &State,
    pool: &Pool,
    rec: &mut PoolRecord,
    to: Role,
    actor: &str,
    why: &str,
    progress: bool,
) -> Result<PoolState> {
    let from = to.other();
    let total = pool.steps.len();
    // Committed before the first change: a crash from here on is found as `interrupted`.
    let started = now_ms();
    rec.state = PoolState::FailingOver;
    rec.active = to;
    rec.state_since = started;
    rec.reason = format!(
        "failing over from {} to {}",
        pool.address(from),
        pool.address(to)
    );
    let msg = format!(
        "failover started: {} ({}) -> {} ({}); {why}",
        from.as_str(),
        pool.address(from),
        to.as_str(),
        pool.address(to)
    );
    state.save_pool(
        rec,
        &[event(
            pool,
            "failover_started",
            actor,
            "",
            "",
            Status::Warning,
            &msg,
            "",
        )],
    )?;
    crate::warn!("pool {}: {msg}", pool.name);

    let mut aborted_by: Option<&str> = None;
    let mut failed: Vec<&str> = Vec::new();
    for (index, step) in pool.steps.iter().enumerate() {
        if let Some(failed) = aborted_by {
            let msg = format!("skipped: step `{failed}` failed and stopped the chain");
            state.add_events(&[event(
                pool,
                "step",
                actor,
                &step.name,
                "",
                Status::Unknown,
                &msg,
                "",
            )])?;
            continue;
        }
        state.add_events(&[event(
            pool,
            "step_started",
            actor,
            &step.name,
            "",
            Status::Ok,
            "started",
            "",
        )])?;
        if progress {
            print!(
                "  [{}/{total}] {} ({}) ... ",
                index + 1,
                step.name,
                step.type_name()
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        let ctx = context(pool, index, from, to, false);
        let hosts = protocol::run(Action::Promote, &ctx);
        if progress {
            println!("{}", protocol::worst(&hosts).as_str());
            for h in &hosts {
                println!(
                    "        {:<8} {:<14} {}",
                    h.status.as_str(),
                    h.host,
                    h.message
                );
            }
        }
        let events: Vec<Event> = hosts
            .iter()
            .map(|h| host_event(pool, "step", actor, &step.name, h))
            .collect();
        state.add_events(&events)?;
        let ok = protocol::worst(&hosts) == Status::Ok;
        crate::info!(
            "pool {}: step {} `{}`: {}",
            pool.name,
            index + 1,
            step.name,
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            failed.push(&step.name);
            if step.on_failure == OnFailure::Abort {
                aborted_by = Some(&step.name);
            }
        }
    }
    rec.state = if failed.is_empty() {
        PoolState::FailedOver
    } else {
        PoolState::FailoverFailed
    };
    rec.state_since = now_ms();
    rec.failures = 0;
    let took = Duration::from_millis((rec.state_since - started).max(0) as u64).as_secs_f64();
    let target = format!("{} ({})", to.as_str(), pool.address(to));
    rec.reason = if failed.is_empty() {
        format!("failed over to {target} in {took:.1}s; locked until reset")
    } else {
        let steps: Vec<String> = failed.iter().map(|s| format!("`{s}`")).collect();
        format!(
            "failover to {target} failed at step {}; locked until reset",
            steps.join(", ")
        )
    };
    let status = if failed.is_empty() {
        Status::Warning
    } else {
        Status::Critical
    };
    let end = event(
        pool,
        rec.state.as_str(),
        actor,
        "",
        "",
        status,
        &rec.reason,
        "",
    );
    state.save_pool(rec, &[end])?;
    Ok(rec.state)
}

#[allow(clippy::too_many_arguments)]
pub fn event(
    pool: &Pool,
    kind: &str,
    actor: &str,
    step: &str,
    host: &str,
    status: Status,
    message: &str,
    output: &str,
) -> Event {
    Event {
        at: now_ms(),
        pool: Some(pool.name.clone()),
        event: kind.to_string(),
        actor: actor.to_string(),
        step: step.to_string(),
        host: host.to_string(),
        status: status.as_str().to_string(),
        message: message.to_string(),
        output: output.to_string(),
        ..Event::default()
    }
}

fn host_event(pool: &Pool, kind: &str, actor: &str, step: &str, h: &HostResult) -> Event {
    Event {
        duration_ms: Some(h.duration.as_millis() as i64),
        ..event(
            pool, kind, actor, step, &h.host, h.status, &h.message, &h.output,
        )
    }
}
