//! A small Redis client (RESP2 over TCP, or over TLS with a pool's `tls` table) with
//! connect, read and write timeouts, and the replication facts the monitor, the readiness
//! checks and the promotion need. A few commands is all deadpool sends, so a full client
//! library would not earn its place.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::net::io_words as plain_io;
use crate::settings::Secret;
use crate::tls::{Stream, Tls};

/// How to reach a Redis server.
#[derive(Debug, Clone)]
pub struct RedisAccess {
    pub port: u16,
    /// An ACL user (Redis 6+); without one, `AUTH password`.
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub tls: Option<Tls>,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// ACL user (Redis 6+); `None` for the classic `AUTH password`.
    pub user: Option<&'a str>,
    pub password: Option<&'a Secret>,
    pub timeout: Duration,
    /// TLS right after the TCP connect, when the pool has a `tls` table.
    pub tls: Option<&'a Tls>,
}

/// Why a call failed, sorted by what it says about the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Nothing (sensible) answered: refused, unreachable, timed out, not Redis.
    Down(String),
    /// The server answered with an error: it is alive (auth, LOADING, BUSY, MASTERDOWN).
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Down(m) | Failure::Refused(m) => f.write_str(m),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) | Reply::Error(s) => s.clone(),
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Bulk(None) | Reply::Array(None) => String::new(),
            Reply::Array(Some(items)) => {
                items.iter().map(Reply::text).collect::<Vec<_>>().join(" ")
            }
        }
    }
}

/// Longest reply line or bulk string accepted; a peer that sends more is not Redis.
const MAX_REPLY: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct Client {
    reader: BufReader<Stream>,
    pub host: String,
    pub port: u16,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<Tls>,
    /// Whether the server has answered anything yet.
    answered: bool,
}

impl Client {
    pub fn connect(t: &Target) -> Result<Client, Failure> {
        let down = |what: String| Failure::Down(format!("{}:{}: {what}", t.host, t.port));
        let addrs = crate::net::resolve(t.host, t.port, t.timeout).map_err(Failure::Down)?;
        let addr = addrs.first().ok_or_else(|| down("no address".into()))?;
        let stream = TcpStream::connect_timeout(addr, t.timeout).map_err(|e| down(plain_io(&e)))?;
        stream
            .set_read_timeout(Some(t.timeout))
            .map_err(|e| down(e.to_string()))?;
        stream
            .set_write_timeout(Some(t.timeout))
            .map_err(|e| down(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let stream = match t.tls {
            None => Stream::Plain(stream),
            Some(tls) => match tls.handshake(t.host, stream) {
                Ok(s) => Stream::Tls(Box::new(s)),
                Err(crate::tls::Failed::Refused(m)) => return Err(Failure::Refused(m)),
                Err(crate::tls::Failed::Silent(m)) => return Err(down(m)),
            },
        };
        let mut client = Client {
            reader: BufReader::new(stream),
            host: t.host.to_string(),
            port: t.port,
            addr: *addr,
            timeout: t.timeout,
            tls: t.tls.cloned(),
            answered: false,
        };
        if let Some(password) = t.password {
            let reply = match t.user {
                Some(user) => client.call(&["AUTH", user, password.expose()])?,
                None => client.call(&["AUTH", password.expose()])?,
            };
            if let Reply::Error(e) = reply {
                return Err(Failure::Refused(format!("AUTH refused: {e}")));
            }
        }
        Ok(client)
    }

    /// Sends one command and reads its reply. An error reply is a reply, not a failure.
    pub fn call(&mut self, args: &[&str]) -> Result<Reply, Failure> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let host = format!("{}:{}", self.host, self.port);
        if let Err(e) = self.reader.get_mut().write_all(&out) {
            // A server that refuses the connection (`-ERR max number of clients reached`)
            // says so and closes it: its answer may be waiting even though the write
            // failed, and an answer is not silence.
            return match read_reply(&mut self.reader, 0) {
                Ok(reply @ Reply::Error(_)) => Ok(reply),
                Err(read) if read.contains(" alert ") => {
                    Err(self.failed(format!("{host}: {read}")))
                }
                _ => Err(self.failed(format!("{host}: {}", plain_io(&e)))),
            };
        }
        let reply =
            read_reply(&mut self.reader, 0).map_err(|e| self.failed(format!("{host}: {e}")))?;
        self.answered = true;
        Ok(reply)
    }

    /// A call that got no answer: down, unless TLS says otherwise. Over TLS, an alert (a
    /// TLS 1.3 server refuses a client certificate only after the handshake) came from a
    /// live server; without TLS, a server that drops a first command and answers a TLS
    /// record speaks TLS only.
    fn failed(&self, message: String) -> Failure {
        match &self.tls {
            Some(tls) if message.contains(" alert ") => {
                match crate::tls::explain(&message, tls, tls.name_for(&self.host)) {
                    crate::tls::Failed::Refused(m) => Failure::Refused(m),
                    crate::tls::Failed::Silent(_) => Failure::Down(message),
                }
            }
            // Silence (a hung server) is not asked twice; a dropped connection is.
            None if !self.answered
                && !message.contains("timed out")
                && crate::tls::speaks_tls(&self.addr, self.timeout) =>
            {
                Failure::Refused(format!(
                    "{}:{}: the server speaks TLS only (port 0, tls-port): add tls = {{ ca_file = \"...\" }} to the pool's [monitor]",
                    self.host, self.port
                ))
            }
            _ => Failure::Down(message),
        }
    }

    /// Like [`Client::call`], but an error reply is a [`Failure::Refused`].
    pub fn ok(&mut self, args: &[&str]) -> Result<Reply, Failure> {
        match self.call(args)? {
            Reply::Error(e) => Err(Failure::Refused(format!("{}: {e}", args[0]))),
            reply => Ok(reply),
        }
    }

    pub fn replication(&mut self) -> Result<Replication, Failure> {
        let text = self.ok(&["INFO", "replication"])?.text();
        Ok(Replication::parse(&text))
    }

    /// `REPLICAOF host port`: this server drops what it is doing as a primary or replica
    /// and follows `host` (its `masterauth` and TLS settings stay as they are).
    pub fn replicate_from(&mut self, host: &str, port: u16) -> Result<(), Failure> {
        self.ok(&["REPLICAOF", host, &port.to_string()]).map(|_| ())
    }

    /// Waits, at most `timeout`, until `INFO replication` says this server replicates from
    /// `host:port` with its link up (after [`Client::replicate_from`]; a full sync takes
    /// its time). The error says why not.
    pub fn await_replicating(
        &mut self,
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<Replication, String> {
        let mut last = None;
        let waited = crate::remote::poll(timeout, || -> Result<_, String> {
            let r = self.replication().map_err(|f| f.to_string())?;
            if r.replicating_from(host, port)? {
                return Ok(Some(r));
            }
            last = Some(r);
            Ok(None)
        });
        let me = format!("{}:{}", self.host, self.port);
        match waited {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(format!(
                "{me} did not start replicating from {host}:{port} within {}: {}",
                crate::settings::format_duration(timeout),
                last.map_or("no answer".to_string(), |r| r.describe())
            )),
            Err(why) => Err(format!("{me} does not replicate from {host}:{port}: {why}")),
        }
    }

    pub fn version(&mut self) -> String {
        match self.ok(&["INFO", "server"]) {
            Ok(r) => r
                .text()
                .lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("")
                .trim()
                .to_string(),
            Err(_) => String::new(),
        }
    }
}

fn read_line(r: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    let mut limited = std::io::Read::take(&mut *r, MAX_REPLY as u64);
    let n = limited
        .read_until(b'\n', &mut line)
        .map_err(|e| plain_io(&e))?;
    if n == 0 {
        return Err("connection closed".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err("not a Redis reply (no CRLF)".into());
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).map_err(|_| "not a Redis reply (invalid UTF-8)".into())
}

/// Reads one RESP2 reply. Nesting and sizes are bounded: a peer that is not Redis cannot
/// make deadpool allocate without limit.
pub fn read_reply(r: &mut impl BufRead, depth: usize) -> Result<Reply, String> {
    if depth > 8 {
        return Err("reply nested too deep".into());
    }
    let line = read_line(r)?;
    let split = line.chars().next().map_or(0, char::len_utf8);
    let (kind, rest) = line.split_at(split);
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("not a Redis reply: {line:?}"))
    };
    match kind {
        "+" => Ok(Reply::Status(rest.to_string())),
        "-" => Ok(Reply::Error(rest.to_string())),
        ":" => Ok(Reply::Int(number()?)),
        "$" => {
            let len = number()?;
            if len < 0 {
                return Ok(Reply::Bulk(None));
            }
            let len = usize::try_from(len).map_err(|_| "bad length".to_string())?;
            if len > MAX_REPLY {
                return Err(format!("reply of {len} bytes is too large"));
            }
            let mut buf = vec![0u8; len + 2];
            std::io::Read::read_exact(r, &mut buf).map_err(|e| plain_io(&e))?;
            if !buf.ends_with(b"\r\n") {
                return Err("not a Redis reply (bulk without CRLF)".into());
            }
            buf.truncate(len);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let count = number()?;
            if count < 0 {
                return Ok(Reply::Array(None));
            }
            if count > 100_000 {
                return Err(format!("array of {count} items is too large"));
            }
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(read_reply(r, depth + 1)?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(format!(
            "not a Redis reply: {:?}",
            crate::text::truncate(&line, 40)
        )),
    }
}

/// The fields of `INFO replication` deadpool uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replication {
    /// `master` or `slave`.
    pub role: String,
    pub master_host: String,
    pub master_port: Option<u16>,
    /// `up` or `down` (replicas only).
    pub link_status: String,
    pub last_io_seconds: Option<i64>,
    /// A replica's processed offset, or a primary's written offset.
    pub offset: Option<i64>,
    pub connected_replicas: usize,
    /// A primary's `min_slaves_good_slaves`: how many replicas are within
    /// `min-replicas-max-lag` now. Redis shows it only when `min-replicas-to-write` (and
    /// `min-replicas-max-lag`) is set.
    pub good_replicas: Option<u64>,
}

impl Replication {
    pub fn parse(text: &str) -> Replication {
        let mut r = Replication::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            match key {
                "role" => r.role = value.to_string(),
                "master_host" => r.master_host = value.to_string(),
                "master_port" => r.master_port = value.parse().ok(),
                "master_link_status" => r.link_status = value.to_string(),
                "master_last_io_seconds_ago" => r.last_io_seconds = value.parse().ok(),
                "slave_repl_offset" => r.offset = value.parse().ok(),
                "master_repl_offset" if r.offset.is_none() => r.offset = value.parse().ok(),
                "connected_slaves" => r.connected_replicas = value.parse().unwrap_or(0),
                "min_slaves_good_slaves" => r.good_replicas = value.parse().ok(),
                _ => {}
            }
        }
        r
    }

    pub fn is_replica(&self) -> bool {
        self.role == "slave"
    }

    /// Whether the link to `host:port` is up (pure, for tests): `Ok(false)` while it may
    /// still come up (connecting, syncing), `Err` when this server follows no one or
    /// someone else.
    pub fn replicating_from(&self, host: &str, port: u16) -> Result<bool, String> {
        if !self.is_replica() {
            return Err(format!("it is no replica (role {})", or_dash(&self.role)));
        }
        if !self.master_host.eq_ignore_ascii_case(host) || self.master_port != Some(port) {
            return Err(format!(
                "it replicates from {}:{}",
                self.master_host,
                self.master_port.unwrap_or(0)
            ));
        }
        Ok(self.link_up())
    }

    /// A replica's link to its primary is up.
    pub fn link_up(&self) -> bool {
        self.link_status == "up"
    }

    pub fn describe(&self) -> String {
        if self.is_replica() {
            let io = self
                .last_io_seconds
                .map_or("-".to_string(), |s| format!("{s}s ago"));
            format!(
                "replica of {}:{}, link {}, last I/O {io}, offset {}",
                self.master_host,
                self.master_port.unwrap_or(0),
                or_dash(&self.link_status),
                self.offset.unwrap_or(0)
            )
        } else {
            format!(
                "primary with {} replica(s), offset {}",
                self.connected_replicas,
                self.offset.unwrap_or(0)
            )
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// Error replies that mean "alive, but not serving normally".
pub fn alive_error(e: &str) -> bool {
    [
        "LOADING",
        "BUSY",
        "MASTERDOWN",
        "NOAUTH",
        "WRONGPASS",
        "NOPERM",
        "ERR invalid password",
        "ERR AUTH",
        "MISCONF",
        "ERR max number of clients",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Reply, String> {
        read_reply(&mut std::io::Cursor::new(bytes.to_vec()), 0)
    }

    #[test]
    fn reads_resp2() {
        assert_eq!(parse(b"+PONG\r\n"), Ok(Reply::Status("PONG".into())));
        assert_eq!(
            parse(b"-LOADING Redis is loading\r\n"),
            Ok(Reply::Error("LOADING Redis is loading".into()))
        );
        assert_eq!(parse(b":42\r\n"), Ok(Reply::Int(42)));
        assert_eq!(
            parse(b"$3\r\nabc\r\n"),
            Ok(Reply::Bulk(Some(b"abc".to_vec())))
        );
        assert_eq!(parse(b"$-1\r\n"), Ok(Reply::Bulk(None)));
        assert_eq!(
            parse(b"*2\r\n$6\r\nmaster\r\n:7\r\n"),
            Ok(Reply::Array(Some(vec![
                Reply::Bulk(Some(b"master".to_vec())),
                Reply::Int(7)
            ])))
        );
    }

    #[test]
    fn refuses_what_is_not_redis() {
        assert!(parse(b"HTTP/1.1 400 Bad Request\r\n").is_err());
        assert!(parse(b"$99999999999\r\n").is_err());
        assert!(parse(b"+no newline").is_err());
        assert!(parse(b"").is_err());
        assert!(
            parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").is_err()
        );
    }

    /// Recorded from Redis 7.0 (a replica, then its primary).
    #[test]
    fn reads_info_replication() {
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:10.213.0.11\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:1205\r\nslave_repl_offset:1205\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:3f5c\r\nmaster_repl_offset:1205\r\n";
        let r = Replication::parse(replica);
        assert!(r.is_replica());
        assert_eq!(
            (
                r.master_host.as_str(),
                r.master_port,
                r.link_status.as_str()
            ),
            ("10.213.0.11", Some(6379), "up")
        );
        assert_eq!((r.last_io_seconds, r.offset), (Some(1), Some(1205)));
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.213.0.12,port=6379,state=online,offset=1205,lag=0\r\nmaster_repl_offset:1205\r\n";
        let p = Replication::parse(primary);
        assert!(!p.is_replica());
        assert_eq!((p.connected_replicas, p.offset), (1, Some(1205)));
        assert_eq!(p.describe(), "primary with 1 replica(s), offset 1205");
    }

    /// After `REPLICAOF`: linked to the new primary, not yet (connecting, syncing), or not
    /// without help.
    #[test]
    fn replicating_from_the_new_primary() {
        let linked = Replication {
            role: "slave".into(),
            master_host: "10.0.0.12".into(),
            master_port: Some(6379),
            link_status: "up".into(),
            ..Replication::default()
        };
        let with = |f: fn(&mut Replication)| {
            let mut r = linked.clone();
            f(&mut r);
            r
        };
        // (replication, verdict: Ok(linked) or Err(words))
        let table: Vec<(Replication, Result<bool, &str>)> = vec![
            (linked.clone(), Ok(true)),
            (
                with(|r| r.master_host = "10.0.0.12".to_uppercase()),
                Ok(true),
            ),
            (with(|r| r.link_status = "down".into()), Ok(false)),
            (with(|r| r.link_status.clear()), Ok(false)),
            (
                with(|r| r.master_port = Some(6380)),
                Err("from 10.0.0.12:6380"),
            ),
            (
                with(|r| r.master_host = "10.0.0.11".into()),
                Err("from 10.0.0.11:6379"),
            ),
            (
                with(|r| r.role = "master".into()),
                Err("no replica (role master)"),
            ),
        ];
        for (r, want) in table {
            let got = r.replicating_from("10.0.0.12", 6379);
            match (&got, want) {
                (Ok(a), Ok(b)) => assert_eq!(*a, b, "{r:?}"),
                (Err(e), Err(words)) => assert!(e.contains(words), "{e}"),
                _ => panic!("{r:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn alive_errors() {
        assert!(alive_error(
            "LOADING Redis is loading the dataset in memory"
        ));
        assert!(alive_error(
            "WRONGPASS invalid username-password pair or user is disabled."
        ));
        assert!(alive_error("ERR max number of clients reached"));
        assert!(!alive_error("ERR unknown command"));
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use crate::fuzz::{Rng, cases};

    /// Arbitrary bytes from a peer never panic the reply reader nor make it allocate without
    /// bound; arbitrary `INFO` text never panics the parser.
    #[test]
    fn fuzz_resp_and_info_parsing() {
        let mut rng = Rng::new(4);
        let seeds: &[&[u8]] = &[
            b"+PONG\r\n",
            b"*2\r\n$6\r\nmaster\r\n:7\r\n",
            b"$3\r\nabc\r\n",
            b"-LOADING x\r\n",
            b":12\r\n",
        ];
        for _ in 0..cases(20000) {
            let pick = rng.below(seeds.len() as u64) as usize;
            let bytes = if rng.below(2) == 0 {
                rng.bytes(64)
            } else {
                rng.mutate(seeds[pick])
            };
            let _ = read_reply(&mut std::io::Cursor::new(bytes), 0);
        }
        for case in 0..cases(10000) {
            let text = String::from_utf8_lossy(&rng.mutate(b"role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\nslave_repl_offset:5\r\n")).into_owned();
            let r = Replication::parse(&text);
            let d = r.describe();
            assert!(!d.contains('\n') || text.contains('\n'), "case {case}");
        }
    }
}
