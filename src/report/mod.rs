//! The status tree behind `report`: read from the config and the database alone (no
//! network), classified by the pure rules of [`classify`], rendered by [`render`] as a
//! Nagios line, a readable tree, JSON or Prometheus metrics.

use anyhow::Result;

use crate::config::{Config, Pool};
use crate::model::Role;
use crate::state::State;
use classify::age_s;

pub use crate::model::Status;
pub use tree::{
    HostReport, Instance, MonitorReport, PoolReport, Problem, Report, ServerReport, StepReport,
};

/// Builds the tree from the database (which may not exist yet): the database is read
/// here, the severities come from [`classify`].
pub fn build(
    config: &Config,
    state: Option<&State>,
    only: Option<&str>,
    now: i64,
) -> Result<Report> {
    let mut problems: Vec<Problem> = Vec::new();
    let tick = match state {
        Some(s) => s.last_tick()?,
        None => None,
    };
    let limits = classify::Staleness {
        tick_interval_s: config.tick_interval.as_secs_f64(),
        warning: config.stale_warning,
        critical: config.stale_critical,
    };
    let (instance_status, mut message, hint) = classify::instance(tick, now, limits);
    if let Some(hint) = hint {
        problems.push(Problem {
            status: instance_status,
            pool: None,
            message: message.clone(),
            hint,
        });
    }
    if config.cluster.is_some() {
        let stale = config.stale_critical.as_millis() as i64;
        if let Some((status, line)) = crate::cluster::status_line(&config.state_dir, now, stale) {
            if status != Status::Ok {
                problems.push(Problem {
                    status,
                    pool: None,
                    message: line.clone(),
                    hint: "no member fails anything over until etcd has quorum again; check the etcd members".to_string(),
                });
            }
            message = format!("{message}; {line}");
        }
    }
    let instance = Instance {
        status: instance_status,
        config_dir: config.dir.display().to_string(),
        state_dir: config.state_dir.display().to_string(),
        last_tick_at: tick.map(|t| t.seen_at()),
        last_tick_age_s: tick.map(|t| age_s(now, t.seen_at())),
        last_tick_duration_s: tick.map(|t| t.duration_ms as f64 / 1000.0),
        stale_warning_s: config.stale_warning.as_secs_f64(),
        stale_critical_s: config.stale_critical.as_secs_f64(),
        message,
    };

    let failovers = match state {
        Some(s) => s.failovers()?,
        None => Default::default(),
    };
    let configured: Vec<_> = config.pools.iter().map(Pool::servers).collect();
    let orphans = match state {
        Some(s) => s.orphans(&configured)?,
        None => Vec::new(),
    };
    let mut pools = Vec::new();
    for pool in config
        .pools
        .iter()
        .filter(|p| only.is_none_or(|o| o == p.name))
    {
        let held = crate::orphans::holding(&orphans, &pool.name);
        let mut report = pool_report(config, pool, state, held, now, &mut problems)?;
        report.failovers = failovers.get(&pool.name).copied().unwrap_or(0);
        pools.push(report);
    }
    // A locked pool no longer configured is reported, not forgotten (with `--pool`, with
    // the pool it holds back).
    for orphan in orphans
        .iter()
        .filter(|o| only.is_none_or(|name| o.holds.iter().any(|h| h == name)))
    {
        problems.push(Problem {
            status: orphan.status(),
            pool: Some(orphan.record.name.clone()),
            message: orphan.message(),
            hint: orphan.hint(),
        });
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.status));
    let status = problems
        .iter()
        .map(|p| p.status)
        .max()
        .unwrap_or(Status::Ok);
    Ok(Report {
        status,
        generated_at: now,
        instance,
        pools,
        problems,
    })
}

/// One pool's branch of the tree: its rows read from the database, classified, assembled.
///
/// A pool `held` back by the lock of a pool no longer configured has that for its state's
/// finding: what its own record says (if it has one) does not decide what it does.
fn pool_report(
    config: &Config,
    pool: &Pool,
    state: Option<&State>,
    held: Option<&crate::orphans::Orphan>,
    now: i64,
    problems: &mut Vec<Problem>,
) -> Result<PoolReport> {
    let (rec, monitor_rows, readiness) = match state {
        Some(s) => (
            s.pool(&pool.name)?,
            s.monitor(&pool.name)?,
            s.readiness(&pool.name)?,
        ),
        None => (None, Vec::new(), Vec::new()),
    };
    let facts = classify::PoolFacts {
        pool,
        rec: rec.as_ref(),
        monitor: &monitor_rows,
        readiness: &readiness,
        now,
        stale_after_ms: (config.system_check_interval + config.stale_critical).as_millis() as i64,
    };
    let active = facts.active();
    let pause = facts.pause().cloned();
    let mut found: Vec<classify::Found> = Vec::new();
    found.extend(classify::pause(&facts));
    match held {
        Some(orphan) => found.push(classify::Found {
            status: Status::Critical,
            message: orphan.held_message(&pool.name),
            hint: orphan.hint(),
        }),
        None => found.extend(classify::pool_state(&facts)),
    }

    let servers = server_reports(&facts, active);
    found.extend(classify::servers(&facts));

    let steps = step_reports(&facts, &mut found);

    let lost = match (state, &rec) {
        (Some(s), Some(r)) if r.state.is_locked() => s.loss(&pool.name)?,
        _ => None,
    };
    let durability = (monitor_rows.iter())
        .find(|m| m.role == active)
        .and_then(|m| m.durability.as_ref())
        .map(|d| tree::DurabilityReport {
            server: pool.address(active).to_string(),
            guaranteed: d.guaranteed,
            how: d.how.clone(),
            words: d.words(),
        });

    let status = found.iter().map(|p| p.status).max().unwrap_or(Status::Ok);
    let name = &pool.name;
    problems.extend(found.into_iter().map(|f| Problem {
        status: f.status,
        pool: Some(name.clone()),
        message: format!("{name}: {}", f.message),
        hint: f.hint,
    }));
    Ok(PoolReport {
        name: pool.name.clone(),
        status,
        state: rec.as_ref().map(|r| r.state.as_str().to_string()),
        active: active.as_str().to_string(),
        active_address: pool.address(active).to_string(),
        standby_address: pool.address(pool.next_standby(active)).to_string(),
        failures: rec.as_ref().map_or(0, |r| r.failures),
        max_failed_checks: pool.max_failed_checks,
        down_for_s: pool.down_for.map(|d| d.as_secs_f64()),
        reason: rec.as_ref().map(|r| r.reason.clone()).unwrap_or_default(),
        state_since: rec.as_ref().map(|r| r.state_since),
        pause,
        failovers: 0,
        held_by: held.map(|o| o.record.name.clone()),
        lost,
        durability,
        monitor: MonitorReport {
            kind: pool.monitor.kind.type_name().to_string(),
            servers,
        },
        steps,
    })
}

/// A replica's facts as its last check found them, with when it was last caught up.
fn replication_report(
    facts: &classify::PoolFacts,
    role: Role,
    r: &crate::monitor::Replica,
) -> tree::ReplicationReport {
    let progress = facts.rec.map(|rec| &rec.progress);
    let newest = progress.and_then(|p| p.samples.last()).map(|(at, _)| *at);
    let caught = progress
        .and_then(|p| p.standbys.get(facts.pool.address(role)))
        .and_then(|s| s.caught_up_at);
    tree::ReplicationReport {
        source: r.source.clone(),
        receiving: r.receiving,
        received: r.received.as_ref().map(|p| p.text.clone()),
        applied: r.applied.as_ref().map(|p| p.text.clone()),
        lag_s: r.lag_seconds,
        problem: r.problem.clone(),
        caught_up_age_s: newest
            .zip(caught)
            .map(|(n, c)| (n - c).max(0) as f64 / 1000.0),
    }
}

/// Every server of a pool, as its last check found it.
fn server_reports(facts: &classify::PoolFacts, active: Role) -> Vec<ServerReport> {
    let (pool, now) = (facts.pool, facts.now);
    pool.servers()
        .roles()
        .map(|(role, _)| {
            let row = facts.monitor.iter().find(|m| m.role == role);
            ServerReport {
                role: role.as_str().to_string(),
                address: pool.address(role).to_string(),
                active: role == active,
                status: classify::server_status(
                    row.map(|r| r.health),
                    role == active,
                    facts.locked(),
                ),
                health: row.map(|r| r.health.as_str().to_string()),
                message: row.map(|r| r.message.clone()).unwrap_or_default(),
                checked_at: row.map(|r| r.checked_at),
                age_s: row.map(|r| age_s(now, r.checked_at)),
                replication: row
                    .and_then(|r| r.replica.as_ref())
                    .map(|r| replication_report(facts, role, r)),
                position: row
                    .and_then(|r| r.position.as_ref())
                    .map(|p| p.text.clone()),
                read_only: row.and_then(|r| r.read_only),
            }
        })
        .collect()
}

/// Each step's readiness on each host; what it finds goes to `found`.
fn step_reports(facts: &classify::PoolFacts, found: &mut Vec<classify::Found>) -> Vec<StepReport> {
    let (pool, now) = (facts.pool, facts.now);
    let mut steps = Vec::new();
    for (index, step) in pool.steps.iter().enumerate() {
        let (status, step_found) = classify::readiness(facts, index);
        found.extend(step_found);
        let hosts = facts
            .readiness
            .iter()
            .filter(|r| r.step_index == index)
            .map(|r| HostReport {
                host: r.host.clone(),
                status: r.status,
                message: r.message.clone(),
                checked_at: r.checked_at,
                age_s: age_s(now, r.checked_at),
            })
            .collect();
        steps.push(StepReport {
            index: index + 1,
            name: step.name.clone(),
            kind: step.type_name().to_string(),
            status,
            hosts,
        });
    }
    steps
}

mod classify;
mod render;
mod tree;

pub use classify::describe_pause;
pub use render::{Exposition, full, nagios, prometheus};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_status_is_the_maximum() {
        assert!(Status::Critical > Status::Unknown);
        assert!(Status::Unknown > Status::Warning);
        assert!(Status::Warning > Status::Ok);
        assert_eq!(Status::Critical.exit_code(), 2);
        assert_eq!(Status::Unknown.exit_code(), 3);
    }
}
