//! The `[cluster]` table of deadpool.toml, validated into [`Settings`]. `config` imports it,
//! so it imports nothing above the shared vocabulary: `settings`, `config::load`, `tls`.

use std::path::Path;
use std::time::Duration;

use crate::error::Problem;
use crate::settings::{format_duration, parse_duration};

/// The `[cluster]` table, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `host:port` of each etcd member's client URL.
    pub endpoints: Vec<String>,
    /// With `https://` endpoints: the CA to trust (`ca_file`) and the client certificate
    /// (`cert_file`, `key_file`), checked like a pool's `tls` table.
    pub tls: Option<crate::tls::Tls>,
    /// etcd authentication: the user and its password (`password_file`).
    pub auth: Option<(String, crate::settings::Secret)>,
    /// This member's name (default: the host name).
    pub name: String,
    /// Every key of this instance lives under it; two instances never share a prefix.
    pub prefix: String,
    pub lease_ttl: Duration,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    etcd: Vec<String>,
    name: Option<String>,
    prefix: Option<String>,
    lease_ttl: Option<String>,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    user: Option<String>,
    password_file: Option<String>,
}

impl Settings {
    /// Parses and checks the `[cluster]` table; `lease_ttl` must exceed twice the tick
    /// interval, so that a leader renews its lease at least twice before it can expire.
    pub fn parse(
        dir: &Path,
        table: toml::Table,
        tick_interval: Duration,
    ) -> Result<Settings, Problem> {
        let raw: RawCluster = table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        let (endpoints, https) = endpoints(&raw.etcd)?;
        let tls = tls(dir, https, raw.ca_file, raw.cert_file, raw.key_file)?;
        let auth = auth(dir, raw.user, raw.password_file)?;
        Ok(Settings {
            endpoints,
            tls,
            auth,
            name: name(raw.name)?,
            prefix: prefix(raw.prefix)?,
            lease_ttl: lease_ttl(raw.lease_ttl, tick_interval)?,
        })
    }
}

/// The `etcd` endpoints as `host:port`, and whether they speak https (all or none do).
fn endpoints(urls: &[String]) -> Result<(Vec<String>, bool), Problem> {
    if urls.is_empty() {
        return Err(Problem::at("etcd", "expected at least one endpoint URL"));
    }
    let parsed = urls
        .iter()
        .map(|url| endpoint(url))
        .collect::<Result<Vec<_>, _>>()?;
    let https = parsed.iter().filter(|(tls, _)| *tls).count();
    if https != 0 && https != parsed.len() {
        return Err(Problem::at(
            "etcd",
            "mixes http:// and https:// endpoints; use one",
        ));
    }
    Ok((parsed.into_iter().map(|(_, ep)| ep).collect(), https > 0))
}

/// With https endpoints, the CA and client certificate, checked like a pool's `tls` table;
/// without, none of their keys may be set.
fn tls(
    dir: &Path,
    https: bool,
    ca_file: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
) -> Result<Option<crate::tls::Tls>, Problem> {
    if !https {
        for (key, set) in [
            ("ca_file", ca_file.is_some()),
            ("cert_file", cert_file.is_some()),
            ("key_file", key_file.is_some()),
        ] {
            if set {
                return Err(Problem::at(
                    key,
                    "TLS settings need https:// endpoints in `etcd`",
                ));
            }
        }
        return Ok(None);
    }
    let path = |v: Option<String>| v.map(|v| dir.join(v));
    crate::tls::Tls::load(crate::settings::TlsSettings {
        ca_file: path(ca_file),
        verify: None,
        cert_file: path(cert_file),
        key_file: path(key_file),
        server_name: None,
    })
    .map(Some)
}

/// `user` and `password_file`: both or neither.
fn auth(
    dir: &Path,
    user: Option<String>,
    password_file: Option<String>,
) -> Result<Option<(String, crate::settings::Secret)>, Problem> {
    match (user, password_file) {
        (None, None) => Ok(None),
        (Some(user), Some(file)) => Ok(Some((
            user,
            crate::config::load::load_secret(dir, &file)
                .map_err(|e| Problem::at("password_file", e))?,
        ))),
        (Some(_), None) => Err(Problem::at(
            "password_file",
            "`user` needs its password file",
        )),
        (None, Some(_)) => Err(Problem::at(
            "user",
            "`password_file` needs the user it belongs to",
        )),
    }
}

/// This member's name: `name`, or the host name.
fn name(name: Option<String>) -> Result<String, Problem> {
    let name = name.unwrap_or_else(host_name);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(Problem::at(
            "name",
            format!("`{name}`: expected letters, digits, `-`, `_` or `.`"),
        ));
    }
    Ok(name)
}

/// The key path every key of this instance lives under (default `/deadpool`).
fn prefix(prefix: Option<String>) -> Result<String, Problem> {
    let prefix = prefix.unwrap_or_else(|| "/deadpool".to_string());
    if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
        return Err(Problem::at(
            "prefix",
            format!("`{prefix}`: expected a key path such as /deadpool/prod"),
        ));
    }
    Ok(prefix)
}

/// `lease_ttl`: whole seconds, longer than two ticks (default: two ticks and a second, at
/// least 10s).
fn lease_ttl(value: Option<String>, tick_interval: Duration) -> Result<Duration, Problem> {
    let lease_ttl = match value {
        Some(v) => parse_duration(&v).map_err(|e| Problem::at("lease_ttl", e))?,
        None => (tick_interval * 2 + Duration::from_secs(1)).max(Duration::from_secs(10)),
    };
    if lease_ttl <= tick_interval * 2 || lease_ttl.subsec_nanos() != 0 {
        return Err(Problem::at(
            "lease_ttl",
            format!(
                "{} must be whole seconds and longer than 2 x tick_interval ({})",
                format_duration(lease_ttl),
                format_duration(tick_interval * 2)
            ),
        ));
    }
    Ok(lease_ttl)
}

/// `http://host:port` -> (false, `host:port`); `https://` -> (true, ...).
fn endpoint(url: &str) -> Result<(bool, String), Problem> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(Problem::at(
                "etcd",
                format!("`{url}`: expected http://HOST:PORT or https://HOST:PORT"),
            ));
        }
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok((tls, rest.to_string()))
        }
        _ => Err(Problem::at(
            "etcd",
            format!("`{url}`: expected http://HOST:PORT"),
        )),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse() {
        let t = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
        let five = Duration::from_secs(5);
        let dir = Path::new("/nonexistent");
        let ok = Settings::parse(
            dir,
            t(r#"etcd = ["http://10.0.0.5:2379"]
                 name = "dp1"
                 prefix = "/deadpool/prod"
                 lease_ttl = "11s""#),
            five,
        )
        .unwrap();
        assert_eq!(ok.endpoints, vec!["10.0.0.5:2379"]);
        assert_eq!(ok.lease_ttl, Duration::from_secs(11));
        for (text, want) in [
            (r#"etcd = []"#, "at least one"),
            (r#"etcd = ["ftp://a:1"]"#, "https://HOST:PORT"),
            (r#"etcd = ["https://a:1", "http://b:1"]"#, "mixes"),
            (
                r#"etcd = ["http://a:1"]
                user = "root""#,
                "password file",
            ),
            (r#"etcd = ["http://a"]"#, "HOST:PORT"),
            (
                r#"etcd = ["http://a:1"]
                lease_ttl = "10s""#,
                "longer than 2 x tick_interval",
            ),
            (
                r#"etcd = ["http://a:1"]
                prefix = "deadpool""#,
                "key path",
            ),
            (
                r#"etcd = ["http://a:1"]
                name = "a b""#,
                "key `name`",
            ),
            (
                r#"etcd = ["http://a:1"]
                cert_file = "x""#,
                "need https:// endpoints",
            ),
            (
                r#"etcd = ["http://a:1"]
                nope = 1"#,
                "nope",
            ),
        ] {
            let e = Settings::parse(dir, t(text), five).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
