//! The tick's side of `[cluster]` ([`crate::cluster`]), kept out of `commands::tick`: the
//! lease and the pool state loaded at the start of each round, a follower's round (checks
//! for its own report, no decisions), and the member's status after each round.

use anyhow::Result;

use crate::cluster::{Member, Standing};
use crate::config::{Config, Pool};
use crate::monitor;
use crate::round::{Plan, monitor_rows};
use crate::state::{State, now_ms};

/// Takes or renews the leader lease, then loads each given pool's state from etcd into the
/// local database, which the rest of the tick and `report` read.
pub fn sync(member: &Member, state: &State, pools: &[&Pool]) {
    match member.campaign() {
        Standing::Unknown { why } => {
            crate::error!("cluster: etcd cannot be asked, no chain runs here: {why}");
            return;
        }
        Standing::Follower { leader, .. } => {
            crate::debug!("cluster: {leader} leads; this member only watches");
        }
        Standing::Leader { .. } => {}
    }
    let elsewhere = member.find_chains_elsewhere();
    for pool in pools {
        if elsewhere.contains(&pool.name) {
            crate::info!(
                "pool {}: a person's promote runs its chain now; this round leaves it alone",
                pool.name
            );
            continue;
        }
        let local = state.pool(&pool.name).ok().flatten();
        match member.read_pool(&pool.name, local.as_ref()) {
            Ok(Some(rec)) => {
                if let Err(e) = state.save_pool(&rec, &[]) {
                    crate::warn!(
                        "pool {}: cannot keep etcd's state locally: {e:#}",
                        pool.name
                    );
                }
            }
            Ok(None) => {}
            Err(e) => crate::warn!("pool {}: cannot read its state from etcd: {e:#}", pool.name),
        }
    }
}

/// A follower's round for one pool: every server's check, recorded for this member's report; the
/// pool's state is the leader's (loaded by [`sync`]) and nothing is decided here.
pub fn follow(state: &State, config: &Config, pool: &Pool) -> Result<Plan> {
    let checks = monitor::check_all(pool);
    let at = now_ms();
    state.save_monitor(&pool.name, &monitor_rows(&checks, at))?;
    let last = state.pool(&pool.name)?.and_then(|r| r.last_system_check_at);
    Ok(Plan {
        readiness: crate::rules::readiness_due(
            last,
            at,
            config.system_check_interval.as_millis() as i64,
            false,
        ),
        ..Default::default()
    })
}

/// After each round: this member's tick in etcd and what it knows of the cluster for
/// `report`.
pub fn after_round(member: &Member, config: &Config, started_at: i64) {
    if !matches!(member.role(), Standing::Unknown { .. })
        && let Err(e) = member.heartbeat(started_at)
    {
        crate::warn!("cluster: cannot record this member's tick in etcd: {e:#}");
    }
    member.save_status(&config.state_dir, now_ms());
}
