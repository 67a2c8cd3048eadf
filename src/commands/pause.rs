//! `deadpool pause POOL --for DURATION [--reason TEXT]` and `deadpool resume POOL`: a
//! maintenance pause. A paused pool is checked and reported as usual, but no tick runs its
//! chain ([`crate::rules::decide`]); the pause always ends by itself, and the tick that
//! sees it end records that in the history.

use anyhow::Result;

use crate::cli::{PauseArgs, ResumeArgs};
use crate::config::{Config, format_duration, parse_duration};
use crate::error::{Error, Outcome};
use crate::model::EventKind;
use crate::model::Status;
use crate::rules;
use crate::state::{Pause, PoolRecord, Snapshot, now_ms};
use crate::text::format_time;

/// The longest reason kept, in characters: it is shown on Nagios's one line.
const REASON_MAX: usize = 200;

pub fn pause(config: &Config, args: &PauseArgs) -> Result<Outcome> {
    let pool = config.pool(&args.pool)?;
    let Some(text) = &args.duration else {
        return Err(Error::Usage(format!(
            "pause needs --for DURATION (e.g. `deadpool pause {} --for 30min`): a pause always ends by itself, so none is forgotten; `deadpool resume {}` ends it early",
            pool.name, pool.name
        ))
        .into());
    };
    let length = parse_duration(text).map_err(|e| Error::Usage(format!("--for: {e}")))?;
    let reason = check_reason(args.reason.as_deref().unwrap_or(""))?;
    let who = super::shared::actor();
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let now = now_ms();
    // With [cluster], the pool's state is etcd's: the pause acts cluster-wide.
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    super::shared::refuse_if_held(config, &state, pool)?;
    let current = super::shared::pool_record(member.as_ref(), &state, &pool.name)?;
    let seen = Snapshot::of(current.as_ref());
    let mut rec = current.unwrap_or_else(|| PoolRecord::new(&pool.name, now));
    let until = now.saturating_add(i64::try_from(length.as_millis()).unwrap_or(i64::MAX));
    let before = rec
        .pause
        .take()
        .filter(|p| rules::paused(Some(p.until), now));
    let pause = Pause {
        until,
        since: now,
        by: who.clone(),
        reason,
    };
    let mut message = format!(
        "paused for {} until {}{}",
        format_duration(length),
        format_time(until),
        in_parentheses(&pause.reason)
    );
    if let Some(b) = &before {
        message.push_str(&format!(
            " (replaces the pause by {} until {})",
            b.by,
            format_time(b.until)
        ));
    }
    let event = EventKind::Paused
        .of(&pool.name, &who)
        .status(Status::Warning)
        .message(message.clone());
    rec.pause = Some(pause);
    if let Some(m) = &member {
        m.write_pool_as_person(&rec, &seen)?;
    }
    state.save_pool(&rec, &[event])?;
    println!(
        "pool {}: {message}; it is checked and reported, but does not fail over until then. `deadpool resume {}` ends the pause early",
        pool.name, pool.name
    );
    Ok(Outcome::Done)
}

pub fn resume(config: &Config, args: &ResumeArgs) -> Result<Outcome> {
    let pool = config.pool(&args.pool)?;
    let who = super::shared::actor();
    let (_lock, state) = super::shared::lock_for_change(config)?;
    let now = now_ms();
    let member = config.cluster.as_ref().map(crate::cluster::Member::new);
    let Some(mut rec) = super::shared::pool_record(member.as_ref(), &state, &pool.name)? else {
        println!("pool {}: not paused; nothing changed", pool.name);
        return Ok(Outcome::Done);
    };
    match rec.pause.take() {
        Some(p) if rules::paused(Some(p.until), now) => {
            let message = format!(
                "resumed: the pause by {} until {}{} ends now",
                p.by,
                format_time(p.until),
                in_parentheses(&p.reason)
            );
            let event = EventKind::Resumed
                .of(&pool.name, &who)
                .message(message.clone());
            if let Some(m) = &member {
                m.write_pool_as_person(&rec, &Snapshot::of(Some(&rec)))?;
            }
            state.save_pool(&rec, &[event])?;
            println!(
                "pool {}: {message}; the pool fails over again when the rules say so",
                pool.name
            );
        }
        Some(p) => println!(
            "pool {}: not paused (the pause by {} ended at {}); nothing changed",
            pool.name,
            p.by,
            format_time(p.until)
        ),
        None => println!("pool {}: not paused; nothing changed", pool.name),
    }
    Ok(Outcome::Done)
}

/// A reason must fit on a report line: one line, printable, at most [`REASON_MAX`].
fn check_reason(reason: &str) -> Result<String, Error> {
    let reason = reason.trim();
    if reason.chars().any(char::is_control) {
        return Err(Error::Usage(
            "--reason: one line of text without control characters, please".to_string(),
        ));
    }
    if reason.contains('|') {
        return Err(Error::Usage(
            "--reason: `|` is not allowed (Nagios reads what follows it as performance data)"
                .to_string(),
        ));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(Error::Usage(format!(
            "--reason: at most {REASON_MAX} characters, please (got {}); put the details in your ticket",
            reason.chars().count()
        )));
    }
    Ok(reason.to_string())
}

/// ` (REASON)` for history messages, which end with ` by WHO`.
fn in_parentheses(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(
            check_reason("  kernel 6.1 upgrade ").unwrap(),
            "kernel 6.1 upgrade"
        );
        assert_eq!(check_reason("").unwrap(), "");
        for bad in ["a\nb", "a\tb", "a|b", &"x".repeat(201)] {
            assert!(check_reason(bad).is_err(), "{bad:?}");
        }
    }
}
