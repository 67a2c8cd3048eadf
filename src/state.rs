//! The state store: one SQLite database (WAL) per instance, its versioned schema, the
//! instance lock, and every pool state transition.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::Error;
use crate::lost::Loss;
use crate::model::{PoolServers, Role};
use crate::monitor::{Durability, Replica};
use crate::orphans::Recorded;
use crate::position::Position;
use crate::rules::Progress;

use crate::model::{Concern, EventKind, Health, Status};

/// The schema this build writes. A database with a higher number was written by a newer
/// deadpool and is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 9;

const SCHEMA_V1: &str = "
CREATE TABLE pools (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    active TEXT NOT NULL,
    failures INTEGER NOT NULL,
    last_check_at INTEGER,
    last_system_check_at INTEGER,
    state_since INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE TABLE monitor_results (
    pool TEXT NOT NULL,
    role TEXT NOT NULL,
    health TEXT NOT NULL,
    message TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (pool, role)
);
CREATE TABLE readiness (
    pool TEXT NOT NULL,
    step_index INTEGER NOT NULL,
    step_name TEXT NOT NULL,
    host TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (pool, step_index, host)
);
CREATE TABLE ticks (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    pool TEXT,
    event TEXT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    step TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    output TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER
);
CREATE INDEX history_at ON history (at);
CREATE INDEX history_pool ON history (pool, id);
";

/// Version 2: database monitors record whether a server is read-only (split-brain checks).
const SCHEMA_V2: &str = "ALTER TABLE monitor_results ADD COLUMN read_only INTEGER;";

/// Version 3: a blocked pool's reason in kind (rule, step, hosts, status), so that a pool
/// that stays blocked records an event only when its reason changes in kind.
const SCHEMA_V3: &str = "ALTER TABLE pools ADD COLUMN reason_kind TEXT NOT NULL DEFAULT '';";

/// Version 4: a pool's maintenance pause (until when, since when, by whom, why), and a
/// count of chains started per pool that survives history pruning, started from history.
const SCHEMA_V4: &str = "
ALTER TABLE pools ADD COLUMN paused_until INTEGER;
ALTER TABLE pools ADD COLUMN paused_since INTEGER;
ALTER TABLE pools ADD COLUMN paused_by TEXT NOT NULL DEFAULT '';
ALTER TABLE pools ADD COLUMN paused_reason TEXT NOT NULL DEFAULT '';
CREATE TABLE failovers (pool TEXT PRIMARY KEY, started INTEGER NOT NULL);
INSERT INTO failovers (pool, started)
    SELECT pool, COUNT(*) FROM history
    WHERE event = 'failover_started' AND pool IS NOT NULL GROUP BY pool;
";

/// Version 5: what each pool has learned of its servers' positions (the primary's, each
/// standby's received and when it was last caught up, [`crate::rules::Progress`]), and
/// each monitor row's replication facts, both as JSON.
const SCHEMA_V5: &str = "
ALTER TABLE pools ADD COLUMN progress TEXT NOT NULL DEFAULT '';
ALTER TABLE monitor_results ADD COLUMN facts TEXT NOT NULL DEFAULT '';
";

/// Version 6: how far history has been pruned (the horizon of [`prune_horizon`]), so that
/// one round's wall clock never prunes more than a few intervals' worth.
const SCHEMA_V6: &str = "
CREATE TABLE pruning (id INTEGER PRIMARY KEY CHECK (id = 1), horizon INTEGER NOT NULL);
";

/// Version 7: each pool's servers as the config last named them (a JSON list of addresses,
/// in role order), so that a locked pool renamed or removed from the config is recognised
/// by its servers ([`crate::orphans`]).
const SCHEMA_V7: &str = "
CREATE TABLE pool_servers (pool TEXT PRIMARY KEY, servers TEXT NOT NULL);
";

/// Version 9: what a failover lost ([`crate::lost::Loss`]), as JSON, on its `lost` event.
const SCHEMA_V9: &str = "ALTER TABLE history ADD COLUMN lost TEXT NOT NULL DEFAULT '';";

/// The most tick intervals one round may move the pruning horizon forward: history that a
/// clock jump makes look old goes at ten times the pace of real time, not all at once.
pub const PRUNE_STEP_INTERVALS: u32 = 10;

/// Version 8: what each readiness result is about ([`Concern`]): where clients are sent
/// now, or whether a failover would work. Older rows are readiness until checked again.
const SCHEMA_V8: &str =
    "ALTER TABLE readiness ADD COLUMN concern TEXT NOT NULL DEFAULT 'readiness';";

/// The text of the history event that starts a chain ([`EventKind::FailoverStarted`]), for
/// SQL: each one inserted adds one to the pool's count of failovers.
pub const FAILOVER_STARTED: &str = "failover_started";

/// Longest a history entry's captured output may be.
const HISTORY_OUTPUT_CAP: usize = 16 * 1024;

pub use crate::model::PoolState;

/// One pool's row.
#[derive(Debug, Clone)]
pub struct PoolRecord {
    pub name: String,
    pub state: PoolState,
    pub active: Role,
    pub failures: u32,
    pub last_check_at: Option<i64>,
    pub last_system_check_at: Option<i64>,
    pub state_since: i64,
    pub reason: String,
    /// What kind of reason `reason` is (see [`crate::rules::BlockReason`]); empty when the
    /// state has no reason of a kind.
    pub reason_kind: String,
    /// A maintenance pause: no chain runs until it ends ([`crate::rules::paused`]).
    pub pause: Option<Pause>,
    /// What the rounds learned of the servers' positions, for the choice of a standby.
    pub progress: Progress,
}

/// What a person's change to a pool is checked against: its state, its active server and
/// when that state began, which a new chain begins again even toward the same server.
/// `since` is `None` for a pool without a record (armed on its primary, as a tick would
/// make it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: PoolState,
    pub active: Role,
    pub since: Option<i64>,
}

impl Snapshot {
    /// The snapshot of a record, or of none.
    pub fn of(rec: Option<&PoolRecord>) -> Snapshot {
        match rec {
            Some(r) => Snapshot {
                state: r.state,
                active: r.active,
                since: r.state_since.into(),
            },
            None => Snapshot {
                state: PoolState::Armed,
                active: Role::PRIMARY,
                since: None,
            },
        }
    }

    /// Whether `now` is still what this snapshot saw: a record that appeared meanwhile
    /// counts as unchanged when it is what a tick makes of a new pool.
    pub fn still(&self, now: &Snapshot) -> bool {
        let since = match (self.since, now.since) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.state == now.state && self.active == now.active && since
    }
}

/// A pool's maintenance pause, as `deadpool pause` records it (and as reports and
/// `tick --dry-run --json` show it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pause {
    /// When it ends by itself (ms since the epoch).
    pub until: i64,
    /// When it was set (ms since the epoch).
    pub since: i64,
    pub by: String,
    pub reason: String,
}

impl PoolRecord {
    /// A pool seen for the first time: armed, primary active.
    pub fn new(name: &str, now: i64) -> PoolRecord {
        PoolRecord {
            name: name.to_string(),
            state: PoolState::Armed,
            active: Role::PRIMARY,
            failures: 0,
            last_check_at: None,
            last_system_check_at: None,
            state_since: now,
            reason: String::new(),
            reason_kind: String::new(),
            pause: None,
            progress: Progress::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct MonitorRow {
    pub role: Role,
    pub health: Health,
    pub message: String,
    pub checked_at: i64,
    pub duration_ms: i64,
    /// For database monitors: whom the server replicates from and how far (a replica).
    pub replica: Option<Replica>,
    /// For database monitors: the server's own position (not a replica).
    pub position: Option<Position>,
    /// For database monitors: whether the server is read-only; `None` when unknown.
    pub read_only: Option<bool>,
    /// For database monitors, of a primary: whether its acknowledged writes are on a
    /// standby too.
    pub durability: Option<Durability>,
    /// Writable, with sessions that default to read-only ([`crate::monitor::Facts`]).
    pub fenced_softly: bool,
}

#[derive(Debug, Clone)]
pub struct ReadinessRow {
    pub step_index: usize,
    pub step_name: String,
    pub host: String,
    pub status: Status,
    pub concern: Concern,
    pub message: String,
    pub checked_at: i64,
}

/// One history entry, built with [`EventKind::of`] and the methods below. Empty strings mean
/// "not applicable". The kind and status are typed; they are text only in the row (SQLite,
/// etcd) and in `history --json`, where a missing status is `""`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Event {
    pub id: i64,
    pub at: i64,
    pub pool: Option<String>,
    pub event: EventKind,
    pub actor: String,
    pub step: String,
    pub host: String,
    /// `None` only in rows of old databases that recorded no status.
    #[serde(serialize_with = "status_text")]
    pub status: Option<Status>,
    pub message: String,
    pub output: String,
    pub duration_ms: Option<i64>,
    /// On a `lost` event: what the failover lost, in full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<Loss>,
}

/// A status as the row holds it: its name, or `""` for none.
fn status_text<S: serde::Serializer>(status: &Option<Status>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(status.map_or("", Status::as_str))
}

/// A history entry as text, as a SQLite row and etcd (its JSON) hold it.
#[derive(Debug, serde::Deserialize)]
pub struct EventText {
    /// The row's id; etcd keeps none (0, as for an event not yet written).
    #[serde(skip)]
    pub id: i64,
    pub at: i64,
    pub pool: Option<String>,
    pub event: String,
    pub actor: String,
    pub step: String,
    pub host: String,
    pub status: String,
    pub message: String,
    pub output: String,
    pub duration_ms: Option<i64>,
    /// What a failover lost (a `lost` event); absent in entries of older builds.
    #[serde(default)]
    pub lost: Option<Loss>,
}

impl EventText {
    /// The entry with its kind and status read (a status `""`: none). A kind or status this
    /// build does not know is an error naming it (every deadpool so far wrote only the kinds
    /// of [`EventKind`], so only a newer one could); readers leave such an entry out.
    pub fn typed(self) -> Result<Event, String> {
        let Some(event) = EventKind::parse(&self.event) else {
            return Err(format!("kind `{}`", self.event));
        };
        let status = match self.status.as_str() {
            "" => None,
            s => Some(Status::parse(s).ok_or_else(|| format!("status `{s}`"))?),
        };
        Ok(Event {
            id: self.id,
            at: self.at,
            pool: self.pool,
            event,
            actor: self.actor,
            step: self.step,
            host: self.host,
            status,
            message: self.message,
            output: self.output,
            duration_ms: self.duration_ms,
            lost: self.lost,
        })
    }
}

impl EventKind {
    /// A new event of this kind for the pool named `pool`, done by `actor`, status OK; the
    /// builder methods of [`Event`] fill in the rest.
    pub fn of(self, pool: &str, actor: &str) -> Event {
        Event {
            id: 0,
            at: now_ms(),
            pool: Some(pool.to_string()),
            event: self,
            actor: actor.to_string(),
            step: String::new(),
            host: String::new(),
            status: Some(Status::Ok),
            message: String::new(),
            output: String::new(),
            duration_ms: None,
            lost: None,
        }
    }
}

/// What an event records of one host's result (a step's action or preflight): `protocol`'s
/// `HostResult` converts into it, so that the state store needs no protocol.
#[derive(Debug, Clone, Copy)]
pub struct HostOutcome<'a> {
    pub host: &'a str,
    pub status: Status,
    pub message: &'a str,
    pub output: &'a str,
    pub duration: Duration,
}

impl Event {
    pub fn step(mut self, step: &str) -> Event {
        self.step = step.to_string();
        self
    }

    pub fn host(mut self, host: &str) -> Event {
        self.host = host.to_string();
        self
    }

    pub fn status(mut self, status: Status) -> Event {
        self.status = Some(status);
        self
    }

    pub fn message(mut self, message: impl Into<String>) -> Event {
        self.message = message.into();
        self
    }

    /// What a failover lost: its words are the message, its positions the output.
    pub fn loss(self, loss: Loss) -> Event {
        Event {
            output: loss.details().join("\n"),
            lost: Some(loss.clone()),
            ..self.status(loss.verdict.status()).message(loss.words)
        }
    }

    /// Host, status, message, output and duration from one host's result.
    pub fn host_result<'a>(self, h: impl Into<HostOutcome<'a>>) -> Event {
        let h = h.into();
        Event {
            output: h.output.to_string(),
            duration_ms: Some(h.duration.as_millis() as i64),
            ..self.host(h.host).status(h.status).message(h.message)
        }
    }
}

/// How history is pruned: `history_retention`, with a wall clock that may jump.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Events older than this go.
    pub keep: Duration,
    /// The most one round may move the pruning horizon forward ([`prune_horizon`]).
    pub step: Duration,
}

impl Retention {
    /// `keep`, at most [`PRUNE_STEP_INTERVALS`] tick intervals' worth per round.
    pub fn per_round(keep: Duration, tick_interval: Duration) -> Retention {
        Retention {
            keep,
            step: tick_interval.saturating_mul(PRUNE_STEP_INTERVALS),
        }
    }
}

/// Where history is pruned up to after a round (events older go): toward `target` (the
/// round's start less the retention), but at most `step` past the `last` horizon and never
/// back, so that no single round's wall clock decides that months have passed. Before any
/// horizon it starts at the `oldest` event; with neither there is nothing to prune.
pub fn prune_horizon(
    last: Option<i64>,
    oldest: Option<i64>,
    target: i64,
    step: i64,
) -> Option<i64> {
    let from = last.or(oldest)?;
    Some(target.clamp(from, from.saturating_add(step)))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The last tick: when it started and how long it ran, to its end, or while it runs, to
/// the end of its latest round (each round and the tick's end record it).
#[derive(Debug, Clone, Copy)]
pub struct TickRecord {
    pub started_at: i64,
    pub duration_ms: i64,
}

impl TickRecord {
    /// When the tick was last seen working: its end, or its latest round's end.
    pub fn seen_at(&self) -> i64 {
        self.started_at.saturating_add(self.duration_ms)
    }
}

/// Milliseconds since the Unix epoch: what every timestamp in the database is.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The instance lock: held for the whole run of a command that may change state. It lives
/// on its own file so that the database is never locked by anything but SQLite.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock, waiting up to `wait`. `Ok(None)` means another process holds it.
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<Option<Lock>> {
        ensure_dir(state_dir)?;
        let path = state_dir.join("deadpool.lock");
        // O_NOFOLLOW: a link planted in the state dir must not make root write elsewhere.
        crate::strict::trusted_file(&path, true)
            .map_err(|e| Error::Failed(format!("instance lock: {e}")))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .with_context(|| format!("cannot open the instance lock {}", path.display()))?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        // The pid is only for people reading the file; the lock itself is the flock.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Some(Lock { _file: file }))
    }

    /// The pid written by whoever holds the lock now, for messages.
    pub fn holder(state_dir: &Path) -> String {
        std::fs::read_to_string(state_dir.join("deadpool.lock"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .map_or_else(
                || "another deadpool process".to_string(),
                |pid| format!("pid {pid}"),
            )
    }
}

/// The state dir: created 0700 when missing; an existing one must be trusted (owner root or
/// the running user, not writable by group or others), or anyone could swap its files.
fn ensure_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    }
    crate::strict::trusted_dir(dir).map_err(|e| Error::Failed(format!("state dir: {e}")))?;
    Ok(())
}

/// The database and its WAL files: never through a link (symbolic or hard), never another
/// kind of file.
fn check_db_files(path: &Path) -> Result<()> {
    for p in [
        path.to_path_buf(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        crate::strict::trusted_file(&p, true)
            .map_err(|e| Error::Failed(format!("database: {e}")))?;
    }
    Ok(())
}

/// The database, shared by the threads of one run.
#[derive(Debug)]
pub struct State {
    conn: Mutex<Connection>,
    pub path: PathBuf,
    /// The schema version of the file: a read-only reader may meet an older one, whose
    /// missing columns read as their defaults.
    version: i64,
}

impl State {
    /// Opens the database for writing; call with the lock held. Only a state dir without
    /// any `deadpool.db` is a new install, whose database is created here; an existing
    /// file without deadpool's schema (empty, truncated to nothing) is refused.
    pub fn open(state_dir: &Path) -> Result<State> {
        ensure_dir(state_dir)?;
        let path = state_dir.join("deadpool.db");
        check_db_files(&path)?;
        if !path.exists() {
            create_database(&path)?;
        }
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        // Read before anything is written: switching an empty file to WAL would give it a
        // header, and it would look like a database from then on.
        if schema_version(&conn, &path)? == 0 {
            return Err(no_state(&path));
        }
        configure(&conn, &path)?;
        migrate(&conn, &path)?;
        Ok(State {
            conn: Mutex::new(conn),
            path,
            version: SCHEMA_VERSION,
        })
    }

    /// Opens the database read-only, for reports and dry runs. `Ok(None)`: no database yet
    /// (a new install); a file without deadpool's schema is refused, as by [`State::open`].
    pub fn open_read_only(state_dir: &Path) -> Result<Option<State>> {
        let path = state_dir.join("deadpool.db");
        // The files `open` refuses are refused here too: a report never reads through a link.
        check_db_files(&path)?;
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the database {}", path.display()));
            }
            Ok(_) => {}
        }
        crate::strict::trusted_dir(state_dir)
            .map_err(|e| Error::Failed(format!("state dir: {e}")))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(2))?;
        let conn = match schema_version(&conn, &path) {
            Ok(_) => conn,
            // Reading a WAL database needs its -shm file, which a reader that may not write
            // the state dir (Nagios, an immutable dir) cannot create. Then read the main file
            // as it stands: every finished tick has been checkpointed into it.
            Err(_) if !path.with_extension("db-shm").exists() || !dir_writable(state_dir) => {
                let uri = format!("file:{}?immutable=1", path.display());
                let c = Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
                    .with_context(|| format!("cannot open the database {}", path.display()))?;
                c.busy_timeout(Duration::from_secs(2))?;
                c
            }
            Err(e) => return Err(e),
        };
        let version = schema_version(&conn, &path)?;
        if version == 0 {
            return Err(no_state(&path));
        }
        check_version(version, &path)?;
        Ok(Some(State {
            conn: Mutex::new(conn),
            path,
            version,
        }))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pool(&self, name: &str) -> Result<Option<PoolRecord>> {
        let conn = self.conn();
        // Before version 4 there was no pause.
        let pause_columns = if self.version >= 4 {
            "paused_until, paused_since, paused_by, paused_reason"
        } else {
            "NULL, NULL, '', ''"
        };
        let progress = if self.version >= 5 {
            conn.query_row("SELECT progress FROM pools WHERE name = ?1", [name], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .unwrap_or_default()
        } else {
            String::new()
        };
        let progress = progress_from_json(name, &progress);
        let pause = conn
            .query_row(
                &format!("SELECT {pause_columns} FROM pools WHERE name = ?1"),
                [name],
                |row| {
                    let until: Option<i64> = row.get(0)?;
                    Ok(until.map(|until| -> rusqlite::Result<Pause> {
                        Ok(Pause {
                            until,
                            since: row.get::<_, Option<i64>>(1)?.unwrap_or(until),
                            by: row.get(2)?,
                            reason: row.get(3)?,
                        })
                    }))
                },
            )
            .optional()?
            .flatten()
            .transpose()?;
        conn.query_row(
            "SELECT name, state, active, failures, last_check_at, last_system_check_at, state_since, reason, reason_kind
             FROM pools WHERE name = ?1",
            [name],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<i64>>(4)?,
                    row.get::<_, Option<i64>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, String>(7)?,
                    row.get::<_, String>(8)?,
                ))
            },
        )
        .optional()?
        .map(|(name, state, active, failures, last_check_at, last_system_check_at, state_since, reason, reason_kind)| {
            let bad = |what: &str, value: &str| {
                anyhow::anyhow!(
                    "{}: pool `{name}` has {what} `{value}`, which this build does not know; was it written by a newer deadpool?",
                    self.path.display()
                )
            };
            Ok(PoolRecord {
                state: PoolState::parse(&state).ok_or_else(|| bad("state", &state))?,
                active: Role::parse(&active).ok_or_else(|| bad("active server", &active))?,
                failures: u32::try_from(failures).map_err(|_| bad("failure count", &failures.to_string()))?,
                name,
                last_check_at,
                last_system_check_at,
                state_since,
                reason,
                reason_kind,
                pause,
                progress,
            })
        })
        .transpose()
    }

    /// How many chains each pool has started (automatic failovers and promotes), counted
    /// when each started and kept when history is pruned. Before version 4, from history.
    pub fn failovers(&self) -> Result<BTreeMap<String, u64>> {
        let conn = self.conn();
        let sql = if self.version >= 4 {
            "SELECT pool, started FROM failovers".to_string()
        } else {
            format!(
                "SELECT pool, COUNT(*) FROM history WHERE event = '{FAILOVER_STARTED}' AND pool IS NOT NULL GROUP BY pool"
            )
        };
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (pool, n) = row?;
            out.insert(pool, u64::try_from(n).unwrap_or(0));
        }
        Ok(out)
    }

    /// Records each configured pool's servers (only where they changed): what recognises
    /// a locked pool once its name is no longer configured.
    pub fn note_servers(&self, pools: &[PoolServers]) -> Result<()> {
        let known = self.recorded_servers()?;
        let changed: Vec<(&str, String)> = pools
            .iter()
            .filter(|p| known.get(p.name).is_none_or(|s| s.as_slice() != p.servers))
            .map(|p| {
                let json = serde_json::to_string(p.servers).unwrap_or_default();
                (p.name, json)
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for (pool, servers) in &changed {
                tx.execute(
                    "INSERT OR REPLACE INTO pool_servers (pool, servers) VALUES (?1, ?2)",
                    params![pool, servers],
                )?;
            }
            Ok(())
        })
    }

    /// Each pool's servers as last recorded; before version 7, none.
    fn recorded_servers(&self) -> Result<BTreeMap<String, Vec<String>>> {
        let mut out = BTreeMap::new();
        if self.version < 7 {
            return Ok(out);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT pool, servers FROM pool_servers")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (pool, servers) = row?;
            // An unreadable list counts as unknown servers: the safer side of the rule.
            if let Ok(servers) = serde_json::from_str(&servers) {
                out.insert(pool, servers);
            }
        }
        Ok(out)
    }

    /// Every pool row, with its servers where recorded: what [`crate::orphans::find`] reads.
    pub fn records(&self) -> Result<Vec<Recorded>> {
        let mut servers = self.recorded_servers()?;
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, state, active, state_since FROM pools ORDER BY name")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, state, active, since) = row?;
            let (Some(state), Some(active)) = (PoolState::parse(&state), Role::parse(&active))
            else {
                bail!(
                    "{}: pool `{name}` has state `{state}`, active `{active}`, which this build does not know; was it written by a newer deadpool?",
                    self.path.display()
                );
            };
            out.push(Recorded {
                servers: servers.remove(&name),
                name,
                state,
                active,
                since,
            });
        }
        Ok(out)
    }

    /// The locks of pools no longer configured, and the `configured` pools they hold back.
    pub fn orphans(&self, configured: &[PoolServers]) -> Result<Vec<crate::orphans::Orphan>> {
        Ok(crate::orphans::find(configured, &self.records()?))
    }

    /// Drops what is recorded of a pool no longer configured (`reset --forget`): its row,
    /// servers, checks and readiness; its history stays, with `event` saying who dropped it.
    pub fn forget_pool(&self, name: &str, event: &Event) -> Result<()> {
        self.write(|tx| {
            delete_pool_rows(tx, name)?;
            insert_event(tx, event).map(drop)
        })
    }

    /// A renamed pool takes over its old name's record (`reset NEW --adopt OLD`): `rec` is
    /// written under its new name, the old rows go, and the old name's history and chain
    /// count move to the new name, so that the locked episode stays with the pool.
    pub fn adopt_pool(&self, old: &str, rec: &PoolRecord, event: &Event) -> Result<()> {
        self.write(|tx| {
            delete_pool_rows(tx, old)?;
            upsert_pool(tx, rec)?;
            tx.execute(
                "UPDATE history SET pool = ?2 WHERE pool = ?1",
                params![old, rec.name],
            )?;
            tx.execute(
                "INSERT INTO failovers (pool, started) SELECT ?2, started FROM failovers WHERE pool = ?1
                 ON CONFLICT(pool) DO UPDATE SET started = started + excluded.started",
                params![old, rec.name],
            )?;
            tx.execute("DELETE FROM failovers WHERE pool = ?1", [old])?;
            insert_event(tx, event).map(drop)
        })
    }

    /// One write: an immediate transaction, committed. The one place the database is
    /// written, so that every failure names the file (SQLite's "database or disk is full"
    /// names none).
    fn write<T>(&self, f: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let written = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .and_then(|tx| {
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            });
        written.map_err(|e| write_error(&self.path, e))
    }

    /// Writes a pool's row and, in the same immediate transaction, its history events.
    pub fn save_pool(&self, rec: &PoolRecord, events: &[Event]) -> Result<()> {
        self.write(|tx| {
            upsert_pool(tx, rec)?;
            events
                .iter()
                .try_for_each(|e| insert_event(tx, e).map(drop))
        })
    }

    pub fn add_events(&self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            events
                .iter()
                .try_for_each(|e| insert_event(tx, e).map(drop))
        })
    }

    pub fn save_monitor(&self, pool: &str, rows: &[MonitorRow]) -> Result<()> {
        self.write(|tx| insert_monitor(tx, pool, rows))
    }

    /// A tick's result for one pool in one transaction (one fsync): the monitor results,
    /// the pool's row and its events.
    pub fn save_tick(&self, rec: &PoolRecord, events: &[Event], rows: &[MonitorRow]) -> Result<()> {
        self.write(|tx| {
            insert_monitor(tx, &rec.name, rows)?;
            upsert_pool(tx, rec)?;
            events
                .iter()
                .try_for_each(|e| insert_event(tx, e).map(drop))
        })
    }

    pub fn monitor(&self, pool: &str) -> Result<Vec<MonitorRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            &format!(
                "SELECT role, health, message, checked_at, duration_ms, read_only, {} FROM monitor_results
                 WHERE pool = ?1 ORDER BY role",
                if self.version >= 5 { "facts" } else { "''" }
            ),
        )?;
        let rows = stmt.query_map([pool], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, Option<bool>>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (role, health, message, checked_at, duration_ms, read_only, facts) = row?;
            let facts: RowFacts = serde_json::from_str(&facts).unwrap_or_default();

            let (Some(role), Some(health)) = (Role::parse(&role), Health::parse(&health)) else {
                bail!(
                    "{}: unknown monitor row `{role}`/`{health}`; was it written by a newer deadpool?",
                    self.path.display()
                );
            };
            out.push(MonitorRow {
                role,
                health,
                message,
                checked_at,
                duration_ms,
                read_only,
                replica: facts.replica,
                position: facts.position,
                durability: facts.durability,
                fenced_softly: facts.fenced_softly,
            });
        }
        Ok(out)
    }

    /// Replaces a pool's readiness results and returns the previous ones (for change events).
    pub fn save_readiness(&self, pool: &str, rows: &[ReadinessRow]) -> Result<Vec<ReadinessRow>> {
        let previous = self.readiness(pool)?;
        self.write(|tx| {
            tx.execute("DELETE FROM readiness WHERE pool = ?1", [pool])?;
            for row in rows {
                tx.execute(
                    "INSERT OR REPLACE INTO readiness (pool, step_index, step_name, host, status, message, checked_at, concern)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![pool, row.step_index as i64, row.step_name, row.host, row.status.as_str(), row.message, row.checked_at, row.concern.as_str()],
                )?;
            }
            Ok(())
        })?;
        Ok(previous)
    }

    /// Records when a pool's readiness checks last ran (a pool row that does not exist yet
    /// is left to the next detection round).
    pub fn readiness_checked(&self, pool: &str, at: i64) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE pools SET last_system_check_at = ?2 WHERE name = ?1",
                params![pool, at],
            )
            .map(drop)
        })
    }

    pub fn readiness(&self, pool: &str) -> Result<Vec<ReadinessRow>> {
        let conn = self.conn();
        let concern = if self.version >= 8 {
            "concern"
        } else {
            "'readiness'"
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT step_index, step_name, host, status, message, checked_at, {concern}
             FROM readiness WHERE pool = ?1 ORDER BY step_index, host"
        ))?;
        let rows = stmt.query_map([pool], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (step_index, step_name, host, status, message, checked_at, concern) = row?;
            let Some(status) = Status::parse(&status) else {
                bail!(
                    "{}: unknown readiness status `{status}`; was it written by a newer deadpool?",
                    self.path.display()
                );
            };
            let Some(concern) = Concern::parse(&concern) else {
                bail!(
                    "{}: unknown readiness concern `{concern}`; was it written by a newer deadpool?",
                    self.path.display()
                );
            };
            out.push(ReadinessRow {
                step_index: step_index as usize,
                step_name,
                host,
                status,
                concern,
                message,
                checked_at,
            });
        }
        Ok(out)
    }

    /// Records a finished round and prunes history ([`Retention`]): events older than the
    /// horizon go, but never those of a locked pool's current episode, from the start of the
    /// chain that locked it on: what a person needs to see before `reset`.
    pub fn record_tick(
        &self,
        started_at: i64,
        duration: Duration,
        retention: Retention,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO ticks (id, started_at, duration_ms) VALUES (1, ?1, ?2)",
                params![started_at, duration.as_millis() as i64],
            )?;
            let last: Option<i64> = tx
                .query_row("SELECT horizon FROM pruning WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            let oldest: Option<i64> = match last {
                Some(_) => None,
                None => tx.query_row("SELECT MIN(at) FROM history", [], |r| r.get(0))?,
            };
            let target = started_at.saturating_sub(millis(retention.keep));
            if let Some(horizon) = prune_horizon(last, oldest, target, millis(retention.step)) {
                tx.execute(
                    "INSERT OR REPLACE INTO pruning (id, horizon) VALUES (1, ?1)",
                    [horizon],
                )?;
                let locked = [
                    PoolState::FailingOver,
                    PoolState::FailedOver,
                    PoolState::FailoverFailed,
                    PoolState::Interrupted,
                ]
                .map(|s| format!("'{}'", s.as_str()))
                .join(", ");
                tx.execute(
                    &format!(
                        "WITH episode (pool, first) AS MATERIALIZED (
                           SELECT p.name, (SELECT MAX(s.id) FROM history s
                                           WHERE s.pool = p.name AND s.event = '{FAILOVER_STARTED}')
                           FROM pools p WHERE p.state IN ({locked}))
                         DELETE FROM history WHERE at < ?1 AND NOT EXISTS
                           (SELECT 1 FROM episode e WHERE e.pool = history.pool AND history.id >= e.first)"
                    ),
                    [horizon],
                )?;
            }
            Ok(())
        })
    }

    /// Records the tick's whole duration when it ends (its rounds recorded it up to theirs).
    pub fn tick_ended(&self, started_at: i64, duration: Duration) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE ticks SET duration_ms = ?2 WHERE id = 1 AND started_at = ?1",
                params![started_at, duration.as_millis() as i64],
            )
            .map(drop)
        })
    }

    pub fn last_tick(&self) -> Result<Option<TickRecord>> {
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT started_at, duration_ms FROM ticks WHERE id = 1",
                [],
                |r| {
                    Ok(TickRecord {
                        started_at: r.get(0)?,
                        duration_ms: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// What the chain that locked `pool` lost: its newest `lost` event since the chain's
    /// start (`None` before version 9, or when its chain recorded none).
    pub fn loss(&self, pool: &str) -> Result<Option<Loss>> {
        if self.version < 9 {
            return Ok(None);
        }
        let conn = self.conn();
        let text: Option<String> = conn
            .query_row(
                &format!(
                    "SELECT lost FROM history WHERE pool = ?1 AND event = '{}' AND id >
                       (SELECT COALESCE(MAX(id), 0) FROM history WHERE pool = ?1 AND event = '{FAILOVER_STARTED}')
                     ORDER BY id DESC LIMIT 1",
                    EventKind::Lost.as_str()
                ),
                [pool],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.as_deref().and_then(loss_from_json))
    }

    /// The newest `limit` events (optionally of one pool), oldest first.
    pub fn history(&self, pool: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT id, at, pool, event, actor, step, host, status, message, output, duration_ms, {} FROM history
             WHERE ?1 IS NULL OR pool = ?1 ORDER BY id DESC LIMIT ?2",
            if self.version >= 9 { "lost" } else { "''" }
        ))?;
        let rows = stmt.query_map(params![pool, limit], |r| {
            Ok(EventText {
                id: r.get(0)?,
                at: r.get(1)?,
                pool: r.get(2)?,
                event: r.get(3)?,
                actor: r.get(4)?,
                step: r.get(5)?,
                host: r.get(6)?,
                status: r.get(7)?,
                message: r.get(8)?,
                output: r.get(9)?,
                duration_ms: r.get(10)?,
                lost: loss_from_json(&r.get::<_, String>(11)?),
            })
        })?;
        let mut events = Vec::new();
        for row in rows {
            let row = row?;
            let id = row.id;
            // An event of a kind or status this build does not know (only a newer deadpool
            // could have written it) is left out with a warning, as in etcd's history: a
            // tick that reads a pool's chain must not stop at it.
            match row.typed() {
                Ok(event) => events.push(event),
                Err(e) => crate::warn!(
                    "{}: history event {id} has {e}, which this build does not know (was it written by a newer deadpool?); left out",
                    self.path.display()
                ),
            }
        }
        events.reverse();
        Ok(events)
    }
}

/// What a failover lost, from its event's `lost` column: `None` for an empty one or one
/// this build cannot read (a newer deadpool's); the event's words still say it.
fn loss_from_json(text: &str) -> Option<Loss> {
    if text.trim().is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// Writes a pool's row. `last_system_check_at` is only set on insert: the readiness checks
/// run beside detection and record their own time with [`State::readiness_checked`].
///
/// The pause is written too: every writer read the record under the instance lock, so it
/// holds the pause as it stands (and `reset` keeps it).
fn upsert_pool(conn: &Connection, rec: &PoolRecord) -> rusqlite::Result<usize> {
    let pause = rec.pause.as_ref();
    conn.execute(
        "INSERT INTO pools (name, state, active, failures, last_check_at, last_system_check_at, state_since, reason, reason_kind,
                            paused_until, paused_since, paused_by, paused_reason, progress)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT(name) DO UPDATE SET state = ?2, active = ?3, failures = ?4, last_check_at = ?5,
           state_since = ?7, reason = ?8, reason_kind = ?9,
           paused_until = ?10, paused_since = ?11, paused_by = ?12, paused_reason = ?13, progress = ?14",
        params![
            rec.name,
            rec.state.as_str(),
            rec.active.as_str(),
            rec.failures,
            rec.last_check_at,
            rec.last_system_check_at,
            rec.state_since,
            rec.reason,
            rec.reason_kind,
            pause.map(|p| p.until),
            pause.map(|p| p.since),
            pause.map_or("", |p| p.by.as_str()),
            pause.map_or("", |p| p.reason.as_str()),
            progress_json(&rec.progress),
        ],
    )
}

/// Every row of one pool but its history and chain count.
fn delete_pool_rows(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    for table in ["monitor_results", "readiness"] {
        conn.execute(&format!("DELETE FROM {table} WHERE pool = ?1"), [name])?;
    }
    conn.execute("DELETE FROM pool_servers WHERE pool = ?1", [name])?;
    conn.execute("DELETE FROM pools WHERE name = ?1", [name])?;
    Ok(())
}

/// A pool's progress as the database and etcd keep it: empty when nothing is known.
pub fn progress_json(progress: &Progress) -> String {
    if *progress == Progress::default() {
        return String::new();
    }
    serde_json::to_string(progress).unwrap_or_default()
}

/// A pool's progress from its JSON. What cannot be read counts as nothing known (with a
/// warning): positions are learned again within a round, and a choice made without them
/// says so.
pub fn progress_from_json(pool: &str, text: &str) -> Progress {
    if text.trim().is_empty() {
        return Progress::default();
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        crate::warn!(
            "pool {pool}: the recorded positions cannot be read ({e}); learning them anew"
        );
        Progress::default()
    })
}

fn insert_monitor(conn: &Connection, pool: &str, rows: &[MonitorRow]) -> rusqlite::Result<()> {
    for row in rows {
        conn.execute(
            "INSERT OR REPLACE INTO monitor_results
               (pool, role, health, message, checked_at, duration_ms, read_only, facts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                pool,
                row.role.as_str(),
                row.health.as_str(),
                row.message,
                row.checked_at,
                row.duration_ms,
                row.read_only,
                row_facts_json(row)
            ],
        )?;
    }
    Ok(())
}

/// A monitor row's replication facts, as its `facts` column holds them.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct RowFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    replica: Option<Replica>,
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<Position>,
    #[serde(skip_serializing_if = "Option::is_none")]
    durability: Option<Durability>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fenced_softly: bool,
}

fn row_facts_json(row: &MonitorRow) -> String {
    if row.replica.is_none()
        && row.position.is_none()
        && row.durability.is_none()
        && !row.fenced_softly
    {
        return String::new();
    }
    let facts = RowFacts {
        replica: row.replica.clone(),
        position: row.position.clone(),
        durability: row.durability.clone(),
        fenced_softly: row.fenced_softly,
    };
    serde_json::to_string(&facts).unwrap_or_default()
}

fn insert_event(conn: &Connection, e: &Event) -> rusqlite::Result<usize> {
    let output = crate::text::truncate(&e.output, HISTORY_OUTPUT_CAP);
    if e.event == EventKind::FailoverStarted
        && let Some(pool) = &e.pool
    {
        conn.execute(
            "INSERT INTO failovers (pool, started) VALUES (?1, 1)
             ON CONFLICT(pool) DO UPDATE SET started = started + 1",
            [pool],
        )?;
    }
    let lost = (e.lost.as_ref())
        .and_then(|l| serde_json::to_string(l).ok())
        .unwrap_or_default();
    conn.execute(
        "INSERT INTO history (at, pool, event, actor, step, host, status, message, output, duration_ms, lost)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            e.at,
            e.pool,
            e.event.as_str(),
            e.actor,
            e.step,
            e.host,
            e.status.map_or("", Status::as_str),
            e.message,
            output,
            e.duration_ms,
            lost
        ],
    )
}

/// A failed write, naming the database; a full disk or an I/O error says where to look.
fn write_error(path: &Path, e: rusqlite::Error) -> anyhow::Error {
    match space_problem(&e) {
        Some(what) => anyhow::anyhow!(
            "cannot write the state database {} ({what}: {e}); free space on its file system, where its -wal and -shm files live too",
            path.display()
        ),
        None => anyhow::anyhow!("cannot write the state database {}: {e}", path.display()),
    }
}

/// "the disk is full" or "a disk I/O error", when SQLite says so.
fn space_problem(e: &rusqlite::Error) -> Option<&'static str> {
    match e.sqlite_error_code()? {
        rusqlite::ErrorCode::DiskFull => Some("the disk is full"),
        rusqlite::ErrorCode::SystemIoFailure => Some("a disk I/O error, often a full disk"),
        _ => None,
    }
}

fn configure(conn: &Connection, path: &Path) -> Result<()> {
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| match space_problem(&e) {
            // Switching to WAL creates the -wal and -shm files: the first write of a run.
            Some(_) => write_error(path, e),
            None => anyhow::Error::new(e).context(format!(
                "{}: cannot switch to WAL; is it a deadpool database?",
                path.display()
            )),
        })?;
    if !mode.eq_ignore_ascii_case("wal") {
        bail!(
            "{}: could not switch the database to WAL mode (got {mode})",
            path.display()
        );
    }
    // FULL: a state transition that returned is on disk, even across power loss. A tick
    // writes a handful of small transactions, so the cost is a few fsyncs per tick.
    conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| match space_problem(&e) {
            // The first read of a run maps the -shm file, which a full disk refuses.
            Some(_) => write_error(path, e),
            None => anyhow::Error::new(e).context(format!(
                "{}: cannot read the database; is it a deadpool database, or damaged?",
                path.display()
            )),
        })
}

fn check_version(version: i64, path: &Path) -> Result<()> {
    if version > SCHEMA_VERSION {
        bail!(
            "{}: the database has schema version {version}, written by a newer deadpool (this build knows up to {SCHEMA_VERSION}); run the newer deadpool, or move the database aside",
            path.display()
        );
    }
    Ok(())
}

/// A new install's database, created whole under a temporary name and linked into place:
/// `deadpool.db` exists only with its schema, so a crash while creating it leaves no empty
/// file that a later command would have to refuse.
fn create_database(path: &Path) -> Result<()> {
    let tmp = path.with_extension("db.new");
    // What a crash during an earlier creation left behind.
    for p in [
        tmp.clone(),
        tmp.with_extension("new-wal"),
        tmp.with_extension("new-shm"),
        tmp.with_extension("new-journal"),
    ] {
        if crate::strict::trusted_file(&p, true)
            .map_err(|e| Error::Failed(format!("database: {e}")))?
        {
            std::fs::remove_file(&p)
                .with_context(|| format!("cannot remove the leftover {}", p.display()))?;
        }
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot create the database {}", tmp.display()))?;
    {
        let conn = Connection::open(&tmp)
            .with_context(|| format!("cannot open the database {}", tmp.display()))?;
        configure(&conn, &tmp)?;
        create_schema(&conn, &tmp)?;
        migrate(&conn, &tmp)?;
        // Closing checkpoints the WAL into the file, which keeps WAL mode in its header.
    }
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write the database {}", tmp.display()))?;
    // A link, not a rename: it never replaces a file that appeared meanwhile.
    std::fs::hard_link(&tmp, path)
        .with_context(|| format!("cannot create the database {}", path.display()))?;
    std::fs::remove_file(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("cannot sync the state dir {}", dir.display()))?;
    }
    Ok(())
}

/// The refusal of a `deadpool.db` without deadpool's schema. Only a missing file is a new
/// install: an existing one lost what it held (truncated, emptied, replaced), and taking it
/// for new would arm every locked pool again on the server it failed away from.
fn no_state(path: &Path) -> anyhow::Error {
    let what = match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => "is empty (0 bytes)",
        _ => "holds no deadpool state (no schema)",
    };
    let p = path.display();
    Error::Failed(format!(
        "{p} {what}: the state of this instance is lost or damaged, and nothing was done (a new install has no such file at all). Restore it from a backup. To start afresh instead, every pool armed on its configured primary and the history gone, move it away yourself (`mv {p} {p}.lost`) and run the command again"
    ))
    .into()
}

/// The first version of the schema, in a new database (version 0: nothing in it yet).
fn create_schema(conn: &Connection, path: &Path) -> Result<()> {
    if schema_version(conn, path)? != 0 {
        bail!("{}: not a new database", path.display());
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
    ))
    .with_context(|| format!("{}: cannot create the schema", path.display()))
}

/// Brings the schema up to [`SCHEMA_VERSION`], one version at a time, each in a transaction.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version = schema_version(conn, path)?;
    check_version(version, path)?;
    if version < 1 {
        // Only a new database starts at 0 ([`create_schema`]); callers refuse others.
        bail!("{}: no schema to upgrade", path.display());
    }
    for (to, sql) in [
        (2, SCHEMA_V2),
        (3, SCHEMA_V3),
        (4, SCHEMA_V4),
        (5, SCHEMA_V5),
        (6, SCHEMA_V6),
        (7, SCHEMA_V7),
        (8, SCHEMA_V8),
        (9, SCHEMA_V9),
    ] {
        if version < to {
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {sql} PRAGMA user_version = {to}; COMMIT;"
            ))
            .with_context(|| {
                format!(
                    "{}: cannot upgrade the schema to version {to}",
                    path.display()
                )
            })?;
        }
    }
    let file_mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if file_mode & 0o077 != 0 {
        crate::warn!(
            "{} is readable by others (mode {file_mode:o}); run `chmod 600` on it",
            path.display()
        );
    }
    Ok(())
}

/// Whether this process may create files in `dir` (access(2) honours root's powers and
/// read-only mounts; an immutable directory is caught by the caller's retry).
fn dir_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_a_pool_and_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let mut rec = PoolRecord::new("db", 1000);
        rec.failures = 2;
        rec.state = PoolState::Blocked;
        state.save_pool(&rec, &[]).unwrap();
        let back = state.pool("db").unwrap().unwrap();
        assert_eq!(back.failures, 2);
        assert_eq!(back.state, PoolState::Blocked);
        let mode = std::fs::metadata(dir.path().join("deadpool.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(state);

        let conn = Connection::open(dir.path().join("deadpool.db")).unwrap();
        conn.execute_batch("PRAGMA user_version = 99").unwrap();
        drop(conn);
        let err = State::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("newer deadpool"), "{err}");
        let err = State::open_read_only(dir.path()).unwrap_err().to_string();
        assert!(err.contains("newer deadpool"), "{err}");
    }

    /// Only a missing file is a new install: an empty `deadpool.db`, or a SQLite file
    /// without deadpool's schema, is refused by writers and readers and left as it is.
    #[test]
    fn a_database_file_without_the_schema_is_refused_never_taken_for_new() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deadpool.db");
        std::fs::write(&path, b"").unwrap();
        let err = State::open(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("deadpool.db is empty (0 bytes)")
                && err.contains("backup")
                && err.contains("mv "),
            "{err}"
        );
        let err = State::open_read_only(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is empty (0 bytes)"), "{err}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "left as it is");

        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        drop(conn);
        for err in [
            State::open(dir.path()).unwrap_err().to_string(),
            State::open_read_only(dir.path()).unwrap_err().to_string(),
        ] {
            assert!(err.contains("holds no deadpool state"), "{err}");
        }
    }

    /// A new database appears whole: what a crash during an earlier creation left under the
    /// temporary name is removed, and the database has the current schema.
    #[test]
    fn a_new_database_is_created_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(State::open_read_only(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join("deadpool.db.new"), b"").unwrap();
        let state = State::open(dir.path()).unwrap();
        let version: i64 = state
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert!(!dir.path().join("deadpool.db.new").exists());
        drop(state);
        assert!(State::open_read_only(dir.path()).unwrap().is_some());
        assert!(State::open(dir.path()).is_ok(), "opened again as it is");
    }

    #[test]
    fn a_version_1_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deadpool.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("{SCHEMA_V1} PRAGMA user_version = 1;"))
            .unwrap();
        conn.execute(
            "INSERT INTO monitor_results VALUES ('db', 'primary', 'up', 'ok', 1, 2)",
            [],
        )
        .unwrap();
        drop(conn);
        let state = State::open(dir.path()).unwrap();
        let rows = state.monitor("db").unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].read_only, None);
        let version: i64 = state
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A version 3 database (before pauses): read as it is by a reader, which may not
    /// upgrade it, and upgraded by a writer, with the failover count taken from history.
    #[test]
    fn a_version_3_database_is_read_and_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deadpool.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "{SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3} PRAGMA user_version = 3;"
        ))
        .unwrap();
        conn.execute(
            "INSERT INTO pools (name, state, active, failures, state_since) VALUES ('db', 'failed_over', 'secondary', 0, 1)",
            [],
        )
        .unwrap();
        for event in [FAILOVER_STARTED, "failed_over", FAILOVER_STARTED] {
            conn.execute(
                "INSERT INTO history (at, pool, event) VALUES (1, 'db', ?1)",
                [event],
            )
            .unwrap();
        }
        drop(conn);
        let reader = State::open_read_only(dir.path()).unwrap().unwrap();
        let rec = reader.pool("db").unwrap().unwrap();
        assert_eq!((rec.state, rec.pause), (PoolState::FailedOver, None));
        assert_eq!(reader.failovers().unwrap().get("db"), Some(&2));
        drop(reader);

        let state = State::open(dir.path()).unwrap();
        assert_eq!(state.failovers().unwrap().get("db"), Some(&2));
        let mut rec = state.pool("db").unwrap().unwrap();
        let pause = Pause {
            until: 5000,
            since: 1000,
            by: "alice".into(),
            reason: "patching".into(),
        };
        rec.pause = Some(pause.clone());
        state.save_pool(&rec, &[]).unwrap();
        assert_eq!(state.pool("db").unwrap().unwrap().pause, Some(pause));
    }

    /// A readiness row keeps what it is about; one written before version 8 is read, and
    /// upgraded, as readiness.
    #[test]
    fn readiness_rows_keep_what_they_are_about() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("deadpool.db")).unwrap();
        conn.execute_batch(&format!(
            "{SCHEMA_V1} {SCHEMA_V2} {SCHEMA_V3} {SCHEMA_V4} {SCHEMA_V5} PRAGMA user_version = 5;
             INSERT INTO readiness (pool, step_index, step_name, host, status, message, checked_at)
             VALUES ('db', 0, 'hosts', 'app1', 'CRITICAL', 'db points at the standby', 1);"
        ))
        .unwrap();
        drop(conn);
        let concerns = |state: &State| -> Vec<Concern> {
            (state.readiness("db").unwrap().iter())
                .map(|r| r.concern)
                .collect()
        };
        let reader = State::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(concerns(&reader), [Concern::Readiness]);
        drop(reader);
        let state = State::open(dir.path()).unwrap();
        assert_eq!(concerns(&state), [Concern::Readiness]);
        let mut rows = state.readiness("db").unwrap();
        rows[0].concern = Concern::Direction;
        state.save_readiness("db", &rows).unwrap();
        assert_eq!(concerns(&state), [Concern::Direction]);
    }

    /// The failover count only grows: pruning the history that started it keeps it.
    #[test]
    fn the_failover_count_survives_history_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let started = |at| Event {
            at,
            ..EventKind::FailoverStarted.of("db", "tick")
        };
        state.add_events(&[started(1), started(2)]).unwrap();
        let retention = Retention {
            keep: Duration::from_secs(10),
            step: Duration::from_secs(1000),
        };
        state
            .record_tick(100_000, Duration::ZERO, retention)
            .unwrap();
        assert!(state.history(None, 10).unwrap().is_empty(), "pruned");
        assert_eq!(state.failovers().unwrap().get("db"), Some(&2));
        assert_eq!(EventKind::FailoverStarted.as_str(), FAILOVER_STARTED);
    }

    /// A `lost` event keeps its loss whole; the pool's loss is its newest chain's only.
    #[test]
    fn a_failovers_loss_is_kept_with_its_chain() {
        use crate::lost::{Input, NewFrom, NewPrimary, OldFrom, OldPrimary, assess};
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let loss = assess(Input {
            unit: crate::position::Unit::Redis,
            old: OldPrimary {
                address: "db1".into(),
                position: Some(Position::redis(1205)),
                seen_at: Some(1000),
                from: OldFrom::LastHealthyCheck,
            },
            new: NewPrimary {
                address: "db2".into(),
                position: Some(Position::redis(1000)),
                from: NewFrom::Promotion,
                how: "master_repl_offset".into(),
                timeline_before: None,
            },
            salvaged: None,
            outage_at: Some(1800),
            started_at: 3000,
        });
        assert_eq!(state.loss("db").unwrap(), None);
        let started = EventKind::FailoverStarted.of("db", "tick");
        let lost = EventKind::Lost.of("db", "tick").loss(loss.clone());
        assert_eq!(lost.status, Some(Status::Warning));
        assert_eq!(lost.message, loss.words);
        state.add_events(&[started.clone(), lost]).unwrap();
        let events = state.history(Some("db"), 10).unwrap();
        assert_eq!(events[1].lost.as_ref(), Some(&loss));
        assert!(events[1].output.starts_with("old primary db1: offset 1205"));
        assert_eq!(events[0].lost, None);
        let json = serde_json::to_value(&events[1]).unwrap();
        assert_eq!(json["lost"]["verdict"]["amount"], 205);
        assert!(
            serde_json::to_value(&events[0])
                .unwrap()
                .get("lost")
                .is_none()
        );
        assert_eq!(state.loss("db").unwrap(), Some(loss));
        // A newer chain that recorded none yet: the old loss is not its.
        state.add_events(&[started]).unwrap();
        assert_eq!(state.loss("db").unwrap(), None);
        assert_eq!(state.loss("other").unwrap(), None);
    }

    #[test]
    fn snapshot_table() {
        let at = |state, active, since| Snapshot {
            state,
            active,
            since,
        };
        let (armed, failing, failed) = (
            PoolState::Armed,
            PoolState::FailingOver,
            PoolState::FailoverFailed,
        );
        let (p, s) = (Role::PRIMARY, Role::SECONDARY);
        // (seen when confirmed, seen after the lock, unchanged)
        let rows = [
            (at(armed, p, Some(1)), at(armed, p, Some(1)), true),
            (at(failing, s, Some(1)), at(failed, s, Some(2)), false),
            (at(armed, p, Some(1)), at(armed, s, Some(1)), false),
            // A new episode toward the same server.
            (at(failed, s, Some(1)), at(failed, s, Some(5)), false),
            // No record yet, then a tick's new record.
            (Snapshot::of(None), at(armed, p, Some(3)), true),
            (Snapshot::of(None), at(failed, s, Some(3)), false),
            (at(failed, s, Some(1)), Snapshot::of(None), false),
        ];
        for (seen, now, same) in rows {
            assert_eq!(seen.still(&now), same, "{seen:?} -> {now:?}");
        }
    }

    #[test]
    fn prune_horizon_table() {
        // (last horizon, oldest event, target, step, new horizon)
        let rows = [
            (None, None, 500, 10, None),
            (None, Some(100), 500, 10, Some(110)),
            (None, Some(100), 105, 10, Some(105)),
            (None, Some(100), 50, 10, Some(100)),
            (Some(200), Some(100), 500, 10, Some(210)),
            (Some(200), None, 205, 10, Some(205)),
            // A clock that went back never moves the horizon back.
            (Some(200), None, 20, 10, Some(200)),
            (Some(i64::MAX - 1), None, i64::MAX, 10, Some(i64::MAX)),
        ];
        for (last, oldest, target, step, horizon) in rows {
            assert_eq!(
                prune_horizon(last, oldest, target, step),
                horizon,
                "{last:?} {oldest:?} {target} {step}"
            );
        }
    }

    /// A round whose clock is far ahead prunes one step's worth, and a locked pool's
    /// current episode (from its last `failover_started`) is never pruned; once the pool is
    /// re-armed, its episode ages out like the rest.
    #[test]
    fn pruning_goes_by_steps_and_keeps_a_locked_pools_episode() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let at = |at, kind: EventKind, pool: &str| Event {
            at,
            ..kind.of(pool, "tick")
        };
        state
            .add_events(&[
                at(1_000, EventKind::Readiness, "db"),
                at(2_000, EventKind::FailoverStarted, "db"),
                at(2_500, EventKind::Readiness, "other"),
                at(3_000, EventKind::Step, "db"),
                at(4_000, EventKind::End(PoolState::FailedOver), "db"),
                at(9_000, EventKind::Readiness, "other"),
            ])
            .unwrap();
        let mut rec = PoolRecord::new("db", 4_000);
        rec.state = PoolState::FailedOver;
        state.save_pool(&rec, &[]).unwrap();
        let kinds = |state: &State| -> Vec<(i64, String)> {
            let events = state.history(None, 100).unwrap();
            events.iter().map(|e| (e.at, e.event.to_string())).collect()
        };
        let retention = Retention {
            keep: Duration::from_secs(1),
            step: Duration::from_millis(2_000),
        };
        // 90 days ahead: the horizon moves from the oldest event (1 s) by 2 s, to 3 s.
        let far = 90 * 86_400_000;
        state.record_tick(far, Duration::ZERO, retention).unwrap();
        assert_eq!(
            kinds(&state),
            [
                (2_000, "failover_started".to_string()),
                (3_000, "step".to_string()),
                (4_000, "failed_over".to_string()),
                (9_000, "readiness".to_string()),
            ],
            "db's episode kept, other's event at 2.5 s pruned, db's older one too"
        );
        for _ in 0..10 {
            state.record_tick(far, Duration::ZERO, retention).unwrap();
        }
        assert_eq!(kinds(&state).len(), 3, "only db's episode is left");
        rec.state = PoolState::Armed;
        state.save_pool(&rec, &[]).unwrap();
        state.record_tick(far, Duration::ZERO, retention).unwrap();
        assert!(kinds(&state).is_empty(), "{:?}", kinds(&state));
    }

    /// A renamed pool's record, history and chain count move to its new name; a dropped
    /// one leaves its history; the servers recorded for each are what orphans are found by.
    #[test]
    fn adopting_and_forgetting_a_pool_no_longer_configured() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let servers = vec!["db1".to_string(), "DB2.".to_string()];
        let old = PoolServers {
            name: "db",
            servers: &servers,
        };
        state.note_servers(&[old]).unwrap();
        let mut rec = PoolRecord::new("db", 1);
        rec.state = PoolState::FailedOver;
        rec.active = Role::SECONDARY;
        state
            .save_pool(&rec, &[EventKind::FailoverStarted.of("db", "tick")])
            .unwrap();
        let new_servers = vec!["db2".to_string(), "db1".to_string()];
        let new = PoolServers {
            name: "orders",
            servers: &new_servers,
        };
        let orphans = state.orphans(&[new]).unwrap();
        assert_eq!(orphans.len(), 1);
        assert_eq!(orphans[0].record.servers.as_deref(), Some(&servers[..]));
        assert_eq!(orphans[0].holds, ["orders"]);

        let adopted = PoolRecord {
            name: "orders".to_string(),
            active: Role::PRIMARY,
            ..rec.clone()
        };
        let event = EventKind::Adopted.of("orders", "alice");
        state.adopt_pool("db", &adopted, &event).unwrap();
        assert!(state.pool("db").unwrap().is_none());
        let back = state.pool("orders").unwrap().unwrap();
        assert_eq!(
            (back.state, back.active),
            (PoolState::FailedOver, Role::PRIMARY)
        );
        let kinds: Vec<String> = (state.history(Some("orders"), 10).unwrap())
            .iter()
            .map(|e| e.event.to_string())
            .collect();
        assert_eq!(kinds, ["failover_started", "adopted"]);
        assert_eq!(state.failovers().unwrap().get("orders"), Some(&1));
        assert_eq!(state.failovers().unwrap().get("db"), None);
        assert!(state.orphans(&[new]).unwrap().is_empty());

        let event = EventKind::Forgotten.of("orders", "alice");
        state.forget_pool("orders", &event).unwrap();
        assert!(state.pool("orders").unwrap().is_none());
        assert!(state.records().unwrap().is_empty());
        assert_eq!(state.history(Some("orders"), 10).unwrap().len(), 3);
    }

    #[test]
    fn lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(dir.path(), Duration::ZERO).unwrap();
        assert!(first.is_some());
        let second = Lock::acquire(dir.path(), Duration::from_millis(100)).unwrap();
        assert!(second.is_none());
        drop(first);
        assert!(Lock::acquire(dir.path(), Duration::ZERO).unwrap().is_some());
    }
}
