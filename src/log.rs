//! Logging to stderr, with journald priority prefixes (`<3>` .. `<7>`, sd-daemon(3)) on
//! every line when stderr is the journal, as systemd documents it: `$JOURNAL_STREAM` names
//! the device and inode of the stream it connected, and only a stderr that is that very
//! stream gets prefixes (a child whose stderr was redirected inherits the variable).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

static MAX: AtomicU8 = AtomicU8::new(Level::Warn as u8);

/// Sets the level from `-v`/`-q`, else from `$DEADPOOL_LOG` (error, warn, info, debug).
pub fn init(verbose: u8, quiet: bool) {
    let from_env = std::env::var("DEADPOOL_LOG")
        .ok()
        .and_then(|v| match v.as_str() {
            "error" => Some(Level::Error),
            "warn" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        });
    let level = match (quiet, verbose) {
        (true, _) => Level::Error,
        (false, 0) => from_env.unwrap_or(Level::Warn),
        (false, 1) => Level::Info,
        (false, _) => Level::Debug,
    };
    MAX.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX.load(Ordering::Relaxed)
}

/// Whether stderr is the journal stream systemd connected (checked once).
fn journal() -> bool {
    static JOURNAL: OnceLock<bool> = OnceLock::new();
    *JOURNAL.get_or_init(|| {
        let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Some(value) = value.to_str() else {
            return false;
        };
        stderr_identity().is_some_and(|id| is_journal_stream(value, id))
    })
}

/// The device and inode of this process's stderr.
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let fd = std::io::stderr().as_fd().try_clone_to_owned().ok()?;
    let meta = std::fs::File::from(fd).metadata().ok()?;
    Some((meta.dev(), meta.ino()))
}

/// `$JOURNAL_STREAM` is `DEVICE:INODE`, both decimal (systemd.exec(5)).
fn is_journal_stream(value: &str, (dev, ino): (u64, u64)) -> bool {
    let Some((d, i)) = value.split_once(':') else {
        return false;
    };
    d.parse::<u64>() == Ok(dev) && i.parse::<u64>() == Ok(ino)
}

pub fn write(level: Level, message: std::fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    eprint!("{}", render(level, &message.to_string(), journal()));
}

/// A fatal error: always shown, whatever the level.
pub fn fatal(message: &str) {
    eprint!("{}", render(Level::Error, message, journal()));
}

/// Text that some library already formatted for stderr (a usage error), with a priority
/// on each line under the journal and unchanged otherwise.
pub fn preformatted(level: Level, text: &str) {
    if journal() {
        eprint!("{}", prefix_lines(level, text));
    } else {
        eprint!("{text}");
    }
}

/// One log message as it goes to stderr: under the journal, the priority prefix on every
/// line (journald reads each line as one entry); otherwise `deadpool: LEVEL: ` once. A
/// message may quote a program or a remote host: it is made printable first.
fn render(level: Level, message: &str, journal: bool) -> String {
    let message = &crate::text::printable(message);
    if journal {
        return prefix_lines(level, message);
    }
    let tag = match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
    };
    format!("deadpool: {tag}: {message}\n")
}

fn prefix_lines(level: Level, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.lines() {
        out.push_str(&format!("<{}>{line}\n", level as u8));
    }
    if out.is_empty() {
        out.push_str(&format!("<{}>\n", level as u8));
    }
    out
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_matches_device_and_inode_only() {
        let rows = [
            ("8:1234", (8, 1234), true),
            ("8:1234", (8, 1235), false),
            ("9:1234", (8, 1234), false),
            ("", (8, 1234), false),
            ("8", (8, 1234), false),
            ("8:1234:5", (8, 1234), false),
            ("x:y", (8, 1234), false),
        ];
        for (value, id, expected) in rows {
            assert_eq!(is_journal_stream(value, id), expected, "{value:?}");
        }
    }

    #[test]
    fn every_line_gets_the_priority_under_the_journal() {
        assert_eq!(render(Level::Error, "a\nb", true), "<3>a\n<3>b\n");
        assert_eq!(render(Level::Info, "x", true), "<6>x\n");
        assert_eq!(render(Level::Warn, "x", false), "deadpool: warning: x\n");
    }

    #[test]
    fn quoted_output_cannot_drive_the_terminal() {
        assert_eq!(
            render(Level::Error, "ssh said \u{1b}]0;t\u{7}x\r\n\tmore", false),
            "deadpool: error: ssh said ]0;tx\n\tmore\n"
        );
        assert_eq!(render(Level::Error, "a\u{1b}[2J", true), "<3>a[2J\n");
    }
}
