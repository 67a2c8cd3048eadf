//! Several watcher hosts (`[cluster]` in deadpool.toml): one leader, elected through an etcd
//! v3 lease, decides and runs chains; the pool state that must survive a change of leader
//! lives in etcd under `<prefix>/pools/<name>`, and every write of it is a transaction
//! guarded by the leader key's create revision (fencing): a member that lost leadership
//! cannot write. Without `[cluster]`, nothing here runs.
//!
//! The client speaks etcd's documented v3 JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/grant`, `/v3/lease/keepalive`) over a small blocking HTTP/1.1 client: deadpool
//! stays a one-shot program without an async runtime, and every call has a deadline.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::cli::Role;
use crate::model::PoolState;
use crate::settings::{format_duration, parse_duration};
use crate::state::{Event, PoolRecord};

/// Longest a connection to one etcd endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Longest one request may wait for its answer (a write without quorum hangs until then).
const IO_TIMEOUT: Duration = Duration::from_millis(2500);
/// Largest answer read from etcd.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

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
    ) -> Result<Settings, String> {
        let raw: RawCluster = table
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        if raw.etcd.is_empty() {
            return Err("key `etcd`: expected at least one endpoint URL".to_string());
        }
        let parsed = raw
            .etcd
            .iter()
            .map(|url| endpoint(url))
            .collect::<Result<Vec<_>, _>>()?;
        let https = parsed.iter().filter(|(tls, _)| *tls).count();
        if https != 0 && https != parsed.len() {
            return Err("key `etcd`: mixes http:// and https:// endpoints; use one".to_string());
        }
        let endpoints: Vec<String> = parsed.into_iter().map(|(_, ep)| ep).collect();
        let tls = if https > 0 {
            let path = |v: Option<String>| v.map(|v| dir.join(v));
            Some(
                crate::tls::Tls::load(crate::tls::Settings {
                    ca_file: path(raw.ca_file),
                    verify: None,
                    cert_file: path(raw.cert_file),
                    key_file: path(raw.key_file),
                    server_name: None,
                })
                .map_err(|e| e.replace("key `tls.", "key `"))?,
            )
        } else {
            for (key, set) in [
                ("ca_file", raw.ca_file.is_some()),
                ("cert_file", raw.cert_file.is_some()),
                ("key_file", raw.key_file.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "key `{key}`: TLS settings need https:// endpoints in `etcd`"
                    ));
                }
            }
            None
        };
        let auth = match (raw.user, raw.password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => Some((
                user,
                crate::config::load::load_secret(dir, &file)
                    .map_err(|e| format!("key `password_file`: {e}"))?,
            )),
            (Some(_), None) => {
                return Err("key `password_file`: `user` needs its password file".to_string());
            }
            (None, Some(_)) => {
                return Err("key `user`: `password_file` needs the user it belongs to".to_string());
            }
        };
        let name = match raw.name {
            Some(n) => n,
            None => host_name(),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "key `name`: `{name}`: expected letters, digits, `-`, `_` or `.`"
            ));
        }
        let prefix = raw.prefix.unwrap_or_else(|| "/deadpool".to_string());
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
            return Err(format!(
                "key `prefix`: `{prefix}`: expected a key path such as /deadpool/prod"
            ));
        }
        let lease_ttl = match raw.lease_ttl {
            Some(v) => parse_duration(&v).map_err(|e| format!("key `lease_ttl`: {e}"))?,
            None => (tick_interval * 2 + Duration::from_secs(1)).max(Duration::from_secs(10)),
        };
        if lease_ttl <= tick_interval * 2 || lease_ttl.subsec_nanos() != 0 {
            return Err(format!(
                "key `lease_ttl`: {} must be whole seconds and longer than 2 x tick_interval ({})",
                format_duration(lease_ttl),
                format_duration(tick_interval * 2)
            ));
        }
        Ok(Settings {
            endpoints,
            tls,
            auth,
            name,
            prefix,
            lease_ttl,
        })
    }
}

/// `http://host:port` -> (false, `host:port`); `https://` -> (true, ...).
fn endpoint(url: &str) -> Result<(bool, String), String> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err(format!(
                "key `etcd`: `{url}`: expected http://HOST:PORT or https://HOST:PORT"
            ));
        }
    };
    let rest = rest.trim_end_matches('/');
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok((tls, rest.to_string()))
        }
        _ => Err(format!("key `etcd`: `{url}`: expected http://HOST:PORT")),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Pure rules, table-tested.

/// Whether a lease renewed by a request sent at `sent` (our clock) with `ttl` granted can
/// still be valid at `now`: etcd counts the TTL from when it received the request, which
/// is after we sent it, so our own clock errs on the safe side.
pub fn lease_valid(sent: Instant, ttl: Duration, now: Instant) -> bool {
    now < sent + ttl
}

/// What this member is, for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// It holds the leader key: its lease was renewed by a request sent at `sent`.
    Leader {
        revision: i64,
        lease: i64,
        sent: Instant,
        ttl: Duration,
    },
    /// Another member leads (`lease_left`: how long its lease has left, as etcd says).
    Follower {
        leader: String,
        lease_left: Option<Duration>,
    },
    /// etcd could not be asked (unreachable, no quorum): nobody may run a chain here.
    Unknown { why: String },
}

/// A leader key as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    pub name: String,
    pub lease: i64,
    pub create_revision: i64,
}

/// What to do with the leader key this round (the decision of [`Member::campaign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Campaign {
    /// Nobody leads: grant a lease and create the key if it is still absent.
    Create,
    /// We lead: renew our lease.
    Renew,
    /// Another member leads.
    Follow,
}

pub fn campaign(me: &str, key: Option<&LeaderKey>) -> Campaign {
    match key {
        None => Campaign::Create,
        Some(k) if k.name == me => Campaign::Renew,
        Some(_) => Campaign::Follow,
    }
}

// ---------------------------------------------------------------------------------------
// The gateway client.

/// A blocking client of etcd's v3 JSON gateway: each call tries the endpoints in order.
#[derive(Debug)]
pub struct Client {
    endpoints: Vec<String>,
    tls: Option<crate::tls::Tls>,
    auth: Option<(String, crate::settings::Secret)>,
    /// The token of `auth`, once etcd gave one.
    token: Mutex<Option<String>>,
}

impl Client {
    pub fn new(settings: &Settings) -> Client {
        Client {
            endpoints: settings.endpoints.clone(),
            tls: settings.tls.clone(),
            auth: settings.auth.clone(),
            token: Mutex::default(),
        }
    }

    /// The `Authorization` token, asked of etcd once per command.
    fn token(&self, ep: &str) -> Result<Option<String>> {
        let Some((user, password)) = &self.auth else {
            return Ok(None);
        };
        let mut token = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if token.is_none() {
            let body = json!({ "name": user, "password": password.expose() }).to_string();
            let (status, text) = request(
                ep,
                self.tls.as_ref(),
                None,
                "POST",
                "/v3/auth/authenticate",
                &body,
            )?;
            if status != 200 {
                bail!(
                    "etcd refused user `{user}`: HTTP {status}: {}",
                    crate::text::one_line(&crate::text::truncate(&text, 200))
                );
            }
            let v: Value = serde_json::from_str(&text)?;
            *token = v["token"].as_str().map(str::to_string);
        }
        Ok(token.clone())
    }

    /// POSTs `body` to `path`, endpoint after endpoint until one answers 200; the error
    /// names what each endpoint said (refused, timed out, an etcd error such as no quorum).
    pub fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let answer = self.token(ep).and_then(|token| {
                request(
                    ep,
                    self.tls.as_ref(),
                    token.as_deref(),
                    "POST",
                    path,
                    &body.to_string(),
                )
            });
            match answer {
                Ok((200, text)) => {
                    return serde_json::from_str(&text).with_context(|| {
                        format!(
                            "etcd {ep}{path}: not JSON: {}",
                            crate::text::truncate(&text, 200)
                        )
                    });
                }
                Ok((status, text)) => errors.push(format!(
                    "{ep}: HTTP {status}: {}",
                    crate::text::one_line(&crate::text::truncate(&text, 200))
                )),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("etcd {path}: {}", errors.join("; "))
    }

    pub fn range(&self, key: &str) -> Result<Option<Kv>> {
        let v = self.call("/v3/kv/range", &json!({ "key": b64(key) }))?;
        v["kvs"].get(0).map(Kv::from_json).transpose()
    }

    /// All keys under `prefix` (`prefix` + anything).
    pub fn range_prefix(&self, prefix: &str) -> Result<Vec<Kv>> {
        let v = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())) }),
        )?;
        v["kvs"]
            .as_array()
            .map(|a| a.iter().map(Kv::from_json).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.call(
            "/v3/kv/put",
            &json!({ "key": b64(key), "value": b64(value) }),
        )?;
        Ok(())
    }

    pub fn grant(&self, ttl: Duration) -> Result<(i64, Duration)> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({ "TTL": ttl.as_secs().to_string() }),
        )?;
        let id = int(&v["ID"]).ok_or_else(|| anyhow!("etcd lease grant: no ID in {v}"))?;
        Ok((
            id,
            Duration::from_secs(int(&v["TTL"]).unwrap_or(0).max(0) as u64),
        ))
    }

    /// Renews a lease; returns the TTL granted (zero: the lease is gone).
    pub fn keepalive(&self, lease: i64) -> Result<Duration> {
        let v = self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        // The gateway streams: the answer is {"result": {...}}.
        let r = if v.get("result").is_some() {
            &v["result"]
        } else {
            &v
        };
        if let Some(e) = v.get("error") {
            bail!("etcd lease keepalive: {e}");
        }
        Ok(Duration::from_secs(
            int(&r["TTL"]).unwrap_or(0).max(0) as u64
        ))
    }

    pub fn time_to_live(&self, lease: i64) -> Result<Option<Duration>> {
        let v = self.call("/v3/lease/timetolive", &json!({ "ID": lease.to_string() }))?;
        Ok(int(&v["TTL"])
            .filter(|t| *t >= 0)
            .map(|t| Duration::from_secs(t as u64)))
    }

    pub fn revoke(&self, lease: i64) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))?;
        Ok(())
    }

    pub fn txn(&self, body: &Value) -> Result<(bool, Value)> {
        let v = self.call("/v3/kv/txn", body)?;
        Ok((v["succeeded"].as_bool().unwrap_or(false), v))
    }

    /// etcd's version (`etcdserver` of `/version`).
    pub fn version(&self) -> Result<String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            match request(ep, self.tls.as_ref(), None, "GET", "/version", "") {
                Ok((200, text)) => {
                    let v: Value = serde_json::from_str(&text)?;
                    return Ok(v["etcdserver"].as_str().unwrap_or("").to_string());
                }
                Ok((status, _)) => errors.push(format!("{ep}: HTTP {status}")),
                Err(e) => errors.push(format!("{ep}: {e:#}")),
            }
        }
        bail!("etcd /version: {}", errors.join("; "))
    }
}

/// A key and its value as etcd returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Kv {
    fn from_json(v: &Value) -> Result<Kv> {
        let text = |field: &str| -> Result<String> {
            let s = v[field].as_str().unwrap_or("");
            let bytes = crate::known_hosts::base64_decode(s)
                .ok_or_else(|| anyhow!("etcd: `{field}` is not base64"))?;
            String::from_utf8(bytes).map_err(|_| anyhow!("etcd: `{field}` is not UTF-8"))
        };
        Ok(Kv {
            key: text("key")?,
            value: text("value")?,
            create_revision: int(&v["create_revision"]).unwrap_or(0),
            mod_revision: int(&v["mod_revision"]).unwrap_or(0),
            lease: int(&v["lease"]).unwrap_or(0),
        })
    }
}

/// The gateway writes 64-bit integers as strings.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn b64(s: &str) -> String {
    crate::ssh::base64(s.as_bytes())
}

fn b64_bytes(b: &[u8]) -> String {
    crate::ssh::base64(b)
}

/// The end of a prefix range: the prefix with its last byte incremented.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One HTTP/1.1 request with `Connection: close` (over TLS with `tls`), bounded by the
/// connect and I/O timeouts.
fn request(
    ep: &str,
    tls: Option<&crate::tls::Tls>,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String)> {
    let addr = ep
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {ep}"))?
        .next()
        .ok_or_else(|| anyhow!("{ep} resolves to no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("cannot connect to {ep}"))?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp),
        Some(tls) => {
            let host = ep.rsplit_once(':').map_or(ep, |(h, _)| h);
            Box::new(tls.handshake(host, tcp).map_err(|e| match e {
                crate::tls::Failed::Silent(m) | crate::tls::Failed::Refused(m) => {
                    anyhow!("{ep}: TLS: {m}")
                }
            })?)
        }
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {ep}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if Instant::now() >= deadline {
            bail!("{ep}: no complete answer within {:?}", IO_TIMEOUT);
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_RESPONSE {
                    bail!("{ep}: answer larger than {MAX_RESPONSE} bytes");
                }
                if let Some(done) = parse_response(&raw)? {
                    return Ok(done);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(anyhow!(e).context(format!("{ep}: no answer"))),
        }
    }
    parse_response(&raw)?.ok_or_else(|| anyhow!("{ep}: the connection closed mid-answer"))
}

/// A plain or TLS connection.
trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// A complete HTTP response's status and body, or None while it is incomplete. Knows
/// `Content-Length` and `chunked` (the gateway streams `keepalive` answers); with neither,
/// the body ends with the connection (`Ok(None)` until then).
pub fn parse_response(raw: &[u8]) -> Result<Option<(u16, String)>> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("not an HTTP answer"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            }
        }
    }
    if chunked {
        // The first complete chunk is enough: a streamed keepalive answers one message.
        let mut out = Vec::new();
        let mut rest = body;
        loop {
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                return Ok(None);
            };
            let size = usize::from_str_radix(String::from_utf8_lossy(&rest[..eol]).trim(), 16)
                .map_err(|_| anyhow!("bad chunk size"))?;
            if size == 0 {
                return Ok(Some((status, String::from_utf8_lossy(&out).into_owned())));
            }
            if rest.len() < eol + 2 + size + 2 {
                return Ok(None);
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
            let text = String::from_utf8_lossy(&out);
            if serde_json::from_str::<Value>(text.trim()).is_ok() {
                return Ok(Some((status, text.into_owned())));
            }
        }
    }
    match length {
        Some(n) if body.len() >= n => Ok(Some((
            status,
            String::from_utf8_lossy(&body[..n]).into_owned(),
        ))),
        Some(_) => Ok(None),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------
// The member: election, fenced pool state, the status for reports.

/// A pool's record as kept in etcd, with the chain step in progress.
pub fn pool_json(rec: &PoolRecord, step: Option<&str>) -> Value {
    json!({
        "state": rec.state.as_str(),
        "active": rec.active.as_str(),
        "failures": rec.failures,
        "last_check_at": rec.last_check_at,
        "state_since": rec.state_since,
        "reason": rec.reason,
        "reason_kind": rec.reason_kind,
        "pause": rec.pause,
        "step": step,
    })
}

/// Reads a pool's record from etcd's JSON; `local` gives what etcd does not keep.
pub fn pool_from_json(name: &str, text: &str, local: Option<&PoolRecord>) -> Result<PoolRecord> {
    let v: Value = serde_json::from_str(text).with_context(|| format!("pool {name} in etcd"))?;
    let bad = |what: &str| {
        anyhow!("pool {name} in etcd: bad or unknown `{what}` (written by a newer deadpool?)")
    };
    Ok(PoolRecord {
        name: name.to_string(),
        state: v["state"]
            .as_str()
            .and_then(PoolState::parse)
            .ok_or_else(|| bad("state"))?,
        active: v["active"]
            .as_str()
            .and_then(Role::parse)
            .ok_or_else(|| bad("active"))?,
        failures: v["failures"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad("failures"))?,
        last_check_at: v["last_check_at"].as_i64(),
        last_system_check_at: local.and_then(|l| l.last_system_check_at),
        state_since: v["state_since"]
            .as_i64()
            .ok_or_else(|| bad("state_since"))?,
        reason: v["reason"].as_str().unwrap_or("").to_string(),
        reason_kind: v["reason_kind"].as_str().unwrap_or("").to_string(),
        pause: match &v["pause"] {
            Value::Null => None,
            p => Some(crate::state::Pause {
                until: p["until"].as_i64().ok_or_else(|| bad("pause"))?,
                since: p["since"].as_i64().ok_or_else(|| bad("pause"))?,
                by: p["by"].as_str().unwrap_or("").to_string(),
                reason: p["reason"].as_str().unwrap_or("").to_string(),
            }),
        },
    })
}

/// This member, for one command.
#[derive(Debug)]
pub struct Member {
    pub settings: Settings,
    client: Client,
    role: Mutex<Standing>,
    /// Each pool key's mod revision as this member last read or wrote it: a leader's write
    /// never overwrites a change it did not see (a person's reset from another member).
    revisions: Mutex<std::collections::HashMap<String, i64>>,
    /// The pools whose chain a person runs now (`promote`, from any member), as the last
    /// round found them: the leader leaves them alone.
    elsewhere: Mutex<Vec<String>>,
    /// The chain step each pool's record in etcd says is in progress (for the message of
    /// a new leader that finds it interrupted).
    steps: Mutex<std::collections::HashMap<String, String>>,
}

impl Member {
    pub fn new(settings: &Settings) -> Member {
        Member {
            client: Client::new(settings),
            settings: settings.clone(),
            role: Mutex::new(Standing::Unknown {
                why: "no round yet".to_string(),
            }),
            revisions: Mutex::default(),
            elsewhere: Mutex::default(),
            steps: Mutex::default(),
        }
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.settings.prefix)
    }

    pub fn leader_key(&self) -> String {
        self.key("leader")
    }

    pub fn pool_key(&self, pool: &str) -> String {
        self.key(&format!("pools/{pool}"))
    }

    pub fn role(&self) -> Standing {
        self.role.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.role(), Standing::Leader { .. })
    }

    fn set_role(&self, role: Standing) {
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = role;
    }

    /// Takes or renews the leader lease; the result is kept for the guards.
    pub fn campaign(&self) -> Standing {
        let role = match self.try_campaign() {
            Ok(r) => r,
            Err(e) => Standing::Unknown {
                why: format!("{e:#}"),
            },
        };
        self.set_role(role.clone());
        role
    }

    fn read_leader(&self) -> Result<Option<LeaderKey>> {
        Ok(self.client.range(&self.leader_key())?.map(|kv| LeaderKey {
            name: kv.value,
            lease: kv.lease,
            create_revision: kv.create_revision,
        }))
    }

    fn try_campaign(&self) -> Result<Standing> {
        let me = &self.settings.name;
        let sent = Instant::now();
        let key = self.read_leader()?;
        match (campaign(me, key.as_ref()), key) {
            (Campaign::Renew, Some(k)) => {
                let ttl = self.client.keepalive(k.lease)?;
                if ttl.is_zero() {
                    return Ok(Standing::Unknown {
                        why: "our lease expired; the leader key goes with it".to_string(),
                    });
                }
                Ok(Standing::Leader {
                    revision: k.create_revision,
                    lease: k.lease,
                    sent,
                    ttl,
                })
            }
            (Campaign::Follow, Some(k)) => Ok(Standing::Follower {
                lease_left: self.client.time_to_live(k.lease).ok().flatten(),
                leader: k.name,
            }),
            _ => {
                let sent = Instant::now();
                let (lease, ttl) = self.client.grant(self.settings.lease_ttl)?;
                let leader = b64(&self.leader_key());
                let (won, v) = self.client.txn(&json!({
                    "compare": [{ "key": leader, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                    "success": [{ "request_put": { "key": leader, "value": b64(me), "lease": lease.to_string() } }],
                    "failure": [{ "request_range": { "key": leader } }],
                }))?;
                if won {
                    let revision = int(&v["header"]["revision"])
                        .ok_or_else(|| anyhow!("etcd txn: no revision in {v}"))?;
                    crate::info!("cluster: {me} is the leader now (revision {revision})");
                    return Ok(Standing::Leader {
                        revision,
                        lease,
                        sent,
                        ttl,
                    });
                }
                let _ = self.client.revoke(lease);
                let kv = v["responses"][0]["response_range"]["kvs"]
                    .get(0)
                    .map(Kv::from_json)
                    .transpose()?;
                Ok(Standing::Follower {
                    leader: kv.map(|k| k.value).unwrap_or_default(),
                    lease_left: None,
                })
            }
        }
    }

    /// Before a chain step: renews the lease, proves leadership with a guarded write of
    /// the pool's record (with the step about to start), and checks by our own clock that
    /// the lease cannot have expired. An error means: do not start the step.
    pub fn guard(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let Standing::Leader { lease, .. } = self.role() else {
            bail!("this member is not the leader");
        };
        let sent = Instant::now();
        let ttl = self.client.keepalive(lease)?;
        if ttl.is_zero() {
            self.set_role(Standing::Unknown {
                why: "the leader lease expired".to_string(),
            });
            bail!("the leader lease expired");
        }
        if let Standing::Leader { revision, .. } = self.role() {
            self.set_role(Standing::Leader {
                revision,
                lease,
                sent,
                ttl,
            });
        }
        self.write_pool(rec, step)?;
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("the leader lease may have expired by this member's clock");
        }
        Ok(())
    }

    /// Writes a pool's record, guarded by our leader key's create revision: fails when
    /// this member does not lead (any more).
    pub fn write_pool(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let Standing::Leader {
            revision,
            sent,
            ttl,
            ..
        } = self.role()
        else {
            bail!("this member is not the leader: pool state is written by the leader only");
        };
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("the leader lease may have expired by this member's clock");
        }
        let Some(seen) = self.revision(&rec.name) else {
            bail!("pool {}: its state was not read from etcd yet", rec.name);
        };
        let leader = b64(&self.leader_key());
        let pool_key = b64(&self.pool_key(&rec.name));
        let (ok, v) = self.client.txn(&json!({
            "compare": [
                { "key": leader, "target": "CREATE", "result": "EQUAL", "create_revision": revision.to_string() },
                { "key": pool_key, "target": "MOD", "result": "EQUAL", "mod_revision": seen.to_string() },
            ],
            "success": [{ "request_put": { "key": pool_key, "value": b64(&pool_json(rec, step).to_string()) } }],
            "failure": [{ "request_range": { "key": leader } }],
        }))?;
        if ok {
            if let Some(r) = int(&v["header"]["revision"]) {
                self.set_revision(&rec.name, r);
            }
            return Ok(());
        }
        let holder = v["responses"][0]["response_range"]["kvs"]
            .get(0)
            .and_then(|kv| int(&kv["create_revision"]));
        if holder == Some(revision) {
            self.forget_revision(&rec.name);
            bail!(
                "pool {} changed in etcd since this member read it (a person's reset, promote or pause): not overwritten",
                rec.name
            );
        }
        self.set_role(Standing::Unknown {
            why: "leadership lost (fenced write refused)".to_string(),
        });
        bail!(
            "leadership lost: the fenced write of pool {} was refused",
            rec.name
        )
    }

    /// A person's change from any member (reset, promote, pause): guarded by whoever holds
    /// the leader key now and by the pool's own revision, so it never overwrites a leader's
    /// write it did not see.
    pub fn write_pool_as_person(&self, rec: &PoolRecord) -> Result<()> {
        let leader_key = self.leader_key();
        let leader = self.client.range(&leader_key)?;
        let pool_key = self.pool_key(&rec.name);
        let pool = self.client.range(&pool_key)?;
        let (ok, _) = self.client.txn(&json!({
            "compare": [
                { "key": b64(&leader_key), "target": "CREATE", "result": "EQUAL",
                  "create_revision": leader.map_or(0, |k| k.create_revision).to_string() },
                { "key": b64(&pool_key), "target": "MOD", "result": "EQUAL",
                  "mod_revision": pool.map_or(0, |k| k.mod_revision).to_string() },
            ],
            "success": [{ "request_put": { "key": b64(&pool_key), "value": b64(&pool_json(rec, None).to_string()) } }],
        }))?;
        if !ok {
            bail!("pool {} changed in etcd meanwhile; try again", rec.name);
        }
        Ok(())
    }

    /// A pool's record in etcd, if any.
    pub fn read_pool(&self, name: &str, local: Option<&PoolRecord>) -> Result<Option<PoolRecord>> {
        let kv = self.client.range(&self.pool_key(name))?;
        self.set_revision(name, kv.as_ref().map_or(0, |k| k.mod_revision));
        let step = kv
            .as_ref()
            .and_then(|k| serde_json::from_str::<Value>(&k.value).ok())
            .and_then(|v| v["step"].as_str().map(str::to_string));
        let mut steps = self.steps.lock().unwrap_or_else(|p| p.into_inner());
        match step {
            Some(step) => steps.insert(name.to_string(), step),
            None => steps.remove(name),
        };
        drop(steps);
        kv.map(|kv| pool_from_json(name, &kv.value, local))
            .transpose()
    }

    /// The chain step etcd's record of the pool says was started last, if any.
    pub fn step_in_progress(&self, pool: &str) -> Option<String> {
        self.steps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pool)
            .cloned()
    }

    fn revisions(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, i64>> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn revision(&self, pool: &str) -> Option<i64> {
        self.revisions().get(pool).copied()
    }

    fn set_revision(&self, pool: &str, revision: i64) {
        self.revisions().insert(pool.to_string(), revision);
    }

    fn forget_revision(&self, pool: &str) {
        self.revisions().remove(pool);
    }

    /// Records this member's tick in etcd (not fenced: each member writes only its own).
    pub fn heartbeat(&self, at_ms: i64) -> Result<()> {
        let role = match self.role() {
            Standing::Leader { .. } => "leader".to_string(),
            Standing::Follower { leader, .. } => format!("follower of {leader}"),
            Standing::Unknown { .. } => "unknown".to_string(),
        };
        self.client.put(
            &self.key(&format!("members/{}", self.settings.name)),
            &json!({ "last_tick": at_ms, "role": role }).to_string(),
        )
    }

    /// Every member's last tick (ms) as recorded in etcd.
    pub fn members(&self) -> Result<Vec<(String, i64, String)>> {
        let prefix = self.key("members/");
        Ok(self
            .client
            .range_prefix(&prefix)?
            .into_iter()
            .filter_map(|kv| {
                let v: Value = serde_json::from_str(&kv.value).ok()?;
                Some((
                    kv.key.strip_prefix(&prefix)?.to_string(),
                    v["last_tick"].as_i64()?,
                    v["role"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect())
    }

    /// Writes what this member knows of the cluster to `<state_dir>/cluster.json`, for
    /// `report` (which reads no network).
    pub fn save_status(&self, state_dir: &Path, now_ms: i64) {
        // Without etcd, no second wait for the members' ticks.
        let members = match self.role() {
            Standing::Unknown { .. } => Vec::new(),
            _ => self.members().unwrap_or_default(),
        };
        let status = match self.role() {
            Standing::Leader { sent, ttl, .. } => json!({
                "role": "leader", "leader": self.settings.name,
                "lease_left_ms": (sent + ttl).saturating_duration_since(Instant::now()).as_millis() as i64,
            }),
            Standing::Follower { leader, lease_left } => json!({
                "role": "follower", "leader": leader,
                "lease_left_ms": lease_left.map(|d| d.as_millis() as i64),
            }),
            Standing::Unknown { why } => json!({ "role": "unknown", "error": why }),
        };
        let mut status = status;
        status["member"] = json!(self.settings.name);
        status["at"] = json!(now_ms);
        status["members"] = members
            .iter()
            .map(|(n, t, r)| json!({ "name": n, "last_tick": t, "role": r }))
            .collect();
        let path = state_dir.join("cluster.json");
        let tmp = state_dir.join("cluster.json.tmp");
        if let Err(e) =
            std::fs::write(&tmp, status.to_string()).and_then(|_| std::fs::rename(&tmp, &path))
        {
            crate::warn!("cannot write {}: {e}", path.display());
        }
    }
}

/// A person's chain (`promote`) from any member: it holds its own lease and the key
/// `<prefix>/chains/<pool>` for as long as it runs, so that the leader leaves the pool alone
/// meanwhile (and marks it `interrupted` if that lease runs out mid-chain); each of its
/// writes is guarded by the pool key's revision as it last wrote it.
#[derive(Debug)]
pub struct PersonChain<'a> {
    member: &'a Member,
    owner: String,
    lease: i64,
    renewed: Mutex<(Instant, Duration)>,
    started: Mutex<bool>,
}

impl Member {
    pub fn chain_key(&self, pool: &str) -> String {
        self.key(&format!("chains/{pool}"))
    }

    /// Grants the lease of a person's chain; `read_pool` must have been called first.
    pub fn person_chain(&self, owner: &str) -> Result<PersonChain<'_>> {
        let sent = Instant::now();
        let (lease, ttl) = self.client.grant(self.settings.lease_ttl)?;
        Ok(PersonChain {
            member: self,
            owner: owner.to_string(),
            lease,
            renewed: Mutex::new((sent, ttl)),
            started: Mutex::new(false),
        })
    }

    /// Reads the pools whose chain a person runs now (from any member); none when etcd
    /// does not answer (a leader's writes stay fenced by each pool key's revision then).
    pub fn find_chains_elsewhere(&self) -> Vec<String> {
        let prefix = self.key("chains/");
        let found: Vec<String> = match self.client.range_prefix(&prefix) {
            Ok(kvs) => kvs
                .into_iter()
                .filter_map(|kv| kv.key.strip_prefix(&prefix).map(str::to_string))
                .collect(),
            Err(_) => Vec::new(),
        };
        *self.elsewhere.lock().unwrap_or_else(|p| p.into_inner()) = found.clone();
        found
    }

    /// Whether a person's chain runs on this pool now (as the last round found).
    pub fn chain_elsewhere(&self, pool: &str) -> bool {
        self.elsewhere
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|p| p == pool)
    }
}

impl crate::chain::Guard for PersonChain<'_> {
    fn record(&self, events: &[Event]) {
        self.member.record_events(events);
    }

    fn check(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        let m = self.member;
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let sent = Instant::now();
        if *started {
            let ttl = m.client.keepalive(self.lease)?;
            if ttl.is_zero() {
                bail!("this promote's lease expired");
            }
            *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = (sent, ttl);
        }
        let Some(seen) = m.revision(&rec.name) else {
            bail!("pool {}: its state was not read from etcd", rec.name);
        };
        let pool_key = b64(&m.pool_key(&rec.name));
        let chain_key = b64(&m.chain_key(&rec.name));
        let mut compare = vec![
            json!({ "key": pool_key, "target": "MOD", "result": "EQUAL", "mod_revision": seen.to_string() }),
        ];
        let mut success = vec![
            json!({ "request_put": { "key": pool_key, "value": b64(&pool_json(rec, step).to_string()) } }),
        ];
        if !*started {
            compare.push(json!({ "key": chain_key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }));
            success.push(json!({ "request_put": { "key": chain_key, "value": b64(&self.owner), "lease": self.lease.to_string() } }));
        } else if rec.state != PoolState::FailingOver {
            success.push(json!({ "request_delete_range": { "key": chain_key } }));
        }
        let (ok, v) = m
            .client
            .txn(&json!({ "compare": compare, "success": success }))?;
        if !ok {
            bail!(
                "pool {} changed in etcd meanwhile (the leader or another person acted)",
                rec.name
            );
        }
        if let Some(r) = int(&v["header"]["revision"]) {
            m.set_revision(&rec.name, r);
        }
        *started = true;
        let (sent, ttl) = *self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        if !lease_valid(sent, ttl, Instant::now()) {
            bail!("this promote's lease may have expired by this member's clock");
        }
        Ok(())
    }
}

impl crate::chain::Guard for Member {
    fn check(&self, rec: &PoolRecord, step: Option<&str>) -> Result<()> {
        self.guard(rec, step)
    }

    fn record(&self, events: &[Event]) {
        self.record_events(events);
    }
}

/// How many chain events etcd keeps (all pools together): the oldest go first.
pub const HISTORY_KEPT: usize = 1000;
/// Longest captured output of one event kept in etcd.
const HISTORY_OUTPUT: usize = 2048;

impl Member {
    /// Puts chain events under `<prefix>/history/`, keyed by time and member, and prunes
    /// the oldest beyond [`HISTORY_KEPT`]. Best effort: a failure is logged, never a reason
    /// to stop a chain.
    pub fn record_events(&self, events: &[Event]) {
        if let Err(e) = self.try_record_events(events) {
            crate::warn!("cluster: cannot keep chain events in etcd: {e:#}");
        }
    }

    fn try_record_events(&self, events: &[Event]) -> Result<()> {
        let prefix = self.key("history/");
        for (n, e) in events.iter().enumerate() {
            let mut e = e.clone();
            e.output = crate::text::truncate(&e.output, HISTORY_OUTPUT);
            e.actor = format!("{}@{}", e.actor, self.settings.name);
            let key = format!("{prefix}{:015}-{}-{n:04}", e.at, self.settings.name);
            self.client.put(&key, &serde_json::to_string(&e)?)?;
        }
        let v = self.client.call(
            "/v3/kv/range",
            &json!({ "key": b64(&prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())), "count_only": true }),
        )?;
        let count = int(&v["count"]).unwrap_or(0) as usize;
        if count > HISTORY_KEPT {
            let v = self.client.call(
                "/v3/kv/range",
                &json!({ "key": b64(&prefix), "range_end": b64_bytes(&prefix_end(prefix.as_bytes())),
                         "keys_only": true, "limit": (count - HISTORY_KEPT).to_string() }),
            )?;
            if let Some(last) = v["kvs"].as_array().and_then(|a| a.last()) {
                let last = Kv::from_json(last)?.key;
                self.client.call(
                    "/v3/kv/deleterange",
                    &json!({ "key": b64(&prefix), "range_end": b64(&format!("{last}\0")) }),
                )?;
            }
        }
        Ok(())
    }

    /// The chain events other members kept in etcd, oldest first.
    pub fn others_events(&self) -> Result<Vec<Event>> {
        let prefix = self.key("history/");
        let mine = format!("@{}", self.settings.name);
        Ok(self
            .client
            .range_prefix(&prefix)?
            .into_iter()
            .filter_map(|kv| serde_json::from_str::<EventJson>(&kv.value).ok())
            .map(EventJson::into_event)
            .filter(|e| !e.actor.ends_with(&mine))
            .collect())
    }
}

/// An event as kept in etcd.
#[derive(Debug, serde::Deserialize)]
struct EventJson {
    at: i64,
    pool: Option<String>,
    event: String,
    actor: String,
    step: String,
    host: String,
    status: String,
    message: String,
    output: String,
    duration_ms: Option<i64>,
}

impl EventJson {
    fn into_event(self) -> Event {
        Event {
            id: 0,
            at: self.at,
            pool: self.pool,
            event: self.event,
            actor: self.actor,
            step: self.step,
            host: self.host,
            status: self.status,
            message: self.message,
            output: self.output,
            duration_ms: self.duration_ms,
        }
    }
}

/// `check-config`'s probe: etcd answers, is 3.4 or newer, the prefix takes a write (a
/// probe key, deleted at once), and who leads.
pub fn probe(settings: &Settings) -> Result<String> {
    let client = Client::new(settings);
    let version = client.version()?;
    if !version_ok(&version) {
        bail!("etcd {version} answers; deadpool needs 3.4 or newer");
    }
    let key = format!("{}/check-config/{}", settings.prefix, settings.name);
    client
        .put(&key, "probe")
        .with_context(|| format!("the prefix {} does not take a write", settings.prefix))?;
    client.call("/v3/kv/deleterange", &json!({ "key": b64(&key) }))?;
    let leader = client.range(&format!("{}/leader", settings.prefix))?;
    Ok(format!(
        "cluster: etcd {version} answers, prefix {} is writable, {}; this member is {}",
        settings.prefix,
        match leader {
            Some(kv) => format!("leader {}", kv.value),
            None => "no leader yet".to_string(),
        },
        settings.name
    ))
}

/// Whether an etcd version string is 3.4 or newer.
pub fn version_ok(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (3, 4)
}

/// What `report` shows of the cluster: one line and its severity, from `cluster.json`.
pub fn status_line(
    state_dir: &Path,
    now_ms: i64,
    stale_ms: i64,
) -> Option<(crate::model::Status, String)> {
    use crate::model::Status;
    let text = std::fs::read_to_string(state_dir.join("cluster.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    let at = v["at"].as_i64().unwrap_or(0);
    let members: Vec<String> = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    format!(
                        "{} ticked {}s ago",
                        m["name"].as_str().unwrap_or("?"),
                        (now_ms - m["last_tick"].as_i64().unwrap_or(0)) / 1000
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (status, mut line) = match v["role"].as_str() {
        Some("leader") | Some("follower") => (
            Status::Ok,
            format!(
                "cluster: {} is {}, leader {} (lease {:.1}s left)",
                v["member"].as_str().unwrap_or("?"),
                v["role"].as_str().unwrap_or("?"),
                v["leader"].as_str().unwrap_or("?"),
                v["lease_left_ms"].as_i64().unwrap_or(0) as f64 / 1000.0
            ),
        ),
        _ => (
            Status::Critical,
            format!(
                "cluster: etcd unreachable or without quorum, no failover possible: {}",
                v["error"].as_str().unwrap_or("?")
            ),
        ),
    };
    if !members.is_empty() {
        line.push_str(&format!("; {}", members.join(", ")));
    }
    if now_ms - at > stale_ms {
        return Some((
            Status::Critical,
            format!("{line} (cluster status is {}s old)", (now_ms - at) / 1000),
        ));
    }
    Some((status, crate::text::one_line(&line).replace('|', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_validity_by_our_own_clock() {
        let sent = Instant::now();
        let ttl = Duration::from_secs(10);
        for (after_ms, valid) in [(0, true), (9_999, true), (10_000, false), (60_000, false)] {
            assert_eq!(
                lease_valid(sent, ttl, sent + Duration::from_millis(after_ms)),
                valid,
                "{after_ms} ms"
            );
        }
    }

    #[test]
    fn campaign_decisions() {
        let k = |name: &str| LeaderKey {
            name: name.to_string(),
            lease: 7,
            create_revision: 3,
        };
        assert_eq!(campaign("dp1", None), Campaign::Create);
        assert_eq!(campaign("dp1", Some(&k("dp1"))), Campaign::Renew);
        assert_eq!(campaign("dp1", Some(&k("dp2"))), Campaign::Follow);
        assert_eq!(campaign("dp1", Some(&k("dp10"))), Campaign::Follow);
    }

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
            let e = Settings::parse(dir, t(text), five).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn http_responses() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap(),
            None
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(),
            Some((200, "{}".to_string()))
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n{}").unwrap(),
            None
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n";
        assert_eq!(
            parse_response(chunked).unwrap(),
            Some((200, "{\"a\":1}".to_string()))
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn etcd_versions() {
        for (v, ok) in [
            ("3.4.23", true),
            ("3.5.0", true),
            ("4.0.0", true),
            ("3.3.27", false),
            ("2.3.8", false),
            ("", false),
        ] {
            assert_eq!(version_ok(v), ok, "{v}");
        }
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
    }

    #[test]
    fn pool_records_round_trip() {
        let mut rec = PoolRecord::new("db", 5);
        rec.state = PoolState::FailedOver;
        rec.active = Role::Secondary;
        rec.failures = 3;
        rec.reason = "done".to_string();
        let text = pool_json(&rec, Some("vip")).to_string();
        let back = pool_from_json("db", &text, None).unwrap();
        assert_eq!(back.state, PoolState::FailedOver);
        assert_eq!(back.active, Role::Secondary);
        assert_eq!(back.failures, 3);
        assert_eq!(back.reason, "done");
        assert!(pool_from_json("db", r#"{"state":"weird"}"#, None).is_err());
    }
}
