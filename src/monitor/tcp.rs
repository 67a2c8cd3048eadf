//! The `tcp` monitor: up when a TCP connection to the port opens within the timeout.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Facts, Health, Kind, ObserverProbe, Server};
use crate::error::Problem;
use crate::net::resolve;

pub const TYPE: &str = "tcp";

/// The observer connects and says so: all a `tcp` monitor asks of the server itself.
const PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo "connected"; exit 0"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    port: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Tcp {
    pub port: u16,
}

/// Validates the keys of a `tcp` monitor beyond the common ones.
pub fn load(table: toml::Table) -> Result<Tcp, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let port = raw
        .port
        .ok_or(Problem::at("port", "a `tcp` monitor needs a port"))?;
    Ok(Tcp { port })
}

impl Kind for Tcp {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn observer_probe(&self, _: &Server) -> ObserverProbe {
        ObserverProbe::Script(PROBE)
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (health, message) = connect(server.host, self.port, server.timeout);
        (health, message, None)
    }
}

/// Opens a TCP connection to the first address of `host` that accepts one.
fn connect(host: &str, port: u16, timeout: Duration) -> (Health, String) {
    let started = Instant::now();
    let addrs = match resolve(host, port, timeout) {
        Ok(a) => a,
        Err(e) => return (Health::Down, e),
    };
    let mut last_error = String::from("no address");
    for addr in addrs {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            last_error = format!("timed out after {}ms", timeout.as_millis());
            break;
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => {
                return (
                    Health::Up,
                    format!(
                        "TCP OK - {addr} accepted in {}ms",
                        started.elapsed().as_millis()
                    ),
                );
            }
            Err(e) => last_error = format!("{addr}: {e}"),
        }
    }
    (Health::Down, format!("TCP CRITICAL - {last_error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_and_closed_ports() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(
            connect("127.0.0.1", port, Duration::from_secs(1)).0,
            Health::Up
        );
        drop(listener);
        let (health, message) = connect("127.0.0.1", port, Duration::from_secs(1));
        assert_eq!(health, Health::Down);
        assert!(message.contains("refused"), "{message}");
    }
}
