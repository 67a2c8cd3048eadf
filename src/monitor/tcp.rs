//! The `tcp` monitor: up when a TCP connection to the port opens within the timeout.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::Health;
use crate::net::resolve;

pub fn check(host: &str, port: u16, timeout: Duration) -> (Health, String) {
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
            check("127.0.0.1", port, Duration::from_secs(1)).0,
            Health::Up
        );
        drop(listener);
        let (health, message) = check("127.0.0.1", port, Duration::from_secs(1));
        assert_eq!(health, Health::Down);
        assert!(message.contains("refused"), "{message}");
    }
}
