//! `deadpool promote POOL primary|secondary`: a failover by hand toward the named server
//! (SPEC 6.4): the same preflights and chain as an automatic failover
//! ([`crate::failover`]), then the pool locks.

use anyhow::Result;

use crate::chain::{self, Progress};
use crate::cli::PromoteArgs;
use crate::config::{Config, Pool};
use crate::error::{Error, Outcome};
use crate::failover::{self, Attempt, Ended, Fence, SecondOpinion};
use crate::model::EventKind;
use crate::model::{PoolState, Role, Status};
use crate::monitor;
use crate::protocol;
use crate::protocol::Force;
use crate::rules;
use crate::state::{Event, PoolRecord, State, now_ms};
use crate::text::one_line;

pub fn run(config: &Config, args: &PromoteArgs) -> Result<Outcome> {
    let pool = config.pool(&args.pool)?;
    if args.dry_run {
        return dry_run(config, pool, args);
    }
    let to = pool.server(&args.target)?;
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let confirmed = super::shared::before_confirm(config, member.as_ref(), &pool.name)?;
    let question = format!(
        "Promote {} ({}) in pool {} ({}), run its failover chain, and lock the pool?",
        to.as_str(),
        pool.address(to),
        pool.name,
        super::shared::describe(pool.servers().servers, confirmed.as_ref())
    );
    if !super::shared::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let current = super::shared::pool_record(member.as_ref(), &state, &pool.name)?;
    super::shared::unchanged_since_confirmed(
        &pool.name,
        pool.servers().servers,
        confirmed.as_ref(),
        current.as_ref(),
    )?;
    super::shared::refuse_if_held(config, &state, pool)?;
    let mut rec = current.unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
    if guard(pool, &rec, to, args.force)? == Guarded::AlreadyActive {
        return Ok(Outcome::Done);
    }
    let who = super::shared::actor();
    let first_new = state
        .history(Some(&pool.name), 1)?
        .last()
        .map_or(0, |e| e.id);
    let why = if args.force {
        "a manual promote, forced past an old primary that answers with errors".to_string()
    } else {
        "a manual promote".to_string()
    };
    // On a terminal each step shows as it runs; otherwise the record is printed at the end.
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let show = |p: Progress| show(pool, to, p);
    let owner = member
        .as_ref()
        .map(|m| format!("promote by {who} on {}", m.settings.name));
    let attempt = Attempt {
        config,
        pool,
        actor: &who,
        why,
        second_opinion: SecondOpinion::Skip,
        force: Force::when(args.force),
        fence: match (&member, &owner) {
            (Some(member), Some(owner)) => Fence::Person { member, owner },
            _ => Fence::Local,
        },
        progress: if live { &show } else { &chain::quiet },
    };
    let end = match failover::run(&state, &attempt, &mut rec, to)? {
        Ended::Refused { reason, details } => return refuse(&state, pool, &who, reason, details),
        Ended::Chain(end) => end,
    };
    if !live {
        print_events(&state, &pool.name, first_new)?;
    }
    println!("pool {}: {}", pool.name, rec.reason);
    Ok(if end == PoolState::FailedOver {
        Outcome::Done
    } else {
        Outcome::NeedsAttention
    })
}

/// `promote --dry-run`: the plan with every preflight; nothing changes.
fn dry_run(config: &Config, pool: &Pool, args: &PromoteArgs) -> Result<Outcome> {
    let to = pool.server(&args.target)?;
    let rec = State::open_read_only(&config.state_dir)?
        .map(|s| s.pool(&pool.name))
        .transpose()?
        .flatten()
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
    let from = rec.active;
    if rec.active == to {
        println!(
            "pool {}: {} ({}) is already active; promote would change nothing",
            pool.name,
            to.as_str(),
            pool.address(to)
        );
        return Ok(Outcome::Done);
    }
    let plan = failover::plan(pool, from, to);
    print!(
        "pool {}: {}, would promote {} ({})\n{plan}",
        pool.name,
        rec.state.as_str(),
        to.as_str(),
        pool.address(to)
    );
    let opts = chain::Options {
        dry_run: true,
        force: Force::when(args.force),
        sessions: None,
    };
    let (_, failure) = chain::preflight(pool, from, to, opts);
    Ok(match failure {
        Some(reason) => {
            println!("promote would be refused: {}", reason.text);
            Outcome::NeedsAttention
        }
        None => Outcome::Done,
    })
}

/// What [`guard`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guarded {
    /// The target is active already: nothing to do (said so).
    AlreadyActive,
    Go,
}

/// The promote guard ([`rules::promote_guard`]) with the target's check; a refusal is an
/// error that says why.
fn guard(pool: &Pool, rec: &PoolRecord, to: Role, force: bool) -> Result<Guarded> {
    let target = monitor::check(pool, to);
    let refused = |why: String| Error::Failed(format!("cannot promote: {why}; nothing changed"));
    match rules::promote_guard(rec.state, rec.active == to, target.health.is_alive()) {
        Ok(true) => {
            println!(
                "pool {}: {} ({}) is already active; nothing changed",
                pool.name,
                to.as_str(),
                pool.address(to)
            );
            Ok(Guarded::AlreadyActive)
        }
        Ok(false) if force => Ok(Guarded::Go),
        Ok(false) => match data_safety(pool, rec, to, &target) {
            Ok(()) => Ok(Guarded::Go),
            Err(why) => Err(refused(format!(
                "{}; `deadpool promote --force {} {}` promotes it anyway, losing what it lacks",
                why.text,
                pool.name,
                pool.address(to)
            ))
            .into()),
        },
        Err(why) if rec.state == PoolState::FailingOver => Err(refused(format!(
            "pool {} has {why}; the next tick marks it, then look at `deadpool history --pool {}` and run `deadpool reset`",
            pool.name, pool.name
        ))
        .into()),
        Err(why) => Err(refused(format!(
            "{why}: {} ({}) says {}",
            to.as_str(),
            pool.address(to),
            target.message
        ))
        .into()),
    }
}

/// While the active server is down, the target must be a standby a tick could promote (it
/// lacks nothing the old primary had when last seen, it is not `never_promote`): the rule
/// that keeps acknowledged writes holds for a person too, unless forced.
fn data_safety(
    pool: &Pool,
    rec: &PoolRecord,
    to: Role,
    target: &monitor::Check,
) -> Result<(), rules::BlockReason> {
    let active = monitor::check(pool, rec.active);
    if active.health.is_alive() {
        // The promoting step fences the old primary and waits for the target to catch up.
        return Ok(());
    }
    let same_host = |a: &str, b: &str| crate::net::same_host(a, b, pool.monitor.timeout);
    crate::round::promote_is_safe(
        &crate::round::PoolSettings::of(pool),
        rec,
        to,
        target,
        &same_host,
    )
}

/// A refused promote: recorded with the failed preflights, and an error.
fn refuse(
    state: &State,
    pool: &Pool,
    who: &str,
    reason: rules::BlockReason,
    details: Vec<Event>,
) -> Result<Outcome> {
    let mut events = vec![
        EventKind::PromoteRefused
            .of(&pool.name, who)
            .status(Status::Critical)
            .message(reason.text.clone()),
    ];
    events.extend(details);
    state.add_events(&events)?;
    Err(Error::Failed(format!("promote refused, nothing changed: {}", reason.text)).into())
}

/// The live display on a terminal.
fn show(pool: &Pool, to: Role, p: Progress) {
    match p {
        Progress::Committing => println!(
            "promoting {} ({}) in pool {}:",
            to.as_str(),
            pool.address(to),
            pool.name
        ),
        Progress::Started {
            index,
            total,
            name,
            type_name,
        } => {
            print!("  [{}/{total}] {name} ({type_name}) ... ", index + 1);
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        Progress::Finished { hosts } => {
            println!("{}", protocol::worst(hosts).as_str());
            for h in hosts {
                println!(
                    "        {:<8} {:<14} {}",
                    h.status.as_str(),
                    h.host,
                    one_line(&h.message)
                );
            }
        }
    }
}

/// The chain's record, printed at the end when there was no live display.
fn print_events(state: &State, pool: &str, first_new: i64) -> Result<()> {
    let events = state.history(Some(pool), 10_000)?;
    for e in events.iter().filter(|e| e.id > first_new) {
        let target = if e.host.is_empty() {
            e.step.clone()
        } else {
            format!("{} @ {}", e.step, e.host)
        };
        println!(
            "{:<17} {:<8} {target} {}",
            e.event,
            e.status.map_or("", Status::as_str),
            one_line(&e.message)
        );
    }
    Ok(())
}
