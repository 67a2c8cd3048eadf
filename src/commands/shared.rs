//! What the commands that change a pool by hand (`promote`, `reset`, `pause`, `resume`)
//! share: who asked, the instance lock, the pool's record, and the confirmation.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

use crate::config::{Config, Pool};
use crate::error::Error;
use crate::state::Snapshot;

/// Who asked for a change, for history: the real uid's user name, which no environment
/// variable can change; "root via sudo by X" only when the real uid is root and the process
/// was started by sudo (its parent is sudo), since anyone can set `SUDO_USER`.
pub fn actor() -> String {
    // SAFETY: getuid(2) and getppid(2) cannot fail and have no memory effects.
    let (uid, ppid) = unsafe { (libc::getuid(), libc::getppid()) };
    let name = user_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    let parent = std::fs::read_to_string(format!("/proc/{ppid}/comm")).unwrap_or_default();
    let sudo_user = std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty());
    actor_name(&name, uid, parent.trim(), sudo_user.as_deref())
}

/// The actor rule (pure, for tests).
fn actor_name(name: &str, uid: u32, parent: &str, sudo_user: Option<&str>) -> String {
    match sudo_user {
        Some(by) if uid == 0 && parent == "sudo" => format!("{name} via sudo by {by}"),
        _ => name.to_string(),
    }
}

/// The user name of `uid` from the password database.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// The start of every command that changes a pool by hand: the instance lock (waiting a
/// bounded time for a running tick) and the database, both held for the whole command.
pub fn lock_for_change(config: &Config) -> Result<(crate::state::Lock, crate::state::State)> {
    use crate::state::{Lock, State};
    let wait = config.lock_wait();
    let Some(lock) = Lock::acquire(&config.state_dir, wait)? else {
        return Err(Error::Failed(format!(
            "{} still holds the instance lock after {:.0}s; nothing changed, try again",
            Lock::holder(&config.state_dir),
            wait.as_secs_f64()
        ))
        .into());
    };
    let state = State::open(&config.state_dir)?;
    let configured: Vec<_> = config.pools.iter().map(Pool::servers).collect();
    state.note_servers(&configured)?;
    crate::children::take_over(&config.state_dir);
    Ok((lock, state))
}

/// A pool held back by the lock of a pool no longer configured ([`crate::orphans`]) is
/// changed by nobody's hand either (promote, reset, pause) until that lock is carried over
/// or dropped: a new record would arm it on its configured primary.
pub fn refuse_if_held(config: &Config, state: &crate::state::State, pool: &Pool) -> Result<()> {
    let configured: Vec<_> = config.pools.iter().map(Pool::servers).collect();
    let orphans = state.orphans(&configured)?;
    match crate::orphans::holding(&orphans, &pool.name) {
        Some(orphan) => Err(Error::Failed(format!(
            "pool {}: {}; nothing changed. {}",
            pool.name,
            orphan.held_message(&pool.name),
            orphan.hint()
        ))
        .into()),
        None => Ok(()),
    }
}

/// The pool's record for a command that changes it: etcd's with `[cluster]` (when it has
/// one: the command then acts cluster-wide), else the local one.
pub fn pool_record(
    member: Option<&crate::cluster::Member>,
    state: &crate::state::State,
    pool: &str,
) -> Result<Option<crate::state::PoolRecord>> {
    let local = state.pool(pool)?;
    Ok(match member {
        Some(m) => m.read_pool(pool, local.as_ref())?.or(local),
        None => local,
    })
}

/// The pool's record as the person is asked about it, before the instance lock is taken
/// (read-only; etcd's with `[cluster]`, as [`pool_record`]). What the command does after the
/// lock is checked against it ([`unchanged_since_confirmed`]).
pub fn before_confirm(
    config: &Config,
    member: Option<&crate::cluster::Member>,
    pool: &str,
) -> Result<Option<crate::state::PoolRecord>> {
    let local = match crate::state::State::open_read_only(&config.state_dir)? {
        Some(state) => state.pool(pool)?,
        None => None,
    };
    Ok(match member {
        Some(m) => m.read_pool(pool, local.as_ref())?.or(local),
        None => local,
    })
}

/// A pool's record in the words of a confirmation question; `servers` are the pool's, in
/// role order (those last recorded, for a pool no longer configured).
pub fn describe(servers: &[String], rec: Option<&crate::state::PoolRecord>) -> String {
    match rec {
        None => "not checked yet, active primary".to_string(),
        Some(r) => format!(
            "{} since {}, active {}{}",
            r.state.as_str(),
            crate::text::format_time(r.state_since),
            r.active.as_str(),
            servers
                .get(r.active.index())
                .map(|a| format!(" ({a})"))
                .unwrap_or_default()
        ),
    }
}

/// After the lock: the pool must still be as the person confirmed it (state, active
/// server, the episode: when its state began). A tick's chain that ended meanwhile, or
/// another person's promote or reset, refuses the command with what changed.
pub fn unchanged_since_confirmed(
    name: &str,
    servers: &[String],
    confirmed: Option<&crate::state::PoolRecord>,
    now: Option<&crate::state::PoolRecord>,
) -> Result<()> {
    let (seen, current) = (Snapshot::of(confirmed), Snapshot::of(now));
    if seen.still(&current) {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "pool {name} changed while this command waited for the instance lock: it was {was}, it is now {is}; nothing changed. Look at `deadpool report` and `deadpool history --pool {name}`, then run the command again if it still applies",
        was = describe(servers, confirmed),
        is = describe(servers, now),
    ))
    .into())
}

/// Asks on the terminal; without one, `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(format!(
            "{question}: there is no terminal to confirm on; add --yes"
        ))
        .into());
    }
    eprint!("{question} Type `yes` to go on: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "y"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_table() {
        // (name, real uid, parent process, SUDO_USER, recorded actor)
        let rows = [
            ("root", 0, "sudo", Some("alice"), "root via sudo by alice"),
            ("root", 0, "bash", Some("alice"), "root"),
            ("bob", 1000, "sudo", Some("alice"), "bob"),
            ("bob", 1000, "bash", None, "bob"),
            ("root", 0, "sudo", None, "root"),
        ];
        for (name, uid, parent, sudo_user, actor) in rows {
            assert_eq!(actor_name(name, uid, parent, sudo_user), actor);
        }
    }
}
