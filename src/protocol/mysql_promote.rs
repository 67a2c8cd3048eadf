//! The `mysql_promote` step: makes the standby a writable primary.
//!
//! - preflight: the standby answers the admin account, has the privileges promotion needs,
//!   and is a replica of the current primary (or already promoted); a reachable old primary
//!   must accept the admin account too, with what fencing it needs. Each other standby of the
//!   pool must accept the admin account, else a warning: it cannot be repointed.
//! - promote, old primary does not answer at all: wait up to `catch_up_timeout` until the
//!   replica has applied everything it received, stop replication, optionally reset it, turn
//!   `read_only` off, read it back.
//! - promote, old primary answers with an error (refused login, too many connections): the
//!   step fails with nothing changed, unless a person forced the promotion; promoting around
//!   a live server would make a second writable primary (SPEC 6.3).
//! - promote, old primary alive (a manual promote): fence it (`read_only`, `super_read_only`
//!   where the server has it, its client sessions ended), wait until the replica has applied
//!   its last transaction (by GTID, or by binlog file and position for a replica without
//!   GTID), then promote as above. If anything in between fails, the old primary is given
//!   back the state it had.
//! - promote, once the new primary is writable: every other standby is repointed to it by
//!   GTID, all at once, and must be seen replicating from it; one that is not is a warning
//!   for a person, never a failed step (the service has moved).
//! - check: on every standby, replica IO and SQL threads running, lag under `max_lag`,
//!   replicating from the active server, read-only; active writable.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Context, Held, HostResult, LoadContext, Log, Protocol};
use crate::config::load::{RawTls, load_secret, load_tls};
use crate::error::Problem;
use crate::model::Status;
use crate::monitor::MonitorKind;
use crate::mysql::{self, Client, Failure, ReplicaStatus, Target};
use crate::settings::{Secret, parse_duration};
use crate::tls::Tls;

/// The step's `type`.
pub const TYPE: &str = "mysql_promote";

/// The `mysql_promote` step's settings.
/// Longest a repointed standby may take to show its IO and SQL threads running from the new
/// primary: a healthy one does within a second, and every second waited holds the chain's
/// later steps (the service does not move until they run).
const REPOINT_VERIFY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct MysqlPromote {
    pub user: String,
    pub password: Secret,
    pub port: u16,
    /// How long promotion waits for the replica to apply what it has received.
    pub catch_up_timeout: Duration,
    /// Readiness: replication lag above this is a warning.
    pub max_lag: Duration,
    /// `RESET REPLICA ALL` on the promoted server, so it forgets its old source.
    pub reset_replica: bool,
    /// TLS toward both servers: the step's own `tls` table, else the monitor's.
    pub tls: Option<Tls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMysqlPromote {
    user: String,
    password_file: String,
    port: Option<u16>,
    catch_up_timeout: Option<String>,
    max_lag: Option<String>,
    #[serde(default)]
    reset_replica: bool,
    tls: Option<RawTls>,
}

/// The `mysql_promote` step's keys, validated; the port and TLS default to a `mysql`
/// monitor's, which reaches the same servers.
pub fn load(table: toml::Table, cx: &LoadContext) -> Result<MysqlPromote, Problem> {
    let raw: RawMysqlPromote = super::raw(table)?;
    let password =
        load_secret(cx.dir, &raw.password_file).map_err(|e| Problem::at("password_file", e))?;
    let (default_port, monitor_tls) = if let MonitorKind::Mysql(m) = cx.monitor {
        (m.port, m.tls.clone())
    } else {
        (3306, None)
    };
    // The step reaches the same servers: the monitor's TLS unless it has its own.
    let tls = match raw.tls {
        Some(t) => Some(crate::mysql::check_tls(load_tls(cx.dir, t)?)?),
        None => monitor_tls,
    };
    Ok(MysqlPromote {
        user: raw.user,
        password,
        port: raw.port.unwrap_or(default_port),
        catch_up_timeout: parse_duration(raw.catch_up_timeout.as_deref().unwrap_or("30s"))
            .map_err(|e| Problem::at("catch_up_timeout", e))?,
        max_lag: parse_duration(raw.max_lag.as_deref().unwrap_or("30s"))
            .map_err(|e| Problem::at("max_lag", e))?,
        reset_replica: raw.reset_replica,
        tls,
    })
}

impl MysqlPromote {
    fn target<'b>(&'b self, host: &'b str, ctx: &Context) -> Target<'b> {
        Target {
            host,
            port: self.port,
            user: &self.user,
            password: &self.password,
            // One server call: the pool's monitor timeout says how long a server may take,
            // and never past the step's deadline.
            timeout: ctx.bounded(ctx.monitor_timeout),
            statement_timeout: None,
            tls: self.tls.as_ref(),
        }
    }

    fn connect(&self, host: &str, ctx: &Context) -> Result<Client, Failure> {
        Client::connect(&self.target(host, ctx))
    }

    /// A connection whose statements may run until `deadline`: `STOP REPLICA` waits for an
    /// IO thread stuck connecting to a dead primary (up to `slave_net_timeout`).
    fn connect_until(
        &self,
        host: &str,
        ctx: &Context,
        deadline: Instant,
    ) -> Result<Client, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        Client::connect(&Target {
            statement_timeout: Some(left),
            ..self.target(host, ctx)
        })
    }

    /// The admin account on `client` can change read_only and stop replication, and, to
    /// `fence` a live old primary, see and end every session.
    fn privileges_ok(client: &mut Client, fence: bool) -> Result<(), String> {
        let privileges = client
            .privileges()
            .map_err(|f| format!("cannot read the account's grants: {f}"))?;
        let mut missing =
            mysql::missing_admin_privileges(client.flavor, &client.version, &privileges);
        if fence {
            missing.extend(mysql::missing_fence_privileges(
                client.flavor,
                &client.version,
                &privileges,
            ));
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the admin account lacks {} on {}",
                missing.join(", "),
                client.host
            ))
        }
    }
}

impl MysqlPromote {
    /// The preflight of the new primary (and of the old one it will fence).
    fn preflight_candidate(&self, ctx: &Context) -> HostResult {
        let new = ctx.new_primary;
        let mut log = Log::new(new);
        let mut standby = match self.connect(new, ctx) {
            Ok(c) => c,
            Err(f) => {
                return log.done(
                    Status::Critical,
                    format!("cannot reach the new primary {new} as {}: {f}", self.user),
                );
            }
        };
        if let Err(e) = Self::privileges_ok(&mut standby, false) {
            return log.done(Status::Critical, e);
        }
        let status = match (standby.replica_status(), standby.read_only()) {
            (Ok(s), Ok(ro)) => (s, ro),
            (Err(f), _) | (_, Err(f)) => {
                return log.done(Status::Critical, format!("{new}: {f}"));
            }
        };
        let message = match status {
            (None, false) => format!("{new} is already a writable primary (not a replica)"),
            (None, true) => {
                return log.done(
                    Status::Critical,
                    format!(
                        "{new} is not a replica of {}; promoting it could lose data",
                        ctx.old_primary
                    ),
                );
            }
            (Some(r), _)
                if !crate::net::same_host(&r.source_host, ctx.old_primary, ctx.monitor_timeout) =>
            {
                return log.done(
                    Status::Critical,
                    format!(
                        "{new} replicates from {}, not from {}",
                        r.source_host, ctx.old_primary
                    ),
                );
            }
            (Some(r), _) if !r.sql_ok() => {
                return log.done(
                    Status::Critical,
                    format!(
                        "{new}: the SQL thread is not running ({}); fix replication first",
                        r.describe()
                    ),
                );
            }
            (Some(r), _) => format!("{new} can be promoted: {}", r.describe()),
        };
        log.note(&message);
        // A reachable old primary will be fenced: the admin account must work there.
        match self.connect(ctx.old_primary, ctx) {
            Ok(mut old) => {
                if let Err(e) = Self::privileges_ok(&mut old, true) {
                    return log.done(Status::Critical, e);
                }
                log.note(format!(
                    "old primary {} reachable; it will be fenced first (read-only, sessions ended)",
                    ctx.old_primary
                ));
            }
            Err(f) => match without_old_primary(&f, ctx.old_primary, ctx.force.is_on()) {
                Ok(note) => log.note(format!("{note}; it will be left alone")),
                Err(why) => return log.done(Status::Critical, why),
            },
        }
        log.done(Status::Ok, message)
    }

    /// Whether the admin account can log in to a standby the failover will repoint, with
    /// what the step needs there (read-only); what it replicates now.
    fn repointable(&self, host: &str, ctx: &Context) -> Result<String, String> {
        let mut client = self
            .connect(host, ctx)
            .map_err(|f| format!("cannot connect as {}: {f}", self.user))?;
        Self::privileges_ok(&mut client, false)?;
        match client.replica_status() {
            Ok(Some(r)) => Ok(r.describe()),
            Ok(None) => Ok("not a replica now".to_string()),
            Err(f) => Err(f.to_string()),
        }
    }

    /// Repoints a standby to the new primary by GTID and waits until it replicates from it
    /// (at most [`REPOINT_VERIFY`] or `catch_up_timeout`, never past the step's deadline).
    fn repoint(
        &self,
        host: &str,
        ctx: &Context,
        notes: &mut Vec<String>,
    ) -> Result<String, String> {
        let new = ctx.new_primary;
        // STOP REPLICA waits for an IO thread stuck connecting to the dead old primary.
        let mut client = self
            .connect_until(host, ctx, ctx.deadline)
            .map_err(|f| format!("cannot connect as {}: {f}", self.user))?;
        client
            .repoint(new, self.port, true)
            .map_err(|f| format!("changing its source failed: {f}"))?;
        notes.push(format!(
            "replication changed to {new}:{} by GTID and started",
            self.port
        ));
        let limit = self.catch_up_timeout.min(REPOINT_VERIFY);
        let status = client.await_replicating(new, ctx.bounded(limit))?;
        Ok(status.describe())
    }
}

impl Protocol for MysqlPromote {
    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// Logins, grants and replication toward the standby.
    fn promotes(&self) -> bool {
        true
    }

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
        let promoted = promote(self, ctx, ctx.deadline);
        super::then_repoint(ctx, promoted, |host, notes| {
            self.repoint(host, ctx, notes)
                .map_err(super::NotRepointed::Failed)
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
        let reset = if self.reset_replica {
            ", RESET REPLICA ALL"
        } else {
            ""
        };
        let new = ctx.new_primary;
        let mut plan = vec![(
            new.to_string(),
            format!(
                "as {}: if {} answers, SET GLOBAL read_only=ON (and super_read_only=ON where it exists) there, KILL its client sessions, and wait for its last GTID or binlog position; if it answers with an error, stop (unless forced); if it does not answer, wait up to {} for the relay log to be applied; then STOP REPLICA{reset}, SET GLOBAL read_only=OFF, verify",
                self.user,
                ctx.old_primary,
                crate::settings::format_duration(self.catch_up_timeout)
            ),
        )];
        plan.extend(ctx.other_standbys().into_iter().map(|standby| {
            (
                standby.to_string(),
                format!(
                    "as {}, once {new} is writable: STOP REPLICA; CHANGE MASTER TO MASTER_HOST='{new}', MASTER_PORT={}, MASTER_USE_GTID=slave_pos (MySQL: SOURCE_AUTO_POSITION=1); START REPLICA; verify it replicates from {new}",
                    self.user, self.port
                ),
            )
        }));
        plan
    }
}

fn promote(step: &MysqlPromote, ctx: &Context, deadline: Instant) -> HostResult {
    let (new, old) = (ctx.new_primary, ctx.old_primary);
    let mut log = Log::new(new);
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut standby = match step.connect_until(new, ctx, deadline) {
        Ok(c) => c,
        Err(f) => {
            return log.done(
                Status::Critical,
                format!("cannot reach {new}: {f}; nothing changed"),
            );
        }
    };
    let replica = match standby.replica_status() {
        Ok(r) => r,
        Err(f) => {
            return log.done(
                Status::Critical,
                format!("{new}: cannot read the replication status: {f}; nothing changed"),
            );
        }
    };
    if replica.is_none() && matches!(standby.read_only(), Ok(false)) {
        return log.done(Status::Ok, format!("{new} is already a writable primary"));
    }
    let catch_up = step.catch_up_timeout.min(left());

    match step.connect(old, ctx) {
        Ok(mut old_client) => {
            // A manual promote, or an old primary that is back: stop its writes first.
            let before = match Before::read(&mut old_client) {
                Ok(b) => b,
                Err(f) => {
                    return log.done(
                        Status::Critical,
                        format!(
                            "cannot read the old primary {old}'s read_only: {f}; nothing changed"
                        ),
                    );
                }
            };
            let fenced = fence_and_catch_up(
                &mut log,
                &mut old_client,
                &mut standby,
                replica.as_ref(),
                catch_up,
            );
            match fenced {
                Ok(()) => {}
                Err(Fence::NothingChanged(why)) => {
                    return log.done(Status::Critical, format!("{why}; nothing changed"));
                }
                Err(Fence::Undo(why)) => return undo(log, &mut old_client, &before, why),
            }
        }
        Err(f) => {
            match without_old_primary(&f, old, ctx.force.is_on()) {
                Ok(note) => log.note(format!("{note}; promoting without it")),
                Err(why) => return log.done(Status::Critical, why),
            }
            if replica.is_some() {
                let waited = crate::remote::poll(catch_up, || {
                    let s = standby.replica_status()?.unwrap_or_default();
                    if !s.sql_ok() {
                        return Err(Failure::Down(format!(
                            "the SQL thread stopped: {}",
                            s.describe()
                        )));
                    }
                    Ok(s.caught_up().then_some(s))
                });
                match waited {
                    Ok(Some(s)) => log.note(format!(
                        "{new} applied everything it received ({} {})",
                        s.executed.0, s.executed.1
                    )),
                    Ok(None) => {
                        return log.done(
                            Status::Critical,
                            format!(
                                "{new} did not apply its relay log within {}; not promoted",
                                crate::settings::format_duration(catch_up)
                            ),
                        );
                    }
                    Err(f) => {
                        return log.done(Status::Critical, format!("{new}: {f}; not promoted"));
                    }
                }
            }
        }
    }

    make_writable(step, log, &mut standby, replica.is_some(), new, left())
}

/// The end of a promotion, once the old primary is fenced or gone: stop (and, where set,
/// reset) replication on the new primary, make it writable, and verify.
fn make_writable(
    step: &MysqlPromote,
    mut log: Log,
    standby: &mut Client,
    replicating: bool,
    new: &str,
    left: Duration,
) -> HostResult {
    if left.is_zero() {
        return log.done(
            Status::Critical,
            format!("the step's timeout ran out before {new} was promoted; {new} is unchanged"),
        );
    }
    let mut held = None;
    if replicating {
        if let Err(f) = standby.exec_either("STOP REPLICA", "STOP SLAVE") {
            return log.done(
                Status::Critical,
                format!("STOP REPLICA on {new} failed: {f}"),
            );
        }
        log.note("replication stopped");
        // Read before a reset clears it: where the SQL thread stopped in the old primary's
        // binary log is what this server holds of it.
        held = read_held(standby);
        if step.reset_replica {
            if let Err(f) = standby.exec_either("RESET REPLICA ALL", "RESET SLAVE ALL") {
                return log.done(
                    Status::Critical,
                    format!("RESET REPLICA ALL on {new} failed: {f}"),
                );
            }
            log.note("replication configuration reset");
        }
    }
    if let Err(f) = standby.exec("SET GLOBAL read_only = OFF") {
        return log.done(
            Status::Critical,
            format!("SET GLOBAL read_only = OFF on {new} failed: {f}"),
        );
    }
    match standby.read_only() {
        Ok(false) => log
            .done(
                Status::Ok,
                format!("{new} promoted: writable, replication stopped"),
            )
            .holding(held),
        Ok(true) => log.done(
            Status::Critical,
            format!("{new} is still read-only after SET GLOBAL read_only = OFF"),
        ),
        Err(f) => log.done(
            Status::Critical,
            format!("cannot verify read_only on {new}: {f}"),
        ),
    }
}

/// What the new primary holds of the old primary's stream once its replication stopped;
/// `None` when that cannot be read (no reason to fail a promotion).
fn read_held(standby: &mut Client) -> Option<Held> {
    let status = standby.replica_status().ok().flatten()?;
    let state = standby.state().ok()?;
    held_of(&status, &state)
}

/// What a stopped replica holds, in its old primary's coordinates (pure, for tests): the
/// file and position its SQL thread executed to, with the GTIDs it applied (MariaDB
/// `gtid_slave_pos`; else what it executed, MySQL's `gtid_executed`).
fn held_of(status: &ReplicaStatus, state: &mysql::ServerState) -> Option<Held> {
    let (file, offset) = &status.executed;
    if file.is_empty() {
        return None;
    }
    let (gtid, variable) = if !state.gtid_applied.is_empty() {
        (state.gtid_applied.as_str(), "gtid_slave_pos")
    } else {
        (state.gtid_written.as_str(), "the GTIDs it executed")
    };
    let how = if gtid.is_empty() {
        "Relay_Master_Log_File:Exec_Master_Log_Pos after STOP REPLICA".to_string()
    } else {
        format!("Relay_Master_Log_File:Exec_Master_Log_Pos and {variable} after STOP REPLICA")
    };
    Some(Held {
        position: crate::position::Position::binlog(file, *offset, gtid),
        how,
    })
}

/// Whether the step may go on without an old primary the admin account cannot use (pure,
/// for tests). `Ok(note)`: it does not answer at all, or it answers with an error (access
/// denied, too many connections) and a person forced the promotion. `Err(message)`: it is
/// alive, and promoting around it would make a second writable primary.
fn without_old_primary(f: &Failure, old: &str, force: bool) -> Result<String, String> {
    match f {
        Failure::Down(m) => Ok(format!("old primary {old} unreachable ({m})")),
        Failure::Refused { .. } if force => Ok(format!(
            "old primary {old} answers but refuses the admin account ({f}), promoted around it (forced): it may still take writes"
        )),
        Failure::Refused { .. } => Err(format!(
            "old primary {old} answers but refuses the admin account: {f}; not promoted, nothing changed. Fix the old primary (or stop it); `deadpool promote --force` promotes around it"
        )),
    }
}

/// Why fencing the old primary stopped, and whether it must be given back its state.
enum Fence {
    NothingChanged(String),
    Undo(String),
}

/// What the old primary was before it was fenced, so that an undo restores just that.
struct Before {
    read_only: bool,
    /// `None` where the server has no `super_read_only` (MariaDB).
    super_read_only: Option<bool>,
}

impl Before {
    fn read(old: &mut Client) -> Result<Before, Failure> {
        Ok(Before {
            read_only: old.read_only()?,
            super_read_only: old.super_read_only()?,
        })
    }
}

/// Stops a live old primary's writes (read_only, super_read_only where the server has it,
/// its client sessions ended: a session whose account may write despite read_only would go
/// on writing), then waits until the standby has applied everything the old primary wrote.
fn fence_and_catch_up(
    log: &mut Log,
    old: &mut Client,
    standby: &mut Client,
    replica: Option<&ReplicaStatus>,
    catch_up: Duration,
) -> Result<(), Fence> {
    let (host, new) = (old.host.clone(), standby.host.clone());
    old.exec("SET GLOBAL read_only = ON").map_err(|f| {
        Fence::NothingChanged(format!(
            "could not make the old primary {host} read-only: {f}"
        ))
    })?;
    if !matches!(old.read_only(), Ok(true)) {
        return Err(Fence::Undo(format!(
            "the old primary {host} did not stay read-only"
        )));
    }
    log.note(format!("old primary {host} is read-only"));
    match old.super_read_only() {
        Ok(None) => {}
        Ok(Some(_)) => {
            let on = old
                .exec("SET GLOBAL super_read_only = ON")
                .and_then(|()| old.super_read_only());
            match on {
                Ok(Some(true)) => log.note(format!("old primary {host} is super_read_only")),
                Ok(_) => {
                    return Err(Fence::Undo(format!(
                        "super_read_only did not stay on at the old primary {host}"
                    )));
                }
                Err(f) => {
                    return Err(Fence::Undo(format!(
                        "could not turn super_read_only on at the old primary {host}: {f}"
                    )));
                }
            }
        }
        Err(f) => {
            return Err(Fence::Undo(format!(
                "cannot read super_read_only on the old primary {host}: {f}"
            )));
        }
    }
    end_sessions(log, old)?;
    let unread =
        |what: &str, f: Failure| Fence::Undo(format!("{what} on the old primary {host}: {f}"));
    let gtid = old
        .gtid_position()
        .map_err(|f| unread("cannot read the GTID position", f))?;
    let binlog = old
        .binlog_position()
        .map_err(|f| unread("cannot read the binary log position", f))?;
    let Some(position) =
        mysql::position_to_wait_for(&gtid, binlog, replica.and_then(|r| r.uses_gtid))
    else {
        return Err(Fence::Undo(format!(
            "the old primary {host} has neither a GTID nor a binary log position, so {new} cannot be shown to have caught up"
        )));
    };
    log.note(format!("waiting for {new} to apply {host}'s {position}"));
    let waited = crate::remote::poll(catch_up, || {
        let slice = Duration::from_millis(500).min(catch_up);
        Ok::<_, Failure>(standby.wait_for(&position, slice)?.then_some(()))
    });
    match waited {
        Ok(Some(())) => {
            log.note(format!("{new} has applied everything {host} wrote"));
            Ok(())
        }
        Ok(None) => {
            let state = match standby.replica_status() {
                Ok(Some(r)) => r.describe(),
                Ok(None) => "not a replica".to_string(),
                Err(f) => f.to_string(),
            };
            Err(Fence::Undo(format!(
                "{new} did not reach {host}'s {position} within {} ({state})",
                crate::settings::format_duration(catch_up)
            )))
        }
        Err(f) => Err(Fence::Undo(format!("waiting for {new}: {f}"))),
    }
}

/// Ends every client session on the read-only old primary (see
/// [`mysql::sessions_to_end`]) and records which.
fn end_sessions(log: &mut Log, old: &mut Client) -> Result<(), Fence> {
    let host = old.host.clone();
    let (sessions, own) = old.sessions().map_err(|f| {
        Fence::Undo(format!(
            "cannot list the sessions on the old primary {host}: {f}"
        ))
    })?;
    let to_end = mysql::sessions_to_end(&sessions, own);
    for s in &to_end {
        old.kill_session(s.id).map_err(|f| {
            Fence::Undo(format!(
                "could not end session {} on the old primary {host}: {f}",
                s.describe()
            ))
        })?;
    }
    log.note(if to_end.is_empty() {
        format!("no client sessions to end on {host}")
    } else {
        format!(
            "ended {} client session(s) on {host}: {}",
            to_end.len(),
            to_end
                .iter()
                .map(|s| s.describe())
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(())
}

/// The new primary could not catch up: give the old primary back the state it had, so the
/// service keeps its primary.
fn undo(mut log: Log, old: &mut Client, before: &Before, why: String) -> HostResult {
    let host = old.host.clone();
    // In the reverse order of the fence.
    let mut restored = true;
    if before.super_read_only == Some(false) {
        restored &= old.exec("SET GLOBAL super_read_only = OFF").is_ok()
            && matches!(old.super_read_only(), Ok(Some(false)));
    }
    if !before.read_only {
        restored &=
            old.exec("SET GLOBAL read_only = OFF").is_ok() && matches!(old.read_only(), Ok(false));
    }
    let tail = match (restored, before.read_only) {
        (true, false) => format!("{host} made writable again; not promoted"),
        (true, true) => format!("{host} was read-only before and stays so; not promoted"),
        (false, _) => {
            format!("could NOT make {host} writable again: it is left READ-ONLY; not promoted")
        }
    };
    log.note(&tail);
    log.done(Status::Critical, format!("{why}; {tail}"))
}

impl MysqlPromote {
    fn check_standby(&self, standby: &str, active: &str, ctx: &Context) -> HostResult {
        let mut log = Log::new(standby);
        let mut client = match self.connect(standby, ctx) {
            Ok(c) => c,
            Err(f) => {
                return log.done(
                    Status::Critical,
                    format!("standby: cannot connect as {}: {f}", self.user),
                );
            }
        };
        if let Err(e) = Self::privileges_ok(&mut client, false) {
            return log.done(Status::Critical, format!("standby: {e}"));
        }
        let (replica, read_only) = match (client.replica_status(), client.read_only()) {
            (Ok(r), Ok(ro)) => (r, ro),
            (Err(f), _) | (_, Err(f)) => {
                return log.done(Status::Critical, format!("standby: {f}"));
            }
        };
        let Some(r) = replica else {
            return log.done(
                Status::Critical,
                format!("standby {standby} is not a replica"),
            );
        };
        log.note(r.describe());
        let verdict = standby_verdict(&r, read_only, active, self.max_lag, |a, b| {
            crate::net::same_host(a, b, ctx.monitor_timeout)
        });
        log.done(verdict.0, verdict.1)
    }

    fn check_active(&self, active: &str, ctx: &Context) -> HostResult {
        let log = Log::new(active);
        match self.connect(active, ctx) {
            Err(f @ Failure::Down(_)) => log.done(
                Status::Warning,
                format!("active: unreachable for the admin account: {f}"),
            ),
            Err(f) => log.done(
                Status::Critical,
                format!("active: the admin account is refused: {f}"),
            ),
            Ok(mut c) => match c.read_only() {
                Ok(false) => log.done(Status::Ok, "active is writable"),
                Ok(true) => log.done(
                    Status::Critical,
                    format!("active {active} is read-only: writes fail"),
                ),
                Err(f) => log.done(Status::Critical, format!("active: {f}")),
            },
        }
    }
}

/// The readiness verdict on a standby from its replication status (pure, for tests).
fn standby_verdict(
    r: &ReplicaStatus,
    read_only: bool,
    active: &str,
    max_lag: Duration,
    same: impl Fn(&str, &str) -> bool,
) -> (Status, String) {
    if !same(&r.source_host, active) {
        return (
            Status::Critical,
            format!(
                "standby replicates from {}, not from the active {active}",
                r.source_host
            ),
        );
    }
    if !r.io_ok() || !r.sql_ok() {
        return (
            Status::Critical,
            format!("standby replication is broken: {}", r.describe()),
        );
    }
    if !read_only {
        return (
            Status::Critical,
            "standby is writable (read_only is OFF): writes there would be lost at failover"
                .to_string(),
        );
    }
    match r.seconds_behind {
        None => (
            Status::Warning,
            format!("standby lag unknown: {}", r.describe()),
        ),
        Some(lag) if Duration::from_secs(lag) > max_lag => (
            Status::Warning,
            format!(
                "standby lags {lag}s, more than max_lag {}: {}",
                crate::settings::format_duration(max_lag),
                r.describe()
            ),
        ),
        Some(_) => (Status::Ok, format!("standby read-only, {}", r.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> ReplicaStatus {
        ReplicaStatus {
            source_host: "10.0.0.1".into(),
            io_running: "Yes".into(),
            sql_running: "Yes".into(),
            seconds_behind: Some(0),
            ..ReplicaStatus::default()
        }
    }

    /// What a stopped replica holds, as MariaDB (`gtid_slave_pos`) and MySQL
    /// (`gtid_executed`) say it, and without GTIDs or an executed position.
    #[test]
    fn what_the_promoted_replica_held() {
        let stopped = ReplicaStatus {
            executed: ("mysql-bin.000003".into(), 400),
            ..healthy()
        };
        let state = |written: &str, applied: &str| mysql::ServerState {
            read_only: true,
            gtid_written: written.into(),
            gtid_applied: applied.into(),
        };
        type Row<'a> = (
            &'a ReplicaStatus,
            mysql::ServerState,
            Option<(&'a str, &'a str)>,
        );
        let rows: &[Row] = &[
            (
                &stopped,
                state("0-2-9", "0-1-54"),
                Some((
                    "mysql-bin.000003:400 (GTID 0-1-54)",
                    "Exec_Master_Log_Pos and gtid_slave_pos",
                )),
            ),
            (
                &stopped,
                state("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-56", ""),
                Some((
                    "mysql-bin.000003:400 (GTID 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-56)",
                    "the GTIDs it executed",
                )),
            ),
            (
                &stopped,
                state("", ""),
                Some(("mysql-bin.000003:400", "Exec_Master_Log_Pos after")),
            ),
            (&healthy(), state("0-1-5", "0-1-5"), None),
        ];
        for (status, state, want) in rows {
            let got = held_of(status, state);
            match (got, want) {
                (Some(h), Some((text, how))) => {
                    assert_eq!(h.position.text, *text);
                    assert!(h.how.contains(how), "{}", h.how);
                }
                (got, want) => assert_eq!(got.is_none(), want.is_none(), "{state:?}"),
            }
        }
    }

    fn verdict(r: &ReplicaStatus, read_only: bool) -> Status {
        standby_verdict(r, read_only, "10.0.0.1", Duration::from_secs(30), |a, b| {
            a == b
        })
        .0
    }

    #[test]
    fn only_silence_lets_the_promotion_go_around_the_old_primary() {
        let down = Failure::Down("10.0.0.1:3306: Connection refused (os error 111)".into());
        let refused = |code: u16, message: &str| Failure::Refused {
            code,
            message: message.into(),
        };
        // (failure, force, may go on, words)
        let table = [
            (down.clone(), false, true, "unreachable"),
            (down, true, true, "unreachable"),
            (
                refused(1040, "Too many connections"),
                false,
                false,
                "not promoted",
            ),
            (
                refused(1045, "Access denied for user"),
                false,
                false,
                "--force",
            ),
            (
                refused(1040, "Too many connections"),
                true,
                true,
                "(forced)",
            ),
            (
                refused(1045, "Access denied for user"),
                true,
                true,
                "may still take writes",
            ),
        ];
        for (f, force, goes_on, words) in table {
            let verdict = without_old_primary(&f, "10.0.0.1", force);
            assert_eq!(verdict.is_ok(), goes_on, "{f:?} force={force}");
            let text = verdict.unwrap_or_else(|e| e);
            assert!(text.contains(words), "{f:?}: {text}");
        }
    }

    #[test]
    fn standby_readiness_rules() {
        assert_eq!(verdict(&healthy(), true), Status::Ok);
        assert_eq!(
            verdict(&healthy(), false),
            Status::Critical,
            "a writable standby"
        );
        let sql_stopped = ReplicaStatus {
            sql_running: "No".into(),
            ..healthy()
        };
        assert_eq!(verdict(&sql_stopped, true), Status::Critical);
        let io_connecting = ReplicaStatus {
            io_running: "Connecting".into(),
            ..healthy()
        };
        assert_eq!(verdict(&io_connecting, true), Status::Critical);
        let lagging = ReplicaStatus {
            seconds_behind: Some(31),
            ..healthy()
        };
        assert_eq!(verdict(&lagging, true), Status::Warning);
        let elsewhere = ReplicaStatus {
            source_host: "10.0.0.9".into(),
            ..healthy()
        };
        assert_eq!(verdict(&elsewhere, true), Status::Critical);
    }
}
