//! The `redis` monitor: PING over TCP (or TLS), then `INFO replication`. An error reply
//! (LOADING, BUSY, MASTERDOWN, an auth error), a TLS certificate deadpool does not trust, or
//! a TLS-only server met without TLS means the server is alive with a problem, never down.

use std::path::Path;

use serde::Deserialize;

use super::{Facts, Health, Kind, ObserverProbe, Server};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::redis::{Client, Failure, RedisAccess, Reply, Target, alive_error};
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
