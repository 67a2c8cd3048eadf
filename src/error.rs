//! The errors a user can meet, each mapped to one exit code, and the one place that prints them.

use std::process::ExitCode;

/// What went wrong, by the exit code it deserves (SPEC 5).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad usage or invalid configuration: nothing was changed (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The configuration is invalid: nothing was changed (exit 2).
    #[error("invalid configuration: {0}")]
    Config(String),
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
