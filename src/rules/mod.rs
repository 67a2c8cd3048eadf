//! Every decision rule of SPEC section 6, as pure functions over plain data: the failure
//! count and the timer gap, what a tick does next with a pool, the second opinion's
//! verdict, the preflight verdict, when a blocked pool's reason is news, how a chain goes
//! on after a step and how its results fold into the end state, the split-brain rule, and
//! the guards of `promote` and `reset`; with several standbys, how far each followed the
//! primary, which one a tick may promote, and the replicas' second opinion. The commands
//! gather the facts, call these, and act; nothing here does I/O, and each rule has a table
//! test below.

use crate::model::{Health, PoolState, Status};

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

/// Whether a step's action did its part, from its host results as (status, aside): a
/// result about the action itself that [`fails_step`] fails it; one aside from the action
/// (a standby a promotion left behind: the service has moved whatever it says) never does;
/// no result about the action at all fails.
pub fn step_succeeded(results: impl IntoIterator<Item = (Status, bool)>) -> bool {
    let mut own = results.into_iter().filter(|(_, aside)| !aside).peekable();
    own.peek().is_some() && own.all(|(status, _)| !fails_step(status))
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

mod standby;

pub use standby::{
    Progress, Seen, Standby, candidate, lagging_standby, note_outage, replicas_vote, track,
};

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
    fn a_step_succeeds_by_its_own_results() {
        use Status::{Critical, Ok, Unknown, Warning};
        // ((status, aside) per host, succeeded)
        let table: &[(&[(Status, bool)], bool)] = &[
            (&[], false),
            (&[(Ok, false)], true),
            (&[(Warning, false)], true),
            (&[(Unknown, false)], false),
            (&[(Critical, false), (Ok, true)], false),
            (&[(Ok, false), (Warning, true)], true),
            (&[(Ok, false), (Critical, true)], true),
            (&[(Ok, false), (Critical, false)], false),
            (&[(Ok, true)], false),
        ];
        for (results, succeeded) in table {
            let got = step_succeeded(results.iter().copied());
            assert_eq!(got, *succeeded, "{results:?}");
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
}
