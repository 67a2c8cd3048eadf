//! The shared vocabulary at the bottom of every layer: a server's role and health, a Nagios
//! status, a pool's state and the kinds of history event. Plain data with their names; no module below this one.

use serde::Serialize;

/// One of a pool's servers, by its place in the pool: the primary as configured first,
/// then its standbys in config order. The state records which one is active. Its label is
/// what the database and etcd hold: `primary`, `secondary` (the first standby, as a pair
/// names it), then `standby2`, `standby3`, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(u8);

/// The most servers a pool may have.
pub const MAX_SERVERS: usize = 16;

const LABELS: [&str; MAX_SERVERS] = [
    "primary",
    "secondary",
    "standby2",
    "standby3",
    "standby4",
    "standby5",
    "standby6",
    "standby7",
    "standby8",
    "standby9",
    "standby10",
    "standby11",
    "standby12",
    "standby13",
    "standby14",
    "standby15",
];

impl Role {
    pub const PRIMARY: Role = Role(0);
    pub const SECONDARY: Role = Role(1);

    /// The server at `index` in the pool (0: the configured primary).
    pub fn at(index: usize) -> Role {
        assert!(
            index < MAX_SERVERS,
            "a pool has at most {MAX_SERVERS} servers"
        );
        Role(index as u8)
    }

    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn as_str(self) -> &'static str {
        LABELS[self.index()]
    }

    pub fn parse(s: &str) -> Option<Role> {
        LABELS.iter().position(|l| *l == s).map(Role::at)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Alive but unhappy (e.g. access denied, a Nagios WARNING): never counted as down.
    Degraded,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Degraded => "degraded",
            Health::Down => "down",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "up" => Some(Health::Up),
            "degraded" => Some(Health::Degraded),
            "down" => Some(Health::Down),
            _ => None,
        }
    }

    pub fn is_alive(self) -> bool {
        self != Health::Down
    }
}

/// A Nagios status. Ordered so that the worst of several is their maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Unknown => "UNKNOWN",
            Status::Critical => "CRITICAL",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "OK" => Status::Ok,
            "WARNING" => Status::Warning,
            "UNKNOWN" => Status::Unknown,
            "CRITICAL" => Status::Critical,
            _ => return None,
        })
    }

    /// The Nagios plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

/// What a step's readiness result is about. Where clients are sent is a fact about now,
/// reported as it is in every state; whether a failover would work matters to a locked pool
/// only once it is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Concern {
    /// Could the step do its part in a failover: a login, a helper, a writable file.
    #[default]
    Readiness,
    /// Where the step sends clients now: a hosts file, a DNS record, the VIP, HAProxy's
    /// backend, or a plugin's `check` that says so.
    Direction,
}

impl Concern {
    pub fn as_str(self) -> &'static str {
        match self {
            Concern::Readiness => "readiness",
            Concern::Direction => "direction",
        }
    }

    pub fn parse(s: &str) -> Option<Concern> {
        match s {
            "readiness" => Some(Concern::Readiness),
            "direction" => Some(Concern::Direction),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    Armed,
    Blocked,
    FailingOver,
    FailedOver,
    FailoverFailed,
    Interrupted,
}

impl PoolState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Armed => "armed",
            PoolState::Blocked => "blocked",
            PoolState::FailingOver => "failing_over",
            PoolState::FailedOver => "failed_over",
            PoolState::FailoverFailed => "failover_failed",
            PoolState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<PoolState> {
        Some(match s {
            "armed" => PoolState::Armed,
            "blocked" => PoolState::Blocked,
            "failing_over" => PoolState::FailingOver,
            "failed_over" => PoolState::FailedOver,
            "failover_failed" => PoolState::FailoverFailed,
            "interrupted" => PoolState::Interrupted,
            _ => return None,
        })
    }

    /// Locked pools never run their chain until a person resets them.
    pub fn is_locked(self) -> bool {
        matches!(
            self,
            PoolState::FailedOver | PoolState::FailoverFailed | PoolState::Interrupted
        )
    }
}

/// Every kind of history event, so that a kind is a name the compiler checks. Its text is
/// what the database row, etcd and `history` hold; events are built with [`EventKind::of`]
/// (in `state`, beside the row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Armed,
    Blocked,
    Interrupted,
    FailoverStarted,
    StepStarted,
    Step,
    Preflight,
    Readiness,
    PromoteRefused,
    Reset,
    /// A person paused the pool (or changed its pause).
    Paused,
    /// A person ended a pause early.
    Resumed,
    /// A pause reached its end; a tick records it.
    PauseExpired,
    /// A person carried the record of a pool no longer configured over to this one, its
    /// new name (`reset NEW --adopt OLD`).
    Adopted,
    /// A person dropped the record of a pool no longer configured (`reset OLD --forget`).
    Forgotten,
    /// What a chain's promotion lost: the old primary's last known position against what
    /// the new primary held once writable (`crate::lost::Loss`).
    Lost,
    /// The chain's end: `failed_over` or `failover_failed`.
    End(PoolState),
}

impl EventKind {
    /// The kinds with a name of their own (every kind but [`EventKind::End`]).
    const NAMED: [EventKind; 16] = [
        EventKind::Armed,
        EventKind::Blocked,
        EventKind::Interrupted,
        EventKind::FailoverStarted,
        EventKind::StepStarted,
        EventKind::Step,
        EventKind::Preflight,
        EventKind::Readiness,
        EventKind::PromoteRefused,
        EventKind::Reset,
        EventKind::Paused,
        EventKind::Resumed,
        EventKind::PauseExpired,
        EventKind::Adopted,
        EventKind::Forgotten,
        EventKind::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Armed => "armed",
            EventKind::Blocked => "blocked",
            EventKind::Interrupted => "interrupted",
            EventKind::FailoverStarted => "failover_started",
            EventKind::StepStarted => "step_started",
            EventKind::Step => "step",
            EventKind::Preflight => "preflight",
            EventKind::Readiness => "readiness",
            EventKind::PromoteRefused => "promote_refused",
            EventKind::Reset => "reset",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::PauseExpired => "pause_expired",
            EventKind::Adopted => "adopted",
            EventKind::Forgotten => "forgotten",
            EventKind::Lost => "lost",
            EventKind::End(state) => state.as_str(),
        }
    }

    /// The kind a text names; a pool state's name that no kind takes is a chain's end.
    /// `as_str` of the result gives the same text back.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::NAMED
            .into_iter()
            .find(|k| k.as_str() == s)
            .or_else(|| PoolState::parse(s).map(EventKind::End))
    }
}

/// Its text, padded as asked (`history` aligns it in a column).
impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Its text, as `history --json` and etcd hold it.
impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_round_trip_through_their_text() {
        let ends = [
            PoolState::FailedOver,
            PoolState::FailoverFailed,
            PoolState::FailingOver,
        ];
        for kind in EventKind::NAMED
            .into_iter()
            .chain(ends.into_iter().map(EventKind::End))
        {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind), "{kind}");
        }
        // A state whose name a kind takes reads as that kind, with the same text.
        assert_eq!(
            EventKind::parse("interrupted"),
            Some(EventKind::Interrupted)
        );
        assert_eq!(
            EventKind::parse("failed_over").unwrap().as_str(),
            "failed_over"
        );
        assert_eq!(EventKind::parse("step_finished"), None);
        assert_eq!(EventKind::parse(""), None);
        assert_eq!(format!("[{:<8}]", EventKind::Reset), "[reset   ]");
    }
}

/// A pool's name and its servers, as every part that acts on a pool sees them: a monitor's
/// check, a round, and each step. The first server is the configured primary, the others
/// its standbys in config order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolServers<'a> {
    pub name: &'a str,
    pub servers: &'a [String],
}

impl<'a> PoolServers<'a> {
    /// The server in `role`.
    pub fn address(&self, role: Role) -> &'a str {
        &self.servers[role.index()]
    }

    /// The configured primary.
    pub fn primary(&self) -> &'a str {
        &self.servers[0]
    }

    /// Every server with its role, in config order.
    pub fn roles(&self) -> impl Iterator<Item = (Role, &'a str)> + 'a {
        self.servers
            .iter()
            .enumerate()
            .map(|(i, s)| (Role::at(i), s.as_str()))
    }

    /// Every server but `active`, with its role: the standbys of that orientation.
    pub fn others(&self, active: Role) -> impl Iterator<Item = (Role, &'a str)> + 'a {
        self.roles().filter(move |(r, _)| *r != active)
    }

    /// The role of the server written `address` in the pool (compared as
    /// [`crate::settings::host_key`] compares hosts).
    pub fn role_of(&self, address: &str) -> Option<Role> {
        let key = crate::settings::host_key(address);
        self.roles()
            .find(|(_, s)| crate::settings::host_key(s) == key)
            .map(|(r, _)| r)
    }

    /// Whether the pool is a pair (a primary and one standby).
    pub fn is_pair(&self) -> bool {
        self.servers.len() == 2
    }
}
