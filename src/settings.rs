//! The shared vocabulary of the configuration: hosts, SSH settings, secrets, durations and
//! what a `tls` table says. Plain data and pure parsing, used by every kind of monitor and
//! step; it imports nothing of deadpool's own, so any module may use it.

use std::path::PathBuf;
use std::time::Duration;

/// How deadpool logs in to client hosts: the `[ssh]` table, merged with a step's own `ssh`.
#[derive(Debug, Clone)]
pub struct SshSettings {
    pub user: String,
    pub port: u16,
    pub auth: SshAuth,
    /// Host keys are always verified against this file.
    pub known_hosts: PathBuf,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Run privileged commands through `sudo -n`.
    pub sudo: bool,
}

#[derive(Debug, Clone)]
pub enum SshAuth {
    /// A private key file (readable by its owner only).
    Key(PathBuf),
    /// The running ssh-agent (`$SSH_AUTH_SOCK`).
    Agent,
    Password {
        file: PathBuf,
        password: Secret,
    },
}

/// Where a step acts: the deadpool host itself, or a host reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Local,
    Remote(String),
}

impl Host {
    pub fn name(&self) -> &str {
        match self {
            Host::Local => "local",
            Host::Remote(name) => name,
        }
    }

    /// `local`, or a host name or address.
    pub fn parse(s: &str) -> Result<Host, String> {
        if s == "local" {
            return Ok(Host::Local);
        }
        validate_host(s)?;
        Ok(Host::Remote(s.to_string()))
    }
}

/// A password read from a `password_file`. Never printed: `Debug` shows only that it exists.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A host name or an IP address, as far as its characters go.
pub fn validate_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("`{host}` is not a host name or IP address"))
    }
}

/// A host as two spellings of one server compare: host names without case or a trailing
/// dot (`DB1.` is `db1`), IP addresses in their canonical form (`0:0:0:0:0:0:0:1` is `::1`).
pub fn host_key(host: &str) -> String {
    let trimmed = host.trim().trim_end_matches('.');
    match trimmed.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => trimmed.to_ascii_lowercase(),
    }
}

/// A name of letters, digits, `-`, `_`, `.` (pool names, users), at most 64 bytes.
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// The units of systemd's time spans (systemd.time(7)), in microseconds, so that a value
/// copied from a timer unit (`5min`, `1min 30s`, `1h`) means the same here.
const DURATION_UNITS: &[(&[&str], u64)] = &[
    (&["us", "usec", "\u{3bc}s", "\u{b5}s"], 1),
    (&["ms", "msec"], 1_000),
    (&["s", "sec", "second", "seconds"], 1_000_000),
    (&["m", "min", "minute", "minutes"], 60_000_000),
    (&["h", "hr", "hour", "hours"], 3_600_000_000),
    (&["d", "day", "days"], 86_400_000_000),
    (&["w", "week", "weeks"], 604_800_000_000),
    (&["M", "month", "months"], 2_629_800_000_000),
    (&["y", "year", "years"], 31_557_600_000_000),
];

/// Parses a duration the way systemd parses a time span, units required: `"500ms"`,
/// `"5s"`, `"2m"`, `"5min"`, `"1min 30s"`, `"1.5h"`, `"90d"`. Stricter than systemd on
/// purpose: a number without a unit (systemd reads seconds), `infinity`, zero and anything
/// over ten years are refused.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let expected = || {
        format!(
            "got \"{s}\", expected a duration like \"500ms\", \"5s\", \"5min\", \"1min 30s\", \"1h\" or \"90d\""
        )
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(expected());
    }
    let mut rest = text;
    let mut micros: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let valid = !number.is_empty()
            && whole.chars().all(|c| c.is_ascii_digit())
            && fraction.chars().all(|c| c.is_ascii_digit())
            && (!number.contains('.') || !fraction.is_empty());
        if !valid {
            return Err(expected());
        }
        let after = after.trim_start();
        let word_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (word, next) = after.split_at(word_len);
        if word.is_empty() {
            return Err(format!(
                "got \"{s}\": `{number}` has no unit; write e.g. \"{number}s\" or \"{number}min\""
            ));
        }
        let Some((_, unit)) = DURATION_UNITS
            .iter()
            .find(|(names, _)| names.contains(&word))
        else {
            return Err(expected());
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| expected())?
        };
        let mut part = whole.saturating_mul(u128::from(*unit));
        // The fraction, to the microsecond (systemd also drops what is finer).
        let mut scale = u128::from(*unit);
        for digit in fraction.chars().take(20) {
            scale /= 10;
            part += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        micros = micros.saturating_add(part);
        rest = next.trim_start();
    }
    if micros == 0 {
        return Err(format!("got \"{s}\", expected a duration longer than zero"));
    }
    const TEN_YEARS_US: u128 = 10 * 365 * 86_400_000_000;
    if micros > TEN_YEARS_US {
        return Err(format!("got \"{s}\", expected at most ten years"));
    }
    Ok(Duration::from_micros(micros as u64))
}

/// The inverse of [`parse_duration`], for messages.
pub fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    let units = [
        (86_400_000_000, "d"),
        (3_600_000_000, "h"),
        (60_000_000, "m"),
        (1_000_000, "s"),
        (1_000, "ms"),
    ];
    for (size, unit) in units {
        if us >= size && us.is_multiple_of(size) {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{us}us")
}

/// What a `tls` table says, paths already relative to the config dir.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub verify: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
}
