//! The `redis` monitor: PING over TCP (or TLS), then `INFO replication`. An error reply
//! (LOADING, BUSY, MASTERDOWN, an auth error), a TLS certificate deadpool does not trust, or
//! a TLS-only server met without TLS means the server is alive with a problem, never down.

use std::path::Path;

use serde::Deserialize;

use super::{Durability, Facts, Health, Kind, ObserverProbe, Replica, Server};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::position::Position;
use crate::redis::{Client, Failure, RedisAccess, Replication, Reply, Target, alive_error};
use crate::tls::Tls;

pub const TYPE: &str = "redis";

/// What an observer runs: sends PING and reads one reply line, `+PONG` or an error reply
/// (`-NOAUTH ...`), which also proves the server alive.
const PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo connected
printf 'PING\r\n' >&3
IFS= read -r line <&3 || { echo "connection closed without a reply"; exit 4; }
line=$(printf '%s' "$line" | tr -d '\r' | cut -c1-60)
echo "reply $line"; exit 0"#;

/// What an observer runs toward Redis over TLS (a TLS-only server drops a plain PING
/// unanswered): sends a TLS record that is no handshake, which an OpenSSL server answers
/// with an alert. An alert proves the server's event loop alive as a reply to PING would;
/// nothing to install, no certificate needed.
const TLS_PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo connected
printf '\026\003\001\000\005hello' >&3
n=$(head -c 5 <&3 | wc -c)
if [ "$n" -ge 5 ]; then echo "TLS alert"; exit 0; fi
echo "connection closed without a TLS answer"; exit 4"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone)]
pub struct Redis {
    pub access: RedisAccess,
}

/// Validates the keys of a `redis` monitor beyond the common ones.
pub fn load(dir: &Path, table: toml::Table) -> Result<Redis, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let tls = raw.tls.map(|t| load_tls(dir, t)).transpose()?;
    let password = match raw.password_file.as_deref() {
        Some(rel) => Some(load_secret(dir, rel).map_err(|e| Problem::at("password_file", e))?),
        None => None,
    };
    Ok(Redis {
        access: RedisAccess {
            port: raw.port.unwrap_or(6379),
            user: raw.user,
            password,
            tls,
        },
    })
}

impl Kind for Redis {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn unit(&self) -> crate::position::Unit {
        crate::position::Unit::Redis
    }

    fn port(&self) -> Option<u16> {
        Some(self.access.port)
    }

    fn tls(&self) -> Option<&Tls> {
        self.access.tls.as_ref()
    }

    fn observer_probe(&self, _: &Server) -> ObserverProbe {
        ObserverProbe::Script(if self.access.tls.is_some() {
            TLS_PROBE
        } else {
            PROBE
        })
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (host, access, timeout) =
            (server.host.to_string(), self.access.clone(), server.timeout);
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
        Ok(r) => (
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
            Some(facts(&r)),
        ),
        Err(f) => (
            Health::Degraded,
            format!("Redis {version} up, but INFO replication failed: {f}"),
            None,
        ),
    }
}

/// What `INFO replication` tells beyond up or down (pure, for tests): a replica's
/// replication, or a primary's own offset.
fn facts(r: &Replication) -> Facts {
    let replica = r.is_replica();
    Facts {
        read_only: Some(replica),
        replication: replica.then(|| replica_facts(r)),
        position: if replica { None } else { offset(r) },
        durability: (!replica).then(|| durability(r)),
        fenced_softly: false,
    }
}

/// What a Redis primary promises of its writes (pure, for tests): replication is always
/// asynchronous; `min-replicas-to-write` only refuses writes while too few replicas are
/// within `min-replicas-max-lag`, which bounds what a failover can lose.
fn durability(r: &Replication) -> Durability {
    match r.good_replicas {
        Some(n) => Durability::new(
            Some(false),
            format!(
                "min-replicas-to-write is set, {n} replica{} within min-replicas-max-lag now: writes stop when too few are, which bounds the loss, but each write is acknowledged before a replica has it",
                if n == 1 { "" } else { "s" }
            ),
        ),
        None => Durability::new(
            Some(false),
            "replication is asynchronous and min-replicas-to-write is 0",
        ),
    }
}

/// A replica's facts. Its offset (`slave_repl_offset`) counts in its primary's stream; it
/// applies what it receives at once, and gives no lag in seconds (the seconds since the
/// last I/O are not one).
fn replica_facts(r: &Replication) -> Replica {
    let link = if r.link_status.is_empty() {
        "down"
    } else {
        r.link_status.as_str()
    };
    Replica {
        source: r.master_host.clone(),
        receiving: r.link_up(),
        received: offset(r),
        applied: offset(r),
        lag_seconds: None,
        problem: (!r.link_up()).then(|| {
            format!(
                "link to {}:{} {link}",
                r.master_host,
                r.master_port.unwrap_or(0)
            )
        }),
    }
}

/// A replication offset; none when the server gives none, or a negative one (a replica
/// that never synced).
fn offset(r: &Replication) -> Option<Position> {
    r.offset
        .and_then(|o| u64::try_from(o).ok())
        .map(Position::redis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLICA: &str = "# Replication\r\nrole:slave\r\nmaster_host:10.213.0.11\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:1205\r\nslave_repl_offset:1205\r\nconnected_slaves:0\r\nmaster_repl_offset:1205\r\n";
    const LINK_DOWN: &str = "role:slave\r\nmaster_host:10.213.0.11\r\nmaster_port:6379\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\nslave_repl_offset:900\r\nmaster_link_down_since_seconds:12\r\nmaster_repl_offset:900\r\n";
    const NEVER_SYNCED: &str = "role:slave\r\nmaster_host:10.213.0.11\r\nmaster_port:6379\r\nmaster_link_status:down\r\nslave_repl_offset:-1\r\nmaster_repl_offset:0\r\n";
    const PRIMARY: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.213.0.12,port=6379,state=online,offset=1205,lag=0\r\nmaster_repl_offset:1205\r\n";

    /// `INFO replication` as Redis 7.0 gives it, into facts: a replica's link and offset in
    /// its primary's stream, or a primary's own offset.
    #[test]
    fn facts_from_info_replication() {
        // (INFO text, read-only, replication (source, receiving, offset, problem), position)
        type Row<'a> = (
            &'a str,
            bool,
            Option<(&'a str, bool, Option<u64>, Option<&'a str>)>,
            Option<u64>,
        );
        let table: &[Row] = &[
            (
                REPLICA,
                true,
                Some(("10.213.0.11", true, Some(1205), None)),
                None,
            ),
            (
                LINK_DOWN,
                true,
                Some((
                    "10.213.0.11",
                    false,
                    Some(900),
                    Some("link to 10.213.0.11:6379 down"),
                )),
                None,
            ),
            (
                NEVER_SYNCED,
                true,
                Some((
                    "10.213.0.11",
                    false,
                    None,
                    Some("link to 10.213.0.11:6379 down"),
                )),
                None,
            ),
            (PRIMARY, false, None, Some(1205)),
        ];
        for (info, read_only, replication, position) in table {
            let f = facts(&Replication::parse(info));
            assert_eq!(f.read_only, Some(*read_only), "{info}");
            assert_eq!(f.position, position.map(Position::redis), "{info}");
            let got = f.replication.as_ref().map(|r| {
                assert_eq!(r.received, r.applied, "{info}");
                assert_eq!(r.lag_seconds, None, "{info}");
                (
                    r.source.as_str(),
                    r.receiving,
                    r.received.as_ref().map(|p| p.offset),
                    r.problem.as_deref(),
                )
            });
            assert_eq!(got, *replication, "{info}");
        }
    }

    /// A primary with and without `min-replicas-to-write`: never a guarantee.
    #[test]
    fn a_primary_says_what_min_replicas_to_write_bounds() {
        let plain = facts(&Replication::parse(PRIMARY)).durability.unwrap();
        assert_eq!(
            (plain.guaranteed, plain.how.as_str()),
            (
                Some(false),
                "replication is asynchronous and min-replicas-to-write is 0"
            )
        );
        let bounded = format!("{PRIMARY}min_slaves_good_slaves:1\r\n");
        let d = facts(&Replication::parse(&bounded)).durability.unwrap();
        assert_eq!(d.guaranteed, Some(false));
        assert!(
            d.how.starts_with(
                "min-replicas-to-write is set, 1 replica within min-replicas-max-lag now"
            ),
            "{}",
            d.how
        );
        assert!(facts(&Replication::parse(REPLICA)).durability.is_none());
    }
}
