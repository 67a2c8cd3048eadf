//! `deadpool history`: the recorded events, oldest first.

use anyhow::Result;

use crate::cli::HistoryArgs;
use crate::config::Config;
use crate::error::Outcome;
use crate::state::State;
use crate::text::{format_time, one_line, printable};

pub fn run(config: &Config, args: &HistoryArgs) -> Result<Outcome> {
    if let Some(name) = &args.pool {
        config.pool(name)?;
    }
    let Some(state) = State::open_read_only(&config.state_dir)? else {
        if !args.json {
            println!(
                "no history yet: no tick has run with state dir {}",
                config.state_dir.display()
            );
        }
        return Ok(Outcome::Done);
    };
    let mut events = state.history(args.pool.as_deref(), args.limit)?;
    if let Some(cluster) = &config.cluster {
        // Each member's own history, and the chains other members ran (kept in etcd).
        match crate::cluster::Member::new(cluster).others_events() {
            Ok(others) => {
                events.extend(
                    others
                        .into_iter()
                        .filter(|e| args.pool.is_none() || e.pool == args.pool),
                );
                events.sort_by_key(|e| e.at);
                let excess = events.len().saturating_sub(args.limit as usize);
                events.drain(..excess);
            }
            Err(e) => crate::warn!("cannot read the other members' chain events from etcd: {e:#}"),
        }
    }
    for e in events {
        if args.json {
            println!("{}", serde_json::to_string(&e)?);
            continue;
        }
        let mut line = format!(
            "{}  {:<12} {:<17}",
            format_time(e.at),
            e.pool.as_deref().unwrap_or("-"),
            e.event
        );
        if let Some(status) = e.status {
            line.push_str(&format!(" {:<8}", status.as_str()));
        }
        if !e.step.is_empty() {
            line.push_str(&format!(
                " [{}{}]",
                e.step,
                if e.host.is_empty() {
                    String::new()
                } else {
                    format!(" @ {}", e.host)
                }
            ));
        }
        line.push(' ');
        line.push_str(&one_line(&e.message));
        if let Some(ms) = e.duration_ms {
            line.push_str(&format!(" ({:.2}s)", ms as f64 / 1000.0));
        }
        if !e.actor.is_empty() && e.actor != "tick" {
            line.push_str(&format!(" by {}", one_line(&e.actor)));
        }
        println!("{line}");
        if !e.output.trim().is_empty() && e.output.trim() != e.message.trim() {
            for l in printable(&e.output).lines().take(20) {
                println!("      | {l}");
            }
        }
    }
    Ok(Outcome::Done)
}
