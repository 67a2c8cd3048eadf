//! `deadpool hosts test|verify|switch`: the helper that runs on client hosts. It prints one
//! line, `OK - ...` or `ERROR - ...`, and writes the file in place (renaming over
//! `/etc/hosts` fails inside containers and network namespaces), flushed, verified by
//! re-reading, with a backup next to it.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{HostsAction, HostsArgs};
use crate::error::Outcome;
use crate::hostsfile;

/// A hosts file larger than this is refused rather than rewritten.
const MAX_SIZE: u64 = 4 * 1024 * 1024;

pub fn run(args: &HostsArgs) -> Result<Outcome> {
    let result = match args.action {
        HostsAction::Test => test(args),
        HostsAction::Verify => verify(args),
        HostsAction::Switch => switch(args),
    };
    Ok(match result {
        Ok(line) => {
            println!("OK - {line}");
            Outcome::Done
        }
        Err(line) => {
            println!("ERROR - {}", crate::text::one_line(&line));
            Outcome::NeedsAttention
        }
    })
}

/// Opens without blocking (a FIFO planted as the file must not hang the helper) and
/// refuses anything but a regular file; for writing, also one with other hard links, whose
/// other names would change too.
fn open_regular(path: &Path, write: bool) -> Result<std::fs::File, String> {
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            let what = if write { "write" } else { "read" };
            format!("cannot {what} {}: {e}", path.display())
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file; not touched",
            path.display()
        ));
    }
    if write {
        crate::strict::single_file(path, &meta).map_err(|e| format!("{e}; not touched"))?;
    }
    Ok(file)
}

fn read(path: &Path) -> Result<String, String> {
    let mut file = open_regular(path, false)?;
    let size = file
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    if size > MAX_SIZE {
        return Err(format!(
            "{} is {size} bytes, more than a hosts file should be ({MAX_SIZE}); not touched",
            path.display()
        ));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!(
            "{} is not text (invalid UTF-8); not touched",
            path.display()
        )
    })?;
    if text.contains('\0') {
        return Err(format!(
            "{} is not text (NUL bytes); not touched",
            path.display()
        ));
    }
    Ok(text)
}

fn name(args: &HostsArgs) -> Result<&str, String> {
    hostsfile::validate_name(&args.name).map_err(|e| e.to_string())?;
    Ok(&args.name)
}

fn points(text: &str, name: &str) -> String {
    match hostsfile::lookup(text, name) {
        Some(ip) => format!("{name} -> {ip}"),
        None => format!("{name} -> (none)"),
    }
}

fn test(args: &HostsArgs) -> Result<String, String> {
    let name = name(args)?;
    let text = read(&args.file)?;
    // Opening for writing without truncating changes nothing, and is the real test.
    open_regular(&args.file, true).map_err(|e| {
        format!(
            "{} is not writable by {}: {e}; {}",
            args.file.display(),
            user(),
            points(&text, name)
        )
    })?;
    // `switch` writes the backup first: a backup that cannot be written (a read-only /etc
    // with only the hosts file allowed, as under a service's ProtectSystem=) fails it too.
    let backup = backup_path(&args.file);
    backup_writable(&backup).map_err(|e| {
        format!(
            "the backup {} is not writable by {}: {e}; {}",
            backup.display(),
            user(),
            points(&text, name)
        )
    })?;
    Ok(format!(
        "{} and its backup are writable by {}; {}",
        args.file.display(),
        user(),
        points(&text, name)
    ))
}

fn verify(args: &HostsArgs) -> Result<String, String> {
    let name = name(args)?;
    let ip = args.ip.ok_or("--ip is required")?;
    let text = read(&args.file)?;
    match hostsfile::lookup(&text, name) {
        Some(found) if found == ip.to_string() => {
            Ok(format!("{name} -> {ip} in {}", args.file.display()))
        }
        Some(found) => Err(format!(
            "{name} -> {found} in {}, not {ip}",
            args.file.display()
        )),
        None => Err(format!("{name} is not in {}", args.file.display())),
    }
}

fn switch(args: &HostsArgs) -> Result<String, String> {
    let name = name(args)?;
    let ip = args.ip.ok_or("--ip is required")?;
    let path = &args.file;
    let before = read(path)?;
    let after = hostsfile::switch(&before, name, ip).map_err(|e| e.to_string())?;
    let was = hostsfile::lookup(&before, name).unwrap_or_else(|| "(none)".to_string());
    if after == before {
        return Ok(format!(
            "{name} -> {ip} in {} already; nothing changed",
            path.display()
        ));
    }
    // Opened for writing before the backup is written, so that a file that cannot be
    // written (a hard link) is refused with nothing changed.
    let target = open_regular(path, true)?;
    let backup = backup_path(path);
    write_backup(&backup, before.as_bytes()).map_err(|e| {
        format!(
            "cannot write the backup {}: {e}; nothing changed",
            backup.display()
        )
    })?;
    write_in_place(target, after.as_bytes()).map_err(|e| {
        format!(
            "writing {} failed: {e}; the previous content is in {}",
            path.display(),
            backup.display()
        )
    })?;
    let check = read(path)?;
    if check != after {
        return Err(format!(
            "{} does not read back as written; the previous content is in {}",
            path.display(),
            backup.display()
        ));
    }
    Ok(format!(
        "{name} -> {ip} in {} (was {was}); backup in {}",
        path.display(),
        backup.display()
    ))
}

fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".deadpool-backup");
    path.with_file_name(name)
}

/// Whether a backup is already there; an existing one that is a link, a FIFO or a
/// directory is refused, never written through.
fn backup_exists(path: &Path) -> std::io::Result<bool> {
    use std::io::{Error, ErrorKind};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::new(
            ErrorKind::InvalidInput,
            "it is a symbolic link; remove it",
        )),
        Ok(m) if !m.is_file() => Err(Error::new(
            ErrorKind::InvalidInput,
            "it is not a regular file; remove it",
        )),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Opens the backup for writing, created if missing, without following a link; refused
/// when it has other hard links. Nothing is truncated yet.
fn open_backup(path: &Path) -> std::io::Result<std::fs::File> {
    use std::io::{Error, ErrorKind};
    backup_exists(path)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    crate::strict::single_file(path, &file.metadata()?)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    Ok(file)
}

/// Whether [`write_backup`] could write `path`, changing nothing: an existing backup is
/// opened for writing as it would be; for a missing one, its directory must let this user
/// create it (access(2) also says EROFS for a read-only mount).
fn backup_writable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    if backup_exists(path)? {
        return open_backup(path).map(drop);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: a valid NUL-terminated path; access(2) only reads it.
    if unsafe { libc::access(dir.as_ptr(), libc::W_OK | libc::X_OK) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes the backup through [`open_backup`]: never through a link, never into a file with
/// other names.
fn write_backup(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = open_backup(path)?;
    file.set_len(0)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Overwrites the file's bytes without replacing the file (its inode, owner, mode and any
/// bind mount stay), then flushes it to disk.
fn write_in_place(mut file: std::fs::File, bytes: &[u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(bytes)?;
    file.set_len(bytes.len() as u64)?;
    file.sync_all()
}

fn user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: geteuid has no preconditions and cannot fail.
            format!("uid {}", unsafe { libc::geteuid() })
        })
}
