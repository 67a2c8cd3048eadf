//! OpenSSH's StrictModes for the files deadpool trusts as root: the state dir, database and
//! lock, programs it runs (plugins, local `exec` commands), its configuration files and
//! directories, and secret files must be owned by the running user (or root) and not
//! writable by group or others, and so must every directory above them (a root-owned
//! directory with the sticky bit, such as `/tmp`, passes above the directory that holds the
//! file, never as that directory); secrets are readable by their owner only; the lock, the
//! database and secrets are never reached through a symbolic link, and nothing deadpool
//! writes has other hard links; config files and secrets are regular files of at most
//! [`MAX_FILE_BYTES`], checked before they are opened and opened without waiting. Each
//! refusal names the path, what is wrong and the command that fixes it.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What makes a path unsafe to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing(String),
    Symlink,
    NotRegular(&'static str),
    NotDirectory,
    Owner(u32),
    Writable(u32),
    Readable(u32),
    /// A file deadpool writes that has other names: writing it changes them too.
    HardLinks(u64),
    /// A config or secret file larger than [`MAX_FILE_BYTES`] (its size).
    TooLarge(u64),
}

/// The most deadpool reads of a config file (`deadpool.toml`, a pool file, `known_hosts`, a
/// certificate) or a secret: far more than any real one holds, and a file that is larger is
/// not one of them.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// A path deadpool refuses to trust, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct Unsafe {
    pub path: PathBuf,
    pub problem: Problem,
}

impl Unsafe {
    fn describe(&self) -> String {
        let p = self.path.display();
        match &self.problem {
            Problem::Missing(e) => format!("{p}: {e}"),
            Problem::Symlink => format!(
                "{p} is a symbolic link, which deadpool does not follow here; replace it with the file itself"
            ),
            Problem::NotRegular(what) => format!(
                "{p} is {what}, not a regular file; replace it with a regular file (deadpool creates its own state files)"
            ),
            Problem::TooLarge(size) => format!(
                "{p} is {size} bytes, more than the {MAX_FILE_BYTES} bytes (1 MiB) deadpool reads from a config or secret file; is it the right file?"
            ),
            Problem::NotDirectory => format!("{p} is not a directory"),
            Problem::Owner(uid) => format!(
                "{p} is owned by uid {uid}, neither root nor the user deadpool runs as (uid {}); run `chown root {p}`",
                euid()
            ),
            Problem::Writable(mode) if mode & STICKY != 0 => format!(
                "{p} is a shared directory (mode {mode:o}): anyone can add files to it; keep deadpool's files in a directory of their own that only root can write"
            ),
            Problem::Writable(mode) => {
                format!("{p} is writable by group or others (mode {mode:o}); run `chmod go-w {p}`")
            }
            Problem::HardLinks(n) => format!(
                "{p} has {n} hard links: writing it would change the same file under its other names; find them with `find / -xdev -samefile {p}` and remove them, or remove {p}"
            ),
            Problem::Readable(mode) => {
                format!("{p} is readable by group or others (mode {mode:o}); run `chmod 600 {p}`")
            }
        }
    }
}

/// The sticky bit: in such a directory only an entry's owner (or root) may rename or remove
/// it.
const STICKY: u32 = 0o1000;

fn euid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and has no memory effects.
    unsafe { libc::geteuid() }
}

fn unsafe_path(path: &Path, problem: Problem) -> Unsafe {
    Unsafe {
        path: path.to_path_buf(),
        problem,
    }
}

/// The rules for a file or dir deadpool runs or reads as trusted (pure, for tests): owner
/// root or `euid`, no write bit for group or others.
pub fn owner_and_mode(uid: u32, mode: u32, euid: u32) -> Result<(), Problem> {
    if uid != 0 && uid != euid {
        return Err(Problem::Owner(uid));
    }
    if mode & 0o022 != 0 {
        return Err(Problem::Writable(mode & 0o7777));
    }
    Ok(())
}

/// The rule for a directory above the one that holds a trusted file (pure, for tests):
/// [`owner_and_mode`], or owned by root with the sticky bit (`/tmp`). Nobody else can
/// rename or remove a root-owned entry of such a directory, so the path below it stays as
/// checked; the directory that holds the file itself must pass [`owner_and_mode`], since
/// anyone could add a file to a shared one.
pub fn above_owner_and_mode(uid: u32, mode: u32, euid: u32) -> Result<(), Problem> {
    if uid == 0 && mode & STICKY != 0 {
        return Ok(());
    }
    owner_and_mode(uid, mode, euid)
}

fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn lstat(path: &Path) -> Result<Metadata, Unsafe> {
    std::fs::symlink_metadata(path).map_err(|e| unsafe_path(path, Problem::Missing(e.to_string())))
}

/// A directory deadpool keeps trusted files in (the state dir, the plugins dir), and every
/// directory above it up to `/` ([`above_owner_and_mode`]), on its real path.
pub fn trusted_dir(path: &Path) -> Result<(), Unsafe> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| unsafe_path(path, Problem::Missing(e.to_string())))?;
    let mut holder = true;
    for dir in real.ancestors() {
        let meta = std::fs::metadata(dir)
            .map_err(|e| unsafe_path(dir, Problem::Missing(e.to_string())))?;
        if !meta.is_dir() {
            return Err(unsafe_path(dir, Problem::NotDirectory));
        }
        let rule = if holder {
            owner_and_mode
        } else {
            above_owner_and_mode
        };
        rule(meta.uid(), meta.mode(), euid()).map_err(|p| unsafe_path(dir, p))?;
        holder = false;
    }
    Ok(())
}

/// A file deadpool writes as root, as `fstat` shows it once open: a regular file with no
/// other name (a hard link would be written too).
pub fn single_file(path: &Path, meta: &Metadata) -> Result<(), Unsafe> {
    if !meta.is_file() {
        return Err(unsafe_path(path, Problem::NotRegular(kind(meta))));
    }
    if meta.nlink() > 1 {
        return Err(unsafe_path(path, Problem::HardLinks(meta.nlink())));
    }
    Ok(())
}

/// A file deadpool runs, or with `no_link` one it writes as root (or reads where it writes
/// it: the database): regular, trusted owner and mode; with `no_link` neither a symbolic
/// link nor a file with other hard links. `Ok(false)` when it does not exist yet.
pub fn trusted_file(path: &Path, no_link: bool) -> Result<bool, Unsafe> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unsafe_path(path, Problem::Missing(e.to_string()))),
        Ok(m) => m,
    };
    let meta = if meta.file_type().is_symlink() {
        if no_link {
            return Err(unsafe_path(path, Problem::Symlink));
        }
        std::fs::metadata(path).map_err(|e| unsafe_path(path, Problem::Missing(e.to_string())))?
    } else {
        meta
    };
    if no_link {
        single_file(path, &meta)?;
    } else if !meta.is_file() {
        return Err(unsafe_path(path, Problem::NotRegular(kind(&meta))));
    }
    owner_and_mode(meta.uid(), meta.mode(), euid()).map_err(|p| unsafe_path(path, p))?;
    Ok(true)
}

/// The directory that holds `path` (`.` for a bare name).
fn holder(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A file deadpool reads as its configuration (`deadpool.toml`, pool files, `known_hosts`,
/// CA certificates): a regular file of a trusted owner and mode, at most
/// [`MAX_FILE_BYTES`], on its real path (links followed), in a trusted directory
/// ([`trusted_dir`]), and the directory that holds the name too when it is a link. Checked
/// with `stat`, so a FIFO or a device is refused without being opened. `Ok(false)` when it
/// does not exist.
pub fn trusted_config(path: &Path) -> Result<bool, Unsafe> {
    let meta = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(unsafe_path(path, Problem::Missing(e.to_string()))),
        Ok(m) => m,
    };
    config_meta(path, &meta)?;
    let real = std::fs::canonicalize(path)
        .map_err(|e| unsafe_path(path, Problem::Missing(e.to_string())))?;
    trusted_dir(holder(&real))?;
    if lstat(path)?.file_type().is_symlink() {
        trusted_dir(holder(path))?;
    }
    Ok(true)
}

/// What [`trusted_config`] asks of the file itself, from `stat` or `fstat`.
fn config_meta(path: &Path, meta: &Metadata) -> Result<(), Unsafe> {
    if !meta.is_file() {
        return Err(unsafe_path(path, Problem::NotRegular(kind(meta))));
    }
    owner_and_mode(meta.uid(), meta.mode(), euid()).map_err(|p| unsafe_path(path, p))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(unsafe_path(path, Problem::TooLarge(meta.len())));
    }
    Ok(())
}

/// Reads a file deadpool trusts as its configuration ([`trusted_config`]); `Ok(None)` when
/// it does not exist.
pub fn read_config(path: &Path) -> Result<Option<Vec<u8>>, Unsafe> {
    if !trusted_config(path)? {
        return Ok(None);
    }
    read_bounded(path, 0, config_meta).map(Some)
}

/// Opens `path` without waiting (`O_NONBLOCK`: a FIFO swapped in after the check opens at
/// once), checks what `fstat` shows with `check`, and reads at most [`MAX_FILE_BYTES`].
fn read_bounded(
    path: &Path,
    flags: i32,
    check: fn(&Path, &Metadata) -> Result<(), Unsafe>,
) -> Result<Vec<u8>, Unsafe> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let missing = |e: std::io::Error| unsafe_path(path, Problem::Missing(e.to_string()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | flags)
        .open(path)
        .map_err(missing)?;
    check(path, &file.metadata().map_err(missing)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(missing)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(unsafe_path(path, Problem::TooLarge(bytes.len() as u64)));
    }
    Ok(bytes)
}

/// A program deadpool runs as root (a plugin, a local `exec` command): a trusted file, on
/// its real path, in a trusted directory ([`trusted_dir`]: every directory up to `/`).
pub fn trusted_program(path: &Path) -> Result<(), Unsafe> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| unsafe_path(path, Problem::Missing(e.to_string())))?;
    trusted_file(&real, false)?;
    if let Some(dir) = real.parent() {
        trusted_dir(dir)?;
    }
    Ok(())
}

/// A secret (password, key): a regular file, not a link, owned by root or the running user,
/// readable by its owner only, at most [`MAX_FILE_BYTES`], in a trusted directory
/// ([`trusted_dir`]).
pub fn secret(path: &Path) -> Result<(), Unsafe> {
    let meta = lstat(path)?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_path(path, Problem::Symlink));
    }
    secret_meta(path, &meta)?;
    trusted_dir(holder(path))
}

/// What [`secret`] asks of the file itself, from `lstat` or `fstat`.
fn secret_meta(path: &Path, meta: &Metadata) -> Result<(), Unsafe> {
    if !meta.is_file() {
        return Err(unsafe_path(path, Problem::NotRegular(kind(meta))));
    }
    if meta.uid() != 0 && meta.uid() != euid() {
        return Err(unsafe_path(path, Problem::Owner(meta.uid())));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(unsafe_path(path, Problem::Readable(meta.mode() & 0o777)));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(unsafe_path(path, Problem::TooLarge(meta.len())));
    }
    Ok(())
}

/// Reads a secret ([`secret`]), never through a link (`O_NOFOLLOW`).
pub fn read_secret(path: &Path) -> Result<Vec<u8>, Unsafe> {
    secret(path)?;
    read_bounded(path, libc::O_NOFOLLOW, secret_meta)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn owner_and_mode_table() {
        // (owner, mode, running as, verdict)
        let rows = [
            (0, 0o755, 0, Ok(())),
            (1000, 0o700, 1000, Ok(())),
            (0, 0o755, 1000, Ok(())),
            (1000, 0o755, 0, Err(Problem::Owner(1000))),
            (0, 0o775, 0, Err(Problem::Writable(0o775))),
            (0, 0o757, 0, Err(Problem::Writable(0o757))),
            (0, 0o1777, 0, Err(Problem::Writable(0o1777))),
        ];
        for (uid, mode, euid, verdict) in rows {
            assert_eq!(
                owner_and_mode(uid, mode, euid),
                verdict,
                "{uid} {mode:o} {euid}"
            );
        }
    }

    #[test]
    fn above_the_holding_dir_a_root_owned_sticky_dir_passes() {
        // (owner, mode, running as, verdict)
        let rows = [
            (0, 0o1777, 0, Ok(())),
            (0, 0o1777, 1000, Ok(())),
            (0, 0o755, 0, Ok(())),
            (1000, 0o1777, 1000, Err(Problem::Writable(0o1777))),
            (0, 0o777, 0, Err(Problem::Writable(0o777))),
            (1000, 0o755, 0, Err(Problem::Owner(1000))),
        ];
        for (uid, mode, euid, verdict) in rows {
            assert_eq!(
                above_owner_and_mode(uid, mode, euid),
                verdict,
                "{uid} {mode:o} {euid}"
            );
        }

        let top = tempfile::tempdir().unwrap();
        let shared = top.path().join("shared");
        std::fs::create_dir_all(shared.join("own")).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        for prog in [shared.join("own/prog"), shared.join("prog")] {
            std::fs::write(&prog, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(trusted_program(&shared.join("own/prog")), Ok(()));
        assert_eq!(trusted_dir(&shared.join("own")), Ok(()));
        let e = trusted_program(&shared.join("prog")).unwrap_err();
        assert_eq!(e.problem, Problem::Writable(0o1777));
        assert!(e.to_string().contains("a directory of their own"), "{e}");
        assert_eq!(
            trusted_dir(&shared).unwrap_err().problem,
            Problem::Writable(0o1777)
        );
        // Above the sticky dir, an open one is refused.
        std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = trusted_program(&shared.join("own/prog")).unwrap_err();
        assert_eq!(
            (e.path.as_path(), e.problem),
            (top.path(), Problem::Writable(0o777))
        );
    }

    #[test]
    fn files_links_fifos_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "pw").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(secret(&file), Ok(()));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(secret(&link).unwrap_err().problem, Problem::Symlink);
        assert_eq!(
            trusted_file(&link, true).unwrap_err().problem,
            Problem::Symlink
        );
        assert_eq!(trusted_file(&link, false), Ok(true));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = secret(&file).unwrap_err();
        assert_eq!(e.problem, Problem::Readable(0o640));
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(
            trusted_file(&file, true).unwrap_err().problem,
            Problem::Writable(0o666)
        );
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            trusted_file(&fifo, true).unwrap_err().problem,
            Problem::NotRegular("a FIFO")
        );
        assert_eq!(trusted_file(&dir.path().join("none"), true), Ok(false));
        // A second name: refused for a file deadpool writes, not for a program it runs.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::hard_link(&file, dir.path().join("second")).unwrap();
        let e = trusted_file(&file, true).unwrap_err();
        assert_eq!(e.problem, Problem::HardLinks(2));
        assert!(e.to_string().contains("-samefile"), "{e}");
        assert_eq!(trusted_file(&file, false), Ok(true));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            trusted_dir(dir.path()).unwrap_err().problem,
            Problem::Writable(0o40777 & 0o7777)
        );
    }
}
