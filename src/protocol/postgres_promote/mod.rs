//! The `postgres_promote` step: makes a streaming standby the PostgreSQL primary.
//!
//! Keys: `user` and `password_file` (the admin account), `port`, `database`, `catch_up_timeout`,
//! `max_lag`, `fence` (`"read_only"` or `"stop"`), `tls`; with `fence = "stop"` only:
//! `data_dir` (required), `pg_ctl`, `os_user`, `stop_timeout` and an `ssh` table.
//!
//! - preflight: the standby answers the admin account and is in recovery, streaming from the
//!   current primary (or is already a primary); a reachable old primary must accept the
//!   admin account too. Each other standby must accept it and have a `primary_conninfo` the
//!   step can rewrite, else a warning: it cannot be repointed. With `fence = "stop"`, the old
//!   primary must let the SSH user run the stop (`sudo -n -l` names its exact argv).
//! - promote, old primary does not answer at all: `pg_promote(wait => true)` on the standby,
//!   then `pg_is_in_recovery()` must be false. With `fence = "stop"` the stop is tried over
//!   SSH first, for a few seconds at most: a note, never a reason to wait or to fail.
//! - promote, old primary answers with an error (a refused login, too many connections): the
//!   step fails with nothing changed, unless a person forced it (SPEC 6.3).
//! - promote, old primary alive (a manual promote): a soft fence first
//!   (`default_transaction_read_only = on` by `ALTER SYSTEM`, every other client backend
//!   ended but superusers', which the admin account cannot end), then a wait until the standby has replayed the old primary's WAL location, then
//!   the promotion. If the standby does not catch up, the fence is undone. The soft fence is
//!   passed by `BEGIN READ WRITE`; `fence = "stop"` then stops the server over SSH
//!   (`pg_ctl stop -m fast`, which sends the shutdown checkpoint to the standbys) and sees it
//!   refuse connections before the wait, which covers what the standby received by then. A
//!   stop that fails undoes the soft fence; a standby that does not catch up after the stop
//!   leaves the old primary stopped, and the message says how to start it again.
//! - promote, once the new primary is out of recovery: every other standby gets a
//!   `primary_conninfo` naming it (the rest of its conninfo kept) and must be seen streaming
//!   from it; one that is not is a warning for a person. One that had replayed past the
//!   point where the new timeline began cannot follow it ever: it is CRITICAL, named FORKED
//!   OFF. Neither fails the step: the service has moved.
//! - check: active not in recovery; every standby in recovery, streaming from the active
//!   server, lag under `max_lag`.

mod stop;

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

pub use self::stop::Stop;
use self::stop::{
    BEST_EFFORT_STOP, RawStop, STOP_SLACK, best_effort_note, stop_outcome, stop_preflight_verdict,
    stopped_advice,
};
use super::{Context, Held, HostResult, LoadContext, Log, NotRepointed, Protocol, describe_output};
use crate::config::load::{RawSsh, RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::model::Status;
use crate::monitor::MonitorKind;
use crate::position::Position;
use crate::postgres::{Client, Failure, Rows, Target};
use crate::settings::{Host, Secret, SshSettings, format_duration, parse_duration};
use crate::tls::Tls;

/// The step's `type`.
pub const TYPE: &str = "postgres_promote";

/// Longest a repointed standby may take to show it streams from the new primary: a healthy
/// one does within a second, and every second waited holds the chain's later steps.
const REPOINT_VERIFY: Duration = Duration::from_secs(5);

/// A standby's recovery and WAL receiver, with its lag: 0 once it replayed all it received;
/// how far it replayed, and the timeline its receiver is on.
const STANDBY_SQL: &str = "SELECT pg_is_in_recovery() AS recovery, r.status, r.sender_host, \
    CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 \
    ELSE floor(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::bigint END AS lag, \
    pg_last_wal_replay_lsn() AS replayed, r.received_tli \
    FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true";

/// Where a promoted server's timeline began, and which it is: once recovery has ended, the
/// last locations received and replayed stay where it ended, which is the point its
/// timeline history file names.
const PROMOTION_POINT_SQL: &str = "SELECT pg_last_wal_receive_lsn() AS received, \
    pg_last_wal_replay_lsn() AS replayed, \
    substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS timeline";

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
#[derive(Debug, Clone)]
pub enum Fence {
    /// `default_transaction_read_only = on` and its sessions ended.
    ReadOnly,
    /// The soft fence, then the server stopped over SSH.
    Stop(Box<Stop>),
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
    data_dir: Option<String>,
    pg_ctl: Option<String>,
    os_user: Option<String>,
    stop_timeout: Option<String>,
    ssh: Option<RawSsh>,
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
    let stop_keys = RawStop {
        data_dir: raw.data_dir,
        pg_ctl: raw.pg_ctl,
        os_user: raw.os_user,
        stop_timeout: raw.stop_timeout,
        ssh: raw.ssh,
    };
    Ok(PostgresPromote {
        user: raw.user,
        password,
        port: raw.port.unwrap_or(default_port),
        database: raw.database.unwrap_or_else(|| "postgres".to_string()),
        catch_up_timeout: duration("catch_up_timeout", raw.catch_up_timeout.as_deref(), "30s")?,
        max_lag: duration("max_lag", raw.max_lag.as_deref(), "10s")?,
        fence: fence(raw.fence.as_deref(), stop_keys, cx.dir, cx.ssh)?,
        tls,
    })
}

/// The `fence` key with the keys of the stop.
fn fence(
    value: Option<&str>,
    keys: RawStop,
    dir: &Path,
    ssh: &SshSettings,
) -> Result<Fence, Problem> {
    match value {
        None | Some("read_only") => match keys.first_given() {
            Some(key) => Err(Problem::at(
                key,
                "applies only to fence = \"stop\": set fence = \"stop\", or remove it",
            )),
            None => Ok(Fence::ReadOnly),
        },
        Some("stop") => Ok(Fence::Stop(Box::new(stop::load(keys, dir, ssh)?))),
        Some(other) => Err(Problem::at(
            "fence",
            format!("got \"{other}\", expected \"read_only\" or \"stop\""),
        )),
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

    /// The old primary's answer to the admin account; with `fence = "stop"` its
    /// `data_directory` too, when the account may read it.
    fn old_primary_sql(&self, ctx: &Context) -> Result<Option<String>, Failure> {
        let mut client = self.connect(ctx.old_primary, ctx)?;
        if matches!(self.fence, Fence::ReadOnly) {
            return Ok(None);
        }
        let rows = client.query("SHOW data_directory").ok();
        Ok(rows.and_then(|r| r.first("data_directory").map(str::to_string)))
    }

    /// The preflight about the new and the old primary: the candidate's result, and with
    /// `fence = "stop"` one about stopping the old primary, asked over SSH while the
    /// databases are asked.
    fn preflight_primaries(&self, ctx: &Context) -> Vec<HostResult> {
        let old = ctx.old_primary;
        let Fence::Stop(stop) = &self.fence else {
            return vec![self.preflight_candidate(ctx, &self.old_primary_sql(ctx))];
        };
        std::thread::scope(|s| {
            // A login and `sudo -l`: a host that hangs must not hold up the preflight.
            let asked = s.spawn(|| {
                ctx.within(stop.ssh.connect_timeout + STOP_SLACK).shell(
                    &Host::Remote(old.to_string()),
                    &stop.ssh,
                    &stop.check_command(),
                )
            });
            let old_sql = self.old_primary_sql(ctx);
            let candidate = self.preflight_candidate(ctx, &old_sql);
            let out = asked.join().expect("the old primary's SSH check panicked");
            let needed = match &old_sql {
                Ok(_) => true,
                Err(f) => without_old_primary(f, old, ctx.force.is_on()).is_err(),
            };
            let data_directory = old_sql.as_ref().ok().and_then(|d| d.as_deref());
            let (status, message) = stop_preflight_verdict(stop, old, needed, &out, data_directory);
            vec![candidate, HostResult::of(old, status, &message, &out)]
        })
    }

    /// The new primary, and the old one the promotion will fence or go around (`old_sql`:
    /// how the old primary answered the admin account).
    fn preflight_candidate(
        &self,
        ctx: &Context,
        old_sql: &Result<Option<String>, Failure>,
    ) -> HostResult {
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
        match old_sql {
            Ok(_) => log.note(match &self.fence {
                Fence::ReadOnly => format!(
                    "old primary {old} reachable; it will be fenced first (default_transaction_read_only, sessions ended)"
                ),
                Fence::Stop(stop) => format!(
                    "old primary {old} reachable; it will be fenced first (default_transaction_read_only, sessions ended), then stopped over SSH: {}",
                    stop.command()
                ),
            }),
            Err(f) => match without_old_primary(f, old, ctx.force.is_on()) {
                Ok(note) => log.note(match (&self.fence, f) {
                    (Fence::Stop(_), Failure::Down(_)) => format!(
                        "{note}; the promotion goes around it, after trying the stop over SSH for at most {}",
                        format_duration(BEST_EFFORT_STOP)
                    ),
                    _ => format!("{note}; it will be left alone"),
                }),
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

    /// Where the new primary's timeline began (`None`: it could not be read; a standby
    /// that does not follow is then only one not repointed), and what it held then.
    fn promotion_point(&self, ctx: &Context) -> Option<(PromotionPoint, Held)> {
        let rows = self
            .connect(ctx.new_primary, ctx)
            .ok()?
            .query(PROMOTION_POINT_SQL);
        promotion_point_of(&rows.ok()?)
    }

    /// Points a standby's `primary_conninfo` at the new primary and waits until it streams
    /// from it (at most [`REPOINT_VERIFY`] or `catch_up_timeout`). One that replayed past
    /// the promotion point on the old timeline never will: it is named at once.
    fn repoint(
        &self,
        host: &str,
        ctx: &Context,
        point: Option<&PromotionPoint>,
        notes: &mut Vec<String>,
    ) -> Result<String, NotRepointed> {
        let new = ctx.new_primary;
        let mut client = self
            .connect(host, ctx)
            .map_err(|f| NotRepointed::Failed(format!("cannot connect as {}: {f}", self.user)))?;
        let conninfo = show_conninfo(&mut client)
            .and_then(|c| conninfo_with(&c, new, self.port))
            .map_err(NotRepointed::Failed)?;
        for sql in [
            format!(
                "ALTER SYSTEM SET primary_conninfo = {}",
                sql_literal(&conninfo)
            ),
            "SELECT pg_reload_conf()".to_string(),
        ] {
            client.query(&sql).map_err(|f| {
                NotRepointed::Failed(format!("changing primary_conninfo failed: {f}"))
            })?;
        }
        notes.push(format!(
            "primary_conninfo set to host={new} port={}, configuration reloaded",
            self.port
        ));
        let limit = ctx.bounded(self.catch_up_timeout.min(REPOINT_VERIFY));
        let forked =
            |s: &StandbyState, settled: bool| point.and_then(|p| forked_off(s, p, settled));
        let mut last = None;
        let seen = crate::remote::poll(limit, || {
            let s = standby_state(&mut client)?;
            let streaming = s.status == "streaming"
                && crate::net::same_host(&s.sender, new, ctx.monitor_timeout);
            let verdict = if streaming {
                Some(Ok(s.describe()))
            } else {
                forked(&s, false).map(Err)
            };
            last = Some(s);
            Ok::<_, Failure>(verdict)
        })
        .map_err(|f| NotRepointed::Failed(f.to_string()))?;
        if let Some(s) = &last {
            notes.push(format!("last seen: {}", s.describe()));
        }
        match seen {
            Some(Ok(streaming)) => Ok(streaming),
            Some(Err(why)) => Err(NotRepointed::Diverged(why)),
            None => match last.as_ref().and_then(|s| forked(s, true)) {
                Some(why) => Err(NotRepointed::Diverged(why)),
                None => {
                    let state = last.map_or("no answer".to_string(), |s| s.describe());
                    Err(NotRepointed::Failed(format!(
                        "{host} does not stream from {new} after {}: {state}",
                        format_duration(limit)
                    )))
                }
            },
        }
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
    fn promotes(&self) -> bool {
        true
    }

    fn probed_by_check_config(&self) -> bool {
        true
    }

    fn ssh_in_use(&self) -> Option<&SshSettings> {
        match &self.fence {
            Fence::ReadOnly => None,
            Fence::Stop(stop) => Some(&stop.ssh),
        }
    }

    /// The old primary, which `fence = "stop"` stops over SSH.
    fn logins(&self, ctx: &Context) -> Vec<(String, SshSettings)> {
        match &self.fence {
            Fence::ReadOnly => Vec::new(),
            Fence::Stop(stop) => vec![(ctx.old_primary.to_string(), stop.ssh.clone())],
        }
    }

    fn preflight(&self, ctx: &Context) -> Vec<HostResult> {
        super::preflight_with_standbys(
            ctx,
            || self.preflight_primaries(ctx),
            |host| self.repointable(host, ctx),
        )
    }

    fn promote(&self, ctx: &Context) -> Vec<HostResult> {
        let mut promoted = promote(self, ctx);
        let read = (promoted.status == Status::Ok)
            .then(|| self.promotion_point(ctx))
            .flatten();
        let (point, held) = read.unzip();
        if let Some(p) = &point {
            promoted.output.push_str(&format!("\n{}", p.describe()));
        }
        let promoted = promoted.holding(held);
        super::then_repoint(ctx, promoted, |host, notes| {
            self.repoint(host, ctx, point.as_ref(), notes)
        })
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
        let soft = "fence it softly (ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf(); pg_terminate_backend of its other client backends but superusers'; BEGIN READ WRITE still passes)";
        let catch_up = format_duration(self.catch_up_timeout);
        let fence = match &self.fence {
            Fence::ReadOnly => format!(
                "if {old} answers, {soft}, read its pg_current_wal_lsn() and wait up to {catch_up} for {new} to replay it (else undo the fence)"
            ),
            Fence::Stop(_) => format!(
                "if {old} answers, {soft}, read its pg_current_wal_lsn(), stop it over SSH (below), and wait up to {catch_up} for {new} to replay the later of that and its own pg_last_wal_receive_lsn() after the stop (else {old} stays stopped and nothing is promoted)"
            ),
        };
        let mut plan = vec![(
            new.to_string(),
            format!(
                "as {}: {fence}; if it answers with an error, stop (unless forced); then SELECT pg_promote(wait => true) and verify pg_is_in_recovery() is false",
                self.user
            ),
        )];
        if let Fence::Stop(stop) = &self.fence {
            plan.push((
                old.to_string(),
                format!(
                    "over SSH as {}, after the soft fence: {}; then it must refuse connections (else the soft fence is undone and nothing is promoted). If {old} does not answer SQL: the same command for at most {}, whatever it gives, then the promotion",
                    stop.ssh.user,
                    stop.command(),
                    format_duration(BEST_EFFORT_STOP)
                ),
            ));
        }
        plan.extend(ctx.other_standbys().into_iter().map(|standby| {
            (
                standby.to_string(),
                format!(
                    "as {}, once {new} is a primary: ALTER SYSTEM SET primary_conninfo = its current one with host={new} port={}; SELECT pg_reload_conf(); verify it streams from {new} (one that replayed past the point where {new}'s timeline began is named FORKED OFF)",
                    self.user, self.port
                ),
            )
        }));
        plan
    }
}

/// What the promotion did to the old primary before `pg_promote()`.
enum Fenced<'a> {
    /// Nothing by SQL: it did not answer, or a person forced the promotion around it.
    Around,
    /// The soft fence, on this session, to undo should the promotion fail.
    Soft(Client),
    /// Stopped over SSH.
    Stopped(&'a Stop),
}

/// Why the hard fence failed, and what it left of the old primary.
enum NotFenced {
    /// Still running: the soft fence is to be undone.
    Running(String),
    /// Stopped, and the standby did not catch up.
    Stopped(String),
}

/// Promotes the new primary: around an old primary that does not answer, else after the
/// fence and the catch-up.
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
    let fenced = match step.connect(old, ctx) {
        Ok(mut client) => match &step.fence {
            Fence::ReadOnly => {
                let caught = soft_fence(&mut log, &mut client).and_then(|lsn| {
                    catch_up(&mut log, &mut standby, &lsn, step.catch_up_timeout, ctx)
                });
                if let Err(why) = caught {
                    return undo(log, &mut client, why);
                }
                Fenced::Soft(client)
            }
            Fence::Stop(stop) => {
                match hard_fence(step, stop, ctx, &mut log, &mut client, &mut standby) {
                    Ok(()) => Fenced::Stopped(stop),
                    Err(NotFenced::Running(why)) => {
                        // The shutdown may have ended this session before it failed.
                        let restored = restore(&mut client)
                            .or_else(|_| step.connect(old, ctx).and_then(|mut c| restore(&mut c)));
                        return undone(log, why, &restored, Some(&stop.start_command()));
                    }
                    Err(NotFenced::Stopped(why)) => {
                        let advice = stopped_advice(stop, ctx);
                        return log.done(Status::Critical, format!("{why}; {advice}"));
                    }
                }
            }
        },
        Err(f) => match without_old_primary(&f, old, ctx.force.is_on()) {
            Ok(note) => {
                log.note(note);
                if let (Failure::Down(_), Fence::Stop(stop)) = (&f, &step.fence) {
                    let out = ctx.within(BEST_EFFORT_STOP).shell(
                        &Host::Remote(old.to_string()),
                        &stop.ssh,
                        &stop.command(),
                    );
                    log.note(best_effort_note(old, &stop.command(), &out));
                }
                Fenced::Around
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
            let stopped = match fenced {
                Fenced::Stopped(_) => format!("; the old primary {old} is stopped"),
                Fenced::Soft(_) | Fenced::Around => String::new(),
            };
            return log.done(
                Status::Critical,
                format!(
                    "{new} did not finish its promotion within {wait}s; check it by hand{stopped}"
                ),
            );
        }
        Err(f) => {
            let why = format!("pg_promote() on {new} failed: {f}");
            return match fenced {
                Fenced::Soft(mut client) => undo(log, &mut client, why),
                Fenced::Stopped(stop) => {
                    let advice = stopped_advice(stop, ctx);
                    log.done(Status::Critical, format!("{why}; {advice}"))
                }
                Fenced::Around => log.done(Status::Critical, why),
            };
        }
    }
    log.note("pg_promote() done");
    let fence = match fenced {
        Fenced::Soft(_) => format!(
            "; {old} is fenced softly (default_transaction_read_only = on, BEGIN READ WRITE still passes)"
        ),
        Fenced::Stopped(_) => format!("; {old} is stopped (pg_ctl stop -m fast: a real fence)"),
        Fenced::Around => String::new(),
    };
    match in_recovery(&mut standby) {
        Ok(false) => log.done(
            Status::Ok,
            format!("{new} promoted: out of recovery{fence}"),
        ),
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

/// Fences a live old primary softly and ends its other sessions. `Ok`: the WAL location it
/// had written by then; `Err`: why, and the fence must be undone.
fn soft_fence(log: &mut Log, old: &mut Client) -> Result<String, String> {
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
    lsn.ok_or_else(|| "the old primary gave no WAL location".to_string())
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

/// The hard fence: the soft one, then the server stopped over SSH and seen refusing
/// connections, then the wait until the standby has replayed all the old primary wrote
/// and sent: a fast shutdown sends its shutdown checkpoint to the standbys before the WAL
/// senders exit, so what the standby received by then counts too.
fn hard_fence(
    step: &PostgresPromote,
    stop: &Stop,
    ctx: &Context,
    log: &mut Log,
    old: &mut Client,
    standby: &mut Client,
) -> Result<(), NotFenced> {
    let host = ctx.old_primary;
    let written = soft_fence(log, old).map_err(NotFenced::Running)?;
    let command = stop.command();
    log.note(format!(
        "old primary: stopping it over SSH as {}: {command}",
        stop.ssh.user
    ));
    let out = ctx.within(stop.timeout + STOP_SLACK).shell(
        &Host::Remote(host.to_string()),
        &stop.ssh,
        &command,
    );
    log.note(format!("old primary: {}", describe_output(&out)));
    stop_outcome(stop, host, &out, || step.connect(host, ctx).map(drop))
        .map_err(NotFenced::Running)?;
    log.note("old primary: stopped, it refuses connections");
    let received = standby
        .query("SELECT pg_last_wal_receive_lsn() AS lsn")
        .map_err(|f| {
            NotFenced::Stopped(format!(
                "cannot read pg_last_wal_receive_lsn() on the standby: {f}"
            ))
        })?;
    let received = received.first("lsn").filter(|l| is_lsn(l));
    log.note(format!(
        "the old primary had written {written}; the standby has received {}",
        received.unwrap_or("nothing")
    ));
    let target = later_lsn(&written, received);
    catch_up(log, standby, &target, step.catch_up_timeout, ctx).map_err(NotFenced::Stopped)
}

/// Waits until the standby has replayed `lsn`: at most `timeout`, and never past the step's
/// deadline.
fn catch_up(
    log: &mut Log,
    standby: &mut Client,
    lsn: &str,
    timeout: Duration,
    ctx: &Context,
) -> Result<(), String> {
    log.note(format!("waiting for the standby to replay {lsn}"));
    let limit = ctx.bounded(timeout);
    let sql = format!("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '{lsn}') >= 0 AS caught");
    let caught = crate::remote::poll(limit, || {
        let rows = standby.query(&sql)?;
        Ok::<_, Failure>((rows.first("caught") == Some("t")).then_some(()))
    });
    let waited = if limit < timeout {
        format!(
            "{} (what was left of the step's timeout)",
            crate::text::human_secs(limit.as_secs_f64())
        )
    } else {
        format_duration(timeout)
    };
    match caught {
        Ok(Some(())) => {
            log.note(format!("the standby has replayed {lsn}"));
            Ok(())
        }
        Ok(None) => Err(format!(
            "the standby did not replay the old primary's {lsn} within {waited}"
        )),
        Err(f) => Err(format!("waiting for the standby: {f}")),
    }
}

/// Gives the old primary back its writable default.
fn restore(old: &mut Client) -> Result<(), Failure> {
    old.query("ALTER SYSTEM RESET default_transaction_read_only")?;
    old.query("SELECT pg_reload_conf()")?;
    Ok(())
}

/// Undoes the soft fence; the promotion did not happen.
fn undo(log: Log, old: &mut Client, why: String) -> HostResult {
    let restored = restore(old);
    undone(log, why, &restored, None)
}

fn undone(
    mut log: Log,
    why: String,
    restored: &Result<(), Failure>,
    start: Option<&str>,
) -> HostResult {
    let tail = undo_tail(restored, start);
    log.note(&tail);
    log.done(Status::Critical, format!("{why}; {tail}"))
}

/// How the undo of the soft fence ended (pure, for tests). `start`: after a stop that
/// failed, how to start the server should it have stopped after all.
fn undo_tail(restored: &Result<(), Failure>, start: Option<&str>) -> String {
    match (restored, start) {
        (Ok(()), _) => "the old primary's fence undone; not promoted".to_string(),
        (Err(f), Some(start)) => format!(
            "could NOT undo the fence ({f}): the old primary may be stopping or stopped after all, if so start it again there with `{start}`, else it is left with default_transaction_read_only = on; not promoted"
        ),
        (Err(f), _) => format!(
            "could NOT undo the fence ({f}): the old primary is left with default_transaction_read_only = on; not promoted"
        ),
    }
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

/// What [`PROMOTION_POINT_SQL`] says of a promoted server (pure, for tests): where its
/// timeline began (the later of what it received and replayed, which a standby that went
/// past it on the old timeline is measured against), and what it held then: what recovery
/// replayed before it ended, the last of the old primary's WAL in the new primary.
fn promotion_point_of(rows: &Rows) -> Option<(PromotionPoint, Held)> {
    let lsn = |c: &str| rows.first(c).and_then(|l| Position::lsn(l, None));
    let (received, replayed) = (lsn("received"), lsn("replayed"));
    let at = match (&received, &replayed) {
        (Some(r), Some(p)) => Some(if r.has(p) { r.clone() } else { p.clone() }),
        (r, p) => r.clone().or(p.clone()),
    }?;
    let timeline = rows
        .first("timeline")
        .and_then(|t| u32::from_str_radix(t, 16).ok());
    let began = timeline.map_or(String::new(), |t| format!(", where timeline {t} began"));
    let held = match replayed {
        Some(position) => Held {
            position,
            how: format!("pg_last_wal_replay_lsn() after the promotion{began}"),
        },
        None => Held {
            position: at.clone(),
            how: format!("pg_last_wal_receive_lsn() after the promotion{began}"),
        },
    };
    Some((PromotionPoint { at, timeline }, held))
}

/// What [`STANDBY_SQL`] says of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct StandbyState {
    recovery: bool,
    /// The WAL receiver's status (`streaming`), empty without a receiver.
    status: String,
    sender: String,
    lag: Option<u64>,
    /// How far it replayed.
    replayed: Option<Position>,
    /// The timeline its WAL receiver last received on (`None`: no receiver).
    timeline: Option<u32>,
}

/// Where the new primary's timeline began: everything a standby replayed beyond it on an
/// older timeline is history the new primary does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PromotionPoint {
    at: Position,
    /// The new primary's timeline, when it could be read.
    timeline: Option<u32>,
}

impl PromotionPoint {
    fn describe(&self) -> String {
        match self.timeline {
            Some(t) => format!("promotion point {}, where timeline {t} began", self.at.text),
            None => format!("promotion point {}", self.at.text),
        }
    }
}

/// Whether a standby that does not stream from the new primary forked off it (pure, for
/// tests): in recovery, it replayed past the promotion point, and not on the new timeline.
/// Until the wait is over (`settled`) a standby whose receiver names no timeline may still
/// be switching to the new one; afterwards what it replayed decides. The text names what it
/// replayed, the point, and what to do.
fn forked_off(s: &StandbyState, point: &PromotionPoint, settled: bool) -> Option<String> {
    let replayed = s
        .replayed
        .as_ref()
        .filter(|r| s.recovery && r.offset > point.at.offset)?;
    let followed = match (s.timeline, point.timeline) {
        (Some(mine), Some(new)) => mine >= new,
        (None, _) => !settled,
        (Some(_), None) => false,
    };
    if followed {
        return None;
    }
    let began = match point.timeline {
        Some(t) => format!(" where timeline {t} began"),
        None => String::new(),
    };
    Some(format!(
        "replayed to {}, past the promotion point {}{began}: it serves reads of data the new primary does not have; rebuild it (pg_basebackup, or pg_rewind with wal_log_hints/checksums)",
        replayed.text, point.at.text
    ))
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
        replayed: rows.first("replayed").and_then(|l| Position::lsn(l, None)),
        timeline: rows.first("received_tli").and_then(|t| t.parse().ok()),
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

/// A WAL location as a number, for comparing two (`0/3016000` is 0x3016000).
fn lsn_value(s: &str) -> Option<u64> {
    if !is_lsn(s) {
        return None;
    }
    let (high, low) = s.split_once('/')?;
    let part = |h: &str| u64::from_str_radix(h, 16).ok();
    Some((part(high)? << 32) | part(low)?)
}

/// What the standby must replay after the stop (pure, for tests): the later of what the old
/// primary had written (`written`) and what the standby received (`received`, none when it
/// has no WAL receiver nor ever had one).
fn later_lsn(written: &str, received: Option<&str>) -> String {
    match received {
        Some(r) if lsn_value(r) > lsn_value(written) => r.to_string(),
        _ => written.to_string(),
    }
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
            ..StandbyState::default()
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

    /// A standby left behind that does not stream from the new primary: forked off when it
    /// replayed past the promotion point on an older timeline.
    #[test]
    fn forked_off_past_the_promotion_point() {
        let lsn = |l: &str| Position::lsn(l, None);
        let point = PromotionPoint {
            at: lsn("0/4000000").unwrap(),
            timeline: Some(2),
        };
        let waiting = StandbyState {
            recovery: true,
            status: "waiting".into(),
            sender: "10.0.0.2".into(),
            lag: Some(0),
            replayed: lsn("0/4025A70"),
            timeline: Some(1),
        };
        // (state, settled, forked off)
        let table = [
            (waiting.clone(), false, true),
            (waiting.clone(), true, true),
            (
                StandbyState {
                    replayed: lsn("0/4000000"),
                    ..waiting.clone()
                },
                true,
                false,
            ),
            (
                StandbyState {
                    replayed: lsn("0/3FFFF00"),
                    ..waiting.clone()
                },
                true,
                false,
            ),
            (
                StandbyState {
                    timeline: Some(2),
                    ..waiting.clone()
                },
                true,
                false,
            ),
            (
                StandbyState {
                    status: String::new(),
                    timeline: None,
                    ..waiting.clone()
                },
                false,
                false,
            ),
            (
                StandbyState {
                    status: String::new(),
                    timeline: None,
                    ..waiting.clone()
                },
                true,
                true,
            ),
            (
                StandbyState {
                    recovery: false,
                    ..waiting.clone()
                },
                true,
                false,
            ),
            (
                StandbyState {
                    replayed: None,
                    ..waiting.clone()
                },
                true,
                false,
            ),
        ];
        for (state, settled, forked) in table {
            let got = forked_off(&state, &point, settled);
            assert_eq!(
                got.is_some(),
                forked,
                "{state:?} settled={settled}: {got:?}"
            );
        }
        assert_eq!(
            forked_off(&waiting, &point, false).unwrap(),
            "replayed to 0/4025A70, past the promotion point 0/4000000 where timeline 2 began: it serves reads of data the new primary does not have; rebuild it (pg_basebackup, or pg_rewind with wal_log_hints/checksums)"
        );
        let unknown = PromotionPoint {
            timeline: None,
            ..point.clone()
        };
        let text = forked_off(&waiting, &unknown, false).unwrap();
        assert!(
            text.contains("past the promotion point 0/4000000: it serves"),
            "{text}"
        );
        assert_eq!(
            point.describe(),
            "promotion point 0/4000000, where timeline 2 began"
        );
    }

    /// After the promotion: the point the new timeline began at, and what the new primary
    /// held, which is what recovery replayed.
    #[test]
    fn the_promotion_point_and_what_the_new_primary_held() {
        let rows = |received: Option<&str>, replayed: Option<&str>| Rows {
            columns: vec!["received".into(), "replayed".into(), "timeline".into()],
            rows: vec![vec![
                received.map(str::to_string),
                replayed.map(str::to_string),
                Some("00000002".into()),
            ]],
        };
        // (received, replayed) -> (point, held, read from)
        type Row<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<(&'a str, &'a str, &'a str)>,
        );
        let table: &[Row] = &[
            (
                Some("0/4000000"),
                Some("0/4000000"),
                Some(("0/4000000", "0/4000000", "pg_last_wal_replay_lsn()")),
            ),
            (
                Some("0/4000100"),
                Some("0/4000000"),
                Some(("0/4000100", "0/4000000", "pg_last_wal_replay_lsn()")),
            ),
            (
                None,
                Some("0/4000000"),
                Some(("0/4000000", "0/4000000", "pg_last_wal_replay_lsn()")),
            ),
            (
                Some("0/4000000"),
                None,
                Some(("0/4000000", "0/4000000", "pg_last_wal_receive_lsn()")),
            ),
            (None, None, None),
        ];
        for (received, replayed, want) in table {
            let got = promotion_point_of(&rows(*received, *replayed));
            let got = got.as_ref().map(|(p, h)| {
                assert_eq!(p.timeline, Some(2));
                assert!(h.how.ends_with(", where timeline 2 began"), "{}", h.how);
                (p.at.text.as_str(), h.position.text.as_str(), h.how.as_str())
            });
            match (got, want) {
                (Some((at, held, how)), Some((want_at, want_held, from))) => {
                    assert_eq!((at, held), (*want_at, *want_held));
                    assert!(how.starts_with(from), "{how}");
                }
                (got, want) => assert_eq!(got.is_none(), want.is_none(), "{received:?}"),
            }
        }
    }

    #[test]
    fn lsn_values() {
        for (text, ok) in [
            ("0/3016000", true),
            ("1A/FF", true),
            ("0/", false),
            ("0/3016000'; DROP", false),
            ("3016000", false),
        ] {
            assert_eq!(is_lsn(text), ok, "{text}");
            assert_eq!(lsn_value(text).is_some(), ok, "{text}");
        }
        assert_eq!(lsn_value("1A/FF"), Some(0x1A_0000_00FF));
        // (written, received, what the standby must replay)
        let table = [
            ("0/3016000", Some("0/3016100"), "0/3016100"),
            ("0/3016100", Some("0/3016000"), "0/3016100"),
            // As text "0/9000000" sorts after "0/10000000".
            ("0/9000000", Some("0/10000000"), "0/10000000"),
            ("1/0", Some("0/FFFFFFFF"), "1/0"),
            ("0/5", None, "0/5"),
            ("0/5", Some("junk"), "0/5"),
        ];
        for (written, received, target) in table {
            assert_eq!(
                later_lsn(written, received),
                target,
                "{written} {received:?}"
            );
        }
    }

    /// `[ssh]` defaults as a config would give them.
    fn defaults() -> SshSettings {
        SshSettings {
            user: "deadpool".into(),
            port: 22,
            auth: crate::settings::SshAuth::Agent,
            known_hosts: "/nonexistent/known_hosts".into(),
            connect_timeout: Duration::from_secs(3),
            command_timeout: Duration::from_secs(30),
            sudo: false,
        }
    }

    /// The step loaded from `keys` after `user` and `password_file`.
    fn load_keys(keys: &str) -> Result<PostgresPromote, Problem> {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("admin.pw");
        std::fs::write(&secret, "pw\n").unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let monitor = MonitorKind::Tcp(crate::monitor::tcp::Tcp { port: 5432 });
        let cx = LoadContext {
            dir: dir.path(),
            ssh: &defaults(),
            servers: &["10.0.0.1".to_string(), "10.0.0.2".to_string()],
            monitor: &monitor,
        };
        let table = format!("user = \"dpadmin\"\npassword_file = \"admin.pw\"\n{keys}")
            .parse()
            .unwrap();
        load(table, &cx)
    }

    const STOP: &str = "fence = \"stop\"\ndata_dir = \"/var/lib/postgresql/15/main\"\n";

    #[test]
    fn the_stop_keys_come_only_with_fence_stop() {
        // Without fence = "stop": (keys, the key at fault, words).
        #[rustfmt::skip]
        let alone: &[(&str, &str, &str)] = &[
            ("fence = \"off\"", "fence", "expected \"read_only\" or \"stop\""),
            ("fence = \"stop\"", "data_dir", "missing"),
            ("data_dir = \"/var/lib/postgresql/15/main\"", "data_dir", "set fence = \"stop\", or remove it"),
            ("fence = \"read_only\"\nstop_timeout = \"5s\"", "stop_timeout", "set fence = \"stop\""),
            ("pg_ctl = \"/usr/bin/pg_ctl\"", "pg_ctl", "set fence = \"stop\""),
            ("os_user = \"postgres\"", "os_user", "set fence = \"stop\""),
            ("ssh = { user = \"postgres\" }", "ssh", "set fence = \"stop\""),
        ];
        // After fence = "stop" and a data_dir.
        #[rustfmt::skip]
        let with_stop: &[(&str, &str, &str)] = &[
            ("data_dir = \"var/lib/pg\"", "data_dir", "absolute path"),
            ("data_dir = \"/srv/pg data\"", "data_dir", "absolute path"),
            ("data_dir = \"/srv/pg,main\"", "data_dir", "sudoers"),
            ("data_dir = \"/\"", "data_dir", "absolute path"),
            ("pg_ctl = \"pg_ctl\"", "pg_ctl", "absolute path"),
            ("os_user = \"post gres\"", "os_user", "user name"),
            ("stop_timeout = \"0s\"", "stop_timeout", "longer than zero"),
            ("stop_timeout = \"121s\"", "stop_timeout", "from 1s to 120s"),
            ("stop_timeout = \"1500ms\"", "stop_timeout", "whole seconds"),
            ("stop_timeout = \"soon\"", "stop_timeout", "expected a duration"),
            ("stop_timeout = \"30s\"", "stop_timeout", "command_timeout (30s)"),
            ("ssh = { user = \"a b\" }", "ssh.user", "user name"),
        ];
        let rows = (alone.iter().map(|(k, key, w)| (k.to_string(), key, w))).chain(
            with_stop.iter().map(|(k, key, w)| {
                // A later data_dir replaces the one in STOP.
                let stop = if k.starts_with("data_dir") {
                    "fence = \"stop\"\n"
                } else {
                    STOP
                };
                (format!("{stop}{k}"), key, w)
            }),
        );
        for (keys, key, words) in rows {
            let e = load_keys(&keys).expect_err(&keys);
            assert_eq!(e.key.as_deref(), Some(*key), "{keys}: {e}");
            assert!(e.text.contains(*words), "{keys}: {e}");
        }
        // An unknown key in the ssh table is named by serde.
        let e = load_keys(&format!("{STOP}ssh = {{ usr = \"x\" }}")).unwrap_err();
        assert!(e.to_string().contains("usr"), "{e}");

        for keys in ["", "fence = \"read_only\""] {
            let step = load_keys(keys).unwrap();
            assert!(matches!(step.fence, Fence::ReadOnly), "{keys}");
        }
        let Fence::Stop(stop) = load_keys(STOP).unwrap().fence else {
            panic!("not a stop");
        };
        assert_eq!(stop.data_dir, "/var/lib/postgresql/15/main");
        assert_eq!(stop.pg_ctl, stop::DEFAULT_PG_CTL);
        assert_eq!(stop.os_user, "postgres");
        assert_eq!(stop.timeout, Duration::from_secs(10));
        assert_eq!(stop.ssh.user, "deadpool");
        assert!(stop.through_sudo());
        let keys = format!(
            "{STOP}pg_ctl = \"/usr/local/pgsql/bin/pg_ctl\"\nos_user = \"pgsql\"\nstop_timeout = \"1min\"\nssh = {{ user = \"pgsql\", port = 2222, command_timeout = \"90s\" }}"
        );
        let Fence::Stop(stop) = load_keys(&keys).unwrap().fence else {
            panic!("not a stop");
        };
        assert_eq!(
            (stop.pg_ctl.as_str(), stop.os_user.as_str(), stop.timeout),
            (
                "/usr/local/pgsql/bin/pg_ctl",
                "pgsql",
                Duration::from_secs(60)
            )
        );
        assert_eq!((stop.ssh.user.as_str(), stop.ssh.port), ("pgsql", 2222));
        assert!(!stop.through_sudo());
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
    fn undoing_the_soft_fence_says_what_is_left() {
        let start = "sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl start -D /d";
        let down = Err(Failure::Down("connection refused".into()));
        assert_eq!(
            undo_tail(&Ok(()), Some(start)),
            "the old primary's fence undone; not promoted"
        );
        let tail = undo_tail(&down, Some(start));
        assert!(
            tail.contains("stopped after all") && tail.contains(start),
            "{tail}"
        );
        let tail = undo_tail(&down, None);
        assert!(
            tail.contains("left with default_transaction_read_only = on"),
            "{tail}"
        );
        let shutting_down = Err(Failure::Server(crate::postgres::ServerError {
            severity: "FATAL".into(),
            code: "57P03".into(),
            message: "the database system is shutting down".into(),
        }));
        let tail = undo_tail(&shutting_down, Some(start));
        assert!(
            tail.contains("stopping or stopped after all") && tail.contains(start),
            "{tail}"
        );
    }

    /// A context toward 10.0.0.2 from 10.0.0.1 for `step`, with a third server.
    fn with_context<T>(step: PostgresPromote, f: impl FnOnce(&Context) -> T) -> T {
        let step = super::super::Step {
            name: "promote".into(),
            timeout: Duration::from_secs(60),
            on_failure: super::super::OnFailure::Abort,
            kind: super::super::StepKind::PostgresPromote(step),
        };
        let servers = ["10.0.0.1", "10.0.0.2", "10.0.0.3"].map(String::from);
        let ctx = Context {
            pool: crate::model::PoolServers {
                name: "orders",
                servers: &servers,
            },
            monitor_timeout: Duration::from_secs(1),
            step: &step,
            old_primary: "10.0.0.1",
            new_primary: "10.0.0.2",
            dry_run: true,
            force: super::super::Force::No,
            sessions: None,
            deadline: std::time::Instant::now() + Duration::from_secs(60),
        };
        f(&ctx)
    }

    #[test]
    fn the_plan_and_the_logins_show_the_stop() {
        let stopping = load_keys(STOP).unwrap();
        with_context(stopping.clone(), |ctx| {
            let plan = stopping.plan(ctx);
            let hosts: Vec<&str> = plan.iter().map(|(h, _)| h.as_str()).collect();
            assert_eq!(hosts, ["10.0.0.2", "10.0.0.1", "10.0.0.3"]);
            assert!(plan[0].1.contains("stop it over SSH"), "{}", plan[0].1);
            assert!(
                plan[1].1.contains(
                    "sudo -n -u postgres /usr/lib/postgresql/15/bin/pg_ctl stop -D /var/lib/postgresql/15/main -m fast -w -t 10"
                ),
                "{}",
                plan[1].1
            );
            let logins = stopping.logins(ctx);
            assert_eq!(logins.len(), 1);
            assert_eq!(
                (logins[0].0.as_str(), logins[0].1.user.as_str()),
                ("10.0.0.1", "deadpool")
            );
            assert!(stopping.ssh_in_use().is_some());
            let Fence::Stop(stop) = &stopping.fence else {
                panic!("not a stop");
            };
            let advice = stopped_advice(stop, ctx);
            assert_eq!(
                advice,
                "the old primary 10.0.0.1 is STOPPED and 10.0.0.2 was NOT promoted: start 10.0.0.1 again there with `sudo -u postgres /usr/lib/postgresql/15/bin/pg_ctl start -D /var/lib/postgresql/15/main` (or through its service), or promote 10.0.0.2 as it is with `deadpool promote --force orders 10.0.0.2`"
            );
        });
        let soft = load_keys("").unwrap();
        with_context(soft.clone(), |ctx| {
            let plan = soft.plan(ctx);
            assert_eq!(plan.len(), 2);
            assert!(plan[0].1.contains("else undo the fence"), "{}", plan[0].1);
            assert!(soft.logins(ctx).is_empty());
            assert!(soft.ssh_in_use().is_none());
        });
    }
}
