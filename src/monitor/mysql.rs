//! The `mysql` monitor: a login over TCP and a few read-only queries. A server that answers
//! with an error (access denied, too many connections) is alive: a problem to report, never
//! a reason to fail over.

use std::path::Path;

use serde::Deserialize;

use super::{Facts, Health, Kind, ObserverProbe, Server};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::mysql::{Client, Failure, Target};
use crate::settings::Secret;
use crate::tls::Tls;

pub const TYPE: &str = "mysql";

/// What an observer runs: reads the server greeting, as MySQL and MariaDB speak first.
/// `connected` is printed once the TCP connection stands, so a hung server (connected,
/// silent) is told from one that cannot be connected to.
const PROBE: &str = r#"exec 3<>"/dev/tcp/$0/$1" || exit 3
echo connected
n=$(head -c 4 <&3 | wc -c)
if [ "$n" -ge 4 ]; then echo "server greeting"; exit 0; fi
echo "connection closed without a greeting"; exit 4"#;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    port: Option<u16>,
    user: Option<String>,
    password_file: Option<String>,
    tls: Option<RawTls>,
}

#[derive(Debug, Clone)]
pub struct Mysql {
    pub port: u16,
    pub user: String,
    pub password: Secret,
    /// TLS toward both servers, also used by `mysql_promote` unless it has its own.
    pub tls: Option<Tls>,
}

/// Validates the keys of a `mysql` monitor beyond the common ones.
pub fn load(dir: &Path, table: toml::Table) -> Result<Mysql, Problem> {
    let raw: Raw = super::parse(table, TYPE)?;
    let tls = raw.tls.map(|t| load_tls(dir, t)).transpose()?;
    let rel = raw.password_file.as_deref().ok_or(Problem::at(
        "password_file",
        "a `mysql` monitor needs the monitoring account's password file",
    ))?;
    let password = load_secret(dir, rel).map_err(|e| Problem::at("password_file", e))?;
    Ok(Mysql {
        port: raw.port.unwrap_or(3306),
        user: raw.user.unwrap_or_else(|| "deadpool".to_string()),
        password,
        tls: tls.map(crate::mysql::check_tls).transpose()?,
    })
}

impl Kind for Mysql {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn port(&self) -> Option<u16> {
        Some(self.port)
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    fn observer_probe(&self, _: &Server) -> ObserverProbe {
        ObserverProbe::Script(PROBE)
    }

    fn check(&self, server: &Server) -> (Health, String, Option<Facts>) {
        let (host, monitor, timeout) = (server.host.to_string(), self.clone(), server.timeout);
        let probe = move || {
            let target = Target {
                host: &host,
                port: monitor.port,
                user: &monitor.user,
                password: &monitor.password,
                timeout,
                statement_timeout: None,
                tls: monitor.tls.as_ref(),
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
