//! `deadpool reset POOL`: a person re-arms a pool after a failover. The readiness checks run
//! first; an active server that is down refuses the reset unless `--force`.

use anyhow::Result;

use crate::cli::ResetArgs;
use crate::config::Config;
use crate::error::{Error, Outcome};
use crate::model::EventKind;
use crate::model::PoolState;
use crate::monitor;
use crate::rules;
use crate::state::{PoolRecord, Snapshot, now_ms};

pub fn run(config: &Config, args: &ResetArgs) -> Result<Outcome> {
    let pool = config.pool(&args.pool)?;
    let named = args.active.as_deref().map(|s| pool.server(s)).transpose()?;
    let who = super::shared::actor();
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let confirmed = super::shared::before_confirm(config, member.as_ref(), &pool.name)?;
    let question = format!(
        "Re-arm pool {} ({}) so that it can fail over again?",
        pool.name,
        super::shared::describe(pool, confirmed.as_ref())
    );
    if !super::shared::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let current = super::shared::pool_record(member.as_ref(), &state, &pool.name)?;
    super::shared::unchanged_since_confirmed(pool, confirmed.as_ref(), current.as_ref())?;
    let seen = Snapshot::of(current.as_ref());
    // Here the instance lock proves no chain runs; with [cluster] it is this member's
    // only, and `failing_over` in etcd may be the leader's chain (or a person's promote
    // on another member) running now.
    if member.is_some() && current.as_ref().map(|r| r.state) == Some(PoolState::FailingOver) {
        return Err(Error::Failed(format!(
            "pool {name} is failing_over in etcd: its chain may be running on another member; nothing changed. Once it ends (or the leader marks it interrupted), look at `deadpool history --pool {name}` and reset then",
            name = pool.name
        ))
        .into());
    }
    let mut rec = current.unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
    let before = rec.state;
    let active = named.unwrap_or(rec.active);

    let checks = monitor::check_all(pool);
    let now = now_ms();
    for ((role, address), check) in pool.servers().roles().zip(&checks) {
        let mark = if role == active { " [active]" } else { "" };
        println!(
            "{:<9} {:<16} {:<8} {}{mark}",
            role.as_str(),
            address,
            check.health.as_str(),
            check.message
        );
    }
    let active_check = &checks[active.index()];
    let events = crate::readiness::run(&state, pool, active, now)?;
    for row in state.readiness(&pool.name)? {
        println!(
            "step {} `{}` on {}: {} {}",
            row.step_index + 1,
            row.step_name,
            row.host,
            row.status.as_str(),
            row.message
        );
    }
    state.add_events(&events)?;
    if !rules::reset_allowed(active_check.health.is_alive(), args.force) {
        return Err(Error::Failed(format!(
            "the active server {} ({}) is down: {}; nothing changed. Fix it, pick the other one with --active, or re-arm anyway with --force",
            active.as_str(),
            pool.address(active),
            active_check.message
        ))
        .into());
    }
    state.save_monitor(&pool.name, &crate::round::monitor_rows(&checks, now))?;

    rec.state = PoolState::Armed;
    rec.active = active;
    rec.failures = 0;
    rec.last_check_at = Some(now);
    rec.state_since = now;
    rec.reason = String::new();
    rec.reason_kind = String::new();
    let msg = format!(
        "re-armed from {}; active {} ({}){}",
        before.as_str(),
        active.as_str(),
        pool.address(active),
        if args.force && !active_check.health.is_alive() {
            "; forced while the active server is down"
        } else {
            ""
        }
    );
    if let Some(m) = &member {
        m.write_pool_as_person(&rec, &seen)?;
    }
    state.save_pool(
        &rec,
        &[EventKind::Reset.of(&pool.name, &who).message(msg.clone())],
    )?;
    state.readiness_checked(&pool.name, now)?;
    println!("pool {}: {msg}", pool.name);
    Ok(Outcome::Done)
}
