//! `deadpool reset POOL`: a person re-arms a pool after a failover. The readiness checks run
//! first; an active server that is down refuses the reset unless `--force`. The locks of
//! pools no longer configured ([`crate::orphans`]) are handled here too: `reset NEW --adopt
//! OLD` carries a renamed pool's lock over to its new name, `reset OLD --forget` drops it.

use anyhow::Result;

use crate::cli::ResetArgs;
use crate::cluster::Member;
use crate::config::{Config, Pool};
use crate::error::{Error, Outcome};
use crate::model::EventKind;
use crate::model::{PoolState, Role, Status};
use crate::monitor;
use crate::rules;
use crate::state::{PoolRecord, Snapshot, State, now_ms};

pub fn run(config: &Config, args: &ResetArgs) -> Result<Outcome> {
    if args.forget {
        return forget(config, args);
    }
    let pool = config.pool(&args.pool)?;
    if let Some(old) = &args.adopt {
        return adopt(config, args, pool, old);
    }
    let named = args.active.as_deref().map(|s| pool.server(s)).transpose()?;
    let who = super::shared::actor();
    let member = config.cluster.as_ref().map(Member::new);
    let servers = pool.servers().servers;
    let confirmed = super::shared::before_confirm(config, member.as_ref(), &pool.name)?;
    let question = format!(
        "Re-arm pool {} ({}) so that it can fail over again?",
        pool.name,
        super::shared::describe(servers, confirmed.as_ref())
    );
    if !super::shared::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let current = super::shared::pool_record(member.as_ref(), &state, &pool.name)?;
    super::shared::unchanged_since_confirmed(
        &pool.name,
        servers,
        confirmed.as_ref(),
        current.as_ref(),
    )?;
    super::shared::refuse_if_held(config, &state, pool)?;
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

/// A pool name the config no longer has, with what is recorded of it: for `--forget` and
/// `--adopt`.
struct Unconfigured {
    name: String,
    /// Its servers as last recorded (empty when never recorded).
    servers: Vec<String>,
}

impl Unconfigured {
    /// `name`, which must not be a configured pool.
    fn of(config: &Config, name: &str, flag: &str) -> Result<Unconfigured> {
        if config.pools.iter().any(|p| p.name == name) {
            return Err(Error::Usage(format!(
                "pool {name} is configured: {flag} takes the recorded state of a pool no longer in the config (renamed or removed); to re-arm {name}: `deadpool reset {name}`"
            ))
            .into());
        }
        let servers = match State::open_read_only(&config.state_dir)? {
            Some(state) => state
                .records()?
                .into_iter()
                .find(|r| r.name == name)
                .and_then(|r| r.servers)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        Ok(Unconfigured {
            name: name.to_string(),
            servers,
        })
    }

    /// Its record as the person is asked about it; none is an error saying so.
    fn confirmed(&self, config: &Config, member: Option<&Member>) -> Result<PoolRecord> {
        super::shared::before_confirm(config, member, &self.name)?.ok_or_else(|| {
            Error::Usage(format!(
                "no pool named `{}` is configured or recorded: nothing to carry over or drop",
                self.name
            ))
            .into()
        })
    }

    /// Its record once the lock is held, still as the person confirmed it.
    fn current(
        &self,
        member: Option<&Member>,
        state: &State,
        confirmed: &PoolRecord,
    ) -> Result<PoolRecord> {
        let current = super::shared::pool_record(member, state, &self.name)?;
        super::shared::unchanged_since_confirmed(
            &self.name,
            &self.servers,
            Some(confirmed),
            current.as_ref(),
        )?;
        Ok(current.unwrap_or_else(|| confirmed.clone()))
    }
}

/// `reset OLD --forget`: drops the recorded state (and lock) of a pool no longer
/// configured; its history stays. A configured pool it held back then arms on its own.
fn forget(config: &Config, args: &ResetArgs) -> Result<Outcome> {
    let old = Unconfigured::of(config, &args.pool, "--forget")?;
    let member = config.cluster.as_ref().map(Member::new);
    let confirmed = old.confirmed(config, member.as_ref())?;
    let was = super::shared::describe(&old.servers, Some(&confirmed));
    let question = format!(
        "Drop the recorded state of pool {} ({was}), which is no longer configured? Its history stays; a configured pool with its servers then arms on its own",
        old.name
    );
    if !super::shared::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let who = super::shared::actor();
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let current = old.current(member.as_ref(), &state, &confirmed)?;
    if let Some(m) = &member {
        m.move_pool_as_person(&old.name, &Snapshot::of(Some(&current)), None)?;
    }
    let msg = format!("dropped the recorded state of a pool no longer configured: {was}");
    state.forget_pool(
        &old.name,
        &EventKind::Forgotten
            .of(&old.name, &who)
            .status(Status::Warning)
            .message(msg.clone()),
    )?;
    println!("pool {}: {msg}; its history stays", old.name);
    Ok(Outcome::Done)
}

/// `reset NEW --adopt OLD`: the pool once configured as OLD is NEW now; NEW takes over its
/// record as it is (state, active server by address, pause, positions, history), locked
/// as it was. Nothing is re-armed.
fn adopt(config: &Config, args: &ResetArgs, pool: &Pool, old: &str) -> Result<Outcome> {
    let old = Unconfigured::of(config, old, "--adopt")?;
    let member = config.cluster.as_ref().map(Member::new);
    let servers = pool.servers().servers;
    let confirmed = old.confirmed(config, member.as_ref())?;
    let confirmed_new = super::shared::before_confirm(config, member.as_ref(), &pool.name)?;
    let active = adopted_active(pool, &old, &confirmed)?;
    let was = super::shared::describe(&old.servers, Some(&confirmed));
    let question = format!(
        "Carry the recorded state of pool {} ({was}), no longer configured, over to pool {} as its new name? {} is then {}, active {} ({}), as {} was",
        old.name,
        pool.name,
        pool.name,
        confirmed.state.as_str(),
        active.as_str(),
        pool.address(active),
        old.name
    );
    if !super::shared::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let who = super::shared::actor();
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let current = old.current(member.as_ref(), &state, &confirmed)?;
    let current_new = super::shared::pool_record(member.as_ref(), &state, &pool.name)?;
    super::shared::unchanged_since_confirmed(
        &pool.name,
        servers,
        confirmed_new.as_ref(),
        current_new.as_ref(),
    )?;
    if let Some(own) = current_new
        .as_ref()
        .filter(|r| crate::orphans::keeps_a_lock(r.state))
    {
        return Err(Error::Failed(format!(
            "pool {} has a lock of its own ({}); nothing changed. Look at both, then `deadpool reset {} --forget` drops the old one",
            pool.name,
            super::shared::describe(servers, Some(own)),
            old.name
        ))
        .into());
    }
    let active = adopted_active(pool, &old, &current)?;
    let rec = PoolRecord {
        name: pool.name.clone(),
        active,
        ..current.clone()
    };
    if let Some(m) = &member {
        m.move_pool_as_person(&old.name, &Snapshot::of(Some(&current)), Some(&rec))?;
    }
    let msg = format!(
        "carried over the recorded state of pool {}, no longer configured ({was}); its history shows under {} from now on",
        old.name, pool.name
    );
    state.adopt_pool(
        &old.name,
        &rec,
        &EventKind::Adopted
            .of(&pool.name, &who)
            .status(Status::Warning)
            .message(msg.clone()),
    )?;
    println!(
        "pool {}: {msg}; it is {}, active {} ({}); `deadpool reset {}` re-arms it once it is looked at",
        pool.name,
        rec.state.as_str(),
        active.as_str(),
        pool.address(active),
        pool.name
    );
    Ok(Outcome::Done)
}

/// The server of `pool` that is the old pool's active one: by its address where the old
/// pool's servers were recorded, else by its role.
fn adopted_active(pool: &Pool, old: &Unconfigured, rec: &PoolRecord) -> Result<Role> {
    let found = match old.servers.get(rec.active.index()) {
        Some(address) => pool.servers().role_of(address),
        None if old.servers.is_empty() => {
            Some(rec.active).filter(|r| r.index() < pool.servers().servers.len())
        }
        None => None,
    };
    found.ok_or_else(|| {
        Error::Failed(format!(
            "the active server of pool {} ({}) is not a server of pool {}: it is not {} renamed; nothing changed. `deadpool reset {} --forget` drops the old lock",
            old.name,
            super::shared::describe(&old.servers, Some(rec)),
            pool.name,
            old.name,
            old.name
        ))
        .into()
    })
}
