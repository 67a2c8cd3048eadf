//! The readiness self-checks (`protocol::run(Action::Check)` for every step toward the
//! standby) and their results in the state database, for `tick` (in the background, when
//! [`crate::rules::readiness_due`] says so) and `reset` (in the foreground).

use anyhow::Result;

use crate::chain;
use crate::config::Pool;
use crate::model::EventKind;
use crate::model::{Role, Status};
use crate::protocol::{self, Action};
use crate::state::{Event, ReadinessRow, State};

/// Runs every step's readiness check toward the standby, all at once: a hung client costs
/// one timeout, not one per step.
pub fn check(pool: &Pool, active: Role) -> Vec<Vec<protocol::HostResult>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..pool.steps.len())
            .map(|index| {
                s.spawn(move || {
                    let ctx = chain::context(pool, index, active, pool.next_standby(active));
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
pub fn run(state: &State, pool: &Pool, active: Role, now: i64) -> Result<Vec<Event>> {
    save(state, pool, check(pool, active), now)
}

/// Stores the results of [`check`]; returns a history event for each host whose status
/// changed (a new host that is ok is no news).
pub fn save(
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
                concern: h.concern,
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
