//! `deadpool promote POOL primary|secondary`: a failover by hand toward the named server
//! (SPEC 6.4): the same preflights and chain as an automatic failover, then the pool locks.

use anyhow::Result;

use crate::chain::{self, EventKind, Progress};
use crate::cli::PromoteArgs;
use crate::config::Config;
use crate::error::{Error, Outcome};
use crate::model::{PoolState, Status};
use crate::monitor;
use crate::protocol;
use crate::rules;
use crate::ssh::Sessions;
use crate::state::{PoolRecord, State, now_ms};

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
        let opts = chain::Options {
            dry_run: true,
            force: args.force,
            sessions: None,
        };
        let (_, failure) = chain::preflight(pool, from, to, opts);
        return Ok(match failure {
            Some(reason) => {
                println!("promote would be refused: {}", reason.text);
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
    let (_lock, state) = super::lock_for_change(config)?;
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let mut rec = super::pool_record(member.as_ref(), &state, &pool.name)?
        .unwrap_or_else(|| PoolRecord::new(&pool.name, now_ms()));
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
            return Ok(Outcome::Done);
        }
        Ok(false) => {}
        Err(why) if rec.state == PoolState::FailingOver => {
            return Err(refused(format!(
                "pool {} has {why}; the next tick marks it, then look at `deadpool history --pool {}` and run `deadpool reset`",
                pool.name, pool.name
            ))
            .into());
        }
        Err(why) => {
            return Err(refused(format!(
                "{why}: {} ({}) says {}",
                to.as_str(),
                pool.address(to),
                target.message
            ))
            .into());
        }
    }
    // Every SSH login the chain needs, opened at once and kept for its steps.
    let sessions = Sessions::default();
    sessions.open_all(
        &chain::logins(pool, from, to),
        config.ssh.connect_timeout * 2,
    );
    let opts = chain::Options {
        dry_run: false,
        force: args.force,
        sessions: Some(&sessions),
    };
    let (preflights, failure) = chain::preflight(pool, from, to, opts);
    if let Some(reason) = failure {
        let mut events = vec![
            EventKind::PromoteRefused
                .of(&pool.name, &who)
                .status(Status::Critical)
                .message(reason.text.clone()),
        ];
        events.extend(chain::preflight_events(pool, &who, &preflights));
        state.add_events(&events)?;
        return Err(
            Error::Failed(format!("promote refused, nothing changed: {}", reason.text)).into(),
        );
    }
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
    if live {
        println!(
            "promoting {} ({}) in pool {}:",
            to.as_str(),
            pool.address(to),
            pool.name
        );
    }
    let show = |p: Progress| match p {
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
                    h.message
                );
            }
        }
    };
    let person = match &member {
        Some(m) => Some(m.person_chain(&format!("promote by {who} on {}", m.settings.name))?),
        None => None,
    };
    let run = chain::Run {
        actor: &who,
        why: &why,
        force: args.force,
        sessions: Some(&sessions),
        progress: if live { &show } else { &chain::quiet },
        guard: person
            .as_ref()
            .map(|p| p as &(dyn crate::chain::Guard + Sync)),
    };
    let end = chain::execute(&state, pool, &mut rec, to, &run)?;
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
        println!(
            "{:<17} {:<8} {target} {}",
            e.event,
            e.status.map_or("", Status::as_str),
            e.message
        );
    }
    println!("pool {}: {}", pool.name, rec.reason);
    Ok(if end == PoolState::FailedOver {
        Outcome::Done
    } else {
        Outcome::NeedsAttention
    })
}
