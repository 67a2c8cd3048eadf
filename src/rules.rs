//! Every decision rule of SPEC section 6, as pure functions over plain data: the failure
//! count and the timer gap, what a tick does next with a pool, the second opinion's
//! verdict, the preflight verdict, when a blocked pool's reason is news, how a chain goes
//! on after a step and how its results fold into the end state, the split-brain rule, and
//! the guards of `promote` and `reset`; with several standbys, how far each followed the
//! primary, which one a tick may promote, and the replicas' second opinion. The commands
//! gather the facts, call these, and act; nothing here does I/O, and each rule has a table
//! test below.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Health, PoolState, Status};
use crate::position::{Position, Unit};

/// A gap of more than this many tick intervals restarts every failure count.
pub const GAP_INTERVALS: i64 = 3;

/// One detection round as recorded: when it started and how long it took (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub started_at: i64,
    pub duration_ms: i64,
}

/// Whether the timer left a gap before the round starting at `now`: the time between the
/// previous round's end and this start is over [`GAP_INTERVALS`] intervals (a suspend, a
/// stopped timer, a clock jump forward), or the clock went back. A slow round is never a
/// gap: its own duration is not counted, and nothing else a tick does delays a round.
pub fn timer_gap(previous: Option<Round>, now: i64, tick_interval_ms: i64) -> bool {
    match previous {
        None => false,
        Some(p) => {
            now < p.started_at
                || now - (p.started_at + p.duration_ms) > GAP_INTERVALS * tick_interval_ms
        }
    }
}

/// Counts this round's check of the active server: a failure adds one, an answer resets to
/// 0, and a gap restarts the count first.
pub fn count(failures_before: u32, gap: bool, active: Health) -> u32 {
    if active.is_alive() {
        0
    } else if gap {
        1
    } else {
        failures_before.saturating_add(1)
    }
}

/// What one round knows about one pool before deciding.
#[derive(Debug, Clone)]
pub struct Input {
    pub state: PoolState,
    pub failures: u32,
    pub max_failed_checks: u32,
    pub gap: bool,
    pub active: Health,
    /// Why no failover could start now, were the threshold reached: no standby may be
    /// promoted ([`candidate`]), or the replicas say the primary is alive. `None`: one may.
    pub standby_blocks: Option<BlockReason>,
    /// The time-based mode (`down_for`): `None` for a count of ticks; `Some(confirmed)`,
    /// whether the active server has been down for `down_for` (re-checked within the tick).
    pub down_for: Option<bool>,
    /// A maintenance pause is on ([`paused`]).
    pub paused: bool,
}

/// What the tick does next with the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep watching; nothing else changes (armed and counting, or locked).
    Watch,
    /// The active server answered again: a blocked pool goes back to armed.
    Rearm,
    /// The threshold is reached but the failover cannot happen now: blocked, nothing changed.
    Block(BlockReason),
    /// The threshold is reached and a standby may be promoted: ask the second opinion, run every
    /// preflight, then the chain.
    Failover,
    /// A chain was in progress and no process holds the lock any more: it was interrupted.
    Interrupt,
    /// Time-based mode: the active server failed; re-check it every `recheck_interval` in
    /// this tick until it answers or has been down for `down_for`.
    Confirm,
    /// The threshold is reached, but the pool is paused: no chain, nothing blocked, the
    /// state stays as it is and the count goes on. When the pause ends with the active
    /// server still failing, the next round fails over.
    Paused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The consecutive-failure count after this round.
    pub failures: u32,
    pub next: Next,
}

pub fn decide(input: Input) -> Decision {
    let failures = count(input.failures, input.gap, input.active);
    let reached = match input.down_for {
        None => failures >= input.max_failed_checks,
        Some(confirmed) => confirmed && !input.active.is_alive(),
    };
    let next = match input.state {
        PoolState::FailingOver => Next::Interrupt,
        state if state.is_locked() => Next::Watch,
        // Time-based: a paused pool confirms nothing (the threshold is never reached while
        // paused), so a failing active server is already all a pause holds back.
        _ if !reached && input.down_for.is_some() && !input.active.is_alive() => {
            if input.paused {
                Next::Paused
            } else {
                Next::Confirm
            }
        }
        _ if !reached => {
            // Only an answer re-arms a blocked pool; after a gap its count restarts and
            // it stays blocked until the threshold is reached again.
            if input.state == PoolState::Blocked && input.active.is_alive() {
                Next::Rearm
            } else {
                Next::Watch
            }
        }
        _ if input.paused => Next::Paused,
        _ => match input.standby_blocks {
            Some(reason) => Next::Block(reason),
            None => Next::Failover,
        },
    };
    Decision { failures, next }
}

/// Whether a pause ending at `until` is still on at `now`: it ends by itself, and a pause
/// whose end has passed counts as none even before a tick records its end.
pub fn paused(until: Option<i64>, now: i64) -> bool {
    until.is_some_and(|until| now < until)
}

/// Why a failover is blocked. `kind` says which rule, which step, which hosts and which
/// status: it changes only when the reason changes in kind, so a pool that stays blocked
/// records one history event, however its text (times, counters) varies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockReason {
    pub kind: String,
    pub text: String,
}

impl BlockReason {
    pub fn new(kind: impl Into<String>, text: impl Into<String>) -> BlockReason {
        BlockReason {
            kind: kind.into(),
            text: text.into(),
        }
    }
}

/// Time-based mode: whether an outage that started at `down_since` (ms) is confirmed at
/// `now`, that is, the active server has stayed down for `down_for`. Both times are
/// readings of the monotonic clock: a step of the wall clock is no down time.
pub fn outage_confirmed(down_since: i64, now: i64, down_for_ms: i64) -> bool {
    now - down_since >= down_for_ms
}

/// Whether blocking with `reason` is news for the history: the pool was not blocked, or
/// was blocked for a reason of another kind.
pub fn block_is_news(state: PoolState, recorded_kind: &str, reason: &BlockReason) -> bool {
    state != PoolState::Blocked || recorded_kind != reason.kind
}

/// One observer's answer to "do you reach the primary at the monitor's protocol level?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vote {
    /// The primary answered the observer (a greeting, a reply, an error reply, a plugin's
    /// OK or WARNING): it is alive, only cut off from deadpool.
    Reaches(String),
    /// The observer got no answer within the monitor's timeout: refused, unreachable, or
    /// connected with no greeting (a hung server).
    CannotReach(String),
    /// The observer itself could not be asked: its vote does not count.
    Abstains(String),
}

/// The second opinion's verdict: `Some(reason)` blocks the failover, when any observer
/// that answered still reaches the primary. Abstentions never block.
pub fn second_opinion(votes: &[(String, Vote)], describe: &str) -> Option<BlockReason> {
    let reaching: Vec<&str> = votes
        .iter()
        .filter(|(_, v)| matches!(v, Vote::Reaches(_)))
        .map(|(h, _)| h.as_str())
        .collect();
    if reaching.is_empty() {
        return None;
    }
    Some(BlockReason::new(
        format!("second_opinion:{}", reaching.join(",")),
        format!("second opinion: the primary is cut off from deadpool only; {describe}"),
    ))
}

/// One host's preflight result, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVerdict {
    pub host: String,
    pub status: Status,
    pub message: String,
}

/// Whether a host's result fails its step, in a preflight or in the chain: only a status
/// worse than WARNING does. A WARNING says the step did its part but left something beside
/// it to a person (a standby the promotion could not repoint), which must not stop the
/// service from moving.
pub fn fails_step(status: Status) -> bool {
    status > Status::Warning
}

/// The preflight verdict over every step (chain order, every step run): the first step
/// with a host result that [`fails_step`] blocks the failover; a step with no result at all
/// fails.
pub fn preflight(steps: &[(&str, Vec<HostVerdict>)]) -> Option<BlockReason> {
    for (index, (name, hosts)) in steps.iter().enumerate() {
        let bad: Vec<&HostVerdict> = hosts.iter().filter(|h| fails_step(h.status)).collect();
        if bad.is_empty() && !hosts.is_empty() {
            continue;
        }
        let kind = format!(
            "preflight:{}:{}",
            index + 1,
            bad.iter()
                .map(|h| format!("{}={}", h.host, h.status.as_str()))
                .collect::<Vec<_>>()
                .join(",")
        );
        let text = if bad.is_empty() {
            "no result".to_string()
        } else {
            bad.iter()
                .map(|h| format!("{}: {}", h.host, h.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Some(BlockReason::new(
            kind,
            format!("preflight of step {} `{name}` failed: {text}", index + 1),
        ));
    }
    None
}

/// What the chain does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStep {
    Continue,
    /// The step failed with `on_failure = "abort"`: every later step is skipped.
    Abort,
}

pub fn after_step(succeeded: bool, abort_on_failure: bool) -> AfterStep {
    if !succeeded && abort_on_failure {
        AfterStep::Abort
    } else {
        AfterStep::Continue
    }
}

/// A chain's end state from its steps' results (skipped steps count as not succeeded):
/// `failed_over` only when every step succeeded. Locked either way.
pub fn chain_end(succeeded: &[bool]) -> PoolState {
    if succeeded.iter().all(|ok| *ok) {
        PoolState::FailedOver
    } else {
        PoolState::FailoverFailed
    }
}

/// The split-brain rule: the standby is writable while the pool is locked (failed over
/// toward the active one), or both servers are writable. Unknown counts as not writable.
pub fn split_brain(
    locked: bool,
    active_writable: Option<bool>,
    standby_writable: Option<bool>,
) -> bool {
    let standby = standby_writable == Some(true);
    standby && (locked || active_writable == Some(true))
}

/// Why `promote` refuses before changing anything; `Ok(true)` means there is nothing to do
/// (the target is already active).
pub fn promote_guard(
    state: PoolState,
    target_is_active: bool,
    target_alive: bool,
) -> Result<bool, String> {
    if state == PoolState::FailingOver {
        return Err("an interrupted failover (state failing_over)".to_string());
    }
    if target_is_active {
        return Ok(true);
    }
    if !target_alive {
        return Err("the target server is down".to_string());
    }
    Ok(false)
}

/// Whether `reset` may re-arm: the active server answers, or a person forces it.
pub fn reset_allowed(active_alive: bool, force: bool) -> bool {
    active_alive || force
}

/// Whether the readiness self-checks are due (a clock that went backwards makes them due).
/// They wait while an armed pool's active server is failing: its next checks matter more.
pub fn readiness_due(last: Option<i64>, now: i64, interval_ms: i64, counting: bool) -> bool {
    if counting {
        return false;
    }
    match last {
        None => true,
        Some(last) => now < last || now - last >= interval_ms,
    }
}

// Several standbys (SPEC 6, step 2a): what a pool learns each round of how far its standbys
// follow the primary, which standby a tick may promote, and what the replicas say of the
// primary.

/// How many of the primary's positions a pool keeps. A standby's `caught_up_at` is worked
/// out anew every round, so a few recent samples suffice: one that stopped receiving long
/// ago keeps the time it was last caught up.
pub const PRIMARY_SAMPLES: usize = 8;

/// What a pool has learned of its primary's stream and its standbys' places in it, stored
/// (as JSON) every round and read when the primary fails.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Progress {
    /// The serving primary's address, as the pool's servers write it.
    pub primary: String,
    /// Its positions seen in healthy rounds, each with its time (ms since epoch), oldest
    /// first, at most [`PRIMARY_SAMPLES`].
    pub samples: Vec<(i64, Position)>,
    /// Per standby address: how far it followed this primary's stream.
    pub standbys: BTreeMap<String, StandbyProgress>,
}

/// How far one standby followed the primary's stream, when last seen doing so.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandbyProgress {
    pub received: Option<Position>,
    /// Whom it received from, as the standby says it.
    pub source: String,
    pub seen_at: i64,
    /// The time of the newest primary sample it had received: it held everything the
    /// primary had written by then.
    pub caught_up_at: Option<i64>,
}

impl Progress {
    fn fresh(primary: &str) -> Progress {
        Progress {
            primary: primary.to_string(),
            ..Progress::default()
        }
    }

    /// The last healthy round's time: for a failed primary, when the outage began.
    #[allow(dead_code)] // used by the round and the failover once pools have several standbys
    pub fn last_healthy(&self) -> Option<i64> {
        self.samples.last().map(|(at, _)| *at)
    }

    fn newest(&self) -> Option<&Position> {
        self.samples.last().map(|(_, p)| p)
    }

    /// The primary at `now` had `position`. An unchanged position only moves the newest
    /// sample's time on: that is when the primary last had nothing more.
    fn add_sample(&mut self, position: &Position, now: i64) {
        match self.samples.last_mut() {
            Some((at, last)) if last == position => *at = (*at).max(now),
            _ => self.samples.push((now, position.clone())),
        }
        let extra = self.samples.len().saturating_sub(PRIMARY_SAMPLES);
        self.samples.drain(..extra);
    }

    /// The time of the newest sample `received` holds.
    fn caught_up_time(&self, received: &Position) -> Option<i64> {
        self.samples
            .iter()
            .rev()
            .find(|(_, p)| received.has(p))
            .map(|(at, _)| *at)
    }
}

/// One standby as one round saw it: its address, whom it replicates from (`None`: not
/// known, or not a replica) and what it has received (`None`: not known, or it is down).
pub type Seen<'a> = (&'a str, Option<&'a str>, Option<&'a Position>);

/// Adds one round's facts to what the pool knew `before`. In a healthy round the primary's
/// position is a new sample; during an outage (`primary_position: None`) the standbys'
/// positions after the crash still count against the samples stored. Positions of another
/// primary's stream never compare, so a new primary, or a stream that went back (a reset
/// log), starts the tracking afresh.
#[allow(dead_code)] // used by the round and the failover once pools have several standbys
pub fn track(
    before: &Progress,
    primary: &str,
    primary_position: Option<&Position>,
    standbys: &[Seen],
    now: i64,
    same_host: impl Fn(&str, &str) -> bool,
) -> Progress {
    let went_back = |p: &Position| before.newest().is_some_and(|last| !p.has(last));
    let mut progress = if before.primary != primary || primary_position.is_some_and(went_back) {
        Progress::fresh(primary)
    } else {
        before.clone()
    };
    if let Some(position) = primary_position {
        progress.add_sample(position, now);
    }
    for (address, source, received) in standbys {
        match (source.map(|s| (s, same_host(s, primary))), received) {
            (Some((source, true)), Some(received)) => {
                let caught_up = progress.caught_up_time(received);
                let old = progress.standbys.get(*address).and_then(|s| s.caught_up_at);
                let entry = StandbyProgress {
                    received: Some((*received).clone()),
                    source: source.to_string(),
                    seen_at: now,
                    caught_up_at: caught_up.max(old),
                };
                progress.standbys.insert(address.to_string(), entry);
            }
            // Following another server now: what it had of this stream says nothing of it
            // any more.
            (Some((_, false)), _) => {
                progress.standbys.remove(*address);
            }
            // Down or silent (maybe through the outage): what it had is still a fact.
            _ => {}
        }
    }
    progress
}

/// One standby as the candidate rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct Standby<'a> {
    /// How the report names it: a server's name, or its address as written.
    pub label: &'a str,
    pub address: &'a str,
    pub answers: bool,
    /// Why it does not answer, when it does not.
    pub down_message: &'a str,
    /// Whom it replicates from now; `None`: not known (a monitor without replication
    /// facts) or not a replica.
    pub source: Option<&'a str>,
    /// `None`: the monitor cannot tell.
    pub is_replica: Option<bool>,
    pub never_promote: bool,
    pub received: Option<&'a Position>,
}

/// The standby to promote, and why each other one was passed over (for dry runs and the
/// history), by index in config order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    pub passed_over: Vec<(usize, String)>,
}

/// Why a standby may not be promoted by a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unfit {
    NeverPromote,
    Down,
    /// Not a replica of the failed primary now, nor known to have been one until the outage.
    NotReplicating,
    /// Not seen caught up recently enough: `ago` before the outage began (`None`: never),
    /// `behind` by at least this much against the last sample.
    Behind {
        ago: Option<i64>,
        behind: Option<String>,
    },
}

impl Unfit {
    fn kind(&self) -> &'static str {
        match self {
            Unfit::NeverPromote => "never_promote",
            Unfit::Down => "down",
            Unfit::NotReplicating => "not_replicating",
            Unfit::Behind { .. } => "behind",
        }
    }

    fn text(&self, s: &Standby, failed_primary: &str) -> String {
        let label = s.label;
        match self {
            Unfit::NeverPromote => format!("{label} is in never_promote"),
            Unfit::Down if s.down_message.is_empty() => format!("{label} does not answer"),
            Unfit::Down => format!("{label} does not answer (down: {})", s.down_message),
            Unfit::NotReplicating => match s.source {
                Some(source) => {
                    format!("{label} replicates from {source}, not from {failed_primary}")
                }
                None => format!("{label} does not replicate from {failed_primary}"),
            },
            Unfit::Behind { ago, behind } => {
                let when = match ago {
                    Some(ms) => format!(
                        "was last seen caught up {} before the outage",
                        crate::text::human_secs(*ms as f64 / 1000.0)
                    ),
                    None => format!("was never seen caught up with {failed_primary}"),
                };
                match behind {
                    Some(words) => format!("{label} {when} (at least {words} behind)"),
                    None => format!("{label} {when}"),
                }
            }
        }
    }
}

/// What the candidate rule knows besides the standbys themselves.
struct Known<'a> {
    failed_primary: &'a str,
    progress: &'a Progress,
    max_promote_lag_ms: i64,
    unit: Unit,
}

/// The first rule that keeps `s` from being promoted, if any.
fn unfit(s: &Standby, known: &Known, same_host: &impl Fn(&str, &str) -> bool) -> Option<Unfit> {
    let tracked = known.progress.standbys.get(s.address);
    let from_failed = |source: &str| same_host(source, known.failed_primary);
    // Nothing known of replication at all (a monitor without replication facts) passes.
    let replicates = || {
        s.is_replica.is_none()
            || s.source.is_some_and(from_failed)
            || tracked.is_some_and(|t| from_failed(&t.source))
    };
    if s.never_promote {
        Some(Unfit::NeverPromote)
    } else if !s.answers {
        Some(Unfit::Down)
    } else if !replicates() {
        Some(Unfit::NotReplicating)
    } else {
        lagging(s, tracked, known)
    }
}

/// The lag rule: caught up no longer than `max_promote_lag` before the outage began, when
/// anything is known of the primary's positions.
fn lagging(s: &Standby, tracked: Option<&StandbyProgress>, known: &Known) -> Option<Unfit> {
    let (began, newest) = match known.progress.samples.last() {
        Some((at, position)) => (*at, position),
        None => return None,
    };
    let caught_up_at = tracked.and_then(|t| t.caught_up_at);
    let ago = caught_up_at.map(|at| (began - at).max(0));
    if ago.is_some_and(|ago| ago <= known.max_promote_lag_ms) {
        return None;
    }
    let received = s.received.or(tracked.and_then(|t| t.received.as_ref()));
    let behind = received.and_then(|r| r.behind(newest, known.unit));
    Some(Unfit::Behind { ago, behind })
}

/// Whether `a` received strictly more than `b` (nothing known ranks lowest).
fn received_more(a: Option<&Position>, b: Option<&Position>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.has(b) && !b.has(a),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Why an eligible standby lost to the chosen one.
fn outranked(s: &Standby, chosen: &Standby) -> String {
    let (label, winner) = (s.label, chosen.label);
    match (s.received, chosen.received) {
        (Some(a), Some(b)) if received_more(Some(b), Some(a)) => format!(
            "{label} received less than {winner} ({} against {})",
            a.text, b.text
        ),
        (None, Some(b)) => {
            format!(
                "{label} did not say what it received; {winner} received {}",
                b.text
            )
        }
        _ => format!("{label} comes after {winner} in the config"),
    }
}

/// Which standby a tick promotes when `failed_primary` fails (SPEC 6, step 2a): among the
/// eligible ones, the one that received the most, then the first in config order. None
/// eligible blocks the failover, naming each standby and why it was passed over; a pair
/// whose standby is down keeps its reason of old. `progress` must already hold the
/// standbys' positions after the crash ([`track`] with no primary position).
#[allow(dead_code)] // used by the round and the failover once pools have several standbys
pub fn candidate(
    standbys: &[Standby],
    failed_primary: &str,
    same_host: impl Fn(&str, &str) -> bool,
    progress: &Progress,
    max_promote_lag_ms: i64,
    unit: Unit,
) -> Result<Choice, BlockReason> {
    if let [only] = standbys
        && !only.answers
    {
        return Err(BlockReason::new(
            "standby_down",
            "the active server is down and the standby is down too",
        ));
    }
    // Samples of another primary's stream say nothing of this one's.
    let nothing = Progress::default();
    let progress = if same_host(&progress.primary, failed_primary) {
        progress
    } else {
        &nothing
    };
    let known = Known {
        failed_primary,
        progress,
        max_promote_lag_ms,
        unit,
    };
    let verdicts: Vec<Option<Unfit>> = standbys
        .iter()
        .map(|s| unfit(s, &known, &same_host))
        .collect();
    let mut best: Option<usize> = None;
    for (i, s) in standbys.iter().enumerate() {
        let better = best.is_none_or(|b| received_more(s.received, standbys[b].received));
        if verdicts[i].is_none() && better {
            best = Some(i);
        }
    }
    let Some(index) = best else {
        return Err(no_candidate(standbys, &verdicts, failed_primary));
    };
    let passed_over = standbys
        .iter()
        .zip(&verdicts)
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(i, (s, verdict))| {
            let why = match verdict {
                Some(unfit) => unfit.text(s, failed_primary),
                None => outranked(s, &standbys[index]),
            };
            (i, why)
        })
        .collect();
    Ok(Choice { index, passed_over })
}

/// The block when no standby is eligible: its kind names each standby and its rule, never
/// times or counts, so a pool that stays blocked for one reason records one event.
fn no_candidate(standbys: &[Standby], verdicts: &[Option<Unfit>], failed: &str) -> BlockReason {
    let unfit = || {
        standbys
            .iter()
            .zip(verdicts)
            .filter_map(|(s, v)| Some((s, v.as_ref()?)))
    };
    let kinds: Vec<String> = unfit()
        .map(|(s, u)| format!("{}={}", s.label, u.kind()))
        .collect();
    let texts: Vec<String> = unfit().map(|(s, u)| u.text(s, failed)).collect();
    let text = if texts.is_empty() {
        "no standby may be promoted: none is configured".to_string()
    } else {
        format!("no standby may be promoted: {}", texts.join("; "))
    };
    BlockReason::new(format!("no_candidate:{}", kinds.join(",")), text)
}

/// The replicas' second opinion (`confirm_from_replicas`): a standby still receiving from
/// the failed primary is a vote that it is alive, cut off from deadpool only. Each standby
/// is its address, whom it replicates from, and whether its replication link is up
/// (`None`: not known, no vote).
#[allow(dead_code)] // used by the round and the failover once pools have several standbys
pub fn replicas_vote(
    standbys: &[(&str, Option<&str>, Option<bool>)],
    failed_primary: &str,
    same_host: impl Fn(&str, &str) -> bool,
) -> Option<BlockReason> {
    let voters: Vec<&str> = standbys
        .iter()
        .filter(|(_, source, receiving)| {
            *receiving == Some(true) && source.is_some_and(|s| same_host(s, failed_primary))
        })
        .map(|(address, _, _)| *address)
        .collect();
    let (verb, link) = match voters.len() {
        0 => return None,
        1 => ("receives", "its replication link is up"),
        _ => ("receive", "their replication links are up"),
    };
    Some(BlockReason::new(
        format!("replicas_vote:{}", voters.join(",")),
        format!(
            "second opinion: {} still {verb} from {failed_primary} ({link}): the primary is \
             cut off from deadpool only",
            voters.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    fn round(start: i64, dur: i64) -> Option<Round> {
        Some(Round {
            started_at: start * SEC,
            duration_ms: dur * SEC,
        })
    }

    #[test]
    fn timer_gap_table() {
        // (previous round, now, interval, gap?)
        let rows: &[(Option<Round>, i64, bool, &str)] = &[
            (None, 100, false, "first round ever"),
            (round(99, 0), 100, false, "one interval later"),
            (round(97, 0), 100, false, "exactly three intervals"),
            (
                round(96, 0),
                100,
                true,
                "four intervals: a suspend or a stopped timer",
            ),
            (
                round(60, 39),
                100,
                false,
                "a 39 s round (hung readiness elsewhere) is no gap",
            ),
            (round(90, 1), 100, true, "nine idle seconds"),
            (round(200, 0), 100, true, "the clock went back"),
        ];
        for (prev, now, gap, why) in rows {
            assert_eq!(timer_gap(*prev, now * SEC, SEC), *gap, "{why}");
        }
    }

    #[test]
    fn count_table() {
        // (before, gap, active, after)
        let rows = [
            (0, false, Health::Down, 1),
            (2, false, Health::Down, 3),
            (2, true, Health::Down, 1),
            (2, false, Health::Up, 0),
            (2, false, Health::Degraded, 0),
            (u32::MAX, false, Health::Down, u32::MAX),
        ];
        for (before, gap, active, after) in rows {
            assert_eq!(
                count(before, gap, active),
                after,
                "{before} {gap} {active:?}"
            );
        }
    }

    fn input(state: PoolState, failures: u32, active: Health, standby: Health) -> Input {
        Input {
            state,
            failures,
            max_failed_checks: 3,
            gap: false,
            active,
            standby_blocks: (!standby.is_alive()).then(|| {
                BlockReason::new(
                    "standby_down",
                    "the active server is down and the standby is down too",
                )
            }),
            down_for: None,
            paused: false,
        }
    }

    type Expect = fn(&Next) -> bool;
    type Votes = Vec<(String, Vote)>;

    #[test]
    fn decide_table() {
        use Health::{Down, Up};
        use PoolState::*;
        let block: Expect = |n| matches!(n, Next::Block(b) if b.kind == "standby_down");
        let rows: &[(PoolState, u32, Health, Health, Expect, &str)] = &[
            (
                Armed,
                0,
                Down,
                Up,
                |n| *n == Next::Watch,
                "first failure counts",
            ),
            (
                Armed,
                1,
                Down,
                Up,
                |n| *n == Next::Watch,
                "second failure counts",
            ),
            (
                Armed,
                2,
                Down,
                Up,
                |n| *n == Next::Failover,
                "the Nth failure fails over",
            ),
            (Armed, 2, Down, Down, block, "standby down too: blocked"),
            (
                Blocked,
                3,
                Down,
                Up,
                |n| *n == Next::Failover,
                "blocked is re-evaluated",
            ),
            (
                Blocked,
                3,
                Up,
                Up,
                |n| *n == Next::Rearm,
                "blocked re-arms on an answer",
            ),
            (Armed, 2, Up, Up, |n| *n == Next::Watch, "an answer resets"),
            (
                FailedOver,
                9,
                Down,
                Up,
                |n| *n == Next::Watch,
                "locked: only watch",
            ),
            (
                FailoverFailed,
                9,
                Down,
                Up,
                |n| *n == Next::Watch,
                "locked: only watch",
            ),
            (
                Interrupted,
                9,
                Down,
                Up,
                |n| *n == Next::Watch,
                "locked: only watch",
            ),
            (
                FailingOver,
                0,
                Up,
                Up,
                |n| *n == Next::Interrupt,
                "a leftover chain",
            ),
        ];
        for (state, failures, active, standby, expect, why) in rows {
            let d = decide(input(*state, *failures, *active, *standby));
            assert!(expect(&d.next), "{why}: got {:?}", d.next);
        }
        let mut gap = input(Armed, 2, Down, Up);
        gap.gap = true;
        assert_eq!(decide(gap).next, Next::Watch, "a gap restarts the count");
        let mut gap = input(Blocked, 3, Down, Up);
        gap.gap = true;
        let d = decide(gap);
        assert_eq!(
            (d.next, d.failures),
            (Next::Watch, 1),
            "after a gap a blocked pool counts again from 1, still blocked: it re-arms only on an answer"
        );
    }

    #[test]
    fn time_based_confirmation_table() {
        use Health::{Down, Up};
        use PoolState::*;
        // (state, active, standby, confirmed, next)
        let rows = [
            (Armed, Down, Up, false, Next::Confirm),
            (Armed, Down, Up, true, Next::Failover),
            (Armed, Up, Up, false, Next::Watch),
            (Blocked, Up, Up, false, Next::Rearm),
            (Blocked, Down, Up, true, Next::Failover),
            // After a gap the tick passes `confirmed = false`: the outage is confirmed anew.
            (Blocked, Down, Up, false, Next::Confirm),
            (Armed, Up, Up, false, Next::Watch),
            (FailedOver, Down, Up, false, Next::Watch),
            (FailingOver, Down, Up, false, Next::Interrupt),
        ];
        for (state, active, standby, confirmed, next) in rows {
            let mut i = input(state, 0, active, standby);
            i.down_for = Some(confirmed);
            assert_eq!(decide(i).next, next, "{state:?} {active:?} {confirmed}");
        }
        let mut both_down = input(Armed, 0, Down, Down);
        both_down.down_for = Some(true);
        assert!(matches!(decide(both_down).next, Next::Block(_)));
        // (down since, now, down_for, confirmed)
        for (since, now, down_for, confirmed) in [
            (0, 1499, 1500, false),
            (0, 1500, 1500, true),
            (1000, 2000, 1500, false),
        ] {
            assert_eq!(outage_confirmed(since, now, down_for), confirmed);
        }
    }

    #[test]
    fn decide_while_paused_table() {
        use Health::{Down, Up};
        use PoolState::*;
        // (state, failures before, active, standby, next, failures after, why)
        let rows: &[(PoolState, u32, Health, Health, Next, u32, &str)] = &[
            (Armed, 0, Up, Up, Next::Watch, 0, "healthy: as usual"),
            (Armed, 0, Down, Up, Next::Watch, 1, "failures still count"),
            (
                Armed,
                2,
                Down,
                Up,
                Next::Paused,
                3,
                "the threshold: no chain",
            ),
            (
                Armed,
                7,
                Down,
                Up,
                Next::Paused,
                8,
                "past it: the count goes on",
            ),
            (
                Armed,
                2,
                Down,
                Down,
                Next::Paused,
                3,
                "nothing is attempted, so nothing blocks",
            ),
            (
                Blocked,
                3,
                Down,
                Up,
                Next::Paused,
                4,
                "a blocked pool is not retried",
            ),
            (
                Blocked,
                3,
                Up,
                Up,
                Next::Rearm,
                0,
                "a blocked pool re-arms on an answer",
            ),
            (FailedOver, 0, Down, Up, Next::Watch, 1, "locked: as usual"),
            (
                FailingOver,
                0,
                Up,
                Up,
                Next::Interrupt,
                0,
                "a leftover chain is still marked",
            ),
        ];
        for (state, before, active, standby, next, after, why) in rows {
            let mut i = input(*state, *before, *active, *standby);
            i.paused = true;
            let d = decide(i.clone());
            assert_eq!((&d.next, d.failures), (next, *after), "{why}");
            // The same facts without the pause: only `Paused` differs.
            i.paused = false;
            let unpaused = decide(i);
            if *next != Next::Paused {
                assert_eq!(unpaused, d, "{why}: the pause changes nothing else");
            }
        }
        // The pause ends with the active server still down: the next round fails over.
        assert_eq!(decide(input(Armed, 8, Down, Up)).next, Next::Failover);
        // Time-based: a paused pool confirms nothing; a failing active server is what the
        // pause holds back, and after it the outage is confirmed anew.
        let mut timed = input(Armed, 0, Down, Up);
        timed.down_for = Some(false);
        timed.paused = true;
        assert_eq!(decide(timed.clone()).next, Next::Paused);
        timed.paused = false;
        assert_eq!(decide(timed.clone()).next, Next::Confirm);
        let mut healthy = input(Armed, 0, Up, Up);
        healthy.down_for = Some(false);
        healthy.paused = true;
        assert_eq!(decide(healthy.clone()).next, Next::Watch);
    }

    #[test]
    fn paused_table() {
        // (until, now, paused?)
        let rows = [
            (None, 0, false),
            (Some(10 * SEC), 9 * SEC, true),
            (Some(10 * SEC), 10 * SEC, false),
            (Some(10 * SEC), 11 * SEC, false),
        ];
        for (until, now, expected) in rows {
            assert_eq!(paused(until, now), expected, "{until:?} {now}");
        }
    }

    #[test]
    fn blocked_history_is_news_only_when_the_kind_changes() {
        let r = |kind: &str, text: &str| BlockReason::new(kind, text);
        let rows = [
            (PoolState::Armed, "", r("standby_down", "x"), true),
            (
                PoolState::Blocked,
                "standby_down",
                r("standby_down", "other text"),
                false,
            ),
            (
                PoolState::Blocked,
                "preflight:1:a=CRITICAL",
                r("preflight:1:a=CRITICAL", "at 12:01"),
                false,
            ),
            (
                PoolState::Blocked,
                "preflight:1:a=CRITICAL",
                r("preflight:2:a=CRITICAL", "x"),
                true,
            ),
            (
                PoolState::Blocked,
                "preflight:1:a=CRITICAL",
                r("preflight:1:b=CRITICAL", "x"),
                true,
            ),
        ];
        for (state, recorded, reason, news) in rows {
            assert_eq!(
                block_is_news(state, recorded, &reason),
                news,
                "{recorded} -> {}",
                reason.kind
            );
        }
    }

    #[test]
    fn second_opinion_table() {
        let v = |h: &str, vote: Vote| (h.to_string(), vote);
        let reaches = || Vote::Reaches("greeting".into());
        let cannot = || Vote::CannotReach("no greeting in 1s".into());
        let abstains = || Vote::Abstains("ssh refused".into());
        let rows: Vec<(Votes, Option<&str>)> = vec![
            (vec![], None),
            (vec![v("a", cannot()), v("b", cannot())], None),
            (vec![v("a", abstains()), v("b", abstains())], None),
            (
                vec![v("a", cannot()), v("b", reaches())],
                Some("second_opinion:b"),
            ),
            (
                vec![v("a", reaches()), v("b", reaches())],
                Some("second_opinion:a,b"),
            ),
        ];
        for (votes, kind) in rows {
            let got = second_opinion(&votes, "");
            assert_eq!(got.as_ref().map(|b| b.kind.as_str()), kind, "{votes:?}");
        }
    }

    #[test]
    fn preflight_table() {
        let h = |host: &str, status: Status| HostVerdict {
            host: host.into(),
            status,
            message: format!("{host} says {}", status.as_str()),
        };
        let ok = vec![h("db2", Status::Ok)];
        assert_eq!(
            preflight(&[("promote", ok.clone()), ("vip", ok.clone())]),
            None
        );
        let b = preflight(&[
            ("promote", ok.clone()),
            (
                "hosts",
                vec![h("app1", Status::Ok), h("app2", Status::Critical)],
            ),
            ("vip", vec![h("db2", Status::Warning)]),
        ])
        .unwrap();
        assert_eq!(b.kind, "preflight:2:app2=CRITICAL");
        assert!(
            b.text.contains("step 2 `hosts`") && b.text.contains("app2 says"),
            "{}",
            b.text
        );
        let none = preflight(&[("promote", vec![])]).unwrap();
        assert_eq!(none.kind, "preflight:1:");
        // A warning (a standby that cannot be repointed) does not block; worse does.
        let warned = preflight(&[(
            "promote",
            vec![h("db2", Status::Ok), h("db3", Status::Warning)],
        )]);
        assert_eq!(warned, None);
        let b = preflight(&[(
            "promote",
            vec![h("db2", Status::Unknown), h("db3", Status::Warning)],
        )])
        .unwrap();
        assert_eq!(b.kind, "preflight:1:db2=UNKNOWN");
    }

    #[test]
    fn only_worse_than_a_warning_fails_a_step() {
        let table = [
            (Status::Ok, false),
            (Status::Warning, false),
            (Status::Unknown, true),
            (Status::Critical, true),
        ];
        for (status, fails) in table {
            assert_eq!(fails_step(status), fails, "{status:?}");
        }
    }

    #[test]
    fn chain_rules_table() {
        assert_eq!(after_step(true, true), AfterStep::Continue);
        assert_eq!(after_step(false, true), AfterStep::Abort);
        assert_eq!(after_step(false, false), AfterStep::Continue);
        assert_eq!(chain_end(&[]), PoolState::FailedOver);
        assert_eq!(chain_end(&[true, true]), PoolState::FailedOver);
        assert_eq!(chain_end(&[true, false, true]), PoolState::FailoverFailed);
    }

    #[test]
    fn split_brain_table() {
        // (locked, active writable, standby writable, split-brain?)
        let rows = [
            (false, Some(true), Some(false), false),
            (false, Some(true), Some(true), true),
            (true, None, Some(true), true),
            (true, Some(true), Some(false), false),
            (false, None, Some(true), false),
            (true, Some(true), None, false),
        ];
        for (locked, a, s, expected) in rows {
            assert_eq!(split_brain(locked, a, s), expected, "{locked} {a:?} {s:?}");
        }
    }

    #[test]
    fn guards_table() {
        assert!(promote_guard(PoolState::FailingOver, false, true).is_err());
        assert_eq!(promote_guard(PoolState::Armed, true, true), Ok(true));
        assert!(promote_guard(PoolState::Armed, false, false).is_err());
        assert_eq!(promote_guard(PoolState::FailedOver, false, true), Ok(false));
        assert!(reset_allowed(true, false));
        assert!(!reset_allowed(false, false));
        assert!(reset_allowed(false, true));
    }

    #[test]
    fn readiness_due_table() {
        let rows = [
            (None, 0, false, true),
            (Some(0), 29 * SEC, false, false),
            (Some(0), 30 * SEC, false, true),
            (Some(50 * SEC), 0, false, true),
            (None, 0, true, false),
        ];
        for (last, now, counting, due) in rows {
            assert_eq!(
                readiness_due(last, now, 30 * SEC, counting),
                due,
                "{last:?} {now}"
            );
        }
    }

    // Several standbys.

    const PRIMARY: &str = "10.0.0.11";
    const MIN: i64 = 60 * SEC;

    /// The primary's position after `n` transactions (100 bytes each).
    fn at(n: u64) -> Position {
        Position::binlog("mysql-bin.000001", 100 * n, &format!("0-1-{n}"))
    }

    fn same(a: &str, b: &str) -> bool {
        a == b
    }

    fn sample_times(p: &Progress) -> Vec<i64> {
        p.samples.iter().map(|(t, _)| *t).collect()
    }

    /// A history of healthy rounds: round `i` (at `i` seconds) saw the primary at `primary[i]`
    /// transactions and the standby `db2` at `standby[i]` (`None`: no position).
    fn rounds(primary: &[u64], standby: &[Option<u64>]) -> Progress {
        let mut p = Progress::default();
        for (i, (n, s)) in primary.iter().zip(standby).enumerate() {
            let s = s.map(at);
            let seen = [("db2", Some(PRIMARY), s.as_ref())];
            p = track(&p, PRIMARY, Some(&at(*n)), &seen, i as i64 * SEC, same);
        }
        p
    }

    fn caught_up(p: &Progress, address: &str) -> Option<i64> {
        p.standbys.get(address).and_then(|s| s.caught_up_at)
    }

    #[test]
    fn track_keeps_a_few_samples_and_when_each_standby_was_caught_up() {
        let p = rounds(&[1, 2, 3], &[Some(1), Some(2), Some(2)]);
        assert_eq!(sample_times(&p), [0, SEC, 2 * SEC]);
        assert_eq!(
            caught_up(&p, "db2"),
            Some(SEC),
            "it had what the primary had at 1s"
        );
        // An idle primary: its one position's time moves on, and so does a caught-up standby.
        let idle = rounds(&[5, 5, 5], &[Some(5), Some(5), Some(5)]);
        assert_eq!(sample_times(&idle), [2 * SEC]);
        assert_eq!(caught_up(&idle, "db2"), Some(2 * SEC));
        // Bounded: the oldest samples go.
        let n = PRIMARY_SAMPLES as u64 + 3;
        let busy = rounds(&(1..=n).collect::<Vec<_>>(), &vec![Some(1); n as usize]);
        assert_eq!(busy.samples.len(), PRIMARY_SAMPLES);
        assert_eq!(busy.samples[0].1, at(4));
        assert_eq!(caught_up(&busy, "db2"), Some(0), "what it had stays a fact");
        // What it stores reads back the same.
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
    }

    #[test]
    fn track_table() {
        let base = rounds(&[1, 2], &[Some(1), Some(2)]);
        // (why, primary, its position, db2 seen as (source, received), db2's caught_up_at)
        type Row<'a> = (
            &'a str,
            &'a str,
            Option<u64>,
            Option<&'a str>,
            Option<u64>,
            Option<i64>,
        );
        let rows: &[Row] = &[
            (
                "a healthy round",
                PRIMARY,
                Some(3),
                Some(PRIMARY),
                Some(3),
                Some(5 * SEC),
            ),
            (
                "seen with no position: kept",
                PRIMARY,
                Some(3),
                Some(PRIMARY),
                None,
                Some(SEC),
            ),
            (
                "down, nothing known: kept",
                PRIMARY,
                Some(3),
                None,
                None,
                Some(SEC),
            ),
            (
                "never backwards",
                PRIMARY,
                Some(3),
                Some(PRIMARY),
                Some(1),
                Some(SEC),
            ),
            (
                "outage: counts against the samples",
                PRIMARY,
                None,
                Some(PRIMARY),
                Some(2),
                Some(SEC),
            ),
            (
                "repointed elsewhere: forgotten",
                PRIMARY,
                Some(3),
                Some("10.0.0.99"),
                Some(3),
                None,
            ),
            (
                "a new primary: afresh",
                "10.0.0.12",
                Some(9),
                Some("10.0.0.12"),
                Some(1),
                None,
            ),
            (
                "a new primary's standby",
                "10.0.0.12",
                Some(1),
                Some("10.0.0.12"),
                Some(1),
                Some(5 * SEC),
            ),
            (
                "the stream went back: afresh",
                PRIMARY,
                Some(1),
                Some(PRIMARY),
                Some(0),
                None,
            ),
        ];
        for (why, primary, position, source, received, want) in rows {
            let position = position.map(at);
            let received = received.map(at);
            let seen = [("db2", *source, received.as_ref())];
            let got = track(&base, primary, position.as_ref(), &seen, 5 * SEC, same);
            assert_eq!(caught_up(&got, "db2"), *want, "{why}");
        }
        // A new primary: the old samples go, its first one is all there is.
        let moved = track(&base, "10.0.0.12", Some(&at(9)), &[], 5 * SEC, same);
        assert_eq!(
            (moved.primary.as_str(), sample_times(&moved)),
            ("10.0.0.12", vec![5 * SEC])
        );
        // During the outage a standby that applied the rest catches up to the last sample.
        let outage = [("db2", Some(PRIMARY), Some(&at(2)))];
        let lagging = rounds(&[1, 2], &[Some(1), Some(1)]);
        assert_eq!(caught_up(&lagging, "db2"), Some(0));
        let after = track(&lagging, PRIMARY, None, &outage, 9 * SEC, same);
        assert_eq!(caught_up(&after, "db2"), Some(SEC));
        assert_eq!(sample_times(&after), [0, SEC], "no sample in an outage");
    }

    fn standby<'a>(label: &'a str, received: Option<&'a Position>) -> Standby<'a> {
        Standby {
            label,
            address: label,
            answers: true,
            down_message: "",
            source: Some(PRIMARY),
            is_replica: Some(true),
            never_promote: false,
            received,
        }
    }

    fn down(s: Standby) -> Standby {
        Standby {
            answers: false,
            down_message: "connection refused",
            received: None,
            ..s
        }
    }

    /// Progress over healthy rounds ending at `end`, with the given standbys caught up at
    /// the given times.
    fn progress(end: i64, caught: &[(&str, Option<i64>, u64)]) -> Progress {
        let mut p = Progress::fresh(PRIMARY);
        p.samples = vec![(end - 10 * SEC, at(90)), (end, at(100))];
        for (address, caught_up_at, received) in caught {
            let s = StandbyProgress {
                received: Some(at(*received)),
                source: PRIMARY.to_string(),
                seen_at: end,
                caught_up_at: *caught_up_at,
            };
            p.standbys.insert(address.to_string(), s);
        }
        p
    }

    fn choose(standbys: &[Standby], p: &Progress) -> Result<Choice, BlockReason> {
        candidate(standbys, PRIMARY, same, p, MIN, Unit::Binlog)
    }

    #[test]
    fn the_reproduced_case_blocks_a_pair() {
        // db2's replication stopped at 50 transactions; the primary wrote 50 more, and was
        // killed four minutes later. db2 still answers, with what it had.
        let mut p = Progress::default();
        for round in 0..=26 {
            let n = if round < 2 { 50 } else { 100 };
            let seen = [("db2", Some(PRIMARY), Some(&at(50)))];
            p = track(&p, PRIMARY, Some(&at(n)), &seen, round * 10 * SEC, same);
        }
        let crash = [("db2", Some(PRIMARY), Some(&at(50)))];
        p = track(&p, PRIMARY, None, &crash, 290 * SEC, same);
        let got = choose(&[standby("db2", Some(&at(50)))], &p).unwrap_err();
        assert_eq!(got.kind, "no_candidate:db2=behind");
        assert_eq!(
            got.text,
            "no standby may be promoted: db2 was last seen caught up 4m 10s before the outage \
             (at least 50 transactions behind)"
        );
        // The same standby, caught up just before: promoted.
        let fine = progress(10 * MIN, &[("db2", Some(10 * MIN - 5 * SEC), 100)]);
        assert_eq!(
            choose(&[standby("db2", Some(&at(100)))], &fine)
                .unwrap()
                .index,
            0
        );
    }

    #[test]
    fn candidate_table() {
        let end = 10 * MIN;
        let (p100, p90, p80) = (at(100), at(90), at(80));
        let recent = Some(end - 5 * SEC);
        let stale = Some(end - 4 * MIN - 10 * SEC);
        let two = progress(end, &[("db2", recent, 100), ("db3", recent, 90)]);
        let one_behind = progress(end, &[("db2", stale, 80), ("db3", recent, 90)]);
        let unknown = Standby {
            source: None,
            is_replica: None,
            received: None,
            ..standby("db3", None)
        };
        let not_replica = Standby {
            source: None,
            is_replica: Some(false),
            ..standby("db2", Some(&p100))
        };
        let elsewhere = Standby {
            source: Some("10.0.0.99"),
            ..standby("db2", Some(&p100))
        };
        let mut other_primary = two.clone();
        other_primary.primary = "10.0.0.99".into();
        let nothing = Progress::default();
        let pair_down = [down(standby("db2", None))];
        let by_position = [standby("db2", Some(&p90)), standby("db3", Some(&p100))];
        let tie = [standby("db2", Some(&p90)), standby("db3", Some(&p90))];
        let behind_first = [standby("db2", Some(&p80)), standby("db3", Some(&p90))];
        let np = [
            Standby {
                never_promote: true,
                ..standby("db2", Some(&p100))
            },
            standby("db3", Some(&p90)),
        ];
        let all_np = [np[0]];
        let unknowns = [
            unknown,
            Standby {
                label: "db4",
                address: "db4",
                ..unknown
            },
        ];
        let no_facts_but_samples = [unknowns[1]];
        let replicated_until_outage = [not_replica, standby("db3", Some(&p90))];
        let elsewhere_now = [elsewhere];
        let none_tracked = [standby("db2", Some(&p80)), standby("db3", Some(&p90))];
        // (why, standbys, progress, Ok(index) or Err(kind))
        type Row<'a> = (
            &'a str,
            &'a [Standby<'a>],
            &'a Progress,
            Result<usize, &'a str>,
        );
        let rows: &[Row] = &[
            (
                "a pair whose standby is down",
                &pair_down,
                &two,
                Err("standby_down"),
            ),
            ("the one that received most", &by_position, &two, Ok(1)),
            ("equal positions: config order", &tie, &two, Ok(0)),
            ("one behind: the other", &behind_first, &one_behind, Ok(1)),
            ("never_promote is passed over", &np, &two, Ok(1)),
            (
                "only never_promote",
                &all_np,
                &two,
                Err("no_candidate:db2=never_promote"),
            ),
            (
                "no replication facts, no samples: config order",
                &unknowns,
                &nothing,
                Ok(0),
            ),
            (
                "no replication facts, never seen caught up",
                &no_facts_but_samples,
                &two,
                Err("no_candidate:db4=behind"),
            ),
            (
                "replicated until the outage",
                &replicated_until_outage,
                &two,
                Ok(0),
            ),
            (
                "repointed elsewhere, never tracked",
                &elsewhere_now,
                &nothing,
                Err("no_candidate:db2=not_replicating"),
            ),
            (
                "no samples: the lag rule holds",
                &none_tracked,
                &nothing,
                Ok(1),
            ),
            (
                "samples exist, positions never tracked",
                &none_tracked,
                &progress(end, &[]),
                Err("no_candidate:db2=behind,db3=behind"),
            ),
            (
                "another primary's samples say nothing",
                &none_tracked,
                &other_primary,
                Ok(1),
            ),
        ];
        for (why, standbys, p, want) in rows {
            let got = choose(standbys, p);
            let got = got.as_ref().map(|c| c.index).map_err(|b| b.kind.as_str());
            assert_eq!(got, *want, "{why}");
        }
    }

    #[test]
    fn candidate_says_why_each_standby_was_passed_over() {
        let end = 10 * MIN;
        let (p100, p90, p50) = (at(100), at(90), at(50));
        let stale = Some(end - 4 * MIN - 10 * SEC);
        let p = progress(
            end,
            &[
                ("db2", None, 100),
                ("db3", stale, 50),
                ("db5", Some(end), 90),
            ],
        );
        let db4 = Standby {
            never_promote: true,
            ..standby("db4", Some(&p100))
        };
        let standbys = [down(standby("db2", None)), standby("db3", Some(&p50)), db4];
        let blocked = choose(&standbys, &p).unwrap_err();
        assert_eq!(
            blocked.kind,
            "no_candidate:db2=down,db3=behind,db4=never_promote"
        );
        assert_eq!(
            blocked.text,
            "no standby may be promoted: db2 does not answer (down: connection refused); db3 \
             was last seen caught up 4m 10s before the outage (at least 50 transactions \
             behind); db4 is in never_promote"
        );
        // Times and counts change, the kind does not.
        let later = progress(end, &[("db3", Some(end - 9 * MIN), 10)]);
        let again = choose(&standbys, &later).unwrap_err();
        assert_eq!(again.kind, blocked.kind);
        assert_ne!(again.text, blocked.text);
        // With one that may: chosen, and the others' reasons kept.
        let with_db5 = [
            standbys[0],
            standbys[1],
            standbys[2],
            standby("db5", Some(&p90)),
        ];
        let chosen = choose(&with_db5, &p).unwrap();
        assert_eq!(chosen.index, 3);
        let why: Vec<usize> = chosen.passed_over.iter().map(|(i, _)| *i).collect();
        assert_eq!(why, [0, 1, 2]);
        assert!(
            chosen.passed_over[1]
                .1
                .starts_with("db3 was last seen caught up 4m 10s")
        );
        // Eligible ones that lost say so.
        let two = progress(end, &[("db2", Some(end), 90), ("db3", Some(end), 100)]);
        let lost = choose(
            &[standby("db2", Some(&p90)), standby("db3", Some(&p100))],
            &two,
        );
        assert_eq!(
            lost.unwrap().passed_over,
            [(
                0,
                "db2 received less than db3 (mysql-bin.000001:9000 (GTID 0-1-90) against \
                 mysql-bin.000001:10000 (GTID 0-1-100))"
                    .to_string()
            )]
        );
        let tied = choose(
            &[standby("db2", Some(&p90)), standby("db3", Some(&p90))],
            &two,
        );
        assert_eq!(
            tied.unwrap().passed_over,
            [(1, "db3 comes after db2 in the config".to_string())]
        );
    }

    #[test]
    fn replicas_vote_table() {
        let other = "10.0.0.99";
        // (standbys as (address, source, receiving), Some(kind): blocked)
        type Row<'a> = (
            &'a [(&'a str, Option<&'a str>, Option<bool>)],
            Option<&'a str>,
        );
        let rows: &[Row] = &[
            (&[], None),
            (&[("10.0.0.12", Some(PRIMARY), Some(false))], None),
            (&[("10.0.0.12", Some(PRIMARY), None)], None),
            (&[("10.0.0.12", None, Some(true))], None),
            (&[("10.0.0.12", Some(other), Some(true))], None),
            (
                &[
                    ("10.0.0.12", Some(PRIMARY), Some(true)),
                    ("10.0.0.13", Some(PRIMARY), Some(false)),
                ],
                Some("replicas_vote:10.0.0.12"),
            ),
            (
                &[
                    ("10.0.0.12", Some(PRIMARY), Some(true)),
                    ("10.0.0.13", Some(PRIMARY), Some(true)),
                ],
                Some("replicas_vote:10.0.0.12,10.0.0.13"),
            ),
        ];
        for (standbys, kind) in rows {
            let got = replicas_vote(standbys, PRIMARY, same);
            assert_eq!(got.as_ref().map(|b| b.kind.as_str()), *kind, "{standbys:?}");
        }
        let one = replicas_vote(&[("10.0.0.12", Some(PRIMARY), Some(true))], PRIMARY, same);
        assert_eq!(
            one.unwrap().text,
            "second opinion: 10.0.0.12 still receives from 10.0.0.11 (its replication link is \
             up): the primary is cut off from deadpool only"
        );
    }
}
