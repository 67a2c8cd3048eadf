//! Logging to stderr, with journald priority prefixes when running under systemd.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

static MAX: AtomicU8 = AtomicU8::new(Level::Warn as u8);
static JOURNAL: AtomicU8 = AtomicU8::new(0);

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
    // systemd sets JOURNAL_STREAM when stderr is connected to the journal.
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    JOURNAL.store(journal as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX.load(Ordering::Relaxed)
}

pub fn write(level: Level, message: std::fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    if JOURNAL.load(Ordering::Relaxed) == 1 {
        eprintln!("<{}>{message}", level as u8);
    } else {
        let tag = match level {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        eprintln!("deadpool: {tag}: {message}");
    }
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
