//! `deadpool promote POOL primary|secondary`: a failover by hand toward the named server
//! (SPEC 6.4): the same preflights and chain as an automatic failover, then the pool locks.

use anyhow::Result;

use crate::chain;
use crate::cli::PromoteArgs;
use crate::config::Config;
use crate::error::{Error, Outcome};
use crate::monitor;
use crate::report::Status;
use crate::state::{Lock, PoolRecord, PoolState, State, now_ms};

pub fn run(config: &Config, args: &PromoteArgs) -> Result<Outcome> {
    let pool = config.pool(&args.pool)?;
    let to = args.target;
    let from = to.other();
    let who = super::actor();

    if args.dry_run {
        let rec = State::open_read_only(&config.state_dir)?
            .map(|s| s.pool(&pool.name))
            .transpose()?
            .flatten()
            .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
        if rec.active == to {
            println!(
                "pool {}: {} ({}) is already active; promote would change nothing",
                pool.name,
                to.as_str(),
                pool.address(to)
            );
            return Ok(Outcome::Done);
        }
        let plan = super::tick::plan(pool, from, to);
        print!(
            "pool {}: {}, would promote {} ({})\n{plan}",
            pool.name,
            rec.state.as_str(),
            to.as_str(),
            pool.address(to)
        );
        let (_, failure) = chain::preflight(pool, from, to, true);
        return Ok(match failure {
            Some(reason) => {
                println!("promote would be refused: {reason}");
                Outcome::NeedsAttention
            }
            None => Outcome::Done,
        });
    }

    let question = format!(
        "Promote {} ({}) in pool {}, run its failover chain, and lock the pool?",
        to.as_str(),
        pool.address(to),
        pool.name
    );
    if !super::confirm(&question, args.yes)? {
        println!("nothing changed");
        return Ok(Outcome::NeedsAttention);
    }
    let wait = config.lock_wait();
    let Some(_lock) = Lock::acquire(&config.state_dir, wait)? else {
        return Err(Error::Failed(format!(
            "{} still holds the instance lock after {:.0}s; nothing changed, try again",
            Lock::holder(&config.state_dir),
            wait.as_secs_f64()
        ))
        .into());
    };
    let state = State::open(&config.state_dir)?;
    let mut rec = state
        .pool(&pool.name)?
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
    if rec.state == PoolState::FailingOver {
        return Err(Error::Failed(format!(
            "pool {} has an interrupted failover (state failing_over); the next tick marks it, then look at `deadpool history --pool {}` and run `deadpool reset`",
            pool.name, pool.name
        ))
        .into());
    }
    if rec.active == to {
        println!(
            "pool {}: {} ({}) is already active; nothing changed",
            pool.name,
            to.as_str(),
            pool.address(to)
        );
        return Ok(Outcome::Done);
    }
    let target = monitor::check(pool, to);
    if !target.health.is_alive() {
        let reason = format!(
            "{} ({}) is down: {}; nothing changed",
            to.as_str(),
            pool.address(to),
            target.message
        );
        return Err(Error::Failed(format!("cannot promote: {reason}")).into());
    }
    let (preflights, failure) = chain::preflight(pool, from, to, false);
    if let Some(reason) = failure {
        let mut events = vec![chain::event(
            pool,
            "promote_refused",
            &who,
            "",
            "",
            Status::Critical,
            &reason,
            "",
        )];
        events.extend(chain::preflight_events(pool, &who, &preflights));
        state.add_events(&events)?;
        return Err(Error::Failed(format!("promote refused, nothing changed: {reason}")).into());
    }
    let first_new = state
        .history(Some(&pool.name), 1)?
        .last()
        .map_or(0, |e| e.id);
    let why = "a manual promote".to_string();
    // On a terminal each step shows as it runs; otherwise the record is printed at the end.
    let live = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if live {
        println!(
            "promoting {} ({}) in pool {}:",
            to.as_str(),
            pool.address(to),
            pool.name
        );
    }
    let end = chain::execute(&state, pool, &mut rec, to, &who, &why, live)?;
    let events = if live {
        Vec::new()
    } else {
        state.history(Some(&pool.name), 10_000)?
    };
    for e in events.iter().filter(|e| e.id > first_new) {
        let target = if e.host.is_empty() {
            e.step.clone()
        } else {
            format!("{} @ {}", e.step, e.host)
        };
        println!("{:<17} {:<8} {target} {}", e.event, e.status, e.message);
    }
    println!("pool {}: {}", pool.name, rec.reason);
    Ok(if end == PoolState::FailedOver {
        Outcome::Done
    } else {
        Outcome::NeedsAttention
    })
}
