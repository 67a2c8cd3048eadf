//! Monitors: each answers one question about one server — is it up?

mod mysql;
pub mod nagios;
mod redis;
mod tcp;

use std::time::Duration;

use crate::config::{MonitorKind, Pool};
use crate::model::Role;

/// What one check of one server found.
pub use crate::model::Health;

#[derive(Debug, Clone)]
pub struct Check {
    pub health: Health,
    pub message: String,
    pub duration: Duration,
    /// What a database monitor learned beyond up or down.
    pub facts: Option<Facts>,
}

/// Server facts from a database monitor, for split-brain detection.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub read_only: Option<bool>,
}

/// Checks one server of a pool, bounded by the monitor's timeout.
pub fn check(pool: &Pool, role: Role) -> Check {
    let host = pool.address(role);
    let started = std::time::Instant::now();
    let timeout = pool.monitor.timeout;
    let (health, message, facts) = match &pool.monitor.kind {
        MonitorKind::Nagios { argv, port } => {
            let (h, m) = nagios::check(argv, *port, host, &pool.name, role, timeout);
            (h, m, None)
        }
        MonitorKind::Tcp { port } => {
            let (h, m) = tcp::check(host, *port, timeout);
            (h, m, None)
        }
        MonitorKind::Mysql {
            port,
            user,
            password,
            tls,
        } => mysql::check(host, *port, user, password, tls.as_ref(), timeout),
        MonitorKind::Redis(r) => redis::check(host, r, timeout),
    };
    Check {
        health,
        message: crate::text::one_line(&message),
        duration: started.elapsed(),
        facts,
    }
}

/// Checks both servers of a pool at once.
pub fn check_both(pool: &Pool) -> [Check; 2] {
    std::thread::scope(|s| {
        let secondary = s.spawn(|| check(pool, Role::Secondary));
        let primary = check(pool, Role::Primary);
        let secondary = secondary.join().unwrap_or_else(|_| Check {
            health: Health::Down,
            message: "monitor thread panicked".into(),
            duration: Duration::ZERO,
            facts: None,
        });
        [primary, secondary]
    })
}

/// Runs a database probe on its own thread, bounded by `timeout` plus a small margin: the
/// client's own connect, read and write timeouts bound each call, this bounds them all.
pub fn bounded_probe(
    timeout: Duration,
    probe: impl FnOnce() -> (Health, String, Option<Facts>) + Send + 'static,
) -> (Health, String, Option<Facts>) {
    match crate::remote::with_deadline(timeout + Duration::from_millis(250), probe) {
        Some(result) => result,
        None => (
            Health::Down,
            format!("no answer within {}ms", timeout.as_millis()),
            None,
        ),
    }
}
