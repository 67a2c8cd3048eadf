//! Several standbys (SPEC 6, step 2a), as pure functions: what a pool learns each round of
//! how far its standbys follow the primary ([`track`]), which standby a tick may promote
//! ([`candidate`]), whether one could be promoted now ([`lagging_standby`]), and what the
//! replicas say of the primary ([`replicas_vote`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::BlockReason;
use crate::position::{Position, Unit};

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
    /// When a round first found the primary down since it last answered (ms since the
    /// epoch): the outage's start, as near as the checks tell ([`note_outage`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_since: Option<i64>,
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

/// Why a standby would not be promoted were the primary to fail now, from what the rounds
/// recorded: it was last seen caught up more than `max_promote_lag_ms` before the round
/// before the newest (one round of slack: a streaming standby trails the primary's newest
/// position by what is in flight). `None`: it would be a candidate, or nothing is known.
pub fn lagging_standby(
    progress: &Progress,
    address: &str,
    max_promote_lag_ms: i64,
    unit: Unit,
) -> Option<String> {
    let tracked = progress.standbys.get(address)?;
    let n = progress.samples.len();
    let (reference, _) = progress.samples.get(n.saturating_sub(2))?;
    let (newest_at, newest) = progress.samples.last()?;
    match tracked.caught_up_at {
        Some(at) if at >= reference - max_promote_lag_ms => None,
        caught => {
            let when = match caught {
                Some(at) => format!(
                    "it was last seen caught up {} ago",
                    crate::text::human_secs((newest_at - at).max(0) as f64 / 1000.0)
                ),
                None => "it was never seen caught up".to_string(),
            };
            let behind = (tracked.received.as_ref())
                .and_then(|r| r.behind(newest, unit))
                .map(|b| format!(" (at least {b} behind)"))
                .unwrap_or_default();
            Some(format!("{when}{behind}"))
        }
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

/// Notes whether the primary answered the round at `now`: the first round that finds it
/// down starts the outage, one that finds it answering ends it.
pub fn note_outage(progress: &mut Progress, primary_answers: bool, now: i64) {
    progress.down_since = match (primary_answers, progress.down_since) {
        (true, _) => None,
        (false, Some(since)) => Some(since),
        (false, None) => Some(now),
    };
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
    /// What it received is on an older timeline than the newest one seen: it did not follow
    /// a promotion (it may have forked off before it), and holds none of the newer history.
    OldTimeline {
        mine: u32,
        newest: u32,
    },
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
            Unfit::OldTimeline { .. } => "old_timeline",
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
                None => format!("{label} is not a replica of {failed_primary}"),
            },
            Unfit::OldTimeline { mine, newest } => {
                format!("{label} is on timeline {mine}, behind timeline {newest}")
            }
            Unfit::Behind { ago, behind } => {
                let when = match ago {
                    // Caught up at the round before the last healthy one: what it lacks was
                    // written just before the outage.
                    Some(ms) if *ms < 1000 => format!(
                        "lacks writes {failed_primary} had acknowledged at its last healthy check"
                    ),
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
    /// The newest timeline among the standbys' received positions and the primary's last
    /// sample (`None`: no position has one).
    newest_timeline: Option<u32>,
}

/// What `s` received: as it says now, else as the rounds recorded it.
fn received<'a>(s: &Standby<'a>, tracked: Option<&'a StandbyProgress>) -> Option<&'a Position> {
    s.received.or(tracked.and_then(|t| t.received.as_ref()))
}

/// The timeline of what `s` received: as it says now, else as the rounds recorded it (a
/// standby whose WAL receiver is gone names none).
fn received_timeline(s: &Standby, tracked: Option<&StandbyProgress>) -> Option<u32> {
    (s.received.and_then(|p| p.timeline)).or(tracked.and_then(|t| t.received.as_ref()?.timeline))
}

/// The newest timeline any of `standbys` received or the primary was last seen on.
fn newest_timeline(standbys: &[Standby], progress: &Progress) -> Option<u32> {
    let primary = progress.newest().and_then(|p| p.timeline);
    (standbys.iter())
        .filter_map(|s| received_timeline(s, progress.standbys.get(s.address)))
        .chain(primary)
        .max()
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
    } else if let (Some(mine), Some(newest)) =
        (received_timeline(s, tracked), known.newest_timeline)
        && mine < newest
    {
        Some(Unfit::OldTimeline { mine, newest })
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
    let behind = received(s, tracked).and_then(|r| r.behind(newest, known.unit));
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
/// eligible ones, the one that received the most, then the first in config order. A
/// standby whose received timeline is older than the newest one seen is not eligible: the
/// received locations compare only on one timeline (PostgreSQL; other positions have none). None
/// eligible blocks the failover, naming each standby and why it was passed over; a pair
/// whose standby is down keeps its reason of old. `progress` must already hold the
/// standbys' positions after the crash ([`track`] with no primary position).
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
        newest_timeline: newest_timeline(standbys, progress),
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

    /// The outage starts at the first round that finds the primary down, stays through
    /// the rounds after, and ends with one that finds it answering.
    #[test]
    fn an_outage_starts_at_its_first_failed_round() {
        let mut p = rounds(&[1, 2], &[Some(1), Some(2)]);
        assert_eq!(p.down_since, None);
        for (answers, now, want) in [
            (false, 5 * SEC, Some(5 * SEC)),
            (false, 6 * SEC, Some(5 * SEC)),
            (true, 7 * SEC, None),
            (false, 8 * SEC, Some(8 * SEC)),
        ] {
            note_outage(&mut p, answers, now);
            assert_eq!(p.down_since, want, "at {now}");
        }
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
        assert!(
            !serde_json::to_string(&Progress::default())
                .unwrap()
                .contains("down_since")
        );
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

    /// PostgreSQL: received locations compare on the newest timeline only. A standby that
    /// did not follow a promotion may have received further, of another history.
    #[test]
    fn candidate_on_the_newest_timeline() {
        let wal = |lsn: &str, timeline: Option<u32>| Position::lsn(lsn, timeline).unwrap();
        let end = 10 * MIN;
        // Healthy rounds of a primary on `timeline`, each standby caught up at the end and
        // recorded with what it received.
        let rounds_on = |timeline: Option<u32>, tracked: &[(&str, &Position)]| {
            let mut p = Progress::fresh(PRIMARY);
            p.samples = vec![(end, wal("0/5000000", timeline))];
            for (address, received) in tracked {
                let s = StandbyProgress {
                    received: Some((*received).clone()),
                    source: PRIMARY.to_string(),
                    seen_at: end,
                    caught_up_at: Some(end),
                };
                p.standbys.insert(address.to_string(), s);
            }
            p
        };
        let choose_wal = |standbys: &[Standby], p: &Progress| {
            candidate(standbys, PRIMARY, same, p, MIN, Unit::Wal)
        };
        let (forked, behind_on_2) = (wal("0/6000000", Some(1)), wal("0/5000000", Some(2)));
        let (ahead_on_2, unknown) = (wal("0/5800000", Some(2)), wal("0/6000000", None));
        // (why, standbys as (label, received now, recorded by the rounds when not the
        // same), the primary's timeline, chosen or the block's kind, a passed-over reason)
        type Row<'a> = (
            &'a str,
            &'a [(&'a str, Option<&'a Position>, Option<&'a Position>)],
            Option<u32>,
            Result<&'a str, &'a str>,
            Option<&'a str>,
        );
        let rows: &[Row] = &[
            (
                "further on the old timeline loses to the newest",
                &[
                    ("db2", Some(&forked), None),
                    ("db3", Some(&behind_on_2), None),
                ],
                Some(2),
                Ok("db3"),
                Some("db2 is on timeline 1, behind timeline 2"),
            ),
            (
                "the newest timeline seen among the standbys alone",
                &[
                    ("db2", Some(&forked), None),
                    ("db3", Some(&behind_on_2), None),
                ],
                None,
                Ok("db3"),
                Some("db2 is on timeline 1, behind timeline 2"),
            ),
            (
                "on one timeline the received location decides",
                &[
                    ("db2", Some(&behind_on_2), None),
                    ("db3", Some(&ahead_on_2), None),
                ],
                Some(2),
                Ok("db3"),
                Some(
                    "db2 received less than db3 (0/5000000 (timeline 2) against 0/5800000 (timeline 2))",
                ),
            ),
            (
                "timeline unknown: compared as before",
                &[
                    ("db2", Some(&unknown), None),
                    ("db3", Some(&ahead_on_2), None),
                ],
                Some(2),
                Ok("db2"),
                None,
            ),
            (
                "no WAL receiver now: the timeline the rounds recorded",
                &[
                    ("db2", None, Some(&forked)),
                    ("db3", Some(&behind_on_2), None),
                ],
                Some(2),
                Ok("db3"),
                Some("db2 is on timeline 1, behind timeline 2"),
            ),
            (
                "every standby on an older timeline than the primary's",
                &[("db2", Some(&forked), None)],
                Some(2),
                Err("no_candidate:db2=old_timeline"),
                Some("no standby may be promoted: db2 is on timeline 1, behind timeline 2"),
            ),
        ];
        for (why, seen, timeline, want, reason) in rows {
            let tracked: Vec<(&str, &Position)> = seen
                .iter()
                .filter_map(|(label, now, t)| Some((*label, t.or(*now)?)))
                .collect();
            let p = rounds_on(*timeline, &tracked);
            let standbys: Vec<Standby> = seen
                .iter()
                .map(|(label, now, _)| standby(label, *now))
                .collect();
            let got = choose_wal(&standbys, &p);
            let texts: Vec<String> = match &got {
                Ok(c) => c.passed_over.iter().map(|(_, w)| w.clone()).collect(),
                Err(b) => vec![b.text.clone()],
            };
            let got = got
                .as_ref()
                .map(|c| standbys[c.index].label)
                .map_err(|b| b.kind.as_str());
            assert_eq!(got, *want, "{why}");
            if let Some(reason) = reason {
                assert!(texts.iter().any(|t| t == reason), "{why}: {texts:?}");
            }
        }
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

    /// A standby that could not be promoted now: last caught up before the round before the
    /// newest (one round of slack for what is in flight), or never.
    #[test]
    fn lagging_standby_table() {
        type Row<'a> = (&'a [u64], &'a [Option<u64>], i64, Option<&'a str>);
        // (primary per round, db2 per round, max_promote_lag ms, warning)
        #[rustfmt::skip]
        let rows: &[Row] = &[
            (&[1, 2, 3], &[Some(1), Some(2), Some(3)], 0, None),
            (&[1, 2, 3], &[Some(1), Some(2), Some(2)], 0, None),
            (&[1, 2, 3, 4], &[Some(1), Some(1), Some(1), Some(1)], 0,
                Some("it was last seen caught up 3.0s ago (at least 3 transactions behind)")),
            (&[1, 2, 3, 4], &[Some(1), Some(1), Some(1), Some(1)], 2 * SEC, None),
            (&[5, 6, 7], &[Some(1), Some(1), Some(1)], 0,
                Some("it was never seen caught up (at least 6 transactions behind)")),
            (&[1, 1, 1], &[Some(1), Some(1), Some(1)], 0, None),
        ];
        for (primary, standby, lag, want) in rows {
            let p = rounds(primary, standby);
            let got = lagging_standby(&p, "db2", *lag, Unit::Binlog);
            assert_eq!(got.as_deref(), *want, "{primary:?} {standby:?}");
        }
        assert_eq!(
            lagging_standby(&Progress::default(), "db2", 0, Unit::Binlog),
            None
        );
    }
}
