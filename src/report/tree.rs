//! The status tree's types: what `report` builds (in the parent module) and what
//! [`super::render`] writes out in each format.

use serde::Serialize;

use crate::lost::Loss;
use crate::model::Status;
use crate::state::Pause;

#[derive(Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub generated_at: i64,
    pub instance: Instance,
    pub pools: Vec<PoolReport>,
    /// Every problem, worst first; those of a locked pool no longer configured name it in
    /// `pool`.
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub status: Status,
    pub pool: Option<String>,
    pub message: String,
    /// What to do next.
    pub hint: String,
}

#[derive(Debug, Serialize)]
pub struct Instance {
    pub status: Status,
    pub config_dir: String,
    pub state_dir: String,
    pub last_tick_at: Option<i64>,
    pub last_tick_age_s: Option<f64>,
    pub last_tick_duration_s: Option<f64>,
    pub stale_warning_s: f64,
    pub stale_critical_s: f64,
    pub message: String,
}

#[derive(Debug, Serialize)]
pub struct PoolReport {
    pub name: String,
    pub status: Status,
    /// `null` until the first tick has seen the pool.
    pub state: Option<String>,
    pub active: String,
    pub active_address: String,
    pub standby_address: String,
    pub failures: u32,
    pub max_failed_checks: u32,
    /// Time-based mode: how long the active server must stay down; `null` when the pool
    /// counts failed checks instead.
    pub down_for_s: Option<f64>,
    pub reason: String,
    pub state_since: Option<i64>,
    /// The maintenance pause that is on, `null` without one.
    pub pause: Option<Pause>,
    /// How many chains the pool has started (failovers and promotes).
    pub failovers: u64,
    /// The pool no longer configured whose lock holds this one back (it has its servers):
    /// it does not fail over until that lock is carried over or dropped. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_by: Option<String>,
    /// What the chain that locked the pool lost (`history`'s `lost` event): absent for a
    /// pool not locked by a chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Loss>,
    /// Whether the writes the active server acknowledges are on a standby too, as its
    /// last check found (database monitors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub durability: Option<DurabilityReport>,
    pub monitor: MonitorReport,
    pub steps: Vec<StepReport>,
}

/// Whether acknowledged writes survive a failover: synchronous (PostgreSQL), semi-sync
/// (MySQL, MariaDB), or asynchronous.
#[derive(Debug, Serialize)]
pub struct DurabilityReport {
    /// The server whose check found it (the active one).
    pub server: String,
    /// `true`: a standby has every write before it is acknowledged; `false`: asynchronous;
    /// `null`: the monitor cannot tell.
    pub guaranteed: Option<bool>,
    /// Why, in the server's terms.
    pub how: String,
    /// The whole finding in words.
    pub words: String,
}

#[derive(Debug, Serialize)]
pub struct MonitorReport {
    #[serde(rename = "type")]
    pub kind: String,
    pub servers: Vec<ServerReport>,
}

#[derive(Debug, Serialize)]
pub struct ServerReport {
    pub role: String,
    pub address: String,
    pub active: bool,
    pub status: Status,
    /// up, degraded, down; `null` when never checked.
    pub health: Option<String>,
    pub message: String,
    pub checked_at: Option<i64>,
    pub age_s: Option<f64>,
    /// A replica's source and positions (database monitors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationReport>,
    /// A server's own position, when it is no replica (database monitors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// Whether the server refuses writes, as its last check found (database monitors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

/// Whom a standby replicates from and how far it has got.
#[derive(Debug, Serialize)]
pub struct ReplicationReport {
    pub source: String,
    /// Its link to the source is up (MySQL: the IO thread runs; Redis: `master_link_status`).
    pub receiving: bool,
    pub received: Option<String>,
    pub applied: Option<String>,
    pub lag_s: Option<u64>,
    pub problem: Option<String>,
    /// How long before the primary's newest recorded position it was last seen caught up
    /// with the primary (`null`: never, or nothing recorded).
    pub caught_up_age_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub status: Status,
    pub hosts: Vec<HostReport>,
}

#[derive(Debug, Serialize)]
pub struct HostReport {
    pub host: String,
    pub status: Status,
    pub message: String,
    pub checked_at: i64,
    pub age_s: f64,
}
