//! The failover attempt, the one path of both `tick` (automatic) and `promote` (by hand):
//! every SSH login the chain needs opened at once, the second opinion (SPEC 6.2b) while they
//! open, every preflight (6.2c) with its history events, then [`chain::execute`]: the commit
//! of `failing_over`, the steps and the end state. What the two callers differ in is an
//! [`Attempt`] field; what they do with a refusal (a tick blocks the pool, `promote`
//! refuses) stays theirs, since the attempt returns it as data ([`Ended::Refused`]).

pub mod plan;

use anyhow::Result;

use crate::chain::{self, Guard, Progress};
use crate::cluster::Member;
use crate::config::{Config, Pool};
use crate::model::{PoolState, Role};
use crate::protocol::Force;
use crate::rules::BlockReason;
use crate::ssh::Sessions;
use crate::state::{Event, PoolRecord, State};

pub use plan::{FailoverPlan, plan, plan_steps};

/// Whether the observers of `confirm_from` are asked before the preflights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondOpinion {
    /// An automatic failover: ask them; one that still reaches the primary blocks it.
    Ask,
    /// A person decided: nobody else is asked.
    Skip,
}

/// What proves, before the commit and before each step, that this chain may go on.
#[derive(Debug, Clone, Copy)]
pub enum Fence<'a> {
    /// Without `[cluster]`: the instance lock is enough.
    Local,
    /// A tick with `[cluster]`: this member leads.
    Leader(&'a Member),
    /// A person's chain with `[cluster]` (`promote`): its own lease and key, taken once
    /// the preflights passed; `owner` says who runs it, for the other members.
    Person { member: &'a Member, owner: &'a str },
}

/// How one failover attempt runs.
pub struct Attempt<'a> {
    pub config: &'a Config,
    pub pool: &'a Pool,
    /// Who asked, for history (`tick`, or the person's name).
    pub actor: &'a str,
    /// Why, for history; the second opinion's votes are added to it.
    pub why: String,
    pub second_opinion: SecondOpinion,
    pub force: Force,
    pub fence: Fence<'a>,
    /// Called when the chain is about to commit and around each step, for a live display.
    pub progress: &'a (dyn Fn(Progress) + Sync),
}

impl std::fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("pool", &self.pool.name)
            .field("actor", &self.actor)
            .field("second_opinion", &self.second_opinion)
            .field("force", &self.force)
            .finish()
    }
}

/// How an attempt ended.
#[derive(Debug)]
pub enum Ended {
    /// Refused before any change, by the second opinion or a preflight; `details` are the
    /// failed preflights' history events (not written yet).
    Refused {
        reason: BlockReason,
        details: Vec<Event>,
    },
    /// The chain ran; its end state (`failed_over` or `failover_failed`).
    Chain(PoolState),
}

/// Runs a failover attempt toward `to` from `rec` (updated as the chain goes). An error is
/// either the commit of `failing_over` that failed (then no step ran) or a person's fence
/// that could not be taken (then nothing changed).
pub fn run(state: &State, attempt: &Attempt, rec: &mut PoolRecord, to: Role) -> Result<Ended> {
    let (pool, from) = (attempt.pool, rec.active);
    // Every SSH login the chain needs is opened now, while the observers are asked.
    let sessions = Sessions::default();
    let logins = chain::logins(pool, from, to);
    let limit = attempt.config.ssh.connect_timeout * 2;
    let opinion = std::thread::scope(|s| {
        s.spawn(|| sessions.open_all(&logins, limit));
        match attempt.second_opinion {
            SecondOpinion::Ask => crate::opinion::ask(attempt.config, pool, from),
            SecondOpinion::Skip => None,
        }
    });
    if let Some(reason) = opinion.as_ref().and_then(|o| o.blocks()) {
        let details = Vec::new();
        return Ok(Ended::Refused { reason, details });
    }
    let opts = chain::Options {
        dry_run: false,
        force: attempt.force,
        sessions: Some(&sessions),
    };
    let (preflights, verdict) = chain::preflight(pool, from, to, opts);
    if let Some(reason) = verdict {
        let details = chain::preflight_events(pool, attempt.actor, &preflights);
        return Ok(Ended::Refused { reason, details });
    }
    let mut why = attempt.why.clone();
    if let Some(o) = &opinion {
        why.push_str(&format!("; second opinion: {}", o.describe()));
    }
    (attempt.progress)(Progress::Committing);
    let person = match attempt.fence {
        Fence::Person { member, owner } => Some(member.person_chain(owner)?),
        Fence::Local | Fence::Leader(_) => None,
    };
    let guard: Option<&(dyn Guard + Sync)> = match (&attempt.fence, &person) {
        (_, Some(p)) => Some(p),
        (Fence::Leader(member), None) => Some(*member),
        _ => None,
    };
    let run = chain::Run {
        from: rec.active,
        actor: attempt.actor,
        why: &why,
        force: attempt.force,
        sessions: Some(&sessions),
        progress: attempt.progress,
        guard,
    };
    chain::execute(state, pool, rec, to, &run).map(Ended::Chain)
}
