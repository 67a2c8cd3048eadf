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
use crate::model::Role;
use crate::monitor::Replica;
use crate::position::Position;
use crate::rules::Progress;

use crate::model::{EventKind, Health, Status};

/// The schema this build writes. A database with a higher number was written by a newer
/// deadpool and is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 5;

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
}

#[derive(Debug, Clone)]
pub struct ReadinessRow {
    pub step_index: usize,
    pub step_name: String,
    pub host: String,
    pub status: Status,
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

/// The database and its WAL files: never through a link, never another kind of file.
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
    /// Opens (creating if needed) the database for writing. Call with the lock held.
    pub fn open(state_dir: &Path) -> Result<State> {
        ensure_dir(state_dir)?;
        let path = state_dir.join("deadpool.db");
        check_db_files(&path)?;
        if !path.exists() {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("cannot create the database {}", path.display()))?;
        }
        let conn = Connection::open(&path)
            .with_context(|| format!("cannot open the database {}", path.display()))?;
        configure(&conn, &path)?;
        migrate(&conn, &path)?;
        Ok(State {
            conn: Mutex::new(conn),
            path,
            version: SCHEMA_VERSION,
        })
    }

    /// Opens the database read-only, for reports and dry runs. `Ok(None)`: no database yet.
    pub fn open_read_only(state_dir: &Path) -> Result<Option<State>> {
        let path = state_dir.join("deadpool.db");
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot read the database {}", path.display()));
            }
            Ok(_) => {}
        }
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
            return Ok(None);
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
                    "INSERT OR REPLACE INTO readiness (pool, step_index, step_name, host, status, message, checked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![pool, row.step_index as i64, row.step_name, row.host, row.status.as_str(), row.message, row.checked_at],
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
        let mut stmt = conn.prepare(
            "SELECT step_index, step_name, host, status, message, checked_at FROM readiness
             WHERE pool = ?1 ORDER BY step_index, host",
        )?;
        let rows = stmt.query_map([pool], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get::<_, String>(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (step_index, step_name, host, status, message, checked_at) = row?;
            let Some(status) = Status::parse(&status) else {
                bail!(
                    "{}: unknown readiness status `{status}`; was it written by a newer deadpool?",
                    self.path.display()
                );
            };
            out.push(ReadinessRow {
                step_index: step_index as usize,
                step_name,
                host,
                status,
                message,
                checked_at,
            });
        }
        Ok(out)
    }

    /// Records a finished tick and prunes history older than `retention`.
    pub fn record_tick(
        &self,
        started_at: i64,
        duration: Duration,
        retention: Duration,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO ticks (id, started_at, duration_ms) VALUES (1, ?1, ?2)",
                params![started_at, duration.as_millis() as i64],
            )?;
            tx.execute(
                "DELETE FROM history WHERE at < ?1",
                [started_at - retention.as_millis() as i64],
            )?;
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

    /// The newest `limit` events (optionally of one pool), oldest first.
    pub fn history(&self, pool: Option<&str>, limit: u32) -> Result<Vec<Event>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, at, pool, event, actor, step, host, status, message, output, duration_ms FROM history
             WHERE ?1 IS NULL OR pool = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
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
}

fn row_facts_json(row: &MonitorRow) -> String {
    if row.replica.is_none() && row.position.is_none() {
        return String::new();
    }
    let facts = RowFacts {
        replica: row.replica.clone(),
        position: row.position.clone(),
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
    conn.execute(
        "INSERT INTO history (at, pool, event, actor, step, host, status, message, output, duration_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
            e.duration_ms
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
        .with_context(|| {
            format!(
                "{}: cannot read the database; is it a deadpool database, or damaged?",
                path.display()
            )
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

/// Brings the schema up to [`SCHEMA_VERSION`], one version at a time, each in a transaction.
fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let version = schema_version(conn, path)?;
    check_version(version, path)?;
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA_V1} PRAGMA user_version = 1; COMMIT;"
        ))
        .with_context(|| format!("{}: cannot create the schema", path.display()))?;
    }
    for (to, sql) in [
        (2, SCHEMA_V2),
        (3, SCHEMA_V3),
        (4, SCHEMA_V4),
        (5, SCHEMA_V5),
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
        state
            .record_tick(100_000, Duration::ZERO, Duration::from_secs(10))
            .unwrap();
        assert!(state.history(None, 10).unwrap().is_empty(), "pruned");
        assert_eq!(state.failovers().unwrap().get("db"), Some(&2));
        assert_eq!(EventKind::FailoverStarted.as_str(), FAILOVER_STARTED);
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
