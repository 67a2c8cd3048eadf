//! The shared vocabulary at the bottom of every layer: a server's role and health, a Nagios
//! status and a pool's state. Plain data with their names; no module below this one.

use serde::Serialize;

/// One of a pool's two servers, by its label; the state records which one is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Primary,
    Secondary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Secondary => "secondary",
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Primary => Role::Secondary,
            Role::Secondary => Role::Primary,
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "primary" => Some(Role::Primary),
            "secondary" => Some(Role::Secondary),
            _ => None,
        }
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
