//! The decision rules of SPEC section 6, as pure functions over plain data. Everything here
//! is decided from what the monitors saw and what the database recorded; the I/O that
//! follows from a decision lives in `commands::tick` and `chain`.

use crate::monitor::Health;
use crate::state::PoolState;

/// What one tick knows about one pool before deciding.
#[derive(Debug, Clone, Copy)]
pub struct Input {
    pub state: PoolState,
    pub failures: u32,
    pub max_failed_checks: u32,
    /// When the previous check of this pool happened (ms since the epoch).
    pub last_check_at: Option<i64>,
    pub now: i64,
    pub tick_interval_ms: i64,
    pub active: Health,
    pub standby: Health,
}

/// What the tick does next with the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep watching; nothing else changes (armed and counting, or locked).
    Watch,
    /// The active server answered again: a blocked pool goes back to armed.
    Rearm,
    /// The threshold is reached but the standby is down: blocked, nothing changed.
    Block(String),
    /// The threshold is reached and the standby is up: run the second opinion and every
    /// preflight, then the chain.
    Failover,
    /// A chain was in progress and no process holds the lock any more: it was interrupted.
    Interrupt,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The consecutive-failure count after this tick.
    pub failures: u32,
    /// The count restarted because the previous check was too long ago (or in the future).
    pub gap: bool,
    pub next: Next,
}

/// A gap of more than this many tick intervals restarts the count.
pub const GAP_INTERVALS: i64 = 3;

/// Counts this tick's check of the active server: a failure adds one, a success resets to 0,
/// and a gap since the previous check (suspend, clock jump, stopped timer) restarts the count.
pub fn count(
    failures_before: u32,
    last_check_at: Option<i64>,
    now: i64,
    tick_interval_ms: i64,
    active: Health,
) -> (u32, bool) {
    let gap = match last_check_at {
        None => false,
        Some(last) => now < last || now - last > GAP_INTERVALS * tick_interval_ms,
    };
    let base = if gap { 0 } else { failures_before };
    let failures = if active.is_alive() {
        0
    } else {
        base.saturating_add(1)
    };
    (failures, gap && failures_before > 0)
}

pub fn decide(input: Input) -> Decision {
    let (failures, gap) = count(
        input.failures,
        input.last_check_at,
        input.now,
        input.tick_interval_ms,
        input.active,
    );
    let next = match input.state {
        PoolState::FailingOver => Next::Interrupt,
        state if state.is_locked() => Next::Watch,
        _ if failures < input.max_failed_checks => {
            if input.state == PoolState::Blocked {
                Next::Rearm
            } else {
                Next::Watch
            }
        }
        _ if !input.standby.is_alive() => {
            Next::Block("the active server is down and the standby is down too".into())
        }
        _ => Next::Failover,
    };
    Decision {
        failures,
        gap,
        next,
    }
}

/// Whether the readiness self-checks are due (a clock that went backwards makes them due).
pub fn system_check_due(last: Option<i64>, now: i64, interval_ms: i64) -> bool {
    match last {
        None => true,
        Some(last) => now < last || now - last >= interval_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1000;

    fn input(state: PoolState, failures: u32, active: Health, standby: Health) -> Input {
        Input {
            state,
            failures,
            max_failed_checks: 3,
            last_check_at: Some(100 * SEC),
            now: 101 * SEC,
            tick_interval_ms: SEC,
            active,
            standby,
        }
    }

    #[test]
    fn fails_over_on_exactly_the_nth_failure() {
        let mut failures = 0;
        for tick in 1..=3 {
            let d = decide(input(PoolState::Armed, failures, Health::Down, Health::Up));
            failures = d.failures;
            assert_eq!(failures, tick);
            let expected = if tick == 3 {
                Next::Failover
            } else {
                Next::Watch
            };
            assert_eq!(d.next, expected, "tick {tick}");
        }
    }

    #[test]
    fn a_good_check_resets_and_degraded_is_alive() {
        assert_eq!(
            decide(input(PoolState::Armed, 2, Health::Up, Health::Up)).failures,
            0
        );
        assert_eq!(
            decide(input(PoolState::Armed, 2, Health::Degraded, Health::Up)).failures,
            0
        );
    }

    #[test]
    fn a_gap_restarts_the_count() {
        let mut i = input(PoolState::Armed, 2, Health::Down, Health::Up);
        i.last_check_at = Some(i.now - 4 * SEC);
        let d = decide(i);
        assert_eq!((d.failures, d.gap, d.next), (1, true, Next::Watch));
        // Exactly three intervals is still consecutive.
        i.last_check_at = Some(i.now - 3 * SEC);
        assert_eq!(decide(i).failures, 3);
        // A clock that jumped backwards is a gap too.
        i.last_check_at = Some(i.now + 60 * SEC);
        assert_eq!(decide(i).failures, 1);
    }

    #[test]
    fn standby_down_blocks_and_recovery_rearms() {
        let d = decide(input(PoolState::Armed, 2, Health::Down, Health::Down));
        assert!(matches!(d.next, Next::Block(_)));
        let d = decide(input(PoolState::Blocked, 3, Health::Down, Health::Up));
        assert_eq!(d.next, Next::Failover);
        let d = decide(input(PoolState::Blocked, 3, Health::Up, Health::Up));
        assert_eq!((d.failures, d.next), (0, Next::Rearm));
    }

    #[test]
    fn locked_pools_only_watch_and_a_leftover_chain_is_interrupted() {
        for state in [
            PoolState::FailedOver,
            PoolState::FailoverFailed,
            PoolState::Interrupted,
        ] {
            let d = decide(input(state, 5, Health::Down, Health::Up));
            assert_eq!(d.next, Next::Watch, "{state:?}");
        }
        let d = decide(input(PoolState::FailingOver, 0, Health::Up, Health::Up));
        assert_eq!(d.next, Next::Interrupt);
    }

    #[test]
    fn system_checks_fall_due() {
        assert!(system_check_due(None, 0, 30 * SEC));
        assert!(!system_check_due(Some(0), 29 * SEC, 30 * SEC));
        assert!(system_check_due(Some(0), 30 * SEC, 30 * SEC));
        assert!(system_check_due(Some(50 * SEC), 0, 30 * SEC));
    }
}
