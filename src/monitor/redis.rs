//! The `redis` monitor: PING over TCP (or TLS), then `INFO replication`. An error reply
//! (LOADING, BUSY, MASTERDOWN, an auth error), a TLS certificate deadpool does not trust, or
//! a TLS-only server met without TLS means the server is alive with a problem, never down.

use std::time::Duration;

use super::{Facts, Health};
use crate::config::RedisAccess;
use crate::redis::{Client, Failure, Reply, Target, alive_error};

pub fn check(
    host: &str,
    access: &RedisAccess,
    timeout: Duration,
) -> (Health, String, Option<Facts>) {
    let (host, access) = (host.to_string(), access.clone());
    let probe = move || {
        let target = Target {
            host: &host,
            port: access.port,
            user: access.user.as_deref(),
            password: access.password.as_ref(),
            timeout,
            tls: access.tls.as_ref(),
        };
        probe(&target)
    };
    super::bounded_probe(timeout, probe)
}

fn probe(target: &Target) -> (Health, String, Option<Facts>) {
    let mut client = match Client::connect(target) {
        Ok(c) => c,
        Err(Failure::Down(m)) => return (Health::Down, format!("down: {m}"), None),
        Err(Failure::Refused(m)) => {
            return (Health::Degraded, format!("alive but refused: {m}"), None);
        }
    };
    match client.call(&["PING"]) {
        Ok(Reply::Status(s)) if s == "PONG" => {}
        Ok(Reply::Error(e)) if alive_error(&e) => {
            return (Health::Degraded, format!("alive with a problem: {e}"), None);
        }
        Ok(other) => {
            return (
                Health::Down,
                format!("unexpected answer to PING: {}", other.text()),
                None,
            );
        }
        Err(Failure::Down(m)) => return (Health::Down, format!("down: {m}"), None),
        Err(Failure::Refused(m)) => {
            return (Health::Degraded, format!("alive with a problem: {m}"), None);
        }
    }
    let version = client.version();
    match client.replication() {
        Ok(r) => {
            let read_only = r.is_replica();
            (
                Health::Up,
                format!(
                    "Redis {version} up{}, {}",
                    if target.tls.is_some() {
                        " over TLS"
                    } else {
                        ""
                    },
                    r.describe()
                ),
                Some(Facts {
                    read_only: Some(read_only),
                }),
            )
        }
        Err(f) => (
            Health::Degraded,
            format!("Redis {version} up, but INFO replication failed: {f}"),
            None,
        ),
    }
}
