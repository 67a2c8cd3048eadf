//! The `haproxy` step: moves a backend from the old primary's server to the new one through
//! HAProxy's runtime API (the stats socket), on every configured HAProxy at once. The
//! commands are sent by deadpool itself: over a local unix socket, a TCP connection, or a
//! channel that an SSH server opens to its own unix socket or TCP port (no socat anywhere).
//!
//! - preflight: each HAProxy answers at `level admin`, the backend exists and holds both
//!   servers.
//! - promote: on each HAProxy, in one command line, the old primary's server goes to `maint`
//!   (its sessions shut down) or `drain`, the new one to `ready`; then the new server must be
//!   UP. Every HAProxy gets its own result: one that cannot be reached fails the step, and
//!   the others are switched all the same.
//! - check: each HAProxy's backend has exactly the active server ready and UP, and the
//!   standby in `maint` (or `drain` where that is the configured standby state).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{
    Context, HostResult, LoadContext, Notes, PerServer, Protocol, RawPerServer, port_number,
};
use crate::config::load::{RawSsh, step_ssh};
use crate::error::Problem;
use crate::model::{Concern, Status};
use crate::settings::{SshSettings, validate_host};

/// The step's `type`.
pub const TYPE: &str = "haproxy";

/// The `haproxy` step: switches a backend's servers through HAProxy's runtime API.
#[derive(Debug, Clone)]
pub struct Haproxy {
    pub backend: String,
    /// The HAProxy server name of each pool server.
    pub servers: PerServer,
    /// One HAProxy each; every one is switched.
    pub sockets: Vec<HaproxySocket>,
    /// What the server being left becomes.
    pub standby_state: StandbyState,
    /// For sockets reached through SSH.
    pub ssh: SshSettings,
}

/// Where one HAProxy's stats socket is, and how deadpool reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaproxySocket {
    /// `/run/haproxy/admin.sock`: a unix socket on the deadpool host.
    Unix(String),
    /// `10.0.0.9:9999`: a TCP socket, connected from the deadpool host.
    Tcp { host: String, port: u16 },
    /// `lb1:/run/haproxy/admin.sock`: a unix socket on `host`, through an SSH channel.
    SshUnix { host: String, path: String },
    /// `lb1:127.0.0.1:9999`: a TCP socket as `host` sees it, through an SSH channel.
    SshTcp {
        host: String,
        target: String,
        port: u16,
    },
}

impl HaproxySocket {
    /// Parses one `sockets` entry (the forms above; IPv6 addresses in brackets).
    pub fn parse(s: &str) -> Result<HaproxySocket, String> {
        let expected = || {
            format!(
                "`{s}`: expected a unix socket path (/run/haproxy/admin.sock), HOST:PORT, or through SSH HOST:/PATH or HOST:ADDRESS:PORT"
            )
        };
        if s.starts_with('/') {
            return unix_socket_path(s).map(|p| HaproxySocket::Unix(p.to_string()));
        }
        let (host, rest) = split_host(s).ok_or_else(expected)?;
        validate_host(host).map_err(|e| format!("`{s}`: {e}"))?;
        if rest.starts_with('/') {
            let path = unix_socket_path(rest)?;
            return Ok(HaproxySocket::SshUnix {
                host: host.to_string(),
                path: path.to_string(),
            });
        }
        if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(HaproxySocket::Tcp {
                host: host.to_string(),
                port: port_number(rest).ok_or_else(expected)?,
            });
        }
        let (target, port) = split_host(rest).ok_or_else(expected)?;
        validate_host(target).map_err(|e| format!("`{s}`: {e}"))?;
        Ok(HaproxySocket::SshTcp {
            host: host.to_string(),
            target: target.to_string(),
            port: port_number(port).ok_or_else(expected)?,
        })
    }

    /// The SSH host it is reached through, if any.
    pub fn ssh_host(&self) -> Option<&str> {
        match self {
            HaproxySocket::SshUnix { host, .. } | HaproxySocket::SshTcp { host, .. } => Some(host),
            HaproxySocket::Unix(_) | HaproxySocket::Tcp { .. } => None,
        }
    }
}

impl std::fmt::Display for HaproxySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bracket = |h: &str| {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_string()
            }
        };
        match self {
            HaproxySocket::Unix(path) => f.write_str(path),
            HaproxySocket::Tcp { host, port } => write!(f, "{}:{port}", bracket(host)),
            HaproxySocket::SshUnix { host, path } => write!(f, "{}:{path}", bracket(host)),
            HaproxySocket::SshTcp { host, target, port } => {
                write!(f, "{}:{}:{port}", bracket(host), bracket(target))
            }
        }
    }
}

/// `host:rest` or `[v6]:rest`: the host and what follows its colon.
fn split_host(s: &str) -> Option<(&str, &str)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, rest) = inner.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    s.split_once(':')
}

/// An absolute unix socket path that fits in `sun_path`.
fn unix_socket_path(path: &str) -> Result<&str, String> {
    if !path.starts_with('/') || path.len() > 107 || path.contains('\0') {
        return Err(format!(
            "`{path}`: expected an absolute unix socket path of at most 107 bytes"
        ));
    }
    if path.contains(char::is_whitespace) || path.contains(';') {
        return Err(format!(
            "`{path}`: a socket path with spaces or `;` is not supported"
        ));
    }
    Ok(path)
}

/// What the `haproxy` step makes of the server being left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandbyState {
    /// No new connections, and its sessions are shut down.
    Maint,
    /// No new connections; its sessions go on until they end.
    Drain,
}

impl StandbyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StandbyState::Maint => "maint",
            StandbyState::Drain => "drain",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    backend: String,
    servers: RawPerServer,
    sockets: Vec<String>,
    standby_state: Option<String>,
    ssh: Option<RawSsh>,
}

/// The `haproxy` step's keys, validated: names HAProxy accepts (and that cannot smuggle a
/// second command into the runtime API line), each socket parsed.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<Haproxy, Problem> {
    let raw: RawHaproxy = super::raw(table)?;
    let proxy_name = |key: &str, name: &str| {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if ok {
            Ok(name.to_string())
        } else {
            Err(Problem::at(
                key,
                format!("`{name}`: expected an HAProxy name (letters, digits, `-`, `_`, `.`, `:`)"),
            ))
        }
    };
    let backend = proxy_name("backend", &raw.backend)?;
    let servers = PerServer::load(
        Some(raw.servers),
        cx.servers,
        "servers",
        |name, role| proxy_name(&format!("servers.{}", role.as_str()), name),
        "name each server's own HAProxy server",
    )?;
    if raw.sockets.is_empty() {
        return Err(Problem::at("sockets", "expected at least one stats socket"));
    }
    let mut sockets: Vec<HaproxySocket> = Vec::new();
    for entry in &raw.sockets {
        let socket = HaproxySocket::parse(entry).map_err(|e| Problem::at("sockets", e))?;
        if sockets.contains(&socket) {
            return Err(Problem::at("sockets", format!("`{entry}` is listed twice")));
        }
        sockets.push(socket);
    }
    let standby_state = match raw.standby_state.as_deref() {
        None | Some("maint") => StandbyState::Maint,
        Some("drain") => StandbyState::Drain,
        Some(other) => {
            return Err(Problem::at(
                "standby_state",
                format!("got `{other}`, expected \"maint\" or \"drain\""),
            ));
        }
    };
    Ok(Haproxy {
        backend,
        servers,
        sockets,
        standby_state,
        ssh: step_ssh(cx.dir, raw.ssh, cx.ssh)?,
    })
}

/// The most of one answer that is kept: `show servers state` of one backend is small.
const ANSWER_CAP: usize = 1 << 20;

/// `srv_admin_state` bits (HAProxy 2.x `enum srv_admin`): forced, inherited or
/// resolution maintenance, and forced or inherited drain. The configuration's `disabled`
/// flag (0x04) alone does not keep a server out of traffic.
const ADMIN_MAINT: u32 = 0x23;
const ADMIN_DRAIN: u32 = 0x18;

/// One server of the backend as `show servers state` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Server {
    name: String,
    /// `srv_op_state`: 0 stopped, 1 starting, 2 running, 3 stopping.
    op_state: u32,
    admin_state: u32,
}

impl Server {
    fn maint(&self) -> bool {
        self.admin_state & ADMIN_MAINT != 0
    }

    fn drain(&self) -> bool {
        !self.maint() && self.admin_state & ADMIN_DRAIN != 0
    }

    fn ready(&self) -> bool {
        !self.maint() && !self.drain()
    }

    fn up(&self) -> bool {
        self.op_state == 2
    }

    /// `db1 ready UP`, `db2 MAINT`, `db2 DRAIN UP`.
    fn describe(&self) -> String {
        let op = match self.op_state {
            0 => "DOWN",
            1 => "STARTING",
            2 => "UP",
            3 => "STOPPING",
            _ => "in an unknown state",
        };
        if self.maint() {
            format!("{} MAINT", self.name)
        } else if self.drain() {
            format!("{} DRAIN {op}", self.name)
        } else {
            format!("{} ready {op}", self.name)
        }
    }
}

/// Splits the answer to a line of `;`-separated commands into one block per command: HAProxy
/// ends each command's answer with an empty line (an answer of nothing is the empty line
/// alone). Text after the last empty line is an answer cut short and is left out.
fn blocks(answer: &str) -> Vec<Vec<&str>> {
    let mut done = Vec::new();
    let mut current = Vec::new();
    let mut lines = answer.split('\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            break; // what follows the last newline: nothing, or a line cut short
        }
        if line.is_empty() {
            done.push(std::mem::take(&mut current));
        } else {
            current.push(line);
        }
    }
    done
}

/// Reads the answer to `show servers state BACKEND`: the format version, a `#` header that
/// names the columns, then one row per server.
fn parse_state(block: &[&str], backend: &str) -> Result<Vec<Server>, String> {
    let said = || {
        crate::text::truncate(&block.join(" / "), 200)
            .trim()
            .to_string()
    };
    let Some(header) = block.iter().find_map(|l| l.strip_prefix("# ")) else {
        return Err(match block.first() {
            Some(line) => format!("backend `{backend}`: HAProxy said `{}`", said_first(line)),
            None => format!("backend `{backend}`: no answer to `show servers state`"),
        });
    };
    let columns: Vec<&str> = header.split_whitespace().collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("no `{name}` column in `show servers state`: {}", said()))
    };
    let (be, name, op, admin) = (
        col("be_name")?,
        col("srv_name")?,
        col("srv_op_state")?,
        col("srv_admin_state")?,
    );
    let mut servers = Vec::new();
    for row in block.iter().skip_while(|l| !l.starts_with('#')).skip(1) {
        let fields: Vec<&str> = row.split_whitespace().collect();
        let field = |i: usize| fields.get(i).copied().unwrap_or("");
        if field(be) != backend {
            continue;
        }
        let number = |i: usize| {
            field(i)
                .parse::<u32>()
                .map_err(|_| format!("unexpected row in `show servers state`: `{row}`"))
        };
        servers.push(Server {
            name: field(name).to_string(),
            op_state: number(op)?,
            admin_state: number(admin)?,
        });
    }
    Ok(servers)
}

fn said_first(line: &str) -> String {
    crate::text::truncate(line.trim(), 200)
}

fn describe_all(servers: &[Server]) -> String {
    if servers.is_empty() {
        return "no servers".to_string();
    }
    servers
        .iter()
        .map(Server::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

fn find<'s>(servers: &'s [Server], name: &str) -> Option<&'s Server> {
    servers.iter().find(|s| s.name == name)
}

/// The preflight's verdict on one HAProxy (pure, for tests): the session's level, and the
/// backend holding both servers.
fn preflight_verdict(
    level: &[&str],
    state: Result<Vec<Server>, String>,
    backend: &str,
    old: &str,
    new: &str,
) -> (Status, String) {
    let level = level.first().copied().unwrap_or("");
    if level != "admin" {
        let why = match level {
            "operator" | "user" => format!("the stats socket is at level {level}"),
            "" => "no answer to `show cli level`".to_string(),
            other => format!("`show cli level` said `{}`", said_first(other)),
        };
        return (
            Status::Critical,
            format!(
                "{why}; `set server` needs `level admin` on the `stats socket` line (HAProxy 2.0 or later)"
            ),
        );
    }
    let servers = match state {
        Ok(servers) => servers,
        Err(e) => return (Status::Critical, e),
    };
    let missing: Vec<&str> = [old, new]
        .into_iter()
        .filter(|n| find(&servers, n).is_none())
        .collect();
    if !missing.is_empty() {
        return (
            Status::Critical,
            format!(
                "backend `{backend}` has no server {}; it has: {}",
                missing
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(" or "),
                describe_all(&servers)
            ),
        );
    }
    let shows = describe_all(&servers);
    // Out of maintenance, a server's operational state is its health check's verdict.
    if find(&servers, new).is_some_and(|n| !n.maint() && !n.up()) {
        return (
            Status::Critical,
            format!(
                "HAProxy's health check says {new} is not UP ({shows}): traffic would go nowhere; fix the check or the server"
            ),
        );
    }
    let done = find(&servers, new).is_some_and(Server::ready)
        && find(&servers, old).is_some_and(|s| !s.ready());
    if done {
        (
            Status::Ok,
            format!("backend `{backend}` already serves {new}: {shows}"),
        )
    } else {
        (
            Status::Ok,
            format!("level admin; backend `{backend}`: {shows}; will move to {new}"),
        )
    }
}

/// The action's verdict on one HAProxy (pure, for tests): what the `set server` commands
/// answered (nothing, when they worked) and the backend read back after them.
fn switch_verdict(
    answers: &[Vec<&str>],
    state: Result<Vec<Server>, String>,
    old: &str,
    new: &str,
    standby_state: StandbyState,
) -> (Status, String) {
    let refused: Vec<String> = answers
        .iter()
        .filter(|a| !a.is_empty())
        .map(|a| said_first(&a.join(" ")))
        .collect();
    let servers = match state {
        Ok(servers) => servers,
        Err(e) => return (Status::Critical, e),
    };
    let shows = describe_all(&servers);
    let prefix = if refused.is_empty() {
        String::new()
    } else {
        format!("HAProxy refused: {}; ", refused.join("; "))
    };
    let (Some(o), Some(n)) = (find(&servers, old), find(&servers, new)) else {
        return (
            Status::Critical,
            format!("{prefix}the backend lacks {old} or {new}: {shows}"),
        );
    };
    let left = match standby_state {
        StandbyState::Maint => o.maint(),
        StandbyState::Drain => !o.ready(),
    };
    if !left {
        return (
            Status::Critical,
            format!(
                "{prefix}{old} is not in {}: {shows}; both servers may get traffic",
                standby_state.as_str()
            ),
        );
    }
    if !n.ready() {
        return (
            Status::Critical,
            format!("{prefix}{new} is not ready: {shows}; no server gets traffic"),
        );
    }
    if !n.up() {
        return (
            Status::Critical,
            format!(
                "{prefix}{new} is ready but its health check says it is not UP: {shows}; fix the check or the server, traffic goes nowhere until then"
            ),
        );
    }
    (Status::Ok, format!("switched to {new}: {shows}"))
}

/// The readiness verdict on one HAProxy (pure, for tests): exactly the active server ready
/// and UP, the standby in `maint` (or `drain`, where that is the standby state), every other
/// server of the backend out of traffic.
fn check_verdict(
    servers: &[Server],
    active: &str,
    standby: &str,
    standby_state: StandbyState,
) -> (Status, Concern, String) {
    let shows = describe_all(servers);
    // Traffic that goes elsewhere than the active server now, and what only a failover needs.
    let mut misdirected = Vec::new();
    let mut unready = Vec::new();
    match find(servers, active) {
        None => misdirected.push(format!("no server `{active}` (the active server)")),
        Some(s) if !s.ready() => misdirected.push(format!(
            "the active server {active} is not ready: traffic has nowhere to go"
        )),
        Some(s) if !s.up() => misdirected.push(format!(
            "the active server {active} is ready but not UP (its health check fails)"
        )),
        Some(_) => {}
    }
    match find(servers, standby) {
        None => unready.push(format!("no server `{standby}` (the standby)")),
        Some(s) if s.maint() => {}
        Some(s) if s.drain() && standby_state == StandbyState::Drain => {}
        Some(s) => misdirected.push(format!(
            "the standby {standby} is {} instead of {}: it may get traffic",
            if s.drain() { "in drain" } else { "ready" },
            standby_state.as_str()
        )),
    }
    for other in servers
        .iter()
        .filter(|s| s.name != active && s.name != standby && !s.maint())
    {
        misdirected.push(format!("{} may get traffic too", other.name));
    }
    let concern = if misdirected.is_empty() {
        Concern::Readiness
    } else {
        Concern::Direction
    };
    misdirected.extend(unready);
    if misdirected.is_empty() {
        (
            Status::Ok,
            Concern::Direction,
            format!("{active} serves: {shows}"),
        )
    } else {
        (
            Status::Critical,
            concern,
            format!("{}; HAProxy shows: {shows}", misdirected.join("; ")),
        )
    }
}

/// How long one answer took and what it was; `Err` when the proxy could not be asked.
struct Asked {
    answer: Result<String, String>,
    duration: Duration,
}

impl Haproxy {
    fn names<'c>(&'c self, ctx: &Context<'c>) -> (&'c str, &'c str) {
        (
            self.servers.of(&ctx.pool, ctx.old_primary),
            self.servers.of(&ctx.pool, ctx.new_primary),
        )
    }

    /// The command line that switches the backend, read back at the end.
    fn switch_line(&self, old: &str, new: &str) -> String {
        let b = &self.backend;
        match self.standby_state {
            StandbyState::Maint => format!(
                "set server {b}/{old} state maint; shutdown sessions server {b}/{old}; set server {b}/{new} state ready; show servers state {b}"
            ),
            StandbyState::Drain => format!(
                "set server {b}/{old} state drain; set server {b}/{new} state ready; show servers state {b}"
            ),
        }
    }

    fn state_line(&self) -> String {
        format!("show servers state {}", self.backend)
    }

    /// Sends one command line to one HAProxy and reads its whole answer, within what is left
    /// of the step.
    fn ask(&self, socket: &HaproxySocket, line: &str, ctx: &Context) -> Asked {
        let started = Instant::now();
        let limit = ctx.left();
        let request = format!("{line}\n").into_bytes();
        let answer = match socket {
            HaproxySocket::SshUnix { host, path } => crate::ssh::exchange(
                host,
                &self.ssh,
                crate::ssh::Forward::Unix(path),
                &request,
                ANSWER_CAP,
                limit,
            )
            .map_err(|e| describe_exit(e, limit)),
            HaproxySocket::SshTcp { host, target, port } => crate::ssh::exchange(
                host,
                &self.ssh,
                crate::ssh::Forward::Tcp(target, *port),
                &request,
                ANSWER_CAP,
                limit,
            )
            .map_err(|e| describe_exit(e, limit)),
            HaproxySocket::Unix(_) | HaproxySocket::Tcp { .. } => {
                let socket = socket.clone();
                crate::remote::with_deadline(limit, move || {
                    local_exchange(&socket, &request, limit)
                })
                .unwrap_or_else(|| Err(format!("no answer within {:.1}s", limit.as_secs_f64())))
            }
        };
        Asked {
            answer: answer.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            duration: started.elapsed(),
        }
    }

    fn result(
        &self,
        socket: &HaproxySocket,
        status: Status,
        message: String,
        line: &str,
        asked: &Asked,
    ) -> HostResult {
        let said = match &asked.answer {
            Ok(text) => text.clone(),
            Err(e) => e.clone(),
        };
        let output = format!("> {line}\n{said}");
        HostResult::new(
            &socket.to_string(),
            status,
            &message,
            output,
            asked.duration,
        )
    }

    fn preflight_one(&self, socket: &HaproxySocket, ctx: &Context) -> HostResult {
        let (old, new) = self.names(ctx);
        let line = format!("show cli level; {}", self.state_line());
        let asked = self.ask(socket, &line, ctx);
        let (status, message) = match &asked.answer {
            Err(e) => (Status::Critical, format!("cannot reach HAProxy: {e}")),
            Ok(text) => {
                let b = blocks(text);
                let empty = Vec::new();
                let state = match b.get(1) {
                    Some(block) => parse_state(block, &self.backend),
                    None => Err(format!("answer cut short: `{}`", said_first(text))),
                };
                preflight_verdict(b.first().unwrap_or(&empty), state, &self.backend, old, new)
            }
        };
        self.result(socket, status, message, &line, &asked)
    }

    fn promote_one(&self, socket: &HaproxySocket, ctx: &Context) -> HostResult {
        let (old, new) = self.names(ctx);
        let line = self.switch_line(old, new);
        let mut asked = self.ask(socket, &line, ctx);
        let text = match &asked.answer {
            Err(e) => {
                let message = format!("NOT switched: cannot reach HAProxy: {e}");
                return self.result(socket, Status::Critical, message, &line, &asked);
            }
            Ok(text) => text.clone(),
        };
        let b = blocks(&text);
        let (sets, last) = b.split_at(b.len().saturating_sub(1));
        let mut state = match last.first() {
            Some(block) if sets.len() == line.matches(';').count() => {
                parse_state(block, &self.backend)
            }
            _ => Err(format!("answer cut short: `{}`", said_first(&text))),
        };
        // A server that leaves maintenance may need a health check or two before it is UP:
        // read the backend again until it is, within the step's deadline.
        let not_up_yet = |state: &Result<Vec<Server>, String>| {
            state
                .as_ref()
                .is_ok_and(|s| find(s, new).is_some_and(|n| n.ready() && !n.up()))
        };
        while not_up_yet(&state) && ctx.left() > Duration::from_millis(300) {
            std::thread::sleep(Duration::from_millis(200));
            let again = self.ask(socket, &self.state_line(), ctx);
            if let Ok(more) = &again.answer {
                state = match blocks(more).first() {
                    Some(block) => parse_state(block, &self.backend),
                    None => Err(format!("answer cut short: `{}`", said_first(more))),
                };
                asked.answer = Ok(format!("{text}> {}\n{more}", self.state_line()));
            }
            asked.duration += again.duration;
        }
        let (status, message) = switch_verdict(sets, state, old, new, self.standby_state);
        self.result(socket, status, message, &line, &asked)
    }

    fn check_one(&self, socket: &HaproxySocket, ctx: &Context) -> HostResult {
        let (active, standby) = self.names(ctx);
        let line = self.state_line();
        let asked = self.ask(socket, &line, ctx);
        let (status, concern, message) = match &asked.answer {
            Err(e) => (
                Status::Warning,
                Concern::Readiness,
                format!("cannot ask HAProxy: {e}"),
            ),
            Ok(text) => match blocks(text).first().map(|b| parse_state(b, &self.backend)) {
                Some(Ok(servers)) => check_verdict(&servers, active, standby, self.standby_state),
                Some(Err(e)) => (Status::Critical, Concern::Readiness, e),
                None => (
                    Status::Warning,
                    Concern::Readiness,
                    format!("answer cut short: `{}`", said_first(text)),
                ),
            },
        };
        self.result(socket, status, message, &line, &asked)
            .about(concern)
    }

    /// Runs `f` for every HAProxy at once, results in the order of `sockets`.
    fn each(&self, f: impl Fn(&HaproxySocket) -> HostResult + Sync) -> Vec<HostResult> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .sockets
                .iter()
                .map(|socket| s.spawn(|| f(socket)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("an HAProxy's thread panicked"))
                .collect()
        })
    }
}

/// A local unix or TCP stats socket: connect, send, read until HAProxy closes.
fn local_exchange(
    socket: &HaproxySocket,
    request: &[u8],
    limit: Duration,
) -> Result<Vec<u8>, String> {
    fn talk(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(request)?;
        let mut answer = Vec::new();
        stream
            .take(ANSWER_CAP as u64)
            .read_to_end(&mut answer)
            .map(|_| answer)
    }
    let limit = limit.max(Duration::from_millis(1));
    match socket {
        HaproxySocket::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("{path}: {e}"))?;
            stream
                .set_read_timeout(Some(limit))
                .and_then(|()| stream.set_write_timeout(Some(limit)))
                .map_err(|e| format!("{path}: {e}"))?;
            talk(stream, request).map_err(|e| format!("{path}: {e}"))
        }
        HaproxySocket::Tcp { host, port } => {
            let addrs = crate::net::resolve(host, *port, limit)?;
            let addr = addrs.first().ok_or_else(|| format!("{host}: no address"))?;
            let stream = std::net::TcpStream::connect_timeout(addr, limit)
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            stream
                .set_read_timeout(Some(limit))
                .and_then(|()| stream.set_write_timeout(Some(limit)))
                .map_err(|e| format!("{host}:{port}: {e}"))?;
            talk(stream, request).map_err(|e| format!("{host}:{port}: {e}"))
        }
        HaproxySocket::SshUnix { .. } | HaproxySocket::SshTcp { .. } => {
            unreachable!("SSH sockets are asked through the SSH runner")
        }
    }
}

fn describe_exit(exit: crate::remote::Exit, limit: Duration) -> String {
    use crate::remote::Exit;
    match exit {
        Exit::TimedOut => format!("no answer within {:.1}s", limit.as_secs_f64()),
        Exit::Unreachable(e) | Exit::NotStarted(e) => e,
        other => format!("{other:?}"),
    }
}

impl Protocol for Haproxy {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn ssh_in_use(&self) -> Option<&SshSettings> {
        self.sockets
            .iter()
            .any(|s| s.ssh_host().is_some())
            .then_some(&self.ssh)
    }

    /// Each proxy's level, backend and servers.
    fn probed_by_check_config(&self) -> bool {
        true
    }

    /// Where the sockets are, and a local socket that is not there.
    fn notes(&self) -> Notes {
        let mut notes = Notes::default();
        let sockets: Vec<String> = self
            .sockets
            .iter()
            .map(|s| match s.ssh_host() {
                Some(host) => format!("{s} (through ssh {}@{host})", self.ssh.user),
                None => s.to_string(),
            })
            .collect();
        notes.lines.push(format!(
            "backend {}, {}, the server left goes to {}; {}",
            self.backend,
            self.servers.describe(),
            self.standby_state.as_str(),
            sockets.join(", ")
        ));
        for socket in &self.sockets {
            if let HaproxySocket::Unix(path) = socket
                && !std::path::Path::new(path).exists()
            {
                notes.warnings.push(format!(
                    "the stats socket {path} does not exist on this host (is HAProxy running, with `stats socket {path} level admin`?)"
                ));
            }
        }
        notes
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        self.each(|socket| self.preflight_one(socket, ctx))
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        self.each(|socket| self.promote_one(socket, ctx))
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        self.each(|socket| self.check_one(socket, ctx))
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let (old, new) = self.names(ctx);
        let line = self.switch_line(old, new);
        self.sockets
            .iter()
            .map(|socket| {
                let how = match socket {
                    HaproxySocket::Unix(_) => "local unix socket".to_string(),
                    HaproxySocket::Tcp { .. } => "TCP".to_string(),
                    HaproxySocket::SshUnix { host, .. } | HaproxySocket::SshTcp { host, .. } => {
                        format!("through ssh {}@{host}", self.ssh.user)
                    }
                };
                (socket.to_string(), format!("({how}) {line}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haproxy_sockets_parse() {
        use HaproxySocket::*;
        let table: &[(&str, HaproxySocket)] = &[
            (
                "/run/haproxy/admin.sock",
                Unix("/run/haproxy/admin.sock".into()),
            ),
            (
                "10.0.0.9:9999",
                Tcp {
                    host: "10.0.0.9".into(),
                    port: 9999,
                },
            ),
            (
                "[fd00::9]:9999",
                Tcp {
                    host: "fd00::9".into(),
                    port: 9999,
                },
            ),
            (
                "lb1:/run/haproxy/admin.sock",
                SshUnix {
                    host: "lb1".into(),
                    path: "/run/haproxy/admin.sock".into(),
                },
            ),
            (
                "lb1:127.0.0.1:9999",
                SshTcp {
                    host: "lb1".into(),
                    target: "127.0.0.1".into(),
                    port: 9999,
                },
            ),
            (
                "[fd00::9]:[::1]:9999",
                SshTcp {
                    host: "fd00::9".into(),
                    target: "::1".into(),
                    port: 9999,
                },
            ),
        ];
        for (text, socket) in table {
            assert_eq!(HaproxySocket::parse(text).as_ref(), Ok(socket), "{text}");
            assert_eq!(socket.to_string(), *text);
        }
        for bad in [
            "",
            "lb1",
            "lb1:",
            "lb1:0",
            "lb1:99999",
            "lb1:x",
            "-oProxyCommand=x:/s",
            "lb1:/a b",
            "/run/x;show",
            "lb1:127.0.0.1:",
            "[fd00::9:9999",
        ] {
            assert!(
                HaproxySocket::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    const HEADER: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";

    fn server(name: &str, op_state: u32, admin_state: u32) -> Server {
        Server {
            name: name.into(),
            op_state,
            admin_state,
        }
    }

    /// What HAProxy 2.6 answered in the lab: `set server` answers nothing, each answer ends
    /// with an empty line.
    #[test]
    fn answers_split_into_blocks_and_states_parse() {
        let answer = format!(
            "\n\nadmin\n\n1\n{HEADER}\n2 mysql 1 db1 10.213.0.11 2 0 1 1 0 6 3 1 6 0 0 0 - 3306 - 0 0 - - 0\n2 mysql 2 db2 10.213.0.12 0 5 1 1 1 1 0 0 14 0 0 0 - 3306 - 0 0 - - 0\n\n"
        );
        let b = blocks(&answer);
        assert_eq!(b.len(), 4, "{b:?}");
        assert!(b[0].is_empty() && b[1].is_empty());
        assert_eq!(b[2], vec!["admin"]);
        let servers = parse_state(&b[3], "mysql").unwrap();
        assert_eq!(servers, vec![server("db1", 2, 0), server("db2", 0, 5)]);
        assert_eq!(describe_all(&servers), "db1 ready UP, db2 MAINT");
        // Another backend's rows are not ours; a cut-off answer has no last block.
        assert!(parse_state(&b[3], "other").unwrap().is_empty());
        assert_eq!(blocks("admin\n\n1\n# be_id").len(), 1);
        // An unknown backend is named.
        let e = parse_state(&["Can't find backend."], "mysql").unwrap_err();
        assert!(
            e.contains("Can't find backend") && e.contains("mysql"),
            "{e}"
        );
    }

    #[test]
    fn admin_states_read_like_haproxy() {
        // (admin state, maint, drain, ready)
        for (admin, maint, drain, ready) in [
            (0x00, false, false, true),
            (0x01, true, false, false),
            (0x02, true, false, false),
            (0x04, false, false, true), // `disabled` in the config, then set ready
            (0x05, true, false, false),
            (0x08, false, true, false),
            (0x10, false, true, false),
            (0x09, true, false, false), // maintenance wins over drain
            (0x20, true, false, false),
        ] {
            let s = server("s", 2, admin);
            assert_eq!(
                (s.maint(), s.drain(), s.ready()),
                (maint, drain, ready),
                "{admin:#x}"
            );
        }
    }

    #[test]
    fn preflight_verdicts() {
        let both = || Ok(vec![server("db1", 2, 0), server("db2", 0, 1)]);
        let ok = preflight_verdict(&["admin"], both(), "mysql", "db1", "db2");
        assert_eq!(ok.0, Status::Ok, "{ok:?}");
        let done = preflight_verdict(
            &["admin"],
            Ok(vec![server("db1", 0, 1), server("db2", 2, 0)]),
            "mysql",
            "db1",
            "db2",
        );
        assert!(
            done.0 == Status::Ok && done.1.contains("already"),
            "{done:?}"
        );
        // (level, state, words)
        type Case<'a> = (&'a [&'a str], Result<Vec<Server>, String>, &'a str);
        let table: &[Case] = &[
            (&["operator"], both(), "level operator"),
            (&["user"], both(), "level admin"),
            (&[], both(), "no answer to `show cli level`"),
            (&["Unknown command."], both(), "Unknown command"),
            (&["admin"], Err("no backend".into()), "no backend"),
            (
                &["admin"],
                Ok(vec![server("db1", 2, 0)]),
                "has no server `db2`",
            ),
            (
                &["admin"],
                Ok(vec![server("db1", 2, 0), server("db2", 0, 8)]),
                "health check says db2 is not UP",
            ),
        ];
        for (level, state, words) in table {
            let (status, message) = preflight_verdict(level, state.clone(), "mysql", "db1", "db2");
            assert_eq!(status, Status::Critical, "{level:?}: {message}");
            assert!(message.contains(words), "{level:?}: {message}");
        }
    }

    #[test]
    fn switch_verdicts() {
        let maint = StandbyState::Maint;
        // (answers to the set commands, servers after, standby state, status, words)
        type Case<'a> = (
            &'a [&'a [&'a str]],
            Vec<Server>,
            StandbyState,
            Status,
            &'a str,
        );
        let table: &[Case] = &[
            (
                &[&[], &[], &[]],
                vec![server("db1", 0, 1), server("db2", 2, 0)],
                maint,
                Status::Ok,
                "switched to db2: db1 MAINT, db2 ready UP",
            ),
            (
                &[&[], &[]],
                vec![server("db1", 2, 8), server("db2", 2, 4)],
                StandbyState::Drain,
                Status::Ok,
                "db1 DRAIN UP, db2 ready UP",
            ),
            (
                &[&[], &[]],
                vec![server("db1", 2, 8), server("db2", 2, 0)],
                maint,
                Status::Critical,
                "db1 is not in maint",
            ),
            (
                &[&["No such server."], &[], &["No such server."]],
                vec![server("db1", 2, 0)],
                maint,
                Status::Critical,
                "HAProxy refused: No such server.",
            ),
            (
                &[&[], &[], &[]],
                vec![server("db1", 0, 1), server("db2", 0, 1)],
                maint,
                Status::Critical,
                "db2 is not ready",
            ),
            (
                &[&[], &[], &[]],
                vec![server("db1", 0, 1), server("db2", 0, 0)],
                maint,
                Status::Critical,
                "not UP",
            ),
        ];
        for (answers, servers, standby_state, status, words) in table {
            let answers: Vec<Vec<&str>> = answers.iter().map(|a| a.to_vec()).collect();
            let (s, m) =
                switch_verdict(&answers, Ok(servers.clone()), "db1", "db2", *standby_state);
            assert_eq!(s, *status, "{m}");
            assert!(m.contains(words), "{m}");
        }
    }

    #[test]
    fn check_verdicts() {
        let maint = StandbyState::Maint;
        // (servers, standby state, status, what it is about, words)
        let table: &[(Vec<Server>, StandbyState, Status, Concern, &str)] = &[
            (
                vec![server("db1", 2, 0), server("db2", 0, 1)],
                maint,
                Status::Ok,
                Concern::Direction,
                "db1 serves: db1 ready UP, db2 MAINT",
            ),
            (
                vec![server("db1", 2, 0), server("db2", 2, 8)],
                StandbyState::Drain,
                Status::Ok,
                Concern::Direction,
                "db1 serves",
            ),
            (
                vec![server("db1", 2, 0), server("db2", 2, 8)],
                maint,
                Status::Critical,
                Concern::Direction,
                "in drain instead of maint",
            ),
            (
                vec![server("db1", 2, 0), server("db2", 2, 0)],
                maint,
                Status::Critical,
                Concern::Direction,
                "the standby db2 is ready",
            ),
            (
                vec![server("db1", 0, 1), server("db2", 2, 0)],
                maint,
                Status::Critical,
                Concern::Direction,
                "the active server db1 is not ready",
            ),
            (
                vec![server("db1", 0, 0), server("db2", 0, 1)],
                maint,
                Status::Critical,
                Concern::Direction,
                "ready but not UP",
            ),
            (
                vec![
                    server("db1", 2, 0),
                    server("db2", 0, 1),
                    server("db3", 2, 0),
                ],
                maint,
                Status::Critical,
                Concern::Direction,
                "db3 may get traffic too",
            ),
            (
                vec![server("db2", 0, 1)],
                maint,
                Status::Critical,
                Concern::Direction,
                "no server `db1`",
            ),
            (
                vec![server("db1", 2, 0)],
                maint,
                Status::Critical,
                Concern::Readiness,
                "no server `db2` (the standby)",
            ),
        ];
        for (servers, standby_state, status, concern, words) in table {
            let (s, c, m) = check_verdict(servers, "db1", "db2", *standby_state);
            assert_eq!((s, c), (*status, *concern), "{m}");
            assert!(m.contains(words), "{m}");
        }
    }
}
