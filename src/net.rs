//! The networking layer under monitors, database clients and the SSH runner: name
//! resolution with a deadline (the system resolver has none), and telling whether two names
//! are the same server.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::Duration;

/// Name resolution has no timeout of its own, so it runs on a thread we stop waiting for.
pub fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::spawn(move || {
        let _ = tx.send(
            (name.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>()),
        );
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(format!("cannot resolve {host}: {e}")),
        Err(_) => Err(format!(
            "resolving {host} took longer than {}ms",
            timeout.as_millis()
        )),
    }
}

/// Whether two host names or addresses name the same server (by name, or by an address
/// they share), e.g. a replica's configured source and a pool's server.
pub fn same_host(a: &str, b: &str, timeout: Duration) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let ips = |h: &str| {
        resolve(h, 0, timeout)
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.ip())
            .collect::<Vec<_>>()
    };
    let (x, y) = (ips(a), ips(b));
    x.iter().any(|ip| y.contains(ip))
}

/// An I/O error in the words of a monitor's message: a read or write past its timeout says
/// so, whatever the platform calls it.
pub fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer in time (timed out)".to_string()
        }
        _ => e.to_string(),
    }
}
