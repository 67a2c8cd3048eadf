//! The process groups of local children, recorded in the state dir while they run, so that
//! the next run ends whatever a deadpool killed outright (SIGKILL, the OOM killer) left
//! acting. A child's own program dies with deadpool (`PR_SET_PDEATHSIG`, set in
//! [`crate::remote::run_local`]); what it started in its group (a shell's subshell, a
//! setuid program, which loses that signal) does not, and is ended here.
//!
//! One file per running group, `children/<pgid>` in the state dir, holding who started it
//! and when, so that a group id the kernel has since given to an unrelated process is
//! never signalled: while any member of a group lives its id cannot be reused, so a leader
//! that lives with another start time means the group is gone.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where this process records its children's groups, once a command that holds the
/// instance lock has said so ([`take_over`]); nothing is recorded before.
static DIR: OnceLock<PathBuf> = OnceLock::new();

/// What one file records.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    pgid: i32,
    owner_pid: i32,
    /// Start times in clock ticks since boot (`/proc/PID/stat`, field 22).
    owner_start: u64,
    leader_start: u64,
    boot_id: String,
}

impl Entry {
    fn text(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.owner_pid, self.owner_start, self.leader_start, self.boot_id
        )
    }

    fn parse(pgid: i32, text: &str) -> Option<Entry> {
        let mut words = text.split_whitespace();
        Some(Entry {
            pgid,
            owner_pid: words.next()?.parse().ok()?,
            owner_start: words.next()?.parse().ok()?,
            leader_start: words.next()?.parse().ok()?,
            boot_id: words.next()?.to_string(),
        })
    }
}

/// What to do with a recorded group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The deadpool that started it still runs: it is that one's to end.
    Keep,
    /// Nothing of it can be left (another boot; its id now belongs to another process).
    Forget,
    /// Its deadpool is gone: signal the group (no member left is harmless).
    End,
}

/// The rule (pure): `owner_start` and `leader_start` are the start times of the processes
/// that now have the recorded pids, if any.
fn judge(e: &Entry, boot_id: &str, owner_start: Option<u64>, leader_start: Option<u64>) -> Verdict {
    if e.boot_id != boot_id {
        Verdict::Forget
    } else if owner_start == Some(e.owner_start) {
        Verdict::Keep
    } else if leader_start.is_some_and(|s| s != e.leader_start) {
        Verdict::Forget
    } else {
        Verdict::End
    }
}

/// Ends the groups that earlier runs of this instance left running, then records this
/// run's children from here on. Call with the instance lock held.
pub fn take_over(state_dir: &Path) {
    let dir = state_dir.join("children");
    let created = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    if let Err(e) = created.or_else(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists if dir.is_dir() => Ok(()),
        _ => Err(e),
    }) {
        crate::warn!(
            "cannot create {}: {e}; the process groups of steps and checks are not recorded, so one that a killed deadpool leaves running is not ended",
            dir.display()
        );
        return;
    }
    sweep(&dir);
    let _ = DIR.set(dir);
}

fn sweep(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let boot = boot_id();
    for file in entries.flatten() {
        let path = file.path();
        let Some(pgid) = file
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
            .filter(|p| *p > 1)
        else {
            continue;
        };
        let entry = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| Entry::parse(pgid, &t));
        let Some(entry) = entry else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        match judge(
            &entry,
            &boot,
            start_time(entry.owner_pid),
            start_time(entry.pgid),
        ) {
            Verdict::Keep => continue,
            Verdict::Forget => {}
            Verdict::End => {
                // SAFETY: kill(2) on a process group has no memory effects; judge has ruled
                // out a group id that now belongs to someone else.
                if unsafe { libc::kill(-entry.pgid, libc::SIGKILL) } == 0 {
                    crate::warn!(
                        "ended process group {} that deadpool (pid {}) left running when it was killed: a step or check it started was still acting",
                        entry.pgid,
                        entry.owner_pid
                    );
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    }
}

/// The record of one running child's group, removed when dropped (after the group was
/// killed). Recording is best effort: it never stands in the way of a step.
pub struct Record(Option<PathBuf>);

impl Record {
    pub fn new(pgid: i32) -> Record {
        let Some(dir) = DIR.get() else {
            return Record(None);
        };
        let owner_pid = std::process::id() as i32;
        let (Some(owner_start), Some(leader_start)) = (start_time(owner_pid), start_time(pgid))
        else {
            return Record(None);
        };
        let entry = Entry {
            pgid,
            owner_pid,
            owner_start,
            leader_start,
            boot_id: boot_id(),
        };
        let path = dir.join(pgid.to_string());
        match std::fs::write(&path, entry.text()) {
            Ok(()) => Record(Some(path)),
            Err(e) => {
                crate::debug!(
                    "cannot record process group {pgid} in {}: {e}",
                    path.display()
                );
                Record(None)
            }
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A process's start time in clock ticks since boot, while it exists (zombies included).
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_group_whose_deadpool_is_gone_is_ended() {
        let e = Entry {
            pgid: 4242,
            owner_pid: 100,
            owner_start: 5000,
            leader_start: 6000,
            boot_id: "b1".into(),
        };
        // (boot now, owner's start now, leader's start now, verdict, why)
        let rows = [
            (
                "b1",
                Some(5000),
                Some(6000),
                Verdict::Keep,
                "its deadpool still runs",
            ),
            (
                "b1",
                None,
                Some(6000),
                Verdict::End,
                "deadpool gone, leader alive",
            ),
            (
                "b1",
                None,
                None,
                Verdict::End,
                "leader gone: members may be left",
            ),
            (
                "b1",
                Some(9999),
                None,
                Verdict::End,
                "the owner's pid was reused",
            ),
            (
                "b1",
                None,
                Some(7000),
                Verdict::Forget,
                "the group id is someone else's",
            ),
            (
                "b2",
                None,
                Some(6000),
                Verdict::Forget,
                "recorded before a reboot",
            ),
        ];
        for (boot, owner, leader, verdict, why) in rows {
            assert_eq!(judge(&e, boot, owner, leader), verdict, "{why}");
        }
        assert_eq!(Entry::parse(4242, &e.text()), Some(e));
        assert_eq!(Entry::parse(1, "garbage"), None);
    }

    #[test]
    fn start_times_are_read() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(i32::MAX), None);
    }
}
