//! The command line, as clap derive structs. Field doc comments are the `--help` text.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `deadpool --version`: the version, then the commit it was built from. The hosts helper check
/// in `protocol::etc_hosts` reads the first two words, so they stay `deadpool X.Y.Z`.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("DEADPOOL_COMMIT"),
    ")"
);

/// Single-use failover for a primary and its standby. Run `deadpool tick` from a timer.
#[derive(Debug, Parser)]
#[command(name = "deadpool", version = VERSION, about, max_term_width = 100)]
pub struct Cli {
    /// Config directory [default: $DEADPOOL_CONFIG, else /etc/deadpool]
    #[arg(long, global = true, value_name = "DIR")]
    pub config: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check every pool once and fail over where the rules say so (run this from a timer)
    Tick(TickArgs),
    /// Show the state of the instance, its pools, monitors and readiness checks
    Report(ReportArgs),
    /// Fail a pool over by hand toward the named server, and lock it
    Promote(PromoteArgs),
    /// Re-arm a pool after a failover (count 0, state armed)
    Reset(ResetArgs),
    /// Show recorded events: state changes, failover steps, promotions, resets, pauses
    History(HistoryArgs),
    /// Keep a pool checked and reported but never fail it over, for a while (maintenance)
    Pause(PauseArgs),
    /// End a pool's pause before its time
    Resume(ResumeArgs),
    /// Validate the configuration without changing anything
    CheckConfig(CheckConfigArgs),
    /// Write a commented example configuration directory
    Init(InitArgs),
    /// Client-side helper: test, verify or switch a name in a hosts file (runs on app servers)
    Hosts(HostsArgs),
    /// Print a shell completion script to stdout
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout
    Man,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HostsAction {
    /// Can this user write the file? Changes nothing; also says where NAME points
    Test,
    /// Exit 0 iff NAME resolves to IP in the file
    Verify,
    /// Make NAME resolve to IP, in place, keeping every other byte, with a backup
    Switch,
}

#[derive(Debug, Args)]
pub struct HostsArgs {
    #[arg(value_enum)]
    pub action: HostsAction,
    /// The host name to look at or change
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// The address NAME must resolve to (verify, switch)
    #[arg(long, value_name = "IP", required_if_eq_any = [("action", "verify"), ("action", "switch")])]
    pub ip: Option<std::net::IpAddr>,
    /// The hosts file
    #[arg(long, value_name = "PATH", default_value = "/etc/hosts")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct TickArgs {
    /// Print the plan and run the read-only preflights; change nothing, not even the database
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: the same as one JSON document (schema in the README)
    #[arg(long, requires = "dry_run")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The whole status tree (the default)
    #[arg(long, conflicts_with_all = ["nagios", "json"])]
    pub full: bool,
    /// One Nagios plugin line; exit 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN
    #[arg(long, conflicts_with = "json")]
    pub nagios: bool,
    /// The status tree as JSON (schema in the README)
    #[arg(long, conflicts_with = "prometheus")]
    pub json: bool,
    /// Metrics in the Prometheus text format
    #[arg(long, conflicts_with_all = ["nagios", "full"])]
    pub prometheus: bool,
    /// Only this pool
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The pool to fail over
    pub pool: String,
    /// The server that becomes active: as written in the pool, or `primary`, `secondary`,
    /// `standby2`...
    #[arg(value_name = "SERVER")]
    pub target: String,
    /// Print the plan and run the preflights; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead when the old primary answers but refuses (login refused, too many
    /// connections): steps then promote around it. Without it, such an answer stops the
    /// promote, since two writable primaries would be worse than none
    #[arg(long)]
    pub force: bool,
    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The pool to re-arm (with --forget: the pool no longer configured)
    pub pool: String,
    /// Record this server as active instead of the one the state records (as written in
    /// the pool, or `primary`, `secondary`, `standby2`...)
    #[arg(long, value_name = "SERVER")]
    pub active: Option<String>,
    /// Re-arm even when the active server is down
    #[arg(long)]
    pub force: bool,
    /// POOL was configured as OLD (renamed): carry OLD's recorded state and lock over to
    /// POOL, without re-arming it (a later `reset POOL` does that)
    #[arg(long, value_name = "OLD", conflicts_with_all = ["active", "force", "forget"])]
    pub adopt: Option<String>,
    /// POOL is no longer configured: drop its recorded state and lock (its history stays);
    /// a configured pool with its servers then arms on its own
    #[arg(long, conflicts_with_all = ["active", "force"])]
    pub forget: bool,
    /// Do not ask for confirmation (needed without a terminal)
    #[arg(long, short)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// The pool to pause
    pub pool: String,
    /// How long: the pause ends by itself then (required: no open-ended pauses). Durations
    /// as in the config and in systemd units: 30min, 1h, 1h 30min
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: Option<String>,
    /// Why, for the report, the history and the metrics
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The pool whose pause ends now
    pub pool: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this pool's events
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// At most this many events, newest last
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub limit: u32,
    /// One JSON object per line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Skip the read-only probes of the servers (logins, replication); check files only
    #[arg(long)]
    pub offline: bool,
    /// The result as one JSON document (schema in the README), also when the config is
    /// invalid
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the example configuration [default: the config directory]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Overwrite existing files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl Cli {
    pub fn is_nagios(&self) -> bool {
        matches!(&self.command, Command::Report(r) if r.nagios)
    }
}

/// Whether a command line that clap refused was meant to be `report --nagios`: such a
/// usage error must still come out as Nagios UNKNOWN (3), never as 2.
pub fn wants_nagios(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "report") && args.iter().any(|a| a == "--nagios")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
