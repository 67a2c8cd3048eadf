//! The `postgres_promote` step: makes a streaming standby the PostgreSQL primary.
//!
//! - preflight: the standby answers the admin account and is in recovery, streaming from the
//!   current primary (or is already a primary); a reachable old primary must accept the
//!   admin account too. Each other standby must accept it and have a `primary_conninfo` the
//!   step can rewrite, else a warning: it cannot be repointed.
//! - promote, old primary does not answer at all: `pg_promote(wait => true)` on the standby,
//!   then `pg_is_in_recovery()` must be false.
//! - promote, old primary answers with an error (a refused login, too many connections): the
//!   step fails with nothing changed, unless a person forced it (SPEC 6.3).
//! - promote, old primary alive (a manual promote): a soft fence first
//!   (`default_transaction_read_only = on` by `ALTER SYSTEM`, every other client backend
//!   ended but superusers', which the admin account cannot end), then a wait until the standby has replayed the old primary's WAL location, then
//!   the promotion. If the standby does not catch up, the fence is undone. The fence is soft:
//!   a session may still `BEGIN READ WRITE`.
//! - promote, once the new primary is out of recovery: every other standby gets a
//!   `primary_conninfo` naming it (the rest of its conninfo kept) and must be seen streaming
//!   from it; one that is not is a warning for a person, never a failed step.
//! - check: active not in recovery; every standby in recovery, streaming from the active
//!   server, lag under `max_lag`.

use std::time::Duration;

use serde::Deserialize;

use super::{Context, HostResult, LoadContext, Log, Protocol};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::model::Status;
use crate::monitor::MonitorKind;
use crate::postgres::{Client, Failure, Target};
use crate::settings::{Secret, format_duration, parse_duration};
use crate::tls::Tls;

/// The step's `type`.
pub const TYPE: &str = "postgres_promote";

/// Longest a repointed standby may take to show it streams from the new primary: a healthy
/// one does within a second, and every second waited holds the chain's later steps.
const REPOINT_VERIFY: Duration = Duration::from_secs(5);

/// A standby's recovery and WAL receiver, with its lag: 0 once it replayed all it received.
const STANDBY_SQL: &str = "SELECT pg_is_in_recovery() AS recovery, r.status, r.sender_host, \
    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE floor(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::bigint END AS lag \
    FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true";

/// Ends every client session but the step's own on the fenced old primary: a session opened
/// before the fence keeps its writable default. A superuser's session is out of the admin
/// account's reach (pg_signal_backend does not cover it, and trying is an error that would
/// end the whole query): it is counted and left. CASE keeps pg_terminate_backend() from
/// being called for it.
const END_SESSIONS_SQL: &str = "SELECT \
    count(CASE WHEN coalesce(r.rolsuper, false) THEN NULL WHEN pg_terminate_backend(a.pid) THEN 1 END) AS ended, \
    count(*) FILTER (WHERE coalesce(r.rolsuper, false)) AS superusers \
    FROM pg_stat_activity AS a LEFT JOIN pg_roles AS r ON r.oid = a.usesysid \
    WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()";

/// How a live old primary is kept from taking writes before the standby is promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// `default_transaction_read_only = on` and its sessions ended.
    ReadOnly,
}

#[derive(Debug, Clone)]
pub struct PostgresPromote {
    pub user: String,
    pub password: Secret,
    pub port: u16,
    pub database: String,
    /// How long a manual promotion waits for the standby to replay the old primary's WAL.
    pub catch_up_timeout: Duration,
    /// Readiness: replay lag above this is a warning.
    pub max_lag: Duration,
    pub fence: Fence,
    /// TLS toward every server: the step's own `tls` table, else the monitor's.
    pub tls: Option<Tls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    user: String,
    password_file: String,
    port: Option<u16>,
    database: Option<String>,
    catch_up_timeout: Option<String>,
    max_lag: Option<String>,
    fence: Option<String>,
    tls: Option<RawTls>,
}

/// The step's keys, validated; the port and TLS default to a `postgres` monitor's.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<PostgresPromote, Problem> {
    let raw: Raw = super::raw(table)?;
    let password =
        load_secret(cx.dir, &raw.password_file).map_err(|e| Problem::at("password_file", e))?;
    let (default_port, monitor_tls) = if let MonitorKind::Postgres(m) = cx.monitor {
        (m.port, m.tls.clone())
    } else {
        (5432, None)
    };
    let tls = match raw.tls {
        Some(t) => Some(load_tls(cx.dir, t)?),
        None => monitor_tls,
    };
    let duration = |key: &str, value: Option<&str>, default: &str| {
        parse_duration(value.unwrap_or(default)).map_err(|e| Problem::at(key, e))
    };
    Ok(PostgresPromote {
        user: raw.user,
        password,
        port: raw.port.unwrap_or(default_port),
        database: raw.database.unwrap_or_else(|| "postgres".to_string()),
        catch_up_timeout: duration("catch_up_timeout", raw.catch_up_timeout.as_deref(), "30s")?,
        max_lag: duration("max_lag", raw.max_lag.as_deref(), "10s")?,
        fence: fence(raw.fence.as_deref()).map_err(|e| Problem::at("fence", e))?,
        tls,
    })
}

/// The `fence` key (pure, for tests).
fn fence(value: Option<&str>) -> Result<Fence, String> {
    match value {
        None | Some("read_only") => Ok(Fence::ReadOnly),
        Some("stop") => Err(
            "\"stop\" is not supported yet: use \"read_only\", or a plugin step that stops the old primary"
                .to_string(),
        ),
        Some(other) => Err(format!("got \"{other}\", expected \"read_only\"")),
    }
}

impl PostgresPromote {
    /// One server call bounded by the monitor timeout, and never past the step's deadline.
    fn connect(&self, host: &str, ctx: &Context) -> Result<Client, Failure> {
        self.connect_for(host, ctx.bounded(ctx.monitor_timeout))
    }

    fn connect_for(&self, host: &str, timeout: Duration) -> Result<Client, Failure> {
        Client::connect(&Target {
            host,
            port: self.port,
            user: &self.user,
            password: Some(&self.password),
            database: &self.database,
            timeout,
            tls: self.tls.as_ref(),
        })
    }

    /// The new primary, and the old one the promotion will fence or go around.
    fn preflight_candidate(&self, ctx: &Context) -> HostResult {
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let mut log = Log::new(new);
        let mut client = match self.connect(new, ctx) {
            Ok(c) => c,
            Err(f) => {
                return log.done(
                    Status::Critical,
                    format!("cannot reach the new primary {new} as {}: {f}", self.user),
                );
            }
        };
        let message = match standby_state(&mut client) {
            Err(f) => return log.done(Status::Critical, format!("{new}: {f}")),
            Ok(s) if !s.recovery => format!("{new} is already a primary (not in recovery)"),
            Ok(s)
                if !s.sender.is_empty()
                    && !crate::net::same_host(&s.sender, old, ctx.monitor_timeout) =>
            {
                return log.done(
                    Status::Critical,
                    format!("{new} streams from {}, not from {old}", s.sender),
                );
            }
            Ok(s) => format!("{new} can be promoted: {}", s.describe()),
        };
        log.note(&message);
        match self.connect(old, ctx) {
            Ok(_) => log.note(format!(
                "old primary {old} reachable; it will be fenced first (default_transaction_read_only, sessions ended)"
            )),
            Err(f) => match without_old_primary(&f, old, ctx.force.is_on()) {
                Ok(note) => log.note(format!("{note}; it will be left alone")),
                Err(why) => return log.done(Status::Critical, why),
            },
        }
        log.done(Status::Ok, message)
    }

    /// Whether a standby the failover will repoint accepts the admin account and has a
    /// conninfo the step can rewrite; how it streams now.
    fn repointable(&self, host: &str, ctx: &Context) -> Result<String, String> {
        let mut client = self
            .connect(host, ctx)
            .map_err(|f| format!("cannot connect as {}: {f}", self.user))?;
        let conninfo = show_conninfo(&mut client)?;
        conninfo_with(&conninfo, ctx.new_primary, self.port)?;
        standby_state(&mut client)
            .map(|s| s.describe())
            .map_err(|f| f.to_string())
    }

    /// Points a standby's `primary_conninfo` at the new primary and waits until it streams
    /// from it (at most [`REPOINT_VERIFY`] or `catch_up_timeout`).
    fn repoint(
        &self,
        host: &str,
        ctx: &Context,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        let new = ctx.new_primary;
        let mut client = self
            .connect(host, ctx)
            .map_err(|f| format!("cannot connect as {}: {f}", self.user))?;
        let conninfo = conninfo_with(&show_conninfo(&mut client)?, new, self.port)?;
        for sql in [
            format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                sql_literal(&conninfo)
            ),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            client
                .query(&sql)
                .map_err(|f| format!("changing primary_conninfo failed: {f}"))?;
        }
        notes.push(format!(
            "primary_conninfo set to host={new} port={}, configuration reloaded",
            self.port
        ));
        let limit = ctx.bounded(self.catch_up_timeout.min(REPOINT_VERIFY));
        let mut last = None;
        let seen = crate::remote::poll(limit, || {
            let s = standby_state(&mut client)?;
            let streaming = s.status == "streaming"
                && crate::net::same_host(&s.sender, new, ctx.monitor_timeout);
            let described = s.describe();
            last = Some(s);
            Ok::<_, Failure>(streaming.then_some(described))
        })
        .map_err(|f| f.to_string())?;
        seen.ok_or_else(|| {
            let state = last.map_or("no answer".to_string(), |s| s.describe());
            format!(
                "{host} does not stream from {new} after {}: {state}",
                format_duration(limit)
            )
        })
    }

    fn check_standby(&self, standby: &str, active: &str, ctx: &Context) -> HostResult {
        let log = Log::new(standby);
        let state = self
            .connect(standby, ctx)
            .and_then(|mut c| standby_state(&mut c));
        match state {
            Err(f) => log.done(
                Status::Critical,
                format!("standby: cannot read its replication as {}: {f}", self.user),
            ),
            Ok(s) => {
                let (status, message) = standby_verdict(&s, active, self.max_lag, |a, b| {
                    crate::net::same_host(a, b, ctx.monitor_timeout)
                });
                log.done(status, message)
            }
        }
    }

    fn check_active(&self, active: &str, ctx: &Context) -> HostResult {
        let log = Log::new(active);
        match self
            .connect(active, ctx)
            .and_then(|mut c| in_recovery(&mut c))
        {
            Err(f @ Failure::Down(_)) => log.done(
                Status::Warning,
                format!("active: unreachable for the admin account: {f}"),
            ),
            Err(f) => log.done(
                Status::Critical,
                format!("active: the admin account is refused: {f}"),
            ),
            Ok(false) => log.done(Status::Ok, "active is a primary (not in recovery)"),
            Ok(true) => log.done(
                Status::Critical,
                format!("active {active} is in recovery: writes fail"),
            ),
        }
    }
}

impl Protocol for PostgresPromote {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Logins and replication toward the standby.
    fn probed_by_check_config(&self) -> bool {
        true
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        super::preflight_with_standbys(
            ctx,
            || vec![self.preflight_candidate(ctx)],
            |host| self.repointable(host, ctx),
        )
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let promoted = promote(self, ctx);
        super::then_repoint(ctx, promoted, |host, notes| self.repoint(host, ctx, notes))
    }

    fn check(&self, ctx: &Context) -> Vec<HostResult> {
        let active = ctx.active();
        super::check_standbys(
            ctx,
            |standby| self.check_standby(standby, active, ctx),
            || self.check_active(active, ctx),
        )
    }

    fn plan(&self, ctx: &Context) -> Vec<(String, String)> {
        let (new, old) = (ctx.new_primary, ctx.old_primary);
        let mut plan = vec![(
            new.to_string(),
            format!(
                "as {}: if {old} answers, fence it softly (ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf(); pg_terminate_backend of its other client backends but superusers'; BEGIN READ WRITE still passes), read its pg_current_wal_lsn() and wait up to {} for {new} to replay it (else undo the fence); if it answers with an error, stop (unless forced); then SELECT pg_promote(wait => true) and verify pg_is_in_recovery() is false",
                self.user,
                format_duration(self.catch_up_timeout)
            ),
        )];
        plan.extend(ctx.other_standbys().into_iter().map(|standby| {
            (
                standby.to_string(),
                format!(
                    "as {}, once {new} is a primary: ALTER SYSTEM SET primary_conninfo = its current one with host={new} port={}; SELECT pg_reload_conf(); verify it streams from {new}",
                    self.user, self.port
                ),
            )
        }));
        plan
    }
}

/// Promotes the new primary: around an old primary that does not answer, else after the
/// soft fence and the catch-up.
fn promote(step: &PostgresPromote, ctx: &Context) -> HostResult {
    let (new, old) = (ctx.new_primary, ctx.old_primary);
    let mut log = Log::new(new);
    // pg_promote(wait => true) answers only once the promotion is done: this session's
    // reads may take what is left of the step.
    let mut standby = match step.connect_for(new, ctx.left()) {
        Ok(c) => c,
        Err(f) => {
            return log.done(
                Status::Critical,
                format!("cannot reach {new}: {f}; nothing changed"),
            );
        }
    };
    match in_recovery(&mut standby) {
        Ok(false) => return log.done(Status::Ok, format!("{new} is already a primary")),
        Ok(true) => {}
        Err(f) => return log.done(Status::Critical, format!("{new}: {f}; nothing changed")),
    }
    let mut superusers_left = 0;
    let mut fenced = match step.connect(old, ctx) {
        Ok(mut client) => match fence_and_catch_up(&mut log, &mut client, &mut standby, step) {
            Ok(left) => {
                superusers_left = left;
                Some(client)
            }
            Err(why) => return undo(log, &mut client, why),
        },
        Err(f) => match without_old_primary(&f, old, ctx.force.is_on()) {
            Ok(note) => {
                log.note(note);
                None
            }
            Err(why) => return log.done(Status::Critical, why),
        },
    };
    let wait = ctx
        .left()
        .saturating_sub(Duration::from_secs(1))
        .as_secs()
        .max(1);
    let sql = format!("SELECT pg_promote(wait => true, wait_seconds => {wait}) AS promoted");
    match standby.query(&sql) {
        Ok(rows) if rows.first("promoted") == Some("t") => {}
        Ok(_) => {
            return log.done(
                Status::Critical,
                format!("{new} did not finish its promotion within {wait}s; check it by hand"),
            );
        }
        Err(f) => {
            let why = format!("pg_promote() on {new} failed: {f}");
            return match fenced.as_mut() {
                Some(client) => undo(log, client, why),
                None => log.done(Status::Critical, why),
            };
        }
    }
    log.note("pg_promote() done");
    let soft = match (fenced.is_some(), superusers_left) {
        (false, _) => String::new(),
        (true, 0) => format!(
            "; {old} is fenced softly (default_transaction_read_only = on, BEGIN READ WRITE still passes)"
        ),
        (true, n) => format!(
            "; {old} is fenced softly (default_transaction_read_only = on, BEGIN READ WRITE still passes; {n} superuser session(s) left open on it)"
        ),
    };
    match in_recovery(&mut standby) {
        Ok(false) => log.done(Status::Ok, format!("{new} promoted: out of recovery{soft}")),
        Ok(true) => log.done(
            Status::Critical,
            format!("{new} is still in recovery after pg_promote()"),
        ),
        Err(f) => log.done(
            Status::Critical,
            format!("cannot verify pg_is_in_recovery() on {new}: {f}"),
        ),
    }
}

/// Fences a live old primary softly, ends its other sessions, and waits until the standby
/// has replayed everything it wrote. `Ok`: how many superusers' sessions were left open;
/// `Err`: why, and the fence must be undone.
fn fence_and_catch_up(
    log: &mut Log,
    old: &mut Client,
    standby: &mut Client,
    step: &PostgresPromote,
) -> Result<u64, String> {
    match step.fence {
        Fence::ReadOnly => {}
    }
    let fail = |what: &str, f: Failure| format!("{what} on the old primary: {f}");
    old.query("ALTER SYSTEM SET default_transaction_read_only = on")
        .and_then(|_| old.query("SELECT pg_reload_conf()"))
        .map_err(|f| fail("could not set default_transaction_read_only", f))?;
    log.note("old primary: default_transaction_read_only = on, configuration reloaded");
    let ended = old
        .query(END_SESSIONS_SQL)
        .map_err(|f| fail("could not end the client sessions", f))?;
    let superusers = ended
        .first("superusers")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    log.note(sessions_note(
        ended.first("ended").unwrap_or("?"),
        superusers,
    ));
    let lsn = old
        .query("SELECT pg_current_wal_lsn() AS lsn")
        .map_err(|f| fail("cannot read pg_current_wal_lsn()", f))?;
    let lsn = lsn.first("lsn").filter(|l| is_lsn(l)).map(str::to_string);
    let Some(lsn) = lsn else {
        return Err("the old primary gave no WAL location".to_string());
    };
    log.note(format!("waiting for the standby to replay {lsn}"));
    let sql = format!("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{lsn}') >= 0 AS caught");
    let caught = crate::remote::poll(step.catch_up_timeout, || {
        let rows = standby.query(&sql)?;
        Ok::<_, Failure>((rows.first("caught") == Some("t")).then_some(()))
    });
    match caught {
        Ok(Some(())) => {
            log.note(format!("the standby has replayed {lsn}"));
            Ok(superusers)
        }
        Ok(None) => Err(format!(
            "the standby did not replay the old primary's {lsn} within {}",
            format_duration(step.catch_up_timeout)
        )),
        Err(f) => Err(format!("waiting for the standby: {f}")),
    }
}

/// What the fence did to the old primary's sessions (pure, for tests).
fn sessions_note(ended: &str, superusers: u64) -> String {
    match superusers {
        0 => format!("old primary: {ended} client session(s) ended"),
        n => format!(
            "old primary: {ended} client session(s) ended; {n} superuser session(s) left open (the admin account cannot end them: a transaction open in one may still write)"
        ),
    }
}

/// Gives the old primary back its writable default; the promotion did not happen.
fn undo(mut log: Log, old: &mut Client, why: String) -> HostResult {
    let restored = old
        .query("ALTER SYSTEM RESET default_transaction_read_only")
        .and_then(|_| old.query("SELECT pg_reload_conf()"));
    let tail = match restored {
        Ok(_) => "the old primary's fence undone; not promoted".to_string(),
        Err(f) => format!(
            "could NOT undo the fence ({f}): the old primary is left with default_transaction_read_only = on; not promoted"
        ),
    };
    log.note(&tail);
    log.done(Status::Critical, format!("{why}; {tail}"))
}

/// Whether the step may go on without an old primary the admin account cannot use (pure,
/// for tests): only one that does not answer at all, or one that answers with an error
/// when a person forced the promotion.
fn without_old_primary(f: &Failure, old: &str, force: bool) -> Result<String, String> {
    match f {
        Failure::Down(m) => Ok(format!("old primary {old} unreachable ({m})")),
        Failure::Server(_) | Failure::Refused(_) if force => Ok(format!(
            "old primary {old} answers but refuses the admin account ({f}), promoted around it (forced): it may still take writes"
        )),
        Failure::Server(_) | Failure::Refused(_) => Err(format!(
            "old primary {old} answers but refuses the admin account: {f}; not promoted, nothing changed. Fix the old primary (or stop it); `deadpool promote --force` promotes around it"
        )),
    }
}

fn in_recovery(client: &mut Client) -> Result<bool, Failure> {
    let rows = client.query("SELECT pg_is_in_recovery() AS recovery")?;
    Ok(rows.first("recovery") == Some("t"))
}

/// What [`STANDBY_SQL`] says of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StandbyState {
    recovery: bool,
    /// The WAL receiver's status (`streaming`), empty without a receiver.
    status: String,
    sender: String,
    lag: Option<u64>,
}

impl StandbyState {
    fn describe(&self) -> String {
        match (self.recovery, self.status.as_str()) {
            (false, _) => "not in recovery".to_string(),
            (true, "") => "in recovery, no WAL receiver".to_string(),
            (true, status) => format!(
                "in recovery, {status} from {}, lag {}",
                if self.sender.is_empty() {
                    "?"
                } else {
                    &self.sender
                },
                self.lag.map_or("unknown".to_string(), |l| format!("{l}s"))
            ),
        }
    }
}

fn standby_state(client: &mut Client) -> Result<StandbyState, Failure> {
    let rows = client.query(STANDBY_SQL)?;
    let text = |c: &str| rows.first(c).unwrap_or("").to_string();
    Ok(StandbyState {
        recovery: rows.first("recovery") == Some("t"),
        status: text("status"),
        sender: text("sender_host"),
        lag: rows.first("lag").and_then(|l| l.parse().ok()),
    })
}

fn show_conninfo(client: &mut Client) -> Result<String, String> {
    let rows = client
        .query("SHOW primary_conninfo")
        .map_err(|f| format!("cannot read primary_conninfo: {f}"))?;
    Ok(rows.first("primary_conninfo").unwrap_or("").to_string())
}

/// The readiness verdict on a standby (pure, for tests).
fn standby_verdict(
    s: &StandbyState,
    active: &str,
    max_lag: Duration,
    same: impl Fn(&str, &str) -> bool,
) -> (Status, String) {
    if !s.recovery {
        return (
            Status::Critical,
            "standby is not in recovery: it is a second primary".to_string(),
        );
    }
    if s.status != "streaming" {
        return (
            Status::Critical,
            format!("standby does not stream: {}", s.describe()),
        );
    }
    if !same(&s.sender, active) {
        return (
            Status::Critical,
            format!(
                "standby streams from {}, not from the active {active}",
                s.sender
            ),
        );
    }
    match s.lag {
        None => (
            Status::Warning,
            format!("standby lag unknown: {}", s.describe()),
        ),
        Some(lag) if Duration::from_secs(lag) > max_lag => (
            Status::Warning,
            format!(
                "standby lags {lag}s, more than max_lag {}: {}",
                format_duration(max_lag),
                s.describe()
            ),
        ),
        Some(_) => (Status::Ok, format!("standby {}", s.describe())),
    }
}

/// A WAL location as the server prints it (`0/3016000`), before it goes into SQL.
fn is_lsn(s: &str) -> bool {
    s.split_once('/').is_some_and(|(a, b)| {
        [a, b]
            .iter()
            .all(|h| !h.is_empty() && h.len() <= 8 && h.chars().all(|c| c.is_ascii_hexdigit()))
    })
}

/// A string literal for SQL (standard_conforming_strings, on since PostgreSQL 9.1).
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `conninfo` with `host` and `port` replaced, every other keyword kept (pure, for tests).
/// `hostaddr` goes too: libpq would connect to it instead of `host`.
fn conninfo_with(conninfo: &str, host: &str, port: u16) -> Result<String, String> {
    if conninfo.trim().is_empty() {
        return Err("it has no primary_conninfo to repoint".to_string());
    }
    if conninfo.contains("://") {
        return Err("its primary_conninfo is a URI; only keyword=value is rewritten".to_string());
    }
    let mut pairs = vec![("host".to_string(), host.to_string())];
    pairs.push(("port".to_string(), port.to_string()));
    pairs.extend(
        conninfo_pairs(conninfo)?
            .into_iter()
            .filter(|(k, _)| !["host", "hostaddr", "port"].contains(&k.as_str())),
    );
    let words: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect();
    Ok(words.join(" "))
}

/// A conninfo value, quoted when libpq needs it to be.
fn conninfo_value(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The keyword=value pairs of a conninfo string, as libpq reads them: a value is a word,
/// or single-quoted; a backslash escapes the next character.
fn conninfo_pairs(conninfo: &str) -> Result<Vec<(String, String)>, String> {
    let mut chars = conninfo.chars().peekable();
    let mut pairs = Vec::new();
    let skip = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    };
    loop {
        skip(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        skip(&mut chars);
        if chars.next() != Some('=') {
            return Err(format!("primary_conninfo: `{key}` has no value"));
        }
        skip(&mut chars);
        let quoted = chars.next_if_eq(&'\'').is_some();
        let mut value = String::new();
        loop {
            match chars.next() {
                None if quoted => return Err("primary_conninfo: unterminated quote".to_string()),
                None => break,
                Some('\'') if quoted => break,
                Some(c) if c.is_whitespace() && !quoted => break,
                Some('\\') => value.extend(chars.next()),
                Some(c) => value.push(c),
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_gets_the_new_host_and_port_and_keeps_the_rest() {
        // (current, new conninfo or error words)
        let table = [
            (
                "user=repl password=secret host=127.0.0.1 port=5432 application_name=s2",
                "host=10.0.0.2 port=5433 user=repl password=secret application_name=s2",
            ),
            (
                "host = 10.0.0.1 hostaddr=10.0.0.1 user='repl' sslmode=require",
                "host=10.0.0.2 port=5433 user=repl sslmode=require",
            ),
            (
                r"user=repl password='a b\'c\\d' passfile=''",
                r"host=10.0.0.2 port=5433 user=repl password='a b\'c\\d' passfile=''",
            ),
            ("", "no primary_conninfo"),
            ("postgresql://repl@10.0.0.1/", "URI"),
            ("user=repl password='open", "unterminated"),
            ("user", "has no value"),
        ];
        for (current, expected) in table {
            let got = conninfo_with(current, "10.0.0.2", 5433).unwrap_or_else(|e| e);
            if expected.starts_with("host=") {
                assert_eq!(got, expected, "{current}");
            } else {
                assert!(got.contains(expected), "{current}: {got}");
            }
        }
        assert_eq!(sql_literal("password='it''s'"), "'password=''it''''s'''");
    }

    #[test]
    fn quoted_conninfo_values_read_back_the_same() {
        let written = conninfo_with(r"password='a b\'c\\d'", "h", 1).unwrap();
        let pairs = conninfo_pairs(&written).unwrap();
        assert_eq!(pairs[2], ("password".to_string(), r"a b'c\d".to_string()));
    }

    #[test]
    fn only_silence_lets_the_promotion_go_around_the_old_primary() {
        let down = Failure::Down("10.0.0.1:5432: Connection refused (os error 111)".into());
        let server = Failure::Server(crate::postgres::ServerError {
            severity: "FATAL".into(),
            code: "53300".into(),
            message: "too many clients".into(),
        });
        let refused = Failure::Refused("a password in clear text without TLS".into());
        // (failure, force, may go on, words)
        let table = [
            (&down, false, true, "unreachable"),
            (&down, true, true, "unreachable"),
            (&server, false, false, "--force"),
            (&refused, false, false, "answers but refuses"),
            (&server, true, true, "(forced)"),
            (&refused, true, true, "may still take writes"),
        ];
        for (f, force, goes_on, words) in table {
            let verdict = without_old_primary(f, "10.0.0.1", force);
            assert_eq!(verdict.is_ok(), goes_on, "{f:?} force={force}");
            let text = verdict.unwrap_or_else(|e| e);
            assert!(text.contains(words), "{f:?}: {text}");
        }
    }

    #[test]
    fn standby_readiness_rules() {
        let healthy = StandbyState {
            recovery: true,
            status: "streaming".into(),
            sender: "10.0.0.1".into(),
            lag: Some(0),
        };
        let verdict = |s: StandbyState| {
            standby_verdict(&s, "10.0.0.1", Duration::from_secs(10), |a, b| a == b).0
        };
        // (state, status)
        let table = [
            (healthy.clone(), Status::Ok),
            (
                StandbyState {
                    recovery: false,
                    ..healthy.clone()
                },
                Status::Critical,
            ),
            (
                StandbyState {
                    status: "".into(),
                    ..healthy.clone()
                },
                Status::Critical,
            ),
            (
                StandbyState {
                    sender: "10.0.0.9".into(),
                    ..healthy.clone()
                },
                Status::Critical,
            ),
            (
                StandbyState {
                    lag: Some(11),
                    ..healthy.clone()
                },
                Status::Warning,
            ),
            (
                StandbyState {
                    lag: None,
                    ..healthy.clone()
                },
                Status::Warning,
            ),
        ];
        for (state, status) in table {
            assert_eq!(verdict(state.clone()), status, "{state:?}");
        }
    }

    #[test]
    fn superuser_sessions_left_open_are_said() {
        assert_eq!(
            sessions_note("3", 0),
            "old primary: 3 client session(s) ended"
        );
        let left = sessions_note("0", 2);
        assert!(
            left.starts_with(
                "old primary: 0 client session(s) ended; 2 superuser session(s) left open"
            ),
            "{left}"
        );
    }

    #[test]
    fn fence_and_lsn_values() {
        assert_eq!(fence(None), Ok(Fence::ReadOnly));
        assert_eq!(fence(Some("read_only")), Ok(Fence::ReadOnly));
        let stop = fence(Some("stop")).unwrap_err();
        assert!(
            stop.contains("not supported yet") && stop.contains("plugin"),
            "{stop}"
        );
        assert!(fence(Some("off")).is_err());
        for (text, ok) in [
            ("0/3016000", true),
            ("1A/FF", true),
            ("0/", false),
            ("0/3016000'; DROP", false),
            ("3016000", false),
        ] {
            assert_eq!(is_lsn(text), ok, "{text}");
        }
    }
}
