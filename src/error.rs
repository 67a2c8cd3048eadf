//! The errors a user can meet, each mapped to one exit code, and the one place that prints them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What went wrong, by the exit code it deserves (SPEC 5).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage (a command line, a pool or server that does not exist): nothing was
    /// changed (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is invalid: nothing was changed (exit 2).
    #[error("invalid configuration: {0}")]
    Config(ConfigError),
    /// It ran, and something failed or needs a person (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::Failed(_) => 1,
        }
    }
}

/// An invalid configuration, as data: the file, the table and its line, the key, and what
/// is wrong with it. Its one [`Display`](fmt::Display) writes the message:
/// `FILE: TABLE (line N): key `KEY`: PROBLEM`, each part only when present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or directory) at fault; `None` when the message names its place itself.
    pub file: Option<PathBuf>,
    /// The table within the file: `[monitor]`, `[[protocol]] 2`, `[ssh]`, `[cluster]`; or,
    /// without a file, the settings at fault (`pool db: step `vip``).
    pub table: Option<String>,
    /// The line the table starts on.
    pub line: Option<usize>,
    /// The key at fault, dotted below the table (`ssh.user`, `tls.ca_file`).
    pub key: Option<String>,
    /// What is wrong, without the place.
    pub problem: String,
}

impl ConfigError {
    /// A problem found in `file`, outside any table.
    pub fn in_file(file: &Path, problem: impl Into<Problem>) -> ConfigError {
        let Problem { key, text } = problem.into();
        ConfigError {
            file: Some(file.to_path_buf()),
            table: None,
            line: None,
            key,
            problem: text,
        }
    }

    /// A problem whose text names its own place (no file, table or key).
    pub fn plain(problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            table: None,
            line: None,
            key: None,
            problem: problem.into(),
        }
    }

    /// The same error placed in a table, starting on `line` when known.
    pub fn in_table(mut self, table: impl Into<String>, line: Option<usize>) -> ConfigError {
        self.table = Some(table.into());
        self.line = line;
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            sep = ": ";
        }
        if let Some(table) = &self.table {
            write!(f, "{sep}{table}")?;
            sep = ": ";
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
            sep = ": ";
        }
        if let Some(key) = &self.key {
            write!(f, "{sep}key `{key}`")?;
            sep = ": ";
        }
        write!(f, "{sep}{}", self.problem)
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

/// What is wrong below the file level: the key at fault (when there is one) and the text,
/// without the key. The file-level loaders turn it into a [`ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: Option<String>,
    pub text: String,
}

impl Problem {
    /// A problem of no one key.
    pub fn new(text: impl Into<String>) -> Problem {
        Problem {
            key: None,
            text: text.into(),
        }
    }

    /// A problem of the key `key`.
    pub fn at(key: impl Into<String>, text: impl fmt::Display) -> Problem {
        Problem {
            key: Some(key.into()),
            text: text.to_string(),
        }
    }

    /// The same problem found inside the table `table`: key `user` becomes `ssh.user`, and a
    /// problem of no one key becomes one of the table itself.
    pub fn under(self, table: &str) -> Problem {
        let key = match self.key {
            Some(key) => format!("{table}.{key}"),
            None => table.to_string(),
        };
        Problem {
            key: Some(key),
            text: self.text,
        }
    }
}

impl From<String> for Problem {
    fn from(text: String) -> Problem {
        Problem::new(text)
    }
}

impl From<&str> for Problem {
    fn from(text: &str) -> Problem {
        Problem::new(text)
    }
}

/// The problem as the message it becomes: `key `KEY`: TEXT` (for tests and for callers
/// outside the config loaders).
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let as_error = ConfigError {
            file: None,
            table: None,
            line: None,
            key: self.key.clone(),
            problem: self.text.clone(),
        };
        as_error.fmt(f)
    }
}

/// How a command ended when it did not return an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Done,
    /// Exit 1: it ran, but something failed or needs a person.
    NeedsAttention,
    /// A raw code, used by `report --nagios` (0..=3).
    Code(u8),
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> ExitCode {
        match outcome {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::NeedsAttention => ExitCode::from(1),
            Outcome::Code(code) => ExitCode::from(code),
        }
    }
}

/// Prints an error once, to stderr (or as a Nagios UNKNOWN line on stdout), and picks the code.
pub fn report(err: &anyhow::Error, nagios: bool) -> ExitCode {
    if nagios {
        let message = crate::text::one_line(&format!("{err:#}"));
        println!("DEADPOOL UNKNOWN - {message}");
        return ExitCode::from(3);
    }
    crate::log::fatal(&format!("{err:#}"));
    let code = err.downcast_ref::<Error>().map_or(1, Error::exit_code);
    ExitCode::from(code)
}

/// A command line clap could not parse: exit 2, or UNKNOWN (3) for `report --nagios`.
pub fn usage_exit(err: clap::Error, nagios: bool) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if nagios {
        let first = err.to_string();
        let first = first.lines().next().unwrap_or("bad usage");
        println!("DEADPOOL UNKNOWN - {}", crate::text::one_line(first));
        return ExitCode::from(3);
    }
    crate::log::preformatted(crate::log::Level::Error, &err.render().to_string());
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_error_writes_each_part_only_when_present() {
        let e = ConfigError::in_file(
            Path::new("/etc/deadpool/pools/db.toml"),
            Problem::at("hosts", "expected at least one host"),
        );
        assert_eq!(
            e.to_string(),
            "/etc/deadpool/pools/db.toml: key `hosts`: expected at least one host"
        );
        let e = e.in_table("[[protocol]] 2", Some(12));
        assert_eq!(
            e.to_string(),
            "/etc/deadpool/pools/db.toml: [[protocol]] 2 (line 12): key `hosts`: expected at least one host"
        );
        let e =
            ConfigError::in_file(Path::new("/x.toml"), "cannot read: gone").in_table("[ssh]", None);
        assert_eq!(e.to_string(), "/x.toml: [ssh]: cannot read: gone");
        assert_eq!(
            ConfigError::plain("[ssh]: no key").to_string(),
            "[ssh]: no key"
        );
        assert_eq!(
            Error::Config(ConfigError::plain("x")).to_string(),
            "invalid configuration: x"
        );
    }

    #[test]
    fn problems_nest_under_their_table() {
        let p = Problem::at("user", "bad").under("ssh");
        assert_eq!(p.key.as_deref(), Some("ssh.user"));
        assert_eq!(p.to_string(), "key `ssh.user`: bad");
        let p = Problem::new("set only one").under("ssh");
        assert_eq!(p.to_string(), "key `ssh`: set only one");
        assert_eq!(Problem::from("plain").to_string(), "plain");
    }
}
