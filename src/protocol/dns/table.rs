//! The `dns` step's table: its keys, validated into [`Dns`] (names absolute, values of the
//! record's type, the TSIG secret from a private file).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::super::{LoadContext, PerServer, RawPerServer, port_number};
use crate::config::load::load_secret;
use crate::error::Problem;
use crate::settings::{Secret, parse_duration, validate_host};

/// The `dns` step: an RFC 2136 dynamic update of one record at the zone's primary server,
/// signed with TSIG.
#[derive(Debug, Clone)]
pub struct Dns {
    /// The zone's primary server (host name or address), which accepts updates.
    pub server: String,
    pub port: u16,
    /// Absolute, lower case, with the final dot.
    pub zone: String,
    /// The record's owner name: absolute, lower case, inside `zone`.
    pub service_host_name: String,
    pub record: DnsRecord,
    /// The TTL written with the new record, in seconds.
    pub ttl: u32,
    /// Readiness: a record with a longer TTL is a warning, in seconds.
    pub max_ttl: u32,
    /// The record's value for each server: their addresses unless `values` is set.
    pub values: PerServer,
    pub tsig: Tsig,
    /// Resolvers asked by the readiness check what they answer for the name.
    pub verify_servers: Vec<(String, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsRecord {
    A,
    Aaaa,
    Cname,
}

impl DnsRecord {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecord::A => "A",
            DnsRecord::Aaaa => "AAAA",
            DnsRecord::Cname => "CNAME",
        }
    }
}

/// A TSIG key: its name and algorithm as the server knows them, and the secret.
#[derive(Debug, Clone)]
pub struct Tsig {
    pub name: String,
    pub algorithm: String,
    /// Base64, as in the server's `key` statement.
    pub secret: Secret,
    pub secret_file: PathBuf,
}

/// TSIG algorithms that BIND's `nsupdate` signs with.
pub const TSIG_ALGORITHMS: &[&str] = &[
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
    "hmac-sha224",
    "hmac-sha1",
    "hmac-md5",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDns {
    server: String,
    port: Option<u16>,
    zone: String,
    service_host_name: String,
    record: Option<String>,
    ttl: Option<String>,
    max_ttl: Option<String>,
    values: Option<RawPerServer>,
    tsig_key: String,
    tsig_algorithm: Option<String>,
    tsig_secret_file: String,
    verify_servers: Option<Vec<String>>,
}

/// The `dns` step's keys, validated: names absolute, values of the record's type, the TSIG
/// secret from a private file.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<Dns, Problem> {
    let raw: RawDns = super::super::raw(table)?;
    let (dir, servers) = (cx.dir, cx.servers);
    validate_host(&raw.server).map_err(|e| Problem::at("server", e))?;
    let zone = dns_name(&raw.zone).map_err(|e| Problem::at("zone", e))?;
    let service_host_name =
        dns_name(&raw.service_host_name).map_err(|e| Problem::at("service_host_name", e))?;
    if service_host_name != zone && !service_host_name.ends_with(&format!(".{zone}")) {
        return Err(Problem::at(
            "service_host_name",
            format!("`{service_host_name}` is not inside the zone `{zone}`"),
        ));
    }
    let record = match raw.record.as_deref().unwrap_or("A") {
        r if r.eq_ignore_ascii_case("A") => DnsRecord::A,
        r if r.eq_ignore_ascii_case("AAAA") => DnsRecord::Aaaa,
        r if r.eq_ignore_ascii_case("CNAME") => DnsRecord::Cname,
        other => {
            return Err(Problem::at(
                "record",
                format!("got `{other}`, expected \"A\", \"AAAA\" or \"CNAME\""),
            ));
        }
    };
    let values = record_values(record, raw.values, servers)?;
    let ttl =
        ttl_seconds(raw.ttl.as_deref().unwrap_or("30s")).map_err(|e| Problem::at("ttl", e))?;
    let max_ttl = match raw.max_ttl.as_deref() {
        Some(v) => ttl_seconds(v).map_err(|e| Problem::at("max_ttl", e))?,
        None => ttl,
    };
    if max_ttl < ttl {
        return Err(Problem::at(
            "max_ttl",
            format!(
                "{max_ttl}s is shorter than `ttl` ({ttl}s): the record deadpool writes would warn"
            ),
        ));
    }
    let tsig = tsig(
        dir,
        &raw.tsig_key,
        raw.tsig_algorithm,
        &raw.tsig_secret_file,
    )?;
    let port = raw.port.filter(|p| *p > 0).unwrap_or(53);
    let mut verify_servers = Vec::new();
    for entry in raw.verify_servers.unwrap_or_default() {
        let server = host_port(&entry, 53).map_err(|e| Problem::at("verify_servers", e))?;
        if server == (raw.server.clone(), port) {
            return Err(Problem::at(
                "verify_servers",
                format!("`{entry}` is the primary server, which the check always asks"),
            ));
        }
        if verify_servers.contains(&server) {
            return Err(Problem::at(
                "verify_servers",
                format!("`{entry}` is listed twice"),
            ));
        }
        verify_servers.push(server);
    }
    Ok(Dns {
        server: raw.server,
        port,
        zone,
        service_host_name,
        record,
        ttl,
        max_ttl,
        values,
        tsig,
        verify_servers,
    })
}

/// The record's value for each server, `values` or else the servers' addresses, in the
/// record type's form; all must differ.
fn record_values(
    record: DnsRecord,
    given: Option<RawPerServer>,
    servers: &[String],
) -> Result<PerServer, Problem> {
    let key = if given.is_some() { "values" } else { "record" };
    PerServer::load(
        given,
        servers,
        key,
        |value, role| {
            record_value(record, value)
                .map_err(|e| Problem::at(key, format!("the {}'s value {e}", role.as_str())))
        },
        "the record could not tell them apart",
    )
}

/// The TSIG key: a name as the server knows it, an algorithm `nsupdate` signs with, and a
/// base64 secret from a private file.
fn tsig(
    dir: &std::path::Path,
    key: &str,
    algorithm: Option<String>,
    secret_file: &str,
) -> Result<Tsig, Problem> {
    let tsig_name = key.trim_end_matches('.');
    if tsig_name.is_empty() || dns_name(tsig_name).is_err() {
        return Err(Problem::at(
            "tsig_key",
            format!(
                "`{}`: expected the key's name as the server knows it, like \"deadpool-key\"",
                key
            ),
        ));
    }
    let algorithm = algorithm
        .unwrap_or_else(|| "hmac-sha256".to_string())
        .to_ascii_lowercase();
    if !TSIG_ALGORITHMS.contains(&algorithm.as_str()) {
        return Err(Problem::at(
            "tsig_algorithm",
            format!(
                "got `{algorithm}`, expected one of {}",
                TSIG_ALGORITHMS.join(", ")
            ),
        ));
    }
    let secret = load_secret(dir, secret_file).map_err(|e| Problem::at("tsig_secret_file", e))?;
    let base64 = |b: u8| b.is_ascii_alphanumeric() || b"+/=".contains(&b);
    if !secret.expose().bytes().all(base64) {
        return Err(Problem::at(
            "tsig_secret_file",
            format!(
                "{}: expected the key's base64 secret on one line, as in the server's `key` statement",
                dir.join(secret_file).display()
            ),
        ));
    }
    Ok(Tsig {
        name: tsig_name.to_string(),
        algorithm,
        secret,
        secret_file: dir.join(secret_file),
    })
}

/// `HOST`, `HOST:PORT`, `[V6]`, `[V6]:PORT` or a bare IPv6 address, with `default` as the
/// port when none is given.
fn host_port(entry: &str, default: u16) -> Result<(String, u16), String> {
    let expected = || format!("`{entry}`: expected HOST or HOST:PORT");
    let (host, port) = if let Some(inner) = entry.strip_prefix('[') {
        match inner.split_once(']') {
            Some((host, "")) => (host, default),
            Some((host, rest)) => (
                host,
                rest.strip_prefix(':')
                    .and_then(port_number)
                    .ok_or_else(expected)?,
            ),
            None => return Err(expected()),
        }
    } else if entry.matches(':').count() == 1 {
        let (host, port) = entry.split_once(':').ok_or_else(expected)?;
        (host, port_number(port).ok_or_else(expected)?)
    } else {
        (entry, default)
    };
    validate_host(host)?;
    Ok((host.to_string(), port))
}

/// A domain name made absolute and lower case: labels of letters, digits, `-` and `_`.
fn dns_name(name: &str) -> Result<String, String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    let ok = !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(format!("{}.", bare.to_ascii_lowercase()))
    } else {
        Err(format!("`{name}` is not a domain name"))
    }
}

/// A record value in the form the record type needs, canonical for comparisons.
fn record_value(record: DnsRecord, value: &str) -> Result<String, String> {
    match record {
        DnsRecord::A => value
            .parse::<std::net::Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("`{value}` is not an IPv4 address (an A record holds one)")),
        DnsRecord::Aaaa => value
            .parse::<std::net::Ipv6Addr>()
            .map(|a| a.to_string())
            .map_err(|_| format!("`{value}` is not an IPv6 address (an AAAA record holds one)")),
        DnsRecord::Cname => {
            if value.parse::<std::net::IpAddr>().is_ok() {
                return Err(format!(
                    "`{value}` is an address; a CNAME record holds a host name"
                ));
            }
            dns_name(value)
        }
    }
}

/// A TTL: whole seconds, at least 1, at most a week.
fn ttl_seconds(value: &str) -> Result<u32, String> {
    let d = parse_duration(value)?;
    if d.subsec_millis() != 0 || d > Duration::from_secs(7 * 86_400) {
        return Err(format!(
            "got \"{value}\", expected whole seconds up to a week, like \"30s\""
        ));
    }
    Ok(d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_values_are_checked() {
        assert_eq!(
            dns_name("Orders-DB.internal.example"),
            Ok("orders-db.internal.example.".into())
        );
        assert_eq!(
            dns_name("internal.example."),
            Ok("internal.example.".into())
        );
        for bad in ["", ".", "a..b", "-a.b", "a b.c", "a;b.c", &"x".repeat(64)] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            record_value(DnsRecord::A, "10.0.0.1"),
            Ok("10.0.0.1".into())
        );
        assert!(record_value(DnsRecord::A, "db1").is_err());
        assert!(record_value(DnsRecord::A, "fd00::1").is_err());
        assert_eq!(
            record_value(DnsRecord::Aaaa, "FD00:0::1"),
            Ok("fd00::1".into())
        );
        assert_eq!(
            record_value(DnsRecord::Cname, "DB1.example"),
            Ok("db1.example.".into())
        );
        assert!(record_value(DnsRecord::Cname, "10.0.0.1").is_err());
        assert_eq!(ttl_seconds("30s"), Ok(30));
        assert_eq!(ttl_seconds("5m"), Ok(300));
        for bad in ["1500ms", "8d", "0s"] {
            assert!(ttl_seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(host_port("10.0.0.53", 53), Ok(("10.0.0.53".into(), 53)));
        assert_eq!(host_port("ns1:5353", 53), Ok(("ns1".into(), 5353)));
        assert_eq!(host_port("fd00::53", 53), Ok(("fd00::53".into(), 53)));
        assert_eq!(
            host_port("[fd00::53]:5353", 53),
            Ok(("fd00::53".into(), 5353))
        );
        assert_eq!(host_port("[fd00::53]", 53), Ok(("fd00::53".into(), 53)));
        for bad in ["ns1:", "ns1:x", "[fd00::53", "a b", "[::1]x"] {
            assert!(host_port(bad, 53).is_err(), "{bad}");
        }
    }
}
