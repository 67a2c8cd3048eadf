//! The `mysql` monitor: a login over TCP and a few read-only queries. A server that answers
//! with an error (access denied, too many connections) is alive: a problem to report, never
//! a reason to fail over.

use std::time::Duration;

use super::{Facts, Health};
use crate::mysql::{Client, Failure, Target};
use crate::settings::Secret;
use crate::tls::Tls;

pub fn check(
    host: &str,
    port: u16,
    user: &str,
    password: &Secret,
    tls: Option<&Tls>,
    timeout: Duration,
) -> (Health, String, Option<Facts>) {
    let (host, user, password, tls) = (
        host.to_string(),
        user.to_string(),
        password.clone(),
        tls.cloned(),
    );
    let probe = move || {
        let target = Target {
            host: &host,
            port,
            user: &user,
            password: &password,
            timeout,
            statement_timeout: None,
            tls: tls.as_ref(),
        };

        probe(&target)
    };
    super::bounded_probe(timeout, probe)
}

fn probe(target: &Target) -> (Health, String, Option<Facts>) {
    let mut client = match Client::connect(target) {
        Ok(c) => c,
        Err(Failure::Down(m)) => return (Health::Down, format!("down: {m}"), None),
        Err(f @ Failure::Refused { .. }) => {
            return (
                Health::Degraded,
                format!("alive but refused the login: {f}"),
                None,
            );
        }
    };
    let product = product_name(&client);
    let read_only = match client.read_only() {
        Ok(r) => r,
        Err(f) => return failure_after_login(&product, "reading read_only", f),
    };
    let replica = match client.replica_status() {
        Ok(r) => r,
        Err(f) => return failure_after_login(&product, "reading the replication status", f),
    };
    let mut message = format!(
        "{product} up{}, {}",
        if client.tls { " over TLS" } else { "" },
        if read_only { "read-only" } else { "writable" }
    );
    match &replica {
        Some(r) => message.push_str(&format!(", {}", r.describe())),
        None => message.push_str(", not a replica"),
    }
    (
        Health::Up,
        message,
        Some(Facts {
            read_only: Some(read_only),
        }),
    )
}

fn failure_after_login(product: &str, what: &str, f: Failure) -> (Health, String, Option<Facts>) {
    match f {
        Failure::Down(m) => (
            Health::Down,
            format!("{product} stopped answering while {what}: {m}"),
            None,
        ),
        Failure::Refused { .. } => (
            Health::Degraded,
            format!("{product} up, but {what} failed: {f}"),
            None,
        ),
    }
}

fn product_name(client: &Client) -> String {
    let short = client.version.split('-').next().unwrap_or(&client.version);
    match client.flavor {
        crate::mysql::Flavor::MariaDb => format!("MariaDB {short}"),
        crate::mysql::Flavor::MySql => format!("MySQL {short}"),
    }
}
